"""Training and inference speed and peak memory: skrnn against PyTorch on the CPU.

The same model (one recurrent layer + a linear head, float32), the same data,
batch size, optimiser (Adam) and thread count for every implementation:

- ``skrnn``: the estimators on the compiled kernels (the default),
- ``skrnn-ref``: the estimators on the reference NumPy engine,
- ``torch``: ``torch.nn.GRU``/``nn.RNN``/``nn.LSTM`` + ``nn.Linear`` when
  PyTorch is installed.

Each measurement runs in a fresh process (one epoch, one prediction of the
whole data, the peak resident set size during both above what the process
held before them (Linux), then the best time of predicting one sequence);
the implementations alternate within each repeat, so that a machine's drift
hits them alike, and each figure is the median over repeats.

Usage::

    python benchmarks/bench_cpu.py                 # all shapes and cells
    python benchmarks/bench_cpu.py --quick         # the two small shapes only
    python benchmarks/bench_cpu.py --cells gru --repeats 5 --threads 2
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import timeit

SHAPES = [  # N, T, D, H, batch
    (1000, 20, 1, 16, 64),
    (2000, 50, 8, 32, 64),
    (4000, 100, 16, 128, 64),
    (4096, 100, 64, 512, 256),
]


def _limit_threads(n):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def make_data(N, T, D, seed=0):
    import numpy as np

    rng = np.random.RandomState(seed)
    X = rng.standard_normal((N, T, D)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) / np.sqrt(T)).astype(np.float32)
    return X, y


class Skrnn:
    """skrnn's SequenceRegressor, one epoch per ``partial_fit``."""

    def __init__(self, cell, H, batch, engine):
        from skrnn import SequenceRegressor

        self.model = SequenceRegressor(
            cell=cell,
            hidden_size=H,
            batch_size=batch,
            dtype="float32",
            learning_rate_init=1e-3,
            random_state=0,
        )
        if engine == "reference":
            from skrnn._engine import get_engine

            self.model._get_engine = lambda: get_engine("reference")

    def epoch(self, X, y):
        self.model.partial_fit(X, y)

    def predict(self, X):
        return self.model.predict(X)


class Torch:
    """The same model in PyTorch, trained by a plain loop."""

    def __init__(self, cell, D, H, batch):
        import torch

        torch.manual_seed(0)
        layer = {"gru": torch.nn.GRU, "rnn": torch.nn.RNN, "lstm": torch.nn.LSTM}[cell]
        self.torch = torch
        self.rnn = layer(D, H, batch_first=True)
        self.head = torch.nn.Linear(H, 1)
        params = list(self.rnn.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(params, lr=1e-3)
        self.batch = batch

    def _forward(self, xb):
        _, h = self.rnn(xb)
        if isinstance(h, tuple):  # the LSTM's (h_n, c_n)
            h = h[0]
        return self.head(h[-1])[:, 0]

    def epoch(self, X, y):
        torch = self.torch
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        perm = torch.randperm(len(X))
        for start in range(0, len(X), self.batch):
            idx = perm[start : start + self.batch]
            self.opt.zero_grad()
            loss = 0.5 * ((self._forward(X[idx]) - y[idx]) ** 2).mean()
            loss.backward()
            self.opt.step()

    def predict(self, X):
        with self.torch.no_grad():
            return self._forward(self.torch.from_numpy(X)).numpy()


def build(impl, cell, D, H, batch):
    if impl == "torch":
        return Torch(cell, D, H, batch)
    return Skrnn(cell, H, batch, "reference" if impl == "skrnn-ref" else "cpu")


def available_impls():
    impls = ["skrnn", "skrnn-ref"]
    try:
        import torch  # noqa: F401

        impls.append("torch")
    except ImportError:
        pass
    return impls


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_child(impl, cell, shape):
    """Run in a fresh process: seconds for one epoch and one full-data
    prediction, the peak RSS above the resting RSS during both (MiB), and
    seconds for a prediction of one sequence.

    Linux only: writing 5 to /proc/self/clear_refs resets the peak (VmHWM).
    """
    N, T, D, H, batch = shape
    X, y = make_data(N, T, D)
    model = build(impl, cell, D, H, batch)
    model.epoch(X[: 2 * batch], y[: 2 * batch])  # imports, first-call costs
    model.predict(X[:batch])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    model.epoch(X, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(X)
    predict_s = time.perf_counter() - start
    peak_mib = (_status_kib("VmHWM") - before) / 1024.0
    # one sequence, as a service asks: the best of 10 rounds of 20 calls
    one = X[:1]
    one_s = min(timeit.repeat(lambda: model.predict(one), number=20, repeat=10)) / 20
    return fit_s, predict_s, peak_mib, one_s


def measure(impls, cell, shape, repeats, threads):
    """Median (s / epoch, predict s, peak MiB) per implementation.

    Every measurement runs in a fresh process, one implementation at a time:
    in one process, the BLAS and OpenMP pools of one implementation keep
    spinning after its call and take cores from the next one (seen here:
    PyTorch's prediction 3x slower right after skrnn's). The implementations
    alternate within each repeat, so that a machine's drift hits them alike.
    """
    import numpy as np

    runs = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl in impls:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    json.dumps([impl, cell, list(shape)]),
                    "--threads",
                    str(threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        impl: tuple(float(v) for v in np.median(runs[impl], axis=0)) for impl in impls
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["gru", "rnn", "lstm"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the two small shapes")
    parser.add_argument("--impls", nargs="+", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _limit_threads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    if args.child:
        impl, cell, shape = json.loads(args.child)
        print(json.dumps(measure_child(impl, cell, tuple(shape))))
        return
    import numpy as np

    import skrnn

    impls = args.impls or available_impls()
    shapes = SHAPES[:2] if args.quick else SHAPES
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.threads} threads, "
        f"Python {platform.python_version()}, "
        f"numpy {np.__version__}, skrnn {skrnn.__version__}, torch {torch_version}"
    )
    print(
        "| cell | N, T, D, H (batch) | impl | s / epoch | predict s | peak MiB "
        "| predict 1 µs | epoch ÷ torch | predict ÷ torch | memory ÷ torch "
        "| predict 1 ÷ torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in args.cells:
        for shape in shapes:
            results = measure(impls, cell, shape, args.repeats, args.threads)
            ref = results.get("torch")
            for impl in impls:
                fit_s, pred_s, mem, one_s = results[impl]
                ratios = ["", "", "", ""]
                if ref is not None and impl != "torch":
                    ratios = [f"{a / b:.3f}" for a, b in zip(results[impl], ref)]
                N, T, D, H, batch = shape
                print(
                    f"| {cell} | {N}, {T}, {D}, {H} ({batch}) | {impl} | {fit_s:.4f} "
                    f"| {pred_s:.4f} | {mem:.1f} | {one_s * 1e6:.0f} "
                    f"| {' | '.join(ratios)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
