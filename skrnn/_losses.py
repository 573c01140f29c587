"""Losses of the output head, on raw head outputs ("logits").

Each loss takes the raw outputs ``z`` (R, O) of R rows (samples, or valid
time steps), their targets and their weights (already divided by the
batch's total weight), and returns the weighted loss sum — a float64 scalar
of the array module ``xp``, so that on a GPU it stays there — and its
gradient with respect to ``z``. The losses are MLP's: squared error / 2
averaged over targets, and the log-loss of a logistic (one output) or
softmax head. Each is a :class:`HeadLoss`, which names its compiled twin in
the CPU engine's training pass.
"""

import numpy as np

from ._engine import _batch


# Written with ``xp``'s operations alone, stable for any z, so that the same
# code runs on NumPy's arrays and on CuPy's (scipy.special takes NumPy's).
def _log_expit(z, xp):
    """log σ(z) = -log(1 + exp(-z))."""
    return -xp.logaddexp(0.0, -z)


def _log_softmax(z, xp):
    """log softmax(z) over the last axis of a 2-D z."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


class HeadLoss:
    """A loss of the head's raw outputs, carrying its compiled twin.

    Calling it, ``loss(z, y, w, xp=np)``, gives the weighted loss sum and its
    gradient with respect to ``z`` (see the module's docstring).

    Attributes
    ----------
    compiled : skrnn._engine._batch.Loss or None
        The same loss in the CPU engine's compiled training pass; None: a
        loss that pass does not know, for which the layers run one engine
        call each and the loss is computed here.
    codes : bool
        Whether the targets are class codes (integers) rather than values.
    name : str or None
        A regression loss's value of the regressor's ``loss`` parameter.
    description : str
        What it is, for the regressor's docstring.
    """

    compiled = None
    codes = False
    name = None
    description = ""

    def __call__(self, z, y, w, xp=np):
        raise NotImplementedError

    def constant_loss(self, y, w):
        """The weighted loss of the best constant output: of predicting the
        mean target or the class prior, as a model that learned nothing from
        the sequences does. ``y`` and ``w`` as for a call, on the host.
        None: not known (training then never waits for its loss to leave
        that plateau)."""
        return None

    def __repr__(self):
        return f"<skrnn loss {type(self).__name__}>"


class SquaredError(HeadLoss):
    """Half the squared error, averaged over the O targets of each row."""

    compiled = _batch.Loss.SQUARED_ERROR
    name = "squared_error"
    description = "the mean squared error / 2, as ``MLPRegressor``'s"

    def __call__(self, z, y, w, xp=np):
        # the targets may be float64 (the estimators keep them as given); the
        # loss is computed in the outputs' precision
        diff = z - y.astype(z.dtype, copy=False)
        dz = diff * (w / z.shape[1])[:, None]
        return 0.5 * xp.vdot(dz, diff).astype(np.float64), dz

    def constant_loss(self, y, w):
        # centred on a target first, so that constant targets give exactly 0
        y = y.reshape(len(y), -1)
        y = y - y[0]
        return 0.5 * float((w @ (y - w @ y) ** 2).mean())


class BinaryLogLoss(HeadLoss):
    """Log-loss of a logistic output; ``y`` holds 0/1 codes, ``z`` is (R, 1)."""

    compiled = _batch.Loss.BINARY_LOG_LOSS
    codes = True

    def __call__(self, z, y, w, xp=np):
        z, y = z[:, 0], y.astype(z.dtype, copy=False)
        # -[y log σ(z) + (1 - y) log(1 - σ(z))] = -log σ(±z), stable for any z
        loss = -(w @ _log_expit(xp.where(y == 1, z, -z), xp)).astype(np.float64)
        return loss, ((xp.exp(_log_expit(z, xp)) - y) * w)[:, None]

    def constant_loss(self, y, w):
        return _entropy(np.bincount(y.ravel(), weights=w, minlength=2))


class MultiLogLoss(HeadLoss):
    """Log-loss of a softmax output; ``y`` holds class codes."""

    compiled = _batch.Loss.MULTI_LOG_LOSS
    codes = True

    def __call__(self, z, y, w, xp=np):
        rows = xp.arange(len(y))
        log_p = _log_softmax(z, xp)
        loss = -(w @ log_p[rows, y]).astype(np.float64)
        grad = xp.exp(log_p)
        grad[rows, y] -= 1.0
        return loss, grad * w[:, None]

    def constant_loss(self, y, w):
        return _entropy(np.bincount(y.ravel(), weights=w))


def _entropy(p):
    """-sum p log p of class shares ``p`` (summing to 1), 0 log 0 = 0."""
    p = p[p > 0]
    return float(-(p @ np.log(p)))


squared_error = SquaredError()
binary_log_loss = BinaryLogLoss()
multi_log_loss = MultiLogLoss()

#: The regressor's losses, by their ``loss`` parameter.
REGRESSION_LOSSES = {loss.name: loss for loss in (squared_error,)}
