"""
Count the ones: the linear RNN that learns to add, two ways
===========================================================

The classic first recurrent network: a binary sequence goes in, one step at
a time, and the state should end up holding the number of ones seen. One
linear unit does it exactly, with S_k = S_{k-1} * wRec + X_k * wx and
wx = wRec = 1. The write-up skrnn grew from trained it on 20 sequences of 10
bits with Rprop, from wx = -1.5, wRec = 2, and reached wx = 1.0014,
wRec = 0.9997.

Part 1 does exactly that with skrnn's parts: a one-unit ``skrnn.layers.RNN``
(identity activation, no bias) trained by ``skrnn.optim.Rprop``.
Part 2 does the same task as a scikit-learn user would, with
``SequenceRegressor``, and scores it on fresh, longer sequences.

The figure ``binary_sum.png`` shows why the write-up used Rprop rather than
plain gradient descent. Its left panel is part 1's loss curve. Its right
panel is the loss surface over (wx, wRec), computed in closed form,
S_T = sum_t x_t * wx * wRec**(T-1-t), with the path Rprop took from
(-1.5, 2) to (1, 1) drawn on it. Where ``|wRec| > 1`` the state, and with it the
gradient, grows like wRec**(T-1): the surface is a steep wall beside a
flat, narrow valley, and a fixed learning rate that is small enough for
the wall crawls along the valley, while one large enough for the valley
explodes on the wall. Rprop only looks at the sign of each gradient, so its
step size does not care how large the gradient is.

Environment
-----------
SKRNN_EXAMPLES_OUTPUT
    Folder the PNG is written to (default: the current directory).
SKRNN_EXAMPLES_QUICK
    ``1`` shrinks part 2's data and epochs and the plot's grid, so that the
    script runs in a few seconds (the test suite uses it).

The plot needs matplotlib; without it the script still runs and says that
the plot was skipped.

Run: ``python examples/plot_binary_sum.py``
"""

import os
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skrnn import SequenceRegressor
from skrnn.datasets import make_binary_sum
from skrnn.layers import RNN
from skrnn.optim import Rprop

QUICK = os.environ.get("SKRNN_EXAMPLES_QUICK", "0") not in ("", "0")
OUTPUT = os.environ.get("SKRNN_EXAMPLES_OUTPUT", ".")

# %%
# Part 1: one linear unit trained by Rprop, as the write-up did.

X, y = make_binary_sum(n_samples=20, n_timesteps=10, random_state=0)
X3 = X[:, :, None]  # (samples, steps, 1 feature)

layer = RNN(1, 1, activation="identity", use_bias=False, dtype="float64")
layer.params["weight_ih"][:] = -1.5  # wx, the seed's starting point
layer.params["weight_hh"][:] = 2.0  # wRec
optimizer = Rprop(learning_rate=0.001, etas=(0.5, 1.2))

losses, path = [], [(-1.5, 2.0)]
for iteration in range(500):
    _, state = layer.forward(X3)
    error = state[:, 0] - y
    losses.append(np.mean(error**2))
    # mean squared error; its gradient with respect to the final state
    d_state = (2.0 * error / len(y))[:, None]
    layer.backward(np.zeros((len(y), 10, 1)), d_h_last=d_state)
    optimizer.update(layer.params, layer.grads)
    path.append((layer.params["weight_ih"][0, 0], layer.params["weight_hh"][0, 0]))

wx = layer.params["weight_ih"][0, 0]
w_rec = layer.params["weight_hh"][0, 0]
print("Part 1: one linear unit, trained by Rprop on 20 sequences of 10 bits")
print(f"  wx   = {wx:.4f}   (the write-up: 1.0014)")
print(f"  wRec = {w_rec:.4f}   (the write-up: 0.9997)")
test = np.array([[0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1]], dtype=float)
_, state = layer.forward(test[:, :, None])
print(f"  {test[0].astype(int).tolist()} -> {state[0, 0]:.4f} (target 5)")

# %%
# Part 2: the same count learnt by a ``SequenceRegressor``.
X_train, y_train = make_binary_sum(
    n_samples=50 if QUICK else 200, n_timesteps=10, random_state=0
)
model = SequenceRegressor(
    cell="rnn",
    activation="identity",
    hidden_size=1,
    use_bias=False,
    alpha=0.0,
    solver="rprop",
    learning_rate_init=0.001,
    max_iter=500,
    tol=1e-10,
    random_state=0,
)
with warnings.catch_warnings():
    # a fixed epoch budget: stopping at max_iter is expected, not a problem
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(X_train, y_train)

