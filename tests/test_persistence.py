"""Saving and loading: pickle, joblib and skops.io.

A loaded model predicts exactly what the saved one did, keeps its dtype,
keeps ``coefs_`` live (writing into them changes ``predict``) and
goes on training (``partial_fit``, ``warm_start``) exactly as the saved one
would have.

The fits are a few epochs of tiny models: too few to meet the stopping rule,
so they end with ``ConvergenceWarning`` on purpose, which the tests that fit
ignore.
"""

import io
import pickle

import joblib
import numpy as np
import pytest
import skops.io as sio

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.preprocessing import SequenceScaler

# A few epochs cannot converge: max_iter is reached on purpose.
ignore_convergence = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)

CONFIGS = [
    pytest.param(dict(cell="gru"), id="gru"),
    pytest.param(dict(cell="rnn"), id="rnn"),
    pytest.param(dict(cell="gru", bidirectional=True), id="gru-bidirectional"),
    pytest.param(dict(cell="rnn", num_layers=2), id="rnn-2-layers"),
    pytest.param(
        dict(cell="gru", num_layers=2, bidirectional=True), id="gru-2-layers-bi"
    ),
]
OUTPUTS = ["last", "sequence"]


def _data(n=12, T=5, D=2, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, T, D))
    return X


def _targets(kind, output, X):
    s = np.cumsum(X[:, :, 0], axis=1)  # per step
    if output == "last":
        s = s[:, -1]
    if kind == "regressor":
        return s
    return np.where(s > 0, "up", "down")  # string labels


def _make(kind, output, **params):
    Est = SequenceRegressor if kind == "regressor" else SequenceClassifier
    kw = dict(
        hidden_size=4,
        max_iter=3,
        learning_rate_init=0.05,
        random_state=0,
        output=output,
    )
    kw.update(params)
    return Est(**kw)


def _fitted(kind, output, **params):
    X = _data()
    y = _targets(kind, output, X)
    return _make(kind, output, **params).fit(X, y), X, y


def _pickle_round_trip(obj):
    return pickle.loads(pickle.dumps(obj))


def _joblib_round_trip(obj):
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    buf.seek(0)
    return joblib.load(buf)


ROUND_TRIPS = [
    pytest.param(_pickle_round_trip, id="pickle"),
    pytest.param(_joblib_round_trip, id="joblib"),
]


def _outputs(model, X):
    """Everything the model predicts for X (arrays, or lists of arrays for a list X)."""
    out = [model.predict(X)]
    if isinstance(model, SequenceClassifier):
        out.append(model.predict_proba(X))
        out.append(model.predict_log_proba(X))
    return out


def _identical(a, b):
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_identical(u, v) for u, v in zip(a, b))
        )
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:  # labels with None at padded steps
        return a.tolist() == b.tolist()
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _assert_same_predictions(a, b, X):
    for pa, pb in zip(_outputs(a, X), _outputs(b, X), strict=True):
        assert _identical(pa, pb)


def _assert_coefs_identical(a, b):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name], b[name]), name


# ---------------------------------------------------------------- unfitted
@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize(
    "est",
    [
        SequenceRegressor(cell="rnn", hidden_size=5, bptt_steps=3, dtype="float32"),
        SequenceClassifier(bidirectional=True, num_layers=2, output="sequence"),
        SequenceScaler(with_mean=False),
    ],
    ids=["regressor", "classifier", "scaler"],
)
def test_unfitted_round_trip_keeps_params(est, round_trip):
    loaded = round_trip(est)
    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    assert not hasattr(loaded, "coefs_") and not hasattr(loaded, "mean_")


@ignore_convergence
def test_unfitted_round_trip_fits_like_the_original():
    est = _make("classifier", "last")
    loaded = _pickle_round_trip(est)
    X = _data()
    y = _targets("classifier", "last", X)
    _assert_coefs_identical(est.fit(X, y).coefs_, loaded.fit(X, y).coefs_)


# ------------------------------------------------------------------ fitted
@ignore_convergence
@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_fitted_round_trip(kind, config, output, round_trip):
    model, X, y = _fitted(kind, output, **config)
    loaded = round_trip(model)
    _assert_same_predictions(model, loaded, X)
    _assert_coefs_identical(model.coefs_, loaded.coefs_)
    for attr in ("n_features_in_", "n_outputs_", "n_iter_", "t_", "loss_"):
        assert getattr(loaded, attr) == getattr(model, attr), attr
    assert loaded.loss_curve_ == model.loss_curve_
    if kind == "classifier":
        assert np.array_equal(loaded.classes_, model.classes_)
        assert loaded.classes_.dtype == model.classes_.dtype
    # other input forms too: a list of variable-length sequences
    X_list = [X[0, :2], X[1], X[2, :4]]
    _assert_same_predictions(model, loaded, X_list)
    # and a NaN-padded array
    X_pad = X[:3].copy()
    X_pad[0, 2:] = np.nan
    _assert_same_predictions(model, loaded, X_pad)


@ignore_convergence
@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_loaded_coefs_are_live(kind, round_trip):
    model, X, _ = _fitted(kind, "last", cell="gru", num_layers=2)
    loaded = round_trip(model)
    before = _outputs(loaded, X)[-1]
    # in place
    loaded.coefs_["head.bias"][...] += 3.0
    after = _outputs(loaded, X)[-1]
    assert not np.array_equal(before, after)
    assert np.array_equal(_outputs(model, X)[-1], before)
    # the saved model is untouched
    _assert_same_predictions(model, _pickle_round_trip(model), X)
    # assigning a new array of the same shape
    loaded.coefs_["head.bias"] = np.asarray(model.coefs_["head.bias"]).copy()
    assert np.array_equal(_outputs(loaded, X)[-1], before)
    # a recurrent weight too, not only the head
    loaded.coefs_["weight_hh_l1"][...] = 0.0
    assert not np.array_equal(_outputs(loaded, X)[-1], before)


