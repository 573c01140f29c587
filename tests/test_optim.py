import math
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skrnn.optim import SGD, Adam, Rprop, clip_grad_norm

OPTIMIZERS = [
    lambda: SGD(learning_rate=0.01, momentum=0.9),
    lambda: SGD(learning_rate=0.01, momentum=0.9, nesterov=False),
    lambda: Adam(learning_rate=0.05),
    lambda: Rprop(learning_rate=0.01),
]
OPTIMIZER_IDS = ["sgd-nesterov", "sgd-momentum", "adam", "rprop"]


# --------------------------------------------------------------------------
# closed-form steps


def test_sgd_nesterov_two_steps_by_hand():
    params = {"w": np.array([1.0])}
    opt = SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    # v1 = -0.1 * 2 = -0.2; w += 0.9 * -0.2 - 0.1 * 2 = -0.38
    opt.update(params, {"w": np.array([2.0])})
    assert_allclose(params["w"], [0.62], rtol=0, atol=1e-15)
    assert_allclose(opt.state["w"]["velocity"], [-0.2], rtol=0, atol=1e-15)
    # v2 = 0.9 * -0.2 - 0.1 * -1 = -0.08; w += 0.9 * -0.08 + 0.1 = 0.028
    opt.update(params, {"w": np.array([-1.0])})
    assert_allclose(params["w"], [0.648], rtol=0, atol=1e-15)
    assert_allclose(opt.state["w"]["velocity"], [-0.08], rtol=0, atol=1e-15)


def test_sgd_classical_momentum_two_steps_by_hand():
    params = {"w": np.array([1.0])}
    opt = SGD(learning_rate=0.1, momentum=0.9, nesterov=False)
    opt.update(params, {"w": np.array([2.0])})  # v = -0.2
    assert_allclose(params["w"], [0.8], rtol=0, atol=1e-15)
    opt.update(params, {"w": np.array([-1.0])})  # v = -0.18 + 0.1
    assert_allclose(params["w"], [0.72], rtol=0, atol=1e-15)


def test_sgd_without_momentum_is_gradient_descent():
    params = {"w": np.array([1.0, -2.0])}
    opt = SGD(learning_rate=0.25, momentum=0.0)
    for _ in range(3):
        opt.update(params, {"w": np.array([4.0, -8.0])})
    assert_array_equal(params["w"], [1.0 - 3.0, -2.0 + 6.0])


