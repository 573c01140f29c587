"""The CUDA engine's fused step kernels, compiled for the CPU.

The kernels of :mod:`skrnn._engine.cuda` are CUDA C++. Here the host's C++
compiler builds the same source, with ``threadIdx``, ``blockIdx`` and
``blockDim`` made plain values, and :class:`~skrnn._engine.cuda.CudaKernels`
itself (its launcher, argument lists and bias handling) runs them on NumPy
arrays one "thread" at a time, every thread of the grid it asks for, those
past the last element included. The reference engine's time loops drive
them, against :class:`~skrnn._engine.reference.StepKernels`, over the
configuration grid: the kernels' math is tested on every machine, not only
where a GPU runs ``test_gpu.py``.
"""

import ctypes
import hashlib
import shutil
import subprocess
import types

import numpy as np
import pytest

from skrnn._engine import cuda, reference
from skrnn._engine.reference import CellSpec

CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
pytestmark = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler")

# What CUDA gives a kernel, for a host build: the thread's index comes from
# a global the launcher below sets before each call.
_HOST_PRELUDE = r"""
#include <cmath>
using std::tanh;
struct skrnn_dim3 { unsigned x; };
extern "C" { unsigned skrnn_thread = 0; }
#define threadIdx (skrnn_dim3{skrnn_thread})
#define blockIdx (skrnn_dim3{0})
#define blockDim (skrnn_dim3{1})
#define __global__
"""


class _HostModule:
    """``cupy.RawModule`` for the host: the source compiled into a shared
    library (once per source) whose kernels run one thread per call."""

    _built = {}

    def __init__(self, code, tmp_dir):
        key = hashlib.sha256(code.encode()).hexdigest()[:16]
        if key not in self._built:
            src, lib = tmp_dir / f"k{key}.cpp", tmp_dir / f"k{key}.so"
            src.write_text(_HOST_PRELUDE + code)
            subprocess.run(
                [CXX, "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)],
                check=True,
                capture_output=True,
            )
            self._built[key] = ctypes.CDLL(str(lib))
        self._lib = self._built[key]

    def get_function(self, name):
        fn = getattr(self._lib, name)
        thread = ctypes.c_uint.in_dll(self._lib, "skrnn_thread")

        def launch(grid, block, args):
            c_args = []
            for a in args:
                if isinstance(a, np.ndarray):
                    # a GPU would misread a strided view as silently
                    assert a.flags.c_contiguous, f"{name}: non-contiguous argument"
                    c_args.append(ctypes.c_void_p(a.ctypes.data))
                else:
                    c_args.append(ctypes.c_longlong(int(a)))
            for i in range(grid[0] * block[0]):
                thread.value = i
                fn(*c_args)

        return launch


class HostKernels(cuda.CudaKernels):
    """:class:`~skrnn._engine.cuda.CudaKernels` with the host's compiler in
    place of NVRTC and NumPy's matmul in place of cuBLAS."""

    def __init__(self, tmp_dir):
        xp = types.SimpleNamespace(
            RawModule=lambda code: _HostModule(code, tmp_dir), matmul=np.matmul
        )
        reference.StepKernels.__init__(self, xp)
        self._functions = {}

    matmul = reference.StepKernels.matmul


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    return HostKernels(tmp_path_factory.mktemp("cuda_source"))


CELLS = (
    [("rnn", a, True) for a in ("tanh", "relu", "identity", "logistic")]
    + [("gru", a, ra) for a in ("tanh", "logistic") for ra in (True, False)]
    + [("lstm", "tanh", True)]
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variable", [False, True], ids=["equal", "variable"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell, act, reset_after", CELLS, ids=lambda v: str(v))
def test_fused_kernels_match_the_reference(
    host_kernels, cell, act, reset_after, use_bias, reverse, variable, dtype
):
    T, N, D, H = 5, 4, 2, 3
    G, S = reference.N_GATES[cell], reference.state_size(cell, H)
    rng = np.random.default_rng(0)
    spec = CellSpec(cell, act, reset_after, use_bias)
    params = {
        "weight_ih": rng.uniform(-0.7, 0.7, (G * H, D)),
        "weight_hh": rng.uniform(-0.7, 0.7, (G * H, H)),
    }
    if use_bias:
        params["bias_ih"] = rng.uniform(-0.5, 0.5, G * H)
        params["bias_hh"] = rng.uniform(-0.5, 0.5, G * H)
    params = {k: v.astype(dtype) for k, v in params.items()}
    lengths = np.array([5, 4, 2, 0]) if variable else np.full(N, T)
    x = rng.normal(size=(T, N, D)).astype(dtype)
    h0 = rng.normal(scale=0.5, size=(N, S)).astype(dtype)
    d_out = rng.normal(size=(T, N, H)).astype(dtype)
    d_h_last = rng.normal(size=(N, S)).astype(dtype)

    results = []
    for kernels in (None, host_kernels):
        out, h_last, cache = reference.forward(
            spec, params, x, lengths, h0, reverse, kernels=kernels
        )
        dx, dh0, grads = reference.backward(
            spec, params, cache, d_out, d_h_last, kernels=kernels
        )
        inference = reference.forward(
            spec, params, x, lengths, h0, reverse, keep_cache=False, kernels=kernels
        )
        results.append((out, h_last, dx, dh0, grads, *inference[:2]))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    names = ["outputs", "h_last", "dx", "dh0", "grads", "inference", "inference h"]
    for name, expected, actual in zip(names, *results):
        pairs = (
            [(f"d{k}", expected[k], actual[k]) for k in expected]
            if isinstance(expected, dict)
            else [(name, expected, actual)]
        )
        for what, e, a in pairs:
            assert a.dtype == dtype, what
            np.testing.assert_allclose(a, e, rtol=tol, atol=tol, err_msg=what)
