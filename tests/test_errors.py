"""Bad input gets a clear error, and nothing is lost.

Each test makes the bad call on an already fitted model and checks, besides
the error type and message, that the model still predicts exactly as before
and that its ``coefs_`` did not move (``_assert_refused``).
"""

import copy
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from skrnn import SequenceClassifier, SequenceRegressor

ESTIMATORS = [SequenceRegressor, SequenceClassifier]
N, T, D = 8, 5, 1


def _data(Est, output="last", n_features=D, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(N, T, n_features))
    if Est is SequenceRegressor:
        y = rng.normal(size=N) if output == "last" else rng.normal(size=(N, T))
    else:
        labels = np.array(["no", "yes"])
        y = (
            labels[np.arange(N) % 2]
            if output == "last"
            else labels[np.indices((N, T)).sum(0) % 2]
        )
    return X, y


def _fitted(Est, output="last", n_features=D, **params):
    """A small fitted model, the data it saw and held-out sequences to predict."""
    X, y = _data(Est, output, n_features)
    kw = dict(hidden_size=4, max_iter=2, random_state=0, output=output)
    kw.update(params)
    est = Est(**kw)
    with pytest.warns(ConvergenceWarning):  # 2 epochs: not converged
        est.fit(X, y)
    X_check = np.random.RandomState(42).normal(size=(4, 7, n_features))
    return est, X, y, X_check


def _predictions(est, X):
    out = [est.predict(X)]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(X))
    return out


def _assert_refused(est, X_check, call, exc, match=None):
    """``call()`` raises ``exc`` (message matching ``match``); est is unchanged."""
    before = _predictions(est, X_check)
    coefs = copy.deepcopy(est.coefs_)
    state = {
        k: copy.deepcopy(getattr(est, k)) for k in ("n_iter_", "t_", "loss_curve_")
    }
    with pytest.raises(exc, match=match) as info:
        call()
    assert set(est.coefs_) == set(coefs)
    for name, value in coefs.items():
        np.testing.assert_array_equal(est.coefs_[name], value, err_msg=name)
    for got, expected in zip(_predictions(est, X_check), before):
        np.testing.assert_array_equal(got, expected)
    for key, value in state.items():
        assert getattr(est, key) == value, key
    return info


def _call(est, method, X, y):
    if method == "fit":
        return lambda: est.fit(X, y)
    if method == "partial_fit":
        return lambda: est.partial_fit(X, y)
    return lambda: est.predict(X)


METHODS = ["fit", "partial_fit", "predict"]


# ----------------------------------------------------------- NaN / inf in X
def _nan_table():
    X = np.ones((N, T))
    X[1, 3] = np.nan
    return X


def _inf_table():
    X = np.ones((N, T))
    X[1, 3] = -np.inf
    return X


def _nan_3d_inner():
    # step 3 of sample 1 is NaN, but step 4 is not: not padding
    X = np.ones((N, T, 1))
    X[1, 3, 0] = np.nan
    return X


def _nan_3d_partial_trailing():
    # a trailing step that is NaN in only one of two features is no padding
    X = np.ones((N, T, 2))
    X[1, 3:, 1] = np.nan
    X[1, 4, 0] = np.nan
    return X


def _inf_3d_trailing():
    # trailing infinity is not padding
    X = np.ones((N, T, 1))
    X[1, 3:, 0] = np.inf
    return X


def _nan_list():
    X = [np.ones(T) for _ in range(N)]
    X[1] = np.array([1.0, 2.0, 3.0, np.nan])
    return X


def _inf_list_2d():
    X = [np.ones((T, 1)) for _ in range(N)]
    X[1] = np.ones((6, 1))
    X[1][3, 0] = np.inf
    return X


def _huge_table():
    # finite in float64, infinite in float32 (the estimators' default dtype)
    X = np.ones((N, T))
    X[1, 3] = 1e300
    return X


def _huge_3d_padded():
    X = np.ones((N, T, 1))
    X[0, 4:] = np.nan  # padding: the padded path finds it too
    X[1, 3, 0] = -1e300
    return X


def _huge_list_2d():
    X = _inf_list_2d()
    X[1][3, 0] = 1e300
    return X


