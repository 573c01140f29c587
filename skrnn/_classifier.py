"""SequenceClassifier: label encoding, logistic / softmax head, log-loss."""

from functools import partial
from inspect import Parameter, signature

import numpy as np
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._base import BaseSequenceEstimator
from ._data import check_finite_targets, pack, split_step_targets
from ._docs import fill_doc
from ._losses import binary_log_loss, multi_log_loss
from ._sklearn_compat import StrOptions, _fit_context


@fill_doc(
    loss="the log-loss",
    score="Accuracy",
    n_outputs="Outputs of the head: 1 for two classes, else ``n_classes``.",
)
class SequenceClassifier(ClassifierMixin, BaseSequenceEstimator):
    """Recurrent neural network classifier (Elman RNN, GRU or LSTM).

    A stack of recurrent layers read by a linear head with one logistic
    output for two classes and a softmax over ``n_classes`` outputs
    otherwise (as :class:`~sklearn.neural_network.MLPClassifier`), trained
    on the log-loss; one label per sequence (``output="last"``) or per time
    step (``output="sequence"``). Labels may be of any sortable hashable
    type.

    Parameters
    ----------
    %(parameters)s
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, which multiply ``sample_weight``, as in
        :class:`~sklearn.linear_model.LogisticRegression`: a dict label ->
        weight (a label that is not in the data raises), or "balanced",
        ``n_samples / (n_classes * np.bincount(y))`` over the labels given
        to ``fit``, each sample counted by its ``sample_weight`` (a warm fit
        balances the classes its data has). ``partial_fit`` takes a dict
        only. With ``output="last"`` only.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    %(attributes)s

    See Also
    --------
    SequenceRegressor : The regressor.
    sklearn.neural_network.MLPClassifier : The feed-forward model this follows.

    Examples
    --------
    >>> import numpy as np
    >>> from skrnn import SequenceClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(100, 6, 2))
    >>> y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    >>> clf = SequenceClassifier(hidden_size=8, learning_rate_init=0.01,
    ...                          max_iter=200, random_state=0).fit(X, y)
    >>> clf.classes_
    array(['down', 'up'], dtype='<U4')
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints = {
        **BaseSequenceEstimator._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, *args, class_weight=None, **params):
        super().__init__(*args, **params)
        self.class_weight = class_weight

    # scikit-learn reads an estimator's parameters from its signature: the
    # regressor's, then class_weight
    __init__.__signature__ = signature(BaseSequenceEstimator.__init__).replace(
        parameters=[
            *signature(BaseSequenceEstimator.__init__).parameters.values(),
            Parameter("class_weight", Parameter.KEYWORD_ONLY, default=None),
        ]
    )

    def __setstate__(self, state):
        # models saved before class_weight existed load with its default
        state.setdefault("class_weight", None)
        super().__setstate__(state)

    _constant_output = "the class prior"

    # The mixin's score would sit first in the MRO; ours scores every valid
    # step of output="sequence" models and takes every input form.
    score = BaseSequenceEstimator.score

    def _target_weights(self, codes, sample_weight, y_attrs, incremental):
        """Each sample's weight from ``class_weight`` (1.0 without).

        "balanced" counts each class by its samples' weights and leaves out
        classes of no weight, so that an integer weight counts as repeated
        rows and a warm fit on data that lacks a fitted class balances the
        classes it has, as a fit on that data alone would.
        """
        if self.class_weight is None:
            return 1.0
        if codes.ndim > 1:
            raise ValueError(
                "class_weight needs one label per sequence (output='last'); "
                "with output='sequence', weigh the sequences with sample_weight."
            )
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' needs every label at once, which "
                "partial_fit does not see; pass a dict of class weights."
            )
        classes = y_attrs.get("classes_", getattr(self, "classes_", None))
        if isinstance(self.class_weight, dict):
            # looked up by the labels themselves: compute_class_weight would
            # read the labels "1" and "2" as the integers 1 and 2
            unknown = set(self.class_weight) - set(classes.tolist())
            if unknown:
                raise ValueError(
                    f"class_weight names classes that are not in the data: "
                    f"{sorted(unknown, key=repr)}; the classes are {classes.tolist()}."
                )
            weights = np.array(
                [self.class_weight.get(c, 1.0) for c in classes.tolist()]
            )
            return weights[codes]
        counts = np.bincount(codes, weights=sample_weight, minlength=len(classes))
        present = counts > 0
        weights = np.ones(len(classes))
        weights[present] = counts.sum() / (present.sum() * counts[present])
        return weights[codes]

    def _head_loss(self):
        return binary_log_loss if len(self.classes_) == 2 else multi_log_loss

    def _validate_targets(self, y, seqs, reset, classes=None, scoring=False):
        output = self.output if reset else self._output
        N = len(seqs.lengths)
        if output == "last":
            try:
                labels = column_or_1d(y, warn=True)
            except ValueError as exc:
                raise ValueError(
                    f"{exc} With output='last', {type(self).__name__} takes one "
                    "label per sequence; for one label per time step, use "
                    "output='sequence'."
                ) from exc
            if len(labels) != N:
                raise ValueError(f"y has {len(labels)} samples, but X has {N}.")
            ys = labels
        else:
            ys = [column_or_1d(v) for v in split_step_targets(y, seqs)]
            labels = np.concatenate(ys)
        if labels.dtype.kind == "f":
            # before scikit-learn's target check, which casts to int first
            check_finite_targets(ys)
        check_classification_targets(labels)
        if reset:
            found = np.unique(labels if classes is None else classes)
            if len(found) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in "
                    f"the data, but the data contains only one class: {found[0]!r}."
                )
        else:
            found = self.classes_
            if classes is not None and not np.array_equal(np.unique(classes), found):
                raise ValueError(
                    f"classes={classes!r} is not the same as on the first call to "
                    f"partial_fit, {found!r}."
                )
        codes = np.searchsorted(found, labels)
        unknown = (codes >= len(found)) | (
            found[np.minimum(codes, len(found) - 1)] != labels
        )
        if scoring:
            codes[unknown] = -1  # no prediction has this code: counted as wrong
        elif unknown.any():
            raise ValueError(
                f"y contains labels not seen in classes_ {found!r}: "
                f"{np.unique(labels[unknown])!r}."
            )
        if output == "sequence":
            splits = np.cumsum(seqs.lengths)[:-1]
            codes = pack(
                np.split(codes, splits), seqs.lengths, seqs.values.shape[1], np.intp
            )
        attrs = {}
        if reset:
            n_head = 1 if len(found) == 2 else len(found)
            attrs = {"classes_": found, "n_outputs_": n_head, "_n_head": n_head}
        return codes, attrs

    def _stratify_split(self):
        return self._output == "last"

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch over X, y, starting from the current weights.

        Parameters
        ----------
        %(X)s
        y : array-like
            Labels, as for :meth:`fit`; all of them in ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Every label there will be. Required on the first call, optional
            (but then equal) on later calls.
        %(sample_weight)s

        Returns
        -------
        self : object
            The updated estimator.
        """
        if classes is None and not hasattr(self, "_network"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _proba(self, raw, log=False):
        """Class probabilities, or their logarithms, from raw outputs."""
        raw = raw.astype(np.float64)
        if len(self.classes_) > 2:
            return (log_softmax if log else softmax)(raw, axis=-1)
        z = raw[..., :1]
        if log:
            return np.concatenate([log_expit(-z), log_expit(z)], axis=-1)
        p = expit(z)
        return np.concatenate([1.0 - p, p], axis=-1)

    def predict_proba(self, X):
        """Class probabilities, in the order of ``classes_``.

        For two classes the head's one output is the logit of ``classes_[1]``;
        for more, the probabilities are its outputs' softmax.

        Parameters
        ----------
        %(X)s

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), or list of ndarray
            In float64; for ``output="sequence"``, per step (n_samples,
            n_timesteps, n_classes) in X's form (NaN at padded steps of an
            array).
        """
        return self._predict_with(X, self._proba, fill=np.nan)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably.

        Computed from the head's outputs (log-sigmoid or log-softmax), not as
        the logarithm of rounded probabilities: a class of tiny probability
        keeps a finite, precise value.

        Parameters
        ----------
        %(X)s

        Returns
        -------
        log_proba : ndarray or list of ndarray
            The logarithm of :meth:`predict_proba`'s result, in its form.
        """
        return self._predict_with(X, partial(self._proba, log=True), fill=np.nan)

    def predict(self, X):
        """Predict labels: the most probable class of each sequence or step.

        Parameters
        ----------
        %(X)s

        Returns
        -------
        y : ndarray of shape (n_samples,), or list of ndarray
            Labels; for ``output="sequence"`` one label per step, in X's form
            (None at padded steps of an array).
        """
        return self._predict_with(X, self._prediction_from_raw, fill=None)

    def _prediction_from_raw(self, raw):
        return self.classes_[self._targets_from_raw(raw)]

    _metric = staticmethod(accuracy_score)

    def _targets_from_raw(self, raw):
        """The class codes the raw outputs predict."""
        if len(self.classes_) == 2:
            return (raw[..., 0] > 0).astype(np.intp)
        return raw.argmax(axis=-1)
