"""
Which steps drove a prediction: integrated gradients of a recurrent model
=========================================================================

:func:`skrnn.inspection.step_attributions` says how much each step and
feature of a sequence moved the model's prediction, from the gradients of the
network's backward pass. With integrated gradients (the default) a
sequence's attributions add up to its prediction minus that of a baseline
(zeros by default).

First a task whose answer is known, the adding problem: each sequence holds
30 random values and two markers, and the target is the sum of the two
marked values. An LSTM learns it; the attributions should point at the two
marked steps and nowhere else.

Then a real series, the monthly CO2 concentration at Mauna Loa (as in the
forecasting example): a GRU forecasts the change over the next 6 months
from the last 36, and the attributions, averaged over the test windows,
show which months of the window it reads.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Where the figure ``step_attributions.png`` is saved (default: the current
    folder).

The script runs in a few seconds, so it has no quick mode. It needs
statsmodels for the CO2 data; the plot needs matplotlib.

Run: ``python examples/plot_step_attributions.py``
"""

import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from statsmodels.datasets import co2

from skrnn import SequenceRegressor
from skrnn.inspection import step_attributions
from skrnn.preprocessing import sliding_windows

OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# fixed epoch budgets, whether or not the loss has settled
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def make_adding(n, T, random_state):
    """The adding problem: (n, T, 2) sequences of values and markers, their
    targets, and the marked steps (n, 2)."""
    rng = np.random.RandomState(random_state)
    values, markers = rng.uniform(size=(n, T)), np.zeros((n, T))
    first, second = rng.randint(0, T // 10, n), rng.randint(T // 2, T, n)
    markers[np.arange(n), first] = markers[np.arange(n), second] = 1.0
    y = values[np.arange(n), first] + values[np.arange(n), second]
    return np.stack([values, markers], axis=2), y, np.stack([first, second], axis=1)


T = 30
X, y, _ = make_adding(2000, T, random_state=0)
X_test, y_test, marked = make_adding(200, T, random_state=1)
adder = SequenceRegressor(
    cell="lstm",
    hidden_size=32,
    learning_rate_init=0.01,
    batch_size=32,
    max_iter=20,
    random_state=0,
).fit(X, y)
print(f"adding problem, T = {T}: held-out R^2 = {adder.score(X_test, y_test):.3f}")

start = time.perf_counter()
attributions = step_attributions(adder, X_test)  # (200, 30, 2)
seconds = time.perf_counter() - start
per_step = np.abs(attributions).sum(axis=2)  # each step: both features
top_two = np.sort(np.argsort(per_step, axis=1)[:, -2:], axis=1)
hits = np.mean((top_two == np.sort(marked, axis=1)).all(axis=1))
print(
    f"integrated gradients of {len(X_test)} sequences (50 points each): {seconds:.2f} s"
)
print(f"sequences whose two largest attributions are the marked steps: {hits:.3f}")
completeness = attributions.sum(axis=(1, 2)) - (
    adder.predict(X_test) - adder.predict(np.zeros_like(X_test))
)
gap = np.abs(completeness).max()
print(f"largest |sum of attributions - change of prediction|: {gap:.4f}")

# %%
# A real series: which months of a 36-month window a 6-month forecast of the
# CO2 concentration reads.

monthly = co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
windows, future = sliding_windows(monthly.to_numpy(), 36, horizon=6)
last = windows[:, -1, 0]
W, change = windows - last[:, None, None], future - last  # relative to the last month
forecaster = SequenceRegressor(random_state=0).fit(W[:-120], change[:-120])
print(
    f"\nCO2, 6 months ahead: test R^2 = {forecaster.score(W[-120:], change[-120:]):.3f}"
)
co2_attributions = step_attributions(forecaster, W[-120:])[:, :, 0]
reading = np.abs(co2_attributions).mean(axis=0)  # (36,): month 0 the oldest
# window month i is (35 - i) + 6 months before the forecast month
before = 41 - np.arange(36)
most = before[np.argsort(reading)[::-1][:3]]
print(
    "the months of the window it reads most, in months before the forecast "
    f"month: {', '.join(map(str, most))}"
)

# %%
# The figure (when matplotlib is installed).

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("\nmatplotlib is not installed: plot skipped")
else:
    fig, (ax_add, ax_co2) = plt.subplots(
        1, 2, figsize=(12, 4.5), layout="constrained", width_ratios=[3, 2]
    )
    shown = per_step[:12]
    image = ax_add.imshow(shown, aspect="auto", cmap="Reds")
    for row, steps in enumerate(marked[:12]):
        ax_add.plot(steps, [row, row], "o", mfc="none", mec="black", ms=9)
    ax_add.set_xlabel("time step")
    ax_add.set_ylabel("test sequence")
    ax_add.set_title("Adding problem: |attributions| per step (circles: marked)")
    fig.colorbar(image, ax=ax_add)
    ax_co2.bar(before, reading, color="tab:red")
    ax_co2.set_xlabel("months before the forecast month")
    ax_co2.set_ylabel("mean |attribution| (ppm)")
    ax_co2.invert_xaxis()
    ax_co2.set_title("CO2, 6 months ahead: what the GRU reads")
    path = os.path.join(OUTPUT, "step_attributions.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")
