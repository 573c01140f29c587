"""Recurrent layers: one direction of one layer, as building blocks.

For people who want to assemble or train a network by hand, as Darknet's
RNN/GRU layers and the "TimeRNN" layer of *Deep Learning from Scratch 2*
offer it: parameters and gradients in dicts, ``forward`` and ``backward``
over a whole batch of sequences, and a ``stateful`` mode for truncated BPTT
over a long stream. They run the compiled CPU engine's kernels, which the
estimators' networks run too (with their parameters in one vector rather
than these dicts).
"""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

from ._cells import ACTIVATIONS, CellSpec, init_params, state_size
from ._docs import fill_doc
from ._engine import get_engine
from ._sklearn_compat import Number, Options, StrOptions, validate_parameter_constraints

__all__ = ["RNN", "GRU", "LSTM"]

# the constructor's arguments but the activation, whose choices are the cell's
_CONSTRAINTS = {
    "input_size": [Number(Integral, 1, None, closed="left")],
    "hidden_size": [Number(Integral, 1, None, closed="left")],
    "reset_after": ["boolean"],
    "use_bias": ["boolean"],
    "stateful": ["boolean"],
    "dtype": [
        StrOptions({"float32", "float64"}),
        Options(type, {np.float32, np.float64}),
    ],
    "random_state": ["random_state"],
}


