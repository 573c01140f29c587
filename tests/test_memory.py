"""Long sequences and memory: truncated BPTT keeps training memory flat in T,
prediction's memory is bounded whatever N and T, and repeated fits do not
leak.

Every measurement runs in a fresh subprocess, so that what this test session
has allocated (and freed into the allocator's pools) does not blur it.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import skrnn

# The children import the skrnn these tests import: the installed one, or
# the source tree of a development checkout built in place.
SKRNN_ROOT = Path(skrnn.__file__).resolve().parents[1]

# The training's own allocations in one epoch, measured with tracemalloc
# (NumPy reports its data buffers to it). The baseline is taken after the
# imports, the data and a warm-up fit, so it contains X itself.
#
# What remains necessarily grows with T: copies of the *input* (N*T*D
# values), not activations. During a step the trainer holds two: the
# mini-batch gathered from X (``values[idx]`` in ``_step``) and its
# time-major transpose (``_prepare``). They are subtracted; the rest —
# activation caches of one bptt window, gradients, head — must not grow
# with T.
_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys, tracemalloc, warnings
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from skrnn import SequenceRegressor

    T = int(sys.argv[1])
    N, D, H = 4, 1, 32
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N, T, D))
    y = rng.normal(size=N)
    warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=1: one epoch
    result = {"input": X.nbytes}
    for arg in sys.argv[2:]:
        bptt = None if arg == "none" else int(arg)
        model = SequenceRegressor(hidden_size=H, max_iter=1, bptt_steps=bptt,
                                  random_state=0, dtype="float64")
        model.fit(X[:, :60], y)  # warm-up: lazy imports, cached constants
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        model.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        result[arg] = peak - base - 2 * X.nbytes
    print(json.dumps(result))
    """
)


# Prediction's own allocations (tracemalloc, as above) for N sequences of T
# steps, H = 64, float64, one thread: whole-sequence activations would be
# N * T * H * 8 bytes (~600 MB here); inference windows hold them to about
# INFERENCE_BYTES (a window's inputs and outputs; the compiled engine holds
# one step's gates at least, and the top layer read at the last steps keeps
# no outputs), plus what validation copies of the input (at most two copies
# of X).
_PREDICT_SCRIPT = textwrap.dedent(
    """
    import json, sys, tracemalloc, warnings
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from skrnn import SequenceRegressor

    N, T = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.RandomState(0)
    warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=1
    model = SequenceRegressor(hidden_size=64, max_iter=1, dtype="float64",
                              random_state=0)
    model.fit(rng.normal(size=(8, 5, 1)), np.ones(8))
    X = rng.normal(size=(N, T, 1))
    model.predict(X[:2])  # warm-up
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model.predict(X)
    peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"peak": peak - base, "input": X.nbytes,
                      "activations": N * T * 64 * 8}))
    """
)


def _start(script, *args):
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=SKRNN_ROOT,
        env={
            "PYTHONPATH": str(SKRNN_ROOT),
            "PATH": "/usr/bin:/bin",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        },
    )


def _result(proc):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def measurements():
    """The measuring processes, started at once (they are independent
    and mostly wait on imports) and read when a test needs them."""
    procs = {
        "short": _start(_PEAK_SCRIPT, 2_000, 50, "none"),
        "long": _start(_PEAK_SCRIPT, 10_000, 50),
        "leak": _start(_LEAK_SCRIPT),
        "predict": _start(_PREDICT_SCRIPT, 4_000, 300),
        "predict_many": _start(_PREDICT_SCRIPT, 40_000, 10),
    }
    results = {}

    def get(name):
        if name not in results:
            results[name] = _result(procs[name])
        return results[name]

    yield get
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_truncated_bptt_memory_does_not_grow_with_T(measurements):
    short, long = measurements("short"), measurements("long")
    assert short["50"] > 0
    growth = (long["50"] - short["50"]) / short["50"]
    assert abs(growth) <= 0.10, (short, long)


def test_measure_sees_full_bptt_storage(measurements):
    """The same measure with full BPTT grows with T (every step's gates and
    states are cached): it is sensitive enough to catch windows that are
    not applied."""
    short = measurements("short")
    # GRU caches its states (outputs and h_prev in one array), the n-term
    # (H each) and the gates (3H) per step: 5 * N * T * H * 8 bytes; its
    # backward pass writes its gradients over the last two, so that no
    # sixth array of that size is needed
    unit = 4 * 2_000 * 32 * 8
    assert 5 * unit <= short["none"] < 6 * unit
    assert short["none"] > 5 * short["50"]


@pytest.mark.parametrize(
    "case, saving", [("predict", 20), ("predict_many", 5)], ids=["long", "many"]
)
def test_predict_memory_is_bounded_whatever_n_and_t(measurements, case, saving):
    """Long sequences (4,000 of 300 steps) and many short ones (40,000 of
    10 steps, where windows of steps alone would not bound anything)."""
    from skrnn._network import INFERENCE_BYTES

    result = measurements(case)
    assert result["peak"] <= 2 * INFERENCE_BYTES + 2 * result["input"], result
    assert result["peak"] * saving < result["activations"], result


# Resident memory after fit 10 and after fit 100 of the same small model.
# Fits 1-10 warm everything up (imports done, allocator pools and arenas
# sized, lru caches of cpu.py filled); a leak in the extension or in the
# Python around it of even 20 kB per fit would show as ~1.8 MiB more over 90
# fits. The slack (1 MiB) covers glibc's malloc keeping freed pages mapped
# and arena fragmentation, which move RSS by a few hundred kB without any
# leak; a kernel leak of one (T, N, H) float64 array per call (here 2.4 kB x
# ~60 forward/backward calls per fit) would exceed it many times over.
_LEAK_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from skrnn import SequenceClassifier, SequenceRegressor

    def rss():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

    rng = np.random.RandomState(0)
    X = [rng.normal(size=(t, 2)) for t in rng.randint(5, 25, size=30)]
    y = np.array([x.sum() for x in X])
    labels = np.where(y > 0, "pos", "neg")
    warnings.simplefilter("ignore", ConvergenceWarning)
    sizes = {}
    for i in range(1, 101):
        SequenceRegressor(cell="gru", hidden_size=10, num_layers=2, max_iter=2,
                          batch_size=10, bptt_steps=7,
                          random_state=i).fit(X, y).predict(X)
        SequenceClassifier(cell="rnn", hidden_size=10, bidirectional=True,
                           reset_after=False, max_iter=2,
                           random_state=i).fit(X, labels).predict_proba(X)
        if i in (10, 100):
            sizes[i] = rss()
    print(json.dumps(sizes))
    """
)


def test_repeated_fits_do_not_grow_resident_memory(measurements):
    sizes = measurements("leak")
    growth = sizes["100"] - sizes["10"]
    assert growth <= 1 * 2**20, f"RSS grew by {growth / 2**20:.2f} MiB over 90 fits"
