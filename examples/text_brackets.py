"""
Text classification on raw strings: is an expression's bracketing sound?
========================================================================

The texts are code-like expressions such as ``f(x[i],g(y))``, of 5 to 40
characters. Half of them are broken by moving one closing bracket to
another place, which leaves every character count as it was: ``f(x[i],g(y)``
+ ``)`` moved gives ``f(x[i)],g(y)``. Whether an expression is sound (every
bracket closed by its own kind, innermost first) depends on the order of
its characters, not on which characters it has.

A pipeline of :class:`~skrnn.preprocessing.CharacterEncoder` (raw strings
to one-hot character sequences) and a GRU classifier is fitted on the
strings as they are. For comparison, a bag of characters
(``CountVectorizer(analyzer="char")`` + logistic regression) sees the same
strings without their order. Both are scored on held-out expressions.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Where the figure ``text_brackets.png`` is saved (default: the current
    folder).
SKRNN_EXAMPLES_QUICK
    ``1`` shrinks the data and the epochs so that the script runs in a few
    seconds (the test suite uses it).

The plot needs matplotlib; without it the script still runs and says that
it skipped the plot.

Run: ``python examples/text_brackets.py``
"""

import os
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skrnn import SequenceClassifier
from skrnn.preprocessing import CharacterEncoder

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# the epoch budget of the quick mode is fixed on purpose
warnings.filterwarnings("ignore", category=ConvergenceWarning)

PAIRS = {")": "(", "]": "["}


def expression(rng, depth=0):
    """A random sound expression: a name, a call f(a,b) or an index x[a]."""
    name = rng.choice(list("abfgixy"))
    kind = rng.randint(3) if depth < 4 else 0
    if kind == 0:
        return name
    if kind == 1:
        args = [expression(rng, depth + 1) for _ in range(rng.randint(1, 3))]
        return f"{name}({','.join(args)})"
    return f"{name}[{expression(rng, depth + 1)}]"


def is_sound(text):
    stack = []
    for char in text:
        if char in "([":
            stack.append(char)
        elif char in PAIRS:
            if not stack or stack.pop() != PAIRS[char]:
                return False
    return not stack


def make_expressions(n, random_state=0):
    """Expressions of 5 to 40 characters, half of them broken by moving one
    closing bracket elsewhere, and whether each is sound."""
    rng = np.random.RandomState(random_state)
    texts, labels = [], []
    while len(texts) < n:
        text = expression(rng)
        closing = [i for i, c in enumerate(text) if c in PAIRS]
        if not 5 <= len(text) <= 40 or not closing:
            continue
        broken = rng.rand() < 0.5
        while broken and is_sound(text):  # a move that breaks it
            i = rng.choice([k for k, c in enumerate(text) if c in PAIRS])
            rest = text[:i] + text[i + 1 :]
            j = rng.randint(len(rest) + 1)
            text = rest[:j] + text[i] + rest[j:]
        texts.append(text)
        labels.append("broken" if broken else "sound")
    return texts, np.array(labels)


texts, labels = make_expressions(800 if QUICK else 4000)
train_texts, test_texts, y_train, y_test = train_test_split(
    texts, labels, test_size=0.25, random_state=0, stratify=labels
)
print(f"{len(texts)} expressions, {np.mean(labels == 'sound'):.0%} sound, e.g.:")
for text, label in list(zip(texts, labels))[:4]:
    print(f"  {text!r:45} {label}")

bag = make_pipeline(CountVectorizer(analyzer="char"), LogisticRegression(max_iter=1000))
bag.fit(train_texts, y_train)
bag_accuracy = bag.score(test_texts, y_test)
print(f"\nbag of characters, held-out accuracy: {bag_accuracy:.3f}")

rnn = make_pipeline(
    CharacterEncoder(),
    SequenceClassifier(
        cell="gru",
        hidden_size=32,
        learning_rate_init=0.01,
        batch_size=32,
        max_iter=8 if QUICK else 60,
        random_state=0,
    ),
)
rnn.fit(train_texts, y_train)
rnn_accuracy = rnn.score(test_texts, y_test)
print(f"GRU on characters, held-out accuracy: {rnn_accuracy:.3f}")
for text in ["f(x[i],g(y))", "f(x[i)],g(y)", "a[b(c)]", "a[b(c])"]:
    print(f"  {text!r:16} -> {rnn.predict([text])[0]}")

# %%
# The figure (when matplotlib is installed).

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("\nmatplotlib is not installed: plot skipped")
else:
    fig, ax = plt.subplots(figsize=(6, 2.5), layout="constrained")
    ax.barh(
        ["bag of characters", "GRU on characters"],
        [bag_accuracy, rnn_accuracy],
        color=["tab:gray", "tab:blue"],
    )
    ax.axvline(0.5, color="black", lw=1, ls=":", label="chance")
    ax.set_xlim(0, 1)
    ax.set_xlabel("held-out accuracy")
    ax.set_title("Is the bracketing sound? The order of the characters decides")
    ax.legend(loc="lower right")
    path = os.path.join(OUTPUT, "text_brackets.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")
