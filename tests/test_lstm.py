"""The LSTM: in the reference engine, the specification of its math
(PyTorch's nn.LSTM equations, the state (N, 2H) as h then c, padding that
never leaks, backpropagation through time against central finite
differences in float64), and as the layer ``skrnn.layers.LSTM``."""

import numpy as np
import pytest

from skrnn._cells import CellSpec, state_size
from skrnn._engine import reference
from skrnn.layers import LSTM

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


def _assert_gradient(got, loss, array, name=""):
    """``got`` is the gradient of ``loss()`` with respect to ``array``."""
    np.testing.assert_allclose(
        got, _central_differences(loss, array), rtol=1e-6, atol=1e-8, err_msg=name
    )


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
        _assert_gradient(grads[name], loss, value, name)
    _assert_gradient(dx, loss, x)
    # dh0 and dc0, side by side
    _assert_gradient(d_state0, loss, state0)
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


# ----------------------------------------------------------- layers.LSTM
def _layer(seed=0, **kwargs):
    return LSTM(D, H, dtype="float64", random_state=seed, **kwargs)


def test_layer_backward_matches_finite_differences():
    """dX, dh0, dc0 and every weight's gradient of a loss reading the
    outputs, h_last and c_last, batch first as the layer takes them."""
    rng = np.random.RandomState(3)
    layer = _layer()
    X = rng.normal(size=(N, T, D))
    h0, c0 = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    r_out, r_h, r_c = (
        rng.normal(size=(N, T, H)),
        rng.normal(size=(N, H)),
        rng.normal(size=(N, H)),
    )

    def loss():
        outputs, h_last = layer.forward(X, h0, LENGTHS, c0=c0)
        return (
            np.sum(r_out * outputs) + np.sum(r_h * h_last) + np.sum(r_c * layer.c_last)
        )

    loss()
    dX = layer.backward(r_out, r_h, d_c_last=r_c)
    grads, dh0, dc0 = dict(layer.grads), layer.dh0, layer.dc0
    for name, value in layer.params.items():
        _assert_gradient(grads[name], loss, value, name)
    for got, array in ((dX, X), (dh0, h0), (dc0, c0)):
        _assert_gradient(got, loss, array)


def test_layer_stateful_carries_h_and_c():
    """Two calls of a stateful layer on the halves of a sequence equal one
    call on the whole; reset_state starts again from zeros."""
    rng = np.random.RandomState(4)
    X = rng.normal(size=(N, T, D))
    whole = _layer()
    out_whole, h_whole = whole.forward(X)
    halves = _layer(stateful=True)
    out_a, _ = halves.forward(X[:, :3])
    out_b, h_b = halves.forward(X[:, 3:])
    np.testing.assert_allclose(
        np.concatenate([out_a, out_b], axis=1), out_whole, rtol=1e-12
    )
    np.testing.assert_allclose(h_b, h_whole, rtol=1e-12)
    np.testing.assert_allclose(halves.c_last, whole.c_last, rtol=1e-12)
    halves.reset_state()
    np.testing.assert_array_equal(halves.forward(X[:, :3])[0], out_a)


def test_layer_states_default_to_zeros():
    rng = np.random.RandomState(5)
    X = rng.normal(size=(N, T, D))
    zeros = np.zeros((N, H))
    layer = _layer()
    h_given = layer.forward(X, zeros)[1]
    c_given = layer.forward(X, c0=zeros)[1]
    both = layer.forward(X, zeros, c0=zeros)[1]
    for h_last in (h_given, c_given):
        np.testing.assert_array_equal(h_last, layer.forward(X)[1])
        np.testing.assert_array_equal(h_last, both)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda layer, X: layer.forward(X, c0=np.zeros((N, H + 1))),
            "c0 must have shape",
        ),
        (lambda layer, X: layer.forward(X, np.zeros((N + 1, H))), "h0 must have shape"),
        (lambda layer, X: LSTM(D, H).backward(np.zeros((N, T, H))), "forward"),
    ],
)
def test_layer_bad_states(call, match):
    layer = _layer()
    with pytest.raises((ValueError, RuntimeError), match=match):
        call(layer, np.zeros((N, T, D)))


