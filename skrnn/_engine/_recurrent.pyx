"""Compiled forward and backward passes of one direction of one layer.

The kernels behind :mod:`skrnn._engine.cpu`; :mod:`skrnn._engine.reference`
specifies their math. Elman RNN, both GRU forms and the LSTM share one file
because they share everything but the gate loops: the input projection, the
time loop over packed rows and the weight gradients.

The recipe is cuDNN's:

- forward: one GEMM projects the inputs of all steps, ``x @ W_ih.T``; then
  per step one GEMM ``h @ W_hh.T`` on the live rows (two for the GRU with
  ``reset_after=False``, whose candidate needs ``r * h`` first) and one
  fused loop over the gates;
- backward: per step one fused loop from the state's gradient to the gate
  gradients ``dG_t``, then ``dh = dG_t @ W_hh``; after the loop the weight
  gradients are GEMMs over all steps at once (``dG.T @ x``,
  ``dG.T @ h_prev``), ``dx = dG @ W_ih`` another, and the bias gradients
  column sums accumulated in the gate loops.

In float32, on a CPU with AVX2 or AVX-512, the per-step GEMMs multiply by
a copy of the recurrent weights packed once per pass (``_packed.h``)
instead of calling BLAS, which would repack them at every step. The gate
loops, forward and backward, are C (``_gates.h``), so that they vectorise.

Arrays are time-major and C-contiguous. The caller sorts sequences by
length, longest first, so at step t the live rows are the first
``n_live[t]`` rows of that step's slab: the per-step GEMMs and loops touch
only them (PyTorch's packed sequences), and the big GEMMs skip the padded
rows too, so padded inputs are never read. Every shape is checked by the
caller; the kernels run without bounds checks, without the GIL and without
allocating.
"""

from collections import namedtuple

import numpy as np

from cython cimport floating
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport numpy as cnp

from ._blas cimport gemm

cnp.import_array()


cpdef enum Cell:
    RNN
    GRU_RESET_AFTER
    GRU_RESET_BEFORE
    LSTM


#: What a cell's kernels need from their callers beyond the inputs, states,
#: outputs and parameters: ``code``, the kernels' name for the cell;
#: ``gates_in_out``, the forward pass computes its one gate in place in the
#: outputs (it keeps no gates, and backward needs (T, N, G*H) room for the
#: gate gradients; otherwise backward writes them over the cached gates);
#: ``hn``, the forward pass caches a (T, N, H) value per step for backward;
#: ``dan``, backward writes that value's gradient over it; ``work``, the
#: forward pass takes (2N, G*H) room for a step; ``back_work``, backward
#: takes (N, H). A cell with two state parts (the cell table's
#: ``state_parts``) also takes the cell states ``c``, ``c_prev``, ``c_new``.
Kernel = namedtuple("Kernel", "code gates_in_out hn dan work back_work")

#: The kernels of each cell, by (name, reset_after), which only the GRU reads.
KERNELS = {
    ("rnn", False): Kernel(RNN, True, False, False, False, False),
    ("rnn", True): Kernel(RNN, True, False, False, False, False),
    ("gru", True): Kernel(GRU_RESET_AFTER, False, True, True, True, False),
    ("gru", False): Kernel(GRU_RESET_BEFORE, False, True, False, True, True),
    ("lstm", False): Kernel(LSTM, False, False, False, False, False),
    ("lstm", True): Kernel(LSTM, False, False, False, False, False),
}


cdef extern from "_gates.h" nogil:
    cpdef enum Activation "skrnn_activation":
        TANH "SKRNN_TANH"
        LOGISTIC "SKRNN_LOGISTIC"
        RELU "SKRNN_RELU"
        IDENTITY "SKRNN_IDENTITY"

    # The gate loops, in C so that they vectorise (see _gates.h).
    void skrnn_rnn_forward_f32(int act, Py_ssize_t nt, Py_ssize_t H,
                               const float* b_ih, const float* b_hh, float* g,
                               float* h, float* out)
    void skrnn_rnn_forward_f64(int act, Py_ssize_t nt, Py_ssize_t H,
                               const double* b_ih, const double* b_hh, double* g,
                               double* h, double* out)
    void skrnn_gru_after_forward_f32(int act, Py_ssize_t nt, Py_ssize_t H,
                                     const float* b_ih, const float* b_hh,
                                     const float* gh, float* g, float* hn, float* pre,
                                     float* h, float* out)
    void skrnn_gru_after_forward_f64(int act, Py_ssize_t nt, Py_ssize_t H,
                                     const double* b_ih, const double* b_hh,
                                     const double* gh, double* g, double* hn,
                                     double* pre, double* h, double* out)
    void skrnn_gru_before_forward_r_f32(Py_ssize_t nt, Py_ssize_t H,
                                        const float* b_ih, const float* b_hh,
                                        const float* grz, const float* g, float* pre,
                                        const float* h, float* rh)
    void skrnn_gru_before_forward_r_f64(Py_ssize_t nt, Py_ssize_t H,
                                        const double* b_ih, const double* b_hh,
                                        const double* grz, const double* g,
                                        double* pre, const double* h, double* rh)
    void skrnn_gru_before_forward_n_f32(int act, Py_ssize_t nt, Py_ssize_t H,
                                        const float* b_ih, const float* b_hh,
                                        float* g, float* pre, float* h, float* out)
    void skrnn_gru_before_forward_n_f64(int act, Py_ssize_t nt, Py_ssize_t H,
                                        const double* b_ih, const double* b_hh,
                                        double* g, double* pre, double* h, double* out)
    void skrnn_rnn_back_f32(int act, Py_ssize_t nt, Py_ssize_t H, const float* out,
                            const float* d_out, const float* dh, float* dg,
                            float* db)
    void skrnn_rnn_back_f64(int act, Py_ssize_t nt, Py_ssize_t H, const double* out,
                            const double* d_out, const double* dh, double* dg,
                            double* db)
    void skrnn_gru_after_back_f32(int act, Py_ssize_t nt, Py_ssize_t H, float* g,
                                  const float* h_prev, float* hn, const float* d_out,
                                  float* dh, float* db_ih, float* db_hh)
    void skrnn_gru_after_back_f64(int act, Py_ssize_t nt, Py_ssize_t H, double* g,
                                  const double* h_prev, double* hn,
                                  const double* d_out, double* dh, double* db_ih,
                                  double* db_hh)
    void skrnn_gru_before_back_zn_f32(int act, Py_ssize_t nt, Py_ssize_t H, float* g,
                                      const float* h_prev, const float* d_out,
                                      float* dh, float* db)
    void skrnn_gru_before_back_zn_f64(int act, Py_ssize_t nt, Py_ssize_t H,
                                      double* g, const double* h_prev,
                                      const double* d_out, double* dh, double* db)
    void skrnn_gru_before_back_r_f32(Py_ssize_t nt, Py_ssize_t H, float* g,
                                     const float* h_prev, const float* d_rh,
                                     float* dh, float* db)
    void skrnn_gru_before_back_r_f64(Py_ssize_t nt, Py_ssize_t H, double* g,
                                     const double* h_prev, const double* d_rh,
                                     double* dh, double* db)
    void skrnn_lstm_forward_f32(Py_ssize_t nt, Py_ssize_t H, const float* b_ih,
                                const float* b_hh, float* g, float* c,
                                float* c_new, float* h, float* out)
    void skrnn_lstm_forward_f64(Py_ssize_t nt, Py_ssize_t H, const double* b_ih,
                                const double* b_hh, double* g, double* c,
                                double* c_new, double* h, double* out)
    void skrnn_lstm_back_f32(Py_ssize_t nt, Py_ssize_t H, float* g,
                             const float* c_prev, const float* c_new,
                             const float* d_out, const float* dh, float* dc,
                             float* db)
    void skrnn_lstm_back_f64(Py_ssize_t nt, Py_ssize_t H, double* g,
                             const double* c_prev, const double* c_new,
                             const double* d_out, const double* dh, double* dc,
                             double* db)


cdef extern from "_sync.h" nogil:
    Py_ssize_t skrnn_claim(Py_ssize_t* next)
    void skrnn_finish(Py_ssize_t* done)
    void skrnn_wait(Py_ssize_t* done, Py_ssize_t count)


