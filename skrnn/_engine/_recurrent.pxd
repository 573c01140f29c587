"""The layer passes' compiled cores, for the whole-network pass of
:mod:`skrnn._engine._batch` (the ``def`` functions :func:`forward` and
:func:`backward` wrap them)."""

from cython cimport floating


cdef struct LayerArrays:
    # One direction of one layer: the sizes and the arrays of forward() and
    # backward() (their docstrings say what each holds), C-contiguous, at
    # their addresses; NULL where the docstrings say empty.
    int cell, act
    bint reverse
    Py_ssize_t T, N, D, H, GH
    Py_ssize_t W  # the steps gates holds (forward's window)
    bint all_out  # out holds every step (else a window's)
    bint all_d_out  # d_out holds every step (else one step of zeros)
    const Py_ssize_t* n_live
    const void* x
    const void* w_ih
    const void* w_hh
    const void* b_ih
    const void* b_hh
    void* h
    void* c
    void* out
    void* gates
    void* h_prev
    void* hn
    void* c_new
    void* work
    float* packed
    const void* c_prev
    const void* d_out
    void* dh
    void* dc
    void* dg
    void* dan
    void* dx
    void* dw_ih
    void* dw_hh
    void* db_ih
    void* db_hh
    void* back_work


cdef void forward_layer(const LayerArrays* a, const floating* x) noexcept nogil

cdef void backward_layer(const LayerArrays* a, const floating* x) noexcept nogil
