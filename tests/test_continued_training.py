"""Training that continues (``warm_start``, ``partial_fit``) reads the
parameters as they are now: the optimiser's settings, the stopping rule, and
a refusal when they describe another network than the fitted one.

Every fit here runs a few epochs of a tiny model, so it ends with the
max_iter ConvergenceWarning, which is filtered for the whole module.
"""

import copy

import numpy as np
import pytest

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.optim import SGD

pytestmark = pytest.mark.filterwarnings(
    "ignore:Stochastic Optimizer:sklearn.exceptions.ConvergenceWarning"
)

ESTIMATORS = [SequenceRegressor, SequenceClassifier]


def _data(Est, n=30, T=6, D=2, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, T, D))
    s = X.sum(axis=(1, 2))
    return X, (s if Est is SequenceRegressor else (s > 0).astype(int))


def _flat(model):
    return np.concatenate([v.ravel() for v in model.coefs_.values()]).copy()


def _continue(model, how, X, y):
    """One more round of training: a warm fit, or partial_fit."""
    if how == "warm_start":
        return model.set_params(warm_start=True).fit(X, y)
    if isinstance(model, SequenceClassifier):
        return model.partial_fit(X, y, classes=[0, 1])
    return model.partial_fit(X, y)


# ------------------------------------------------------------- the optimiser
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_new_learning_rate_is_used(Est, how):
    """Fine-tuning at 1e-6 after training at 0.05 moves the weights by about
    1e-6 per step (Adam's step is at most about the learning rate), not by
    the earlier rate."""
    X, y = _data(Est)
    params = dict(
        hidden_size=6,
        max_iter=5,
        batch_size=10,
        learning_rate_init=0.05,
        random_state=0,
    )
    model = Est(**params).fit(X, y)
    before = _flat(model)
    _continue(model.set_params(learning_rate_init=1e-6), how, X, y)
    moved = np.abs(_flat(model) - before).max()
    steps = (5 if how == "warm_start" else 1) * 3
    assert 0 < moved <= 10 * steps * 1e-6
    # the same continuation at the old rate moves them by orders of magnitude more
    same = Est(**params).fit(X, y)
    _continue(same, how, X, y)
    assert np.abs(_flat(same) - before).max() > 100 * moved


@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_same_solver_keeps_its_state_and_takes_new_settings(how):
    X, y = _data(SequenceRegressor)
    model = SequenceRegressor(hidden_size=4, max_iter=3, batch_size=10, random_state=0)
    model.fit(X, y)
    assert model._optimizer.state["coefs"]["t"] == 9  # 3 epochs of 3 batches
    model.set_params(learning_rate_init=0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-6)
    _continue(model, how, X, y)
    optimizer = model._optimizer
    assert (
        optimizer.learning_rate,
        optimizer.beta_1,
        optimizer.beta_2,
        optimizer.epsilon,
    ) == (0.02, 0.5, 0.9, 1e-6)
    assert optimizer.state["coefs"]["t"] == 9 + (9 if how == "warm_start" else 3)


@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_another_solver_starts_afresh(how):
    X, y = _data(SequenceRegressor)
    model = SequenceRegressor(hidden_size=4, max_iter=2, batch_size=10, random_state=0)
    model.fit(X, y)
    model.set_params(
        solver="sgd", learning_rate_init=0.01, momentum=0.5, nesterovs_momentum=False
    )
    _continue(model, how, X, y)
    optimizer = model._optimizer
    assert isinstance(optimizer, SGD)
    assert (optimizer.learning_rate, optimizer.momentum, optimizer.nesterov) == (
        0.01,
        0.5,
        False,
    )
    assert set(optimizer.state["coefs"]) == {"velocity"}


