"""
Streaming: flag anomalies in readings as they arrive
====================================================

A sensor sends a reading every 0.25 s: the horizontal position of the driven
pendulum of the forecasting example. A GRU trained with
``output="sequence"`` forecasts, at every step, the next reading.
:class:`skrnn.Stream` serves it one reading at a time: each call takes the
newest reading, carries the network's state, and returns the forecast of the
next one, at the cost of one step instead of the whole history.

A reading is flagged when it lies further from its forecast than 99.9 % of
the one-step errors on the training series. Into the test stream,
some readings are replaced by a glitch (a jump of 0.3); the script prints
how many of them are flagged, how many normal readings are, and the time a
step takes.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Where the figure ``streaming_anomalies.png`` is saved (default: the
    current folder).
SKRNN_EXAMPLES_QUICK
    ``1`` shortens the training series so that the script runs in a few
    seconds (the test suite uses it).

The plot needs matplotlib; without it the script still runs and says that
it skipped the plot.

Run: ``python examples/plot_streaming_anomalies.py``
"""

import os
import time
import warnings

import numpy as np
from scipy.integrate import solve_ivp
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceRegressor, Stream

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# a fixed epoch budget, whether or not the loss has settled
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


series = pendulum(4000 if QUICK else 8000)
cut = len(series) - 1000  # the last 1000 readings arrive as a stream
# training: chunks of 200 readings, the next reading as the target of each step
chunk = 200
starts = np.arange(0, cut - chunk - 1, 50)
X = np.stack([series[s : s + chunk] for s in starts])[:, :, None]
y = np.stack([series[s + 1 : s + chunk + 1] for s in starts])
model = SequenceRegressor(
    output="sequence",
    hidden_size=32,
    learning_rate_init=0.005,
    batch_size=8,
    max_iter=30 if QUICK else 60,
    random_state=0,
).fit(X, y)
errors = np.abs(model.predict(X) - y)[:, 20:]  # past the first steps of a chunk
threshold = np.quantile(errors, 0.999)  # above 99.9 % of the training errors
print(f"trained on {len(X)} chunks of {chunk} readings; threshold {threshold:.4f}")

# the test stream, with glitches at 20 random readings
rng = np.random.RandomState(1)
stream_values = series[cut:].copy()
glitches = np.sort(rng.choice(np.arange(50, len(stream_values)), 20, replace=False))
stream_values[glitches] += 0.3

# warm up on the readings before the stream, then read one at a time
stream = Stream(model)
for value in series[cut - chunk : cut]:
    forecast = stream.predict([value])[0]
flagged, forecasts, seconds = [], [], []
for t, value in enumerate(stream_values):
    if abs(value - forecast) > threshold:
        flagged.append(t)
    forecasts.append(forecast)
    start = time.perf_counter()
    forecast = stream.predict([value])[0]  # the forecast of reading t + 1
    seconds.append(time.perf_counter() - start)
flagged = np.array(flagged)
caught = np.isin(glitches, flagged).mean()
# a glitch also sets off the forecasts of the few readings after it
after = np.concatenate([glitches + k for k in range(4)])
false_alarms = np.setdiff1d(flagged, after).size
print(f"glitches flagged: {caught:.2f} of {len(glitches)}")
print(
    f"normal readings flagged: {false_alarms} of {len(stream_values) - len(glitches)}"
)
print(f"median time of a step: {np.median(seconds) * 1e6:.0f} us")

# %%
# The figure (when matplotlib is installed).

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("\nmatplotlib is not installed: plot skipped")
else:
    shown = np.arange(0, 300)
    fig, ax = plt.subplots(figsize=(11, 4), layout="constrained")
    ax.plot(shown * 0.25, stream_values[shown], color="black", lw=1, label="reading")
    ax.plot(
        shown * 0.25,
        np.array(forecasts)[shown],
        color="tab:red",
        lw=1,
        label="forecast from the readings before it",
    )
    marks = flagged[flagged < len(shown)]
    ax.plot(
        marks * 0.25,
        stream_values[marks],
        "o",
        mfc="none",
        mec="tab:blue",
        ms=9,
        label="flagged",
    )
    ax.set_xlabel("seconds into the stream")
    ax.set_ylabel("sin(theta)")
    ax.set_title("A streamed GRU forecasts each reading; glitches stand out")
    ax.legend(loc="lower right")
    path = os.path.join(OUTPUT, "streaming_anomalies.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")
