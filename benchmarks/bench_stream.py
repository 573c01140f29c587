"""Streaming inference: the cost of one step of many sequences.

``skrnn.Stream.predict`` against PyTorch carrying the state by hand (a GRU
of one layer called on one step, ``rnn(x_t, h)``, then the ``nn.Linear``
head, under ``torch.inference_mode``), with the same weights, in one run:

- latency: one stream, one step, hidden sizes 32 and 128 (the best of many
  steps, each a call);
- throughput: 10,000 streams stepped together, H = 32 (steps per second,
  counting a stream's step as one).

Also the cost that streaming avoids: ``model.predict`` on a prefix of 100
steps, which is what a step would cost without a stream.

PyTorch is needed (``pip install torch``) in the environment that runs this
script only: skrnn never depends on it.

Usage::

    python benchmarks/bench_stream.py
"""

import time
import warnings

import numpy as np
from _timing import best_time
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceRegressor, Stream

D = 8


def fitted(H, random_state=0):
    rng = np.random.RandomState(random_state)
    X = rng.normal(size=(64, 20, D)).astype(np.float32)
    # normalize_y=False: predict is the head's output, as the twin's
    model = SequenceRegressor(
        hidden_size=H, max_iter=1, normalize_y=False, random_state=random_state
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, X[:, :, 0].sum(axis=1))


def torch_twin(model):
    """nn.GRU + nn.Linear with the model's weights, and a step function."""
    import torch

    H = model.hidden_size
    rnn = torch.nn.GRU(D, H)  # time-major: (1, N, D) a step
    head = torch.nn.Linear(H, 1)
    coefs = model.coefs_
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            p.copy_(torch.from_numpy(coefs[name]))
        head.weight.copy_(torch.from_numpy(coefs["head.weight"]))
        head.bias.copy_(torch.from_numpy(coefs["head.bias"]))

    def run(x_t, h):
        with torch.inference_mode():
            out, h = rnn(x_t[None], h)
            return head(out[0]), h

    return run


def main():
    import torch

    torch.set_num_threads(2)
    rng = np.random.RandomState(1)
    print(f"torch {torch.__version__}, 2 threads")
    print("| what | H | streams | skrnn | PyTorch | skrnn / PyTorch |")
    print("|---|---|---|---|---|---|")
    for H, n in [(32, 1), (128, 1), (32, 10_000)]:
        model = fitted(H)
        x = rng.normal(size=(n, D)).astype(np.float32)
        stream = Stream(model, n_streams=n)
        step = torch_twin(model)
        x_torch = torch.from_numpy(x)
        h = [torch.zeros(1, n, H)]

        def torch_step():
            _, h[0] = step(x_torch, h[0])

        # the two compute the same outputs from the same state
        ours = stream.predict(x)
        theirs, _ = step(x_torch, torch.zeros(1, n, H))
        assert np.allclose(ours, theirs.numpy()[:, 0], atol=1e-4)
        repeat = 5000 if n == 1 else 200
        a = best_time(lambda: stream.predict(x), repeat)
        b = best_time(torch_step, repeat)
        if n == 1:
            print(
                f"| latency per step | {H} | 1 | {a * 1e6:.1f} µs | {b * 1e6:.1f} µs "
                f"| {a / b:.2f} |"
            )
        else:
            print(
                f"| steps per second | {H} | {n} | {n / a:,.0f} | {n / b:,.0f} "
                f"| {b / a:.2f} (throughput) |"
            )
    model = fitted(32)
    prefix = rng.normal(size=(1, 100, D)).astype(np.float32)
    start = time.perf_counter()
    for _ in range(200):
        model.predict(prefix)
    per_call = (time.perf_counter() - start) / 200
    print(f"\nmodel.predict on a prefix of 100 steps (H = 32): {per_call * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
