"""
Pipeline + GridSearchCV on variable-length sequences
====================================================

The task: a noisy oscillation of random length (12 to 30 readings) in raw
sensor units, around 50 with an amplitude near 10, either slow (a period of
8 to 12 steps) or fast (5 to 7 steps). Which one is it? A single reading
says nothing, so the model has to follow the signal over time. The
sequences are a plain Python list of 1-D arrays of different lengths, which
every step below takes as it is: no padding by hand.

The readings are far from the unit scale a recurrent network likes (tanh
saturates at 50), so the pipeline standardises them first with
:class:`~skrnn.preprocessing.SequenceScaler`, which learns one mean and one
scale over every valid time step of the training sequences, inside each
cross-validation fold. ``GridSearchCV`` then compares the two cells (Elman
"rnn" and "gru") and two hidden sizes with 3-fold cross-validation, and the
results are printed as a plain table (no pandas needed): the parameters,
the mean and standard deviation of the fold accuracies, and the rank.
Finally the best pipeline, refitted on all the training data, is scored on
held-out sequences.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Where the figure ``pipeline_grid_search.png`` is saved (default: the current
    folder).
SKRNN_EXAMPLES_QUICK
    ``1`` shrinks the data and the epochs so that the script runs in a few
    seconds (the test suite uses it).

The plot needs matplotlib; without it the script still runs and says that
it skipped the plot.

Run: ``python examples/pipeline_grid_search.py``
"""

import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from skrnn import SequenceClassifier
from skrnn.preprocessing import SequenceScaler

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# the epoch budgets below are fixed on purpose: stopping at max_iter is expected
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def make_oscillations(n_samples, random_state=None):
    """Slow (label "slow") or fast ("fast") noisy oscillations of random length."""
    rng = np.random.RandomState(random_state)
    X, y = [], []
    for _ in range(n_samples):
        fast = rng.rand() < 0.5
        period = rng.uniform(5.0, 7.0) if fast else rng.uniform(8.0, 12.0)
        length = rng.randint(12, 31)
        t = np.arange(length)
        amplitude = rng.uniform(7.0, 13.0)
        signal = 50.0 + amplitude * np.sin(
            2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)
        )
        X.append(signal + rng.normal(scale=4.0, size=length))
        y.append("fast" if fast else "slow")
    return X, np.array(y)


X, y = make_oscillations(120 if QUICK else 400, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
lengths = [len(x) for x in X]
print(
    f"{len(X)} sequences of {min(lengths)} to {max(lengths)} readings "
    f"(mean {np.mean(X[0]):.1f}, std {np.std(X[0]):.1f} in the first): "
    f"{len(X_train)} to search on, {len(X_test)} held out"
)

pipeline = Pipeline(
    [
        ("scale", SequenceScaler()),
        (
            "rnn",
            SequenceClassifier(
                learning_rate_init=0.01,
                batch_size=32,
                max_iter=10 if QUICK else 25,
                random_state=0,
            ),
        ),
    ]
)
param_grid = {"rnn__cell": ["rnn", "gru"], "rnn__hidden_size": [4, 16]}
search = GridSearchCV(pipeline, param_grid, cv=3, scoring="accuracy")
start = time.perf_counter()
search.fit(X_train, y_train)
print(
    f"GridSearchCV: {len(search.cv_results_['params'])} candidates x 3 folds "
    f"in {time.perf_counter() - start:.1f} s\n"
)

# the results table, without pandas
results = search.cv_results_
header = f"{'cell':<6}{'hidden_size':>12}  {'mean_test_score +/- std':<24}{'rank':>4}"
print(header)
print("-" * len(header))
for i in np.argsort(results["rank_test_score"], kind="stable"):
    params = results["params"][i]
    print(
        f"{params['rnn__cell']:<6}{params['rnn__hidden_size']:>12}  "
        f"{results['mean_test_score'][i]:.3f} +/- {results['std_test_score'][i]:<14.3f}"
        f"{results['rank_test_score'][i]:>4}"
    )

best = search.best_params_
print(
    f"\nbest: cell={best['rnn__cell']!r}, hidden_size={best['rnn__hidden_size']}, "
    f"cross-validated accuracy {search.best_score_:.3f}"
)
print(
    "held-out accuracy of the refitted best pipeline: "
    f"{search.score(X_test, y_test):.3f}"
)

# %%
# The figure (when matplotlib is installed): each candidate's
# cross-validated accuracy, with the spread over the folds.

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("\nmatplotlib is not installed: plot skipped")
else:
    names = [
        f"{p['rnn__cell']}, {p['rnn__hidden_size']} units" for p in results["params"]
    ]
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    ax.barh(
        names,
        results["mean_test_score"],
        xerr=results["std_test_score"],
        color="tab:blue",
    )
    ax.set_xlim(0, 1)
    ax.set_xlabel("cross-validated accuracy (chance: 0.5)")
    ax.set_title("GridSearchCV over a Pipeline, on sequences of 12-30 readings")
    path = os.path.join(OUTPUT, "pipeline_grid_search.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")
