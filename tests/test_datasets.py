import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from skrnn.datasets import make_binary_sum, make_char_sequences

# --------------------------------------------------------------------------
# make_binary_sum


def test_binary_sum_shapes_values_and_targets():
    X, y = make_binary_sum(n_samples=50, n_timesteps=7, random_state=0)
    assert X.shape == (50, 7) and y.shape == (50,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert set(np.unique(X)) <= {0.0, 1.0}
    assert_array_equal(y, X.sum(axis=1))


def test_binary_sum_defaults():
    X, y = make_binary_sum(random_state=0)
    assert X.shape == (100, 10) and y.shape == (100,)


def test_binary_sum_is_the_seed_write_up_data():
    # the write-up: np.random.seed(1), then one np.around(np.random.rand(10))
    # per row
    rng = np.random.RandomState(1)
    expected = np.zeros((20, 10))
    for row in range(20):
        expected[row, :] = np.around(rng.rand(10)).astype(int)
    X, y = make_binary_sum(n_samples=20, n_timesteps=10, random_state=1)
    assert_array_equal(X, expected)
    assert_array_equal(y, expected.sum(axis=1))


def test_binary_sum_bits_are_fair_and_independent():
    X, _ = make_binary_sum(n_samples=4000, n_timesteps=10, random_state=0)
    # 40000 fair bits: the mean is within ~6 standard deviations of 0.5
    assert abs(X.mean() - 0.5) < 0.015
    # each column is fair too, and columns are not copies of each other
    assert np.all(np.abs(X.mean(axis=0) - 0.5) < 0.05)
    assert abs(np.corrcoef(X[:, 0], X[:, 1])[0, 1]) < 0.1


def test_binary_sum_random_state():
    X1, _ = make_binary_sum(n_samples=30, random_state=3)
    X2, _ = make_binary_sum(n_samples=30, random_state=3)
    X3, _ = make_binary_sum(n_samples=30, random_state=4)
    X4, _ = make_binary_sum(n_samples=30, random_state=np.random.RandomState(3))
    assert_array_equal(X1, X2)
    assert_array_equal(X1, X4)
    assert not np.array_equal(X1, X3)
    # a RandomState instance is advanced, not reseeded
    rng = np.random.RandomState(0)
    Xa, _ = make_binary_sum(n_samples=30, random_state=rng)
    Xb, _ = make_binary_sum(n_samples=30, random_state=rng)
    assert not np.array_equal(Xa, Xb)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": -3}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"n_samples": True}, "n_samples"),
        ({"n_timesteps": 0}, "n_timesteps"),
        ({"n_timesteps": "10"}, "n_timesteps"),
    ],
)
def test_binary_sum_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_binary_sum(**kwargs)


def test_binary_sum_accepts_numpy_integers():
    X, _ = make_binary_sum(n_samples=np.int64(3), n_timesteps=np.int32(2))
    assert X.shape == (3, 2)


# --------------------------------------------------------------------------
# make_char_sequences


def test_char_sequences_hello():
    X, y, alphabet = make_char_sequences("hello", seq_length=4)
    assert alphabet == ["e", "h", "l", "o"]
    assert X.shape == (1, 4, 4) and X.dtype == np.float64
    # h, e, l, l one-hot over e, h, l, o
    assert_array_equal(X[0], [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    assert y.shape == (1, 4)
    assert y.dtype == np.dtype("<U1")
    assert "".join(y[0]) == "ello"


def _decode(X, alphabet):
    return ["".join(alphabet[i] for i in row) for row in X.argmax(axis=2)]


def test_char_sequences_windows_and_default_step():
    text = "abcdefghij"  # 10 characters
    X, y, alphabet = make_char_sequences(text, seq_length=3)
    # starts 0, 3, 6 need 4 characters each: 6 + 4 = 10 fits, 9 + 4 does not
    assert _decode(X, alphabet) == ["abc", "def", "ghi"]
    assert ["".join(row) for row in y] == ["bcd", "efg", "hij"]


def test_char_sequences_overlapping_step():
    text = "abcabd"
    X, y, alphabet = make_char_sequences(text, seq_length=2, step=1)
    assert alphabet == ["a", "b", "c", "d"]
    assert _decode(X, alphabet) == ["ab", "bc", "ca", "ab"]
    assert ["".join(row) for row in y] == ["bc", "ca", "ab", "bd"]


def test_char_sequences_alphabet_is_of_the_whole_text():
    # "z" is in no window (the tail is dropped) but is still a feature
    X, y, alphabet = make_char_sequences("abab" + "z", seq_length=2, step=2)
    assert alphabet == ["a", "b", "z"]
    assert X.shape == (2, 2, 3)
    assert_array_equal(X[..., 2], 0.0)


def test_char_sequences_exact_length_and_unicode():
    X, y, alphabet = make_char_sequences("안녕하세요", seq_length=4)
    assert X.shape == (1, 4, 5)
    assert "".join(y[0]) == "녕하세요"
    assert alphabet == sorted("안녕하세요")


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(alphabet="abcde \n", min_size=2, max_size=60),
    seq_length=st.integers(1, 10),
    step=st.one_of(st.none(), st.integers(1, 7)),
)
def test_char_sequences_properties(text, seq_length, step):
    if len(text) < seq_length + 1:
        with pytest.raises(ValueError, match="characters"):
            make_char_sequences(text, seq_length=seq_length, step=step)
        return
    X, y, alphabet = make_char_sequences(text, seq_length=seq_length, step=step)
    stride = seq_length if step is None else step
    n_windows = (len(text) - seq_length - 1) // stride + 1
    assert alphabet == sorted(set(text))
    assert X.shape == (n_windows, seq_length, len(alphabet))
    assert y.shape == (n_windows, seq_length)
    assert_array_equal(X.sum(axis=2), 1.0)
    inputs = _decode(X, alphabet)
    for k in range(n_windows):
        start = k * stride
        assert inputs[k] == text[start : start + seq_length]
        assert "".join(y[k]) == text[start + 1 : start + seq_length + 1]
    # one more window would not have its targets
    assert n_windows * stride + seq_length + 1 > len(text)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("hell",), {"seq_length": 4}, "needs seq_length \\+ 1 = 5"),
        (("",), {"seq_length": 1}, "0 characters"),
        (("hello",), {"seq_length": 0}, "seq_length"),
        (("hello",), {"seq_length": 2.0}, "seq_length"),
        (("hello",), {"seq_length": 2, "step": 0}, "step"),
        (("hello",), {"seq_length": 2, "step": -1}, "step"),
        ((["h", "e", "l", "l", "o"],), {"seq_length": 2}, "str"),
        ((b"hello",), {"seq_length": 2}, "str"),
    ],
)
def test_char_sequences_bad_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_char_sequences(*args, **kwargs)
