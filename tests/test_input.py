"""Every input form, for both estimators and both outputs.

Fits here are tiny (hidden_size 4, two epochs): the tests are about shapes,
forms, dtypes and bookkeeping, not about what the models learn. Two epochs
never meet the stopping rule, so every ``fit`` is wrapped in
``pytest.warns(ConvergenceWarning)`` (pytest turns warnings into errors).
"""

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceClassifier, SequenceRegressor

ESTIMATORS = [SequenceRegressor, SequenceClassifier]
OUTPUTS = ["last", "sequence"]
N = 8
T = 6
D = 2
LENGTHS = [3, 6, 4, 1, 5, 6, 2, 4]  # variable lengths, max == T


def _make(Est, output="last", **params):
    kw = dict(hidden_size=4, max_iter=2, random_state=0, output=output)
    kw.update(params)
    return Est(**kw)


def _fit(est, X, y, **fit_params):
    with pytest.warns(ConvergenceWarning):
        return est.fit(X, y, **fit_params)


def _forms(rng):
    """name -> (X, lengths, features per step, whether predict returns a list)."""
    table = rng.normal(size=(N, T))
    arr = rng.normal(size=(N, T, D))
    padded = arr.copy()
    for i, L in enumerate(LENGTHS):
        padded[i, L:] = np.nan
    return {
        "table": (table, [T] * N, 1, False),
        # a list of lists of scalars is a table: array out
        "list_of_lists": ([list(row) for row in table], [T] * N, 1, False),
        "array3d": (arr, [T] * N, D, False),
        "list_1d": ([rng.normal(size=L) for L in LENGTHS], LENGTHS, 1, True),
        "list_2d": ([rng.normal(size=(L, D)) for L in LENGTHS], LENGTHS, D, True),
        "padded": (padded, LENGTHS, D, False),
    }


