/* The packed-panel GEMM kernel of _packed.h and its reduction over rows,
 * included once per instruction set with SKRNN_KERNEL and SKRNN_REDUCE
 * (their names), SKRNN_TARGET (the function attribute),
 * SKRNN_VW (floats per vector), SKRNN_MR (rows per block) and SKRNN_PG
 * (panels at a time for a lone row) defined; it
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
 * ``accumulate``): a whole panel's as vectors, for small K as costly as the
 * multiply-adds when stored a float at a time. */
#ifndef SKRNN_STORE
#define SKRNN_STORE(c, acc)                                                  \
    do {                                                                     \
        if (nc == SKRNN_PANEL) {                                             \
            for (int v_ = 0; v_ < NV; v_++) {                                \
                vec out_ = (acc)[v_];                                        \
                float *at_ = (c) + v_ * (SKRNN_PANEL / NV);                  \
                if (accumulate) {                                            \
                    vec old_;                                                \
                    memcpy(&old_, at_, sizeof old_);                         \
                    out_ = old_ + out_;                                      \
                }                                                            \
                memcpy(at_, &out_, sizeof out_);                             \
            }                                                                \
        } else {                                                             \
            float row_[SKRNN_PANEL];                                         \
            memcpy(row_, (acc), sizeof row_);                                \
            for (ptrdiff_t j_ = 0; j_ < nc; j_++)                            \
                (c)[j_] = accumulate ? (c)[j_] + row_[j_] : row_[j_];        \
        }                                                                    \
    } while (0)
#endif

