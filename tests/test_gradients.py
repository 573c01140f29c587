"""Gradient checks: backpropagation through time against finite differences.

Everything runs in float64 on the reference engine, and the CPU engine's
compiled training pass is checked the same way. The network's loss is
recomputed here by a forward pass written independently of ``Network``'s
own window and head code (only the per-direction engine ``forward`` is
shared), and its central finite differences are compared with the gradient
that ``Network.loss_grad`` writes into ``net.grad``.

For truncated BPTT the gradient is *not* the gradient of the loss: it is the
gradient of the sum of per-window losses in which the state carried into
each window is held constant at its value under the current weights. That
function is what the tests differentiate numerically.
"""

import numpy as np
import pytest

from skrnn import _network as network
from skrnn._cells import CellSpec, state_size
from skrnn._engine import Engine, HostCopyMemory, get_engine, reference
from skrnn._losses import (
    binary_log_loss,
    multi_log_loss,
    regression_loss,
    squared_error,
)
from skrnn._network import MIN_SHARE, TRAINING_SHARES, Network
from skrnn.layers import GRU, LSTM, RNN

ENGINE = get_engine("reference")
EPS = 1e-6  # central difference step
RTOL = 1e-6  # max |analytic - numeric| / max |analytic|
RELU_MARGIN = 1e-4  # relu pre-activations must be this far from the kink

N, T, D, H = 4, 5, 2, 2
VARIABLE_LENGTHS = np.array([5, 1, 3, 2])  # unsorted on purpose

# (cell, activation, reset_after)
CELLS = (
    [("rnn", act, True) for act in ("tanh", "relu", "identity", "logistic")]
    + [
        ("gru", act, reset_after)
        for act in ("tanh", "logistic")
        for reset_after in (True, False)
    ]
    + [("lstm", "tanh", True)]
)
# (bidirectional, bptt_steps): truncated BPTT only exists without bidirectional
STRUCTURES = [(False, None), (False, 2), (True, None)]


def _cell_id(cell):
    name, act, reset_after = cell
    return f"{name}-{act}" + (f"-ra{int(reset_after)}" if name == "gru" else "")


# --------------------------------------------------------------------------
# An independent forward pass of the network
# --------------------------------------------------------------------------


def _layer_params(net, k, d):
    """The parameters of layer ``k``, direction ``d`` of ``net`` (live views)."""
    suffix = f"_l{k}" + ("_reverse" if d else "")
    names = ["weight_ih", "weight_hh"]
    if net.spec.use_bias:
        names += ["bias_ih", "bias_hh"]
    return {name: net.coefs[name + suffix] for name in names}


def _run_stack(net, x, lengths, h0s):
    """Forward through every layer and direction of ``net``.

    Parameters
    ----------
    net : Network
    x : ndarray of shape (T, N, D)
        Time-major inputs.
    lengths : ndarray of shape (N,)
        Valid steps per sequence in ``x``.
    h0s : list of lists of ndarray
        ``h0s[k][d]``: the initial state of layer ``k``, direction ``d``.

    Returns
    -------
    top : ndarray of shape (T, N, H * dirs)
        The top layer's outputs, [forward, backward].
    record : list of tuple
        ``(params, reverse, x, outputs, h0, final state)`` for each layer and
        direction.
    """
    record = []
    for k in range(net.num_layers):
        outs = []
        for d in range(net.n_dirs):
            params = _layer_params(net, k, d)
            out, final, _ = reference.forward(
                net.spec,
                params,
                x,
                lengths,
                h0s[k][d],
                reverse=bool(d),
                keep_cache=False,
            )
            record.append((params, bool(d), x, out, h0s[k][d], final))
            outs.append(out)
        x = np.concatenate(outs, axis=2)
    return x, record


def _head_loss(net, top, lengths, targets, weights, loss, t0=0):
    """Loss of the head over the rows it reads in a window starting at ``t0``."""
    W, b = net.coefs["head.weight"], net.coefs["head.bias"]
    Hn = net.hidden_size
    Tw = top.shape[0]
    if net.output == "last":
        last = lengths - 1 - t0
        rows = np.nonzero((last >= 0) & (last < Tw))[0]
        feats = top[last[rows], rows, :Hn]
        if net.n_dirs == 2:
            # the backward direction has read the whole sequence at step 0
            feats = np.concatenate([feats, top[0, rows, Hn:]], axis=1)
        y, w = targets[rows], weights[rows]
    else:
        steps, rows = np.nonzero(np.arange(t0, t0 + Tw)[:, None] < lengths[None, :])
        feats = top[steps, rows]
        y, w = targets[rows, steps + t0], weights[rows]
    if len(rows) == 0:
        return 0.0
    return loss(feats @ W.T + b, y, w)[0]


def _zero_states(net, n):
    width = state_size(net.spec.cell, net.hidden_size)
    return [[np.zeros((n, width))] * net.n_dirs for _ in range(net.num_layers)]


def _full_loss(net, X, lengths, targets, weights, loss):
    """The loss of ``net`` on a batch, computed without ``Network``'s code."""
    x = np.ascontiguousarray(X.transpose(1, 0, 2))
    top, _ = _run_stack(net, x, lengths, _zero_states(net, len(X)))
    return _head_loss(net, top, lengths, targets, weights, loss)


