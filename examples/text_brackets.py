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
SKRNN_EXAMPLES_QUICK
    ``1`` shrinks the data and the epochs so that the script runs in a few
    seconds (the test suite uses it).

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
print(f"\nbag of characters, held-out accuracy: {bag.score(test_texts, y_test):.3f}")

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
print(f"GRU on characters, held-out accuracy: {rnn.score(test_texts, y_test):.3f}")
for text in ["f(x[i],g(y))", "f(x[i)],g(y)", "a[b(c)]", "a[b(c])"]:
    print(f"  {text!r:16} -> {rnn.predict([text])[0]}")
