/* The gate loops of the forward and backward passes, for _recurrent.pyx:
 * everything a step does besides its GEMMs.
 *
 * Per unit, a loop reads the step's projections or cached gates and writes
 * several arrays: gates, states, outputs, gate and bias gradients. Written
 * in Cython, such loops stayed scalar or were vectorised behind run-time
 * overlap checks: the compiler cannot tell that the arrays do not overlap.
 * Here the pointers are ``restrict`` (the caller passes arrays, or parts of
 * its work buffers, apart from each other), and the loops are compiled like
 * the activations for AVX-512F, AVX2 and the SSE2 baseline.
 */
#ifndef SKRNN_GATES_H
#define SKRNN_GATES_H

#include <stddef.h>
#include <string.h>

#include "_activations.h"

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict /* MSVC's C has it under this name */
#endif

/* Before a loop over the H units of a row that reads and writes blocks of
 * one array H apart (the LSTM's four gates and their bias gradients): no
 * iteration touches another's elements, which the compiler cannot prove by
 * itself (H is not known), so it would not vectorise the loop. */
#if defined(__clang__)
#define SKRNN_INDEPENDENT _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define SKRNN_INDEPENDENT _Pragma("GCC ivdep")
#else
#define SKRNN_INDEPENDENT
#endif

/* The activations of the recurrent layers (Activation in _recurrent.pyx). */
enum skrnn_activation { SKRNN_TANH, SKRNN_LOGISTIC, SKRNN_RELU, SKRNN_IDENTITY };

#define SKRNN_T float
#define SKRNN_NAME(name) name##_f32
#include "_gates_kernel.h"

#define SKRNN_T double
#define SKRNN_NAME(name) name##_f64
#include "_gates_kernel.h"

#endif
