"""device="cuda": the device code path, the clear errors, and CPU/GPU equality.

Four groups:

- The device code path on the CPU. An engine whose ``memory`` is
  :class:`~skrnn._engine.HostCopyMemory` computes with NumPy but is treated
  as a GPU engine: parameters, optimiser state and training data are copied
  to its "device" and back exactly as for CuPy. ``device="cuda"`` is pointed
  at it, and everything must equal a CPU fit bit for bit, with the time
  loops run eagerly or replayed from "graphs" as the CUDA engine does
  (:class:`~skrnn._engine.cuda.StepGraphs`, with a capture that records the
  kernel calls on a tape and replays them on the same arrays).
- The fused kernels' CUDA source compiled for the CPU by the host's C++
  compiler and run, thread by thread, against the reference step kernels.
- The errors of ``device="cuda"`` without CuPy or without a device (CuPy's
  import made to fail, or a stand-in CuPy that sees no device).
- On a machine with CuPy and a CUDA device only (skipped elsewhere): the
  fused kernels against the reference engine over the configuration grid,
  and estimators fitted on the GPU against the same fitted on the CPU.
"""

import ctypes
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import threading
import types
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import skrnn._base
import skrnn._device
import skrnn._engine as engines
from skrnn import SequenceClassifier, SequenceRegressor
from skrnn._cells import N_GATES, CellSpec, state_size
from skrnn._engine import (
    CudaUnavailableError,
    Engine,
    HostCopyMemory,
    get_engine,
    reference,
)
from skrnn._engine import cuda as cuda_engine
from skrnn._losses import HeadLoss, squared_error
from skrnn._network import Network


class CountingMemory(HostCopyMemory):
    """Counts the copies to and from the "device"."""

    def __init__(self, free=1 << 40):
        super().__init__(free)
        self.uploads = self.downloads = 0

    def to_device(self, a):
        self.uploads += 1
        return super().to_device(a)

    def to_host(self, a):
        self.downloads += 1
        return super().to_host(a)


class TapeCapture:
    """Stream capture for NumPy: while it captures, calls to the kernels are
    recorded on a tape instead of run (as CUDA records launches); each
    launch of the "graph" runs them again, in order, on the same arrays.
    Like a capturing stream, the tape belongs to the thread that captures."""

    def __init__(self):
        self._local = threading.local()
        self.captures = self.launches = 0

    @property
    def tape(self):
        return getattr(self._local, "tape", None)

    def stream(self):
        return None

    def __call__(self, fn):
        self._local.tape = tape = []
        try:
            fn()
        finally:
            self._local.tape = None
        self.captures += 1
        return types.SimpleNamespace(launch=partial(self._replay, tape))

    def _replay(self, tape):
        self.launches += 1
        for method, args in tape:
            method(*args)


class TapedKernels:
    """NumPy step kernels whose calls go onto the capture's tape while it records."""

    def __init__(self, capture):
        self._capture = capture
        self._kernels = reference.StepKernels(np)
        self.xp = np

    def __getattr__(self, name):
        method = getattr(self._kernels, name)

        def call(*args):
            if self._capture.tape is None:
                method(*args)
            else:
                self._capture.tape.append((method, args))

        return call


def _graphed_passes(budget=cuda_engine.GRAPH_BYTES, capture=None):
    """The CUDA engine's forward and backward, on NumPy with a tape capture."""
    capture = capture or TapeCapture()
    graphs = cuda_engine.StepGraphs(np, capture, budget)
    passes = dict(kernels=TapedKernels(capture), loops=graphs)
    return partial(reference.forward, **passes), partial(reference.backward, **passes)


def _mirror_engine(memory, graphs=False):
    if graphs:
        return Engine("mirror", np, *_graphed_passes(), memory)
    return Engine("mirror", np, reference.forward, reference.backward, memory)


@pytest.fixture(params=[False, True], ids=["eager", "graphs"])
def mirror(monkeypatch, request):
    """Point device="cuda" at a NumPy engine with its own (copied) memory.

    The CPU side runs the same reference engine, so that a difference can
    only come from the device code path (copies, device-side state, graphs).
    """
    engine = _mirror_engine(CountingMemory(), graphs=request.param)
    real = skrnn._base.get_engine
    monkeypatch.setattr(
        skrnn._base,
        "get_engine",
        lambda name="cpu": engine if name == "cuda" else real("reference"),
    )
    return engine


def _data(n=40, T=6, D=2, seed=0, variable=True):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, T, D)).astype(np.float32)
    if variable:
        for i in range(0, n, 3):
            X[i, T - 1 - i % (T - 1) :] = np.nan  # trailing NaN steps: shorter samples
    y = np.nansum(X[:, :, 0], axis=1)
    return X, y


