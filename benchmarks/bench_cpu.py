"""Training and inference speed and peak memory: skrnn against PyTorch on the CPU.

The same model (one recurrent layer + a linear head, float32), the same data,
batch size, optimiser (Adam) and thread count for every implementation:

- ``skrnn``: the estimators on the compiled kernels (the default),
- ``skrnn-ref``: the estimators on the reference NumPy engine,
- ``torch``: ``torch.nn.GRU``/``nn.RNN``/``nn.LSTM`` + ``nn.Linear`` when
  PyTorch is installed;
- ``jax``: the same model in JAX when JAX and optax are installed
  (``pip install "jax[cpu]" optax``): the whole mini-batch step (the cell in
  ``lax.scan``, the head, the loss, optax's Adam) under one ``jax.jit``,
  compiled for every batch shape before the timing starts.

Each measurement runs in a fresh process (one epoch, one prediction of the
whole data, the peak resident set size during both above what the process
held before them (Linux), then the best time of predicting one sequence);
the implementations alternate within each repeat, so that a machine's drift
hits them alike, and each figure is the median over repeats.

Beside each time, the arithmetic rate it achieves (GFLOP/s: the recurrent
layer's multiply-adds, twice, forward and backward for an epoch, forward for
a prediction; the head and the gates' element-wise work left out) and that
rate as a share of what a float32 matrix product of 2048 x 2048 reaches
through NumPy's BLAS on the same threads, at its best in the same run (the
GEMM probe, run before each cell and shape): how far each time is from the
machine's limit.

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


def flops(cell, shape):
    """Floating-point operations of one epoch (the layer forward and
    backward) and of one prediction of every sequence (forward): two per
    multiply-add of the layer's products, the head and the gates apart."""
    N, T, D, H, _ = shape
    GH = {"rnn": 1, "gru": 3, "lstm": 4}[cell] * H
    forward = 2 * N * T * GH * (D + H)  # x W_ih^T, h W_hh^T
    backward = 2 * N * T * GH * (D + 2 * H)  # dW_ih, dW_hh, dh = dG W_hh
    return forward + backward, forward


def gemm_probe(size=2048):
    """GFLOP/s of a float32 matrix product of ``size`` x ``size`` through
    NumPy's BLAS: the best of 5."""
    import numpy as np

    a = np.random.RandomState(0).uniform(size=(size, size)).astype(np.float32)
    a @ a  # BLAS's threads started
    best = min(timeit.repeat(lambda: a @ a, number=1, repeat=5))
    return 2 * size**3 / best / 1e9


