"""Export to ONNX: onnxruntime's outputs against predict and predict_proba.

Skipped without the ``onnx`` extra (onnx, skl2onnx, onnxruntime).
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

pytest.importorskip("onnx")
pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import skl2onnx  # noqa: E402

from skrnn import SequenceClassifier, SequenceRegressor, Stream  # noqa: E402
from skrnn.onnx import to_onnx  # noqa: E402
from skrnn.preprocessing import CharacterEncoder, SequenceScaler  # noqa: E402

# float32 graphs against float32 models (whose heads predict in float64);
# float64 models export their layers as Scans over time in double
TOL = {np.float32: 1e-5, np.float64: 1e-9}

CONFIGS = (
    [dict(cell="rnn", activation=a) for a in ("tanh", "relu", "identity", "logistic")]
    + [
        dict(cell="gru", activation=a, reset_after=ra)
        for a in ("tanh", "logistic")
        for ra in (True, False)
    ]
    + [
        dict(cell="lstm"),
        dict(cell="gru", use_bias=False),
        dict(cell="lstm", use_bias=False, num_layers=2),
        dict(cell="rnn", num_layers=2, bidirectional=True),
        dict(cell="gru", bidirectional=True),
        dict(cell="lstm", num_layers=2, bidirectional=True),
    ]
)


def _id(params):
    return "-".join(f"{k}={v}" for k, v in params.items())


def _data(n=37, T=7, D=3, seed=0, dtype=np.float32):
    """Sequences with NaN-padded shorter ones, and their targets."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, T, D)).astype(dtype)
    lengths = rng.randint(1, T + 1, n)
    lengths[0] = T
    X[np.arange(T)[None, :] >= lengths[:, None]] = np.nan
    return X, np.nansum(X[:, :, 0], axis=1)


def _fit(Est, X, y, **params):
    params = {"hidden_size": 5, "max_iter": 3, "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Est(**params).fit(X, y)


def _run(onx, X):
    session = ort.InferenceSession(
        onx.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: X})


