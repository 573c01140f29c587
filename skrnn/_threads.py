"""How many BLAS threads the kernels and NumPy use while skrnn computes.

BLAS thread pools are per process and per library (SciPy's OpenBLAS, which
the compiled kernels call, and NumPy's, which the head's products call, may
be two). :data:`blas_threads` holds them for the duration of a fit or a
prediction, and shares them out between threads that each run part of the
sequences (see :meth:`BlasThreads.split`) on the process's own threads
(:func:`map_threads`).
"""

import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from threadpoolctl import OpenBLASController, ThreadpoolController

# OpenBLAS computes a GEMM of fewer multiply-adds than this on one thread
# (its GEMM_MULTITHREAD_THRESHOLD of 4, times 65536); a pass of less work
# has no GEMM larger.
UNTHREADED_WORK = 4 * 65536


class BlasThreads:
    """Keep BLAS thread pools from fighting over the cores while we compute.

    - A fit outside the main thread (joblib's threading backend, Dask's
      worker threads) holds every BLAS to one thread: several fits run at
      once, and n_jobs x BLAS threads would oversubscribe the cores. BLAS
      limits are per process, so the first worker fit sets the limit and
      the last one restores it.
    - On the compiled CPU engine, the kernels call SciPy's BLAS while the
      few NumPy matrix products around them (the output head) call NumPy's.
      Where those are two libraries, each has its own pool of spinning
      threads, and together they oversubscribe the cores. So NumPy's BLAS
      gets one thread for the duration.
    - Where the compiled engine has several BLAS threads in the main
      thread, :meth:`split` shares them out between threads that each run
      part of the sequences (see :meth:`skrnn._network.Network.loss_grad`);
      a fit whose batches are too small to share out runs on one thread.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._limiter = None
        self._blas = None

    def _libraries(self):
        """(every BLAS, SciPy's BLAS, NumPy's BLAS that is not SciPy's),
        found once."""
        if self._blas is None:
            controller = ThreadpoolController().select(user_api="blas")
            owners = {}
            for lib in controller.lib_controllers:
                # wheels vendor them in numpy.libs/ and scipy.libs/
                owner = os.path.basename(os.path.dirname(lib.filepath)).split(".")[0]
                owners.setdefault(owner, set()).add(lib.filepath)
            scipy_paths = owners.get("scipy", set())
            self._blas = (
                controller,
                controller.select(filepath=sorted(scipy_paths)),
                controller.select(
                    filepath=sorted(owners.get("numpy", set()) - scipy_paths)
                ),
            )
        return self._blas

    @contextmanager
    def limit(self, engine):
        """Apply the limits above while the block runs on ``engine``."""
        if threading.current_thread() is not threading.main_thread():
            with self._lock:
                if self._active == 0:
                    self._limiter = held(self._libraries()[0], 1)
                    self._limiter.__enter__()
                self._active += 1
            try:
                yield
            finally:
                with self._lock:
                    self._active -= 1
                    if self._active == 0:
                        self._limiter.__exit__(None, None, None)
                        self._limiter = None
        elif engine.host_blas:
            with held(self._libraries()[2], 1):
                yield
        else:
            yield

    @contextmanager
    def split(self, engine, shares=None, serial=False, work=None):
        """The engine with as many ``workers`` as may each run a share of
        the sequences at once, for the duration of the block.

        On the compiled engine in the main thread, the threads SciPy's BLAS
        would use (what ``OPENBLAS_NUM_THREADS`` or threadpoolctl set) are
        split between ``shares`` workers (all of them when None), each
        calling BLAS with its part of the threads: where one BLAS call is
        split over the cores, they idle between its small GEMMs and during
        the gate loops. With one share and ``serial``, every BLAS gets one
        thread: for work too small to split, OpenBLAS's threads would win
        little and then spin on a core, waiting for the next call, while
        the gate loops and whatever runs next need it. Otherwise ``engine``
        itself, under the rules of :meth:`limit`; and nothing is held for
        ``work`` (multiply-adds) that BLAS computes on one thread anyway:
        holding the counts costs more than such a prediction's arithmetic.
        """
        if work is not None and work < UNTHREADED_WORK:
            yield engine
            return
        if engine.host_blas and threading.current_thread() is threading.main_thread():
            every, scipy_blas, numpy_blas = self._libraries()
            threads = max(
                (lib.num_threads for lib in scipy_blas.lib_controllers), default=1
            )
            workers = threads if shares is None else min(shares, threads)
            if workers > 1:
                with held(every, threads // workers), held(numpy_blas, 1):
                    token = _WORKERS.set(workers)
                    try:
                        yield engine._replace(workers=workers)
                    finally:
                        _WORKERS.reset(token)
                return
            if serial:
                with held(every, 1):
                    yield engine
                return
        with self.limit(engine):
            yield engine


blas_threads = BlasThreads()

# The workers of the BlasThreads.split block in use: the compiled engine
# spreads the steps of a lone sequence over them (cpu.forward).
_WORKERS = contextvars.ContextVar("skrnn_workers", default=1)


def workers_at_hand():
    """How many threads the :meth:`BlasThreads.split` block in use lets a
    pass run on at once (1 outside one, or where it gives one worker)."""
    return _WORKERS.get()


@contextmanager
def held(libraries, threads):
    """Hold ``libraries`` (a threadpoolctl selection) to ``threads`` threads
    during the block, then give each its count from before. Those already
    at ``threads`` are left alone: setting a count costs a few microseconds,
    and holds nest (NumPy's BLAS inside every BLAS's)."""
    changed, before = [], []
    for lib in libraries.lib_controllers:
        count = lib.num_threads
        if count != threads:
            changed.append(lib)
            before.append(count)
    _set_threads(changed, [threads] * len(changed))
    try:
        yield
    finally:
        _set_threads(changed, before)


def _set_threads(controllers, counts):
    """Set the thread counts of ``controllers`` (threadpoolctl's, one per
    library); nothing to do for none.

    threadpoolctl (3.8 and later) lets one thread at a time set OpenBLAS's
    process-wide count and silently ignores the others; the worker fit that
    restores the count is often not the one that set it. So this thread
    takes control, sets, and lets go.
    """
    if not controllers:
        return
    release = getattr(OpenBLASController, "clear_controlling_thread", None)
    if release is not None:
        release(force=True)
    for lib, n in zip(controllers, counts):
        lib.set_num_threads(n)
    if release is not None:
        release()


def map_threads(workers, fn, *iterables):
    """``list(map(fn, *iterables))`` on up to ``workers`` threads.

    The calling thread runs the first call itself, the others go to a pool
    kept for the process (starting threads per batch costs more than small
    batches take). Each call runs in a copy of the caller's context, so that
    settings held in context variables (NumPy's ``errstate``) hold there too.
    """
    args = list(zip(*iterables))
    if workers <= 1 or len(args) <= 1:
        return [fn(*a) for a in args]
    pool = _pool()
    futures = [pool.submit(contextvars.copy_context().run, fn, *a) for a in args[1:]]
    return [fn(*args[0])] + [f.result() for f in futures]


@contextmanager
def alongside(fn, *args):
    """Run ``fn(*args)`` on a thread of :func:`map_threads`'s pool, in a copy
    of the caller's context, while the block runs; at the block's end, wait
    for it to return and raise what it raised. ``fn`` None: the block alone.
    """
    if fn is None:
        yield
        return
    future = _pool().submit(contextvars.copy_context().run, fn, *args)
    try:
        yield
    finally:
        future.result()


_POOL = (None, None)  # (process id, pool): a forked child starts its own
_POOL_LOCK = threading.Lock()


def _pool():
    """The process's pool of threads for :func:`map_threads`, started on first use."""
    global _POOL
    with _POOL_LOCK:
        pid, pool = _POOL
        if pid != os.getpid():
            pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="skrnn")
            _POOL = (os.getpid(), pool)
        return pool
