"""Stream: a sequence fed step by step predicts what predict gives for each
prefix; streams are independent; bad steps are refused before the state
moves; a stream pickles with its state."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline

from skrnn import SequenceClassifier, SequenceRegressor, Stream
from skrnn._engine import _recurrent
from skrnn.preprocessing import SequenceScaler

CELLS = [
    {"cell": "rnn"},
    {"cell": "rnn", "activation": "relu"},
    {"cell": "gru"},
    {"cell": "gru", "reset_after": False},
    {"cell": "lstm"},
]
TOL = {"float32": 1e-6, "float64": 1e-12}
N, T, D = 6, 7, 3


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few epochs only
        return model.fit(X, y)


def _data(seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(40, T, D))
    return X, X[:, :, 0].sum(axis=1), (X[:, :, 1].sum(axis=1) > 0).astype(int)


def _model(Est, params, dtype, output="last"):
    X, y_reg, y_clf = _data()
    y = y_reg if Est is SequenceRegressor else y_clf
    if output == "sequence":
        y = np.cumsum(X[:, :, 0], axis=1)
        y = y if Est is SequenceRegressor else (y > 0).astype(int)
    model = Est(
        hidden_size=5, max_iter=3, random_state=0, dtype=dtype, output=output, **params
    )
    return _fit(model, X, y), X


def _allclose(a, b, dtype):
    # float32: the step and predict round alike but for BLAS's summing order
    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("params", CELLS, ids=lambda p: "-".join(map(str, p.values())))
@pytest.mark.parametrize("Est", [SequenceRegressor, SequenceClassifier])
def test_steps_predict_what_predict_gives_each_prefix(Est, params, num_layers, dtype):
    model, X = _model(Est, {**params, "num_layers": num_layers}, dtype)
    stream = Stream(model, n_streams=N)
    for t in range(T):
        prefix = X[:N, : t + 1]
        if Est is SequenceClassifier:
            _allclose(
                stream.predict_proba(X[:N, t]), model.predict_proba(prefix), dtype
            )
        else:
            _allclose(stream.predict(X[:N, t]), model.predict(prefix), dtype)


@pytest.mark.parametrize("params", CELLS, ids=lambda p: "-".join(map(str, p.values())))
def test_each_kernel_steps_float32_streams_alike(params, packed_level):
    model, X = _model(SequenceRegressor, {**params, "num_layers": 2}, "float32")
    stream = Stream(model, n_streams=N)
    for t in range(T):
        _allclose(stream.predict(X[:N, t]), model.predict(X[:N, : t + 1]), "float32")


@pytest.mark.parametrize("hidden_size", [5, 48])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_many_streams_step_in_shares_and_blocks(dtype, hidden_size):
    # more streams than the compiled step takes in one block; with 48 units,
    # enough work per step to share the streams out between threads
    rng = np.random.RandomState(0)
    X = rng.normal(size=(700, 4, D))
    model = _fit(
        SequenceRegressor(
            cell="lstm",
            hidden_size=hidden_size,
            num_layers=2,
            use_bias=False,
            max_iter=1,
            random_state=0,
            dtype=dtype,
        ),
        X[:50],
        X[:50, :, 0].sum(axis=1),
    )
    stream = Stream(model, n_streams=len(X))
    for t in range(X.shape[1]):
        _allclose(stream.predict(X[:, t]), model.predict(X[:, : t + 1]), dtype)
    # a bad value in the last share's streams: the first shares do not move
    before = stream.state_["h"].copy()
    step = X[:, 0].copy()
    step[-1, 0] = np.inf
    with pytest.raises(ValueError, match=f"stream {len(X) - 1}"):
        stream.predict(step)
    np.testing.assert_array_equal(stream.state_["h"], before)


def test_the_compiled_step_refuses_arrays_it_cannot_read():
    H, G, f = 4, 3, np.float32
    layer = [np.zeros((G * H, D), f), np.zeros((G * H, H), f)] + [
        np.zeros(G * H, f)
    ] * 2
    args = dict(
        head_w=np.zeros((1, H), f),
        head_b=np.zeros(1, f),
        shift=np.zeros((0, D)),
        scale=np.ones((0, D)),
        out_scale=np.ones(1),
        out_shift=np.zeros(1),
        states=np.zeros((1, 1, 5, H), f),
        out=np.zeros((5, 1)),
    )
    gru = _recurrent.Cell.GRU_RESET_AFTER
    stepper = _recurrent.Stepper(gru, 0, [tuple(layer)], **args)
    # what a step cannot read is left alone: -2, nothing computed
    args["out"][:] = 7
    for x in [
        np.zeros((5, D + 1)),
        np.zeros((4, D)),
        np.zeros(5 * D),
        np.zeros((5, D), dtype=np.int64),
        np.zeros((D, 5)).T,
        np.zeros((5, D)).tolist(),
    ]:
        assert stepper.step(x) == -2
    x = np.zeros((5, D), dtype=f)
    x[3, 1] = np.nan
    assert stepper.step(x) == 3
    np.testing.assert_array_equal(args["out"], 7)
    assert stepper.step(np.zeros((5, D), dtype=f)) == -1
    np.testing.assert_array_equal(args["out"], 0)
    bad = {
        "head_w": np.zeros((2, H), f),
        "out": np.zeros((5, 1), f),
        "out_shift": np.zeros(2),
        "states": np.zeros((1, 1, 5, 2 * H), f)[..., :H],
        "shift": np.zeros((1, D + 1)),
    }
    for name, value in bad.items():
        with pytest.raises(ValueError):
            _recurrent.Stepper(gru, 0, [tuple(layer)], **{**args, name: value})
    with pytest.raises(ValueError, match="do not match"):
        _recurrent.Stepper(_recurrent.Cell.LSTM, 0, [tuple(layer)], **args)
    with pytest.raises(ValueError):
        narrow = layer[:1] + [layer[1][:, :2]] + layer[2:]
        _recurrent.Stepper(gru, 0, [tuple(narrow)], **args)
    with pytest.raises(TypeError, match="addresses"):
        pickle.dumps(stepper)


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "absolute_error"},
        {"loss": "poisson"},
        {"loss": "quantile", "quantile": 0.8},
        {"loss": "quantile", "quantile": [0.1, 0.9]},
        {"loss": "gaussian"},
        {"normalize_y": False},
    ],
    ids=str,
)
@pytest.mark.parametrize("n_targets", [1, 2])
def test_every_regression_loss_streams_its_predictions(params, n_targets):
    X, _, _ = _data()
    y = np.abs(X[:, :, :n_targets].sum(axis=1)) * 10 + 3
    model = _fit(
        SequenceRegressor(hidden_size=5, max_iter=3, random_state=0, **params),
        X,
        y if n_targets == 2 else y[:, 0],
    )
    stream = Stream(model, n_streams=N)
    for t in range(T):
        _allclose(stream.predict(X[:N, t]), model.predict(X[:N, : t + 1]), "float32")


@pytest.mark.parametrize("Est", [SequenceRegressor, SequenceClassifier])
def test_per_step_models_predict_the_newest_step(Est):
    model, X = _model(Est, {"cell": "gru"}, "float64", output="sequence")
    stream = Stream(model, n_streams=N)
    for t in range(T):
        step = stream.predict(X[:N, t])
        expected = model.predict(X[:N, : t + 1])[:, -1]
        if Est is SequenceClassifier:
            np.testing.assert_array_equal(step, expected)
        else:
            _allclose(step, expected, "float64")


def test_a_pipeline_of_scalers_scales_each_step():
    X, y, _ = _data()
    X = X * 10 + 3
    pipe = _fit(
        make_pipeline(SequenceScaler(), SequenceRegressor(hidden_size=4, max_iter=3)),
        X,
        y,
    )
    stream = Stream(pipe, n_streams=N)
    for t in range(T):
        _allclose(stream.predict(X[:N, t]), pipe.predict(X[:N, : t + 1]), "float32")


def test_one_stream_takes_one_step_as_a_vector():
    model, X = _model(SequenceRegressor, {"cell": "lstm"}, "float64")
    stream = Stream(model)
    for t in range(T):
        y_t = stream.predict(X[0, t])
    assert y_t.shape == (1,)
    _allclose(y_t, model.predict(X[:1]), "float64")


def test_a_model_fitted_on_a_table_streams_one_value_a_step():
    X, y, _ = _data()
    table = X[:, :, 0]  # univariate sequences, one column a step
    model = _fit(
        SequenceRegressor(hidden_size=4, max_iter=2, dtype="float64"), table, y
    )
    stream = Stream(model, n_streams=N)
    for t in range(T):
        y_t = stream.predict(table[:N, t : t + 1])
    _allclose(y_t, model.predict(table[:N]), "float64")


def test_streams_reset_come_and_go_without_touching_the_others():
    model, X = _model(SequenceRegressor, {"cell": "lstm", "num_layers": 2}, "float64")
    stream = Stream(model, n_streams=3)
    for t in range(3):
        stream.predict(X[:3, t])
    # stream 1 starts afresh: from now on it reads sequence 10 from its start
    stream.reset([1])
    new = stream.add_streams(2)  # streams 3 and 4: sequences 11 and 12
    np.testing.assert_array_equal(new, [3, 4])
    rows = [0, 10, 2, 11, 12]
    starts = [0, 3, 0, 3, 3]  # where each stream's sequence began
    for t in range(3, T):
        x_t = np.stack([X[r, t - s] for r, s in zip(rows, starts)])
        y_t = stream.predict(x_t)
        for i, (r, s) in enumerate(zip(rows, starts)):
            _allclose(y_t[i], model.predict(X[r : r + 1, : t - s + 1])[0], "float64")
    # removing streams 0 and 3 keeps the order and the state of 1, 2 and 4
    before = stream.state_
    stream.remove_streams([0, 3])
    assert stream.n_streams == 3
    for key, value in stream.state_.items():
        np.testing.assert_array_equal(value, before[key][:, [1, 2, 4]])
    stream.reset()
    assert all(not value.any() for value in stream.state_.values())


def test_the_state_is_pytorchs_layout():
    model, X = _model(SequenceRegressor, {"cell": "lstm", "num_layers": 2}, "float64")
    stream = Stream(model, n_streams=4)
    assert stream.state_["h"].shape == stream.state_["c"].shape == (2, 4, 5)
    stream.predict(X[:4, 0])
    state = stream.state_
    state["h"][...] = 7.0  # a copy: the stream keeps its own
    assert not (stream.state_["h"] == 7.0).any()
    gru, _ = _model(SequenceRegressor, {"cell": "gru"}, "float64")
    assert set(Stream(gru, n_streams=2).state_) == {"h"}


@pytest.mark.parametrize(
    "step, match",
    [
        (np.zeros((N, D + 1)), r"X_t must have shape \(6, 3\)"),
        (np.zeros((N - 1, D)), r"X_t must have shape \(6, 3\)"),
        (np.zeros(D), r"X_t must have shape \(6, 3\)"),
        (np.zeros((1, N, D)), r"X_t must have shape"),
        (np.array([["a"] * D] * N), "X_t must be numeric"),
        (
            np.where(np.eye(N, D) == 1, np.nan, 0.0),
            "NaN or infinite value for stream 0",
        ),
    ],
)
def test_a_bad_step_is_refused_and_the_state_stays(step, match):
    model, X = _model(SequenceRegressor, {"cell": "gru"}, "float64")
    stream = Stream(model, n_streams=N)
    stream.predict(X[:N, 0])
    before = stream.state_["h"].copy()
    with pytest.raises(ValueError, match=match):
        stream.predict(step)
    np.testing.assert_array_equal(stream.state_["h"], before)


def test_what_cannot_stream_is_refused():
    X, y, _ = _data()
    bidirectional = _fit(SequenceRegressor(bidirectional=True, max_iter=2), X, y)
    with pytest.raises(ValueError, match="bidirectional"):
        Stream(bidirectional)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        Stream(SequenceRegressor())
    with pytest.raises(TypeError, match="Pipeline of SequenceScalers"):
        Stream(make_pipeline(SequenceScaler()))
    model, _ = _model(SequenceRegressor, {"cell": "gru"}, "float64")
    with pytest.raises(AttributeError, match="classifier"):
        Stream(model).predict_proba(X[0, 0])
    with pytest.raises(ValueError, match="stream indices must be in"):
        Stream(model, n_streams=2).reset([2])
    with pytest.raises(ValueError, match="n must be an int"):
        Stream(model).add_streams(-1)


def test_a_stream_pickles_with_its_state():
    model, X = _model(SequenceClassifier, {"cell": "lstm"}, "float64")
    stream = Stream(model, n_streams=N)
    for t in range(3):
        stream.predict_proba(X[:N, t])
    copy = pickle.loads(pickle.dumps(stream))
    for t in range(3, T):
        np.testing.assert_array_equal(
            copy.predict_proba(X[:N, t]), stream.predict_proba(X[:N, t])
        )