@ignore_convergence
@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_dtype_survives_round_trip(kind, dtype, round_trip):
    # X in the *other* precision: the forced dtype must win, before and after
    other = np.float32 if dtype == "float64" else np.float64
    X = _data().astype(other)
    y = _targets(kind, "last", X)
    model = _make(kind, "last", dtype=dtype).fit(X, y)
    loaded = round_trip(model)
    for name, value in loaded.coefs_.items():
        assert value.dtype == np.dtype(dtype), name
    # predictions are float64 whatever the dtype, and identical
    _assert_same_predictions(model, loaded, X)
    # further training stays in that precision
    loaded.partial_fit(X, y)
    for name, value in loaded.coefs_.items():
        assert value.dtype == np.dtype(dtype), name


@ignore_convergence
@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_partial_fit_continues_after_loading(kind, round_trip):
    X = _data()
    y = _targets(kind, "last", X)
    model = _make(kind, "last", solver="adam")
    if kind == "regressor":
        model.partial_fit(X, y)
    else:
        model.partial_fit(X, y, classes=["down", "up"])
    loaded = round_trip(model)
    for _ in range(2):
        model.partial_fit(X, y)
        loaded.partial_fit(X, y)
    # optimiser state, random state and counters came along: bit-identical
    _assert_coefs_identical(model.coefs_, loaded.coefs_)
    assert loaded.n_iter_ == model.n_iter_ == 3
    assert loaded.t_ == model.t_
    _assert_same_predictions(model, loaded, X)


@ignore_convergence
@pytest.mark.parametrize("solver", ["adam", "sgd", "rprop"])
def test_warm_start_continues_after_loading(solver):
    X = _data()
    y = _targets("regressor", "sequence", X)
    model = _make("regressor", "sequence", warm_start=True, solver=solver).fit(X, y)
    loaded = _pickle_round_trip(model)
    model.fit(X, y)
    loaded.fit(X, y)
    _assert_coefs_identical(model.coefs_, loaded.coefs_)
    assert loaded.n_iter_ == model.n_iter_ == 6
    _assert_same_predictions(model, loaded, X)


def test_scaler_round_trip():
    rng = np.random.RandomState(1)
    X = [2.0 + rng.normal(size=(L, 3)) for L in (2, 5, 4)]
    scaler = SequenceScaler().fit(X)
    for round_trip in (_pickle_round_trip, _joblib_round_trip):
        loaded = round_trip(scaler)
        for attr in ("mean_", "var_", "scale_"):
            assert np.array_equal(getattr(loaded, attr), getattr(scaler, attr))
        assert loaded.n_samples_seen_ == scaler.n_samples_seen_
        for a, b in zip(scaler.transform(X), loaded.transform(X)):
            assert np.array_equal(a, b)
        # partial_fit goes on from the loaded statistics
        more = [rng.normal(size=(3, 3))]
        assert np.array_equal(
            round_trip(scaler).partial_fit(more).mean_,
            _pickle_round_trip(scaler).partial_fit(more).mean_,
        )


@ignore_convergence
def test_joblib_file_round_trip(tmp_path):
    model, X, _ = _fitted("classifier", "sequence", cell="rnn", bidirectional=True)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    loaded = joblib.load(path)
    _assert_same_predictions(model, loaded, X)
    _assert_coefs_identical(model.coefs_, loaded.coefs_)


# ------------------------------------------------------------------- skops
def _skops_models():
    reg, X, _ = _fitted("regressor", "sequence", cell="gru", bidirectional=True)
    clf, _, _ = _fitted("classifier", "last", cell="rnn", num_layers=2)
    scaler = SequenceScaler().fit(X)
    return {"regressor": reg, "classifier": clf, "scaler": scaler}, X


@ignore_convergence
@pytest.mark.parametrize("name", ["regressor", "classifier", "scaler"])
def test_skops_untrusted_types_are_only_skrnn(name, tmp_path):
    models, _ = _skops_models()
    path = tmp_path / f"{name}.skops"
    sio.dump(models[name], path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted, "the skrnn estimator itself must need trust"
    foreign = [t for t in untrusted if not t.startswith("skrnn.")]
    assert not foreign, f"skops lists non-skrnn types as untrusted: {untrusted}"


@ignore_convergence
@pytest.mark.parametrize("name", ["regressor", "classifier", "scaler"])
def test_skops_load_with_trusted_types(name, tmp_path):
    models, X = _skops_models()
    model = models[name]
    path = tmp_path / f"{name}.skops"
    sio.dump(model, path)
    untrusted = sio.get_untrusted_types(file=path)
    # refused without trust
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path)
    loaded = sio.load(path, trusted=untrusted)
    if name == "scaler":
        assert np.array_equal(loaded.transform(X), model.transform(X))
        return
    _assert_same_predictions(model, loaded, X)
    _assert_coefs_identical(model.coefs_, loaded.coefs_)
    # coefs_ stay live after a skops load too
    before = _outputs(loaded, X)[-1]
    loaded.coefs_["head.bias"][...] += 3.0
    assert not np.array_equal(_outputs(loaded, X)[-1], before)
