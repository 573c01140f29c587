"""Training and inference speed on an NVIDIA GPU: skrnn (CuPy) against PyTorch (cuDNN).

The same model (one recurrent layer + a linear head, float32, output at the
last step), the same data, batch size and optimiser (Adam, gradient-norm
clipping at 5) for both:

- ``skrnn``: ``SequenceRegressor(device="cuda")``: the reference engine on
  CuPy with fused gate kernels, one cuBLAS GEMM + one kernel per step, the
  time loops replayed from CUDA graphs;
- ``eager``: the same with graphs turned off (every step launched from
  Python), to show what the graphs gain;
- ``cudnn``: ``torch.nn.GRU`` / ``nn.RNN`` / ``nn.LSTM`` + ``nn.Linear`` on the
  GPU (cuDNN),
  trained by a plain loop with the data on the GPU, when PyTorch with CUDA
  is installed.

TF32 is turned off in PyTorch, so that both compute in full float32 (CuPy
does unless CUPY_TF32=1). An epoch is timed as a whole fit of ``--epochs``
epochs divided by their number (skrnn copies the training set to the GPU
once per fit, inside the time); inference is ``predict`` on the whole set,
host to host (PyTorch: copy in, forward, copy out). Each figure is the
median over ``--repeats`` runs, after a warm-up that compiles the kernels.

Usage::

    python benchmarks/bench_gpu.py                  # all shapes and cells
    python benchmarks/bench_gpu.py --quick          # the two small shapes only
    python benchmarks/bench_gpu.py --cells gru --epochs 5 --repeats 3
"""

import argparse
import statistics
import time
import warnings
from contextlib import contextmanager

from bench_cpu import SHAPES as CPU_SHAPES
from bench_cpu import make_data

# the CPU benchmark's shapes and data, plus a long one
SHAPES = CPU_SHAPES + [(1000, 1000, 16, 128, 64)]
TARGETS = {(4000, 100, 16, 128, 64): 1.5, (4096, 100, 64, 512, 256): 1.5}


class Skrnn:
    def __init__(self, cell, H, batch, epochs, graphs=True):
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        self.params = dict(
            cell=cell,
            hidden_size=H,
            batch_size=batch,
            dtype="float32",
            device="cuda",
            learning_rate_init=1e-3,
            random_state=0,
            tol=0.0,
            n_iter_no_change=10**9,
        )
        self.epochs = epochs
        self.graphs = graphs
        self.model = None

    @contextmanager
    def _graphs(self):
        from skrnn._engine import get_engine

        graphs = get_engine("cuda").forward.keywords["loops"]
        graphs.enabled = self.graphs
        try:
            yield
        finally:
            graphs.enabled = True

    def warm_up(self, X, y):
        from skrnn import SequenceRegressor

        with self._graphs():
            model = SequenceRegressor(**{**self.params, "max_iter": 2}).fit(
                X[:256], y[:256]
            )
            model.predict(X[:256])

    def fit(self, X, y):
        from skrnn import SequenceRegressor

        with self._graphs():
            self.model = SequenceRegressor(
                **{**self.params, "max_iter": self.epochs}
            ).fit(X, y)

    def predict(self, X):
        with self._graphs():
            return self.model.predict(X)


