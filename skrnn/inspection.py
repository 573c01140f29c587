"""Which inputs a fitted sequence model relies on."""

from numbers import Integral

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.utils import Bunch, check_random_state

from ._data import check_sequences
from ._sklearn_compat import Number, StrOptions, validate_params

__all__ = ["permutation_importance"]


@validate_params(
    {
        "estimator": [object],
        "X": ["array-like", list],
        "y": ["array-like", list],
        "by": [StrOptions({"feature", "step"})],
        "n_repeats": [Number(Integral, 1, None, closed="left")],
        "scoring": [str, callable, None],
        "random_state": ["random_state"],
        "sample_weight": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def permutation_importance(
    estimator,
    X,
    y,
    *,
    by="feature",
    n_repeats=5,
    scoring=None,
    random_state=None,
    sample_weight=None,
):
    """Permutation importance of the features or time steps of sequences.

    scikit-learn's :func:`~sklearn.inspection.permutation_importance` for
    input it cannot take (3-D arrays, lists of sequences): how much the score
    drops when a feature, or a time step, is shuffled across sequences, so
    that it no longer goes with its targets.

    - ``by="feature"``: feature d's values are shuffled across every valid
      step of every sequence, the other features left in place; any input
      form (a table holds one feature).
    - ``by="step"``: step t of every sequence (all its features) comes from
      another sequence; sequences of equal length only.

    Parameters
    ----------
    estimator : estimator
        A fitted skrnn estimator, or a pipeline ending in one.
    X : array-like or list of array-like
        Sequences in any form the estimator takes.
    y : array-like
        Their targets.
    by : {"feature", "step"}, default="feature"
        What is shuffled.
    n_repeats : int, default=5
        Shuffles of each feature or step.
    scoring : str, callable or None, default=None
        As scikit-learn's; None: the estimator's ``score``.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffles.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples in the scoring.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``importances`` (n_features or n_steps, n_repeats): the baseline
        score minus the score with the feature or step shuffled, and its
        mean and standard deviation over the repeats, ``importances_mean``
        and ``importances_std``.

    See Also
    --------
    sklearn.inspection.permutation_importance : The same for tables.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skrnn import SequenceRegressor
    >>> from skrnn.inspection import permutation_importance
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 5, 3))
    >>> y = X[:, :, 0].sum(axis=1)  # feature 0 decides, the others do not
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     model = SequenceRegressor(hidden_size=8, max_iter=50, random_state=0)
    ...     model = model.fit(X, y)
    >>> result = permutation_importance(model, X, y, random_state=0)
    >>> int(np.argmax(result.importances_mean))
    0
    """
    seqs = check_sequences(X, dtype="float64")
    rng = check_random_state(random_state)
    scorer = check_scoring(estimator, scoring=scoring)
    kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
    # the sequences as a list (T_i, D): what every skrnn estimator takes
    rows = [v[:L] for v, L in zip(seqs.values, seqs.lengths)]
    baseline = scorer(estimator, rows, y, **kwargs)
    N, T, D = seqs.values.shape
    if by == "step" and (seqs.lengths != T).any():
        raise ValueError(
            "by='step' shuffles a time step across sequences, which needs them "
            f"to be of equal length; these have lengths from {seqs.lengths.min()} "
            f"to {T}. Use by='feature'."
        )
    valid = np.arange(T)[None, :] < seqs.lengths[:, None]
    importances = np.empty((D if by == "feature" else T, n_repeats))
    for j in range(len(importances)):
        for r in range(n_repeats):
            shuffled = seqs.values.copy()
            if by == "feature":
                column = shuffled[:, :, j]
                column[valid] = rng.permutation(column[valid])
            else:
                shuffled[:, j] = shuffled[rng.permutation(N), j]
            permuted = [v[:L] for v, L in zip(shuffled, seqs.lengths)]
            importances[j, r] = baseline - scorer(estimator, permuted, y, **kwargs)
    return Bunch(
        importances_mean=importances.mean(axis=1),
        importances_std=importances.std(axis=1),
        importances=importances,
    )
