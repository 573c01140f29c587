"""skrnn: recurrent neural networks (RNN, GRU, LSTM) as scikit-learn estimators."""

from ._classifier import SequenceClassifier
from ._engine import CudaUnavailableError
from ._regressor import SequenceRegressor
from ._stream import Stream

__version__ = "0.2.0.dev0"

__all__ = [
    "CudaUnavailableError",
    "SequenceClassifier",
    "SequenceRegressor",
    "Stream",
    "__version__",
]
