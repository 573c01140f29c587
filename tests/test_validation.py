"""Parameters are validated with scikit-learn's machinery, everywhere.

The estimators' ``fit`` and ``partial_fit`` and the scaler's run under
scikit-learn's ``_fit_context``, so ``set_config(skip_parameter_validation=
True)`` turns the check off as it does for scikit-learn's own estimators;
the public functions and classes (data sets, optimisers, layers) raise
scikit-learn's ``InvalidParameterError``; and one table says which
activations each cell takes.
"""

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn._cells import ACTIVATIONS
from skrnn.datasets import make_binary_sum, make_char_sequences
from skrnn.layers import GRU, RNN
from skrnn.optim import SGD, Adam, Rprop, clip_grad_norm
from skrnn.preprocessing import SequenceScaler

ESTIMATORS = [SequenceRegressor, SequenceClassifier]


def _data(Est):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 5, 2))
    s = X.sum(axis=(1, 2))
    return X, (s if Est is SequenceRegressor else (s > 0).astype(int))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_skip_parameter_validation_is_honoured(Est, method):
    """A negative tol is outside the constraints but harmless: refused by
    default, accepted when validation is switched off."""
    X, y = _data(Est)
    kwargs = (
        {"classes": [0, 1]}
        if method == "partial_fit" and Est is SequenceClassifier
        else {}
    )

    def run():
        model = Est(hidden_size=3, max_iter=2, tol=-1.0, random_state=0)
        return getattr(model, method)(X, y, **kwargs)

    with pytest.raises(InvalidParameterError, match="'tol' parameter"):
        run()
    with sklearn.config_context(skip_parameter_validation=True):
        assert run().n_iter_ >= 1


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_scaler_skip_parameter_validation_is_honoured(method):
    X = np.random.RandomState(0).normal(size=(5, 4, 2))
    scaler = SequenceScaler(with_mean=1)
    with pytest.raises(InvalidParameterError, match="'with_mean' parameter"):
        getattr(scaler, method)(X)
    with sklearn.config_context(skip_parameter_validation=True):
        getattr(scaler, method)(X)
    assert scaler.n_samples_seen_ == 20


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: make_binary_sum(n_samples=0), "n_samples"),
        (lambda: make_binary_sum(n_timesteps=True), "n_timesteps"),
        (lambda: make_char_sequences("hello", seq_length=0), "seq_length"),
        (lambda: make_char_sequences(b"hello"), "text"),
        (lambda: SGD(learning_rate=0.0), "learning_rate"),
        (lambda: SGD(momentum=True), "momentum"),
        (lambda: Adam(beta_2=1.0), "beta_2"),
        (lambda: Adam(epsilon=np.inf), "epsilon"),
        (lambda: Rprop(etas=(1.0, 1.2)), r"etas\[0\]"),
        (lambda: Rprop(etas=0.5), "etas"),
        (lambda: Rprop(step_sizes=(1.0, 0.5)), r"step_sizes\[1\]"),
        (lambda: clip_grad_norm([np.ones(2)], 0.0), "max_norm"),
        (lambda: RNN(0, 4), "input_size"),
        (lambda: GRU(2, 4.0), "hidden_size"),
        (lambda: RNN(2, 4, stateful="yes"), "stateful"),
        (lambda: RNN(2, 4, dtype="float16"), "dtype"),
    ],
)
def test_public_functions_and_classes_raise_invalid_parameter_error(call, name):
    with pytest.raises(InvalidParameterError, match=rf"The '{name}' parameter of \w+"):
        call()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cell", sorted(ACTIVATIONS))
@pytest.mark.parametrize("activation", ["tanh", "relu", "identity", "logistic"])
def test_one_table_of_activations(cell, activation):
    """The estimators and the layers take exactly the activations that
    ACTIVATIONS lists for the cell (layers.LSTM has no activation to set)."""
    X, y = _data(SequenceRegressor)
    layer = {"rnn": RNN, "gru": GRU}.get(cell)
    model = SequenceRegressor(
        cell=cell, activation=activation, hidden_size=3, max_iter=1
    )
    if activation in ACTIVATIONS[cell]:
        if layer is not None:
            layer(2, 3, activation=activation)
        model.fit(X, y)
    else:
        if layer is not None:
            with pytest.raises(InvalidParameterError, match="'activation' parameter"):
                layer(2, 3, activation=activation)
        with pytest.raises(InvalidParameterError, match="'activation' parameter"):
            model.fit(X, y)


def test_numbers_of_numpy_types_are_accepted():
    assert make_binary_sum(n_samples=np.int64(3), n_timesteps=np.int32(2))[0].shape == (
        3,
        2,
    )
    assert SGD(learning_rate=np.float32(0.5)).learning_rate == 0.5
    assert (
        RNN(np.int64(2), np.int64(3), dtype=np.float64).params["weight_hh"].dtype
        == np.float64
    )
    with pytest.warns(ConvergenceWarning):
        SequenceRegressor(hidden_size=np.int64(3), max_iter=1).fit(
            *_data(SequenceRegressor)
        )
