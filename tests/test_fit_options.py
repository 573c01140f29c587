"""What fit takes besides X and y: class weights and a validation set of
one's own."""

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import (
    check_sample_weight_equivalence_on_dense_data,
)

from skrnn import SequenceClassifier

pytestmark = pytest.mark.filterwarnings(
    "ignore:Stochastic Optimizer:sklearn.exceptions.ConvergenceWarning"
)


def _imbalanced(n=40, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 5, 2))
    y = np.where(np.arange(n) < n // 4, "rare", "common")
    return X, y


def _coefs(model):
    return np.concatenate([v.ravel() for v in model.coefs_.values()])


def _clf(**params):
    return SequenceClassifier(
        **{"hidden_size": 4, "max_iter": 3, "random_state": 0, **params}
    )


# ------------------------------------------------------------ class_weight
@pytest.mark.parametrize("class_weight", ["balanced", {"rare": 3.0, "common": 0.5}])
def test_class_weight_is_the_equivalent_sample_weight(class_weight):
    X, y = _imbalanced()
    w = np.linspace(0.5, 2.0, len(y))
    weighted = _clf(class_weight=class_weight).fit(X, y, sample_weight=w)
    if class_weight == "balanced":
        # LogisticRegression's rule: the classes counted by their weights
        counts = {c: w[y == c].sum() for c in ("rare", "common")}
        class_weight = {c: w.sum() / (2 * counts[c]) for c in counts}
    by_hand = _clf().fit(X, y, sample_weight=w * compute_sample_weight(class_weight, y))
    np.testing.assert_array_equal(_coefs(weighted), _coefs(by_hand))
    assert not np.array_equal(
        _coefs(weighted), _coefs(_clf().fit(X, y, sample_weight=w))
    )


def test_balanced_class_weight_counts_integer_weights_as_repeated_rows():
    """scikit-learn's check, on the classifier with class_weight="balanced"
    (in float64 and at max_iter=100, as test_sklearn_checks.py runs it)."""
    model = _clf(class_weight="balanced", dtype="float64", max_iter=100)
    check_sample_weight_equivalence_on_dense_data("SequenceClassifier", model)


def test_class_weight_of_labels_that_read_as_integers():
    """Labels "1" and "2" (as read from a CSV) are looked up as they are,
    not as the integers 1 and 2."""
    X, y = _imbalanced()
    y = np.where(y == "rare", "1", "2")
    weighted = _clf(class_weight={"1": 5.0}).fit(X, y)
    by_hand = _clf().fit(X, y, sample_weight=np.where(y == "1", 5.0, 1.0))
    np.testing.assert_array_equal(_coefs(weighted), _coefs(by_hand))


def test_balanced_warm_fit_on_data_without_a_fitted_class():
    """A warm fit on data that lacks one of the fitted classes balances the
    classes it has, as a fit on that data alone would."""
    X, y = _imbalanced(n=48)
    y[::6] = "third"
    kept = y != "third"
    first = {"class_weight": "balanced", "warm_start": True}
    model = _clf(**first).fit(X, y)
    twin = _clf(**first).fit(X, y).set_params(class_weight=None)
    model.fit(X[kept], y[kept])
    twin.fit(X[kept], y[kept], sample_weight=compute_sample_weight("balanced", y[kept]))
    assert model.classes_.tolist() == ["common", "rare", "third"]
    np.testing.assert_array_equal(_coefs(model), _coefs(twin))


def test_class_weight_naming_an_unknown_class_is_refused():
    X, y = _imbalanced()
    model = _clf().fit(X, y)
    before = _coefs(model)
    model.set_params(class_weight={"rare": 2.0, "common": 1.0, "absent": 5.0})
    with pytest.raises(ValueError, match=r"not in the data: \['absent'\]"):
        model.fit(X, y)
    np.testing.assert_array_equal(_coefs(model), before)


def test_class_weight_with_partial_fit():
    X, y = _imbalanced()
    classes = ["common", "rare"]
    with pytest.raises(ValueError, match="partial_fit does not see"):
        _clf(class_weight="balanced").partial_fit(X, y, classes=classes)
    weights = {"rare": 3.0, "common": 1.0}
    incremental = _clf(class_weight=weights).partial_fit(X, y, classes=classes)
    by_hand = _clf().partial_fit(
        X, y, classes=classes, sample_weight=compute_sample_weight(weights, y)
    )
    np.testing.assert_array_equal(_coefs(incremental), _coefs(by_hand))


def test_class_weight_needs_one_label_per_sequence():
    X, _ = _imbalanced()
    y = np.where(X[:, :, 0] > 0, "up", "down")
    with pytest.raises(ValueError, match="output='last'"):
        _clf(class_weight="balanced", output="sequence").fit(X, y)


# ------------------------------------------------- a validation set of one's own
def _split(seed=0):
    rng = np.random.RandomState(seed)
    X = [rng.normal(size=(L, 2)) for L in rng.randint(3, 9, size=60)]
    y = np.array(["up" if x[:, 0].sum() > 0 else "down" for x in X])
    return X[:40], y[:40], X[40:], y[40:]


@pytest.mark.parametrize("weighted", [False, True])
def test_given_validation_set_is_what_early_stopping_scores(weighted):
    X, y, X_val, y_val = _split()
    w_val = np.linspace(1.0, 3.0, len(y_val)) if weighted else None
    model = _clf(early_stopping=True, max_iter=6, learning_rate_init=0.05)
    model.fit(X, y, X_val=X_val, y_val=y_val, sample_weight_val=w_val)
    assert len(model.validation_scores_) == model.n_iter_ == 6
    # the weights kept are the best epoch's, scored on the given set
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.best_validation_score_ == model.score(X_val, y_val, w_val)
    # and every training sample was trained on (no split held out)
    assert model.t_ == 6 * len(y)


def test_given_validation_set_through_a_pipeline():
    import sklearn
    from sklearn.pipeline import Pipeline

    from skrnn.preprocessing import SequenceScaler

    X, y, X_val, y_val = _split()
    with sklearn.config_context(enable_metadata_routing=True):
        clf = _clf(early_stopping=True, max_iter=4).set_fit_request(
            X_val=True, y_val=True
        )
        pipe = Pipeline(
            [("scale", SequenceScaler()), ("clf", clf)], transform_input=["X_val"]
        )
        pipe.fit(X, y, X_val=X_val, y_val=y_val)
    assert pipe[-1].best_validation_score_ == pipe.score(X_val, y_val)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"X_val": "same", "y_val": None}, "X_val is provided, but y_val"),
        ({"X_val": None, "y_val": "same"}, "y_val is provided, but X_val"),
        ({"X_val": [np.ones((3, 5))], "y_val": ["up"]}, "X has 5 features"),
        ({"X_val": [np.ones((3, 2)), np.ones(0)], "y_val": ["up"] * 2}, "length 0"),
        ({"X_val": [np.ones((3, 2))], "y_val": ["sideways"]}, "not seen in classes_"),
        (
            {"X_val": [np.ones((3, 2))] * 2, "y_val": ["up"]},
            "y has 1 samples, but X has 2",
        ),
    ],
)
def test_bad_validation_sets_get_the_errors_of_x_and_y(bad, match):
    X, y, X_val, y_val = _split()
    kwargs = {
        k: (X_val if k == "X_val" else y_val) if v == "same" else v
        for k, v in bad.items()
    }
    model = _clf(early_stopping=True, warm_start=True).fit(X, y)
    before = _coefs(model)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, **kwargs)
    np.testing.assert_array_equal(_coefs(model), before)
    with pytest.raises(ValueError, match=match):  # and before any fit
        _clf(early_stopping=True).fit(X, y, **kwargs)


def test_validation_set_needs_early_stopping():
    X, y, X_val, y_val = _split()
    with pytest.raises(ValueError, match="early_stopping=True"):
        _clf().fit(X, y, X_val=X_val, y_val=y_val)
