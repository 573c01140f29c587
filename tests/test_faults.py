"""Faults during training: divergence, interrupts, and concurrent use.

The divergence rule: if an update would make the loss or a weight
non-finite, training stops, the weights from before that update are kept,
and a ConvergenceWarning says so. ``_train`` also rolls an epoch back when
a KeyboardInterrupt arrives in it.

How ``_step`` attributes a fault (read from skrnn/_base.py), which the
twins below reproduce exactly:

- the loss (or gradient) at the current weights W_j is non-finite: the
  update that produced W_j is the culprit, so the weights go back to
  W_{j-1}, the weights from before it;
- the update from W_j produces a non-finite weight: the weights stay W_j.

A "twin" is a model with the same settings that takes exactly the good
updates and stops; every comparison is ``np.array_equal`` (the same
operations in the same order give the same bits).
"""

import threading

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn._losses import HeadLoss
from skrnn.datasets import make_binary_sum

# Training a twin for a fixed number of epochs ends with the max_iter
# ConvergenceWarning: expected, so filtered where a twin is trained.
_MAX_ITER_WARNING = pytest.mark.filterwarnings(
    "ignore:Stochastic Optimizer:sklearn.exceptions.ConvergenceWarning"
)


def _regressor(**params):
    """The regressor on its targets as given: the faults below are provoked
    on them, and the losses compared are theirs."""
    return SequenceRegressor(normalize_y=False, **params)


def _flat(model):
    """All the weights of a model, in storage order, as one copy."""
    return np.concatenate([v.ravel() for v in model.coefs_.values()]).copy()


def _data(n=40, T=8, D=2, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, T, D))
    return X, X.sum(axis=(1, 2))


class _Stop(Exception):
    """Ends a twin's training after its last good step (no rollback: not
    a KeyboardInterrupt)."""


def _per_batch(model):
    """Train ``model`` one Python call per step (``_step``), not in compiled
    epochs, so that a test can step in between (and the two paths meet)."""
    model._compiled_epoch = lambda run, train, peak: (False, None)
    return model


def _twin_for_steps(make, X, y, steps):
    """A model trained by exactly ``steps`` optimizer steps, then stopped."""
    twin = _per_batch(make())
    calls = {"n": 0}
    step = type(twin)._step

    def limited(*args, **kwargs):
        if calls["n"] == steps:
            raise _Stop
        calls["n"] += 1
        return step(twin, *args, **kwargs)

    twin._step = limited
    with pytest.raises(_Stop):
        twin.fit(X, y)
    return twin


def _divergence_warning():
    return pytest.warns(ConvergenceWarning, match="Training diverged")


def _assert_usable(model, X):
    assert all(np.isfinite(v).all() for v in model.coefs_.values())
    pred = model.predict(X)
    assert np.isfinite(pred).all()


# --------------------------------------------------------------- divergence
@_MAX_ITER_WARNING
def test_huge_learning_rate_keeps_the_last_finite_weights():
    X, y = _data(n=20, T=10)

    def make(max_iter=50):
        # full batch: one step per epoch, so a twin is a shorter max_iter
        return _regressor(
            cell="rnn",
            activation="relu",
            hidden_size=4,
            solver="sgd",
            learning_rate_init=1e6,
            clip_norm=None,
            batch_size=20,
            max_iter=max_iter,
            random_state=0,
        )

    model = make()
    with _divergence_warning():
        model.fit(X, y)
    assert 1 <= model.n_iter_ < 50
    _assert_usable(model, X)
    # the loss after epoch n_iter_'s update was not finite: that update is undone
    twin = make(max_iter=model.n_iter_ - 1) if model.n_iter_ > 1 else None
    expected = _flat(twin.fit(X, y)) if twin else None
    if expected is None:  # diverged on the first update: the initial weights
        expected = _flat(_twin_for_steps(make, X, y, 0))
    np.testing.assert_array_equal(_flat(model), expected)
    np.testing.assert_array_equal(model.predict(X), (twin or model).predict(X))


