"""BaseSequenceEstimator: parameters, validation and the training loop.

The public estimators only add their loss, their target encoding and their
``predict``; everything else — epochs, mini-batches, solvers, clipping, L2,
early stopping, ``partial_fit``, ``warm_start``, divergence handling and
progress output — lives here once.
"""

import copy
import time
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.validation import check_is_fitted

from . import optim
from ._cells import ACTIVATIONS, CELLS, CellSpec
from ._data import SequenceInputMixin, Sequences, unpack, warn_if_channels_first
from ._device import optimizer_state_in, place_training_data, to_host
from ._docs import fill_doc
from ._engine import CudaUnavailableError, get_engine
from ._network import Network, take
from ._progress import progress_bar
from ._sklearn_compat import (
    Interval,
    InvalidParameterError,
    StrOptions,
    _check_sample_weight,
    _fit_context,
)
from ._threads import blas_threads
from ._update import add_penalty, update


class _Run(NamedTuple):
    """What the epochs of one call to ``fit`` or ``partial_fit`` share."""

    engine: object  # the Engine, with its workers for this call
    params: object  # DeviceParams: the parameters where the engine computes
    data: tuple  # the training set's (values, targets) where the engine reads them
    seqs: Sequences  # the training set on the host
    targets: np.ndarray
    sample_weight: np.ndarray
    train: np.ndarray  # the samples trained on
    val: object  # (sequences, targets, weights) for early stopping, or None
    previous: np.ndarray  # the weights before the latest update


