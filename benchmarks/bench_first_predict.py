"""The first prediction of all N sequences in a process, against later ones.

``bench_cpu.py`` times one prediction of the whole data in a fresh process,
after an epoch and a prediction of one batch: the first that splits the
sequences between threads, which starts skrnn's worker thread. Here, each
in a fresh process (``--runs`` of each, medians), milliseconds of the first
three predictions of N sequences, as ``bench_cpu.py`` reaches them
(``first``), with the worker thread started beforehand (``thread``), and
after a prediction of N / 2 sequences has used both threads (``warm``).

Usage::

    python benchmarks/bench_first_predict.py
    python benchmarks/bench_first_predict.py --cell lstm --shape 2000 50 8 32
"""

import argparse
import json
import subprocess
import sys

_CHILD = """
import json, sys, time, warnings
import numpy as np
from skrnn import SequenceRegressor, _threads
cell, mode = sys.argv[1], sys.argv[2]
N, T, D, H = map(int, sys.argv[3:7])
rng = np.random.RandomState(0)
X = rng.standard_normal((N, T, D)).astype(np.float32)
y = X[:, :, 0].sum(axis=1)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = SequenceRegressor(cell=cell, hidden_size=H, batch_size=64, max_iter=1,
                              dtype="float32", random_state=0).fit(X[:128], y[:128])
model.predict(X[:64])
if mode == "thread":
    _threads._pool().submit(lambda: None).result()
elif mode == "warm":
    model.predict(X[: N // 2])
times = []
for _ in range(3):
    start = time.perf_counter()
    model.predict(X)
    times.append((time.perf_counter() - start) * 1e3)
print(json.dumps(times))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--shape", type=int, nargs=4, default=[1000, 20, 1, 16])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    modes = ["first", "thread", "warm"]
    runs = {mode: [] for mode in modes}
    for _ in range(args.runs):
        for mode in modes:  # alternating, so that drift hits all alike
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, args.cell, mode]
                + [str(v) for v in args.shape],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[mode].append(json.loads(out.stdout))
    print(f"# {args.cell}, N, T, D, H = {', '.join(map(str, args.shape))}; ms")
    print("| before the first call | 1st call | 2nd | 3rd |")
    print("|---|---|---|---|")
    for mode in modes:
        medians = [sorted(c)[len(c) // 2] for c in zip(*runs[mode])]
        print(f"| {mode} | " + " | ".join(f"{m:.2f}" for m in medians) + " |")


if __name__ == "__main__":
    main()