CONFIGS = [
    dict(cell="gru"),
    dict(cell="rnn", activation="relu", solver="sgd", bidirectional=True),
    dict(cell="gru", reset_after=False, use_bias=False, solver="rprop", clip_norm=0.1),
    dict(cell="gru", output="sequence", num_layers=2, bptt_steps=2),
    dict(cell="rnn", activation="logistic", early_stopping=True, batch_size=7),
]


# (cell, activation, reset_after) of the engine-level tests
CELLS = (
    [("rnn", a, True) for a in ("tanh", "relu", "identity", "logistic")]
    + [("gru", a, ra) for a in ("tanh", "logistic") for ra in (True, False)]
    + [("lstm", "tanh", True)]
)


def _fit(Est, X, y, **params):
    params = {"hidden_size": 5, "max_iter": 4, "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Est(**params).fit(X, y)


def _targets(Est, X, y, params):
    if params.get("output") == "sequence":
        y = np.nan_to_num(X[:, :, 1])
    if Est is SequenceClassifier:
        y = np.digitize(y, [-0.5, 0.5])  # three classes
    return y


# ----------------------------------------------- the device path, on the CPU
@pytest.mark.parametrize(
    "params", CONFIGS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items())
)
@pytest.mark.parametrize("Est", [SequenceRegressor, SequenceClassifier])
@pytest.mark.parametrize(
    "fits", [True, False], ids=["data-on-device", "data-per-batch"]
)
def test_device_path_equals_cpu_bit_for_bit(mirror, Est, params, fits):
    mirror.memory.free = 1 << 40 if fits else 0
    X, y = _data()
    y = _targets(Est, X, y, params)
    cpu = _fit(Est, X, y, **params)
    dev = _fit(Est, X, y, device="cuda", **params)
    for name, value in cpu.coefs_.items():
        assert type(dev.coefs_[name]) is np.ndarray
        np.testing.assert_array_equal(dev.coefs_[name], value, err_msg=name)
    assert dev.loss_curve_ == cpu.loss_curve_
    assert all(type(v) is float for v in dev.loss_curve_)
    np.testing.assert_array_equal(dev.predict(X), cpu.predict(X))
    # the optimiser's state is back on the host: the model pickles without a GPU
    for state in dev._optimizer.state.values():
        assert all(type(v) is np.ndarray for v in state.values() if hasattr(v, "shape"))
    again = pickle.loads(pickle.dumps(dev))
    np.testing.assert_array_equal(again.predict(X), cpu.predict(X))


