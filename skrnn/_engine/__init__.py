"""Engines: the forward and backward passes of one direction of one layer.

An engine offers ``forward(spec, params, x, lengths, h0, reverse=False,
keep_cache=True)`` and ``backward(spec, params, cache, d_outputs,
d_h_last=None)`` with the semantics documented in
:mod:`skrnn._engine.reference`, on time-major arrays of its array module
``xp``. Callers pass batches sorted by length, longest first, so that a
compiled engine can treat the first ``n_t`` rows as the live ones at step t.
The cache returned by ``forward`` is opaque: only the same engine's
``backward`` reads it.

- ``"cpu"``: :mod:`skrnn._engine.cpu`, the compiled Cython kernels (NumPy
  arrays, float32 or float64);
- ``"reference"``: :mod:`skrnn._engine.reference` on NumPy, the readable
  specification the compiled kernels are tested against.
"""

from collections import namedtuple
from functools import partial

import numpy as np

from . import cpu, reference

Engine = namedtuple("Engine", ["name", "xp", "forward", "backward"])

_CPU = Engine("cpu", np, cpu.forward, cpu.backward)

_REFERENCE = Engine(
    "reference",
    np,
    partial(reference.forward, xp=np),
    partial(reference.backward, xp=np),
)


def get_engine(name="cpu"):
    """Return the engine called ``name``.

    Parameters
    ----------
    name : {"cpu", "reference"}
        ``"cpu"``: the compiled CPU engine; ``"reference"``: the readable
        NumPy engine that specifies the math.

    Returns
    -------
    engine : Engine
        Its ``name``, array module ``xp``, ``forward`` and ``backward``.
    """
    if name == "cpu":
        return _CPU
    if name == "reference":
        return _REFERENCE
    raise ValueError(f"unknown engine {name!r}")
