"""The reference engine: forward pass and backpropagation through time.

This module is the specification of skrnn's math. It is written once
against an array module ``xp`` (NumPy on the CPU, CuPy on the GPU),
vectorised over the batch: the only Python loop runs over time steps.
The compiled kernels are tested against it.

Every function works on one direction of one layer, on *time-major*
arrays:

- ``x``: (T, N, D) inputs,
- ``lengths``: (N,) integer number of valid steps of each sequence in this
  chunk (0 <= lengths <= T); steps ``t >= lengths[i]`` are padding,
- ``h0``: (N, H) initial state.

Padding never leaks: at a padded step the state is carried unchanged, the
output is zero, and no gradient flows into the weights or into ``x``. A
reversed direction visits ``t = T-1, ..., 0``, so each sequence starts from
``h0`` at its own last valid step, as PyTorch's packed sequences do.

Weights follow PyTorch's layout: ``weight_ih`` (G*H, D), ``weight_hh``
(G*H, H), ``bias_ih``/``bias_hh`` (G*H,), with G = 1 for the Elman RNN,
G = 3 for the GRU (gates stacked in the order r, z, n) and G = 4 for the
LSTM (i, f, g, o).

The LSTM's state is two arrays, h and the cell state c: where the others
take and return a state (N, H), it takes and returns (N, 2H), h then c
side by side (:func:`state_size`), and its outputs are h alone.
"""

import numpy as np

from .._cells import (
    N_GATES,
    CellSpec,  # noqa: F401 (models pickled by 0.1.0 name it here)
    state_size,
)


def activate(name, a, xp):
    """Apply the activation ``name`` to the pre-activation ``a``."""
    if name == "tanh":
        return xp.tanh(a)
    if name == "logistic":
        # 1 / (1 + exp(-a)) without overflow warnings for very negative a
        return 0.5 * (xp.tanh(0.5 * a) + 1.0)
    if name == "relu":
        return xp.maximum(a, 0)
    if name == "identity":
        return a
    raise ValueError(f"unknown activation {name!r}")


def activation_grad(name, y):
    """Derivative of the activation, written in terms of its output ``y``."""
    if name == "tanh":
        return 1.0 - y * y
    if name == "logistic":
        return y * (1.0 - y)
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "identity":
        return y.dtype.type(1.0)
    raise ValueError(f"unknown activation {name!r}")


def _sigmoid(a, xp):
    return activate("logistic", a, xp)


def _mask(lengths, T, xp):
    """(T, N, 1) boolean: True where step t of sequence i is valid."""
    return (xp.arange(T)[:, None] < xp.asarray(lengths)[None, :])[:, :, None]