def _targets(Est, output, X, lengths, rng):
    if output == "last":
        if Est is SequenceRegressor:
            return rng.normal(size=N)
        return np.array(["a", "b"] * (N // 2))
    if Est is SequenceRegressor:
        per_step = [rng.normal(size=L) for L in lengths]
    else:
        per_step = [np.array(["a", "b"] * L)[:L] for L in lengths]
        per_step[0][0], per_step[1][0] = "a", "b"
    if isinstance(X, list) and not isinstance(X[0], list):
        return per_step
    # an array (n_samples, n_timesteps); padded steps hold junk
    junk = np.nan if Est is SequenceRegressor else "b"
    y = np.full((N, T), junk, dtype=per_step[0].dtype if junk == "b" else float)
    for i, v in enumerate(per_step):
        y[i, : len(v)] = v
    return y


FORM_NAMES = ["table", "list_of_lists", "array3d", "list_1d", "list_2d", "padded"]


@pytest.mark.parametrize("form", FORM_NAMES)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_every_input_form_fits_and_predicts_in_its_shape(Est, output, form):
    rng = np.random.RandomState(0)
    X, lengths, n_step_features, list_out = _forms(rng)[form]
    y = _targets(Est, output, X, lengths, rng)
    est = _fit(_make(Est, output), X, y)

    expected_nfi = T if form in ("table", "list_of_lists") else n_step_features
    assert est.n_features_in_ == expected_nfi
    assert est.coefs_["weight_ih_l0"].shape[1] == n_step_features

    pred = est.predict(X)
    if output == "last":
        assert isinstance(pred, np.ndarray)
        assert pred.shape == (N,)
        if Est is SequenceRegressor:
            assert pred.dtype == np.float64
            assert np.isfinite(pred).all()
        else:
            assert set(pred) <= {"a", "b"}
            proba = est.predict_proba(X)
            assert proba.shape == (N, 2)
            assert proba.dtype == np.float64
            assert np.isfinite(proba).all()
        return

    if list_out:
        assert isinstance(pred, list)
        assert len(pred) == N
        for p, L in zip(pred, lengths):
            assert p.shape == (L,)
        if Est is SequenceRegressor:
            assert all(p.dtype == np.float64 and np.isfinite(p).all() for p in pred)
        else:
            assert all(set(p) <= {"a", "b"} for p in pred)
            proba = est.predict_proba(X)
            assert isinstance(proba, list) and len(proba) == N
            for p, L in zip(proba, lengths):
                assert p.shape == (L, 2)
                assert p.dtype == np.float64
                assert np.isfinite(p).all()
        return

    assert isinstance(pred, np.ndarray)
    assert pred.shape == (N, T)
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    if Est is SequenceRegressor:
        assert pred.dtype == np.float64
        assert np.isfinite(pred[valid]).all()
        assert np.isnan(pred[~valid]).all()
    else:
        if (~valid).any():
            # None at padded steps: an object array
            assert pred.dtype == object
            assert all(v is None for v in pred[~valid])
        assert set(pred[valid]) <= {"a", "b"}
        proba = est.predict_proba(X)
        assert proba.shape == (N, T, 2)
        assert proba.dtype == np.float64
        assert np.isfinite(proba[valid]).all()
        assert np.isnan(proba[~valid]).all()
        np.testing.assert_allclose(proba[valid].sum(axis=-1), 1.0)


def test_padded_prediction_has_nan_exactly_at_padded_steps():
    # the padded array of the test above has samples of length 1 and of full
    # length: NaN must appear exactly at steps >= length, for every sample
    rng = np.random.RandomState(1)
    X, lengths, _, _ = _forms(rng)["padded"]
    y = _targets(SequenceRegressor, "sequence", X, lengths, rng)
    est = _fit(_make(SequenceRegressor, "sequence"), X, y)
    pred = est.predict(X)
    for i, L in enumerate(lengths):
        assert np.isfinite(pred[i, :L]).all()
        assert np.isnan(pred[i, L:]).all()


@pytest.mark.parametrize("form", ["table", "3d", "3d-padded"])
def test_huge_finite_values_are_data_not_padding(form):
    """Finiteness is first tested on the sum of X; a sum of finite values
    that overflows must still read as finite data of full length."""
    from skrnn._data import check_sequences

    big = np.finfo(np.float32).max
    X = np.full((N, T, 1), big, dtype=np.float32)
    X[::2] *= -1  # +max and -max too: the sum may overflow either way
    X[3, 2, 0] = big
    lengths = np.full(N, T)
    if form == "3d-padded":
        X[1, 4:] = np.nan
        lengths[1] = 4
    seqs = check_sequences(X[:, :, 0] if form == "table" else X)
    np.testing.assert_array_equal(seqs.lengths, lengths)
    valid = np.arange(T)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(seqs.values[valid], X[valid])
    assert (seqs.values[~valid] == 0).all()


# ------------------------------------------------------------ n_features_in_
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_table_fitted_model_feature_rules(Est):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N, 5))
    y = _targets(Est, "last", X, None, rng)
    est = _fit(_make(Est), X, y)
    assert est.n_features_in_ == 5
    assert est.predict(rng.normal(size=(3, 5))).shape == (3,)
    # 3-D and list input with one feature per step, any length
    assert est.predict(rng.normal(size=(3, 17, 1))).shape == (3,)
    assert est.predict(rng.normal(size=(2, 2, 1))).shape == (2,)
    assert est.predict([rng.normal(size=9), rng.normal(size=2)]).shape == (2,)
    assert est.predict([rng.normal(size=(9, 1)), rng.normal(size=(2, 1))]).shape == (2,)
    # a table of another width is refused
    with pytest.raises(ValueError, match="X has 4 features, but .* is expecting 5"):
        est.predict(rng.normal(size=(3, 4)))
    # more than one feature per step is refused
    with pytest.raises(ValueError, match="X has 2 features"):
        est.predict(rng.normal(size=(3, 5, 2)))
    with pytest.raises(ValueError, match="X has 2 features"):
        est.predict([rng.normal(size=(4, 2))])


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("list_input", [False, True])
def test_sequence_fitted_model_feature_rules(Est, list_input):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N, 5, 3))
    if list_input:
        X = [x[: L % 5 + 1] for x, L in zip(X, LENGTHS)]
    y = _targets(Est, "last", X, None, rng)
    est = _fit(_make(Est), X, y)
    assert est.n_features_in_ == 3
    assert est.predict(rng.normal(size=(2, 11, 3))).shape == (2,)
    assert est.predict([rng.normal(size=(1, 3)), rng.normal(size=(7, 3))]).shape == (2,)
    with pytest.raises(ValueError, match="X has 2 features, but .* is expecting 3"):
        est.predict(rng.normal(size=(2, 5, 2)))
    # a table is univariate: not for a model with 3 features per step
    with pytest.raises(ValueError, match="X has 1 features, but .* is expecting 3"):
        est.predict(rng.normal(size=(2, 5)))


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_univariate_3d_fitted_model_predicts_tables(Est):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N, 5, 1))
    y = _targets(Est, "last", X, None, rng)
    est = _fit(_make(Est), X, y)
    assert est.n_features_in_ == 1
    for width in (1, 5, 13):
        X_table = rng.normal(size=(3, width))
        np.testing.assert_array_equal(
            est.predict(X_table), est.predict(X_table[:, :, None])
        )


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_table_and_3d_views_of_the_same_data_agree(Est):
    # a table is a set of univariate sequences: X and X[:, :, None] fit the
    # same model (only n_features_in_ differs)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N, 5))
    y = _targets(Est, "last", X, None, rng)
    a = _fit(_make(Est), X, y)
    b = _fit(_make(Est), X[:, :, None], y)
    assert a.n_features_in_ == 5 and b.n_features_in_ == 1
    for name in a.coefs_:
        np.testing.assert_array_equal(a.coefs_[name], b.coefs_[name])
    np.testing.assert_array_equal(a.predict(X), b.predict(X[:, :, None]))


