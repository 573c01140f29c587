"""The cost of one ``partial_fit`` call, for source trees side by side.

Each measurement runs in a fresh process with one tree's ``skrnn`` first on
``sys.path``: a ``SequenceRegressor`` (float32, Adam) takes one call to set
up, then the median of 15 timed calls on the same data is reported, in ms.
The trees alternate within each repeat, so that a machine's drift hits them
alike. Run it from outside the trees (a tree's own folder on ``sys.path``
would win) with the compiled kernels built in each tree.

Usage::

    python benchmarks/bench_partial_fit.py --trees /path/old /path/new
    python benchmarks/bench_partial_fit.py --trees . --shape 200 20 1 16 200
"""

import argparse
import os
import subprocess
import sys

_CHILD = """
import sys, time, warnings
import numpy as np
from skrnn import SequenceRegressor
N, T, D, H, batch = map(int, sys.argv[2:7])
rng = np.random.RandomState(0)
X = rng.standard_normal((N, T, D)).astype(np.float32)
y = X[:, :, 0].sum(axis=1) / np.sqrt(T)
model = SequenceRegressor(cell=sys.argv[1], hidden_size=H, batch_size=batch,
                          random_state=0)
warnings.simplefilter("ignore")
model.partial_fit(X, y)
times = []
for _ in range(15):
    start = time.perf_counter()
    model.partial_fit(X, y)
    times.append(time.perf_counter() - start)
print(np.median(times) * 1e3)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=["."])
    parser.add_argument("--cell", default="gru")
    parser.add_argument(
        "--shape",
        nargs=5,
        type=int,
        default=[200, 20, 1, 16, 200],
        metavar=("N", "T", "D", "H", "BATCH"),
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = [os.path.abspath(t) for t in args.trees]
    runs = {tree: [] for tree in trees}
    for _ in range(args.repeats):
        for tree in trees:
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, args.cell, *map(str, args.shape)],
                env={**os.environ, "PYTHONPATH": tree},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[tree].append(float(out.stdout.strip().splitlines()[-1]))
    print(f"{args.cell}, N, T, D, H, batch = {', '.join(map(str, args.shape))}")
    for tree, ms in runs.items():
        print(f"{tree}: " + " ".join(f"{v:.2f}" for v in ms) + " ms")


if __name__ == "__main__":
    main()
