"""A share of a training mini-batch through the whole network in one call.

The loss and its gradient of a network of stacked recurrent layers (one or
two directions each) and a linear head, over the sequences ``rows`` of a
batch: the gather of their inputs into time-major order, every layer's
forward pass (:func:`skrnn._engine._recurrent.forward`), the head, the loss
and its gradient, the head's gradients, and every layer's backward pass
(:func:`skrnn._engine._recurrent.backward`), writing the weight gradients
into the network's gradient vector.
:meth:`skrnn._network.Network.loss_grad` specifies the same computation with
one engine call per layer and NumPy in between; this is it without the
Python in between, for the CPU engine.

The caller (:mod:`skrnn._engine.batch`) lays out every array: the layers'
buffers (:class:`LayerPass`), views of the parameters and of the gradient,
the head's rows, each of the shape the kernels expect, and sorts ``rows``
longest first. The loops run without bounds checks.
"""

from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cython cimport floating
from libc.math cimport NAN, exp, isfinite, log, log1p
from libc.string cimport memcpy, memset

cimport numpy as cnp

from ._blas cimport gemm
from ._recurrent cimport LayerArrays, backward_layer, forward_layer
from ._update cimport Solver, clip_factor, penalize_into, step

cnp.import_array()


cdef extern from "_sync.h" nogil:
    Py_ssize_t skrnn_claim(Py_ssize_t* next)
    void skrnn_finish(Py_ssize_t* done)
    void skrnn_wait_or(Py_ssize_t* done, Py_ssize_t count, Py_ssize_t* given_up)
    Py_ssize_t skrnn_load(Py_ssize_t* p)


# The counters that an epoch's two threads share (see epoch): how many
# batches' weights are ready, whether each thread has left, then a claim
# count and a done count per batch for its second share.
cpdef enum:
    PUBLISHED
    STOPPED
    PARTNER_GONE
    SYNC_SLOTS

cpdef enum Loss:
    SQUARED_ERROR
    BINARY_LOG_LOSS
    MULTI_LOG_LOSS
    ABSOLUTE_ERROR
    POISSON
    QUANTILE
    GAUSSIAN

# the Gaussian head's floor under its standard deviation (skrnn._losses')
cdef double _SIGMA_FLOOR = 1e-6
cdef double _HALF_LOG_2PI = 0.9189385332046727


cdef class LayerPass:
    """The arrays of one direction of one layer for a batch of one shape.

    Parameters and gradients are views of the network's vectors; the rest is
    the pass's room, as :func:`skrnn._engine.cpu.forward` and
    :func:`skrnn._engine.cpu.backward` allocate it for training (the kernels'
    docstrings say what each holds); ``n_live`` is the room's count of live
    rows per step. :class:`Layers` holds their addresses.
    """

    cdef public int cell, act
    cdef public bint reverse
    cdef public object w_ih, w_hh, b_ih, b_hh, dw_ih, dw_hh, db_ih, db_hh
    cdef public object n_live, x, h, c, out, gates, h_prev, hn
    cdef public object c_prev, c_new, work, packed
    cdef public object d_out, dh, dc, dg, dan, dx, back_work


