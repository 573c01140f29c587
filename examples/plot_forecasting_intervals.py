"""
Forecast intervals for a series with a trend and a season: CO2 at Mauna Loa
===========================================================================

The series: the monthly mean of the atmospheric CO2 concentration measured at
Mauna Loa, March 1958 to December 2001 (the weekly readings that statsmodels
ships, averaged by month, the few missing weeks interpolated). It rises by
about 1.5 ppm a year and swings by about 6 ppm within each year.

The task: from the last 36 months, forecast the concentration 6 months
ahead, with a 90 % interval. :func:`skrnn.preprocessing.sliding_windows`
cuts the series into windows and targets. Each window is read relative to
its last month (and the target as the change from it), so that a model
learns the season and the trend's slope rather than the level, which in the
test period lies above anything seen in training.

Three forecasts of the 5th, 50th and 95th percentiles, fitted on all but the
last 10 years and compared on those:

- :class:`~skrnn.SequenceRegressor` with ``loss="quantile"`` and
  ``quantile=[0.05, 0.5, 0.95]``: one model, three outputs that never cross;
- :class:`~sklearn.ensemble.HistGradientBoostingRegressor` with
  ``loss="quantile"``, one model per level, on the same 36 months as lag
  features;
- the seasonal-naive forecast, the same month a year before the target,
  with the quantiles of its training errors around it.

Each is scored by the coverage of its 90 % interval (the share of test
targets inside it) and by the pinball loss averaged over the three levels
(lower is better). Finally a conformal interval: MAPIE's split-conformal
regressor around a squared-error :class:`~skrnn.SequenceRegressor`, which
takes the windows as a table (one column per month).

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Where the figure ``forecasting_intervals.png`` is saved (default: the
    current folder).

The script runs in a few seconds as it is, so it has no quick mode.

Needs statsmodels for the data (``pip install statsmodels``); MAPIE for the
conformal interval and matplotlib for the plot are optional: without them the
script says what it skipped.

Run: ``python examples/plot_forecasting_intervals.py``
"""

import os
import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_pinball_loss
from statsmodels.datasets import co2

from skrnn import SequenceRegressor
from skrnn.preprocessing import sliding_windows

OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# 200 epochs, whether or not the loss has settled
warnings.filterwarnings("ignore", category=ConvergenceWarning)

monthly = co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
series = monthly.to_numpy()
window, horizon, levels = 36, 6, [0.05, 0.5, 0.95]
X, y = sliding_windows(series, window, horizon=horizon)
last = X[:, -1, 0]
X_rel, y_rel = X - last[:, None, None], y - last  # relative to the last month
n_test = 120  # the last 10 years of targets
train, test = slice(None, -n_test), slice(-n_test, None)
target_months = monthly.index[window + horizon - 1 :]
print(
    f"{len(series)} months, {len(y)} windows of {window}: {len(y) - n_test} to "
    f"train on, {n_test} to test ({target_months[-n_test]:%Y-%m} on)"
)


def report(name, q):
    """Coverage of the 90 % interval and the mean pinball loss, in ppm."""
    inside = (q[:, 0] <= y_rel[test]) & (y_rel[test] <= q[:, 2])
    pinball = np.mean(
        [mean_pinball_loss(y_rel[test], q[:, k], alpha=a) for k, a in enumerate(levels)]
    )
    print(f"{name:<26} coverage {inside.mean():.3f}   pinball {pinball:.4f}")
    return pinball


model = SequenceRegressor(loss="quantile", quantile=levels, random_state=0)
model.fit(X_rel[train], y_rel[train])
q_rnn = model.predict(X_rel[test])  # (n_test, 3): sorted, never crossing

lags = X_rel[:, :, 0]  # the same 36 months as a table
q_hgb = np.column_stack(
    [
        HistGradientBoostingRegressor(loss="quantile", quantile=a, random_state=0)
        .fit(lags[train], y_rel[train])
        .predict(lags[test])
        for a in levels
    ]
)

# the same month a year before the target: window step (window - 1) + horizon - 12
seasonal = X_rel[:, window - 1 + horizon - 12, 0]
errors = y_rel[train] - seasonal[train]
q_naive = seasonal[test, None] + np.quantile(errors, levels)[None, :]

print(f"\n{horizon} months ahead, on the test period (target interval: 90 %):")
pinball_rnn = report("GRU, loss='quantile'", q_rnn)
pinball_hgb = report("gradient boosting on lags", q_hgb)
pinball_naive = report("seasonal naive", q_naive)
print(
    f"GRU pinball / best baseline:  {pinball_rnn / min(pinball_hgb, pinball_naive):.3f}"
)

# %%
# A conformal interval: MAPIE calibrates the errors of a point forecast on the
# last 80 training windows, given as a table.
try:
    from mapie.regression import SplitConformalRegressor
except ImportError:
    print("\nMAPIE is not installed: conformal interval skipped")
else:
    n_cal = 80
    fit_rows, cal_rows = slice(None, -n_test - n_cal), slice(-n_test - n_cal, -n_test)
    conformal = SplitConformalRegressor(
        SequenceRegressor(random_state=0),
        confidence_level=0.9,
        prefit=False,
    )
    conformal.fit(lags[fit_rows], y_rel[fit_rows])
    conformal.conformalize(lags[cal_rows], y_rel[cal_rows])
    _, bounds = conformal.predict_interval(lags[test])
    low, high = bounds[:, 0, 0], bounds[:, 1, 0]
    inside = (low <= y_rel[test]) & (y_rel[test] <= high)
    print(
        f"{'MAPIE split conformal':<26} coverage {inside.mean():.3f}   "
        f"mean width {np.mean(high - low):.2f} ppm"
    )

# %%
# The figure (when matplotlib is installed): the test period, in ppm.

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("\nmatplotlib is not installed: plot skipped")
else:
    months = target_months[-n_test:]
    level = last[test, None]
    fig, ax = plt.subplots(figsize=(11, 5), layout="constrained")
    ax.fill_between(
        months,
        q_rnn[:, 0] + level[:, 0],
        q_rnn[:, 2] + level[:, 0],
        color="tab:red",
        alpha=0.25,
        label="GRU 90 % interval",
    )
    ax.plot(
        months, q_rnn[:, 1] + level[:, 0], color="tab:red", lw=1.2, label="GRU median"
    )
    ax.plot(months, y[test], color="black", lw=1.2, label="measured")
    ax.plot(
        months,
        q_naive[:, 1] + level[:, 0],
        color="tab:gray",
        lw=1.0,
        ls="--",
        label="seasonal naive median",
    )
    ax.set_ylabel("CO2 (ppm)")
    ax.set_title(f"Mauna Loa CO2, {horizon} months ahead, on the test period")
    ax.legend(loc="upper left")
    path = os.path.join(OUTPUT, "forecasting_intervals.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")