def test_exploding_gradients_relu_without_clipping():
    """relu, no clipping, 1 000 steps, recurrent weights 1.1·I: the state and
    the gradient grow as 1.1**T (~1e41, still finite), the first update
    overshoots and the loss after it overflows. The weights from before it
    (the ones set here) are kept."""
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 1, size=(6, 1000, 1))
    y = rng.normal(size=6)
    model = _regressor(
        cell="rnn",
        activation="relu",
        hidden_size=4,
        solver="sgd",
        learning_rate_init=1e-3,
        clip_norm=None,
        max_iter=20,
        random_state=0,
        warm_start=True,
        dtype="float64",  # 1.1**1000 overflows float32
    )
    with pytest.warns(ConvergenceWarning, match="Stochastic Optimizer"):
        model.set_params(max_iter=1).fit(X[:, :20], y)  # builds the network
    model.coefs_["weight_hh_l0"][...] = 1.1 * np.eye(4)
    model.coefs_["weight_ih_l0"][...] = 1.0
    model.coefs_["bias_ih_l0"][...] = 0.1
    before = _flat(model)
    model.set_params(max_iter=20)
    with _divergence_warning():
        model.fit(X, y)
    np.testing.assert_array_equal(_flat(model), before)
    # the warm-up epoch + the epoch whose (finite) loss led to the bad update:
    # n_iter_ counts that epoch although its update was undone
    assert model.n_iter_ == 2
    assert model.loss_curve_[-1] > 1e60  # the gradient at that loss exploded
    _assert_usable(model, X[:, :100])