cdef class Layers:
    """The :class:`~skrnn._engine._recurrent.LayerArrays` of a room's layers
    (a list of :class:`LayerPass`, laid out as :func:`loss_grad` reads
    them), for the passes that run without the GIL; :meth:`lay_out` fills
    them.

    Parameters
    ----------
    layers : list of LayerPass
    zeros : (1, N, H) array of zeros
        The ``d_out`` of the layers that no gradient reaches by their
        outputs.
    """

    cdef LayerArrays* arrays
    cdef Py_ssize_t n
    cdef list layers  # the arrays' owners
    cdef object zeros

    def __cinit__(self, list layers, zeros):
        self.arrays = <LayerArrays*> PyMem_Malloc(len(layers) * sizeof(LayerArrays))
        if self.arrays == NULL:
            raise MemoryError()
        self.n, self.layers, self.zeros = len(layers), layers, zeros

    def __dealloc__(self):
        PyMem_Free(self.arrays)

    def lay_out(self, Py_ssize_t n_dirs, bint sequence):
        """Read the layers' arrays' addresses: once their parameters and
        gradients are bound, and whenever those views change. ``n_dirs``:
        directions per layer; ``sequence``: the head reads every step."""
        cdef Py_ssize_t i, k, top = self.n - n_dirs
        cdef LayerPass lp
        cdef LayerArrays* a
        for i in range(self.n):
            lp, a, k = self.layers[i], &self.arrays[i], i - i % n_dirs
            memset(a, 0, sizeof(LayerArrays))
            a.cell, a.act, a.reverse = lp.cell, lp.act, lp.reverse
            a.T, a.N, a.D = lp.x.shape
            a.GH, a.H = lp.w_hh.shape
            a.W, a.all_out = lp.gates.shape[0], lp.out.shape[0] == a.T
            a.n_live = <const Py_ssize_t*> _data(lp.n_live)
            a.x, a.w_ih, a.w_hh = _data(lp.x), _data(lp.w_ih), _data(lp.w_hh)
            a.b_ih, a.b_hh = _data(lp.b_ih), _data(lp.b_hh)
            a.h, a.c = _data(lp.h), _data(lp.c)
            a.out, a.gates, a.h_prev = _data(lp.out), _data(lp.gates), _data(lp.h_prev)
            a.hn, a.c_new, a.work = _data(lp.hn), _data(lp.c_new), _data(lp.work)
            a.packed = <float*> _data(lp.packed)
            a.c_prev, a.dh, a.dc = _data(lp.c_prev), _data(lp.dh), _data(lp.dc)
            a.dg, a.dan, a.back_work = _data(lp.dg), _data(lp.dan), _data(lp.back_work)
            a.dw_ih, a.dw_hh = _data(lp.dw_ih), _data(lp.dw_hh)
            a.db_ih, a.db_hh = _data(lp.db_ih), _data(lp.db_hh)
            # the gradient reaches the outputs of all but a top layer read
            # at its final states, and the inputs of all but the first
            a.all_d_out = sequence or k < top
            a.d_out = _data(lp.d_out if a.all_d_out else self.zeros)
            a.dx = _data(lp.dx) if k > 0 else NULL


cdef void* _data(a) except? NULL:
    """The address of the array ``a``'s data; NULL when it is empty."""
    cdef cnp.ndarray arr = a
    return cnp.PyArray_DATA(arr) if cnp.PyArray_SIZE(arr) > 0 else NULL


def loss_grad(Layers layers, Py_ssize_t n_dirs, bint sequence, Loss loss,
              const floating[:, :, ::1] values, const Py_ssize_t[::1] rows,
              const Py_ssize_t[::1] lengths,
              const double[:, :, ::1] y, const Py_ssize_t[:, ::1] codes,
              const floating[::1] weights, const double[::1] levels,
              const floating[:, ::1] head_w, const floating[::1] head_b,
              floating[:, ::1] head_gw, floating[::1] head_gb,
              floating[:, ::1] feats, floating[:, ::1] z,
              floating[:, ::1] d_feats, bint backward=True):
    """The weighted loss sum of the sequences ``rows`` of a batch; the
    gradient is written into the gradient views of ``layers`` and into
    ``head_gw`` and ``head_gb``, all of which must hold zeros. Without
    ``backward``, the loss alone (the forward pass and the head), NaN
    where a head output is not finite.

    Parameters
    ----------
    layers : Layers
        Of the LayerPass of layer k, direction d at ``k * n_dirs + d``;
        ``layers[0].x`` is the (T, N, D) room for the inputs. With one
        direction, a layer's ``x`` is the ``out`` of the layer below, whose
        ``d_out`` is its ``dx``; with two, the next layer's ``x`` and ``dx``
        are (T, N, 2H).
    n_dirs : int
        Directions per layer, 1 or 2.
    sequence : bool
        The head reads every valid step (``output="sequence"``), else each
        sequence's final state.
    loss : Loss
        The head's loss, as :mod:`skrnn._losses` defines it: half the
        squared error averaged over the outputs, the log-loss of a logistic
        (one output) or softmax head, the absolute error, half the Poisson
        deviance of exp(z), the pinball loss of ``levels`` or the Gaussian
        negative log-likelihood.
    values : (n_batch, T_all, D) array
        The batch's inputs, batch-major.
    rows, lengths : (N,) arrays
        The share's sequences (rows of ``values``), longest first, and their
        lengths; T = ``lengths[0]``. The layers' ``n_live`` holds the number
        of sequences longer than t, for each step t.
    y : (n_batch, T_y, O) array, or empty
        Regression targets; T_y is 1 when the head reads final states.
    codes : (n_batch, T_y) array, or empty
        Class codes (0 and 1 for a logistic head).
    weights : (n_batch,) array
        Sample weights divided by the batch's total weight (in rows).
    levels : (K,) array, or empty
        The quantile loss's levels, ascending; its head has K outputs per
        target.
    head_w, head_b, head_gw, head_gb : arrays
        The head's weight (O, F), bias (O,) and their gradients; F is H times
        ``n_dirs``.
    feats, d_feats : (R, F) arrays
        The head's input rows and their gradient: R = N final states, or
        R = T * N steps (those at padded steps are zero and ignored). With
        one direction, views of the top layer's ``h`` and ``dh`` (final
        states) or ``out_rows`` and ``d_out_rows`` (steps): nothing is copied.
    z : (R, O) array
        Room for the head's outputs, then their gradient.

    Returns
    -------
    float
        The weighted loss sum.
    """
    cdef double total
    with nogil:
        total = _loss_grad(layers.arrays, layers.n, n_dirs, sequence, loss, values,
                           rows, lengths, y, codes, weights, levels, head_w, head_b,
                           head_gw, head_gb, feats, z, d_feats, backward)
    return total


