"""skrnn: recurrent neural networks (RNN, GRU) as scikit-learn estimators."""

from ._classifier import SequenceClassifier
from ._regressor import SequenceRegressor

__version__ = "0.1.0"

__all__ = ["SequenceClassifier", "SequenceRegressor", "__version__"]
