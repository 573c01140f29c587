"""The compiled end of a training step (penalty, gradient checks, clipping,
the optimiser's update), the CPU engine's, against the NumPy code that
specifies it: the optimisers of skrnn.optim and clip_grad_norm, which the
reference engine runs, and the GPU's on its arrays."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skrnn._engine import get_engine
from skrnn._update import add_penalty, update
from skrnn.optim import SGD, Adam, Rprop, _Optimizer

OPTIMIZERS = {
    "sgd-nesterov": lambda: SGD(learning_rate=0.01, momentum=0.9),
    "sgd-momentum": lambda: SGD(learning_rate=0.01, momentum=0.8, nesterov=False),
    "adam": lambda: Adam(learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-6),
    "rprop": lambda: Rprop(learning_rate=0.01, step_sizes=(1e-3, 0.02)),
}
# float64 as the issue asks (relative 1e-12 after 20 steps); float32 follows
# NumPy's operations in float32, but the clipping factor may round apart
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


CPU, REFERENCE = get_engine("cpu"), get_engine("reference")


def _engine(compiled):
    """The CPU engine, with compiled update kernels, or the reference
    engine, which has none and runs skrnn.optim's code (as on the GPU)."""
    return CPU if compiled else REFERENCE


def _params(dtype, rng, n=257):
    """A parameter vector as the estimators hold it."""
    flat = rng.normal(size=n).astype(dtype)
    mask = (rng.uniform(size=n) < 0.7).astype(dtype)  # weights, not biases
    return SimpleNamespace(flat=flat, grad=np.zeros_like(flat), weight_mask=mask)


def _steps(dtype, compiled, make_opt, clip_norm, n_steps=20):
    """Weights, optimiser state and what each step returned after
    ``n_steps`` steps on the same gradients."""
    rng = np.random.RandomState(0)
    engine = _engine(compiled)
    params = _params(dtype, rng)
    optimizer = make_opt()
    previous = np.empty_like(params.flat)
    returned = []
    for step in range(n_steps):
        # sizes from 0.01 to 100: some steps are clipped, some not; signs
        # flip now and then (Rprop's shrinking branch)
        params.grad[...] = rng.normal(size=params.flat.size) * 10.0 ** (step % 5 - 2)
        penalty, check = add_penalty(params, 0.3, engine)
        assert check[0]
        finite = update(optimizer, params, previous, clip_norm, check, engine)
        returned.append((float(penalty), bool(finite)))
    return params.flat, previous, optimizer.state["coefs"], returned


@pytest.mark.parametrize("clip_norm", [None, 1.0])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_compiled_step_end_follows_the_optimizers(name, dtype, clip_norm):
    make_opt = OPTIMIZERS[name]
    flat, previous, state, returned = _steps(dtype, True, make_opt, clip_norm)
    flat_ref, previous_ref, state_ref, returned_ref = _steps(
        dtype, False, make_opt, clip_norm
    )
    rtol = TOLERANCE[dtype]
    assert flat.dtype == np.dtype(dtype)
    assert_allclose(flat, flat_ref, rtol=rtol, atol=rtol)
    assert_allclose(previous, previous_ref, rtol=rtol, atol=rtol)
    for key, value in state_ref.items():
        assert_allclose(state[key], value, rtol=rtol, atol=rtol, err_msg=key)
    assert_allclose(
        [p for p, _ in returned],
        [p for p, _ in returned_ref],
        rtol=1e-6 if rtol > 1e-12 else 1e-12,
    )
    assert [f for _, f in returned] == [f for _, f in returned_ref] == [True] * 20
    # the weights moved: a test of nothing would pass the comparisons too
    assert np.abs(flat - _params(dtype, np.random.RandomState(0)).flat).max() > 1e-3


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_gradient_that_is_not_finite_is_reported(compiled, bad):
    params = _params("float64", np.random.RandomState(1))
    params.grad[5] = bad
    _, (finite, _) = add_penalty(params, 0.1, _engine(compiled))
    assert not finite


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_an_update_that_overflows_is_reported(compiled, name):
    params = _params("float32", np.random.RandomState(2))
    params.flat[3] = np.finfo(np.float32).max
    params.grad[...] = -1.0
    optimizer = OPTIMIZERS[name]()
    optimizer.learning_rate = 1e38  # one step from the largest float32 to inf
    if name == "rprop":
        optimizer = Rprop(learning_rate=1e38, step_sizes=(1e-6, 1e38))
    before = params.flat.copy()
    # the estimators train under this errstate: divergence is expected
    with np.errstate(over="ignore", invalid="ignore"):
        finite = update(
            optimizer,
            params,
            np.empty_like(before),
            None,
            (True, 1.0),
            _engine(compiled),
        )
    assert not finite
    assert np.isinf(params.flat[3])