# --------------------------------------------------------------------- dtype
def _coef_dtypes(est):
    return {v.dtype for v in est.coefs_.values()}


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize(
    "x_dtype, dtype, expected",
    [
        (np.float32, None, np.float32),
        (np.float64, None, np.float64),
        (np.int64, None, np.float64),
        (np.int32, None, np.float64),
        (np.float16, None, np.float64),
        (np.float64, "float32", np.float32),
        (np.int64, "float32", np.float32),
        (np.float32, "float64", np.float64),
        # the default: float32, whatever the input
        (np.float64, "default", np.float32),
        (np.int64, "default", np.float32),
    ],
)
def test_dtype_rule(Est, x_dtype, dtype, expected):
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(N, 5, 2)) * 3).astype(x_dtype)
    y = _targets(Est, "last", X, None, rng)
    est = _fit(_make(Est) if dtype == "default" else _make(Est, dtype=dtype), X, y)
    assert _coef_dtypes(est) == {np.dtype(expected)}
    # predict (regressor) and predict_proba return float64 whatever dtype,
    # and whatever the dtype of the X they are given
    for X_pred in (X, X.astype(np.float32), X.astype(np.float64)):
        if Est is SequenceRegressor:
            assert est.predict(X_pred).dtype == np.float64
        else:
            assert est.predict_proba(X_pred).dtype == np.float64
            assert est.predict_log_proba(X_pred).dtype == np.float64


@pytest.mark.parametrize("output", OUTPUTS)
def test_float32_model_sequence_outputs_are_float64(output):
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(L, 2)).astype(np.float32) for L in LENGTHS]
    y = _targets(SequenceRegressor, output, X, LENGTHS, rng)
    reg = _fit(_make(SequenceRegressor, output), X, y)
    assert _coef_dtypes(reg) == {np.dtype(np.float32)}
    pred = reg.predict(X)
    preds = pred if isinstance(pred, list) else [pred]
    assert all(p.dtype == np.float64 for p in preds)

    y = _targets(SequenceClassifier, output, X, LENGTHS, rng)
    clf = _fit(_make(SequenceClassifier, output), X, y)
    assert _coef_dtypes(clf) == {np.dtype(np.float32)}
    proba = clf.predict_proba(X)
    probas = proba if isinstance(proba, list) else [proba]
    assert all(p.dtype == np.float64 for p in probas)