@fill_doc()
class _RecurrentLayer:
    """One direction of one recurrent layer (shared by RNN, GRU and LSTM).

    The engines take the state as one array (N, S): h, or for the LSTM h
    and c side by side. :meth:`_run` and :meth:`_backprop` work on that
    array; each layer's public ``forward`` and ``backward`` name its parts.
    """

    _cell = None

    def _build(self, arguments):
        """Validate the constructor's ``arguments`` (its ``locals()``, so
        that each cell's signature is written once) and set the layer up."""
        arguments = {"activation": "tanh", "reset_after": True, **arguments}
        del arguments["self"]
        validate_parameter_constraints(
            {
                **_CONSTRAINTS,
                "activation": [StrOptions(set(ACTIVATIONS[self._cell]))],
            },
            arguments,
            caller_name=type(self).__name__,
        )
        self.input_size = int(arguments["input_size"])
        self.hidden_size = int(arguments["hidden_size"])
        self.stateful = arguments["stateful"]
        self.dtype = np.dtype(arguments["dtype"])
        self.spec = CellSpec(
            self._cell,
            arguments["activation"],
            bool(arguments["reset_after"]),
            bool(arguments["use_bias"]),
        )
        rng = check_random_state(arguments["random_state"])
        self.params = init_params(
            self.spec, self.input_size, self.hidden_size, self.dtype, rng
        )
        self.grads = {}
        self.dh0 = None
        self.h = None  # the state carried with stateful=True, (N, S)
        self._engine = get_engine("cpu")
        self._saved = None

    def reset_state(self):
        """Forget the state carried between calls (``stateful=True``)."""
        self.h = None

    def _carried(self, N):
        """The state (N, S) carried from the previous call with
        ``stateful=True``, or None; an error when that call had another
        number of sequences, whose states would be matched by position."""
        if not self.stateful or self.h is None:
            return None
        if len(self.h) != N:
            raise ValueError(
                f"This stateful layer carries the state of {len(self.h)} sequences "
                f"from its previous forward call, but X has {N}. Pass as many "
                "sequences, an initial state of their own, or call reset_state() "
                "first."
            )
        return self.h

    def forward(self, X, h0=None, lengths=None):
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        X : array-like of shape (N, T, D)
            Inputs, batch first.
        h0 : array-like of shape (N, H), default=None
            Initial state. None: zeros, or with ``stateful=True`` the state
            left by the previous call.
        lengths : array-like of shape (N,), default=None
            Valid steps per sequence (1 <= lengths <= T); None: all T.

        Returns
        -------
        outputs : ndarray of shape (N, T, H)
            The state after each step, zero at padded steps.
        h_last : ndarray of shape (N, H)
            The state at each sequence's last valid step.
        """
        X, lengths = self._checked_input(X, lengths)
        state0 = None if h0 is None else self._state("h0", h0, len(X))
        return self._run(X, lengths, state0)

    def backward(self, d_outputs, d_h_last=None):
        """Backpropagate through the last ``forward`` call.

        Fills ``grads`` (same keys as ``params``) and ``dh0``, the gradient
        with respect to the initial state.

        Parameters
        ----------
        %(layer_backward_parameters)s

        Returns
        -------
        %(layer_dx)s
        """
        N = self._forward_n()
        d_state = None if d_h_last is None else self._state("d_h_last", d_h_last, N)
        dx, self.dh0 = self._backprop(d_outputs, d_state)
        return dx

    def _checked_input(self, X, lengths):
        """X (N, T, D) and lengths (N,) as the engines take them, validated."""
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 3 or X.shape[2] != self.input_size or 0 in X.shape:
            raise ValueError(
                f"X must have shape (N, T, {self.input_size}) with N, T >= 1, "
                f"got {X.shape}."
            )
        N, T, _ = X.shape
        lengths = np.full(N, T, dtype=np.intp) if lengths is None else lengths
        lengths = np.asarray(lengths)
        if lengths.shape != (N,) or lengths.min() < 1 or lengths.max() > T:
            raise ValueError(f"lengths must be N={N} integers in [1, {T}].")
        return X, lengths.astype(np.intp)

    def _state(self, name, value, N):
        """``value`` as an (N, H) array of the layer's dtype, or an error."""
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != (N, self.hidden_size):
            raise ValueError(
                f"{name} must have shape ({N}, {self.hidden_size}), got {value.shape}."
            )
        return value

    def _forward_n(self):
        """The number of sequences of the last ``forward`` call."""
        if self._saved is None:
            raise RuntimeError("backward() needs a forward() call first.")
        return len(self._saved[0])

    def _run(self, X, lengths, state0):
        """Outputs (N, T, H) and the final state (N, S), from ``state0``
        (N, S); None: zeros, or the state carried with ``stateful=True``."""
        N, T, _ = X.shape
        if state0 is None:
            carried = self._carried(N)
            S = state_size(self._cell, self.hidden_size)
            state0 = np.zeros((N, S), self.dtype) if carried is None else carried
        self._check_params()
        # The engines want time-major data sorted by length, longest first,
        # and finite values at padded steps (NaN padding would reach the
        # gradients through 0 * NaN).
        order = np.argsort(-lengths, kind="stable")
        x = np.ascontiguousarray(X[order].transpose(1, 0, 2))
        x[np.arange(T)[:, None] >= lengths[order][None, :]] = 0
        out, last, cache = self._engine.forward(
            self.spec,
            self.params,
            x,
            lengths[order],
            np.ascontiguousarray(state0[order]),
        )
        inverse = np.argsort(order)
        last = last[inverse]
        self._saved = (order, inverse, T, cache)
        if self.stateful:
            self.h = last.copy()
        return out.transpose(1, 0, 2)[inverse], last

    def _backprop(self, d_outputs, d_state):
        """dX and the gradient of the initial state (N, S), from the
        outputs' and the final state's (N, S, or None); fills ``grads``."""
        order, inverse, T, cache = self._saved
        N = len(order)
        d_outputs = np.asarray(d_outputs, dtype=self.dtype)
        if d_outputs.shape != (N, T, self.hidden_size):
            raise ValueError(
                f"d_outputs must have the shape of forward's outputs, "
                f"{(N, T, self.hidden_size)}, got {d_outputs.shape}."
            )
        d_out = np.ascontiguousarray(d_outputs[order].transpose(1, 0, 2))
        if d_state is not None:
            d_state = np.ascontiguousarray(d_state[order])
        dx, d_state0, grads = self._engine.backward(
            self.spec, self.params, cache, d_out, d_state
        )
        self.grads = grads
        return dx.transpose(1, 0, 2)[inverse], d_state0[inverse]

    def _check_params(self):
        for name, value in self.params.items():
            if value.dtype != self.dtype or not value.flags.c_contiguous:
                self.params[name] = np.ascontiguousarray(value, dtype=self.dtype)


