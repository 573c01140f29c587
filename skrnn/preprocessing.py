"""SequenceScaler: standardisation for sequences, in every input form."""

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._data import SequenceInputMixin
from ._sklearn_compat import (
    ADAPTERS_MANAGER,
    _check_sample_weight,
    _fit_context,
    _get_output_config,
)

__all__ = ["SequenceScaler"]


# Output containers (set_output) are applied by transform itself, to tables
# only: scikit-learn's automatic wrapping would try to make a DataFrame of a
# 3-D array or a list of sequences.
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
        Divide by the standard deviation (a feature with zero variance keeps
        scale 1).

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
            The fitted scaler.
        """
        for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
            self.__dict__.pop(name, None)
        return self.partial_fit(X, y, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the mean and scale with more sequences.

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
            The updated scaler.
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
        self.scale_ = np.where(var > 0, np.sqrt(var), 1.0) if self.with_std else None
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

    def _apply(self, X, inverse):
        check_is_fitted(self)
        seqs, _ = self._validate_X(X, reset=False)
        mean = self._mean if self.with_mean else np.zeros_like(self._mean)
        scale = self.scale_ if self.with_std else np.ones_like(self._mean)
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


def _valid_rows(seqs, sample_weight):
    """The (sum of lengths, D) valid steps and each one's weight, in float64."""
    valid = np.arange(seqs.values.shape[1])[None, :] < seqs.lengths[:, None]
    rows = seqs.values[valid].astype(np.float64)
    w = _check_sample_weight(sample_weight, seqs.values, dtype=np.float64)
    return rows, np.broadcast_to(w[:, None], valid.shape)[valid]
