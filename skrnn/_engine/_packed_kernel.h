/* The packed-panel GEMM kernel of _packed.h, included once per instruction
 * set with SKRNN_KERNEL (its name), SKRNN_TARGET (the function attribute),
 * SKRNN_VW (floats per vector) and SKRNN_MR (rows per block) defined; it
 * undefines them again. No include guard: that is the point.
 *
 * For each chunk of rows of A, each panel of 16 columns of op(B) (K x 16)
 * and each block of MR rows of the chunk, the MR x 16 block of C is
 * accumulated in registers: per k, the panel's row is loaded once and
 * multiplied by each of the MR rows' A[i, k]. The arithmetic is the same
 * for every block size, in the order of k, so a row's result does not
 * depend on how many rows there are.
 */

/* The nc valid columns of one row's accumulators into c (added to it when
 * ``accumulate``). */
#ifndef SKRNN_STORE
#define SKRNN_STORE(c, acc)                                                  \
    do {                                                                     \
        float row_[SKRNN_PANEL];                                             \
        memcpy(row_, (acc), sizeof row_);                                    \
        for (ptrdiff_t j_ = 0; j_ < nc; j_++)                                \
            (c)[j_] = accumulate ? (c)[j_] + row_[j_] : row_[j_];            \
    } while (0)
#endif

SKRNN_TARGET static void SKRNN_KERNEL(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                      const float *A, ptrdiff_t lda, const float *Bp,
                                      int accumulate, float *C, ptrdiff_t ldc)
{
    typedef float vec __attribute__((vector_size(4 * SKRNN_VW)));
    enum { NV = SKRNN_PANEL / SKRNN_VW, MR = SKRNN_MR };
    /* rows in chunks of about 32 KiB of A (at least 4 blocks), so that a
     * chunk stays in cache while every panel passes over it */
    const ptrdiff_t MC = K < 8192 / (4 * MR) ? 8192 / K / MR * MR : 4 * MR;
    for (ptrdiff_t m0 = 0; m0 < M; m0 += MC) {
        const ptrdiff_t m1 = M - m0 < MC ? M : m0 + MC;
        for (ptrdiff_t p = 0; p * SKRNN_PANEL < N; p++) {
            const float *bp = Bp + p * K * SKRNN_PANEL;
            const ptrdiff_t nc = N - p * SKRNN_PANEL < SKRNN_PANEL ? N - p * SKRNN_PANEL
                                                                    : SKRNN_PANEL;
            float *c = C + p * SKRNN_PANEL;
            ptrdiff_t m = m0;
            /* blocks of MR rows; constant trip counts keep the accumulators
             * in registers */
            for (; m + MR <= m1; m += MR) {
                const float *a = A + m * lda;
                vec acc[MR][NV];
                for (int i = 0; i < MR; i++)
                    for (int v = 0; v < NV; v++)
                        acc[i][v] = (vec){0};
                for (ptrdiff_t k = 0; k < K; k++) {
                    vec b[NV];
                    memcpy(b, bp + k * SKRNN_PANEL, sizeof b);
                    for (int i = 0; i < MR; i++) {
                        const float s = a[i * lda + k];
                        for (int v = 0; v < NV; v++)
                            acc[i][v] += s * b[v];
                    }
                }
                for (int i = 0; i < MR; i++)
                    SKRNN_STORE(c + (m + i) * ldc, acc[i]);
            }
            /* the chunk's remaining rows one by one, with the same arithmetic */
            for (; m < m1; m++) {
                const float *a = A + m * lda;
                vec acc[NV];
                for (int v = 0; v < NV; v++)
                    acc[v] = (vec){0};
                for (ptrdiff_t k = 0; k < K; k++) {
                    vec b[NV];
                    memcpy(b, bp + k * SKRNN_PANEL, sizeof b);
                    for (int v = 0; v < NV; v++)
                        acc[v] += a[k] * b[v];
                }
                SKRNN_STORE(c + m * ldc, acc);
            }
        }
    }
}

#undef SKRNN_KERNEL
#undef SKRNN_TARGET
#undef SKRNN_VW
#undef SKRNN_MR
