"""Fits in worker threads hold BLAS to one thread, and restore it after."""

import os
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from skrnn import SequenceRegressor


def _blas_threads(keep=lambda path: True, counts=None):
    """Thread counts of the BLAS libraries whose path ``keep`` accepts."""
    info = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if counts is None:
        counts = [p["num_threads"] for p in info]
    return [c for p, c in zip(info, counts) if keep(p["filepath"])]


def _kernels_blas(path):
    """Whether ``path`` is SciPy's BLAS (the one the kernels call), when vendored."""
    return os.path.basename(os.path.dirname(path)).startswith("scipy")


def _numpy_blas(path):
    """Whether ``path`` is NumPy's own vendored BLAS."""
    return os.path.basename(os.path.dirname(path)).startswith("numpy")


class _Recording(SequenceRegressor):
    """Records the BLAS thread counts seen while computing the loss."""

    def _loss(self, z, y, w):
        self.seen_.append(_blas_threads())
        return super()._loss(z, y, w)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 epochs
def test_worker_thread_fit_uses_one_blas_thread():
    if not _blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    X = np.random.RandomState(0).normal(size=(20, 5, 2))
    y = X.sum(axis=(1, 2))
    before = _blas_threads()
    models = [_Recording(hidden_size=4, max_iter=2, random_state=i) for i in range(2)]
    for m in models:
        m.seen_ = []
    threads = [threading.Thread(target=m.fit, args=(X, y)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in models:
        assert m.seen_ and all(counts == [1] * len(counts) for counts in m.seen_)
    assert _blas_threads() == before

    # In the main thread the kernels' BLAS keeps its threads; only NumPy's,
    # where it is a separate library, is held to one (see _BlasThreads).
    main = _Recording(hidden_size=4, max_iter=2, random_state=0)
    main.seen_ = []
    main.fit(X, y)
    kernels = _blas_threads(_kernels_blas)
    assert all(_blas_threads(_kernels_blas, counts) == kernels for counts in main.seen_)
    numpys = _blas_threads(_numpy_blas)
    assert all(_blas_threads(_numpy_blas, counts) == [1] * len(numpys) for counts in main.seen_)
    assert _blas_threads() == before
