"""The compiled CPU engine against the reference engine."""

import itertools
import threading

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skrnn._cells import N_GATES, CellSpec, state_size
from skrnn._engine import _recurrent, cpu, get_engine, reference

CELL_GRID = (
    [
        CellSpec("rnn", act, False, bias)
        for act, bias in itertools.product(
            ["tanh", "relu", "identity", "logistic"], [True, False]
        )
    ]
    + [
        CellSpec("gru", act, reset_after, bias)
        for act, reset_after, bias in itertools.product(
            ["tanh", "logistic"], [True, False], [True, False]
        )
    ]
    + [CellSpec("lstm", "tanh", True, bias) for bias in [True, False]]
)
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def _spec_id(spec):
    form = ("after" if spec.reset_after else "before") if spec.cell == "gru" else ""
    form = f"-{form}" if form else ""
    return f"{spec.cell}-{spec.activation}{form}-bias{int(spec.use_bias)}"


def _state_size(spec, H):
    return state_size(spec.cell, H)


def _params(spec, D, H, dtype, rng):
    G = N_GATES[spec.cell]
    params = {
        "weight_ih": rng.normal(scale=0.6, size=(G * H, D)),
        "weight_hh": rng.normal(scale=0.6 / np.sqrt(H), size=(G * H, H)),
    }
    if spec.use_bias:
        params["bias_ih"] = rng.normal(scale=0.3, size=G * H)
        params["bias_hh"] = rng.normal(scale=0.3, size=G * H)
    return {k: v.astype(dtype) for k, v in params.items()}


def _relative_error(actual, expected):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(np.abs(expected).max(initial=0.0), np.finfo(np.float64).tiny)
    return (
        np.abs(np.asarray(actual, dtype=np.float64) - expected).max(initial=0.0) / scale
    )


def _assert_close(actual, expected, dtype, what):
    assert actual.shape == expected.shape, what
    assert actual.dtype == dtype, what
    err = _relative_error(actual, expected)
    assert err <= TOL[dtype], f"{what}: relative error {err:.3g}"


