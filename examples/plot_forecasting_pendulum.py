"""
Forecasting a driven pendulum, one step ahead, from windows of its past
=======================================================================

The series: the horizontal position sin(theta) of a damped pendulum driven
by a periodic torque,

    theta'' = -0.5 theta' - sin(theta) + 1.2 cos(2 t / 3),

a textbook chaotic system (Baker & Gollub, *Chaotic Dynamics*), integrated
with SciPy's ``solve_ivp`` and read every 0.25 s with a little measurement
noise. Its swings never repeat, so the next reading is not a lookup: a
model has to learn how the pendulum moves.

:func:`skrnn.preprocessing.sliding_windows` cuts the series into windows of
24 readings, each with the reading after it as its target. The windows
overlap, so a random validation split would hold out windows whose readings
the training windows contain: the series is split in time instead (train,
then validation, then test), and the validation windows go to ``fit`` as
``X_val`` / ``y_val`` for early stopping. The forecast is compared on the
test period with the naive one that repeats the last reading.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Where the figure ``forecasting_pendulum.png`` is saved (default: the
    current folder).
SKRNN_EXAMPLES_QUICK
    ``1`` shortens the series and the training so that the script runs in a
    few seconds (the test suite uses it).

The plot needs matplotlib; without it the script still runs and says that
it skipped the plot.

Run: ``python examples/plot_forecasting_pendulum.py``
"""

import os
import warnings

import numpy as np
from scipy.integrate import solve_ivp
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceRegressor
from skrnn.preprocessing import sliding_windows

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# the epoch budget of the quick mode is fixed on purpose
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def pendulum(n_readings, dt=0.25, noise=0.01, random_state=0):
    """sin(theta) of the driven pendulum, every ``dt`` seconds, with noise."""

    def motion(t, state):
        theta, omega = state
        return [omega, -0.5 * omega - np.sin(theta) + 1.2 * np.cos(2 * t / 3)]

    times = np.arange(n_readings) * dt
    solution = solve_ivp(motion, (0, times[-1]), [0.2, 0.0], t_eval=times, rtol=1e-8)
    rng = np.random.RandomState(random_state)
    return np.sin(solution.y[0]) + noise * rng.normal(size=n_readings)


window = 24
series = pendulum(1500 if QUICK else 6000)
# in time order: 60 % to train on, 20 % for early stopping, 20 % to test
cut_val, cut_test = int(0.6 * len(series)), int(0.8 * len(series))
X_train, y_train = sliding_windows(series[:cut_val], window)
X_val, y_val = sliding_windows(series[cut_val - window : cut_test], window)
X_test, y_test = sliding_windows(series[cut_test - window :], window)
print(
    f"{len(series)} readings: {len(y_train)} training, {len(y_val)} validation "
    f"and {len(y_test)} test windows of {window} steps"
)

model = SequenceRegressor(
    cell="gru",
    hidden_size=32,
    learning_rate_init=0.005,
    batch_size=64,
    max_iter=15 if QUICK else 200,
    early_stopping=True,
    n_iter_no_change=15,
    random_state=0,
)
model.fit(X_train, y_train, X_val=X_val, y_val=y_val)
print(
    f"GRU: {model.n_iter_} epochs, best validation R^2 = "
    f"{model.best_validation_score_:.4f}"
)

forecast = model.predict(X_test)
naive = X_test[:, -1, 0]  # the last reading of each window
rmse_model = np.sqrt(np.mean((forecast - y_test) ** 2))
rmse_naive = np.sqrt(np.mean((naive - y_test) ** 2))
print(f"test RMSE, GRU forecast:         {rmse_model:.4f}")
print(f"test RMSE, naive last value:     {rmse_naive:.4f}")
print(f"GRU error / naive error:         {rmse_model / rmse_naive:.3f}")

# %%
# The figure (when matplotlib is installed).

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("\nmatplotlib is not installed: plot skipped")
else:
    shown = slice(0, 240)
    t = np.arange(len(y_test))[shown] * 0.25
    fig = plt.figure(figsize=(11, 6), layout="constrained")
    ax_series, ax_error = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    ax_series.plot(t, y_test[shown], color="black", lw=1.5, label="truth")
    ax_series.plot(t, forecast[shown], color="tab:red", lw=1.0, label="GRU forecast")
    ax_series.plot(
        t, naive[shown], color="tab:gray", lw=1.0, ls="--", label="naive: last value"
    )
    ax_series.set_ylabel("sin(theta)")
    fig.suptitle("Driven pendulum, one step (0.25 s) ahead, on the test period")
    ax_series.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3)
    ax_error.plot(
        t,
        np.abs(forecast - y_test)[shown],
        color="tab:red",
        lw=1.0,
        label=f"GRU (RMSE {rmse_model:.3f})",
    )
    ax_error.plot(
        t,
        np.abs(naive - y_test)[shown],
        color="tab:gray",
        lw=1.0,
        ls="--",
        label=f"naive (RMSE {rmse_naive:.3f})",
    )
    ax_error.set_xlabel("seconds into the test period")
    ax_error.set_ylabel("absolute error")
    ax_error.legend(loc="upper right")
    path = os.path.join(OUTPUT, "forecasting_pendulum.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")
