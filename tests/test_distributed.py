"""GridSearchCV on a real Dask cluster (joblib's "dask" backend).

One LocalCluster on 127.0.0.1 serves the whole module: two workers with one
thread each, in this process (``processes=False``, over TCP so that the
workers really talk to the scheduler through sockets), which starts in a
second or two and needs no forking. The fits that run there must give the
same scores as the same search run serially.

The example ``examples/distributed_grid_search.py`` is run too, shrunk by
``SKRNN_EXAMPLES_QUICK=1``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

from sklearn.model_selection import GridSearchCV  # noqa: E402

import skrnn  # noqa: E402
from skrnn import SequenceRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "distributed_grid_search.py"


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _data(seed=0):
    """Variable-length univariate sequences and their sums."""
    rng = np.random.RandomState(seed)
    X = [rng.normal(size=(T, 1)) for T in rng.randint(3, 8, size=24)]
    y = np.array([x.sum() for x in X])
    return X, y


GRID = {
    "cell": ["rnn", "gru"],
    "hidden_size": [4, 6],
    "learning_rate_init": [0.01, 0.05],
}


def _search():
    est = SequenceRegressor(max_iter=5, random_state=0)
    return GridSearchCV(est, GRID, cv=3, n_jobs=-1)


# Five epochs cannot meet the stopping rule: max_iter is reached on purpose.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_on_dask_matches_serial(client):
    X, y = _data()
    serial = _search().set_params(n_jobs=1).fit(X, y)
    with distributed.get_task_stream(client) as stream:
        with joblib.parallel_config(backend="dask"):
            on_dask = _search().fit(X, y)
    # the fits really ran on the cluster's workers (joblib sends them in batches)
    assert len(stream.data) >= 1
    assert {task["worker"] for task in stream.data} <= set(
        client.scheduler_info()["workers"]
    )
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"],
        serial.cv_results_["mean_test_score"],
        rtol=1e-10,
    )
    for k in range(3):
        np.testing.assert_allclose(
            on_dask.cv_results_[f"split{k}_test_score"],
            serial.cv_results_[f"split{k}_test_score"],
            rtol=1e-10,
        )
    assert on_dask.best_params_ == serial.best_params_
    assert on_dask.cv_results_["params"] == serial.cv_results_["params"]
    # the refit best model predicts what the serial one does
    np.testing.assert_allclose(on_dask.predict(X), serial.predict(X), rtol=1e-10)


def _run_example(path, output):
    """Run an example in quick mode, its figure saved into ``output``; its
    standard output."""
    env = dict(
        os.environ,
        SKRNN_EXAMPLES_QUICK="1",
        SKRNN_EXAMPLES_OUTPUT=str(output),
        MPLBACKEND="Agg",
    )
    # the child imports the skrnn these tests import: the installed one, or
    # the source tree in a development checkout built in place
    skrnn_root = Path(skrnn.__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(skrnn_root), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_example_runs_quick(tmp_path):
    stdout = _run_example(EXAMPLE, tmp_path)
    if "plot skipped" not in stdout:
        assert (tmp_path / "distributed_grid_search.png").stat().st_size > 0
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "mean_test_score" in line)
    assert lines[header].split() == ["cell", "hidden_size", "mean_test_score", "rank"]
    rows = [line.split() for line in lines[header + 1 :] if line.strip()]
    rows = [r for r in rows if r[0] in ("rnn", "gru")]
    # quick mode: cell x hidden_size (4, 8)
    assert {(r[0], int(r[1])) for r in rows} == {
        ("rnn", 4),
        ("rnn", 8),
        ("gru", 4),
        ("gru", 8),
    }
    for r in rows:
        assert 0.0 <= float(r[2]) <= 1.0
    assert min(int(r[3]) for r in rows) == 1
    assert "best:" in stdout


def _chunk(block_id, n=30, T=8, D=2):
    """Chunk ``block_id`` of a data set that is never whole in memory:
    sequences and their sums, drawn from a seed of their own."""
    rng = np.random.RandomState(100 + block_id)
    X = rng.normal(loc=1.0, scale=2.0, size=(n, T, D))
    return X, X.sum(axis=(1, 2))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_out_of_core_partial_fit_over_dask_chunks(client):
    """A scaler and a regressor trained chunk by chunk from Dask arrays
    computed on the cluster equal the same partial_fit calls on the chunks
    made in memory."""
    da = pytest.importorskip("dask.array")
    from skrnn.preprocessing import SequenceScaler

    n_chunks = 4
    X = da.concatenate(
        [
            da.from_delayed(
                dask.delayed(lambda i: _chunk(i)[0])(i), (30, 8, 2), dtype=float
            )
            for i in range(n_chunks)
        ]
    )
    y = da.concatenate(
        [
            da.from_delayed(dask.delayed(lambda i: _chunk(i)[1])(i), (30,), dtype=float)
            for i in range(n_chunks)
        ]
    )

    def train(chunks):
        scaler = SequenceScaler()
        for X_chunk, _ in chunks():
            scaler.partial_fit(X_chunk)
        model = SequenceRegressor(hidden_size=6, random_state=0)
        for _ in range(2):  # epochs
            for X_chunk, y_chunk in chunks():
                model.partial_fit(scaler.transform(X_chunk), y_chunk)
        return scaler, model

    def from_dask():
        for X_block, y_block in zip(X.blocks, y.blocks):
            yield client.compute([X_block, y_block], sync=True)

    def in_memory():
        return (_chunk(i) for i in range(n_chunks))

    scaler, model = train(from_dask)
    scaler_ref, model_ref = train(in_memory)
    np.testing.assert_array_equal(scaler.mean_, scaler_ref.mean_)
    np.testing.assert_array_equal(scaler.scale_, scaler_ref.scale_)
    assert model.n_iter_ == model_ref.n_iter_ == 2 * n_chunks
    for name, value in model_ref.coefs_.items():
        np.testing.assert_array_equal(model.coefs_[name], value)


def test_out_of_core_example_runs_quick(tmp_path):
    stdout = _run_example(ROOT / "examples" / "out_of_core_dask.py", tmp_path)
    if "plot skipped" not in stdout:
        assert (tmp_path / "out_of_core_dask.png").stat().st_size > 0
    assert "2000 sequences in 4 chunks" in stdout
    scores = [
        float(v) for v in re.findall(r"R\^2 on a held-out chunk = (-?\d\.\d+)", stdout)
    ]
    # quick mode: 3 epochs over 4 chunks, each better than the last
    assert len(scores) == 3 and scores == sorted(scores) and scores[-1] > 0.2
