"""skrnn.inspection.permutation_importance: the informative features and
steps of synthetic tasks come first; any input form; scikit-learn's scoring
and Bunch."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.inspection import permutation_importance
from skrnn.preprocessing import SequenceScaler


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


@pytest.fixture(scope="module")
def task():
    """y reads step 1 of feature 0 and step 4 of feature 2 only."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 6, 3))
    y = 2 * X[:, 1, 0] + X[:, 4, 2]
    model = _fit(SequenceRegressor(hidden_size=16, max_iter=100, random_state=0), X, y)
    return model, X, y


def test_the_informative_steps_come_first(task):
    model, X, y = task
    result = permutation_importance(model, X, y, by="step", random_state=0)
    assert result.importances.shape == (6, 5)
    assert set(np.argsort(result.importances_mean)[-2:]) == {1, 4}
    np.testing.assert_allclose(result.importances_mean, result.importances.mean(axis=1))
    np.testing.assert_allclose(result.importances_std, result.importances.std(axis=1))


def test_the_informative_features_come_first(task):
    model, X, y = task
    result = permutation_importance(model, X, y, n_repeats=3, random_state=0)
    assert result.importances.shape == (3, 3)
    assert np.argsort(result.importances_mean).tolist()[-2:] == [2, 0]
    # the same seed, the same shuffles
    again = permutation_importance(model, X, y, n_repeats=3, random_state=0)
    np.testing.assert_array_equal(again.importances, result.importances)


def test_features_of_variable_length_sequences_and_a_pipeline():
    rng = np.random.RandomState(1)
    X = [rng.normal(size=(t, 2)) for t in rng.randint(3, 9, size=200)]
    y = np.array([x[:, 1].sum() > 0 for x in X]).astype(int)
    pipe = _fit(
        make_pipeline(
            SequenceScaler(),
            SequenceClassifier(hidden_size=8, max_iter=60, random_state=0),
        ),
        X,
        y,
    )
    result = permutation_importance(pipe, X, y, scoring="accuracy", random_state=0)
    assert result.importances_mean[1] > result.importances_mean[0] + 0.1
    with pytest.raises(ValueError, match="equal length"):
        permutation_importance(pipe, X, y, by="step")


def test_the_baseline_is_the_estimators_score_with_sample_weight(task):
    model, X, y = task
    w = np.random.RandomState(2).uniform(0.5, 2.0, len(y))
    result = permutation_importance(
        model, X, y, by="step", n_repeats=1, sample_weight=w, random_state=0
    )
    # shuffling step 1 of every sequence by hand gives the same drop
    rng = np.random.RandomState(0)
    for t in range(6):
        shuffled = X.copy()
        shuffled[:, t] = shuffled[rng.permutation(len(X)), t]
        drop = model.score(X, y, sample_weight=w) - model.score(
            shuffled, y, sample_weight=w
        )
        assert result.importances[t, 0] == pytest.approx(drop, rel=1e-12, abs=1e-12)
