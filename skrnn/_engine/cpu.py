"""The compiled CPU engine.

:func:`forward` and :func:`backward` have the signatures and semantics of
:mod:`skrnn._engine.reference` (without ``xp``) and run the Cython kernels
of :mod:`skrnn._engine._recurrent`. Those kernels run without bounds
checks, so this module guarantees that every shape they see is consistent;
it checks cheaply, because validating the user's data is done above it.
"""

import contextvars
import math
import os
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .._cells import CELLS, N_GATES, param_suffix
from .._threads import map_threads, workers_at_hand


def _not_built_message():
    """What to say when the compiled kernels cannot be imported (the error
    itself is chained: Python's wording blames a circular import)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.dirname(package)
    if os.path.exists(os.path.join(root, "setup.py")):
        return (
            f"skrnn is being imported from its source folder {package}, where its "
            "compiled kernels are not built. Run Python from another folder to use "
            "the installed skrnn, or build the kernels here with "
            "'pip install -e .' or 'python setup.py build_ext --inplace' "
            f"in {root}."
        )
    return (
        f"skrnn's compiled kernels could not be loaded from {package}. Reinstall "
        "skrnn with 'pip install --force-reinstall skrnn' (a C compiler is "
        "needed where no wheel fits)."
    )


try:
    from . import _recurrent
except ImportError as exc:
    raise ImportError(_not_built_message()) from exc

_ACTIVATIONS = {
    "tanh": _recurrent.Activation.TANH,
    "logistic": _recurrent.Activation.LOGISTIC,
    "relu": _recurrent.Activation.RELU,
    "identity": _recurrent.Activation.IDENTITY,
}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The kernels' specialisations by dtype, skipping the fused-type dispatch.
_KERNELS = {
    dtype: (
        _recurrent.forward.__signatures__[name],
        _recurrent.backward.__signatures__[name],
    )
    for dtype, name in zip(_DTYPES, ("float", "double"))
}
# BLAS takes 32-bit sizes; a GEMM over all steps has up to T*N rows.
_INT_MAX = 2**31 - 1


@dataclass(slots=True, kw_only=True)
class _Cache:
    """What backward needs from forward; opaque to callers. ``gates`` and
    ``hn`` are None once a backward with ``consume_cache`` has written over
    them. ``c_prev`` and ``c_new``: the LSTM's cell states, else empty."""

    kernel: tuple
    reverse: bool
    x: np.ndarray
    n_live: np.ndarray
    out: np.ndarray
    h_prev: np.ndarray
    gates: np.ndarray
    hn: np.ndarray
    c_prev: np.ndarray
    c_new: np.ndarray


@lru_cache(maxsize=64)
def _zero_bias(dtype, size):
    """Read-only zeros standing for the biases of a layer without them."""
    a = np.zeros(size, dtype=dtype)
    a.flags.writeable = False
    return a


@lru_cache(maxsize=8)
def _unused(dtype, ndim):
    """An empty array standing for a kernel argument that is not used."""
    return np.empty((0,) * ndim, dtype=dtype)


# Arrays of at least this many bytes are taken from the workspace in use.
# Without it, the C allocator maps large arrays afresh from the system at
# each request (glibc: from 128 KiB, a threshold raised to the largest
# array freed since, so that arrays of one size freed and asked for again
# are mapped anew each time), and the kernels pay a page fault for every
# 4 KiB they first write. Smaller arrays the allocator serves from memory
# it keeps, faster than the workspace would.
WORKSPACE_MIN_BYTES = 1 << 18

# Inference projects the inputs in windows of steps whose gates take at
# most this many bytes (at least one step), so that the window stays in
# cache from its GEMM to its gate loops: the GRU always, the RNN (which
# projects into its outputs) where its outputs are not kept.
INFERENCE_GATES_BYTES = 1 << 18

_WORKSPACE = contextvars.ContextVar("skrnn_cpu_workspace", default=None)

