"""skrnn inside scikit-learn's model selection: Pipeline, GridSearchCV,
cross_val_score, clone, and SequenceScaler as the pipeline's first step.

Every X form goes through the same machinery: a table, a 3-D
array, a list of variable-length arrays and a NaN-padded 3-D array.

The models are tiny and train for a few epochs, far too few to meet the
stopping rule: those fits end with ``ConvergenceWarning`` on purpose, and
the tests that run them ignore exactly that warning (the scores are checked
for completeness and consistency, not for quality).
"""

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    cross_val_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.preprocessing import SequenceScaler

FORMS = ["table", "array", "list", "padded"]

# A few epochs of a tiny model cannot converge: the fits stop at max_iter
# on purpose, and ConvergenceWarning says so.
ignore_convergence = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)


# ------------------------------------------------------------------ data
def _lengths(n, rng, low=3, high=8):
    return rng.randint(low, high, size=n)


def _make_X(form, n=24, seed=0, D=2, T=7):
    """X in ``form`` and the list of its valid (T_i, D) steps per sample.

    The features are shifted and scaled (mean 3, std 2) so that
    standardising them is visible.
    """
    rng = np.random.RandomState(seed)
    if form == "table":
        X = 3.0 + 2.0 * rng.normal(size=(n, T))
        return X, [row[:, None] for row in X]
    if form == "array":
        X = 3.0 + 2.0 * rng.normal(size=(n, T, D))
        return X, list(X)
    lengths = _lengths(n, rng, high=T + 1)
    seqs = [3.0 + 2.0 * rng.normal(size=(L, D)) for L in lengths]
    if form == "list":
        return seqs, seqs
    X = np.full((n, T, D), np.nan)
    for i, s in enumerate(seqs):
        X[i, : len(s)] = s
    return X, seqs


def _labels(seqs):
    """Whether the first feature's mean is above 3 (the shift): two
    balanced-ish classes."""
    s = np.array([x[:, 0].mean() for x in seqs])
    return np.where(s > np.median(s), "up", "down")


def _valid_values(Xt, form):
    """All valid steps of a transformed X as rows (n_valid, D)."""
    if form == "table":
        return Xt.reshape(-1, 1)
    if form == "list":
        return np.concatenate([np.asarray(x).reshape(len(x), -1) for x in Xt])
    Xt = np.asarray(Xt)
    flat = Xt.reshape(-1, Xt.shape[2])
    return flat[~np.isnan(flat).all(axis=1)]


def _pipeline(**clf_params):
    params = dict(hidden_size=4, max_iter=4, random_state=0)
    params.update(clf_params)
    return Pipeline(
        [("scale", SequenceScaler()), ("clf", SequenceClassifier(**params))]
    )


GRID = {
    "clf__cell": ["rnn", "gru"],
    "clf__hidden_size": [4, 6],
    "clf__learning_rate_init": [0.01, 0.05],
}


def _n_candidates(grid):
    return int(np.prod([len(v) for v in grid.values()]))


def _assert_cv_results_complete(search, grid, n_splits):
    res = search.cv_results_
    n = _n_candidates(grid)
    assert len(res["params"]) == n
    for key in (
        "mean_test_score",
        "std_test_score",
        "rank_test_score",
        "mean_fit_time",
        "std_fit_time",
        "mean_score_time",
    ):
        assert key in res, key
        assert len(res[key]) == n, key
    for k in range(n_splits):
        assert len(res[f"split{k}_test_score"]) == n
        assert np.isfinite(res[f"split{k}_test_score"]).all(), k
    for name, values in grid.items():
        assert set(res[f"param_{name}"]) == set(values), name
    assert np.isfinite(res["mean_test_score"]).all()
    assert sorted(res["rank_test_score"])[0] == 1
    assert search.best_params_ in res["params"]
    assert search.best_params_ == res["params"][int(np.argmin(res["rank_test_score"]))]


