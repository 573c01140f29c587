"""The compiled end of a training step, for the compiled epoch of
:mod:`skrnn._engine._batch` (the ``def`` functions of the module wrap these)."""

from cython cimport floating

cpdef enum Solver:
    SGD
    NESTEROV
    ADAM
    RPROP


cdef double penalize_into(floating[::1] grad, const floating[::1] flat,
                          const floating[::1] weight_mask, double scale,
                          double* squared, bint* finite) noexcept nogil

cdef double clip_factor(double squared_norm, double max_norm) noexcept nogil

cdef bint step(Solver solver, floating[::1] flat, const floating[::1] grad,
               floating[::1] previous, double scale, floating[::1] a,
               floating[::1] b, const double* p) noexcept nogil
