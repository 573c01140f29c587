"""Losses of the output head, on raw head outputs ("logits").

Each loss takes the raw outputs ``z`` (R, O) of R rows (samples, or valid
time steps), their targets and their weights (already divided by the
batch's total weight), and returns the weighted loss sum and its gradient
with respect to ``z``. The losses are MLP's: squared error / 2 averaged over
targets, and the log-loss of a logistic (one output) or softmax head.
"""

import numpy as np
from scipy.special import expit, log_expit, log_softmax, softmax


def squared_error(z, y, w):
    """Half the squared error, averaged over the O targets of each row."""
    diff = z - y
    n_out = z.shape[1]
    loss = 0.5 * float(w @ np.einsum("ij,ij->i", diff, diff)) / n_out
    return loss, diff * (w[:, None] / n_out)


def binary_log_loss(z, y, w):
    """Log-loss of a logistic output; ``y`` holds 0/1 codes, ``z`` is (R, 1)."""
    z = z[:, 0]
    # -[y log σ(z) + (1 - y) log(1 - σ(z))] = -log σ(±z), stable for any z
    loss = -float(w @ log_expit(np.where(y == 1, z, -z)))
    return loss, ((expit(z) - y) * w)[:, None]


def multi_log_loss(z, y, w):
    """Log-loss of a softmax output; ``y`` holds class codes."""
    rows = np.arange(len(y))
    loss = -float(w @ log_softmax(z, axis=1)[rows, y])
    grad = softmax(z, axis=1)
    grad[rows, y] -= 1.0
    return loss, grad * w[:, None]
