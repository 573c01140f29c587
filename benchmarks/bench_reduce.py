"""A weight gradient of a few input features: BLAS against the reduction
kernel on the transposed product.

A layer's input-weight gradient ``dW_ih = dG.T @ x`` sums over a pass's rows
a (rows, G*H) by (rows, D) product. The reduction kernel of
``skrnn/_engine/_packed.h`` needs the second operand's columns in whole
panels of 16; with D no multiple of 16 the backward pass sums
``dW_ih.T = x.T @ dG`` instead (``_gemm_reduce`` in
``skrnn/_engine/_recurrent.pyx``) where D > 4. This times both on one
thread, best of five rounds, float32, for the D and G*H given: microseconds
as ``BLAS / kernel``, and checks that they agree.

Usage::

    python benchmarks/bench_reduce.py
    python benchmarks/bench_reduce.py --rows 1280 --widths 48 512 --features 1 8
"""

import argparse
import platform
import time
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

from skrnn._engine import _recurrent


def times(rows, GH, D, rng):
    """Microseconds of dG.T @ x through BLAS and of (x.T @ dG).T through
    the reduction kernel."""
    dg = rng.standard_normal((rows, GH)).astype(np.float32)
    x = rng.standard_normal((rows, D)).astype(np.float32)
    c = np.empty((GH, D), np.float32)
    ct = np.empty((D, GH), np.float32)

    def blas():
        _recurrent._gemm(b"T", b"N", 1.0, dg, x, 0.0, c)

    def kernel():
        _recurrent._reduce(x, dg, False, ct)

    out = [
        min(timeit.repeat(f, number=100, repeat=5)) / 100 * 1e6 for f in (blas, kernel)
    ]
    np.testing.assert_allclose(c, ct.T, rtol=1e-4, atol=1e-3)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1600)
    parser.add_argument("--widths", type=int, nargs="+", default=[48, 64, 128, 512])
    parser.add_argument(
        "--features", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 20]
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, one thread, "
        f"{args.rows} rows; µs as BLAS / kernel"
    )
    print("| G*H | " + " | ".join(f"D = {d}" for d in args.features) + " |")
    print("|---" * (len(args.features) + 1) + "|")
    with threadpool_limits(1):
        for GH in args.widths:
            cells = [
                "{:.0f} / {:.0f}".format(*times(args.rows, GH, D, rng))
                for D in args.features
            ]
            print(f"| {GH} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