def _inputs(X):
    """NaN-padded and equal-length inputs, of 37 sequences and of one."""
    full = np.nan_to_num(X)
    return {"padded": X, "equal": full, "one": X[3:4], "one-equal": full[:1]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("params", CONFIGS, ids=_id)
def test_regressor_predicts_as_onnxruntime(params, dtype):
    X, y = _data(dtype=dtype)
    model = _fit(SequenceRegressor, X, y, dtype=dtype.__name__, **params)
    onx = to_onnx(model, X[:1])
    onnx.checker.check_model(onx, full_check=True)
    tol = TOL[dtype]
    for what, Xi in _inputs(X).items():
        (out,) = _run(onx, Xi)
        expected = model.predict(Xi)
        assert out.shape == (len(Xi), 1) and out.dtype == dtype, what
        np.testing.assert_allclose(
            out[:, 0], expected, rtol=tol, atol=tol, err_msg=what
        )


LOSSES = [
    {"loss": "absolute_error"},
    {"loss": "poisson"},
    {"loss": "quantile", "quantile": [0.1, 0.5, 0.9]},
    {"loss": "quantile", "quantile": 0.3},
    {"loss": "gaussian"},
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_targets", [1, 2])
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("loss", LOSSES, ids=_id)
def test_every_loss_predicts_as_onnxruntime(loss, output, n_targets, dtype):
    # the graph's outputs are predict's, and predict(X, return_std=True)'s
    # standard deviation for the Gaussian loss, NaN at padded steps
    X, _ = _data(dtype=dtype)
    steps = np.abs(np.nan_to_num(X[:, :, 0])) + 1
    y = steps[:, -1] if output == "last" else steps
    if n_targets == 2:
        y = np.stack([y, 2 * y], axis=-1)
    model = _fit(SequenceRegressor, X, y, output=output, dtype=dtype.__name__, **loss)
    onx = to_onnx(model, X[:1])
    onnx.checker.check_model(onx, full_check=True)
    if loss["loss"] == "gaussian":
        expected = model.predict(X, return_std=True)
    else:
        expected = (model.predict(X),)
    outputs = _run(onx, X)
    assert len(outputs) == len(expected)
    for out, value in zip(outputs, expected):
        if output == "last" and value.ndim == 1:  # one target: (N, 1)
            assert out.shape == (len(X), 1)
            out = out[:, 0]
        assert out.shape == value.shape and out.dtype == dtype
        tol = TOL[dtype]
        np.testing.assert_allclose(out, value, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("params", CONFIGS[::3], ids=_id)
def test_classifier_predicts_as_onnxruntime(params, dtype):
    X, y = _data(dtype=dtype)
    tol = TOL[dtype]
    for labels in (
        np.digitize(y, [-0.5, 0.5]),  # three integer classes
        np.where(y > 0, "up", "down"),  # two string classes
    ):
        model = _fit(SequenceClassifier, X, labels, dtype=dtype.__name__, **params)
        onx = to_onnx(model, X[:1], options={"zipmap": False})
        for what, Xi in _inputs(X).items():
            label, proba = _run(onx, Xi)
            np.testing.assert_array_equal(label, model.predict(Xi), err_msg=what)
            np.testing.assert_allclose(
                proba, model.predict_proba(Xi), rtol=tol, atol=tol, err_msg=what
            )


def test_classifier_probabilities_as_zipmap():
    X, y = _data()
    model = _fit(SequenceClassifier, X, np.where(y > 0, "up", "down"), cell="lstm")
    label, proba = _run(to_onnx(model, X[:1]), X)
    expected = model.predict_proba(X)
    assert [sorted(row) for row in proba] == [["down", "up"]] * len(X)
    np.testing.assert_allclose(
        [[row["down"], row["up"]] for row in proba],
        expected,
        rtol=TOL[np.float32],
        atol=TOL[np.float32],
    )


def test_multi_target_and_per_step_regressors():
    X, y = _data()
    two = np.stack([y, -2 * y], axis=1)
    model = _fit(SequenceRegressor, X, two, cell="gru")
    (out,) = _run(to_onnx(model, X[:1]), X)
    np.testing.assert_allclose(
        out, model.predict(X), rtol=TOL[np.float32], atol=TOL[np.float32]
    )

    # one prediction per step, NaN at padded steps as predict gives them
    per_step = np.nan_to_num(np.nancumsum(X[:, :, 0], axis=1))
    model = _fit(SequenceRegressor, X, per_step, cell="lstm", output="sequence")
    onx = to_onnx(model, X[:1])
    for what, Xi in _inputs(X).items():
        (out,) = _run(onx, Xi)
        expected = model.predict(Xi)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected), err_msg=what)
        np.testing.assert_allclose(
            out, expected, rtol=TOL[np.float32], atol=TOL[np.float32], err_msg=what
        )


@pytest.mark.parametrize("names", [["down", "up", "flat"], [0, 1]], ids=str)
def test_per_step_classifier(names):
    """Labels and probabilities per step, the probabilities NaN at padded
    steps; the labels there are not compared (predict gives None)."""
    X, _ = _data()
    labels = np.array(names)[_per_step_labels(X) % len(names)]
    model = _fit(SequenceClassifier, X, labels, cell="gru", output="sequence")
    onx = to_onnx(model, X[:1], options={"zipmap": False})
    tol = TOL[np.float32]
    for what, Xi in _inputs(X).items():
        label, proba = _run(onx, Xi)
        valid = ~np.isnan(Xi[:, :, 0])
        np.testing.assert_array_equal(label[valid], model.predict(Xi)[valid], what)
        expected = model.predict_proba(Xi)
        np.testing.assert_array_equal(np.isnan(proba), np.isnan(expected), what)
        np.testing.assert_allclose(proba, expected, rtol=tol, atol=tol, err_msg=what)


def test_model_fitted_on_tables_takes_tables():
    X, y = _data(D=1)
    table = X[:, :, 0]
    model = _fit(SequenceRegressor, table, y, cell="gru")
    onx = to_onnx(model, table[:1])
    assert len(onx.graph.input[0].type.tensor_type.shape.dim) == 2
    (out,) = _run(onx, table)
    np.testing.assert_allclose(
        out[:, 0], model.predict(table), rtol=TOL[np.float32], atol=TOL[np.float32]
    )


def test_pipeline_exports_as_a_whole_through_skl2onnx():
    X, y = _data()
    X = X * 10 + 3  # something for the scaler to do
    pipe = make_pipeline(SequenceScaler(), SequenceClassifier(hidden_size=5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.set_params(sequenceclassifier__max_iter=3).fit(X, np.digitize(y, [0]))
    # skl2onnx's own entry point, with the converters registered on import
    onx = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
    label, proba = _run(onx, X)
    np.testing.assert_array_equal(label, pipe.predict(X))
    np.testing.assert_allclose(
        proba, pipe.predict_proba(X), rtol=TOL[np.float32], atol=TOL[np.float32]
    )
    # and the scaler alone, NaN kept at padded steps
    scaler = pipe[0]
    (scaled,) = _run(skl2onnx.to_onnx(scaler, X[:1]), X)
    np.testing.assert_allclose(scaled, scaler.transform(X), rtol=1e-6, atol=1e-6)


def test_graph_checks_and_round_trips_through_a_file(tmp_path):
    X, y = _data()
    model = _fit(SequenceRegressor, X, y, cell="lstm", bidirectional=True)
    onx = to_onnx(model, X[:1])
    onnx.checker.check_model(onx, full_check=True)
    path = tmp_path / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"X": X})
    np.testing.assert_allclose(
        out[:, 0], model.predict(X), rtol=TOL[np.float32], atol=TOL[np.float32]
    )
    # any number of sequences and of steps
    dims = onx.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [0, 0, 3]
    (longer,) = session.run(None, {"X": np.concatenate([X, X], axis=1)[:5]})
    assert longer.shape == (5, 1)


def test_float64_input_is_cast_for_a_float32_model():
    X, y = _data()
    model = _fit(SequenceRegressor, X, y)
    (out,) = _run(to_onnx(model, X[:1].astype(np.float64)), X.astype(np.float64))
    np.testing.assert_allclose(
        out[:, 0], model.predict(X), rtol=TOL[np.float32], atol=TOL[np.float32]
    )


def _per_step_labels(X):
    """Three classes per step, 0 at padded steps."""
    codes = (X[:, :, 0] > 0).astype(int) + (X[:, :, 1] > 1)
    return np.where(np.isnan(X[:, :, 0]), 0, codes)


def _per_step_classifier(X, y):
    return _fit(SequenceClassifier, X, _per_step_labels(X), output="sequence")


def _float_labels(X, y):
    return _fit(SequenceClassifier, X, (y > 0).astype(float))


def _float64_zipmap(X, y):
    labels = (y > 0).astype(int)
    return _fit(SequenceClassifier, X.astype(np.float64), labels, dtype="float64")


def _text_pipeline(X, y):
    pipe = make_pipeline(CharacterEncoder(), SequenceClassifier(max_iter=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return pipe.fit(["ab", "ba", "abc", "cab"], [0, 1, 0, 1])


@pytest.mark.parametrize(
    "make, match",
    [
        (_per_step_classifier, "zipmap': False"),
        (_float_labels, "labels of dtype float64"),
        (_float64_zipmap, "zipmap"),
        (_text_pipeline, "splits a string into its characters"),
    ],
    ids=[
        "per-step-zipmap",
        "float-labels",
        "float64-zipmap",
        "character-encoder",
    ],
)
def test_what_cannot_be_exported_says_so(make, match):
    X, y = _data()
    with pytest.raises(NotImplementedError, match=match):
        to_onnx(make(X, y), X[:1])


def test_a_constant_feature_exports_with_scale_1():
    """A feature always 0.3 (whose float64 variance is rounding noise) is
    not scaled by the graph either."""
    X, _ = _data(dtype=np.float64)
    X[:, :, 1] = np.where(np.isnan(X[:, :, 0]), np.nan, 0.3)
    scaler = SequenceScaler().fit(X)
    assert scaler.scale_[1] == 1.0
    new = np.full((2, 4, 3), 0.4)
    (scaled,) = _run(to_onnx(scaler, X[:1]), new)
    np.testing.assert_allclose(scaled[:, :, 1], 0.1, rtol=1e-9)
    np.testing.assert_allclose(scaled, scaler.transform(new), rtol=1e-12)


@pytest.mark.parametrize("opset", [9, 11, 12])
def test_an_opset_below_13_is_refused_by_the_estimators(opset):
    """onnxruntime rejects the estimators' graphs below opset 13 (Range at 9,
    ReduceSum's axes as an input at 11 and 12): refused at export, saying
    which opset works; the scaler, of Sub and Div, exports at any."""
    X, y = _data()
    model = _fit(SequenceClassifier, X, (y > 0).astype(int), cell="lstm")
    scaler = SequenceScaler().fit(X)
    for exported in (model, make_pipeline(scaler, model)):
        with pytest.raises(ValueError, match=f"opset 13 or newer.*={opset}"):
            to_onnx(exported, X[:1], target_opset=opset)
    (scaled,) = _run(to_onnx(scaler, X[:1], target_opset=opset), X)
    np.testing.assert_allclose(scaled, scaler.transform(X), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_lowest_opset_runs(cell, dtype):
    X, y = _data(dtype=dtype)
    model = _fit(SequenceRegressor, X, y, cell=cell, dtype=dtype.__name__)
    (out,) = _run(to_onnx(model, X[:1], target_opset=13), X)
    np.testing.assert_allclose(
        out[:, 0], model.predict(X), rtol=TOL[dtype], atol=TOL[dtype]
    )


@pytest.mark.parametrize("make", [SequenceRegressor, SequenceScaler])
def test_an_x_sample_with_other_features_is_refused(make):
    X, y = _data()  # 3 features per step
    model = make().fit(X, y) if make is SequenceScaler else _fit(make, X, y)
    for sample in (X[:1, :, :2], X[:1, :, 0]):  # 2 features, a table of 1
        with pytest.raises(ValueError, match="X has [12] features per step, but"):
            to_onnx(model, sample)
        with pytest.raises(ValueError, match="is expecting 3"):
            skl2onnx.to_onnx(make_pipeline(model), sample)


STATEFUL = [
    dict(cell="rnn"),
    dict(cell="gru"),
    dict(cell="gru", reset_after=False, use_bias=False),
    dict(cell="lstm"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("params", STATEFUL, ids=_id)
@pytest.mark.parametrize("Est", [SequenceRegressor, SequenceClassifier])
def test_a_stateful_graph_fed_in_chunks_predicts_each_prefix(
    Est, params, num_layers, dtype
):
    X, y = _data(dtype=dtype)
    X = np.nan_to_num(X)
    X[:5, -2:] = np.nan  # sequences that end inside the last chunk
    if Est is SequenceClassifier:
        y = np.digitize(y, [-0.5, 0.5])
    estimator = Est(
        hidden_size=5,
        max_iter=3,
        random_state=0,
        dtype=dtype.__name__,
        num_layers=num_layers,
        **params,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make_pipeline(SequenceScaler(), estimator).fit(X, y)
    onx = to_onnx(model, X[:1], stateful=True)
    onnx.checker.check_model(onx, full_check=True)
    session = ort.InferenceSession(
        onx.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    lstm = params["cell"] == "lstm"
    states = ["h0", "c0"][: 1 + lstm]
    assert [i.name for i in session.get_inputs()] == ["X"] + states
    assert [o.name for o in session.get_outputs()][-len(states) :] == (
        ["h_n", "c_n"][: 1 + lstm]
    )
    N = len(X)
    feed = {name: np.zeros((num_layers, N, 5), dtype) for name in states}
    stream = Stream(model, n_streams=N)
    # float32: onnxruntime's own RNN, GRU and LSTM kernels, summing in their order
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for t0, t1 in [(0, 1), (1, 4), (4, 7)]:
        out = session.run(None, {"X": X[:, t0:t1], **feed})
        predictions, finals = out[: -len(states)], out[-len(states) :]
        feed = dict(zip(states, finals))
        prefix = X[:, :t1]
        if Est is SequenceClassifier:
            np.testing.assert_array_equal(predictions[0], model.predict(prefix))
            expected = model.predict_proba(prefix)
            np.testing.assert_allclose(predictions[1], expected, rtol=tol, atol=tol)
        else:
            expected = model.predict(prefix)
            np.testing.assert_allclose(
                predictions[0][:, 0], expected, rtol=tol, atol=tol
            )
        if t1 < 5:  # no NaN yet: the stream, fed step by step, holds the same
            for t in range(t0, t1):
                stream.predict(X[:, t])
            for name, final in zip(["h", "c"], finals):
                np.testing.assert_allclose(
                    final, stream.state_[name], rtol=tol, atol=tol
                )


def test_what_cannot_carry_its_state_is_refused():
    X, y = _data()
    bidirectional = _fit(SequenceRegressor, X, y, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        to_onnx(bidirectional, X[:1], stateful=True)
    model = make_pipeline(StandardScaler(), SequenceRegressor())
    with pytest.raises(TypeError, match=r"to_onnx\(stateful=True\) takes"):
        to_onnx(model, X[:1, :, 0], stateful=True)
