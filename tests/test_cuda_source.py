"""The fused kernels' CUDA source compiled for the CPU by the host's C++
compiler and run, thread by thread, against the reference step kernels."""

import ctypes
import hashlib
import shutil
import subprocess
from functools import partial

import numpy as np
import pytest
from _device_helpers import CELLS, REFERENCE, _layer, _passes

from skrnn._engine import cuda as cuda_engine
from skrnn._engine import reference

# ------------------------------- the fused kernels' source, on the CPU
# The CUDA kernels' source, compiled by the host's C++ compiler with
# threadIdx, blockIdx and blockDim made plain values, run by CudaKernels
# itself (its launcher, argument lists and bias handling) on NumPy arrays,
# one "thread" a call over the whole grid, those past the last element
# included: the kernels' math is tested where no GPU runs the tests below.
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

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


class _HostCupy:
    """NumPy, with ``RawModule`` building CUDA source for the host."""

    def __init__(self, tmp_dir):
        self._tmp_dir = tmp_dir

    def RawModule(self, code):
        return _HostModule(code, self._tmp_dir)

    def __getattr__(self, name):
        return getattr(np, name)


class HostKernels(cuda_engine.CudaKernels):
    """:class:`~skrnn._engine.cuda.CudaKernels` with the host's compiler in
    place of NVRTC and NumPy's matmul in place of cuBLAS."""

    def __init__(self, tmp_dir):
        reference.StepKernels.__init__(self, _HostCupy(tmp_dir))
        self._functions = {}

    matmul = reference.StepKernels.matmul


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    if CXX is None:
        pytest.skip("needs a C++ compiler")
    return HostKernels(tmp_path_factory.mktemp("cuda_source"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variable", [False, True], ids=["equal", "variable"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell, act, reset_after", CELLS, ids=lambda v: str(v))
def test_fused_kernels_compiled_for_the_host_match_the_reference(
    host_kernels, cell, act, reset_after, use_bias, reverse, variable, dtype
):
    spec, params, draw = _layer(cell, act, reset_after, use_bias, T=5, N=4, D=2, H=3)
    params = {k: v.astype(dtype) for k, v in params.items()}
    x, lengths, h0, d_out, d_h_last = draw(0)
    if variable:
        lengths[-1] = 0  # and a sequence with no step at all
    else:
        lengths[:] = len(x)
    inputs = (
        x.astype(dtype),
        lengths,
        *(a.astype(dtype) for a in (h0, d_out, d_h_last)),
    )
    host = (
        partial(reference.forward, kernels=host_kernels),
        partial(reference.backward, kernels=host_kernels),
    )
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for keep_cache in (True, False):  # training, then inference
        expected = _passes(*REFERENCE, spec, params, inputs, keep_cache, reverse)
        actual = _passes(*host, spec, params, inputs, keep_cache, reverse)
        for e, a in zip(expected, actual):
            pairs = (
                [(k, e[k], a[k]) for k in e] if isinstance(e, dict) else [("", e, a)]
            )
            for what, e_, a_ in pairs:
                assert a_.dtype == dtype, what
                np.testing.assert_allclose(a_, e_, rtol=tol, atol=tol, err_msg=what)