NONFINITE_X = {
    "nan_table": (_nan_table, "NaN"),
    "inf_table": (_inf_table, "infinity"),
    "nan_3d_inner": (_nan_3d_inner, "NaN"),
    "nan_3d_partial_trailing": (_nan_3d_partial_trailing, "NaN"),
    "inf_3d_trailing": (_inf_3d_trailing, "infinity"),
    "nan_list": (_nan_list, "NaN"),
    "inf_list_2d": (_inf_list_2d, "infinity"),
    "huge_table": (_huge_table, "1e+300 at sample 1, step 3, which is too large"),
    "huge_3d_padded": (_huge_3d_padded, "is too large for float32"),
    "huge_list_2d": (_huge_list_2d, "is too large for float32"),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(NONFINITE_X))
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_nonfinite_X_names_sample_and_step(Est, case, method):
    make_X, kind = NONFINITE_X[case]
    X_bad = make_X()
    n_features = 2 if case == "nan_3d_partial_trailing" else 1
    est, _, y, X_check = _fitted(Est, n_features=n_features, warm_start=True)
    info = _assert_refused(est, X_check, _call(est, method, X_bad, y), ValueError)
    msg = str(info.value)
    assert kind in msg
    assert re.search(r"\bsample 1\b", msg), msg
    assert re.search(r"\bstep 3\b", msg), msg


# ----------------------------------------------------------- NaN / inf in y
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize(
    "value, kind", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")]
)
def test_nonfinite_y_last_names_sample(value, kind, method):
    est, X, y, X_check = _fitted(SequenceRegressor)
    y_bad = y.copy()
    y_bad[2] = value
    info = _assert_refused(est, X_check, _call(est, method, X, y_bad), ValueError)
    msg = str(info.value)
    assert kind in msg and "y" in msg
    assert re.search(r"\bsample 2\b", msg), msg


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_nonfinite_y_multi_target_names_sample(method):
    X, _ = _data(SequenceRegressor)
    y = np.random.RandomState(0).normal(size=(N, 2))
    est = SequenceRegressor(hidden_size=4, max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    y_bad = y.copy()
    y_bad[5, 1] = np.nan
    info = _assert_refused(est, X[:3], _call(est, method, X, y_bad), ValueError)
    assert re.search(r"\bsample 5\b", str(info.value)), str(info.value)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("as_list", [False, True])
@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (-np.inf, "infinity")])
def test_nonfinite_y_sequence_names_sample_and_step(value, kind, as_list, method):
    est, X, y, X_check = _fitted(SequenceRegressor, output="sequence")
    y_bad = y.copy()
    y_bad[1, 3] = value
    if as_list:
        X, y_bad = list(X), list(y_bad)
    info = _assert_refused(est, X_check, _call(est, method, X, y_bad), ValueError)
    msg = str(info.value)
    assert kind in msg and "y" in msg
    assert re.search(r"\bsample 1\b", msg), msg
    assert re.search(r"\bstep 3\b", msg), msg


# ------------------------------------------------------- malformed X: shape
BAD_SHAPE_X = {
    "1d": lambda: np.ones(T),
    "4d": lambda: np.ones((N, T, 1, 1)),
    "5d": lambda: np.ones((N, T, 1, 1, 1)),
    "0_samples_table": lambda: np.ones((0, T)),
    "0_samples_3d": lambda: np.ones((0, T, 1)),
    "0_features_table": lambda: np.ones((N, 0)),
    "0_features_3d": lambda: np.ones((N, T, 0)),
    "0_timesteps_3d": lambda: np.ones((N, 0, 1)),
    "empty_list": lambda: [],
    "sample_of_length_0": lambda: [np.ones(T)] + [np.ones(0)] + [np.ones(T)] * (N - 2),
    "sample_of_length_0_2d": lambda: (
        [np.ones((T, 1))] + [np.ones((0, 1))] + [np.ones((T, 1))] * (N - 2)
    ),
    "all_nan_sample": lambda: np.where(
        np.arange(N)[:, None, None] == 1, np.nan, np.ones((N, T, 1))
    ),
    "sample_3d_in_list": lambda: [np.ones((T, 1))] + [np.ones((T, 1, 1))] * (N - 1),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(BAD_SHAPE_X))
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_malformed_X_is_refused(Est, case, method):
    X_bad = BAD_SHAPE_X[case]()
    est, _, y, X_check = _fitted(Est, warm_start=True)
    n = len(X_bad)
    y_bad = y[:n] if n else y[:0]
    info = _assert_refused(est, X_check, _call(est, method, X_bad, y_bad), ValueError)
    msg = str(info.value)
    if case in ("sample_of_length_0", "sample_of_length_0_2d", "all_nan_sample"):
        assert re.search(r"[Ss]ample 1\b", msg) and "length 0" in msg, msg
    if case.startswith("0_") or case == "empty_list":
        assert "0" in msg, msg


