import numpy as np
from mapie.regression import CrossConformalRegressor

from skrnn import SequenceRegressor

# noisy sums of sequences of 3 features: 90 % intervals by cross-conformal
rng = np.random.RandomState(0)
X = rng.normal(size=(600, 10, 3))
y = X[:, :, 0].sum(axis=1) + rng.normal(scale=0.5, size=600)
mapie = CrossConformalRegressor(
    SequenceRegressor(random_state=0), confidence_level=0.9, cv=5, random_state=0
)
mapie.fit_conformalize(X[:400], y[:400])
_, intervals = mapie.predict_interval(X[400:])
low, high = intervals[:, 0, 0], intervals[:, 1, 0]
covered = np.mean((low <= y[400:]) & (y[400:] <= high))
width = np.mean(high - low)
print(f"coverage of the 90 % intervals: {covered:.3f}, mean width {width:.2f}")
