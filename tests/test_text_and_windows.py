"""Raw text (CharacterEncoder) and forecasting windows (sliding_windows)."""

import pickle

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skrnn import SequenceClassifier
from skrnn.preprocessing import CharacterEncoder, sliding_windows

TEXTS = ["hello", "world", "held", "lower", "row"]


# -------------------------------------------------------- CharacterEncoder
def test_encoding_is_one_hot_over_the_sorted_alphabet():
    encoder = CharacterEncoder().fit(TEXTS)
    alphabet = sorted(set("".join(TEXTS)))
    assert encoder.categories_.tolist() == alphabet
    for text, x in zip(TEXTS, encoder.transform(TEXTS)):
        assert x.shape == (len(text), len(alphabet)) and x.dtype == np.float64
        expected = np.array([[float(c == a) for a in alphabet] for c in text])
        np.testing.assert_array_equal(x, expected)
    assert encoder.inverse_transform(encoder.transform(TEXTS)) == TEXTS


def test_unknown_characters():
    ignore = CharacterEncoder().fit(TEXTS)
    x = ignore.transform(["hex!"])[0]
    np.testing.assert_array_equal(x.sum(axis=1), [1, 1, 0, 0])  # x and ! are unknown
    assert ignore.inverse_transform([x]) == ["he"]
    strict = CharacterEncoder(handle_unknown="error").fit(TEXTS)
    with pytest.raises(ValueError, match=r"Sample 1 of X .* \['!', 'x'\]"):
        strict.transform(["hello", "hex!"])


def test_lowercase():
    encoder = CharacterEncoder(lowercase=True).fit(["Hello", "WORLD"])
    assert encoder.categories_.tolist() == sorted(set("helloworld"))
    assert encoder.inverse_transform(encoder.transform(["HeLD"])) == ["held"]


@pytest.mark.parametrize(
    "X, match",
    [
        ("hello", "iterable of strings"),
        (["hello", ""], "Sample 1 of X has length 0"),
        (["hello", 3], "Sample 1 of X is a int"),
        ([], "0 sample"),
    ],
)
def test_bad_texts(X, match):
    with pytest.raises(ValueError, match=match):
        CharacterEncoder().fit(X)