def test_device_copies_once_per_fit_and_per_predict(mirror):
    X, y = _data()
    memory = mirror.memory
    model = _fit(
        SequenceRegressor, X, y, device="cuda", batch_size=5
    )  # 8 batches x 4 epochs
    # flat, weight mask, values, targets up; each epoch's loss, the outputs
    # that check the last update, then flat and the two Adam moments
    # (created on the device) down: nothing per batch, not even whether its
    # step diverged
    assert (memory.uploads, memory.downloads) == (4, 4 + 1 + 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.partial_fit(X, y)
    # now the two Adam moments go up too
    assert (memory.uploads, memory.downloads) == (4 + 6, 8 + 1 + 1 + 3)
    model.predict(X)
    assert (memory.uploads, memory.downloads) == (11, 14)  # flat up, outputs down


def test_writes_into_coefs_reach_the_device(mirror):
    X, y = _data()
    cpu = _fit(SequenceRegressor, X, y, warm_start=True)
    dev = _fit(SequenceRegressor, X, y, device="cuda", warm_start=True)
    for model in (cpu, dev):
        model.coefs_["head.bias"][:] = 3.0  # in place
        model.coefs_["weight_hh_l0"] = np.zeros_like(
            model.coefs_["weight_hh_l0"]
        )  # assigned
    np.testing.assert_array_equal(dev.predict(X), cpu.predict(X))
    for model in (cpu, dev):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
    for name, value in cpu.coefs_.items():
        np.testing.assert_array_equal(dev.coefs_[name], value, err_msg=name)


def test_divergence_on_the_device_keeps_the_last_finite_weights(mirror):
    X, y = _data()
    y = y * 1e30
    models = []
    for device in ("cpu", "cuda"):
        model = SequenceRegressor(
            cell="rnn",
            activation="relu",
            hidden_size=5,
            learning_rate_init=1e10,
            solver="sgd",
            clip_norm=None,
            max_iter=50,
            random_state=0,
            device=device,
        )
        with pytest.warns(ConvergenceWarning, match="diverged"):
            model.fit(X, y)
        assert all(np.isfinite(v).all() for v in model.coefs_.values())
        models.append(model)
    for name, value in models[0].coefs_.items():
        np.testing.assert_array_equal(models[1].coefs_[name], value, err_msg=name)


class _Fault:
    """Makes the loss, the gradient or an update of one step of one epoch
    not finite, the same step each time that epoch is run; records the
    ``checked`` argument of each epoch run."""

    def __init__(self, model, kind, epoch, step):
        self.model, self.kind, self.at = model, kind, (epoch, step)
        self.epochs = []
        self.step = -1
        real_epoch, real_step = model._epoch, model._step
        real_head_loss = model._head_loss
        real_update = model._update

        def run_epoch(*args, checked):
            self.epochs.append(checked)
            self.step = -1
            return real_epoch(*args, checked=checked)

        def run_step(*args, **kwargs):
            self.step += 1
            return real_step(*args, **kwargs)

        fault = self

        class Loss(HeadLoss):  # no compiled twin: the layer-by-layer path
            def __call__(self, z, y, w, xp=np):
                value, dz = real_head_loss()(z, y, w, xp=xp)
                if fault.now("loss"):
                    value = value * np.nan
                if fault.now("gradient"):
                    dz = dz * np.inf
                return value, dz

        def update(run, grad_check):
            finite = real_update(run, grad_check)
            if self.now("weight"):
                run.params.flat[3] = np.inf
            return finite & run.engine.xp.isfinite(run.params.flat).all()

        model._epoch, model._step = run_epoch, run_step
        model._head_loss = lambda: Loss()
        model._update = update

    def now(self, kind):
        return kind == self.kind and (self.model.n_iter_, self.step) == self.at


def _optimizer_state(model):
    return {
        (key, name): np.asarray(value).copy()
        for key, state in model._optimizer.state.items()
        for name, value in state.items()
    }


@pytest.mark.parametrize("kind", ["loss", "gradient", "weight"])
@pytest.mark.parametrize("epoch, step", [(0, 0), (0, 3), (1, 0), (2, 7)])
def test_divergence_on_the_device_stops_where_the_cpu_does(mirror, kind, epoch, step):
    """The device checks an epoch once, at its end; when a step diverged
    it runs the epoch again from its start, checking each step as the host
    does, and so stops at the same step with the same model."""
    X, y = _data()
    fits = []
    for device in ("cpu", "cuda"):
        model = SequenceRegressor(
            hidden_size=5, batch_size=5, max_iter=6, random_state=0, device=device
        )
        fault = _Fault(model, kind, epoch, step)
        with pytest.warns(ConvergenceWarning, match="diverged"):
            model.fit(X, y)
        fits.append((model, fault.epochs))
    (cpu, cpu_epochs), (dev, dev_epochs) = fits
    assert cpu_epochs == [True] * (epoch + 1)
    assert dev_epochs == [False] * (epoch + 1) + [True]
    assert dev.n_iter_ == cpu.n_iter_ == epoch
    assert dev.loss_curve_ == cpu.loss_curve_
    for name, value in cpu.coefs_.items():
        assert np.isfinite(value).all()
        np.testing.assert_array_equal(dev.coefs_[name], value, err_msg=name)
    expected = _optimizer_state(cpu)
    assert _optimizer_state(dev).keys() == expected.keys()
    for key, value in _optimizer_state(dev).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=str(key))


def test_interrupt_while_an_epoch_is_run_again_rolls_it_back(mirror):
    """A KeyboardInterrupt in the checked second run of an epoch leaves the
    model as it was before the epoch's first run."""
    X, y = _data()
    model = SequenceRegressor(
        hidden_size=5, batch_size=5, max_iter=6, random_state=0, device="cuda"
    )
    fault = _Fault(model, "loss", 1, 6)
    run_epoch, run_step = model._epoch, model._step
    before = {}

    def epoch(*args, checked):
        if model.n_iter_ == 1 and not checked:  # epoch 1's first run
            before["flat"] = np.array(
                args[0].params.flat
            )  # the weights on the "device"
            before["optimizer"] = _optimizer_state(model)
        return run_epoch(*args, checked=checked)

    def step(*args, **kwargs):
        if fault.epochs[-1] and fault.step == 4:  # the 6th step of the second run
            raise KeyboardInterrupt
        return run_step(*args, **kwargs)

    model._epoch, model._step = epoch, step
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    assert fault.epochs == [False, False, True]
    flat = np.concatenate([v.ravel() for v in model.coefs_.values()])  # storage order
    np.testing.assert_array_equal(flat, before["flat"])
    state = _optimizer_state(model)
    assert state.keys() == before["optimizer"].keys()
    for key, value in before["optimizer"].items():
        np.testing.assert_array_equal(state[key], value, err_msg=str(key))


