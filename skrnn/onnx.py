"""Export fitted models and pipelines to ONNX.

Importing this module registers converters for
:class:`~skrnn.SequenceRegressor`, :class:`~skrnn.SequenceClassifier` and
:class:`~skrnn.preprocessing.SequenceScaler` with skl2onnx, so that
``skl2onnx.to_onnx(model_or_pipeline, X_sample)`` converts them; :func:`to_onnx`
is the shortcut, with any number of sequences and steps. It needs the
``onnx`` extra (``pip install skrnn[onnx]``: onnx, skl2onnx and onnxruntime
to run the graphs).

A float32 model's recurrent layers become ONNX's own ``RNN``, ``GRU`` and
``LSTM`` operators, which compute skrnn's cells exactly (the GRU's
``reset_after=True`` is ``linear_before_reset=1``), with the gates reordered
to ONNX's layout. onnxruntime has no float64 kernels for those operators, so
a float64 model's layers are each a ``Scan`` over time of the step's
products and activations, which it runs in double.

The graph's input is X as :meth:`predict` takes it: a float32 or float64
tensor (cast to the model's dtype in the graph), (N, T, D), or (N, T) for
univariate sequences in a table; trailing
all-NaN steps mark shorter sequences (the graph derives ``sequence_lens``
from them). The regressor's output is its predictions, (N, n_outputs), or
(N, T) / (N, T, n_outputs) with NaN at padded steps for
``output="sequence"``, with a last axis of quantile levels for a list of
them; with ``loss="gaussian"`` a second output, ``variable_std``, is the
standard deviation of ``predict(X, return_std=True)``. The classifier's are
skl2onnx's ``label`` and ``probabilities`` (as a ZipMap unless
``options={"zipmap": False}``, which float64 models need: onnxruntime's
ZipMap holds float32 only). With
``output="sequence"`` (and ``zipmap=False``) they are (N, T) labels and
(N, T, n_classes) probabilities, NaN at padded steps; the labels there are
not meaningful (``predict`` gives None).

:class:`~skrnn.preprocessing.CharacterEncoder` is not exported, with an
error that says why: no ONNX operator splits a string into its characters.
Export the pipeline from the encoder's output on.
"""

import numpy as np

try:
    import onnx.compose
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import to_onnx as _skl2onnx_to_onnx
    from skl2onnx import update_registered_converter

    # skl2onnx's parser of classifiers: declares ``label`` and
    # ``probabilities`` and adds the ZipMap (how its docs register custom
    # classifiers)
    from skl2onnx._parse import _parse_sklearn_classifier
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
        guess_tensor_type,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "skrnn.onnx needs onnx and skl2onnx: pip install 'skrnn[onnx]' "
        "(with onnxruntime to run the exported graphs)."
    ) from exc

from sklearn.pipeline import make_pipeline

from ._cells import CELLS, param_suffix
from ._classifier import SequenceClassifier
from ._losses import _SIGMA_FLOOR
from ._pipeline import scalers_and_estimator
from ._regressor import SequenceRegressor
from .preprocessing import CharacterEncoder, SequenceScaler

__all__ = ["to_onnx"]

# ONNX's gate order (its names: the GRU's n is h, the LSTM's g is c), as
# indices into skrnn's blocks of H rows, stacked in CELLS' order.
_ONNX_GATES = {"rnn": ("h",), "gru": ("z", "r", "n"), "lstm": ("i", "o", "f", "g")}
_GATE_ORDER = {
    cell: [CELLS[cell].gates.index(gate) for gate in gates]
    for cell, gates in _ONNX_GATES.items()
}
_OPS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
_ACTIVATIONS = {
    "tanh": "Tanh",
    "logistic": "Sigmoid",
    "relu": "Relu",
    "identity": "Affine",
}
_TENSOR_TYPES = {"float32": FloatTensorType, "float64": DoubleTensorType}
# The estimators' graphs pass the axes of Squeeze, Unsqueeze and ReduceSum as
# inputs, which those operators take from opset 13 on.
_MIN_OPSET = 13
_ONNX_DTYPES = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}
# a stateful graph's state outputs, after the predictions; its inputs are
# named h0 and c0
_STATE_NAMES = ["h_n", "c_n"]


