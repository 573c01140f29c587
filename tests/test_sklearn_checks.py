"""scikit-learn's own estimator checks, on every public estimator."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.preprocessing import SequenceScaler

ESTIMATORS = [
    SequenceRegressor(cell="rnn"),
    SequenceRegressor(cell="gru"),
    SequenceClassifier(cell="rnn"),
    SequenceClassifier(cell="gru"),
    SequenceScaler(),
]


def _expected_failed_checks(estimator):
    """The one check that does not pass yet (open work, see the issue tracker).

    Fitting with integer sample weights and fitting on repeated rows agree
    to rounding at first (1e-16 after 100 epochs), but the default GRU
    classifier on this check's 15 random 30-step sequences is still
    oscillating after 200 full-batch Adam epochs, and that amplifies the
    rounding difference between w * g and g + ... + g to ~1e-4 (rtol 1e-7 is
    asked). The RNN classifier and both regressors pass the same check.
    """
    if isinstance(estimator, SequenceClassifier) and estimator.cell == "gru":
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "float rounding amplified by 200 epochs of oscillating training"
            )
        }
    return {}


# The checks fit with default parameters (max_iter=200) on tiny random data
# and test the API, not convergence, so a ConvergenceWarning is expected there.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
