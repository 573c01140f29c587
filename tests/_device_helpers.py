"""What the tests of device="cuda" share: a "device" memory that counts its
copies, CUDA's graph capture and step kernels played on NumPy, the mirror
engine (the device code path computed with NumPy), the data and fits of the
estimators' tests, and one layer's parameters and passes for the engines'."""

import threading
import types
import warnings
from functools import partial

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceClassifier
from skrnn._cells import N_GATES, CellSpec, state_size
from skrnn._engine import Engine, HostCopyMemory, reference
from skrnn._engine import cuda as cuda_engine


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