# ---------------------------------------------------- GridSearchCV on forms
@ignore_convergence
@pytest.mark.parametrize("form", FORMS)
def test_grid_search_pipeline_every_form(form):
    X, seqs = _make_X(form)
    y = _labels(seqs)
    search = GridSearchCV(_pipeline(), GRID, cv=3).fit(X, y)
    assert set(search.best_params_) == set(GRID)
    _assert_cv_results_complete(search, GRID, n_splits=3)
    # the refitted pipeline predicts X in the same form
    pred = search.predict(X)
    assert pred.shape == (len(seqs),)
    assert set(pred) <= {"up", "down"}
    assert search.best_estimator_.named_steps["clf"].classes_.tolist() == ["down", "up"]
    assert 0.0 <= search.score(X, y) <= 1.0
    proba = search.predict_proba(X)
    assert proba.shape == (len(seqs), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@ignore_convergence
def test_cross_val_score_stratified_on_variable_length_list():
    X, seqs = _make_X("list", n=30, seed=1)
    y = _labels(seqs)
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    scores = cross_val_score(_pipeline(learning_rate_init=0.05), X, y, cv=cv)
    assert scores.shape == (3,)
    assert np.isfinite(scores).all()
    assert ((0.0 <= scores) & (scores <= 1.0)).all()
    # the same folds by hand give the same scores: the list is indexed per sample
    by_hand = []
    for train, test in cv.split(X, y):
        model = _pipeline(learning_rate_init=0.05).fit([X[i] for i in train], y[train])
        by_hand.append(model.score([X[i] for i in test], y[test]))
    np.testing.assert_allclose(scores, by_hand, rtol=1e-12)


# ------------------------------------------- many-to-many regression in CV
def _sequence_regression(form, n=24, seed=2):
    """y_t = running mean of feature 0 (a many-to-many task), in X's form.

    For the padded array y has NaN at the padded steps, which are ignored.
    """
    X, seqs = _make_X(form, n=n, seed=seed)
    ys = [np.cumsum(s[:, 0]) / np.arange(1, len(s) + 1) for s in seqs]
    if form == "list":
        return X, ys
    if form == "array":
        return X, np.array(ys)
    y = np.full(np.asarray(X).shape[:2], np.nan)
    for i, v in enumerate(ys):
        y[i, : len(v)] = v
    return X, y


def _seq_regressor(**params):
    kw = dict(
        hidden_size=4,
        output="sequence",
        max_iter=5,
        learning_rate_init=0.05,
        random_state=0,
    )
    kw.update(params)
    return SequenceRegressor(**kw)


def _take(a, idx):
    return [a[i] for i in idx] if isinstance(a, list) else a[idx]


def _r2_over_valid_steps(y, pred):
    """R² with every valid time step as one row."""
    y_rows = np.concatenate([np.asarray(v).ravel() for v in y])
    p_rows = np.concatenate([np.asarray(v).ravel() for v in pred])
    valid = ~np.isnan(y_rows)
    return r2_score(y_rows[valid], p_rows[valid])


@ignore_convergence
@pytest.mark.parametrize("form", ["list", "padded", "array"])
def test_sequence_regressor_cross_val_score(form):
    X, y = _sequence_regression(form)
    cv = KFold(n_splits=3, shuffle=True, random_state=0)
    scores = cross_val_score(_seq_regressor(), X, y, cv=cv)
    assert scores.shape == (3,)
    assert np.isfinite(scores).all()
    # each fold's score is R² over the valid steps of its test set
    for score, (train, test) in zip(scores, cv.split(X, y)):
        model = _seq_regressor().fit(_take(X, train), _take(y, train))
        pred = model.predict(_take(X, test))
        expected = _r2_over_valid_steps(_take(y, test), pred)
        assert score == pytest.approx(expected, rel=1e-10)
        assert model.score(_take(X, test), _take(y, test)) == pytest.approx(
            expected, rel=1e-10
        )


@ignore_convergence
@pytest.mark.parametrize("form", ["list", "padded"])
def test_sequence_regressor_grid_search(form):
    X, y = _sequence_regression(form)
    grid = {"cell": ["rnn", "gru"], "hidden_size": [4, 6]}
    search = GridSearchCV(_seq_regressor(), grid, cv=3).fit(X, y)
    _assert_cv_results_complete(search, grid, n_splits=3)
    pred = search.predict(X)
    if form == "list":
        assert isinstance(pred, list)
        assert [len(p) for p in pred] == [len(x) for x in X]
        assert all(np.isfinite(p).all() for p in pred)
    else:
        # NaN exactly at the padded steps
        assert pred.shape == y.shape
        np.testing.assert_array_equal(np.isnan(pred), np.isnan(y))


@ignore_convergence
@pytest.mark.parametrize("form", ["list", "padded"])
def test_sequence_classifier_cross_val_score(form):
    # many-to-many labels: is the running mean above 3 at this step?
    X, y = _sequence_regression(form, seed=3)
    if form == "list":
        labels = [np.where(v > 3, "hi", "lo") for v in y]
    else:
        labels = np.where(np.isnan(y), "lo", np.where(y > 3, "hi", "lo"))
    cv = KFold(n_splits=3, shuffle=True, random_state=0)
    clf = SequenceClassifier(
        hidden_size=4,
        output="sequence",
        max_iter=5,
        learning_rate_init=0.05,
        random_state=0,
    )
    scores = cross_val_score(clf, X, labels, cv=cv)
    # accuracy over the valid steps of each test fold
    for score, (train, test) in zip(scores, cv.split(X)):
        model = clone(clf).fit(_take(X, train), _take(labels, train))
        pred = model.predict(_take(X, test))
        truth = _take(labels, test)
        hits = [
            np.asarray(p)[: len(x) if form == "list" else int((~np.isnan(yv)).sum())]
            == np.asarray(t)[: len(x) if form == "list" else int((~np.isnan(yv)).sum())]
            for p, t, x, yv in zip(pred, truth, _take(X, test), _take(y, test))
        ]
        assert score == pytest.approx(np.concatenate(hits).mean(), rel=1e-12)


# ------------------------------------------------------------------ clone
def test_clone_keeps_params():
    pipe = _pipeline(
        cell="rnn",
        hidden_size=5,
        learning_rate_init=0.02,
        output="last",
        bidirectional=True,
        dtype="float64",
    )
    pipe.set_params(scale__with_mean=False)
    cloned = clone(pipe)
    assert cloned is not pipe
    original, copied = pipe.get_params(deep=True), cloned.get_params(deep=True)
    assert original.keys() == copied.keys()
    for key, value in original.items():
        if key in ("steps", "scale", "clf"):
            continue
        assert copied[key] == value, key
    reg = SequenceRegressor(
        cell="gru",
        hidden_size=7,
        bptt_steps=3,
        clip_norm=None,
        random_state=np.random.RandomState(3),
    )
    assert clone(reg).get_params()["hidden_size"] == 7
    assert clone(reg).get_params()["bptt_steps"] == 3
    assert clone(reg).get_params()["clip_norm"] is None


@ignore_convergence
def test_clone_of_fitted_pipeline_is_unfitted_and_refits_identically():
    X, seqs = _make_X("list")
    y = _labels(seqs)
    pipe = _pipeline().fit(X, y)
    cloned = clone(pipe)
    assert not hasattr(cloned.named_steps["clf"], "coefs_")
    assert not hasattr(cloned.named_steps["scale"], "mean_")
    cloned.fit(X, y)
    for name, value in pipe.named_steps["clf"].coefs_.items():
        assert np.array_equal(cloned.named_steps["clf"].coefs_[name], value), name
    np.testing.assert_array_equal(cloned.predict_proba(X), pipe.predict_proba(X))


# ------------------------------------------------------------------ scaler
@ignore_convergence
@pytest.mark.parametrize("form", FORMS)
def test_scaler_in_pipeline_standardises(form):
    X, seqs = _make_X(form)
    y = _labels(seqs)
    pipe = _pipeline().fit(X, y)
    Xt = pipe[:-1].transform(X)
    rows = _valid_values(Xt, form)
    assert rows.shape == (sum(len(s) for s in seqs), seqs[0].shape[1])
    assert np.isfinite(rows).all()
    np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(rows.std(axis=0), 1.0, rtol=1e-10)
    # the scaler's statistics are those of the valid steps only
    raw = np.concatenate(seqs)
    scaler = pipe.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, raw.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.var_, raw.var(axis=0), rtol=1e-12)
    # and the classifier sees what the scaler outputs
    np.testing.assert_array_equal(
        pipe.predict_proba(X), pipe.named_steps["clf"].predict_proba(Xt)
    )