cdef extern from "_packed.h" nogil:
    Py_ssize_t skrnn_packed_size(Py_ssize_t K, Py_ssize_t N)
    int skrnn_packed_level()
    int skrnn_set_packed_level(int level)
    void skrnn_pack_f32(int trans, Py_ssize_t K, Py_ssize_t N, const float* B,
                        Py_ssize_t ldb, float* Bp)
    void skrnn_packed_gemm_f32(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                               const float* A, Py_ssize_t lda, const float* Bp,
                               int accumulate, float* C, Py_ssize_t ldc)
    void skrnn_reduce_f32(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A,
                          Py_ssize_t lda, const float* B, Py_ssize_t ldb,
                          int accumulate, float* C, Py_ssize_t ldc)


cdef inline void _step_gemm(char transb, int m, int n, int k,
                            const floating* a, int lda, const floating* b, int ldb,
                            const float* bp, floating beta, floating* c,
                            int ldc) noexcept nogil:
    """``c = a @ op(b) + beta * c`` (beta 0 or 1) for one step's live rows.

    From ``bp``, op(b) packed by :func:`_pack`, when there is one (float32 on
    a CPU with a packed kernel), else through BLAS.
    """
    if floating is float:
        if bp != NULL:
            skrnn_packed_gemm_f32(m, n, k, a, lda, bp, beta != 0, c, ldc)
            return
    gemm(c'N', transb, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)


cdef const float* _pack(float* packed, Py_ssize_t offset, int trans,
                        Py_ssize_t k, Py_ssize_t n, const floating* b,
                        Py_ssize_t ldb) noexcept nogil:
    """op(b) (k x n) packed into ``packed`` from ``offset`` on; NULL (use
    BLAS) in float64 or when ``packed`` is NULL."""
    if floating is float:
        if packed != NULL:
            skrnn_pack_f32(trans, k, n, b, ldb, packed + offset)
            return packed + offset
    return NULL


def packed_size(int cell, Py_ssize_t H):
    """Floats of room :func:`forward` and :func:`backward` need to pack the
    recurrent weights of a float32 layer of H units (0: this CPU has no
    packed kernel, BLAS is used)."""
    cdef Py_ssize_t GH = {LSTM: 4, GRU_RESET_AFTER: 3}.get(cell, 1) * H
    if skrnn_packed_level() == 0:
        return 0
    if cell == GRU_RESET_BEFORE:
        # forward W_rz.T, W_n.T; backward W_n, W_rz
        return max(skrnn_packed_size(H, 2 * H) + skrnn_packed_size(H, H),
                   skrnn_packed_size(H, H) + skrnn_packed_size(2 * H, H))
    # forward W_hh.T, backward W_hh
    return max(skrnn_packed_size(H, GH), skrnn_packed_size(GH, H))


cdef Py_ssize_t _n_full(const Py_ssize_t* n_live, Py_ssize_t T,
                        Py_ssize_t N) noexcept nogil:
    """Number of leading steps where all N rows are live."""
    cdef Py_ssize_t t = 0
    while t < T and n_live[t] == N:
        t += 1
    return t


cdef void _gemm_rows(char transb, Py_ssize_t s0, Py_ssize_t s1,
                     const Py_ssize_t* n_live, Py_ssize_t N, Py_ssize_t n_full,
                     int n, int k, const floating* a, int lda,
                     const floating* b, int ldb, floating beta,
                     floating* c, int ldc) noexcept nogil:
    """``c[r] = a[r] @ op(b) + beta * c[r]`` for the live rows r of steps s0..s1-1.

    ``a`` and ``c`` point at step s0's slab of N rows. The steps where every
    row is live are contiguous: one GEMM covers them, then one per step.
    """
    cdef Py_ssize_t s, off, s_full = min(max(n_full, s0), s1)
    if s_full > s0:
        gemm(c'N', transb, <int> ((s_full - s0) * N), n, k, 1, a, lda,
             b, ldb, beta, c, ldc)
    for s in range(s_full, s1):
        if n_live[s] == 0:
            break
        off = (s - s0) * N
        gemm(c'N', transb, <int> n_live[s], n, k, 1, a + off * lda, lda,
             b, ldb, beta, c + off * ldc, ldc)


# Weight gradients of at most this many elements are summed over the rows by
# the reduction kernel of _packed.h (float32): BLAS packs both operands
# first, which at these sizes costs as much as the product; for larger ones
# BLAS is faster, and spreads over threads.
cdef Py_ssize_t REDUCE_MAX_SIZE = 16384


cdef void _reduce_rows(Py_ssize_t rows, int m, int n, const floating* a, int lda,
                       const floating* b, int ldb, floating beta,
                       floating* c, int ldc) noexcept nogil:
    """``c = a.T @ b + beta * c`` (beta 0 or 1) over ``rows`` rows of ``a``
    and ``b``: the reduction kernel for the whole panels of 16 columns of a
    small float32 product, BLAS for the rest."""
    cdef int n16 = 0
    if floating is float:
        if m * n <= REDUCE_MAX_SIZE and skrnn_packed_level() > 0:
            n16 = n // 16 * 16
            if n16 > 0:
                skrnn_reduce_f32(m, n16, rows, a, lda, b, ldb, beta != 0, c, ldc)
    if n16 < n:
        gemm(c'T', c'N', m, n - n16, <int> rows, 1, a, lda, b + n16, ldb, beta,
             c + n16, ldc)


cdef void _gemm_reduce(Py_ssize_t T, const Py_ssize_t* n_live, Py_ssize_t N,
                       Py_ssize_t n_full, int m, int n,
                       const floating* a, int lda, const floating* b, int ldb,
                       floating* c, int ldc) noexcept nogil:
    """``c = sum over live rows r of a[r].T @ b[r]``, c of shape (m, n).

    ``a`` and ``b`` are time-major (T, N, .) with row strides lda and ldb.
    Where n is no multiple of 16 but m is (W_ih's gradient of a few input
    features), the reduction kernel sums c.T = b.T @ a instead, into room
    of its own: BLAS would copy all of ``a`` to sum over its rows, which
    from 6 columns on takes up to 4.8 times as long; up to 4, BLAS's own
    path for thin products is as fast or faster (benchmarks/bench_reduce.py).
    """
    cdef Py_ssize_t i, j
    cdef floating* flipped = NULL
    if floating is float:
        if (n % 16 != 0 and n > 4 and m % 16 == 0 and m * n <= REDUCE_MAX_SIZE
                and skrnn_packed_level() > 0):
            flipped = <floating*> malloc(m * n * sizeof(floating))
    if flipped == NULL:  # as asked (or no room): the sum as it stands
        _sum_rows(T, n_live, N, n_full, m, n, a, lda, b, ldb, c, ldc)
        return
    _sum_rows(T, n_live, N, n_full, n, m, b, ldb, a, lda, flipped, m)
    for i in range(m):
        for j in range(n):
            c[i * ldc + j] = flipped[j * m + i]
    free(flipped)


cdef void _sum_rows(Py_ssize_t T, const Py_ssize_t* n_live, Py_ssize_t N,
                    Py_ssize_t n_full, int m, int n,
                    const floating* a, int lda, const floating* b, int ldb,
                    floating* c, int ldc) noexcept nogil:
    """:func:`_gemm_reduce`'s sum, as asked: the steps where every row is
    live at once, then each step's live rows."""
    cdef Py_ssize_t s, i, off
    cdef floating beta = 0
    if n_full > 0:
        _reduce_rows(n_full * N, m, n, a, lda, b, ldb, beta, c, ldc)
        beta = 1
    for s in range(n_full, T):
        if n_live[s] == 0:
            break
        off = s * N
        _reduce_rows(n_live[s], m, n, a + off * lda, lda, b + off * ldb, ldb, beta,
                     c, ldc)
        beta = 1
    if beta == 0:
        # no live row at all: BLAS may leave c alone when k == 0
        for i in range(m):
            memset(c + i * ldc, 0, n * sizeof(floating))


cdef void _zero_padded_rows(floating* a, Py_ssize_t T, Py_ssize_t N,
                            Py_ssize_t width,
                            const Py_ssize_t* n_live) noexcept nogil:
    """Zero the rows of a time-major (T, N, width) array at padded steps."""
    cdef Py_ssize_t t
    for t in range(T):
        memset(a + (t * N + n_live[t]) * width, 0,
               (N - n_live[t]) * width * sizeof(floating))


