"""The CPU engine's training pass of a whole network: one compiled call per
share of a mini-batch (:func:`skrnn._engine._batch.loss_grad`).

This module lays out what that call reads and writes: the layers' room,
carved from one block of memory per share that is kept for the whole fit
(in the workspace of :func:`skrnn._engine.cpu.workspace`; a small one by
the network, from call to call) and viewed anew for each shape of batch,
and views of the network's parameters and gradient. It knows the network
by its :class:`~skrnn._engine.engine.Architecture` and its parameters by
name.
Every shape is fixed here, so that the compiled loops can run without
bounds checks.
"""

import math

import numpy as np

from .._cells import CELLS, N_GATES, param_suffix
from .._threads import alongside, workers_at_hand
from . import _batch, _recurrent, cpu

_ALIGN = 64  # bytes: each array starts on a cache line


def loss_grad(arch, views, grad_views, batch, rows, loss, share, backward=True):
    """:meth:`skrnn._network.Network._loss_grad_sorted` of a network of
    architecture ``arch`` over one window, compiled: the weighted loss sum
    of the sequences ``rows`` (sorted longest first) of ``batch``, the
    batch's share number ``share``, at the parameters ``views`` (views by
    name), whose gradient is written into ``grad_views`` (views of a vector
    of zeros); without ``backward``, the loss alone (NaN where an output of
    the head is not finite). ``loss`` is a :class:`skrnn._losses.HeadLoss`
    with a compiled twin."""
    values, lengths, targets, weights = batch
    dtype = np.dtype(arch.dtype)
    sequence = arch.output == "sequence"
    lengths = np.ascontiguousarray(lengths[rows], dtype=np.intp)
    room = _room(arch, share, int(lengths[0]), len(rows), dtype)
    room.bind(arch, views, grad_views)
    _recurrent.live_rows(lengths, room.n_live)
    return _batch.loss_grad(
        room.plan,
        arch.n_dirs,
        sequence,
        loss.compiled,
        np.ascontiguousarray(values, dtype=dtype),
        np.ascontiguousarray(rows, dtype=np.intp),
        lengths,
        *_head_args(loss, targets, weights, sequence, dtype, views, grad_views),
        room.feats,
        room.z,
        room.d_feats,
        backward,
    )


def epoch(
    arch,
    views,
    grad_views,
    data,
    lengths,
    order,
    bounds,
    splits,
    weights,
    loss,
    step,
    partner,
):
    """The training steps of an epoch, one per batch, in one compiled call
    (:func:`skrnn._engine._batch.epoch`): each batch's :func:`loss_grad` in
    one or two shares, then the end of its step, as the estimators'
    training loop takes them one call at a time. Where two workers are at
    hand (see :func:`skrnn._threads.workers_at_hand`), a second thread
    computes the second shares meanwhile.

    ``data`` is the training set's (values, targets); batch k is the
    sequences ``order[bounds[k]:bounds[k + 1]]``, in two shares split at
    ``splits[k]`` (at ``bounds[k + 1]``: one), each longest first;
    ``weights`` holds each sequence's sample weight divided by its batch's
    total weight (in rows); ``step`` holds the compiled epoch's arguments
    ``batch_weights``, then ``flat`` to ``constants``, in its order;
    ``partner`` is (vector, views by name) of the second shares' gradient,
    laid out as the gradient. Returns the compiled epoch's
    ``(total or None, steps)``.
    """
    values, targets = data
    dtype = np.dtype(arch.dtype)
    sequence = arch.output == "sequence"
    lengths = np.ascontiguousarray(lengths[order], dtype=np.intp)
    partner_grad, partner_views = partner
    rooms, partner_rooms, shapes, lens = [], [], {}, lengths.tolist()

    def room(share, T, N):
        key = (share, T, N)
        if key not in shapes:
            shapes[key] = _room(arch, share, T, N, dtype)
            shapes[key].bind(arch, views, partner_views if share else grad_views)
        return shapes[key]

    for s, m, e in zip(bounds[:-1].tolist(), splits.tolist(), bounds[1:].tolist()):
        rooms.append(room(0, lens[s], m - s))
        partner_rooms.append(room(1, lens[m], e - m) if m < e else None)
    batch_weights, *update = step
    y, codes, weights, levels, head_w, head_b, head_gw, head_gb = _head_args(
        loss, targets, weights, sequence, dtype, views, grad_views
    )
    n_batches = len(bounds) - 1
    shared = (
        arch.n_dirs,
        sequence,
        loss.compiled,
        np.ascontiguousarray(values, dtype=dtype),
        np.ascontiguousarray(order, dtype=np.intp),
        lengths,
        np.ascontiguousarray(bounds, dtype=np.intp),
        np.ascontiguousarray(splits, dtype=np.intp),
        batch_weights,
        y,
        codes,
        weights,
        levels,
        head_w,
        head_b,
    )
    partner_head = (partner_views["head.weight"], partner_views["head.bias"])
    sync = np.zeros(_batch.SYNC_SLOTS + 2 * n_batches, dtype=np.intp)
    partner_losses = np.zeros(n_batches)
    two = workers_at_hand() >= 2 and bool((splits < bounds[1:]).any())
    with alongside(
        _batch.epoch_partner if two else None,
        partner_rooms,
        *shared,
        *partner_head,
        partner_grad,
        sync,
        partner_losses,
    ):
        try:
            return _batch.epoch(
                rooms,
                partner_rooms,
                *shared,
                head_gw,
                head_gb,
                *partner_head,
                update[0],
                update[1],
                partner_grad,
                *update[2:],
                sync,
                partner_losses,
            )
        finally:
            sync[_batch.STOPPED] = 1  # the partner stops


