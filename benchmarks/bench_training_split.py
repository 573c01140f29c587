"""Training batches in two shares on two threads, against one share.

The compiled epoch computes a batch in two shares, on two threads, where
each share has ``skrnn._network.EPOCH_SHARE_WORK`` multiply-adds of
forward work or more (``Network.training_shares``). Here that threshold is
set aside in turn (1: split every batch of two shares' sequences; beyond
any size: never) on the same data, the two alternating in each round; each
time is the median of ``--calls`` warm ``partial_fit`` calls (one epoch
each, N = 1000, D = ``--features``, float32), and the printed ratio is the
median over rounds of split ÷ one share, with each round's ratio after it.
With ``--per-batch``, the same for the path that makes one compiled call
per share and batch (the compiled epoch set aside, as where an optimiser
has no compiled step), whose threshold is ``TRAINING_SHARE_WORK``.

Usage::

    python benchmarks/bench_training_split.py
    python benchmarks/bench_training_split.py --cells gru --hidden 8 16 --steps 10 20
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_cpu import make_data  # noqa: E402

from skrnn import SequenceRegressor, _network  # noqa: E402

NEVER = 1 << 62


def epoch_seconds(cell, H, T, D, batch, threshold, calls, per_batch):
    """Median seconds of a warm ``partial_fit`` with the threshold set, and
    the multiply-adds of a share's forward pass."""
    name = "TRAINING_SHARE_WORK" if per_batch else "EPOCH_SHARE_WORK"
    saved = getattr(_network, name)
    setattr(_network, name, threshold)
    try:
        X, y = make_data(1000, T, D)
        model = SequenceRegressor(
            cell=cell, hidden_size=H, batch_size=batch, dtype="float32", random_state=0
        )
        if per_batch:
            model._compiled_epoch = lambda run, train, peak: (False, None)
        model.partial_fit(X, y)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            model.partial_fit(X, y)
            times.append(time.perf_counter() - start)
    finally:
        setattr(_network, name, saved)
    return float(np.median(times)), model._network.forward_work(batch // 2, T)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["rnn", "gru", "lstm"])
    parser.add_argument("--hidden", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--features", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--per-batch", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    D = args.features
    path = "one call per share and batch" if args.per_batch else "the compiled epoch"
    print(
        f"# {time.strftime('%Y-%m-%d')}; {path}; N = 1000, D = {D}, batch {args.batch}"
    )
    print("| cell | H | T | share's forward multiply-adds | split ÷ one share |")
    print("|---|---|---|---|---|")
    for cell in args.cells:
        for H in args.hidden:
            for T in args.steps:
                ratios = []
                for _ in range(args.rounds):
                    one, work = epoch_seconds(
                        cell, H, T, D, args.batch, NEVER, args.calls, args.per_batch
                    )
                    split, _ = epoch_seconds(
                        cell, H, T, D, args.batch, 1, args.calls, args.per_batch
                    )
                    ratios.append(split / one)
                each = ", ".join(f"{r:.2f}" for r in ratios)
                print(
                    f"| {cell} | {H} | {T} | {work / 1e6:.2f} M "
                    f"| {np.median(ratios):.2f} ({each}) |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
