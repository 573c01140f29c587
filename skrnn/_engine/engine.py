"""What an engine is: the :class:`Engine` record, the memory an engine may
compute in, and the error of a missing GPU.

Kept apart from :mod:`skrnn._engine`, which makes the engines, so that
each engine's module can build its record without importing the package
that imports it.
"""

from collections import namedtuple
from contextlib import nullcontext

import numpy as np

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
        "update_kernels",
        "host_blas",
    ],
    defaults=(None, 1, nullcontext, None, None, False),
)


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
