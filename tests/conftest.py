"""Test-session settings, the fixture of device="cuda"'s code path, and the
one that runs the float32 kernels on each packed kernel and on BLAS.

SCIPY_ARRAY_API=1 has to be set before SciPy is first imported: with it,
scikit-learn's ``check_array_api_input`` runs on our estimators instead of
being skipped (it checks that array-API dispatch with NumPy input changes
nothing).
"""

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402
from _device_helpers import CountingMemory, _mirror_engine  # noqa: E402

import skrnn._base  # noqa: E402


@pytest.fixture(params=[False, True], ids=["eager", "graphs"])
def mirror(monkeypatch, request):
    """Point device="cuda" at a NumPy engine with its own (copied) memory.

    The CPU side runs the same reference engine, so that a difference can
    only come from the device code path (copies, device-side state, graphs).
    """
    engine = _mirror_engine(CountingMemory(), graphs=request.param)
    real = skrnn._base.get_engine
    monkeypatch.setattr(
        skrnn._base,
        "get_engine",
        lambda name="cpu": engine if name == "cuda" else real("reference"),
    )
    return engine


@pytest.fixture(params=[2, 1, 0], ids=["avx512", "avx2", "blas"])
def packed_level(request):
    """Run the float32 per-step GEMMs on each packed kernel this CPU has,
    and on BLAS."""
    from skrnn._engine import _recurrent

    best = _recurrent.set_packed_level(2)
    if request.param > best:
        pytest.skip(
            f"this CPU has no {['', 'AVX2 + FMA', 'AVX-512F'][request.param]} kernel"
        )
    _recurrent.set_packed_level(request.param)
    yield request.param
    _recurrent.set_packed_level(best)
