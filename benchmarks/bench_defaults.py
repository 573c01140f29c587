"""How the estimators train out of the box on real sequence data.

Data sets of the UCR, UEA and TSER archives as aeon ships them (no download):
each split as the archive gives it, the panel (n, channels, T) read as
sequences (n, T, channels); and a forecast, the airline passengers series
(monthly, 1949-1960) cut by ``sliding_windows`` into windows of 12 months and
the month after each, the last 24 windows held out. For each data set and
seed, three pipelines
``make_pipeline(SequenceScaler(), estimator)``:

- ``default``: the estimator at its defaults (GRU);
- ``lstm``: the defaults with ``cell="lstm"``;
- ``tuned``: a recipe chosen by hand, the same everywhere: Adam at 3e-3,
  batches of 32, 200 epochs with no early stop (``n_iter_no_change`` past
  ``max_iter``).

Reported: the test accuracy (classification) or R² (regression), the epochs
run and the fit's seconds, median and range over the seeds; and, as the
baselines a model must beat, the majority class's accuracy, R² = 0 (the
mean) or, for the forecast, the R² of "next month as the last".

aeon is needed (``pip install aeon``), in the environment that runs this
script only: skrnn never depends on it.

Usage::

    python benchmarks/bench_defaults.py                      # all, 3 seeds
    python benchmarks/bench_defaults.py --datasets GunPoint --seeds 5
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.preprocessing import SequenceScaler, sliding_windows

# name: task; shipped with aeon 1.6 (aeon/datasets/data)
DATASETS = {
    "GunPoint": "classification",  # 150 steps, 1 channel, 50 training cases
    "ArrowHead": "classification",  # 251 steps, 1 channel, 36
    "BasicMotions": "classification",  # 100 steps, 6 channels, 40
    "ItalyPowerDemand": "classification",  # 24 steps, 1 channel, 67
    "JapaneseVowels": "classification",  # 7-29 steps, 12 channels, 270
    "Covid3Month": "regression",  # 84 steps, 1 channel, 140
    "CardanoSentiment": "regression",  # 24 steps, 2 channels, 74
    "Airline": "forecast",  # 144 months; windows of 12, the last 24 held out
}

# the forecast: windows of this many months, and how many of the last ones
# are the test set
WINDOW, N_TEST = 12, 24

RECIPES = {
    "default": {},
    "lstm": {"cell": "lstm"},
    "tuned": {
        "learning_rate_init": 3e-3,
        "batch_size": 32,
        "max_iter": 200,
        "n_iter_no_change": 200,
    },
}


def load(name, task, split):
    """(sequences, targets): a list of (T_i, channels) arrays for a ragged
    collection, else an array (n, T, channels)."""
    from aeon.datasets import load_airline, load_classification, load_regression

    if task == "forecast":
        X, y = sliding_windows(load_airline(), WINDOW)
        return (
            (X[:-N_TEST], y[:-N_TEST])
            if split == "train"
            else (X[-N_TEST:], y[-N_TEST:])
        )

    loader = load_classification if task == "classification" else load_regression
    X, y = loader(name, split=split)
    if isinstance(X, list):
        return [np.asarray(x, dtype=np.float64).T for x in X], y
    return np.asarray(X, dtype=np.float64).transpose(0, 2, 1), y


def run(name, task, recipe, seed):
    """(test score, epochs run, fit seconds) of one pipeline."""
    X, y = load(name, task, "train")
    X_test, y_test = load(name, task, "test")
    if task != "classification":
        y, y_test = y.astype(np.float64), y_test.astype(np.float64)
    Est = SequenceClassifier if task == "classification" else SequenceRegressor
    model = make_pipeline(SequenceScaler(), Est(random_state=seed, **RECIPES[recipe]))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    seconds = time.perf_counter() - start
    return model.score(X_test, y_test), model[-1].n_iter_, seconds


def baseline(name, task):
    """The majority class's test accuracy, 0 (R² of the mean) or, for the
    forecast, the R² of "the next month is the last one"."""
    if task == "regression":
        return 0.0
    if task == "forecast":
        X_test, y_test = load(name, task, "test")
        return float(r2_score(y_test, X_test[:, -1, 0]))
    _, y = load(name, task, "train")
    _, y_test = load(name, task, "test")
    labels, counts = np.unique(y, return_counts=True)
    return float(np.mean(y_test == labels[np.argmax(counts)]))


def _summary(values, fmt):
    values = np.asarray(values)
    return (
        f"{format(np.median(values), fmt)} "
        f"({format(values.min(), fmt)}-{format(values.max(), fmt)})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print("| data set | baseline | recipe | test score | epochs | fit s |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        task = DATASETS[name]
        base = baseline(name, task)
        for recipe in args.recipes:
            runs = [run(name, task, recipe, seed) for seed in range(args.seeds)]
            scores, epochs, seconds = zip(*runs)
            print(
                f"| {name} | {base:.3f} | {recipe} | {_summary(scores, '.3f')} "
                f"| {_summary(epochs, '.0f')} | {_summary(seconds, '.1f')} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
