"""The head's losses: the loss of the best constant output, against the
loss itself at that constant (a closed form each)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skrnn._losses import binary_log_loss, multi_log_loss, squared_error


def _weights(n, rng):
    w = rng.uniform(0.1, 2.0, n)
    return w / w.sum()


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_constant_loss_of_squared_error_is_at_the_weighted_mean(n_outputs):
    rng = np.random.RandomState(0)
    y, w = rng.normal(size=(40, n_outputs)) * 3 + 1, _weights(40, rng)
    best = np.broadcast_to(w @ y, y.shape)
    constant = squared_error.constant_loss(y, w)
    assert_allclose(constant, squared_error(best, y, w)[0], rtol=1e-12)
    # half the weighted variance, averaged over the outputs
    var = (w[:, None] * (y - w @ y) ** 2).sum(axis=0)
    assert_allclose(constant, 0.5 * var.mean(), rtol=1e-12)
    # no other constant does better
    for shift in (-0.1, 0.1):
        assert squared_error(best + shift, y, w)[0] > constant


def test_constant_loss_of_the_binary_log_loss_is_at_the_weighted_prior():
    rng = np.random.RandomState(1)
    y, w = rng.randint(0, 2, 50), _weights(50, rng)
    p = w @ y
    z = np.full((50, 1), np.log(p / (1 - p)))
    constant = binary_log_loss.constant_loss(y, w)
    assert_allclose(constant, binary_log_loss(z, y, w)[0], rtol=1e-12)
    assert_allclose(constant, -(p * np.log(p) + (1 - p) * np.log(1 - p)), rtol=1e-12)
    for shift in (-0.1, 0.1):
        assert binary_log_loss(z + shift, y, w)[0] > constant


def test_constant_loss_of_the_multi_log_loss_is_at_the_weighted_prior():
    rng = np.random.RandomState(2)
    y, w = rng.randint(0, 4, 60), _weights(60, rng)
    p = np.bincount(y, weights=w, minlength=4)
    z = np.broadcast_to(np.log(p), (60, 4))
    constant = multi_log_loss.constant_loss(y, w)
    assert_allclose(constant, multi_log_loss(z, y, w)[0], rtol=1e-12)
    assert_allclose(constant, -(p @ np.log(p)), rtol=1e-12)
    # a class no sample has adds nothing (0 log 0 = 0)
    assert_allclose(
        multi_log_loss.constant_loss(np.array([0, 0, 2]), np.full(3, 1 / 3)),
        -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)),
        rtol=1e-12,
    )


def test_constant_targets_have_a_constant_loss_of_zero():
    from skrnn._losses import regression_loss

    w = np.full(5, 0.2)
    assert squared_error.constant_loss(np.full((5, 1), 3.0), w) == 0.0
    assert binary_log_loss.constant_loss(np.ones(5, dtype=np.intp), w) == 0.0
    # a Gaussian's best constant has no bound there: not known
    assert regression_loss("gaussian").constant_loss(np.full((5, 1), 3.0), w) is None


# ------------------------------------------------- the regression losses
def _regression_cases():
    from skrnn._losses import regression_loss

    return {
        "squared_error": regression_loss("squared_error"),
        "absolute_error": regression_loss("absolute_error"),
        "poisson": regression_loss("poisson"),
        "quantile": regression_loss("quantile", [0.9, 0.1, 0.5]),
        "quantile-one": regression_loss("quantile", 0.3),
        "gaussian": regression_loss("gaussian"),
    }


REGRESSION = _regression_cases()


def _inputs(loss, n_targets=2, R=7, seed=0):
    rng = np.random.RandomState(seed)
    z = rng.normal(size=(R, loss.n_outputs(n_targets)))
    y = rng.normal(size=(R, n_targets)) * 2
    if loss.name == "poisson":
        y = rng.poisson(2.0, size=(R, n_targets)).astype(float)
    return z, y, _weights(R, rng)


@pytest.mark.parametrize("name", REGRESSION)
def test_regression_loss_gradients_are_central_differences(name):
    loss = REGRESSION[name]
    z, y, w = _inputs(loss)
    value, dz = loss(z, y, w)
    assert dz.shape == z.shape and np.isfinite(value)
    eps = 1e-6
    numeric = np.empty_like(z)
    for index in np.ndindex(*z.shape):
        up, down = z.copy(), z.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (loss(up, y, w)[0] - loss(down, y, w)[0]) / (2 * eps)
    np.testing.assert_allclose(dz, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", REGRESSION)
def test_regression_constant_loss_is_the_loss_of_the_best_constant(name):
    # no constant output, found by a search around the closed form, does
    # better than constant_loss; the closed form's own loss is it
    from scipy.optimize import minimize

    loss = REGRESSION[name]
    _, y, w = _inputs(loss, n_targets=1, R=40, seed=3)
    width = loss.n_outputs(1)
    best = minimize(
        lambda c: loss(np.broadcast_to(c, (40, width)), y, w)[0],
        np.zeros(width),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
    )
    constant = loss.constant_loss(y, w)
    assert constant <= best.fun + 1e-9
    assert constant == pytest.approx(best.fun, rel=1e-4, abs=1e-8)


def test_quantile_predictions_are_sorted_and_never_cross():
    loss = REGRESSION["quantile"]
    np.testing.assert_array_equal(loss.levels, [0.1, 0.5, 0.9])
    z = np.random.RandomState(0).normal(size=(50, 6)) * 5
    q = loss.predict(z, np.zeros(2), np.ones(2))
    assert q.shape == (50, 2, 3)
    assert (np.diff(q, axis=-1) > 0).all()


def test_poisson_predicts_positive_values_and_refuses_negative_targets():
    loss = REGRESSION["poisson"]
    assert (loss.predict(np.array([[-50.0], [3.0]]), 0, 1) > 0).all()
    with pytest.raises(ValueError, match="y >= 0"):
        loss.check_targets(np.array([1.0, -0.5]))
