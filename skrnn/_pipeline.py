"""What the tools built on a fitted model take: an estimator, or a pipeline
of SequenceScalers ending in one."""

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._base import BaseSequenceEstimator
from .preprocessing import SequenceScaler


def scalers_and_estimator(model, caller):
    """The fitted scalers before the estimator, and the estimator; a
    TypeError naming ``caller`` for anything else."""
    steps = [s for _, s in model.steps] if isinstance(model, Pipeline) else [model]
    *scalers, estimator = steps
    if not isinstance(estimator, BaseSequenceEstimator) or not all(
        isinstance(s, SequenceScaler) for s in scalers
    ):
        raise TypeError(
            f"{caller} takes a SequenceRegressor or SequenceClassifier, or a "
            f"Pipeline of SequenceScalers ending in one; got {model!r}."
        )
    for step in steps:
        check_is_fitted(step)
    return scalers, estimator
