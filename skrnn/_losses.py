"""Losses of the output head, on raw head outputs ("logits").

Each loss takes the raw outputs ``z`` (R, O) of R rows (samples, or valid
time steps), their targets and their weights (already divided by the
batch's total weight), and returns the weighted loss sum — a float64 scalar
of the array module ``xp``, so that on a GPU it stays there — and its
gradient with respect to ``z``. MLP's losses: squared error / 2 averaged
over targets, and the log-loss of a logistic (one output) or softmax head;
and the regressor's others (``REGRESSION_LOSSES``): absolute error, half
the Poisson deviance, the pinball loss of quantiles and the Gaussian
negative log-likelihood. Each is a :class:`HeadLoss`, which names its
compiled twin in the CPU engine's training pass (None: the layers' passes
and the loss here), its head's width and, for the regressor, its
predictions.
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
    standardises = True  # the regressor's normalize_y applies

    def n_outputs(self, n_targets):
        """The head's outputs for ``n_targets`` targets."""
        return n_targets

    def predict(self, z, mean, scale):
        """A regression loss's predictions (..., n_targets, k) in the targets'
        units, from raw outputs ``z`` (..., n_outputs) on the host; ``mean``
        and ``scale`` (n_targets,) undo the targets' standardisation. k = 1
        but for the quantile loss (one per level) and the Gaussian one
        (mean, standard deviation)."""
        return (z * scale + mean)[..., None]

    def check_targets(self, y):
        """Refuse targets the loss cannot take, before anything changes."""

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
        return 0.5 * float(_weighted_variance(y, w).mean())


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


def _weighted_variance(y, w):
    """The variance of each column of ``y`` (R, ...) under weights ``w``
    (summing to 1), centred on a row first, so that a constant column gives
    exactly 0."""
    y = y.reshape(len(y), -1)
    y = y - y[0]
    return w @ (y - w @ y) ** 2


def _softplus(z, xp):
    """log(1 + exp(z)), stable for any z."""
    return xp.logaddexp(0.0, z)


def _expit(z, xp):
    return xp.exp(_log_expit(z, xp))


def _weighted_quantile(y, w, q):
    """The ``q``-quantile of each column of ``y`` (R, O) under weights ``w``
    (summing to 1): the smallest value whose weight at or below it reaches q,
    a minimiser of the pinball loss."""
    order = np.argsort(y, axis=0, kind="stable")
    cumulative = np.cumsum(w[order], axis=0)
    first = (cumulative >= q - 1e-12).argmax(axis=0)
    return np.take_along_axis(y, order, axis=0)[first, np.arange(y.shape[1])]


class AbsoluteError(HeadLoss):
    """The absolute error, averaged over the O targets of each row; its
    minimiser is the median."""

    compiled = _batch.Loss.ABSOLUTE_ERROR
    name = "absolute_error"
    description = "the mean absolute error, whose prediction is the conditional median"

    def __call__(self, z, y, w, xp=np):
        diff = z - y.astype(z.dtype, copy=False)
        scale = (w / z.shape[1])[:, None]
        return xp.sum(xp.abs(diff) * scale).astype(np.float64), xp.sign(diff) * scale

    def constant_loss(self, y, w):
        y = y.reshape(len(y), -1)
        median = _weighted_quantile(y, w, 0.5)
        return float((w @ np.abs(y - median)).mean())


class PoissonLoss(HeadLoss):
    """Half the Poisson deviance of mu = exp(z), averaged over the targets:
    mu - y z + y log y - y (0 at mu = y)."""

    compiled = _batch.Loss.POISSON
    name = "poisson"
    description = (
        "half the Poisson deviance with a log link, for counts and rates (y >= 0,"
        " predictions > 0, targets not standardised)"
    )
    standardises = False

    def __call__(self, z, y, w, xp=np):
        y = y.astype(z.dtype, copy=False)
        mu = xp.exp(z)
        # y log y - y, 0 at y = 0
        offset = xp.where(y > 0, y * xp.log(xp.where(y > 0, y, 1)), 0) - y
        scale = (w / z.shape[1])[:, None]
        loss = xp.sum((mu - y * z + offset) * scale).astype(np.float64)
        return loss, (mu - y) * scale

    def predict(self, z, mean, scale):
        return np.exp(z)[..., None]

    def check_targets(self, y):
        if (y < 0).any():
            raise ValueError(
                "loss='poisson' needs targets y >= 0 (counts or rates); "
                f"the smallest is {y.min()!r}."
            )

    def constant_loss(self, y, w):
        y = y.reshape(len(y), -1)
        mu = np.maximum(w @ y, np.finfo(np.float64).tiny)
        return float(self(np.log(mu) + np.zeros_like(y), y, w)[0])