def to_onnx(model, X_sample, *, stateful=False, target_opset=None, options=None):
    """Convert a fitted model or pipeline to ONNX.

    The graph's input is named ``X``; it takes any number of sequences and
    of steps, trailing all-NaN steps marking shorter sequences, as
    :meth:`~skrnn.SequenceRegressor.predict` does.

    With ``stateful=True`` the graph also takes the recurrent state the
    sequences start from, ``h0`` (and ``c0`` for the LSTM), of shape
    (num_layers, n_samples, hidden_size), and returns their state after
    their last valid step, ``h_n`` (and ``c_n``), after the predictions: a
    sequence fed in chunks, each chunk's final state passed as the next
    one's initial state, gives the predictions that ``predict`` gives for
    the sequence so far (ONNX runtimes keep no state between calls). As
    :class:`~skrnn.Stream`, in a graph; zeros start a sequence.

    Parameters
    ----------
    model : estimator or Pipeline
        A fitted :class:`~skrnn.SequenceRegressor`,
        :class:`~skrnn.SequenceClassifier`,
        :class:`~skrnn.preprocessing.SequenceScaler`, or a pipeline of them
        and of other estimators skl2onnx converts.
    X_sample : ndarray of shape (n_samples, n_timesteps, n_features) or \
(n_samples, n_timesteps)
        Input of the kind the model predicts on; its dtype and last
        dimension set the graph's input type. The graph takes any number
        of samples and of steps.
    stateful : bool, default=False
        Take and return the recurrent state. For a model, or a pipeline of
        :class:`~skrnn.preprocessing.SequenceScaler` steps ending in one,
        that reads each sequence in one direction; a classifier's
        probabilities are then a tensor (no ZipMap).
    target_opset : int, default=None
        The ONNX opset; None: the newest skl2onnx supports. The estimators
        export to opset 13 or newer (a lower one raises a ValueError), the
        scaler to any.
    options : dict, default=None
        The conversion options of skl2onnx, e.g. ``{"zipmap": False}`` for a
        classifier's probabilities as a tensor.

    Returns
    -------
    onx : onnx.ModelProto
        The graph; ``onx.SerializeToString()`` is what onnxruntime loads.

    Raises
    ------
    ValueError
        For an ``X_sample`` with another number of features per step than
        the model takes, a ``target_opset`` below 13 for an estimator, or a
        bidirectional model with ``stateful=True``.
    NotImplementedError
        For a configuration ONNX cannot express exactly.

    See Also
    --------
    skl2onnx.to_onnx : The same, for models and pipelines of any kind.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from skrnn import SequenceRegressor
    >>> from skrnn.datasets import make_binary_sum
    >>> from skrnn.onnx import to_onnx
    >>> X, y = make_binary_sum(n_samples=200, n_timesteps=8, random_state=0)
    >>> model = SequenceRegressor(cell="rnn", hidden_size=8, learning_rate_init=0.01,
    ...                           batch_size=20, max_iter=300, n_iter_no_change=30,
    ...                           random_state=0).fit(X, y)
    >>> onx = to_onnx(model, X[:1])
    >>> session = ort.InferenceSession(onx.SerializeToString())
    >>> y_onnx = session.run(None, {"X": X})[0]
    >>> bool(np.allclose(y_onnx[:, 0], model.predict(X), atol=1e-5))
    True
    """
    X_sample = np.asarray(X_sample)
    if X_sample.ndim not in (2, 3) or X_sample.dtype.name not in _TENSOR_TYPES:
        raise ValueError(
            "X_sample must be a float32 or float64 array of shape "
            f"(n_samples, n_timesteps[, n_features]), got {X_sample.dtype} "
            f"{X_sample.shape}"
        )
    shape = [None, None] + list(X_sample.shape[2:])
    input_type = _TENSOR_TYPES[X_sample.dtype.name](shape)
    if stateful:
        return _stateful(model, input_type, target_opset, options)
    return _skl2onnx_to_onnx(
        model,
        initial_types=[("X", input_type)],
        target_opset=target_opset,
        options=options,
    )


def _stateful(model, input_type, target_opset, options):
    """The graph of ``to_onnx(..., stateful=True)``: the estimator's, which
    takes the states after X, behind the scalers' (skl2onnx's pipelines
    hand each step only the outputs of the one before)."""
    scalers, estimator = scalers_and_estimator(model, "to_onnx(stateful=True)")
    net = estimator._network
    if net.n_dirs == 2:
        raise ValueError(
            "A bidirectional model cannot carry its state from chunk to chunk: its "
            "backward direction reads each sequence from its end."
        )
    state_shape = [net.num_layers, None, net.hidden_size]
    state_type = _TENSOR_TYPES[estimator._dtype](state_shape)
    states = ["h0", "c0"][: CELLS[net.spec.cell].state_parts]
    onx = _skl2onnx_to_onnx(
        estimator,
        initial_types=[("X", input_type)] + [(name, state_type) for name in states],
        target_opset=target_opset,
        options=options,
    )
    if not scalers:
        return onx
    opset = {op.domain: op.version for op in onx.opset_import}[""]
    front = _skl2onnx_to_onnx(
        make_pipeline(*scalers) if len(scalers) > 1 else scalers[0],
        initial_types=[("X", input_type)],
        target_opset=opset,
    )
    # the scalers' names prefixed but X's, their output fed to the model's X
    front = onnx.compose.add_prefix(front, "scalers_", rename_inputs=False)
    scaled = front.graph.output[0].name
    return onnx.compose.merge_models(front, onx, io_map=[(scaled, "X")])


