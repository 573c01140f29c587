"""
Long memory: the adding problem, which the LSTM was made for
============================================================

Each sequence has T steps of two features: a random value in [0, 1] and a
marker, 1 at two steps and 0 elsewhere. The target is the sum of the two
marked values (Hochreiter and Schmidhuber, 1997, who introduced the LSTM
with such tasks). The first marker falls in the first tenth of the
sequence, so a model must keep a value for most of the sequence, ignoring
everything else, until it reads the end. Always predicting the mean scores
R^2 = 0.

The same regressor is trained with each cell on the same data and epochs.
The LSTM's cell state carries the value through its forget gate, the GRU's
state through its update gate (here the GRU leaves the plateau sooner);
the Elman RNN, whose state is squashed at every step, never does. The plot
shows the training loss of each.

Environment
-----------
SKRNN_EXAMPLES_QUICK
    ``1`` shrinks the data and the epochs so that the script runs in a few
    seconds (the test suite uses it).
SKRNN_EXAMPLES_OUTPUT
    Folder for the plot (default: the current one).

Run: ``python examples/plot_long_memory_adding.py``
"""

import os
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceRegressor

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# the epoch budget is fixed on purpose, the same for every cell
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def make_adding(n, T, random_state=0):
    """``n`` sequences (n, T, 2) of the adding problem and their targets."""
    rng = np.random.RandomState(random_state)
    values = rng.uniform(0.0, 1.0, size=(n, T))
    markers = np.zeros((n, T))
    first = rng.randint(0, max(1, T // 10), size=n)
    second = rng.randint(T // 2, T, size=n)
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    X = np.stack([values, markers], axis=2)
    y = values[rows, first] + values[rows, second]
    return X, y


T = 30 if QUICK else 60
X_train, y_train = make_adding(2000 if QUICK else 4000, T, random_state=0)
X_test, y_test = make_adding(1000, T, random_state=1)
print(f"the adding problem: {len(X_train)} training sequences of {T} steps")

models = {}
for cell in ("lstm", "gru", "rnn"):
    model = SequenceRegressor(
        cell=cell,
        hidden_size=32,
        learning_rate_init=0.01,
        batch_size=32,
        max_iter=20 if QUICK else 30,
        random_state=0,
    )
    models[cell] = model.fit(X_train, y_train)
    print(f"{cell:4}  held-out R^2 = {model.score(X_test, y_test):.3f}")

# %%
# The figure (when matplotlib is installed).

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("(matplotlib is not installed: no plot)")
else:
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell, model in models.items():
        ax.plot(np.arange(1, model.n_iter_ + 1), model.loss_curve_, label=cell)
    ax.axhline(np.var(y_train) / 2, color="gray", ls="--", label="predicting the mean")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (half the mean squared error)")
    ax.set_title(f"The adding problem, T = {T}")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(OUTPUT, "long_memory_adding.png")
    fig.savefig(path, dpi=100)
    print(f"saved {path}")