def test_list_of_mixed_dtypes_is_float64():
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(L, 2)).astype(np.float32) for L in LENGTHS]
    X[3] = X[3].astype(np.float64)
    est = _fit(_make(SequenceRegressor, dtype=None), X, rng.normal(size=N))
    assert _coef_dtypes(est) == {np.dtype(np.float64)}


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_integer_and_object_arrays_are_converted_like_floats(Est):
    rng = np.random.RandomState(0)
    X_int = rng.randint(0, 3, size=(N, 5))
    y = _targets(Est, "last", X_int, None, rng)
    ref = _fit(_make(Est, dtype=None), X_int.astype(np.float64), y)
    for X in (
        X_int,
        X_int.astype(object),
        X_int.astype(np.float64).astype(object),
        X_int[:, :, None].astype(object),
        [list(map(int, row)) for row in X_int],
        [row.astype(object) for row in X_int],
    ):
        est = _fit(_make(Est, dtype=None), X, y)
        assert _coef_dtypes(est) == {np.dtype(np.float64)}
        for name in ref.coefs_:
            np.testing.assert_array_equal(est.coefs_[name], ref.coefs_[name])
        np.testing.assert_array_equal(est.predict(X), ref.predict(X_int))


# --------------------------------------------------------------- padding
def _as_padded(X_list, T_pad, fill=np.nan):
    D_ = X_list[0].shape[1]
    out = np.full((len(X_list), T_pad, D_), fill)
    for i, x in enumerate(X_list):
        out[i, : len(x)] = x
    return out


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_list_and_nan_padded_array_fit_the_same_model(Est, output):
    rng = np.random.RandomState(0)
    X_list = [rng.normal(size=(L, D)) for L in LENGTHS]
    X_pad = _as_padded(X_list, T)
    y_list = _targets(Est, output, X_list, LENGTHS, rng)
    if output == "last":
        y_pad = y_list
    else:
        junk = np.nan if Est is SequenceRegressor else "b"
        y_pad = np.full((N, T), junk, dtype=object if junk == "b" else float)
        for i, v in enumerate(y_list):
            y_pad[i, : len(v)] = v
        if Est is SequenceClassifier:
            y_pad = y_pad.astype(str)

    a = _fit(_make(Est, output), X_list, y_list)
    b = _fit(_make(Est, output), X_pad, y_pad)
    for name in a.coefs_:
        np.testing.assert_array_equal(a.coefs_[name], b.coefs_[name])
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)

    pa, pb = a.predict(X_list), b.predict(X_pad)
    # either model predicts the other's form the same
    pa_pad = a.predict(X_pad)
    if output == "last":
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(pa, pa_pad)
    else:
        for i, L in enumerate(LENGTHS):
            np.testing.assert_array_equal(pa[i], pb[i, :L])
            np.testing.assert_array_equal(pa[i], pa_pad[i, :L])

    # more all-NaN steps at the end change nothing but the padding
    X_more = _as_padded(X_list, T + 3)
    pm = b.predict(X_more)
    if output == "last" and Est is SequenceClassifier:
        np.testing.assert_array_equal(pm, pb)
    elif output == "last":
        np.testing.assert_allclose(pm, pb, rtol=1e-12, atol=1e-12)
    elif Est is SequenceRegressor:
        np.testing.assert_allclose(pm[:, :T], pb, rtol=1e-12, atol=1e-12)
        assert np.isnan(pm[:, T:]).all()
    else:
        np.testing.assert_array_equal(pm[:, :T], pb)
        assert all(v is None for v in pm[:, T:].ravel())


def test_values_at_padded_target_steps_are_ignored():
    # for a NaN-padded X, y's padded steps may hold anything, NaN included
    rng = np.random.RandomState(0)
    X_list = [rng.normal(size=(L, D)) for L in LENGTHS]
    X_pad = _as_padded(X_list, T)
    y = rng.normal(size=(N, T))
    valid = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    y_nan = np.where(valid, y, np.nan)
    y_big = np.where(valid, y, 1e6)
    ref = _fit(_make(SequenceRegressor, "sequence"), X_pad, y_nan)
    other = _fit(_make(SequenceRegressor, "sequence"), X_pad, y_big)
    for name in ref.coefs_:
        np.testing.assert_array_equal(ref.coefs_[name], other.coefs_[name])


