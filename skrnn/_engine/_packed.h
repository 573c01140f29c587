/* Products with a weight matrix packed once, for the per-step GEMMs of
 * _recurrent.pyx (float32).
 *
 * Every step of a pass multiplies a few live rows by the same recurrent
 * weights: h @ W_hh.T forward, dG @ W_hh backward. A BLAS GEMM repacks the
 * weights into its own panel layout at every call, which at 32-64 rows costs
 * about a third of the product. Here they are packed once per pass, into
 * panels of 16 columns, and each step's product runs a small
 * register-blocked kernel over those panels.
 *
 * The kernel is compiled for AVX-512F and for AVX2 + FMA, chosen at run time
 * from what the CPU supports; elsewhere (no GCC, not x86-64, or an older CPU)
 * skrnn_packed_level() is 0 and the caller uses BLAS.
 */
#ifndef SKRNN_PACKED_H
#define SKRNN_PACKED_H

#include <stddef.h>
#include <string.h>

#define SKRNN_PANEL 16

/* Floats taken by op(B) (K x N) packed: whole panels of 16 columns. */
static ptrdiff_t skrnn_packed_size(ptrdiff_t K, ptrdiff_t N)
{
    return (N + SKRNN_PANEL - 1) / SKRNN_PANEL * SKRNN_PANEL * K;
}

/* Bp[(p * K + k) * 16 + j] = op(B)[k, 16 p + j], zero past column N.
 * trans == 0: op(B) = B, row-major K x N with row stride ldb;
 * trans == 1: op(B) = B.T, B row-major N x K with row stride ldb. */
static void skrnn_pack_f32(int trans, ptrdiff_t K, ptrdiff_t N, const float *B,
                           ptrdiff_t ldb, float *Bp)
{
    for (ptrdiff_t p = 0; p * SKRNN_PANEL < N; p++)
        for (ptrdiff_t k = 0; k < K; k++)
            for (ptrdiff_t j = 0; j < SKRNN_PANEL; j++) {
                const ptrdiff_t col = p * SKRNN_PANEL + j;
                float v = 0.0f;
                if (col < N)
                    v = trans ? B[col * ldb + k] : B[k * ldb + col];
                Bp[(p * K + k) * SKRNN_PANEL + j] = v;
            }
}

#if defined(__GNUC__) && defined(__x86_64__)

/* The kernel, once per instruction set (see _packed_kernel.h). */
#define SKRNN_KERNEL skrnn_packed_gemm_avx512
#define SKRNN_REDUCE skrnn_reduce_avx512
#define SKRNN_TARGET __attribute__((target("avx512f,fma")))
#define SKRNN_VW 16 /* floats per vector */
#define SKRNN_MR 8  /* rows per block: 8 accumulators of 32 registers */
#define SKRNN_PG 8  /* a lone row's panels at a time: 8 accumulators */
#include "_packed_kernel.h"

#define SKRNN_KERNEL skrnn_packed_gemm_avx2
#define SKRNN_REDUCE skrnn_reduce_avx2
#define SKRNN_TARGET __attribute__((target("avx2,fma")))
#define SKRNN_VW 8
#define SKRNN_MR 6 /* 12 accumulators of 16 registers */
#define SKRNN_PG 4 /* 8 accumulators */
#include "_packed_kernel.h"

static int skrnn_cpu_level(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
    return 0;
}

#else

static int skrnn_cpu_level(void) { return 0; }

#endif

/* -1 until first asked; the tests lower it to check each kernel. */
static int skrnn_level = -1;

/* 2: AVX-512F kernel, 1: AVX2 + FMA kernel, 0: none (use BLAS). */
static int skrnn_packed_level(void)
{
    if (skrnn_level < 0)
        skrnn_level = skrnn_cpu_level();
    return skrnn_level;
}

/* Use the kernel of ``level`` if the CPU has it, else the best it has;
 * returns the level in use. */
static int skrnn_set_packed_level(int level)
{
    const int best = skrnn_cpu_level();
    skrnn_level = level < best ? (level < 0 ? 0 : level) : best;
    return skrnn_level;
}

/* C (M x N, row stride ldc) = A (M x K, row stride lda) @ op(B), plus C if
 * ``accumulate``, with Bp = op(B) packed by skrnn_pack_f32. Only called
 * when skrnn_packed_level() > 0. */
static void skrnn_packed_gemm_f32(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A,
                                  ptrdiff_t lda, const float *Bp, int accumulate, float *C,
                                  ptrdiff_t ldc)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (skrnn_packed_level() == 2)
        skrnn_packed_gemm_avx512(M, N, K, A, lda, Bp, accumulate, C, ldc);
    else
        skrnn_packed_gemm_avx2(M, N, K, A, lda, Bp, accumulate, C, ldc);
#endif
}

/* C (M x N, row stride ldc) = A.T @ B, plus C if ``accumulate``, with A
 * (K x M) and B (K x N) row-major, row strides lda and ldb, N a multiple
 * of 16. Only called when skrnn_packed_level() > 0. */
static void skrnn_reduce_f32(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A,
                             ptrdiff_t lda, const float *B, ptrdiff_t ldb,
                             int accumulate, float *C, ptrdiff_t ldc)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (skrnn_packed_level() == 2)
        skrnn_reduce_avx512(M, N, K, A, lda, B, ldb, accumulate, C, ldc);
    else
        skrnn_reduce_avx2(M, N, K, A, lda, B, ldb, accumulate, C, ldc);
#endif
}

#endif
