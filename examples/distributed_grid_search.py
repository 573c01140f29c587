"""
Grid search for a recurrent classifier on a Dask cluster
========================================================

The task: a random walk of random length goes in one step at a time; did it
end above where it started? The answer is the sign of the sum of its steps,
so a recurrent network has to add up the whole sequence, whatever its
length. The sequences are a plain Python list of arrays of different
lengths, which :class:`~skrnn.SequenceClassifier`, ``Pipeline`` and
``GridSearchCV`` take as they are.

The search over the cell ("rnn", "gru") and ``hidden_size`` runs its fits
on the workers of a Dask cluster through joblib's ``"dask"`` backend:
scikit-learn sends each (candidate, fold) fit to a worker, and nothing else
in the code changes.

Running on a real cluster
-------------------------
This script starts a :class:`distributed.LocalCluster` on 127.0.0.1 (no
other network), which is enough to see the mechanics. To use a real
cluster, start a scheduler and workers that can import skrnn (the same
versions of skrnn, scikit-learn and numpy as here), for example::

    dask scheduler                         # on the scheduler machine
    dask worker tcp://scheduler:8786       # on each worker machine

and connect to it instead of starting a local cluster::

    from distributed import Client
    client = Client("tcp://scheduler:8786")

Everything under ``joblib.parallel_config(backend="dask")`` then runs on
that cluster. Each fit is small, so give the cluster many candidates or
folds (or larger models) to keep the workers busy; ``n_jobs=-1`` lets
GridSearchCV send as many fits at once as the cluster takes.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Where the figure ``distributed_grid_search.png`` is saved (default: the current
    folder).
SKRNN_EXAMPLES_QUICK
    ``1`` shrinks the data, the grid and the epochs so that the script runs
    in a few seconds (the test suite uses it).

The plot needs matplotlib; without it the script still runs and says that
it skipped the plot.

Run: ``python examples/distributed_grid_search.py``
"""

import os
import warnings

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from skrnn import SequenceClassifier
from skrnn.preprocessing import SequenceScaler

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")


def make_random_walks(n_samples, min_length, max_length, random_state=None):
    """Random walks of random lengths, labelled by whether they end up.

    Parameters
    ----------
    n_samples : int
        Number of walks.
    min_length, max_length : int
        Bounds (inclusive) of the number of steps of each walk.
    random_state : int or None
        Seed.

    Returns
    -------
    X : list of ndarray of shape (T_i, 1)
        The steps of each walk.
    y : ndarray of shape (n_samples,) of str
        "up" where the walk ends above its start, else "down".
    """
    rng = np.random.RandomState(random_state)
    lengths = rng.randint(min_length, max_length + 1, size=n_samples)
    X = [rng.normal(size=(T, 1)) for T in lengths]
    y = np.array(["up" if x.sum() > 0 else "down" for x in X])
    return X, y


def main():
    if QUICK:
        n_samples, max_iter, hidden_sizes, n_splits = 60, 5, [4, 8], 2
    else:
        n_samples, max_iter, hidden_sizes, n_splits = 300, 60, [4, 8, 16], 3
    X, y = make_random_walks(n_samples, 5, 20, random_state=0)

    pipe = Pipeline(
        [
            ("scale", SequenceScaler(with_mean=False)),
            (
                "clf",
                SequenceClassifier(
                    learning_rate_init=0.02, max_iter=max_iter, random_state=0
                ),
            ),
        ]
    )
    grid = {"clf__cell": ["rnn", "gru"], "clf__hidden_size": hidden_sizes}
    search = GridSearchCV(
        pipe,
        grid,
        cv=StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=0),
        n_jobs=-1,
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
        print(
            f"Dask cluster: {client.scheduler.address} "
            f"with {len(cluster.workers)} workers"
        )
        # A short training run may stop at max_iter before meeting the
        # stopping rule; that is expected here and says nothing about the
        # comparison between candidates.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with joblib.parallel_config(backend="dask"):
                search.fit(X, y)
    finally:
        client.close()
        cluster.close()

    res = search.cv_results_
    print()
    print(f"{'cell':<6}{'hidden_size':>12}{'mean_test_score':>17}{'rank':>6}")
    for i in np.argsort(res["rank_test_score"], kind="stable"):
        params = res["params"][i]
        print(
            f"{params['clf__cell']:<6}{params['clf__hidden_size']:>12}"
            f"{res['mean_test_score'][i]:>17.3f}{res['rank_test_score'][i]:>6}"
        )
    print()
    print(f"best: {search.best_params_}, accuracy {search.best_score_:.3f}")
    plot(res)


def plot(res):
    """Each candidate's cross-validated accuracy (when matplotlib is
    installed)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: plot skipped")
        return
    names = [f"{p['clf__cell']}, {p['clf__hidden_size']} units" for p in res["params"]]
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    ax.barh(names, res["mean_test_score"], xerr=res["std_test_score"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("cross-validated accuracy (chance: 0.5)")
    ax.set_title("The grid, fitted on a Dask cluster")
    path = os.path.join(OUTPUT, "distributed_grid_search.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
