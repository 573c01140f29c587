"""Which inputs a fitted sequence model relies on."""

from numbers import Integral

import numpy as np
from scipy.special import expit
from sklearn.metrics import check_scoring
from sklearn.utils import Bunch, check_random_state

from ._classifier import SequenceClassifier
from ._data import check_sequences
from ._engine import get_engine
from ._pipeline import scalers_and_estimator
from ._sklearn_compat import Number, StrOptions, validate_params

__all__ = ["permutation_importance", "step_attributions"]


@validate_params(
    {
        "estimator": [object],
        "X": ["array-like", list],
        "y": ["array-like", list],
        "by": [StrOptions({"feature", "step"})],
        "n_repeats": [Number(Integral, 1, None, closed="left")],
        "scoring": [str, callable, None],
        "random_state": ["random_state"],
        "sample_weight": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def permutation_importance(
    estimator,
    X,
    y,
    *,
    by="feature",
    n_repeats=5,
    scoring=None,
    random_state=None,
    sample_weight=None,
):
    """Permutation importance of the features or time steps of sequences.

    scikit-learn's :func:`~sklearn.inspection.permutation_importance` for
    input it cannot take (3-D arrays, lists of sequences): how much the score
    drops when a feature, or a time step, is shuffled across sequences, so
    that it no longer goes with its targets.

    - ``by="feature"``: feature d's values are shuffled across every valid
      step of every sequence, the other features left in place; any input
      form (a table holds one feature).
    - ``by="step"``: step t of every sequence (all its features) comes from
      another sequence; sequences of equal length only.

    Parameters
    ----------
    estimator : estimator
        A fitted skrnn estimator, or a pipeline ending in one.
    X : array-like or list of array-like
        Sequences in any form the estimator takes.
    y : array-like
        Their targets.
    by : {"feature", "step"}, default="feature"
        What is shuffled.
    n_repeats : int, default=5
        Shuffles of each feature or step.
    scoring : str, callable or None, default=None
        As scikit-learn's; None: the estimator's ``score``.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffles.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples in the scoring.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``importances`` (n_features or n_steps, n_repeats): the baseline
        score minus the score with the feature or step shuffled, and its
        mean and standard deviation over the repeats, ``importances_mean``
        and ``importances_std``.

    See Also
    --------
    sklearn.inspection.permutation_importance : The same for tables.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skrnn import SequenceRegressor
    >>> from skrnn.inspection import permutation_importance
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 5, 3))
    >>> y = X[:, :, 0].sum(axis=1)  # feature 0 decides, the others do not
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     model = SequenceRegressor(hidden_size=8, max_iter=50, random_state=0)
    ...     model = model.fit(X, y)
    >>> result = permutation_importance(model, X, y, random_state=0)
    >>> int(np.argmax(result.importances_mean))
    0
    """
    seqs = check_sequences(X, dtype="float64")
    rng = check_random_state(random_state)
    scorer = check_scoring(estimator, scoring=scoring)
    kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
    # the sequences as a list (T_i, D): what every skrnn estimator takes
    rows = [v[:L] for v, L in zip(seqs.values, seqs.lengths)]
    baseline = scorer(estimator, rows, y, **kwargs)
    N, T, D = seqs.values.shape
    if by == "step" and (seqs.lengths != T).any():
        raise ValueError(
            "by='step' shuffles a time step across sequences, which needs them "
            f"to be of equal length; these have lengths from {seqs.lengths.min()} "
            f"to {T}. Use by='feature'."
        )
    valid = np.arange(T)[None, :] < seqs.lengths[:, None]
    importances = np.empty((D if by == "feature" else T, n_repeats))
    for j in range(len(importances)):
        for r in range(n_repeats):
            shuffled = seqs.values.copy()
            if by == "feature":
                column = shuffled[:, :, j]
                column[valid] = rng.permutation(column[valid])
            else:
                shuffled[:, j] = shuffled[rng.permutation(N), j]
            permuted = [v[:L] for v, L in zip(shuffled, seqs.lengths)]
            importances[j, r] = baseline - scorer(estimator, permuted, y, **kwargs)
    return Bunch(
        importances_mean=importances.mean(axis=1),
        importances_std=importances.std(axis=1),
        importances=importances,
    )


@validate_params(
    {
        "estimator": [object],
        "X": ["array-like", list],
        "method": [
            StrOptions(
                {"gradient", "gradient_x_input", "integrated_gradients", "occlusion"}
            )
        ],
        "baseline": ["array-like", None],
        "n_steps": [Number(Integral, 1, None, closed="left")],
        "target": [object],
        "time_step": [Number(Integral, 0, None, closed="left"), None],
        "batch_size": [Number(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def step_attributions(
    estimator,
    X,
    *,
    method="integrated_gradients",
    baseline=None,
    n_steps=50,
    target=None,
    time_step=None,
    batch_size=None,
):
    """How much each step and feature of each sequence moved a prediction.

    The gradients come from the network's backward pass (exact, batched), with
    respect to the input as given: through the scalers of a pipeline too.

    - ``"gradient"``: the gradient of the explained output.
    - ``"gradient_x_input"``: the gradient times the input.
    - ``"integrated_gradients"`` (Sundararajan et al., 2017): (x - baseline)
      times the gradient averaged along the straight path from the baseline
      to x, at the midpoints of ``n_steps`` equal segments; the attributions
      of a sequence sum to the output at x minus the output at the baseline,
      up to that quadrature.
    - ``"occlusion"``: the output at x minus the output with that one step
      and feature replaced by the baseline's.

    What is explained: for a classifier, the logit of a class (its
    log-odds against the other for two classes; its softmax input for more),
    by default each sequence's predicted class; for a regressor, one value of
    the prediction of a sequence, in the targets' units (its index in the
    prediction flattened: a target column, or a quantile level, or target j's
    level k at ``j * n_levels + k``), by default the first; with
    ``loss="poisson"``, the log of the predicted rate.

    Parameters
    ----------
    estimator : estimator
        A fitted :class:`~skrnn.SequenceRegressor` or
        :class:`~skrnn.SequenceClassifier`, or a
        :class:`~sklearn.pipeline.Pipeline` of
        :class:`~skrnn.preprocessing.SequenceScaler` steps ending in one.
    X : array-like or list of array-like
        Sequences in any form the estimator takes.
    method : {"gradient", "gradient_x_input", "integrated_gradients", \
            "occlusion"}, default="integrated_gradients"
        The attribution.
    baseline : array-like, default=None
        The reference input of integrated gradients and occlusion:
        broadcastable to one step, (n_features,), or to X's (n_samples,
        n_timesteps, n_features) array; None: zeros.
    n_steps : int, default=50
        Integrated gradients' points along the path.
    target : object, default=None
        For a classifier a class label (None: each sequence's predicted
        class); for a regressor the index of the explained value (None: 0).
    time_step : int, default=None
        With ``output="sequence"``, the step whose output is explained (None:
        each sequence's last step).
    batch_size : int, default=None
        Sequences (points of the paths of integrated gradients) per backward
        pass; None: 2048, which keeps the memory of a pass to about that of
        training on 2048 sequences.

    Returns
    -------
    attributions : ndarray or list of ndarray
        X's shape: (n_samples, n_timesteps, n_features) for a 3-D array,
        (n_samples, n_timesteps) for a table, a list of (T_i, n_features) or
        (T_i,) arrays for a list; 0 at padded steps.

    See Also
    --------
    permutation_importance : The features or steps the score depends on.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skrnn import SequenceRegressor
    >>> from skrnn.inspection import step_attributions
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 6, 1))
    >>> y = 3 * X[:, 2, 0]  # step 2 alone decides
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     model = SequenceRegressor(hidden_size=8, max_iter=100, random_state=0)
    ...     model = model.fit(X, y)
    >>> a = step_attributions(model, X[:20])
    >>> np.bincount(np.abs(a[:, :, 0]).argmax(axis=1)).argmax()
    np.int64(2)
    """
    scalers, model = scalers_and_estimator(estimator, "step_attributions")
    # checked as the pipeline's first step checks it, read in float64
    (scalers[0] if scalers else model)._validate_X(X, reset=False)
    seqs = check_sequences(X, dtype="float64")
    N, T, D = seqs.values.shape
    valid = np.arange(T)[None, :] < seqs.lengths[:, None]
    x = np.where(valid[:, :, None], seqs.values, 0.0)
    base = np.zeros_like(x) if baseline is None else _broadcast(baseline, x.shape)
    base = np.where(valid[:, :, None], base, 0.0)
    explained = _Explained(model, seqs.lengths, time_step, target)
    factor = np.ones(D)  # d(scaled input) / d(input), through the scalers
    for scaler in scalers:
        if scaler.scale_ is not None:
            factor = factor / scaler.scale_

    def scaled(v):
        for scaler in scalers:
            v = scaler.transform(v)
        return v

    net, engine = model._network, get_engine("cpu")
    raw_x = net.forward(engine, scaled(x), seqs.lengths)
    explained.fix(raw_x)
    if method == "occlusion":
        at_x = explained.value(raw_x)
        result = np.zeros_like(x)
        for t in range(T):
            for d in range(D):
                rows = np.flatnonzero(valid[:, t])
                occluded = x[rows].copy()
                occluded[:, t, d] = base[rows, t, d]
                raw = net.forward(engine, scaled(occluded), seqs.lengths[rows])
                result[rows, t, d] = at_x[rows] - explained.value(raw, rows)
    else:
        if method == "integrated_gradients":
            alphas = (np.arange(n_steps) + 0.5) / n_steps
        else:
            alphas = np.ones(1)
        # every point of every sequence's path, point by point: (n_points * N)
        points = base[None] + alphas[:, None, None, None] * (x - base)[None]
        points = points.reshape(-1, T, D)
        rows = np.tile(np.arange(N), len(alphas))
        size = _BATCH_SIZE if batch_size is None else batch_size
        grads = np.empty_like(points)
        for start in range(0, len(points), size):
            chunk = slice(start, start + size)
            _, grads[chunk] = net.input_grad(
                engine,
                scaled(points[chunk]),
                seqs.lengths[rows[chunk]],
                lambda raw, r=rows[chunk]: explained.grad(raw, r),
            )
        grad = grads.reshape(len(alphas), N, T, D).mean(axis=0) * factor
        if method == "gradient":
            result = grad
        elif method == "gradient_x_input":
            result = grad * x
        else:
            result = grad * (x - base)
    result = np.where(valid[:, :, None], result, 0.0)
    if seqs.form == "list":
        single = np.ndim(X[0]) == 1
        return [r[:L, 0] if single else r[:L] for r, L in zip(result, seqs.lengths)]
    return result[:, :, 0] if seqs.form == "table" else result


_BATCH_SIZE = 2048


class _Explained:
    """The scalar of each sequence's prediction that is explained, as a
    function of the raw outputs: its value and its gradient."""

    def __init__(self, model, lengths, time_step, target):
        self.model, self.lengths, self.target = model, lengths, target
        self.sequence = model._output == "sequence"
        if self.sequence:
            steps = (
                lengths - 1 if time_step is None else np.full(len(lengths), time_step)
            )
            if (steps >= lengths).any():
                raise ValueError(
                    f"time_step={time_step} is past the end of a sequence of "
                    f"{int(lengths.min())} steps."
                )
            self.steps = steps
        elif time_step is not None:
            raise ValueError("time_step is for models with output='sequence'.")

    def _rows(self, raw, rows):
        """The raw outputs (n, O) of the explained step of the sequences ``rows``."""
        if not self.sequence:
            return raw
        return raw[np.arange(len(raw)), self.steps[rows]]

    def _place(self, d, raw, rows):
        """``d`` (n, O) as a gradient of the raw outputs' shape."""
        if not self.sequence:
            return d
        full = np.zeros_like(raw)
        full[np.arange(len(raw)), self.steps[rows]] = d
        return full

    def fix(self, raw):
        """What is explained, from the raw outputs at X: a classifier's
        weights of the logits, per sequence."""
        model, z = self.model, self._rows(raw, slice(None))
        if isinstance(model, SequenceClassifier):
            if self.target is None:
                codes = model._targets_from_raw(z)
            else:
                found = np.flatnonzero(model.classes_ == self.target)
                if len(found) == 0:
                    raise ValueError(
                        f"target={self.target!r} is not one of the classes "
                        f"{model.classes_.tolist()}."
                    )
                codes = np.full(len(z), found[0])
            if len(model.classes_) == 2:  # the log-odds of class 1, or of 0
                self.weights = np.where(codes == 1, 1.0, -1.0)[:, None]
            else:
                self.weights = np.eye(z.shape[1])[codes]
        else:
            loss = model._head_loss()
            n_values = np.prod(model._predictions(z[:1]).shape[1:])
            settings = model._target_settings
            levels = settings["loss"] == "quantile" and np.ndim(settings["quantile"])
            n_values = n_values if levels else model.n_outputs_
            column = 0 if self.target is None else self.target
            if not isinstance(column, Integral) or not 0 <= column < n_values:
                raise ValueError(
                    f"target must be an int in [0, {n_values}) for this regressor; "
                    f"got {self.target!r}."
                )
            self.loss, self.column = loss, int(column)

    def value(self, raw, rows=slice(None)):
        z = self._rows(raw, rows)
        if hasattr(self, "weights"):
            return (z * self.weights[rows]).sum(axis=1)
        if self.loss.name == "poisson":
            return z[:, self.column]
        pred = self.model._predictions(z)  # (n, n_targets, k)
        if self.loss.name == "quantile":
            return pred.reshape(len(z), -1)[:, self.column]
        return pred[:, self.column, 0]

    def grad(self, raw, rows):
        z = self._rows(raw, rows)
        if hasattr(self, "weights"):
            return self._place(self.weights[rows] * np.ones_like(z), raw, rows)
        d = np.zeros_like(z)
        model, name = self.model, self.loss.name
        if name == "poisson":
            d[:, self.column] = 1.0
        elif name == "quantile":
            K = len(self.loss.levels)
            j, k = divmod(self.column, K)
            d[:, j * K] = model._y_scale[j]
            # q_k = z_0 + sum_{m <= k} softplus(z_m): d q_k / d z_m = sigmoid(z_m)
            gaps = slice(j * K + 1, j * K + k + 1)
            d[:, gaps] = expit(z[:, gaps]) * model._y_scale[j]
        else:
            width = model._head_loss().n_outputs(model.n_outputs_) // model.n_outputs_
            d[:, self.column * width] = model._y_scale[self.column]
        return self._place(d, raw, rows)


def _broadcast(baseline, shape):
    baseline = np.asarray(baseline, dtype=np.float64)
    try:
        return np.broadcast_to(baseline, shape)
    except ValueError:
        raise ValueError(
            f"baseline of shape {baseline.shape} broadcasts neither to a step "
            f"({shape[2]},) nor to X {shape}."
        ) from None
