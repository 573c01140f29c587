"""The CUDA engine: the reference engine on CuPy, with fused gate kernels.

:func:`skrnn._engine.reference.forward` and ``backward`` run unchanged
with ``xp = cupy``: the input projection and the weight gradients are one
cuBLAS GEMM over all time steps each, and the time loop does, per step, the
recurrent GEMM (two for the GRU with ``reset_after=False``, as its math
does) and then one step function. Here those step functions are fused CUDA
kernels — one launch for everything element-wise in a step: gates, masking
of padded steps, outputs, cache and the new state — instead of the dozen
array operations of :class:`~skrnn._engine.reference.StepKernels`, whose
math they copy line by line and against which they are tested. The
recurrent GEMMs call cuBLAS directly, so that a transposed or row-strided
view costs no copy and a step costs no more than two launches.

Launched from Python, those two launches take longer than the GPU takes to
run them at the benchmark's sizes. So a time loop that is seen a second
time with the same shapes is captured into a CUDA graph and, from then on,
replayed in one launch (:class:`StepGraphs`).

CuPy is imported only when this engine is first asked for
(``device="cuda"``); without it, or without a usable device,
:func:`make_engine` raises :class:`~skrnn._engine.CudaUnavailableError`.
"""

import threading
import warnings
from collections import OrderedDict
from functools import partial

import numpy as np

from . import reference
from .engine import CudaUnavailableError, Engine

INSTALL_HINT = (
    "pip install skrnn[gpu] (CuPy for CUDA 12, cupy-cuda12x), or "
    "pip install skrnn[gpu13] for CUDA 13 (cupy-cuda13x)"
)


