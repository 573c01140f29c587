"""The LSTM in the reference engine, the specification of its math:
PyTorch's nn.LSTM equations, the state (N, 2H) as h then c, padding that
never leaks, and backpropagation through time against central finite
differences in float64."""

import numpy as np
import pytest

from skrnn._engine import reference
from skrnn._engine.reference import CellSpec, state_size

T, N, D, H = 6, 4, 3, 5
LENGTHS = np.array([6, 3, 1, 5])


def _case(seed, use_bias=True):
    """(spec, params, x, state0) of one layer, drawn from ``seed``."""
    rng = np.random.RandomState(seed)
    shapes = {"weight_ih": (4 * H, D), "weight_hh": (4 * H, H)}
    if use_bias:
        shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
    params = {k: rng.normal(scale=0.5, size=s) for k, s in shapes.items()}
    x, state0 = rng.normal(size=(T, N, D)), rng.normal(size=(N, 2 * H))
    return CellSpec("lstm", "tanh", True, use_bias), params, x, state0


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _by_hand(params, x, lengths, state0, reverse):
    """Each sequence on its own, step by step, as nn.LSTM's documentation
    writes the cell: (outputs (T, N, H), final state (N, 2H))."""
    outputs = np.zeros((T, N, H))
    final = np.empty((N, 2 * H))
    b = params.get("bias_ih", 0) + params.get("bias_hh", 0)
    for n in range(N):
        h, c = state0[n, :H].copy(), state0[n, H:].copy()
        steps = range(lengths[n])
        for t in reversed(steps) if reverse else steps:
            a = params["weight_ih"] @ x[t, n] + params["weight_hh"] @ h + b
            i, f = _sigmoid(a[:H]), _sigmoid(a[H : 2 * H])
            g, o = np.tanh(a[2 * H : 3 * H]), _sigmoid(a[3 * H :])
            c = f * c + i * g
            h = o * np.tanh(c)
            outputs[t, n] = h
        final[n] = np.concatenate([h, c])
    return outputs, final


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_is_nn_lstm(reverse, use_bias):
    spec, params, x, state0 = _case(0, use_bias)
    outputs, final, _ = reference.forward(spec, params, x, LENGTHS, state0, reverse)
    expected_outputs, expected_final = _by_hand(params, x, LENGTHS, state0, reverse)
    assert state_size("lstm", H) == final.shape[1] == 2 * H
    np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(final, expected_final, rtol=1e-12, atol=1e-14)


def _loss(spec, params, x, state0, reverse, weights):
    outputs, final, _ = reference.forward(spec, params, x, LENGTHS, state0, reverse)
    return np.sum(weights[0] * outputs) + np.sum(weights[1] * final)


def _central_differences(f, array, eps=1e-6):
    grad = np.empty_like(array)
    for idx in np.ndindex(array.shape):
        saved = array[idx]
        array[idx] = saved + eps
        up = f()
        array[idx] = saved - eps
        down = f()
        array[idx] = saved
        grad[idx] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_backward_matches_finite_differences(reverse, use_bias):
    spec, params, x, state0 = _case(1, use_bias)
    rng = np.random.RandomState(1)
    weights = (rng.normal(size=(T, N, H)), rng.normal(size=(N, 2 * H)))
    _, _, cache = reference.forward(spec, params, x, LENGTHS, state0, reverse)
    dx, d_state0, grads = reference.backward(spec, params, cache, *weights)

    def loss():
        return _loss(spec, params, x, state0, reverse, weights)

    for name, value in params.items():
        np.testing.assert_allclose(
            grads[name],
            _central_differences(loss, value),
            rtol=1e-6,
            atol=1e-8,
            err_msg=name,
        )
    np.testing.assert_allclose(dx, _central_differences(loss, x), rtol=1e-6, atol=1e-8)
    # dh0 and dc0, side by side
    np.testing.assert_allclose(
        d_state0, _central_differences(loss, state0), rtol=1e-6, atol=1e-8
    )
    # nothing flows into the padded steps' inputs
    padded = np.arange(T)[:, None] >= LENGTHS[None, :]
    assert not dx[padded].any()


def test_padding_never_leaks():
    """Whatever the padded steps hold, outputs, states and gradients are the
    same; the outputs are zero there and the state is carried through."""
    spec, params, x, state0 = _case(2)
    rng = np.random.RandomState(2)
    padded = np.arange(T)[:, None] >= LENGTHS[None, :]
    x_other = x.copy()
    x_other[padded] = rng.normal(size=(padded.sum(), D)) * 100
    runs = [reference.forward(spec, params, xx, LENGTHS, state0) for xx in (x, x_other)]
    for a, b in zip(runs[0][:2], runs[1][:2]):
        np.testing.assert_array_equal(a, b)
    assert not runs[0][0][padded].any()
    d_out = rng.normal(size=(T, N, H))
    backs = [reference.backward(spec, params, run[2], d_out) for run in runs]
    np.testing.assert_array_equal(backs[0][1], backs[1][1])
    for name in params:
        np.testing.assert_array_equal(backs[0][2][name], backs[1][2][name])
