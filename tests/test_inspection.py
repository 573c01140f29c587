"""skrnn.inspection: permutation importance (the informative features and
steps of synthetic tasks come first; any input form; scikit-learn's scoring
and Bunch) and step attributions (integrated gradients add up, gradients are
central differences of predict, the adding problem's marked steps come
first)."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.inspection import permutation_importance, step_attributions
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


# -------------------------------------------------------- step_attributions
CELLS = [
    {"cell": "rnn"},
    {"cell": "gru"},
    {"cell": "gru", "reset_after": False},
    {"cell": "lstm"},
]


def _small_task(n=60, T=8, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, T, 2))
    return X, 2 * X[:, 2, 0] + X[:, 5, 1]


@pytest.mark.parametrize("params", CELLS, ids=lambda p: "-".join(map(str, p.values())))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_integrated_gradients_add_up_to_the_change_of_the_prediction(
    params, bidirectional
):
    X, y = _small_task()
    model = _fit(
        SequenceRegressor(
            hidden_size=8,
            num_layers=2,
            bidirectional=bidirectional,
            max_iter=30,
            random_state=0,
            dtype="float64",
            **params,
        ),
        X,
        y,
    )
    a = step_attributions(model, X[:10])  # 50 steps, baseline zeros
    change = model.predict(X[:10]) - model.predict(np.zeros_like(X[:10]))
    np.testing.assert_allclose(a.sum(axis=(1, 2)), change, rtol=0.01)


@pytest.mark.parametrize("params", CELLS, ids=lambda p: "-".join(map(str, p.values())))
def test_a_classifiers_attributions_add_up_to_its_log_odds(params):
    X, y = _small_task()
    model = _fit(
        SequenceClassifier(
            hidden_size=8, max_iter=30, random_state=0, dtype="float64", **params
        ),
        X,
        y > 0,
    )
    a = step_attributions(model, X[:10], target=True)  # the log-odds of True

    def log_odds(Z):
        p = model.predict_proba(Z)
        return np.log(p[:, 1]) - np.log(p[:, 0])

    change = log_odds(X[:10]) - log_odds(np.zeros_like(X[:10]))
    np.testing.assert_allclose(a.sum(axis=(1, 2)), change, rtol=0.01)


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_gradients_are_central_differences_of_predict(output):
    X, y = _small_task()
    y = y if output == "last" else np.cumsum(X[:, :, 0], axis=1)
    model = _fit(
        SequenceRegressor(
            cell="lstm",
            hidden_size=6,
            output=output,
            max_iter=10,
            random_state=0,
            dtype="float64",
        ),
        X,
        y,
    )
    Z = X[:3]
    grad = step_attributions(model, Z, method="gradient", time_step=None)

    def f(V):
        out = model.predict(V)
        return out if output == "last" else out[:, -1]

    numeric = np.zeros_like(Z)
    for index in np.ndindex(*Z.shape):
        up, down = Z.copy(), Z.copy()
        up[index] += 1e-6
        down[index] -= 1e-6
        numeric[index] = (f(up)[index[0]] - f(down)[index[0]]) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    x_input = step_attributions(model, Z, method="gradient_x_input")
    np.testing.assert_allclose(x_input, grad * Z, rtol=1e-12)


def test_occlusion_is_the_change_when_one_value_is_the_baselines():
    X, y = _small_task()
    model = _fit(
        SequenceRegressor(hidden_size=6, max_iter=10, random_state=0, dtype="float64"),
        X,
        y,
    )
    a = step_attributions(model, X[:4], method="occlusion", baseline=[0.5, -1.0])
    occluded = X[:4].copy()
    occluded[:, 3, 1] = -1.0
    expected = model.predict(X[:4]) - model.predict(occluded)
    np.testing.assert_allclose(a[:, 3, 1], expected, rtol=1e-10, atol=1e-12)


def test_on_the_adding_problem_the_two_marked_steps_come_first():
    # a step's attribution: the sum of its features' absolute attributions
    def adding(n, T, seed):
        rng = np.random.RandomState(seed)
        values, markers = rng.uniform(size=(n, T)), np.zeros((n, T))
        first, second = rng.randint(0, T // 10, n), rng.randint(T // 2, T, n)
        markers[np.arange(n), first] = markers[np.arange(n), second] = 1.0
        X = np.stack([values, markers], axis=2)
        y = values[np.arange(n), first] + values[np.arange(n), second]
        return X, y, np.sort(np.stack([first, second], axis=1), axis=1)

    X, y, _ = adding(2000, 30, 0)
    X_test, y_test, marked = adding(200, 30, 1)
    model = _fit(
        SequenceRegressor(
            cell="lstm",
            hidden_size=32,
            learning_rate_init=0.01,
            batch_size=32,
            max_iter=20,
            random_state=0,
        ),
        X,
        y,
    )
    assert model.score(X_test, y_test) >= 0.95
    per_step = np.abs(step_attributions(model, X_test)).sum(axis=2)
    top_two = np.sort(np.argsort(per_step, axis=1)[:, -2:], axis=1)
    assert np.mean((top_two == marked).all(axis=1)) >= 0.95


def test_pipelines_and_ragged_lists_attribute_to_the_input_as_given():
    X, y = _small_task()
    raw = [x[:t] * 5 + 3 for x, t in zip(X, np.resize([8, 5, 3, 7], len(X)))]
    pipe = _fit(
        make_pipeline(
            SequenceScaler(),
            SequenceRegressor(
                hidden_size=8, max_iter=30, random_state=0, dtype="float64"
            ),
        ),
        raw,
        y,
    )
    base = np.array([3.0, 3.0])
    a = step_attributions(pipe, raw[:8], baseline=base)
    assert [v.shape for v in a] == [r.shape for r in raw[:8]]
    change = pipe.predict(raw[:8]) - pipe.predict(
        [np.broadcast_to(base, r.shape) for r in raw[:8]]
    )
    np.testing.assert_allclose([v.sum() for v in a], change, rtol=0.01)


def test_a_table_gets_attributions_of_its_shape():
    X, y = _small_task()
    table = X[:, :, 0]
    model = _fit(
        SequenceRegressor(hidden_size=6, max_iter=10, random_state=0, dtype="float64"),
        table,
        y,
    )
    a = step_attributions(model, table[:5])
    assert a.shape == (5, 8)
    change = model.predict(table[:5]) - model.predict(np.zeros((5, 8)))
    np.testing.assert_allclose(a.sum(axis=1), change, rtol=0.01)
    with pytest.raises(ValueError, match="expecting 8 features"):
        step_attributions(model, table[:5, :6])


def test_what_cannot_be_explained_is_refused():
    X, y = _small_task()
    model = _fit(SequenceRegressor(hidden_size=4, max_iter=2), X, y)
    with pytest.raises(ValueError, match="target must be an int in \\[0, 1\\)"):
        step_attributions(model, X[:2], target=1)
    with pytest.raises(
        ValueError, match="time_step is for models with output='sequence'"
    ):
        step_attributions(model, X[:2], time_step=3)
    with pytest.raises(ValueError, match="baseline of shape"):
        step_attributions(model, X[:2], baseline=np.zeros(3))
    classifier = _fit(SequenceClassifier(hidden_size=4, max_iter=2), X, y > 0)
    with pytest.raises(ValueError, match="not one of the classes"):
        step_attributions(classifier, X[:2], target="cat")
    with pytest.raises(TypeError, match="Pipeline of SequenceScalers"):
        step_attributions(make_pipeline(SequenceScaler()), X[:2])
