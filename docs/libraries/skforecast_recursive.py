import numpy as np
import pandas as pd
from skforecast.recursive import ForecasterRecursive
from sklearn.pipeline import make_pipeline

from skrnn import SequenceRegressor
from skrnn.preprocessing import TableToSequences

t = np.arange(600)
y = pd.Series(np.sin(t / 8) + 0.1 * np.random.RandomState(0).normal(size=600))
forecaster = ForecasterRecursive(
    estimator=make_pipeline(
        TableToSequences(24, order="newest_first"),  # lag_1, lag_2, ...: newest first
        SequenceRegressor(random_state=0),
    ),
    lags=24,
)
forecaster.fit(y=y[:-50])
forecast = forecaster.predict(steps=50)
print(f"MAE of 50 steps ahead: {np.abs(forecast - y[-50:]).mean():.3f}")