@pytest.mark.parametrize("form", FORMS)
def test_scaler_inverse_transform_round_trips(form):
    X, seqs = _make_X(form, seed=4)
    scaler = SequenceScaler().fit(X)
    Xt = scaler.transform(X)
    back = scaler.inverse_transform(Xt)
    if form == "list":
        assert isinstance(Xt, list) and isinstance(back, list)
        assert len(back) == len(X)
        for b, x in zip(back, X):
            assert b.shape == x.shape
            np.testing.assert_allclose(b, x, rtol=1e-12, atol=1e-12)
    else:
        assert Xt.shape == X.shape and back.shape == X.shape
        np.testing.assert_array_equal(np.isnan(back), np.isnan(X))
        np.testing.assert_allclose(back, X, rtol=1e-12, atol=1e-12)  # NaN == NaN here


def test_scaler_inverse_transform_round_trips_univariate_list():
    rng = np.random.RandomState(5)
    X = [5.0 + rng.normal(size=L) for L in (2, 6, 3)]  # (T_i,) arrays
    scaler = SequenceScaler().fit(X)
    Xt = scaler.transform(X)
    assert [x.shape for x in Xt] == [x.shape for x in X]
    back = scaler.inverse_transform(Xt)
    for b, x in zip(back, X):
        np.testing.assert_allclose(b, x, rtol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_scaler_partial_fit_halves_equals_fit(form):
    X, seqs = _make_X(form, n=20, seed=6)
    whole = SequenceScaler().fit(X)
    halves = SequenceScaler().partial_fit(X[:10]).partial_fit(X[10:])
    np.testing.assert_allclose(halves.mean_, whole.mean_, rtol=1e-12)
    np.testing.assert_allclose(halves.var_, whole.var_, rtol=1e-10)
    np.testing.assert_allclose(halves.scale_, whole.scale_, rtol=1e-10)
    assert halves.n_samples_seen_ == whole.n_samples_seen_ == sum(len(s) for s in seqs)
    # a table is univariate: one mean and one scale
    assert whole.mean_.shape == ((1,) if form == "table" else (2,))


@pytest.mark.parametrize("value", [0.3, 1e5 / 3, -7.1])
def test_scaler_keeps_scale_1_for_a_constant_feature(value):
    """A feature that is always ``value`` (whose variance comes out as
    rounding noise, 5.6e-17 for 0.3) is centred and not scaled, as
    StandardScaler does; the other feature is scaled as usual."""
    rng = np.random.RandomState(9)
    X = rng.normal(size=(5, 4, 2))
    X[:, :, 0] = value
    scaler = SequenceScaler().fit(X)
    reference = StandardScaler().fit(X.reshape(-1, 2))
    np.testing.assert_array_equal(scaler.scale_[0], 1.0)
    np.testing.assert_allclose(scaler.scale_, reference.scale_, rtol=1e-12)
    rounding = 1e-12 * max(1.0, abs(value))
    np.testing.assert_allclose(scaler.transform(X)[:, :, 0], 0.0, atol=rounding)
    new = np.full((1, 3, 2), value + 0.1)
    np.testing.assert_allclose(scaler.transform(new)[0, :, 0], 0.1, rtol=1e-9)
    halves = SequenceScaler().partial_fit(X[:3]).partial_fit(X[3:])
    np.testing.assert_array_equal(halves.scale_[0], 1.0)


def test_scaler_keeps_nan_padding():
    X, seqs = _make_X("padded", seed=7)
    assert np.isnan(X).any()  # some samples are padded
    Xt = SequenceScaler().fit(X).transform(X)
    np.testing.assert_array_equal(np.isnan(Xt), np.isnan(X))
    # and a pipeline that pads its own way reads the same sequences as a list
    Xl = SequenceScaler().fit(seqs).transform(seqs)
    for i, s in enumerate(Xl):
        np.testing.assert_allclose(Xt[i, : len(s)], s, rtol=1e-12)


# ------------------------------------------------------------- n_jobs
@ignore_convergence
def test_grid_search_threading_n_jobs_matches_serial():
    X, seqs = _make_X("list", seed=8)
    y = _labels(seqs)
    grid = {"clf__cell": ["rnn", "gru"], "clf__hidden_size": [4, 6]}
    serial = GridSearchCV(_pipeline(), grid, cv=3, n_jobs=1).fit(X, y)
    with joblib.parallel_config(backend="threading"):
        threaded = GridSearchCV(_pipeline(), grid, cv=3, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(
        threaded.cv_results_["mean_test_score"],
        serial.cv_results_["mean_test_score"],
        rtol=1e-12,
    )
    assert threaded.best_params_ == serial.best_params_


# ------------------------------------------------- labels a fold never saw
@ignore_convergence
@pytest.mark.parametrize("output", ["last", "sequence"])
def test_score_counts_unseen_labels_as_wrong(output):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 5, 2))
    if output == "last":
        y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
        y_new = y.copy()
        y_new[:4] = "sideways"
    else:
        y = np.where(X[:, :, 0] > 0, "up", "down")
        y_new = y.copy()
        y_new[:2, :] = "sideways"
    clf = SequenceClassifier(hidden_size=4, max_iter=3, random_state=0, output=output)
    clf.fit(X, y)
    pred = np.asarray(clf.predict(X))
    w = np.arange(1.0, 21.0)
    for weights in (None, w):
        rows = (
            None
            if weights is None
            else np.broadcast_to(
                weights.reshape((20,) + (1,) * (pred.ndim - 1)), pred.shape
            ).ravel()
        )
        expected = np.average(pred.ravel() == y_new.ravel(), weights=rows)
        assert clf.score(X, y_new, sample_weight=weights) == pytest.approx(expected)
    # training on an unseen label is still refused
    with pytest.raises(ValueError, match="not seen in classes_"):
        clf.partial_fit(X, y_new)


