"""Small sequence data sets for examples and tests."""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

from ._sklearn_compat import Number, validate_params

__all__ = ["make_binary_sum", "make_char_sequences"]


_COUNT = Number(Integral, 1, None, closed="left")


@validate_params(
    {"n_samples": [_COUNT], "n_timesteps": [_COUNT], "random_state": ["random_state"]},
    prefer_skip_nested_validation=True,
)
def make_binary_sum(n_samples=100, n_timesteps=10, random_state=None):
    """Generate random bit sequences and their number of ones ("count the ones").

    Each bit is ``round(u)`` with ``u`` uniform on [0, 1), drawn row by row:
    the same data as the seed write-up's
    ``np.around(np.random.rand(n_timesteps))`` loop after
    ``np.random.seed(random_state)``. A linear RNN
    ``s_k = s_{k-1} * w_rec + x_k * w_x`` solves it exactly with
    ``w_rec = w_x = 1``.

    Parameters
    ----------
    n_samples : int, default=100
        Number of sequences, >= 1.
    n_timesteps : int, default=10
        Length of every sequence, >= 1.
    random_state : int, RandomState instance or None, default=None
        Seed or generator for the bits (see
        :func:`sklearn.utils.check_random_state`).

    Returns
    -------
    X : ndarray of shape (n_samples, n_timesteps), dtype float64
        The bits, 0.0 or 1.0: a table of univariate sequences, column j being
        time step j. ``X[:, :, None]`` is the same data in 3-D form.
    y : ndarray of shape (n_samples,), dtype float64
        The number of ones of each row.

    See Also
    --------
    make_char_sequences : The other data set, of text.
    skrnn.SequenceRegressor : Learns the count (``examples/plot_binary_sum.py``).

    Examples
    --------
    >>> from skrnn.datasets import make_binary_sum
    >>> X, y = make_binary_sum(n_samples=3, n_timesteps=5, random_state=1)
    >>> X
    array([[0., 1., 0., 0., 0.],
           [0., 0., 0., 0., 1.],
           [0., 1., 0., 1., 0.]])
    >>> y
    array([1., 1., 2.])
    """
    rng = check_random_state(random_state)
    X = np.round(rng.random_sample((int(n_samples), int(n_timesteps))))
    y = X.sum(axis=1)
    return X, y


@validate_params(
    {"text": [str], "seq_length": [_COUNT], "step": [_COUNT, None]},
    prefer_skip_nested_validation=True,
)
def make_char_sequences(text, seq_length=25, step=None):
    """Cut a text into windows for next-character prediction (a char language model).

    Window ``k`` reads ``text[k * step : k * step + seq_length]`` and its
    target is the same slice shifted by one character,
    ``text[k * step + 1 : k * step + seq_length + 1]``: at each step the
    character that follows. Only windows whose target fits in ``text`` are
    made, so there are ``(len(text) - seq_length - 1) // step + 1`` of them.

    Parameters
    ----------
    text : str
        The text, at least ``seq_length + 1`` characters long.
    seq_length : int, default=25
        Number of time steps per window, >= 1.
    step : int or None, default=None
        Offset between the starts of consecutive windows, >= 1. ``None``
        means ``seq_length``: windows that do not overlap.

    Returns
    -------
    X : ndarray of shape (n_windows, seq_length, n_chars), dtype float64
        The inputs, one-hot encoded over ``alphabet``.
    y : ndarray of shape (n_windows, seq_length), dtype str (``<U1``)
        The next character at each step, ready as class labels of a
        per-step classifier.
    alphabet : list of str
        The distinct characters of the whole ``text``, sorted; feature ``j``
        of ``X`` is ``alphabet[j]``.

    See Also
    --------
    make_binary_sum : The other data set, of bits.
    skrnn.SequenceClassifier : Learns the next character with
        ``output="sequence"`` (``examples/plot_char_rnn_hello.py``).

    Examples
    --------
    The "hello" model: read "hell", predict "ello".

    >>> from skrnn.datasets import make_char_sequences
    >>> X, y, alphabet = make_char_sequences("hello", seq_length=4)
    >>> alphabet
    ['e', 'h', 'l', 'o']
    >>> X.shape
    (1, 4, 4)
    >>> X[0]
    array([[0., 1., 0., 0.],
           [1., 0., 0., 0.],
           [0., 0., 1., 0.],
           [0., 0., 1., 0.]])
    >>> y
    array([['e', 'l', 'l', 'o']], dtype='<U1')
    """
    seq_length = int(seq_length)
    step = seq_length if step is None else int(step)
    if len(text) < seq_length + 1:
        raise ValueError(
            f"text has {len(text)} characters, but a window of seq_length="
            f"{seq_length} needs seq_length + 1 = {seq_length + 1} (its inputs "
            "and the character after them)"
        )
    alphabet = sorted(set(text))
    index = {char: i for i, char in enumerate(alphabet)}
    codes = np.fromiter((index[c] for c in text), dtype=np.intp, count=len(text))
    chars = np.array(alphabet, dtype="<U1")

    n_windows = (len(text) - seq_length - 1) // step + 1
    positions = np.arange(n_windows)[:, None] * step + np.arange(seq_length)
    X = np.eye(len(alphabet), dtype=np.float64)[codes[positions]]
    y = chars[codes[positions + 1]]
    return X, y, alphabet
