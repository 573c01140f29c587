"""The estimators' behaviour: labels, probabilities, seeds, warm starts,
partial_fit, early stopping, coefs_, sample weights, bookkeeping, verbose
output, and the binary-sum acceptance tests.

Most fits are a few epochs of a tiny model, so they end with
``ConvergenceWarning`` (max_iter reached), which ``_fit`` expects.
"""

import copy
import sys

import numpy as np
import pytest
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.datasets import make_binary_sum

ESTIMATORS = [SequenceRegressor, SequenceClassifier]


def _fit(est, X, y, **fit_params):
    """Fit for est.max_iter epochs, which are too few to converge."""
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        return est.fit(X, y, **fit_params)


def _data(Est, n=24, T=5, D=2, seed=0, n_classes=2):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, T, D))
    s = X[:, :, 0].sum(axis=1)
    if Est is SequenceRegressor:
        return X, s
    if n_classes == 2:
        return X, (s > 0).astype(int)
    return X, np.digitize(s, np.quantile(s, np.linspace(0, 1, n_classes + 1)[1:-1]))


def _assert_coefs_equal(a, b):
    assert set(a) == set(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


# ------------------------------------------------------------------ labels
def _labelled(n_classes, seed=0):
    X, codes = _data(SequenceClassifier, n=60, T=5, D=1, seed=seed, n_classes=n_classes)
    names = np.array(["cat", "dog", "emu", "fox"][:n_classes])
    return X, names[codes]


# Whether 60 epochs are enough to meet the stopping rule does not matter
# here: the tests check the labels, not the convergence.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_string_labels_round_trip(n_classes):
    X, y = _labelled(n_classes)
    clf = SequenceClassifier(
        hidden_size=8, learning_rate_init=0.05, max_iter=60, random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    assert clf.n_outputs_ == (1 if n_classes == 2 else n_classes)
    pred = clf.predict(X)
    assert pred.shape == y.shape
    assert pred.dtype.kind == "U"
    assert set(pred) <= set(y)
    assert clf.score(X, y) >= 0.8
    assert clf.score(X, y) == np.mean(pred == y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_string_labels_per_step_round_trip():
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(L, 1)) for L in rng.randint(2, 7, size=40)]
    # the label of each step: the sign of the input at that step
    y = [np.where(x[:, 0] > 0, "up", "down") for x in X]
    clf = SequenceClassifier(
        hidden_size=8,
        learning_rate_init=0.05,
        max_iter=40,
        random_state=0,
        output="sequence",
    ).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, ["down", "up"])
    pred = clf.predict(X)
    assert isinstance(pred, list)
    assert all(p.shape == t.shape and set(p) <= {"down", "up"} for p, t in zip(pred, y))
    assert np.mean(np.concatenate(pred) == np.concatenate(y)) >= 0.9


@pytest.mark.parametrize(
    "labels", [[-1, 1], [0.0, 2.0, 5.0], [True, False], ["b", "a", "c"]]
)
def test_other_label_types(labels):
    X, codes = _data(SequenceClassifier, n_classes=len(labels))
    y = np.asarray(labels)[codes]
    clf = _fit(SequenceClassifier(hidden_size=4, max_iter=2, random_state=0), X, y)
    np.testing.assert_array_equal(clf.classes_, np.unique(labels))
    assert set(clf.predict(X)) <= set(labels)
    assert clf.predict(X).dtype == clf.classes_.dtype


@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_probabilities(n_classes, output):
    X, y = _data(SequenceClassifier, n_classes=n_classes)
    if output == "sequence":
        y = np.tile(y[:, None], (1, X.shape[1]))
    clf = _fit(
        SequenceClassifier(hidden_size=4, max_iter=3, random_state=0, output=output),
        X,
        y,
    )
    proba = clf.predict_proba(X)
    log_proba = clf.predict_log_proba(X)
    expected_shape = (
        X.shape[:2] + (n_classes,) if output == "sequence" else (len(X), n_classes)
    )
    assert proba.shape == log_proba.shape == expected_shape
    assert proba.dtype == log_proba.dtype == np.float64
    assert (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=-1)])
    np.testing.assert_allclose(log_proba, np.log(proba), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.exp(log_proba), proba, rtol=1e-12)