SKRNN_TARGET static void SKRNN_KERNEL(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                      const float *A, ptrdiff_t lda, const float *Bp,
                                      int accumulate, float *C, ptrdiff_t ldc)
{
    typedef float vec __attribute__((vector_size(4 * SKRNN_VW)));
    enum { NV = SKRNN_PANEL / SKRNN_VW, MR = SKRNN_MR, PG = SKRNN_PG };
    /* rows in chunks of about 32 KiB of A (at least 4 blocks), so that a
     * chunk stays in cache while every panel passes over it */
    const ptrdiff_t MC = K < 8192 / (4 * MR) ? 8192 / K / MR * MR : 4 * MR;
    const ptrdiff_t n_panels = (N + SKRNN_PANEL - 1) / SKRNN_PANEL;
    for (ptrdiff_t m0 = 0; m0 < M; m0 += MC) {
        const ptrdiff_t m1 = M - m0 < MC ? M : m0 + MC;
        const ptrdiff_t mb = m0 + (m1 - m0) / MR * MR; /* after the blocks */
        for (ptrdiff_t p = 0; p < n_panels; p++) {
            const float *bp = Bp + p * K * SKRNN_PANEL;
            const ptrdiff_t nc = N - p * SKRNN_PANEL < SKRNN_PANEL ? N - p * SKRNN_PANEL
                                                                    : SKRNN_PANEL;
            float *c = C + p * SKRNN_PANEL;
            /* blocks of MR rows; constant trip counts keep the accumulators
             * in registers */
            for (ptrdiff_t m = m0; m < mb; m += MR) {
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
        }
        /* the chunk's remaining rows one by one (one stream's step: a GEMV),
         * PG panels at a time, then 4, 2 and 1 for the last ones, so that
         * several sums run side by side rather than one waiting on each
         * multiply-add; the same arithmetic, in the order of k */
        for (ptrdiff_t m = mb; m < m1; m++) {
            const float *a = A + m * lda;
            ptrdiff_t p0 = 0;
#define SKRNN_PANELS_AT_ONCE(NG)                                                 \
    for (; p0 + (NG) <= n_panels; p0 += (NG)) {                                  \
        const float *bp = Bp + p0 * K * SKRNN_PANEL;                             \
        vec acc[NG][NV];                                                         \
        for (int g = 0; g < (NG); g++)                                           \
            for (int v = 0; v < NV; v++)                                         \
                acc[g][v] = (vec){0};                                            \
        for (ptrdiff_t k = 0; k < K; k++)                                        \
            for (int g = 0; g < (NG); g++) {                                     \
                vec b[NV];                                                       \
                memcpy(b, bp + (g * K + k) * SKRNN_PANEL, sizeof b);             \
                for (int v = 0; v < NV; v++)                                     \
                    acc[g][v] += a[k] * b[v];                                    \
            }                                                                    \
        for (int g = 0; g < (NG); g++) {                                         \
            const ptrdiff_t col = (p0 + g) * SKRNN_PANEL;                        \
            const ptrdiff_t nc = N - col < SKRNN_PANEL ? N - col : SKRNN_PANEL;  \
            SKRNN_STORE(C + m * ldc + col, acc[g]);                              \
        }                                                                        \
    }
            SKRNN_PANELS_AT_ONCE(PG)
            SKRNN_PANELS_AT_ONCE(4)
            SKRNN_PANELS_AT_ONCE(2)
            SKRNN_PANELS_AT_ONCE(1)
#undef SKRNN_PANELS_AT_ONCE
        }
    }
}

/* C (M x N, row stride ldc) = A.T @ B, plus C if ``accumulate``: A is K x M
 * (row stride lda), B is K x N (row stride ldb), both row-major and read in
 * place; N a multiple of 16. A weight gradient summed over a pass's rows
 * (K): BLAS packs both operands first, which for a layer of a few units
 * costs as much as the product.
 *
 * For each chunk of KC rows of A and B (which stays in cache), each panel
 * of 16 columns of B and each block of MR rows of C, the MR x 16 block is
 * accumulated in registers: per k the panel's row is read once and
 * multiplied by the block's MR values of A's row k (side by side in
 * memory). Each element of C sums each chunk in the order of k and adds
 * the chunks' sums in turn, whatever M and N. */
SKRNN_TARGET static void SKRNN_REDUCE(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                      const float *A, ptrdiff_t lda, const float *B,
                                      ptrdiff_t ldb, int accumulate, float *C,
                                      ptrdiff_t ldc)
{
    typedef float vec __attribute__((vector_size(4 * SKRNN_VW)));
    enum { NV = SKRNN_PANEL / SKRNN_VW, MR = SKRNN_MR, KC = 256 };
    const ptrdiff_t nc = SKRNN_PANEL; /* for SKRNN_STORE: whole panels */
    for (ptrdiff_t k0 = 0; k0 < K || k0 == 0; k0 += KC) {
        const ptrdiff_t k1 = K - k0 < KC ? K : k0 + KC;
        for (ptrdiff_t col = 0; col < N; col += SKRNN_PANEL) {
            for (ptrdiff_t m = 0; m < M; m += MR) {
                const ptrdiff_t mr = M - m < MR ? M - m : MR;
                vec acc[MR][NV];
                for (int i = 0; i < MR; i++)
                    for (int v = 0; v < NV; v++)
                        acc[i][v] = (vec){0};
                if (mr == MR) { /* constant trip counts: registers */
                    for (ptrdiff_t k = k0; k < k1; k++) {
                        vec b[NV];
                        memcpy(b, B + k * ldb + col, sizeof b);
                        const float *a = A + k * lda + m;
                        for (int i = 0; i < MR; i++)
                            for (int v = 0; v < NV; v++)
                                acc[i][v] += a[i] * b[v];
                    }
                } else {
                    for (ptrdiff_t k = k0; k < k1; k++) {
                        vec b[NV];
                        memcpy(b, B + k * ldb + col, sizeof b);
                        const float *a = A + k * lda + m;
                        for (int i = 0; i < mr; i++)
                            for (int v = 0; v < NV; v++)
                                acc[i][v] += a[i] * b[v];
                    }
                }
                for (ptrdiff_t i = 0; i < mr; i++)
                    SKRNN_STORE(C + (m + i) * ldc + col, acc[i]);
            }
        }
        accumulate = 1; /* the later chunks add to C */
    }
}

#undef SKRNN_KERNEL
#undef SKRNN_REDUCE
#undef SKRNN_TARGET
#undef SKRNN_VW
#undef SKRNN_MR
#undef SKRNN_PG
