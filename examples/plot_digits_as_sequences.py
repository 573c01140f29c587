"""
Handwritten digits read as sequences: a GRU classifies 8x8 images row by row
============================================================================

scikit-learn's ``load_digits`` holds 1797 images of 8x8 pixels with values
0 to 16. Read from top to bottom, each image becomes a sequence of 8 time
steps, each step one row of 8 pixels: a 3-D array of shape
(n_samples, 8, 8), the form ``SequenceClassifier`` reads as
(samples, time steps, features per step). The GRU sees one row at a time
and must carry what it has seen of the strokes in its state until the last
row, where the softmax head (one output per digit) reads it.

The pixels are scaled to [0, 1] (divided by 16), the data are split 75/25,
stratified, and the held-out accuracy and a confusion matrix are reported.
With 32 hidden units, Adam at a learning rate of 0.01 and 30 epochs the
held-out accuracy is about 0.97 (one row per step and nothing else: no
convolution, no look at the whole image at once).

The figure ``digits_as_sequences.png`` is the confusion matrix on the
held-out images.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Folder the PNG is written to (default: the current directory).
SKRNN_EXAMPLES_QUICK
    ``1`` trains for a few epochs only, so that the script runs in a few
    seconds (the test suite uses it); the accuracy is then much lower.

The plot needs matplotlib; without it the script still runs and says that
the plot was skipped.

Run: ``python examples/plot_digits_as_sequences.py``
"""

import os
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix
from sklearn.model_selection import train_test_split

from skrnn import SequenceClassifier

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

digits = load_digits()
# (1797, 8, 8): image k, row t, column j -> sample k, time step t, feature j
X = digits.images / 16.0
y = digits.target
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
print(
    f"{len(X)} images of 8x8 pixels as sequences of 8 rows of 8 features: "
    f"{len(X_train)} to train, {len(X_test)} held out"
)

model = SequenceClassifier(
    cell="gru",
    hidden_size=32,
    learning_rate_init=0.01,
    batch_size=64,
    max_iter=3 if QUICK else 30,
    random_state=0,
)
start = time.perf_counter()
with warnings.catch_warnings():
    # a fixed epoch budget: stopping at max_iter is expected, not a problem
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(X_train, y_train)
seconds = time.perf_counter() - start
print(
    f"SequenceClassifier(cell='gru', hidden_size=32): {model.n_iter_} epochs "
    f"in {seconds:.1f} s, final loss {model.loss_:.4f}"
)

y_pred = model.predict(X_test)
accuracy = model.score(X_test, y_test)
print(f"held-out accuracy: {accuracy:.4f}")
matrix = confusion_matrix(y_test, y_pred)
worst = max(
    ((i, j) for i in range(10) for j in range(10) if i != j), key=lambda ij: matrix[ij]
)
print(
    f"most frequent confusion: a {worst[0]} read as a {worst[1]} "
    f"({matrix[worst]} times)"
)

# %%
# The figure (when matplotlib is installed).

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: plot skipped")
else:
    fig = plt.figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay(matrix, display_labels=model.classes_).plot(
        ax=ax, cmap="Blues", colorbar=True
    )
    ax.set_title(
        f"GRU reading digit images row by row\nheld-out accuracy {accuracy:.3f}"
    )
    os.makedirs(OUTPUT, exist_ok=True)
    out = os.path.join(OUTPUT, "digits_as_sequences.png")
    fig.savefig(out, dpi=100)
    print(f"figure saved to {out}")