def _window_start_states(net, X, lengths, size):
    """The carried state of every layer at each window start, at the current weights.

    At window start ``t0``, a sequence's state is the final state of an
    untruncated forward pass over its first ``min(length, t0)`` steps (zero
    before the first step; for the LSTM, h and c). Unidirectional networks
    only.
    """
    x = np.ascontiguousarray(X.transpose(1, 0, 2))
    zeros = _zero_states(net, len(X))
    states = [zeros]
    for t0 in range(size, X.shape[1], size):
        seen = np.minimum(lengths, t0)
        _, record = _run_stack(net, x[:t0], seen, zeros)
        states.append([[final] for *_, final in record])
    return states


def _truncated_loss(net, X, lengths, targets, weights, loss, size, frozen):
    """Sum of per-window losses with the carried states held at ``frozen``."""
    x = np.ascontiguousarray(X.transpose(1, 0, 2))
    total = 0.0
    for w, t0 in enumerate(range(0, X.shape[1], size)):
        t1 = min(t0 + size, X.shape[1])
        lens = np.clip(lengths - t0, 0, t1 - t0)
        top, _ = _run_stack(net, x[t0:t1], lens, frozen[w])
        total += _head_loss(net, top, lengths, targets, weights, loss, t0)
    return total


def _elman_preactivations(spec, params, reverse, x, out, h0, lengths):
    """Pre-activations of an Elman layer at its valid steps (time-major input)."""
    Tx = x.shape[0]
    prev = np.empty_like(out)
    t = np.arange(Tx)
    for s in range(Tx):
        if reverse:
            nxt = out[s + 1] if s + 1 < Tx else np.zeros_like(h0)
            prev[s] = np.where((s + 1 < lengths)[:, None], nxt, h0)
        else:
            prev[s] = out[s - 1] if s > 0 else h0
    a = x @ params["weight_ih"].T + prev @ params["weight_hh"].T
    if spec.use_bias:
        a += params["bias_ih"] + params["bias_hh"]
    return a[t[:, None] < lengths[None, :]]


# --------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------


def _array_slices(net):
    """Name -> slice of ``net.flat`` holding that array (from the views' addresses)."""
    slices = {}
    base = net.flat.ctypes.data
    for name, view in net.coefs.items():
        assert np.shares_memory(view, net.flat), name
        start = (view.ctypes.data - base) // net.flat.itemsize
        slices[name] = slice(start, start + view.size)
    return slices


def _central_difference(f, flat, v):
    """d/dε f(flat + ε v) at 0, evaluated with ``flat`` modified in place."""
    flat0 = flat.copy()
    try:
        flat[:] = flat0 + EPS * v
        f_plus = f()
        flat[:] = flat0 - EPS * v
        f_minus = f()
    finally:
        flat[:] = flat0
    return (f_plus - f_minus) / (2 * EPS)


def _relative_error(analytic, numeric):
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    scale = np.abs(analytic).max()
    assert scale > 0, "all checked derivatives are zero: the check is vacuous"
    return np.abs(analytic - numeric).max() / scale


def _check_directional(net, f, grad, rng, n_directions=2):
    """Compare ``grad`` with FD of ``f`` along random unit directions per array.

    Returns the relative error and the names checked.
    """
    analytic, numeric, names = [], [], []
    for name, sl in _array_slices(net).items():
        for _ in range(n_directions):
            v = np.zeros_like(net.flat)
            direction = rng.normal(size=sl.stop - sl.start)
            v[sl] = direction / np.linalg.norm(direction)
            analytic.append(grad @ v)
            numeric.append(_central_difference(f, net.flat, v))
            names.append(name)
    analytic, numeric = np.array(analytic), np.array(numeric)
    err = _relative_error(analytic, numeric)
    worst = names[int(np.argmax(np.abs(analytic - numeric)))]
    return err, worst


def _check_elementwise(net, f, grad):
    """Compare every entry of ``grad`` with FD of ``f``; return the relative error."""
    numeric = np.empty_like(grad)
    for i in range(net.flat.size):
        e = np.zeros_like(net.flat)
        e[i] = 1.0
        numeric[i] = _central_difference(f, net.flat, e)
    return _relative_error(grad, numeric)


# --------------------------------------------------------------------------
# Building a problem
# --------------------------------------------------------------------------


def _make_problem(
    cell,
    use_bias,
    num_layers,
    bidirectional,
    output,
    variable,
    loss=squared_error,
    seed=0,
    dtype=np.float64,
    lengths=None,
):
    """A small network and a batch for it (padding filled with garbage).

    ``lengths``: the sequences' lengths (their number is the batch's size);
    None: ``VARIABLE_LENGTHS`` if ``variable``, else N sequences of T steps.
    """
    name, act, reset_after = cell
    rng = np.random.RandomState(seed)
    spec = CellSpec(name, act, reset_after, use_bias)
    # classes, or the head's outputs for two targets
    n_outputs = {binary_log_loss: 1, multi_log_loss: 3}.get(loss) or loss.n_outputs(2)
    net = Network(
        spec,
        input_size=D,
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        output=output,
        n_outputs=n_outputs,
        dtype=dtype,
        random_state=rng,
    )
    if lengths is None:
        lengths = VARIABLE_LENGTHS.copy() if variable else np.full(N, T)
    n, t = len(lengths), max(lengths)
    X = rng.normal(size=(n, t, D))
    padded = np.arange(t)[None, :] >= lengths[:, None]
    X[padded] = 50.0 * rng.normal(size=(padded.sum(), D))
    shape = (n,) if output == "last" else (n, t)
    if loss.name == "poisson":
        targets = rng.poisson(1.5, size=shape + (2,)).astype(float)
    elif not loss.codes:
        targets = rng.normal(size=shape + (2,))
    else:
        targets = rng.randint(0, max(n_outputs, 2), size=shape)
    weights = rng.uniform(0.5, 1.5, size=n)
    weights /= weights.sum()
    return net, X.astype(dtype), lengths, targets, weights.astype(dtype)