# A network keeps the rooms of its training passes between calls where they
# take at most this many bytes: laying rooms out anew in each call weighs on
# the small batches' steps (benchmarks/bench_partial_fit_parts.py) and
# little next to the passes over larger rooms; what a network holds between
# calls stays small.
KEPT_ROOM_BYTES = 1 << 20


class _Workspace:
    """Memory kept for the kernels' large arrays while a fit or a
    prediction runs.

    An array handed out owns its block through a :class:`_Block`; when the
    array and every view of it are gone, the block comes back and serves
    the next request of the same size, so from the second batch of a shape
    on the kernels write to memory already mapped. Blocks come back on any
    thread (from ``__del__``, possibly while this one allocates): they are
    queued without a lock and filed under the lock by the next request.
    The blocks kept unused add up to at most twice the most bytes that
    were in use at once; one that does not fit is freed.
    """

    def __init__(self, rooms=None):
        self._lock = threading.Lock()
        self._returned = deque()
        self._free = {}  # size in bytes -> unused (uint8 array, address) blocks
        self._in_use = self._kept = self._peak = 0
        self.open = True
        # the training passes' rooms (see batch.py), per network and share:
        # the caller's, kept beyond the block, or the block's own
        self._own_rooms = rooms is None
        self.rooms = {} if rooms is None else rooms

    def empty(self, shape, dtype, nbytes):
        """An uninitialised array of ``shape`` and ``dtype`` (``nbytes`` bytes)."""
        with self._lock:
            while self._returned:
                block = self._returned.popleft()
                size = block[0].nbytes
                self._in_use -= size
                if self._kept + size <= 2 * self._peak:
                    self._free.setdefault(size, []).append(block)
                    self._kept += size
            blocks = self._free.get(nbytes)
            if blocks:
                block = blocks.pop()
                self._kept -= nbytes
            else:
                raw = np.empty(nbytes, dtype=np.uint8)
                block = raw, raw.ctypes.data
            self._in_use += nbytes
            self._peak = max(self._peak, self._in_use)
        return np.asarray(_Block(self, block, shape, dtype))

    def give_back(self, block):
        if self.open:
            self._returned.append(block)  # thread-safe without the lock

    def close(self):
        """Free the blocks kept; those in use are freed with their arrays.
        Of the caller's rooms, those above KEPT_ROOM_BYTES go."""
        self.open = False
        for key, room in list(self.rooms.items()):
            if self._own_rooms or room.nbytes > KEPT_ROOM_BYTES:
                del self.rooms[key]
        with self._lock:
            self._free.clear()
            self._returned.clear()


class _Block:
    """The owner (``base``) of an array made from a workspace's block."""

    __slots__ = ("__array_interface__", "_workspace", "_block")

    def __init__(self, workspace, block, shape, dtype):
        """``block``: (uint8 array, its address)."""
        self.__array_interface__ = {
            "version": 3,
            "shape": shape,
            "typestr": dtype.str,
            "data": (block[1], False),
        }
        self._workspace, self._block = workspace, block

    def __del__(self):
        self._workspace.give_back(self._block)


@contextmanager
def workspace(rooms=None):
    """Inside the block, the kernels' large arrays are reused from batch to
    batch (see :class:`_Workspace`); the memory kept is freed at its end.

    The workspace is a context variable: threads that run the block's work
    in a copy of its context (as the network's do) share it.

    ``rooms``: a dict that keeps the training passes' rooms (see
    :mod:`skrnn._engine.batch`) beyond the block, those of KEPT_ROOM_BYTES
    or less: a network's, between calls of ``partial_fit``. None: the
    block's own.
    """
    ws = _Workspace(rooms)
    token = _WORKSPACE.set(ws)
    try:
        yield ws
    finally:
        _WORKSPACE.reset(token)
        ws.close()


def current_workspace():
    """The workspace of the :func:`workspace` block in use, or None."""
    return _WORKSPACE.get()


def _empty(shape, dtype):
    """``np.empty``, from the workspace in use for large arrays."""
    ws = _WORKSPACE.get()
    nbytes = dtype.itemsize * math.prod(shape)
    if ws is None or nbytes < WORKSPACE_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    return ws.empty(shape, dtype, nbytes)