def _probe(threads):
    """:func:`gemm_probe` in a fresh process on ``threads`` threads."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", "probe", "--threads", str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip())


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


class Jax:
    """The same model in JAX, each mini-batch step one jitted call."""

    def __init__(self, cell, D, H, batch):
        import jax
        import jax.numpy as jnp
        import numpy as np
        import optax

        G = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
        bound = 1.0 / H**0.5
        keys = jax.random.split(jax.random.PRNGKey(0), 6)
        shapes = [(D, G * H), (H, G * H), (G * H,), (G * H,), (H, 1), (1,)]
        names = ["w_ih", "w_hh", "b_ih", "b_hh", "w", "b"]
        self.params = {
            name: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
            for name, key, shape in zip(names, keys, shapes)
        }
        sig = jax.nn.sigmoid

        def step(p, state, gi):
            h, c = state
            gh = h @ p["w_hh"] + p["b_hh"]
            if cell == "rnn":
                h = jnp.tanh(gi + gh)
            elif cell == "gru":  # PyTorch's form: r scales W_hn h + b_hn
                r, z = (
                    sig(gi[:, :H] + gh[:, :H]),
                    sig(gi[:, H : 2 * H] + gh[:, H : 2 * H]),
                )
                n = jnp.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
                h = (1 - z) * n + z * h
            else:
                a = gi + gh
                i, f, o = sig(a[:, :H]), sig(a[:, H : 2 * H]), sig(a[:, 3 * H :])
                c = f * c + i * jnp.tanh(a[:, 2 * H : 3 * H])
                h = o * jnp.tanh(c)
            return (h, c), None

        def forward(p, x):
            gi = jnp.swapaxes(x @ p["w_ih"] + p["b_ih"], 0, 1)  # (T, N, G*H)
            zeros = jnp.zeros((x.shape[0], H), x.dtype)
            (h, _), _ = jax.lax.scan(lambda s, g: step(p, s, g), (zeros, zeros), gi)
            return (h @ p["w"] + p["b"])[:, 0]

        def loss(p, x, y):
            return 0.5 * jnp.mean((forward(p, x) - y) ** 2)

        optimizer = optax.adam(1e-3)
        self.opt_state = optimizer.init(self.params)

        @jax.jit
        def train_step(p, opt_state, x, y):
            grads = jax.grad(loss)(p, x, y)
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state

        self.jax, self.batch = jax, batch
        self.rng = np.random.default_rng(0)
        self._train_step, self._forward = train_step, jax.jit(forward)

    def compile(self, X, y):
        """Compile for every shape the timed calls meet: a full batch, the
        last one, all N and one sequence."""
        last = len(X) % self.batch or self.batch
        for n in {self.batch, last}:
            self._train_step.lower(self.params, self.opt_state, X[:n], y[:n]).compile()
        self.predict(X)
        self.predict(X[:1])

    def epoch(self, X, y):
        perm = self.rng.permutation(len(X))
        for start in range(0, len(X), self.batch):
            idx = perm[start : start + self.batch]
            self.params, self.opt_state = self._train_step(
                self.params, self.opt_state, X[idx], y[idx]
            )
        self.jax.block_until_ready(self.params)

    def predict(self, X):
        import numpy as np

        return np.asarray(self._forward(self.params, X))


def build(impl, cell, D, H, batch):
    if impl == "torch":
        return Torch(cell, D, H, batch)
    if impl == "jax":
        return Jax(cell, D, H, batch)
    return Skrnn(cell, H, batch, "reference" if impl == "skrnn-ref" else "cpu")


def available_impls():
    impls = ["skrnn", "skrnn-ref"]
    for impl, modules in (("torch", ["torch"]), ("jax", ["jax", "optax"])):
        try:
            for module in modules:
                __import__(module)
        except ImportError:
            continue
        impls.append(impl)
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
    if hasattr(model, "compile"):
        model.compile(X, y)
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
    if args.child == "probe":
        print(json.dumps(gemm_probe()))
        return
    if args.child:
        impl, cell, shape = json.loads(args.child)
        print(json.dumps(measure_child(impl, cell, tuple(shape))))
        return
    import numpy as np

    import skrnn

    impls = args.impls or available_impls()
    shapes = SHAPES[:2] if args.quick else SHAPES
    # The probe runs in a fresh process before each cell and shape, and the
    # best of its runs stands for the machine's limit: a shared machine's
    # neighbours slow some runs down, never one up.
    probes, measured = [], []
    for cell in args.cells:
        for shape in shapes:
            probes.append(_probe(args.threads))
            measured.append(
                (cell, shape, measure(impls, cell, shape, args.repeats, args.threads))
            )
    probe = max(probes)
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.threads} threads, "
        f"Python {platform.python_version()}, "
        f"numpy {np.__version__}, skrnn {skrnn.__version__}, torch {torch_version}; "
        f"GEMM probe (float32, 2048^3, NumPy's BLAS): {probe:.1f} GFLOP/s, the best "
        f"of {len(probes)} runs ({min(probes):.1f} the least)"
    )
    print(
        "| cell | N, T, D, H (batch) | impl | s / epoch | predict s | peak MiB "
        "| predict 1 µs | epoch GFLOP/s (of probe) | predict GFLOP/s (of probe) "
        "| epoch ÷ torch | predict ÷ torch | memory ÷ torch | predict 1 ÷ torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell, shape, results in measured:
        ref = results.get("torch")
        for impl in impls:
            fit_s, pred_s, mem, one_s = results[impl]
            ratios = ["", "", "", ""]
            if ref is not None and impl != "torch":
                ratios = [f"{a / b:.3f}" for a, b in zip(results[impl], ref)]
            N, T, D, H, batch = shape
            rates = [
                f"{work / s / 1e9:.1f} ({work / s / 1e9 / probe:.0%})"
                for work, s in zip(flops(cell, shape), (fit_s, pred_s))
            ]
            print(
                f"| {cell} | {N}, {T}, {D}, {H} ({batch}) | {impl} | {fit_s:.4f} "
                f"| {pred_s:.4f} | {mem:.1f} | {one_s * 1e6:.0f} "
                f"| {' | '.join(rates)} | {' | '.join(ratios)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
