"""Fits in worker threads hold BLAS to one thread, and restore it after;
predict in the main thread splits the sequences between threads."""

import os
import threading

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
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


def test_main_thread_predict_splits_the_sequences_between_blas_threads(monkeypatch):
    """In the main thread, predict runs as many threads as SciPy's BLAS may
    use, each on a share of the sequences, with every BLAS held to one thread
    meanwhile; in a worker thread it runs alone."""
    if not _blas_threads(_kernels_blas):
        pytest.skip("SciPy's BLAS is not a library that threadpoolctl can see")
    from threadpoolctl import threadpool_limits

    from skrnn._network import MIN_SHARE, Network

    seen = []
    forward_sorted = Network._forward_sorted

    def recording(self, engine, p, values, lengths, rows):
        seen.append((threading.current_thread().name, len(rows), _blas_threads()))
        return forward_sorted(self, engine, p, values, lengths, rows)

    X = np.random.RandomState(0).normal(size=(3 * MIN_SHARE, 5, 2))
    model = SequenceRegressor(hidden_size=4, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, X.sum(axis=(1, 2)))
    serial = model.predict(X[:MIN_SHARE])  # too few sequences to split
    monkeypatch.setattr(Network, "_forward_sorted", recording)
    with threadpool_limits(limits=3, user_api="blas"):
        before = _blas_threads()
        split = model.predict(X)
        assert _blas_threads() == before
    assert len(seen) == 3 and {n for n, _, _ in seen} != {threading.main_thread().name}
    assert sorted(rows for _, rows, _ in seen) == [MIN_SHARE] * 3
    assert all(counts == [1] * len(counts) for _, _, counts in seen)
    np.testing.assert_array_equal(split[:MIN_SHARE], serial)

    seen.clear()
    with threadpool_limits(limits=1, user_api="blas"):
        model.predict(X)
    assert [rows for _, rows, _ in seen] == [3 * MIN_SHARE]

    seen.clear()
    worker = threading.Thread(target=model.predict, args=(X,))
    worker.start()
    worker.join()
    assert [(name, rows) for name, rows, _ in seen] == [(worker.name, 3 * MIN_SHARE)]