class _Wrapped(HeadLoss):
    """The loss ``fn(z, y, w)``; with no compiled twin, it runs where the
    layers run one engine call each."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, z, y, w, xp=np):
        return self.fn(z, y, w)


def _nan_at_loss(monkeypatch, model, k):
    """Make the k-th loss that ``model`` computes NaN; the count of its
    losses, as a dict that fills as it trains."""
    calls = {"n": 0}
    head_loss = model._head_loss

    def faulty(z, y_, w):
        calls["n"] += 1
        value, dz = head_loss()(z, y_, w)
        return (np.nan if calls["n"] == k else value), dz

    monkeypatch.setattr(model, "_head_loss", lambda: _Wrapped(faulty))
    return calls


@_MAX_ITER_WARNING
@pytest.mark.parametrize("k", [1, 2, 7])
def test_nan_loss_mid_epoch(monkeypatch, k):
    """The k-th loss is NaN (steps 1..k-1 were fine): 4 steps per epoch, so
    k=7 is the third step of epoch 2. The NaN loss is at the weights the
    (k-1)-th update produced; that update is undone: k-2 good steps stay."""
    X, y = _data()

    def make():
        return _regressor(hidden_size=5, batch_size=10, max_iter=10, random_state=0)

    model = make()
    calls = _nan_at_loss(monkeypatch, model, k)
    with _divergence_warning():
        model.fit(X, y)
    # training stops at the k-th loss; when no epoch completed (k <= 4), the
    # loss at the weights kept is then computed over the 4 batches, for loss_
    assert calls["n"] == k + (4 if k <= 4 else 0)
    assert model.n_iter_ == (k - 1) // 4  # completed epochs before the fault
    expected = _twin_for_steps(make, X, y, max(k - 2, 0))
    np.testing.assert_array_equal(_flat(model), _flat(expected))
    _assert_usable(model, X)
    np.testing.assert_array_equal(model.predict(X), expected.predict(X))


@_MAX_ITER_WARNING
def test_non_finite_weight_after_update(monkeypatch):
    """The 6th update writes an infinity into the weights: it is undone and
    the 5 good steps stay."""
    X, y = _data()

    def make():
        return _regressor(hidden_size=5, batch_size=10, max_iter=10, random_state=0)

    model = make()
    real_update = model._update
    calls = {"n": 0}

    def faulty_update(run, grad_check):
        calls["n"] += 1
        finite = real_update(run, grad_check)
        if calls["n"] == 6:
            run.params.flat[3] = np.inf
        return finite & np.isfinite(run.params.flat).all()

    model._update = faulty_update
    _per_batch(model)
    with _divergence_warning():
        model.fit(X, y)
    np.testing.assert_array_equal(_flat(model), _flat(_twin_for_steps(make, X, y, 5)))
    _assert_usable(model, X)


def test_nan_in_classifier_loss_keeps_predict_proba_finite(monkeypatch):
    rng = np.random.RandomState(1)
    X = rng.normal(size=(30, 6, 2))
    y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    model = SequenceClassifier(
        hidden_size=4, batch_size=10, max_iter=10, random_state=0
    )
    calls = {"n": 0}
    head_loss = model._head_loss

    def faulty(z, y_, w):
        calls["n"] += 1
        value, dz = head_loss()(z, y_, w)
        return value, (dz * np.nan if calls["n"] == 5 else dz)  # a NaN gradient

    monkeypatch.setattr(model, "_head_loss", lambda: _Wrapped(faulty))
    with _divergence_warning():
        model.fit(X, y)
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(X)) <= {"up", "down"}


# ---------------------------------------------------------- KeyboardInterrupt
def _interrupt_in_epoch(monkeypatch, model, epoch, step_in_epoch, steps_per_epoch):
    calls = {"n": 0}
    target = (epoch - 1) * steps_per_epoch + step_in_epoch
    step = type(model)._step

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == target:
            raise KeyboardInterrupt
        return step(model, *args, **kwargs)

    monkeypatch.setattr(model, "_step", interrupted)
    _per_batch(model)
    return calls


def _make_interruptible(**kw):
    params = dict(hidden_size=5, batch_size=10, max_iter=10, random_state=0)
    params.update(kw)
    return _regressor(**params)


@_MAX_ITER_WARNING
@pytest.mark.parametrize("step_in_epoch", [2, 4])
def test_keyboard_interrupt_keeps_the_last_complete_epoch(monkeypatch, step_in_epoch):
    X, y = _data()  # 40 samples, 4 steps per epoch
    model = _make_interruptible()
    _interrupt_in_epoch(monkeypatch, model, 3, step_in_epoch, 4)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    monkeypatch.undo()
    twin = _make_interruptible(max_iter=2).fit(X, y)
    np.testing.assert_array_equal(_flat(model), _flat(twin))
    assert model.n_iter_ == twin.n_iter_ == 2
    assert model.loss_curve_ == twin.loss_curve_
    assert model.t_ == twin.t_
    np.testing.assert_array_equal(model.predict(X), twin.predict(X))
    # still usable, and as if the interrupted epoch had not begun: the
    # optimiser's state and the shuffling's random state were rolled back too
    model.partial_fit(X, y)
    twin.partial_fit(X, y)
    assert model.n_iter_ == 3
    np.testing.assert_array_equal(_flat(model), _flat(twin))


@_MAX_ITER_WARNING
def test_interrupted_refit_keeps_the_new_fits_last_epoch(monkeypatch):
    """A fitted model refit (warm_start=False) on other data and interrupted
    in epoch 3 of the refit: ``_fit`` re-initialises the network before
    training, so the model holds the *new* fit's epoch 2 — not the old
    model, and never a mixture of the two."""
    X_old, y_old = _data(seed=1)
    X_new, y_new = _data(seed=2)
    model = _make_interruptible(random_state=1).fit(X_old, y_old)
    old = _flat(model)
    old_pred = model.predict(X_new)
    model.set_params(random_state=0)
    _interrupt_in_epoch(monkeypatch, model, 3, 2, 4)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X_new, y_new)
    monkeypatch.undo()
    new = _flat(_make_interruptible(max_iter=2).fit(X_new, y_new))
    state = _flat(model)
    candidates = {"old fit": old, "new fit, epoch 2": new}
    matches = [name for name, c in candidates.items() if np.array_equal(state, c)]
    assert matches == ["new fit, epoch 2"]
    assert model.n_iter_ == 2
    assert not np.array_equal(model.predict(X_new), old_pred)


# ------------------------------------------------------------------ threads
@_MAX_ITER_WARNING
@pytest.mark.parametrize(
    "config",
    [
        dict(cell="gru"),
        dict(cell="rnn", num_layers=2, bidirectional=True, output="sequence"),
    ],
)
def test_concurrent_predict_equals_serial(config):
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(t, 3)) for t in rng.randint(1, 300, size=40)]
    if config.get("output") == "sequence":
        y = [x.sum(axis=1) for x in X]
    else:
        y = np.array([x.sum() for x in X])
    model = _regressor(hidden_size=8, max_iter=2, random_state=0, **config)
    model.fit(X, y)
    # each thread its own inputs (overlapping subsets in other orders), so
    # that state shared between calls would show as another thread's result
    subsets = [
        [X[j] for j in np.random.RandomState(i).permutation(40)[: 10 + 3 * i]]
        for i in range(8)
    ]
    serial = [model.predict(s) for s in subsets]
    results = [None] * 8
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        for _ in range(3):
            results[i] = model.predict(subsets[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, s in zip(results, serial):
        if isinstance(s, list):
            assert len(r) == len(s)
            assert all(np.array_equal(a, b) for a, b in zip(r, s))
        else:
            assert np.array_equal(r, s)


@_MAX_ITER_WARNING
def test_concurrent_fits_equal_sequential_fits():
    """Two estimators fitted in two threads at once get the weights that the
    same fits get one after the other. Fits outside the main thread hold
    BLAS to one thread (bit-identical at the same thread count), so
    the sequential fits also run in a worker thread, one at a time."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 12, 3))
    y_reg = X.sum(axis=(1, 2))
    y_clf = np.where(X[:, :, 0].sum(axis=1) > 0, "a", "b")

    def makes():
        return [
            (
                _regressor(hidden_size=6, max_iter=3, batch_size=16, random_state=0),
                y_reg,
            ),
            # the same architecture (so the same flat parameter size) as
            # the regressor: state wrongly shared between fits would fit both
            (
                SequenceClassifier(
                    hidden_size=6, max_iter=3, batch_size=16, random_state=1
                ),
                y_clf,
            ),
        ]

    def fit(model, y):
        # 3 epochs end with the max_iter warning, ignored by the test's mark:
        # warnings.catch_warnings() in the threads would race on the global
        # filter list (it is not thread-safe before Python 3.14)
        model.fit(X, y)

    sequential = makes()
    for model, y in sequential:
        t = threading.Thread(target=fit, args=(model, y))
        t.start()
        t.join()
    concurrent = makes()
    threads = [threading.Thread(target=fit, args=mv) for mv in concurrent]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (a, _), (b, _) in zip(sequential, concurrent):
        assert a.n_iter_ == b.n_iter_ == 3
        np.testing.assert_array_equal(_flat(a), _flat(b))


