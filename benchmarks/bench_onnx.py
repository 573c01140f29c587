"""Prediction time: a model exported to ONNX in onnxruntime against skrnn's own.

A regressor (one recurrent layer + a linear head, float32) is fitted for one
epoch on N, T, D = 2000, 50, 8 with H = 32, exported with
``skrnn.onnx.to_onnx``, and both predict one sequence and all 2000; each
figure is the best of 20 calls after a warm-up. Each implementation runs in
a fresh process with the same thread count (onnxruntime's intra-op threads,
skrnn's BLAS and share threads), the two alternating within each of 3
repeats; the figures are medians.

Usage::

    python benchmarks/bench_onnx.py                  # GRU
    python benchmarks/bench_onnx.py --cells gru lstm rnn --threads 2
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import timeit

N, T, D, H = 2000, 50, 8, 32


def _limit_threads(n):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def measure_child(impl, cell, threads):
    """Seconds to predict one sequence and all N (best of 20 each)."""
    import warnings

    import numpy as np

    from skrnn import SequenceRegressor

    rng = np.random.RandomState(0)
    X = rng.standard_normal((N, T, D)).astype(np.float32)
    y = X[:, :, 0].sum(axis=1) / np.sqrt(T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SequenceRegressor(
            cell=cell, hidden_size=H, max_iter=1, random_state=0
        ).fit(X, y)
    if impl == "onnxruntime":
        import onnxruntime as ort

        from skrnn.onnx import to_onnx

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            to_onnx(model, X[:1]).SerializeToString(),
            options,
            providers=["CPUExecutionProvider"],
        )

        def predict(x):
            return session.run(None, {"X": x})[0]
    else:
        predict = model.predict
    one, every = X[:1], X
    predict(one), predict(every)  # first-call costs
    times = []
    for x in (one, every):
        times.append(min(timeit.repeat(lambda: predict(x), number=1, repeat=20)))
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["gru"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _limit_threads(args.threads)
    if args.child:
        impl, cell = json.loads(args.child)
        print(json.dumps(measure_child(impl, cell, args.threads)))
        return
    import numpy as np
    import onnxruntime

    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} "
        f"cores, {args.threads} threads, Python {platform.python_version()}, "
        f"numpy {np.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    print(
        "| cell | impl | predict 1 µs | predict 2000 ms "
        "| 1: onnxruntime ÷ skrnn | 2000: onnxruntime ÷ skrnn |"
    )
    print("|---|---|---|---|---|---|")
    impls = ("skrnn", "onnxruntime")
    for cell in args.cells:
        runs = {impl: [] for impl in impls}
        for _ in range(args.repeats):
            for impl in impls:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps([impl, cell])]
                    + ["--threads", str(args.threads)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {impl: np.median(runs[impl], axis=0) for impl in impls}
        for impl in impls:
            one, every = med[impl]
            ratios = ["", ""]
            if impl == "onnxruntime":
                ratios = [f"{a / b:.2f}" for a, b in zip(med[impl], med["skrnn"])]
            print(
                f"| {cell} | {impl} | {one * 1e6:.0f} | {every * 1e3:.2f} "
                f"| {' | '.join(ratios)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