cdef double _loss_grad(const LayerArrays* layers, Py_ssize_t n, Py_ssize_t n_dirs,
                       bint sequence, Loss loss,
                       const floating[:, :, ::1] values, const Py_ssize_t[::1] rows,
                       const Py_ssize_t[::1] lengths,
                       const double[:, :, ::1] y, const Py_ssize_t[:, ::1] codes,
                       const floating[::1] weights, const double[::1] levels,
                       const floating[:, ::1] head_w, const floating[::1] head_b,
                       floating[:, ::1] head_gw, floating[::1] head_gb,
                       floating[:, ::1] feats, floating[:, ::1] z,
                       floating[:, ::1] d_feats, bint backward) noexcept nogil:
    """:func:`loss_grad`."""
    cdef:
        Py_ssize_t top = n - n_dirs, j, k, d, i
        Py_ssize_t n_out = head_w.shape[0], F = head_w.shape[1], R = z.shape[0]
        Py_ssize_t TN = layers[0].T * layers[0].N, N = layers[0].N, H = layers[0].H
        double total
        const LayerArrays* a
        const LayerArrays* b
    _gather(values, rows, <floating*> layers[0].x, layers[0].T, N, layers[0].D)
    for j in range(n // n_dirs):
        k = j * n_dirs
        for d in range(n_dirs):
            _run_forward(&layers[k + d], lengths, <const floating*> layers[k + d].x)
        if n_dirs == 2 and (k < top or sequence):
            # the layer above (or the head) reads both directions side by side
            a = &layers[k]
            b = &layers[k + 1]
            _join(<floating*> a.out, <floating*> b.out, TN, H,
                  <floating*> layers[k + 2].x if k < top else &feats[0, 0])
    if n_dirs == 2 and not sequence:
        a = &layers[top]
        b = &layers[top + 1]
        _join(<floating*> a.h, <floating*> b.h, N, H, &feats[0, 0])

    # z = feats @ W.T + b
    for i in range(R):
        memcpy(&z[i, 0], &head_b[0], n_out * sizeof(floating))
    gemm(c'N', c'T', <int> R, <int> n_out, <int> F, 1, &feats[0, 0], <int> F,
         &head_w[0, 0], <int> F, 1, &z[0, 0], <int> n_out)
    if not backward:
        # an output that is not finite can have a finite loss (the log-loss
        # of an infinite logit): the loss of such outputs is NaN
        for i in range(R):
            for d in range(n_out):
                if not isfinite(z[i, d]):
                    return NAN
    total = _loss(loss, sequence, z, y, codes, weights, levels, rows,
                  layers[0].n_live)
    if not backward:
        return total
    # gW += dz.T @ feats; gb += dz.sum(axis=0); d_feats = dz @ W
    gemm(c'T', c'N', <int> n_out, <int> F, <int> R, 1, &z[0, 0], <int> n_out,
         &feats[0, 0], <int> F, 1, &head_gw[0, 0], <int> F)
    for i in range(R):
        for d in range(n_out):
            head_gb[d] += z[i, d]
    gemm(c'N', c'N', <int> R, <int> F, <int> n_out, 1, &z[0, 0], <int> n_out,
         &head_w[0, 0], <int> F, 0, &d_feats[0, 0], <int> F)

    if n_dirs == 2:
        a = &layers[top]
        b = &layers[top + 1]
        if sequence:
            _split(&d_feats[0, 0], TN, H, <floating*> a.d_out, <floating*> b.d_out)
        else:
            _split(&d_feats[0, 0], N, H, <floating*> a.dh, <floating*> b.dh)
    for j in range(n // n_dirs - 1, -1, -1):
        k = j * n_dirs
        for d in range(n_dirs):
            _run_backward(&layers[k + d], <const floating*> layers[k + d].x)
        if k > 0 and n_dirs == 2:
            # the inputs' gradient is the sum over both directions; split, it
            # is the gradient of the outputs of the layer below
            a = &layers[k]
            b = &layers[k + 1]
            _add(<floating*> a.dx, <const floating*> b.dx, TN * 2 * H)
            _split(<floating*> a.dx, TN, H, <floating*> layers[k - 2].d_out,
                   <floating*> layers[k - 1].d_out)
    return total


def epoch(list rooms, list partner_rooms, Py_ssize_t n_dirs, bint sequence,
          Loss loss, const floating[:, :, ::1] values, const Py_ssize_t[::1] order,
          const Py_ssize_t[::1] lengths, const Py_ssize_t[::1] bounds,
          const Py_ssize_t[::1] splits, const double[::1] batch_weights,
          const double[:, :, ::1] y, const Py_ssize_t[:, ::1] codes,
          const floating[::1] weights, const double[::1] levels,
          const floating[:, ::1] head_w, const floating[::1] head_b,
          floating[:, ::1] head_gw, floating[::1] head_gb,
          floating[:, ::1] partner_head_gw, floating[::1] partner_head_gb,
          floating[::1] flat, floating[::1] grad, floating[::1] partner_grad,
          const floating[::1] weight_mask, floating[::1] previous, double alpha,
          double clip_norm, double peak, double eps, Solver solver,
          floating[::1] a, floating[::1] b, const double[:, ::1] constants,
          Py_ssize_t[::1] sync, double[::1] partner_losses):
    """An epoch of training steps, one per batch: :func:`loss_grad` of the
    batch in one or two shares, the L2 penalty, the divergence rule,
    clipping and the optimiser's step (:mod:`skrnn._engine._update`), as
    the estimators' training loop takes them one call at a time.

    A batch's second share goes to the thread that claims it first: this
    one, once the first share is done, or one running :func:`epoch_partner`
    with the same ``sync`` meanwhile, until the caller sets
    ``sync[STOPPED]``. The gradients are added in the same order whichever
    thread computes them.

    Parameters
    ----------
    rooms, partner_rooms : lists of skrnn._engine.batch._Room
        Each batch's first and second share's room (layers bound to the
        parameters and to ``grad`` and ``partner_grad``), with ``n_live``
        room for its steps; None for a batch of one share.
    n_dirs, sequence, loss, values, y, codes, weights, levels, head_w, head_b, \
head_gw, head_gb
        As for :func:`loss_grad`; ``weights`` divided by each row's batch's
        total weight (in rows).
    order, lengths : (n,) arrays
        The batches' sequences one after the other, and their lengths.
    bounds, splits : (n_batches + 1,) and (n_batches,) arrays
        Batch k's shares are ``order[bounds[k]:splits[k]]`` and
        ``order[splits[k]:bounds[k + 1]]`` (empty for one share), each
        longest first.
    batch_weights : (n_batches,) array
        Each batch's total sample weight; a batch of none is skipped.
    partner_head_gw, partner_head_gb, partner_grad : arrays
        The second shares' gradient, as ``head_gw``, ``head_gb`` and ``grad``.
    flat, grad, weight_mask, previous : (P,) arrays
        The parameters, their gradient (of which ``head_gw`` and ``head_gb``
        and the rooms' gradient views are views), 1 for weights and 0 for
        biases, and the weights before the latest step (written).
    alpha : float
        The L2 penalty's strength; a batch's is ``alpha / batch weight``.
    clip_norm : float
        The gradient's largest norm; 0 or less: no clipping.
    peak, eps : float
        The divergence rule's largest loss so far (0: none) and the weights'
        machine epsilon: a batch's loss must be finite and at most ``peak /
        eps`` (while ``peak`` is positive), and its gradient finite.
    solver, a, b : Solver and state arrays
        The optimiser (see :func:`skrnn._engine._update.update`).
    constants : (n_batches, 5) array
        The optimiser's constants of each step, in the order taken.
    sync : (SYNC_SLOTS + 2 * n_batches,) array of zeros
        The two threads' counters.
    partner_losses : (n_batches,) array
        Room for the second shares' losses.

    Returns
    -------
    total : float or None
        The sum of the batches' losses (penalty included) times their
        weights; None where a step broke the divergence rule, whose weights
        are then put back to ``previous``, and the epoch stops.
    steps : int
        The optimiser's steps taken.
    """
    cdef:
        Py_ssize_t k, i, s, m, e, n_batches = bounds.shape[0] - 1, taken = 0
        Py_ssize_t* done = &sync[SYNC_SLOTS + n_batches]
        double total = 0, value, penalty, squared, scale
        bint sound = True, finite
    for k in range(n_batches):
        skrnn_finish(&sync[PUBLISHED])  # the weights of batch k are ready
        PyErr_CheckSignals()  # a KeyboardInterrupt: the caller rolls back
        if batch_weights[k] <= 0:
            continue  # only zero-weight samples: nothing to learn from
        s, m, e = bounds[k], splits[k], bounds[k + 1]
        value = _share(rooms[k], n_dirs, sequence, loss, values, order, lengths,
                       s, m, y, codes, weights, levels, head_w, head_b, head_gw,
                       head_gb, grad)
        if m < e:
            if skrnn_claim(&sync[SYNC_SLOTS + k]) == 0:
                partner_losses[k] = _share(
                    partner_rooms[k], n_dirs, sequence, loss, values, order,
                    lengths, m, e, y, codes, weights, levels, head_w, head_b,
                    partner_head_gw, partner_head_gb, partner_grad)
            else:
                with nogil:
                    skrnn_wait_or(&done[k], 1, &sync[PARTNER_GONE])
                if not skrnn_load(&done[k]):
                    raise RuntimeError("the epoch's second thread stopped")
            with nogil:
                # grad += partner_grad
                for i in range(grad.shape[0]):
                    grad[i] += partner_grad[i]
            value = value + partner_losses[k]
        with nogil:
            # L2 on weights (not biases), scaled as MLP's: alpha / 2 * ||W||^2 / n
            scale = alpha / batch_weights[k]
            penalty = penalize_into(grad, flat, weight_mask, scale, &squared,
                                    &finite)
            value = value + 0.5 * scale * penalty
            sound = (isfinite(value) and (peak <= 0 or value <= peak / eps)
                     and finite)
            if sound:
                scale = clip_factor(squared, clip_norm) if clip_norm > 0 else 1.0
                sound = step(solver, flat, grad, previous, scale, a, b,
                             &constants[taken, 0])
                taken += 1
            if sound:
                total = total + value * batch_weights[k]
                peak = max(peak, value)
            else:
                # the step that led here, or this one, is undone
                memcpy(&flat[0], &previous[0], flat.shape[0] * sizeof(floating))
        if not sound:
            return None, taken
    return total, taken


def epoch_partner(list partner_rooms, Py_ssize_t n_dirs, bint sequence, Loss loss,
                  const floating[:, :, ::1] values, const Py_ssize_t[::1] order,
                  const Py_ssize_t[::1] lengths, const Py_ssize_t[::1] bounds,
                  const Py_ssize_t[::1] splits, const double[::1] batch_weights,
                  const double[:, :, ::1] y, const Py_ssize_t[:, ::1] codes,
                  const floating[::1] weights, const double[::1] levels,
                  const floating[:, ::1] head_w, const floating[::1] head_b,
                  floating[:, ::1] partner_head_gw, floating[::1] partner_head_gb,
                  floating[::1] partner_grad, Py_ssize_t[::1] sync,
                  double[::1] partner_losses):
    """The second shares of the batches of an :func:`epoch` that runs with
    the same arguments and ``sync`` on another thread: each as soon as its
    batch's weights are ready, unless that thread claimed it first; until
    that epoch ends."""
    cdef Py_ssize_t k, n_batches = bounds.shape[0] - 1
    cdef Py_ssize_t* done = &sync[SYNC_SLOTS + n_batches]
    try:
        for k in range(n_batches):
            if splits[k] == bounds[k + 1] or batch_weights[k] <= 0:
                continue
            with nogil:
                skrnn_wait_or(&sync[PUBLISHED], k + 1, &sync[STOPPED])
            if skrnn_load(&sync[STOPPED]):
                break
            if skrnn_claim(&sync[SYNC_SLOTS + k]) == 0:
                partner_losses[k] = _share(
                    partner_rooms[k], n_dirs, sequence, loss, values, order, lengths,
                    splits[k], bounds[k + 1], y, codes, weights, levels, head_w,
                    head_b, partner_head_gw, partner_head_gb, partner_grad)
                skrnn_finish(&done[k])
    finally:
        skrnn_finish(&sync[PARTNER_GONE])


cdef double _share(room, Py_ssize_t n_dirs, bint sequence, Loss loss,
                   const floating[:, :, ::1] values, const Py_ssize_t[::1] order,
                   const Py_ssize_t[::1] lengths, Py_ssize_t s, Py_ssize_t e,
                   const double[:, :, ::1] y, const Py_ssize_t[:, ::1] codes,
                   const floating[::1] weights, const double[::1] levels,
                   const floating[:, ::1] head_w, const floating[::1] head_b,
                   floating[:, ::1] head_gw, floating[::1] head_gb,
                   floating[::1] grad) except? -1:
    """:func:`loss_grad` of the sequences ``order[s:e]`` (longest first) in
    ``room``, whose gradient views, ``head_gw`` and ``head_gb`` are views of
    ``grad``: zeroed, then the gradient. The GIL is held only to read the
    room."""
    cdef:
        Py_ssize_t i = e, t, T = lengths[s]
        double total
        Layers layers = room.plan
        Py_ssize_t[::1] n_live = room.n_live
        floating[:, ::1] feats = room.feats, z = room.z, d_feats = room.d_feats
    with nogil:
        # n_live[t] = #(lengths > t) over the share, sorted longest first
        for t in range(T):
            while i > s and lengths[i - 1] <= t:
                i -= 1
            n_live[t] = i - s
        memset(&grad[0], 0, grad.shape[0] * sizeof(floating))
        total = _loss_grad(layers.arrays, layers.n, n_dirs, sequence, loss, values,
                           order[s:e], lengths[s:e], y, codes, weights, levels,
                           head_w, head_b, head_gw, head_gb, feats, z, d_feats,
                           True)
    return total


cdef void _run_forward(const LayerArrays* a, const Py_ssize_t[::1] lengths,
                       const floating* x) noexcept nogil:
    """One direction of one layer forward from zero states, keeping what its
    backward pass reads."""
    cdef Py_ssize_t r, N = a.N, H = a.H
    cdef floating* c_prev = <floating*> a.c_prev
    memset(a.h, 0, N * H * sizeof(floating))
    if a.c != NULL:  # the LSTM's cell state
        memset(a.c, 0, N * H * sizeof(floating))
        # c_prev holds the initial (zero) state where each sequence starts:
        # forward in time at step 0; backward in time, for a sequence of
        # length L, at step L - 1
        if a.reverse:
            for r in range(N):
                if lengths[r] > 0:
                    memset(c_prev + ((lengths[r] - 1) * N + r) * H, 0,
                           H * sizeof(floating))
        else:
            memset(c_prev, 0, N * H * sizeof(floating))
    forward_layer(a, x)


cdef void _run_backward(const LayerArrays* a, const floating* x) noexcept nogil:
    """One direction of one layer backward: the gradient reaches its
    outputs (``d_out``) where the layer has them, else its final state
    (``dh``) only."""
    if a.all_d_out:
        memset(a.dh, 0, a.N * a.H * sizeof(floating))
    if a.dc != NULL:
        memset(a.dc, 0, a.N * a.H * sizeof(floating))
    backward_layer(a, x)


cdef double _loss(Loss loss, bint sequence, floating[:, ::1] z,
                  const double[:, :, ::1] y, const Py_ssize_t[:, ::1] codes,
                  const floating[::1] weights, const double[::1] levels,
                  const Py_ssize_t[::1] rows,
                  const Py_ssize_t* n_live) noexcept nogil:
    """The weighted loss sum over the valid rows of ``z``, which become
    the loss's gradient (zero at padded steps); ``n_live[t]`` rows are
    valid at step t."""
    cdef Py_ssize_t R = z.shape[0], n_out = z.shape[1], N = rows.shape[0]
    cdef Py_ssize_t r, t = 0, i, row
    cdef double total = 0
    for r in range(R):
        if sequence:
            t, i = r // N, r % N
            if i >= n_live[t]:
                memset(&z[r, 0], 0, n_out * sizeof(floating))
                continue
        else:
            i = r
        row = rows[i]
        if loss == SQUARED_ERROR:
            total += _squared_error(&z[r, 0], &y[row, t, 0], weights[row], n_out)
        elif loss == BINARY_LOG_LOSS:
            total += _binary_log_loss(&z[r, 0], codes[row, t], weights[row])
        elif loss == MULTI_LOG_LOSS:
            total += _multi_log_loss(&z[r, 0], codes[row, t], weights[row], n_out)
        elif loss == ABSOLUTE_ERROR:
            total += _absolute_error(&z[r, 0], &y[row, t, 0], weights[row], n_out)
        elif loss == POISSON:
            total += _poisson(&z[r, 0], &y[row, t, 0], weights[row], n_out)
        elif loss == QUANTILE:
            total += _pinball(&z[r, 0], &y[row, t, 0], weights[row], levels,
                              y.shape[2])
        else:
            total += _gaussian(&z[r, 0], &y[row, t, 0], weights[row], y.shape[2])
    return total


cdef double _squared_error(floating* z, const double* y, floating w,
                           Py_ssize_t n_out) noexcept nogil:
    """w / 2 * mean((z - y)^2); z becomes w * (z - y) / n_out."""
    cdef Py_ssize_t j
    cdef floating diff, dz, scale = w / n_out
    cdef double total = 0
    for j in range(n_out):
        diff = z[j] - <floating> y[j]
        dz = diff * scale
        total += <double> dz * diff
        z[j] = dz
    return 0.5 * total


cdef double _absolute_error(floating* z, const double* y, floating w,
                            Py_ssize_t n_out) noexcept nogil:
    """w * mean(|z - y|); z becomes w * sign(z - y) / n_out."""
    cdef Py_ssize_t j
    cdef floating diff, scale = w / n_out
    cdef double total = 0
    for j in range(n_out):
        diff = z[j] - <floating> y[j]
        total += <double> (diff if diff >= 0 else -diff) * scale
        z[j] = ((diff > 0) - (diff < 0)) * scale
    return total


cdef double _poisson(floating* z, const double* y, floating w,
                     Py_ssize_t n_out) noexcept nogil:
    """w * mean(exp(z) - y z + y log y - y); z becomes w (exp(z) - y) / n_out."""
    cdef Py_ssize_t j
    cdef floating mu, yj, y_log_y, scale = w / n_out
    cdef double total = 0
    for j in range(n_out):
        yj, mu = <floating> y[j], <floating> exp(z[j])
        y_log_y = <floating> (yj * log(yj)) if yj > 0 else 0
        total += <double> (mu - yj * z[j] + y_log_y - yj) * scale
        z[j] = (mu - yj) * scale
    return total


cdef inline double _softplus(double a) noexcept nogil:
    """log(1 + exp(a)), without overflow."""
    return a + log1p(exp(-a)) if a > 0 else log1p(exp(a))


cdef inline double _sigmoid(double a) noexcept nogil:
    cdef double e
    if a >= 0:
        return 1 / (1 + exp(-a))
    e = exp(a)
    return e / (1 + e)


cdef double _pinball(floating* z, const double* y, floating w,
                     const double[::1] levels, Py_ssize_t n_targets) noexcept nogil:
    """w * mean of the pinball losses of the quantiles q_k = z_0 + sum_{m <= k}
    softplus(z_m) of each target's K outputs; z becomes their gradient.

    Two passes over a target's outputs: the first sums the gradients dL/dq_k
    (S), the second recomputes them and writes dz_0 = S and, for k >= 1,
    dz_k = sigmoid(z_k) * sum_{m >= k} dL/dq_m, reading each z_k before it
    writes it."""
    cdef Py_ssize_t j, k, K = levels.shape[0]
    cdef floating* b
    cdef double q, u, tau, dq, S, prefix, slope, total = 0
    cdef double scale = <double> w / (n_targets * K)
    for j in range(n_targets):
        b = z + j * K
        q, S = b[0], 0
        for k in range(K):
            if k > 0:
                q += _softplus(b[k])
            tau, u = levels[k], y[j] - q
            total += (tau * u if u > 0 else (tau - 1) * u) * scale
            S += (-tau if u > 0 else 1 - tau) * scale
        q, prefix = b[0], 0
        for k in range(K):
            if k > 0:
                slope = _sigmoid(b[k])
                q += _softplus(b[k])
            tau, u = levels[k], y[j] - q
            dq = (-tau if u > 0 else 1 - tau) * scale
            b[k] = <floating> (S - prefix if k == 0 else (S - prefix) * slope)
            prefix += dq
    return total


cdef double _gaussian(floating* z, const double* y, floating w,
                      Py_ssize_t n_targets) noexcept nogil:
    """w * mean of the Gaussian negative log-likelihoods of each target's
    mean m = z_2j and standard deviation softplus(z_2j+1) + floor; z becomes
    their gradient."""
    cdef Py_ssize_t j
    cdef double m, s, sigma, r, scale = <double> w / n_targets, total = 0
    for j in range(n_targets):
        m, s = z[2 * j], z[2 * j + 1]
        sigma = _softplus(s) + _SIGMA_FLOOR
        r = y[j] - m
        total += (log(sigma) + r * r / (2 * sigma * sigma) + _HALF_LOG_2PI) * scale
        z[2 * j] = <floating> (-r / (sigma * sigma) * scale)
        z[2 * j + 1] = <floating> (
            (1 / sigma - r * r / (sigma * sigma * sigma)) * scale * _sigmoid(s))
    return total


cdef double _binary_log_loss(floating* z, Py_ssize_t code,
                             floating w) noexcept nogil:
    """-w log sigmoid(+-z) for the codes 1 and 0; z becomes
    w * (sigmoid(z) - code)."""
    cdef double v = z[0], s = v if code == 1 else -v, e
    # log sigmoid(s) and sigmoid(v), without overflow for any sign
    cdef double log_sigmoid = -log1p(exp(-s)) if s >= 0 else s - log1p(exp(s))
    if v >= 0:
        e = 1 / (1 + exp(-v))
    else:
        e = exp(v)
        e = e / (1 + e)
    z[0] = <floating> (e - code) * w
    return -w * log_sigmoid


cdef double _multi_log_loss(floating* z, Py_ssize_t code, floating w,
                            Py_ssize_t n_out) noexcept nogil:
    """-w log softmax(z)[code]; z becomes w * (softmax(z) - onehot(code))."""
    cdef Py_ssize_t j
    cdef double top = z[0], total = 0, log_sum
    for j in range(1, n_out):
        top = max(top, <double> z[j])
    for j in range(n_out):
        total += exp(z[j] - top)
    log_sum = top + log(total)
    total = -w * (z[code] - log_sum)
    for j in range(n_out):
        z[j] = <floating> (exp(z[j] - log_sum) - (j == code)) * w
    return total


cdef void _gather(const floating[:, :, ::1] values, const Py_ssize_t[::1] rows,
                  floating* x, Py_ssize_t T, Py_ssize_t N,
                  Py_ssize_t D) noexcept nogil:
    """x[t, i] = values[rows[i], t] for x of (T, N, D): the sequences,
    time-major."""
    cdef Py_ssize_t t, i
    for t in range(T):
        for i in range(N):
            memcpy(x + (t * N + i) * D, &values[rows[i], t, 0], D * sizeof(floating))


cdef void _join(const floating* a, const floating* b, Py_ssize_t rows,
                Py_ssize_t H, floating* ab) noexcept nogil:
    """ab = [a, b], side by side, for a and b of (rows, H)."""
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(ab + 2 * i * H, a + i * H, H * sizeof(floating))
        memcpy(ab + (2 * i + 1) * H, b + i * H, H * sizeof(floating))


cdef void _split(const floating* ab, Py_ssize_t rows, Py_ssize_t H, floating* a,
                 floating* b) noexcept nogil:
    """[a, b] = ab: the inverse of :func:`_join`."""
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(a + i * H, ab + 2 * i * H, H * sizeof(floating))
        memcpy(b + i * H, ab + (2 * i + 1) * H, H * sizeof(floating))


cdef void _add(floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """a += b, over n elements."""
    cdef Py_ssize_t i
    for i in range(n):
        a[i] += b[i]
