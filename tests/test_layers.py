"""The public building blocks ``skrnn.layers.RNN``, ``GRU`` and ``LSTM``."""

import numpy as np
import pytest

from skrnn.layers import GRU, LSTM, RNN

D, H = 3, 4
# the LSTM layer's batches: N sequences of LENGTHS, T steps
T, N = 6, 4
LENGTHS = np.array([6, 3, 1, 5])

# (class, constructor kwargs, number of gates)
LAYERS = [
    (RNN, {"activation": "tanh"}, 1),
    (RNN, {"activation": "relu"}, 1),
    (RNN, {"activation": "identity", "use_bias": False}, 1),
    (RNN, {"activation": "logistic"}, 1),
    (GRU, {"reset_after": True}, 3),
    (GRU, {"reset_after": False}, 3),
    (GRU, {"activation": "logistic", "use_bias": False}, 3),
]


def _layer_id(case):
    cls, kwargs, _ = case
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


layer_cases = pytest.mark.parametrize(
    "cls, kwargs, gates", LAYERS, ids=[_layer_id(c) for c in LAYERS]
)


def _batch(n=3, t=5, seed=0):
    """Inputs (n, t, D) and variable lengths (all different, unsorted)."""
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n, t, D)), np.array([3, 5, 1])[:n]


# --------------------------------------------------------------------------
# Parameters and shapes
# --------------------------------------------------------------------------


@layer_cases
def test_params_and_grads_layout(cls, kwargs, gates):
    layer = cls(D, H, random_state=0, **kwargs)
    use_bias = kwargs.get("use_bias", True)
    expected = {"weight_ih": (gates * H, D), "weight_hh": (gates * H, H)}
    if use_bias:
        expected.update(bias_ih=(gates * H,), bias_hh=(gates * H,))
    assert {k: v.shape for k, v in layer.params.items()} == expected
    X, lengths = _batch()
    outputs, h_last = layer.forward(X, lengths=lengths)
    dX = layer.backward(np.ones_like(outputs), np.ones_like(h_last))
    assert {k: v.shape for k, v in layer.grads.items()} == expected
    assert outputs.shape == (3, 5, H)
    assert h_last.shape == (3, H)
    assert dX.shape == X.shape
    assert layer.dh0.shape == (3, H)


@layer_cases
def test_initial_weights_bounded(cls, kwargs, gates):
    layer = cls(D, H, random_state=0, **kwargs)
    for value in layer.params.values():
        assert np.all(np.abs(value) <= 1 / np.sqrt(H))
        assert value.std() > 0


@pytest.mark.parametrize("use_bias", [True, False])
def test_lstm_initial_weights_are_bounded_but_the_forget_gate_bias(use_bias):
    layer = LSTM(D, H, use_bias=use_bias, random_state=0)
    forget = slice(H, 2 * H)  # the blocks are stacked i, f, g, o
    drawn = [layer.params["weight_ih"], layer.params["weight_hh"]]
    if use_bias:
        b_ih, b_hh = layer.params["bias_ih"], layer.params["bias_hh"]
        # the forget gate starts at sigma(1): its biases sum to 1
        np.testing.assert_array_equal(b_ih[forget], 1.0)
        np.testing.assert_array_equal(b_hh[forget], 0.0)
        drawn += [np.delete(b, forget) for b in (b_ih, b_hh)]
    for value in drawn:
        assert np.all(np.abs(value) <= 1 / np.sqrt(H))
        assert value.std() > 0


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_gate_order_is_r_z_n(reset_after):
    """Isolate each gate through its bias block: blocks are stacked r, z, n."""
    layer = GRU(1, 1, reset_after=reset_after, dtype="float64")
    for value in layer.params.values():
        value[:] = 0.0
    h0 = np.array([[0.5]])
    X = np.zeros((1, 1, 1))
    # z ≈ 1 (second block): the state is kept
    layer.params["bias_ih"][1] = 50.0
    _, h = layer.forward(X, h0=h0)
    assert h[0, 0] == pytest.approx(0.5)
    # z ≈ 0, candidate input bias (third block) = 2: h = tanh(2) (r irrelevant)
    layer.params["bias_ih"][:] = [0.0, -50.0, 2.0]
    _, h = layer.forward(X, h0=h0)
    assert h[0, 0] == pytest.approx(np.tanh(2.0))
    # the reset gate (first block) switches the recurrent part of the candidate
    layer.params["bias_ih"][:] = [-50.0, -50.0, 0.0]
    layer.params["weight_hh"][2] = 2.0
    _, h = layer.forward(X, h0=h0)
    assert h[0, 0] == pytest.approx(0.0)  # r ≈ 0
    layer.params["bias_ih"][0] = 50.0
    _, h = layer.forward(X, h0=h0)
    assert h[0, 0] == pytest.approx(np.tanh(1.0))  # r ≈ 1: tanh(2 * 0.5)


