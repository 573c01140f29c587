"""One sequence on two threads: ``predict`` of a lone sequence with its steps
split between two threads, against the same call on one thread.

The compiled engine splits each step's units between two threads where a
float32 layer's recurrent weights take ``cpu.LONE_ROW_SPLIT_BYTES`` or more
and two workers are at hand (see ``skrnn/_engine/_recurrent.pyx``,
``lone_row_forward``). Here the threshold is set aside in turn (1: split at
every size; beyond any size: never) on the same fitted model, alternating
the two in rounds, so that a machine's drift hits both alike; each round
times the best of a few calls, and the figures are the medians over rounds.
The predictions of both are checked equal, bit for bit.

Usage::

    python benchmarks/bench_lone_row.py
    python benchmarks/bench_lone_row.py --sizes lstm:256 gru:512 --rounds 9
"""

import argparse
import platform
import time
import timeit
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceRegressor
from skrnn._engine import cpu

SIZES = ["lstm:256", "gru:384", "gru:512", "lstm:512", "rnn:512", "rnn:1024"]
SPLIT, ONE = 1, 1 << 62  # thresholds: split at every size, never


def measure(cell, H, T, D, rounds):
    """Median seconds of ``predict`` on one sequence, split and on one thread."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, T, D)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = SequenceRegressor(
            cell=cell, hidden_size=H, max_iter=1, dtype="float32", random_state=0
        ).fit(X, rng.standard_normal(8))
    one = X[:1]
    times = {SPLIT: [], ONE: []}
    predictions = {}
    saved = cpu.LONE_ROW_SPLIT_BYTES
    try:
        for _ in range(rounds):
            for threshold in times:
                cpu.LONE_ROW_SPLIT_BYTES = threshold
                predictions[threshold] = model.predict(one)
                calls = timeit.repeat(lambda: model.predict(one), number=5, repeat=3)
                times[threshold].append(min(calls) / 5)
    finally:
        cpu.LONE_ROW_SPLIT_BYTES = saved
    if not np.array_equal(predictions[SPLIT], predictions[ONE]):
        raise AssertionError("the split prediction differs from one thread's")
    return float(np.median(times[SPLIT])), float(np.median(times[ONE]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="cell:H")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}; T = {args.steps}, "
        f"D = {args.features}, medians of {args.rounds} alternating rounds"
    )
    print("| cell | H | two threads µs | one thread µs | two ÷ one |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        cell, H = size.split(":")
        split, one = measure(cell, int(H), args.steps, args.features, args.rounds)
        print(
            f"| {cell} | {H} | {1e6 * split:.0f} | {1e6 * one:.0f} | "
            f"{split / one:.2f} |"
        )


if __name__ == "__main__":
    main()