# Above this many rows a step's GEMM is as fast through BLAS, whose own
# repacking of the weights is then spread over the rows.
PACKED_MAX_ROWS = 512


def _packed(cell, N, H, dtype):
    """Room for the kernels to pack the recurrent weights of a pass over N
    rows: float32, at most PACKED_MAX_ROWS rows, on a CPU with a packed
    kernel; otherwise empty, and the kernels use BLAS."""
    size = 0
    if dtype == np.float32 and N <= PACKED_MAX_ROWS:
        size = _recurrent.packed_size(cell, H)
    return (
        _empty((size,), np.dtype(np.float32))
        if size
        else _unused(np.dtype(np.float32), 1)
    )


def _copy(a):
    """``a.copy()``, from the workspace in use for a large array."""
    c = _empty(a.shape, a.dtype)
    np.copyto(c, a)
    return c


def _contiguous(a, dtype, name):
    if not isinstance(a, np.ndarray) or a.dtype != dtype:
        raise ValueError(f"{name} must be a numpy array of dtype {dtype}")
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def kernel_codes(spec):
    """The compiled kernels of a cell (a :class:`_recurrent.Kernel`) and the
    code of its activation."""
    try:
        kernel = _recurrent.KERNELS[spec.cell, bool(spec.reset_after)]
        return kernel, _ACTIVATIONS[spec.activation]
    except KeyError:
        raise ValueError(f"unsupported cell {spec!r}") from None