def _head_args(loss, targets, weights, sequence, dtype, views, grad_views):
    """The compiled pass's arguments from ``y`` to ``head_gb``: regression
    targets (n, T_y, O) in float64 or class codes (n, T_y), the other empty;
    the weights; the loss's levels; the head's parameters and gradient."""
    y, codes = _EMPTY_Y, _EMPTY_CODES
    if loss.codes:
        codes = np.ascontiguousarray(targets, dtype=np.intp)
        codes = codes.reshape(len(codes), -1)
    else:
        y = np.ascontiguousarray(targets, dtype=np.float64)
        y = y.reshape(len(y), -1 if sequence else 1, y.shape[-1])
    return (
        y,
        codes,
        np.ascontiguousarray(weights, dtype=dtype),
        getattr(loss, "levels", _NO_LEVELS),
        views["head.weight"],
        views["head.bias"],
        grad_views["head.weight"],
        grad_views["head.bias"],
    )


_EMPTY_Y = np.empty((0, 0, 0))
_EMPTY_CODES = np.empty((0, 0), dtype=np.intp)
_NO_LEVELS = np.empty(0)  # the levels of a loss that is not the quantile one


def _room(arch, share, T, N, dtype):
    """The arrays of a pass of a network of architecture ``arch`` over N
    sequences of up to T steps: kept in the workspace in use, per
    architecture and share of a batch (the shares run side by side), and
    rebuilt only for a larger batch; views of the same memory for every
    smaller shape."""
    ws = cpu.current_workspace()
    if ws is None:
        return _Room(arch, T, N, dtype, _Carver(dtype))
    key = (arch, share)
    carver = ws.rooms.get(key)
    if carver is None:
        carver = ws.rooms[key] = _Carver(dtype)
    room = carver.shapes.get((T, N))
    if room is None:
        room = carver.shapes[(T, N)] = _Room(arch, T, N, dtype, carver)
    return room