def _steps(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


class StepKernels:
    """The element-wise math of one time step, written with ``xp`` operations.

    The time loops of :func:`forward` and :func:`backward` do, per step, the
    recurrent GEMM(s) through :meth:`matmul` and then one of these functions,
    which does everything else of that step: the gates, the masking of padded
    steps, the outputs, the cache and the new state (or, backward, the gate
    gradients and the state's gradient). They take the whole time-major
    arrays and the step index ``t``, and write their results into the arrays
    they are given. Arrays passed here are C-contiguous.

    ``c`` is the index into the cache arrays: ``t`` when the cache is kept,
    else 0 (a one-step scratch buffer). ``mask`` is (T, N, 1), True at valid
    steps; ``b_hh`` is None without biases.

    This class is the specification of that math. The CUDA engine
    (:mod:`skrnn._engine.cuda`) implements the same methods as one fused
    kernel each, and is tested against this one.
    """

    def __init__(self, xp):
        self.xp = xp

    def matmul(self, a, b, out):
        """``out[...] = a @ b`` for 2-D arrays (``b`` may be a transposed view)."""
        self.xp.matmul(a, b, out=out)

    # ---------------------------------------------------------------- forward
    def rnn_forward(self, act, t, c, gi, gh, b_hh, mask, h, out, h_prev, h_new):
        """h' = act(gi_t + W_hh h + b_hh); ``gh`` holds W_hh h."""
        xp = self.xp
        h_prev[c] = h
        a = gi[t] + gh
        if b_hh is not None:
            a += b_hh
        h_new[c] = activate(act, a, xp)
        out[t] = xp.where(mask[t], h_new[c], 0)
        h[...] = xp.where(mask[t], h_new[c], h)

    def gru_forward(
        self, act, t, c, gi, gh, b_hh, mask, h, out, h_prev, r, z, n, hn_term
    ):
        """A GRU step, ``reset_after=True``; ``gh`` (N, 3H) holds W_hh h."""
        xp = self.xp
        H = h.shape[1]
        if b_hh is not None:
            gh = gh + b_hh
        h_prev[c] = h
        r[c] = _sigmoid(gi[t, :, :H] + gh[:, :H], xp)
        z[c] = _sigmoid(gi[t, :, H : 2 * H] + gh[:, H : 2 * H], xp)
        # n = act(W_in x + b_in + r * (W_hn h + b_hn))
        hn_term[c] = gh[:, 2 * H :]
        n[c] = activate(act, gi[t, :, 2 * H :] + r[c] * hn_term[c], xp)
        h_new = z[c] * h + (1.0 - z[c]) * n[c]
        out[t] = xp.where(mask[t], h_new, 0)
        h[...] = xp.where(mask[t], h_new, h)

    def gru_forward_rz(self, t, c, gi, gh, b_hh, h, h_prev, r, z, hn_term):
        """The gates of a GRU step, ``reset_after=False``; ``gh`` (N, 2H)
        holds W_hr,z h."""
        xp = self.xp
        H = h.shape[1]
        if b_hh is not None:
            gh = gh + b_hh[: 2 * H]
        h_prev[c] = h
        r[c] = _sigmoid(gi[t, :, :H] + gh[:, :H], xp)
        z[c] = _sigmoid(gi[t, :, H : 2 * H] + gh[:, H:], xp)
        hn_term[c] = r[c] * h

    def gru_forward_n(self, act, t, c, gi, gn, b_hh, mask, h, out, z, n):
        """The rest of that step; ``gn`` holds W_hn (r * h)."""
        xp = self.xp
        H = h.shape[1]
        # Cho et al. (2014): n = act(W_in x + b_in + W_hn (r * h) + b_hn)
        a_n = gi[t, :, 2 * H :] + gn
        if b_hh is not None:
            a_n += b_hh[2 * H :]
        n[c] = activate(act, a_n, xp)
        h_new = z[c] * h + (1.0 - z[c]) * n[c]
        out[t] = xp.where(mask[t], h_new, 0)
        h[...] = xp.where(mask[t], h_new, h)

    def lstm_forward(
        self, t, c, gi, gh, b_hh, mask, h, cell, out, h_prev, c_prev, i, f, g, o, tc
    ):
        """An LSTM step; ``gh`` (N, 4H) holds W_hh h. ``cell`` is the cell
        state, ``tc`` receives tanh of the new one."""
        xp = self.xp
        H = h.shape[1]
        a = gi[t] + gh
        if b_hh is not None:
            a += b_hh
        h_prev[c], c_prev[c] = h, cell
        i[c] = _sigmoid(a[:, :H], xp)
        f[c] = _sigmoid(a[:, H : 2 * H], xp)
        g[c] = xp.tanh(a[:, 2 * H : 3 * H])
        o[c] = _sigmoid(a[:, 3 * H :], xp)
        # c' = f c + i g, h' = o tanh(c')
        cell_new = f[c] * cell + i[c] * g[c]
        tc[c] = xp.tanh(cell_new)
        h_new = o[c] * tc[c]
        out[t] = xp.where(mask[t], h_new, 0)
        h[...] = xp.where(mask[t], h_new, h)
        cell[...] = xp.where(mask[t], cell_new, cell)

    # --------------------------------------------------------------- backward
    # ``dh`` is the state's gradient carried past the steps already visited
    # and ``dh_rec`` the recurrent part from the step after this one (the
    # GEMM of the previous iteration); ``g`` below is their sum plus this
    # step's output gradient. Padded steps pass ``g`` through unchanged.

    def _incoming(self, t, mask, d_out, dh, dh_rec):
        xp = self.xp
        g = dh + dh_rec + xp.where(mask[t], d_out[t], 0)
        return g, xp.where(mask[t], g, 0)

    def rnn_backward(self, act, t, mask, d_out, h_new, dh, dh_rec, d_gi):
        """Fills ``d_gi[t]`` (the pre-activation's gradient) and the carried ``dh``."""
        g, g_step = self._incoming(t, mask, d_out, dh, dh_rec)
        d_gi[t] = g_step * activation_grad(act, h_new[t])
        dh[...] = g - g_step

    def gru_backward(
        self, act, t, mask, d_out, h_prev, r, z, n, hn_term, dh, dh_rec, d_gi, d_gh
    ):
        """``reset_after=True``: fills ``d_gi[t]``, ``d_gh[t]`` and ``dh``."""
        H = dh.shape[1]
        g, g_step = self._incoming(t, mask, d_out, dh, dh_rec)
        r, z, n, hn_term = r[t], z[t], n[t], hn_term[t]
        # h' = z h + (1 - z) n, n = act(gi_n + r * hn_term)
        da_n = g_step * (1.0 - z) * activation_grad(act, n)
        da_z = g_step * (h_prev[t] - n) * z * (1.0 - z)
        da_r = da_n * hn_term * r * (1.0 - r)
        d_gi[t, :, :H], d_gi[t, :, H : 2 * H], d_gi[t, :, 2 * H :] = da_r, da_z, da_n
        d_gh[t, :, :H], d_gh[t, :, H : 2 * H], d_gh[t, :, 2 * H :] = (
            da_r,
            da_z,
            da_n * r,
        )
        dh[...] = (g - g_step) + g_step * z

    def gru_backward_zn(
        self, act, t, mask, d_out, h_prev, z, n, dh, dh_rec, d_gi, da_n
    ):
        """``reset_after=False``, first half: the z and n parts of ``d_gi[t]``,
        ``da_n`` (contiguous, for the GEMM into d(r * h)) and ``dh``."""
        H = dh.shape[1]
        g, g_step = self._incoming(t, mask, d_out, dh, dh_rec)
        z, n = z[t], n[t]
        da_n[...] = g_step * (1.0 - z) * activation_grad(act, n)
        d_gi[t, :, H : 2 * H] = g_step * (h_prev[t] - n) * z * (1.0 - z)
        d_gi[t, :, 2 * H :] = da_n
        dh[...] = (g - g_step) + g_step * z

    def lstm_backward(
        self, t, mask, d_out, c_prev, i, f, g, o, tc, dh, dc, dh_rec, d_gi
    ):
        """Fills ``d_gi[t]`` (the four gates' pre-activation gradients, also
        those of the recurrent projection) and the carried ``dh`` and
        ``dc`` (the cell state's gradient)."""
        xp = self.xp
        H = dh.shape[1]
        g_h, g_step = self._incoming(t, mask, d_out, dh, dh_rec)
        i, f, g, o, tc = i[t], f[t], g[t], o[t], tc[t]
        # the cell state's gradient at this step: carried, and through h' = o tanh(c')
        d_cell = xp.where(mask[t], dc, 0) + g_step * o * (1.0 - tc * tc)
        d_gi[t, :, :H] = d_cell * g * i * (1.0 - i)
        d_gi[t, :, H : 2 * H] = d_cell * c_prev[t] * f * (1.0 - f)
        d_gi[t, :, 2 * H : 3 * H] = d_cell * i * (1.0 - g * g)
        d_gi[t, :, 3 * H :] = g_step * tc * o * (1.0 - o)
        dh[...] = g_h - g_step
        dc[...] = xp.where(mask[t], d_cell * f, dc)

    def gru_backward_r(self, t, h_prev, r, d_rh, dh, d_gi):
        """Second half: ``d_rh`` = d(r * h) = da_n W_hn; the r part of ``d_gi[t]``."""
        H = dh.shape[1]
        r = r[t]
        d_gi[t, :, :H] = d_rh * h_prev[t] * r * (1.0 - r)
        dh += d_rh * r


class EagerLoops:
    """Runs each time loop as it is called: how :func:`forward` and
    :func:`backward` run them, unless given the CUDA engine's
    :class:`~skrnn._engine.cuda.StepGraphs`, which replays them from
    captured graphs."""

    def key(self, *parts):
        """What names a loop (unused here)."""
        return parts

    def run(self, key, inputs, buffers, steps):
        """Run the loop ``steps(work)`` on ``work`` = ``inputs`` + ``buffers()``
        and return ``(work, replayed)``; replayed is always False here."""
        work = {**inputs, **buffers()}
        steps(work)
        return work, False


NUMPY_KERNELS = StepKernels(np)
EAGER = EagerLoops()


_CACHE_NAMES = {
    "rnn": ("h_prev", "h_new"),
    "gru": ("h_prev", "r", "z", "n", "hn_term"),
    "lstm": ("h_prev", "c_prev", "i", "f", "g", "o", "tc"),
}


def forward(
    spec,
    params,
    x,
    lengths,
    h0,
    reverse=False,
    keep_cache=True,
    keep_outputs=True,
    *,
    kernels=NUMPY_KERNELS,
    loops=EAGER,
):
    """Run one direction of one layer over a chunk of time steps.

    ``kernels`` does each step's element-wise math, and ``loops`` runs the
    time loop: as it is, or replayed from a captured CUDA graph.

    Parameters
    ----------
    spec : CellSpec
        The cell type, activation, GRU form and whether biases are used.
    params : dict
        ``weight_ih``, ``weight_hh`` and, with ``spec.use_bias``,
        ``bias_ih``, ``bias_hh``, in PyTorch's layout.
    x : array of shape (T, N, D)
        Time-major inputs; values at padded steps do not change the results
        but must be finite (callers zero them).
    lengths : array of shape (N,)
        Valid steps per sequence in this chunk.
    h0 : array of shape (N, H)
        Initial state (not changed).
    reverse : bool, default=False
        Visit the steps from last to first.
    keep_cache : bool, default=True
        Keep what :func:`backward` needs. Inference passes False.
    keep_outputs : bool, default=True
        Return the outputs. Inference that reads only ``h_last`` (a
        network's top layer read at each sequence's last step) passes False,
        and a compiled engine then keeps no (T, N, H) array.
    kernels : StepKernels, default=NUMPY_KERNELS
        The element-wise step math, written with the array module
        ``kernels.xp``.
    loops : EagerLoops or StepGraphs, default=EAGER
        What runs the time loop.

    Returns
    -------
    outputs : array of shape (T, N, H) or None
        The state after each step, zero at padded steps; None unless
        ``keep_outputs``.
    h_last : array of shape (N, H)
        The state after the whole chunk (for each sequence, after its last
        valid step in the direction of travel).
    cache : dict or None
        What :func:`backward` needs, or None if ``keep_cache`` is False.
    """
    xp = kernels.xp
    inputs = forward_inputs(spec, params, x, lengths, h0, xp)
    shape = inputs["gi"].shape
    work, replayed = loops.run(
        loops.key("forward", spec, shape, x.dtype.char, reverse, keep_cache),
        inputs,
        lambda: forward_buffers(spec, shape, keep_cache, x.dtype, xp),
        lambda work: forward_steps(kernels, spec, work, reverse, keep_cache),
    )
    # a replayed loop's buffers are its graph's: the next replay overwrites them
    take = _copy if replayed else None
    return forward_results(spec, work, x, reverse, keep_cache, keep_outputs, take)


# :func:`forward` and :func:`backward` are each written as four parts: the
# inputs of the time loop (computed from the arguments), the buffers it
# writes, the loop, and the results read from both. The loop touches nothing
# else, so that the CUDA engine can replay it from a captured graph on
# buffers of its own (:mod:`skrnn._engine.cuda`).


def forward_inputs(spec, params, x, lengths, h0, xp):
    """What the forward time loop reads: ``gi`` (the input projections of
    every step), ``mask``, the state ``h`` (a copy of ``h0``; for the LSTM,
    ``h`` and ``cell``), ``W_hh`` and, with biases, ``b_hh``."""
    T, N, D = x.shape
    W_ih = params["weight_ih"]
    # One GEMM for every step's input projection: (T*N, D) @ (D, G*H).
    gi = (x.reshape(T * N, D) @ W_ih.T).reshape(T, N, -1)
    state = xp.array(h0, dtype=x.dtype, order="C", copy=True)  # updated in place
    work = {
        "gi": gi,
        "mask": _mask(lengths, T, xp),
        "h": state,
        "W_hh": params["weight_hh"],
    }
    if spec.cell == "lstm":
        H = params["weight_hh"].shape[1]
        work["h"], work["cell"] = (
            xp.ascontiguousarray(state[:, :H]),
            xp.ascontiguousarray(state[:, H:]),
        )
    if spec.use_bias:
        gi += params["bias_ih"]
        work["b_hh"] = xp.ascontiguousarray(params["bias_hh"])
    return work


def forward_buffers(spec, gi_shape, keep_cache, dtype, xp):
    """What the forward time loop writes: ``outputs``, the cache (one step
    of scratch without ``keep_cache``) and the recurrent GEMMs' outputs."""
    T, N, GH = gi_shape
    H = GH // N_GATES[spec.cell]
    steps_kept = T if keep_cache else 1
    work = {
        name: xp.empty((steps_kept, N, H), dtype=dtype)
        for name in _CACHE_NAMES[spec.cell]
    }
    work["outputs"] = xp.empty((T, N, H), dtype=dtype)
    if spec.cell == "gru" and not spec.reset_after:
        work["gh"], work["gn"] = (
            xp.empty((N, 2 * H), dtype=dtype),
            xp.empty((N, H), dtype=dtype),
        )
    else:
        work["gh"] = xp.empty((N, GH), dtype=dtype)
    return work


def forward_steps(k, spec, work, reverse, keep_cache):
    """The forward time loop: per step, the recurrent GEMM(s) and one step
    function of ``k``, on the arrays of ``work`` only."""
    act = spec.activation
    h, gi, mask, outputs, gh = (work[n] for n in ("h", "gi", "mask", "outputs", "gh"))
    W_hh, b_hh = work["W_hh"], work.get("b_hh")
    H = h.shape[1]
    if spec.cell == "gru" and not spec.reset_after:
        W_rz_T, W_n_T, gn = W_hh[: 2 * H].T, W_hh[2 * H :].T, work["gn"]
    gru_buf = (
        tuple(work[name] for name in _CACHE_NAMES["gru"]) if spec.cell == "gru" else ()
    )
    for t in _steps(gi.shape[0], reverse):
        c = t if keep_cache else 0
        if spec.cell == "rnn":
            k.matmul(h, W_hh.T, gh)
            k.rnn_forward(
                act, t, c, gi, gh, b_hh, mask, h, outputs, work["h_prev"], work["h_new"]
            )
        elif spec.cell == "lstm":
            k.matmul(h, W_hh.T, gh)  # i, f, g, o: one GEMM for the four gates
            cache = (work[name] for name in _CACHE_NAMES["lstm"])
            k.lstm_forward(t, c, gi, gh, b_hh, mask, h, work["cell"], outputs, *cache)
        elif spec.reset_after:
            # r, z, n as in PyTorch / cuDNN: one GEMM for the three gates
            k.matmul(h, W_hh.T, gh)
            k.gru_forward(act, t, c, gi, gh, b_hh, mask, h, outputs, *gru_buf)
        else:
            # Cho et al. (2014): W_hn multiplies r * h, a second GEMM
            k.matmul(h, W_rz_T, gh)
            k.gru_forward_rz(
                t,
                c,
                gi,
                gh,
                b_hh,
                h,
                work["h_prev"],
                work["r"],
                work["z"],
                work["hn_term"],
            )
            k.matmul(work["hn_term"][c], W_n_T, gn)
            k.gru_forward_n(
                act, t, c, gi, gn, b_hh, mask, h, outputs, work["z"], work["n"]
            )


def _copy(a):
    return a.copy()


def forward_results(spec, work, x, reverse, keep_cache, keep_outputs, take=None):
    """``(outputs, h_last, cache)`` of :func:`forward` from its ``work``;
    ``take(array)`` (default: the array itself) is applied to each."""
    take = take or (lambda a: a)
    outputs = take(work["outputs"]) if keep_outputs else None
    h_last = take(work["h"])
    if spec.cell == "lstm":
        # (np.concatenate dispatches to the arrays' own module, CuPy's too)
        h_last = np.concatenate([h_last, take(work["cell"])], axis=1)
    if not keep_cache:
        return outputs, h_last, None
    cache = {name: take(work[name]) for name in ("mask",) + _CACHE_NAMES[spec.cell]}
    return outputs, h_last, {"x": x, "reverse": reverse, **cache}


def backward(
    spec,
    params,
    cache,
    d_outputs,
    d_h_last=None,
    need_dx=True,
    consume_cache=False,
    *,
    kernels=NUMPY_KERNELS,
    loops=EAGER,
):
    """Backpropagate through one direction of one layer.

    The results are arrays of their own, also when ``loops`` replays a
    graph.

    Parameters
    ----------
    spec : CellSpec
        As given to :func:`forward`.
    params : dict
        As given to :func:`forward`.
    cache : dict
        Returned by :func:`forward` with ``keep_cache=True``.
    d_outputs : array of shape (T, N, H) or None
        Gradient of the loss with respect to ``outputs``; ignored at padded
        steps. None: zero (the loss reaches the layer through ``d_h_last``
        only).
    d_h_last : array of shape (N, H) or None
        Gradient with respect to ``h_last``.
    need_dx : bool, default=True
        Whether to compute ``dx`` (not for a network's first layer).
    consume_cache : bool, default=False
        Whether the engine may write over the cache, which then cannot be
        used again (the compiled engine writes the GRU's gate gradients
        over its gate values). This engine leaves it intact.
    kernels, loops
        As for :func:`forward`.

    Returns
    -------
    dx : array of shape (T, N, D) or None
        Gradient with respect to ``x`` (zero at padded steps); None unless
        ``need_dx``.
    dh0 : array of shape (N, H)
        Gradient with respect to ``h0``.
    grads : dict
        Gradients with respect to each entry of ``params``.
    """
    xp = kernels.xp
    inputs = backward_inputs(spec, params, cache, d_outputs, d_h_last, xp)
    shape, GH, dtype = (
        inputs["h_prev"].shape,
        inputs["W_hh"].shape[0],
        inputs["dh"].dtype,
    )
    reverse = not cache["reverse"]
    work, _ = loops.run(
        loops.key("backward", spec, shape, GH, dtype.char, reverse),
        inputs,
        lambda: backward_buffers(spec, shape, GH, dtype, xp),
        lambda work: backward_steps(kernels, spec, work, reverse),
    )
    return backward_results(spec, params, work, cache["x"], need_dx, xp)


def backward_inputs(spec, params, cache, d_outputs, d_h_last, xp):
    """What the backward time loop reads: ``W_hh``, the forward cache,
    ``d_outputs``, the carried gradient ``dh`` (from ``d_h_last``; for the
    LSTM, ``dh`` and ``dc``) and the recurrent one ``dh_rec`` (zero)."""
    T, N, H = cache["h_prev"].shape
    dtype = cache["x"].dtype
    work = {name: cache[name] for name in ("mask",) + _CACHE_NAMES[spec.cell]}
    work["W_hh"] = params["weight_hh"]
    if d_outputs is None:
        work["d_outputs"] = xp.zeros((T, N, H), dtype=dtype)
    else:
        work["d_outputs"] = xp.ascontiguousarray(d_outputs, dtype=dtype)
    if d_h_last is None:
        d_h_last = xp.zeros((N, state_size(spec.cell, H)), dtype=dtype)
    work["dh"] = xp.array(d_h_last[:, :H], dtype=dtype, order="C", copy=True)
    if spec.cell == "lstm":
        work["dc"] = xp.array(d_h_last[:, H:], dtype=dtype, order="C", copy=True)
    work["dh_rec"] = xp.zeros((N, H), dtype=dtype)
    return work


def backward_buffers(spec, cache_shape, GH, dtype, xp):
    """What the backward time loop writes: the gradients of the input
    projection (``d_gi``) and of the recurrent one (``d_gh``), which differ
    only for the GRU with ``reset_after=True`` (where the recurrent n part
    is scaled by r), and, for the other GRU, two (N, H) GEMM operands."""
    T, N, H = cache_shape
    d_gi = xp.empty((T, N, GH), dtype=dtype)
    work = {"d_gi": d_gi, "d_gh": d_gi}
    if spec.cell == "gru" and spec.reset_after:
        work["d_gh"] = xp.empty_like(d_gi)
    elif spec.cell == "gru":
        work["da_n"], work["d_rh"] = (
            xp.empty((N, H), dtype=dtype),
            xp.empty((N, H), dtype=dtype),
        )
    return work


def backward_steps(k, spec, work, reverse):
    """The backward time loop (``reverse``: from the last step to the
    first), on the arrays of ``work`` only."""
    act = spec.activation
    mask, d_outputs, dh, dh_rec = (
        work[n] for n in ("mask", "d_outputs", "dh", "dh_rec")
    )
    d_gi, d_gh, W_hh, h_prev = work["d_gi"], work["d_gh"], work["W_hh"], work["h_prev"]
    T, _, H = h_prev.shape
    for t in _steps(T, reverse):
        if spec.cell == "rnn":
            k.rnn_backward(act, t, mask, d_outputs, work["h_new"], dh, dh_rec, d_gi)
            k.matmul(d_gi[t], W_hh, dh_rec)
        elif spec.cell == "lstm":
            cache = (work[name] for name in ("c_prev", "i", "f", "g", "o", "tc"))
            k.lstm_backward(t, mask, d_outputs, *cache, dh, work["dc"], dh_rec, d_gi)
            k.matmul(d_gi[t], W_hh, dh_rec)
        elif spec.reset_after:
            k.gru_backward(
                act,
                t,
                mask,
                d_outputs,
                h_prev,
                work["r"],
                work["z"],
                work["n"],
                work["hn_term"],
                dh,
                dh_rec,
                d_gi,
                d_gh,
            )
            k.matmul(d_gh[t], W_hh, dh_rec)
        else:
            da_n, d_rh = work["da_n"], work["d_rh"]
            k.gru_backward_zn(
                act,
                t,
                mask,
                d_outputs,
                h_prev,
                work["z"],
                work["n"],
                dh,
                dh_rec,
                d_gi,
                da_n,
            )
            k.matmul(da_n, W_hh[2 * H :], d_rh)  # d(r * h) = da_n W_hn
            k.gru_backward_r(t, h_prev, work["r"], d_rh, dh, d_gi)
            k.matmul(d_gi[t, :, : 2 * H], W_hh[: 2 * H], dh_rec)


def backward_results(spec, params, work, x, need_dx, xp):
    """``(dx, dh0, grads)`` of :func:`backward` from its ``work``: new
    arrays, none a view of ``work``."""
    d_gi, d_gh, h_prev = work["d_gi"], work["d_gh"], work["h_prev"]
    T, N, H = h_prev.shape
    D, GH = x.shape[2], d_gi.shape[2]
    d_gi2, d_gh2 = d_gi.reshape(T * N, GH), d_gh.reshape(T * N, GH)
    # Weight gradients: one GEMM over all steps each.
    grads = {"weight_ih": d_gi2.T @ x.reshape(T * N, D)}
    if spec.cell == "gru" and not spec.reset_after:
        d_W_hh = xp.empty_like(params["weight_hh"])
        d_W_hh[: 2 * H] = d_gh2[:, : 2 * H].T @ h_prev.reshape(T * N, H)
        d_W_hh[2 * H :] = d_gh2[:, 2 * H :].T @ work["hn_term"].reshape(T * N, H)
        grads["weight_hh"] = d_W_hh
    else:
        grads["weight_hh"] = d_gh2.T @ h_prev.reshape(T * N, H)
    if spec.use_bias:
        grads["bias_ih"] = d_gi2.sum(axis=0)
        grads["bias_hh"] = d_gh2.sum(axis=0)
    dx = (d_gi2 @ params["weight_ih"]).reshape(T, N, D) if need_dx else None
    dh0 = work["dh"] + work["dh_rec"]
    if spec.cell == "lstm":
        dh0 = xp.concatenate([dh0, work["dc"]], axis=1)
    return dx, dh0, grads