def test_rprop_restarts_its_step_sizes_on_a_new_learning_rate():
    """Rprop's first update leaves every step size at learning_rate_init
    (there is no earlier gradient to compare signs with); later ones adapt
    them."""
    X, y = _data(SequenceRegressor)
    model = SequenceRegressor(
        hidden_size=4,
        max_iter=3,
        solver="rprop",
        learning_rate_init=0.01,
        random_state=0,
        dtype="float64",
    ).fit(X, y)

    def step_sizes():
        return model._optimizer.state["coefs"]["step_size"]

    assert not np.all(step_sizes() == np.float64(0.01))
    model.set_params(learning_rate_init=1e-5, max_iter=1, warm_start=True).fit(X, y)
    assert np.all(step_sizes() == np.float64(1e-5))
    model.fit(X, y)  # the same learning rate: the step sizes go on adapting
    assert not np.all(step_sizes() == np.float64(1e-5))


# -------------------------------------------------------------- the network
CHANGES = [
    ("hidden_size", 7),
    ("cell", "rnn"),
    ("num_layers", 2),
    ("bidirectional", True),
    ("output", "sequence"),
    ("dtype", "float32"),
    ("activation", "logistic"),
    ("use_bias", False),
    ("reset_after", False),
]


# the regressor's targets, standardised or not, are another model's too
REGRESSOR_CHANGES = [("normalize_y", False)]


@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
@pytest.mark.parametrize(
    "Est, name, value",
    [(Est, *change) for Est in ESTIMATORS for change in CHANGES]
    + [(SequenceRegressor, *change) for change in REGRESSOR_CHANGES],
)
def test_another_network_is_refused(Est, name, value, how):
    X, y = _data(Est)
    model = Est(hidden_size=4, max_iter=2, random_state=0, dtype="float64").fit(X, y)
    coefs = copy.deepcopy(model.coefs_)
    pred = model.predict(X)
    n_iter = model.n_iter_
    fitted_value = model.get_params()[name]
    model.set_params(**{name: value})
    with pytest.raises(
        ValueError, match=rf"another network.*{name}={value!r} \(fitted: "
    ):
        _continue(model, how, X, y)
    for key, array in coefs.items():
        np.testing.assert_array_equal(model.coefs_[key], array)
    np.testing.assert_array_equal(model.predict(X), pred)
    assert model.n_iter_ == n_iter
    # setting the parameter back lets training continue
    model.set_params(**{name: fitted_value})
    _continue(model, how, X, y)
    assert model.n_iter_ > n_iter


def test_what_does_not_change_the_network_is_accepted():
    """reset_after means nothing to an Elman cell, and dtype=None keeps the
    fitted precision: neither is a change of network."""
    X, y = _data(SequenceRegressor)
    model = SequenceRegressor(
        cell="rnn", hidden_size=4, max_iter=2, random_state=0, dtype="float32"
    ).fit(X, y)
    model.set_params(reset_after=False, dtype=None, warm_start=True).fit(X, y)
    assert model.n_iter_ == 4
    assert model.coefs_["weight_hh_l0"].dtype == np.float32


def test_a_fit_without_warm_start_builds_the_new_network():
    X, y = _data(SequenceRegressor)
    model = SequenceRegressor(hidden_size=4, max_iter=2, random_state=0).fit(X, y)
    model.set_params(hidden_size=7).fit(X, y)
    assert model.coefs_["weight_hh_l0"].shape == (21, 7)


# ------------------------------------------------------- the stopping rule
@pytest.mark.parametrize("first", ["fit", "partial_fit"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_early_stopping_switched_on_in_a_warm_fit(Est, first):
    X, y = _data(Est, n=40)
    model = Est(hidden_size=4, max_iter=3, random_state=0)
    if first == "fit":
        model.fit(X, y)
    else:
        _continue(model, "partial_fit", X, y)
    n_iter = model.n_iter_
    model.set_params(early_stopping=True, warm_start=True, max_iter=4).fit(X, y)
    assert model.n_iter_ == n_iter + 4
    assert len(model.validation_scores_) == 4
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.best_loss_ is None
    # and switched off again: the loss rule's attributes, from this fit's epochs
    model.set_params(early_stopping=False, max_iter=3).fit(X, y)
    assert model.validation_scores_ is None and model.best_validation_score_ is None
    assert model.best_loss_ == min(model.loss_curve_[-3:])