@fill_doc()
class RNN(_RecurrentLayer):
    """Elman recurrent layer: h' = act(W_ih x + b_ih + W_hh h + b_hh).

    One direction of one layer, run over a batch of sequences by
    :meth:`forward` and backpropagated through time by :meth:`backward`;
    the building block of the estimators' ``cell="rnn"``.

    Parameters
    ----------
    %(layer_sizes)s
    activation : {"tanh", "relu", "identity", "logistic"}, default="tanh"
        The nonlinearity ``act``.
    %(layer_options)s

    Attributes
    ----------
    params : dict
        ``weight_ih`` (H, D), ``weight_hh`` (H, H), ``bias_ih``, ``bias_hh``
        (H,), in PyTorch's ``nn.RNN`` layout.
    %(layer_gradients)s

    See Also
    --------
    GRU : The gated layer.
    skrnn.optim.SGD : An optimizer for ``params`` and ``grads``.

    Examples
    --------
    >>> import numpy as np
    >>> from skrnn.layers import RNN
    >>> layer = RNN(1, 1, activation="identity", use_bias=False, dtype="float64")
    >>> layer.params["weight_ih"][:] = 1.0
    >>> layer.params["weight_hh"][:] = 1.0
    >>> outputs, h_last = layer.forward(np.array([[[1.0], [0.0], [1.0]]]))
    >>> float(h_last[0, 0])
    2.0
    """

    _cell = "rnn"

    def __init__(
        self,
        input_size,
        hidden_size,
        *,
        activation="tanh",
        use_bias=True,
        stateful=False,
        dtype="float32",
        random_state=None,
    ):
        self._build(locals())