def test_gru_reset_after_forms_differ():
    """With a recurrent candidate bias the two GRU forms compute different things."""
    a = GRU(D, H, reset_after=True, dtype="float64", random_state=0)
    b = GRU(D, H, reset_after=False, dtype="float64", random_state=0)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    X, lengths = _batch()
    out_a, _ = a.forward(X, lengths=lengths)
    out_b, _ = b.forward(X, lengths=lengths)
    assert not np.allclose(out_a, out_b)


# --------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------


@layer_cases
def test_outputs_zero_at_padded_steps_and_h_last_at_last_valid_step(cls, kwargs, gates):
    layer = cls(D, H, random_state=0, **kwargs)
    X, lengths = _batch()
    h0 = np.random.RandomState(1).normal(size=(3, H))
    outputs, h_last = layer.forward(X, h0=h0, lengths=lengths)
    padded = np.arange(5)[None, :] >= lengths[:, None]
    assert np.all(outputs[padded] == 0)
    if kwargs.get("activation") != "relu":  # relu may legitimately give 0
        assert np.all(np.any(outputs[~padded] != 0, axis=-1))
    np.testing.assert_array_equal(h_last, outputs[np.arange(3), lengths - 1])


@layer_cases
def test_lengths_none_means_full_length(cls, kwargs, gates):
    layer = cls(D, H, random_state=0, **kwargs)
    X, _ = _batch()
    out_none, h_none = layer.forward(X)
    out_full, h_full = layer.forward(X, lengths=[5, 5, 5])
    np.testing.assert_array_equal(out_none, out_full)
    np.testing.assert_array_equal(h_none, h_full)
    np.testing.assert_array_equal(h_none, out_none[:, -1])


@layer_cases
def test_each_sequence_is_independent_of_the_batch(cls, kwargs, gates):
    """A sequence run alone (cut to its length) gives the same outputs as in a batch."""
    layer = cls(D, H, dtype="float64", random_state=0, **kwargs)
    X, lengths = _batch()
    outputs, h_last = layer.forward(X, lengths=lengths)
    for i, L in enumerate(lengths):
        out_i, h_i = layer.forward(X[i : i + 1, :L])
        np.testing.assert_allclose(out_i[0], outputs[i, :L], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h_i[0], h_last[i], rtol=1e-12, atol=1e-14)


def test_h0_is_used():
    layer = GRU(D, H, dtype="float64", random_state=0)
    X, lengths = _batch()
    _, h_zero = layer.forward(X, lengths=lengths)
    _, h_explicit_zero = layer.forward(X, h0=np.zeros((3, H)), lengths=lengths)
    _, h_other = layer.forward(X, h0=np.ones((3, H)), lengths=lengths)
    np.testing.assert_array_equal(h_zero, h_explicit_zero)
    assert not np.allclose(h_zero, h_other)


# --------------------------------------------------------------------------
# stateful
# --------------------------------------------------------------------------


