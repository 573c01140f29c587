"""Where an engine with its own memory (the GPU) keeps what a fit uses.

The parameters live there as :class:`skrnn._network.DeviceParams`; the
training set and the optimiser's state go there with the functions below,
and come back only as needed, so that a training step waits for no
transfer.
"""

from contextlib import contextmanager

# The training set goes to the GPU once per fit when it takes at most this
# share of the GPU's free memory; otherwise each batch is copied there.
DEVICE_DATA_FRACTION = 0.25


def to_host(engine, value):
    """``value`` where the host can read it: copied from the engine's memory."""
    return value if engine.memory is None else engine.memory.to_host(value)


def place_training_data(engine, values, targets):
    """The training set's (values, targets) where ``engine`` reads them:
    in its memory when they fit (see DEVICE_DATA_FRACTION), else on the
    host, to be copied there batch by batch."""
    memory = engine.memory
    if memory is None:
        return values, targets
    if values.nbytes + targets.nbytes > DEVICE_DATA_FRACTION * memory.free_bytes():
        return values, targets
    return memory.to_device(values), memory.to_device(targets)


@contextmanager
def optimizer_state_in(optimizer, memory):
    """Keep the optimiser's state in the engine's memory while training.

    It is NumPy between fits, so that the estimator pickles and loads
    without CuPy.
    """
    if memory is None:
        yield
        return
    _map_state(optimizer, memory.to_device)
    try:
        yield
    finally:
        _map_state(optimizer, memory.to_host)


def _map_state(optimizer, convert):
    for state in optimizer.state.values():
        for key, value in state.items():
            if hasattr(value, "shape"):
                state[key] = convert(value)
