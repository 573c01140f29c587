"""Fits in worker threads hold BLAS to one thread, and restore it after;
predict in the main thread splits the sequences between threads."""

import os
import sys
import threading

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info, threadpool_limits

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
    """Records the BLAS thread counts (and the threads) that each share of
    a batch's training pass, or each compiled epoch, runs with."""

    def _initialize(self, early_stopping):
        super()._initialize(early_stopping)
        net = self._network
        for name in ("_loss_grad_sorted", "epoch"):
            setattr(net, name, self._recording(getattr(net, name)))

    def _recording(self, training_pass):
        def recording(*args):
            self.seen_.append(_blas_threads())
            self.threads_.add(threading.current_thread().name)
            return training_pass(*args)

        return recording


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 epochs
def test_worker_thread_fit_uses_one_blas_thread():
    if not _blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    X = np.random.RandomState(0).normal(size=(20, 5, 2))
    y = X.sum(axis=(1, 2))
    before = _blas_threads()
    models = [_Recording(hidden_size=4, max_iter=2, random_state=i) for i in range(2)]
    for m in models:
        m.seen_, m.threads_ = [], set()
    threads = [threading.Thread(target=m.fit, args=(X, y)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in models:
        assert m.seen_ and all(counts == [1] * len(counts) for counts in m.seen_)
    assert _blas_threads() == before


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 epochs
def test_main_thread_fit_shares_the_blas_threads(monkeypatch):
    """In the main thread, a batch's TRAINING_SHARES shares run side by side
    (the compiled epoch's second thread computes the second), sharing
    SciPy's BLAS threads; NumPy's own BLAS is held to one thread."""
    if not _blas_threads(_kernels_blas):
        pytest.skip("SciPy's BLAS is not a library that threadpoolctl can see")
    from skrnn import _network
    from skrnn._engine import _batch
    from skrnn._network import MIN_SHARE, TRAINING_SHARES

    # split this small net in the compiled epoch alone: the fit shares the
    # threads out by the epoch's rule, not by one call per batch's
    monkeypatch.setattr(_network, "EPOCH_SHARE_WORK", 1)
    real_partner = _batch.epoch_partner
    n = TRAINING_SHARES * MIN_SHARE
    X = np.random.RandomState(0).normal(size=(n, 5, 2))
    y = X.sum(axis=(1, 2))
    fits = {}
    for threads in (1, 2 * TRAINING_SHARES):
        model = _Recording(hidden_size=4, max_iter=2, batch_size=n, random_state=0)
        model.seen_, model.threads_ = [], set()

        def partner(*args):
            model.seen_.append(_blas_threads())
            model.threads_.add(threading.current_thread().name)
            return real_partner(*args)

        monkeypatch.setattr(_batch, "epoch_partner", partner)
        with threadpool_limits(limits=threads, user_api="blas"):
            before = _blas_threads()
            model.fit(X, y)
            assert _blas_threads() == before
        kernels = [max(1, threads // TRAINING_SHARES)] * len(
            _blas_threads(_kernels_blas)
        )
        numpys = [1] * len(_blas_threads(_numpy_blas))
        # two compiled epochs of one batch in TRAINING_SHARES shares, the
        # second share on another thread when there are threads to share
        assert len(model.seen_) == (2 * TRAINING_SHARES if threads > 1 else 2)
        assert (len(model.threads_) > 1) == (threads > 1)
        for counts in model.seen_:
            assert _blas_threads(_kernels_blas, counts) == kernels
            assert _blas_threads(_numpy_blas, counts) == numpys
        fits[threads] = model
    # the fit does not depend on the number of threads
    np.testing.assert_array_equal(
        fits[1].predict(X), fits[2 * TRAINING_SHARES].predict(X)
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 epochs
@pytest.mark.parametrize("work_for_two", [False, True])
def test_main_thread_fit_in_one_share_keeps_blas_threads_for_work_enough(
    monkeypatch, work_for_two
):
    """A batch of too few sequences to split calls BLAS with its threads if
    it has the work for two shares; without it, every BLAS has one thread
    (OpenBLAS's would spin on the cores the next step needs)."""
    if not _blas_threads(_kernels_blas):
        pytest.skip("SciPy's BLAS is not a library that threadpoolctl can see")
    from skrnn import _network
    from skrnn._network import MIN_SHARE, TRAINING_SHARES

    if work_for_two:
        monkeypatch.setattr(_network, "MIN_SHARE_WORK", 1)
        monkeypatch.setattr(_network, "TRAINING_SHARE_WORK", 1)
        monkeypatch.setattr(_network, "EPOCH_SHARE_WORK", 1)
    X = np.random.RandomState(0).normal(size=(MIN_SHARE, 5, 2))  # one share
    threads = 2 * TRAINING_SHARES
    with threadpool_limits(limits=threads, user_api="blas"):
        before = _blas_threads()
        model = _Recording(
            hidden_size=4, max_iter=2, batch_size=MIN_SHARE, random_state=0
        )
        model.seen_, model.threads_ = [], set()
        model.fit(X, X.sum(axis=(1, 2)))
        assert _blas_threads() == before
    assert len(model.seen_) == 2 and model.threads_ == {threading.main_thread().name}
    kernels = [threads if work_for_two else 1] * len(_blas_threads(_kernels_blas))
    numpys = [1] * len(_blas_threads(_numpy_blas))
    for counts in model.seen_:
        assert _blas_threads(_kernels_blas, counts) == kernels
        assert _blas_threads(_numpy_blas, counts) == numpys


def test_main_thread_predict_splits_the_sequences_between_blas_threads(monkeypatch):
    """In the main thread, predict runs as many threads as SciPy's BLAS may
    use, each on a share of the sequences, with every BLAS held to one thread
    meanwhile; in a worker thread it runs alone."""
    if not _blas_threads(_kernels_blas):
        pytest.skip("SciPy's BLAS is not a library that threadpoolctl can see")
    from skrnn import _network, _threads
    from skrnn._network import MIN_SHARE, Network

    # split this small net, and hold the threads for it
    monkeypatch.setattr(_network, "MIN_SHARE_WORK", 1)
    monkeypatch.setattr(_threads, "UNTHREADED_WORK", 0)
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


def _predict_in_child(args):
    model, X = args
    return model.predict(X)


# Python 3.12+ warns that forking a process with threads may deadlock: the
# point of this test is that skrnn's own threads do not.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method (Linux)")
def test_forked_child_predicts_with_its_own_threads(monkeypatch):
    """A child forked after the parent split work between threads starts
    threads of its own (the parent's do not exist there)."""
    import multiprocessing

    from skrnn import _network

    monkeypatch.setattr(_network, "MIN_SHARE_WORK", 1)  # split this small net
    X = np.random.RandomState(0).normal(size=(4 * _network.MIN_SHARE, 5, 2))
    with pytest.warns(ConvergenceWarning):
        model = SequenceRegressor(hidden_size=4, max_iter=2, random_state=0).fit(
            X, X.sum(axis=(1, 2))
        )
    with threadpool_limits(limits=2, user_api="blas"):
        expected = model.predict(X)  # the parent's pool is started
        with multiprocessing.get_context("fork").Pool(1) as pool:
            result = pool.map_async(_predict_in_child, [(model, X)]).get(timeout=60)
    np.testing.assert_array_equal(result[0], expected)


class _FakeBlas:
    """A threadpoolctl controller's thread count, with the counts set."""

    def __init__(self, num_threads):
        self.num_threads, self.set_to = num_threads, []

    def set_num_threads(self, n):
        self.num_threads = n
        self.set_to.append(n)


def test_a_hold_sets_only_the_counts_that_differ_and_gives_them_back():
    from types import SimpleNamespace

    from skrnn._threads import held

    two, one = _FakeBlas(2), _FakeBlas(1)
    libraries = SimpleNamespace(lib_controllers=[two, one])
    with held(libraries, 1):
        assert (two.num_threads, one.num_threads) == (1, 1)
        with held(libraries, 1):  # nested: nothing left to set
            pass
        assert two.set_to == [1] and one.set_to == []
    assert (two.num_threads, one.num_threads) == (2, 1)
    assert two.set_to == [1, 2] and one.set_to == []


def test_a_prediction_too_small_for_blas_threads_holds_none(monkeypatch):
    """Predicting one short sequence sets no thread count: BLAS would run its
    GEMMs on one thread anyway, and setting counts costs more than the
    arithmetic. A prediction of more work does hold them."""
    from skrnn import _threads

    X = np.random.RandomState(0).normal(size=(200, 50, 8))
    model = SequenceRegressor(hidden_size=32, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X[:20], X[:20].sum(axis=(1, 2)))
    held = []
    real_held = _threads.held

    def recording(libraries, threads):
        held.append(threads)
        return real_held(libraries, threads)

    monkeypatch.setattr(_threads, "held", recording)
    assert model._network.forward_work(1, 50) < _threads.UNTHREADED_WORK
    model.predict(X[:1])
    assert held == []
    assert model._network.forward_work(200, 50) >= _threads.UNTHREADED_WORK
    model.predict(X)
    assert held != []


def _runs_without_the_gil(work):
    """Whether this thread runs Python while another runs ``work`` (on one
    BLAS thread): at a third of its own pace at least. A call that held the
    GIL would stop it for all but the moments of Python around the call."""
    import time

    def spin(stop, seconds):
        turns, end = 0, time.perf_counter() + seconds
        while not stop.is_set() and time.perf_counter() < end:
            turns += 1
        return turns

    pace = spin(threading.Event(), 0.05) / 0.05
    done = threading.Event()
    worker = threading.Thread(target=lambda: (work(), done.set()))
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        worker.start()
        turns = spin(done, 60.0)
        elapsed = time.perf_counter() - start
        worker.join()
    return turns > pace * elapsed / 3


def test_the_compiled_passes_release_the_gil():
    from skrnn._cells import CellSpec, init_params
    from skrnn._engine import cpu, get_engine
    from skrnn._losses import squared_error
    from skrnn._network import Network

    spec = CellSpec("gru", "tanh", True, True)
    rng = np.random.RandomState(0)
    T, N, D, H = 400, 64, 8, 64
    params = init_params(spec, D, H, "float64", rng)
    x = rng.normal(size=(T, N, D))
    h0 = np.zeros((N, H))
    _, _, cache = cpu.forward(spec, params, x, np.full(N, T), h0)
    net = Network(
        spec,
        input_size=D,
        hidden_size=H,
        num_layers=1,
        bidirectional=False,
        output="last",
        n_outputs=1,
        dtype="float64",
        random_state=0,
    )
    X, y, w = x.transpose(1, 0, 2), rng.normal(size=(N, 1)), np.full(N, 1.0 / N)
    engine = get_engine("cpu")
    assert _runs_without_the_gil(
        lambda: cpu.forward(spec, params, x, np.full(N, T), h0)
    )
    assert _runs_without_the_gil(
        lambda: cpu.backward(spec, params, cache, np.ones((T, N, H)))
    )
    assert _runs_without_the_gil(
        lambda: net.loss_grad(engine, X, np.full(N, T), y, w, squared_error, None)
    )


def test_main_thread_predict_of_one_sequence_splits_its_units(monkeypatch):
    """Predicting one sequence in the main thread, the compiled engine takes
    each step's two halves of the units on two threads where two workers
    are at hand; the prediction is that of one thread, bit for bit."""
    from skrnn import _threads
    from skrnn._engine import _recurrent, cpu

    if max(_blas_threads(_kernels_blas), default=1) < 2:
        pytest.skip("SciPy's BLAS has one thread here: one worker at hand")
    if _recurrent.packed_size(_recurrent.Cell.LSTM, 32) == 0:
        pytest.skip("the split needs a packed kernel")
    X = np.random.RandomState(0).normal(size=(8, 30, 3)).astype(np.float32)
    with pytest.warns(ConvergenceWarning):
        model = SequenceRegressor(
            cell="lstm", hidden_size=32, max_iter=2, dtype="float32", random_state=0
        ).fit(X, X.sum(axis=(1, 2)))
    one_thread = model.predict(X[:1])
    threads = []
    real = _recurrent.lone_row_forward

    def recording(*args):
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(_recurrent, "lone_row_forward", recording)
    monkeypatch.setattr(_threads, "UNTHREADED_WORK", 0)
    monkeypatch.setattr(cpu, "LONE_ROW_SPLIT_BYTES", 0)
    np.testing.assert_array_equal(model.predict(X[:1]), one_thread)
    assert len(threads) == 2 and threading.main_thread().name in threads
    # in a worker thread, one worker: no split
    worker = threading.Thread(target=model.predict, args=(X[:1],))
    worker.start()
    worker.join()
    assert len(threads) == 2