def live_rows(const Py_ssize_t[::1] lengths, Py_ssize_t[::1] n_live):
    """Count the live rows of each step: ``n_live[t] = #(lengths > t)``.

    Returns False, leaving ``n_live`` undefined, unless ``lengths`` is
    sorted longest first and within [0, T], T being ``n_live``'s size.
    """
    cdef Py_ssize_t N = lengths.shape[0], T = n_live.shape[0], i = N, t
    if N > 0 and (lengths[0] > T or lengths[N - 1] < 0):
        return False
    for t in range(1, N):
        if lengths[t] > lengths[t - 1]:
            return False
    for t in range(T):
        while i > 0 and lengths[i - 1] <= t:
            i -= 1
        n_live[t] = i
    return True


cdef void _rnn_step(int act, Py_ssize_t nt, Py_ssize_t H,
                    const floating* w_hh, const float* wp, const floating* b_ih,
                    const floating* b_hh, floating* g, floating* h,
                    floating* out) noexcept nogil:
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh) on the nt live rows.

    ``g`` holds the step's input projection; it may be ``out`` itself.
    ``wp``: W_hh.T packed, or NULL.
    """
    # g += h @ W_hh.T
    _step_gemm(c'T', <int> nt, <int> H, <int> H, h, <int> H, w_hh, <int> H, wp,
               1, g, <int> H)
    if floating is float:
        skrnn_rnn_forward_f32(act, nt, H, b_ih, b_hh, g, h, out)
    else:
        skrnn_rnn_forward_f64(act, nt, H, b_ih, b_hh, g, h, out)


cdef void _gru_after_step(int act, Py_ssize_t nt, Py_ssize_t H,
                          const floating* w_hh, const float* wp, const floating* b_ih,
                          const floating* b_hh, floating* g, floating* h,
                          floating* out, floating* hn, floating* gh,
                          floating* pre) noexcept nogil:
    """GRU step with n = act(W_in x + b_in + r * (W_hn h + b_hn)).

    ``g`` holds the step's input projection and receives r, z, n; ``hn``
    (may be NULL) receives W_hn h + b_hn. ``gh`` (nt x 3H) and ``pre``
    (3 * nt * H) are room for the step. ``wp``: W_hh.T packed, or NULL.
    """
    # gh = h @ W_hh.T
    _step_gemm(c'T', <int> nt, <int> (3 * H), <int> H, h, <int> H, w_hh, <int> H, wp,
               0, gh, <int> (3 * H))
    if floating is float:
        skrnn_gru_after_forward_f32(act, nt, H, b_ih, b_hh, gh, g, hn, pre, h, out)
    else:
        skrnn_gru_after_forward_f64(act, nt, H, b_ih, b_hh, gh, g, hn, pre, h, out)


cdef void _gru_before_step(int act, Py_ssize_t nt, Py_ssize_t H,
                           const floating* w_hh, const float* wp, const float* wp2,
                           const floating* b_ih,
                           const floating* b_hh, floating* g, floating* h,
                           floating* out, floating* rh, floating* grz,
                           floating* pre) noexcept nogil:
    """GRU step with n = act(W_in x + b_in + W_hn (r * h) + b_hn).

    ``g`` holds the step's input projection and receives r, z, n; ``rh``
    receives r * h. ``grz`` (nt x 2H) and ``pre`` (3 * nt * H) are room for
    the step. ``wp``, ``wp2``: W_hh[:2H].T and W_hh[2H:].T packed, or NULL.
    """
    cdef Py_ssize_t H2 = 2 * H
    # grz = h @ W_hh[:2H].T
    _step_gemm(c'T', <int> nt, <int> H2, <int> H, h, <int> H, w_hh, <int> H, wp,
               0, grz, <int> H2)
    if floating is float:
        skrnn_gru_before_forward_r_f32(nt, H, b_ih, b_hh, grz, g, pre, h, rh)
    else:
        skrnn_gru_before_forward_r_f64(nt, H, b_ih, b_hh, grz, g, pre, h, rh)
    # g[:, 2H:] += (r * h) @ W_hh[2H:].T
    _step_gemm(c'T', <int> nt, <int> H, <int> H, rh, <int> H, w_hh + H2 * H, <int> H,
               wp2, 1, g + H2, <int> (3 * H))
    if floating is float:
        skrnn_gru_before_forward_n_f32(act, nt, H, b_ih, b_hh, g, pre, h, out)
    else:
        skrnn_gru_before_forward_n_f64(act, nt, H, b_ih, b_hh, g, pre, h, out)


cdef void _lstm_step(Py_ssize_t nt, Py_ssize_t H, const floating* w_hh,
                     const float* wp, const floating* b_ih, const floating* b_hh,
                     floating* g, floating* h, floating* c, floating* c_new,
                     floating* out) noexcept nogil:
    """LSTM step: c' = f c + i g, h' = o tanh(c') on the nt live rows.

    ``g`` holds the step's input projection and receives the gates i, f, g,
    o; ``c_new`` (may be NULL) receives c'. ``wp``: W_hh.T packed, or NULL.
    """
    # g += h @ W_hh.T
    _step_gemm(c'T', <int> nt, <int> (4 * H), <int> H, h, <int> H, w_hh, <int> H,
               wp, 1, g, <int> (4 * H))
    if floating is float:
        skrnn_lstm_forward_f32(nt, H, b_ih, b_hh, g, c, c_new, h, out)
    else:
        skrnn_lstm_forward_f64(nt, H, b_ih, b_hh, g, c, c_new, h, out)


cdef void _cell_step(int cell, int act, Py_ssize_t nt, Py_ssize_t N, Py_ssize_t H,
                     const floating* w_hh, const float* wp, const float* wp2,
                     const floating* b_ih, const floating* b_hh, floating* g,
                     floating* h, floating* c, floating* out, floating* hn,
                     floating* c_new, floating* work) noexcept nogil:
    """One step of ``cell`` on the nt live rows (of N) once ``g`` holds their
    input projection: h (and the LSTM's c) move on, ``out`` receives h'.

    ``hn``, ``c_new``: what backward reads (NULL: not kept); ``work``: (2N,
    3H) room (GRU); ``wp``, ``wp2``: the packed recurrent weights
    (:func:`_pack_recurrent`).
    """
    if cell == RNN:
        _rnn_step(act, nt, H, w_hh, wp, b_ih, b_hh, g, h, out)
    elif cell == LSTM:
        _lstm_step(nt, H, w_hh, wp, b_ih, b_hh, g, h, c, c_new, out)
    elif cell == GRU_RESET_AFTER:
        _gru_after_step(act, nt, H, w_hh, wp, b_ih, b_hh, g, h, out, hn, work,
                        work + N * 3 * H)
    else:
        _gru_before_step(act, nt, H, w_hh, wp, wp2, b_ih, b_hh, g, h, out,
                         hn if hn != NULL else work + N * 2 * H, work,
                         work + N * 3 * H)


cdef Py_ssize_t _pack_recurrent(int cell, float* packed, Py_ssize_t offset,
                                Py_ssize_t H, const floating* w_hh,
                                const float** wp, const float** wp2) noexcept nogil:
    """Pack a layer's recurrent weights for its forward steps from ``offset``
    on: W_hh.T into ``wp``, or, for the reset-before GRU, W_hh[:2H].T and
    W_hh[2H:].T into ``wp`` and ``wp2`` (NULL: BLAS, see :func:`_pack`).
    Returns the offset after them."""
    cdef Py_ssize_t GH = (4 if cell == LSTM else 1 if cell == RNN else 3) * H
    if cell == GRU_RESET_BEFORE:
        wp[0] = _pack(packed, offset, 1, H, 2 * H, w_hh, H)
        offset += skrnn_packed_size(H, 2 * H)
        wp2[0] = _pack(packed, offset, 1, H, H, w_hh + 2 * H * H, H)
        return offset + skrnn_packed_size(H, H)
    wp[0] = _pack(packed, offset, 1, H, GH, w_hh, H)
    return offset + skrnn_packed_size(H, GH)


cdef inline void _window(Py_ssize_t w, Py_ssize_t W, Py_ssize_t T, bint reverse,
                         Py_ssize_t* w0, Py_ssize_t* w1) noexcept nogil:
    """Steps w0..w1-1 of window w of W steps over T, in the pass's order:
    from the last step backward in time."""
    if reverse:
        w1[0] = T - w * W
        w0[0] = max(0, w1[0] - W)
    else:
        w0[0] = w * W
        w1[0] = min(T, w0[0] + W)


def forward(*, int cell, int act, bint reverse,
            const floating[:, :, ::1] x, const Py_ssize_t[::1] n_live,
            const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
            const floating[::1] b_ih, const floating[::1] b_hh,
            floating[:, ::1] h, floating[:, ::1] c, floating[:, :, ::1] out,
            floating[:, :, ::1] gates, floating[:, :, ::1] h_prev,
            floating[:, :, ::1] hn, floating[:, :, ::1] c_new,
            floating[:, ::1] work, float[::1] packed):
    """Forward pass over T steps; fills ``out`` and turns ``h`` into h_last.

    Parameters
    ----------
    cell, act : int
        A :class:`Cell` and an :class:`Activation`.
    reverse : bool
        Visit the steps from T-1 down to 0.
    x : (T, N, D) array
    n_live : (T,) array
        Number of live rows at each step, non-increasing.
    w_ih, w_hh : (G*H, D) and (G*H, H) arrays
    b_ih, b_hh : (G*H,) arrays
        Zeros when the layer has no biases.
    h : (N, H) array
        In: the initial state. Out: the final state.
    c : (N, H) array
        LSTM only: in, the initial cell state; out, the final one.
    out : (T, N, H) or (W, N, H) array
        Out: the state after each step, zero at padded steps. With W < T
        rows, each window's steps overwrite the last window's, and only
        ``h`` is of use (inference that reads the final state alone).
    gates : (W, N, G*H) array
        Input projections of a window of W steps (the whole pass runs in
        ceil(T / W) windows). For the GRU they are overwritten with the gate
        values r, z, n, for the LSTM with i, f, g, o; with W == T this is
        the cache for :func:`backward`. For the RNN it may be ``out`` itself.
    h_prev : (T, N, H) or (0, N, H) array
        Out: the state before each step (for :func:`backward`); not kept if
        empty.
    hn : (T, N, H) or (0, N, H) array
        GRU only, out: ``W_hn h + b_hn`` (reset after) or ``r * h`` (reset
        before) at each step; not kept if empty.
    c_new : (T, N, H) or (0, N, H) array
        LSTM only, out: the cell state after each step at its live rows;
        not kept if empty.
    work : (2*N, 3*H) array
        GRU only: room for one step's recurrent projection and its gates'
        pre-activations.
    packed : (packed_size(cell, H),) float32 array
        Room for the packed recurrent weights; empty: BLAS.
    """
    cdef LayerArrays a = _arrays(cell, act, reverse, x, n_live, w_ih, w_hh, packed)
    a.b_ih, a.b_hh, a.work = &b_ih[0], &b_hh[0], _at2(work)
    a.W, a.all_out = gates.shape[0], out.shape[0] == a.T
    a.h, a.out, a.gates = _at2(h), _at3(out), _at3(gates)
    a.c, a.h_prev, a.hn, a.c_new = _at2(c), _at3(h_prev), _at3(hn), _at3(c_new)
    with nogil:
        forward_layer(&a, <const floating*> a.x)


cdef LayerArrays _arrays(int cell, int act, bint reverse,
                         const floating[:, :, ::1] x, const Py_ssize_t[::1] n_live,
                         const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                         float[::1] packed):
    """The :class:`LayerArrays` of the arrays :func:`forward` and
    :func:`backward` both take, the others NULL."""
    cdef LayerArrays a
    memset(&a, 0, sizeof(a))
    a.cell, a.act, a.reverse = cell, act, reverse
    a.T, a.N, a.D = x.shape[0], x.shape[1], x.shape[2]
    a.H, a.GH = w_hh.shape[1], w_hh.shape[0]
    a.x, a.n_live = _at3(x), &n_live[0] if n_live.shape[0] > 0 else NULL
    a.w_ih, a.w_hh = _at2(w_ih), _at2(w_hh)
    a.packed = &packed[0] if packed.shape[0] > 0 else NULL
    return a


cdef inline void* _at2(const floating[:, ::1] v) noexcept nogil:
    """The address of ``v``'s data; NULL when it is empty."""
    return <void*> &v[0, 0] if v.shape[0] > 0 and v.shape[1] > 0 else NULL


cdef inline void* _at3(const floating[:, :, ::1] v) noexcept nogil:
    """The address of ``v``'s data; NULL when it is empty."""
    if v.shape[0] > 0 and v.shape[1] > 0 and v.shape[2] > 0:
        return <void*> &v[0, 0, 0]
    return NULL


cdef void forward_layer(const LayerArrays* a, const floating* x) noexcept nogil:
    """:func:`forward` on the arrays of ``a``, whose inputs ``x`` are."""
    cdef:
        Py_ssize_t T = a.T, N = a.N, D = a.D, H = a.H, GH = a.GH, W = a.W
        const Py_ssize_t* n_live = a.n_live
        const floating* w_hh = <const floating*> a.w_hh
        floating* h = <floating*> a.h
        floating* out = <floating*> a.out
        floating* gates = <floating*> a.gates
        floating* h_prev = <floating*> a.h_prev
        floating* hn = <floating*> a.hn
        floating* c_new = <floating*> a.c_new
        Py_ssize_t n_full, n_win, w, w0, w1, k, t, o, nt
        const float* wp = NULL
        const float* wp2 = NULL
    if T == 0 or N == 0:
        return
    _pack_recurrent(a.cell, a.packed, 0, H, w_hh, &wp, &wp2)
    n_full = _n_full(n_live, T, N)
    n_win = (T + W - 1) // W
    for w in range(n_win):
        _window(w, W, T, a.reverse, &w0, &w1)
        # gates[t - w0] = x[t] @ W_ih.T for t in w0..w1-1
        _gemm_rows(c'T', w0, w1, n_live, N, n_full, <int> GH, <int> D,
                   x + w0 * N * D, <int> D, <const floating*> a.w_ih, <int> D, 0,
                   gates, <int> GH)
        for k in range(w1 - w0):
            t = w1 - 1 - k if a.reverse else w0 + k
            o = t if a.all_out else t - w0  # the step's row block in out
            nt = n_live[t]
            if nt == 0:
                continue
            if h_prev != NULL:
                memcpy(h_prev + t * N * H, h, nt * H * sizeof(floating))
            _cell_step(a.cell, a.act, nt, N, H, w_hh, wp, wp2,
                       <const floating*> a.b_ih, <const floating*> a.b_hh,
                       gates + (t - w0) * N * GH, h, <floating*> a.c,
                       out + o * N * H, hn + t * N * H if hn != NULL else NULL,
                       c_new + t * N * H if c_new != NULL else NULL,
                       <floating*> a.work)
    if a.all_out:
        _zero_padded_rows(out, T, N, H, n_live)


def lone_row_room(Py_ssize_t G, Py_ssize_t H):
    """Floats of room each half of :func:`lone_row_forward` needs for a cell
    of G gates and H units: its gates' pre-activations, the recurrent
    projection (GRU), the gates' scratch (GRU) and its units' biases, in its
    own layout."""
    return 4 * G * (H // 2) + 3 * (H // 2)


def lone_row_forward(int cell, int act, bint reverse,
                     const float[:, :, ::1] x, const float[:, ::1] w_ih,
                     const float[:, ::1] w_hh, const float[::1] b_ih,
                     const float[::1] b_hh, float[:, ::1] states, float[::1] c,
                     float[:, :, ::1] out, float[:, :, ::1] gates,
                     float[::1] packed, float[:, ::1] room,
                     Py_ssize_t[::1] counters):
    """:func:`forward` of one sequence at inference, its units split in two
    halves whose steps two threads take at once: each calls this function
    with the same arguments, and the two share the work (one thread alone
    does it all, so the caller need not wait for the other to start).

    Each half's step is the unsplit step restricted to its units: the
    product of the whole state with its rows of W_hh (from the packed
    panels, the same arithmetic), then its units' gate loop. Its gates and
    biases are laid out as those of a layer of H / 2 units (gate after
    gate), so that the gate loops run unchanged.

    Parameters
    ----------
    cell, act, reverse, x, w_ih, w_hh, b_ih, b_hh, out, gates, packed
        As for :func:`forward`, with N = 1, every step live, ``packed``
        never empty; float32, an RNN, an LSTM or a GRU with the reset gate
        after the product; H a multiple of 32.
    states : (2, H) array
        In: the initial state in row 0. Out: the final state in row T % 2
        (the steps write each row in turn).
    c : (H,) array
        LSTM only: in, the initial cell state; out, the final one.
    room : (2, lone_row_room(G, H)) array
        Each half's room (G gates).
    counters : (2,) array of zeros
        The tasks claimed and done (see _sync.h).
    """
    cdef:
        Py_ssize_t T = x.shape[0], D = x.shape[2], H = w_hh.shape[1]
        Py_ssize_t GH = w_hh.shape[0], W = gates.shape[0]
        Py_ssize_t G = GH // H, U = H // 2, GU = G * U
        Py_ssize_t n_win = (T + W - 1) // W, per_win = 1 + 2 * W
        Py_ssize_t n_tasks = 2 + n_win + 2 * T
        bint all_out = out.shape[0] == T
        Py_ssize_t task, r, w, w0, w1, k, half, j0, b, s, t, o
        float* g
        float* gh
        float* pre
        float* bi
        float* bh
        float* into
        const float* h_cur
        float* h_next
    with nogil:
        while True:
            task = skrnn_claim(&counters[0])
            if task >= n_tasks:
                break
            if task < 2:
                # pack the half's rows of W_hh (as columns of W_hh.T) and
                # lay out its biases
                half = task
                j0 = half * U
                bi = &room[half, 2 * GU + 3 * U]
                bh = bi + GU
                for b in range(G):
                    skrnn_pack_f32(1, H, U, &w_hh[b * H + j0, 0], H,
                                   &packed[(b * H + j0) * H])
                    memcpy(bi + b * U, &b_ih[b * H + j0], U * sizeof(float))
                    memcpy(bh + b * U, &b_hh[b * H + j0], U * sizeof(float))
                skrnn_finish(&counters[1])
                continue
            r = task - 2
            w = r // per_win
            _window(w, W, T, reverse, &w0, &w1)
            if r % per_win == 0:
                # the window's input projection, once the last window's
                # steps are done: gates[t - w0] = x[t] @ W_ih.T
                skrnn_wait(&counters[1], task)
                gemm(c'N', c'T', <int> (w1 - w0), <int> GH, <int> D, 1, &x[w0, 0, 0],
                     <int> D, &w_ih[0, 0], <int> D, 0, &gates[0, 0, 0], <int> GH)
                skrnn_finish(&counters[1])
                continue
            k = (r % per_win - 1) // 2
            half = (r % per_win - 1) % 2
            skrnn_wait(&counters[1], task - half)  # the step before, both halves
            s = w * W + k  # the steps taken before this one
            t = w1 - 1 - k if reverse else w0 + k
            o = t if all_out else t - w0
            j0 = half * U
            g = &room[half, 0]
            gh = g + GU
            pre = gh + GU
            bi = pre + 3 * U
            bh = bi + GU
            h_cur = &states[s % 2, 0]
            h_next = &states[(s + 1) % 2, 0]
            memcpy(h_next + j0, h_cur + j0, U * sizeof(float))
            # h @ W_hh.T: added to the input projection, or apart (GRU)
            into = gh if cell == GRU_RESET_AFTER else g
            for b in range(G):
                # the half's input projection, then its rows of h @ W_hh.T
                memcpy(g + b * U, &gates[t - w0, 0, b * H + j0], U * sizeof(float))
                skrnn_packed_gemm_f32(1, U, H, h_cur, H, &packed[(b * H + j0) * H],
                                      into != gh, into + b * U, GU)
            if cell == RNN:
                skrnn_rnn_forward_f32(act, 1, U, bi, bh, g, h_next + j0,
                                      &out[o, 0, j0])
            elif cell == LSTM:
                skrnn_lstm_forward_f32(1, U, bi, bh, g, &c[j0], NULL, h_next + j0,
                                       &out[o, 0, j0])
            else:
                skrnn_gru_after_forward_f32(act, 1, U, bi, bh, gh, g, NULL, pre,
                                            h_next + j0, &out[o, 0, j0])
            skrnn_finish(&counters[1])


# Streams a Stepper takes through the network at a time: a block's gates
# stay in the cache from layer to layer, and its GEMMs stay small enough for
# the packed kernel (see PACKED_MAX_ROWS in cpu.py).
cdef Py_ssize_t STEP_BLOCK = 256


cdef struct _Layer:
    # a layer's parameters (biases: zeros when it has none) and, in float32
    # on a CPU with a packed kernel, W_ih.T and its recurrent weights packed
    # (see _pack_recurrent), else NULL
    const void* w_ih
    const void* w_hh
    const void* b_ih
    const void* b_hh
    const float* wp_ih
    const float* wp
    const float* wp2


cdef struct _Plan:
    # what a step reads and writes: sizes, the scalers, the layers, the
    # head, the states and its room, at the addresses of a Stepper's arrays
    int cell, act
    Py_ssize_t n_layers, n, D, H, GH, n_out, n_scalers
    const double* shift
    const double* scale
    _Layer* layers
    const void* head_w
    const void* head_b
    const double* out_scale
    const double* out_shift
    void* states
    Py_ssize_t layer_stride, part_stride  # in elements
    double* out
    void* work


cdef class Stepper:
    """One step of n sequences through a stack of one-direction layers and
    the head, from the states it updates: the compiled core of
    :class:`skrnn.Stream`.

    Built once for a set of streams, it holds its arrays and their
    addresses, so that a call takes only the step's inputs: typed arguments
    would cost more at each call than the arithmetic of a small network's
    step. Every shape is checked here, once.

    Parameters
    ----------
    cell, act : int
        A :class:`Cell` and an :class:`Activation`.
    layers : list of tuple
        ``(w_ih, w_hh, b_ih, b_hh)`` of each layer, bottom first: C-contiguous
        arrays of one float dtype, (G*H, D_k), (G*H, H), (G*H,) and (G*H,),
        D_0 = D and D_k = H above. Read in place at every step.
    head_w, head_b : arrays
        The head's (O, H) weight and (O,) bias, of that dtype.
    shift, scale : (n_scalers, D) float64 arrays
        The scalers the inputs go through first, in turn:
        ``x = (x - shift[s]) / scale[s]``.
    out_scale, out_shift : (O,) float64 arrays
        What the head's outputs are multiplied by, then shifted by (the
        targets' scale and mean, or ones and zeros).
    states : (n_layers, parts, n, H) array
        The states (parts: h, then the LSTM's c), which each step updates;
        its rows C-contiguous (it may be a block of rows of a larger array).
    out : (n, O) float64 array
        Out: after each step, the head's outputs, scaled and shifted.
    """

    cdef _Plan plan
    cdef bint double_precision
    cdef object arrays  # what the plan's addresses point into

    def __cinit__(self):
        self.plan.layers = NULL

    def __dealloc__(self):
        PyMem_Free(self.plan.layers)

    def __init__(self, int cell, int act, list layers, head_w, head_b, shift,
                 scale, out_scale, out_shift, states, out):
        cdef Py_ssize_t L, parts, n, H, D, n_out, GH, B, k, d_in, offset = 0
        cdef float* room
        dtype = head_w.dtype
        if dtype != np.float32 and dtype != np.float64:
            raise TypeError(f"unsupported dtype {dtype}")
        L, parts, n, H = states.shape
        D, n_out = shift.shape[1], out.shape[1]
        GH = (4 if cell == LSTM else 1 if cell == RNN else 3) * H
        if len(layers) != L or L == 0 or parts != (2 if cell == LSTM else 1):
            raise ValueError("the layers and the states do not match")
        _check(states, (L, parts, n, H), dtype, out=True, rows=True)
        _check(out, (n, n_out), np.float64, out=True)
        _check(head_w, (n_out, H), dtype)
        _check(head_b, (n_out,), dtype)
        _check(shift, (len(shift), D), np.float64)
        _check(scale, shift.shape, np.float64)
        _check(out_scale, (n_out,), np.float64)
        _check(out_shift, (n_out,), np.float64)
        for k, params in enumerate(layers):
            shapes = [(GH, D if k == 0 else H), (GH, H), (GH,), (GH,)]
            for a, shape in zip(params, shapes):
                _check(a, shape, dtype)
        # room for a block of B rows: the scaled inputs, the input
        # projections, the GRU's work (2B, GH), a layer's outputs, the head's
        B = min(n, STEP_BLOCK)
        work = np.empty(B * (D + 3 * GH + H + n_out), dtype=dtype)
        packed = np.empty(0, dtype=np.float32)
        if dtype == np.float32 and skrnn_packed_level() > 0:
            packed = np.empty(
                sum(skrnn_packed_size(w_ih.shape[1], GH) + packed_size(cell, H)
                    for w_ih, *_ in layers),
                dtype=np.float32)
        self.arrays = (layers, head_w, head_b, shift, scale, out_scale, out_shift,
                       states, out, work, packed)
        self.double_precision = dtype == np.float64
        self.plan = _Plan(
            cell=cell, act=act, n_layers=L, n=n, D=D, H=H, GH=GH, n_out=n_out,
            n_scalers=len(shift), shift=<const double*> _address(shift),
            scale=<const double*> _address(scale),
            layers=<_Layer*> PyMem_Malloc(L * sizeof(_Layer)),
            head_w=_address(head_w),
            head_b=_address(head_b), out_scale=<const double*> _address(out_scale),
            out_shift=<const double*> _address(out_shift),
            states=_address(states),
            layer_stride=states.strides[0] // dtype.itemsize,
            part_stride=states.strides[1] // dtype.itemsize,
            out=<double*> _address(out), work=_address(work))
        if self.plan.layers == NULL:
            raise MemoryError()
        room = <float*> _address(packed) if packed.shape[0] > 0 else NULL
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
            self.plan.layers[k] = _Layer(
                w_ih=_address(w_ih), w_hh=_address(w_hh), b_ih=_address(b_ih),
                b_hh=_address(b_hh), wp_ih=NULL, wp=NULL, wp2=NULL)
            if room != NULL:
                # W_ih.T, then the recurrent weights
                d_in = w_ih.shape[1]
                self.plan.layers[k].wp_ih = _pack(
                    room, offset, 1, d_in, GH,
                    <const float*> self.plan.layers[k].w_ih, d_in)
                offset = _pack_recurrent(
                    cell, room, offset + skrnn_packed_size(d_in, GH), H,
                    <const float*> self.plan.layers[k].w_hh,
                    &self.plan.layers[k].wp, &self.plan.layers[k].wp2)

    def __reduce__(self):
        raise TypeError("a Stepper holds addresses: make a new one instead")

    def step(self, x, bint check=True):
        """Take the next step of every sequence and write the head's outputs
        into ``out``.

        ``x``: a C-contiguous float64 or float32 array of shape (n, D), or
        (D,) when n is 1. Returns -1; or, with ``check``, the first row of
        ``x`` that holds a NaN or an infinity, if one does; or -2 for an
        ``x`` that is not such an array. In the last two cases nothing has
        changed. These checks are all a call makes.
        """
        cdef cnp.ndarray a
        cdef Py_ssize_t n = self.plan.n, D = self.plan.D, bad = -1
        cdef int kind
        cdef bint float_input
        if type(x) is not np.ndarray:
            return -2
        a = <cnp.ndarray> x
        kind = cnp.PyArray_TYPE(a)
        if kind != cnp.NPY_DOUBLE and kind != cnp.NPY_FLOAT:
            return -2
        if not cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_SIZE(a) != n * D:
            return -2
        if not (cnp.PyArray_NDIM(a) == 2 and cnp.PyArray_DIM(a, 0) == n
                or cnp.PyArray_NDIM(a) == 1 and n == 1):
            return -2
        if n == 0:
            return bad
        float_input = kind == cnp.NPY_FLOAT
        with nogil:
            if check:
                bad = _first_nonfinite(cnp.PyArray_DATA(a), float_input, n * D)
                bad = -1 if bad < 0 else bad // D
            if bad < 0:
                if self.double_precision:
                    _step(&self.plan, cnp.PyArray_DATA(a), float_input,
                          <double*> self.plan.work)
                else:
                    _step(&self.plan, cnp.PyArray_DATA(a), float_input,
                          <float*> self.plan.work)
        return bad


cdef void _step(const _Plan* s, const void* x, bint float_input,
                floating* work) noexcept nogil:
    """:meth:`Stepper.step`'s arithmetic, a block of rows at a time."""
    cdef:
        Py_ssize_t n = s.n, D = s.D, H = s.H, GH = s.GH, n_out = s.n_out
        Py_ssize_t B = min(n, STEP_BLOCK), r0 = 0, nb, k, i, j, m, q, D_k
        floating* xs = work                 # (B, D): the inputs, scaled
        floating* g = xs + B * D            # (B, GH): projections, gates
        floating* room = g + B * GH         # (2B, GH): the GRU's work
        floating* out = room + 2 * B * GH   # (B, H): outputs, unread
        floating* z = out + B * H           # (B, O): the head's outputs
        floating* states = <floating*> s.states
        floating* h
        floating* c = NULL
        const floating* below
        const _Layer* layer
        double v
    while r0 < n:
        nb = min(B, n - r0)
        for i in range(nb):
            for j in range(D):
                q = (r0 + i) * D + j
                v = (<const float*> x)[q] if float_input else (<const double*> x)[q]
                for m in range(s.n_scalers):
                    v = (v - s.shift[m * D + j]) / s.scale[m * D + j]
                xs[i * D + j] = <floating> v
        below, D_k = xs, D
        for k in range(s.n_layers):
            layer = &s.layers[k]
            h = states + k * s.layer_stride + r0 * H
            if s.cell == LSTM:
                c = h + s.part_stride
            # g = below @ W_ih.T
            _step_gemm(c'T', <int> nb, <int> GH, <int> D_k, below, <int> D_k,
                       <const floating*> layer.w_ih, <int> D_k, layer.wp_ih, 0, g,
                       <int> GH)
            _cell_step(s.cell, s.act, nb, B, H, <const floating*> layer.w_hh,
                       layer.wp, layer.wp2, <const floating*> layer.b_ih,
                       <const floating*> layer.b_hh, g, h, c, out, NULL, NULL,
                       room)
            below, D_k = h, H
        # z = h @ head_w.T + head_b
        for i in range(nb):
            memcpy(z + i * n_out, s.head_b, n_out * sizeof(floating))
        gemm(c'N', c'T', <int> nb, <int> n_out, <int> H, 1, below, <int> H,
             <const floating*> s.head_w, <int> H, 1, z, <int> n_out)
        for i in range(nb):
            for j in range(n_out):
                s.out[(r0 + i) * n_out + j] = (
                    <double> z[i * n_out + j] * s.out_scale[j] + s.out_shift[j])
        r0 += nb


cdef Py_ssize_t _first_nonfinite(const void* x, bint float_input,
                                 Py_ssize_t n) noexcept nogil:
    """The index of the first of n values that is a NaN or infinite, or -1."""
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite((<const float*> x)[i] if float_input
                        else (<const double*> x)[i]):
            return i
    return -1


cdef void* _address(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


def _check(a, shape, dtype, out=False, rows=False):
    """Refuse an array the kernels cannot read, or write when ``out``, as
    an array of ``shape`` and ``dtype``, C-contiguous (with ``rows``: its
    last two axes only)."""
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != tuple(shape):
        raise ValueError(f"expected a {dtype} array of shape {tuple(shape)}")
    if out and not a.flags.writeable:
        raise ValueError("the array is read-only")
    contiguous = a.flags.c_contiguous
    if rows:  # (this module does not wrap negative indices around)
        last = a.ndim - 1
        contiguous = a.strides[last] == a.itemsize and a.strides[last - 1] == (
            a.shape[last] * a.itemsize)
    if not contiguous:
        raise ValueError("the array is not C-contiguous")


cdef void _rnn_step_back(int act, Py_ssize_t nt, Py_ssize_t H,
                         const floating* w_hh, const float* wp, const floating* out,
                         const floating* d_out, floating* dh, floating* dg,
                         floating* db) noexcept nogil:
    """From dL/dh' to dL/da (into dg and db) and dL/dh (into dh)."""
    if floating is float:
        skrnn_rnn_back_f32(act, nt, H, out, d_out, dh, dg, db)
    else:
        skrnn_rnn_back_f64(act, nt, H, out, d_out, dh, dg, db)
    # dh = dG_t @ W_hh: a live row's state reaches the loss only through
    # this step, whose output's gradient is in dG_t
    _step_gemm(c'N', <int> nt, <int> H, <int> H, dg, <int> H, w_hh, <int> H, wp,
               0, dh, <int> H)


cdef void _lstm_step_back(Py_ssize_t nt, Py_ssize_t H, const floating* w_hh,
                          const float* wp, floating* dg, const floating* c_prev,
                          const floating* c_new, const floating* d_out,
                          floating* dh, floating* dc, floating* db) noexcept nogil:
    """Gate gradients of an LSTM step.

    ``dg`` holds the step's i, f, g, o and receives in their place the
    gradients of their pre-activations (into ``db`` too); ``dc`` carries
    the cell state's gradient.
    """
    if floating is float:
        skrnn_lstm_back_f32(nt, H, dg, c_prev, c_new, d_out, dh, dc, db)
    else:
        skrnn_lstm_back_f64(nt, H, dg, c_prev, c_new, d_out, dh, dc, db)
    # dh = dG_t @ W_hh: h reaches the step's outputs only through the gates
    _step_gemm(c'N', <int> nt, <int> H, <int> (4 * H), dg, <int> (4 * H), w_hh,
               <int> H, wp, 0, dh, <int> H)


cdef void _gru_after_step_back(int act, Py_ssize_t nt, Py_ssize_t H,
                               const floating* w_hh, const float* wp, floating* dgh,
                               const floating* h_prev, floating* dan,
                               const floating* d_out, floating* dh, floating* db_ih,
                               floating* db_hh) noexcept nogil:
    """Gate gradients of a reset-after GRU step.

    ``dgh`` holds the step's r, z, n and receives in their place
    dL/d(h W_hh^T): (da_r, da_z, r * da_n); ``dan`` holds W_hn h + b_hn
    and receives da_n in its place; ``db_ih`` accumulates da_n, ``db_hh``
    all three.
    """
    if floating is float:
        skrnn_gru_after_back_f32(act, nt, H, dgh, h_prev, dan, d_out, dh, db_ih, db_hh)
    else:
        skrnn_gru_after_back_f64(act, nt, H, dgh, h_prev, dan, d_out, dh, db_ih, db_hh)
    # dh += dG_t @ W_hh
    _step_gemm(c'N', <int> nt, <int> H, <int> (3 * H), dgh, <int> (3 * H), w_hh,
               <int> H, wp, 1, dh, <int> H)


cdef void _gru_before_step_back(int act, Py_ssize_t nt, Py_ssize_t H,
                                const floating* w_hh, const float* wp,
                                const float* wp2, floating* dg,
                                const floating* h_prev, const floating* d_out,
                                floating* dh, floating* db,
                                floating* d_rh) noexcept nogil:
    """Gate gradients of a reset-before GRU step.

    ``dg`` holds the step's r, z, n and receives in their place
    (da_r, da_z, da_n), the same on the input and the recurrent side;
    ``db`` accumulates them.
    """
    cdef Py_ssize_t H2 = 2 * H, H3 = 3 * H
    if floating is float:
        skrnn_gru_before_back_zn_f32(act, nt, H, dg, h_prev, d_out, dh, db)
    else:
        skrnn_gru_before_back_zn_f64(act, nt, H, dg, h_prev, d_out, dh, db)
    # d_rh = da_n @ W_hh[2H:]   (a_n = gi_n + W_hn (r * h) + b_hn)
    _step_gemm(c'N', <int> nt, <int> H, <int> H, dg + H2, <int> H3, w_hh + H2 * H,
               <int> H, wp, 0, d_rh, <int> H)
    if floating is float:
        skrnn_gru_before_back_r_f32(nt, H, dg, h_prev, d_rh, dh, db)
    else:
        skrnn_gru_before_back_r_f64(nt, H, dg, h_prev, d_rh, dh, db)
    # dh += dG_t[:, :2H] @ W_hh[:2H]
    _step_gemm(c'N', <int> nt, <int> H, <int> H2, dg, <int> H3, w_hh, <int> H, wp2,
               1, dh, <int> H)


def backward(*, int cell, int act, bint reverse,
             const floating[:, :, ::1] x, const Py_ssize_t[::1] n_live,
             const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
             const floating[:, :, ::1] out, const floating[:, :, ::1] h_prev,
             const floating[:, :, ::1] hn, const floating[:, :, ::1] c_prev,
             const floating[:, :, ::1] c_new,
             const floating[:, :, ::1] d_out, floating[:, ::1] dh,
             floating[:, ::1] dc,
             floating[:, :, ::1] dg, floating[:, :, ::1] dan,
             floating[:, :, ::1] dx, floating[:, ::1] dw_ih,
             floating[:, ::1] dw_hh, floating[::1] db_ih, floating[::1] db_hh,
             floating[:, ::1] work, float[::1] packed):
    """Backpropagation through the T steps of one :func:`forward` pass.

    Parameters
    ----------
    cell, act, reverse, x, n_live, w_ih, w_hh :
        As given to :func:`forward`.
    out, h_prev, hn : arrays
        As filled by :func:`forward` (``hn`` used by the GRU with reset
        before only, may be empty otherwise).
    c_prev, c_new : (T, N, H) arrays
        LSTM only (may be empty otherwise): the cell state before and after
        each step at its live rows, ``c_new`` as filled by :func:`forward`.
    d_out : (T, N, H) array, or (1, N, H) zeros
        Gradient with respect to ``out``; padded rows are not read. One
        step of zeros: no gradient reaches the outputs (only ``dh``).
    dh : (N, H) array
        In: the gradient with respect to h_last. Out: with respect to h0.
    dc : (N, H) array
        LSTM only: the same for the cell state.
    dg : (T, N, G*H) array
        The gate gradients: ``dL/d(x W_ih^T)`` for the RNN and the GRU with
        reset before and the LSTM; for the GRU with reset after
        ``dL/d(h W_hh^T)``, whose n block differs from the input side's.
        RNN: room for them. GRU and LSTM: the gate values that
        :func:`forward` left in ``gates`` (covering all T steps), each
        step's overwritten with its gradients.
    dan : (T, N, H) or empty array
        GRU with reset after: the values ``W_hn h + b_hn`` that
        :func:`forward` left in ``hn``, each step's overwritten with
        ``dL/da_n``, the n block of the input side's gradient.
    dx : (T, N, D) or (0, N, D) array
        Out: the gradient with respect to x, zero at padded steps; not
        computed if empty.
    dw_ih, dw_hh : arrays shaped as w_ih, w_hh
        Out: the weight gradients.
    db_ih, db_hh : (G*H,) arrays
        Must hold zeros; out: the bias gradients.
    work : (N, H) array
        GRU with reset before: room for one step's ``dL/d(r * h)``.
    packed : array
        As for :func:`forward`.
    """
    cdef LayerArrays a = _arrays(cell, act, reverse, x, n_live, w_ih, w_hh, packed)
    a.all_d_out = d_out.shape[0] == a.T
    a.out, a.h_prev, a.hn = _at3(out), _at3(h_prev), _at3(hn)
    a.c_prev, a.c_new, a.d_out = _at3(c_prev), _at3(c_new), _at3(d_out)
    a.dh, a.dc, a.dg, a.dan = _at2(dh), _at2(dc), _at3(dg), _at3(dan)
    a.dx, a.dw_ih, a.dw_hh = _at3(dx), _at2(dw_ih), _at2(dw_hh)
    a.db_ih, a.db_hh, a.back_work = &db_ih[0], &db_hh[0], _at2(work)
    with nogil:
        backward_layer(&a, <const floating*> a.x)


cdef void backward_layer(const LayerArrays* a, const floating* x) noexcept nogil:
    """:func:`backward` on the arrays of ``a``, whose inputs ``x`` are."""
    cdef:
        Py_ssize_t T = a.T, N = a.N, D = a.D
        Py_ssize_t H = a.H, GH = a.GH, H2 = 2 * H
        const Py_ssize_t* n_live = a.n_live
        const floating* w_ih = <const floating*> a.w_ih
        const floating* w_hh = <const floating*> a.w_hh
        const floating* out = <const floating*> a.out
        const floating* h_prev = <const floating*> a.h_prev
        const floating* hn = <const floating*> a.hn
        const floating* c_prev = <const floating*> a.c_prev
        const floating* c_new = <const floating*> a.c_new
        const floating* d_out = <const floating*> a.d_out
        floating* dh = <floating*> a.dh
        floating* dg = <floating*> a.dg
        floating* dan = <floating*> a.dan
        floating* dx = <floating*> a.dx
        floating* dw_ih = <floating*> a.dw_ih
        floating* dw_hh = <floating*> a.dw_hh
        floating* db_ih = <floating*> a.db_ih
        floating* db_hh = <floating*> a.db_hh
        Py_ssize_t n_full, k, t, o, nt, NH = N * H, NGH = N * GH
        const float* wp = NULL
        const float* wp2 = NULL
    if T == 0 or N == 0:
        memset(dw_ih, 0, GH * D * sizeof(floating))
        memset(dw_hh, 0, GH * H * sizeof(floating))
        return
    if a.cell == GRU_RESET_BEFORE:
        # W_hh[2H:] and W_hh[:2H]
        wp = _pack(a.packed, 0, 0, H, H, w_hh + H2 * H, H)
        wp2 = _pack(a.packed, skrnn_packed_size(H, H), 0, H2, H, w_hh, H)
    else:
        wp = _pack(a.packed, 0, 0, GH, H, w_hh, H)  # W_hh
    for k in range(T):
        # the reverse of the forward pass's order
        t = k if a.reverse else T - 1 - k
        o = t if a.all_d_out else 0  # the step's row block in d_out
        nt = n_live[t]
        if nt == 0:
            continue
        if a.cell == RNN:
            _rnn_step_back(a.act, nt, H, w_hh, wp, out + t * NH, d_out + o * NH, dh,
                           dg + t * NGH, db_ih)
        elif a.cell == LSTM:
            _lstm_step_back(nt, H, w_hh, wp, dg + t * NGH, c_prev + t * NH,
                            c_new + t * NH, d_out + o * NH, dh,
                            <floating*> a.dc, db_ih)
        elif a.cell == GRU_RESET_AFTER:
            _gru_after_step_back(
                a.act, nt, H, w_hh, wp, dg + t * NGH, h_prev + t * NH,
                dan + t * NH, d_out + o * NH, dh, db_ih, db_hh)
        else:
            _gru_before_step_back(
                a.act, nt, H, w_hh, wp, wp2, dg + t * NGH, h_prev + t * NH,
                d_out + o * NH, dh, db_ih, <floating*> a.back_work)

    n_full = _n_full(n_live, T, N)
    if a.cell == GRU_RESET_AFTER:
        # the input and recurrent sides share dL/dr and dL/dz
        memcpy(db_ih, db_hh, H2 * sizeof(floating))
        # dW_hh = dG.T @ h_prev
        _gemm_reduce(T, n_live, N, n_full, <int> GH, <int> H, dg, <int> GH,
                     h_prev, <int> H, dw_hh, <int> H)
        # dW_ih[:2H] = dG[:, :2H].T @ x
        _gemm_reduce(T, n_live, N, n_full, <int> H2, <int> D, dg, <int> GH,
                     x, <int> D, dw_ih, <int> D)
        # dW_ih[2H:] = da_n.T @ x
        _gemm_reduce(T, n_live, N, n_full, <int> H, <int> D, dan, <int> H,
                     x, <int> D, dw_ih + H2 * D, <int> D)
        if dx != NULL:
            # dx = dG[:, :2H] @ W_ih[:2H] + da_n @ W_ih[2H:]
            _gemm_rows(c'N', 0, T, n_live, N, n_full, <int> D, <int> H2,
                       dg, <int> GH, w_ih, <int> D, 0, dx, <int> D)
            _gemm_rows(c'N', 0, T, n_live, N, n_full, <int> D, <int> H,
                       dan, <int> H, w_ih + H2 * D, <int> D, 1, dx, <int> D)
    else:
        # one gradient for both sides' projections
        memcpy(db_hh, db_ih, GH * sizeof(floating))
        if a.cell == RNN or a.cell == LSTM:
            # dW_hh = dG.T @ h_prev
            _gemm_reduce(T, n_live, N, n_full, <int> GH, <int> H, dg, <int> GH,
                         h_prev, <int> H, dw_hh, <int> H)
        else:
            # dW_hh[:2H] = dG[:, :2H].T @ h_prev
            _gemm_reduce(T, n_live, N, n_full, <int> H2, <int> H, dg, <int> GH,
                         h_prev, <int> H, dw_hh, <int> H)
            # dW_hh[2H:] = dG[:, 2H:].T @ (r * h)
            _gemm_reduce(T, n_live, N, n_full, <int> H, <int> H, dg + H2, <int> GH,
                         hn, <int> H, dw_hh + H2 * H, <int> H)
        # dW_ih = dG.T @ x
        _gemm_reduce(T, n_live, N, n_full, <int> GH, <int> D, dg, <int> GH,
                     x, <int> D, dw_ih, <int> D)
        if dx != NULL:
            # dx = dG @ W_ih
            _gemm_rows(c'N', 0, T, n_live, N, n_full, <int> D, <int> GH,
                       dg, <int> GH, w_ih, <int> D, 0, dx, <int> D)
    if dx != NULL:
        _zero_padded_rows(dx, T, N, D, n_live)


def _gemm(transa, transb, double alpha, const floating[:, :] a,
          const floating[:, :] b, double beta, floating[:, :] c):
    """Test hook: ``c = alpha * op(a) @ op(b) + beta * c`` through :func:`gemm`.

    The arrays may be blocks of columns of wider row-major arrays (unit
    column stride), which the kernels pass with a larger row stride.
    """
    cdef Py_ssize_t itemsize = sizeof(floating)
    if a.strides[1] != itemsize or b.strides[1] != itemsize or c.strides[1] != itemsize:
        raise ValueError("arrays need unit column stride")
    m, n = c.shape[0], c.shape[1]
    k = a.shape[1] if transa == b"N" else a.shape[0]
    if (a.shape[0] if transa == b"N" else a.shape[1]) != m or (
        (b.shape[0], b.shape[1]) != ((k, n) if transb == b"N" else (n, k))
    ):
        raise ValueError("shapes do not match")
    gemm(ord(transa), ord(transb), <int> m, <int> n, <int> k, <floating> alpha,
         &a[0, 0], <int> (a.strides[0] // itemsize), &b[0, 0],
         <int> (b.strides[0] // itemsize), <floating> beta, &c[0, 0],
         <int> (c.strides[0] // itemsize))


def set_packed_level(int level):
    """Test hook: use the packed kernel of ``level`` (2 AVX-512F, 1 AVX2 +
    FMA, 0 none: BLAS) or the best this CPU has below it; returns the level
    now in use. Not for use while other threads run the kernels."""
    return skrnn_set_packed_level(level)


def _packed_gemm(bint trans, const float[:, :] a, const float[:, ::1] b,
                 bint accumulate, float[:, :] c):
    """Test hook: ``c = a @ op(b) (+ c)`` through the packed kernel in use,
    op(b) = b.T if ``trans``; ``a`` and ``c`` need unit column stride."""
    if skrnn_packed_level() == 0:
        raise RuntimeError("no packed kernel on this CPU")
    if a.strides[1] != sizeof(float) or c.strides[1] != sizeof(float):
        raise ValueError("arrays need unit column stride")
    m, k = a.shape[0], a.shape[1]
    n = b.shape[0] if trans else b.shape[1]
    if (b.shape[1] if trans else b.shape[0]) != k or (c.shape[0], c.shape[1]) != (m, n):
        raise ValueError("shapes do not match")
    packed = np.empty(max(1, skrnn_packed_size(k, n)), dtype=np.float32)
    cdef float[::1] bp = packed
    skrnn_pack_f32(trans, k, n, &b[0, 0], b.strides[0] // sizeof(float), &bp[0])
    skrnn_packed_gemm_f32(m, n, k, &a[0, 0], a.strides[0] // sizeof(float), &bp[0],
                          accumulate, &c[0, 0], c.strides[0] // sizeof(float))


def _reduce(const float[:, :] a, const float[:, :] b, bint accumulate,
            float[:, :] c):
    """Test hook: ``c = a.T @ b (+ c)`` through the reduction kernel in use;
    the arrays need unit column stride."""
    if skrnn_packed_level() == 0:
        raise RuntimeError("no packed kernel on this CPU")
    if (a.strides[1] != sizeof(float) or b.strides[1] != sizeof(float)
            or c.strides[1] != sizeof(float)):
        raise ValueError("arrays need unit column stride")
    if b.shape[0] != a.shape[0] or (c.shape[0], c.shape[1]) != (a.shape[1], b.shape[1]):
        raise ValueError("shapes do not match")
    if b.shape[1] % 16:
        raise ValueError("b's columns must be a multiple of 16")
    skrnn_reduce_f32(c.shape[0], c.shape[1], a.shape[0], &a[0, 0],
                     a.strides[0] // sizeof(float), &b[0, 0],
                     b.strides[0] // sizeof(float), accumulate, &c[0, 0],
                     c.strides[0] // sizeof(float))