class _Graph:
    """Adds nodes and constants to skl2onnx's container, with unique names."""

    def __init__(self, scope, container, dtype):
        self.scope, self.container = scope, container
        self.dtype = np.dtype(dtype)
        self.onnx_dtype = _ONNX_DTYPES[self.dtype.name]

    def node(self, op, inputs, n_outputs=1, *, outputs=None, **attrs):
        """Add an ``op`` node; returns its output's name (a list of
        ``n_outputs`` names if more than one). ``outputs``: names to write
        to instead of new ones (the converter's declared outputs)."""
        if outputs is None:
            outputs = [
                self.scope.get_unique_variable_name(op.lower())
                for _ in range(n_outputs)
            ]
        self.container.add_node(
            op,
            inputs,
            outputs,
            name=self.scope.get_unique_operator_name(op),
            op_version=self.container.target_opset,
            **attrs,
        )
        return outputs[0] if len(outputs) == 1 else outputs

    def const(self, values, dtype=None):
        values = np.asarray(values, dtype=dtype)
        if dtype is None and values.dtype.kind == "f":
            values = values.astype(self.dtype)
        name = self.scope.get_unique_variable_name("const")
        if values.dtype.kind in "OU":
            onnx_type = TensorProto.STRING
            flat = [str(v).encode() for v in values.ravel()]
        else:
            onnx_type = {
                np.dtype(np.float32): TensorProto.FLOAT,
                np.dtype(np.float64): TensorProto.DOUBLE,
                np.dtype(np.int64): TensorProto.INT64,
                np.dtype(np.int32): TensorProto.INT32,
            }[values.dtype]
            flat = values.ravel().tolist()
        self.container.add_initializer(name, onnx_type, list(values.shape), flat)
        return name


def _lengths(g, x):
    """X (N, T, D) without its NaN, time-major (T, N, D); which steps are
    valid, (N, T) in the graph's float type; and each sample's length as
    ``sequence_lens`` takes it (int32): its last valid step, plus one."""
    is_nan = g.node("IsNaN", [x])
    x = g.node("Where", [is_nan, g.const(0.0), x])
    # a step is valid if one of its features is not NaN
    has_value = g.node("Cast", [g.node("Not", [is_nan])], to=g.onnx_dtype)
    per_step = g.node("ReduceSum", [has_value, g.const([2], np.int64)], keepdims=0)
    valid = g.node("Greater", [per_step, g.const(0.0)])
    valid = g.node("Cast", [valid], to=g.onnx_dtype)
    # weighted by 1..T, the last valid step weighs most
    T = g.node("Gather", [g.node("Shape", [x]), g.const(1, np.int64)], axis=0)
    end = g.node("Add", [g.node("Cast", [T], to=g.onnx_dtype), g.const(1.0)])
    steps = g.node("Range", [g.const(1.0), end, g.const(1.0)])
    last = g.node("ArgMax", [g.node("Mul", [valid, steps])], axis=1, keepdims=0)
    lengths = g.node("Add", [last, g.const(1, np.int64)])
    lengths = g.node("Cast", [lengths], to=TensorProto.INT32)
    return g.node("Transpose", [x], perm=[1, 0, 2]), valid, lengths


def _layer_weights(g, net, coefs, k):
    """W, R and B (zeros without biases: skl2onnx cannot order a node with
    an input left out) of layer k, in ONNX's layout."""
    order, H = _GATE_ORDER[net.spec.cell], net.hidden_size

    def onnx_order(a):
        return np.concatenate([a[i * H : (i + 1) * H] for i in order])

    W, R, B = [], [], []
    for d in range(net.n_dirs):
        suffix = param_suffix(k, d)
        W.append(onnx_order(coefs["weight_ih" + suffix]))
        R.append(onnx_order(coefs["weight_hh" + suffix]))
        if net.spec.use_bias:
            b_ih = onnx_order(coefs["bias_ih" + suffix])
            B.append(np.concatenate([b_ih, onnx_order(coefs["bias_hh" + suffix])]))
        else:
            B.append(np.zeros(2 * len(W[-1]), dtype=W[-1].dtype))
    return g.const(np.stack(W)), g.const(np.stack(R)), g.const(np.stack(B))


