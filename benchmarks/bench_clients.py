"""skforecast with skrnn, before and after TableToSequences.

skforecast's ``ForecasterRecursive`` hands its estimator a lag table, the
newest lag first (``lag_1, lag_2, ...``). A ``SequenceRegressor`` given that
table as it is reads column 0 as the oldest step: it trains on windows
reversed in time. With ``TableToSequences(n_lags, order="newest_first")``
first in the pipeline it reads them in time order. Compared on the driven
pendulum of the forecasting example (4,000 readings, the last 20 % held
out, 24 lags), default GRU, 3 seeds: the one-step mean absolute error on the
held-out readings, and the 12-step recursive one from 40 origins in the
held-out part; Ridge on the same lag table as a reference.

skforecast is needed (``pip install skforecast``), in the environment that
runs this script only.

Usage::

    python benchmarks/bench_clients.py
"""

import warnings

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from skrnn import SequenceRegressor
from skrnn.preprocessing import TableToSequences

N_LAGS, HORIZON, N_ORIGINS = 24, 12, 40


def pendulum(n_readings, dt=0.25, noise=0.01, random_state=0):
    """sin(theta) of the driven pendulum of the forecasting example."""

    def motion(t, state):
        theta, omega = state
        return [omega, -0.5 * omega - np.sin(theta) + 1.2 * np.cos(2 * t / 3)]

    times = np.arange(n_readings) * dt
    solution = solve_ivp(motion, (0, times[-1]), [0.2, 0.0], t_eval=times, rtol=1e-8)
    rng = np.random.RandomState(random_state)
    return np.sin(solution.y[0]) + noise * rng.normal(size=n_readings)


def errors(estimator, series, cut):
    """One-step and 12-step recursive MAE on the readings after ``cut``."""
    from skforecast.recursive import ForecasterRecursive

    forecaster = ForecasterRecursive(estimator=estimator, lags=N_LAGS)
    forecaster.fit(y=series[:cut])
    # one step: the fitted estimator on the lag table of the held-out part
    X_all, y_all = forecaster.create_train_X_y(y=series)
    held_out = y_all.index >= cut
    one_step = forecaster.estimator.predict(X_all[held_out].to_numpy())
    mae_1 = np.mean(np.abs(one_step - y_all[held_out].to_numpy()))
    origins = np.linspace(cut, len(series) - HORIZON, N_ORIGINS).astype(int)
    mae_12 = np.mean(
        [
            np.mean(
                np.abs(
                    forecaster.predict(
                        steps=HORIZON, last_window=series[o - N_LAGS : o]
                    ).to_numpy()
                    - series[o : o + HORIZON].to_numpy()
                )
            )
            for o in origins
        ]
    )
    return mae_1, mae_12


def main():
    warnings.simplefilter("ignore")  # the clients' and the fixed epoch budget's
    series = pd.Series(pendulum(4000), name="y")
    cut = int(0.8 * len(series))
    print("| estimator | seed | one-step MAE | 12-step MAE |")
    print("|---|---|---|---|")
    for seed in range(3):
        for name, estimator in [
            (
                "SequenceRegressor on the lag table",
                SequenceRegressor(random_state=seed),
            ),
            (
                "TableToSequences(24, order='newest_first') + SequenceRegressor",
                make_pipeline(
                    TableToSequences(N_LAGS, order="newest_first"),
                    SequenceRegressor(random_state=seed),
                ),
            ),
        ]:
            mae_1, mae_12 = errors(estimator, series, cut)
            print(f"| {name} | {seed} | {mae_1:.4f} | {mae_12:.4f} |", flush=True)
    mae_1, mae_12 = errors(Ridge(), series, cut)
    print(f"| Ridge on the lag table | - | {mae_1:.4f} | {mae_12:.4f} |")


if __name__ == "__main__":
    main()