@layer_cases
def test_stateful_equals_one_long_forward(cls, kwargs, gates):
    """Chunks of a stream, state carried: the forward pass is the unbroken one."""
    X = np.random.RandomState(2).normal(size=(2, 9, D))
    whole = cls(D, H, dtype="float64", random_state=0, **kwargs)
    out_whole, h_whole = whole.forward(X)
    layer = cls(D, H, dtype="float64", stateful=True, random_state=0, **kwargs)
    chunks = []
    for t0 in range(0, 9, 4):  # chunks of 4, 4, 1 steps
        out, h_last = layer.forward(X[:, t0 : t0 + 4])
        dX = layer.backward(np.ones_like(out))  # truncated BPTT: backward per chunk
        assert dX.shape == (2, min(4, 9 - t0), D)
        chunks.append(out)
    np.testing.assert_allclose(
        np.concatenate(chunks, axis=1), out_whole, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(h_last, h_whole, rtol=1e-12, atol=1e-14)


def test_stateful_chunk_gradients_are_those_of_the_chunk_from_its_carried_state():
    X = np.random.RandomState(3).normal(size=(2, 6, D))
    layer = GRU(D, H, dtype="float64", stateful=True, random_state=0)
    _, h_mid = layer.forward(X[:, :3])
    out, _ = layer.forward(X[:, 3:])
    d_out = np.random.RandomState(4).normal(size=out.shape)
    dX = layer.backward(d_out)
    plain = GRU(D, H, dtype="float64", random_state=0)
    out_plain, _ = plain.forward(X[:, 3:], h0=h_mid)
    dX_plain = plain.backward(d_out)
    np.testing.assert_array_equal(out, out_plain)
    np.testing.assert_array_equal(dX, dX_plain)
    np.testing.assert_array_equal(layer.dh0, plain.dh0)
    for name in plain.grads:
        np.testing.assert_array_equal(layer.grads[name], plain.grads[name])


def test_reset_state_clears_the_carried_state():
    X = np.random.RandomState(5).normal(size=(2, 4, D))
    layer = RNN(D, H, stateful=True, random_state=0)
    first, _ = layer.forward(X)
    second, _ = layer.forward(X)
    assert not np.allclose(first, second)  # the state was carried
    layer.reset_state()
    third, _ = layer.forward(X)
    np.testing.assert_array_equal(first, third)


def test_stateful_explicit_h0_overrides_carried_state():
    X = np.random.RandomState(6).normal(size=(2, 4, D))
    layer = GRU(D, H, stateful=True, random_state=0)
    first, _ = layer.forward(X)
    again, _ = layer.forward(X, h0=np.zeros((2, H)))
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
@pytest.mark.parametrize("n_next", [1, 3])
def test_stateful_refuses_another_number_of_sequences(cls, n_next):
    """The carried state holds 2 sequences: a call with 1 or 3 would match
    states to sequences by position (or fail inside). It is refused,
    keeping the state; an initial state of its own, or reset_state(),
    starts afresh."""
    rng = np.random.RandomState(8)
    layer = cls(D, H, stateful=True, random_state=0)
    layer.forward(rng.normal(size=(2, 4, D)))
    carried = layer.h.copy()
    X = rng.normal(size=(n_next, 4, D))
    message = "carries the state of 2 sequences .* but X has"
    with pytest.raises(ValueError, match=message):
        layer.forward(X)
    if cls is LSTM:  # h0 alone: c is still the carried one's
        with pytest.raises(ValueError, match=message):
            layer.forward(X, h0=np.zeros((n_next, H)))
        given = {"h0": np.zeros((n_next, H)), "c0": np.zeros((n_next, H))}
    else:
        given = {"h0": np.zeros((n_next, H))}
    np.testing.assert_array_equal(layer.h, carried)
    fresh = cls(D, H, random_state=0).forward(X)[0]
    np.testing.assert_array_equal(layer.forward(X, **given)[0], fresh)
    layer.reset_state()
    np.testing.assert_array_equal(layer.forward(X)[0], fresh)


def test_not_stateful_does_not_carry():
    X = np.random.RandomState(7).normal(size=(2, 4, D))
    layer = GRU(D, H, random_state=0)
    first, _ = layer.forward(X)
    second, _ = layer.forward(X)
    np.testing.assert_array_equal(first, second)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_backward_before_forward_raises(cls):
    layer = cls(D, H)
    with pytest.raises((RuntimeError, ValueError)):
        layer.backward(np.zeros((1, 1, H)))


@pytest.mark.parametrize(
    "X, kwargs",
    [
        (np.zeros((3, D)), {}),  # 2-D
        (np.zeros((2, 3, D, 1)), {}),  # 4-D
        (np.zeros((2, 3, D + 1)), {}),  # wrong D
        (np.zeros((0, 3, D)), {}),  # no samples
        (np.zeros((2, 0, D)), {}),  # no steps
        (np.zeros((2, 3, D)), {"h0": np.zeros((2, H + 1))}),
        (np.zeros((2, 3, D)), {"h0": np.zeros((3, H))}),
        (np.zeros((2, 3, D)), {"lengths": [3]}),
        (np.zeros((2, 3, D)), {"lengths": [3, 0]}),
        (np.zeros((2, 3, D)), {"lengths": [4, 1]}),
    ],
    ids=[
        "2d",
        "4d",
        "wrong-D",
        "no-samples",
        "no-steps",
        "h0-H",
        "h0-N",
        "lengths-count",
        "lengths-zero",
        "lengths-too-long",
    ],
)
@pytest.mark.parametrize("cls", [RNN, GRU])
def test_bad_forward_shapes_raise(cls, X, kwargs):
    layer = cls(D, H)
    with pytest.raises(ValueError):
        layer.forward(X, **kwargs)


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_bad_backward_shapes_raise(cls):
    layer = cls(D, H)
    outputs, _ = layer.forward(np.zeros((2, 3, D)))
    with pytest.raises(ValueError):
        layer.backward(np.zeros((2, 4, H)))
    with pytest.raises(ValueError):
        layer.backward(np.zeros((2, 3, H + 1)))
    with pytest.raises(ValueError):
        layer.backward(np.zeros_like(outputs), np.zeros((3, H)))


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (RNN, {"input_size": 0}),
        (RNN, {"hidden_size": 0}),
        (GRU, {"hidden_size": 0}),
        (RNN, {"activation": "softmax"}),
        (GRU, {"activation": "relu"}),
        (GRU, {"activation": "identity"}),
        (RNN, {"dtype": "int32"}),
        (GRU, {"dtype": "float16"}),
    ],
)
def test_bad_constructor_arguments_raise(cls, kwargs):
    args = {"input_size": D, "hidden_size": H, **kwargs}
    with pytest.raises(ValueError):
        cls(args.pop("input_size"), args.pop("hidden_size"), **args)


