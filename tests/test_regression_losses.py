"""The regressor's losses beyond squared error: what each predicts, its
intervals' coverage on held-out data, the targets it refuses, and how its
predictions are shaped."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_poisson_deviance

from skrnn import SequenceRegressor

LOSSES = ["squared_error", "absolute_error", "poisson", "quantile", "gaussian"]


def _fit(model, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **fit_params)


def _heteroscedastic(n, seed):
    """y = 2 x_last + noise whose scale grows with |x_last|: intervals must
    widen with it to cover their share."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 6, 1))
    x = X[:, -1, 0]
    y = 2 * x + (0.2 + 0.8 * np.abs(x)) * rng.normal(size=n)
    return X, y


_PARAMS = dict(hidden_size=16, batch_size=64, max_iter=60, random_state=0)


def test_quantile_interval_covers_its_share_of_held_out_data():
    X, y = _heteroscedastic(1500, 0)
    X_test, y_test = _heteroscedastic(2000, 1)
    # the pinball loss's gradients do not shrink with the error: at 1e-3 the
    # interval takes 150 epochs to widen with the noise, at 3e-3 under 100
    params = {**_PARAMS, "learning_rate_init": 3e-3, "max_iter": 100}
    model = _fit(
        SequenceRegressor(loss="quantile", quantile=[0.9, 0.1], **params), X, y
    )
    q = model.predict(X_test)
    assert q.shape == (2000, 2) and (q[:, 0] < q[:, 1]).all()  # sorted: 0.1, 0.9
    coverage = np.mean((q[:, 0] <= y_test) & (y_test <= q[:, 1]))
    assert abs(coverage - 0.8) < 0.05
    # the interval widens where the noise does
    x = X_test[:, -1, 0]
    width = q[:, 1] - q[:, 0]
    assert width[np.abs(x) > 1.5].mean() > 2 * width[np.abs(x) < 0.3].mean()


def test_gaussian_interval_covers_its_share_of_held_out_data():
    X, y = _heteroscedastic(1500, 0)
    X_test, y_test = _heteroscedastic(2000, 1)
    model = _fit(SequenceRegressor(loss="gaussian", **_PARAMS), X, y)
    mean, std = model.predict(X_test, return_std=True)
    np.testing.assert_array_equal(mean, model.predict(X_test))
    assert (std > 0).all()
    coverage = np.mean(np.abs(y_test - mean) <= 1.6449 * std)
    assert abs(coverage - 0.9) < 0.05
    x = X_test[:, -1, 0]
    assert std[np.abs(x) > 1.5].mean() > 2 * std[np.abs(x) < 0.3].mean()


def test_poisson_predicts_positive_counts_better_than_squared_error():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(1200, 5, 2))
    rate = np.exp(0.8 * X[:, -1, 0] - 0.5 * X[:, -2, 1])
    y = rng.poisson(rate).astype(float)
    train, test = slice(0, 800), slice(800, None)
    poisson = _fit(SequenceRegressor(loss="poisson", **_PARAMS), X[train], y[train])
    squared = _fit(SequenceRegressor(**_PARAMS), X[train], y[train])
    p = poisson.predict(X[test])
    assert (p > 0).all()
    # squared error's predictions may fall to or below 0, where the deviance
    # is not defined: floored at the smallest Poisson prediction
    s = np.maximum(squared.predict(X[test]), p.min())
    assert mean_poisson_deviance(y[test], p) < mean_poisson_deviance(y[test], s)


def test_absolute_error_predicts_the_median():
    # skewed noise: the median sits below the mean
    rng = np.random.RandomState(0)
    X = rng.normal(size=(1500, 4, 1))
    y = X[:, -1, 0] + rng.exponential(1.0, size=1500)
    model = _fit(SequenceRegressor(loss="absolute_error", **_PARAMS), X, y)
    residual = y - model.predict(X)
    assert abs(np.mean(residual > 0) - 0.5) < 0.05
    assert np.mean(residual) > 0.2  # the mean of Exp(1) is 1, its median 0.69


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("output", ["last", "sequence"])
def test_predictions_are_shaped_as_the_targets(loss, output):
    # a one-level quantile is a float: its predictions are shaped as y
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 5, 2))
    y = np.abs(X[:, :, 0]) if output == "sequence" else np.abs(X[:, -1, :])
    model = _fit(
        SequenceRegressor(loss=loss, output=output, hidden_size=4, max_iter=2), X, y
    )
    assert model.predict(X).shape == y.shape
    assert np.isfinite(model.score(X, y))


