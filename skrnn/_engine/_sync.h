/* Two threads taking turns over a list of tasks, for the steps of a lone
 * sequence split between threads (_recurrent.pyx's lone_row_forward).
 *
 * Tasks are claimed in order from a shared counter; a task may start once a
 * given number of tasks (all those it reads the results of) are done. A
 * thread waits only for tasks of smaller numbers, which threads that are
 * running have claimed: whether or not the other thread ever comes, the
 * list is done. */
#ifndef SKRNN_SYNC_H
#define SKRNN_SYNC_H

#include <sched.h>
#include <stddef.h>

static inline ptrdiff_t skrnn_claim(ptrdiff_t *next)
{
    return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
}

/* Publish a task's results: the other thread sees them once it sees the
 * count. */
static inline void skrnn_finish(ptrdiff_t *done)
{
    __atomic_fetch_add(done, 1, __ATOMIC_RELEASE);
}

/* Wait until ``count`` tasks are done: spinning a while (a step of the
 * other thread takes microseconds), then giving the core away. */
static inline void skrnn_wait(ptrdiff_t *done, ptrdiff_t count)
{
    for (unsigned spins = 0; __atomic_load_n(done, __ATOMIC_ACQUIRE) < count; spins++) {
        if (spins < 1u << 14) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
}

#endif
