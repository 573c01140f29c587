"""What fit takes besides X and y: class weights and a validation set of
one's own."""

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_sample_weight

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
    return SequenceClassifier(hidden_size=4, max_iter=3, random_state=0, **params)


# ------------------------------------------------------------ class_weight
@pytest.mark.parametrize("class_weight", ["balanced", {"rare": 3.0, "common": 0.5}])
def test_class_weight_is_the_equivalent_sample_weight(class_weight):
    X, y = _imbalanced()
    w = np.linspace(0.5, 2.0, len(y))
    weighted = _clf(class_weight=class_weight).fit(X, y, sample_weight=w)
    by_hand = _clf().fit(X, y, sample_weight=w * compute_sample_weight(class_weight, y))
    np.testing.assert_array_equal(_coefs(weighted), _coefs(by_hand))
    assert not np.array_equal(
        _coefs(weighted), _coefs(_clf().fit(X, y, sample_weight=w))
    )


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