@_MAX_ITER_WARNING
@pytest.mark.parametrize("k", [1, 3])
def test_loss_is_set_when_the_first_epoch_diverges(monkeypatch, k):
    """Divergence before any epoch completes leaves loss_ the loss at the
    weights kept, over the training set, as an epoch counts it: squared
    error / 2 plus the L2 penalty of each batch of 10, computed here from
    predict."""
    X, y = _data()
    model = _regressor(
        hidden_size=5, batch_size=10, max_iter=10, random_state=0, dtype="float64"
    )
    _nan_at_loss(monkeypatch, model, k)
    with _divergence_warning():
        model.fit(X, y)
    assert model.n_iter_ == 0 and model.loss_curve_ == []
    squares = sum(
        (v.astype(np.float64) ** 2).sum()
        for name, v in model.coefs_.items()
        if "weight" in name
    )
    expected = (
        0.5 * np.mean((model.predict(X) - y) ** 2) + model.alpha / 2 * squares / 10
    )
    np.testing.assert_allclose(model.loss_, expected, rtol=1e-12)


@_MAX_ITER_WARNING
def test_a_finite_loss_past_the_precision_is_divergence():
    """Full-batch SGD at a learning rate of 1: the losses are 14.9, 4.7 and
    then 5.5e17, finite but more than 1/eps (4.5e15 in float64) times the
    largest before. The update that led there is undone: the weights are
    those after one update, whose loss the second epoch measured."""
    X, y = _data(n=20)

    def make(max_iter=10):
        return _regressor(
            cell="rnn",
            activation="identity",
            hidden_size=4,
            solver="sgd",
            momentum=0.0,
            learning_rate_init=1.0,
            clip_norm=None,
            batch_size=20,
            max_iter=max_iter,
            random_state=0,
        )

    model = make()
    with _divergence_warning():
        model.fit(X, y)
    assert model.n_iter_ == 2
    with _divergence_warning():  # its last update is the one undone, too
        twin = make(max_iter=2).fit(X, y)
    assert model.loss_curve_ == twin.loss_curve_
    np.testing.assert_array_equal(_flat(model), _flat(twin))
    assert model.loss_ == model.loss_curve_[1] < 10
    np.testing.assert_array_equal(_flat(model), _flat(make(max_iter=1).fit(X, y)))
    assert model.score(X, y) > 0.5


