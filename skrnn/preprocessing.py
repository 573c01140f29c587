"""Preparing data for the recurrent estimators: SequenceScaler (standardising
sequences in every input form), CharacterEncoder (raw text to one-hot
sequences) and sliding_windows (a series to forecasting windows)."""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._data import SequenceInputMixin
from ._docs import fill_doc
from ._sklearn_compat import (
    ADAPTERS_MANAGER,
    Number,
    StrOptions,
    _check_sample_weight,
    _fit_context,
    _get_output_config,
    validate_params,
)

__all__ = ["CharacterEncoder", "SequenceScaler", "TableToSequences", "sliding_windows"]


# the sections of the docstrings of fit and partial_fit
_FIT_SECTIONS = """
Parameters
----------
X : array-like or list of array-like
    Sequences in any accepted form.
y : None
    Ignored.
sample_weight : array-like of shape (n_samples,), default=None
    Per-sample weights, applied to each of the sample's steps.

Returns
-------
self : object
    The scaler.
"""


# Output containers (set_output) are applied by transform itself, to tables
# only: scikit-learn's automatic wrapping would try to make a DataFrame of a
# 3-D array or a list of sequences.
@fill_doc(fit_sections=_FIT_SECTIONS)
class SequenceScaler(
    SequenceInputMixin,
    OneToOneFeatureMixin,
    TransformerMixin,
    BaseEstimator,
    auto_wrap_output_keys=None,
):
    """Standardise each feature over all valid time steps of all sequences.

    The :class:`~sklearn.preprocessing.StandardScaler` of sequences: z =
    (x - mean) / scale with the mean and standard deviation of each feature
    taken over every valid step of every sample. A table (n_samples,
    n_timesteps) holds univariate sequences, so it gets one mean and one
    scale. Accepts every form the estimators accept (tables, 3-D arrays,
    NaN-padded 3-D arrays, lists of variable-length arrays) and returns the
    same form, padding kept as NaN; for use in a
    :class:`~sklearn.pipeline.Pipeline` before a recurrent estimator.
    :meth:`set_output` (or ``sklearn.set_config(transform_output=...)``)
    applies to tables; 3-D and list output stay arrays and lists, which a
    DataFrame cannot hold.

    Parameters
    ----------
    with_mean : bool, default=True
        Subtract the mean.
    with_std : bool, default=True
        Divide by the standard deviation. A feature whose variance is
        within its own rounding error (a constant one) keeps scale 1, as in
        :class:`~sklearn.preprocessing.StandardScaler`.

    Attributes
    ----------
    mean_ : ndarray of shape (n_step_features,)
        Mean of each feature over all valid steps seen (None when
        ``with_mean=False`` and ``with_std=False``).
    var_ : ndarray of shape (n_step_features,)
        Population variance of each feature (None when ``with_std=False``).
    scale_ : ndarray of shape (n_step_features,)
        The divisor (None when ``with_std=False``).
    n_samples_seen_ : int
        Valid time steps seen (the statistics' sample count).
    n_features_in_ : int
        Columns of a fitted table, or features per step of 3-D/list input.
    feature_names_in_ : ndarray of str
        Column names of a fitted DataFrame (only then).

    See Also
    --------
    sklearn.preprocessing.StandardScaler : The same for tables of features.

    Examples
    --------
    >>> import numpy as np
    >>> from skrnn.preprocessing import SequenceScaler
    >>> X = [np.array([1.0, 2.0, 3.0]), np.array([5.0])]
    >>> scaler = SequenceScaler().fit(X)
    >>> float(scaler.mean_[0]), float(scaler.scale_[0])
    (2.75, 1.479019945774904)
    >>> [z.round(3).tolist() for z in scaler.transform(X)]
    [[-1.183, -0.507, 0.169], [1.521]]
    """

    _parameter_constraints = {"with_mean": ["boolean"], "with_std": ["boolean"]}

    def __init__(self, *, with_mean=True, with_std=True):
        self.with_mean = with_mean
        self.with_std = with_std

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Compute the mean and scale of each feature.

        Statistics of earlier calls are forgotten.

        %(fit_sections)s
        """
        for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
            self.__dict__.pop(name, None)
        return self.partial_fit(X, y, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the mean and scale with more sequences.

        After any split of the data into calls, the statistics are those
        :meth:`fit` computes on all of it (up to rounding).

        %(fit_sections)s
        """
        first = not hasattr(self, "n_samples_seen_")
        seqs, attrs = self._validate_X(X, reset=first)
        rows, weights = _valid_rows(seqs, sample_weight)
        # Chan et al.'s pairwise update of count, mean and variance
        n_new = float(weights.sum())
        mean_new = weights @ rows / n_new if n_new > 0 else np.zeros(rows.shape[1])
        var_new = (
            weights @ (rows - mean_new) ** 2 / n_new if n_new > 0 else mean_new * 0
        )
        if first:
            self._set_input_attrs(attrs)
            n, mean, var = n_new, mean_new, var_new
        else:
            n_old, delta = self.n_samples_seen_, mean_new - self._mean
            n = n_old + n_new
            mean = self._mean + delta * (n_new / n if n > 0 else 0.0)
            m2 = (
                self._var * n_old
                + var_new * n_new
                + delta**2 * (n_old * n_new / n if n > 0 else 0.0)
            )
            var = m2 / n if n > 0 else m2
        self.n_samples_seen_ = int(n) if float(n).is_integer() else n
        self._mean, self._var = mean, var
        self.mean_ = mean if (self.with_mean or self.with_std) else None
        self.var_ = var if self.with_std else None
        self.scale_ = _scale(var, mean, n) if self.with_std else None
        return self

    def transform(self, X):
        """Standardise X.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences in any accepted form.

        Returns
        -------
        X_scaled : ndarray or list of ndarray
            The same form as X (NaN kept at padded steps).
        """
        out = self._apply(X, inverse=False)
        if not isinstance(out, np.ndarray) or out.ndim != 2:
            return out
        container = _get_output_config("transform", self)["dense"]
        if container == "default":
            return out
        # a table fitted as a table has its columns' names; one fitted as 3-D
        # or list input with one feature per step has none
        names = self.get_feature_names_out if self._fit_form_is_table else None
        return ADAPTERS_MANAGER.adapters[container].create_container(
            out, X, columns=names
        )

    def set_output(self, *, transform=None):
        """Set the output container of :meth:`transform` and ``fit_transform``.

        It applies to tables: 3-D and list output stay arrays and lists.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            "default": NumPy arrays; "pandas" or "polars": a DataFrame for a
            table; None: unchanged.

        Returns
        -------
        self : object
            The scaler.
        """
        if transform is not None:
            self._sklearn_output_config = {"transform": transform}
        return self

    def inverse_transform(self, X):
        """Undo :meth:`transform`.

        Parameters
        ----------
        X : array-like or list of array-like
            Standardised sequences in any accepted form.

        Returns
        -------
        X_original : ndarray or list of ndarray
            The same form as X.
        """
        return self._apply(X, inverse=True)

    def _shift_scale(self):
        """What the transform subtracts from each feature and divides it by."""
        mean = self._mean if self.with_mean else np.zeros_like(self._mean)
        scale = self.scale_ if self.with_std else np.ones_like(self._mean)
        return mean, scale

    def _apply(self, X, inverse):
        check_is_fitted(self)
        seqs, _ = self._validate_X(X, reset=False)
        mean, scale = self._shift_scale()
        values = seqs.values
        dtype = values.dtype
        mean, scale = mean.astype(dtype), scale.astype(dtype)
        out = values * scale + mean if inverse else (values - mean) / scale
        if seqs.form == "list":
            return [
                o[:L] if np.ndim(x) == 2 else o[:L, 0]
                for o, L, x in zip(out, seqs.lengths, X)
            ]
        valid = np.arange(values.shape[1])[None, :] < seqs.lengths[:, None]
        out[~valid] = np.nan
        return out[:, :, 0] if seqs.form == "table" else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.requires_fit = True
        return tags


