"""SequenceRegressor: squared-error loss, R² score."""

import warnings

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import check_array

from ._base import BaseSequenceEstimator
from ._data import check_finite_targets, pack, split_step_targets
from ._losses import squared_error
from ._sklearn_compat import _fit_context


class SequenceRegressor(RegressorMixin, BaseSequenceEstimator):
    """Recurrent neural network regressor (Elman RNN, GRU or LSTM).

    A stack of recurrent layers read by a linear head, trained on the mean
    squared error / 2 (as :class:`~sklearn.neural_network.MLPRegressor`),
    either on one target per sequence (``output="last"``) or one per time
    step (``output="sequence"``). The recurrent kernels are compiled
    (Cython + BLAS); ``device="cuda"`` runs them on an NVIDIA GPU with CuPy.

    Parameters
    ----------
    cell : {"gru", "rnn", "lstm"}, default="gru"
        The recurrent cell: a GRU, an Elman RNN
        h' = act(W_ih x + b_ih + W_hh h + b_hh), or an LSTM as PyTorch's
        ``nn.LSTM`` (its head reads h).
    hidden_size : int, default=32
        Units per layer and direction.
    num_layers : int, default=1
        Stacked recurrent layers.
    bidirectional : bool, default=False
        Add a time-reversed direction to each layer; outputs are the
        concatenation [forward, backward].
    activation : {"tanh", "relu", "identity", "logistic"}, default="tanh"
        The Elman cell's nonlinearity; for the GRU the candidate's, "tanh"
        or "logistic" only; "tanh" for the LSTM.
    reset_after : bool, default=True
        GRU only. True: n = act(W_in x + b_in + r ⊙ (W_hn h + b_hn)) as in
        PyTorch and cuDNN; False: n = act(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
        as in Cho et al. (2014) and Darknet.
    use_bias : bool, default=True
        Biases in the recurrent layers (the head always has one).
    output : {"last", "sequence"}, default="last"
        "last": one target per sequence, read at its last valid step (for a
        backward direction, after it read the whole sequence). "sequence":
        one target per time step.
    solver : {"adam", "sgd", "rprop"}, default="adam"
        The optimiser. "rprop" (iRprop−, as ``torch.optim.Rprop``) always
        uses the full batch.
    learning_rate_init : float, default=1e-3
        Step size (Rprop: initial step).
    momentum : float, default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
        Nesterov momentum for SGD.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    alpha : float, default=1e-4
        L2 penalty on weights (not biases).
    clip_norm : float or None, default=5.0
        Clip the gradient's global L2 norm to this value; None: no clipping.
    batch_size : int or "auto", default="auto"
        Mini-batch size; "auto" is ``min(200, n_samples)``; larger values
        are clipped to ``n_samples``.
    max_iter : int, default=200
        Epochs.
    tol : float, default=1e-4
        Minimum improvement of the loss (or validation score).
    n_iter_no_change : int, default=10
        Stop after this many epochs without an improvement of ``tol``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop on its score (R²
        for the regressor, accuracy for the classifier) and keep the best
        weights. Ignored by ``partial_fit``.
    validation_fraction : float, default=0.1
        Share of the data held out for early stopping; the classifier's
        split is stratified when ``output="last"``.
    bptt_steps : int or None, default=None
        Truncated BPTT over windows of this many steps: the state is carried
        across windows, gradients stop at the start of their window. Not
        with ``bidirectional=True``.
    shuffle : bool, default=True
        Reshuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds weights, shuffling and the validation split; the same int
        gives bit-identical weights on the same machine and thread count.
    warm_start : bool, default=False
        ``fit`` continues from the current weights, with the optimiser's
        current settings (its state kept while the solver stays the same;
        for Rprop, also ``learning_rate_init``). Parameters that describe
        another network (``cell``, ``hidden_size``, ``num_layers``,
        ``bidirectional``, ``activation``, ``reset_after``, ``use_bias``,
        ``output``, ``dtype``) raise a ValueError; so does ``partial_fit``.
    verbose : int, default=0
        1: a line per epoch; 2: also a progress bar within each epoch.
    dtype : {"float32", "float64"} or None, default="float32"
        Precision of the weights and the computation, as in PyTorch and
        Keras; predictions and probabilities are float64 either way, and
        ``score`` compares them with the targets as given. None is
        scikit-learn's rule, the default up to skrnn 0.1: float32 input in
        float32, anything else in float64.
    device : {"cpu", "cuda"}, default="cpu"
        Where the kernels run. "cuda": an NVIDIA GPU through CuPy (``pip
        install skrnn[gpu]``; ``skrnn[gpu13]`` for CUDA 13), float32 or
        float64. ``fit`` and ``partial_fit`` then raise
        :class:`skrnn.CudaUnavailableError` (a ``RuntimeError``) before
        anything changes, saying whether CuPy or a usable device is missing.
        During a fit the parameters, the optimiser's state and the training
        set (when it takes at most a quarter of the free GPU memory; else
        batch by batch) stay on the GPU; ``coefs_`` and everything pickled
        are NumPy arrays. ``predict`` and ``score`` run on the GPU when one is
        usable and otherwise on the CPU, so a model fitted on a GPU loads
        and predicts on a machine without one.

    Attributes
    ----------
    coefs_ : dict of str to ndarray
        Live parameters in PyTorch's ``nn.RNN``/``nn.GRU``/``nn.LSTM`` + ``nn.Linear``
        state-dict layout (``weight_ih_l0``, ..., ``head.weight``,
        ``head.bias``); writing into them changes the model.
    n_features_in_ : int
        Columns of a fitted table, or features per step of fitted 3-D or
        list input.
    feature_names_in_ : ndarray of str
        Column names of a fitted DataFrame (only then).
    n_outputs_ : int
        Targets per sequence (or per step).
    n_iter_ : int
        Epochs run.
    t_ : int
        Samples seen during training.
    loss_ : float
        The last epoch's loss: squared error / 2 plus the L2 penalty. When
        training diverges before a call's first epoch completes, the loss
        at the weights kept. Training diverges when the loss or a weight
        becomes NaN or infinite, or the loss exceeds 1/eps times the largest
        before it in the call (eps: the machine epsilon of ``dtype``); the
        weights from before the update that caused it are kept, and a
        ConvergenceWarning says so.
    loss_curve_ : list of float
        The loss of each epoch.
    best_loss_ : float or None
        The lowest loss seen (None with early stopping).
    validation_scores_ : list of float or None
        R² on the validation set per epoch (early stopping only).
    best_validation_score_ : float or None
        The best of ``validation_scores_``.

    See Also
    --------
    SequenceClassifier : The classifier.
    sklearn.neural_network.MLPRegressor : The feed-forward model this follows.

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

    # The mixin's score would sit first in the MRO; ours scores every valid
    # step of output="sequence" models and takes every input form.
    score = BaseSequenceEstimator.score

    def _loss(self, z, y, w, xp=np):
        # the targets stay float64 (score compares with them as given); the
        # loss is computed in the model's precision
        return squared_error(z, y.astype(z.dtype, copy=False), w, xp=xp)

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
        if reset:
            return targets, {
                "n_outputs_": n_outputs,
                "_n_head": n_outputs,
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
        X : array-like or list of array-like
            Sequences, as for :meth:`fit`.
        y : array-like
            Targets, as for :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative per-sample weights.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predict with the fitted model.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences in any form ``fit`` accepts.

        Returns
        -------
        y : ndarray or list of ndarray, float64
            (n_samples,) or (n_samples, n_targets) for ``output="last"``; for
            ``output="sequence"`` one prediction per step, in X's form (NaN at
            padded steps of an array).
        """
        seqs, raw = self._raw_predict(X)
        raw = raw.astype(np.float64)
        if not self._multi_target:
            raw = raw[..., 0]
        return self._in_x_form(raw, seqs, fill=np.nan)

    def _score_targets(self, seqs, targets, sample_weight):
        raw = self._forward(seqs)
        if self._output == "last":
            return r2_score(targets, raw, sample_weight=sample_weight)
        valid = np.arange(raw.shape[1])[None, :] < seqs.lengths[:, None]
        weights = np.broadcast_to(sample_weight[:, None], valid.shape)[valid]
        return r2_score(targets[valid], raw[valid], sample_weight=weights)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