@fill_doc()
class BaseSequenceEstimator(SequenceInputMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of the recurrent estimators.

    Subclasses provide ``_head_loss``, ``_validate_targets``,
    ``_targets_from_raw`` and ``_metric``, and name in ``_constant_output``
    the best constant prediction, for the warning of a model no better.
    """

    _constant_output = "a constant"
    # the settings of the targets that training continues with (a first fit
    # sets them), checked as the network's parameters are
    _target_settings = {}

    _parameter_constraints = {
        "cell": [StrOptions(set(CELLS))],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "num_layers": [Interval(Integral, 1, None, closed="left")],
        "bidirectional": ["boolean"],
        "activation": [StrOptions(set().union(*ACTIVATIONS.values()))],
        "reset_after": ["boolean"],
        "use_bias": ["boolean"],
        "output": [StrOptions({"last", "sequence"})],
        "solver": [StrOptions(set(optim.SOLVERS))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "clip_norm": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "bptt_steps": [Interval(Integral, 1, None, closed="left"), None],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "dtype": [StrOptions({"float32", "float64"}), None],
        "device": [StrOptions({"cpu", "cuda"})],
    }

    def __init__(
        self,
        cell="gru",
        hidden_size=32,
        num_layers=1,
        bidirectional=False,
        activation="tanh",
        reset_after=True,
        use_bias=True,
        output="last",
        solver="adam",
        learning_rate_init=1e-3,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        alpha=1e-4,
        clip_norm=5.0,
        batch_size="auto",
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        bptt_steps=None,
        shuffle=True,
        random_state=None,
        warm_start=False,
        verbose=0,
        dtype="float32",
        device="cpu",
    ):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.activation = activation
        self.reset_after = reset_after
        self.use_bias = use_bias
        self.output = output
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.alpha = alpha
        self.clip_norm = clip_norm
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.bptt_steps = bptt_steps
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.dtype = dtype
        self.device = device

    # ----------------------------------------------------------------- hooks
    @abstractmethod
    def _head_loss(self):
        """The loss of the head's raw outputs, a :class:`skrnn._losses.HeadLoss`."""

    @abstractmethod
    def _validate_targets(self, y, seqs, reset, classes=None, scoring=False):
        """Encode y for the network: ``(targets, attributes set on reset)``.

        ``scoring``: y is only scored, so a classifier encodes labels it was
        not fitted on as wrong predictions instead of refusing them.
        """

    def _target_attrs(self, targets, seqs, sample_weight):
        """The attributes a first fit learns from its weighted targets (the
        regressor's standardisation); none by default."""
        return {}

    def _training_targets(self, targets):
        """The targets as the head learns them (the regressor's standardised
        ones); those of ``_validate_targets`` by default."""
        return targets

    @abstractmethod
    def _targets_from_raw(self, raw):
        """The network's raw outputs encoded as ``_validate_targets``
        encodes targets, for ``_metric``."""

    _metric = None  # score(targets, predictions, sample_weight=...) -> float

    @abstractmethod
    def _prediction_from_raw(self, raw):
        """What ``predict`` returns for the network's raw outputs (N, ..., O)."""

    def _affine_prediction(self):
        """``(scale, shift, columns)`` where ``predict`` returns
        ``(raw * scale + shift)[..., columns]`` (raw: the network's outputs),
        so that a compiled step can predict in one pass; None otherwise."""
        return None

    def _target_weights(self, targets, sample_weight, y_attrs, incremental):
        """Factors of the sample weights that the targets decide (the
        classifier's ``class_weight``); ``y_attrs`` are those of a first fit."""
        return 1.0

    # ------------------------------------------------------------ validation
    def _check_param_combination(self):
        allowed = ACTIVATIONS[self.cell]
        if self.activation not in allowed:
            raise InvalidParameterError(
                f"The 'activation' parameter of {type(self).__name__} must be one of "
                f"{allowed} when cell={self.cell!r}. Got {self.activation!r} instead."
            )
        if self.bidirectional and self.bptt_steps is not None:
            raise InvalidParameterError(
                f"The 'bptt_steps' parameter of {type(self).__name__} must be None "
                "when bidirectional=True: a backward direction needs the whole "
                f"sequence. Got {self.bptt_steps!r} instead."
            )

    def _get_engine(self):
        """The engine for ``self.device`` and the network's cell.

        A model with ``device="cuda"`` predicts on the CPU where CuPy or a
        usable GPU is missing, so that a model fitted on a GPU loads and
        predicts anywhere; ``fit`` raises instead (see :meth:`_fit`).
        """
        if self.device == "cuda":
            try:
                return get_engine("cuda")
            except CudaUnavailableError:
                pass
        return get_engine("cpu")

    # ------------------------------------------------------------- training
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        X_val=None,
        y_val=None,
        sample_weight_val=None,
    ):
        """Fit the model to sequences X and targets y.

        Parameters
        ----------
        X : array-like or list of array-like
            A table (n_samples, n_timesteps) of univariate sequences, a 3-D
            array (n_samples, n_timesteps, n_features) whose trailing all-NaN
            steps are padding, or a list of arrays, pandas Series or
            DataFrames (T_i,) or (T_i, n_features).
        y : array-like
            One target per sequence (``output="last"``) or per valid step
            (``output="sequence"``).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative per-sample weights; an integer weight counts as
            repetitions.
        X_val, y_val : array-like, default=None
            A validation set for early stopping (``early_stopping=True``), in
            any form X and y take, used instead of the ``validation_fraction``
            split: ``validation_scores_`` are its scores, and the weights kept
            are those of its best epoch. In a :class:`~sklearn.pipeline.Pipeline`,
            ``transform_input=["X_val"]`` passes it through the steps before.
        sample_weight_val : array-like of shape (n_val_samples,), default=None
            Weights of the validation samples.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        validation = (X_val, y_val, sample_weight_val)
        return self._fit(X, y, sample_weight, incremental=False, validation=validation)

    def _fit(self, X, y, sample_weight, incremental, classes=None, validation=None):
        self._check_param_combination()
        reset = not (incremental or self.warm_start) or not hasattr(self, "_network")
        if not reset:
            self._check_same_network()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                "is None."
            )
        # Everything is validated before anything on self changes.
        seqs, x_attrs = self._validate_X(X, reset, dtype=self.dtype)
        targets, y_attrs = self._validate_targets(y, seqs, reset, classes)
        if sample_weight is None:  # what _check_sample_weight makes of it
            sample_weight = np.ones(len(seqs.lengths))
        else:
            sample_weight = _check_sample_weight(
                sample_weight, seqs.values, dtype=np.float64, ensure_non_negative=True
            )
        sample_weight = sample_weight * self._target_weights(
            targets, sample_weight, y_attrs, incremental
        )
        if reset:
            y_attrs.update(self._target_attrs(targets, seqs, sample_weight))
        given_val = None
        if validation is not None and any(v is not None for v in validation[:2]):
            given_val = self._validation_set(*validation, {**x_attrs, **y_attrs})
        if self.device == "cuda":
            get_engine("cuda")  # CudaUnavailableError, naming what is missing
        if reset:
            warn_if_channels_first(seqs)
            self._set_input_attrs({**x_attrs, **y_attrs, "_output": self.output})
            self._initialize(early_stopping=self.early_stopping and not incremental)
        else:
            self._continue_optimizer()
            if not incremental and self.early_stopping != (
                self.validation_scores_ is not None
            ):
                self._start_stopping_rule(self.early_stopping)
        train, val = np.arange(len(seqs.lengths)), given_val
        if self.early_stopping and not incremental and val is None:
            train, held_out = self._validation_split(seqs, targets)
            val = (
                Sequences(seqs.values[held_out], seqs.lengths[held_out], seqs.form),
                targets[held_out],
                sample_weight[held_out],
            )
        engine, n_steps = self._get_engine(), seqs.lengths.max()
        split = self._network.training_split(
            self._batch_size(len(train)),
            n_steps,
            self._network.training_passes(
                engine, self._head_loss(), n_steps, self.bptt_steps
            ),
        )
        with blas_threads.split(engine, *split) as engine:
            self._train(
                engine,
                seqs,
                self._training_targets(targets),
                sample_weight,
                train,
                val,
                incremental,
            )
        return self

    def _initialize(self, early_stopping):
        self._random_state = check_random_state(self.random_state)
        spec = CellSpec(self.cell, self.activation, self.reset_after, self.use_bias)
        self._network = Network(
            spec,
            input_size=self._n_step_features,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            output=self._output,
            n_outputs=self._n_head,
            dtype=self._dtype,
            random_state=self._random_state,
        )
        self.coefs_ = self._network.coefs
        self._optimizer = self._make_optimizer()
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._start_stopping_rule(early_stopping)

    def _start_stopping_rule(self, early_stopping):
        """The attributes of the stopping rule in use, as they are before any
        epoch: validation scores with early stopping, the best loss without
        (MLP's convention). A warm fit that turns early stopping on or off
        starts them afresh."""
        self._no_improvement_count = 0
        if early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _check_same_network(self):
        """Refuse to continue training (``warm_start``, ``partial_fit``) when a
        parameter now asks for another network than the fitted one, or for
        targets treated otherwise (the regressor's ``loss``, ``normalize_y``):
        a ValueError, before anything changes."""
        net = self._network
        fitted = {
            "cell": net.spec.cell,
            "hidden_size": net.hidden_size,
            "num_layers": net.num_layers,
            "bidirectional": net.n_dirs == 2,
            "activation": net.spec.activation,
            "use_bias": net.spec.use_bias,
            "output": self._output,
        }
        if net.spec.cell == "gru":
            fitted["reset_after"] = net.spec.reset_after
        if self.dtype is not None:  # None: the fitted input's precision
            fitted["dtype"] = self._dtype
        fitted.update(self._target_settings)
        changed = [
            f"{name}={getattr(self, name)!r} (fitted: {value!r})"
            for name, value in fitted.items()
            if not _same(getattr(self, name), value)
        ]
        if changed:
            raise ValueError(
                f"{type(self).__name__} was fitted with another network (or "
                "targets) than its parameters now describe: "
                f"{', '.join(changed)}. warm_start and partial_fit continue "
                "training the fitted network; set those parameters back, or fit "
                "with warm_start=False to train a new one."
            )

    def _continue_optimizer(self):
        """The optimiser for the current settings, when training continues.

        The same solver keeps its state (Adam's moments and step count, SGD's
        velocity) and takes new settings from the next update, unless the
        optimizer says the new settings start it afresh (Rprop's step sizes,
        which ``learning_rate_init`` sets); another solver starts afresh.
        """
        old, new = self._optimizer, self._make_optimizer()
        if type(old) is type(new) and new._continues(old):
            new.state = old.state
        self._optimizer = new

    def _make_optimizer(self):
        return optim.SOLVERS[self.solver]._for_estimator(self)

    def _validation_set(self, X_val, y_val, sample_weight_val, attrs):
        """(sequences, targets, weights) of a validation set given to ``fit``,
        checked as X and y are, against the model as this fit leaves it
        (``attrs``: the attributes a first fit sets, else empty)."""
        if X_val is None or y_val is None:
            given, missing = ("X_val", "y_val") if y_val is None else ("y_val", "X_val")
            raise ValueError(f"{given} is provided, but {missing} was not provided.")
        if not self.early_stopping:
            raise ValueError(
                "X_val and y_val are for early stopping: set early_stopping=True "
                "to use them."
            )
        fitted = copy.copy(self)  # the checks read the fitted attributes
        fitted._set_input_attrs({**attrs, "_output": self.output} if attrs else {})
        seqs, _ = fitted._validate_X(X_val, reset=False)
        targets, _ = fitted._validate_targets(y_val, seqs, reset=False)
        weights = _check_sample_weight(
            sample_weight_val, seqs.values, dtype=np.float64, ensure_non_negative=True
        )
        return seqs, targets, weights

    def _validation_split(self, seqs, targets):
        idx = np.arange(len(seqs.lengths))
        stratify = targets if self._stratify_split() else None
        train, val = train_test_split(
            idx,
            random_state=self._random_state,
            test_size=self.validation_fraction,
            stratify=stratify,
        )
        if len(val) < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        return train, val

    def _stratify_split(self):
        return False

    def _batch_size(self, n_samples):
        if self._optimizer._full_batch:
            return n_samples
        if self.batch_size == "auto":
            return min(200, n_samples)
        return min(self.batch_size, n_samples)

    def _train(self, engine, seqs, targets, sample_weight, train, val, incremental):
        """Run ``max_iter`` epochs (one when ``incremental``) on the samples ``train``.

        On an engine with its own memory (the GPU), the parameters, the
        optimiser's state and, when it fits, the training set stay there
        for the whole call; each epoch brings back only its loss. An
        interrupted epoch (KeyboardInterrupt) is rolled back: the model
        keeps what the last completed epoch left.
        """
        data = place_training_data(engine, seqs.values, targets)
        with (
            self._network.on_device(engine) as params,
            optimizer_state_in(self._optimizer, engine.memory),
            engine.workspace(self._network.rooms),
        ):
            run = _Run(
                engine=engine,
                params=params,
                data=data,
                seqs=seqs,
                targets=targets,
                sample_weight=sample_weight,
                train=train,
                val=val,
                previous=params.flat.copy(),
            )
            self._train_epochs(run, incremental)

    def _train_epochs(self, run, incremental):
        """The epochs of :meth:`_train`."""
        params = run.params
        total_weight = float(run.sample_weight[run.train].sum())
        epoch_start = params.flat.copy()
        previous_start = params.flat.copy()
        best_flat = params.flat.copy() if run.val is not None else None
        converged = incremental  # partial_fit runs one epoch and never warns
        first_epoch = len(self.loss_curve_)
        # a fit's loss while the model is as good as a constant output
        constant = None if incremental else self._constant_loss(run)
        learned = True
        # On the host, checking every step for divergence costs nothing; on a
        # device it would make the host wait for the device at every step.
        deferred = run.engine.memory is not None
        n_epochs = 1 if incremental else self.max_iter
        for epoch in range(n_epochs):
            start = time.perf_counter()
            epoch_start[...] = params.flat
            previous_start[...] = run.previous
            snapshot = (
                epoch_start,
                previous_start,
                copy.deepcopy(self._optimizer.state),
                self._random_state.get_state(),
            )
            # the largest loss of this call's epochs bounds the next (see _step)
            peak = max(self.loss_curve_[first_epoch:], default=0.0)
            try:
                # Overflow is expected when training diverges: it is detected
                # (non-finite loss or weights) and handled, not warned about.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    loss = self._epoch(run, peak, checked=not deferred)
                    if deferred and not np.isfinite(loss):
                        # A step diverged (or the sum overflowed): run the
                        # epoch again from its start, checking each step, to
                        # stop where the host would.
                        self._roll_back(run, snapshot)
                        loss = self._epoch(run, peak, checked=True)
            except KeyboardInterrupt:
                self._roll_back(run, snapshot)
                raise
            if loss is None:
                if len(self.loss_curve_) == first_epoch:
                    # no epoch of this call completed: the loss of the weights kept
                    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                        self.loss_ = self._loss_at(run)
                _warn_diverged()
                converged = True
                break
            self.n_iter_ += 1
            self.t_ += len(run.train)
            self.loss_ = loss / total_weight if total_weight > 0 else 0.0
            self.loss_curve_.append(self.loss_)
            # No step of the epoch checks its last update: the validation set
            # does before it is scored, else the first training batch before
            # the call ends with it.
            diverged, raw_val = False, None
            if run.val is not None:
                raw_val, diverged = self._validation_outputs(run)
            learned = not _near_constant(self.loss_, constant)
            stop = self._update_no_improvement_count(run, best_flat, raw_val, learned)
            if run.val is None and (stop or epoch == n_epochs - 1):
                peak = max(self.loss_curve_[first_epoch:])
                diverged = not self._last_update_sound(run, peak)
            if self.verbose:
                score = (
                    f", validation score = {self.validation_scores_[-1]:.6f}"
                    if run.val is not None
                    else ""
                )
                print(
                    f"Epoch {self.n_iter_}, loss = {self.loss_:.8f}{score}, "
                    f"{time.perf_counter() - start:.2f} s"
                )
            if diverged:
                _warn_diverged()
            if stop or diverged:
                converged = True
                break
        if not converged:
            message = (
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                "reached and the optimization hasn't converged yet."
            )
            if not learned:
                message += (
                    f" The loss, {self.loss_:.6g}, is not {_CONSTANT_MARGIN:.0%} "
                    f"below that of a constant output ({self._constant_output}), "
                    f"{constant:.6g}: the model predicts no better than that "
                    "constant. Try more epochs (max_iter), a larger "
                    "learning_rate_init or a smaller batch_size, and scale the "
                    "features (SequenceScaler)."
                )
            warnings.warn(message, ConvergenceWarning)
        if run.val is not None:
            params.flat[...] = best_flat

    def _roll_back(self, run, snapshot):
        """Put training back to the start of an epoch, as ``snapshot`` (the
        weights, ``run.previous``, the optimiser's state and the random
        state) holds it; the snapshot stays intact for another roll-back."""
        flat, previous, optimizer_state, random_state = snapshot
        run.params.flat[...] = flat
        run.previous[...] = previous
        self._optimizer.state = copy.deepcopy(optimizer_state)
        self._random_state.set_state(random_state)

    def _epoch(self, run, peak, *, checked):
        """One pass over ``run.train``: the weighted sum of the batches' losses.

        ``peak`` is the largest loss seen before the epoch in this call (0
        for none). ``checked``: each step is checked for divergence and None
        returned at the first that diverges (see :meth:`_step`); unchecked,
        nothing waits for the engine until the epoch's loss, NaN if a step
        diverged, comes back.
        """
        xp = run.engine.xp
        n_samples = len(run.train)
        train = run.train
        if self.shuffle:
            train = train[self._random_state.permutation(n_samples)]
        if checked and self.verbose < 2:  # no progress bar to draw per batch
            compiled, loss = self._compiled_epoch(run, train, peak)
            if compiled:
                return loss
        batches = list(gen_batches(n_samples, self._batch_size(n_samples)))
        accumulated = 0.0
        peak = xp.asarray(peak)
        with progress_bar(len(batches), self.verbose >= 2) as advance:
            for batch in batches:
                idx = train[batch]
                loss = self._step(run, idx, peak, checked=checked)
                if loss is None:
                    return None
                accumulated = accumulated + loss * float(run.sample_weight[idx].sum())
                peak = xp.maximum(peak, loss)
                advance()
        return float(to_host(run.engine, accumulated))

    def _compiled_epoch(self, run, train, peak):
        """:meth:`_epoch`'s steps over the batches of ``train``, checked, in
        one call of the network's compiled epoch, where it has one for this
        fit: ``(True, loss)``, else ``(False, None)``. Each step is
        :meth:`_step`'s, to rounding (the batches' weights are summed in
        another order, and a batch may be summed in two shares where a step
        takes it whole: see :func:`skrnn._network._share_work`)."""
        net, params = self._network, run.params
        size = self._batch_size(len(train))
        lengths = run.seqs.lengths
        state = self._optimizer._state_for("coefs", params.flat)
        if (
            run.engine.update_kernels is None
            or not net.compiles_epochs(
                run.engine, self._head_loss(), self.bptt_steps, lengths.max()
            )
            or any(
                a.shape != params.flat.shape
                for a in state.values()
                if hasattr(a, "shape")
            )
        ):
            return False, None
        bounds = np.append(np.arange(0, len(train), size), len(train))
        steps = self._optimizer._compiled_steps(state, len(bounds) - 1)
        if steps is None:
            return False, None
        # each batch's sequences longest first, as Network.loss_grad sorts them
        batch = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
        order = train[np.lexsort((-lengths[train], batch))]
        w = run.sample_weight[order]
        batch_weights = np.add.reduceat(w, bounds[:-1])
        rows = batch_weights
        if self._output == "sequence":
            rows = np.add.reduceat(w * lengths[order], bounds[:-1])
        weights = np.empty(len(run.sample_weight), dtype=net.dtype)
        weights[order] = w / np.repeat(rows, np.diff(bounds))
        solver, a, b, constants = steps
        loss, taken = net.epoch(
            run.engine,
            run.data,
            lengths,
            order,
            bounds,
            weights,
            self._head_loss(),
            (
                batch_weights,
                params.flat,
                params.grad,
                params.weight_mask,
                run.previous,
                self.alpha,
                -1.0 if self.clip_norm is None else self.clip_norm,
                peak,
                np.finfo(params.flat.dtype).eps,
                solver,
                a,
                b,
                constants,
            ),
        )
        self._optimizer._count_steps(state, taken)
        return True, loss

    def _step(self, run, idx, peak, *, checked):
        """One update on the samples ``idx``: the batch's loss.

        The divergence rule: when the loss or the gradient at the current
        weights is not finite, or the loss is over 1/eps times ``peak`` (eps:
        the weights' machine epsilon, below whose share of it every earlier
        loss is rounding), the update that led to these weights is undone
        (``run.previous`` holds the weights from before it); an update that
        makes a weight not finite is undone. ``checked``: the rule is
        applied here, and None returned when it undoes an update. Unchecked,
        the update is made whatever happens and the loss is NaN where the
        rule would have applied.
        """
        params, xp = run.params, run.engine.xp
        if run.sample_weight[idx].sum() <= 0:
            return 0.0  # only zero-weight samples: nothing to learn from
        loss, grad_check = self._loss_grad(run, idx)
        sound = _loss_sound(loss, peak, params.flat.dtype, xp) & grad_check[0]
        if checked and not to_host(run.engine, sound):
            params.flat[...] = run.previous
            return None
        updated = self._update(run, grad_check)
        if checked:
            if not to_host(run.engine, updated):
                params.flat[...] = run.previous
                return None
            return loss
        return xp.where(sound & updated, loss, np.nan)

    def _validation_outputs(self, run):
        """The network's raw outputs on the validation set after an epoch,
        and whether its last update was undone: where one of them is not
        finite, as the divergence rule does (``run.previous`` holds the
        weights from before the update), and they are computed again. The
        outputs are None where they still are not all finite."""
        seqs = run.val[0]
        raw = self._network.forward(run.engine, seqs.values, seqs.lengths)
        undone = not np.isfinite(raw).all()
        if undone:
            run.params.flat[...] = run.previous
            raw = self._network.forward(run.engine, seqs.values, seqs.lengths)
            if not np.isfinite(raw).all():
                raw = None
        return raw, undone

    def _last_update_sound(self, run, peak):
        """The divergence rule of :meth:`_step` for the weights that the last
        update of a call leaves, which no later step checks: the data loss
        of :meth:`_probe_loss` must be finite and at most 1/eps times
        ``peak``, the call's largest epoch loss. An update that fails is
        undone."""
        sound = _loss_sound(self._probe_loss(run), peak, run.params.flat.dtype, np)
        if not sound:
            run.params.flat[...] = run.previous
        return bool(sound)

    def _probe_loss(self, run):
        """The data loss (no penalty) of the training set's first batch at
        the current weights, from a forward pass alone (a third of a step's
        work): the compiled network pass's where the engine has one, else
        the network's forward pass and the head's loss; NaN where a raw
        output is not finite."""
        idx = run.train[: self._batch_size(len(run.train))]
        lengths, w = run.seqs.lengths[idx], run.sample_weight[idx]
        values = take(run.engine.xp, run.data[0], idx)  # where training reads them
        if w.sum() > 0:
            loss = self._network.data_loss(
                run.engine,
                values,
                lengths,
                take(run.engine.xp, run.data[1], idx),
                self._batch_weights(w, lengths),
                self._head_loss(),
                self.bptt_steps,
            )
            if loss is not None:
                return float(loss)
        raw = self._network.forward(run.engine, values, lengths)
        targets = run.targets[idx]
        if self._output == "sequence":
            w, raw, targets = _step_rows(lengths, w, raw, targets)
        if not np.isfinite(raw).all():
            return np.nan
        if w.sum() <= 0:
            return 0.0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return float(self._head_loss()(raw, targets, w / w.sum())[0])

    def _update(self, run, grad_check):
        """Clip the gradient, keep the weights in ``run.previous`` and take
        the optimiser's step; whether every weight is still finite."""
        return update(
            self._optimizer,
            run.params,
            run.previous,
            self.clip_norm,
            grad_check,
            run.engine,
        )

    def _batch_weights(self, w, lengths):
        """A batch's sample weights ``w`` (of positive sum) divided by its
        total weight in the head's rows (a row per sequence, or per valid
        step), in the network's dtype: the loss is their weighted mean."""
        rows = w.sum() if self._output == "last" else (w * lengths).sum()
        return (w / rows).astype(self._network.dtype)

    def _loss_grad(self, run, idx):
        """The loss of the samples ``idx`` (of positive total weight) at the
        current weights, L2 penalty included, and what :func:`update` needs to
        know of its gradient, which goes into ``run.params.grad``."""
        params, xp = run.params, run.engine.xp
        values, targets = run.data
        lengths = run.seqs.lengths[idx]
        w = run.sample_weight[idx]
        loss = self._network.loss_grad(
            run.engine,
            take(xp, values, idx),
            lengths,
            take(xp, targets, idx),
            self._batch_weights(w, lengths),
            self._head_loss(),
            self.bptt_steps,
        )
        # L2 on weights (not biases), scaled as MLP's: alpha / 2 * ||W||^2 / n
        penalty_scale = self.alpha / w.sum()
        penalty, grad_check = add_penalty(params, penalty_scale, run.engine)
        return loss + 0.5 * penalty_scale * penalty, grad_check

    def _loss_at(self, run):
        """The loss over ``run.train`` at the current weights, as an epoch
        computes it but with no update."""
        total, weight = 0.0, 0.0
        for batch in gen_batches(len(run.train), self._batch_size(len(run.train))):
            idx = run.train[batch]
            w = float(run.sample_weight[idx].sum())
            if w > 0:
                loss = float(to_host(run.engine, self._loss_grad(run, idx)[0]))
                total, weight = total + loss * w, weight + w
        return total / weight if weight > 0 else 0.0

    def _constant_loss(self, run):
        """The data loss of the best constant output over the training set
        (see :meth:`skrnn._losses.HeadLoss.constant_loss`)."""
        idx = run.train
        w, targets = run.sample_weight[idx], run.targets[idx]
        if self._output == "sequence":
            w, targets = _step_rows(run.seqs.lengths[idx], w, targets)
        if w.sum() <= 0:
            return 0.0
        return self._head_loss().constant_loss(targets, w / w.sum())

    def _update_no_improvement_count(self, run, best_flat, raw_val, learned=True):
        """MLP's stopping rule; returns whether to stop. ``raw_val``: the
        network's raw outputs on the validation set (see
        :meth:`_validation_outputs`); None scores -inf. An epoch after
        which the model has not ``learned`` (its loss is not below that of a
        constant output by the margin) does not count: a long sequence's
        loss can stay on that plateau for tens of epochs before it falls,
        and stopping there keeps a useless model."""
        if run.val is not None:
            score = -np.inf
            if raw_val is not None:
                score = self._score_targets(*run.val, raw=raw_val)
            self.validation_scores_.append(score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                best_flat[...] = run.params.flat
        else:
            # best_loss_ is None after a fit with early stopping (MLP's convention)
            best = np.inf if self.best_loss_ is None else self.best_loss_
            if self.loss_curve_[-1] > best - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(best, self.loss_curve_[-1])
        if not learned:
            self._no_improvement_count = 0
        return self._no_improvement_count > self.n_iter_no_change

    # ------------------------------------------------------------ inference
    def _predict_with(self, X, transform, fill):
        """``transform`` of the network's raw outputs for X, as returned: per
        sequence as they are; per step (``output="sequence"``) in the form X
        came in, ``fill`` at padding."""
        check_is_fitted(self)
        seqs, _ = self._validate_X(X, reset=False)
        values = transform(self._forward(seqs))
        return values if self._output == "last" else unpack(values, seqs, fill)

    def _forward(self, seqs):
        """The network's raw outputs for validated sequences."""
        engine = self._get_engine()
        work = self._network.forward_work(*seqs.values.shape[:2])
        with blas_threads.split(engine, work=work) as engine, engine.workspace():
            return self._network.forward(engine, seqs.values, seqs.lengths)

    def score(self, X, y, sample_weight=None):
        """R² (regressor) or accuracy (classifier) on X, y.

        With ``output="sequence"`` every valid time step counts as one row,
        weighted by its sample's weight. A classifier counts a label it was
        not fitted on as a wrong prediction.

        Parameters
        ----------
        %(X)s
        y : array-like
            True targets.
        %(sample_weight)s

        Returns
        -------
        score : float
            R² (regressor) or accuracy (classifier).
        """
        check_is_fitted(self)
        seqs, _ = self._validate_X(X, reset=False)
        targets, _ = self._validate_targets(y, seqs, reset=False, scoring=True)
        sample_weight = _check_sample_weight(
            sample_weight, seqs.values, dtype=np.float64
        )
        return self._score_targets(seqs, targets, sample_weight)

    def _score_targets(self, seqs, targets, sample_weight, raw=None):
        """``_metric`` of the current model on encoded targets; per step,
        every valid step is a row with its sample's weight. ``raw``: the
        network's raw outputs for ``seqs``, when already computed."""
        raw = self._forward(seqs) if raw is None else raw
        predicted = self._targets_from_raw(raw)
        if self._output == "last":
            return self._metric(targets, predicted, sample_weight=sample_weight)
        weights, targets, predicted = _step_rows(
            seqs.lengths, sample_weight, targets, predicted
        )
        return self._metric(targets, predicted, sample_weight=weights)

    def __sklearn_is_fitted__(self):
        # check_is_fitted's default scans every attribute's name
        return hasattr(self, "_network")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def _same(a, b):
    """Whether two values of a parameter are equal; sequences (the quantile
    levels) element by element."""
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(
        b, (list, tuple, np.ndarray)
    ):
        return np.shape(a) == np.shape(b) and np.array_equal(a, b)
    return a == b


# A loss not this share below a constant output's (the class prior's, the
# mean's) is that of a model no better than that constant.
_CONSTANT_MARGIN = 0.01


def _near_constant(loss, constant):
    """Whether ``loss`` is not below ``constant``, the loss of a constant
    output, by the margin of its size (a likelihood's loss may be negative;
    None: not known, as in ``partial_fit`` or for a loss that does not say;
    0: targets that a constant fits, where the margin says nothing)."""
    return bool(constant) and loss >= constant - _CONSTANT_MARGIN * abs(constant)


def _warn_diverged():
    warnings.warn(
        "Training diverged (the loss or a weight became NaN or infinite, or the "
        "loss grew past what the weights' precision can compare); stopped and "
        "kept the weights from before the update that caused it. Try a smaller "
        "learning_rate_init.",
        ConvergenceWarning,
    )


def _loss_sound(loss, peak, dtype, xp):
    """The divergence rule's test of a loss: finite, and at most 1/eps times
    ``peak`` (eps: ``dtype``'s machine epsilon; no bound while ``peak`` is 0),
    below whose share of it every earlier loss is rounding."""
    return xp.isfinite(loss) & ((peak <= 0) | (loss <= peak / np.finfo(dtype).eps))


def _step_rows(lengths, weights, *arrays):
    """Every valid step of (N, T, ...) ``arrays`` as a row: their valid
    steps, each with its sequence's weight from ``weights`` (N,), first."""
    valid = np.arange(arrays[0].shape[1])[None, :] < lengths[:, None]
    rows = np.broadcast_to(weights[:, None], valid.shape)[valid]
    return (rows, *(a[valid] for a in arrays))