# ------------------------------------------------------ malformed X: dtype
BAD_DTYPE_X = {
    "str_table": lambda: [["a", "b", "c", "d", "e"]] * N,
    "str_array": lambda: np.array([["1", "2", "3", "4", "5"]] * N),
    "bytes_array": lambda: np.array([[b"1", b"2", b"3", b"4", b"5"]] * N),
    "str_3d": lambda: np.full((N, T, 1), "x"),
    "str_in_list": lambda: [np.ones(T)] + [np.array(list("abcde"))] * (N - 1),
    "bytes_list": lambda: [b"abcde"] * N,
    "complex_table": lambda: np.ones((N, T)) + 1j,
    "complex_3d": lambda: np.ones((N, T, 1), dtype=complex),
    "complex_in_list": lambda: [np.ones(T)] + [np.ones(T) + 1j] * (N - 1),
    "object_str_table": lambda: np.array([[1.0, "a", 2.0, 3.0, 4.0]] * N, dtype=object),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(BAD_DTYPE_X))
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_non_numeric_X_is_refused(Est, case, method):
    X_bad = BAD_DTYPE_X[case]()
    est, _, y, X_check = _fitted(Est, warm_start=True)
    info = _assert_refused(est, X_check, _call(est, method, X_bad, y), ValueError)
    if case.startswith("complex"):
        assert "omplex" in str(info.value)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "make_sparse",
    [
        lambda: sp.csr_matrix(np.ones((N, T))),
        lambda: sp.csr_array(np.ones((N, T))),
        lambda: sp.coo_matrix(np.ones((N, T))),
        lambda: [sp.csr_matrix(np.ones((T, 1)))] * N,
    ],
    ids=["csr_matrix", "csr_array", "coo_matrix", "list_of_sparse"],
)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_sparse_X_is_refused(Est, make_sparse, method):
    est, _, y, X_check = _fitted(Est, warm_start=True)
    info = _assert_refused(
        est, X_check, _call(est, method, make_sparse(), y), (TypeError, ValueError)
    )
    assert "parse" in str(info.value)


