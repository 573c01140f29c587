"""
Training on more sequences than memory holds: partial_fit over Dask chunks
==========================================================================

The data set: noisy oscillations of three sensors, 40 steps each, whose
common frequency is the target to learn. It is a Dask array cut into chunks
of 500 sequences, each made by a task of its own on the cluster's workers
(a stand-in for chunks read from files): the whole array is never in the
client's memory, only one chunk at a time.

Two passes over the chunks, as with scikit-learn's ``partial_fit``
estimators: first :class:`~skrnn.preprocessing.SequenceScaler` learns each
sensor's mean and scale chunk by chunk, then a GRU regressor trains one
epoch per pass over them, each chunk standardised on the way in. A held-out
chunk scores it after every epoch.

A local cluster on 127.0.0.1 (two workers, in this process) stands in for a
real one; with a running cluster, connect ``Client`` to its address instead.
Dask (``dask`` and ``distributed``) is optional for skrnn and needed here.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Where the figure ``out_of_core_dask.png`` is saved (default: the current
    folder).
SKRNN_EXAMPLES_QUICK
    ``1`` shrinks the data and the epochs so that the script runs in a few
    seconds (the test suite uses it).

The plot needs matplotlib; without it the script still runs and says that
it skipped the plot.

Run: ``python examples/out_of_core_dask.py``
"""

import os

import dask
import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster

from skrnn import SequenceRegressor
from skrnn.preprocessing import SequenceScaler

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")
N_STEPS, N_SENSORS = 40, 3


def make_chunk(seed, n=500):
    """``n`` sequences (n, 40, 3) of three sensors in raw units, and their
    common frequency (cycles per step)."""
    rng = np.random.RandomState(seed)
    frequency = rng.uniform(0.02, 0.2, size=n)
    t = np.arange(N_STEPS)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, N_SENSORS))
    wave = np.sin(2 * np.pi * frequency[:, None, None] * t[None, :, None] + phase)
    gain, offset = np.array([5.0, 0.5, 20.0]), np.array([100.0, -3.0, 40.0])
    X = offset + gain * (wave + 0.1 * rng.normal(size=wave.shape))
    return X, frequency


def dask_data(seeds):
    """X and y as Dask arrays with one chunk per seed, each made by a task."""
    chunks = [dask.delayed(make_chunk)(seed) for seed in seeds]
    X = da.concatenate(
        [da.from_delayed(c[0], (500, N_STEPS, N_SENSORS), float) for c in chunks]
    )
    y = da.concatenate([da.from_delayed(c[1], (500,), float) for c in chunks])
    return X, y


def main():
    n_chunks, n_epochs = (4, 3) if QUICK else (40, 12)
    X, y = dask_data(range(n_chunks))
    X_test, y_test = make_chunk(seed=10_000)
    print(
        f"{X.shape[0]} sequences in {X.numblocks[0]} chunks: "
        f"{X.nbytes / 2**20:.0f} MiB in all, {X.blocks[0].nbytes / 2**20:.1f} MiB "
        "a chunk"
    )

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = Client(cluster)
    try:
        print(f"Dask cluster: {client.scheduler.address}")

        def chunks():
            """Each chunk of (X, y), computed on the cluster when it is needed."""
            for X_block, y_block in zip(X.blocks, y.blocks):
                yield client.compute([X_block, y_block], sync=True)

        scaler = SequenceScaler()
        for X_chunk, _ in chunks():
            scaler.partial_fit(X_chunk)
        means, scales = np.round(scaler.mean_, 2), np.round(scaler.scale_, 2)
        print(f"sensor means {means}, scales {scales}")

        model = SequenceRegressor(
            cell="gru",
            hidden_size=16,
            learning_rate_init=0.005,
            batch_size=100,
            random_state=0,
        )
        scores = []
        for epoch in range(1, n_epochs + 1):
            for X_chunk, y_chunk in chunks():
                model.partial_fit(scaler.transform(X_chunk), y_chunk)
            scores.append(model.score(scaler.transform(X_test), y_test))
            print(f"epoch {epoch}: R^2 on a held-out chunk = {scores[-1]:.3f}")
    finally:
        client.close()
        cluster.close()
    plot(scores)


def plot(scores):
    """The held-out R^2 after each epoch (when matplotlib is installed)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: plot skipped")
        return
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    epochs = np.arange(1, len(scores) + 1)
    ax.plot(epochs, scores, "o-", color="tab:blue")
    ax.set_xticks(epochs)
    ax.set_xlabel("epoch (one pass over the chunks)")
    ax.set_ylabel("R^2 on a held-out chunk")
    ax.set_title("partial_fit over Dask chunks")
    path = os.path.join(OUTPUT, "out_of_core_dask.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