@ignore_convergence
def test_cross_validation_with_a_class_missing_from_a_training_fold():
    """50 "a", 49 "b" and one "c": the fold that tests "c" never trained on
    it. Every fold scores, and a grid search ranks its candidates."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(100, 5, 2))
    y = np.array(["a"] * 50 + ["b"] * 49 + ["c"])
    clf = SequenceClassifier(hidden_size=4, max_iter=3, random_state=0)
    with pytest.warns(UserWarning, match="least populated class"):
        scores = cross_val_score(clf, X, y, cv=StratifiedKFold(3))
    assert np.isfinite(scores).all()
    search = GridSearchCV(clf, {"hidden_size": [3, 4]}, cv=StratifiedKFold(3))
    with pytest.warns(UserWarning, match="least populated class"):
        search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# ------------------------------------------------------- pandas output
@ignore_convergence
@pytest.mark.parametrize("how", ["set_config", "set_output"])
@pytest.mark.parametrize("form", FORMS)
def test_scaler_with_pandas_output(form, how):
    """Tables come out as DataFrames; 3-D arrays and lists, which a DataFrame
    cannot hold, come out as they do by default. The README's pipeline runs
    either way."""
    import sklearn

    pd = pytest.importorskip("pandas")
    X, seqs = _make_X(form)
    y = _labels(seqs)
    default = SequenceScaler().fit_transform(X)
    with sklearn.config_context(
        transform_output="pandas" if how == "set_config" else "default"
    ):
        scaler = SequenceScaler()
        if how == "set_output":
            scaler.set_output(transform="pandas")
        out = scaler.fit_transform(X)
        again = scaler.transform(X)
        pipe = _pipeline()
        if how == "set_output":
            pipe.set_output(transform="pandas")
        pipe.fit(X, y).predict(X)
    for got in (out, again):
        if form == "table":
            assert isinstance(got, pd.DataFrame)
            assert list(got.columns) == [f"x{j}" for j in range(X.shape[1])]
            np.testing.assert_array_equal(got.to_numpy(), default)
        elif form == "list":
            assert isinstance(got, list)
            for a, b in zip(got, default):
                np.testing.assert_array_equal(a, b)
        else:
            assert isinstance(got, np.ndarray)
            np.testing.assert_array_equal(got, default)
