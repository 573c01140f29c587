"""Engines: the forward and backward passes of one direction of one layer.

An engine offers ``forward(spec, params, x, lengths, h0, reverse=False,
keep_cache=True)`` and ``backward(spec, params, cache, d_outputs,
d_h_last=None)`` with the semantics documented in
:mod:`skrnn._engine.reference`, on time-major arrays of its array module
``xp``. Callers pass batches sorted by length, longest first, so that a
compiled engine can treat the first ``n_t`` rows as the live ones at step t.
"""

from collections import namedtuple
from functools import partial

import numpy as np

from . import reference

Engine = namedtuple("Engine", ["name", "xp", "forward", "backward"])

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
        ``"cpu"``: the default CPU engine; ``"reference"``: the readable
        NumPy engine that specifies the math.
    """
    if name in ("cpu", "reference"):
        return _REFERENCE
    raise ValueError(f"unknown engine {name!r}")