def stepper(arch, views, shift, scale, out_scale, out_shift, states, out):
    """A :class:`_recurrent.Stepper`: the compiled step of a one-direction
    network of architecture ``arch`` whose parameters are ``views`` (by
    name, read in place), over the streams whose ``states`` it updates and
    whose head outputs it writes into ``out`` (see the class)."""
    kernel, act = kernel_codes(arch.spec)
    zero_bias = _zero_bias(
        np.dtype(arch.dtype), N_GATES[arch.spec.cell] * arch.hidden_size
    )
    layers = []
    for k in range(arch.num_layers):
        suffix = param_suffix(k, 0)
        layers.append(
            tuple(
                views.get(name + suffix, zero_bias)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
        )
    return _recurrent.Stepper(
        kernel.code,
        act,
        layers,
        views["head.weight"],
        views["head.bias"],
        shift,
        scale,
        out_scale,
        out_shift,
        states,
        out,
    )


# One sequence's steps are split between two threads, at inference, where
# its recurrent weights take at least this many bytes: a step then reads
# them from beyond one core's L2 cache, and two cores read them faster than
# one; below it, the threads' hand-over at each step costs more than the
# split saves (benchmarks/bench_lone_row.py).
LONE_ROW_SPLIT_BYTES = 1 << 20

_Cell = _recurrent.Cell
_SPLIT_CELLS = (_Cell.RNN, _Cell.LSTM, _Cell.GRU_RESET_AFTER)


def _splits(kernel, x, GH, H, n_live, keep_cache):
    """Whether :func:`forward` runs :func:`_recurrent.lone_row_forward` on
    two threads: a float32 inference pass over one sequence live at every
    step, of an RNN, LSTM or reset-after GRU whose recurrent weights are
    large (see LONE_ROW_SPLIT_BYTES) and whose H splits into whole panels,
    on a CPU with the packed kernel, in a block with two workers at hand."""
    T, N, _ = x.shape
    return (
        not keep_cache
        and N == 1
        and T > 0
        and n_live[T - 1] == 1
        and x.dtype == np.float32
        and kernel.code in _SPLIT_CELLS
        and H % 32 == 0
        and GH * H * 4 >= LONE_ROW_SPLIT_BYTES
        and _recurrent.packed_size(kernel.code, H) > 0
        and workers_at_hand() >= 2
    )


def _lone_row_forward(kernel, act, reverse, x, weights, h, c, window, keep_outputs):
    """:func:`forward`'s pass where :func:`_splits`: ``h`` and ``c`` (views
    of (1, H)) become the final state; the outputs, if kept."""
    T, H, GH = x.shape[0], h.shape[1], weights["w_hh"].shape[0]
    f32 = np.dtype(np.float32)
    states = np.empty((2, H), dtype=f32)
    states[0] = h[0]
    cell = c[0] if kernel.code == _Cell.LSTM else _unused(f32, 1)
    outputs = _empty((T if keep_outputs else window, 1, H), f32)
    room = np.empty((2, _recurrent.lone_row_room(GH // H, H)), dtype=f32)
    counters = np.zeros(2, dtype=np.intp)
    args = (kernel.code, act, bool(reverse), x, weights["w_ih"], weights["w_hh"])
    args += (weights["b_ih"], weights["b_hh"], states, cell, outputs)
    args += (_empty((window, 1, GH), f32), _empty((GH * H,), f32), room, counters)
    map_threads(2, lambda _: _recurrent.lone_row_forward(*args), range(2))
    h[0] = states[T % 2]
    return outputs


def _check_params(spec, params, dtype, D):
    """Check ``params`` against ``spec`` and the input width ``D``.

    Returns the cell's kernel, the activation's code, the number of units, and the
    weights and biases as the kernels take them: C-contiguous, named by the
    kernels' arguments, biases zero if the layer has none.
    """
    kernel, act = kernel_codes(spec)
    G = N_GATES[spec.cell]
    w_ih = _contiguous(params["weight_ih"], dtype, "weight_ih")
    w_hh = _contiguous(params["weight_hh"], dtype, "weight_hh")
    GH = w_hh.shape[0] if w_hh.ndim == 2 else 0
    H = GH // G
    if H < 1 or w_hh.shape != (G * H, H) or w_ih.shape != (G * H, D):
        raise ValueError(
            f"weights of shapes {w_ih.shape} and {w_hh.shape} do not fit "
            f"{spec.cell!r} with {D} inputs"
        )
    if spec.use_bias:
        b_ih = _contiguous(params["bias_ih"], dtype, "bias_ih")
        b_hh = _contiguous(params["bias_hh"], dtype, "bias_hh")
        if b_ih.shape != (GH,) or b_hh.shape != (GH,):
            raise ValueError(f"biases must have shape ({GH},)")
    else:
        b_ih = b_hh = _zero_bias(dtype, GH)
    return kernel, act, H, dict(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)


def _live_rows(lengths, N, T):
    """(T,) number of sequences longer than t; checks ``lengths``."""
    lengths = np.asarray(lengths)
    if lengths.shape != (N,) or lengths.dtype.kind not in "iu":
        raise ValueError(f"lengths must be {N} integers, got {lengths!r}")
    n_live = np.empty(T, dtype=np.intp)
    if not _recurrent.live_rows(np.ascontiguousarray(lengths, dtype=np.intp), n_live):
        raise ValueError(
            f"lengths must be sorted longest first and within [0, {T}], got {lengths!r}"
        )
    return n_live


def _cell_states(c0, lengths, T, reverse):
    """The LSTM's cell state before (``c_prev``) and after (``c_new``) each
    step, views of one (T + 1, N, H) array as the outputs and ``h_prev``
    are; ``c_prev`` holds ``c0`` where each sequence starts.

    Forward in time every sequence starts at step 0. Backward in time a
    sequence of length L starts at step L - 1, where ``c_prev`` is the cell
    state after step L of the longer sequences: its row there is not
    written by the kernel (the sequence is not live at step L), so it is
    set here.
    """
    N, H = c0.shape
    cells = _empty((T + 1, N, H), c0.dtype)
    if not reverse:
        cells[0] = c0
        return cells[:-1], cells[1:]
    rows = np.flatnonzero(lengths)
    cells[lengths[rows], rows] = c0[rows]
    return cells[1:], cells[:-1]


def forward(
    spec, params, x, lengths, h0, reverse=False, keep_cache=True, keep_outputs=True
):
    """Run one direction of one layer over a chunk of time steps.

    See :func:`skrnn._engine.reference.forward`; ``lengths`` must be sorted
    longest first. The cache is an opaque object for :func:`backward`.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.dtype not in _DTYPES:
        raise ValueError("x must be a (T, N, D) float32 or float64 numpy array")
    dtype = x.dtype
    x = _contiguous(x, dtype, "x")
    T, N, D = x.shape
    kernel, act, H, weights = _check_params(spec, params, dtype, D)
    GH = weights["w_hh"].shape[0]
    if T * N * max(D, GH) > _INT_MAX:
        raise ValueError("chunk too large for 32-bit BLAS; split it in time")
    two_parts = CELLS[spec.cell].state_parts == 2
    S = 2 * H if two_parts else H
    h0 = _contiguous(h0, dtype, "h0")
    if h0.shape != (N, S):
        raise ValueError(f"h0 must have shape {(N, S)}, got {h0.shape}")
    n_live = _live_rows(lengths, N, T)

    # h and the LSTM's c become h_last
    h = _empty((N, H), dtype)
    h[...] = h0[:, :H]
    c, c_prev, c_new = _unused(dtype, 2), _unused(dtype, 3), _unused(dtype, 3)
    if two_parts:
        c = _empty((N, H), dtype)
        c[...] = h0[:, H:]
        if keep_cache:
            c_prev, c_new = _cell_states(c, np.asarray(lengths), T, reverse)
    # training keeps every step's gates, inference a window's
    window = T
    if not keep_cache:
        step_bytes = max(1, N * GH * dtype.itemsize)
        window = max(1, min(T, INFERENCE_GATES_BYTES // step_bytes))
    if _splits(kernel, x, GH, H, n_live, keep_cache):
        outputs = _lone_row_forward(
            kernel, act, reverse, x, weights, h, c, window, keep_outputs
        )
        h_last = np.concatenate([h, c], axis=1) if two_parts else h
        return (outputs if keep_outputs else None), h_last, None
    h_prev = hn = _unused(dtype, 3)
    # The state before a step is the output of the step before it (h0 for
    # the first): one array of T + 1 steps holds both. Forward in time, the
    # rows of out[t] that the kernel zeroes, past n_live[t], are not used
    # in h_prev[t + 1]. Backward in time, those of out[t + 1] are h_prev[t]
    # of the sequences that start at step t, from h0: shared when their
    # rows of h0 are zero, as in the network's passes.
    if keep_cache and (not reverse or T == 0 or not h[n_live[T - 1] :].any()):
        states = _empty((T + 1, N, H), dtype)
        h_prev, outputs = (
            (states[1:], states[:-1]) if reverse else (states[:-1], states[1:])
        )
    else:
        # outputs that no one reads: a window's, each overwriting the last's
        outputs = _empty((T if keep_outputs or keep_cache else window, N, H), dtype)
        if keep_cache:
            h_prev = _empty((T, N, H), dtype)
    # the RNN's input projection is computed in place in the outputs
    gates = outputs if kernel.gates_in_out else _empty((window, N, GH), dtype)
    # the GRU's recurrent projection of a step, then its gates' pre-activations
    work = _empty((2 * N, GH), dtype) if kernel.work else _unused(dtype, 2)
    if kernel.hn and keep_cache:
        hn = _empty((T, N, H), dtype)
    # what the kernel writes (or reads) that backward reads again
    saved = dict(n_live=n_live, out=outputs, h_prev=h_prev, gates=gates, hn=hn)
    _KERNELS[dtype][0](
        cell=kernel.code,
        act=act,
        reverse=bool(reverse),
        packed=_packed(kernel.code, N, H, dtype),
        x=x,
        h=h,
        c=c,
        c_new=c_new,
        work=work,
        **weights,
        **saved,
    )
    cache = None
    if keep_cache:
        cache = _Cache(
            kernel=kernel,
            reverse=bool(reverse),
            x=x,
            c_prev=c_prev,
            c_new=c_new,
            **saved,
        )
    h_last = np.concatenate([h, c], axis=1) if two_parts else h
    return (outputs if keep_outputs else None), h_last, cache


def backward(
    spec, params, cache, d_outputs, d_h_last=None, need_dx=True, consume_cache=False
):
    """Backpropagate through one direction of one layer.

    See :func:`skrnn._engine.reference.backward`. ``cache`` comes from
    :func:`forward` with ``keep_cache=True`` and the same ``spec`` and
    parameter shapes; it can be used more than once, unless
    ``consume_cache``: then the GRU's gate gradients are written over its
    gate values (and da_n, with reset after, over W_hn h + b_hn) instead of
    into arrays of their own, and the cache cannot be used again.
    """
    if not isinstance(cache, _Cache):
        raise ValueError("backward needs the cache of forward(keep_cache=True)")
    if cache.gates is None:
        raise ValueError("backward(consume_cache=True) has used this cache already")
    x = cache.x
    dtype = x.dtype
    T, N, D = x.shape
    kernel, act, H, weights = _check_params(spec, params, dtype, D)
    w_ih, w_hh = weights["w_ih"], weights["w_hh"]
    if kernel != cache.kernel or cache.out.shape != (T, N, H):
        raise ValueError("spec or parameter shapes differ from the forward pass")
    GH = w_hh.shape[0]
    if d_outputs is None:
        d_outputs = np.zeros((1, N, H), dtype=dtype)  # the kernel's "none"
    else:
        d_outputs = _contiguous(d_outputs, dtype, "d_outputs")
        if d_outputs.shape != (T, N, H):
            raise ValueError(f"d_outputs must have shape {(T, N, H)}")
    two_parts = CELLS[spec.cell].state_parts == 2
    S = 2 * H if two_parts else H
    # the gradients with respect to h_last's h (and c) become those of h0's
    dh, dc = np.zeros((N, H), dtype=dtype), _unused(dtype, 2)
    if two_parts:
        dc = np.zeros((N, H), dtype=dtype)
    if d_h_last is not None:
        d_h_last = np.asarray(d_h_last, dtype=dtype)
        if d_h_last.shape != (N, S):
            raise ValueError(f"d_h_last must have shape {(N, S)}")
        dh[...] = d_h_last[:, :H]
        if two_parts:
            dc[...] = d_h_last[:, H:]

    hn, dan = cache.hn, _unused(dtype, 3)
    if kernel.gates_in_out:
        dg = _empty((T, N, GH), dtype)
    else:
        # The kernel reads the gates (r, z, n or i, f, g, o) from dg and
        # writes their gradients in their place; with reset after, it reads
        # W_hn h + b_hn from dan and writes da_n in its place.
        dg = cache.gates if consume_cache else _copy(cache.gates)
        if kernel.dan:
            dan = hn if consume_cache else _copy(hn)
        if consume_cache:
            cache.gates = cache.hn = None
    work = _empty((N, H), dtype) if kernel.back_work else _unused(dtype, 2)
    db = np.zeros((2, GH), dtype=dtype)
    # the gradients the kernel writes, by its names for them
    written = dict(
        dx=_empty((T, N, D), dtype) if need_dx else _unused(dtype, 3),
        dw_ih=_empty(w_ih.shape, dtype),
        dw_hh=_empty(w_hh.shape, dtype),
        db_ih=db[0],
        db_hh=db[1],
    )
    _KERNELS[dtype][1](
        cell=kernel.code,
        act=act,
        reverse=cache.reverse,
        x=x,
        n_live=cache.n_live,
        w_ih=w_ih,
        w_hh=w_hh,
        out=cache.out,
        h_prev=cache.h_prev,
        hn=hn,
        c_prev=cache.c_prev,
        c_new=cache.c_new,
        d_out=d_outputs,
        dh=dh,
        dc=dc,
        dg=dg,
        dan=dan,
        packed=_packed(kernel.code, N, H, dtype),
        work=work,
        **written,
    )
    grads = {"weight_ih": written["dw_ih"], "weight_hh": written["dw_hh"]}
    if spec.use_bias:
        grads["bias_ih"], grads["bias_hh"] = db
    dh0 = np.concatenate([dh, dc], axis=1) if two_parts else dh
    return (written["dx"] if need_dx else None), dh0, grads