def test_predict_stores_nothing():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N, 5, 2))
    est = _fit(_make(SequenceRegressor), X, rng.normal(size=N))
    before = dict(vars(est))
    est.predict([rng.normal(size=(3, 2))])
    est.predict(rng.normal(size=(2, 40, 2)))
    assert set(vars(est)) == set(before)
    for key, value in before.items():
        assert vars(est)[key] is value


# ------------------------------------------------ lists of pandas objects
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_ragged_list_of_dataframes_reads_like_arrays_and_keeps_names(Est):
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    arrays = [rng.normal(size=(L, D)) for L in LENGTHS]
    frames = [pd.DataFrame(a, columns=["speed", "heading"]) for a in arrays]
    y = _targets(Est, "last", arrays, LENGTHS, rng)
    from_arrays = _fit(_make(Est), arrays, y)
    est = _fit(_make(Est), frames, y)
    assert est.n_features_in_ == D
    assert list(est.feature_names_in_) == ["speed", "heading"]
    np.testing.assert_array_equal(est.predict(frames), from_arrays.predict(arrays))
    renamed = [f.rename(columns={"speed": "velocity"}) for f in frames]
    with pytest.raises(ValueError, match="Sample 0 of X has columns"):
        est.predict(renamed)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.predict(arrays)


@pytest.mark.parametrize("change", ["swapped", "renamed"])
def test_list_of_dataframes_whose_columns_disagree_is_refused(change):
    """Columns in another order or under other names in some DataFrames of
    a list, at fit or at predict: a ValueError naming the first such sample,
    before anything changes, rather than columns read by position."""
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    frames = [
        pd.DataFrame(rng.normal(size=(L, D)), columns=["a", "b"]) for L in LENGTHS
    ]
    y = rng.normal(size=N)

    def disagree(frame):
        if change == "swapped":
            return frame[["b", "a"]]
        return frame.rename(columns={"b": "c"})

    odd = [disagree(f) if i in (2, 4) else f for i, f in enumerate(frames)]
    message = r"Sample 2 of X has columns \['[abc]', '[abc]'\], but"
    with pytest.raises(ValueError, match=message + " sample 0 has"):
        _make(SequenceRegressor).fit(odd, y)
    est = _fit(_make(SequenceRegressor), frames, y)
    before = est.predict(frames)
    with pytest.raises(ValueError, match=message + " the model was fitted with"):
        est.predict(odd)
    with pytest.raises(ValueError, match=message):
        est.partial_fit(odd, y)
    np.testing.assert_array_equal(est.predict(frames), before)


@pytest.mark.parametrize("ragged", [False, True])
def test_list_of_series_is_univariate_sequences(ragged):
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    lengths = LENGTHS if ragged else [T] * N
    arrays = [rng.normal(size=L) for L in lengths]
    y = rng.normal(size=N)
    est = _fit(_make(SequenceRegressor), [pd.Series(a) for a in arrays], y)
    from_arrays = _fit(_make(SequenceRegressor), arrays, y)
    assert est.n_features_in_ == 1
    np.testing.assert_array_equal(
        est.predict([pd.Series(a) for a in arrays]), from_arrays.predict(arrays)
    )


# ----------------------------------------------- lists checked in bulk
def test_list_of_arrays_is_checked_without_a_call_per_sequence(monkeypatch):
    """A list of numeric arrays is validated with a few whole-list
    operations: scikit-learn's check_array, which costs tens of microseconds
    a call, is not called once per sequence."""
    import skrnn._data

    rng = np.random.RandomState(0)
    X = [rng.normal(size=(L, D)) for L in rng.randint(1, 9, size=500)]
    est = _fit(_make(SequenceRegressor), X, rng.normal(size=500))
    calls = []
    real = skrnn._data.check_array

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(skrnn._data, "check_array", counted)
    est.predict(X)
    assert calls == []


