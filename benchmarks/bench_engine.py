"""Time one layer's forward + backward pass in each engine.

Usage::

    python benchmarks/bench_engine.py [--threads 2] [--repeat 20]

For every shape (N, T, D, H) and cell (GRU, Elman RNN), float32, equal
lengths, it prints the best time of ``--repeat`` runs of forward followed by
backward for the compiled ``cpu`` engine, the ``reference`` engine and, if
it is installed, PyTorch's ``nn.GRU`` / ``nn.RNN`` on the CPU, with the
ratios to PyTorch. PyTorch is only a yardstick: skrnn never imports it.
"""

import argparse

import numpy as np
from _timing import best_time
from threadpoolctl import threadpool_limits

from skrnn._cells import CellSpec
from skrnn._engine import get_engine

SHAPES = [(64, 20, 1, 16), (64, 50, 8, 32), (64, 100, 16, 128), (256, 100, 64, 512)]
CELLS = {
    "gru": CellSpec("gru", "tanh", True, True),
    "rnn": CellSpec("rnn", "tanh", False, True),
}


def _skrnn_step(engine, spec, N, T, D, H, rng):
    G = 3 if spec.cell == "gru" else 1
    params = {
        name: rng.normal(scale=0.1, size=shape).astype(np.float32)
        for name, shape in [
            ("weight_ih", (G * H, D)),
            ("weight_hh", (G * H, H)),
            ("bias_ih", (G * H,)),
            ("bias_hh", (G * H,)),
        ]
    }
    x = rng.normal(size=(T, N, D)).astype(np.float32)
    h0 = np.zeros((N, H), dtype=np.float32)
    lengths = np.full(N, T)
    d_out = rng.normal(size=(T, N, H)).astype(np.float32)

    def step():
        _, _, cache = engine.forward(spec, params, x, lengths, h0)
        engine.backward(spec, params, cache, d_out)

    return step


def _torch_step(torch, cell, N, T, D, H, rng):
    layer = (torch.nn.GRU if cell == "gru" else torch.nn.RNN)(D, H)
    x = torch.from_numpy(rng.normal(size=(T, N, D)).astype(np.float32)).requires_grad_()
    h0 = torch.zeros(1, N, H)
    d_out = torch.from_numpy(rng.normal(size=(T, N, H)).astype(np.float32))

    def step():
        out, _ = layer(x, h0)
        out.backward(d_out)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"forward + backward, float32, {args.threads} threads, best of {args.repeat}")
    print(
        f"{'cell':4} {'N':>4} {'T':>4} {'D':>3} {'H':>4} {'cpu s':>10}"
        f" {'reference s':>12} {'torch s':>10} {'cpu/torch':>9} {'ref/torch':>9}"
    )
    with threadpool_limits(args.threads):
        for cell, spec in CELLS.items():
            for N, T, D, H in SHAPES:
                times = {
                    name: best_time(
                        _skrnn_step(get_engine(name), spec, N, T, D, H, rng),
                        args.repeat,
                    )
                    for name in ("cpu", "reference")
                }
                line = (
                    f"{cell:4} {N:4d} {T:4d} {D:3d} {H:4d} {times['cpu']:10.6f}"
                    f" {times['reference']:12.6f}"
                )
                if torch is not None:
                    t_torch = best_time(
                        _torch_step(torch, cell, N, T, D, H, rng), args.repeat
                    )
                    line += (
                        f" {t_torch:10.6f} {times['cpu'] / t_torch:9.3f}"
                        f" {times['reference'] / t_torch:9.3f}"
                    )
                print(line, flush=True)


if __name__ == "__main__":
    main()