# ----------------------------------------- disagreeing features and lengths
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_list_disagreeing_n_features_names_sample(Est, method):
    est, _, y, X_check = _fitted(Est, n_features=2, warm_start=True)
    X_bad = [np.ones((T, 2))] * 3 + [np.ones((T, 3))] + [np.ones((T, 2))] * (N - 4)
    info = _assert_refused(est, X_check, _call(est, method, X_bad, y), ValueError)
    assert re.search(r"[Ss]ample 3\b", str(info.value)), str(info.value)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("n_y", [N - 1, N + 2])
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_y_length_mismatch(Est, output, n_y, method):
    est, X, y, X_check = _fitted(Est, output=output, warm_start=True)
    y_bad = np.concatenate([y, y])[:n_y]
    info = _assert_refused(est, X_check, _call(est, method, X, y_bad), ValueError)
    msg = str(info.value)
    assert str(N) in msg and str(n_y) in msg, msg


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("x_form", ["array", "list", "padded"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_per_step_y_lengths_mismatch_names_sample(Est, x_form, method):
    est, X, y, X_check = _fitted(Est, output="sequence", warm_start=True)
    if x_form == "list":
        X = list(X)
    elif x_form == "padded":
        X = X.copy()
        X[2, 3:] = np.nan  # sample 2 has length 3
    y_bad = list(y)
    y_bad[2] = y_bad[2][:4]  # 4 steps: matches neither T nor the padded length
    info = _assert_refused(est, X_check, _call(est, method, X, y_bad), ValueError)
    msg = str(info.value)
    assert re.search(r"[Ss]ample 2\b", msg), msg
    assert "4" in msg


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_per_step_y_of_full_width_for_padded_sample_is_fine_but_too_long_is_not(method):
    # for a padded array, y of width T is accepted; a longer y row is not
    est, X, y, X_check = _fitted(SequenceRegressor, output="sequence", warm_start=True)
    y_bad = [np.ones(T) for _ in range(N)]
    y_bad[6] = np.ones(T + 1)
    info = _assert_refused(est, X_check, _call(est, method, X, y_bad), ValueError)
    assert re.search(r"[Ss]ample 6\b", str(info.value))


# ---------------------------------------------------- predict, n_features
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_predict_with_other_n_features_uses_sklearn_wording(Est):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N, 4))
    y = _data(Est)[1]
    est = Est(hidden_size=4, max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    X_check = rng.normal(size=(3, 4))
    expected = f"X has 3 features, but {Est.__name__} is expecting 4 features as input."
    for method in ("predict", "partial_fit", "score"):
        bad = rng.normal(size=(N, 3))
        call = {
            "predict": lambda: est.predict(bad),
            "partial_fit": lambda: est.partial_fit(bad, y),
            "score": lambda: est.score(bad, y),
        }[method]
        _assert_refused(est, X_check, call, ValueError, match=re.escape(expected))
    if Est is SequenceClassifier:
        for method in (est.predict_proba, est.predict_log_proba):
            _assert_refused(
                est,
                X_check,
                lambda: method(rng.normal(size=(2, 3))),
                ValueError,
                match=re.escape(expected),
            )


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_predict_with_other_step_features(Est):
    est, _, y, X_check = _fitted(Est, n_features=4)
    expected = f"X has 3 features, but {Est.__name__} is expecting 4 features as input."
    _assert_refused(
        est,
        X_check,
        lambda: est.predict(np.ones((2, 6, 3))),
        ValueError,
        match=re.escape(expected),
    )
    _assert_refused(
        est,
        X_check,
        lambda: est.predict([np.ones((6, 3))]),
        ValueError,
        match=re.escape(expected),
    )


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_predict_before_fit(Est):
    est = Est(hidden_size=4)
    X = np.ones((N, T))
    methods = [est.predict]
    if Est is SequenceClassifier:
        methods += [est.predict_proba, est.predict_log_proba]
    for method in methods:
        with pytest.raises(NotFittedError):
            method(X)
    with pytest.raises(NotFittedError):
        est.score(X, _data(Est)[1])


# ------------------------------------------------------------- classifier
@pytest.mark.parametrize("output", ["last", "sequence"])
def test_classifier_with_one_class(output):
    est, X, y, X_check = _fitted(SequenceClassifier, output=output)
    y_one = np.full_like(y, "yes")
    info = _assert_refused(est, X_check, lambda: est.fit(X, y_one), ValueError)
    assert "class" in str(info.value)
    # and on a fresh classifier
    with pytest.raises(ValueError, match="class"):
        SequenceClassifier(hidden_size=4, max_iter=2, output=output).fit(X, y_one)
    with pytest.raises(ValueError, match="class"):
        SequenceClassifier(hidden_size=4, output=output).partial_fit(
            X, y_one, classes=["yes"]
        )


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_partial_fit_label_outside_classes(output):
    X, y = _data(SequenceClassifier, output)
    est = SequenceClassifier(hidden_size=4, random_state=0, output=output)
    est.partial_fit(X, y, classes=["no", "yes"])
    X_check = X[:3]
    y_bad = y.copy().astype(object)
    y_bad[3] = "maybe" if output == "last" else y_bad[3]
    if output == "sequence":
        y_bad[3, 2] = "maybe"
    info = _assert_refused(est, X_check, lambda: est.partial_fit(X, y_bad), ValueError)
    assert "maybe" in str(info.value)
    # also when classes is passed again
    _assert_refused(
        est,
        X_check,
        lambda: est.partial_fit(X, y_bad, classes=["no", "yes"]),
        ValueError,
        match="maybe",
    )
    # and classes that differ from the first call's
    _assert_refused(
        est,
        X_check,
        lambda: est.partial_fit(X, y, classes=["no", "yes", "maybe"]),
        ValueError,
    )


def test_partial_fit_first_call_needs_classes():
    X, y = _data(SequenceClassifier)
    est = SequenceClassifier(hidden_size=4, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        est.partial_fit(X, y)
    assert not hasattr(est, "coefs_")
    # classes that miss a label of y
    with pytest.raises(ValueError):
        est.partial_fit(X, y, classes=["no", "maybe"])
    assert not hasattr(est, "coefs_")


# --------------------------------------------------------- hyperparameters
BAD_PARAMS = [
    {"hidden_size": 0},
    {"hidden_size": -3},
    {"hidden_size": 2.5},
    {"num_layers": 0},
    {"cell": "lstmx"},
    {"cell": "lstm", "activation": "relu"},  # the LSTM's activations are fixed
    {"bptt_steps": 0},
    {"activation": "relu", "cell": "gru"},
    {"activation": "identity"},  # the default cell is "gru"
    {"activation": "softmax", "cell": "rnn"},
    {"bptt_steps": 3, "bidirectional": True},
    {"output": "all"},
    {"solver": "lbfgs"},
    {"learning_rate_init": 0.0},
    {"clip_norm": 0.0},
    {"batch_size": 0},
    {"max_iter": 0},
    {"validation_fraction": 1.0},
    {"dtype": "float16"},
    {"device": "tpu"},
]


@pytest.mark.parametrize(
    "params", BAD_PARAMS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items())
)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_bad_hyperparameter_raises_invalid_parameter_error_from_fit(Est, params):
    X, y = _data(Est)
    est = Est(**params)  # the constructor stores, it does not validate
    for key, value in params.items():
        assert getattr(est, key) == value
    name = next(k for k in params if k != "cell" or len(params) == 1)
    with pytest.raises(InvalidParameterError, match=name):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")
    # first partial_fit validates too
    with pytest.raises(InvalidParameterError, match=name):
        if Est is SequenceClassifier:
            est.partial_fit(X, y, classes=["no", "yes"])
        else:
            est.partial_fit(X, y)
    assert not hasattr(est, "coefs_")
    # a fitted model given a bad parameter keeps its weights: once the
    # parameters are set back, it predicts as before
    fitted, _, _, X_check = _fitted(Est)
    good = {k: getattr(fitted, k) for k in params}

    def bad_fit():
        fitted.set_params(**params)
        try:
            fitted.fit(X, y)
        finally:
            fitted.set_params(**good)

    _assert_refused(fitted, X_check, bad_fit, InvalidParameterError)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_negative_sample_weight_refused(Est, method):
    est, X, y, X_check = _fitted(Est, warm_start=True)
    w = np.ones(len(X))
    w[3] = -1.0
    kwargs = (
        {"classes": est.classes_}
        if method == "partial_fit" and Est is SequenceClassifier
        else {}
    )
    _assert_refused(
        est,
        X_check,
        lambda: getattr(est, method)(X, y, sample_weight=w, **kwargs),
        ValueError,
        "Negative values in data passed to `sample_weight`",
    )


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_all_zero_sample_weight_refused(Est):
    est, X, y, X_check = _fitted(Est, warm_start=True)
    _assert_refused(
        est,
        X_check,
        lambda: est.fit(X, y, sample_weight=np.zeros(len(X))),
        ValueError,
        "at least one non-zero",
    )


# ------------------------------------------------------------- divergence
def _diverging(Est):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 6, 2)) * 3
    y = rng.normal(size=20) * 100 if Est is SequenceRegressor else np.arange(20) % 2
    est = Est(
        cell="rnn",
        activation="relu",
        solver="sgd",
        learning_rate_init=1e6,
        clip_norm=None,
        hidden_size=8,
        max_iter=20,
        random_state=0,
    )
    return est, X, y


