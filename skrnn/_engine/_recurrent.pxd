# The compiled passes of one direction of one layer, for the batch step
# (_batch.pyx) to call without the GIL; documented in _recurrent.pyx.

from cython cimport floating


cpdef enum Cell:
    RNN
    GRU_RESET_AFTER
    GRU_RESET_BEFORE
    LSTM


cdef void _forward(int cell, int act, bint reverse,
                   const floating[:, :, ::1] x, const Py_ssize_t[::1] n_live,
                   const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                   const floating[::1] b_ih, const floating[::1] b_hh,
                   floating[:, ::1] h, floating[:, ::1] c, floating[:, :, ::1] out,
                   floating[:, :, ::1] gates, floating[:, :, ::1] h_prev,
                   floating[:, :, ::1] hn, floating[:, :, ::1] c_new,
                   floating[:, ::1] work, float[::1] packed) noexcept nogil

cdef void _backward(int cell, int act, bint reverse,
                    const floating[:, :, ::1] x, const Py_ssize_t[::1] n_live,
                    const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                    const floating[:, :, ::1] out, const floating[:, :, ::1] h_prev,
                    const floating[:, :, ::1] hn, const floating[:, :, ::1] c_prev,
                    const floating[:, :, ::1] c_new,
                    const floating[:, :, ::1] d_out, floating[:, ::1] dh,
                    floating[:, ::1] dc,
                    floating[:, :, ::1] dg, floating[:, :, ::1] dan,
                    floating[:, :, ::1] dx, floating[:, ::1] dw_ih,
                    floating[:, ::1] dw_hh, floating[::1] db_ih, floating[::1] db_hh,
                    floating[:, ::1] work, float[::1] packed) noexcept nogil
