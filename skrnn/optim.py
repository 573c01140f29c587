"""Optimizers that update a dict of weight arrays in place.

Each optimizer keeps its state (velocities, moment estimates, previous
gradients and step sizes) per key of the params dict, in arrays of the
dtype of the weights, and changes the arrays of ``params`` in place. So a
script can train a layer directly::

    opt = Adam(learning_rate=1e-2)
    for epoch in range(n_epochs):
        ...                      # forward and backward fill ``layer.grads``
        clip_grad_norm(layer.grads, 5.0)
        opt.update(layer.params, layer.grads)

and the estimators train their layers with the same objects.

:class:`SGD` and :class:`Adam` use exactly the formulas of scikit-learn's
``MLPRegressor`` / ``MLPClassifier`` optimizers; :class:`Rprop` is iRprop-,
the variant of ``torch.optim.Rprop``.

Only in-place operators, ufuncs and ``*_like`` constructors touch the
arrays, so arrays of another module that implements NumPy's dispatch
protocols (such as CuPy) are updated on their own device.
"""

import math
from numbers import Real

import numpy as np

from ._engine._update import Solver
from ._sklearn_compat import (
    InvalidParameterError,
    Number,
    validate_parameter_constraints,
    validate_params,
)

__all__ = ["SGD", "Adam", "Rprop", "clip_grad_norm"]


# the learning rate, epsilon and clip_grad_norm's max_norm
_POSITIVE = Number(Real, 0, np.inf, closed="neither")