def _recurrent_layers(g, net, coefs, x, lengths, initial):
    """The top layer's outputs (T, N, dirs * H) and final states (N, dirs *
    H); and each layer's final states, [h] or [h, c] of shape (1, N, H),
    when ``initial`` names the graph's initial states (see
    :func:`_state_inputs`; else None: zeros)."""
    spec, H, dirs = net.spec, net.hidden_size, net.n_dirs
    attrs = {"hidden_size": H, "direction": "bidirectional" if dirs == 2 else "forward"}
    if spec.cell == "rnn":
        attrs["activations"] = [_ACTIVATIONS[spec.activation]] * dirs
        if spec.activation == "identity":  # Affine(x) = alpha x + beta
            attrs["activation_alpha"] = [1.0] * dirs
            attrs["activation_beta"] = [0.0] * dirs
    elif spec.cell == "gru":
        attrs["activations"] = ["Sigmoid", _ACTIVATIONS[spec.activation]] * dirs
        attrs["linear_before_reset"] = int(spec.reset_after)
    n_outputs = 3 if spec.cell == "lstm" else 2  # Y, Y_h (and the LSTM's Y_c)
    finals = []
    for k in range(net.num_layers):
        W, R, B = _layer_weights(g, net, coefs, k)
        inputs = [x, W, R, B, lengths]
        if initial is not None:  # initial_h (and initial_c): (1, N, H) each
            inputs += [_layer_state(g, state, k) for state in initial]
        y, *states = g.node(_OPS[spec.cell], inputs, n_outputs, **attrs)
        finals.append(states)
        # (T, dirs, N, H) -> (T, N, dirs * H), the directions side by side
        y = g.node("Transpose", [y], perm=[0, 2, 1, 3])
        x = g.node("Reshape", [y, g.const([0, 0, -1], np.int64)])
    # (dirs, N, H) -> (N, dirs * H)
    h_last = g.node("Transpose", [finals[-1][0]], perm=[1, 0, 2])
    h_last = g.node("Reshape", [h_last, g.const([0, -1], np.int64)])
    return x, h_last, finals


def _layer_state(g, state, k):
    """Layer k's part (1, N, H) of a state input (num_layers, N, H)."""
    at = [g.const([k], np.int64), g.const([k + 1], np.int64), g.const([0], np.int64)]
    return g.node("Slice", [state, *at])