def test_state_is_shared_with_the_optimizer_and_checked():
    """The compiled update advances the optimiser's own state, so that
    skrnn.optim continues from it, and refuses a vector of another shape."""
    rng = np.random.RandomState(3)
    params = _params("float64", rng)
    optimizer = Adam(learning_rate=0.01)
    params.grad[...] = rng.normal(size=params.flat.size)
    update(optimizer, params, np.empty_like(params.flat), None, (True, 1.0), CPU)
    state = copy.deepcopy(optimizer.state["coefs"])
    assert state["t"] == 1
    assert_array_equal(state["m"], (1 - 0.9) * params.grad)
    wrong = _params("float64", rng, n=10)
    with pytest.raises(ValueError, match="changed from shape"):
        update(optimizer, wrong, np.empty_like(wrong.flat), None, (True, 1.0), CPU)


def test_arrays_that_do_not_fit_raise_before_the_loops_run():
    """The loops run without bounds checks: every length is checked first."""
    rng = np.random.RandomState(4)
    params = _params("float64", rng)
    params.grad[...] = rng.normal(size=params.flat.size)
    before = params.flat.copy()
    with pytest.raises(ValueError, match="does not fit"):
        update(SGD(), params, np.empty(3), None, (True, 1.0), CPU)
    optimizer = Adam()
    update(optimizer, params, np.empty_like(before), None, (True, 1.0), CPU)
    optimizer.state["coefs"]["v"] = np.zeros(3)
    after_one_step = params.flat.copy()
    with pytest.raises(ValueError, match="does not fit"):
        update(optimizer, params, np.empty_like(before), None, (True, 1.0), CPU)
    np.testing.assert_array_equal(params.flat, after_one_step)
    assert optimizer.state["coefs"]["t"] == 1
    params.weight_mask = np.ones(3)
    with pytest.raises(ValueError, match="must fit"):
        add_penalty(params, 0.1, CPU)


class _Descent(_Optimizer):
    """Plain gradient descent: an optimizer the compiled update has no step
    for."""

    _ref_key = "seen"

    def _init_state(self, param):
        return {"seen": np.zeros_like(param)}

    def _update_one(self, param, grad, state):
        param -= self.learning_rate * grad


@pytest.mark.parametrize("clip_norm", [None, 1.0])
def test_an_optimizer_without_a_compiled_step_runs_its_own_update(clip_norm):
    rng = np.random.RandomState(5)
    params = _params("float64", rng)
    params.grad[...] = rng.normal(size=params.flat.size)
    before, grad = params.flat.copy(), params.grad.copy()
    previous = np.empty_like(before)
    _, check = add_penalty(params, 0.0, CPU)
    assert update(_Descent(0.1), params, previous, clip_norm, check, CPU)
    if clip_norm is not None:
        grad *= clip_norm / np.linalg.norm(grad)
    assert_allclose(params.flat, before - 0.1 * grad, rtol=1e-12)
    assert_array_equal(previous, before)
