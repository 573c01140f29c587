import numpy as np
from imblearn.over_sampling import RandomOverSampler
from sklearn.metrics import balanced_accuracy_score

from skrnn import SequenceClassifier

# 1 sequence in 20 is of the rare class, marked by a bump in feature 0
rng = np.random.RandomState(0)
X = rng.normal(size=(1200, 15, 2))
y = (rng.uniform(size=1200) < 0.05).astype(int)
X[y == 1, 5:8, 0] += 1.5
train, test = slice(0, 800), slice(800, None)

plain = SequenceClassifier(random_state=0).fit(X[train], y[train])
weighted = SequenceClassifier(class_weight="balanced", random_state=0)
weighted.fit(X[train], y[train])
# a sampler resamples a table: resample the sequences' indices, then take them
rows, _ = RandomOverSampler(random_state=0).fit_resample(
    np.arange(800)[:, None], y[train]
)
oversampled = SequenceClassifier(random_state=0).fit(X[rows[:, 0]], y[rows[:, 0]])
for name, model in [
    ("plain", plain),
    ("class_weight", weighted),
    ("oversampled", oversampled),
]:
    score = balanced_accuracy_score(y[test], model.predict(X[test]))
    print(f"{name}: balanced accuracy {score:.3f}")