def _relu_margin(net, X, lengths):
    """Smallest |pre-activation| over every valid step of every Elman layer."""
    x = np.ascontiguousarray(X.transpose(1, 0, 2))
    _, record = _run_stack(net, x, lengths, _zero_states(net, len(X)))
    return min(
        np.abs(_elman_preactivations(net.spec, *r[:5], lengths)).min() for r in record
    )


def _make_checkable_problem(cell, *args, **kwargs):
    """As :func:`_make_problem`; for relu, a seed whose pre-activations avoid 0."""
    for seed in range(100):
        problem = _make_problem(cell, *args, seed=seed, **kwargs)
        if cell[1] != "relu" or _relu_margin(*problem[:3]) > RELU_MARGIN:
            return problem
    raise AssertionError("no seed keeps relu pre-activations away from 0")


def _objective(net, X, lengths, targets, weights, loss, bptt_steps):
    """The function whose gradient ``loss_grad`` must return, as a closure."""
    if bptt_steps is None:
        return lambda: _full_loss(net, X, lengths, targets, weights, loss)
    frozen = _window_start_states(net, X, lengths, bptt_steps)
    return lambda: _truncated_loss(
        net, X, lengths, targets, weights, loss, bptt_steps, frozen
    )


def _loss_grad(net, X, lengths, targets, weights, loss, bptt_steps):
    value = net.loss_grad(ENGINE, X, lengths, targets, weights, loss, bptt_steps)
    return value, net.grad.copy()


# --------------------------------------------------------------------------
# Network.loss_grad
# --------------------------------------------------------------------------