class QuantileLoss(HeadLoss):
    """The pinball loss of each quantile level, averaged over the levels and
    the targets. The head's outputs per target are the lowest quantile and
    the softplus of the gaps up to each next one, so the predicted quantiles
    never cross."""

    compiled = _batch.Loss.QUANTILE
    name = "quantile"
    description = (
        "the pinball loss of the levels ``quantile``, one output per level "
        "(sorted, never crossing)"
    )

    def __init__(self, levels=(0.5,)):
        self.levels = np.sort(np.asarray(levels, dtype=np.float64).ravel())

    def n_outputs(self, n_targets):
        return n_targets * len(self.levels)

    def _quantiles(self, z, xp):
        """(R, O, K) quantiles from (R, O * K) outputs, and the softplus' slopes
        of the gaps (R, O, K - 1)."""
        z = z.reshape(len(z), -1, len(self.levels))
        gaps = _softplus(z[:, :, 1:], xp)
        q = xp.concatenate([z[:, :, :1], z[:, :, :1] + xp.cumsum(gaps, axis=2)], axis=2)
        return q, _expit(z[:, :, 1:], xp)

    def __call__(self, z, y, w, xp=np):
        q, slopes = self._quantiles(z, xp)
        u = y.astype(z.dtype, copy=False).reshape(len(y), -1)[:, :, None] - q
        tau = xp.asarray(self.levels, dtype=z.dtype)
        scale = (w / (q.shape[1] * q.shape[2]))[:, None, None]
        loss = xp.sum(xp.maximum(tau * u, (tau - 1) * u) * scale).astype(np.float64)
        # d/dq of the pinball loss, then back through the cumulative gaps:
        # q_k = z_0 + sum_{j <= k} softplus(z_j)
        dq = xp.where(u > 0, -tau, 1 - tau) * scale
        tail = xp.flip(xp.cumsum(xp.flip(dq, axis=2), axis=2), axis=2)
        dz = xp.concatenate([tail[:, :, :1], tail[:, :, 1:] * slopes], axis=2)
        return loss, dz.reshape(len(z), -1)

    def predict(self, z, mean, scale):
        q, _ = self._quantiles(z.reshape(-1, z.shape[-1]), np)
        q = q.reshape(*z.shape[:-1], *q.shape[1:])
        return q * scale[:, None] + mean[:, None]

    def constant_loss(self, y, w):
        y = y.reshape(len(y), -1)
        total = 0.0
        for tau in self.levels:
            u = y - _weighted_quantile(y, w, tau)
            total += float((w @ np.maximum(tau * u, (tau - 1) * u)).mean())
        return total / len(self.levels)


class GaussianLoss(HeadLoss):
    """The Gaussian negative log-likelihood, averaged over the targets: two
    outputs per target, the mean m and s, with the standard deviation
    sigma = softplus(s): log sigma + (y - m)^2 / (2 sigma^2) + log(2 pi) / 2."""

    compiled = _batch.Loss.GAUSSIAN
    name = "gaussian"
    description = (
        "the Gaussian negative log-likelihood of a mean and a standard "
        "deviation, both of which ``predict(X, return_std=True)`` returns"
    )

    def n_outputs(self, n_targets):
        return 2 * n_targets

    def __call__(self, z, y, w, xp=np):
        z2 = z.reshape(len(z), -1, 2)
        m, s = z2[:, :, 0], z2[:, :, 1]
        # a floor keeps the likelihood finite where softplus underflows
        sigma = _softplus(s, xp) + _SIGMA_FLOOR
        r = y.astype(z.dtype, copy=False).reshape(len(y), -1) - m
        scale = (w / m.shape[1])[:, None]
        nll = xp.log(sigma) + r * r / (2 * sigma * sigma) + 0.5 * np.log(2 * np.pi)
        loss = xp.sum(nll * scale).astype(np.float64)
        dm = -r / (sigma * sigma) * scale
        dsigma = (1 / sigma - r * r / sigma**3) * scale
        dz = xp.stack([dm, dsigma * _expit(s, xp)], axis=2)
        return loss, dz.reshape(len(z), -1)

    def predict(self, z, mean, scale):
        z2 = z.reshape(*z.shape[:-1], -1, 2)
        sigma = _softplus(z2[..., 1], np) + _SIGMA_FLOOR
        return np.stack([z2[..., 0] * scale + mean, sigma * scale], axis=-1)

    def constant_loss(self, y, w):
        var = _weighted_variance(y, w)
        if (var <= 0).any():
            return None  # a constant target: its likelihood has no bound
        return float((0.5 * np.log(2 * np.pi * var) + 0.5).mean())


_SIGMA_FLOOR = 1e-6

#: The regressor's losses, by their ``loss`` parameter.
REGRESSION_LOSSES = {
    loss.name: loss
    for loss in (SquaredError, AbsoluteError, PoissonLoss, QuantileLoss, GaussianLoss)
}
# one of each, the quantile loss at its default level
_INSTANCES = {name: loss() for name, loss in REGRESSION_LOSSES.items()}
squared_error = _INSTANCES["squared_error"]
binary_log_loss = BinaryLogLoss()
multi_log_loss = MultiLogLoss()


def regression_loss(name, quantile=0.5):
    """The regressor's loss ``name``; ``quantile`` gives the quantile loss its
    levels (a float or a sequence of them)."""
    if name == "quantile":
        return QuantileLoss(np.atleast_1d(quantile))
    return _INSTANCES[name]