def _diverging_regressor(**params):
    """Full-batch SGD at a learning rate of 1e4 on a relu RNN: on the binary
    sum below, the loss after the first update is not finite."""
    return _regressor(
        cell="rnn",
        activation="relu",
        solver="sgd",
        learning_rate_init=1e4,
        clip_norm=None,
        random_state=0,
        **params,
    )


@pytest.mark.parametrize("max_iter", [1, 3])
def test_the_last_update_of_a_fit_is_checked(max_iter):
    """Whether the update that diverges is the call's last (max_iter=1) or
    the next epoch's first step finds it (max_iter=3), it is undone: the
    initial weights stay, and the predictions are finite."""
    X, y = make_binary_sum(n_samples=100, n_timesteps=10, random_state=0)
    model = _diverging_regressor(max_iter=max_iter)
    with _divergence_warning():
        model.fit(X, y)
    assert model.n_iter_ == 1
    initial = _twin_for_steps(_diverging_regressor, X, y, 0)
    np.testing.assert_array_equal(_flat(model), _flat(initial))
    _assert_usable(model, X)
    # and training goes on from there: the next call is checked the same way
    with _divergence_warning():
        model.partial_fit(X, y)
    assert np.isfinite(model.loss_)
    np.testing.assert_array_equal(_flat(model), _flat(initial))


def test_the_last_update_of_partial_fit_is_checked():
    X, y = make_binary_sum(n_samples=100, n_timesteps=10, random_state=0)
    model = _diverging_regressor()
    with _divergence_warning():
        model.partial_fit(X, y)
    np.testing.assert_array_equal(
        _flat(model), _flat(_twin_for_steps(_diverging_regressor, X, y, 0))
    )
    _assert_usable(model, X)


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_early_stopping_never_scores_non_finite_predictions(seed):
    """The epoch's last update makes the validation predictions NaN or
    infinite (for these seeds): it is undone before the validation set is
    scored, and the fit ends with the divergence warning, not an error."""
    X, y = make_binary_sum(n_samples=100, n_timesteps=10, random_state=seed)
    model = _diverging_regressor(max_iter=3, early_stopping=True)
    model.set_params(random_state=seed)
    with _divergence_warning():
        model.fit(X, y)
    assert model.n_iter_ == len(model.validation_scores_) == 1
    assert np.isfinite(model.validation_scores_).all()
    _assert_usable(model, X)


@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("head", ["regression", "two-class", "three-class"])
def test_the_last_update_is_checked_on_the_data_loss_of_a_step(head, output):
    """The check of a call's last update reads the first batch's data loss
    from a forward pass: the loss that a training step computes there, for
    every head and output (float64, where the two agree to rounding)."""
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(L, 2)) for L in rng.randint(2, 7, size=30)]
    if head == "regression":
        y = [x.sum(axis=1) for x in X] if output == "sequence" else rng.normal(size=30)
        model = _regressor(output=output)
    else:
        n_classes = 2 if head == "two-class" else 3
        per_step = [rng.randint(0, n_classes, size=len(x)) for x in X]
        y = per_step if output == "sequence" else np.arange(30) % n_classes
        model = SequenceClassifier(output=output)
    model.set_params(
        hidden_size=4, batch_size=8, max_iter=3, dtype="float64", random_state=0
    )
    checked = []

    def spy(run, peak):
        idx = run.train[:8]
        lengths, w = run.seqs.lengths[idx], run.sample_weight[idx]
        rows = w.sum() if output == "last" else (w * lengths).sum()
        step = model._network.loss_grad(
            run.engine,
            run.seqs.values[idx],
            lengths,
            run.targets[idx],
            w / rows,
            model._head_loss(),
            None,
        )
        checked.append((model._probe_loss(run), float(step)))
        return type(model)._last_update_sound(model, run, peak)

    model._last_update_sound = spy
    with pytest.warns(ConvergenceWarning, match="Stochastic Optimizer"):
        model.fit(X, y)
    assert len(checked) == 1
    probe, step = checked[0]
    assert probe == pytest.approx(step, rel=1e-12)
