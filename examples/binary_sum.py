"""Count the ones: the linear RNN that learns to add, two ways.

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

Run: ``python examples/binary_sum.py``
"""

import numpy as np

from skrnn import SequenceRegressor
from skrnn.datasets import make_binary_sum
from skrnn.layers import RNN
from skrnn.optim import Rprop

# ---------------------------------------------------------------- part 1
X, y = make_binary_sum(n_samples=20, n_timesteps=10, random_state=0)
X3 = X[:, :, None]  # (samples, steps, 1 feature)

layer = RNN(1, 1, activation="identity", use_bias=False, dtype="float64")
layer.params["weight_ih"][:] = -1.5  # wx, the seed's starting point
layer.params["weight_hh"][:] = 2.0  # wRec
optimizer = Rprop(learning_rate=0.001, etas=(0.5, 1.2))

for iteration in range(500):
    _, state = layer.forward(X3)
    error = state[:, 0] - y
    # mean squared error; its gradient with respect to the final state
    d_state = (2.0 * error / len(y))[:, None]
    layer.backward(np.zeros((len(y), 10, 1)), d_h_last=d_state)
    optimizer.update(layer.params, layer.grads)

wx = layer.params["weight_ih"][0, 0]
w_rec = layer.params["weight_hh"][0, 0]
print("Part 1: one linear unit, trained by Rprop on 20 sequences of 10 bits")
print(f"  wx   = {wx:.4f}   (the write-up: 1.0014)")
print(f"  wRec = {w_rec:.4f}   (the write-up: 0.9997)")
test = np.array([[0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1]], dtype=float)
_, state = layer.forward(test[:, :, None])
print(f"  {test[0].astype(int).tolist()} -> {state[0, 0]:.4f} (target 5)")

# ---------------------------------------------------------------- part 2
X_train, y_train = make_binary_sum(n_samples=200, n_timesteps=10, random_state=0)
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
).fit(X_train, y_train)

print("\nPart 2: SequenceRegressor(cell='rnn', activation='identity', hidden_size=1)")
print(f"  trained {model.n_iter_} epochs, final loss {model.loss_:.2e}")
for n_steps in (10, 50):
    X_test, y_test = make_binary_sum(n_samples=1000, n_timesteps=n_steps, random_state=1)
    # 3-D input (samples, steps, 1 feature): a model fitted on a table of 10
    # columns reads univariate sequences of any length this way
    X_test = X_test[:, :, None]
    exact = np.mean(np.round(model.predict(X_test)) == y_test)
    print(
        f"  fresh sequences of {n_steps} bits: R^2 = {model.score(X_test, y_test):.6f}, "
        f"exact count for {exact:.1%}"
    )
