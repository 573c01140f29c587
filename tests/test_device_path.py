"""device="cuda"'s code path on the CPU.

An engine whose ``memory`` is :class:`~skrnn._engine.HostCopyMemory` computes
with NumPy but is treated as a GPU engine: parameters, optimiser state and
training data are copied to its "device" and back exactly as for CuPy.
``device="cuda"`` is pointed at it (the ``mirror`` fixture of conftest.py),
and everything must equal a CPU fit bit for bit, with the time loops run
eagerly or replayed from "graphs" as the CUDA engine does
(:class:`~skrnn._engine.cuda.StepGraphs`, with a capture that records the
kernel calls on a tape and replays them on the same arrays).
"""

import pickle
import warnings

import numpy as np
import pytest
from _device_helpers import CONFIGS, _data, _fit, _mirror_engine, _targets
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn._cells import CellSpec
from skrnn._engine import HostCopyMemory, get_engine
from skrnn._losses import HeadLoss, squared_error
from skrnn._network import Network


@pytest.mark.parametrize(
    "params", CONFIGS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items())
)
@pytest.mark.parametrize("Est", [SequenceRegressor, SequenceClassifier])
@pytest.mark.parametrize(
    "fits", [True, False], ids=["data-on-device", "data-per-batch"]
)
def test_device_path_equals_cpu_bit_for_bit(mirror, Est, params, fits):
    mirror.memory.free = 1 << 40 if fits else 0
    X, y = _data()
    y = _targets(Est, X, y, params)
    cpu = _fit(Est, X, y, **params)
    dev = _fit(Est, X, y, device="cuda", **params)
    for name, value in cpu.coefs_.items():
        assert type(dev.coefs_[name]) is np.ndarray
        np.testing.assert_array_equal(dev.coefs_[name], value, err_msg=name)
    assert dev.loss_curve_ == cpu.loss_curve_
    assert all(type(v) is float for v in dev.loss_curve_)
    np.testing.assert_array_equal(dev.predict(X), cpu.predict(X))
    # the optimiser's state is back on the host: the model pickles without a GPU
    for state in dev._optimizer.state.values():
        assert all(type(v) is np.ndarray for v in state.values() if hasattr(v, "shape"))
    again = pickle.loads(pickle.dumps(dev))
    np.testing.assert_array_equal(again.predict(X), cpu.predict(X))


def test_device_copies_once_per_fit_and_per_predict(mirror):
    X, y = _data()
    memory = mirror.memory
    model = _fit(
        SequenceRegressor, X, y, device="cuda", batch_size=5
    )  # 8 batches x 4 epochs
    # flat, weight mask, values, targets up; each epoch's loss, the outputs
    # that check the last update, then flat and the two Adam moments
    # (created on the device) down: nothing per batch, not even whether its
    # step diverged
    assert (memory.uploads, memory.downloads) == (4, 4 + 1 + 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.partial_fit(X, y)
    # now the two Adam moments go up too
    assert (memory.uploads, memory.downloads) == (4 + 6, 8 + 1 + 1 + 3)
    model.predict(X)
    assert (memory.uploads, memory.downloads) == (11, 14)  # flat up, outputs down


def test_writes_into_coefs_reach_the_device(mirror):
    X, y = _data()
    cpu = _fit(SequenceRegressor, X, y, warm_start=True)
    dev = _fit(SequenceRegressor, X, y, device="cuda", warm_start=True)
    for model in (cpu, dev):
        model.coefs_["head.bias"][:] = 3.0  # in place
        model.coefs_["weight_hh_l0"] = np.zeros_like(
            model.coefs_["weight_hh_l0"]
        )  # assigned
    np.testing.assert_array_equal(dev.predict(X), cpu.predict(X))
    for model in (cpu, dev):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
    for name, value in cpu.coefs_.items():
        np.testing.assert_array_equal(dev.coefs_[name], value, err_msg=name)


def test_divergence_on_the_device_keeps_the_last_finite_weights(mirror):
    X, y = _data()
    y = y * 1e30
    models = []
    for device in ("cpu", "cuda"):
        model = SequenceRegressor(
            cell="rnn",
            activation="relu",
            hidden_size=5,
            learning_rate_init=1e10,
            solver="sgd",
            clip_norm=None,
            max_iter=50,
            random_state=0,
            device=device,
        )
        with pytest.warns(ConvergenceWarning, match="diverged"):
            model.fit(X, y)
        assert all(np.isfinite(v).all() for v in model.coefs_.values())
        models.append(model)
    for name, value in models[0].coefs_.items():
        np.testing.assert_array_equal(models[1].coefs_[name], value, err_msg=name)


class _Fault:
    """Makes the loss, the gradient or an update of one step of one epoch
    not finite, the same step each time that epoch is run; records the
    ``checked`` argument of each epoch run."""

    def __init__(self, model, kind, epoch, step):
        self.model, self.kind, self.at = model, kind, (epoch, step)
        self.epochs = []
        self.step = -1
        real_epoch, real_step = model._epoch, model._step
        real_head_loss = model._head_loss
        real_update = model._update

        def run_epoch(*args, checked):
            self.epochs.append(checked)
            self.step = -1
            return real_epoch(*args, checked=checked)

        def run_step(*args, **kwargs):
            self.step += 1
            return real_step(*args, **kwargs)

        fault = self

        class Loss(HeadLoss):  # no compiled twin: the layer-by-layer path
            def __call__(self, z, y, w, xp=np):
                value, dz = real_head_loss()(z, y, w, xp=xp)
                if fault.now("loss"):
                    value = value * np.nan
                if fault.now("gradient"):
                    dz = dz * np.inf
                return value, dz

        def update(run, grad_check):
            finite = real_update(run, grad_check)
            if self.now("weight"):
                run.params.flat[3] = np.inf
            return finite & run.engine.xp.isfinite(run.params.flat).all()

        model._epoch, model._step = run_epoch, run_step
        model._head_loss = lambda: Loss()
        model._update = update

    def now(self, kind):
        return kind == self.kind and (self.model.n_iter_, self.step) == self.at


def _optimizer_state(model):
    return {
        (key, name): np.asarray(value).copy()
        for key, state in model._optimizer.state.items()
        for name, value in state.items()
    }


@pytest.mark.parametrize("kind", ["loss", "gradient", "weight"])
@pytest.mark.parametrize("epoch, step", [(0, 0), (0, 3), (1, 0), (2, 7)])
def test_divergence_on_the_device_stops_where_the_cpu_does(mirror, kind, epoch, step):
    """The device checks an epoch once, at its end; when a step diverged
    it runs the epoch again from its start, checking each step as the host
    does, and so stops at the same step with the same model."""
    X, y = _data()
    fits = []
    for device in ("cpu", "cuda"):
        model = SequenceRegressor(
            hidden_size=5, batch_size=5, max_iter=6, random_state=0, device=device
        )
        fault = _Fault(model, kind, epoch, step)
        with pytest.warns(ConvergenceWarning, match="diverged"):
            model.fit(X, y)
        fits.append((model, fault.epochs))
    (cpu, cpu_epochs), (dev, dev_epochs) = fits
    assert cpu_epochs == [True] * (epoch + 1)
    assert dev_epochs == [False] * (epoch + 1) + [True]
    assert dev.n_iter_ == cpu.n_iter_ == epoch
    assert dev.loss_curve_ == cpu.loss_curve_
    for name, value in cpu.coefs_.items():
        assert np.isfinite(value).all()
        np.testing.assert_array_equal(dev.coefs_[name], value, err_msg=name)
    expected = _optimizer_state(cpu)
    assert _optimizer_state(dev).keys() == expected.keys()
    for key, value in _optimizer_state(dev).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=str(key))


