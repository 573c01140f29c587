"""What an engine is: the :class:`Engine` record, the :class:`Architecture`
of a network that its whole-network pass reads, the memory an engine may
compute in, and the error of a missing GPU.

Kept apart from :mod:`skrnn._engine`, which makes the engines, so that
each engine's module can build its record without importing the package
that imports it.
"""

from collections import namedtuple
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from .._cells import CellSpec

Engine = namedtuple(
    "Engine",
    [
        "name",
        "xp",
        "forward",
        "backward",
        "memory",
        "workers",
        "workspace",
        "network_pass",
        "epoch_pass",
        "update_kernels",
        "host_blas",
        "stepper",
    ],
    defaults=(None, 1, nullcontext, None, None, None, False, None),
)


class Architecture(NamedTuple):
    """What a whole-network pass (``Engine.network_pass``) knows of a
    network apart from its parameters, which it is given by name."""

    spec: CellSpec  # the cell of every layer
    input_size: int
    hidden_size: int
    num_layers: int
    n_dirs: int
    n_outputs: int
    output: str  # "last" or "sequence"
    dtype: str


class CudaUnavailableError(RuntimeError):
    """``device="cuda"`` was asked for, but CuPy or a usable CUDA device is missing.

    The message says which of the two, and how to install CuPy. It is a
    ``RuntimeError``, raised by ``fit`` and ``partial_fit`` before anything
    changes.

    See Also
    --------
    skrnn.SequenceRegressor, skrnn.SequenceClassifier : Their ``device``.

    Examples
    --------
    >>> from skrnn import CudaUnavailableError, SequenceRegressor
    >>> try:
    ...     SequenceRegressor(device="cuda").fit([[0.0, 1.0]] * 4, [0.0] * 4)
    ... except CudaUnavailableError as exc:
    ...     print("no GPU here:", type(exc).__name__)  # doctest: +SKIP
    """


class HostCopyMemory:
    """A "device" memory that is host memory, reached only through copies.

    With ``Engine(..., xp=numpy, memory=HostCopyMemory())`` the estimators
    run the code path of a GPU engine — parameters, optimiser state and
    training data copied to the engine's memory and back — with NumPy, so
    that path is tested on machines without a GPU. ``free`` sets what
    :meth:`free_bytes` reports (to test data that does not fit).
    """

    def __init__(self, free=1 << 40):
        self.free = free

    def to_device(self, a):
        return np.array(a, copy=True)

    def to_host(self, a):
        return np.array(a, copy=True)

    def free_bytes(self):
        return self.free