# --------------------------------------------------------------------------
# dtype and random_state
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_float32_by_default(cls):
    layer = cls(D, H, random_state=0)
    assert all(v.dtype == np.float32 for v in layer.params.values())
    X, lengths = _batch()  # float64 input
    outputs, h_last = layer.forward(X, lengths=lengths)
    assert outputs.dtype == np.float32 and h_last.dtype == np.float32
    dX = layer.backward(np.ones(outputs.shape), np.ones(h_last.shape))
    assert dX.dtype == np.float32 and layer.dh0.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_float64_layer_computes_in_float64(cls):
    layer = cls(D, H, dtype="float64", random_state=0)
    assert all(v.dtype == np.float64 for v in layer.params.values())
    X, lengths = _batch()
    outputs, h_last = layer.forward(X.astype(np.float32), lengths=lengths)
    assert outputs.dtype == np.float64 and h_last.dtype == np.float64
    dX = layer.backward(np.ones(outputs.shape, np.float32))
    assert dX.dtype == np.float64
    assert all(g.dtype == np.float64 for g in layer.grads.values())


def test_float32_close_to_float64():
    X, lengths = _batch()
    out32, _ = GRU(D, H, random_state=0).forward(X, lengths=lengths)
    out64, _ = GRU(D, H, dtype="float64", random_state=0).forward(X, lengths=lengths)
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_random_state_reproducible(cls):
    a, b, c = (
        cls(D, H, random_state=7),
        cls(D, H, random_state=7),
        cls(D, H, random_state=8),
    )
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert any(not np.array_equal(a.params[n], c.params[n]) for n in a.params)
    rs1, rs2 = np.random.RandomState(3), np.random.RandomState(3)
    d, e = cls(D, H, random_state=rs1), cls(D, H, random_state=rs2)
    for name in d.params:
        np.testing.assert_array_equal(d.params[name], e.params[name])