@pytest.mark.parametrize("form", ["dataframe", "array"])
def test_a_one_column_table_is_its_texts(form):
    """df[["text"]], what a ColumnTransformer hands over for a list of
    columns, holds one text per row, as the column itself does."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": TEXTS, "other": range(len(TEXTS))})
    table = frame[["text"]] if form == "dataframe" else np.array(TEXTS)[:, None]
    encoder = CharacterEncoder().fit(table)
    reference = CharacterEncoder().fit(frame["text"])
    assert encoder.categories_.tolist() == reference.categories_.tolist()
    encoded = encoder.transform(table)
    assert len(encoded) == len(TEXTS)
    for a, b in zip(encoded, reference.transform(TEXTS)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="a table with one column, not 2"):
        encoder.transform(frame if form == "dataframe" else np.c_[table, table])


def test_pickles():
    encoder = CharacterEncoder().fit(TEXTS)
    loaded = pickle.loads(pickle.dumps(encoder))
    for a, b in zip(loaded.transform(TEXTS), encoder.transform(TEXTS)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_on_raw_strings():
    rng = np.random.RandomState(0)
    words = [
        "".join(rng.choice(list("abcde"), size=rng.randint(2, 7))) for _ in range(60)
    ]
    labels = np.array(["has-e" if "e" in w else "no-e" for w in words])
    pipe = make_pipeline(
        CharacterEncoder(), SequenceClassifier(max_iter=5, random_state=0)
    )
    search = GridSearchCV(pipe, {"sequenceclassifier__hidden_size": [4, 8]}, cv=3)
    search.fit(words, labels)
    assert set(search.predict(["eee", "abc"])) <= {"has-e", "no-e"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# --------------------------------------------------------- sliding_windows
def _by_hand(series, window, horizon):
    X, y = [], []
    for i in range(len(series) - window - horizon + 1):
        X.append(series[i : i + window])
        y.append(series[i + window + horizon - 1])
    return np.array(X), np.array(y)


@pytest.mark.parametrize("horizon", [1, 3])
@pytest.mark.parametrize("D", [None, 2])
def test_windows_and_targets(D, horizon):
    rng = np.random.RandomState(0)
    series = rng.normal(size=20) if D is None else rng.normal(size=(20, D))
    X, y = sliding_windows(series, 5, horizon=horizon)
    X_hand, y_hand = _by_hand(series, 5, horizon)
    assert X.shape == (20 - 5 - horizon + 1, 5, 1 if D is None else D)
    np.testing.assert_array_equal(X.reshape(X_hand.shape), X_hand)
    np.testing.assert_array_equal(y, y_hand)
    # no window sees its target: the target's step is after the window's last
    steps, _ = sliding_windows(np.arange(20.0), 5, horizon=horizon)
    targets = sliding_windows(np.arange(20.0), 5, horizon=horizon)[1]
    assert (steps[:, -1, 0] + horizon == targets).all()


def _by_hand_multi(series, window, horizons, targets):
    """The windows and, per window, each target column at each horizon, in
    the layout of sliding_windows: target-major."""
    X, y = [], []
    for i in range(len(series) - window - max(horizons) + 1):
        X.append(series[i : i + window])
        y.append([series[i + window + h - 1, j] for j in targets for h in horizons])
    return np.array(X), np.array(y)


@pytest.mark.parametrize("horizon", [[1], [1, 3], [4, 2, 7]])
@pytest.mark.parametrize("target", [None, 1, [2, 0]])
def test_several_horizons_and_target_columns_are_the_loop_by_hand(horizon, target):
    series = np.random.RandomState(0).normal(size=(30, 3))
    X, y = sliding_windows(series, 5, horizon=horizon, target=target)
    columns = [0, 1, 2] if target is None else np.atleast_1d(target).tolist()
    X_hand, y_hand = _by_hand_multi(series, 5, horizon, columns)
    np.testing.assert_array_equal(X, X_hand)  # every column: past covariates
    assert len(X) == 30 - 5 - max(horizon) + 1
    if isinstance(target, int):
        y_hand = y_hand.reshape(len(y_hand), len(horizon))
    np.testing.assert_array_equal(y, y_hand)


def test_one_target_column_keeps_the_shapes_of_a_1d_series():
    series = np.arange(40.0).reshape(20, 2)
    _, y1 = sliding_windows(series[:, 1], 4, horizon=2)
    _, y2 = sliding_windows(series, 4, horizon=2, target=1)
    np.testing.assert_array_equal(y1, y2)  # (n_windows,)
    _, y1 = sliding_windows(series[:, 1], 4, horizon=[1, 2])
    _, y2 = sliding_windows(series, 4, horizon=[1, 2], target=1)
    np.testing.assert_array_equal(y1, y2)  # (n_windows, 2)
    _, y = sliding_windows(series, 4, target=[1])
    assert y.shape == (16, 1)


def test_windows_are_copies():
    series = np.arange(10.0)
    X, _ = sliding_windows(series, 3)
    X[0, 0, 0] = -1.0
    assert series[0] == 0.0


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((np.arange(5.0), 5), {}, "at least 6 steps"),
        ((np.array([]), 3), {}, "A series of 0 steps .* at least 4 steps"),
        ((np.zeros((0, 2)), 1), {}, "A series of 0 steps"),
        ((np.zeros((6, 0)), 2), {}, "0 features per step"),
        ((np.arange(5.0), 3), {"horizon": 3}, "at least 6 steps"),
        ((np.zeros((4, 2, 2)), 2), {}, r"\(T,\) or \(T, D\)"),
        ((np.arange(5.0), 0), {}, "'window' parameter"),
        ((np.arange(5.0), 2), {"horizon": 0}, "'horizon' parameter"),
        ((np.arange(9.0), 2), {"horizon": [1, 0]}, "horizon must be an int >= 1"),
        ((np.arange(9.0), 2), {"horizon": []}, "non-empty sequence"),
        ((np.arange(9.0), 2), {"horizon": [1.5]}, "horizon must be an int"),
        ((np.arange(9.0), 2), {"horizon": [2, 8]}, "a horizon of 8"),
        ((np.zeros((9, 2)), 2), {"target": 2}, r"column index in \[0, 2\)"),
        ((np.zeros((9, 2)), 2), {"target": [0, -1]}, "column index"),
        ((np.arange(9.0), 2), {"target": 0}, "this series is 1-D"),
    ],
)
def test_bad_windows(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliding_windows(*args, **kwargs)


# -------------------------------------------------------- TableToSequences
def test_a_lag_table_newest_first_reads_as_the_windows_of_the_series():
    # skforecast's layout: lag_1 (the newest) ... lag_k, then an exogenous
    # column; as sequences they are sliding_windows' windows, the exogenous
    # value repeated at every step
    from skrnn.preprocessing import TableToSequences

    series = np.arange(20.0) ** 1.5
    X, _ = sliding_windows(series, 4)
    exog = np.arange(len(X)) * 10.0
    table = np.column_stack([X[:, ::-1, 0], exog])  # lag_1, lag_2, lag_3, lag_4
    seqs = TableToSequences(4, order="newest_first").fit_transform(table)
    assert seqs.shape == (len(X), 4, 2)
    np.testing.assert_array_equal(seqs[:, :, 0], X[:, :, 0])
    np.testing.assert_array_equal(seqs[:, :, 1], np.repeat(exog[:, None], 4, axis=1))


def test_a_flattened_panel_reads_as_the_transposed_panel():
    # sktime flattens (n, C, T) channel after channel
    from skrnn.preprocessing import TableToSequences

    panel = np.random.RandomState(0).normal(size=(5, 3, 7))
    flat = panel.reshape(5, 21)
    seqs = TableToSequences(n_channels=3).fit_transform(flat)
    np.testing.assert_array_equal(seqs, panel.transpose(0, 2, 1))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_table_to_sequences_in_a_pipeline_takes_dataframes_and_checks_widths():
    import pandas as pd
    from sklearn.pipeline import make_pipeline

    from skrnn import SequenceRegressor
    from skrnn.preprocessing import TableToSequences

    rng = np.random.RandomState(0)
    table = pd.DataFrame(rng.normal(size=(40, 7)), columns=[f"c{i}" for i in range(7)])
    to_seqs = TableToSequences(3, n_channels=2).fit(table)
    np.testing.assert_array_equal(to_seqs.feature_names_in_, table.columns)
    assert to_seqs.transform(table).shape == (40, 3, 3)
    pipe = make_pipeline(
        TableToSequences(3, n_channels=2), SequenceRegressor(max_iter=2)
    )
    pipe.fit(table, table["c6"])
    assert pipe.predict(table).shape == (40,)
    with pytest.raises(ValueError, match="fewer than n_channels \\* n_steps"):
        TableToSequences(4, n_channels=2).fit(table.iloc[:, :7])
    with pytest.raises(ValueError, match="3 channels do not divide"):
        TableToSequences(n_channels=3).fit(table)
    fitted = TableToSequences(3, n_channels=2).fit(table.to_numpy())
    with pytest.raises(ValueError, match="expecting 7 features"):
        fitted.transform(table.to_numpy()[:, :6])