class Cudnn:
    def __init__(self, cell, D, H, batch, epochs):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.manual_seed(0)
        self.torch = torch
        rnn = {"gru": torch.nn.GRU, "rnn": torch.nn.RNN, "lstm": torch.nn.LSTM}[cell]
        self.rnn = rnn(D, H, batch_first=True).cuda()
        self.head = torch.nn.Linear(H, 1).cuda()
        self.params = list(self.rnn.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-3)
        self.batch, self.epochs = batch, epochs

    def _forward(self, xb):
        out, _ = self.rnn(xb)
        return self.head(out[:, -1]).squeeze(1)

    def warm_up(self, X, y):
        saved = self.epochs
        self.epochs = 1
        self.fit(X[:256], y[:256])
        self.predict(X[:256])
        self.epochs = saved

    def fit(self, X, y):
        torch = self.torch
        Xd, yd = torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()
        N = len(X)
        for _ in range(self.epochs):
            perm = torch.randperm(N, device="cuda")
            total = torch.zeros((), device="cuda")
            for start in range(0, N, self.batch):
                idx = perm[start : start + self.batch]
                self.opt.zero_grad(set_to_none=True)
                loss = 0.5 * ((self._forward(Xd[idx]) - yd[idx]) ** 2).mean()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, 5.0)
                self.opt.step()
                total += loss.detach() * len(idx)
            float(total)  # the epoch's loss comes back, as skrnn's does
        torch.cuda.synchronize()

    def predict(self, X):
        torch = self.torch
        with torch.no_grad():
            out = self._forward(torch.from_numpy(X).cuda()).cpu().numpy()
        return out


def _timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cells",
        nargs="+",
        default=["gru", "rnn", "lstm"],
        choices=["gru", "rnn", "lstm"],
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="only the two small shapes"
    )
    args = parser.parse_args()

    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    torch = _torch_cuda()
    versions = (
        f"CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}"
    )
    if torch is not None:
        versions += (
            f", PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}"
        )
    print(
        f"# skrnn on the GPU vs cuDNN — {gpu}\n\n{versions}; float32, Adam, "
        f"one layer + linear head, {args.epochs} epochs per fit, "
        f"median of {args.repeats}.\n"
    )
    header = (
        "| cell | N, T, D, H, batch | skrnn s/epoch | eager s/epoch | cuDNN s/epoch | "
        "ratio | skrnn predict s | cuDNN predict s | ratio |"
    )
    print(header)
    print("|" + "---|" * 9)
    shapes = SHAPES[:2] if args.quick else SHAPES
    for cell in args.cells:
        for shape in shapes:
            N, T, D, H, batch = shape
            X, y = make_data(N, T, D)
            runners = {
                "skrnn": Skrnn(cell, H, batch, args.epochs),
                "eager": Skrnn(cell, H, batch, args.epochs, graphs=False),
            }
            if torch is not None:
                runners["cudnn"] = Cudnn(cell, D, H, batch, args.epochs)
            times = {name: {"fit": [], "predict": []} for name in runners}
            for r in runners.values():
                r.warm_up(X, y)
            for _ in range(args.repeats):
                for name, r in runners.items():  # alternate, so that drift hits both
                    times[name]["fit"].append(_timed(r.fit, X, y) / args.epochs)
                    times[name]["predict"].append(_timed(r.predict, X))
            med = {
                n: {k: statistics.median(v) for k, v in t.items()}
                for n, t in times.items()
            }
            s = med["skrnn"]
            c = med.get("cudnn")
            fmt = lambda v: f"{v:.4f}"  # noqa: E731
            if c:
                fit_ratio, pred_ratio = s["fit"] / c["fit"], s["predict"] / c["predict"]
                target = TARGETS.get(shape)
                mark = (
                    ""
                    if target is None
                    else (" ✓" if fit_ratio <= target else f" (target ≤ {target})")
                )
                row = [
                    fmt(c["fit"]),
                    f"{fit_ratio:.2f}{mark}",
                    fmt(s["predict"]),
                    fmt(c["predict"]),
                    f"{pred_ratio:.2f}",
                ]
            else:
                row = ["—", "—", fmt(s["predict"]), "—", "—"]
            print(
                f"| {cell} | {', '.join(map(str, shape))} | {fmt(s['fit'])} | "
                f"{fmt(med['eager']['fit'])} | " + " | ".join(row) + " |",
                flush=True,
            )
    if torch is None:
        print("\nPyTorch with CUDA is not installed here: no cuDNN column.")


if __name__ == "__main__":
    main()