@fill_doc()
class LSTM(_RecurrentLayer):
    """Long short-term memory layer, as PyTorch's ``nn.LSTM``.

    i = σ(W_ii x + b_ii + W_hi h + b_hi), f = σ(W_if x + b_if + W_hf h + b_hf),
    g = tanh(W_ig x + b_ig + W_hg h + b_hg), o = σ(W_io x + b_io + W_ho h + b_ho),
    c' = f ⊙ c + i ⊙ g and h' = o ⊙ tanh(c'). Besides h, the layer carries the
    cell state c: ``forward`` takes ``c0`` and leaves ``c_last``, ``backward``
    takes ``d_c_last`` and fills ``dc0``; with ``stateful=True`` both h and c
    are carried.

    Parameters
    ----------
    %(layer_sizes)s
    %(layer_options)s

    Attributes
    ----------
    params : dict
        ``weight_ih`` (4H, D), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh``
        (4H,), gates stacked i, f, g, o as in PyTorch's ``nn.LSTM``.
    grads : dict
        Gradients of the same shapes, filled by :meth:`backward`.
    c_last : ndarray of shape (N, H)
        The cell state at each sequence's last valid step, set by
        :meth:`forward`.
    dh0, dc0 : ndarray of shape (N, H)
        Gradients with respect to the initial h and c, filled by
        :meth:`backward`.

    See Also
    --------
    GRU : The gated layer without a cell state.
    skrnn.optim.Adam : An optimizer for ``params`` and ``grads``.

    Notes
    -----
    A forget-gate bias of 1 at initialisation (Keras' ``unit_forget_bias``)
    was tried and not taken: on the adding problem it left the plateau in
    15 epochs instead of 18 at T = 60 (mean of 4 seeds), no sooner at
    T = 30, and it would part from ``nn.LSTM``. Add 1 to
    ``params["bias_ih"][H:2*H]`` for it.

    Examples
    --------
    >>> import numpy as np
    >>> from skrnn.layers import LSTM
    >>> layer = LSTM(2, 4, random_state=0)
    >>> outputs, h_last = layer.forward(np.ones((3, 5, 2)), lengths=[5, 2, 4])
    >>> outputs.shape, h_last.shape, layer.c_last.shape
    ((3, 5, 4), (3, 4), (3, 4))
    >>> dX = layer.backward(np.ones_like(outputs), d_c_last=np.ones((3, 4)))
    >>> dX.shape, layer.dc0.shape, layer.grads["weight_hh"].shape
    ((3, 5, 2), (3, 4), (16, 4))
    """

    _cell = "lstm"

    def __init__(
        self,
        input_size,
        hidden_size,
        *,
        use_bias=True,
        stateful=False,
        dtype="float32",
        random_state=None,
    ):
        self._build(locals())
        self.c_last = self.dc0 = None

    def forward(self, X, h0=None, lengths=None, *, c0=None):
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        X : array-like of shape (N, T, D)
            Inputs, batch first.
        h0 : array-like of shape (N, H), default=None
            Initial h. None: zeros, or with ``stateful=True`` the h left by
            the previous call.
        lengths : array-like of shape (N,), default=None
            Valid steps per sequence (1 <= lengths <= T); None: all T.
        c0 : array-like of shape (N, H), default=None
            Initial cell state, as ``h0``.

        Returns
        -------
        outputs : ndarray of shape (N, T, H)
            The h after each step, zero at padded steps.
        h_last : ndarray of shape (N, H)
            The h at each sequence's last valid step (``c_last`` holds c).
        """
        X, lengths = self._checked_input(X, lengths)
        state0 = None
        if h0 is not None or c0 is not None:
            N, H = len(X), self.hidden_size
            given = h0 is not None and c0 is not None
            carried = None if given else self._carried(N)
            parts = []
            for k, (name, value) in enumerate((("h0", h0), ("c0", c0))):
                if value is None:  # the carried part, else zeros
                    value = (
                        np.zeros((N, H))
                        if carried is None
                        else carried[:, k * H : (k + 1) * H]
                    )
                parts.append(self._state(name, value, N))
            state0 = np.concatenate(parts, axis=1)
        outputs, last = self._run(X, lengths, state0)
        H = self.hidden_size
        self.c_last = last[:, H:]
        return outputs, last[:, :H]

    def backward(self, d_outputs, d_h_last=None, *, d_c_last=None):
        """Backpropagate through the last ``forward`` call.

        Fills ``grads`` (same keys as ``params``), ``dh0`` and ``dc0``.

        Parameters
        ----------
        %(layer_backward_parameters)s
        d_c_last : array-like of shape (N, H), default=None
            Gradient with respect to ``c_last``.

        Returns
        -------
        %(layer_dx)s
        """
        N, H = self._forward_n(), self.hidden_size
        d_state = None
        if d_h_last is not None or d_c_last is not None:
            parts = [
                np.zeros((N, H)) if value is None else self._state(name, value, N)
                for name, value in (("d_h_last", d_h_last), ("d_c_last", d_c_last))
            ]
            d_state = np.concatenate(parts, axis=1).astype(self.dtype)
        dx, d_state0 = self._backprop(d_outputs, d_state)
        self.dh0, self.dc0 = d_state0[:, :H], d_state0[:, H:]
        return dx


@fill_doc()
class GRU(_RecurrentLayer):
    """Gated recurrent unit layer.

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    h' = z ⊙ h + (1 − z) ⊙ n with, for ``reset_after=True`` (PyTorch, cuDNN),
    n = act(W_in x + b_in + r ⊙ (W_hn h + b_hn)), and for ``reset_after=False``
    (Cho et al. 2014, Darknet), n = act(W_in x + b_in + W_hn (r ⊙ h) + b_hn).

    Parameters
    ----------
    %(layer_sizes)s
    activation : {"tanh", "logistic"}, default="tanh"
        The candidate's nonlinearity ``act``.
    reset_after : bool, default=True
        Where the reset gate applies (see above).
    %(layer_options)s

    Attributes
    ----------
    params : dict
        ``weight_ih`` (3H, D), ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh``
        (3H,), gates stacked r, z, n as in PyTorch's ``nn.GRU``.
    %(layer_gradients)s

    See Also
    --------
    RNN, LSTM : The other cells.
    skrnn.optim.Adam : An optimizer for ``params`` and ``grads``.

    Examples
    --------
    >>> import numpy as np
    >>> from skrnn.layers import GRU
    >>> layer = GRU(2, 4, reset_after=False, random_state=0)
    >>> outputs, h_last = layer.forward(np.ones((2, 3, 2)), lengths=[3, 1])
    >>> outputs.shape, bool((outputs[1, 1:] == 0).all())
    ((2, 3, 4), True)
    >>> dX = layer.backward(np.ones_like(outputs))
    >>> dX.shape, layer.grads["weight_hh"].shape
    ((2, 3, 2), (12, 4))
    """

    _cell = "gru"

    def __init__(
        self,
        input_size,
        hidden_size,
        *,
        activation="tanh",
        reset_after=True,
        use_bias=True,
        stateful=False,
        dtype="float32",
        random_state=None,
    ):
        self._build(locals())