def test_interrupted_epoch_on_the_device_is_rolled_back(mirror, monkeypatch):
    X, y = _data()
    model = _fit(SequenceRegressor, X, y, device="cuda", max_iter=1)
    before = {k: v.copy() for k, v in model.coefs_.items()}
    calls = []

    def interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    original = SequenceRegressor._step
    monkeypatch.setattr(SequenceRegressor, "_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.set_params(warm_start=True, batch_size=5).fit(X, y)
    for name, value in before.items():
        np.testing.assert_array_equal(model.coefs_[name], value, err_msg=name)


def test_network_loss_grad_outside_a_fit_fills_the_host_gradient():
    X, y = _data(n=9)
    from skrnn._data import check_sequences

    seqs = check_sequences(X)
    nets = [
        Network(
            CellSpec("gru", "tanh", True, True),
            input_size=2,
            hidden_size=3,
            num_layers=1,
            bidirectional=True,
            output="last",
            n_outputs=1,
            dtype="float64",
            random_state=0,
        )
        for _ in range(2)
    ]
    w = np.full(9, 1 / 9)
    engines_ = [get_engine("reference"), _mirror_engine(HostCopyMemory())]
    values = [
        net.loss_grad(e, seqs.values, seqs.lengths, y[:, None], w, squared_error, None)
        for net, e in zip(nets, engines_)
    ]
    assert values[0] == values[1]
    np.testing.assert_array_equal(nets[0].grad, nets[1].grad)


# ------------------------------------------------ CUDA graphs, on the CPU
def _layer(cell, act, reset_after, use_bias, T=5, N=4, D=3, H=6, seed=0):
    """A layer's spec and float64 parameters, and a draw of its inputs."""
    rng = np.random.RandomState(seed)
    G = N_GATES[cell]
    # scaled as in test_engine_cpu, so that float32 can be held to 1e-4
    params = {
        "weight_ih": rng.normal(scale=0.6, size=(G * H, D)),
        "weight_hh": rng.normal(scale=0.6 / np.sqrt(H), size=(G * H, H)),
    }
    if use_bias:
        params["bias_ih"] = rng.normal(scale=0.3, size=G * H)
        params["bias_hh"] = rng.normal(scale=0.3, size=G * H)

    def draw(seed):
        r = np.random.RandomState(seed)
        lengths = np.sort(r.randint(1, T + 1, N))[::-1].copy()
        x = r.normal(size=(T, N, D))
        x[np.arange(T)[:, None] >= lengths[None, :]] = 0
        S = state_size(cell, H)  # an LSTM's state is h and c
        return (
            x,
            lengths,
            r.normal(size=(N, S)),
            r.normal(size=(T, N, H)),
            r.normal(size=(N, S)),
        )

    return CellSpec(cell, act, reset_after, use_bias), params, draw


# the reference engine's passes, which every other form of them must equal
REFERENCE = (reference.forward, reference.backward)


def _passes(forward, backward, spec, params, inputs, keep_cache=True, reverse=False):
    x, lengths, h0, d_out, d_h_last = inputs
    out, h, cache = forward(
        spec, params, x, lengths, h0, reverse=reverse, keep_cache=keep_cache
    )
    if cache is None:
        return out, h
    return (out, h) + backward(spec, params, cache, d_out, d_h_last)


def _assert_same(actual, expected):
    for a, e in zip(actual, expected):
        if isinstance(e, dict):
            assert set(a) == set(e)
            for name in e:
                np.testing.assert_array_equal(a[name], e[name], err_msg=name)
        else:
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("keep_cache", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell, act, reset_after", CELLS, ids=lambda v: str(v))
def test_replayed_time_loops_equal_the_reference(
    cell, act, reset_after, use_bias, reverse, keep_cache
):
    spec, params, draw = _layer(cell, act, reset_after, use_bias)
    capture = TapeCapture()
    forward, backward = _graphed_passes(capture=capture)
    passes = 1 if not keep_cache else 2
    results = []
    for call in range(4):
        inputs = draw(call)
        expected = _passes(*REFERENCE, spec, params, inputs, keep_cache, reverse)
        results.append(
            (
                _passes(forward, backward, spec, params, inputs, keep_cache, reverse),
                expected,
            )
        )
        # seen once: eager; twice: captured, then replayed every time
        assert capture.captures == (0 if call == 0 else passes)
        assert capture.launches == passes * max(0, call)
    # each call's results are its own: later replays did not overwrite them
    for actual, expected in results:
        _assert_same(actual, expected)


def test_graphs_stay_within_their_budget():
    spec, params, draw = _layer("gru", "tanh", True, True, T=4, N=3, H=5)

    def check(forward, calls):
        for call in range(calls):
            reverse = bool(call % 2)  # alternating directions: two keys
            x, lengths, h0, _, _ = draw(call)
            _assert_same(
                forward(spec, params, x, lengths, h0, reverse=reverse)[:2],
                reference.forward(spec, params, x, lengths, h0, reverse=reverse)[:2],
            )
        return forward.keywords["loops"]

    ample = check(_graphed_passes()[0], 4)
    assert ample.capture.captures == 2 and len(ample._graphs) == 2
    one = ample._bytes // 2  # the two directions' buffers are the same size
    # no room: never captured, always right
    none = check(_graphed_passes(budget=0)[0], 6)
    assert none.capture.captures == 0 and none._bytes == 0
    # room for one: the directions evict each other, and stay right
    single = check(_graphed_passes(budget=one)[0], 8)
    assert single.capture.captures == 6 and single._bytes == one
    assert len([e for e in single._graphs.values() if e]) == 1


def test_a_failed_capture_warns_once_then_runs_eagerly():
    spec, params, draw = _layer("rnn", "tanh", True, True)

    class Failing(TapeCapture):
        def __call__(self, fn):
            raise RuntimeError("operation not permitted when stream is capturing")

    forward, backward = _graphed_passes(capture=Failing())
    for call in range(4):
        inputs = draw(call)
        expected = _passes(*REFERENCE, spec, params, inputs)
        if call == 1:
            with pytest.warns(RuntimeWarning, match="could not capture a CUDA graph"):
                actual = _passes(forward, backward, spec, params, inputs)
        else:
            actual = _passes(forward, backward, spec, params, inputs)
        _assert_same(actual, expected)
    assert not forward.keywords["loops"].enabled


def test_threads_do_not_share_graphs():
    spec, params, draw = _layer("gru", "tanh", False, True)
    forward, backward = _graphed_passes()
    together = threading.Barrier(2)  # both alive at once: two thread ids
    errors = []

    def run(seed, wait=True):
        try:
            if wait:
                together.wait(timeout=30)
            inputs = draw(seed)
            for _ in range(3):
                _assert_same(
                    _passes(forward, backward, spec, params, inputs),
                    _passes(*REFERENCE, spec, params, inputs),
                )
        except Exception as exc:  # reported below, from the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run(3, wait=False)
    assert not errors, errors
    # forward and backward for each of the three threads
    assert len(forward.keywords["loops"]._graphs) == 2 * 3


# ------------------------------- the fused kernels' source, on the CPU
# The CUDA kernels' source, compiled by the host's C++ compiler with
# threadIdx, blockIdx and blockDim made plain values, run by CudaKernels
# itself (its launcher, argument lists and bias handling) on NumPy arrays,
# one "thread" a call over the whole grid, those past the last element
# included: the kernels' math is tested where no GPU runs the tests below.
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

# What CUDA gives a kernel, for a host build: the thread's index comes from
# a global the launcher below sets before each call.
_HOST_PRELUDE = r"""
#include <cmath>
using std::tanh;
struct skrnn_dim3 { unsigned x; };
extern "C" { unsigned skrnn_thread = 0; }
#define threadIdx (skrnn_dim3{skrnn_thread})
#define blockIdx (skrnn_dim3{0})
#define blockDim (skrnn_dim3{1})
#define __global__
"""


class _HostModule:
    """``cupy.RawModule`` for the host: the source compiled into a shared
    library (once per source) whose kernels run one thread per call."""

    _built = {}

    def __init__(self, code, tmp_dir):
        key = hashlib.sha256(code.encode()).hexdigest()[:16]
        if key not in self._built:
            src, lib = tmp_dir / f"k{key}.cpp", tmp_dir / f"k{key}.so"
            src.write_text(_HOST_PRELUDE + code)
            subprocess.run(
                [CXX, "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)],
                check=True,
                capture_output=True,
            )
            self._built[key] = ctypes.CDLL(str(lib))
        self._lib = self._built[key]

    def get_function(self, name):
        fn = getattr(self._lib, name)
        thread = ctypes.c_uint.in_dll(self._lib, "skrnn_thread")

        def launch(grid, block, args):
            c_args = []
            for a in args:
                if isinstance(a, np.ndarray):
                    # a GPU would misread a strided view as silently
                    assert a.flags.c_contiguous, f"{name}: non-contiguous argument"
                    c_args.append(ctypes.c_void_p(a.ctypes.data))
                else:
                    c_args.append(ctypes.c_longlong(int(a)))
            for i in range(grid[0] * block[0]):
                thread.value = i
                fn(*c_args)

        return launch


class _HostCupy:
    """NumPy, with ``RawModule`` building CUDA source for the host."""

    def __init__(self, tmp_dir):
        self._tmp_dir = tmp_dir

    def RawModule(self, code):
        return _HostModule(code, self._tmp_dir)

    def __getattr__(self, name):
        return getattr(np, name)


class HostKernels(cuda_engine.CudaKernels):
    """:class:`~skrnn._engine.cuda.CudaKernels` with the host's compiler in
    place of NVRTC and NumPy's matmul in place of cuBLAS."""

    def __init__(self, tmp_dir):
        reference.StepKernels.__init__(self, _HostCupy(tmp_dir))
        self._functions = {}

    matmul = reference.StepKernels.matmul


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    if CXX is None:
        pytest.skip("needs a C++ compiler")
    return HostKernels(tmp_path_factory.mktemp("cuda_source"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variable", [False, True], ids=["equal", "variable"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell, act, reset_after", CELLS, ids=lambda v: str(v))
def test_fused_kernels_compiled_for_the_host_match_the_reference(
    host_kernels, cell, act, reset_after, use_bias, reverse, variable, dtype
):
    spec, params, draw = _layer(cell, act, reset_after, use_bias, T=5, N=4, D=2, H=3)
    params = {k: v.astype(dtype) for k, v in params.items()}
    x, lengths, h0, d_out, d_h_last = draw(0)
    if variable:
        lengths[-1] = 0  # and a sequence with no step at all
    else:
        lengths[:] = len(x)
    inputs = (
        x.astype(dtype),
        lengths,
        *(a.astype(dtype) for a in (h0, d_out, d_h_last)),
    )
    host = (
        partial(reference.forward, kernels=host_kernels),
        partial(reference.backward, kernels=host_kernels),
    )
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for keep_cache in (True, False):  # training, then inference
        expected = _passes(*REFERENCE, spec, params, inputs, keep_cache, reverse)
        actual = _passes(*host, spec, params, inputs, keep_cache, reverse)
        for e, a in zip(expected, actual):
            pairs = (
                [(k, e[k], a[k]) for k in e] if isinstance(e, dict) else [("", e, a)]
            )
            for what, e_, a_ in pairs:
                assert a_.dtype == dtype, what
                np.testing.assert_allclose(a_, e_, rtol=tol, atol=tol, err_msg=what)


# ----------------------------------------------------------- clear errors
@pytest.fixture
def fresh_cuda(monkeypatch):
    """Forget a CUDA engine made earlier, so that the next request imports CuPy."""
    monkeypatch.setattr(engines, "_CUDA", None)


def _fake_cupy(get_device_count):
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count)
    )
    return cupy


def _raise(exc):
    def f(*args):
        raise exc

    return f


@pytest.mark.parametrize("Est", [SequenceRegressor, SequenceClassifier])
def test_cuda_without_cupy_says_how_to_install_it(Est, fresh_cuda, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ModuleNotFoundError
    X, y = _data()
    model = Est(device="cuda")
    with pytest.raises(
        CudaUnavailableError, match=r"CuPy is not installed: pip install skrnn\[gpu\]"
    ) as info:
        model.fit(X, _targets(Est, X, y, {}))
    assert "cupy-cuda12x" in str(info.value) and "cupy-cuda13x" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert not hasattr(model, "coefs_")


@pytest.mark.parametrize(
    "count, reason",
    [
        (lambda: 0, "no CUDA device is visible"),
        (
            _raise(
                RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
            ),
            "cudaErrorNoDevice",
        ),
    ],
    ids=["no-device", "no-driver"],
)
def test_cuda_without_a_device_says_so(count, reason, fresh_cuda, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count))
    X, y = _data()
    model = SequenceRegressor(device="cuda")
    with pytest.raises(
        CudaUnavailableError, match="CuPy is installed but found no usable CUDA device"
    ) as info:
        model.fit(X, y)
    assert reason in str(info.value)
    assert not hasattr(model, "coefs_")
    with pytest.raises(CudaUnavailableError, match="no usable CUDA device"):
        model.partial_fit(X, y)


def test_broken_cupy_install_is_told_apart(fresh_cuda, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("libcudart.so.12: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    with pytest.raises(
        CudaUnavailableError, match="installed but could not be imported.*libcudart"
    ):
        get_engine("cuda")


def test_model_fitted_for_cuda_predicts_on_the_cpu_without_one(
    mirror, fresh_cuda, monkeypatch
):
    X, y = _data()
    cpu = _fit(SequenceRegressor, X, y)
    dev = _fit(SequenceRegressor, X, y, device="cuda")
    blob = pickle.dumps(dev)
    monkeypatch.undo()  # the real engines again, and no CuPy:
    monkeypatch.setattr(engines, "_CUDA", None)
    monkeypatch.setitem(sys.modules, "cupy", None)
    loaded = pickle.loads(blob)
    assert loaded.device == "cuda"
    np.testing.assert_array_equal(loaded.predict(X), cpu.predict(X))
    assert loaded.score(X, y) == cpu.score(X, y)


# ------------------------------------------------------ on a real GPU only
@pytest.fixture(scope="module")
def cuda():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        engine = get_engine("cuda")
    except CudaUnavailableError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")
    return cupy, engine


def _close(actual, expected, rtol=1e-4, what=""):
    """Relative to the largest magnitude:
    ||a - e||_inf <= rtol * max(||e||_inf, 1e-3)."""
    actual, expected = (
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
    )
    assert actual.shape == expected.shape, what
    scale = max(np.abs(expected).max(initial=0.0), 1e-3)
    err = np.abs(actual - expected).max(initial=0.0)
    assert err <= rtol * scale, f"{what}: max error {err:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("variable", [False, True], ids=["equal", "variable"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell, act, reset_after", CELLS, ids=lambda v: str(v))
def test_cuda_engine_matches_reference(
    cuda, cell, act, reset_after, use_bias, reverse, variable
):
    cupy, engine = cuda
    T, N, D, H = 9, 13, 3, 29  # N * H > one block of threads
    rng = np.random.RandomState(0)
    G, S = N_GATES[cell], state_size(cell, H)
    spec = CellSpec(cell, act, reset_after, use_bias)
    params = {
        "weight_ih": rng.uniform(-0.5, 0.5, (G * H, D)),
        "weight_hh": rng.uniform(-0.5, 0.5, (G * H, H)),
    }
    if use_bias:
        params["bias_ih"] = rng.uniform(-0.5, 0.5, G * H)
        params["bias_hh"] = rng.uniform(-0.5, 0.5, G * H)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    lengths = (
        np.sort(rng.randint(1, T + 1, N))[::-1].copy() if variable else np.full(N, T)
    )
    x = rng.normal(size=(T, N, D)).astype(np.float32)
    x[np.arange(T)[:, None] >= lengths[None, :]] = 0
    h0 = rng.normal(size=(N, S)).astype(np.float32) * 0.5
    d_out = rng.normal(size=(T, N, H)).astype(np.float32)
    d_h_last = rng.normal(size=(N, S)).astype(np.float32)

    ref = get_engine("reference")
    out, h_last, cache = ref.forward(spec, params, x, lengths, h0, reverse=reverse)
    dx, dh0, grads = ref.backward(spec, params, cache, d_out, d_h_last)

    dev = {k: cupy.asarray(v) for k, v in params.items()}
    g_out, g_h, g_cache = engine.forward(
        spec, dev, cupy.asarray(x), lengths, cupy.asarray(h0), reverse=reverse
    )
    g_dx, g_dh0, g_grads = engine.backward(
        spec, dev, g_cache, cupy.asarray(d_out), cupy.asarray(d_h_last)
    )
    i_out, i_h, none = engine.forward(
        spec,
        dev,
        cupy.asarray(x),
        lengths,
        cupy.asarray(h0),
        reverse=reverse,
        keep_cache=False,
    )
    assert none is None
    host = cupy.asnumpy
    _close(host(g_out), out, what="outputs")
    _close(host(g_h), h_last, what="h_last")
    _close(host(i_out), out, what="inference outputs")
    _close(host(i_h), h_last, what="inference h_last")
    _close(host(g_dx), dx, what="dx")
    _close(host(g_dh0), dh0, what="dh0")
    assert set(g_grads) == set(grads)
    for name in grads:
        _close(host(g_grads[name]), grads[name], what=name)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell, act, reset_after", CELLS, ids=lambda v: str(v))
def test_cuda_graphs_replay_the_time_loops(cuda, cell, act, reset_after, reverse):
    cupy, _ = cuda
    graphs = cuda_engine.StepGraphs(cupy, cuda_engine.CupyCapture(cupy))
    passes = dict(kernels=cuda_engine.CudaKernels(cupy), loops=graphs)
    forward = partial(reference.forward, **passes)
    backward = partial(reference.backward, **passes)
    spec, params, draw = _layer(cell, act, reset_after, True, T=9, N=13, H=29)
    dev = {k: cupy.asarray(v, dtype=np.float32) for k, v in params.items()}
    results = []
    for call in range(4):
        inputs = draw(call)
        expected = _passes(*REFERENCE, spec, params, inputs, reverse=reverse)
        x, lengths, h0, d_out, d_h_last = (
            a if a.dtype.kind == "i" else cupy.asarray(a, dtype=np.float32)
            for a in inputs
        )
        results.append(
            (
                _passes(
                    forward,
                    backward,
                    spec,
                    dev,
                    (x, lengths, h0, d_out, d_h_last),
                    reverse=reverse,
                ),
                expected,
            )
        )
    # captured (a failed capture would have warned, an error here)
    assert graphs.enabled and len(graphs._graphs) == 2 and all(graphs._graphs.values())
    for actual, expected in results:  # each call's own results, right
        for what, a, e in zip(
            ["outputs", "h_last", "dx", "dh0", "grads"], actual, expected
        ):
            for name in e if isinstance(e, dict) else [what]:
                a_, e_ = (a[name], e[name]) if isinstance(e, dict) else (a, e)
                _close(cupy.asnumpy(a_), e_, what=name)


@pytest.mark.parametrize(
    "cell, reset_after",
    [("rnn", True), ("gru", True), ("gru", False), ("lstm", True)],
)
def test_cuda_engine_float64_matches_reference(cuda, cell, reset_after):
    cupy, engine = cuda
    T, N, D, H = 5, 4, 2, 3
    rng = np.random.RandomState(1)
    G = N_GATES[cell]
    spec = CellSpec(cell, "tanh", reset_after, True)
    params = {
        "weight_ih": rng.normal(size=(G * H, D)),
        "weight_hh": rng.normal(size=(G * H, H)),
        "bias_ih": rng.normal(size=G * H),
        "bias_hh": rng.normal(size=G * H),
    }
    lengths = np.array([5, 4, 2, 1])
    x = rng.normal(size=(T, N, D))
    h0 = np.zeros((N, state_size(cell, H)))
    d_out = rng.normal(size=(T, N, H))
    ref = get_engine("reference")
    out, h_last, cache = ref.forward(spec, params, x, lengths, h0)
    dx, dh0, grads = ref.backward(spec, params, cache, d_out)
    dev = {k: cupy.asarray(v) for k, v in params.items()}
    g_out, g_h, g_cache = engine.forward(
        spec, dev, cupy.asarray(x), lengths, cupy.asarray(h0)
    )
    g_dx, g_dh0, g_grads = engine.backward(spec, dev, g_cache, cupy.asarray(d_out))
    for a, b in [(g_out, out), (g_h, h_last), (g_dx, dx), (g_dh0, dh0)] + [
        (g_grads[k], grads[k]) for k in grads
    ]:
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-10, atol=1e-12)


GPU_CONFIGS = [
    dict(cell="gru"),
    dict(cell="rnn"),
    dict(cell="gru", reset_after=False, use_bias=False, solver="sgd"),
    dict(cell="rnn", activation="relu", bidirectional=True, solver="rprop"),
    dict(cell="gru", output="sequence", num_layers=2),
    dict(cell="gru", bidirectional=True, output="sequence"),
    dict(cell="lstm", num_layers=2, bidirectional=True),
]


@pytest.mark.parametrize(
    "params", GPU_CONFIGS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items())
)
@pytest.mark.parametrize("Est", [SequenceRegressor, SequenceClassifier])
def test_fit_on_gpu_equals_fit_on_cpu_after_one_epoch(cuda, Est, params):
    X, y = _data(n=60, T=8, D=3)
    y = _targets(Est, X, y, params)
    models = []
    for device in ("cpu", "cuda"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = Est(
                hidden_size=16,
                max_iter=1,
                batch_size=16,
                random_state=0,
                learning_rate_init=1e-2,
                device=device,
                **params,
            ).fit(X, y)
        models.append(model)
    cpu, gpu = models
    for name, value in cpu.coefs_.items():
        assert type(gpu.coefs_[name]) is np.ndarray
        _close(gpu.coefs_[name], value, what=name)
    np.testing.assert_allclose(gpu.loss_, cpu.loss_, rtol=1e-4)
    pred = gpu.predict_proba(X) if Est is SequenceClassifier else gpu.predict(X)
    ref = cpu.predict_proba(X) if Est is SequenceClassifier else cpu.predict(X)
    if isinstance(ref, list):
        pred, ref = np.concatenate(pred), np.concatenate(ref)
    _close(np.nan_to_num(pred), np.nan_to_num(ref), what="predictions")


def test_gpu_fit_with_data_per_batch_equals_data_on_device(cuda, monkeypatch):
    X, y = _data(n=50, T=7, D=2)
    on_device = _fit(SequenceRegressor, X, y, device="cuda")
    monkeypatch.setattr(skrnn._device, "DEVICE_DATA_FRACTION", 0.0)
    per_batch = _fit(SequenceRegressor, X, y, device="cuda")
    for name, value in on_device.coefs_.items():
        _close(per_batch.coefs_[name], value, rtol=1e-6, what=name)


def test_gpu_model_writes_pickles_and_predicts_without_cupy(cuda, tmp_path):
    X, y = _data()
    model = _fit(SequenceRegressor, X, y, device="cuda")
    assert all(type(v) is np.ndarray for v in model.coefs_.values())
    before = model.predict(X)
    model.coefs_["head.bias"][:] += 1.0  # writes change what predict computes
    np.testing.assert_allclose(model.predict(X), before + 1.0, rtol=1e-5)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    np.save(tmp_path / "X.npy", X)
    script = (
        "import sys, pickle, numpy as np; sys.modules['cupy'] = None; "
        f"m = pickle.loads(open({str(path)!r}, 'rb').read()); "
        f"X = np.load({str(tmp_path / 'X.npy')!r}); "
        f"np.save({str(tmp_path / 'p.npy')!r}, m.predict(X))"
    )
    # the child imports the skrnn under test (installed, or a checkout built in place)
    skrnn_root = str(Path(skrnn._base.__file__).resolve().parents[1])
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=skrnn_root),
    )
    _close(np.load(tmp_path / "p.npy"), before + 1.0, what="predictions without CuPy")
