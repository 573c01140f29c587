/* Two threads taking turns over a list of tasks: the steps of a lone
 * sequence split between threads (_recurrent.pyx's lone_row_forward), the
 * shares of an epoch's batches (_batch.pyx's epoch).
 *
 * Tasks are claimed from shared counters; a task may start once a given
 * number of tasks (all those it reads the results of) are done. A thread
 * waits only for tasks that threads that are running have claimed: whether
 * or not the other thread ever comes, the list is done. */
#ifndef SKRNN_SYNC_H
#define SKRNN_SYNC_H

#include <stddef.h>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#include <windows.h>
/* Interlocked operations are full barriers; a volatile load is an acquire
 * on x86 and x64 */
static inline ptrdiff_t skrnn_fetch_add(ptrdiff_t *p)
{
    return (ptrdiff_t)_InterlockedExchangeAdd64((volatile long long *)p, 1);
}
static inline ptrdiff_t skrnn_load(ptrdiff_t *p) { return *(volatile ptrdiff_t *)p; }
#define skrnn_pause() _mm_pause()
#define skrnn_yield() SwitchToThread()
#else
#if defined(_WIN32)
#include <windows.h>
#define skrnn_yield() SwitchToThread()
#else
#include <sched.h>
#define skrnn_yield() sched_yield()
#endif
static inline ptrdiff_t skrnn_fetch_add(ptrdiff_t *p)
{
    return __atomic_fetch_add(p, 1, __ATOMIC_ACQ_REL);
}
static inline ptrdiff_t skrnn_load(ptrdiff_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
#if defined(__x86_64__) || defined(__i386__)
#define skrnn_pause() __builtin_ia32_pause()
#else
#define skrnn_pause() ((void)0)
#endif
#endif

static inline ptrdiff_t skrnn_claim(ptrdiff_t *next) { return skrnn_fetch_add(next); }

/* Publish a task's results: the other thread sees them once it sees the
 * count. */
static inline void skrnn_finish(ptrdiff_t *done) { skrnn_fetch_add(done); }

/* Wait until ``count`` tasks are done or ``*given_up`` is no longer 0 (the
 * other thread stopped): spinning a while (a step of the other thread takes
 * microseconds), then giving the core away. */
static inline void skrnn_wait_or(ptrdiff_t *done, ptrdiff_t count, ptrdiff_t *given_up)
{
    for (unsigned spins = 0; skrnn_load(done) < count && !skrnn_load(given_up);
         spins++) {
        if (spins < 1u << 14)
            skrnn_pause();
        else
            skrnn_yield();
    }
}

static inline void skrnn_wait(ptrdiff_t *done, ptrdiff_t count)
{
    ptrdiff_t never = 0;
    skrnn_wait_or(done, count, &never);
}

#endif