def test_interrupt_while_an_epoch_is_run_again_rolls_it_back(mirror):
    """A KeyboardInterrupt in the checked second run of an epoch leaves the
    model as it was before the epoch's first run."""
    X, y = _data()
    model = SequenceRegressor(
        hidden_size=5, batch_size=5, max_iter=6, random_state=0, device="cuda"
    )
    fault = _Fault(model, "loss", 1, 6)
    run_epoch, run_step = model._epoch, model._step
    before = {}

    def epoch(*args, checked):
        if model.n_iter_ == 1 and not checked:  # epoch 1's first run
            before["flat"] = np.array(
                args[0].params.flat
            )  # the weights on the "device"
            before["optimizer"] = _optimizer_state(model)
        return run_epoch(*args, checked=checked)

    def step(*args, **kwargs):
        if fault.epochs[-1] and fault.step == 4:  # the 6th step of the second run
            raise KeyboardInterrupt
        return run_step(*args, **kwargs)

    model._epoch, model._step = epoch, step
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    assert fault.epochs == [False, False, True]
    flat = np.concatenate([v.ravel() for v in model.coefs_.values()])  # storage order
    np.testing.assert_array_equal(flat, before["flat"])
    state = _optimizer_state(model)
    assert state.keys() == before["optimizer"].keys()
    for key, value in before["optimizer"].items():
        np.testing.assert_array_equal(state[key], value, err_msg=str(key))


def test_interrupted_epoch_on_the_device_is_rolled_back(mirror, monkeypatch):
    X, y = _data()
    model = _fit(SequenceRegressor, X, y, device="cuda", max_iter=1)
    before = {k: v.copy() for k, v in model.coefs_.items()}
    calls = []

    def interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    original = SequenceRegressor._step
    monkeypatch.setattr(SequenceRegressor, "_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.set_params(warm_start=True, batch_size=5).fit(X, y)
    for name, value in before.items():
        np.testing.assert_array_equal(model.coefs_[name], value, err_msg=name)


def test_network_loss_grad_outside_a_fit_fills_the_host_gradient():
    X, y = _data(n=9)
    from skrnn._data import check_sequences

    seqs = check_sequences(X)
    nets = [
        Network(
            CellSpec("gru", "tanh", True, True),
            input_size=2,
            hidden_size=3,
            num_layers=1,
            bidirectional=True,
            output="last",
            n_outputs=1,
            dtype="float64",
            random_state=0,
        )
        for _ in range(2)
    ]
    w = np.full(9, 1 / 9)
    engines_ = [get_engine("reference"), _mirror_engine(HostCopyMemory())]
    values = [
        net.loss_grad(e, seqs.values, seqs.lengths, y[:, None], w, squared_error, None)
        for net, e in zip(nets, engines_)
    ]
    assert values[0] == values[1]
    np.testing.assert_array_equal(nets[0].grad, nets[1].grad)
