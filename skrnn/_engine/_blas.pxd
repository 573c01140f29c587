"""BLAS for the kernels: row-major wrappers over scipy's Fortran BLAS.

The kernels keep every array C-contiguous (row-major). A row-major matrix
is the column-major transpose held in the same buffer, so the row-major
product ``C = op(A) @ op(B)`` is computed as the column-major
``C.T = op(B).T @ op(A).T``: the operands are swapped, nothing is copied.
"""

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(char transa, char transb, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb, floating beta,
                      floating* c, int ldc) noexcept nogil:
    """``c = alpha * op(a) @ op(b) + beta * c`` on row-major matrices.

    ``op(x)`` is ``x`` for ``b'N'`` and ``x.T`` for ``b'T'``; ``c`` is
    (m, n), ``op(a)`` (m, k) and ``op(b)`` (k, n). ``lda``, ``ldb`` and
    ``ldc`` are the row strides in elements (at least the stored row length
    and at least 1), so a block of columns of a wider matrix needs no copy.
    """
    if floating is float:
        sgemm(&transb, &transa, &n, &m, &k, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&transb, &transa, &n, &m, &k, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)