def test_layer_is_pytorch_lstm():
    """coefs in nn.LSTM's layout compute what nn.LSTM does, on ragged
    sequences packed on PyTorch's side, to 1e-10 in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(6)
    layer = _layer()
    X = rng.normal(size=(N, T, D))
    h0, c0 = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    outputs, h_last = layer.forward(X, h0, LENGTHS, c0=c0)
    ref = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        for name, value in layer.params.items():
            getattr(ref, name + "_l0").copy_(torch.from_numpy(value))
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(X),
            torch.from_numpy(LENGTHS),
            batch_first=True,
            enforce_sorted=False,
        )
        out, (h_n, c_n) = ref(
            packed, (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None])
        )
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=T
        )
    np.testing.assert_allclose(outputs, out.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_last, h_n[0].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.c_last, c_n[0].numpy(), rtol=1e-10, atol=1e-12)


def test_layer_stateful_carries_the_part_not_given():
    """A stateful layer given h0 alone starts from the c it carries (and
    given c0 alone, from the h it carries)."""
    rng = np.random.RandomState(7)
    X = rng.normal(size=(N, T, D))
    h_new, c_new = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    plain = _layer()
    _, h_first = plain.forward(X)
    c_first = plain.c_last
    for given, expected in (
        ({"h0": h_new}, {"h0": h_new, "c0": c_first}),
        ({"c0": c_new}, {"h0": h_first, "c0": c_new}),
    ):
        stateful = _layer(stateful=True)
        stateful.forward(X)
        got = stateful.forward(X, given.get("h0"), c0=given.get("c0"))[1]
        want = plain.forward(X, expected["h0"], c0=expected["c0"])[1]
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------ the estimators, cell="lstm"
def test_estimator_takes_tanh_only():
    from sklearn.utils._param_validation import InvalidParameterError

    from skrnn import SequenceClassifier

    X, y = np.zeros((6, 3, 1)), np.arange(6) % 2
    with pytest.raises(InvalidParameterError, match="when cell='lstm'"):
        SequenceClassifier(cell="lstm", activation="logistic").fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_estimator_coefs_load_into_pytorch(num_layers, bidirectional):
    """coefs_ in nn.LSTM's state-dict names and shapes: loaded into
    nn.LSTM + nn.Linear, they predict the same on ragged sequences (packed
    on PyTorch's side) to 1e-10 in float64."""
    torch = pytest.importorskip("torch")
    from skrnn import SequenceRegressor

    rng = np.random.RandomState(8)
    X = [rng.normal(size=(L, D)) for L in (6, 2, 5, 3, 1)]
    y = np.array([x.sum() for x in X])
    model = SequenceRegressor(
        cell="lstm",
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        max_iter=3,
        dtype="float64",
        random_state=0,
    ).fit(X, y)
    lstm = torch.nn.LSTM(
        D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True
    ).double()
    head = torch.nn.Linear(H * (2 if bidirectional else 1), 1).double()
    state = {k: torch.from_numpy(v) for k, v in model.coefs_.items()}
    lstm.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
    head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    lengths = torch.tensor([len(x) for x in X])
    padded = torch.nn.utils.rnn.pad_sequence(
        [torch.from_numpy(x) for x in X], batch_first=True
    )
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            padded, lengths, batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = lstm(packed)
        last = (
            h_n[-2:].transpose(0, 1).reshape(len(X), -1) if bidirectional else h_n[-1]
        )
        expected = head(last)[:, 0].numpy()
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_learns_hello_per_step_after_a_scaler():
    """make_char_sequences, SequenceScaler and a per-step classifier work
    with the LSTM as with the other cells: 'hell' -> 'ello'."""
    from sklearn.pipeline import make_pipeline

    from skrnn import SequenceClassifier
    from skrnn.datasets import make_char_sequences
    from skrnn.preprocessing import SequenceScaler

    X, y, _ = make_char_sequences("hello", seq_length=4)
    model = make_pipeline(
        SequenceScaler(),
        SequenceClassifier(
            cell="lstm",
            output="sequence",
            hidden_size=8,
            learning_rate_init=0.05,
            max_iter=300,
            random_state=0,
        ),
    ).fit(X, y)
    assert "".join(model.predict(X)[0]) == "ello"