def _scale(var, mean, n):
    """The standard deviation, 1 for a feature that is constant up to
    rounding: StandardScaler's rule, var <= n eps var + (n eps mean)^2 (a
    bound on the error of the variance computed in float64 from n values
    equal to the mean), so that a constant feature is not divided by the
    noise of its own rounding."""
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * eps * mean) ** 2
    return np.where(constant, 1.0, np.sqrt(var))


def _valid_rows(seqs, sample_weight):
    """The (sum of lengths, D) valid steps and each one's weight, in float64."""
    valid = np.arange(seqs.values.shape[1])[None, :] < seqs.lengths[:, None]
    rows = seqs.values[valid].astype(np.float64)
    w = _check_sample_weight(sample_weight, seqs.values, dtype=np.float64)
    return rows, np.broadcast_to(w[:, None], valid.shape)[valid]


class CharacterEncoder(TransformerMixin, BaseEstimator):
    """Encode strings as sequences of one-hot characters.

    The first step of a :class:`~sklearn.pipeline.Pipeline` that fits a
    recurrent estimator on raw text: ``fit`` learns the alphabet of the
    texts, and ``transform`` turns each text into an array (len(text),
    n_characters) with a 1 at each character's column, the list form every
    estimator takes. A character outside the alphabet becomes an all-zero
    row (``handle_unknown="ignore"``) or an error (``"error"``).

    Parameters
    ----------
    lowercase : bool, default=False
        Lower-case the texts first, in ``fit`` and ``transform``.
    handle_unknown : {"ignore", "error"}, default="ignore"
        What ``transform`` does with a character ``fit`` did not see: an
        all-zero row, or a ValueError naming it.

    Attributes
    ----------
    categories_ : ndarray of str of shape (n_characters,)
        The alphabet, sorted; column ``j`` of an encoded text is
        ``categories_[j]``.

    See Also
    --------
    skrnn.datasets.make_char_sequences : Windows of one text, for a
        character language model.
    sklearn.preprocessing.OneHotEncoder : The same for columns of a table.

    Examples
    --------
    >>> from skrnn.preprocessing import CharacterEncoder
    >>> encoder = CharacterEncoder().fit(["hello", "world"])
    >>> encoder.categories_.tolist()
    ['d', 'e', 'h', 'l', 'o', 'r', 'w']
    >>> encoder.transform(["held"])[0]
    array([[0., 0., 1., 0., 0., 0., 0.],
           [0., 1., 0., 0., 0., 0., 0.],
           [0., 0., 0., 1., 0., 0., 0.],
           [1., 0., 0., 0., 0., 0., 0.]])
    >>> encoder.inverse_transform(encoder.transform(["dew", "a low"]))
    ['dew', 'low']
    """

    _parameter_constraints = {
        "lowercase": ["boolean"],
        "handle_unknown": [StrOptions({"ignore", "error"})],
    }

    def __init__(self, *, lowercase=False, handle_unknown="ignore"):
        self.lowercase = lowercase
        self.handle_unknown = handle_unknown

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the alphabet of the texts.

        Parameters
        ----------
        X : iterable of str, or table of one column
            The texts, one per sample: a list, an array or Series, or a
            DataFrame or 2-D array of one column.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted encoder.
        """
        texts = self._texts(X)
        self.categories_ = np.array(sorted(set().union(*texts)))
        return self

    def transform(self, X):
        """Encode each text as a one-hot sequence.

        Parameters
        ----------
        X : iterable of str, or table of one column
            The texts, one per sample, in any form :meth:`fit` takes.

        Returns
        -------
        X_encoded : list of ndarray of shape (len(text), n_characters)
            One float64 array per text.
        """
        check_is_fitted(self)
        identity = np.eye(len(self.categories_))
        encoded = []
        for i, text in enumerate(self._texts(X)):
            chars = np.array(list(text))
            codes = np.searchsorted(self.categories_, chars)
            known = (
                self.categories_[np.minimum(codes, len(self.categories_) - 1)] == chars
            )
            if not known.all() and self.handle_unknown == "error":
                raise ValueError(
                    f"Sample {i} of X has characters that fit did not see: "
                    f"{sorted(set(chars[~known].tolist()))}."
                )
            encoded.append(
                np.where(known[:, None], identity[np.where(known, codes, 0)], 0.0)
            )
        return encoded

    def inverse_transform(self, X):
        """The texts back from their encodings (unknown characters are lost).

        Parameters
        ----------
        X : list of array-like of shape (len(text), n_characters)
            Encoded texts.

        Returns
        -------
        texts : list of str
            The texts.
        """
        check_is_fitted(self)
        texts = []
        for x in X:
            x = np.asarray(x)
            texts.append("".join(self.categories_[x.argmax(axis=1)[x.max(axis=1) > 0]]))
        return texts

    def _texts(self, X):
        """X as a list of non-empty strings, lower-cased if asked."""
        if isinstance(X, (str, bytes)) or not hasattr(X, "__iter__"):
            raise ValueError(
                f"X must be an iterable of strings, one per sample; got "
                f"{type(X).__name__}."
            )
        if getattr(X, "ndim", 1) == 2:
            # a one-column table (a ColumnTransformer hands over df[["text"]]),
            # which iterates over its columns' names
            if X.shape[1] != 1:
                raise ValueError(
                    "X must hold one text per sample: a table with one column, "
                    f"not {X.shape[1]}."
                )
            X = np.asarray(X)[:, 0]
        texts = list(X)
        if not texts:
            raise ValueError(
                "Found array with 0 sample(s) (shape=(0,)) while a minimum of 1 "
                "is required."
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"Sample {i} of X is a {type(text).__name__}, not a str."
                )
            if not text:
                raise ValueError(f"Sample {i} of X has length 0.")
        return [text.lower() for text in texts] if self.lowercase else texts

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


class TableToSequences(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Read a feature table as sequences, for the tables other libraries make.

    The first ``n_channels * n_steps`` columns are ``n_channels`` blocks of
    ``n_steps`` consecutive steps each -- channel c's step t in column ``c *
    n_steps + t`` -- as sktime flattens a panel; ``order="newest_first"``
    reads each block newest step first, as skforecast's lag columns
    ``lag_1, lag_2, ...`` come. The columns after them (exogenous values,
    window features) are repeated at every step as further features. The
    output, (n_samples, n_steps, n_channels + n_rest), is what the recurrent
    estimators read as multivariate sequences. Stateless: ``fit`` only
    checks the table's width.

    Parameters
    ----------
    n_steps : int or None, default=None
        Steps per channel; None: every column is a sequence column, and
        n_steps = n_columns / n_channels.
    n_channels : int, default=1
        Channels (features per step) in the sequence columns.
    order : {"oldest_first", "newest_first"}, default="oldest_first"
        The order of each channel's steps in its block of columns.

    Attributes
    ----------
    n_features_in_ : int
        Columns of the table ``fit`` saw.
    feature_names_in_ : ndarray of str
        Their names, when ``fit`` saw a DataFrame.

    See Also
    --------
    sliding_windows : Windows of a series, oldest step first, as X.
    SequenceScaler : Standardises the sequences next.

    Examples
    --------
    >>> import numpy as np
    >>> from skrnn.preprocessing import TableToSequences
    >>> # lag_1, lag_2, lag_3 (newest first), then an exogenous column
    >>> table = np.array([[3.0, 2.0, 1.0, 9.0]])
    >>> TableToSequences(3, order="newest_first").fit_transform(table)[0]
    array([[1., 9.],
           [2., 9.],
           [3., 9.]])
    """

    _parameter_constraints = {
        "n_steps": [Number(Integral, 1, None, closed="left"), None],
        "n_channels": [Number(Integral, 1, None, closed="left")],
        "order": [StrOptions({"oldest_first", "newest_first"})],
    }

    def __init__(self, n_steps=None, *, n_channels=1, order="oldest_first"):
        self.n_steps = n_steps
        self.n_channels = n_channels
        self.order = order

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check that the table's columns fit the layout.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_columns)
            The table.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The transformer.
        """
        X = validate_data(self, X, ensure_all_finite=False)
        self._layout(X.shape[1])
        return self

    def transform(self, X):
        """Read the table's rows as sequences.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_columns)
            The table, with the columns ``fit`` saw.

        Returns
        -------
        X_seq : ndarray of shape (n_samples, n_steps, n_channels + n_rest)
            The sequences, oldest step first.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite=False)
        n_steps, n_rest = self._layout(X.shape[1])
        C = self.n_channels
        # (n, C, n_steps) -> (n, n_steps, C), each block in time order
        steps = X[:, : C * n_steps].reshape(len(X), C, n_steps).transpose(0, 2, 1)
        if self.order == "newest_first":
            steps = steps[:, ::-1]
        rest = np.broadcast_to(X[:, None, C * n_steps :], (len(X), n_steps, n_rest))
        return np.concatenate([steps, rest], axis=2)

    def _layout(self, n_columns):
        """(n_steps, n_rest) of a table of ``n_columns``, or a ValueError."""
        C = self.n_channels
        if self.n_steps is None:
            if n_columns % C:
                raise ValueError(
                    f"X has {n_columns} columns, which {C} channels do not divide "
                    "into steps; give n_steps, the remaining columns being "
                    "repeated at every step."
                )
            return n_columns // C, 0
        if C * self.n_steps > n_columns:
            raise ValueError(
                f"X has {n_columns} columns, fewer than n_channels * n_steps = "
                f"{C} * {self.n_steps}."
            )
        return self.n_steps, n_columns - C * self.n_steps

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.allow_nan = True
        return tags


