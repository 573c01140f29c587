"""The recurrent cells: one table, which the estimators, the layers, every
engine and the ONNX export read.

A cell is known by its name; :data:`CELLS` says what it is apart from its
sizes (gates, state, the activations it takes) and :func:`init_params`
draws its parameters, in PyTorch's layout: ``weight_ih`` (G*H, D),
``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H,), the gates
stacked in the table's order. A new cell is a row here, its step in the
reference engine (:mod:`skrnn._engine.reference`), its compiled kernel
(:mod:`skrnn._engine._recurrent`, with what it needs in its ``KERNELS``),
its CUDA kernel, its ONNX mapping (:mod:`skrnn.onnx`) and its tests; the
estimators' parameters and docstrings follow from the table.
"""

import math
from collections import namedtuple
from typing import NamedTuple


class CellKind(NamedTuple):
    """What a cell is, apart from its sizes."""

    gates: tuple  # the gates, in the order of their blocks of H rows
    state_parts: int  # 1: the state is h; 2: h and the cell state c, side by side
    activations: tuple  # the nonlinearities it takes; the first is the default
    description: str  # what it is, for the estimators' docstrings
    # (gate, initial bias) pairs: b_ih's block of the gate takes the value,
    # b_hh's 0; the other biases are drawn as the weights are
    bias_init: tuple = ()


CELLS = {
    # reset and update gates (logistic) and the candidate n (its activation)
    "gru": CellKind(
        ("r", "z", "n"),
        1,
        ("tanh", "logistic"),
        "a GRU as PyTorch's ``nn.GRU`` (``activation``: its candidate's)",
    ),
    "rnn": CellKind(
        ("h",),
        1,
        ("tanh", "relu", "identity", "logistic"),
        "an Elman RNN h' = act(W_ih x + b_ih + W_hh h + b_hh)",
    ),
    # input, forget, cell and output gates; fixed activations. The forget
    # gate starts open, sigma(1) = 0.73, so that the cell state and its
    # gradient carry across long sequences from the first epoch (Gers et al.
    # 2000; Jozefowicz et al. 2015; Keras's unit_forget_bias)
    "lstm": CellKind(
        ("i", "f", "g", "o"),
        2,
        ("tanh",),
        "an LSTM as PyTorch's ``nn.LSTM`` (its head reads h)",
        (("f", 1.0),),
    ),
}

#: What defines a recurrent cell, apart from its sizes.
CellSpec = namedtuple("CellSpec", ["cell", "activation", "reset_after", "use_bias"])

#: G, the number of gates of each cell.
N_GATES = {name: len(kind.gates) for name, kind in CELLS.items()}

#: The activations each cell takes.
ACTIVATIONS = {name: kind.activations for name, kind in CELLS.items()}

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def state_size(cell, hidden_size):
    """Width of a cell's state: H, or 2H for the LSTM's h and c."""
    return CELLS[cell].state_parts * hidden_size


def param_suffix(layer, direction):
    """PyTorch's suffix of the parameters of a layer and direction of a
    network: ``weight_ih`` + ``_l1_reverse``."""
    return f"_l{layer}" + ("_reverse" if direction else "")


def param_names(spec):
    """The parameter names of a layer with this spec, in storage order."""
    return PARAM_NAMES if spec.use_bias else PARAM_NAMES[:2]


def init_params(spec, input_size, hidden_size, dtype, rng):
    """Draw a layer's parameters as PyTorch does, U(-1/sqrt(H), 1/sqrt(H)),
    but the biases the cell table sets (the LSTM's forget gate: 1).

    Parameters
    ----------
    spec : CellSpec
        The cell; decides the number of gates and whether biases exist.
    input_size, hidden_size : int
        D and H.
    dtype : numpy dtype
        The parameters' dtype.
    rng : numpy.random.RandomState
        The source of randomness.

    Returns
    -------
    params : dict
        ``weight_ih`` (G*H, D), ``weight_hh`` (G*H, H) and, with biases,
        ``bias_ih``, ``bias_hh`` (G*H,).
    """
    gh = N_GATES[spec.cell] * hidden_size
    shapes = {
        "weight_ih": (gh, input_size),
        "weight_hh": (gh, hidden_size),
        "bias_ih": (gh,),
        "bias_hh": (gh,),
    }
    bound = 1.0 / math.sqrt(hidden_size)
    params = {
        name: rng.uniform(-bound, bound, size=shapes[name]).astype(dtype)
        for name in param_names(spec)
    }
    if spec.use_bias:
        kind, H = CELLS[spec.cell], hidden_size
        for gate, value in kind.bias_init:
            block = slice(kind.gates.index(gate) * H, (kind.gates.index(gate) + 1) * H)
            params["bias_ih"][block] = value
            params["bias_hh"][block] = 0.0
    return params
