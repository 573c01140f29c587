"""Losses of the output head, on raw head outputs ("logits").

Each loss takes the raw outputs ``z`` (R, O) of R rows (samples, or valid
time steps), their targets and their weights (already divided by the
batch's total weight), and returns the weighted loss sum — a float64 scalar
of the array module ``xp``, so that on a GPU it stays there — and its
gradient with respect to ``z``. The losses are MLP's: squared error / 2
averaged over targets, and the log-loss of a logistic (one output) or
softmax head.
"""

import numpy as np
from scipy import special


class _XpSpecial:
    """The functions of scipy.special the losses use, for another array module."""

    def __init__(self, xp):
        self.xp = xp

    def expit(self, z):
        return 1.0 / (1.0 + self.xp.exp(-z))

    def log_expit(self, z):
        return -self.xp.logaddexp(0.0, -z)

    def log_softmax(self, z, axis):
        shifted = z - z.max(axis=axis, keepdims=True)
        return shifted - self.xp.log(self.xp.exp(shifted).sum(axis=axis, keepdims=True))

    def softmax(self, z, axis):
        return self.xp.exp(self.log_softmax(z, axis))


def _special(xp):
    return special if xp is np else _XpSpecial(xp)


def squared_error(z, y, w, xp=np):
    """Half the squared error, averaged over the O targets of each row."""
    # the targets may be float64 (the estimators keep them as given); the
    # loss is computed in the outputs' precision
    diff = z - y.astype(z.dtype, copy=False)
    dz = diff * (w / z.shape[1])[:, None]
    return 0.5 * xp.vdot(dz, diff).astype(np.float64), dz


def binary_log_loss(z, y, w, xp=np):
    """Log-loss of a logistic output; ``y`` holds 0/1 codes, ``z`` is (R, 1)."""
    sp = _special(xp)
    z, y = z[:, 0], y.astype(z.dtype, copy=False)
    # -[y log σ(z) + (1 - y) log(1 - σ(z))] = -log σ(±z), stable for any z
    loss = -(w @ sp.log_expit(xp.where(y == 1, z, -z))).astype(np.float64)
    return loss, ((sp.expit(z) - y) * w)[:, None]


def multi_log_loss(z, y, w, xp=np):
    """Log-loss of a softmax output; ``y`` holds class codes."""
    sp = _special(xp)
    rows = xp.arange(len(y))
    loss = -(w @ sp.log_softmax(z, axis=1)[rows, y]).astype(np.float64)
    grad = sp.softmax(z, axis=1)
    grad[rows, y] -= 1.0
    return loss, grad * w[:, None]