_COUNT = Number(Integral, 1, None, closed="left")


@validate_params(
    {
        "series": ["array-like"],
        "window": [_COUNT],
        "horizon": [_COUNT, "array-like"],
        "target": [Integral, "array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def sliding_windows(series, window, *, horizon=1, target=None):
    """Cut a series into windows and the values to forecast after each.

    Window ``i`` is ``series[i : i + window]`` and its target is the value
    ``horizon`` steps after the window's last step,
    ``series[i + window + horizon - 1]``: no window sees its own target.
    Several horizons give one target column each (direct multi-horizon
    forecasting); ``target`` picks the columns of a 2-D series to forecast,
    the others being past covariates that the windows carry.

    Parameters
    ----------
    series : array-like of shape (T,) or (T, D)
        The series, oldest step first.
    window : int
        Steps per window, >= 1.
    horizon : int or sequence of int, default=1
        How many steps ahead of the window's last step the target is (each
        >= 1); a sequence gives one target column per horizon, in its order.
    target : int, sequence of int or None, default=None
        The columns of a 2-D series that y holds; X keeps every column.
        None: every column (the one of a 1-D series).

    Returns
    -------
    X : ndarray of shape (n_windows, window, D)
        The windows, with D = 1 for a 1-D series; n_windows = T - window -
        max(horizon) + 1.
    y : ndarray
        The targets. With one horizon: (n_windows,) for one target column (a
        1-D series, or an int ``target``), else (n_windows, n_targets). With
        a sequence of horizons: (n_windows, n_horizons) for one target
        column, else (n_windows, n_targets * n_horizons), column ``j *
        n_horizons + k`` holding target ``j`` at horizon ``k``.

    See Also
    --------
    skrnn.SequenceRegressor : Forecasts y from X.

    Examples
    --------
    >>> import numpy as np
    >>> from skrnn.preprocessing import sliding_windows
    >>> X, y = sliding_windows(np.arange(6.0), window=3)
    >>> X[:, :, 0]
    array([[0., 1., 2.],
           [1., 2., 3.],
           [2., 3., 4.]])
    >>> y
    array([3., 4., 5.])
    >>> sliding_windows(np.arange(6.0), window=3, horizon=2)[1]
    array([4., 5.])
    >>> sliding_windows(np.arange(6.0), window=3, horizon=[1, 2])[1]
    array([[3., 4.],
           [4., 5.]])
    """
    series = np.asarray(series)
    if series.ndim not in (1, 2):
        raise ValueError(f"series must be (T,) or (T, D); got shape {series.shape}.")
    values = series[:, None] if series.ndim == 1 else series
    if values.shape[1] == 0:
        raise ValueError(f"series has 0 features per step; got shape {series.shape}.")
    horizons = _positive_ints(horizon, "horizon")
    columns = _target_columns(target, series)
    n_windows = len(values) - window - horizons.max() + 1
    if n_windows < 1:
        raise ValueError(
            f"A series of {len(values)} steps is too short for windows of {window} "
            f"steps and a horizon of {horizons.max()}: it needs at least "
            f"{window + horizons.max()} steps."
        )
    starts = np.arange(n_windows)
    X = values[starts[:, None] + np.arange(window)]
    # (n_windows, n_horizons, n_targets): each horizon's row of the targets
    y = values[(starts + window - 1)[:, None] + horizons][:, :, columns]
    one_target = series.ndim == 1 or isinstance(target, Integral)
    if np.ndim(horizon) == 0:
        return X, (y[:, 0, 0] if one_target else y[:, 0])
    return X, (
        y[:, :, 0] if one_target else y.transpose(0, 2, 1).reshape(n_windows, -1)
    )


def _positive_ints(value, name):
    """``value``, an int or a sequence of them, as a 1-D array of ints >= 1."""
    values = np.atleast_1d(np.asarray(value))
    if (
        values.ndim != 1
        or len(values) == 0
        or values.dtype.kind not in "iu"
        or (values < 1).any()
    ):
        raise ValueError(
            f"{name} must be an int >= 1 or a non-empty sequence of them; "
            f"got {value!r}."
        )
    return values.astype(np.intp)


def _target_columns(target, series):
    """The column indices ``target`` names (every column for None)."""
    n_columns = 1 if series.ndim == 1 else series.shape[1]
    if target is None:
        return np.arange(n_columns)
    if series.ndim == 1:
        raise ValueError("target picks columns of a 2-D series; this series is 1-D.")
    columns = np.atleast_1d(np.asarray(target))
    if (
        columns.ndim != 1
        or len(columns) == 0
        or columns.dtype.kind not in "iu"
        or (columns < 0).any()
        or (columns >= n_columns).any()
    ):
        raise ValueError(
            f"target must be a column index in [0, {n_columns}) or a non-empty "
            f"sequence of them; got {target!r}."
        )
    return columns.astype(np.intp)
