"""Engines: the forward and backward passes of one direction of one layer.

An engine offers ``forward(spec, params, x, lengths, h0, reverse=False,
keep_cache=True, keep_outputs=True)`` and ``backward(spec, params, cache,
d_outputs, d_h_last=None, need_dx=True, consume_cache=False)`` with the
semantics documented in :mod:`skrnn._engine.reference`, on time-major
arrays of its array module ``xp``. Callers pass batches sorted by length,
longest first, so that a compiled engine can treat the first ``n_t`` rows
as the live ones at step t. The cache returned by ``forward`` is opaque:
only the same engine's ``backward`` reads it, and with
``consume_cache=True`` it may write over it (the caller uses it once).

- ``"cpu"``: :mod:`skrnn._engine.cpu`, the compiled Cython kernels (NumPy
  arrays, float32 or float64);
- ``"reference"``: :mod:`skrnn._engine.reference` on NumPy, the readable
  specification the compiled kernels are tested against;
- ``"cuda"``: :mod:`skrnn._engine.cuda`, the reference engine on CuPy with
  fused gate kernels, its time loops replayed from CUDA graphs.

``memory`` says where the engine's arrays live. ``None``: in host memory,
as NumPy arrays, so the network's own parameter vector is used in place.
Otherwise an object with ``to_device(ndarray)`` (a copy in the engine's
memory), ``to_host(array)`` (a NumPy copy) and ``free_bytes()``; the
network then keeps a device copy of its parameters while it trains (see
:class:`skrnn._network.DeviceParams`).

``workers`` is how many threads may run the engine's passes at once (1 as
returned here): the estimators raise it for the compiled engine while they
hold BLAS to fewer threads, and the network then runs shares of a batch
side by side.

``workspace()`` is a context manager that a fit or a prediction runs in:
the compiled engine keeps its large arrays there from batch to batch, or
window to window (see :func:`skrnn._engine.cpu.workspace`); elsewhere it
does nothing.

What an engine compiles beyond the layers' passes, it offers; None where
it has none, and the network and the estimators then run the math as
written in Python, with ``xp``:

- ``network_pass``: a share of a training batch through the whole network
  in one call, for a loss with a compiled twin
  (:func:`skrnn._engine.batch.loss_grad`);
- ``epoch_pass``: the training steps of an epoch, whole network and end
  of step (penalty, divergence rule, clipping, optimiser), in one call
  (:func:`skrnn._engine.batch.epoch`), the second shares of batches that
  run in two on a second thread;
- ``update_kernels``: the end of a training step (penalty, gradient checks,
  clipping, the optimisers' compiled steps) over the flat parameter vector
  (:mod:`skrnn._engine._update`);
- ``stepper``: one step of many streams through a one-direction network
  and its head, from states kept between calls
  (:func:`skrnn._engine.cpu.stepper`), for :class:`skrnn.Stream`.

``host_blas``: the passes call this process's BLAS (SciPy's) from the
calling thread, so the estimators share its threads out
(:mod:`skrnn._threads`).
"""

import numpy as np

from . import _update, batch, cpu, cuda, reference
from .engine import CudaUnavailableError, Engine, HostCopyMemory

__all__ = [
    "CudaUnavailableError",
    "Engine",
    "HostCopyMemory",
    "cuda_available",
    "get_engine",
]

_CPU = Engine(
    "cpu",
    np,
    cpu.forward,
    cpu.backward,
    workspace=cpu.workspace,
    network_pass=batch.loss_grad,
    epoch_pass=batch.epoch,
    update_kernels=_update,
    host_blas=True,
    stepper=cpu.stepper,
)

_REFERENCE = Engine("reference", np, reference.forward, reference.backward)

_CUDA = None  # the CUDA engine, made on first use


def get_engine(name="cpu"):
    """Return the engine called ``name``.

    Parameters
    ----------
    name : {"cpu", "reference", "cuda"}
        ``"cpu"``: the compiled CPU engine; ``"reference"``: the readable
        NumPy engine that specifies the math; ``"cuda"``: the reference
        engine on CuPy with fused gate kernels.

    Returns
    -------
    engine : Engine
        Its ``name``, array module ``xp``, ``forward``, ``backward`` and
        ``memory``.

    Raises
    ------
    CudaUnavailableError
        For ``"cuda"``, when CuPy is not installed or finds no usable device.
    """
    global _CUDA
    if name == "cpu":
        return _CPU
    if name == "reference":
        return _REFERENCE
    if name == "cuda":
        if _CUDA is None:
            _CUDA = cuda.make_engine()
        return _CUDA
    raise ValueError(f"unknown engine {name!r}")


def cuda_available():
    """Whether ``get_engine("cuda")`` works here."""
    try:
        get_engine("cuda")
    except CudaUnavailableError:
        return False
    return True
