/* Activations over contiguous arrays, for the gate loops of _gates.h.
 *
 * float32 uses a branch-free rational approximation of tanh (the one Eigen
 * uses: odd degree 13 over even degree 6, argument clamped to +-7.9053),
 * within a few ulp of tanhf, so the loops vectorise; on x86-64 they are
 * compiled for AVX-512F, AVX2 and the SSE2 baseline, and the loader picks
 * the widest the CPU has.
 * float64 keeps libm's accuracy (the compiled engine must equal the
 * reference to 1e-10 there).
 */
#ifndef SKRNN_ACTIVATIONS_H
#define SKRNN_ACTIVATIONS_H

#include <math.h>
#include <stddef.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define SKRNN_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SKRNN_SIMD
#endif

static inline float skrnn_tanh1_f32(float x)
{
    const float lim = 7.90531110763549805f;
    /* NaN passes through both comparisons, so it propagates */
    x = x < -lim ? -lim : x;
    x = x > lim ? lim : x;
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}

static inline double skrnn_tanh1_f64(double x)
{
    /* tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): no overflow, exact near 0 */
    const double e = expm1(-2.0 * fabs(x));
    return copysign(-e / (2.0 + e), x);
}

static inline float skrnn_sigmoid1_f32(float x)
{
    /* sigma(x) = (1 + tanh(x / 2)) / 2 */
    return 0.5f + 0.5f * skrnn_tanh1_f32(0.5f * x);
}

static inline double skrnn_sigmoid1_f64(double x)
{
    /* for very negative x, exp(-x) overflows to inf and the result is 0 */
    return 1.0 / (1.0 + exp(-x));
}

SKRNN_SIMD static void skrnn_tanh_f32(float *a, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        a[i] = skrnn_tanh1_f32(a[i]);
}

SKRNN_SIMD static void skrnn_sigmoid_f32(float *a, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        a[i] = skrnn_sigmoid1_f32(a[i]);
}

static void skrnn_tanh_f64(double *a, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        a[i] = skrnn_tanh1_f64(a[i]);
}

static void skrnn_sigmoid_f64(double *a, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        a[i] = skrnn_sigmoid1_f64(a[i]);
}

#endif
