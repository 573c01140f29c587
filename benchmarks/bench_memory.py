"""Peak memory of training and inference against the activation storage they need.

For each shape, a fresh process fits a model for one epoch and predicts
once; tracemalloc (NumPy reports its data buffers to it) gives the peak of
what each call allocated above what the process held before it (the data
included). That peak is set beside the theoretical storage:

- training, per step of a mini-batch: what every layer and direction holds
  over one BPTT window (all T steps without ``bptt_steps``) at the end of
  its forward pass and during its backward pass:
  ``B * W * H * c * itemsize`` per layer and direction, where B is the
  batch size, W the window and ``c`` the number of H-wide arrays per step:
  2 for the RNN (its states, which are its outputs, and the backward pass's
  gate gradients), 5 for the GRU (its states, the n-term and the 3 gates,
  over which the backward pass writes its gradients);
- inference: one ``INFERENCE_WINDOW`` of outputs per layer,
  ``N * H * window * itemsize`` (times 2 directions when bidirectional),
  rather than ``N * T * H``.

The "input" column is the size of X: training also holds a copy of the
mini-batch and its time-major transpose, inference a time-major copy of X.

Usage::

    python benchmarks/bench_memory.py            # every shape
    python benchmarks/bench_memory.py --quick    # the small shapes only
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHAPES = [  # cell, N, T, D, H, batch, bptt_steps, layers
    ("rnn", 64, 200, 4, 32, 64, None, 1),
    ("gru", 64, 200, 4, 32, 64, None, 1),
    ("gru", 64, 2000, 4, 32, 64, None, 1),
    ("gru", 64, 2000, 4, 32, 64, 50, 1),
    ("gru", 256, 100, 8, 64, 64, None, 2),
    ("gru", 16, 20000, 1, 16, 16, 100, 1),
    ("gru", 1000, 300, 8, 128, 200, None, 1),
]
QUICK = SHAPES[:4]

_CHILD = r"""
import json, sys, tracemalloc, warnings
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from skrnn import SequenceRegressor
from skrnn._network import INFERENCE_WINDOW

cell, N, T, D, H, batch, bptt, layers = json.loads(sys.argv[1])
rng = np.random.RandomState(0)
X = rng.normal(size=(N, T, D))
y = rng.normal(size=N)
warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch on purpose
model = SequenceRegressor(cell=cell, hidden_size=H, num_layers=layers,
                          batch_size=batch, bptt_steps=bptt, max_iter=1,
                          random_state=0)
model.fit(X[:2, :3], y[:2])  # warm-up: lazy imports and caches
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
model.fit(X, y)
fit_peak = tracemalloc.get_traced_memory()[1] - base
tracemalloc.reset_peak()
base = tracemalloc.get_traced_memory()[0]
model.predict(X)
predict_peak = tracemalloc.get_traced_memory()[1] - base
print(json.dumps({"fit": fit_peak, "predict": predict_peak, "input": X.nbytes,
                  "window": INFERENCE_WINDOW}))
"""


def theory(cell, N, T, D, H, batch, bptt, layers, window, itemsize=8):
    """(training, inference) activation storage in bytes."""
    cached = 2 if cell == "rnn" else 5
    B, W = min(batch, N), min(bptt or T, T)
    train = B * W * H * cached * itemsize * layers
    infer = N * H * min(window, T) * itemsize * layers
    return train, infer


def measure(shape):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(shape)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    args = parser.parse_args(argv)
    mib = 2.0**20
    header = (
        f"{'cell':>4} {'N':>5} {'T':>6} {'D':>3} {'H':>4} {'B':>4} {'bptt':>5} "
        f"{'L':>2} | {'input':>8} | {'fit':>8} {'theory':>8} {'ratio':>6} | "
        f"{'predict':>8} {'theory':>8} {'ratio':>6}"
    )
    print("peak allocations above the process's baseline, MiB (tracemalloc)")
    print(header)
    print("-" * len(header))
    for shape in QUICK if args.quick else SHAPES:
        r = measure(shape)
        t_fit, t_pred = theory(*shape, r["window"])
        cell, N, T, D, H, batch, bptt, layers = shape
        print(
            f"{cell:>4} {N:>5} {T:>6} {D:>3} {H:>4} {batch:>4} {str(bptt):>5} "
            f"{layers:>2} | {r['input'] / mib:8.2f} | {r['fit'] / mib:8.2f} "
            f"{t_fit / mib:8.2f} {r['fit'] / t_fit:6.2f} | "
            f"{r['predict'] / mib:8.2f} {t_pred / mib:8.2f} "
            f"{r['predict'] / t_pred:6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