# numpy's overflow RuntimeWarnings on the way to divergence are the subject of
# test_divergence_warns_only_convergence_warning; this test is about the
# weights that training keeps.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_divergence_keeps_last_finite_weights(Est):
    est, X, y = _diverging(Est)
    with pytest.warns(ConvergenceWarning, match="diverged"):
        est.fit(X, y)
    for name, value in est.coefs_.items():
        assert np.isfinite(value).all(), name
    assert est.n_iter_ < 20
    assert np.isfinite(est.loss_curve_).all()
    assert len(est.loss_curve_) == est.n_iter_
    # the kept weights predict without overflow
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = est.predict(X)
        if Est is SequenceRegressor:
            assert np.isfinite(pred).all()
        else:
            assert set(pred) <= {0, 1}
            assert np.isfinite(est.predict_proba(X)).all()


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_divergence_warns_only_convergence_warning(Est):
    est, X, y = _diverging(Est)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(X, y)
    # the divergence is reported once, as a ConvergenceWarning, and nothing
    # else leaks out: numpy's overflow / invalid-value RuntimeWarnings are
    # what the estimator detects itself (and with warnings turned into
    # errors, they abort fit halfway through an epoch)
    messages = [f"{w.category.__name__}: {w.message}" for w in record]
    assert [w.category for w in record] == [ConvergenceWarning], messages
    assert "diverged" in str(record[0].message)