print("\nPart 2: SequenceRegressor(cell='rnn', activation='identity', hidden_size=1)")
print(f"  trained {model.n_iter_} epochs, final loss {model.loss_:.2e}")
for n_steps in (10, 50):
    X_test, y_test = make_binary_sum(
        n_samples=200 if QUICK else 1000, n_timesteps=n_steps, random_state=1
    )
    # 3-D input (samples, steps, 1 feature): a model fitted on a table of 10
    # columns reads univariate sequences of any length this way
    X_test = X_test[:, :, None]
    exact = np.mean(np.round(model.predict(X_test)) == y_test)
    print(
        f"  fresh sequences of {n_steps} bits: "
        f"R^2 = {model.score(X_test, y_test):.6f}, exact count for {exact:.1%}"
    )

# %%
# The figure (when matplotlib is installed): the loss surface of part 1.

# The loss surface of part 1 in closed form: with S_0 = 0 the final state is
# S_T = wx * sum_t x_t * wRec**(T-1-t), a polynomial in wRec.
n_grid = 120 if QUICK else 400
path = np.array(path)
# Rprop overshoots to the right of the valley before it settles: keep it in view
wx_grid = np.linspace(-2.0, max(2.5, path[:, 0].max() + 0.25), n_grid)
w_rec_grid = np.linspace(-0.5, 2.5, n_grid)
T = X.shape[1]
powers = w_rec_grid[:, None] ** (T - 1 - np.arange(T))  # (n_grid wRec, T)
reach = X @ powers.T  # (samples, n_grid wRec): S_T / wx
S = reach[:, :, None] * wx_grid[None, None, :]  # (samples, wRec, wx)
surface = np.mean((S - y[:, None, None]) ** 2, axis=0)  # MSE, (wRec, wx)


try:
    import matplotlib.pyplot as plt
except ImportError:
    print("\nmatplotlib is not installed: plot skipped")
else:
    fig = plt.figure(figsize=(12, 5), layout="constrained")
    ax_loss, ax_surf = fig.subplots(1, 2, width_ratios=[1, 1.25])

    ax_loss.semilogy(np.arange(1, len(losses) + 1), losses)
    ax_loss.set_xlabel("Rprop iteration")
    ax_loss.set_ylabel("MSE on the 20 training sequences")
    ax_loss.set_title("Part 1: Rprop's loss curve")
    ax_loss.grid(True, which="both", alpha=0.3)

    log_surface = np.log10(surface)
    levels = np.arange(
        np.floor(log_surface.min()), np.ceil(log_surface.max()) + 0.25, 0.25
    )
    filled = ax_surf.contourf(
        wx_grid, w_rec_grid, log_surface, levels=levels, cmap="viridis"
    )
    colorbar = fig.colorbar(filled, ax=ax_surf, label="log10 MSE")
    colorbar.set_ticks(np.arange(levels[0], levels[-1] + 1))
    ax_surf.axhline(1.0, color="white", lw=0.8, ls=":")
    ax_surf.plot(
        path[:, 0], path[:, 1], ".-", color="red", lw=1.0, ms=3, label="Rprop path"
    )
    ax_surf.plot(*path[0], "o", color="red", ms=7, label="start (-1.5, 2)")
    ax_surf.plot(
        1.0, 1.0, "*", color="white", mec="black", ms=14, label="solution (1, 1)"
    )
    ax_surf.set_xlim(wx_grid[0], wx_grid[-1])
    ax_surf.set_ylim(w_rec_grid[0], w_rec_grid[-1])
    ax_surf.set_xlabel("wx (input weight)")
    ax_surf.set_ylabel("wRec (recurrent weight)")
    ax_surf.set_title(
        "Loss surface over (wx, wRec)\n"
        "|wRec| > 1: S_T grows like wRec^(T-1), the gradients explode"
    )
    ax_surf.legend(loc="lower left", fontsize=8)

    os.makedirs(OUTPUT, exist_ok=True)
    out = os.path.join(OUTPUT, "binary_sum.png")
    fig.savefig(out, dpi=100)
    print(f"\nfigure saved to {out}")