def test_binary_head_is_logistic():
    # one output: P(classes_[1]) = expit(head), computed from coefs_ by hand
    X, y = _data(SequenceClassifier)
    clf = _fit(
        SequenceClassifier(
            cell="rnn", hidden_size=4, max_iter=2, random_state=0, dtype="float64"
        ),
        X,
        y,
    )
    z = _numpy_forward(clf, X)[:, 0]
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], expit(z), rtol=1e-10)


def test_log_proba_is_finite_for_saturated_outputs():
    X, y = _data(SequenceClassifier)
    clf = _fit(SequenceClassifier(hidden_size=4, max_iter=2, random_state=0), X, y)
    clf.coefs_["head.bias"][...] = 1e4
    log_proba = clf.predict_log_proba(X)
    assert np.isfinite(log_proba).all()
    np.testing.assert_allclose(log_proba[:, 0], -1e4, rtol=1e-3)


# ---------------------------------------------------------- random_state
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"cell": "rnn", "solver": "sgd", "batch_size": 5},
        {
            "bidirectional": True,
            "num_layers": 2,
            "early_stopping": True,
            "n_iter_no_change": 100,
        },
    ],
)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_random_state_reproducible(Est, params):
    X, y = _data(Est, n=30)
    make = lambda seed: Est(hidden_size=4, max_iter=3, random_state=seed, **params)  # noqa: E731
    a = _fit(make(0), X, y)
    b = _fit(make(0), X, y)
    c = _fit(make(1), X, y)
    _assert_coefs_equal(a.coefs_, b.coefs_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.loss_curve_ == b.loss_curve_
    assert any(not np.array_equal(a.coefs_[k], c.coefs_[k]) for k in a.coefs_)
    # a RandomState instance seeded alike gives the same model as the int
    d = _fit(
        Est(hidden_size=4, max_iter=3, random_state=np.random.RandomState(0), **params),
        X,
        y,
    )
    _assert_coefs_equal(a.coefs_, d.coefs_)


def test_refit_starts_afresh():
    X, y = _data(SequenceRegressor)
    est = _fit(SequenceRegressor(hidden_size=4, max_iter=3, random_state=0), X, y)
    first = copy.deepcopy(est.coefs_)
    _fit(est, X, y)
    _assert_coefs_equal(est.coefs_, first)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3


# -------------------------------------------------------------- warm_start
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_warm_start_continues(Est):
    X, y = _data(Est, n=40)
    est = Est(
        hidden_size=6,
        max_iter=5,
        learning_rate_init=0.02,
        random_state=0,
        warm_start=True,
    )
    _fit(est, X, y)
    first_curve = list(est.loss_curve_)
    _fit(est, X, y)
    assert est.n_iter_ == 10
    assert len(est.loss_curve_) == 10
    assert est.loss_curve_[:5] == first_curve
    # the second fit starts where the first ended, not from scratch
    assert est.loss_curve_[5] < first_curve[0]
    assert est.loss_curve_[5] < first_curve[1]
    assert est.t_ == 10 * len(X)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_warm_start_equals_one_long_fit_without_shuffle(Est):
    # shuffle=False and sgd without momentum: nothing but the weights carries
    # over between epochs, so 3 + 3 warm epochs are 6 epochs
    X, y = _data(Est, n=20)
    params = dict(
        hidden_size=4,
        random_state=0,
        shuffle=False,
        solver="sgd",
        momentum=0.0,
        learning_rate_init=0.05,
        batch_size=5,
    )
    warm = Est(max_iter=3, warm_start=True, **params)
    _fit(warm, X, y)
    _fit(warm, X, y)
    cold = _fit(Est(max_iter=6, **params), X, y)
    for k in cold.coefs_:
        np.testing.assert_allclose(
            warm.coefs_[k], cold.coefs_[k], rtol=1e-10, atol=1e-12
        )
    np.testing.assert_allclose(warm.loss_curve_, cold.loss_curve_, rtol=1e-10)


# ------------------------------------------------------------- partial_fit
def test_classifier_partial_fit_lowers_the_loss():
    X, y = _data(SequenceClassifier, n=40, n_classes=3)
    labels = np.array(["x", "y", "z"])[y]
    clf = SequenceClassifier(hidden_size=6, learning_rate_init=0.02, random_state=0)
    clf.partial_fit(X, labels, classes=["x", "y", "z"])
    first = clf.loss_
    assert clf.n_iter_ == 1 and clf.t_ == len(X)
    np.testing.assert_array_equal(clf.classes_, ["x", "y", "z"])
    for _ in range(30):
        clf.partial_fit(X, labels)
    assert clf.loss_ < first
    assert clf.n_iter_ == 31 and clf.t_ == 31 * len(X)
    assert len(clf.loss_curve_) == 31
    assert clf.loss_curve_[-1] == clf.loss_


def test_classifier_partial_fit_classes_not_all_in_first_batch():
    X, y = _data(SequenceClassifier, n=30, n_classes=3)
    clf = SequenceClassifier(hidden_size=4, random_state=0)
    first = y != 2
    clf.partial_fit(X[first], y[first], classes=[0, 1, 2])
    assert clf.n_outputs_ == 3
    assert clf.predict_proba(X).shape == (30, 3)
    clf.partial_fit(X, y)
    assert set(clf.predict(X)) <= {0, 1, 2}


def test_regressor_partial_fit_lowers_the_loss():
    X, y = _data(SequenceRegressor, n=40)
    reg = SequenceRegressor(hidden_size=6, learning_rate_init=0.02, random_state=0)
    reg.partial_fit(X, y)
    first = reg.loss_
    for _ in range(30):
        reg.partial_fit(X, y)
    assert reg.loss_ < first
    assert reg.n_iter_ == 31 and len(reg.loss_curve_) == 31


# --------------------------------------------------------- early stopping
def test_early_stopping_keeps_the_best_weights():
    # A stops early; its best epoch j is before its last. B, the same model
    # with max_iter = j + 1, runs exactly A's first j + 1 epochs (same seed:
    # same weights, split and shuffles) and ends on the best weights. So A
    # keeps its best weights iff A's final weights are B's.
    # (the RNN stays at the mean target for 30 epochs, then learns)
    X, y = make_binary_sum(n_samples=200, n_timesteps=10, random_state=0)
    params = dict(
        cell="rnn",
        hidden_size=8,
        learning_rate_init=0.02,
        batch_size=20,
        random_state=0,
        early_stopping=True,
        tol=0.0,
        n_iter_no_change=2,
    )
    a = SequenceRegressor(max_iter=100, **params).fit(X, y)
    assert a.n_iter_ < 100  # it stopped early, without a ConvergenceWarning
    scores = a.validation_scores_
    assert len(scores) == a.n_iter_ == len(a.loss_curve_)
    assert a.best_validation_score_ == max(scores)
    assert a.best_loss_ is None
    j = int(np.argmax(scores))
    assert j < a.n_iter_ - 1, "the test needs a best epoch before the last"

    b = _fit(SequenceRegressor(max_iter=j + 1, **params), X, y)
    assert b.validation_scores_ == scores[: j + 1]
    assert b.validation_scores_[-1] == a.best_validation_score_
    _assert_coefs_equal(a.coefs_, b.coefs_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_early_stopping_classifier_records_accuracy():
    X, y = _data(SequenceClassifier, n=60)
    clf = SequenceClassifier(
        hidden_size=4,
        max_iter=5,
        random_state=0,
        early_stopping=True,
        n_iter_no_change=50,
        validation_fraction=0.2,
    )
    _fit(clf, X, y)
    scores = clf.validation_scores_
    assert len(scores) == 5
    # accuracy on a stratified 12-sample validation set
    assert all(0 <= s <= 1 and (s * 12) == pytest.approx(round(s * 12)) for s in scores)
    assert clf.best_validation_score_ == max(scores)


def test_partial_fit_ignores_early_stopping():
    X, y = _data(SequenceRegressor, n=30)
    reg = SequenceRegressor(hidden_size=4, random_state=0, early_stopping=True)
    reg.partial_fit(X, y)
    reg.partial_fit(X, y)
    assert reg.t_ == 2 * len(X)  # every sample trained on: no held-out split


# ------------------------------------------------ stopping on a plateau
def _bump_sequences(n, seed, T=150):
    """GunPoint's kind of data: one long univariate series per sample, whose
    class is the sign of a short bump 20 to 60 steps before its end."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    centres = rng.uniform(90, 130, n)
    bump = np.exp(-0.5 * ((np.arange(T)[None] - centres[:, None]) / 5.0) ** 2)
    X = (2 * y[:, None] - 1) * bump + 0.1 * rng.normal(size=(n, T))
    return X[:, :, None], y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_defaults_get_off_the_plateau_of_long_sequences(seed):
    # The loss stays at the class prior's for tens of epochs before it falls.
    # Counting those epochs towards n_iter_no_change stopped the fit there,
    # at chance (test accuracy 0.48, 0.545, 0.475 for these seeds).
    X, y = _bump_sequences(50, seed)
    X_test, y_test = _bump_sequences(200, 100 + seed)
    model = SequenceClassifier(random_state=seed).fit(X, y)
    assert model.score(X_test, y_test) >= 0.8


def test_the_margin_of_a_constant_outputs_loss_is_its_size_either_sign():
    from skrnn._base import _near_constant

    # the Gaussian likelihood's loss is negative for targets of small spread
    for constant in (2.0, -2.0):
        assert _near_constant(constant, constant)
        assert _near_constant(constant - 0.01 * abs(constant) + 1e-9, constant)
        assert not _near_constant(constant - 0.02 * abs(constant), constant)
    assert not _near_constant(-5.0, 0.0) and not _near_constant(1.0, None)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_a_fit_that_learned_nothing_says_so(Est):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5, 2))
    # targets the sequences do not tell: no model does better than a constant
    y = rng.normal(size=200) + 3 if Est is SequenceRegressor else rng.randint(0, 2, 200)
    constant = "the mean target" if Est is SequenceRegressor else "the class prior"
    with pytest.warns(ConvergenceWarning, match="Maximum iterations") as record:
        Est(hidden_size=4, max_iter=2, random_state=0).fit(X, y)
    [warning] = record
    assert f"of a constant output ({constant})" in str(warning.message)
    assert "no better than that constant" in str(warning.message)


def test_a_fit_that_learned_says_only_that_it_did_not_converge():
    X, y = _data(SequenceClassifier, n=60)
    model = SequenceClassifier(
        hidden_size=8,
        learning_rate_init=0.05,
        batch_size=10,
        max_iter=5,
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning, match="Maximum iterations") as record:
        model.fit(X, y)
    assert model.loss_ < 0.5 * np.log(2)  # well below the class prior's loss
    assert ["constant" not in str(w.message) for w in record] == [True]


# ------------------------------------------------------------ normalize_y
def test_normalize_y_predicts_the_head_output_in_the_targets_units():
    # predict = head output * std + mean, the sample-weighted statistics of
    # each target column; a closed form from coefs_
    X, s = _data(SequenceRegressor, n=30, D=1)
    y = np.column_stack([1e4 + 300 * s, -2.0 * s])
    w = np.random.RandomState(1).uniform(0.5, 2.0, len(y))
    est = _fit(
        SequenceRegressor(cell="rnn", hidden_size=4, max_iter=2, dtype="float64"),
        X,
        y,
        sample_weight=w,
    )
    mean = w @ y / w.sum()
    std = np.sqrt(w @ (y - mean) ** 2 / w.sum())
    np.testing.assert_allclose(
        est.predict(X), _numpy_forward(est, X) * std + mean, rtol=1e-12
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_normalize_y_trains_on_targets_of_any_level_and_scale():
    # the binary sum shifted and scaled: the same fit at every level with
    # normalize_y; on the targets as given, the defaults do not reach it
    X, y = make_binary_sum(n_samples=200, n_timesteps=8, random_state=0)
    params = dict(cell="rnn", hidden_size=8, batch_size=20, max_iter=30, random_state=0)
    scores = {}
    for level, scale in [(0, 1), (1e4, 1e3)]:
        for normalize_y in (True, False):
            model = SequenceRegressor(normalize_y=normalize_y, **params)
            model.fit(X, level + scale * y)
            scores[level, normalize_y] = model.score(X, level + scale * y)
    assert scores[0, True] > 0.9
    assert scores[1e4, True] == pytest.approx(scores[0, True], abs=1e-3)
    assert scores[1e4, False] < 0.5


def test_normalize_y_keeps_constant_targets_as_they_are():
    X, _ = _data(SequenceRegressor, n=20)
    y = np.full(20, 7.0)
    est = _fit(SequenceRegressor(hidden_size=4, max_iter=2, random_state=0), X, y)
    # the constant's scale is 1 (as StandardScaler's), not its rounding noise
    assert np.abs(est.predict(X) - 7.0).max() < 1.0


# ------------------------------------------------------------- long input
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_trained_on_length_10_predicts_length_50(Est, output):
    X, y = make_binary_sum(n_samples=30, n_timesteps=10, random_state=0)
    if Est is SequenceClassifier:
        y = (y > 5).astype(int)
    if output == "sequence":
        y = np.tile(y[:, None], (1, 10))
    est = _fit(
        Est(hidden_size=4, max_iter=2, random_state=0, output=output), X[:, :, None], y
    )
    X_long, _ = make_binary_sum(n_samples=5, n_timesteps=50, random_state=1)
    pred = est.predict(X_long[:, :, None])
    assert pred.shape == ((5,) if output == "last" else (5, 50))
    if Est is SequenceRegressor:
        assert np.isfinite(pred).all()
    # the same sequences as a list and as a table agree with the 3-D array
    np.testing.assert_array_equal(est.predict(X_long), pred)
    from_list = est.predict(list(X_long))
    if output == "last":
        np.testing.assert_array_equal(from_list, pred)
    else:
        np.testing.assert_array_equal(np.stack(from_list), pred)


# ------------------------------------------------------------------ coefs_
def _expected_shapes(cell, D, H, num_layers, bidirectional, use_bias, n_head):
    G = 3 if cell == "gru" else 1
    dirs = 2 if bidirectional else 1
    shapes = {}
    for k in range(num_layers):
        D_k = D if k == 0 else H * dirs
        for suffix in [""] + (["_reverse"] if bidirectional else []):
            shapes[f"weight_ih_l{k}{suffix}"] = (G * H, D_k)
            shapes[f"weight_hh_l{k}{suffix}"] = (G * H, H)
            if use_bias:
                shapes[f"bias_ih_l{k}{suffix}"] = (G * H,)
                shapes[f"bias_hh_l{k}{suffix}"] = (G * H,)
    shapes["head.weight"] = (n_head, H * dirs)
    shapes["head.bias"] = (n_head,)
    return shapes


@pytest.mark.parametrize("cell", ["gru", "rnn"])
@pytest.mark.parametrize(
    "num_layers, bidirectional, use_bias",
    [
        (1, False, True),
        (2, False, True),
        (1, True, True),
        (2, True, True),
        (2, True, False),
        (1, False, False),
    ],
)
def test_coefs_pytorch_layout(cell, num_layers, bidirectional, use_bias):
    X, y = _data(SequenceRegressor, D=3)
    H = 5
    est = _fit(
        SequenceRegressor(
            normalize_y=False,  # predict is the head's output
            cell=cell,
            hidden_size=H,
            num_layers=num_layers,
            bidirectional=bidirectional,
            use_bias=use_bias,
            max_iter=2,
            random_state=0,
            dtype="float64",
        ),
        X,
        y,
    )
    expected = _expected_shapes(cell, 3, H, num_layers, bidirectional, use_bias, 1)
    assert set(est.coefs_) == set(expected)
    for name, shape in expected.items():
        value = est.coefs_[name]
        assert isinstance(value, np.ndarray), name
        assert value.shape == shape, name
        assert value.dtype == np.float64, name
    # and the weights compute what PyTorch's nn.RNN / nn.GRU would
    np.testing.assert_allclose(
        est.predict(X), _numpy_forward(est, X)[:, 0], rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize(
    "Est, n_classes, y_shape, n_head",
    [
        (SequenceClassifier, 2, None, 1),
        (SequenceClassifier, 4, None, 4),
        (SequenceRegressor, None, (24, 3), 3),
    ],
)
def test_coefs_head_size(Est, n_classes, y_shape, n_head):
    if Est is SequenceClassifier:
        X, y = _data(Est, n_classes=n_classes)
    else:
        X, _ = _data(Est)
        y = np.random.RandomState(0).normal(size=y_shape)
    est = _fit(Est(hidden_size=4, max_iter=2, random_state=0), X, y)
    assert est.coefs_["head.weight"].shape == (n_head, 4)
    assert est.coefs_["head.bias"].shape == (n_head,)
    assert est.n_outputs_ == n_head


def _numpy_forward(est, X):
    """PyTorch's nn.RNN / nn.GRU (batch_first, h0 = 0) + nn.Linear, from coefs_.

    Full-length sequences; output="last" (the forward direction's state at
    the last step, the backward direction's after reading the whole
    sequence). GRU in its reset_after=True form, gates stacked r, z, n.
    """
    c = est.coefs_
    H = est.hidden_size
    act = {
        "tanh": np.tanh,
        "relu": lambda a: np.maximum(a, 0),
        "identity": lambda a: a,
        "logistic": expit,
    }[est.activation]
    dirs = 2 if est.bidirectional else 1

    def run(x, k, suffix):
        W_ih, W_hh = c[f"weight_ih_l{k}{suffix}"], c[f"weight_hh_l{k}{suffix}"]
        zero = np.zeros(W_ih.shape[0])
        b_ih = c.get(f"bias_ih_l{k}{suffix}", zero)
        b_hh = c.get(f"bias_hh_l{k}{suffix}", zero)
        h = np.zeros((x.shape[0], H))
        outs = []
        steps = range(x.shape[1])
        for t in reversed(steps) if suffix else steps:
            gi = x[:, t] @ W_ih.T + b_ih
            gh = h @ W_hh.T + b_hh
            if est.cell == "rnn":
                h = act(gi + gh)
            else:
                r = expit(gi[:, :H] + gh[:, :H])
                z = expit(gi[:, H : 2 * H] + gh[:, H : 2 * H])
                n = act(gi[:, 2 * H :] + r * gh[:, 2 * H :])
                h = z * h + (1 - z) * n
            outs.append(h)
        if suffix:
            outs = outs[::-1]
        return np.stack(outs, axis=1), h

    x = np.asarray(X, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    for k in range(est.num_layers):
        results = [run(x, k, s) for s in ["", "_reverse"][:dirs]]
        x = np.concatenate([r[0] for r in results], axis=2)
        last = np.concatenate(
            [r[1] if i else r[0][:, -1] for i, r in enumerate(results)], axis=1
        )
    return last @ c["head.weight"].T + c["head.bias"]


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_coefs_are_live(Est):
    X, y = _data(Est)
    # the regressor's predictions are the head's outputs
    raw = {"normalize_y": False} if Est is SequenceRegressor else {}
    est = _fit(
        Est(hidden_size=4, max_iter=2, random_state=0, dtype="float64", **raw), X, y
    )
    out = (
        (lambda: est.predict(X))
        if Est is SequenceRegressor
        else (lambda: est.predict_proba(X)[:, 1])
    )
    shift = (
        (lambda p: p)
        if Est is SequenceRegressor
        else (lambda p: np.log(p) - np.log1p(-p))
    )  # the logit of P(classes_[1])
    p0 = out()

    # writing in place
    est.coefs_["head.bias"] += 1.0
    np.testing.assert_allclose(shift(out()), shift(p0) + 1.0, rtol=1e-9, atol=1e-9)

    # assigning a new array of the same shape
    est.coefs_["head.bias"] = est.coefs_["head.bias"] + 1.0
    np.testing.assert_allclose(shift(out()), shift(p0) + 2.0, rtol=1e-9, atol=1e-9)
    est.coefs_["head.bias"] = np.array(est.coefs_["head.bias"] - 2.0)
    np.testing.assert_allclose(out(), p0, rtol=1e-9, atol=1e-12)

    # recurrent weights too
    est.coefs_["weight_hh_l0"][...] = 0.0
    p1 = out()
    assert not np.allclose(p1, p0)
    est.coefs_["weight_ih_l0"] = np.zeros_like(est.coefs_["weight_ih_l0"])
    p2 = out()
    assert not np.allclose(p2, p1)
    # with no input weights, every sequence gives the same output
    np.testing.assert_allclose(p2, p2[0])
    np.testing.assert_allclose(p2, _numpy_forward_any(est, X))


def _numpy_forward_any(est, X):
    z = _numpy_forward(est, X)
    return z[:, 0] if isinstance(est, SequenceRegressor) else expit(z[:, 0])


def test_assigned_coefs_are_trained_from():
    X, y = _data(SequenceRegressor)
    est = _fit(
        SequenceRegressor(
            hidden_size=4,
            max_iter=2,
            random_state=0,
            warm_start=True,
            normalize_y=False,  # predict is the head's output
        ),
        X,
        y,
    )
    new = {k: np.full_like(v, 0.01) for k, v in est.coefs_.items()}
    for k, v in new.items():
        est.coefs_[k] = v.copy()
    np.testing.assert_allclose(est.predict(X), _numpy_forward(est, X)[:, 0])
    est.partial_fit(X, y)
    # one epoch moved the weights away from the assigned values, not from the
    # values before the assignment, and coefs_ shows the trained weights
    for k, v in est.coefs_.items():
        assert np.abs(v - new[k]).max() < 0.05, k
    assert any(not np.array_equal(v, new[k]) for k, v in est.coefs_.items())
    np.testing.assert_allclose(est.predict(X), _numpy_forward(est, X)[:, 0])
    before = copy.deepcopy(est.coefs_)
    est.partial_fit(X, y)
    assert any(not np.array_equal(v, before[k]) for k, v in est.coefs_.items())


# ----------------------------------------------------------- sample_weight
@pytest.mark.parametrize("solver", ["rprop", "sgd", "adam"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_integer_sample_weight_equals_repeated_rows(Est, solver):
    X, y = _data(Est, n=12)
    w = np.array([2, 1, 3, 1, 1, 1, 1, 1, 1, 2, 1, 1])
    params = dict(
        hidden_size=4,
        max_iter=4,
        random_state=0,
        shuffle=False,
        solver=solver,
        learning_rate_init=0.01,
        dtype="float64",
    )
    weighted = _fit(Est(**params), X, y, sample_weight=w)
    repeated = _fit(Est(**params), np.repeat(X, w, axis=0), np.repeat(y, w))
    for k in weighted.coefs_:
        np.testing.assert_allclose(
            weighted.coefs_[k], repeated.coefs_[k], rtol=1e-7, atol=1e-10, err_msg=k
        )
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_zero_sample_weight_equals_absent_sample(Est, output):
    X, y = _data(Est, n=12)
    if output == "sequence":
        y = np.tile(y[:, None], (1, X.shape[1]))
    X = list(X)
    X[4] = X[4][:3]  # variable lengths, so per-step weighting is exercised
    if output == "sequence":
        y = list(y)
        y[4] = y[4][:3]
    w = np.ones(12)
    w[[0, 4]] = 0
    keep = w > 0
    params = dict(
        hidden_size=4,
        max_iter=3,
        random_state=0,
        shuffle=False,
        solver="rprop",
        output=output,
        dtype="float64",
    )
    weighted = _fit(Est(**params), X, y, sample_weight=w)
    absent = _fit(
        Est(**params),
        [x for x, k in zip(X, keep) if k],
        [t for t, k in zip(y, keep) if k],
    )
    for k in weighted.coefs_:
        np.testing.assert_allclose(
            weighted.coefs_[k], absent.coefs_[k], rtol=1e-7, atol=1e-10, err_msg=k
        )
    np.testing.assert_allclose(weighted.loss_curve_, absent.loss_curve_, rtol=1e-9)


# -------------------------------------------------------------- bookkeeping
@pytest.mark.parametrize("batch_size", [5, 7, "auto"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_loss_curve_and_t(Est, batch_size):
    X, y = _data(Est, n=23)
    est = _fit(
        Est(hidden_size=4, max_iter=4, batch_size=batch_size, random_state=0), X, y
    )
    assert est.n_iter_ == 4
    assert len(est.loss_curve_) == est.n_iter_
    assert est.t_ == est.n_iter_ * len(X)
    assert est.loss_ == est.loss_curve_[-1]
    assert est.best_loss_ == min(est.loss_curve_)
    assert all(np.isfinite(est.loss_curve_))


def test_loss_curve_when_converged():
    # a constant target is learned to within tol quickly: no warning
    X = np.random.RandomState(0).normal(size=(20, 4, 1))
    y = np.zeros(20)
    est = SequenceRegressor(
        hidden_size=4,
        max_iter=200,
        tol=1e-2,
        n_iter_no_change=2,
        learning_rate_init=0.01,
        random_state=0,
    ).fit(X, y)
    assert est.n_iter_ < 200
    assert len(est.loss_curve_) == est.n_iter_
    assert est.t_ == est.n_iter_ * 20


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_max_iter_1_warns(Est):
    # one epoch is max_iter reached, as for any other max_iter (and as in MLP)
    X, y = _data(Est)
    est = _fit(Est(hidden_size=4, max_iter=1, random_state=0), X, y)
    assert est.n_iter_ == 1


# ------------------------------------------------------------------ verbose
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_verbose(Est, capsys):
    X, y = _data(Est)
    _fit(Est(hidden_size=4, max_iter=3, random_state=0, verbose=0), X, y)
    assert capsys.readouterr().out == ""

    _fit(Est(hidden_size=4, max_iter=3, random_state=0, verbose=1), X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert all("loss" in line for line in lines)

    _fit(
        Est(
            hidden_size=4,
            max_iter=3,
            random_state=0,
            verbose=1,
            early_stopping=True,
            n_iter_no_change=50,
        ),
        X,
        y,
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert all("loss" in line and "validation" in line for line in lines)


def test_verbose_2_progress_bar(capsys, monkeypatch):
    """verbose=2 draws a bar per epoch: tqdm's when installed, else a text one."""
    pytest.importorskip("tqdm")  # in the test extras
    X, y = _data(SequenceRegressor)  # 24 samples: 3 batches of 8
    params = dict(hidden_size=4, max_iter=2, batch_size=8, random_state=0, verbose=2)
    _fit(SequenceRegressor(**params), X, y)
    captured = capsys.readouterr()
    assert "/3 [" in captured.err and "batch/s" in captured.err  # tqdm, on stderr
    assert captured.out.count("Epoch") == 2

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if not installed
    _fit(SequenceRegressor(**params), X, y)
    out = capsys.readouterr().out
    assert out.count("] 3/3") == 2 and out.count("Epoch") == 2


def test_verbose_does_not_change_the_model():
    X, y = _data(SequenceRegressor)
    quiet = _fit(SequenceRegressor(hidden_size=4, max_iter=3, random_state=0), X, y)
    loud = _fit(
        SequenceRegressor(hidden_size=4, max_iter=3, random_state=0, verbose=2), X, y
    )
    _assert_coefs_equal(quiet.coefs_, loud.coefs_)


# ---------------------------------------------- acceptance: count the ones
@pytest.fixture(scope="module")
def binary_sum():
    X, y = make_binary_sum(n_samples=200, n_timesteps=10, random_state=0)
    X_test, y_test = make_binary_sum(1000, 10, random_state=1)
    return X, y, X_test, y_test


def _exact_count_rate(model, X_test, y_test):
    return np.mean(np.round(model.predict(X_test)) == y_test)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_binary_sum_gated(binary_sum, cell):
    X, y, X_test, y_test = binary_sum
    # n_iter_no_change=30 carries training over the early plateau where the
    # model predicts the mean count
    model = SequenceRegressor(
        cell=cell,
        hidden_size=16,
        learning_rate_init=0.01,
        batch_size=20,
        max_iter=300,
        n_iter_no_change=30,
        random_state=0,
    ).fit(X, y)
    assert _exact_count_rate(model, X_test, y_test) >= 0.95


def test_binary_sum_rnn(binary_sum):
    X, y, X_test, y_test = binary_sum
    model = SequenceRegressor(
        cell="rnn",
        hidden_size=16,
        learning_rate_init=0.01,
        batch_size=10,
        max_iter=300,
        n_iter_no_change=30,
        random_state=0,
    ).fit(X, y)
    assert _exact_count_rate(model, X_test, y_test) >= 0.95


# ------------------------------------------------------------- cell="lstm"
def test_lstm_takes_tanh_only():
    from sklearn.utils._param_validation import InvalidParameterError

    from skrnn import SequenceClassifier

    X, y = np.zeros((6, 3, 1)), np.arange(6) % 2
    with pytest.raises(InvalidParameterError, match="when cell='lstm'"):
        SequenceClassifier(cell="lstm", activation="logistic").fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_lstm_coefs_load_into_pytorch(num_layers, bidirectional):
    """coefs_ in nn.LSTM's state-dict names and shapes: loaded into
    nn.LSTM + nn.Linear, they predict the same on ragged sequences (packed
    on PyTorch's side) to 1e-10 in float64."""
    torch = pytest.importorskip("torch")
    from skrnn import SequenceRegressor

    rng = np.random.RandomState(8)
    X = [rng.normal(size=(L, 3)) for L in (6, 2, 5, 3, 1)]
    y = np.array([x.sum() for x in X])
    model = SequenceRegressor(
        cell="lstm",
        hidden_size=5,
        num_layers=num_layers,
        bidirectional=bidirectional,
        max_iter=3,
        dtype="float64",
        random_state=0,
    ).fit(X, y)
    lstm = torch.nn.LSTM(
        3, 5, num_layers=num_layers, bidirectional=bidirectional, batch_first=True
    ).double()
    head = torch.nn.Linear(5 * (2 if bidirectional else 1), 1).double()
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
def test_lstm_learns_hello_per_step_after_a_scaler():
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