@pytest.mark.parametrize("variable", [False, True], ids=["equal", "variable"])
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize(
    "bidirectional, bptt_steps", STRUCTURES, ids=["uni", "uni-bptt2", "bidir"]
)
@pytest.mark.parametrize("num_layers", [1, 2], ids=["1layer", "2layers"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell", CELLS, ids=[_cell_id(c) for c in CELLS])
def test_loss_grad_matches_finite_differences(
    cell, use_bias, num_layers, bidirectional, bptt_steps, output, variable
):
    net, X, lengths, targets, weights = _make_checkable_problem(
        cell, use_bias, num_layers, bidirectional, output, variable
    )
    f = _objective(net, X, lengths, targets, weights, squared_error, bptt_steps)
    value, grad = _loss_grad(
        net, X, lengths, targets, weights, squared_error, bptt_steps
    )
    # truncation changes the gradient, never the loss
    assert value == pytest.approx(
        _full_loss(net, X, lengths, targets, weights, squared_error), rel=1e-12
    )
    assert value == pytest.approx(f(), rel=1e-12)
    err, worst = _check_directional(net, f, grad, np.random.RandomState(1))
    assert err < RTOL, f"relative error {err:.3g}, worst array {worst}"


@pytest.mark.parametrize(
    "cell, num_layers, bidirectional, output, bptt_steps",
    [
        (("gru", "tanh", False), 2, True, "sequence", None),
        (("gru", "logistic", True), 2, False, "last", 2),
        (("rnn", "tanh", True), 2, False, "sequence", 2),
    ],
)
def test_loss_grad_elementwise(cell, num_layers, bidirectional, output, bptt_steps):
    net, X, lengths, targets, weights = _make_checkable_problem(
        cell, True, num_layers, bidirectional, output, True
    )
    f = _objective(net, X, lengths, targets, weights, squared_error, bptt_steps)
    _, grad = _loss_grad(net, X, lengths, targets, weights, squared_error, bptt_steps)
    assert _check_elementwise(net, f, grad) < RTOL


REGRESSION_LOSSES = [
    regression_loss("absolute_error"),
    regression_loss("poisson"),
    regression_loss("quantile", [0.2, 0.5, 0.9]),
    regression_loss("gaussian"),
]


@pytest.mark.parametrize("loss", REGRESSION_LOSSES, ids=lambda loss: loss.name)
@pytest.mark.parametrize(
    "cell, bidirectional, output",
    [
        (("gru", "tanh", True), True, "last"),
        (("lstm", "tanh", False), False, "sequence"),
        (("rnn", "tanh", True), False, "last"),
    ],
)
def test_regression_loss_grad(loss, cell, bidirectional, output):
    # through the layers' passes (the compiled pass is checked below)
    net, X, lengths, targets, weights = _make_checkable_problem(
        cell, True, 2, bidirectional, output, True, loss=loss
    )
    f = _objective(net, X, lengths, targets, weights, loss, None)
    value, grad = _loss_grad(net, X, lengths, targets, weights, loss, None)
    assert value == pytest.approx(
        _full_loss(net, X, lengths, targets, weights, loss), rel=1e-12
    )
    assert _check_elementwise(net, f, grad) < RTOL


@pytest.mark.parametrize(
    "loss", [binary_log_loss, multi_log_loss], ids=["binary", "multi"]
)
@pytest.mark.parametrize(
    "cell, bidirectional, output, bptt_steps",
    [
        (("gru", "tanh", True), True, "last", None),
        (("gru", "tanh", False), False, "sequence", 2),
        (("rnn", "tanh", True), False, "last", 2),
    ],
)
def test_log_loss_grad(loss, cell, bidirectional, output, bptt_steps):
    net, X, lengths, targets, weights = _make_checkable_problem(
        cell, True, 2, bidirectional, output, True, loss=loss
    )
    f = _objective(net, X, lengths, targets, weights, loss, bptt_steps)
    value, grad = _loss_grad(net, X, lengths, targets, weights, loss, bptt_steps)
    assert value == pytest.approx(
        _full_loss(net, X, lengths, targets, weights, loss), rel=1e-12
    )
    assert _check_elementwise(net, f, grad) < RTOL


COMPILED_LOSSES = [squared_error, binary_log_loss, multi_log_loss, *REGRESSION_LOSSES]


@pytest.mark.parametrize(
    "loss", COMPILED_LOSSES, ids=lambda loss: loss.name or type(loss).__name__
)
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["1layer", "2layers"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell", CELLS, ids=[_cell_id(c) for c in CELLS])
def test_compiled_training_pass_matches_finite_differences(
    cell, use_bias, num_layers, bidirectional, output, loss
):
    """The CPU engine computes a batch's loss and gradient in one compiled
    call (skrnn/_engine/_batch.pyx): checked here as the reference engine's
    path is above, against the independent forward pass."""
    from skrnn._engine import batch

    real, calls = batch.loss_grad, []

    def counting(*args):
        calls.append(args)
        return real(*args)

    engine = get_engine("cpu")._replace(network_pass=counting)
    net, X, lengths, targets, weights = _make_checkable_problem(
        cell, use_bias, num_layers, bidirectional, output, True, loss=loss
    )
    f = _objective(net, X, lengths, targets, weights, loss, None)
    value = net.loss_grad(engine, X, lengths, targets, weights, loss, None)
    assert calls, "the compiled pass did not run"
    assert value == pytest.approx(f(), rel=1e-12)
    err, worst = _check_directional(net, f, net.grad.copy(), np.random.RandomState(1))
    assert err < RTOL, f"relative error {err:.3g}, worst array {worst}"


@pytest.mark.parametrize(
    "loss", COMPILED_LOSSES, ids=lambda loss: loss.name or type(loss).__name__
)
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize(
    "num_layers, bidirectional", [(1, False), (2, False), (2, True)]
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell", CELLS, ids=[_cell_id(c) for c in CELLS])
def test_compiled_training_pass_equals_the_engines_passes(
    cell, use_bias, dtype, num_layers, bidirectional, output, loss, monkeypatch
):
    """The compiled pass against the network's passes on the reference
    engine: batches of several shapes in turn through one workspace (its
    room reused, for smaller shapes too), in one and two shares, odd sizes."""
    from skrnn._engine import batch, cpu

    monkeypatch.setattr(network, "MIN_SHARE_WORK", 1)  # shares of 32 and more
    monkeypatch.setattr(network, "TRAINING_SHARE_WORK", 1)
    monkeypatch.setattr(network, "EPOCH_SHARE_WORK", 1)
    real, shares = batch.loss_grad, []

    def counting(*args):
        shares.append(args[-1])
        return real(*args)

    engine = get_engine("cpu")._replace(network_pass=counting)
    rtol = 1e-12 if dtype == "float64" else 2e-4
    rng = np.random.RandomState(0)
    with cpu.workspace():
        for n, t in [(7, 6), (70, 9), (1, 1), (5, 9), (70, 4)]:
            lengths = rng.randint(1, t + 1, size=n)
            lengths[rng.randint(n)] = t
            net, X, lengths, targets, weights = _make_problem(
                cell,
                use_bias,
                num_layers,
                bidirectional,
                output,
                True,
                loss,
                dtype=dtype,
                lengths=lengths,
            )
            args = (X, lengths, targets, weights, loss, None)
            expected = net.loss_grad(ENGINE, *args)
            grad = net.grad.copy()
            value = net.loss_grad(engine, *args)
            np.testing.assert_allclose(value, expected, rtol=rtol)
            scale = np.abs(grad).max()
            np.testing.assert_allclose(net.grad, grad, rtol=0, atol=rtol * scale)
    assert sorted(set(shares)) == [0, 1]  # every batch compiled, in one or two


def test_truncated_gradient_is_not_the_full_gradient():
    """The frozen-state objective differs from the loss: the check means something."""
    problem = _make_problem(("gru", "tanh", True), True, 1, False, "last", False)
    _, full = _loss_grad(*problem, squared_error, None)
    _, truncated = _loss_grad(*problem, squared_error, 2)
    assert not np.allclose(full, truncated, rtol=1e-3, atol=0)


def test_bptt_window_longer_than_sequence_is_full_bptt():
    problem = _make_problem(("gru", "tanh", True), True, 2, False, "sequence", True)
    value_full, full = _loss_grad(*problem, squared_error, None)
    value_long, long_window = _loss_grad(*problem, squared_error, T)
    assert value_long == pytest.approx(value_full, rel=1e-12)
    np.testing.assert_allclose(long_window, full, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# The public layers: dX, dh0 and grads
# --------------------------------------------------------------------------

LAYER_CELLS = [(cell, use_bias) for cell in CELLS for use_bias in (True, False)]


def _make_layer(cell, use_bias, seed):
    name, act, reset_after = cell
    options = {"use_bias": use_bias, "dtype": "float64", "random_state": seed}
    if name == "rnn":
        return RNN(D, 3, activation=act, **options)
    if name == "lstm":
        return LSTM(D, 3, **options)
    return GRU(D, 3, activation=act, reset_after=reset_after, **options)


def _layer_objective(layer, X, state0, lengths, d_last):
    """Σ d_out ⊙ outputs + Σ d_h_last ⊙ h_last (+ Σ d_c_last ⊙ c_last for
    the LSTM), the function backward differentiates; ``state0`` holds h0
    (and c0), ``d_last`` d_out and d_h_last (and d_c_last)."""
    outputs, h_last = layer.forward(X, lengths=lengths, **state0)
    d_out, d_h_last, *d_c_last = d_last
    value = (d_out * outputs).sum() + (d_h_last * h_last).sum()
    if d_c_last:
        value += (d_c_last[0] * layer.c_last).sum()
    return float(value)


def _numeric_gradient(f, array):
    """Elementwise central differences of ``f()`` with respect to ``array``
    (perturbed in place)."""
    grad = np.empty_like(array)
    flat = array.reshape(-1)
    for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = 1.0
        grad.reshape(-1)[i] = _central_difference(f, flat, e)
    return grad


def _layer_problem(cell, use_bias, variable):
    """A float64 layer and a batch: the initial state ({"h0"[, "c0"]}) and
    the gradients backward takes (d_out, d_h_last[, d_c_last]); relu layers
    get a seed away from the kinks."""
    n, t = 3, 4
    for seed in range(100):
        rng = np.random.RandomState(seed)
        layer = _make_layer(cell, use_bias, seed)
        X = rng.normal(size=(n, t, D))
        parts = ("h0", "c0") if cell[0] == "lstm" else ("h0",)
        state0 = {name: rng.normal(scale=0.5, size=(n, 3)) for name in parts}
        lengths = np.array([3, 4, 1]) if variable else np.full(n, t)
        X[np.arange(t)[None, :] >= lengths[:, None]] = 7.0  # padding garbage
        d_out = rng.normal(size=(n, t, 3))  # nonzero at padded steps too
        d_last = (d_out, *(rng.normal(size=(n, 3)) for _ in parts))
        if cell[1] != "relu":
            break
        outputs, _ = layer.forward(X, lengths=lengths, **state0)
        a = _elman_preactivations(
            layer.spec,
            layer.params,
            False,
            X.transpose(1, 0, 2),
            outputs.transpose(1, 0, 2),
            state0["h0"],
            lengths,
        )
        if np.abs(a).min() > RELU_MARGIN:
            break
    return layer, X, state0, lengths, d_last


@pytest.mark.parametrize("variable", [False, True], ids=["equal", "variable"])
@pytest.mark.parametrize(
    "cell, use_bias",
    LAYER_CELLS,
    ids=[f"{_cell_id(c)}-{'bias' if b else 'nobias'}" for c, b in LAYER_CELLS],
)
def test_layer_backward_matches_finite_differences(cell, use_bias, variable):
    layer, X, state0, lengths, d_last = _layer_problem(cell, use_bias, variable)
    assert type(layer).__name__ == cell[0].upper()
    layer.forward(X, lengths=lengths, **state0)
    if cell[0] == "lstm":
        dX = layer.backward(*d_last[:2], d_c_last=d_last[2])
        d_state0 = {"h0": layer.dh0.copy(), "c0": layer.dc0.copy()}
    else:
        dX = layer.backward(*d_last)
        d_state0 = {"h0": layer.dh0.copy()}
    grads = {k: v.copy() for k, v in layer.grads.items()}

    def f():
        return _layer_objective(layer, X, state0, lengths, d_last)

    assert _relative_error(dX, _numeric_gradient(f, X)) < RTOL
    for name, value in state0.items():
        assert _relative_error(d_state0[name], _numeric_gradient(f, value)) < RTOL
    assert set(grads) == set(layer.params)
    for name, value in layer.params.items():
        assert _relative_error(grads[name], _numeric_gradient(f, value)) < RTOL, name
    padded = np.arange(X.shape[1])[None, :] >= lengths[:, None]
    assert np.all(dX[padded] == 0)


# --------------------------------------------------------------------------
# A closed form: the linear one-unit RNN counts
# --------------------------------------------------------------------------


def _linear_counter(w=1.0):
    layer = RNN(1, 1, activation="identity", use_bias=False, dtype="float64")
    layer.params["weight_ih"][:] = 1.0
    layer.params["weight_hh"][:] = w
    return layer


def test_linear_rnn_counts_the_ones():
    rng = np.random.RandomState(0)
    X = rng.randint(0, 2, size=(20, 9)).astype(float)
    outputs, h_last = _linear_counter().forward(X[:, :, None])
    np.testing.assert_array_equal(h_last[:, 0], X.sum(axis=1))
    np.testing.assert_array_equal(outputs[:, :, 0], np.cumsum(X, axis=1))


def test_linear_rnn_counts_the_ones_variable_lengths():
    rng = np.random.RandomState(1)
    X = rng.randint(0, 2, size=(20, 9)).astype(float)
    lengths = rng.randint(1, 10, size=20)
    padded = np.arange(9)[None, :] >= lengths[:, None]
    X[padded] = 1.0  # padding that would count if it leaked
    outputs, h_last = _linear_counter().forward(X[:, :, None], lengths=lengths)
    expected = np.where(padded, 0.0, X).sum(axis=1)
    np.testing.assert_array_equal(h_last[:, 0], expected)
    np.testing.assert_array_equal(outputs[np.arange(20), lengths - 1, 0], expected)


@pytest.mark.parametrize("w", [0.5, -0.8, 1.3])
def test_linear_rnn_discounted_sum(w):
    rng = np.random.RandomState(2)
    X = rng.normal(size=(6, 7))
    lengths = np.array([7, 1, 4, 7, 2, 5])
    _, h_last = _linear_counter(w).forward(X[:, :, None], lengths=lengths)
    for i, L in enumerate(lengths):
        expected = sum(X[i, t] * w ** (L - 1 - t) for t in range(L))
        assert h_last[i, 0] == pytest.approx(expected, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------
# The LSTM in the reference engine: nn.LSTM's equations, by hand
# --------------------------------------------------------------------------
LSTM_T, LSTM_N, LSTM_D, LSTM_H = 6, 4, 3, 5
LSTM_LENGTHS = np.array([6, 3, 1, 5])


def _lstm_case(seed, use_bias=True):
    """(spec, params, x, state0) of one LSTM layer, drawn from ``seed``."""
    T, N, D, H = LSTM_T, LSTM_N, LSTM_D, LSTM_H
    rng = np.random.RandomState(seed)
    shapes = {"weight_ih": (4 * H, D), "weight_hh": (4 * H, H)}
    if use_bias:
        shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
    params = {k: rng.normal(scale=0.5, size=s) for k, s in shapes.items()}
    x, state0 = rng.normal(size=(T, N, D)), rng.normal(size=(N, 2 * H))
    return CellSpec("lstm", "tanh", True, use_bias), params, x, state0


def _lstm_by_hand(params, x, lengths, state0, reverse):
    """Each sequence on its own, step by step, as nn.LSTM's documentation
    writes the cell: (outputs (T, N, H), final state (N, 2H))."""
    T, N, H = LSTM_T, LSTM_N, LSTM_H

    def sigmoid(a):
        return 1.0 / (1.0 + np.exp(-a))

    outputs = np.zeros((T, N, H))
    final = np.empty((N, 2 * H))
    b = params.get("bias_ih", 0) + params.get("bias_hh", 0)
    for n in range(N):
        h, c = state0[n, :H].copy(), state0[n, H:].copy()
        steps = range(lengths[n])
        for t in reversed(steps) if reverse else steps:
            a = params["weight_ih"] @ x[t, n] + params["weight_hh"] @ h + b
            i, f = sigmoid(a[:H]), sigmoid(a[H : 2 * H])
            g, o = np.tanh(a[2 * H : 3 * H]), sigmoid(a[3 * H :])
            c = f * c + i * g
            h = o * np.tanh(c)
            outputs[t, n] = h
        final[n] = np.concatenate([h, c])
    return outputs, final


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_forward_is_nn_lstm(reverse, use_bias):
    spec, params, x, state0 = _lstm_case(0, use_bias)
    outputs, final, _ = reference.forward(
        spec, params, x, LSTM_LENGTHS, state0, reverse
    )
    expected_outputs, expected_final = _lstm_by_hand(
        params, x, LSTM_LENGTHS, state0, reverse
    )
    assert state_size("lstm", LSTM_H) == final.shape[1] == 2 * LSTM_H
    np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(final, expected_final, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_backward_matches_finite_differences(reverse, use_bias):
    """The reference engine's LSTM backward, the gradient of the initial
    state (dh0 and dc0 side by side) included."""
    spec, params, x, state0 = _lstm_case(1, use_bias)
    rng = np.random.RandomState(1)
    weights = (
        rng.normal(size=(LSTM_T, LSTM_N, LSTM_H)),
        rng.normal(size=(LSTM_N, 2 * LSTM_H)),
    )
    _, _, cache = reference.forward(spec, params, x, LSTM_LENGTHS, state0, reverse)
    dx, d_state0, grads = reference.backward(spec, params, cache, *weights)

    def f():
        outputs, final, _ = reference.forward(
            spec, params, x, LSTM_LENGTHS, state0, reverse
        )
        return np.sum(weights[0] * outputs) + np.sum(weights[1] * final)

    for name, value in params.items():
        assert _relative_error(grads[name], _numeric_gradient(f, value)) < RTOL, name
    assert _relative_error(dx, _numeric_gradient(f, x)) < RTOL
    assert _relative_error(d_state0, _numeric_gradient(f, state0)) < RTOL
    # nothing flows into the padded steps' inputs
    padded = np.arange(LSTM_T)[:, None] >= LSTM_LENGTHS[None, :]
    assert not dx[padded].any()


def test_lstm_padding_never_leaks():
    """Whatever the padded steps hold, outputs, states and gradients are the
    same; the outputs are zero there and the state is carried through."""
    spec, params, x, state0 = _lstm_case(2)
    rng = np.random.RandomState(2)
    padded = np.arange(LSTM_T)[:, None] >= LSTM_LENGTHS[None, :]
    x_other = x.copy()
    x_other[padded] = rng.normal(size=(padded.sum(), LSTM_D)) * 100
    runs = [
        reference.forward(spec, params, xx, LSTM_LENGTHS, state0) for xx in (x, x_other)
    ]
    for a, b in zip(runs[0][:2], runs[1][:2]):
        np.testing.assert_array_equal(a, b)
    assert not runs[0][0][padded].any()
    d_out = rng.normal(size=(LSTM_T, LSTM_N, LSTM_H))
    backs = [reference.backward(spec, params, run[2], d_out) for run in runs]
    np.testing.assert_array_equal(backs[0][1], backs[1][1])
    for name in params:
        np.testing.assert_array_equal(backs[0][2][name], backs[1][2][name])


# --------------------------------------------------------------------------
# Padding never leaks
# --------------------------------------------------------------------------


def _fill_padding(X, lengths, value):
    X = X.copy()
    X[np.arange(X.shape[1])[None, :] >= lengths[:, None]] = value
    return X


@pytest.mark.parametrize(
    "cell",
    [("rnn", "tanh", True), ("gru", "tanh", True), ("gru", "logistic", False)],
    ids=_cell_id,
)
def test_layer_padding_never_leaks(cell):
    rng = np.random.RandomState(3)
    lengths = np.array([2, 5, 1, 3])
    padded = np.arange(5)[None, :] >= lengths[:, None]
    X = rng.normal(size=(4, 5, D))
    h0 = rng.normal(size=(4, 3))
    d_out = rng.normal(size=(4, 5, 3))
    d_h_last = rng.normal(size=(4, 3))
    results = []
    for fill, d_fill in ((0.0, 0.0), (1e3, 5.0), (-np.pi, -1e3)):
        layer = _make_layer(cell, True, 0)
        outputs, h_last = layer.forward(
            _fill_padding(X, lengths, fill), h0=h0, lengths=lengths
        )
        d = d_out.copy()
        d[padded] = d_fill  # gradients at padded steps must be ignored too
        dX = layer.backward(d, d_h_last)
        assert np.all(outputs[padded] == 0)
        assert np.all(dX[padded] == 0)
        results.append((outputs, h_last, dX, layer.dh0, layer.grads))
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first[:4], other[:4]):
            np.testing.assert_array_equal(a, b)
        for name in first[4]:
            np.testing.assert_array_equal(first[4][name], other[4][name])


@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize(
    "bidirectional, bptt_steps", STRUCTURES, ids=["uni", "uni-bptt2", "bidir"]
)
def test_network_padding_never_leaks(bidirectional, bptt_steps, output):
    net, X, lengths, targets, weights = _make_problem(
        ("gru", "tanh", True), True, 2, bidirectional, output, True, seed=4
    )
    lengths = np.array([4, 1, 3, 2])  # every sequence shorter than T
    results = []
    for fill in (0.0, 1e3, -7.5):
        Xf = _fill_padding(X, lengths, fill)
        value, grad = _loss_grad(
            net, Xf, lengths, targets, weights, squared_error, bptt_steps
        )
        raw = net.forward(ENGINE, Xf, lengths)
        results.append((value, grad, raw))
    if output == "sequence":
        padded = np.arange(T)[None, :] >= lengths[:, None]
        assert results[0][2].shape[:2] == (N, T)
        assert np.all(results[0][2][padded] == 0)
    for value, grad, raw in results[1:]:
        assert value == results[0][0]
        np.testing.assert_array_equal(grad, results[0][1])
        np.testing.assert_array_equal(raw, results[0][2])


@pytest.mark.parametrize("fill", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("cls", [RNN, GRU])
def test_layer_nonfinite_padding_never_leaks(cls, fill):
    """NaN padding is the tslearn convention: padded values must be ignored,
    even NaN."""
    rng = np.random.RandomState(5)
    lengths = np.array([4, 2])
    X = rng.normal(size=(2, 4, D))
    d_out = rng.normal(size=(2, 4, 3))
    results = []
    for value in (0.0, fill):
        layer = cls(D, 3, dtype="float64", random_state=0)
        outputs, h_last = layer.forward(
            _fill_padding(X, lengths, value), lengths=lengths
        )
        dX = layer.backward(d_out, np.ones_like(h_last))
        results.append((outputs, h_last, dX, layer.dh0, layer.grads))
    for a, b in zip(results[0][:4], results[1][:4]):
        np.testing.assert_array_equal(a, b)
    for name in results[0][4]:
        np.testing.assert_array_equal(results[0][4][name], results[1][4][name], name)


def _two_layer_gru(bidirectional, output, rng):
    return Network(
        CellSpec("gru", "tanh", True, True),
        input_size=D,
        hidden_size=H,
        num_layers=2,
        bidirectional=bidirectional,
        output=output,
        n_outputs=2,
        dtype=np.float64,
        random_state=rng,
    )


@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
def test_network_forward_over_inference_windows(bidirectional, output):
    """Network.forward (windowed past 128 steps) equals one independent pass."""
    rng = np.random.RandomState(6)
    net = _two_layer_gru(bidirectional, output, rng)
    lengths = np.array([300, 129, 7, 128])
    X = _fill_padding(rng.normal(size=(4, 300, D)), lengths, 0.0)
    x = np.ascontiguousarray(X.transpose(1, 0, 2))
    top, _ = _run_stack(net, x, lengths, _zero_states(net, 4))
    W, b = net.coefs["head.weight"], net.coefs["head.bias"]
    if output == "last":
        feats = top[lengths - 1, np.arange(4), :H]
        if bidirectional:
            feats = np.concatenate([feats, top[0, :, H:]], axis=1)
        expected = feats @ W.T + b
    else:
        valid = (np.arange(300)[:, None] < lengths[None, :])[:, :, None]
        expected = np.where(valid, top @ W.T + b, 0.0).transpose(1, 0, 2)
    np.testing.assert_allclose(
        net.forward(ENGINE, X, lengths), expected, rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
def test_network_forward_split_between_threads(bidirectional, output, monkeypatch):
    """Shares of the sequences run in threads give exactly the serial outputs."""
    monkeypatch.setattr(network, "MIN_SHARE_WORK", 1)  # split this small net
    rng = np.random.RandomState(7)
    net = _two_layer_gru(bidirectional, output, rng)
    N = 3 * MIN_SHARE + 5
    lengths = rng.randint(1, 140, size=N)  # ragged, some past one window
    X = _fill_padding(rng.normal(size=(N, 140, D)), lengths, 0.0)
    assert net.max_shares(N, lengths.max()) == 3
    engine = get_engine("cpu")
    serial = net.forward(engine, X, lengths)
    for workers in (2, 3, 8):  # 8 asks for more shares than N allows
        split = net.forward(engine._replace(workers=workers), X, lengths)
        np.testing.assert_array_equal(split, serial)


@pytest.mark.parametrize("min_work", [1, network.MIN_SHARE_WORK])
def test_inference_shares_follow_the_share_rule(min_work, monkeypatch):
    """forward's shares are max_shares' count, at most one per worker, for
    batches of every size around the least two shares need."""
    monkeypatch.setattr(network, "MIN_SHARE_WORK", min_work)
    net = _two_layer_gru(False, "last", np.random.RandomState(0))
    for workers in (1, 2, 3):
        engine = get_engine("cpu")._replace(workers=workers)
        for N in (1, MIN_SHARE, 2 * MIN_SHARE - 1, 2 * MIN_SHARE, 3 * MIN_SHARE):
            for T in (1, 7, 5000):
                lengths = np.full(N, T)
                expected = min(workers, net.max_shares(N, T))
                assert net._inference_shares(engine, lengths) == expected


@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize(
    "bidirectional, bptt_steps", STRUCTURES, ids=["uni", "uni-bptt2", "bidir"]
)
def test_loss_grad_in_shares(bidirectional, bptt_steps, output, monkeypatch):
    """A large batch's gradient, summed over TRAINING_SHARES shares, equals the
    whole batch's, and is the same whatever the number of threads."""
    monkeypatch.setattr(network, "MIN_SHARE_WORK", 1)  # split this small net
    monkeypatch.setattr(network, "TRAINING_SHARE_WORK", 1)
    monkeypatch.setattr(network, "EPOCH_SHARE_WORK", 1)
    rng = np.random.RandomState(8)
    net = _two_layer_gru(bidirectional, output, rng)
    N = TRAINING_SHARES * MIN_SHARE + 3
    lengths = rng.randint(1, 9, size=N)
    X = _fill_padding(rng.normal(size=(N, 8, D)), lengths, 0.0)
    targets = rng.normal(size=(N, 8, 2) if output == "sequence" else (N, 2))
    weights = rng.uniform(0.5, 2.0, size=N)
    weights /= weights.sum() if output == "last" else (weights * lengths).sum()
    assert net.max_shares(N, lengths.max()) == TRAINING_SHARES

    def loss_grad(engine):
        value = net.loss_grad(
            engine, X, lengths, targets, weights, squared_error, bptt_steps
        )
        return value, net.grad.copy()

    # an engine with its own memory computes the batch whole
    whole = Engine("reference", np, ENGINE.forward, ENGINE.backward, HostCopyMemory())
    value, grad = loss_grad(whole)
    cpu = get_engine("cpu")
    results = [loss_grad(ENGINE)] + [
        loss_grad(cpu._replace(workers=w)) for w in (1, 2, 4)
    ]
    for v, g in results:
        assert v == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(g, grad, rtol=1e-10, atol=1e-14)
    for v, g in results[2:]:
        assert v == results[1][0]
        np.testing.assert_array_equal(g, results[1][1])