def test_a_quantile_list_adds_a_last_axis_a_float_does_not():
    X, y = _heteroscedastic(60, 0)
    params = dict(loss="quantile", hidden_size=4, max_iter=2, random_state=0)
    assert _fit(SequenceRegressor(quantile=0.3, **params), X, y).predict(X).shape == (
        60,
    )
    q = _fit(SequenceRegressor(quantile=[0.7, 0.2, 0.5], **params), X, y).predict(X)
    assert q.shape == (60, 3)
    assert (np.diff(q, axis=1) > 0).all()
    Y = np.column_stack([y, -y])
    q = _fit(SequenceRegressor(quantile=[0.2, 0.8], **params), X, Y).predict(X)
    assert q.shape == (60, 2, 2)


def test_the_score_is_r2_of_the_median_or_the_level_nearest_it():
    from sklearn.metrics import r2_score

    X, y = _heteroscedastic(60, 0)
    for levels, column in [
        ([0.1, 0.5, 0.9], 1),
        ([0.2, 0.45, 0.9], 1),
        ([0.8, 0.9], 0),
    ]:
        model = _fit(
            SequenceRegressor(
                loss="quantile", quantile=levels, hidden_size=4, max_iter=3
            ),
            X,
            y,
        )
        assert model.score(X, y) == pytest.approx(
            r2_score(y, model.predict(X)[:, column]), rel=1e-12
        )


@pytest.mark.parametrize(
    "params, y_change, match",
    [
        ({"loss": "poisson"}, lambda y: y - 5, "y >= 0"),
        ({"loss": "quantile", "quantile": [0.1, 1.0]}, None, "float in \\(0, 1\\)"),
        ({"loss": "quantile", "quantile": [0.3, 0.3]}, None, "distinct"),
        ({"loss": "quantile", "quantile": []}, None, "non-empty"),
    ],
)
def test_bad_losses_and_targets_are_refused_before_anything_changes(
    params, y_change, match
):
    X, y = _heteroscedastic(30, 0)
    y = np.abs(y)
    model = SequenceRegressor(hidden_size=4, max_iter=2, **params)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y if y_change is None else y_change(y))
    assert not hasattr(model, "coefs_")


def test_return_std_needs_the_gaussian_loss():
    X, y = _heteroscedastic(30, 0)
    model = _fit(SequenceRegressor(hidden_size=4, max_iter=2), X, y)
    with pytest.raises(ValueError, match="return_std=True needs loss='gaussian'"):
        model.predict(X, return_std=True)


def test_gaussian_std_per_step_and_per_sequence_of_a_list():
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(t, 1)) for t in (3, 7, 5)]
    y = [x[:, 0] * 2 for x in X]
    model = _fit(
        SequenceRegressor(
            loss="gaussian", output="sequence", hidden_size=4, max_iter=2
        ),
        X,
        y,
    )
    mean, std = model.predict(X, return_std=True)
    assert [m.shape for m in mean] == [(3,), (7,), (5,)]
    assert [s.shape for s in std] == [(3,), (7,), (5,)]
    assert all((s > 0).all() for s in std)


def test_another_quantile_list_is_another_model():
    X, y = _heteroscedastic(30, 0)
    model = _fit(
        SequenceRegressor(
            loss="quantile", quantile=[0.1, 0.9], hidden_size=4, max_iter=2
        ),
        X,
        y,
    )
    model.set_params(quantile=[0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="another network"):
        model.partial_fit(X, y)
    model.set_params(quantile=[0.1, 0.9])
    model.partial_fit(X, y)
    model.set_params(quantile=np.array([0.1, 0.9]))  # the same levels
    model.partial_fit(X, y)


@pytest.mark.parametrize("loss", LOSSES)
def test_integer_sample_weight_equals_repeated_rows(loss):
    X, y = _heteroscedastic(20, 0)
    y = np.abs(y)
    params = dict(
        loss=loss,
        hidden_size=4,
        max_iter=3,
        dtype="float64",
        random_state=0,
        shuffle=False,
        batch_size=100,
    )
    weights = np.arange(20) % 3
    weighted = _fit(SequenceRegressor(**params), X, y, sample_weight=weights)
    repeated = _fit(
        SequenceRegressor(**params), np.repeat(X, weights, 0), np.repeat(y, weights)
    )
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-9)
