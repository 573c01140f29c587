"""Training and inference speed and peak memory: skrnn against PyTorch on the CPU.

The same model (one recurrent layer + a linear head, float32), the same data,
batch size, optimiser (Adam) and thread count for every implementation:

- ``skrnn``: the estimators on the compiled kernels (the default),
- ``skrnn-ref``: the estimators on the reference NumPy engine,
- ``torch``: ``torch.nn.GRU``/``nn.RNN`` + ``nn.Linear`` when PyTorch is installed.

Implementations alternate within each repeat, so that a machine's drift hits
them alike; each figure is the median over repeats. Peak memory is measured
in a fresh process per implementation and shape, as the peak resident set
size during one epoch and one prediction above what the process held
before them (Linux).

Usage::

    python benchmarks/bench_cpu.py                 # all shapes, GRU and RNN
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
            cell=cell, hidden_size=H, batch_size=batch, dtype="float32",
            learning_rate_init=1e-3, random_state=0,
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
        layer = torch.nn.GRU if cell == "gru" else torch.nn.RNN
        self.torch = torch
        self.rnn = layer(D, H, batch_first=True)
        self.head = torch.nn.Linear(H, 1)
        params = list(self.rnn.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(params, lr=1e-3)
        self.batch = batch

    def _forward(self, xb):
        _, h = self.rnn(xb)
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


def time_shape(impls, cell, shape, repeats):
    """Median seconds per epoch and per full-data prediction, per implementation."""
    import numpy as np

    N, T, D, H, batch = shape
    X, y = make_data(N, T, D)
    models = {impl: build(impl, cell, D, H, batch) for impl in impls}
    for model in models.values():  # warm-up: first-call costs are not per epoch
        model.epoch(X[: 2 * batch], y[: 2 * batch])
        model.predict(X[:batch])
    fit_times = {impl: [] for impl in impls}
    predict_times = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl, model in models.items():
            start = time.perf_counter()
            model.epoch(X, y)
            fit_times[impl].append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict(X)
            predict_times[impl].append(time.perf_counter() - start)
    return {
        impl: (float(np.median(fit_times[impl])), float(np.median(predict_times[impl])))
        for impl in impls
    }


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(impl, cell, shape):
    """Run in a fresh process: peak RSS above the resting RSS during one epoch + predict.

    Linux only: writing 5 to /proc/self/clear_refs resets the peak (VmHWM).
    """
    N, T, D, H, batch = shape
    X, y = make_data(N, T, D)
    model = build(impl, cell, D, H, batch)
    model.epoch(X[:batch], y[:batch])  # imports, first-call allocations
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    model.epoch(X, y)
    model.predict(X)
    return (_status_kib("VmHWM") - before) / 1024.0


def peak_memory(impl, cell, shape, threads):
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps([impl, cell, list(shape)]),
         "--threads", str(threads)],
        capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["gru", "rnn"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the two small shapes")
    parser.add_argument("--impls", nargs="+", default=None)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _limit_threads(args.threads)
    if args.child:
        impl, cell, shape = json.loads(args.child)
        print(peak_memory_child(impl, cell, tuple(shape)))
        return
    try:
        import torch

        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    import numpy as np

    import skrnn

    impls = args.impls or available_impls()
    shapes = SHAPES[:2] if args.quick else SHAPES
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {args.threads} threads, Python {platform.python_version()}, "
          f"numpy {np.__version__}, skrnn {skrnn.__version__}, torch {torch_version}")
    print("| cell | N, T, D, H (batch) | impl | s / epoch | predict s | peak MiB "
          "| epoch ÷ torch | predict ÷ torch | memory ÷ torch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cell in args.cells:
        for shape in shapes:
            times = time_shape(impls, cell, shape, args.repeats)
            mem = {
                impl: (None if args.no_memory else peak_memory(impl, cell, shape, args.threads))
                for impl in impls
            }
            ref = times.get("torch")
            for impl in impls:
                fit_s, pred_s = times[impl]
                ratios = ["", "", ""]
                if ref is not None and impl != "torch":
                    ratios[0] = f"{fit_s / ref[0]:.3f}"
                    ratios[1] = f"{pred_s / ref[1]:.3f}"
                    if mem[impl] is not None and mem["torch"]:
                        ratios[2] = f"{mem[impl] / mem['torch']:.3f}"
                m = "" if mem[impl] is None else f"{mem[impl]:.1f}"
                N, T, D, H, batch = shape
                print(f"| {cell} | {N}, {T}, {D}, {H} ({batch}) | {impl} | {fit_s:.4f} "
                      f"| {pred_s:.4f} | {m} | {' | '.join(ratios)} |", flush=True)


if __name__ == "__main__":
    main()
