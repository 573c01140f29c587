"""SequenceRegressor: the regression losses, R² score."""

import warnings
from inspect import Parameter, signature
from numbers import Real

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import check_array

from ._base import BaseSequenceEstimator, _step_rows
from ._data import check_finite_targets, pack, split_step_targets
from ._docs import fill_doc, option_entry
from ._losses import REGRESSION_LOSSES, HeadLoss, regression_loss
from ._sklearn_compat import Interval, StrOptions, _fit_context
from .preprocessing import _scale


@fill_doc(
    loss_parameter=option_entry(
        "loss",
        {name: loss.description for name, loss in REGRESSION_LOSSES.items()},
        "squared_error",
        "The loss the head is trained on",
    ),
    loss="the ``loss``",
    score="R²",
    n_outputs="Targets per sequence (or per step).",
)
class SequenceRegressor(RegressorMixin, BaseSequenceEstimator):
    """Recurrent neural network regressor (Elman RNN, GRU or LSTM).

    A stack of recurrent layers read by a linear head, trained on ``loss``
    (by default the mean squared error / 2, as
    :class:`~sklearn.neural_network.MLPRegressor`), either on one target per
    sequence (``output="last"``) or one per time step
    (``output="sequence"``). The recurrent kernels are compiled
    (Cython + BLAS); ``device="cuda"`` runs them on an NVIDIA GPU with CuPy.

    Parameters
    ----------
    %(parameters)s
    %(loss_parameter)s
    quantile : float or list of float, default=0.5
        With ``loss="quantile"``: the level in (0, 1) to predict, or a list
        of levels, which ``predict`` returns on a last axis of its own,
        sorted, never crossing.
    normalize_y : bool, default=True
        Standardise the targets inside ``fit`` (each target column to mean 0
        and variance 1 over the training rows, as
        :class:`~sklearn.gaussian_process.GaussianProcessRegressor` does) and
        undo it in ``predict`` and in the ONNX export. The defaults (learning
        rate, the initial weights of the head) then suit targets of any
        scale and level. ``partial_fit`` standardises with the statistics of
        its first call. Not with ``loss="poisson"``, whose log link takes the
        counts as they are.

    Attributes
    ----------
    %(attributes)s

    See Also
    --------
    SequenceClassifier : The classifier.
    sklearn.neural_network.MLPRegressor : The feed-forward model this follows.
    skrnn.preprocessing.SequenceScaler : Standardises the features first.

    Examples
    --------
    >>> from skrnn import SequenceRegressor
    >>> from skrnn.datasets import make_binary_sum
    >>> X, y = make_binary_sum(n_samples=200, n_timesteps=8, random_state=0)
    >>> model = SequenceRegressor(cell="rnn", hidden_size=8, learning_rate_init=0.01,
    ...                           batch_size=20, max_iter=300, n_iter_no_change=30,
    ...                           random_state=0).fit(X, y)
    >>> X_test, y_test = make_binary_sum(n_samples=50, n_timesteps=8, random_state=1)
    >>> model.score(X_test, y_test) > 0.9
    True
    """

    _parameter_constraints = {
        **BaseSequenceEstimator._parameter_constraints,
        "loss": [StrOptions(set(REGRESSION_LOSSES))],
        "quantile": [Interval(Real, 0, 1, closed="neither"), "array-like"],
        "normalize_y": ["boolean"],
    }

    def __init__(
        self, *args, loss="squared_error", quantile=0.5, normalize_y=True, **params
    ):
        super().__init__(*args, **params)
        self.loss = loss
        self.quantile = quantile
        self.normalize_y = normalize_y

    # scikit-learn reads an estimator's parameters from its signature: the
    # shared ones, then the regressor's own
    __init__.__signature__ = signature(BaseSequenceEstimator.__init__).replace(
        parameters=[
            *signature(BaseSequenceEstimator.__init__).parameters.values(),
            Parameter("loss", Parameter.KEYWORD_ONLY, default="squared_error"),
            Parameter("quantile", Parameter.KEYWORD_ONLY, default=0.5),
            Parameter("normalize_y", Parameter.KEYWORD_ONLY, default=True),
        ]
    )

    def __setstate__(self, state):
        # models saved before these parameters existed load as they were
        # fitted: squared error, targets as given
        state.setdefault("loss", "squared_error")
        state.setdefault("quantile", 0.5)
        state.setdefault("normalize_y", False)
        if "n_outputs_" in state and "_y_mean" not in state:
            state["_y_mean"] = np.zeros(state["n_outputs_"])
            state["_y_scale"] = np.ones(state["n_outputs_"])
            state["_target_settings"] = {"loss": "squared_error", "normalize_y": False}
        super().__setstate__(state)

    _constant_output = "the mean target"

    # The mixin's score would sit first in the MRO; ours scores every valid
    # step of output="sequence" models and takes every input form.
    score = BaseSequenceEstimator.score

    def _head_loss(self):
        # the loss the model was fitted with
        settings = self._target_settings
        return regression_loss(settings["loss"], settings.get("quantile", 0.5))

    def _new_loss(self):
        """The loss the parameters ask for, checked; what a first fit uses."""
        if self.loss == "quantile":
            levels = np.atleast_1d(np.asarray(self.quantile, dtype=np.float64))
            if (
                levels.ndim != 1
                or len(levels) == 0
                or not ((levels > 0) & (levels < 1)).all()
                or len(np.unique(levels)) != len(levels)
            ):
                raise ValueError(
                    "quantile must be a float in (0, 1) or a non-empty list of "
                    f"distinct ones; got {self.quantile!r}."
                )
        return regression_loss(self.loss, self.quantile)

    def _validate_targets(self, y, seqs, reset, classes=None, scoring=False):
        output = self.output if reset else self._output
        N = len(seqs.lengths)
        dtype = np.float64
        if output == "last":
            if not (type(y) is np.ndarray and y.dtype.kind == "f"):
                # a float array is what check_array would return as it is
                y = check_array(
                    y,
                    ensure_2d=False,
                    dtype="numeric",
                    ensure_all_finite=False,
                    input_name="y",
                )
            if y.ndim not in (1, 2) or len(y) != N:
                raise ValueError(
                    f"y must have shape (n_samples,) or (n_samples, n_targets) with "
                    f"n_samples={N} as in X; got {y.shape}."
                )
            check_finite_targets(y)
            T = seqs.values.shape[1]
            if reset and y.ndim == 2 and y.shape[1] == T > 1:
                warnings.warn(
                    f"y has one column per time step of X ({T}): with "
                    f"output='last' they are {T} targets of each sequence, read "
                    "at its last step. For one target per time step, use "
                    "output='sequence'.",
                    UserWarning,
                )
            targets = y.reshape(N, -1).astype(dtype)
            step_ndim = y.ndim - 1
        else:
            ys = split_step_targets(y, seqs)
            try:
                ys = [np.asarray(v, dtype=dtype) for v in ys]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"y must be numeric for a regressor: {exc}") from exc
            check_finite_targets(ys)
            step_ndim = ys[0].ndim - 1
            ys = [v.reshape(len(v), -1) for v in ys]
            targets = pack(ys, seqs.lengths, seqs.values.shape[1], dtype)
        n_outputs = targets.shape[-1]
        loss = self._new_loss() if reset else self._head_loss()
        if not scoring:
            loss.check_targets(targets if output == "last" else np.concatenate(ys))
        if reset:
            return targets, {
                "n_outputs_": n_outputs,
                "_n_head": loss.n_outputs(n_outputs),
                "_multi_target": bool(step_ndim),
            }
        if n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} targets, but {type(self).__name__} was fitted "
                f"with {self.n_outputs_}."
            )
        return targets, {}

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Run one epoch over X, y, starting from the current weights.

        Parameters
        ----------
        %(X)s
        y : array-like
            Targets, as for :meth:`fit`.
        %(sample_weight)s

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X, return_std=False):
        """Predict with the fitted model.

        In float64 whatever the model's ``dtype``.

        Parameters
        ----------
        %(X)s
        return_std : bool, default=False
            With ``loss="gaussian"``: also return the predicted standard
            deviation, as :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
            does.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_targets), or list
            The prediction: the mean (squared error, Poisson, Gaussian), the
            median (absolute error) or the quantile(s) (quantile; a list of
            levels adds a last axis, one per level, sorted). For
            ``output="sequence"`` one prediction per step, in X's form (NaN at
            padded steps of an array).
        y_std : ndarray or list, same shape as ``y``
            The standard deviation, with ``return_std=True`` only.
        """
        if return_std and self._target_settings["loss"] != "gaussian":
            raise ValueError(
                "return_std=True needs loss='gaussian'; this model was fitted "
                f"with loss={self._target_settings['loss']!r}."
            )
        if not return_std:
            return self._predict_with(X, self._prediction_from_raw, np.nan)
        # mean and standard deviation side by side on a last axis, which
        # output="sequence" unpacks as one value per step
        both = self._predict_with(
            X, lambda raw: np.stack(self._values(raw), axis=-1), np.nan
        )
        if isinstance(both, list):
            return [b[..., 0] for b in both], [b[..., 1] for b in both]
        return both[..., 0], both[..., 1]

    def _target_attrs(self, targets, seqs, sample_weight):
        # the sample-weighted mean and standard deviation of each target
        # column over the training rows (each valid step's, per step)
        n_outputs = targets.shape[-1]
        mean, scale = np.zeros(n_outputs), np.ones(n_outputs)
        w, rows = sample_weight, targets
        if self.output == "sequence":
            w, rows = _step_rows(seqs.lengths, sample_weight, targets)
        if self.normalize_y and self._new_loss().standardises and w.sum() > 0:
            w = w / w.sum()
            mean = w @ rows
            scale = _scale(w @ (rows - mean) ** 2, mean, len(rows))
        settings = {"loss": self.loss, "normalize_y": self.normalize_y}
        if self.loss == "quantile":
            settings["quantile"] = self.quantile
        return {"_y_mean": mean, "_y_scale": scale, "_target_settings": settings}

    def _training_targets(self, targets):
        return (targets - self._y_mean) / self._y_scale

    def _prediction_from_raw(self, raw):
        return self._values(raw)[0]

    def _affine_prediction(self):
        # the losses that predict each target as its output, in its units
        if type(self._head_loss()).predict is not HeadLoss.predict:
            return None
        return self._y_scale, self._y_mean, slice(None) if self._multi_target else 0

    def _predictions(self, raw):
        """The loss's predictions (..., n_targets, k) in the targets' units."""
        raw = raw.astype(np.float64)
        return self._head_loss().predict(raw, self._y_mean, self._y_scale)

    def _values(self, raw):
        """What predict returns, and the standard deviations (Gaussian) or
        None, shaped as the targets (plus the quantile levels' axis)."""
        pred = self._predictions(raw)
        settings = self._target_settings
        if settings["loss"] == "quantile" and np.ndim(settings["quantile"]):
            values, std = pred, None
        else:
            values = pred[..., 0]
            std = pred[..., 1] if settings["loss"] == "gaussian" else None
        if not self._multi_target:
            values = values[..., 0, :] if values.ndim == pred.ndim else values[..., 0]
            std = None if std is None else std[..., 0]
        return values, std

    _metric = staticmethod(r2_score)

    def _targets_from_raw(self, raw):
        # the point prediction, scored by R²: the mean, the median, or the
        # quantile level nearest 0.5
        pred = self._predictions(raw)
        if self._target_settings["loss"] == "quantile":
            levels = self._head_loss().levels
            return pred[..., int(np.argmin(np.abs(levels - 0.5)))]
        return pred[..., 0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags
