"""The end of a training step on the host, compiled: the L2 penalty, the
gradient's norm and finiteness, clipping and the optimiser's update, each a
single pass over the network's flat parameter vector.

:mod:`skrnn.optim` and :func:`skrnn.optim.clip_grad_norm` specify the math
(and run it elsewhere, on the GPU's arrays); these loops follow their
formulas operation for operation, in the weights' precision, so that the
weights agree with them to rounding. The caller checks every length; the
loops run without bounds checks and without the GIL.
"""

from cython cimport floating
from libc.math cimport isfinite, sqrt


def penalize(floating[::1] grad, const floating[::1] flat,
             const floating[::1] weight_mask, double scale):
    """``grad += scale * weight_mask * flat``; the penalty and the gradient.

    Returns ``(penalty, squared_norm, finite)``: ``sum((weight_mask * flat)
    * flat)`` and ``sum(grad ** 2)`` after the addition, both accumulated in
    float64, and whether every element of ``grad`` is finite.
    """
    cdef double penalty, squared
    cdef bint finite
    with nogil:
        penalty = penalize_into(grad, flat, weight_mask, scale, &squared, &finite)
    return penalty, squared, finite


cdef double penalize_into(floating[::1] grad, const floating[::1] flat,
                          const floating[::1] weight_mask, double scale,
                          double* squared, bint* finite) noexcept nogil:
    """:func:`penalize`: returns the penalty, writes the squared norm and
    the finiteness into ``squared`` and ``finite``."""
    cdef Py_ssize_t i, n = grad.shape[0]
    cdef floating s = <floating> scale, w
    cdef double penalty = 0, total = 0, g
    cdef bint all_finite = True
    for i in range(n):
        w = weight_mask[i] * flat[i]
        penalty += <double> w * flat[i]
        grad[i] += s * w
        g = grad[i]
        total += g * g
        # g - g is 0 for a finite g and NaN otherwise: no branch here
        all_finite &= g - g == 0
    squared[0], finite[0] = total, all_finite
    return penalty


def clip_scale(double squared_norm, double max_norm):
    """:func:`skrnn.optim.clip_grad_norm`'s factor for a gradient of that
    squared norm: ``max_norm / norm`` above ``max_norm``, else 1 (and 1 for
    a norm that is not finite)."""
    return clip_factor(squared_norm, max_norm)


cdef double clip_factor(double squared_norm, double max_norm) noexcept nogil:
    cdef double norm = sqrt(squared_norm)
    if not isfinite(norm) or norm <= max_norm:
        return 1.0
    return max_norm / norm


def update(Solver solver, floating[::1] flat, const floating[::1] grad,
           floating[::1] previous, double scale, floating[::1] a,
           floating[::1] b, double p0, double p1, double p2, double p3,
           double p4):
    """One optimiser step on ``flat`` with its gradient times ``scale`` (the
    clipping factor; 1: none); ``previous`` receives the weights before it.

    The state arrays and constants by solver, named as in :mod:`skrnn.optim`:

    - ``SGD``, ``NESTEROV``: ``a`` the velocity; ``p0`` the learning rate,
      ``p1`` the momentum;
    - ``ADAM``: ``a`` and ``b`` the moments m and v; ``p0`` this step's
      step size, ``p1``, ``p2``, ``p3`` beta_1, beta_2 and epsilon, ``p4``
      the second moment's bias correction ``sqrt(1 - beta_2**t)``;
    - ``RPROP``: ``a`` the previous gradient, ``b`` the step sizes; ``p0``,
      ``p1`` the etas (minus, plus), ``p2``, ``p3`` the step sizes' bounds.

    The gradient is finite (the caller checked it). Returns whether every
    updated weight is.
    """
    cdef double p[5]
    cdef bint finite
    p[0], p[1], p[2], p[3], p[4] = p0, p1, p2, p3, p4
    with nogil:
        finite = step(solver, flat, grad, previous, scale, a, b, p)
    return finite


cdef bint step(Solver solver, floating[::1] flat, const floating[::1] grad,
               floating[::1] previous, double scale, floating[::1] a,
               floating[::1] b, const double* p) noexcept nogil:
    """:func:`update` with its five constants in ``p``."""
    cdef Py_ssize_t i, n = flat.shape[0]
    cdef floating g, s = <floating> scale
    # the constants as NumPy rounds Python floats to the weights' dtype
    cdef floating c0 = <floating> p[0], c1 = <floating> p[1]
    cdef floating c2 = <floating> p[2], c3 = <floating> p[3], c4 = <floating> p[4]
    cdef floating d1 = <floating> (1 - p[1]), d2 = <floating> (1 - p[2])
    cdef floating minus_c0 = <floating> -p[0]
    cdef bint finite = True
    for i in range(n):
        g = grad[i] if scale == 1 else grad[i] * s
        previous[i] = flat[i]
        if solver == ADAM:
            # m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2
            a[i] = a[i] * c1
            a[i] = a[i] + d1 * g
            b[i] = b[i] * c2
            b[i] = b[i] + d2 * (g * g)
            # w += -step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps)
            flat[i] = flat[i] + minus_c0 * a[i] / (
                <floating> sqrt(b[i]) / c4 + c3)
        elif solver == RPROP:
            # the step grows while the gradient keeps its sign and
            # shrinks when it flips; a flipped gradient counts as 0 next
            if g * a[i] > 0:
                b[i] = b[i] * c1
            elif g * a[i] < 0:
                b[i] = b[i] * c0
                g = 0
            b[i] = min(max(b[i], c2), c3)
            a[i] = g
            # w -= sign(g) step
            flat[i] = flat[i] - ((g > 0) - (g < 0)) * b[i]
        else:
            # v = momentum v - lr g
            a[i] = a[i] * c1
            a[i] = a[i] - c0 * g
            if solver == NESTEROV:
                flat[i] = flat[i] + (c1 * a[i] - c0 * g)
            else:
                flat[i] = flat[i] + a[i]
        finite &= flat[i] - flat[i] == 0
    return finite
