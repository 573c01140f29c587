"""Stream: predictions for sequences that arrive one step at a time."""

import os
from numbers import Integral

import numpy as np

from ._cells import CELLS
from ._classifier import SequenceClassifier
from ._engine import get_engine
from ._pipeline import scalers_and_estimator
from ._threads import blas_threads, map_threads


class Stream:
    """Predict as each step of many sequences arrives, carrying their state.

    A fitted model's prediction for a sequence so far, updated one step at a
    time: each call to :meth:`predict` takes the next step of every stream
    and costs one step of the network, where calling ``model.predict`` on
    each prefix would run the whole prefix again. Streams come and go
    (:meth:`add_streams`, :meth:`remove_streams`, :meth:`reset`) without
    touching the others' state. The steps run on the CPU, whatever the
    model's ``device``: one step is too little work for a GPU.

    Parameters
    ----------
    model : SequenceRegressor, SequenceClassifier or Pipeline
        A fitted estimator, or a fitted :class:`~sklearn.pipeline.Pipeline`
        of :class:`~skrnn.preprocessing.SequenceScaler` steps ending in one.
        Not bidirectional: a backward direction needs the steps to come.
    n_streams : int, default=1
        How many sequences are served at once, at first.

    Attributes
    ----------
    n_streams : int
        The streams now served.
    state_ : dict of str to ndarray
        The state of every stream, in PyTorch's layout: ``"h"`` of shape
        (num_layers, n_streams, hidden_size), and ``"c"`` for the LSTM. A
        copy: the stream keeps its own.

    See Also
    --------
    SequenceRegressor.predict, SequenceClassifier.predict : What each step
        returns, for the sequence so far.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skrnn import SequenceRegressor, Stream
    >>> X = np.random.RandomState(0).normal(size=(50, 8, 2))
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # a few epochs only
    ...     model = SequenceRegressor(hidden_size=4, max_iter=5, random_state=0)
    ...     model = model.fit(X, X[:, :, 0].sum(axis=1))
    >>> stream = Stream(model, n_streams=3)
    >>> for t in range(8):
    ...     y_t = stream.predict(X[:3, t])
    >>> bool(np.allclose(y_t, model.predict(X[:3]), rtol=1e-5))
    True
    """

    def __init__(self, model, n_streams=1):
        self.model = model
        scalers, estimator = _unpack(model)
        if not isinstance(n_streams, Integral) or n_streams < 0:
            raise ValueError(f"n_streams must be an int >= 0; got {n_streams!r}.")
        self._estimator = estimator
        net = estimator._network
        D = estimator._n_step_features
        shift_scale = [s._shift_scale() for s in scalers]
        self._shift, self._scale = (
            np.array([pair[i] for pair in shift_scale], dtype=np.float64).reshape(-1, D)
            for i in (0, 1)
        )
        affine = estimator._affine_prediction()
        n_outputs = net.architecture.n_outputs
        # predictions in one pass where they are the outputs scaled and shifted
        self._out_scale, self._out_shift, self._columns = affine or (
            np.ones(n_outputs),
            np.zeros(n_outputs),
            None,
        )
        parts = CELLS[net.spec.cell].state_parts
        self._state = np.zeros(
            (net.num_layers, parts, int(n_streams), net.hidden_size), dtype=net.dtype
        )
        self._build()

    def _build(self):
        """The compiled steps over the states: one per share of the streams,
        the shares run side by side when there are several."""
        net = self._estimator._network
        n = self.n_streams
        self._out = np.empty((n, len(self._out_scale)))
        shares = min(os.cpu_count() or 1, net.max_shares(n, 1))
        bounds = np.linspace(0, n, shares + 1).astype(int)
        self._rows = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        engine = get_engine("cpu")
        self._steppers = [
            net.stepper(
                engine,
                self._shift,
                self._scale,
                self._out_scale,
                self._out_shift,
                self._state[:, :, rows],
                self._out[rows],
            )
            for rows in self._rows
        ]

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_out", "_rows", "_steppers"):
            del state[name]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()

    @property
    def n_streams(self):
        return self._state.shape[2]

    @property
    def state_(self):
        state = {"h": self._state[:, 0].copy()}
        if self._state.shape[1] == 2:
            state["c"] = self._state[:, 1].copy()
        return state

    def predict(self, X_t):
        """Take the next step of every stream and predict.

        Parameters
        ----------
        X_t : array-like of shape (n_streams, n_features)
            The next step of each stream, in the order of the streams; with
            one stream, shape (n_features,) too.

        Returns
        -------
        y : ndarray of shape (n_streams,) or (n_streams, n_targets)
            What ``model.predict`` returns for each stream's sequence so far
            (for ``output="sequence"``, its newest step's prediction).
        """
        out = self._step(X_t)
        if self._columns is not None:
            return out[:, self._columns].copy()
        return self._estimator._prediction_from_raw(out)

    def predict_proba(self, X_t):
        """Take the next step of every stream and predict class probabilities.

        Parameters
        ----------
        X_t : array-like of shape (n_streams, n_features)
            As for :meth:`predict`.

        Returns
        -------
        proba : ndarray of shape (n_streams, n_classes)
            What ``model.predict_proba`` returns for each stream's sequence so
            far (for ``output="sequence"``, its newest step's).
        """
        if not isinstance(self._estimator, SequenceClassifier):
            raise AttributeError("predict_proba is for a classifier's stream")
        return self._estimator._proba(self._step(X_t))

    def reset(self, streams=None):
        """Start streams afresh, as sequences that have not begun.

        Parameters
        ----------
        streams : array-like of int, default=None
            The streams to reset; None: every one.

        Returns
        -------
        self : Stream
            The stream, with those states zero.
        """
        rows = slice(None) if streams is None else self._indices(streams)
        self._state[:, :, rows] = 0
        return self

    def add_streams(self, n):
        """Serve n more streams, after the others, from a zero state.

        Parameters
        ----------
        n : int
            How many, >= 0.

        Returns
        -------
        indices : ndarray of int
            The new streams' indices.
        """
        if not isinstance(n, Integral) or n < 0:
            raise ValueError(f"n must be an int >= 0; got {n!r}.")
        start = self.n_streams
        L, parts, _, H = self._state.shape
        new = np.zeros((L, parts, int(n), H), dtype=self._state.dtype)
        self._state = np.concatenate([self._state, new], axis=2)
        self._build()
        return np.arange(start, start + n)

    def remove_streams(self, indices):
        """Stop serving some streams; the others keep their state and order.

        Parameters
        ----------
        indices : array-like of int
            The streams to remove.

        Returns
        -------
        self : Stream
            The stream, with ``n_streams`` fewer by their number.
        """
        keep = np.ones(self.n_streams, dtype=bool)
        keep[self._indices(indices)] = False
        self._state = np.ascontiguousarray(self._state[:, :, keep])
        self._build()
        return self

    def _indices(self, indices):
        indices = np.asarray(indices)
        if indices.size == 0:
            return np.empty(0, dtype=np.intp)
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise ValueError(f"streams are given by int indices; got {indices!r}.")
        if ((indices < 0) | (indices >= self.n_streams)).any():
            raise ValueError(
                f"stream indices must be in [0, {self.n_streams}); got {indices!r}."
            )
        return indices

    def _step(self, X_t):
        """The head's outputs (see :meth:`_build`) after the step X_t; the
        states move on only if every value of X_t is finite."""
        steppers = self._steppers
        if len(steppers) == 1:
            bad = steppers[0].step(X_t)
            if bad == -2:  # not an array the step reads as it is
                bad = steppers[0].step(self._validate(X_t))
        else:
            x = self._validate(X_t)
            # every share checked before any moves on
            bad = -1
            if not np.isfinite(x).all():
                bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            else:
                with blas_threads.split(get_engine("cpu"), len(steppers)) as engine:
                    map_threads(
                        engine.workers,
                        lambda stepper, rows: stepper.step(x[rows], False),
                        steppers,
                        self._rows,
                    )
        if bad >= 0:
            raise ValueError(f"X_t has a NaN or infinite value for stream {bad}.")
        return self._out

    def _validate(self, X_t):
        """X_t as a C-contiguous (n_streams, n_features) float array; a
        clear error for anything that cannot be one."""
        D, N = self._shift.shape[1], self.n_streams
        x = np.asarray(X_t)
        if x.ndim == 1 and N == 1:
            x = x.reshape(1, -1)
        if x.shape != (N, D):
            raise ValueError(
                f"X_t must have shape ({N}, {D}): the next step of each of the "
                f"{N} streams, {D} features each; got {x.shape}."
            )
        if x.dtype.kind not in "biuf":
            raise ValueError(f"X_t must be numeric; got dtype {x.dtype}.")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        return np.ascontiguousarray(x)


def _unpack(model):
    """The scalers before the estimator, and the fitted estimator, which
    must read each sequence in one direction."""
    scalers, estimator = scalers_and_estimator(model, "Stream")
    if estimator._network.n_dirs == 2:
        raise ValueError(
            "A bidirectional model cannot predict step by step: its backward "
            "direction reads each sequence from its end."
        )
    return scalers, estimator