def _compare(
    spec,
    T,
    N,
    D,
    H,
    lengths,
    dtype,
    reverse=False,
    with_dh_last=True,
    seed=0,
    h0="random",
):
    """Run both engines forward and backward and compare every output.

    ``h0="zero-shorter"``: zero initial states h for the sequences shorter
    than T (the compiled engine then keeps a pass backward in time in one
    array of states and outputs, as it does forward in time); the LSTM's
    cell states stay random.
    """
    rng = np.random.default_rng(seed)
    params = _params(spec, D, H, dtype, rng)
    x = rng.normal(size=(T, N, D)).astype(dtype)
    S = _state_size(spec, H)
    zero_shorter = h0 == "zero-shorter"
    h0 = rng.normal(scale=0.5, size=(N, S)).astype(dtype)
    if zero_shorter:
        h0[np.asarray(lengths) < T, :H] = 0
    d_out = rng.normal(size=(T, N, H)).astype(dtype)
    d_h_last = rng.normal(size=(N, S)).astype(dtype) if with_dh_last else None
    lengths = np.asarray(lengths)
    # The reference runs in float64 on the same (float32-representable)
    # values: a float32 result is held to the exact answer, not to another
    # float32 rounding of it (where a gradient cancels, e.g. H=1, two float32
    # computations can each be 7e-5 off, in opposite directions).
    ref = {k: v.astype(np.float64) for k, v in params.items()}
    x64, h064, d_out64 = (a.astype(np.float64) for a in (x, h0, d_out))
    d_h_last64 = None if d_h_last is None else d_h_last.astype(np.float64)

    out_r, h_r, cache_r = reference.forward(spec, ref, x64, lengths, h064, reverse)
    out_c, h_c, cache_c = cpu.forward(spec, params, x, lengths, h0, reverse)
    _assert_close(out_c, out_r, dtype, "outputs")
    _assert_close(h_c, h_r, dtype, "h_last")

    dx_r, dh0_r, grads_r = reference.backward(spec, ref, cache_r, d_out64, d_h_last64)
    dx_c, dh0_c, grads_c = cpu.backward(spec, params, cache_c, d_out, d_h_last)
    _assert_close(dx_c, dx_r, dtype, "dx")
    _assert_close(dh0_c, dh0_r, dtype, "dh0")
    assert grads_c.keys() == grads_r.keys() == params.keys()
    for name in grads_r:
        _assert_close(grads_c[name], grads_r[name], dtype, name)

    # without dx (a first layer's), the rest unchanged, bit for bit
    for engine, args, (dh0, grads) in [
        (reference, (spec, ref, cache_r, d_out64, d_h_last64), (dh0_r, grads_r)),
        (cpu, (spec, params, cache_c, d_out, d_h_last), (dh0_c, grads_c)),
    ]:
        no_dx, dh0_alone, grads_alone = engine.backward(*args, need_dx=False)
        assert no_dx is None
        np.testing.assert_array_equal(dh0_alone, dh0)
        for name in grads:
            np.testing.assert_array_equal(grads_alone[name], grads[name], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("h0", ["random", "zero-shorter"])
@pytest.mark.parametrize("with_dh_last", [False, True])
@pytest.mark.parametrize("lengths", ["equal", "variable"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
def test_matches_reference(spec, reverse, lengths, with_dh_last, h0, dtype):
    T, N, D, H = 7, 6, 3, 5
    lengths = [7] * N if lengths == "equal" else [7, 7, 5, 3, 1, 0]
    _compare(spec, T, N, D, H, lengths, dtype, reverse, with_dh_last, h0=h0)


ODD_SHAPES = {
    "N=1": (5, 1, 3, 4, [5]),
    "N=1-short": (5, 1, 3, 4, [2]),
    "T=1": (1, 4, 3, 4, [1, 1, 0, 0]),
    "D=1": (6, 4, 1, 4, [6, 6, 6, 6]),
    "H=1": (6, 4, 3, 1, [6, 5, 2, 1]),
    "all-ones": (1, 1, 1, 1, [1]),
    "all-different": (9, 8, 2, 3, [9, 8, 7, 6, 5, 4, 3, 2]),
    "one-long-many-short": (12, 9, 2, 3, [12, 2, 1, 1, 1, 1, 1, 1, 1]),
    "all-zero": (4, 3, 2, 3, [0, 0, 0]),
    "none-full": (6, 3, 2, 3, [5, 3, 1]),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", ODD_SHAPES.values(), ids=ODD_SHAPES.keys())
@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
def test_odd_shapes(spec, shape, reverse, dtype):
    _compare(spec, *shape, dtype, reverse)


@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
@pytest.mark.parametrize("T, N", [(0, 3), (4, 0), (0, 0)])
def test_empty_chunk(spec, T, N):
    """No steps or no sequences: the state passes through unchanged."""
    D, H = 2, 3
    rng = np.random.default_rng(0)
    params = _params(spec, D, H, np.float64, rng)
    h0 = rng.normal(size=(N, _state_size(spec, H)))
    out, h_last, cache = cpu.forward(
        spec, params, np.zeros((T, N, D)), np.full(N, T), h0, True
    )
    assert out.shape == (T, N, H) and not out.any()
    np.testing.assert_array_equal(h_last, h0)
    d_h_last = rng.normal(size=h0.shape)
    dx, dh0, grads = cpu.backward(spec, params, cache, np.ones((T, N, H)), d_h_last)
    assert dx.shape == (T, N, D) and not dx.any()
    np.testing.assert_array_equal(dh0, d_h_last)
    for name, value in params.items():
        assert grads[name].shape == value.shape and not grads[name].any()


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
def test_padding_is_never_read(spec, reverse):
    """NaN in x and d_outputs at padded steps changes nothing."""
    T, N, D, H = 6, 4, 3, 4
    lengths = np.array([6, 4, 2, 0])
    rng = np.random.default_rng(1)
    params = _params(spec, D, H, np.float64, rng)
    padded = np.arange(T)[:, None] >= lengths[None, :]
    x = rng.normal(size=(T, N, D))
    x[padded] = 0.0
    d_out = rng.normal(size=(T, N, H))
    d_out[padded] = 0.0
    x_nan, d_out_nan = x.copy(), d_out.copy()
    x_nan[padded] = np.nan
    d_out_nan[padded] = np.nan
    h0 = rng.normal(size=(N, _state_size(spec, H)))

    out, h_last, cache = cpu.forward(spec, params, x, lengths, h0, reverse)
    out_n, h_last_n, cache_n = cpu.forward(spec, params, x_nan, lengths, h0, reverse)
    np.testing.assert_array_equal(out_n, out)
    np.testing.assert_array_equal(h_last_n, h_last)
    dx, dh0, grads = cpu.backward(spec, params, cache, d_out)
    dx_n, dh0_n, grads_n = cpu.backward(spec, params, cache_n, d_out_nan)
    np.testing.assert_array_equal(dx_n, dx)
    np.testing.assert_array_equal(dh0_n, dh0)
    for name in grads:
        np.testing.assert_array_equal(grads_n[name], grads[name])


@pytest.mark.parametrize("window", [1, 2, None], ids=["window1", "window2", "default"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("T", [1, 2, 7, 9])
@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
def test_inference_without_cache(spec, T, reverse, dtype, window, monkeypatch):
    """keep_cache=False (the GRU then projects the inputs in windows of
    ``window`` steps, by default all of them at these sizes)."""
    N, D, H = 5, 3, 4
    G = N_GATES[spec.cell]
    if window is not None:
        step_bytes = N * G * H * np.dtype(dtype).itemsize
        monkeypatch.setattr(cpu, "INFERENCE_GATES_BYTES", window * step_bytes)
    lengths = -np.sort(-np.minimum([T, T, T - 1, 3, 0], T))
    rng = np.random.default_rng(2)
    params = _params(spec, D, H, dtype, rng)
    x = rng.normal(size=(T, N, D)).astype(dtype)
    h0 = rng.normal(size=(N, _state_size(spec, H))).astype(dtype)
    shapes = []
    empty = cpu._empty
    monkeypatch.setattr(
        cpu, "_empty", lambda shape, dt: shapes.append(shape) or empty(shape, dt)
    )
    out_r, h_r, _ = reference.forward(spec, params, x, lengths, h0, reverse)
    out, h_last, cache = cpu.forward(
        spec, params, x, lengths, h0, reverse, keep_cache=False
    )
    assert cache is None
    _assert_close(out, out_r, dtype, "outputs")
    _assert_close(h_last, h_r, dtype, "h_last")
    if spec.cell != "rnn":  # the window of gates the kernel was given
        assert (min(T, window or T), N, G * H) in shapes


@pytest.mark.parametrize("window", [1, 2, None], ids=["window1", "window2", "default"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
def test_inference_without_outputs(spec, T, reverse, window, monkeypatch):
    """keep_outputs=False: no outputs, the same h_last bit for bit, and the
    kernel writes the outputs of one window of steps only."""
    N, D, H = 5, 3, 4
    G = N_GATES[spec.cell]
    if window is not None:
        monkeypatch.setattr(cpu, "INFERENCE_GATES_BYTES", window * N * G * H * 4)
    lengths = -np.sort(-np.minimum([T, T, T - 1, 3, 1], T))
    rng = np.random.default_rng(4)
    params = _params(spec, D, H, np.float32, rng)
    x = rng.normal(size=(T, N, D)).astype(np.float32)
    h0 = rng.normal(size=(N, _state_size(spec, H))).astype(np.float32)
    out, h_kept, _ = cpu.forward(
        spec, params, x, lengths, h0, reverse, keep_cache=False
    )
    shapes = []
    empty = cpu._empty
    monkeypatch.setattr(
        cpu, "_empty", lambda shape, dt: shapes.append(shape) or empty(shape, dt)
    )
    none, h_last, cache = cpu.forward(
        spec, params, x, lengths, h0, reverse, keep_cache=False, keep_outputs=False
    )
    assert none is None and cache is None
    np.testing.assert_array_equal(h_last, h_kept)
    assert (min(T, window or T), N, H) in shapes
    if window is not None and window < T:
        assert (T, N, H) not in shapes
    # the reference engine returns no outputs either, and the same state
    none, h_ref, _ = reference.forward(
        spec, params, x, lengths, h0, reverse, keep_cache=False, keep_outputs=False
    )
    assert none is None
    _assert_close(h_ref, h_last, np.float32, "h_last")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
def test_backward_without_output_gradient(spec, reverse):
    """d_outputs=None (the gradient enters through d_h_last only) is
    backward with zero d_outputs, bit for bit, in both engines."""
    T, N, D, H = 6, 4, 3, 4
    lengths = np.array([6, 5, 2, 1])
    rng = np.random.default_rng(5)
    params = _params(spec, D, H, np.float64, rng)
    x = rng.normal(size=(T, N, D))
    h0 = rng.normal(size=(N, _state_size(spec, H)))
    d_h_last = rng.normal(size=h0.shape)
    zeros = np.zeros((T, N, H))
    for engine in (cpu, reference):
        _, _, cache = engine.forward(spec, params, x, lengths, h0, reverse)
        dx, dh0, grads = engine.backward(spec, params, cache, zeros, d_h_last)
        dx_n, dh0_n, grads_n = engine.backward(spec, params, cache, None, d_h_last)
        np.testing.assert_array_equal(dx_n, dx)
        np.testing.assert_array_equal(dh0_n, dh0)
        for name in grads:
            np.testing.assert_array_equal(grads_n[name], grads[name])
        assert np.abs(dh0).sum() > 0  # the gradient did get through


@pytest.mark.parametrize("spec", CELL_GRID[:1] + CELL_GRID[-4:-1], ids=_spec_id)
def test_cache_survives_backward(spec):
    """backward leaves the cache and its inputs untouched: it can run twice."""
    T, N, D, H = 5, 3, 2, 3
    rng = np.random.default_rng(3)
    params = _params(spec, D, H, np.float64, rng)
    x = rng.normal(size=(T, N, D))
    h0 = rng.normal(size=(N, _state_size(spec, H)))
    _, _, cache = cpu.forward(spec, params, x, [5, 4, 2], h0)
    d_out = rng.normal(size=(T, N, H))
    d_h_last = rng.normal(size=h0.shape)
    d_out_copy, d_h_last_copy = d_out.copy(), d_h_last.copy()
    first = cpu.backward(spec, params, cache, d_out, d_h_last)
    second = cpu.backward(spec, params, cache, d_out, d_h_last)
    np.testing.assert_array_equal(d_out, d_out_copy)
    np.testing.assert_array_equal(d_h_last, d_h_last_copy)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    for name in first[2]:
        np.testing.assert_array_equal(first[2][name], second[2][name])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
def test_backward_consuming_the_cache(spec, reverse):
    """consume_cache=True (the gate gradients written over the gates)
    gives the default backward's results bit for bit; a GRU or LSTM cache is
    then refused, as its gates are gone, and the RNN's, untouched, still
    works."""
    T, N, D, H = 6, 4, 3, 4
    rng = np.random.default_rng(6)
    params = _params(spec, D, H, np.float32, rng)
    x = rng.normal(size=(T, N, D)).astype(np.float32)
    h0 = rng.normal(size=(N, _state_size(spec, H))).astype(np.float32)
    d_out = rng.normal(size=(T, N, H)).astype(np.float32)
    d_h_last = rng.normal(size=h0.shape).astype(np.float32)
    _, _, cache = cpu.forward(spec, params, x, [6, 5, 2, 1], h0, reverse)
    kept = cpu.backward(spec, params, cache, d_out, d_h_last)
    consumed = cpu.backward(spec, params, cache, d_out, d_h_last, consume_cache=True)
    for a, b in zip(kept[:2], consumed[:2]):
        np.testing.assert_array_equal(a, b)
    for name in kept[2]:
        np.testing.assert_array_equal(kept[2][name], consumed[2][name])
    if spec.cell != "rnn":
        with pytest.raises(ValueError, match="used this cache already"):
            cpu.backward(spec, params, cache, d_out, d_h_last)
    else:
        again = cpu.backward(spec, params, cache, d_out, d_h_last)
        np.testing.assert_array_equal(again[1], kept[1])


def test_non_contiguous_inputs():
    """Strided views are accepted and give the same result."""
    spec = CellSpec("gru", "tanh", True, True)
    T, N, D, H = 5, 4, 3, 4
    rng = np.random.default_rng(4)
    params = _params(spec, D, H, np.float64, rng)
    x = rng.normal(size=(N, T, D))
    h0 = rng.normal(size=(H, N))
    lengths = [5, 5, 3, 1]
    expected = reference.forward(spec, params, x.transpose(1, 0, 2), lengths, h0.T)
    out, h_last, _ = cpu.forward(spec, params, x.transpose(1, 0, 2), lengths, h0.T)
    _assert_close(out, expected[0], np.float64, "outputs")
    _assert_close(h_last, expected[1], np.float64, "h_last")


def _blas_operand(rng, shape, dtype, pad):
    """A (rows, cols) block of columns of a wider array: its row stride
    exceeds cols."""
    wide = rng.normal(size=(shape[0], shape[1] + pad)).astype(dtype)
    return wide[:, pad:]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    "transa, transb", list(itertools.product([b"N", b"T"], repeat=2))
)
def test_gemm_wrapper(transa, transb, pad, dtype):
    m, n, k = 4, 5, 3
    rng = np.random.default_rng(5)
    a = _blas_operand(rng, (m, k) if transa == b"N" else (k, m), dtype, pad)
    b = _blas_operand(rng, (k, n) if transb == b"N" else (n, k), dtype, pad)
    c = _blas_operand(rng, (m, n), dtype, pad)
    op_a = a if transa == b"N" else a.T
    op_b = b if transb == b"N" else b.T
    expected = 0.5 * (op_a.astype(np.float64) @ op_b) - 2.0 * c
    base = c.base.copy()
    _recurrent._gemm(transa, transb, 0.5, a, b, -2.0, c)
    _assert_close(c, expected, dtype, "gemm")
    # the columns of the wider array outside the block are untouched
    np.testing.assert_array_equal(c.base[:, :pad], base[:, :pad])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(
    "shape",
    [
        (
            5,
            13,
            3,
            21,
            [5, 5, 4, 4, 4, 3, 3, 2, 2, 1, 1, 1, 0],
        ),  # blocks + rows, panels + columns
        (3, 20, 2, 40, [3] * 20),
        (4, 3, 2, 1, [4, 2, 1]),
    ],
    ids=["13x21", "20x40", "3x1"],
)
@pytest.mark.parametrize("spec", CELL_GRID, ids=_spec_id)
def test_packed_kernels_match_reference(spec, shape, reverse, packed_level):
    _compare(spec, *shape, np.float32, reverse)


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("trans", [False, True])
def test_packed_gemm(trans, accumulate, packed_level):
    if packed_level == 0:
        with pytest.raises(RuntimeError, match="no packed kernel"):
            _recurrent._packed_gemm(
                trans,
                np.ones((1, 1), np.float32),
                np.ones((1, 1), np.float32),
                False,
                np.ones((1, 1), np.float32),
            )
        return
    rng = np.random.default_rng(7)
    pad = 3
    shapes = list(
        itertools.product([1, 5, 8, 13, 17], [1, 15, 16, 17, 40], [1, 3, 16, 33])
    )
    shapes.append((70, 20, 300))  # rows in several chunks (see _packed_kernel.h)
    for m, n, k in shapes:
        a = _blas_operand(rng, (m, k), np.float32, pad)  # row stride k + pad
        b = rng.normal(size=(n, k) if trans else (k, n)).astype(np.float32)
        c = _blas_operand(rng, (m, n), np.float32, pad)
        expected = a.astype(np.float64) @ (b.T if trans else b) + (
            c if accumulate else 0
        )
        base = c.base.copy()
        _recurrent._packed_gemm(trans, a, b, accumulate, c)
        _assert_close(c, expected, np.float32, f"packed gemm {m}x{n}x{k}")
        np.testing.assert_array_equal(c.base[:, :pad], base[:, :pad])
        # a row's result does not depend on the rows computed with it
        for i in range(m):
            row = np.zeros((1, n), np.float32)
            _recurrent._packed_gemm(
                trans, np.ascontiguousarray(a[i : i + 1]), b, False, row
            )
            single = row[0] + (base[i, pad:] if accumulate else 0)
            np.testing.assert_array_equal(c[i], single)


@pytest.mark.parametrize("accumulate", [False, True])
def test_reduction_kernel(accumulate, packed_level):
    """c = a.T @ b (+ c) over the rows of a and b, the weight gradients'
    sum over a pass's rows: blocks of rows of c and their remainders, one or
    several panels of b, rows in one chunk and in several (see
    _packed_kernel.h), operands with row strides."""
    if packed_level == 0:
        with pytest.raises(RuntimeError, match="no packed kernel"):
            _recurrent._reduce(
                np.ones((1, 1), np.float32),
                np.ones((1, 16), np.float32),
                False,
                np.ones((1, 16), np.float32),
            )
        return
    rng = np.random.default_rng(11)
    pad = 3
    for m, n, k in itertools.product([1, 5, 8, 13, 64], [16, 48], [1, 7, 256, 700]):
        a = _blas_operand(rng, (k, m), np.float32, pad)  # row stride m + pad
        b = _blas_operand(rng, (k, n), np.float32, pad)
        c = _blas_operand(rng, (m, n), np.float32, pad)
        expected = a.astype(np.float64).T @ b + (c if accumulate else 0)
        base = c.base.copy()
        _recurrent._reduce(a, b, accumulate, c)
        _assert_close(c, expected, np.float32, f"reduction {m}x{n}x{k}")
        np.testing.assert_array_equal(c.base[:, :pad], base[:, :pad])
    with pytest.raises(ValueError, match="multiple of 16"):
        _recurrent._reduce(a, b[:, :15], False, c[:, :15])


def test_gemm_wrapper_checks_shapes():
    a = np.ones((2, 3))
    with pytest.raises(ValueError, match="shapes"):
        _recurrent._gemm(b"N", b"N", 1.0, a, a, 0.0, np.ones((2, 3)))


def _forward_args(T=4, N=3, D=2, H=3, dtype=np.float64):
    spec = CellSpec("gru", "tanh", True, True)
    rng = np.random.default_rng(6)
    params = _params(spec, D, H, dtype, rng)
    return (
        spec,
        params,
        rng.normal(size=(T, N, D)).astype(dtype),
        rng.normal(size=(N, H)).astype(dtype),
    )


@pytest.mark.parametrize(
    "lengths, match",
    [
        ([2, 4, 1], "sorted"),
        ([4, 1, 2], "sorted"),
        ([5, 4, 1], "within"),
        ([4, 2, -1], "within"),
        ([4, 2], "3 integers"),
        ([4.0, 2.0, 1.0], "integers"),
    ],
)
def test_bad_lengths(lengths, match):
    spec, params, x, h0 = _forward_args()
    with pytest.raises(ValueError, match=match):
        cpu.forward(spec, params, x, lengths, h0)


def test_bad_shapes_and_dtypes():
    spec, params, x, h0 = _forward_args()
    lengths = [4, 4, 4]
    with pytest.raises(ValueError, match="h0"):
        cpu.forward(spec, params, x, lengths, h0[:, :2])
    with pytest.raises(ValueError, match="h0"):
        cpu.forward(spec, params, x, lengths, h0.astype(np.float32))
    with pytest.raises(ValueError, match="x must"):
        cpu.forward(spec, params, x.astype(np.int64), lengths, h0)
    with pytest.raises(ValueError, match="weights"):
        cpu.forward(spec, params, x[:, :, :1], lengths, h0)
    with pytest.raises(ValueError, match="weights"):
        cpu.forward(spec._replace(cell="rnn"), params, x, lengths, h0)
    bad = dict(params, bias_hh=params["bias_hh"][:-1])
    with pytest.raises(ValueError, match="biases"):
        cpu.forward(spec, bad, x, lengths, h0)
    with pytest.raises(ValueError, match="unsupported"):
        cpu.forward(spec._replace(activation="softsign"), params, x, lengths, h0)

    _, _, cache = cpu.forward(spec, params, x, lengths, h0)
    d_out = np.zeros((4, 3, 3))
    with pytest.raises(ValueError, match="cache"):
        cpu.backward(spec, params, None, d_out)
    with pytest.raises(ValueError, match="d_outputs"):
        cpu.backward(spec, params, cache, d_out[:3])
    with pytest.raises(ValueError, match="d_h_last"):
        cpu.backward(spec, params, cache, d_out, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="differ"):
        cpu.backward(spec._replace(reset_after=False), params, cache, d_out)

    # the LSTM's state is h and c side by side
    lstm = CellSpec("lstm", "tanh", True, True)
    params = _params(lstm, 2, 3, np.float64, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"h0 must have shape \(3, 6\)"):
        cpu.forward(lstm, params, x, lengths, h0)
    _, _, cache = cpu.forward(lstm, params, x, lengths, np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"d_h_last must have shape \(3, 6\)"):
        cpu.backward(lstm, params, cache, d_out, np.zeros((3, 3)))


def test_get_engine():
    engine = get_engine("cpu")
    assert engine.name == "cpu" and engine.xp is np
    assert engine.forward is cpu.forward and engine.backward is cpu.backward
    assert engine.workspace is cpu.workspace
    assert get_engine().name == "cpu"
    assert get_engine("reference").forward is reference.forward
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("tpu")


# Workspace: the kernels' large arrays reused from batch to batch in a fit

F32 = np.dtype(np.float32)
BIG = (64, 1024)  # 256 KiB of float32: taken from the workspace


def _address(a):
    return a.__array_interface__["data"][0]


def test_workspace_reuses_a_block_only_once_every_view_is_gone():
    assert F32.itemsize * np.prod(BIG) >= cpu.WORKSPACE_MIN_BYTES
    with cpu.workspace():
        a = cpu._empty(BIG, F32)
        first = _address(a)
        view = a[3:]
        del a
        b = cpu._empty(BIG, F32)  # the view still holds the first block
        assert not np.shares_memory(b, view)
        view[...] = 1
        b[...] = 2
        assert (view == 1).all()
        del view
        c = cpu._empty(BIG, F32)
        assert _address(c) == first
        assert c.shape == BIG and c.dtype == F32 and c.flags.writeable
        flat = (BIG[0] * BIG[1],)  # the same bytes, another shape
        second = _address(b)
        other = cpu._empty(flat, F32)
        assert _address(other) not in (first, second)  # both in use
        del b
        d = cpu._empty(flat, F32)
        assert _address(d) == second and d.shape == flat


def test_outside_a_workspace_and_below_its_size_arrays_are_numpys_own():
    assert cpu._empty(BIG, F32).flags.owndata
    with cpu.workspace():
        assert cpu._empty((4, 4), F32).flags.owndata
        assert not cpu._empty(BIG, F32).flags.owndata


def test_workspace_takes_back_blocks_released_on_other_threads():
    with cpu.workspace():
        holder = [cpu._empty(BIG, F32)]
        first = _address(holder[0])
        thread = threading.Thread(target=holder.clear)
        thread.start()
        thread.join()
        assert _address(cpu._empty(BIG, F32)) == first


def test_workspace_keeps_at_most_twice_its_peak():
    """Blocks of sizes that keep changing are freed past twice the most
    bytes in use at once."""
    with cpu.workspace() as ws:
        for n in range(1, 40):
            a = cpu._empty((64, 1024 + n), F32)
            del a
        cpu._empty(BIG, F32)  # files what came back
        assert 0 < ws._kept <= 2 * ws._peak
        assert ws._peak < 2 * F32.itemsize * 64 * (1024 + 40)


def test_workspace_frees_its_blocks_at_the_end_and_arrays_outlive_it():
    with cpu.workspace() as ws:
        kept = cpu._empty(BIG, F32)
        kept[...] = 7
        cpu._empty(BIG, F32)
        cpu._empty(BIG, F32)  # files the block of the one before
        assert ws._free
    assert not ws._free and not ws._returned
    del kept  # comes back to a closed workspace: freed, not kept
    assert not ws._free and not ws._returned
    assert cpu._empty(BIG, F32).flags.owndata


class _CountingWorkspace(cpu._Workspace):
    """Counts requests and the distinct blocks that served them."""

    def __init__(self):
        super().__init__()
        self.requests, self.blocks = 0, {}

    def empty(self, shape, dtype, nbytes):
        a = super().empty(shape, dtype, nbytes)
        self.requests += 1
        raw = a.base._block[0]
        self.blocks[id(raw)] = raw  # kept alive, so that ids stay distinct
        return a


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 6 epochs
@pytest.mark.parametrize(
    "params",
    [
        dict(cell="gru"),
        dict(cell="gru", reset_after=False, num_layers=2),
        dict(cell="rnn", bidirectional=True, output="sequence"),
        dict(cell="gru", bptt_steps=3),
    ],
    ids=["gru", "gru-before-2-layers", "rnn-bidirectional-sequence", "gru-bptt"],
)
def test_a_fit_from_the_workspace_equals_one_without(monkeypatch, params):
    """Every kernel array from the workspace (whatever its size), batches
    in two shares (on two threads where there are two cores): the same
    weights, bit for bit, as a fit that allocates afresh, and the blocks
    were reused: the engine's passes' (truncated BPTT), or the compiled
    training passes' room."""
    from contextlib import nullcontext

    import skrnn._base
    from skrnn import SequenceClassifier, SequenceRegressor, _network
    from skrnn._engine import batch

    monkeypatch.setattr(cpu, "WORKSPACE_MIN_BYTES", 0)
    monkeypatch.setattr(_network, "MIN_SHARE_WORK", 1)
    monkeypatch.setattr(_network, "TRAINING_SHARE_WORK", 1)
    monkeypatch.setattr(_network, "EPOCH_SHARE_WORK", 1)
    counting = _CountingWorkspace()
    monkeypatch.setattr(cpu, "_Workspace", lambda rooms=None: counting)
    rooms = {"built": 0, "used": 0}

    class CountingRoom(batch._Room):
        def __init__(self, *args):
            super().__init__(*args)
            rooms["built"] += 1

    def counting_loss_grad(*args, **kwargs):
        rooms["used"] += 1
        return real_loss_grad(*args, **kwargs)

    def counting_epoch(*args):
        bounds, splits = args[6:8]  # a share per batch, and the second ones
        rooms["used"] += len(splits) + (splits < bounds[1:]).sum()
        return real_epoch(*args)

    real_loss_grad, real_epoch = batch.loss_grad, batch.epoch
    monkeypatch.setattr(batch, "_Room", CountingRoom)
    counted = get_engine("cpu")._replace(
        network_pass=counting_loss_grad, epoch_pass=counting_epoch
    )
    monkeypatch.setattr(skrnn._base, "get_engine", lambda name="cpu": counted)
    rng = np.random.RandomState(0)
    lengths = rng.randint(2, 9, size=70)
    X = [rng.normal(size=(n, 3)) for n in lengths]
    estimator = (
        SequenceClassifier if params.get("output") == "sequence" else SequenceRegressor
    )
    y = (
        [(x[:, 0] > 0).astype(int) for x in X]
        if estimator is SequenceClassifier
        else np.array([x[:, 0].sum() for x in X])
    )
    model_args = dict(
        hidden_size=5, max_iter=6, batch_size=64, random_state=0, **params
    )
    pooled = estimator(**model_args).fit(X, y)
    if "bptt_steps" in params:
        assert counting.requests > 3 * len(counting.blocks)
    else:
        assert rooms["used"] > 3 * rooms["built"] > 0

    plain = counted._replace(workspace=nullcontext)
    monkeypatch.setattr(skrnn._base, "get_engine", lambda name="cpu": plain)
    fresh = estimator(**model_args).fit(X, y)
    for name, value in pooled.coefs_.items():
        np.testing.assert_array_equal(value, fresh.coefs_[name], err_msg=name)


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_a_prediction_reuses_its_windows_memory(monkeypatch, output):
    """Inference runs window by window in a workspace: the later windows
    write to the first ones' blocks, and the outputs equal those of arrays
    allocated afresh."""
    from contextlib import nullcontext

    import skrnn._base
    from skrnn import SequenceRegressor, _network

    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 24, 3))
    y = X.sum(axis=2) if output == "sequence" else X.sum(axis=(1, 2))
    model = SequenceRegressor(
        cell="gru",
        num_layers=2,
        hidden_size=5,
        output=output,
        max_iter=1,
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    monkeypatch.setattr(cpu, "WORKSPACE_MIN_BYTES", 0)

    def blocks_used(X):
        counting = _CountingWorkspace()
        monkeypatch.setattr(cpu, "_Workspace", lambda rooms=None: counting)
        return model.predict(X), len(counting.blocks)

    _, one_window = blocks_used(X[:, :3])
    monkeypatch.setattr(_network, "INFERENCE_WINDOW", 3)
    pooled, eight_windows = blocks_used(X)
    # one block more: a window's new states are written while the states
    # carried into it are still held
    assert eight_windows == one_window + 1

    plain = get_engine("cpu")._replace(workspace=nullcontext)
    monkeypatch.setattr(skrnn._base, "get_engine", lambda name="cpu": plain)
    np.testing.assert_array_equal(pooled, model.predict(X))


@pytest.mark.parametrize("kernel", ["forward", "backward"])
def test_kernels_take_their_arrays_by_name_only(kernel):
    """Many of a kernel's arrays share a type, so a positional call with two
    of them swapped would compile and run: the kernels refuse positions."""
    from skrnn._engine import _recurrent

    for specialisation in getattr(_recurrent, kernel).__signatures__.values():
        with pytest.raises(TypeError, match="positional"):
            specialisation(0, 0, False)


# ------------------------------------------- one sequence split between threads
SPLIT_GRID = [
    spec
    for spec in CELL_GRID
    if spec.cell in ("rnn", "lstm") or spec.reset_after
    if spec.activation in ("tanh", "relu")
]


def _lone_row_problem(spec, T=23, D=3, H=64, seed=0):
    rng = np.random.default_rng(seed)
    params = _params(spec, D, H, np.float32, rng)
    x = rng.normal(size=(T, 1, D)).astype(np.float32)
    h0 = rng.normal(scale=0.5, size=(1, _state_size(spec, H))).astype(np.float32)
    return params, x, np.array([T]), h0


@pytest.fixture
def split_at_hand(monkeypatch, packed_level):
    """Split a lone sequence's steps between two threads at any size, as
    where two workers are at hand; the packed kernels of this CPU."""
    if packed_level == 0:
        pytest.skip("the split needs a packed kernel")
    calls = []
    real = _recurrent.lone_row_forward

    def counting(*args):
        calls.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(cpu, "LONE_ROW_SPLIT_BYTES", 0)
    monkeypatch.setattr(cpu, "workers_at_hand", lambda: 2)
    monkeypatch.setattr(_recurrent, "lone_row_forward", counting)
    return calls


@pytest.mark.parametrize("keep_outputs", [True, False], ids=["outputs", "state"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("spec", SPLIT_GRID, ids=_spec_id)
def test_split_lone_row_equals_one_thread(
    spec, reverse, keep_outputs, split_at_hand, monkeypatch
):
    """Each half of the units computes its gates with the same packed
    products and gate loops as the whole step: the outputs and the final
    state are those of one thread, bit for bit; several windows of input
    projections included."""
    monkeypatch.setattr(cpu, "INFERENCE_GATES_BYTES", 5 * 4 * 64 * 4)  # 5 steps
    params, x, lengths, h0 = _lone_row_problem(spec)
    kw = dict(reverse=reverse, keep_cache=False, keep_outputs=keep_outputs)
    out, h_last, _ = cpu.forward(spec, params, x, lengths, h0, **kw)
    assert len(split_at_hand) == 2  # the caller and one more thread
    monkeypatch.setattr(cpu, "workers_at_hand", lambda: 1)
    out1, h_last1, _ = cpu.forward(spec, params, x, lengths, h0, **kw)
    assert len(split_at_hand) == 2
    np.testing.assert_array_equal(h_last, h_last1)
    if keep_outputs:
        np.testing.assert_array_equal(out, out1)
    ref_out, ref_h, _ = reference.forward(
        spec,
        {k: v.astype(np.float64) for k, v in params.items()},
        x,
        lengths,
        h0.astype(np.float64),
        **kw,
    )
    _assert_close(h_last, ref_h.astype(np.float32), np.float32, "split final state")


def test_split_lone_row_needs_no_partner(packed_level):
    """One thread alone takes every task; a second that comes after it is
    done finds none left: the result is that of the unsplit pass."""
    if packed_level == 0:
        pytest.skip("the split needs a packed kernel")
    spec = CellSpec("lstm", "tanh", True, True)
    H, GH, T = 32, 128, 9
    params, x, lengths, h0 = _lone_row_problem(spec, T=T, H=H)
    expected, h_last, _ = cpu.forward(spec, params, x, lengths, h0, keep_cache=False)
    states = np.zeros((2, H), np.float32)
    states[0] = h0[0, :H]
    c = h0[0, H:].copy()
    out = np.zeros((T, 1, H), np.float32)
    args = (
        _recurrent.Cell.LSTM,
        _recurrent.Activation.TANH,
        False,
        x,
        params["weight_ih"],
        params["weight_hh"],
        params["bias_ih"],
        params["bias_hh"],
        states,
        c,
        out,
        np.zeros((4, 1, GH), np.float32),
        np.zeros(GH * H, np.float32),
        np.zeros((2, _recurrent.lone_row_room(4, H)), np.float32),
        np.zeros(2, np.intp),
    )
    _recurrent.lone_row_forward(*args)
    done = (out.copy(), states.copy(), c.copy())
    late = threading.Thread(target=_recurrent.lone_row_forward, args=args)
    late.start()
    late.join()
    for a, b in zip(done, (out, states, c)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.concatenate([states[T % 2], c]), h_last[0])


def test_split_only_where_it_pays(split_at_hand, monkeypatch):
    """Training, several sequences, a sequence with padded steps, float64,
    the reset-before GRU and an H of no whole half-panels run on one thread;
    so does everything where the weights are small or one worker is at hand."""
    lstm = CellSpec("lstm", "tanh", True, True)
    params, x, lengths, h0 = _lone_row_problem(lstm)
    cpu.forward(lstm, params, x, lengths, h0, keep_cache=True)
    cpu.forward(lstm, params, x, np.array([20]), h0, keep_cache=False)
    x2 = np.concatenate([x, x], axis=1)
    cpu.forward(
        lstm, params, x2, np.array([23, 23]), np.repeat(h0, 2, 0), keep_cache=False
    )
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    cpu.forward(
        lstm,
        p64,
        x.astype(np.float64),
        lengths,
        h0.astype(np.float64),
        keep_cache=False,
    )
    before = CellSpec("gru", "tanh", False, True)
    p, x3, l3, h3 = _lone_row_problem(before)
    cpu.forward(before, p, x3, l3, h3, keep_cache=False)
    p, x4, l4, h4 = _lone_row_problem(lstm, H=48)
    cpu.forward(lstm, p, x4, l4, h4, keep_cache=False)
    assert split_at_hand == []
    monkeypatch.setattr(cpu, "LONE_ROW_SPLIT_BYTES", 4 * 64 * 64 * 4 + 1)
    cpu.forward(lstm, params, x, lengths, h0, keep_cache=False)
    monkeypatch.setattr(cpu, "LONE_ROW_SPLIT_BYTES", 0)
    monkeypatch.setattr(cpu, "workers_at_hand", lambda: 1)
    cpu.forward(lstm, params, x, lengths, h0, keep_cache=False)
    assert split_at_hand == []
