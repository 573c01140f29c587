"""The compiled epoch (skrnn/_engine/_batch.pyx's ``epoch``): a fit's steps,
one per batch, in one call, against the training loop that takes them one
Python call at a time (``BaseSequenceEstimator._step``), which the rest of
the suite checks against the reference engine and finite differences.

Both paths make the same operations in the same order, but for the sum of
each batch's sample weights (NumPy sums a batch pairwise, the compiled
epoch's caller with ``np.add.reduceat``): in float64 the weights agree to
1e-12 after several epochs.
"""

import time
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn._engine import _batch, batch, get_engine


def _flat(model):
    return model._network.flat.copy()


def _per_batch(model):
    model._compiled_epoch = lambda run, train, peak: (False, None)
    return model


def _counting(model):
    """Count the epochs ``model`` runs compiled (in ``model.compiled_``)."""
    real = model._compiled_epoch
    model.compiled_ = 0

    def counting(run, train, peak):
        compiled, loss = real(run, train, peak)
        model.compiled_ += compiled
        return compiled, loss

    model._compiled_epoch = counting
    return model


def _data(n=45, T=7, D=2, seed=0, output="last", classes=None):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(2, T + 1, size=n)
    X = [rng.normal(size=(L, D)) for L in lengths]
    if output == "sequence":
        y = [np.cumsum(x[:, 0]) for x in X]
    elif classes:
        y = np.array([int(abs(x[:, 0].sum()) * 3) % classes for x in X])
    else:
        y = np.array([x[:, 0].sum() + 0.5 * x[:, 1].mean() for x in X])
    return X, y


