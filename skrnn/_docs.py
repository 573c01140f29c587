"""Docstring sections that several classes share, written once.

Docstrings hold ``%(name)s`` fields that :func:`fill_doc` fills from
:data:`SHARED` (or from sections a module passes it), so that ``help()`` and
the API reference show every parameter in full while the text has one source.
"""

import re
import textwrap
from types import FunctionType

from ._cells import CELLS


def _entry(name, kind, text):
    """A numpydoc parameter entry, its text wrapped under it."""
    body = textwrap.fill(text, 72, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return f"    {name} : {kind}\n{body}\n"


def _quoted(names):
    return [f'"{name}"' for name in names]


def _or(items):
    """ "a", "b" or "c"."""
    return ", ".join(items[:-1]) + (" or " if len(items) > 1 else "") + items[-1]


def option_entry(name, options, default, intro):
    """A parameter entry for a choice among ``options`` (a dict of each
    choice to what it is), so that a new choice documents itself."""
    quoted = ", ".join(f'"{option}"' for option in options)
    described = "; ".join(f'"{o}", {text}' for o, text in options.items())
    return _entry(name, f'{{{quoted}}}, default="{default}"', f"{intro}: {described}.")


def _cell_parameters():
    """The ``cell`` and ``activation`` entries, written from the cell table."""
    cell = option_entry(
        "cell",
        {name: kind.description for name, kind in CELLS.items()},
        "gru",
        "The recurrent cell",
    )
    activations = dict.fromkeys(a for kind in CELLS.values() for a in kind.activations)
    takes = [
        f"{q}: {_or(_quoted(k.activations))}"
        for q, k in zip(_quoted(CELLS), CELLS.values())
    ]
    activation = _entry(
        "activation",
        f'{{{", ".join(_quoted(activations))}}}, default="tanh"',
        "The cell's nonlinearity, of those it takes: " + "; ".join(takes) + ".",
    )
    return cell, activation


_CELL, _ACTIVATION = _cell_parameters()

SHARED = {
    # every parameter of the regressor, which the classifier has too
    "parameters": "\n"
    + _CELL
    + """    hidden_size : int, default=32
        Units per layer and direction.
    num_layers : int, default=1
        Stacked recurrent layers.
    bidirectional : bool, default=False
        Add a time-reversed direction to each layer; outputs are the
        concatenation [forward, backward].
"""
    + _ACTIVATION
    + """    reset_after : bool, default=True
        GRU only. True: n = act(W_in x + b_in + r ⊙ (W_hn h + b_hn)) as in
        PyTorch and cuDNN; False: n = act(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
        as in Cho et al. (2014) and Darknet.
    use_bias : bool, default=True
        Biases in the recurrent layers (the head always has one).
    output : {"last", "sequence"}, default="last"
        "last": one target per sequence, read at its last valid step (for a
        backward direction, after it read the whole sequence). "sequence":
        one target per time step.
    solver : {"adam", "sgd", "rprop"}, default="adam"
        The optimiser. "rprop" (iRprop−, as ``torch.optim.Rprop``) always
        uses the full batch.
    learning_rate_init : float, default=1e-3
        Step size (Rprop: initial step).
    momentum : float, default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
        Nesterov momentum for SGD.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    alpha : float, default=1e-4
        L2 penalty on weights (not biases).
    clip_norm : float or None, default=5.0
        Clip the gradient's global L2 norm to this value; None: no clipping.
    batch_size : int or "auto", default="auto"
        Mini-batch size; "auto" is ``min(200, n_samples)``; larger values
        are clipped to ``n_samples``.
    max_iter : int, default=200
        Epochs.
    tol : float, default=1e-4
        Minimum improvement of the loss (or validation score).
    n_iter_no_change : int, default=10
        Stop after this many epochs without an improvement of ``tol``.
        An epoch whose training loss is not 1 %% below that of the best
        constant output (the class prior, the mean target) does not count: a
        model on long sequences can stay on that plateau for tens of epochs
        before it learns. A fit that ends there says so in its
        ConvergenceWarning.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop on its score (R²
        for the regressor, accuracy for the classifier) and keep the best
        weights. Ignored by ``partial_fit``.
    validation_fraction : float, default=0.1
        Share of the data held out for early stopping; the classifier's
        split is stratified when ``output="last"``.
    bptt_steps : int or None, default=None
        Truncated BPTT over windows of this many steps: the state is carried
        across windows, gradients stop at the start of their window. Not
        with ``bidirectional=True``.
    shuffle : bool, default=True
        Reshuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds weights, shuffling and the validation split; the same int
        gives bit-identical weights on the same machine and thread count.
    warm_start : bool, default=False
        ``fit`` continues from the current weights, with the optimiser's
        current settings (its state kept while the solver stays the same;
        for Rprop, also ``learning_rate_init``). Parameters that describe
        another network (``cell``, ``hidden_size``, ``num_layers``,
        ``bidirectional``, ``activation``, ``reset_after``, ``use_bias``,
        ``output``, ``dtype``; the regressor's ``loss`` and ``normalize_y``)
        raise a ValueError; so does ``partial_fit``.
    verbose : int, default=0
        1: a line per epoch; 2: also a progress bar within each epoch.
    dtype : {"float32", "float64"} or None, default="float32"
        Precision of the weights and the computation, as in PyTorch and
        Keras; predictions and probabilities are float64 either way, and
        ``score`` compares them with the targets as given. None is
        scikit-learn's rule, the default up to skrnn 0.1: float32 input in
        float32, anything else in float64.
    device : {"cpu", "cuda"}, default="cpu"
        Where the kernels run. "cuda": an NVIDIA GPU through CuPy (``pip
        install skrnn[gpu]``; ``skrnn[gpu13]`` for CUDA 13), float32 or
        float64. ``fit`` and ``partial_fit`` then raise
        :class:`skrnn.CudaUnavailableError` (a ``RuntimeError``) before
        anything changes, saying whether CuPy or a usable device is missing.
        During a fit the parameters, the optimiser's state and the training
        set (when it takes at most a quarter of the free GPU memory; else
        batch by batch) stay on the GPU; ``coefs_`` and everything pickled
        are NumPy arrays. ``predict`` and ``score`` run on the GPU when one is
        usable and otherwise on the CPU, so a model fitted on a GPU loads
        and predicts on a machine without one.

""",
    # the fitted model's attributes; %(n_outputs)s says what the outputs
    # are, %(loss)s and %(score)s name the estimator's loss and score
    "attributes": """
    coefs_ : dict of str to ndarray
        Live parameters in PyTorch's ``nn.RNN``/``nn.GRU``/``nn.LSTM`` + ``nn.Linear``
        state-dict layout (``weight_ih_l0``, ..., ``head.weight``,
        ``head.bias``); writing into them changes the model.
    n_features_in_ : int
        Columns of a fitted table, or features per step of fitted 3-D or
        list input.
    feature_names_in_ : ndarray of str
        Column names of a fitted DataFrame (only then).
    n_outputs_ : int
        %(n_outputs)s
    n_iter_ : int
        Epochs run.
    t_ : int
        Samples seen during training.
    loss_ : float
        The last epoch's loss: %(loss)s plus the L2 penalty.
        When training diverges before a call's first epoch completes, the
        loss at the weights kept. Training diverges when the loss or a
        weight becomes NaN or infinite, or the loss exceeds 1/eps times the
        largest before it in the call (eps: the machine epsilon of
        ``dtype``); the weights from before the update that caused it are
        kept, and a ConvergenceWarning says so.
    loss_curve_ : list of float
        The loss of each epoch.
    best_loss_ : float or None
        The lowest loss seen (None with early stopping).
    validation_scores_ : list of float or None
        %(score)s on the validation set per epoch (early stopping only).
    best_validation_score_ : float or None
        The best of ``validation_scores_``.
""",
    # the estimators' methods that take fitted sequences
    "X": """
    X : array-like or list of array-like
        Sequences in any form ``fit`` accepts.
""",
    "sample_weight": """
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative per-sample weights.
""",
    # the recurrent layers' sizes, and the options all three cells take
    "layer_sizes": """
    input_size : int
        Features per step, D.
    hidden_size : int
        Units, H.
""",
    "layer_options": """
    use_bias : bool, default=True
        Whether ``bias_ih`` and ``bias_hh`` exist.
    stateful : bool, default=False
        Carry the last state into the next ``forward`` call, which must then
        have as many sequences (or an initial state of its own, or follow
        :meth:`reset_state`).
    dtype : {"float32", "float64"}, default="float32"
        Precision of parameters and computation.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, drawn from U(-1/sqrt(H), 1/sqrt(H)) as
        PyTorch draws them; the LSTM's forget-gate biases start at 1
        (``bias_ih``) and 0 (``bias_hh``).
""",
    # the layers' backward pass
    "layer_backward_parameters": """
    d_outputs : array-like of shape (N, T, H)
        Gradient of the loss with respect to ``outputs``.
    d_h_last : array-like of shape (N, H), default=None
        Gradient with respect to ``h_last``.
""",
    "layer_dx": """
    dX : ndarray of shape (N, T, D)
        Gradient with respect to ``X`` (zero at padded steps).
""",
    "layer_gradients": """
    grads : dict
        Gradients of the same shapes, filled by :meth:`backward`.
    dh0 : ndarray of shape (N, H)
        Gradient with respect to the initial state, filled by :meth:`backward`.
""",
}

_FIELD = re.compile(r"^( *)%\((\w+)\)s$", flags=re.M)


def fill_doc(**names):
    """A decorator that fills the docstrings of a class and its methods (or
    of a function).

    A line that holds only ``%(key)s`` is replaced by the section
    ``names[key]``, else ``SHARED[key]``, indented as the field is;
    ``%(name)s`` fields in the sections are filled from ``names``.
    """

    def section(match):
        indent, key = match.groups()
        text = textwrap.dedent(names[key] if key in names else SHARED[key]).strip()
        return textwrap.indent(text % names, indent)

    def fill(obj):
        members = vars(obj).values() if isinstance(obj, type) else ()
        for member in (obj, *members):
            if isinstance(member, (type, FunctionType)) and member.__doc__:
                member.__doc__ = _FIELD.sub(section, member.__doc__)
        return obj

    return fill
