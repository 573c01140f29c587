"""What the benchmark scripts share: the best time of repeated runs."""

import time


def best_time(fn, repeat):
    """The shortest of ``repeat`` runs of ``fn()``, in seconds, after one
    run to warm up (imports, first-call costs, caches)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