class _Carver:
    """Hands out arrays carved one after the other from one block; a room
    whose arrays do not fit makes a larger block, and the rooms carved from
    the smaller one are dropped (their arrays keep it alive while in use)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.block = np.empty(0, dtype=np.uint8)
        self.offset = 0
        self.shapes = {}

    @property
    def nbytes(self):
        return self.block.nbytes

    def start(self, nbytes):
        """Begin a room of ``nbytes`` bytes at most."""
        if nbytes > self.block.nbytes:
            self.block = np.empty(nbytes, dtype=np.uint8)
            self.shapes = {}
        self.offset = 0

    def take(self, shape, dtype=None):
        dtype = np.dtype(dtype or self.dtype)
        nbytes = dtype.itemsize * math.prod(shape)
        start = -(-self.offset // _ALIGN) * _ALIGN
        self.offset = start + nbytes
        return self.block[start : start + nbytes].view(dtype).reshape(shape)


class _Room:
    """The arrays of one pass over N sequences of up to T steps (see
    :class:`skrnn._engine._batch.LayerPass`), and the head's."""

    def __init__(self, arch, T, N, dtype, carver):
        sizes = []
        self.n_live = np.empty(T, dtype=np.intp)  # each pass counts its rows
        _Room._build(arch, T, N, dtype, self.n_live, _Measure(sizes, dtype))
        carver.start(sum(-(-s // _ALIGN) * _ALIGN for s in sizes))
        self.layers, self.feats, self.d_feats, self.z, zeros = _Room._build(
            arch, T, N, dtype, self.n_live, carver
        )
        self.plan = _batch.Layers(self.layers, zeros)  # laid out by bind
        self._bound = (None, None)

    def bind(self, arch, views, grad_views):
        """Point the layers at the parameters ``views`` and the gradient
        ``grad_views`` (dicts of views by name), unless they already are."""
        if self._bound[0] is views and self._bound[1] is grad_views:
            return
        keys = [(k, d) for k in range(arch.num_layers) for d in range(arch.n_dirs)]
        for layer, (k, d) in zip(self.layers, keys):
            suffix = param_suffix(k, d)
            layer.w_ih = views["weight_ih" + suffix]
            layer.w_hh = views["weight_hh" + suffix]
            layer.dw_ih = grad_views["weight_ih" + suffix]
            layer.dw_hh = grad_views["weight_hh" + suffix]
            if arch.spec.use_bias:
                layer.b_ih = views["bias_ih" + suffix]
                layer.b_hh = views["bias_hh" + suffix]
                layer.db_ih = grad_views["bias_ih" + suffix]
                layer.db_hh = grad_views["bias_hh" + suffix]
        self.plan.lay_out(arch.n_dirs, arch.output == "sequence")
        self._bound = (views, grad_views)

    @staticmethod
    def _build(arch, T, N, dtype, n_live, carver):
        """``(layers, feats, d_feats, z, zeros)``, the arrays from ``carver``;
        the layers count their live rows in ``n_live``."""
        H, dirs, cell = arch.hidden_size, arch.n_dirs, arch.spec.cell
        D, n_outputs = arch.input_size, arch.n_outputs
        GH = N_GATES[cell] * H
        kernel, act = cpu.kernel_codes(arch.spec)
        two_parts = CELLS[cell].state_parts == 2
        empty2, empty3 = carver.take((0, 0)), carver.take((0, 0, 0))
        packed_size = 0
        if dtype == np.float32 and N <= cpu.PACKED_MAX_ROWS:
            packed_size = _recurrent.packed_size(kernel.code, H)
        packed = carver.take((packed_size,), np.float32)  # layers run in turn
        zero_bias = np.zeros(GH, dtype=dtype)
        sequence = arch.output == "sequence"
        layers = []
        x = carver.take((T, N, D))
        below = None
        for k in range(arch.num_layers):
            if k > 0:
                x = carver.take((T, N, dirs * H)) if dirs == 2 else below[0].out
            layer_dx = carver.take((T, N, x.shape[2])) if k > 0 else empty3
            passes = []
            for d in range(dirs):
                p = _batch.LayerPass()
                p.cell, p.act, p.reverse = kernel.code, act, bool(d)
                p.n_live, p.x = n_live, x
                states = carver.take((T + 1, N, H))
                p.out, p.h_prev = (
                    (states[:-1], states[1:]) if d else (states[1:], states[:-1])
                )
                p.h, p.dh = carver.take((N, H)), carver.take((N, H))
                p.c = p.dc = empty2
                p.c_prev = p.c_new = empty3
                if two_parts:
                    p.c, p.dc = carver.take((N, H)), carver.take((N, H))
                    cells = carver.take((T + 1, N, H))
                    p.c_prev, p.c_new = (
                        (cells[1:], cells[:-1]) if d else (cells[:-1], cells[1:])
                    )
                if kernel.gates_in_out:
                    p.gates, p.dg = p.out, carver.take((T, N, GH))
                else:
                    p.gates = p.dg = carver.take((T, N, GH))
                p.hn = carver.take((T, N, H)) if kernel.hn else empty3
                p.dan = p.hn if kernel.dan else empty3
                p.work = carver.take((2 * N, GH)) if kernel.work else empty2
                p.back_work = carver.take((N, H)) if kernel.back_work else empty2
                p.packed = packed
                # with one direction, the inputs' gradient is that of the
                # outputs of the layer below; with two, their sum is split
                p.dx = layer_dx if (dirs == 1 or d == 0) else carver.take(x.shape)
                if dirs == 1 and below is not None:
                    below[0].d_out = p.dx
                # the gradient of the outputs: of the layer above (with one
                # direction, its dx, set when it is built) or of the head
                # (with one direction, d_feats); none for a top layer read at
                # its final states
                top_layer = k == arch.num_layers - 1
                p.d_out = empty3
                if (dirs == 2 and not top_layer) or (top_layer and sequence):
                    p.d_out = carver.take((T, N, H))
                # layers without biases read zeros, and the kernel adds their
                # bias gradients to room that nothing reads
                p.b_ih = p.b_hh = zero_bias
                p.db_ih, p.db_hh = carver.take((GH,)), carver.take((GH,))
                passes.append(p)
            layers.extend(passes)
            below = passes
        top = layers[-dirs:]
        R = T * N if sequence else N
        if dirs == 1:
            feats = top[0].out.reshape(R, H) if sequence else top[0].h
            d_feats = top[0].d_out.reshape(R, H) if sequence else top[0].dh
        else:
            feats, d_feats = carver.take((R, 2 * H)), carver.take((R, 2 * H))
        z = carver.take((R, n_outputs))
        return layers, feats, d_feats, z, np.zeros((1, N, H), dtype=dtype)


class _Measure:
    """A carver that only records the bytes of each array asked for."""

    def __init__(self, sizes, dtype):
        self.sizes, self.dtype = sizes, dtype

    def take(self, shape, dtype=None):
        dtype = np.dtype(dtype or self.dtype)
        self.sizes.append(dtype.itemsize * math.prod(shape))
        return np.empty(shape, dtype=dtype)
