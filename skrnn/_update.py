"""The end of a training step: the L2 penalty, the gradient's checks,
clipping and the optimiser's update.

On an engine with ``update_kernels`` (the CPU engine's
:mod:`skrnn._engine._update`) each is one compiled pass over the flat
parameter vector, for an optimiser with a compiled step; otherwise the same
math runs as :mod:`skrnn.optim` and :func:`skrnn.optim.clip_grad_norm`
write it, with the engine's array module (CuPy's, on the GPU).
"""

import numpy as np

from . import optim


def add_penalty(params, scale, engine):
    """Add the gradient of ``scale / 2 * ||weights||^2`` (biases excluded)
    to ``params.grad``.

    Returns ``(penalty, grad_check)``: ``||weights||^2`` as a float64 scalar
    of ``engine.xp``, and what :func:`update` needs to know of the gradient:
    whether it is finite, and with compiled kernels its squared norm.
    """
    kernels, xp = engine.update_kernels, engine.xp
    if kernels is not None:
        if not params.flat.shape == params.grad.shape == params.weight_mask.shape:
            raise ValueError("the gradient and the weight mask must fit the parameters")
        penalty, squared_norm, finite = kernels.penalize(
            params.grad, params.flat, params.weight_mask, scale
        )
        return np.float64(penalty), (finite, squared_norm)
    masked = params.flat * params.weight_mask
    penalty = (masked @ params.flat).astype(np.float64)
    params.grad += scale * masked
    return penalty, (xp.isfinite(params.grad).all(), None)


def update(optimizer, params, previous, clip_norm, grad_check, engine):
    """Clip ``params.grad`` to ``clip_norm`` (None: no clipping), copy the
    weights into ``previous`` and take one step of ``optimizer``.

    Returns whether every updated weight is finite (a bool of ``engine.xp``).
    """
    kernels, xp = engine.update_kernels, engine.xp
    _, squared_norm = grad_check
    state = optimizer._state_for("coefs", params.flat)
    # the compiled loop reads every array over the weights' length
    arrays = [params.grad, previous]
    arrays += [v for v in state.values() if hasattr(v, "shape")]
    if any(a.shape != params.flat.shape for a in arrays):
        raise ValueError(
            "the gradient or the optimiser's state does not fit the weights"
        )
    step = None if kernels is None else optimizer._compiled_step(state)
    if step is None:
        if clip_norm is not None:
            optim._clip_grad_norm([params.grad], clip_norm, xp)
        previous[...] = params.flat
        optimizer.update({"coefs": params.flat}, {"coefs": params.grad})
        return xp.isfinite(params.flat).all()
    scale = 1.0 if clip_norm is None else kernels.clip_scale(squared_norm, clip_norm)
    solver, a, b, constants = step
    return kernels.update(
        solver, params.flat, params.grad, previous, scale, a, b, *constants
    )