def test_adam_two_steps_by_hand():
    params = {"w": np.array([1.0])}
    opt = Adam(learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    # t=1: m = 0.2, v = 0.004; m_hat = m / 0.1, sqrt(v_hat) = sqrt(v / 0.001)
    opt.update(params, {"w": np.array([2.0])})
    w1 = 1.0 - 0.1 / 0.1 * 0.2 / (math.sqrt(0.004) / math.sqrt(0.001) + 1e-8)
    assert_allclose(params["w"], [w1], rtol=1e-14)
    assert abs(w1 - 0.9) < 1e-6  # the first Adam step is ~ learning_rate
    # t=2: m = 0.18 - 0.1 = 0.08, v = 0.003996 + 0.001 = 0.004996
    opt.update(params, {"w": np.array([-1.0])})
    denom = math.sqrt(0.004996) / math.sqrt(1 - 0.999**2) + 1e-8
    w2 = w1 - 0.1 / (1 - 0.9**2) * 0.08 / denom
    assert_allclose(params["w"], [w2], rtol=1e-14)
    assert opt.state["w"]["t"] == 2
    assert_allclose(opt.state["w"]["m"], [0.08], rtol=1e-14)
    assert_allclose(opt.state["w"]["v"], [0.004996], rtol=1e-14)


def test_adam_adds_epsilon_after_the_bias_correction():
    # A gradient as small as epsilon: the bias-corrected moments are g and
    # |g|, so the first step is learning_rate * g / (g + eps) = lr / 2. With
    # epsilon added before the correction (scikit-learn's MLP), the step
    # would be ~0.03 lr: sqrt(v) = sqrt(1 - beta_2) g is 32 times smaller.
    params = {"w": np.array([0.0])}
    Adam(learning_rate=0.1, epsilon=1e-8).update(params, {"w": np.array([1e-8])})
    assert_allclose(params["w"], [-0.05], rtol=1e-12)


def test_adam_step_count_is_per_key():
    params = {"a": np.array([0.0]), "b": np.array([0.0])}
    opt = Adam(learning_rate=0.1)
    opt.update(params, {"a": np.array([1.0]), "b": np.array([1.0])})
    opt.update(params, {"a": np.array([1.0])})
    assert opt.state["a"]["t"] == 2
    assert opt.state["b"]["t"] == 1
    # a fresh key starts with t=1: its first step is ~ learning_rate
    params["c"] = np.array([0.0])
    opt.update(params, {"c": np.array([3.0])})
    assert_allclose(params["c"], [-0.1], rtol=1e-6)


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_matches_sklearn_bit_for_bit(nesterov):
    sk = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    rng = np.random.RandomState(0)
    shapes = [(3, 4), (4,)]
    ours = {str(i): rng.normal(size=s) for i, s in enumerate(shapes)}
    theirs = [p.copy() for p in ours.values()]
    ref = sk.SGDOptimizer(
        theirs, learning_rate_init=0.05, momentum=0.8, nesterov=nesterov
    )
    opt = SGD(learning_rate=0.05, momentum=0.8, nesterov=nesterov)
    for _ in range(20):
        grads = [rng.normal(size=s) for s in shapes]
        ref.update_params(theirs, grads)
        opt.update(ours, {str(i): g for i, g in enumerate(grads)})
    for mine, other in zip(ours.values(), theirs):
        assert_array_equal(mine, other)


def test_adam_is_sklearns_adam_as_epsilon_vanishes():
    # scikit-learn adds epsilon before the bias correction: the two forms
    # differ by epsilon alone
    sk = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    rng = np.random.RandomState(1)
    shapes = [(5, 2), (2,)]
    ours = {str(i): rng.normal(size=s) for i, s in enumerate(shapes)}
    theirs = [p.copy() for p in ours.values()]
    ref = sk.AdamOptimizer(
        theirs, learning_rate_init=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-300
    )
    opt = Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-300)
    for _ in range(20):
        grads = [rng.normal(size=s) for s in shapes]
        ref.update_params(theirs, grads)
        opt.update(ours, {str(i): g for i, g in enumerate(grads)})
    for mine, other in zip(ours.values(), theirs):
        assert_allclose(mine, other, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# Rprop (iRprop-)


def test_rprop_first_step_is_learning_rate_in_minus_sign_direction():
    params = {"w": np.array([0.0, 0.0, 0.0])}
    opt = Rprop(learning_rate=0.01)
    opt.update(params, {"w": np.array([3.0, -1e-9, 0.0])})
    # only the sign counts; a zero gradient does not move the weight
    assert_allclose(params["w"], [-0.01, 0.01, 0.0], rtol=0, atol=1e-17)
    assert_allclose(opt.state["w"]["step_size"], [0.01, 0.01, 0.01])


def test_rprop_same_sign_grows_step_by_etaplus():
    params = {"w": np.array([0.0])}
    opt = Rprop(learning_rate=0.1, etas=(0.5, 1.2))
    for _ in range(3):
        opt.update(params, {"w": np.array([1.0])})
    # steps 0.1, 0.12, 0.144
    assert_allclose(params["w"], [-(0.1 + 0.12 + 0.144)], rtol=1e-14)
    assert_allclose(opt.state["w"]["step_size"], [0.144], rtol=1e-14)


def test_rprop_sign_change_shrinks_step_and_does_not_move_weight():
    params = {"w": np.array([0.0, 0.0])}
    opt = Rprop(learning_rate=0.1, etas=(0.5, 1.2))
    opt.update(params, {"w": np.array([1.0, 1.0])})
    assert_allclose(params["w"], [-0.1, -0.1])
    # element 0 changes sign, element 1 keeps it
    opt.update(params, {"w": np.array([-2.0, 1.0])})
    assert_allclose(params["w"], [-0.1, -0.1 - 0.12], rtol=1e-14)
    assert_allclose(opt.state["w"]["step_size"], [0.05, 0.12], rtol=1e-14)
    # the changed element stores 0 as its previous gradient
    assert_array_equal(opt.state["w"]["prev"], [0.0, 1.0])
    # next update: element 0 has prev == 0, so its step is kept (0.05) and used
    opt.update(params, {"w": np.array([-2.0, 1.0])})
    assert_allclose(params["w"], [-0.1 + 0.05, -0.1 - 0.12 - 0.144], rtol=1e-14)
    assert_allclose(opt.state["w"]["step_size"], [0.05, 0.144], rtol=1e-14)
    assert_array_equal(opt.state["w"]["prev"], [-2.0, 1.0])


def test_rprop_clamps_step_sizes():
    params = {"w": np.array([0.0, 0.0])}
    opt = Rprop(learning_rate=1.0, etas=(0.1, 3.0), step_sizes=(0.05, 5.0))
    for _ in range(4):  # element 0 keeps its sign: 1, 3, 5 (clamped), 5
        opt.update(params, {"w": np.array([1.0, 0.0])})
    assert_allclose(opt.state["w"]["step_size"][0], 5.0)
    assert_allclose(params["w"][0], -(1.0 + 3.0 + 5.0 + 5.0))
    # alternate signs on element 1: 1 -> 0.1 -> (kept) -> 0.05 (clamped) ...
    signs = [1.0, -1.0, -1.0, 1.0, 1.0, -1.0]
    for s in signs:
        opt.update(params, {"w": np.array([0.0, s])})
    assert_allclose(opt.state["w"]["step_size"][1], 0.05)


def test_rprop_initial_step_is_clamped_like_torch():
    params = {"w": np.array([0.0])}
    opt = Rprop(learning_rate=100.0, step_sizes=(1e-6, 50.0))
    opt.update(params, {"w": np.array([1.0])})
    assert_allclose(params["w"], [-50.0])


def test_rprop_does_not_change_grads():
    grads = {"w": np.array([1.0, -1.0])}
    params = {"w": np.zeros(2)}
    opt = Rprop(learning_rate=0.1)
    opt.update(params, grads)
    opt.update(params, {"w": np.array([-1.0, -1.0])})
    assert_array_equal(grads["w"], [1.0, -1.0])


def _seed_linear_rnn_gradients(X, t, wx, w_rec):
    """Gradients of the seed write-up's linear RNN, as it computes them."""
    n, T = X.shape
    S = np.zeros((n, T + 1))
    for k in range(T):
        S[:, k + 1] = S[:, k] * w_rec + X[:, k] * wx
    grad = 2.0 * (S[:, -1] - t)  # d/dy of (t - y) ** 2
    wx_grad = w_rec_grad = 0.0
    for k in range(T, 0, -1):
        wx_grad += np.mean(grad * X[:, k - 1])
        w_rec_grad += np.mean(grad * S[:, k - 1])
        grad = grad * w_rec
    return S, wx_grad, w_rec_grad


def test_seed_linear_rnn_counts_ones_with_rprop():
    # the seed tutorial: 20 sequences of 10 bits, start wx=-1.5, wRec=2,
    # Rprop with initial step 0.001 and etas (0.5, 1.2), 500 iterations
    rng = np.random.RandomState(1)
    X = np.round(rng.random_sample((20, 10)))
    t = X.sum(axis=1)
    params = {"wx": np.array(-1.5), "wRec": np.array(2.0)}
    wx_array, w_rec_array = params["wx"], params["wRec"]
    opt = Rprop(learning_rate=0.001, etas=(0.5, 1.2))
    for _ in range(500):
        _, g_wx, g_rec = _seed_linear_rnn_gradients(
            X, t, float(params["wx"]), float(params["wRec"])
        )
        opt.update(params, {"wx": np.array(g_wx), "wRec": np.array(g_rec)})
    assert params["wx"] is wx_array and params["wRec"] is w_rec_array
    assert abs(float(params["wx"]) - 1.0) < 0.01
    assert abs(float(params["wRec"]) - 1.0) < 0.01
    # and it counts the ones of an unseen, longer sequence
    x_test = np.array([[0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0]], dtype=float)
    S, _, _ = _seed_linear_rnn_gradients(
        x_test, np.zeros(1), float(params["wx"]), float(params["wRec"])
    )
    assert abs(S[0, -1] - 5.0) < 0.1


# --------------------------------------------------------------------------
# shared behaviour


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_converges_on_ill_conditioned_quadratic(make_opt):
    # f(w) = 0.5 * sum(a * (w - c) ** 2)
    a = np.array([1.0, 10.0, 0.5])
    c = np.array([1.0, -2.0, 3.0])
    params = {"w": np.zeros(3)}
    opt = make_opt()
    for _ in range(3000):
        opt.update(params, {"w": a * (params["w"] - c)})
    assert_allclose(params["w"], c, atol=1e-3)


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_updates_in_place_and_keeps_float32(make_opt):
    rng = np.random.RandomState(0)
    weight = rng.normal(size=(4, 3)).astype(np.float32)
    bias = np.zeros(4, dtype=np.float32)
    frozen = np.ones(2, dtype=np.float32)
    params = {"weight": weight, "bias": bias, "frozen": frozen}
    before = {k: v.copy() for k, v in params.items()}
    opt = make_opt()
    for _ in range(3):
        # float64 gradients are cast to the weights' dtype
        grads = {"weight": rng.normal(size=(4, 3)), "bias": rng.normal(size=4)}
        opt.update(params, grads)
    assert params["weight"] is weight and params["bias"] is bias
    assert params["frozen"] is frozen
    assert weight.dtype == np.float32 and bias.dtype == np.float32
    assert not np.array_equal(weight, before["weight"])
    assert not np.array_equal(bias, before["bias"])
    assert_array_equal(frozen, before["frozen"])
    assert "frozen" not in opt.state
    for key in ("weight", "bias"):
        for value in opt.state[key].values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32
                assert value.shape == params[key].shape


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_float32_weights_compute_in_float32(make_opt):
    # float64 gradients give exactly what the same gradients cast to float32
    # give: the arithmetic runs in the weights' precision
    rng = np.random.RandomState(7)
    w0 = rng.normal(size=50).astype(np.float32)
    grads = [rng.normal(size=50) for _ in range(5)]
    p64, p32 = {"w": w0.copy()}, {"w": w0.copy()}
    opt64, opt32 = make_opt(), make_opt()
    for g in grads:
        opt64.update(p64, {"w": g})
        opt32.update(p32, {"w": g.astype(np.float32)})
    assert_array_equal(p64["w"], p32["w"])


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_update_rejects_mismatched_input(make_opt):
    opt = make_opt()
    params = {"w": np.zeros((2, 3))}
    with pytest.raises(KeyError, match="'v'"):
        opt.update(params, {"v": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="shape"):
        opt.update(params, {"w": np.zeros(3)})
    with pytest.raises(TypeError, match="floating"):
        opt.update({"w": np.zeros(3, dtype=np.int64)}, {"w": np.ones(3)})
    assert_array_equal(params["w"], 0.0)
    opt.update(params, {"w": np.ones((2, 3))})
    # the array under a key changes shape: refuse, until reset()
    params["w"] = np.zeros((4,))
    with pytest.raises(ValueError, match="reset"):
        opt.update(params, {"w": np.ones(4)})
    opt.reset()
    opt.update(params, {"w": np.ones(4)})
    assert np.all(params["w"] < 0)


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_pickled_optimizer_continues_identically(make_opt):
    rng = np.random.RandomState(3)
    params = {"w": rng.normal(size=5)}
    opt = make_opt()
    opt.update(params, {"w": rng.normal(size=5)})
    params2 = {"w": params["w"].copy()}
    opt2 = pickle.loads(pickle.dumps(opt))
    for _ in range(3):
        g = rng.normal(size=5)
        opt.update(params, {"w": g})
        opt2.update(params2, {"w": g.copy()})
    assert_array_equal(params["w"], params2["w"])


def test_repr():
    assert repr(SGD()) == "SGD(learning_rate=0.001, momentum=0.9, nesterov=True)"
    assert repr(Rprop()) == (
        "Rprop(learning_rate=0.001, etas=(0.5, 1.2), step_sizes=(1e-06, 50.0))"
    )
    assert repr(Adam(learning_rate=0.1)).startswith("Adam(learning_rate=0.1, ")


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: SGD(learning_rate=0.0), "learning_rate"),
        (lambda: SGD(learning_rate=-1.0), "learning_rate"),
        (lambda: SGD(learning_rate="0.1"), "learning_rate"),
        (lambda: SGD(learning_rate=float("nan")), "learning_rate"),
        (lambda: SGD(momentum=1.5), "momentum"),
        (lambda: SGD(nesterov="yes"), "nesterov"),
        (lambda: Adam(beta_1=1.0), "beta_1"),
        (lambda: Adam(beta_2=-0.1), "beta_2"),
        (lambda: Adam(epsilon=0.0), "epsilon"),
        (lambda: Rprop(etas=(1.0, 1.2)), r"etas\[0\]"),
        (lambda: Rprop(etas=(0.5, 1.0)), r"etas\[1\]"),
        (lambda: Rprop(etas=0.5), "etas"),
        (lambda: Rprop(step_sizes=(1.0, 0.5)), r"step_sizes\[1\]"),
        (lambda: Rprop(step_sizes=(-1.0, 0.5)), r"step_sizes\[0\]"),
        (lambda: Rprop(step_sizes=(1e-6, 50.0, 1.0)), "step_sizes"),
    ],
)
def test_bad_hyperparameters_raise(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


# --------------------------------------------------------------------------
# clip_grad_norm


def test_clip_grad_norm_scales_to_max_norm():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    a, b = grads["a"], grads["b"]
    norm = clip_grad_norm(grads, 2.5)
    assert norm == 5.0
    assert grads["a"] is a and grads["b"] is b
    assert_allclose(a, [1.5])
    assert_allclose(b, [[2.0]])
    assert_allclose(clip_grad_norm(grads, 10.0), 2.5)


def test_clip_grad_norm_leaves_small_gradients_alone():
    grads = [np.array([0.3, -0.4]), np.array([0.0])]
    assert_allclose(clip_grad_norm(grads, 1.0), 0.5)
    assert_array_equal(grads[0], [0.3, -0.4])
    assert clip_grad_norm([], 1.0) == 0.0


def test_clip_grad_norm_float32_does_not_overflow():
    g = np.full(4, 1e20, dtype=np.float32)  # sum of squares > float32 max
    norm = clip_grad_norm({"g": g}, 1.0)
    assert_allclose(norm, 2e20, rtol=1e-6)
    assert g.dtype == np.float32
    assert_allclose(g, 0.5, rtol=1e-6)


def test_clip_grad_norm_non_finite_is_returned_untouched():
    grads = {"a": np.array([np.nan, 1.0]), "b": np.array([2.0])}
    norm = clip_grad_norm(grads, 1.0)
    assert math.isnan(norm)
    assert_array_equal(grads["b"], [2.0])


def test_clip_grad_norm_rejects_bad_max_norm():
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm({"a": np.ones(2)}, 0.0)


# --------------------------------------------------------------------------
# parity with torch.optim (optional)


def _torch_trajectory(torch, make_torch_opt, w0, grads, dtype):
    w = torch.tensor(w0, dtype=dtype, requires_grad=True)
    opt = make_torch_opt([w])
    out = []
    for g in grads:
        w.grad = torch.tensor(g, dtype=dtype)
        opt.step()
        out.append(w.detach().numpy().copy())
    return out


def _our_trajectory(opt, w0, grads, dtype):
    params = {"w": np.array(w0, dtype=dtype)}
    out = []
    for g in grads:
        opt.update(params, {"w": np.array(g, dtype=dtype)})
        out.append(params["w"].copy())
    return out


def _sign_flipping_grads(n_steps=40, size=6, seed=0):
    rng = np.random.RandomState(seed)
    grads = rng.normal(size=(n_steps, size))
    grads[:, 0] = np.abs(grads[:, 0])  # keeps its sign: reaches max step
    grads[::3, 1] = 0.0  # zero gradients now and then
    return grads


@pytest.mark.parametrize(
    "dtype_name, step_sizes", [("float64", (1e-6, 50.0)), ("float32", (1e-3, 0.5))]
)
def test_rprop_matches_torch(dtype_name, step_sizes):
    torch = pytest.importorskip("torch")
    grads = _sign_flipping_grads()
    w0 = np.linspace(-1, 1, grads.shape[1])
    theirs = _torch_trajectory(
        torch,
        lambda p: torch.optim.Rprop(p, lr=0.01, etas=(0.4, 1.3), step_sizes=step_sizes),
        w0,
        grads,
        getattr(torch, dtype_name),
    )
    ours = _our_trajectory(
        Rprop(learning_rate=0.01, etas=(0.4, 1.3), step_sizes=step_sizes),
        w0,
        grads,
        np.dtype(dtype_name),
    )
    for mine, other in zip(ours, theirs):
        assert mine.dtype == other.dtype
        assert_array_equal(mine, other)


def test_sgd_matches_torch_with_constant_learning_rate():
    torch = pytest.importorskip("torch")
    grads = _sign_flipping_grads(seed=1)
    w0 = np.linspace(-1, 1, grads.shape[1])
    theirs = _torch_trajectory(
        torch,
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        w0,
        grads,
        torch.float64,
    )
    ours = _our_trajectory(SGD(0.05, momentum=0.9), w0, grads, np.float64)
    for mine, other in zip(ours, theirs):
        assert_allclose(mine, other, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("epsilon", [1e-8, 1e-3])
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_adam_matches_torch_adam(epsilon, dtype_name):
    torch = pytest.importorskip("torch")
    grads = _sign_flipping_grads(seed=2) * 1e-3  # small: epsilon matters
    w0 = np.linspace(-1, 1, grads.shape[1])
    theirs = _torch_trajectory(
        torch,
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=epsilon),
        w0,
        grads,
        getattr(torch, dtype_name),
    )
    ours = _our_trajectory(Adam(0.01, epsilon=epsilon), w0, grads, np.dtype(dtype_name))
    rtol = 1e-12 if dtype_name == "float64" else 1e-6
    for mine, other in zip(ours, theirs):
        assert mine.dtype == other.dtype
        assert_allclose(mine, other, rtol=rtol, atol=rtol)
