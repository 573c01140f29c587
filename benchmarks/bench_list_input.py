"""Time ``predict`` on a list of sequences against the same sequences stacked.

Usage::

    python benchmarks/bench_list_input.py [--repeat 5] [--hidden 32]

A GRU regressor (H = ``--hidden``, float32) predicts N sequences of D = 2
features, for N from 10 to 200,000, given two ways: as a list of arrays
and as one 3-D array. Two cases: every sequence 10 steps long (the array
is plain), and lengths drawn from 5 to 15 (the array is NaN-padded, as the
estimators read it). It prints the best of ``--repeat`` runs of each and
the ratio list ÷ array, which includes everything a list costs more:
validating each sequence and packing them into one padded batch.
"""

import argparse
import warnings

import numpy as np
from _timing import best_time
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info

from skrnn import SequenceRegressor

SIZES = [10, 100, 1_000, 10_000, 50_000, 200_000]


def _data(n, ragged, rng):
    """(list of (T_i, 2) arrays, the same stacked with NaN padding)."""
    lengths = rng.randint(5, 16, size=n) if ragged else np.full(n, 10)
    stacked = rng.normal(size=(n, lengths.max(), 2)).astype(np.float32)
    stacked[np.arange(lengths.max())[None, :] >= lengths[:, None]] = np.nan
    return [x[:L] for x, L in zip(stacked, lengths)], stacked


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    X_fit = rng.normal(size=(200, 10, 2)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = SequenceRegressor(hidden_size=args.hidden, max_iter=2, random_state=0)
        model.fit(X_fit, X_fit.sum(axis=(1, 2)))
    blas = ", ".join(
        f"{i['internal_api']} {i['num_threads']} threads"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    )
    print(f"GRU, H={args.hidden}, D=2, float32; BLAS: {blas}; best of {args.repeat}")
    print(f"{'lengths':>8} {'N':>8} {'array s':>9} {'list s':>9} {'list/array':>10}")
    for ragged in (False, True):
        for n in SIZES:
            as_list, as_array = _data(n, ragged, rng)
            t_array = best_time(lambda: model.predict(as_array), args.repeat)
            t_list = best_time(lambda: model.predict(as_list), args.repeat)
            label = "5-15" if ragged else "10"
            ratio = t_list / t_array
            print(f"{label:>8} {n:>8} {t_array:9.5f} {t_list:9.5f} {ratio:10.2f}")


if __name__ == "__main__":
    main()