def import_cupy():
    """Import CuPy and check that it sees a usable CUDA device.

    Raises
    ------
    CudaUnavailableError
        Saying whether CuPy is missing (or fails to import) or finds no
        usable device, and how to install it.
    """
    try:
        import cupy
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "cupy":
            raise CudaUnavailableError(
                f"device='cuda' needs CuPy. CuPy is not installed: {INSTALL_HINT}."
            ) from exc
        raise CudaUnavailableError(
            f"device='cuda' needs CuPy. CuPy is installed but could not be imported "
            f"({exc}); reinstall the wheel that matches your CUDA version: "
            f"{INSTALL_HINT}."
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise RuntimeError("no CUDA device is visible (check CUDA_VISIBLE_DEVICES)")
        cupy.cuda.Device().compute_capability  # noqa: B018 - touches the device
        cupy.empty(1, dtype=cupy.float32)
    except Exception as exc:  # CUDARuntimeError: no driver, driver too old, ...
        raise CudaUnavailableError(
            "device='cuda' needs a CUDA device. CuPy is installed but found no "
            f"usable CUDA device: {exc}. Check the NVIDIA driver (nvidia-smi) and "
            f"that the CuPy wheel matches your CUDA version ({INSTALL_HINT})."
        ) from exc
    return cupy


class CupyMemory:
    """The GPU's memory, as the network's device copies see it."""

    def __init__(self, cupy):
        self.cupy = cupy

    def to_device(self, a):
        return self.cupy.array(a, copy=True)

    def to_host(self, a):
        return self.cupy.asnumpy(a)

    def free_bytes(self):
        free, _ = self.cupy.cuda.runtime.memGetInfo()
        return free + self.cupy.get_default_memory_pool().free_bytes()


# The activations and their derivatives (in terms of the output), as in
# reference.activate / reference.activation_grad. relu keeps NaN as NaN, as
# numpy.maximum does, so that divergence is seen.
_ACTIVATIONS = {
    "tanh": ("tanh(a)", "(T(1) - (y) * (y))"),
    "logistic": ("(T(0.5) * (tanh(T(0.5) * (a)) + T(1)))", "((y) * (T(1) - (y)))"),
    "relu": ("((a) < T(0) ? T(0) : (a))", "((y) > T(0) ? T(1) : T(0))"),
    "identity": ("(a)", "T(1)"),
}

# One thread per (row, unit) of the (N, H) state; ``t`` indexes the (T, N, .)
# arrays, ``c`` the cache (t, or 0 for inference's one-step scratch).
# Layouts: gi, d_gi, d_gh (T, N, G*H); gh (N, G*H) or (N, 2H); mask (T, N);
# everything else (T, N, H) or (N, H); all C-contiguous.
_SOURCE = r"""
typedef long long ll;
#define SIGMOID(a) (T(0.5) * (tanh(T(0.5) * (a)) + T(1)))
#define ELEMENT \
    const ll i = (ll)blockDim.x * blockIdx.x + threadIdx.x; \
    if (i >= N * H) return; \
    const ll row = i / H, col = i - row * H;

extern "C" __global__ void rnn_forward(
    ll N, ll H, ll t, ll c, const T* gi, const T* gh, const T* b, ll has_b,
    const bool* mask, T* h, T* out, T* h_prev, T* h_new)
{
    ELEMENT
    const ll st = t * N * H + i, sc = c * N * H + i;
    T a = gi[st] + gh[i];
    if (has_b) a += b[col];
    const T y = ACT(a), h_old = h[i];
    const bool m = mask[t * N + row];
    h_prev[sc] = h_old;
    h_new[sc] = y;
    out[st] = m ? y : T(0);
    h[i] = m ? y : h_old;
}

extern "C" __global__ void gru_forward(
    ll N, ll H, ll t, ll c, const T* gi, const T* gh, const T* b, ll has_b,
    const bool* mask, T* h, T* out, T* h_prev, T* r, T* z, T* n, T* hn_term)
{
    ELEMENT
    const ll g = (t * N + row) * 3 * H + col, q = row * 3 * H + col;
    const ll st = t * N * H + i, sc = c * N * H + i;
    T br = 0, bz = 0, bn = 0;
    if (has_b) { br = b[col]; bz = b[H + col]; bn = b[2 * H + col]; }
    const T rr = SIGMOID(gi[g] + (gh[q] + br));
    const T zz = SIGMOID(gi[g + H] + (gh[q + H] + bz));
    const T hn = gh[q + 2 * H] + bn;
    const T nn = ACT(gi[g + 2 * H] + rr * hn);
    const T h_old = h[i];
    const T y = zz * h_old + (T(1) - zz) * nn;
    const bool m = mask[t * N + row];
    h_prev[sc] = h_old; r[sc] = rr; z[sc] = zz; n[sc] = nn; hn_term[sc] = hn;
    out[st] = m ? y : T(0);
    h[i] = m ? y : h_old;
}

extern "C" __global__ void gru_forward_rz(
    ll N, ll H, ll t, ll c, const T* gi, const T* gh, const T* b, ll has_b,
    const T* h, T* h_prev, T* r, T* z, T* hn_term)
{
    ELEMENT
    const ll g = (t * N + row) * 3 * H + col, q = row * 2 * H + col;
    const ll sc = c * N * H + i;
    T br = 0, bz = 0;
    if (has_b) { br = b[col]; bz = b[H + col]; }
    const T rr = SIGMOID(gi[g] + (gh[q] + br));
    const T zz = SIGMOID(gi[g + H] + (gh[q + H] + bz));
    const T h_old = h[i];
    h_prev[sc] = h_old; r[sc] = rr; z[sc] = zz; hn_term[sc] = rr * h_old;
}

extern "C" __global__ void gru_forward_n(
    ll N, ll H, ll t, ll c, const T* gi, const T* gn, const T* b, ll has_b,
    const bool* mask, T* h, T* out, const T* z, T* n)
{
    ELEMENT
    const ll g = (t * N + row) * 3 * H + col;
    const ll st = t * N * H + i, sc = c * N * H + i;
    T a = gi[g + 2 * H] + gn[i];
    if (has_b) a += b[2 * H + col];
    const T nn = ACT(a), zz = z[sc], h_old = h[i];
    const T y = zz * h_old + (T(1) - zz) * nn;
    const bool m = mask[t * N + row];
    n[sc] = nn;
    out[st] = m ? y : T(0);
    h[i] = m ? y : h_old;
}

extern "C" __global__ void lstm_forward(
    ll N, ll H, ll t, ll c, const T* gi, const T* gh, const T* b, ll has_b,
    const bool* mask, T* h, T* cell, T* out, T* h_prev, T* c_prev,
    T* gate_i, T* gate_f, T* gate_g, T* gate_o, T* tc)
{
    ELEMENT
    const ll g = (t * N + row) * 4 * H + col, q = row * 4 * H + col;
    const ll st = t * N * H + i, sc = c * N * H + i;
    T bi = 0, bf = 0, bg = 0, bo = 0;
    if (has_b) {
        bi = b[col]; bf = b[H + col]; bg = b[2 * H + col]; bo = b[3 * H + col];
    }
    const T ii = SIGMOID((gi[g] + gh[q]) + bi);
    const T ff = SIGMOID((gi[g + H] + gh[q + H]) + bf);
    const T gg = tanh((gi[g + 2 * H] + gh[q + 2 * H]) + bg);
    const T oo = SIGMOID((gi[g + 3 * H] + gh[q + 3 * H]) + bo);
    const T h_old = h[i], c_old = cell[i];
    const T c_new = ff * c_old + ii * gg, tn = tanh(c_new), y = oo * tn;
    const bool m = mask[t * N + row];
    h_prev[sc] = h_old; c_prev[sc] = c_old;
    gate_i[sc] = ii; gate_f[sc] = ff; gate_g[sc] = gg; gate_o[sc] = oo; tc[sc] = tn;
    out[st] = m ? y : T(0);
    h[i] = m ? y : h_old;
    cell[i] = m ? c_new : c_old;
}

extern "C" __global__ void rnn_backward(
    ll N, ll H, ll t, const bool* mask, const T* d_out, const T* h_new,
    T* dh, const T* dh_rec, T* d_gi)
{
    ELEMENT
    const ll st = t * N * H + i;
    const bool m = mask[t * N + row];
    const T g = dh[i] + dh_rec[i] + (m ? d_out[st] : T(0));
    const T gs = m ? g : T(0);
    const T y = h_new[st];
    d_gi[st] = gs * DACT(y);
    dh[i] = g - gs;
}

extern "C" __global__ void gru_backward(
    ll N, ll H, ll t, const bool* mask, const T* d_out, const T* h_prev,
    const T* r, const T* z, const T* n, const T* hn_term,
    T* dh, const T* dh_rec, T* d_gi, T* d_gh)
{
    ELEMENT
    const ll st = t * N * H + i, g = (t * N + row) * 3 * H + col;
    const bool m = mask[t * N + row];
    const T gr = dh[i] + dh_rec[i] + (m ? d_out[st] : T(0));
    const T gs = m ? gr : T(0);
    const T rr = r[st], zz = z[st], y = n[st];
    const T da_n = gs * (T(1) - zz) * DACT(y);
    const T da_z = gs * (h_prev[st] - y) * zz * (T(1) - zz);
    const T da_r = da_n * hn_term[st] * rr * (T(1) - rr);
    d_gi[g] = da_r; d_gi[g + H] = da_z; d_gi[g + 2 * H] = da_n;
    d_gh[g] = da_r; d_gh[g + H] = da_z; d_gh[g + 2 * H] = da_n * rr;
    dh[i] = (gr - gs) + gs * zz;
}

extern "C" __global__ void gru_backward_zn(
    ll N, ll H, ll t, const bool* mask, const T* d_out, const T* h_prev,
    const T* z, const T* n, T* dh, const T* dh_rec, T* d_gi, T* da_n)
{
    ELEMENT
    const ll st = t * N * H + i, g = (t * N + row) * 3 * H + col;
    const bool m = mask[t * N + row];
    const T gr = dh[i] + dh_rec[i] + (m ? d_out[st] : T(0));
    const T gs = m ? gr : T(0);
    const T zz = z[st], y = n[st];
    const T dn = gs * (T(1) - zz) * DACT(y);
    da_n[i] = dn;
    d_gi[g + H] = gs * (h_prev[st] - y) * zz * (T(1) - zz);
    d_gi[g + 2 * H] = dn;
    dh[i] = (gr - gs) + gs * zz;
}

extern "C" __global__ void lstm_backward(
    ll N, ll H, ll t, const bool* mask, const T* d_out, const T* c_prev,
    const T* gate_i, const T* gate_f, const T* gate_g, const T* gate_o,
    const T* tc, T* dh, T* dc, const T* dh_rec, T* d_gi)
{
    ELEMENT
    const ll st = t * N * H + i, g = (t * N + row) * 4 * H + col;
    const bool m = mask[t * N + row];
    const T gr = dh[i] + dh_rec[i] + (m ? d_out[st] : T(0));
    const T gs = m ? gr : T(0);
    const T ii = gate_i[st], ff = gate_f[st], gg = gate_g[st], oo = gate_o[st];
    const T tn = tc[st], dc_old = dc[i];
    const T d_cell = (m ? dc_old : T(0)) + gs * oo * (T(1) - tn * tn);
    d_gi[g] = d_cell * gg * ii * (T(1) - ii);
    d_gi[g + H] = d_cell * c_prev[st] * ff * (T(1) - ff);
    d_gi[g + 2 * H] = d_cell * ii * (T(1) - gg * gg);
    d_gi[g + 3 * H] = gs * tn * oo * (T(1) - oo);
    dh[i] = gr - gs;
    dc[i] = m ? d_cell * ff : dc_old;
}

extern "C" __global__ void gru_backward_r(
    ll N, ll H, ll t, const T* h_prev, const T* r, const T* d_rh, T* dh, T* d_gi)
{
    ELEMENT
    const ll st = t * N * H + i, g = (t * N + row) * 3 * H + col;
    const T rr = r[st], d = d_rh[i];
    d_gi[g] = d * h_prev[st] * rr * (T(1) - rr);
    dh[i] = dh[i] + d * rr;
}
"""

_BLOCK = 256


class CudaKernels(reference.StepKernels):
    """:class:`~skrnn._engine.reference.StepKernels` as fused CUDA kernels.

    Each step function is one kernel launch over the (N, H) state, compiled
    on first use for each dtype and activation (NVRTC; CuPy caches the
    binaries on disk). :meth:`matmul` calls cuBLAS's gemm directly.
    """

    def __init__(self, cupy):
        super().__init__(cupy)
        from cupy_backends.cuda.libs import cublas

        self._cublas = cublas
        self._functions = {}
        self._gemm = {
            np.dtype(np.float32): cublas.sgemm,
            np.dtype(np.float64): cublas.dgemm,
        }
        # alpha = 1, beta = 0, read by cuBLAS from host memory: the arrays and
        # their addresses (reading ``.ctypes.data`` costs microseconds a step)
        self._scalar_arrays = [
            (np.ones(1, dtype=dt), np.zeros(1, dtype=dt)) for dt in self._gemm
        ]
        self._scalars = {
            dt: (one.ctypes.data, zero.ctypes.data)
            for dt, (one, zero) in zip(self._gemm, self._scalar_arrays)
        }

    def _launch(self, name, act, like, args):
        """Run kernel ``name`` over the (N, H) elements of ``like``, in its dtype."""
        (N, H), dtype = like.shape, like.dtype
        key = (name, dtype, act)
        fn = self._functions.get(key)
        if fn is None:
            ctype = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[
                dtype
            ]
            act_expr, grad_expr = _ACTIVATIONS[act or "identity"]
            header = (
                f"typedef {ctype} T;\n#define ACT(a) {act_expr}\n"
                f"#define DACT(y) {grad_expr}\n"
            )
            module = self.xp.RawModule(code=header + _SOURCE)
            fn = self._functions[key] = module.get_function(name)
        blocks = (N * H + _BLOCK - 1) // _BLOCK
        if blocks:
            fn((blocks,), (_BLOCK,), (N, H, *args))

    @staticmethod
    def _bias(b_hh, dummy):
        return (dummy, 0) if b_hh is None else (b_hh, 1)

    # ------------------------------------------------------------------ GEMM
    @staticmethod
    def _operand(x):
        """How cuBLAS (column-major) reads row-major operand ``x``: (op, ld, x).

        A row-major (rows, cols) array with unit column stride is, to cuBLAS,
        its transpose with leading dimension ``strides[0]``: op N. A
        transposed view (unit row stride) is the matrix itself: op T.
        """
        rows, cols = x.shape
        isz = x.itemsize
        s0, s1 = x.strides
        if s1 == isz and (rows == 1 or s0 >= cols * isz) and s0 % isz == 0:
            return 0, max(s0 // isz, cols, 1), x  # CUBLAS_OP_N
        if s0 == isz and (cols == 1 or s1 >= rows * isz) and s1 % isz == 0:
            return 1, max(s1 // isz, rows, 1), x  # CUBLAS_OP_T
        x = x.copy()  # C-contiguous
        return 0, max(cols, 1), x

    def matmul(self, a, b, out):
        """``out[...] = a @ b`` through cuBLAS; ``out`` has unit column stride."""
        n, k = a.shape
        m = b.shape[1]
        dtype = out.dtype
        if a.dtype != dtype or b.dtype != dtype or out.strides[1] != out.itemsize:
            out[...] = self.xp.matmul(a, b)
            return
        if n == 0 or m == 0:
            return
        if k == 0:
            out.fill(0)
            return
        # row-major out = a @ b is column-major out^T = b^T a^T
        op_b, ld_b, b = self._operand(b)
        op_a, ld_a, a = self._operand(a)
        ld_c = max(out.strides[0] // out.itemsize, m, 1)
        cublas = self._cublas
        handle = self.xp.cuda.device.get_cublas_handle()
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
        one, zero = self._scalars[dtype]
        self._gemm[dtype](
            handle,
            op_b,
            op_a,
            m,
            n,
            k,
            one,
            b.data.ptr,
            ld_b,
            a.data.ptr,
            ld_a,
            zero,
            out.data.ptr,
            ld_c,
        )

    # --------------------------------------------------------------- forward
    def rnn_forward(self, act, t, c, gi, gh, b_hh, mask, h, out, h_prev, h_new):
        args = (t, c, gi, gh, *self._bias(b_hh, gh), mask, h, out, h_prev, h_new)
        self._launch("rnn_forward", act, h, args)

    def gru_forward(
        self, act, t, c, gi, gh, b_hh, mask, h, out, h_prev, r, z, n, hn_term
    ):
        bias = self._bias(b_hh, gh)
        args = (t, c, gi, gh, *bias, mask, h, out, h_prev, r, z, n, hn_term)
        self._launch("gru_forward", act, h, args)

    def gru_forward_rz(self, t, c, gi, gh, b_hh, h, h_prev, r, z, hn_term):
        args = (t, c, gi, gh, *self._bias(b_hh, gh), h, h_prev, r, z, hn_term)
        self._launch("gru_forward_rz", None, h, args)

    def gru_forward_n(self, act, t, c, gi, gn, b_hh, mask, h, out, z, n):
        args = (t, c, gi, gn, *self._bias(b_hh, gn), mask, h, out, z, n)
        self._launch("gru_forward_n", act, h, args)

    def lstm_forward(
        self, t, c, gi, gh, b_hh, mask, h, cell, out, h_prev, c_prev, i, f, g, o, tc
    ):
        bias = self._bias(b_hh, gh)
        args = (t, c, gi, gh, *bias, mask, h, cell, out, h_prev, c_prev, i, f, g, o, tc)
        self._launch("lstm_forward", None, h, args)

    # -------------------------------------------------------------- backward
    def rnn_backward(self, act, t, mask, d_out, h_new, dh, dh_rec, d_gi):
        args = (t, mask, d_out, h_new, dh, dh_rec, d_gi)
        self._launch("rnn_backward", act, dh, args)

    def gru_backward(
        self, act, t, mask, d_out, h_prev, r, z, n, hn_term, dh, dh_rec, d_gi, d_gh
    ):
        args = (t, mask, d_out, h_prev, r, z, n, hn_term, dh, dh_rec, d_gi, d_gh)
        self._launch("gru_backward", act, dh, args)

    def gru_backward_zn(
        self, act, t, mask, d_out, h_prev, z, n, dh, dh_rec, d_gi, da_n
    ):
        args = (t, mask, d_out, h_prev, z, n, dh, dh_rec, d_gi, da_n)
        self._launch("gru_backward_zn", act, dh, args)

    def gru_backward_r(self, t, h_prev, r, d_rh, dh, d_gi):
        self._launch("gru_backward_r", None, dh, (t, h_prev, r, d_rh, dh, d_gi))

    def lstm_backward(
        self, t, mask, d_out, c_prev, i, f, g, o, tc, dh, dc, dh_rec, d_gi
    ):
        args = (t, mask, d_out, c_prev, i, f, g, o, tc, dh, dc, dh_rec, d_gi)
        self._launch("lstm_backward", None, dh, args)


# Bytes of buffers that the graphs of one engine may hold (the least
# recently used graph is dropped first); a loop that needs more runs eagerly.
GRAPH_BYTES = 1 << 30
# How many keys seen once are remembered: a loop is captured on its second
# sighting, and data with a new length per batch would otherwise grow the set.
MAX_SEEN = 4096


class StepGraphs(reference.EagerLoops):
    """Time loops captured once per shape and replayed as one launch each.

    A key names everything a captured loop bakes in: the loop, the cell, the
    shapes, the dtype, the direction, and the thread and stream that run it
    (so that two threads never share buffers). The first call with a key runs
    the loop eagerly, which also compiles its kernels and sets up cuBLAS
    outside any capture; the second captures it on buffers of its own, with
    ``capture``, and every later call copies its inputs into those buffers
    and replays the graph. The caller copies the results out before the next
    call. If a capture fails, graphs are turned off for this object, with a
    warning, and every loop runs eagerly: slower, never wrong.

    Parameters
    ----------
    xp : module
        The array module (CuPy; NumPy in the tests).
    capture : callable
        ``capture(fn)`` records what ``fn()`` launches, without running it,
        into a graph with a ``launch()`` method (:class:`CupyCapture`);
        ``capture.stream()`` names the stream that launches run on.
    budget : int, default=GRAPH_BYTES
        Bytes of buffers the graphs may hold together.
    """

    def __init__(self, xp, capture, budget=GRAPH_BYTES):
        self.xp = xp
        self.capture = capture
        self.budget = budget
        self.enabled = True
        self._graphs = OrderedDict()  # key -> (work, graph, nbytes); None: too big
        self._bytes = 0
        self._seen = set()
        self._lock = threading.Lock()

    def key(self, *parts):
        """``parts`` plus the calling thread and its current stream."""
        return parts + (threading.get_ident(), self.capture.stream())

    def run(self, key, inputs, buffers, steps):
        """Run the loop ``steps(work)`` on ``work`` = ``inputs`` + ``buffers()``.

        Returns ``(work, replayed)``. Replayed: ``work`` is the key's own
        buffers with ``inputs`` copied in, which the next call with this key
        overwrites. Otherwise ``work`` holds ``inputs`` themselves and new
        buffers, and the loop ran eagerly.
        """
        entry = self._entry(key, inputs, buffers, steps)
        if entry is None:
            return super().run(key, inputs, buffers, steps)
        work, graph = entry
        for name, value in inputs.items():
            work[name][...] = value
        graph.launch()
        return work, True

    def _entry(self, key, inputs, buffers, steps):
        with self._lock:
            if not self.enabled:
                return None
            if key in self._graphs:
                self._graphs.move_to_end(key)
                entry = self._graphs[key]
                return entry and entry[:2]
            if key not in self._seen:
                if len(self._seen) >= MAX_SEEN:
                    self._seen.clear()
                self._seen.add(key)
                return None
        work = {name: self.xp.empty_like(value) for name, value in inputs.items()}
        work.update(buffers())
        nbytes = sum({id(a): a.nbytes for a in work.values()}.values())
        graph = None
        if nbytes <= self.budget:
            try:
                graph = self.capture(lambda: steps(work))
            except Exception as exc:  # a CUDA error: an unsupported call in the capture
                with self._lock:
                    self.enabled = False
                warnings.warn(
                    "skrnn could not capture a CUDA graph "
                    f"({type(exc).__name__}: {exc}); "
                    "the GPU engine goes on without graphs, which is slower.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return None
        with self._lock:
            if graph is None:
                self._graphs[key] = None
                return None
            while self._graphs and self._bytes + nbytes > self.budget:
                _, dropped = self._graphs.popitem(last=False)
                self._bytes -= dropped[2] if dropped else 0
            self._graphs[key] = (work, graph, nbytes)
            self._bytes += nbytes
        return work, graph


class CupyCapture:
    """CUDA stream capture through CuPy, as :class:`StepGraphs` uses it.

    Captures on a stream of its own (the legacy default stream cannot be
    captured); the graph it returns launches on the caller's current stream.
    """

    def __init__(self, cupy):
        self.cupy = cupy
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._lock = threading.Lock()  # one capture at a time on that stream

    def stream(self):
        return self.cupy.cuda.get_current_stream().ptr

    def __call__(self, fn):
        stream = self._stream
        with self._lock, stream:
            stream.begin_capture()
            try:
                fn()
            finally:
                graph = stream.end_capture()
        return graph


def make_engine():
    """The ``"cuda"`` engine; raises CudaUnavailableError when it cannot run."""
    cupy = import_cupy()
    passes = dict(kernels=CudaKernels(cupy), loops=StepGraphs(cupy, CupyCapture(cupy)))
    return Engine(
        "cuda",
        cupy,
        partial(reference.forward, **passes),
        partial(reference.backward, **passes),
        CupyMemory(cupy),
    )
