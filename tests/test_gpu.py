"""device="cuda": its clear errors, and CPU/GPU equality on a real GPU.

- The errors of ``device="cuda"`` without CuPy or without a device (CuPy's
  import made to fail, or a stand-in CuPy that sees no device).
- On a machine with CuPy and a CUDA device only (skipped elsewhere): the
  fused kernels against the reference engine over the configuration grid,
  and estimators fitted on the GPU against the same fitted on the CPU.

The device code path, the graph replays and the kernels' source are tested
on the CPU in test_device_path.py, test_cuda_graphs.py and
test_cuda_source.py.
"""

import os
import pickle
import subprocess
import sys
import types
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from _device_helpers import CELLS, REFERENCE, _data, _fit, _layer, _passes, _targets
from sklearn.exceptions import ConvergenceWarning

import skrnn._base
import skrnn._device
import skrnn._engine as engines
from skrnn import SequenceClassifier, SequenceRegressor
from skrnn._cells import N_GATES, CellSpec, state_size
from skrnn._engine import CudaUnavailableError, get_engine, reference
from skrnn._engine import cuda as cuda_engine


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
    "cell, reset_after", [("rnn", True), ("gru", True), ("gru", False), ("lstm", True)]
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
