"""The network: stacked recurrent layers, both directions, and the output head.

All parameters live in one flat vector; ``coefs`` (the estimators'
``coefs_``) maps PyTorch's state-dict names to views into it. The
optimisers, gradient clipping, the L2 penalty and the divergence check
then each work on one array, whatever the number of layers.

The math is written against the engine's array module ``engine.xp``. An
engine whose arrays live elsewhere (the GPU's, ``engine.memory``) computes
on :class:`DeviceParams`, a copy of the vector in its memory: made from the
host vector when a prediction or a fit starts (so writes into ``coefs``
count), kept for the whole fit by :meth:`Network.on_device`, and copied back
when it ends. ``coefs`` and everything pickled stay NumPy arrays.
"""

from contextlib import contextmanager

import numpy as np
from sklearn.utils import check_random_state

from ._cells import CELLS, N_GATES, init_params, param_names, param_suffix, state_size
from ._docs import fill_doc
from ._engine.engine import Architecture
from ._threads import map_threads

# Inference runs over windows of at most INFERENCE_WINDOW steps, carrying
# the state, so that its memory grows with N * H rather than N * T * H; in
# host memory, in blocks of sequences whose one step takes at most
# INFERENCE_BYTES, and over fewer steps when a block's window of inputs and
# outputs would take more.
INFERENCE_WINDOW = 128
INFERENCE_BYTES = 8 << 20
# Work is split between threads only in shares of at least MIN_SHARE
# sequences and MIN_SHARE_WORK multiply-adds of the recurrent layers'
# forward pass: below, handing a share to a thread costs more than it saves.
MIN_SHARE = 32
MIN_SHARE_WORK = 4_000_000
# The compiled training passes hand a share to another thread without the
# GIL: they split batches in shares of TRAINING_SHARE_WORK or more where
# each batch is a call (its second share on a thread of the pool), and of
# EPOCH_SHARE_WORK or more inside the compiled epoch, whose second thread
# waits for the next batch spinning. There, every share of 0.5 million
# multiply-adds or more took 0.61-0.93 of one thread's time, smaller ones up
# to 1.49 (benchmarks/bench_training_split.py); one call per share and
# batch, shares of 0.5-1.35 million took 1.09-1.63 times as long as one
# thread, of 2-2.7 million 1.00-1.07 (its --per-batch).
TRAINING_SHARE_WORK = 2_000_000
EPOCH_SHARE_WORK = 500_000
# A training batch's gradient is the sum of this many shares' (on the host,
# for batches as large as that rule allows), whatever the number of threads,
# so that a fit does not depend on the machine.
TRAINING_SHARES = 2


class DeviceParams:
    """A network's parameter vector where an engine computes on it.

    For an engine that computes in host memory (``engine.memory is None``)
    these are the network's own arrays. Otherwise ``flat`` is a copy in the
    engine's memory, taken from the host vector now, and ``grad`` and
    ``weight_mask`` (only with ``training``) live there too.

    Attributes
    ----------
    flat, grad, weight_mask : arrays of the engine's module
        The parameters, their gradient, and 1 for weights / 0 for biases.
    views, grad_views : dict of str -> array
        Views of ``flat`` and ``grad`` by parameter name.
    """

    def __init__(self, net, engine, training=False):
        self.memory = engine.memory
        if self.memory is None:
            self.flat, self.grad, self.weight_mask = net.flat, net.grad, net.weight_mask
            self.views, self.grad_views = net._views, net._grad_views
            return
        self.flat = self.memory.to_device(net.flat)
        self.views = _views_of(self.flat, net._layout)
        self.grad = self.weight_mask = self.grad_views = None
        if training:
            self.grad = engine.xp.zeros_like(self.flat)
            self.grad_views = _views_of(self.grad, net._layout)
            self.weight_mask = self.memory.to_device(net.weight_mask)

    def to_host(self, a):
        """``a`` (an array of the engine's module) as a NumPy array."""
        return np.asarray(a) if self.memory is None else self.memory.to_host(a)

    def download(self, net):
        """Copy ``flat`` back into the network's host vector."""
        if self.memory is not None:
            net.flat[...] = self.memory.to_host(self.flat)


