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
(G*H, H), ``bias_ih``/``bias_hh`` (G*H,), with G = 1 for the Elman RNN and
G = 3 for the GRU, gates stacked in the order r, z, n.
"""

from collections import namedtuple

import numpy as np

#: What defines a recurrent cell, apart from its sizes.
CellSpec = namedtuple("CellSpec", ["cell", "activation", "reset_after", "use_bias"])

N_GATES = {"rnn": 1, "gru": 3}


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


def forward(spec, params, x, lengths, h0, reverse=False, keep_cache=True, xp=np):
    """Run one direction of one layer over a chunk of time steps.

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
        Initial state.
    reverse : bool, default=False
        Visit the steps from last to first.
    keep_cache : bool, default=True
        Keep what :func:`backward` needs. Inference passes False.
    xp : module, default=numpy
        The array module.

    Returns
    -------
    outputs : array of shape (T, N, H)
        The state after each step, zero at padded steps.
    h_last : array of shape (N, H)
        The state after the whole chunk (for each sequence, after its last
        valid step in the direction of travel).
    cache : dict or None
        What :func:`backward` needs, or None if ``keep_cache`` is False.
    """
    T, N, D = x.shape
    W_ih, W_hh = params["weight_ih"], params["weight_hh"]
    H = W_hh.shape[1]
    act = spec.activation
    # One GEMM for every step's input projection: (T*N, D) @ (D, G*H).
    gi = (x.reshape(T * N, D) @ W_ih.T).reshape(T, N, -1)
    if spec.use_bias:
        gi += params["bias_ih"]
    b_hh = params["bias_hh"] if spec.use_bias else None
    mask = _mask(lengths, T, xp)
    outputs = xp.zeros((T, N, H), dtype=x.dtype)
    cache = None
    if keep_cache:
        cache = {"x": x, "mask": mask, "h_prev": xp.empty_like(outputs)}
        if spec.cell == "rnn":
            cache["h_new"] = xp.empty_like(outputs)
        else:
            for name in ("r", "z", "n", "hn_term"):
                cache[name] = xp.empty_like(outputs)
    h = h0
    for t in _steps(T, reverse):
        if spec.cell == "rnn":
            a = gi[t] + h @ W_hh.T
            if b_hh is not None:
                a += b_hh
            h_new = activate(act, a, xp)
            if keep_cache:
                cache["h_new"][t] = h_new
        elif spec.reset_after:
            # r, z, n as in PyTorch / cuDNN: n = act(W_in x + b_in + r * (W_hn h + b_hn))
            gh = h @ W_hh.T
            if b_hh is not None:
                gh += b_hh
            r = _sigmoid(gi[t, :, :H] + gh[:, :H], xp)
            z = _sigmoid(gi[t, :, H : 2 * H] + gh[:, H : 2 * H], xp)
            hn_term = gh[:, 2 * H :]
            n = activate(act, gi[t, :, 2 * H :] + r * hn_term, xp)
            h_new = z * h + (1.0 - z) * n
        else:
            # Cho et al. (2014): n = act(W_in x + b_in + W_hn (r * h) + b_hn)
            gh = h @ W_hh[: 2 * H].T
            if b_hh is not None:
                gh += b_hh[: 2 * H]
            r = _sigmoid(gi[t, :, :H] + gh[:, :H], xp)
            z = _sigmoid(gi[t, :, H : 2 * H] + gh[:, H:], xp)
            hn_term = r * h
            a_n = gi[t, :, 2 * H :] + hn_term @ W_hh[2 * H :].T
            if b_hh is not None:
                a_n += b_hh[2 * H :]
            n = activate(act, a_n, xp)
            h_new = z * h + (1.0 - z) * n
        if keep_cache:
            cache["h_prev"][t] = h
            if spec.cell == "gru":
                cache["r"][t], cache["z"][t], cache["n"][t] = r, z, n
                cache["hn_term"][t] = hn_term
        m = mask[t]
        outputs[t] = xp.where(m, h_new, 0)
        h = xp.where(m, h_new, h)
    if keep_cache:
        cache["reverse"] = reverse
    return outputs, h, cache


def backward(spec, params, cache, d_outputs, d_h_last=None, xp=np):
    """Backpropagate through one direction of one layer.

    Parameters
    ----------
    spec : CellSpec
        As given to :func:`forward`.
    params : dict
        As given to :func:`forward`.
    cache : dict
        Returned by :func:`forward` with ``keep_cache=True``.
    d_outputs : array of shape (T, N, H)
        Gradient of the loss with respect to ``outputs``; ignored at padded
        steps.
    d_h_last : array of shape (N, H) or None
        Gradient with respect to ``h_last``.
    xp : module, default=numpy
        The array module.

    Returns
    -------
    dx : array of shape (T, N, D)
        Gradient with respect to ``x`` (zero at padded steps).
    dh0 : array of shape (N, H)
        Gradient with respect to ``h0``.
    grads : dict
        Gradients with respect to each entry of ``params``.
    """
    x, mask, h_prev = cache["x"], cache["mask"], cache["h_prev"]
    T, N, H = h_prev.shape
    W_ih, W_hh = params["weight_ih"], params["weight_hh"]
    G = W_hh.shape[0] // H
    act = spec.activation
    d_gi = xp.zeros((T, N, G * H), dtype=x.dtype)  # gradient of the input projection
    d_gh = xp.zeros((T, N, G * H), dtype=x.dtype)  # gradient of the recurrent projection
    dh = xp.zeros((N, H), dtype=x.dtype) if d_h_last is None else d_h_last.copy()
    for t in _steps(T, not cache["reverse"]):
        m = mask[t]
        dh = dh + xp.where(m, d_outputs[t], 0)
        dh_step = xp.where(m, dh, 0)  # the part that flows into this step's gates
        dh_carry = dh - dh_step  # padded steps pass the state's gradient through
        if spec.cell == "rnn":
            da = dh_step * activation_grad(act, cache["h_new"][t])
            d_gi[t] = da
            d_gh[t] = da
            dh = dh_carry + da @ W_hh
            continue
        r, z, n, hn_term = (cache[k][t] for k in ("r", "z", "n", "hn_term"))
        hp = h_prev[t]
        # h' = z h + (1 - z) n
        da_n = dh_step * (1.0 - z) * activation_grad(act, n)
        da_z = dh_step * (hp - n) * z * (1.0 - z)
        dh = dh_carry + dh_step * z
        if spec.reset_after:
            # n = act(a_n), a_n = gi_n + r * hn_term, hn_term = W_hn h + b_hn
            da_r = da_n * hn_term * r * (1.0 - r)
            d_gh[t, :, 2 * H :] = da_n * r
        else:
            # a_n = gi_n + W_hn (r h) + b_hn
            d_rh = da_n @ W_hh[2 * H :]
            da_r = d_rh * hp * r * (1.0 - r)
            dh += d_rh * r
            d_gh[t, :, 2 * H :] = da_n
        d_gi[t, :, :H] = da_r
        d_gi[t, :, H : 2 * H] = da_z
        d_gi[t, :, 2 * H :] = da_n
        d_gh[t, :, : 2 * H] = d_gi[t, :, : 2 * H]
        if spec.reset_after:
            dh += d_gh[t] @ W_hh
        else:
            dh += d_gh[t, :, : 2 * H] @ W_hh[: 2 * H]
    D = x.shape[2]
    d_gi2 = d_gi.reshape(T * N, G * H)
    d_gh2 = d_gh.reshape(T * N, G * H)
    # Weight gradients: one GEMM over all steps each.
    grads = {"weight_ih": d_gi2.T @ x.reshape(T * N, D)}
    if spec.cell == "gru" and not spec.reset_after:
        d_W_hh = xp.empty_like(W_hh)
        d_W_hh[: 2 * H] = d_gh2[:, : 2 * H].T @ h_prev.reshape(T * N, H)
        d_W_hh[2 * H :] = d_gh2[:, 2 * H :].T @ cache["hn_term"].reshape(T * N, H)
        grads["weight_hh"] = d_W_hh
    else:
        grads["weight_hh"] = d_gh2.T @ h_prev.reshape(T * N, H)
    if spec.use_bias:
        grads["bias_ih"] = d_gi2.sum(axis=0)
        grads["bias_hh"] = d_gh2.sum(axis=0)
    dx = (d_gi2 @ W_ih).reshape(T, N, D)
    return dx, dh, grads
