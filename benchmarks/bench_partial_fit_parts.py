"""Where a warm ``partial_fit`` call's time goes at a small shape.

One epoch per call, N, T, D, H = 1000, 20, 1, 16, batch 64, float32 (the
first shape of ``bench_cpu.py``): timers around the compiled epoch
(``skrnn._engine._batch.epoch``), the layout of the batches' rooms
(``skrnn._engine.batch._room``), the check of the call's last update
(``_last_update_sound``) and the whole call's ``_fit``; the rest of the call
is its own Python (validation, the optimiser's snapshot, the batches'
indices and weights). Microseconds per call, averaged over ``--calls`` warm
calls. ``bench_partial_fit.py`` compares whole calls between source trees.

Usage::

    python benchmarks/bench_partial_fit_parts.py
    python benchmarks/bench_partial_fit_parts.py --cells rnn --calls 1000
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_cpu import make_data  # noqa: E402


def parts(cell, calls):
    """Microseconds per call of each part, and of the whole ``_fit``."""
    from skrnn import SequenceRegressor, _base
    from skrnn._engine import _batch, batch

    totals = {}
    patched = [
        (_batch, "epoch", "compiled epoch"),
        (batch, "_room", "rooms"),
        (_base.BaseSequenceEstimator, "_last_update_sound", "last-update check"),
        (_base.BaseSequenceEstimator, "_fit", "whole call"),
    ]
    real = {}

    def timed(fn, key):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

        return run

    X, y = make_data(1000, 20, 1)
    model = SequenceRegressor(
        cell=cell, hidden_size=16, batch_size=64, dtype="float32", random_state=0
    )
    model.partial_fit(X[:128], y[:128])  # imports, first-call costs
    for owner, name, key in patched:
        real[(owner, name)] = getattr(owner, name)
        setattr(owner, name, timed(real[(owner, name)], key))
    try:
        for _ in range(calls):
            model.partial_fit(X, y)
    finally:
        for (owner, name), fn in real.items():
            setattr(owner, name, fn)
    return {key: 1e6 * value / calls for key, value in totals.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["rnn", "gru", "lstm"])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    keys = ["whole call", "compiled epoch", "last-update check", "rooms"]
    print("| cell | " + " | ".join(f"{k} µs" for k in keys) + " | the rest µs |")
    print("|---" * (len(keys) + 2) + "|")
    for cell in args.cells:
        t = parts(cell, args.calls)
        rest = t["whole call"] - sum(t[k] for k in keys[1:])
        print(
            f"| {cell} | "
            + " | ".join(f"{t[k]:.0f}" for k in keys)
            + f" | {rest:.0f} |"
        )


if __name__ == "__main__":
    main()