def test_writing_params_changes_forward():
    layer = RNN(D, H, random_state=0)
    X, lengths = _batch()
    before, _ = layer.forward(X, lengths=lengths)
    layer.params["weight_ih"] *= 2.0
    after, _ = layer.forward(X, lengths=lengths)
    assert not np.allclose(before, after)


# --------------------------------------------------------------------------
# Parity with PyTorch (optional)
# --------------------------------------------------------------------------


def _torch_module(layer, torch):
    """The torch.nn.RNN / nn.GRU with ``layer``'s weights, in float64."""
    use_bias = layer.spec.use_bias
    if isinstance(layer, GRU):
        module = torch.nn.GRU(D, H, batch_first=True, bias=use_bias)
    else:
        module = torch.nn.RNN(
            D, H, batch_first=True, bias=use_bias, nonlinearity=layer.spec.activation
        )
    module = module.double()
    with torch.no_grad():
        for name, value in layer.params.items():
            getattr(module, name + "_l0").copy_(torch.from_numpy(value))
    return module


@pytest.mark.parametrize("variable", [False, True], ids=["equal", "variable"])
@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (GRU, {"reset_after": True}),
        (GRU, {"reset_after": True, "use_bias": False}),
        (RNN, {"activation": "tanh"}),
        (RNN, {"activation": "relu"}),
    ],
    ids=["gru", "gru-nobias", "rnn-tanh", "rnn-relu"],
)
def test_parity_with_pytorch(cls, kwargs, variable):
    torch = pytest.importorskip("torch")
    layer = cls(D, H, dtype="float64", random_state=0, **kwargs)
    rng = np.random.RandomState(1)
    n, t = 3, 5
    X = rng.normal(size=(n, t, D))
    h0 = rng.normal(size=(n, H))
    lengths = np.array([3, 5, 1]) if variable else np.full(n, t)
    d_out = rng.normal(size=(n, t, H))
    d_out[np.arange(t)[None, :] >= lengths[:, None]] = 0.0  # torch pads with zeros
    d_h = rng.normal(size=(n, H))

    outputs, h_last = layer.forward(X, h0=h0, lengths=lengths)
    dX = layer.backward(d_out, d_h)

    module = _torch_module(layer, torch)
    Xt = torch.tensor(X, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        Xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    out_packed, hn = module(packed, h0t)
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(
        out_packed, batch_first=True, total_length=t
    )
    ((out_t * torch.tensor(d_out)).sum() + (hn[0] * torch.tensor(d_h)).sum()).backward()

    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(outputs, out_t.detach().numpy(), **tol)
    np.testing.assert_allclose(h_last, hn[0].detach().numpy(), **tol)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.dh0, h0t.grad[0].numpy(), **tol)
    for name, grad in layer.grads.items():
        torch_grad = getattr(module, name + "_l0").grad.numpy()
        np.testing.assert_allclose(grad, torch_grad, err_msg=name, **tol)


# --------------------------------------------------------------------------
# layers.LSTM: h and c
# --------------------------------------------------------------------------
def _layer(seed=0, **kwargs):
    return LSTM(D, H, dtype="float64", random_state=seed, **kwargs)


def test_lstm_layer_stateful_carries_h_and_c():
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


def test_lstm_layer_states_default_to_zeros():
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
def test_lstm_layer_bad_states(call, match):
    layer = _layer()
    with pytest.raises((ValueError, RuntimeError), match=match):
        call(layer, np.zeros((N, T, D)))


def test_lstm_layer_is_pytorch_lstm():
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


def test_lstm_layer_stateful_carries_the_part_not_given():
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