def take(xp, a, rows, steps=None):
    """``a[rows]`` (``a[rows, steps]`` with a slice ``steps``) as an array of
    ``xp``, gathered where ``a`` lives (``rows`` is a host array)."""
    index = rows if isinstance(a, np.ndarray) else xp.asarray(rows)
    return xp.asarray(a[index] if steps is None else a[index, steps])


def _views_of(flat, layout):
    return {
        name: flat[start : start + size].reshape(shape)
        for name, start, size, shape in layout
    }


# the parameters of a batch, in the docstrings of forward and loss_grad
_BATCH = """
engine : Engine
    The engine that runs the layers.
values : ndarray of shape (N, T, D)
    Batch-major inputs (host, or already in the engine's memory).
lengths : ndarray of shape (N,)
    Valid steps per sequence (host).
"""


@fill_doc(batch=_BATCH)
class Network:
    """Recurrent layers x directions + a linear head, in PyTorch's layout.

    Parameters
    ----------
    spec : CellSpec
        The recurrent cell of every layer.
    input_size : int
        Features per step.
    hidden_size : int
        Units per layer and direction.
    num_layers : int
        Stacked layers.
    bidirectional : bool
        Whether each layer has a time-reversed direction too.
    output : {"last", "sequence"}
        Where the head reads the top layer: at each sequence's last step or
        at every step.
    n_outputs : int
        Outputs of the head.
    dtype : str or numpy dtype
        Precision of the parameters and of the computation.
    random_state : int, RandomState instance or None
        Seeds the initial weights.
    """

    def __init__(
        self,
        spec,
        *,
        input_size,
        hidden_size,
        num_layers,
        bidirectional,
        output,
        n_outputs,
        dtype,
        random_state,
    ):
        self.spec = spec
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.n_dirs = 2 if bidirectional else 1
        self.output = output
        # the name, not a numpy.dtype object: skops trusts plain strings
        self.dtype = np.dtype(dtype).name
        rng = check_random_state(random_state)
        initial = {}
        for k in range(num_layers):
            layer_input = input_size if k == 0 else hidden_size * self.n_dirs
            for d in range(self.n_dirs):
                params = init_params(spec, layer_input, hidden_size, self.dtype, rng)
                for name, value in params.items():
                    initial[name + param_suffix(k, d)] = value
        fan_in = hidden_size * self.n_dirs
        bound = 1.0 / np.sqrt(fan_in)
        for name, shape in (
            ("head.weight", (n_outputs, fan_in)),
            ("head.bias", (n_outputs,)),
        ):
            initial[name] = rng.uniform(-bound, bound, size=shape).astype(self.dtype)
        self.coefs = initial
        self._build_flat()

    @property
    def architecture(self):
        """The network apart from its parameters, as an engine's
        whole-network pass reads it."""
        return Architecture(
            self.spec,
            self.coefs["weight_ih_l0"].shape[1],
            self.hidden_size,
            self.num_layers,
            self.n_dirs,
            self.coefs["head.bias"].shape[0],
            self.output,
            self.dtype,
        )

    def _build_flat(self):
        """Move the values of ``coefs`` into one vector and make them views of it."""
        sizes = [v.size for v in self.coefs.values()]
        self.flat = np.empty(sum(sizes), dtype=self.dtype)
        self.grad = np.zeros_like(self.flat)
        # (name, start, size, shape) of each parameter in the vector
        self._layout = []
        # 1 for weights, 0 for biases: the L2 penalty applies to weights only
        self.weight_mask = np.zeros_like(self.flat)
        offset = 0
        for (name, value), size in zip(list(self.coefs.items()), sizes):
            self._layout.append((name, offset, size, value.shape))
            self.flat[offset : offset + size] = np.ravel(value)
            if "weight" in name:
                self.weight_mask[offset : offset + size] = 1
            offset += size
        self._views = _views_of(self.flat, self._layout)
        self._grad_views = _views_of(self.grad, self._layout)
        # multiply-adds of one step of the recurrent layers (forward_work)
        self._step_work = sum(
            size for name, _, size, _ in self._layout if name.startswith("weight_")
        )
        self.coefs.update(self._views)
        self._active = None
        # the compiled training passes' rooms, bound to these views, kept
        # from one fit or partial_fit call to the next (see
        # skrnn._engine.cpu.workspace)
        self.rooms = {}

    def sync(self):
        """Take in arrays a user assigned into ``coefs`` (writes into them are live)."""
        for name, view in self._views.items():
            value = self.coefs[name]
            if value is not view:
                value = np.asarray(value)
                if value.shape != view.shape:
                    raise ValueError(
                        f"coefs_[{name!r}] has shape {value.shape}, expected "
                        f"{view.shape}."
                    )
                view[...] = value
                self.coefs[name] = view

    def __getstate__(self):
        self.sync()
        state = self.__dict__.copy()
        for name in (
            "flat",
            "grad",
            "weight_mask",
            "_views",
            "_grad_views",
            "_layout",
            "_step_work",
            "_active",
            "rooms",
        ):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build_flat()

    @contextmanager
    def on_device(self, engine):
        """Keep a copy of the parameters in the engine's memory while training.

        Yields the :class:`DeviceParams` that :meth:`loss_grad` and
        :meth:`forward` then use, and that the optimiser updates; when the
        block ends, however it ends, its ``flat`` is copied back into the
        host vector (and so into ``coefs``).
        """
        self.sync()
        params = DeviceParams(self, engine, training=True)
        self._active = params
        try:
            yield params
        finally:
            self._active = None
            params.download(self)

    def _device_params(self, engine, training=False):
        if self._active is not None:
            return self._active
        self.sync()
        return DeviceParams(self, engine, training=training)

    def _params(self, p, k, d):
        suffix = param_suffix(k, d)
        return {n: p.views[n + suffix] for n in param_names(self.spec)}

    def _windows(self, T, size):
        if not size or self.n_dirs == 2:
            return [(0, T)]
        return [(t0, min(t0 + size, T)) for t0 in range(0, T, size)]

    def _run_layers(self, engine, p, x, lengths, states, keep_cache, keep_top=True):
        """Forward through every layer over one window (time-major).

        ``keep_top=False``: the top layer's outputs are not kept (None is
        returned for them), only its states.
        """
        caches = []
        for k in range(self.num_layers):
            keep = keep_top or k < self.num_layers - 1
            outs = []
            for d in range(self.n_dirs):
                out, states[k][d], cache = engine.forward(
                    self.spec,
                    self._params(p, k, d),
                    x,
                    lengths,
                    states[k][d],
                    reverse=bool(d),
                    keep_cache=keep_cache,
                    keep_outputs=keep,
                )
                outs.append(out)
                caches.append(cache)
            if not keep:
                x = None
            else:
                x = outs[0] if self.n_dirs == 1 else engine.xp.concatenate(outs, axis=2)
        return x, caches

    def _backward_layers(
        self, engine, p, grad_views, caches, d_top=None, d_last=None, input_grad=False
    ):
        """Backpropagate a window's gradient into ``grad_views``: ``d_top``
        with respect to the top layer's outputs (T, N, H * dirs), ``d_last``
        with respect to its final states (N, H * dirs); None: zero. With
        ``input_grad``, returns the gradient with respect to the bottom
        layer's inputs (T, N, D)."""
        H = self.hidden_size
        xp = engine.xp
        for k in reversed(range(self.num_layers)):
            d_below = None
            for d in range(self.n_dirs):
                cols = slice(d * H, (d + 1) * H)
                d_out = (
                    None if d_top is None else xp.ascontiguousarray(d_top[:, :, cols])
                )
                # the inputs' gradient only where a layer below needs it;
                # each cache is used once
                dx, _, grads = engine.backward(
                    self.spec,
                    self._params(p, k, d),
                    caches[k * self.n_dirs + d],
                    d_out,
                    None if d_last is None else self._state_grad(xp, d_last[:, cols]),
                    need_dx=k > 0 or input_grad,
                    consume_cache=True,
                )
                for name, g in grads.items():
                    grad_views[name + param_suffix(k, d)] += g
                if k > 0 or input_grad:
                    d_below = dx if d_below is None else d_below + dx
            d_top, d_last = d_below, None
        return d_top

    @staticmethod
    def _sequence_rows(xp, top, lengths, t0, t1):
        """Where the head reads the top layer within a window with
        ``output="sequence"``: every valid step.

        Returns ``(features (R, H*dirs), (steps, samples))``: the rows'
        positions in ``top`` as index arrays of ``xp``.
        """
        valid = np.arange(t1 - t0)[:, None] < (lengths - t0)[None, :]
        steps, samples = (xp.asarray(i) for i in np.nonzero(valid))
        return top[steps, samples], (steps, samples)

    @staticmethod
    def _window_lengths(lengths, t0, t1):
        """Each sequence's valid steps within the window [t0, t1)."""
        if t0 == 0 and t1 >= lengths[0]:  # sorted longest first: one window
            return lengths
        return np.clip(lengths - t0, 0, t1 - t0)

    def _prepare(self, xp, values, rows, steps):
        """The ``steps`` (a slice) of the sequences ``rows`` time-major, as
        engines want them.

        ``values`` may be a host array or one of ``xp`` already.
        """
        x = take(xp, values, rows, steps).transpose(1, 0, 2)
        return xp.ascontiguousarray(x, dtype=self.dtype)

    def _final_states(self, xp, states):
        """The top layer's final h, its directions side by side (N, H * dirs)
        (an LSTM's state holds c after h)."""
        top = [state[:, : self.hidden_size] for state in states[-1]]
        return top[0] if self.n_dirs == 1 else xp.concatenate(top, axis=1)

    def _state_grad(self, xp, d_h):
        """The gradient of a layer's final state from that of its h: zero
        for the state's other parts (the LSTM's c)."""
        parts = CELLS[self.spec.cell].state_parts
        if parts == 1:
            return d_h
        return xp.concatenate([d_h] + [xp.zeros_like(d_h)] * (parts - 1), axis=1)

    def _zero_states(self, xp, n):
        width = state_size(self.spec.cell, self.hidden_size)
        return [
            [xp.zeros((n, width), dtype=self.dtype)] * self.n_dirs
            for _ in range(self.num_layers)
        ]

    def forward(self, engine, values, lengths):
        """Raw head outputs for a batch.

        The sequences are independent: ``engine.workers`` threads each run
        a share of them, and the outputs do not depend on that number.

        Parameters
        ----------
        %(batch)s

        Returns
        -------
        ndarray of shape (N, O) for ``output="last"``, else (N, T, O) with
        zeros at padded steps; a NumPy array whatever the engine.
        """
        p = self._device_params(engine)
        order = np.argsort(-lengths, kind="stable")
        shares = _shares(order, self._inference_shares(engine, lengths))
        parts = map_threads(
            engine.workers,
            lambda rows: self._forward_blocks(engine, p, values, lengths, rows),
            shares,
        )
        raw = np.empty((len(order),) + parts[0].shape[1:], dtype=parts[0].dtype)
        for rows, part in zip(shares, parts):
            raw[rows] = part
        return raw

    def stepper(self, engine, shift, scale, out_scale, out_shift, states, out):
        """The engine's compiled step (``engine.stepper``) of this network
        over the streams whose ``states`` (num_layers, state parts, n, H) it
        updates: the inputs go through the scalers ``shift``, ``scale``
        first, and ``out`` (n, O) receives the head's outputs times
        ``out_scale`` plus ``out_shift``. It reads the parameters in place.
        One direction only: a backward direction needs the steps to come."""
        if self.n_dirs != 1:
            raise ValueError("a bidirectional network cannot run step by step")
        self.sync()
        return engine.stepper(
            self.architecture,
            self._views,
            shift,
            scale,
            out_scale,
            out_shift,
            states,
            out,
        )

    def input_grad(self, engine, values, lengths, d_raw_of):
        """Raw head outputs for a batch, and the gradient with respect to its
        inputs of ``sum(raw * d_raw_of(raw))``: of the output (or the
        combination of outputs) that ``d_raw_of`` picks, at every step and
        feature.

        Parameters
        ----------
        %(batch)s
        d_raw_of : callable
            Takes the raw outputs ((N, O), or (N, T, O) for
            ``output="sequence"``, on the host) and returns the weights of
            the outputs, of the same shape.

        Returns
        -------
        raw : ndarray
            The raw outputs, as :meth:`forward` returns them.
        dX : ndarray of shape (N, T, D)
            The gradient, zero at padded steps; host arrays both.
        """
        xp = engine.xp
        p = self._device_params(engine)
        order = np.argsort(-lengths, kind="stable")
        lens = lengths[order]
        x = self._prepare(xp, values, order, slice(0, lens[0]))
        T, N = x.shape[:2]
        sequence = self.output == "sequence"
        states = self._zero_states(xp, N)
        top, caches = self._run_layers(
            engine, p, x, lens, states, True, keep_top=sequence
        )
        W, b = p.views["head.weight"], p.views["head.bias"]
        if sequence:
            feats, where = self._sequence_rows(xp, top, lens, 0, T)
            raw = xp.zeros((T, N, W.shape[0]), dtype=self.dtype)
            raw[where] = feats @ W.T + b
            raw = raw.transpose(1, 0, 2)
        else:
            raw = self._final_states(xp, states) @ W.T + b
        unsorted = np.empty_like(order)
        unsorted[order] = np.arange(N)
        raw = p.to_host(raw)[unsorted]
        d_raw = xp.asarray(np.asarray(d_raw_of(raw), dtype=self.dtype)[order])
        scratch = _views_of(xp.zeros_like(p.grad), self._layout)
        if sequence:
            d_top = xp.zeros(top.shape, dtype=self.dtype)
            d_top[where] = d_raw.transpose(1, 0, 2)[where] @ W
            dx = self._backward_layers(
                engine, p, scratch, caches, d_top=d_top, input_grad=True
            )
        else:
            d_last = d_raw @ W
            dx = self._backward_layers(
                engine, p, scratch, caches, d_last=d_last, input_grad=True
            )
        dX = np.zeros(values.shape, dtype=self.dtype)
        dX[:, :T] = p.to_host(dx).transpose(1, 0, 2)[unsorted]
        return raw, dX

    def max_shares(self, n_sequences, n_steps, min_work=None):
        """How many shares ``n_sequences`` sequences of up to ``n_steps``
        steps may be split into (see MIN_SHARE), each of ``min_work``
        (MIN_SHARE_WORK when None) multiply-adds or more; element-wise for
        arrays."""
        n_sequences = np.asarray(n_sequences, dtype=np.int64)
        work = self.work_shares(n_sequences, n_steps, min_work)
        return np.maximum(1, np.minimum(n_sequences // MIN_SHARE, work))

    def _inference_shares(self, engine, lengths):
        """How many shares :meth:`forward` splits sequences of ``lengths``
        into on ``engine``'s threads."""
        if engine.workers < 2 or len(lengths) < 2 * MIN_SHARE:
            return 1  # what max_shares says, without its arrays' overhead
        return min(engine.workers, self.max_shares(len(lengths), lengths.max()))

    def training_shares(self, n_sequences, n_steps, passes):
        """How many shares a training batch of ``n_sequences`` sequences of
        up to ``n_steps`` steps is computed in: TRAINING_SHARES where each
        has the work of a share in the ``passes`` that compute it (see
        :func:`_share_work`), else 1; element-wise for arrays."""
        split = self.max_shares(n_sequences, n_steps, _share_work(passes))
        return np.where(split >= TRAINING_SHARES, TRAINING_SHARES, 1)

    def training_split(self, batch_size, n_steps, passes):
        """``(shares, serial)`` for :meth:`skrnn._threads.BlasThreads.split`
        during a fit in batches of ``batch_size`` sequences of up to
        ``n_steps`` steps in the ``passes`` given: the threads are shared
        out only when full batches are computed in TRAINING_SHARES shares,
        and batches without the work for two shares run on one thread."""
        shares = int(self.training_shares(batch_size, n_steps, passes))
        work = self.work_shares(batch_size, n_steps, _share_work(passes))
        return shares, work < TRAINING_SHARES

    def training_passes(self, engine, loss, n_steps, bptt_steps):
        """Which passes train on sequences of up to ``n_steps`` steps:
        ``"epoch"`` where :meth:`compiles_epochs`, else ``"compiled"`` where
        :meth:`compiled_pass`, else ``"layers"`` (the engine's passes layer
        by layer)."""
        if self.compiles_epochs(engine, loss, bptt_steps, n_steps):
            return "epoch"
        if self.compiled_pass(engine, loss, n_steps, bptt_steps):
            return "compiled"
        return "layers"

    def work_shares(self, n_sequences, n_steps, min_work=None):
        """How many times ``min_work`` (MIN_SHARE_WORK when None) the forward
        pass of ``n_sequences`` sequences of ``n_steps`` steps is."""
        return self.forward_work(n_sequences, n_steps) // (min_work or MIN_SHARE_WORK)

    def forward_work(self, n_sequences, n_steps):
        """Multiply-adds of the recurrent layers' forward pass: one per
        weight, sequence and step; element-wise for arrays."""
        return self._step_work * np.asarray(n_steps, dtype=np.int64) * n_sequences

    def _forward_blocks(self, engine, p, values, lengths, rows):
        """:meth:`_forward_sorted` of ``rows``; in host memory, in blocks of
        sequences whose one step takes at most INFERENCE_BYTES, so that a
        prediction's memory is bounded whatever the number of sequences."""
        blocks = [rows]
        if p.memory is None:
            row_bytes = self._step_bytes(values.shape[2], with_gates=True)
            n_blocks = min(len(rows), -(-len(rows) * row_bytes // INFERENCE_BYTES))
            if n_blocks > 1:
                blocks = np.array_split(rows, n_blocks)
        parts = [self._forward_sorted(engine, p, values, lengths, b) for b in blocks]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _step_bytes(self, D, with_gates):
        """Bytes a prediction holds per sequence and step: the inputs, the
        outputs of a layer and of the one below and, ``with_gates``, the
        compiled engine's gates and scratch (3 x G x H at most), which it
        bounds itself in steps."""
        H, G = self.hidden_size, N_GATES[self.spec.cell]
        width = D + 2 * self.n_dirs * H + (3 * G * H if with_gates else 0)
        return width * np.dtype(self.dtype).itemsize

    def _forward_sorted(self, engine, p, values, lengths, rows):
        """Raw head outputs of the sequences ``rows`` (longest first), in
        that order, as a NumPy array."""
        xp = engine.xp
        states = self._zero_states(xp, len(rows))
        # The head in float64, whatever the dtype: a float32 product's
        # rounding would depend on the rows beside a sequence (BLAS picks
        # other kernels for one row or many), and predictions are float64.
        W = p.views["head.weight"].astype(np.float64)
        b = p.views["head.bias"].astype(np.float64)
        N, T = len(rows), values.shape[1]
        lengths = lengths[rows]
        # read at the last steps, the head reads the top layer's final
        # states, and that layer's outputs are not kept: forward, a state
        # stays as it was after its sequence's last step; backward (one
        # window, see _windows), it ends at the first step
        reads_states = self.output == "last"
        if not reads_states:
            raw = xp.zeros((T, N, W.shape[0]), dtype=np.float64)
        window = INFERENCE_WINDOW
        if p.memory is None:  # in host memory, a window's bytes are bounded too
            step_bytes = self._step_bytes(values.shape[2], with_gates=False)
            window = max(1, min(window, INFERENCE_BYTES // (N * step_bytes)))
        for t0, t1 in self._windows(int(lengths[0]), window):
            # the inputs too are gathered window by window
            x = self._prepare(xp, values, rows, slice(t0, t1))
            lens = self._window_lengths(lengths, t0, t1)
            top, _ = self._run_layers(
                engine, p, x, lens, states, False, keep_top=not reads_states
            )
            if not reads_states:
                feats, where = self._sequence_rows(xp, top, lengths, t0, t1)
                raw[t0:t1][where] = feats @ W.T + b
                del feats
            del x, top  # the next window reuses their memory
        if reads_states:
            raw = self._final_states(xp, states) @ W.T + b
        raw = p.to_host(raw)
        return raw if self.output == "last" else raw.transpose(1, 0, 2)

    def loss_grad(self, engine, values, lengths, targets, weights, loss, bptt_steps):
        """Loss and its gradient over a batch.

        The gradient goes into the ``grad`` of the parameters in use: those
        of :meth:`on_device` during a fit, else ``self.grad``. On the host,
        a batch with work enough for ``TRAINING_SHARES`` shares (see
        :meth:`max_shares`) is computed in that many, on up to
        ``engine.workers`` threads, and their gradients are added in a fixed
        order: the result does not depend on the number of threads. On an
        engine with a ``network_pass`` (the CPU engine's
        :mod:`skrnn._engine.batch`) each share runs through the whole network
        in one compiled call when the loss has a compiled twin
        (``loss.compiled``) and truncated BPTT does not split it in
        windows; otherwise, and on the other engines, through the engine's
        passes layer by layer, as written here.

        Parameters
        ----------
        %(batch)s
        targets : ndarray of shape (N, ...) or (N, T, ...)
            Per-sample or per-step targets, as ``loss`` reads them (host, or
            in the engine's memory).
        weights : ndarray of shape (N,)
            Sample weights divided by the batch's total weight, so that the
            loss is a weighted mean.
        loss : skrnn._losses.HeadLoss
            ``loss(z, y, w) -> (weighted loss sum, dz)``, called with
            ``xp=engine.xp`` too when that is not NumPy.
        bptt_steps : int or None
            Truncated BPTT window: state carried across windows, gradients
            cut at their start.

        Returns
        -------
        float64 scalar of the engine's module
            The data loss (no penalty); on a GPU it stays there, so that a
            training step waits for no transfer.
        """
        p = self._device_params(engine, training=True)
        order = np.argsort(-lengths, kind="stable")
        # one call per batch, or the passes layer by layer
        compiled = self.compiled_pass(engine, loss, lengths.max(), bptt_steps)
        passes = "compiled" if compiled else "layers"
        shares = _shares(
            order,
            1
            if p.memory is not None
            else int(self.training_shares(len(order), lengths.max(), passes)),
        )
        # the first share's gradient goes into p.grad, the others' into
        # their own vectors, added in a fixed order
        grads = [p.grad] + [np.zeros_like(p.grad) for _ in shares[1:]]
        p.grad[...] = 0
        batch = (values, lengths, targets, weights)
        totals = map_threads(
            engine.workers,
            lambda share, rows, grad: self._loss_grad_sorted(
                engine, p, grad, batch, rows, loss, bptt_steps, share
            ),
            range(len(shares)),
            shares,
            grads,
        )
        total = totals[0]
        for grad, value in zip(grads[1:], totals[1:]):
            p.grad += grad
            total = total + value
        if p is not self._active and p.memory is not None:
            self.grad[...] = p.to_host(p.grad)
        return total

    def data_loss(self, engine, values, lengths, targets, weights, loss, bptt_steps):
        """The loss of a batch at the current weights (:meth:`loss_grad`'s,
        without the gradient) from the forward half of the engine's compiled
        network pass, in one share; NaN where an output of the head is not
        finite. None where :meth:`compiled_pass` says the engine has no such
        pass for the batch, or where :meth:`forward` would split the batch
        between threads."""
        if (
            not self.compiled_pass(engine, loss, lengths.max(), bptt_steps)
            or self._inference_shares(engine, lengths) > 1
        ):
            return None
        p = self._device_params(engine, training=True)
        return engine.network_pass(
            self.architecture,
            p.views,
            p.grad_views,
            (values, lengths, targets, weights),
            np.argsort(-lengths, kind="stable"),
            loss,
            0,
            backward=False,
        )

    def compiles_epochs(self, engine, loss, bptt_steps, n_steps):
        """Whether :meth:`epoch` can run a fit's epochs over sequences of up
        to ``n_steps`` steps: on an engine with an ``epoch_pass``, for a
        loss with a compiled twin, when truncated BPTT does not split the
        sequences in windows."""
        return engine.epoch_pass is not None and self.compiled_pass(
            engine, loss, n_steps, bptt_steps
        )

    def compiled_pass(self, engine, loss, n_steps, bptt_steps):
        """Whether a share of a training batch of sequences of up to
        ``n_steps`` steps runs through the whole network in one call of the
        engine's ``network_pass``: for a loss with a compiled twin, when
        truncated BPTT does not split the sequences in windows."""
        return (
            engine.network_pass is not None
            and loss.compiled is not None
            and len(self._windows(int(n_steps), bptt_steps)) == 1
        )

    def epoch(self, engine, data, lengths, order, bounds, weights, loss, step):
        """The training steps of an epoch in one call of the engine's
        ``epoch_pass`` (see :func:`skrnn._engine.batch.epoch` for the
        arguments), where :meth:`compiles_epochs` says so: batch k is the
        sequences ``order[bounds[k]:bounds[k + 1]]``, longest first, and
        its gradient :meth:`loss_grad`'s (in shares of the epoch's own rule,
        see :func:`_share_work`), into ``grad``."""
        p = self._device_params(engine, training=True)
        sizes = np.diff(bounds)
        split = self.training_shares(sizes, lengths[order[bounds[:-1]]], "epoch") > 1
        splits = bounds[1:] - np.where(split, sizes // 2, 0)
        if split.any():
            # a split batch's two shares one after the other, each as _shares
            # deals it (TRAINING_SHARES is 2: the compiled epoch computes two)
            where = np.arange(len(order)) - np.repeat(bounds[:-1], sizes)
            share = (where % 2) * np.repeat(split, sizes)
            batch = np.repeat(np.arange(len(sizes)), sizes)
            order = order[np.lexsort((where, share, batch))]
        partner_grad = np.zeros_like(p.grad)
        return engine.epoch_pass(
            self.architecture,
            p.views,
            p.grad_views,
            data,
            lengths,
            order,
            bounds,
            splits,
            weights,
            loss,
            step,
            (partner_grad, _views_of(partner_grad, self._layout)),
        )

    def _loss_grad_sorted(
        self, engine, p, grad, batch, rows, loss, bptt_steps, share=0
    ):
        """:meth:`loss_grad` of the sequences ``rows`` (longest first) of
        ``batch`` = (values, lengths, targets, weights), the batch's share
        number ``share``; the gradient is added to ``grad``, a vector laid
        out as ``p.grad``."""
        xp = engine.xp
        values, lengths, targets, weights = batch
        grad_views = p.grad_views if grad is p.grad else _views_of(grad, self._layout)
        if self.compiled_pass(engine, loss, lengths[rows[0]], bptt_steps):
            return engine.network_pass(
                self.architecture, p.views, grad_views, batch, rows, loss, share
            )
        lengths, states = lengths[rows], self._zero_states(xp, len(rows))
        x = self._prepare(xp, values, rows, slice(0, lengths[0]))
        targets, weights = take(xp, targets, rows), take(xp, weights, rows)
        if self.output == "sequence":
            targets = targets.swapaxes(0, 1)
        W, b = p.views["head.weight"], p.views["head.bias"]
        gW, gb = grad_views["head.weight"], grad_views["head.bias"]
        sequence = self.output == "sequence"
        windows = self._windows(x.shape[0], bptt_steps)
        total = 0.0
        for t0, t1 in windows:
            lens = self._window_lengths(lengths, t0, t1)
            top, caches = self._run_layers(
                engine, p, x[t0:t1], lens, states, True, keep_top=sequence
            )
            if sequence:
                feats, where = self._sequence_rows(xp, top, lengths, t0, t1)
                y, w = targets[t0:t1][where], weights[where[1]]
            else:
                # the head reads (and its gradient enters) the final states
                # of the sequences that end in this window (all, when it is
                # the only one): forward, after the last step; backward
                # (one window), after the first
                ends = (
                    slice(None)
                    if len(windows) == 1
                    else xp.asarray(np.flatnonzero((lengths > t0) & (lengths <= t1)))
                )
                last = self._final_states(xp, states)
                feats, y, w = last[ends], targets[ends], weights[ends]
            z = feats @ W.T + b
            value, dz = loss(z, y, w, xp=xp)
            total = total + value
            gW += dz.T @ feats
            gb += dz.sum(axis=0)
            d_feats = dz @ W
            if sequence:
                d_top = xp.zeros(top.shape, dtype=self.dtype)
                d_top[where] = d_feats
                self._backward_layers(engine, p, grad_views, caches, d_top=d_top)
            else:
                d_last = xp.zeros(last.shape, dtype=self.dtype)
                d_last[ends] = d_feats
                self._backward_layers(engine, p, grad_views, caches, d_last=d_last)
        return total


def _share_work(passes):
    """The least work of a training share in the ``passes`` that compute it:
    ``"epoch"`` (the compiled epoch), ``"compiled"`` (a compiled call per
    batch) or ``"layers"`` (the engine's passes, with Python between)."""
    return {
        "epoch": EPOCH_SHARE_WORK,
        "compiled": TRAINING_SHARE_WORK,
        "layers": MIN_SHARE_WORK,
    }[passes]


def _shares(rows, n):
    """``rows`` (sorted longest first) dealt into ``n`` >= 1 shares: each
    gets every n-th, so the shares stay sorted and cost about the same."""
    n = max(1, n)
    return [rows[i::n] for i in range(n)]