@pytest.mark.parametrize("sample, step", [(0, 0), (3, 0), (4, 2), (49, 6), (50, 0)])
@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (-np.inf, "infinity")])
def test_bulk_check_names_the_sample_and_step(sample, step, value, kind):
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(L, D)) for L in rng.randint(1, 9, size=51)]
    X[3], X[4], X[49], X[50] = (
        np.ones((1, D)),
        np.ones((3, D)),
        np.ones((7, D)),
        np.ones((1, D)),
    )
    X[sample][step, 1] = value
    with pytest.raises(
        ValueError,
        match=rf"^Input X contains {kind} at sample {sample}, "
        rf"step {step}\.$",
    ):
        _make(SequenceRegressor).fit(X, np.ones(51))


# ------------------------------------------------- ways in: tables, hints
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_nan_padded_table_equals_list_of_the_same_sequences(Est, output):
    rng = np.random.RandomState(0)
    seqs = [rng.normal(size=L) for L in LENGTHS]
    table = np.full((N, T), np.nan)
    for i, s in enumerate(seqs):
        table[i, : len(s)] = s
    y = _targets(Est, output, seqs, LENGTHS, rng)
    from_list = _fit(_make(Est, output), seqs, y)
    from_table = _fit(_make(Est, output), table, y)
    assert from_table.n_features_in_ == T
    for name, value in from_list.coefs_.items():
        np.testing.assert_array_equal(from_table.coefs_[name], value)
    pred_list, pred_table = from_list.predict(seqs), from_table.predict(table)
    if output == "last":
        np.testing.assert_array_equal(pred_table, pred_list)
    else:  # per step, in X's form: padding at the table's padded steps
        for i, L in enumerate(LENGTHS):
            np.testing.assert_array_equal(pred_table[i, :L], pred_list[i])
            assert all(v is None or np.isnan(v) for v in pred_table[i, L:])


def test_nan_inside_a_table_row_is_still_an_error():
    X = np.ones((N, T))
    X[2, 1] = np.nan  # step 2 is not NaN: no padding
    with pytest.raises(ValueError, match="NaN at sample 2, step 1"):
        _make(SequenceRegressor).fit(X, np.ones(N))


def test_table_width_error_says_how_to_pass_other_lengths():
    rng = np.random.RandomState(0)
    est = _fit(_make(SequenceRegressor), rng.normal(size=(N, T)), rng.normal(size=N))
    with pytest.raises(ValueError, match=r"expecting 6 features.*X\[:, :, None\]"):
        est.predict(rng.normal(size=(3, T + 2)))
    assert est.predict(rng.normal(size=(3, T + 2))[:, :, None]).shape == (3,)


def test_per_step_looking_y_with_output_last_warns_or_says_what_to_do():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N, T, D))
    with pytest.warns(UserWarning, match="use output='sequence'"):
        with pytest.warns(ConvergenceWarning):
            reg = _make(SequenceRegressor).fit(X, rng.normal(size=(N, T)))
    assert reg.n_outputs_ == T  # still legal multi-output regression
    with pytest.raises(ValueError, match="use output='sequence'"):
        _make(SequenceClassifier).fit(X, np.arange(N * T).reshape(N, T) % 2)


def test_channels_first_arrays_get_a_hint():
    rng = np.random.RandomState(0)
    aeon_like = rng.normal(size=(N, 3, 50))  # (n_cases, n_channels, n_timepoints)
    with pytest.warns(UserWarning, match=r"aeon or sktime.*X\.transpose\(0, 2, 1\)"):
        with pytest.warns(ConvergenceWarning):
            _make(SequenceRegressor).fit(aeon_like, rng.normal(size=N))
    # as skrnn reads it: no hint; one-hot steps (an alphabet longer than the
    # sequences) are no channels either
    _fit(_make(SequenceRegressor), aeon_like.transpose(0, 2, 1), rng.normal(size=N))
    one_hot = np.eye(30)[rng.randint(0, 30, size=(N, 5))]
    _fit(_make(SequenceRegressor), one_hot, rng.normal(size=N))


def test_scaler_keeps_nan_padding_of_tables():
    from skrnn.preprocessing import SequenceScaler

    X = np.arange(12.0).reshape(3, 4)
    X[0, 2:] = np.nan
    out = SequenceScaler().fit_transform(X)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(X))
