"""
A character-level language model: "hell" -> "ello", then a paragraph
====================================================================

The vanilla RNN of the "hello" write-up: each character goes in one-hot,
the same weights W_xh, W_hh, W_hy are used at every step, and at each step
the network predicts the next character. In skrnn that is a
``SequenceClassifier(cell="rnn", output="sequence")``: one class label per
time step, the classes being the characters.

Part 1 learns the write-up's single word. ``make_char_sequences("hello",
seq_length=4)`` gives one window, X = one-hot "hell" and y = "ello"; the
model's ``predict`` should read back "ello".

Part 2 trains the same kind of model on the opening sentences of Jane
Austen's *Pride and Prejudice* (1813, public domain), cut into windows of
25 characters, then generates text: starting from a few characters, it
asks ``predict_proba`` for the distribution of the next character, draws
one with temperature sampling (probabilities raised to the power
1 / temperature and renormalised: low temperatures stay close to the most
likely character, high ones wander), appends it, and feeds the grown
string back in. A paragraph is far too little text to learn English, so
the model mostly recites what it has memorised, with the odd detour where
the temperature lets it jump into another sentence.

The figure ``char_rnn_hello.png`` shows both training loss curves.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Folder the PNG is written to (default: the current directory).
SKRNN_EXAMPLES_QUICK
    ``1`` cuts the epochs and the generated lengths so that the script runs
    in a few seconds (the test suite uses it).

The plot needs matplotlib; without it the script still runs and says that
the plot was skipped.

Run: ``python examples/plot_char_rnn_hello.py``
"""

import os
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceClassifier
from skrnn.datasets import make_char_sequences

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# the epoch budgets below are fixed on purpose: stopping at max_iter is expected
warnings.filterwarnings("ignore", category=ConvergenceWarning)

# ---------------------------------------------------------------- part 1
X, y, alphabet = make_char_sequences("hello", seq_length=4)
print(f"Part 1: alphabet {alphabet}, X {X.shape} (one-hot 'hell'), y {y.tolist()}")
hello = SequenceClassifier(
    cell="rnn",
    output="sequence",
    hidden_size=8,
    learning_rate_init=0.05,
    max_iter=200,
    random_state=0,
).fit(X, y)
predicted = "".join(hello.predict(X)[0])
print(f"  trained {hello.n_iter_} epochs, final loss {hello.loss_:.4f}")
print(f"  'hell' -> {predicted!r}")

# ---------------------------------------------------------------- part 2
TEXT = (
    "It is a truth universally acknowledged, that a single man in possession "
    "of a good fortune, must be in want of a wife. However little known the "
    "feelings or views of such a man may be on his first entering a "
    "neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of "
    "some one or other of their daughters."
)
SEQ_LENGTH = 25
# overlapping windows (a new one every 3 characters) give the model more views
X, y, alphabet = make_char_sequences(TEXT, seq_length=SEQ_LENGTH, step=3)
print(
    f"\nPart 2: {len(TEXT)} characters of Pride and Prejudice, "
    f"{len(alphabet)} distinct, {X.shape[0]} windows of {SEQ_LENGTH}"
)
model = SequenceClassifier(
    cell="rnn",
    output="sequence",
    hidden_size=64,
    learning_rate_init=0.01,
    batch_size=32,
    max_iter=8 if QUICK else 60,
    random_state=0,
).fit(X, y)
# with output="sequence", score is the accuracy over every time step
step_accuracy = model.score(X, y)
print(f"  trained {model.n_iter_} epochs, final loss {model.loss_:.3f}")
print(f"  next-character accuracy on the training windows: {step_accuracy:.1%}")

char_index = {char: i for i, char in enumerate(alphabet)}
one_hot = np.eye(len(alphabet))


def generate(model, prompt, n_chars, temperature, rng):
    """Extend ``prompt`` by ``n_chars`` characters drawn from the model."""
    text = prompt
    for _ in range(n_chars):
        context = text[-SEQ_LENGTH:]  # the model was trained on windows this long
        x = one_hot[[char_index[char] for char in context]][None]
        proba = model.predict_proba(x)[0, -1]  # the last step's distribution
        logits = np.log(np.maximum(proba, 1e-12)) / temperature
        weights = np.exp(logits - logits.max())
        text += model.classes_[rng.choice(len(weights), p=weights / weights.sum())]
    return text


rng = np.random.RandomState(42)
n_generated = 30 if QUICK else 70
print("  generated text (prompt, then the model's continuation):")
for prompt, temperature in [("It is", 0.5), ("the ", 0.8), ("a man", 1.0)]:
    line = generate(model, prompt, n_generated, temperature, rng)
    print(f"    T={temperature}: {line!r}")

# ---------------------------------------------------------------- the figure
# %%
# The figure (when matplotlib is installed).

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("\nmatplotlib is not installed: plot skipped")
else:
    fig = plt.figure(figsize=(11, 4.5), layout="constrained")
    ax_hello, ax_text = fig.subplots(1, 2)
    for ax, fitted, title in [
        (ax_hello, hello, "Part 1: 'hell' -> 'ello' (hidden_size=8)"),
        (ax_text, model, f"Part 2: Pride and Prejudice, windows of {SEQ_LENGTH}"),
    ]:
        ax.semilogy(np.arange(1, len(fitted.loss_curve_) + 1), fitted.loss_curve_)
        ax.set_xlabel("epoch")
        ax.set_ylabel("log-loss per character")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    os.makedirs(OUTPUT, exist_ok=True)
    out = os.path.join(OUTPUT, "char_rnn_hello.png")
    fig.savefig(out, dpi=100)
    print(f"\nfigure saved to {out}")