def _fit_both(make, X, y, **fit_params):
    """The same model fitted in compiled epochs and step by step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        compiled = _counting(make()).fit(X, y, **fit_params)
        stepped = _per_batch(make()).fit(X, y, **fit_params)
    assert compiled.compiled_ == compiled.n_iter_ > 0, "the compiled epoch did not run"
    return compiled, stepped


def _assert_same(compiled, stepped, rtol=1e-12):
    assert compiled.n_iter_ == stepped.n_iter_
    assert compiled.t_ == stepped.t_
    np.testing.assert_allclose(_flat(compiled), _flat(stepped), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(
        compiled.loss_curve_, stepped.loss_curve_, rtol=rtol, atol=rtol
    )
    for key, value in compiled._optimizer.state["coefs"].items():
        other = stepped._optimizer.state["coefs"][key]
        np.testing.assert_allclose(value, other, rtol=rtol, atol=rtol, err_msg=key)


CELLS = [
    dict(cell="rnn"),
    dict(cell="rnn", activation="relu"),
    dict(cell="gru"),
    dict(cell="gru", reset_after=False),
    dict(cell="lstm"),
]


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize(
    "solver",
    [
        dict(solver="adam"),
        dict(solver="sgd", learning_rate_init=0.05),
        dict(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.05),
        dict(solver="rprop", learning_rate_init=0.01),
    ],
    ids=["adam", "nesterov", "momentum", "rprop"],
)
def test_compiled_epoch_equals_the_steps(cell, solver):
    """Every cell and optimiser; the L2 penalty and clipping at work (the
    clip norm is below the gradients' norms); batches of several lengths
    and a last, smaller batch."""
    X, y = _data()

    def make():
        return SequenceRegressor(
            hidden_size=5,
            batch_size=10,
            max_iter=4,
            alpha=0.01,
            clip_norm=0.05,
            random_state=0,
            **cell,
            **solver,
        )

    _assert_same(*_fit_both(make, X, y))


@pytest.mark.parametrize(
    "params",
    [
        dict(num_layers=2, bidirectional=True),
        dict(output="sequence"),
        dict(output="sequence", num_layers=2, loss="absolute_error"),
        dict(loss="quantile", quantile=[0.1, 0.5, 0.9]),
        dict(loss="gaussian"),
        dict(loss="poisson"),
        dict(shuffle=False, clip_norm=None, alpha=0.0),
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_compiled_epoch_equals_the_steps_for_every_head(params):
    output = params.get("output", "last")
    X, y = _data(output=output)
    if params.get("loss") == "poisson":
        y = np.abs(y)

    def make():
        kw = dict(cell="gru", hidden_size=4, batch_size=8, max_iter=3)
        kw.update(params)
        return SequenceRegressor(random_state=0, **kw)

    _assert_same(*_fit_both(make, X, y))


@pytest.mark.parametrize("classes", [2, 3])
def test_compiled_epoch_equals_the_steps_for_classifiers(classes):
    X, y = _data(classes=classes)

    def make():
        return SequenceClassifier(
            cell="lstm", hidden_size=4, batch_size=8, max_iter=3, random_state=0
        )

    _assert_same(*_fit_both(make, X, y))


def test_compiled_epoch_with_sample_weights_and_a_weightless_batch():
    """Uneven weights, zeros among them, and a whole batch of zero weight,
    which neither path steps on."""
    X, y = _data(n=40)
    w = np.random.RandomState(1).uniform(0.1, 3.0, size=40)
    w[::7] = 0.0

    def make():
        return SequenceRegressor(
            hidden_size=4, batch_size=10, max_iter=3, shuffle=False, random_state=0
        )

    w[10:20] = 0.0  # the second batch: no step
    compiled, stepped = _fit_both(make, X, y, sample_weight=w)
    _assert_same(compiled, stepped)
    assert compiled.t_ == 3 * 40 and compiled._optimizer.state["coefs"]["t"] == 9


def test_compiled_epoch_in_float32():
    X, y = _data()

    def make():
        return SequenceRegressor(
            cell="lstm",
            hidden_size=6,
            batch_size=10,
            max_iter=3,
            dtype="float32",
            random_state=0,
        )

    _assert_same(*_fit_both(make, X, y), rtol=2e-5)


def test_compiled_epoch_continues_partial_fit():
    """partial_fit runs one compiled epoch per call, the optimiser's step
    count carried from call to call."""
    X, y = _data()
    models = [
        SequenceRegressor(hidden_size=4, batch_size=10, random_state=0)
        for _ in range(2)
    ]
    _counting(models[0])
    _per_batch(models[1])
    for _ in range(3):
        for m in models:
            m.partial_fit(X, y)
    assert models[0].compiled_ == 3
    _assert_same(*models)


@pytest.mark.parametrize("kept_bytes", [1 << 20, 0])
def test_partial_fit_keeps_small_rooms(kept_bytes, monkeypatch):
    """A network keeps its training passes' rooms between calls where they
    take at most KEPT_ROOM_BYTES: a call on the shapes of the call before
    lays out no room; the steps are the same as with none kept."""
    from skrnn._engine import cpu

    monkeypatch.setattr(cpu, "KEPT_ROOM_BYTES", kept_bytes)
    built = []
    real_init = batch._Room.__init__

    def counting_init(self, *args):
        built.append(self)
        real_init(self, *args)

    monkeypatch.setattr(batch._Room, "__init__", counting_init)
    rng = np.random.RandomState(0)
    # batches of (steps, sequences) (7, 10) and (7, 5), then (12, 10)
    short, longer = rng.normal(size=(45, 7, 2)), rng.normal(size=(60, 12, 2))
    models = [
        SequenceRegressor(hidden_size=4, batch_size=10, random_state=0)
        for _ in range(2)
    ]
    _per_batch(models[1])
    laid_out = []
    for X in (short, short, longer, short):
        y = X[:, :, 0].sum(axis=1)
        built.clear()
        models[0].partial_fit(X, y)
        laid_out.append(len(built))
        kept = [
            room
            for carver in models[0]._network.rooms.values()
            for room in carver.shapes.values()
        ]
        assert all(room in kept for room in built) if kept_bytes else not kept
        models[1].partial_fit(X, y)
        _assert_same(*models)
    # the longer sequences take a larger block, where the short ones' rooms
    # are laid out again
    assert laid_out == ([2, 0, 1, 2] if kept_bytes else [2, 2, 1, 2])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("learning_rate", [1e4, 1e8])
def test_compiled_epoch_diverges_where_the_steps_do(learning_rate):
    """A step whose loss is not finite, or past what the weights can
    compare, undoes the update before it; an update to a non-finite weight
    is undone; the fit stops there on both paths, with the same weights."""
    X, y = _data(n=30)

    def make():
        return SequenceRegressor(
            cell="rnn",
            activation="relu",
            hidden_size=4,
            solver="sgd",
            learning_rate_init=learning_rate,
            clip_norm=None,
            batch_size=10,
            max_iter=30,
            random_state=0,
        )

    with pytest.warns(ConvergenceWarning, match="Training diverged"):
        compiled = _counting(make()).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="Training diverged"):
        stepped = _per_batch(make()).fit(X, y)
    assert compiled.n_iter_ < 30
    np.testing.assert_array_equal(_flat(compiled), _flat(stepped))
    assert np.isfinite(_flat(compiled)).all()
    assert compiled.loss_curve_ == stepped.loss_curve_
    assert (
        compiled._optimizer.state["coefs"]["velocity"].tolist()
        == stepped._optimizer.state["coefs"]["velocity"].tolist()
    )


class _Interrupting:
    """A batch's room that raises KeyboardInterrupt when the compiled epoch
    reads it for the ``at``-th time."""

    reads = 0

    def __init__(self, room, at):
        self._room, self._at = room, at

    def __getattr__(self, name):
        if name == "n_live":
            _Interrupting.reads += 1
            if _Interrupting.reads == self._at:
                raise KeyboardInterrupt
        return getattr(self._room, name)


def test_keyboard_interrupt_in_a_compiled_epoch_rolls_it_back(monkeypatch):
    """Interrupted in its third epoch, a fit keeps what its second left:
    the weights, the optimiser's state and the shuffling's random state,
    as a fit of two epochs has them."""
    X, y = _data(n=40)
    real_room = batch._room
    _Interrupting.reads = 0
    monkeypatch.setattr(
        batch, "_room", lambda *args: _Interrupting(real_room(*args), at=2 * 4 + 3)
    )

    def make(max_iter):
        return SequenceRegressor(
            hidden_size=4, batch_size=10, max_iter=max_iter, random_state=0
        )

    model = _counting(make(10))
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    monkeypatch.setattr(batch, "_room", real_room)
    with pytest.warns(ConvergenceWarning):
        twin = make(2).fit(X, y)
    assert model.n_iter_ == 2 and model.compiled_ == 2
    np.testing.assert_array_equal(_flat(model), _flat(twin))
    assert model.t_ == twin.t_
    assert model._optimizer.state["coefs"]["t"] == twin._optimizer.state["coefs"]["t"]
    # the next epoch shuffles as the twin's
    model.partial_fit(X, y)
    twin.partial_fit(X, y)
    np.testing.assert_array_equal(_flat(model), _flat(twin))


@pytest.mark.parametrize(
    "params, compiled",
    [
        (dict(), True),
        (dict(bptt_steps=3), False),  # windows of truncated BPTT
        (dict(bptt_steps=7), True),  # one window: the whole sequence
        (dict(verbose=2), False),  # a progress bar drawn per batch
        (dict(batch_size=64, n=64), True),  # batches of two shares
    ],
    ids=lambda v: str(v),
)
def test_where_the_compiled_epoch_runs(params, compiled, monkeypatch, capsys):
    """The compiled epoch runs where every sequence is one window, and
    the steps are taken one call at a time elsewhere."""
    from skrnn import _network

    monkeypatch.setattr(_network, "MIN_SHARE_WORK", 1)
    monkeypatch.setattr(_network, "TRAINING_SHARE_WORK", 1)
    monkeypatch.setattr(_network, "EPOCH_SHARE_WORK", 1)
    params = dict(params)
    X, y = _data(n=params.pop("n", 40))
    model = _counting(
        SequenceRegressor(hidden_size=4, max_iter=2, random_state=0, **params)
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert model.compiled_ == (2 if compiled else 0)


def _two_shares(monkeypatch, workers=2, sleeps=(0.002, 0.0)):
    """Batches of 8 sequences or more are computed in two shares, with
    ``workers`` threads at hand for the compiled epoch; the thread that
    computes a batch's first or second share sleeps ``sleeps[0]`` or
    ``sleeps[1]`` seconds before it starts. A first share that sleeps
    leaves the second to the partner thread, where there is one; a second
    share that sleeps longer makes the main thread wait for it."""
    from skrnn import _network

    monkeypatch.setattr(_network, "MIN_SHARE", 4)
    monkeypatch.setattr(_network, "MIN_SHARE_WORK", 1)
    monkeypatch.setattr(_network, "TRAINING_SHARE_WORK", 1)
    monkeypatch.setattr(_network, "EPOCH_SHARE_WORK", 1)
    monkeypatch.setattr(batch, "workers_at_hand", lambda: workers)
    real_room = batch._room
    monkeypatch.setattr(
        batch,
        "_room",
        lambda arch, share, *args: _Proxy(
            real_room(arch, share, *args), time.sleep, sleeps[share]
        ),
    )


class _Proxy:
    """A batch's room that calls ``act(arg)`` whenever its ``n_live`` is
    read: once by every share computed in it, before the share starts."""

    def __init__(self, room, act, arg):
        self._room, self._act, self._arg = room, act, arg

    def __getattr__(self, name):
        if name == "n_live":
            self._act(self._arg)
        return getattr(self._room, name)


def _raise(error):
    raise error


class _Partner:
    """The compiled epoch's partner, counting the second shares it computes;
    ``then(sync)`` runs first."""

    def __init__(self, then=None):
        self.real, self.then, self.shares = _batch.epoch_partner, then, 0

    def __call__(self, rooms, *args):
        sync = args[-2]
        if self.then is not None:
            self.then(sync)
        self.real(rooms, *args)
        self.shares += int(sync[_batch.SYNC_SLOTS + len(rooms) :].sum())


@pytest.mark.parametrize(
    "workers, sleeps", [(1, (0.0, 0.0)), (2, (0.002, 0.0)), (2, (0.002, 0.006))]
)
@pytest.mark.parametrize(
    "params",
    [
        dict(cell="gru"),
        dict(cell="lstm", num_layers=2, bidirectional=True),
        dict(cell="rnn", output="sequence", alpha=0.01, clip_norm=0.05),
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_compiled_epoch_in_two_shares_equals_the_steps(
    params, workers, sleeps, monkeypatch
):
    """Batches split in two shares (the last, of 5 sequences, in one), the
    second computed on a thread of its own where two workers are at hand,
    else after the first: the steps' gradients, added in the same order."""
    _two_shares(monkeypatch, workers, sleeps)
    partner = _Partner()
    monkeypatch.setattr(_batch, "epoch_partner", partner)
    X, y = _data(n=45, output=params.get("output", "last"))

    def make():
        return SequenceRegressor(
            hidden_size=5, batch_size=10, max_iter=3, random_state=0, **params
        )

    _assert_same(*_fit_both(make, X, y))
    # 4 batches of two shares per epoch
    assert partner.shares == 0 if workers == 1 else 0 < partner.shares <= 3 * 4


def test_compiled_epoch_in_two_shares_with_a_late_partner(monkeypatch):
    """A partner that comes after the epoch's first batches finds their
    second shares taken by the main thread and computes later ones."""

    def wait_for_batch_3(sync):
        while sync[_batch.PUBLISHED] < 3:
            time.sleep(1e-4)

    _two_shares(monkeypatch)
    partner = _Partner(then=wait_for_batch_3)
    monkeypatch.setattr(_batch, "epoch_partner", partner)
    X, y = _data(n=100)

    def make():
        return SequenceRegressor(
            cell="lstm", hidden_size=4, batch_size=10, max_iter=2, random_state=0
        )

    _assert_same(*_fit_both(make, X, y))
    assert 1 <= partner.shares <= 2 * (10 - 2)


def test_compiled_epoch_raises_what_its_partner_raised(monkeypatch):
    """A second share that fails on the partner's thread: the fit raises
    its error (the main thread does not wait for the share)."""
    _two_shares(monkeypatch)
    real = _batch.epoch_partner

    def failing(rooms, *args):
        error = ValueError("a share failed")
        real([r and _Proxy(r, _raise, error) for r in rooms], *args)

    monkeypatch.setattr(_batch, "epoch_partner", failing)
    X, y = _data(n=40)
    model = SequenceRegressor(cell="gru", hidden_size=4, batch_size=10, max_iter=3)
    with pytest.raises(ValueError, match="a share failed"):
        model.fit(X, y)


def test_the_compiled_passes_split_smaller_batches():
    """A batch of 64 sequences of 50 steps through an RNN of 32 units on 8
    features (4.1 million multiply-adds forward) runs in two shares in the
    compiled passes, which hand a share to the other thread without the
    GIL, and in one where Python runs between the layers (truncated BPTT's
    windows); one of 20 steps (1.6 million) in two inside the compiled
    epoch only; 63 sequences are too few for two shares of MIN_SHARE. A fit
    shares the threads out as its passes split its batches."""
    from skrnn._network import MIN_SHARE, TRAINING_SHARES

    X = np.random.RandomState(0).normal(size=(64, 50, 8))
    model = SequenceRegressor(cell="rnn", hidden_size=32, max_iter=1)
    with pytest.warns(ConvergenceWarning):
        net = model.fit(X, X.sum(axis=(1, 2)))._network
    assert net.forward_work(64, 50) == 64 * 50 * 32 * (8 + 32)
    two = TRAINING_SHARES
    for passes, shares in [("epoch", two), ("compiled", two), ("layers", 1)]:
        assert net.training_shares(64, 50, passes) == shares
        assert net.training_split(64, 50, passes) == (shares, shares == 1)
        assert net.training_shares(2 * MIN_SHARE - 1, 50, passes) == 1
    assert net.training_shares(64, 20, "epoch") == TRAINING_SHARES
    assert net.training_shares(64, 20, "compiled") == 1
    engine, loss = get_engine("cpu"), model._head_loss()
    assert net.training_passes(engine, loss, 50, None) == "epoch"
    assert net.training_passes(engine._replace(epoch_pass=None), loss, 50, None) == (
        "compiled"
    )
    assert net.training_passes(engine, loss, 50, 10) == "layers"


@pytest.mark.parametrize(
    "make",
    [
        lambda: SequenceRegressor(cell="gru", hidden_size=4),
        lambda: SequenceRegressor(cell="lstm", output="sequence", num_layers=2),
        lambda: SequenceRegressor(loss="quantile", quantile=[0.2, 0.8]),
        lambda: SequenceClassifier(cell="rnn", bidirectional=True),
        lambda: SequenceClassifier(cell="lstm", output="sequence"),
    ],
    ids=["gru", "lstm-sequence", "quantile", "binary-bidirectional", "steps"],
)
def test_the_last_update_check_reads_the_compiled_pass(make, monkeypatch):
    """The check of a call's last update (the loss of the first training
    batch, from a forward pass) gets from the compiled network pass's
    forward half the loss that the network's forward pass and the head's
    loss give, and NaN for an output that is not finite even where the loss
    of it is finite (the log-loss of an infinite logit)."""
    from skrnn import _network

    output = make().output
    classes = 2 if isinstance(make(), SequenceClassifier) else None
    X, y = _data(n=30, output=output, classes=classes)
    if classes and output == "sequence":
        y = [(x[:, 0] > 0).astype(int) for x in X]
    estimator = type(make())
    real_probe, probes = estimator._probe_loss, {}

    def probing(compiled):
        def probe(self, run):
            loss = real_probe(self, run)
            bias = run.params.views["head.bias"]
            kept = bias.copy()
            bias[...] = np.inf
            probes[compiled] = (loss, real_probe(self, run))
            bias[...] = kept
            return loss

        return probe

    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(_network.Network, "data_loss", lambda *a: None)
        monkeypatch.setattr(estimator, "_probe_loss", probing(compiled))
        model = make().set_params(
            max_iter=2, batch_size=10, random_state=0, dtype="float64"
        )
        with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
            model.fit(X, y)
    assert np.isfinite(probes[True][0])
    np.testing.assert_allclose(probes[True][0], probes[False][0], rtol=1e-12)
    assert np.isnan(probes[True][1]) and np.isnan(probes[False][1])
