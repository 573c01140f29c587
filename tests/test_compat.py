"""Persistence safety: models pickled by skrnn 0.1.0 keep working.

``tests/data/models_v0_1_0.pkl`` (pickle protocol 4) holds a fitted
SequenceRegressor and a SequenceClassifier (string labels), the fixed
inputs they were asked about and their predictions then. A later skrnn
must load it, predict the same values and train it on.

Regenerate (only for a deliberate format change, and say so in the commit):

    PYTHONPATH=. python tests/test_compat.py
"""

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "data" / "models_v0_1_0.pkl"


def _inputs():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 7, 2))
    X_list = [rng.normal(size=(t, 2)) for t in (3, 9, 1, 7, 12)]
    return X, X_list


def generate():
    """Fit the models and write the fixture (run by hand, see the module doc)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    import skrnn
    from skrnn import SequenceClassifier, SequenceRegressor

    X, X_list = _inputs()
    y_reg = X.sum(axis=(1, 2))
    y_clf = np.array(["low", "mid", "high"])[
        np.digitize(X[:, :, 0].sum(axis=1), [-1, 1])
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few epochs only
        reg = SequenceRegressor(
            cell="gru",
            hidden_size=6,
            num_layers=2,
            max_iter=15,
            learning_rate_init=0.01,
            random_state=0,
        ).fit(X, y_reg)
        clf = SequenceClassifier(
            cell="rnn",
            hidden_size=5,
            bidirectional=True,
            max_iter=15,
            learning_rate_init=0.01,
            random_state=0,
        ).fit(X, y_clf)
    payload = {
        "skrnn_version": getattr(skrnn, "__version__", "0.1.0"),
        "numpy_version": np.__version__,
        "X": X,
        "X_list": X_list,
        "y_reg": y_reg,
        "y_clf": y_clf,
        "regressor": reg,
        "classifier": clf,
        "predictions": {
            "regressor": reg.predict(X),
            "regressor_list": reg.predict(X_list),
            "classifier": clf.predict(X),
            "classifier_proba": clf.predict_proba(X),
            "classifier_list_proba": clf.predict_proba(X_list),
        },
    }
    FIXTURE.parent.mkdir(exist_ok=True)
    with open(FIXTURE, "wb") as f:
        pickle.dump(payload, f, protocol=4)


@pytest.fixture
def stored():
    with open(FIXTURE, "rb") as f:
        return pickle.load(f)


def _close(actual, expected):
    # Same weights, same kernels: the same bits on the machine that wrote the
    # fixture; 1e-12 covers another BLAS or CPU summing in another order.
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def test_fixture_is_protocol_4():
    with open(FIXTURE, "rb") as f:
        assert f.read(2) == b"\x80\x04"


def test_stored_regressor_predicts_the_same(stored):
    reg, p = stored["regressor"], stored["predictions"]
    _close(reg.predict(stored["X"]), p["regressor"])
    pred_list = reg.predict(stored["X_list"])
    assert len(pred_list) == len(p["regressor_list"])
    _close(np.asarray(pred_list), p["regressor_list"])
    assert reg.n_features_in_ == 2


def test_stored_classifier_predicts_the_same(stored):
    clf, p = stored["classifier"], stored["predictions"]
    assert list(clf.classes_) == ["high", "low", "mid"]
    np.testing.assert_array_equal(clf.predict(stored["X"]), p["classifier"])
    _close(clf.predict_proba(stored["X"]), p["classifier_proba"])
    _close(clf.predict_proba(stored["X_list"]), p["classifier_list_proba"])


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_stored_models_take_todays_parameters_as_they_were_fitted(stored, kind):
    from sklearn.base import clone

    model = stored[kind]
    params = model.get_params()
    assert params.keys() == type(model)().get_params().keys()
    # the parameters added since 0.1.0, at what those models did
    then = {"class_weight": None, "loss": "squared_error", "normalize_y": False}
    for name in then.keys() & params.keys():
        assert params[name] == then[name]
    assert clone(model).get_params() == params


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_stored_models_train_on(stored, kind):
    model = stored[kind]
    X, y = stored["X"], stored["y_reg" if kind == "regressor" else "y_clf"]
    before = {k: v.copy() for k, v in model.coefs_.items()}
    n_iter = model.n_iter_
    for _ in range(3):
        model.partial_fit(X, y)
    assert model.n_iter_ == n_iter + 3
    assert any(not np.array_equal(before[k], v) for k, v in model.coefs_.items())
    assert model.coefs_.keys() == before.keys()
    pred = model.predict_proba(X) if kind == "classifier" else model.predict(X)
    assert np.isfinite(pred).all()
    # still the same model: a few more epochs do not move it far
    assert np.isfinite(model.loss_) and model.loss_ < 2 * model.loss_curve_[n_iter - 1]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    generate()
    print(f"wrote {FIXTURE}")