class _Optimizer:
    """Per-key state handling shared by the optimizers.

    Subclasses define ``_param_names`` (for ``repr``), ``_init_state(param)``
    returning the state dict of one weight array, ``_ref_key`` (a key of that
    dict holding an array of the weight's shape and dtype), and
    ``_update_one(param, grad, state)`` updating ``param`` in place; and,
    where the CPU engine's compiled update has the same step,
    ``_compiled_step(state)`` (see its docstring).

    ``_full_batch``: the optimizer takes one step per epoch, on the whole
    training set (the estimators' batches are then the whole set).
    """

    _param_names = ()
    _ref_key = None
    _parameter_constraints = {"learning_rate": [_POSITIVE]}
    _full_batch = False

    def __init__(self, learning_rate):
        self.learning_rate = float(learning_rate)
        #: dict: key of the params dict -> that array's optimizer state.
        self.state = {}

    def _validate(self, **params):
        """Raise scikit-learn's InvalidParameterError (a ValueError) for a
        value outside ``_parameter_constraints``."""
        validate_parameter_constraints(
            self._parameter_constraints, params, caller_name=type(self).__name__
        )

    def __repr__(self):
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._param_names)
        return f"{type(self).__name__}({args})"

    def reset(self):
        """Forget all state, as if no update had been made yet."""
        self.state = {}

    def update(self, params, grads):
        """Update the arrays of ``params`` in place, one step.

        Parameters
        ----------
        params : dict of str -> ndarray
            The weights. Each array whose key is in ``grads`` is changed in
            place (the dict and its other arrays are left alone).
        grads : dict of str -> ndarray
            The gradients of the loss, each of the shape of the weight with
            the same key. They are read, never changed; an array of another
            floating dtype is cast to the weight's dtype first.

        Returns
        -------
        None
            The arrays of ``params`` are changed in place.
        """
        for key in grads:
            if key not in params:
                raise KeyError(f"gradient {key!r} has no matching parameter")
        for key, grad in grads.items():
            param = params[key]
            if not np.issubdtype(param.dtype, np.floating):
                raise TypeError(
                    f"parameter {key!r} must be a floating-point array to be "
                    f"updated in place, got dtype {param.dtype}"
                )
            if grad.shape != param.shape:
                raise ValueError(
                    f"gradient {key!r} has shape {grad.shape}, but the "
                    f"parameter has shape {param.shape}"
                )
            grad = grad.astype(param.dtype, copy=False)
            self._update_one(param, grad, self._state_for(key, param))

    def _state_for(self, key, param):
        """The state of ``params[key]``, made on its first update."""
        state = self.state.get(key)
        if state is None:
            return self.state.setdefault(key, self._init_state(param))
        ref = state[self._ref_key]
        if ref.shape != param.shape or ref.dtype != param.dtype:
            raise ValueError(
                f"parameter {key!r} changed from shape {ref.shape} "
                f"{ref.dtype} to {param.shape} {param.dtype} since the "
                "last update; call reset() to start afresh"
            )
        return state

    def _init_state(self, param):  # pragma: no cover - abstract
        raise NotImplementedError

    def _update_one(self, param, grad, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def _compiled_step(self, state):
        """The step of :meth:`_update_one` as the compiled update
        (:func:`skrnn._engine._update.update`) takes it, for one weight
        array whose state is ``state``: ``(solver, state array a, state
        array b, five constants)``, counting the step where the optimizer
        counts steps; None where the compiled update has no such step (the
        update then runs :meth:`update`)."""
        steps = self._compiled_steps(state, 1)
        if steps is None:
            return None
        self._count_steps(state, 1)
        solver, a, b, constants = steps
        return solver, a, b, tuple(constants[0])

    def _compiled_steps(self, state, n):
        """The next ``n`` steps as :meth:`_compiled_step` gives one, their
        constants as the rows of an (n, 5) float64 array, none of them
        counted (:meth:`_count_steps` counts those taken); None where the
        compiled update has no such step."""
        return None

    def _count_steps(self, state, n):
        """Count ``n`` steps taken where the optimizer counts steps."""

    def _continues(self, old):
        """Whether the state of ``old``, an optimizer of the same kind with
        other settings, carries over to this one: by default it does."""
        return True

    @classmethod
    def _for_estimator(cls, est):
        """The optimizer of an estimator's ``solver``, from its parameters
        (``learning_rate_init`` and the solver's own, named as in
        scikit-learn's MLP)."""
        return cls(est.learning_rate_init)


class SGD(_Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum.

    The update of scikit-learn's ``MLPRegressor(solver="sgd")`` with a
    constant learning rate. For each weight array ``w`` with gradient ``g``
    and velocity ``v`` (initially zero)::

        v = momentum * v - learning_rate * g
        w += momentum * v - learning_rate * g    # nesterov=True
        w += v                                   # nesterov=False

    With ``momentum=0`` both forms are plain gradient descent.
    ``torch.optim.SGD`` keeps its momentum buffer without the learning rate
    (``b = momentum * b + g``, so ``v = -learning_rate * b``); with a constant
    learning rate the two give the same steps up to rounding, and they differ
    only when the learning rate changes between updates.

    Parameters
    ----------
    learning_rate : float, default=1e-3
        Step size, > 0.
    momentum : float, default=0.9
        Momentum factor in [0, 1].
    nesterov : bool, default=True
        Whether to use Nesterov's momentum.

    Attributes
    ----------
    state : dict
        Per key of the params dict: ``{"velocity": ndarray}``, of the
        weight's shape and dtype.

    See Also
    --------
    Adam : Steps scaled per element; the estimators' default.
    Rprop : Steps from the gradient's sign alone, for full batches.
    clip_grad_norm : Gradient clipping before an update.
    sklearn.neural_network.MLPRegressor : Whose ``solver="sgd"`` this is.

    Examples
    --------
    Minimise ``(w - 3) ** 2``:

    >>> import numpy as np
    >>> from skrnn.optim import SGD
    >>> params = {"w": np.array([0.0])}
    >>> opt = SGD(learning_rate=0.05, momentum=0.9)
    >>> for _ in range(200):
    ...     opt.update(params, {"w": 2 * (params["w"] - 3.0)})
    >>> params["w"].round(4)
    array([3.])
    """

    _param_names = ("learning_rate", "momentum", "nesterov")
    _ref_key = "velocity"
    _parameter_constraints = {
        **_Optimizer._parameter_constraints,
        "momentum": [Number(Real, 0, 1, closed="both")],
        "nesterov": ["boolean"],
    }

    def __init__(self, learning_rate=1e-3, momentum=0.9, nesterov=True):
        self._validate(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov
        )
        super().__init__(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _init_state(self, param):
        return {"velocity": np.zeros_like(param)}

    def _update_one(self, param, grad, state):
        lr, momentum = self.learning_rate, self.momentum
        velocity = state["velocity"]
        velocity *= momentum
        velocity -= lr * grad
        if self.nesterov:
            param += momentum * velocity - lr * grad
        else:
            param += velocity

    @classmethod
    def _for_estimator(cls, est):
        return cls(
            est.learning_rate_init,
            momentum=est.momentum,
            nesterov=est.nesterovs_momentum,
        )

    def _compiled_steps(self, state, n):
        solver = Solver.NESTEROV if self.nesterov else Solver.SGD
        velocity = state["velocity"]
        constants = _rows(n, self.learning_rate, self.momentum, 0, 0, 0)
        return solver, velocity, velocity, constants


class Adam(_Optimizer):
    """Adam, as in Algorithm 1 of Kingma & Ba (2014) and ``torch.optim.Adam``.

    For each weight array ``w`` with gradient ``g``, first and second moment
    estimates ``m`` and ``v`` (initially zero) and step count ``t``::

        t += 1
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g ** 2
        step_size = learning_rate / (1 - beta_1 ** t)
        w += -step_size * m / (sqrt(v) / sqrt(1 - beta_2 ** t) + epsilon)

    ``epsilon`` is added to the bias-corrected ``sqrt(v)``, as the paper and
    PyTorch add it. scikit-learn's MLP adds it before the correction (the
    paper's "efficient" form), which early in training is an epsilon up to
    ``1 / sqrt(1 - beta_2)`` (32) times larger: it damps the weights whose
    gradients are small, as an LSTM's are on a long plateau. The step count
    is kept per key: an array that was given no gradient in a call does not
    advance.

    Parameters
    ----------
    learning_rate : float, default=1e-3
        Step size, > 0.
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of the moment estimates, in [0, 1).
    epsilon : float, default=1e-8
        Added to the bias-corrected ``sqrt(v)`` for numerical stability, > 0.

    Attributes
    ----------
    state : dict
        Per key of the params dict: ``{"t": int, "m": ndarray, "v": ndarray}``,
        the arrays of the weight's shape and dtype.

    See Also
    --------
    SGD, Rprop : The other optimizers.
    clip_grad_norm : Gradient clipping before an update.
    sklearn.neural_network.MLPRegressor : Whose ``solver="adam"`` adds
        ``epsilon`` before the bias correction.

    Examples
    --------
    Minimise ``(w - 1) ** 2`` for two weights at once:

    >>> import numpy as np
    >>> from skrnn.optim import Adam
    >>> params = {"w": np.array([5.0, -3.0])}
    >>> opt = Adam(learning_rate=0.1)
    >>> for _ in range(500):
    ...     opt.update(params, {"w": 2 * (params["w"] - 1.0)})
    >>> params["w"].round(3)
    array([1., 1.])
    """

    _param_names = ("learning_rate", "beta_1", "beta_2", "epsilon")
    _ref_key = "m"
    _parameter_constraints = {
        **_Optimizer._parameter_constraints,
        "beta_1": [Number(Real, 0, 1, closed="left")],
        "beta_2": [Number(Real, 0, 1, closed="left")],
        "epsilon": [_POSITIVE],
    }

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self._validate(
            learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon
        )
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = (
            float(beta_1),
            float(beta_2),
            float(epsilon),
        )

    def _init_state(self, param):
        return {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}

    def _update_one(self, param, grad, state):
        b1, b2 = self.beta_1, self.beta_2
        state["t"] = t = state["t"] + 1
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * (grad * grad)
        step_size, correction = self._corrections(t)
        param += -step_size * m / (np.sqrt(v) / correction + self.epsilon)

    def _corrections(self, t):
        """Step ``t``'s step size and ``sqrt(1 - beta_2**t)``: Python
        floats, so that float32 weights are computed in float32."""
        b1, b2 = self.beta_1, self.beta_2
        return self.learning_rate / (1 - b1**t), math.sqrt(1 - b2**t)

    @classmethod
    def _for_estimator(cls, est):
        return cls(
            est.learning_rate_init,
            beta_1=est.beta_1,
            beta_2=est.beta_2,
            epsilon=est.epsilon,
        )

    def _compiled_steps(self, state, n):
        steps = range(state["t"] + 1, state["t"] + n + 1)
        constants = np.array(
            [
                (step_size, self.beta_1, self.beta_2, self.epsilon, correction)
                for step_size, correction in map(self._corrections, steps)
            ],
            dtype=np.float64,
        ).reshape(n, 5)
        return Solver.ADAM, state["m"], state["v"], constants

    def _count_steps(self, state, n):
        state["t"] += n


class Rprop(_Optimizer):
    """Resilient backpropagation, the iRprop- variant of ``torch.optim.Rprop``.

    Only the sign of the gradient is used. Each element of each weight array
    has its own step size, initially ``learning_rate``. At every update,
    element by element, with ``prev`` the gradient stored at the previous
    update (initially zero)::

        s = sign(g * prev)
        step *= etaplus   where s > 0   (same sign: accelerate)
        step *= etaminus  where s < 0   (sign change: we overshot)
        step = clip(step, *step_sizes)
        g = 0             where s < 0   (so that weight is not moved now)
        w -= sign(g) * step
        prev = g

    After a sign change the stored gradient is 0, so the next update leaves
    that element's step size as it is. Rprop is meant for full-batch
    training: mini-batch noise flips gradient signs and shrinks the steps.

    Parameters
    ----------
    learning_rate : float, default=1e-3
        Initial step size of every element, > 0 (clipped to ``step_sizes``
        at the first update, as in PyTorch).
    etas : tuple of float, default=(0.5, 1.2)
        ``(etaminus, etaplus)``, with ``0 < etaminus < 1 < etaplus``.
    step_sizes : tuple of float, default=(1e-6, 50.0)
        ``(min, max)`` allowed step size, with ``0 <= min <= max``.

    Attributes
    ----------
    state : dict
        Per key of the params dict: ``{"prev": ndarray, "step_size":
        ndarray}``, of the weight's shape and dtype.

    See Also
    --------
    SGD, Adam : The mini-batch optimizers.

    Examples
    --------
    Minimise ``(w - 2) ** 2``, starting with a step of 0.1, which grows by
    ``etaplus`` while the gradient keeps its sign:

    >>> import numpy as np
    >>> from skrnn.optim import Rprop
    >>> params = {"w": np.array([-4.0])}
    >>> opt = Rprop(learning_rate=0.1)
    >>> def grads():
    ...     return {"w": 2 * (params["w"] - 2.0)}
    >>> for _ in range(3):
    ...     opt.update(params, grads())
    >>> opt.state["w"]["step_size"]
    array([0.144])
    >>> for _ in range(100):
    ...     opt.update(params, grads())
    >>> round(float(params["w"][0]), 4)
    2.0
    """

    _param_names = ("learning_rate", "etas", "step_sizes")
    _full_batch = True  # the sign of a mini-batch gradient is not the gradient's
    _ref_key = "prev"
    _parameter_constraints = {
        **_Optimizer._parameter_constraints,
        "etas[0]": [Number(Real, 0, 1, closed="neither")],
        "etas[1]": [Number(Real, 1, np.inf, closed="neither")],
        "step_sizes[0]": [Number(Real, 0, np.inf, closed="left")],
    }

    def __init__(self, learning_rate=1e-3, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
        etaminus, etaplus = self._pair("etas", etas)
        lo, hi = self._pair("step_sizes", step_sizes)
        self._validate(
            learning_rate=learning_rate,
            **{"etas[0]": etaminus, "etas[1]": etaplus, "step_sizes[0]": lo},
        )
        # the largest step size is bounded by the smallest
        validate_parameter_constraints(
            {"step_sizes[1]": [Number(Real, lo, np.inf, closed="left")]},
            {"step_sizes[1]": hi},
            caller_name="Rprop",
        )
        super().__init__(learning_rate)
        self.etas = (float(etaminus), float(etaplus))
        self.step_sizes = (float(lo), float(hi))

    @staticmethod
    def _pair(name, value):
        try:
            first, second = value
        except (TypeError, ValueError):
            raise InvalidParameterError(
                f"The {name!r} parameter of Rprop must be a pair of numbers. "
                f"Got {value!r} instead."
            ) from None
        return first, second

    def _init_state(self, param):
        return {
            "prev": np.zeros_like(param),
            "step_size": np.full_like(param, self.learning_rate),
        }

    def _update_one(self, param, grad, state):
        prev, step_size = state["prev"], state["step_size"]
        etaminus, etaplus = self.etas
        one = param.dtype.type
        product = grad * prev
        shrink = product < 0
        factor = np.where(product > 0, one(etaplus), one(1.0))
        factor[shrink] = one(etaminus)
        step_size *= factor
        np.clip(step_size, self.step_sizes[0], self.step_sizes[1], out=step_size)
        # prev becomes the gradient, zeroed where its sign changed
        prev[...] = grad
        prev[shrink] = 0
        param -= np.sign(prev) * step_size

    def _compiled_steps(self, state, n):
        constants = _rows(n, *self.etas, *self.step_sizes, 0)
        return Solver.RPROP, state["prev"], state["step_size"], constants

    def _continues(self, old):
        # the step sizes start at the learning rate: a new one starts afresh
        return self.learning_rate == old.learning_rate


#: The estimators' ``solver`` names.
SOLVERS = {"sgd": SGD, "adam": Adam, "rprop": Rprop}


@validate_params(
    {"grads": "no_validation", "max_norm": [_POSITIVE]},
    prefer_skip_nested_validation=True,
)
def clip_grad_norm(grads, max_norm):
    """Scale gradients in place so that their global L2 norm is at most ``max_norm``.

    The norm is taken over all arrays together, ``sqrt(sum_i ||g_i||^2)``
    (accumulated in float64, so float32 gradients do not overflow). When it
    exceeds ``max_norm``, every array is multiplied by ``max_norm / norm``;
    otherwise nothing changes. This is ``torch.nn.utils.clip_grad_norm_``
    without the ``1e-6`` that PyTorch adds to the norm in the scale factor,
    so a clipped gradient has norm ``max_norm`` (up to rounding). A
    non-finite norm leaves the gradients unchanged and is returned, for the
    caller to treat as divergence.

    Parameters
    ----------
    grads : dict of str -> ndarray, or iterable of ndarray
        The gradients, floating-point arrays changed in place.
    max_norm : float
        Largest allowed global norm, > 0.

    Returns
    -------
    norm : float
        The global norm before clipping.

    See Also
    --------
    SGD, Adam, Rprop : The optimizers whose gradients this clips.

    Examples
    --------
    >>> import numpy as np
    >>> from skrnn.optim import clip_grad_norm
    >>> grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    >>> clip_grad_norm(grads, 1.0)
    5.0
    >>> grads["a"], grads["b"]
    (array([0.6]), array([[0.8]]))
    """
    arrays = list(grads.values()) if isinstance(grads, dict) else list(grads)
    return float(_clip_grad_norm(arrays, max_norm, np))


def _clip_grad_norm(arrays, max_norm, xp):
    """:func:`clip_grad_norm` with the array module ``xp`` of ``arrays``.

    The norm is returned as a 0-d float64 array of ``xp``, where the arrays
    live: the estimators' training step on a GPU waits for no transfer.
    """
    norm = xp.sqrt(sum([_squared_norm(g) for g in arrays]))
    # 1.0 when norm <= max_norm, and where the norm is not finite
    scale = xp.where(xp.isfinite(norm), max_norm / xp.maximum(norm, max_norm), 1.0)
    for g in arrays:
        g *= scale.astype(g.dtype)
    return norm


def _rows(n, *constants):
    """The same five constants for each of ``n`` steps: an (n, 5) array."""
    return np.tile(np.array(constants, dtype=np.float64), (n, 1))


def _squared_norm(g):
    """The squared L2 norm of ``g``, accumulated in float64."""
    flat = g.ravel()
    if flat.dtype != np.float64:
        flat = flat.astype(np.float64)
    return flat @ flat
