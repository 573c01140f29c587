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
    w = np.full(5, 0.2)
    assert squared_error.constant_loss(np.full((5, 1), 3.0), w) == 0.0
    assert binary_log_loss.constant_loss(np.ones(5, dtype=np.intp), w) == 0.0