class _Body:
    """The graph of one time step, for a Scan: nodes made with onnx.helper,
    its constants in Constant nodes (a subgraph that read the outer graph's
    initializers would be out of skl2onnx's ordering)."""

    def __init__(self, dtype):
        self.dtype, self.nodes, self._n = np.dtype(dtype), [], 0

    def _name(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def node(self, op, inputs, **attrs):
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def const(self, values, dtype=None):
        values = np.asarray(values, dtype=dtype or self.dtype)
        out = self._name("const")
        tensor = numpy_helper.from_array(values, out)
        self.nodes.append(helper.make_node("Constant", [], [out], value=tensor))
        return out

    def cols(self, a, i, H):
        """Columns i*H .. (i+1)*H of a (N, G*H) array: gate block i."""
        ends = [self.const([i * H], np.int64), self.const([(i + 1) * H], np.int64)]
        return self.node("Slice", [a, *ends, self.const([1], np.int64)])

    def act(self, name, a):
        return a if name == "identity" else self.node(_ACTIVATIONS[name], [a])


def _scan_direction(g, spec, coefs, suffix, x, valid_tm, lengths, reverse, initial):
    """One direction of one layer as a Scan over time, in double: onnxruntime
    has no double kernels for the RNN, GRU and LSTM operators. Returns the
    outputs (T, N, H), zero at padded steps, and the final states [h] or
    [h, c], (N, H) each, from the ``initial`` ones (None: zeros)."""
    H = coefs["weight_hh" + suffix].shape[1]
    gi = g.node("MatMul", [x, g.const(coefs["weight_ih" + suffix].T)])
    if spec.use_bias:
        gi = g.node("Add", [gi, g.const(coefs["bias_ih" + suffix])])
    if reverse:  # each sequence backward from its own last step
        gi = g.node("ReverseSequence", [gi, lengths], batch_axis=1, time_axis=0)

    b = _Body(g.dtype)
    W_hh, b_hh = coefs["weight_hh" + suffix], coefs.get("bias_hh" + suffix)

    def recurrent(h, rows=slice(None)):
        out = b.node("MatMul", [h, b.const(W_hh[rows].T)])
        return out if b_hh is None else b.node("Add", [out, b.const(b_hh[rows])])

    h, c, g_t, m = "h", "c", "gi_t", "valid_t"
    if spec.cell == "rnn":
        h_new = b.act(spec.activation, b.node("Add", [g_t, recurrent(h)]))
    elif spec.cell == "gru":
        gh = recurrent(h, slice(0, 2 * H))
        r = b.node("Sigmoid", [b.node("Add", [b.cols(g_t, 0, H), b.cols(gh, 0, H)])])
        z = b.node("Sigmoid", [b.node("Add", [b.cols(g_t, 1, H), b.cols(gh, 1, H)])])
        if spec.reset_after:  # n = act(gi_n + r (W_hn h + b_hn))
            hn = b.node("Mul", [r, recurrent(h, slice(2 * H, 3 * H))])
        else:  # n = act(gi_n + W_hn (r h) + b_hn)
            hn = recurrent(b.node("Mul", [r, h]), slice(2 * H, 3 * H))
        n = b.act(spec.activation, b.node("Add", [b.cols(g_t, 2, H), hn]))
        # h' = z h + (1 - z) n
        keep = b.node("Mul", [z, h])
        new = b.node("Mul", [b.node("Sub", [b.const(1.0), z]), n])
        h_new = b.node("Add", [keep, new])
    else:
        a = b.node("Add", [g_t, recurrent(h)])
        i, f, o = (b.node("Sigmoid", [b.cols(a, k, H)]) for k in (0, 1, 3))
        cand = b.node("Tanh", [b.cols(a, 2, H)])
        c_new = b.node("Add", [b.node("Mul", [f, c]), b.node("Mul", [i, cand])])
        h_new = b.node("Mul", [o, b.node("Tanh", [c_new])])
    # padded steps keep the state and output zeros
    states = [b.node("Where", [m, h_new, h])]
    if spec.cell == "lstm":
        states.append(b.node("Where", [m, c_new, c]))
    y = b.node("Where", [m, h_new, b.const(0.0)])

    def value(name, elem_type=g.onnx_dtype):
        tensor_type = helper.make_tensor_type_proto(elem_type, None)
        return helper.make_value_info(name, tensor_type)

    # the body's inputs: the states, then one step of gi and of the mask
    names = [h, c][: len(states)]
    outputs = states + [y]
    body = helper.make_graph(
        b.nodes,
        "step",
        [value(n) for n in names] + [value(g_t), value(m, TensorProto.BOOL)],
        [value(o) for o in outputs],
    )
    if initial is None:  # zeros (N, H)
        N = g.node("Gather", [g.node("Shape", [x]), g.const(1, np.int64)], axis=0)
        N = g.node("Unsqueeze", [N, g.const([0], np.int64)])
        shape = g.node("Concat", [N, g.const([H], np.int64)], axis=0)
        zero = numpy_helper.from_array(np.zeros(1, g.dtype))
        initial = [g.node("ConstantOfShape", [shape], value=zero)] * len(states)
    # the mask (T, N, 1)
    mask = g.node("Unsqueeze", [valid_tm, g.const([2], np.int64)])
    mask = g.node("Cast", [mask], to=TensorProto.BOOL)
    scanned = g.node(
        "Scan",
        list(initial) + [gi, mask],
        len(outputs),
        body=body,
        num_scan_inputs=2,
    )
    y = scanned[-1]
    if reverse:
        y = g.node("ReverseSequence", [y, lengths], batch_axis=1, time_axis=0)
    return y, scanned[:-1]


def _scan_layers(g, net, coefs, x, valid, lengths, initial):
    """As :func:`_recurrent_layers`, with each direction a Scan."""
    valid_tm = g.node("Transpose", [valid], perm=[1, 0])  # (T, N)
    lengths = g.node("Cast", [lengths], to=TensorProto.INT64)
    finals = []
    for k in range(net.num_layers):
        ys, hs = [], []
        start = None
        if initial is not None:  # layer k's (N, H) of each state input
            axis = g.const([0], np.int64)
            start = [g.node("Squeeze", [_layer_state(g, s, k), axis]) for s in initial]
        for d in range(net.n_dirs):
            y, states = _scan_direction(
                g,
                net.spec,
                coefs,
                param_suffix(k, d),
                x,
                valid_tm,
                lengths,
                d == 1,
                start,
            )
            ys.append(y)
            hs.append(states[0])
            axis = g.const([0], np.int64)
            finals.append([g.node("Unsqueeze", [s, axis]) for s in states])
        x = ys[0] if len(ys) == 1 else g.node("Concat", ys, axis=2)
    return x, hs[0] if len(hs) == 1 else g.node("Concat", hs, axis=1), finals


def _raw_outputs(g, model, operator):
    """The head's outputs: (N, n_outputs), or (N, T, n_outputs) for
    ``output="sequence"`` with the (N, T) validity of each step (else None).
    A stateful graph's (the operator has state inputs after X) final states
    go to the operator's last outputs."""
    if g.container.target_opset < _MIN_OPSET:
        raise ValueError(
            f"{type(model).__name__} exports to ONNX opset {_MIN_OPSET} or newer "
            "(its graph gives Squeeze, Unsqueeze and ReduceSum their axes as "
            f"inputs); got target_opset={g.container.target_opset}."
        )
    x = operator.inputs[0].full_name
    if _dtype_of(operator.inputs[0].type) != g.dtype.name:
        x = g.node("Cast", [x], to=g.onnx_dtype)
    if len(operator.inputs[0].type.shape) == 2:  # a table: one feature per step
        x = g.node("Unsqueeze", [x, g.const([2], np.int64)])
    x, valid, lengths = _lengths(g, x)
    net, coefs = model._network, model.coefs_
    initial = [v.full_name for v in operator.inputs[1:]] or None
    layers = _scan_layers if g.dtype == np.float64 else _recurrent_layers
    args = (valid, lengths) if g.dtype == np.float64 else (lengths,)
    outputs, h_last, finals = layers(g, net, coefs, x, *args, initial)
    if initial is not None:  # each state's layers stacked: (num_layers, N, H)
        for i, variable in enumerate(operator.outputs[-len(initial) :]):
            parts = [states[i] for states in finals]
            g.node("Concat", parts, outputs=[variable.full_name], axis=0)
    if model._output == "last":
        features, valid = h_last, None
    else:
        features = g.node("Transpose", [outputs], perm=[1, 0, 2])  # (N, T, dirs*H)
    W_T, b = g.const(coefs["head.weight"].T), g.const(coefs["head.bias"])
    return g.node("Add", [g.node("MatMul", [features, W_T]), b]), valid


def _convert_regressor(scope, operator, container):
    model = operator.raw_operator
    g = _Graph(scope, container, model._dtype)
    raw, valid = _raw_outputs(g, model, operator)
    values = _regression_outputs(g, model, raw)  # the first outputs
    if valid is None:
        for variable, value in zip(operator.outputs, values):
            g.node("Identity", [value], outputs=[variable.full_name])
        return
    # per step, NaN at padded steps, as predict fills them: the (N, T)
    # validity broadcast over the values' trailing axes
    rank = 2 + _trailing_axes(model)
    if rank > 2:
        valid = g.node("Unsqueeze", [valid, g.const(list(range(2, rank)), np.int64)])
    padded = g.node("Equal", [valid, g.const(0.0)])
    for variable, value in zip(operator.outputs, values):
        g.node("Where", [padded, g.const(np.nan), value], outputs=[variable.full_name])


def _regression_outputs(g, model, raw):
    """What predict returns (and the Gaussian loss's standard deviation), from
    the head's outputs (N, O) or (N, T, O), as predict computes it; for
    output="last" a single target keeps its axis, (N, 1)."""
    settings, loss = model._target_settings, model._head_loss()
    n_targets, per_step = model.n_outputs_, model._output == "sequence"
    mean, scale = model._y_mean, model._y_scale
    # the head's outputs per target: (..., n_targets, k)
    k = loss.n_outputs(n_targets) // n_targets
    lead = [0, 0] if per_step else [0]  # Reshape's 0: the input's own size
    blocks = g.node("Reshape", [raw, g.const(lead + [n_targets, k], np.int64)])

    def column(start, stop):
        ends = [g.const([start], np.int64), g.const([stop], np.int64)]
        return g.node("Slice", [blocks, *ends, g.const([-1], np.int64)])

    def softplus(a):
        # max(a, 0) + log(1 + exp(-|a|)): onnxruntime has no float64 Softplus
        tail = g.node("Exp", [g.node("Neg", [g.node("Abs", [a])])])
        tail = g.node("Log", [g.node("Add", [tail, g.const(1.0)])])
        return g.node("Add", [g.node("Relu", [a]), tail])

    def located(a):  # a: (..., n_targets, m), in standardised units
        a = g.node("Mul", [a, g.const(scale[:, None])])
        return g.node("Add", [a, g.const(mean[:, None])])

    name = settings["loss"]
    if name == "poisson":
        values = [g.node("Exp", [blocks])]
    elif name == "quantile":
        lowest = column(0, 1)
        q = lowest
        if k > 1:
            gaps = softplus(column(1, k))
            steps = g.node("CumSum", [gaps, g.const(-1, np.int64)])
            q = g.node("Concat", [lowest, g.node("Add", [lowest, steps])], axis=-1)
        values = [located(q)]
    elif name == "gaussian":
        sigma = g.node("Add", [softplus(column(1, 2)), g.const(_SIGMA_FLOOR)])
        values = [
            located(column(0, 1)),
            g.node("Mul", [sigma, g.const(scale[:, None])]),
        ]
    else:  # squared and absolute error: the head's output itself
        values = [located(blocks)]
    levels = name == "quantile" and np.ndim(settings["quantile"]) > 0
    drop = [] if levels else [-1]  # the k axis, but a list of quantile levels
    if not model._multi_target and (per_step or levels):
        drop.insert(0, -2)  # a single target's axis
    if not drop:
        return values
    axes = g.const(drop, np.int64)
    return [g.node("Squeeze", [v, axes]) for v in values]


def _trailing_axes(model):
    """How many axes predict's values have past (N, T) per step."""
    settings = model._target_settings
    levels = settings["loss"] == "quantile" and np.ndim(settings["quantile"]) > 0
    return int(model._multi_target) + int(levels)


def _convert_classifier(scope, operator, container):
    model = operator.raw_operator
    zipmap = container.get_options(model, {"zipmap": True})["zipmap"]
    zipmap = zipmap and len(operator.inputs) == 1  # a stateful graph has none
    if zipmap and model._output == "sequence":
        raise NotImplementedError(
            "A SequenceClassifier with output='sequence' exports with "
            "options={'zipmap': False}: a ZipMap holds one row of probabilities "
            "per sample, not one per step."
        )
    if zipmap and model._dtype == "float64":
        raise NotImplementedError(
            "onnxruntime's ZipMap holds float32 probabilities only: export a float64 "
            "SequenceClassifier with options={'zipmap': False} (probabilities as a "
            "float64 tensor)."
        )
    g = _Graph(scope, container, model._dtype)
    raw, valid = _raw_outputs(g, model, operator)
    # over the last axis: of (N, C), or of (N, T, C) per step
    if len(model.classes_) == 2:
        last = g.const([-1], np.int64)
        # one logit: the second class's probability is its logistic
        z = g.node("Slice", [raw, g.const([0], np.int64), g.const([1], np.int64), last])
        p1 = g.node("Sigmoid", [z])
        proba = g.node("Concat", [g.node("Sub", [g.const(1.0), p1]), p1], axis=-1)
        # the label from the logit's sign, as predict decides it
        code = g.node("Greater", [z, g.const(0.0)])
        code = g.node("Squeeze", [g.node("Cast", [code], to=TensorProto.INT64), last])
    else:
        proba = g.node("Softmax", [raw], axis=-1)
        code = g.node("ArgMax", [raw], axis=-1, keepdims=0)
    if valid is not None:  # NaN probabilities at padded steps, as predict_proba's
        padded = g.node("Equal", [valid, g.const(0.0)])
        padded = g.node("Unsqueeze", [padded, g.const([2], np.int64)])
        proba = g.node("Where", [padded, g.const(np.nan), proba])
    labels = g.const(_onnx_labels(model.classes_))
    g.node("Gather", [labels, code], outputs=[operator.outputs[0].full_name], axis=0)
    g.node("Identity", [proba], outputs=[operator.outputs[1].full_name])


def _onnx_labels(classes):
    """``classes_`` as ONNX holds labels: int64 or strings."""
    if classes.dtype.kind in "iu":
        return classes.astype(np.int64)
    if classes.dtype.kind in "OU" and all(isinstance(c, str) for c in classes):
        return classes.astype(object)
    raise NotImplementedError(
        f"labels of dtype {classes.dtype} cannot be exported to ONNX, whose "
        "classifiers' labels are integers or strings"
    )


def _convert_scaler(scope, operator, container):
    model = operator.raw_operator
    g = _Graph(scope, container, _dtype_of(operator.inputs[0].type))
    mean, scale = model._shift_scale()
    centred = g.node("Sub", [operator.inputs[0].full_name, g.const(mean)])
    g.node("Div", [centred, g.const(scale)], outputs=[operator.outputs[0].full_name])


# -------------------------------------------------------------- shapes
def _dtype_of(tensor_type):
    """The dtype name of a float tensor type, None for another type."""
    return {cls: name for name, cls in _TENSOR_TYPES.items()}.get(type(tensor_type))


def _input_check(operator, model):
    """The input's type, a float tensor (N, T, D) with the model's D, or
    (N, T) for a model of one feature per step; else an error."""
    input_type = operator.inputs[0].type
    if _dtype_of(input_type) is None or len(input_type.shape) not in (2, 3):
        raise NotImplementedError(
            f"{type(model).__name__} exports for float tensors of shape (N, T, D) "
            f"or (N, T), not {input_type}"
        )
    width = input_type.shape[2] if len(input_type.shape) == 3 else 1
    if width != model._n_step_features:
        raise ValueError(
            f"The graph's input X has {width} features per step, but "
            f"{type(model).__name__} is expecting {model._n_step_features}: "
            "export with an X_sample of the shape predict takes."
        )
    return input_type


def _regressor_shape(operator):
    model = operator.raw_operator
    input_type = _input_check(operator, model)
    N, T = input_type.shape[:2]
    settings = model._target_settings
    width = [model.n_outputs_] if model._multi_target else []
    if settings["loss"] == "quantile" and np.ndim(settings["quantile"]) > 0:
        width = width + [len(model._head_loss().levels)]
    shape = [N] + ([T] + width if model._output == "sequence" else width or [1])
    n_values = len(operator.outputs) - _state_shapes(operator, model)
    for output in operator.outputs[:n_values]:  # the Gaussian loss's std too
        output.type = _TENSOR_TYPES[model._dtype](shape)


def _state_shapes(operator, model):
    """Give a stateful graph's state outputs, the operator's last ones, the
    shape of its state inputs (num_layers, N, H); returns their number."""
    n_states = len(operator.inputs) - 1
    N = operator.inputs[0].type.shape[0]
    net = model._network
    for output in operator.outputs[len(operator.outputs) - n_states :]:
        output.type = _TENSOR_TYPES[model._dtype]([net.num_layers, N, net.hidden_size])
    return n_states


def _parse_regressor(scope, model, inputs, custom_parsers=None):
    """The regressor's outputs: ``variable``, what predict returns, and for
    the Gaussian loss ``variable_std``, the standard deviation that
    ``predict(X, return_std=True)`` adds."""
    names = ["variable"]
    if model._target_settings["loss"] == "gaussian":
        names.append("variable_std")
    return _declare(scope, "SkrnnSequenceRegressor", model, inputs, names)


def _parse_classifier(scope, model, inputs, custom_parsers=None):
    """skl2onnx's classifier parser; for a stateful graph (state inputs after
    X), ``label`` and ``probabilities`` as tensors, then the final states."""
    if len(inputs) == 1:
        return _parse_sklearn_classifier(scope, model, inputs, custom_parsers)
    names = ["label", "probabilities"]
    return _declare(scope, "SkrnnSequenceClassifier", model, inputs, names)


def _declare(scope, op_type, model, inputs, names):
    """An ``op_type`` operator of ``model`` on ``inputs`` with the outputs
    ``names``, then a stateful graph's final states (one per state input
    after X); its outputs. Their types are the shape calculators'."""
    operator = scope.declare_local_operator(op_type, model)
    operator.inputs = inputs
    for name in names + _STATE_NAMES[: len(inputs) - 1]:
        operator.outputs.append(
            scope.declare_local_variable(name, guess_tensor_type(inputs[0].type))
        )
    return operator.outputs


def _classifier_shape(operator):
    model = operator.raw_operator
    input_type = _input_check(operator, model)
    rows = input_type.shape[:2] if model._output == "sequence" else input_type.shape[:1]
    labels = _onnx_labels(model.classes_)
    label_type = Int64TensorType if labels.dtype.kind == "i" else StringTensorType
    operator.outputs[0].type = label_type(rows)
    width = [len(model.classes_)]
    operator.outputs[1].type = _TENSOR_TYPES[model._dtype](rows + width)
    _state_shapes(operator, model)


def _scaler_shape(operator):
    input_type = _input_check(operator, operator.raw_operator)
    operator.outputs[0].type = type(input_type)(list(input_type.shape))


def _refuse_encoder(operator):
    """CharacterEncoder's shape calculator: a refusal, before any conversion."""
    raise NotImplementedError(
        "CharacterEncoder cannot be exported to ONNX: no ONNX operator splits a "
        "string into its characters. Export the rest of the pipeline, which "
        "takes the encoder's output (pipeline[1:]), and encode the texts "
        "before the graph."
    )


def _never_converted(scope, operator, container):
    raise NotImplementedError  # _refuse_encoder stops the conversion first


update_registered_converter(
    SequenceRegressor,
    "SkrnnSequenceRegressor",
    _regressor_shape,
    _convert_regressor,
    parser=_parse_regressor,
)
update_registered_converter(
    SequenceClassifier,
    "SkrnnSequenceClassifier",
    _classifier_shape,
    _convert_classifier,
    parser=_parse_classifier,
    options={"zipmap": [True, False, "columns"], "nocl": [True, False]},
)
update_registered_converter(
    SequenceScaler, "SkrnnSequenceScaler", _scaler_shape, _convert_scaler
)
update_registered_converter(
    CharacterEncoder, "SkrnnCharacterEncoder", _refuse_encoder, _never_converted
)
