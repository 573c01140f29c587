"""Every accepted form of X and y, turned into one padded batch.

The estimators accept tables (one univariate sequence per row), 3-D arrays,
both NaN-padded or not, and lists of variable-length sequences.
This module turns each into :class:`Sequences` — values (N, T, D) with
zeros at padded steps, and lengths (N,) — and refuses bad input with an
error that names the sample and step, before any model is touched.
"""

import warnings
from operator import attrgetter
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array

from ._sklearn_compat import _check_feature_names, _get_feature_names


class Sequences(NamedTuple):
    """A validated batch of sequences.

    Attributes
    ----------
    values : ndarray of shape (N, T, D)
        Batch-major data, zero at padded steps.
    lengths : ndarray of shape (N,)
        Valid steps of each sequence (>= 1).
    form : {"table", "array", "list"}
        The form X came in, so that outputs can be returned in the same form.
    """

    values: np.ndarray
    lengths: np.ndarray
    form: str


def _float_dtype(dtype, source_dtypes):
    """scikit-learn's rule: float32 stays float32, anything else is float64."""
    if dtype is not None:
        return np.dtype(dtype)
    if all(d == np.float32 for d in source_dtypes):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _all_finite(values):
    """Whether no value is NaN or infinite, in one pass and no temporary.

    A sum with a NaN or an infinity in it is not finite (nor is one that
    overflows: then the caller takes its long way, and is still right).
    scikit-learn's check_array tests finiteness the same way.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(values.sum()))


def _first_nonfinite(values):
    """(index tuple, "NaN" or "infinity") of the first non-finite value, or None."""
    if _all_finite(values):
        return None
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    idx = tuple(int(i[0]) for i in np.nonzero(bad))
    return idx, "NaN" if np.isnan(values[idx]) else "infinity"


def _raise_nonfinite(kind, sample, step, name="X", given=None, dtype=None):
    """Refuse a value that is not finite; ``given``: the value as X holds it,
    which may be finite and too large for ``dtype``, which it was cast to."""
    if given is not None and np.isfinite(given):
        hint = " Fit with dtype='float64', or scale X." if dtype == np.float32 else ""
        raise ValueError(
            f"Input {name} contains {given:g} at sample {sample}, step {step}, "
            f"which is too large for {np.dtype(dtype).name}, the dtype the model "
            f"computes in.{hint}"
        )
    raise ValueError(f"Input {name} contains {kind} at sample {sample}, step {step}.")


def is_sequence_list(X):
    """Whether a list or tuple holds one sequence per sample (rather than a table).

    It does when any element is an array-like with dimensions (an array, a
    pandas Series or DataFrame), or when its lists differ in length or
    nest further.
    """
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    if any(isinstance(x, np.ndarray) or getattr(x, "ndim", 0) >= 1 for x in X):
        return True
    if all(isinstance(x, (list, tuple)) for x in X):
        lens = {len(x) for x in X}
        nested = any(isinstance(v, (list, tuple, np.ndarray)) for x in X for v in x)
        return len(lens) > 1 or nested
    return False


def check_sequences(X, dtype=None):
    """Validate X in any accepted form and pack it.

    Parameters
    ----------
    X : array-like or list of array-like
        A table (N, T) or a 3-D array (N, T, D), whose trailing all-NaN
        steps are padding, or a list of arrays (T_i,) or (T_i, D).
    dtype : {"float32", "float64"} or None
        The dtype of the result; None keeps float32 and turns anything
        else into float64.

    Returns
    -------
    Sequences
        The packed batch.
    """
    if sp.issparse(X):
        # scikit-learn's own wording for estimators that need dense data
        check_array(X, accept_sparse=False)
    if isinstance(X, (list, tuple)) and len(X) == 0:
        # check_array's wording, rather than its "Expected 2D array" for []
        raise ValueError(
            "Found array with 0 sample(s) (shape=(0,)) while a minimum of 1 is "
            "required."
        )
    if is_sequence_list(X):
        return _check_list(X, dtype)
    if _plain_float_array(X):
        arr = X  # what check_array would return, at a fraction of its cost
    else:
        arr = check_array(
            X, dtype="numeric", allow_nd=True, ensure_all_finite=False, input_name="X"
        )
    if arr.ndim > 3:
        raise ValueError(
            f"Found array with dim {arr.ndim}, expected 2 (a table of univariate "
            "sequences) or 3 (n_samples, n_timesteps, n_features)."
        )
    out_dtype = _float_dtype(dtype, [arr.dtype])
    # a value too large for the dtype becomes infinite, refused below
    with np.errstate(over="ignore"):
        given, arr = arr, arr.astype(out_dtype, copy=False)
    N = arr.shape[0]
    form = "table" if arr.ndim == 2 else "array"
    if arr.ndim == 2:
        given, arr = given[:, :, None], arr[:, :, None]
    elif 0 in arr.shape[1:]:
        raise ValueError(
            f"Found array with shape {arr.shape}: every sample needs at least one "
            "time step and one feature."
        )
    T = arr.shape[1]
    if _all_finite(arr):
        return Sequences(arr, np.full(N, T, np.intp), form)  # no padding
    # tslearn's convention, in tables too: trailing all-NaN steps are padding.
    step_is_nan = np.isnan(arr).all(axis=2)
    n_trailing = np.argmin(step_is_nan[:, ::-1], axis=1)
    n_trailing[step_is_nan.all(axis=1)] = T
    lengths = (T - n_trailing).astype(np.intp)
    if lengths.min() == 0:
        i = int(np.argmin(lengths))
        raise ValueError(f"Sample {i} of X has length 0 (all of its steps are NaN).")
    valid = np.arange(T)[None, :] < lengths[:, None]
    if (lengths < T).any():
        arr = np.where(valid[:, :, None], arr, 0).astype(out_dtype, copy=False)
    bad = _first_nonfinite(arr)
    if bad is not None:
        (i, t, d), kind = bad
        _raise_nonfinite(kind, i, t, given=given[i, t, d], dtype=out_dtype)
    return Sequences(arr, lengths, form)


def _plain_float_array(X):
    """Whether X is a NumPy float array of 2 or 3 dimensions with at least one
    sample, and one column if 2-D: check_array would return it as it is."""
    return (
        type(X) is np.ndarray
        and X.dtype.kind == "f"
        and X.ndim in (2, 3)
        and X.shape[0] > 0
        and (X.ndim == 3 or X.shape[1] > 0)
    )


def _check_list(X, dtype):
    """Pack a list of sequences, checked in bulk: one concatenation and
    vectorised checks, so that a list costs about what the same sequences
    stacked in a 3-D array do.

    Elements that are not plain numeric arrays of 1 or 2 dimensions with at
    least one step and one feature (nested lists that do not form an array,
    object or string data, sparse matrices, empty sequences) send the whole
    list through :func:`_check_sequence`, which converts each element as
    ``check_array`` does or raises naming the sample.
    """
    try:
        arrays = [np.asarray(x) for x in X]
    except (ValueError, TypeError):  # e.g. a ragged nested list
        arrays = None
    if arrays is None or not _plain_arrays(arrays):
        arrays = [_check_sequence(x, i) for i, x in enumerate(X)]
    n = len(arrays)
    lengths = np.fromiter(map(len, arrays), np.intp, n)
    widths = np.fromiter(map(attrgetter("size"), arrays), np.intp, n) // lengths
    mismatch = np.flatnonzero(widths != widths[0])
    if mismatch.size:
        i = int(mismatch[0])
        raise ValueError(
            f"Sample {i} of X has {widths[i]} features per step, but sample 0 "
            f"has {widths[0]}."
        )
    out_dtype = _float_dtype(dtype, set(map(attrgetter("dtype"), arrays)))
    # the valid steps of every sequence, one after the other
    with np.errstate(over="ignore"):  # too large for the dtype: refused below
        rows = np.concatenate(arrays, axis=None, dtype=out_dtype)
    rows = rows.reshape(-1, widths[0])
    bad = _first_nonfinite(rows)
    if bad is not None:
        (row, d), kind = bad
        starts = np.cumsum(lengths) - lengths
        i = int(np.searchsorted(starts, row, side="right")) - 1
        t = row - starts[i]
        given = arrays[i].reshape(lengths[i], -1)[t, d]
        _raise_nonfinite(kind, i, t, given=given, dtype=out_dtype)
    T = int(lengths.max())
    if (lengths == T).all():
        return Sequences(rows.reshape(n, T, -1), lengths, "list")
    values = np.zeros((n, T, rows.shape[1]), dtype=out_dtype)
    values[np.arange(T)[None, :] < lengths[:, None]] = rows
    return Sequences(values, lengths, "list")


def _plain_arrays(arrays):
    """Whether every array is numeric, of 1 or 2 dimensions, and not empty."""
    kinds = {dt.kind for dt in set(map(attrgetter("dtype"), arrays))}
    if not kinds <= set("biuf"):
        return False
    ndims = np.fromiter(map(attrgetter("ndim"), arrays), np.intp, len(arrays))
    sizes = np.fromiter(map(attrgetter("size"), arrays), np.intp, len(arrays))
    return bool(((ndims == 1) | (ndims == 2)).all() and (sizes > 0).all())


def _check_sequence(x, i):
    """Sample ``i`` of a list, converted by ``check_array`` (numbers of any
    dtype to a numeric array) and checked for shape, or a ValueError (a
    TypeError for sparse data) naming the sample."""
    if sp.issparse(x):
        check_array(x, accept_sparse=False)
    try:
        a = check_array(
            x,
            dtype="numeric",
            ensure_2d=False,
            allow_nd=True,
            ensure_all_finite=False,
            ensure_min_samples=0,
            input_name="X",
        )
    except ValueError as exc:
        raise ValueError(f"Sample {i} of X: {exc}") from exc
    if a.ndim not in (1, 2):
        raise ValueError(
            f"Sample {i} of X has {a.ndim} dimensions; each sequence must be "
            "(T_i,) or (T_i, n_features)."
        )
    if a.shape[0] == 0:
        raise ValueError(f"Sample {i} of X has length 0.")
    if a.size == 0:
        raise ValueError(f"Sample {i} of X has 0 features per step.")
    return a


def _with_names(X, fitted=None):
    """What scikit-learn's feature-name checks read for X: for a list with
    DataFrames in it, the first of them; otherwise X.

    Every DataFrame of a list must have the same columns in the same order:
    ``fitted``, the names a model was fitted with, or else the first
    DataFrame's. A ValueError names the first sequence whose columns differ,
    so that no sequence is read with its columns in another order.
    """
    if not is_sequence_list(X):
        return X
    frames = [(i, x) for i, x in enumerate(X) if hasattr(x, "columns")]
    if not frames:
        return X
    if fitted is not None:
        expected, source = list(fitted), "the model was fitted with"
    else:
        expected, source = list(frames[0][1].columns), f"sample {frames[0][0]} has"
    for i, x in frames:
        if list(x.columns) != expected:
            raise ValueError(
                f"Sample {i} of X has columns {list(x.columns)}, but {source} "
                f"{expected}: every DataFrame of a list needs the same columns, "
                "in the same order."
            )
    return frames[0][1]


class SequenceInputMixin:
    """Validation of sequence input shared by the estimators and the scaler.

    A fitted table of width n sets ``n_features_in_ = n``; fitted 3-D or list
    input sets it to the features per step. A model fitted on a table takes
    tables of the same width and 3-D/list input with one feature per step;
    one fitted on 3-D/list input takes that number of features per step, and
    tables when it is 1.
    """

    def _validate_X(self, X, reset, dtype=None):
        """Validate X in any accepted form.

        On reset, ``dtype`` (None: keep float32, else float64) sets the
        precision and the attributes X defines are returned, not set, so that
        a later failure leaves the estimator as it was (see
        :meth:`_set_input_attrs`). Otherwise X must fit what was fitted.
        """
        name = type(self).__name__
        if reset:
            seqs = check_sequences(X, dtype=dtype)
            D = seqs.values.shape[2]
            attrs = {
                "n_features_in_": seqs.values.shape[1] if seqs.form == "table" else D,
                "_n_step_features": D,
                "_fit_form_is_table": seqs.form == "table",
                "_dtype": seqs.values.dtype.name,  # a str: skops trusts it
                "feature_names_in_": _get_feature_names(_with_names(X)),
            }
            return seqs, attrs
        if type(X) is not np.ndarray or hasattr(self, "feature_names_in_"):
            # an array has no names: nothing to check unless fitted with some
            fitted = getattr(self, "feature_names_in_", None)
            _check_feature_names(self, _with_names(X, fitted), reset=False)
        seqs = check_sequences(X, dtype=self._dtype)
        width = seqs.values.shape[1] if seqs.form == "table" else seqs.values.shape[2]
        if seqs.form == "table" and self._fit_form_is_table:
            expected = self.n_features_in_
        elif seqs.form == "table":
            # a table is univariate: it fits a model with one feature per step
            width, expected = 1, self._n_step_features
        else:
            expected = self._n_step_features
        if width != expected:
            hint = ""
            if seqs.form == "table" and self._fit_form_is_table:
                hint = (
                    " A table's columns are time steps: pass univariate sequences "
                    "of another length as X[:, :, None], or pad the shorter rows "
                    "with trailing NaN."
                )
            raise ValueError(
                f"X has {width} features, but {name} is expecting {expected} "
                f"features as input.{hint}"
            )
        return seqs, {}

    def _set_input_attrs(self, attrs):
        for name, value in attrs.items():
            if name == "feature_names_in_" and value is None:
                self.__dict__.pop(name, None)
            else:
                setattr(self, name, value)


def warn_if_channels_first(seqs):
    """Warn where a 3-D X has fewer time steps than features per step, the
    sign of aeon's and sktime's (n_cases, n_channels, n_timepoints) layout,
    unless every step is one-hot: an encoding (of characters, say) whose
    categories may well outnumber the steps."""
    values = seqs.values
    _, T, D = values.shape
    if seqs.form != "array" or T >= D:
        return
    valid = values[np.arange(T)[None, :] < seqs.lengths[:, None]]
    one_hot = ((valid == 0) | (valid == 1)).all() and (valid.sum(axis=1) == 1).all()
    if not one_hot:
        warnings.warn(
            f"X has {T} time steps of {D} features each. If it is an aeon or "
            "sktime collection, (n_cases, n_channels, n_timepoints), pass "
            "X.transpose(0, 2, 1): skrnn reads (n_samples, n_timesteps, "
            "n_features).",
            UserWarning,
        )


def split_step_targets(y, seqs):
    """Per-sample targets of a many-to-many model, cut to each sequence's length.

    Parameters
    ----------
    y : array-like of shape (N, T[, K]) or list of N array-likes (T_i[, K])
        One target per time step.
    seqs : Sequences
        The validated X.

    Returns
    -------
    list of ndarray
        ``y_i[:lengths[i]]`` for each sample.
    """
    N, T = seqs.values.shape[:2]
    if isinstance(y, (list, tuple)):
        ys = [np.asarray(v) for v in y]
    else:
        y = np.asarray(y)
        if y.ndim < 2:
            raise ValueError(
                "y must hold one target per time step: an array (n_samples, "
                f"n_timesteps[, n_targets]) or a list of arrays; got shape {y.shape}."
            )
        ys = list(y)
    if len(ys) != N:
        raise ValueError(f"y has {len(ys)} samples, but X has {N}.")
    out = []
    for i, (v, L) in enumerate(zip(ys, seqs.lengths)):
        if v.ndim == 0 or v.ndim > 2:
            raise ValueError(f"Sample {i} of y must be (T_i,) or (T_i, n_targets).")
        if len(v) != L and not (seqs.form == "array" and len(v) == T):
            raise ValueError(
                f"Sample {i} of y has {len(v)} steps, but sample {i} of X has {L}."
            )
        if out and v.shape[1:] != out[0].shape[1:]:
            raise ValueError(
                f"Sample {i} of y has targets of shape {v.shape[1:]}, but sample 0 "
                f"has {out[0].shape[1:]}."
            )
        out.append(v[:L])
    return out


def check_finite_targets(ys):
    """Refuse NaN or infinity among regression targets.

    Parameters
    ----------
    ys : ndarray of shape (N,) or (N, n_targets), or list of ndarray
        One target (row) per sequence, whose message names the sample; or
        a list of per-step targets (T_i[, n_targets]), whose message names
        the sample and the step.
    """
    per_step = isinstance(ys, (list, tuple))
    if not per_step:
        bad = _first_nonfinite(np.asarray(ys))
        if bad is not None:
            idx, kind = bad
            raise ValueError(f"Input y contains {kind} at sample {idx[0]}.")
        return
    for i, v in enumerate(ys):
        v = np.asarray(v)
        bad = _first_nonfinite(np.atleast_1d(v))
        if bad is None:
            continue
        idx, kind = bad
        if per_step and v.ndim > 0:
            _raise_nonfinite(kind, i, idx[0], name="y")
        raise ValueError(f"Input y contains {kind} at sample {i}.")


def pack(ys, lengths, T, dtype, fill=0):
    """Stack per-sample arrays (L_i, ...) into one (N, T, ...) array."""
    out = np.full((len(ys), T) + ys[0].shape[1:], fill, dtype=dtype)
    for i, (v, L) in enumerate(zip(ys, lengths)):
        out[i, :L] = v
    return out


def unpack(values, seqs, fill):
    """Per-step outputs (N, T, ...) returned in the form X came in.

    A list for a list; an array for an array, with ``fill`` at padded steps.
    """
    if seqs.form == "list":
        return [values[i, :L] for i, L in enumerate(seqs.lengths)]
    T = values.shape[1]
    valid = np.arange(T)[None, :] < seqs.lengths[:, None]
    if valid.all():
        return values
    if fill is None:
        values = values.astype(object)
    values[~valid] = fill
    return values
