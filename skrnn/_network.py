"""The network: stacked recurrent layers, both directions, and the output head.

All parameters live in one flat vector; ``coefs`` (the estimators'
``coefs_``) maps PyTorch's state-dict names to views into it. The
optimisers, gradient clipping, the L2 penalty and the divergence check
then each work on one array, whatever the number of layers.
"""

import numpy as np
from sklearn.utils import check_random_state

from .layers import init_params, param_names

# Inference runs over windows of this many steps, carrying the state, so
# that its memory grows with N * H rather than N * T * H.
INFERENCE_WINDOW = 128


class Network:
    """Recurrent layers x directions + a linear head, in PyTorch's layout.

    Parameters
    ----------
    spec : CellSpec
        The recurrent cell of every layer.
    input_size : int
        Features per step.
    hidden_size : int
        Units per layer and direction.
    num_layers : int
        Stacked layers.
    bidirectional : bool
        Whether each layer has a time-reversed direction too.
    output : {"last", "sequence"}
        Where the head reads the top layer: at each sequence's last step or
        at every step.
    n_outputs : int
        Outputs of the head.
    dtype : str or numpy dtype
        Precision of the parameters and of the computation.
    random_state : int, RandomState instance or None
        Seeds the initial weights.
    """

    def __init__(
        self,
        spec,
        *,
        input_size,
        hidden_size,
        num_layers,
        bidirectional,
        output,
        n_outputs,
        dtype,
        random_state,
    ):
        self.spec = spec
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.n_dirs = 2 if bidirectional else 1
        self.output = output
        # the name, not a numpy.dtype object: skops trusts plain strings
        self.dtype = np.dtype(dtype).name
        rng = check_random_state(random_state)
        initial = {}
        for k in range(num_layers):
            layer_input = input_size if k == 0 else hidden_size * self.n_dirs
            for d in range(self.n_dirs):
                params = init_params(spec, layer_input, hidden_size, self.dtype, rng)
                for name, value in params.items():
                    initial[name + self._suffix(k, d)] = value
        fan_in = hidden_size * self.n_dirs
        bound = 1.0 / np.sqrt(fan_in)
        for name, shape in (("head.weight", (n_outputs, fan_in)), ("head.bias", (n_outputs,))):
            initial[name] = rng.uniform(-bound, bound, size=shape).astype(self.dtype)
        self.coefs = initial
        self._build_flat()

    @staticmethod
    def _suffix(k, d):
        return f"_l{k}" + ("_reverse" if d else "")

    def _build_flat(self):
        """Move the values of ``coefs`` into one vector and make them views of it."""
        sizes = [v.size for v in self.coefs.values()]
        self.flat = np.empty(sum(sizes), dtype=self.dtype)
        self.grad = np.zeros_like(self.flat)
        self._views, self._grad_views = {}, {}
        # 1 for weights, 0 for biases: the L2 penalty applies to weights only
        self.weight_mask = np.zeros_like(self.flat)
        offset = 0
        for (name, value), size in zip(list(self.coefs.items()), sizes):
            view = self.flat[offset : offset + size].reshape(value.shape)
            view[...] = value
            self._views[name] = view
            self._grad_views[name] = self.grad[offset : offset + size].reshape(value.shape)
            if "weight" in name:
                self.weight_mask[offset : offset + size] = 1
            self.coefs[name] = view
            offset += size

    def sync(self):
        """Take in arrays a user assigned into ``coefs`` (SPEC: writes are live)."""
        for name, view in self._views.items():
            value = self.coefs[name]
            if value is not view:
                value = np.asarray(value)
                if value.shape != view.shape:
                    raise ValueError(
                        f"coefs_[{name!r}] has shape {value.shape}, expected "
                        f"{view.shape}."
                    )
                view[...] = value
                self.coefs[name] = view

    def __getstate__(self):
        self.sync()
        state = self.__dict__.copy()
        for name in ("flat", "grad", "weight_mask", "_views", "_grad_views"):
            del state[name]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build_flat()

    def _params(self, k, d):
        suffix = self._suffix(k, d)
        return {n: self.coefs[n + suffix] for n in param_names(self.spec)}

    def _windows(self, T, size):
        if not size or self.n_dirs == 2:
            return [(0, T)]
        return [(t0, min(t0 + size, T)) for t0 in range(0, T, size)]

    def _run_layers(self, engine, x, lengths, states, keep_cache):
        """Forward through every layer over one window (time-major)."""
        caches = []
        for k in range(self.num_layers):
            outs = []
            for d in range(self.n_dirs):
                out, states[k][d], cache = engine.forward(
                    self.spec, self._params(k, d), x, lengths, states[k][d],
                    reverse=bool(d), keep_cache=keep_cache,
                )
                outs.append(out)
                caches.append(cache)
            x = outs[0] if self.n_dirs == 1 else np.concatenate(outs, axis=2)
        return x, caches

    def _backward_layers(self, engine, d_top, caches):
        """Backpropagate a window's gradient into ``self.grad``."""
        H = self.hidden_size
        for k in reversed(range(self.num_layers)):
            d_below = None
            for d in range(self.n_dirs):
                d_out = d_top if self.n_dirs == 1 else d_top[:, :, d * H : (d + 1) * H]
                dx, _, grads = engine.backward(
                    self.spec, self._params(k, d), caches[k * self.n_dirs + d],
                    np.ascontiguousarray(d_out),
                )
                for name, g in grads.items():
                    self._grad_views[name + self._suffix(k, d)] += g
                d_below = dx if d_below is None else d_below + dx
            d_top = d_below

    def _head_rows(self, top, lengths, t0, t1):
        """Where the head reads the top layer within a window.

        Returns ``(features (R, H*dirs), where)``: ``where`` indexes the rows'
        positions in ``top`` (and, for ``output="last"``, the samples).
        """
        if self.output == "sequence":
            valid = np.arange(t1 - t0)[:, None] < (lengths - t0)[None, :]
            return top[valid], valid
        last = lengths - 1
        samples = np.nonzero((last >= t0) & (last < t1))[0]
        steps = last[samples] - t0
        if self.n_dirs == 1:
            return top[steps, samples], (steps, samples)
        H = self.hidden_size
        feats = np.concatenate([top[steps, samples, :H], top[0, samples, H:]], axis=1)
        return feats, (steps, samples)

    def _scatter_head_grad(self, d_feats, where, shape):
        d_top = np.zeros(shape, dtype=self.dtype)
        if self.output == "sequence":
            d_top[where] = d_feats
        elif self.n_dirs == 1:
            d_top[where] = d_feats
        else:
            H = self.hidden_size
            steps, samples = where
            d_top[steps, samples, :H] = d_feats[:, :H]
            d_top[0, samples, H:] += d_feats[:, H:]
        return d_top

    def _prepare(self, values, lengths):
        """Sort by length (longest first) and go time-major, as engines want."""
        order = np.argsort(-lengths, kind="stable")
        lengths = lengths[order]
        x = np.ascontiguousarray(
            values[order, : lengths[0]].transpose(1, 0, 2), dtype=self.dtype
        )
        states = [
            [np.zeros((len(order), self.hidden_size), dtype=self.dtype)] * self.n_dirs
            for _ in range(self.num_layers)
        ]
        return order, lengths, x, states

    def forward(self, engine, values, lengths):
        """Raw head outputs for a batch.

        Parameters
        ----------
        engine : Engine
            The engine that runs the layers.
        values : ndarray of shape (N, T, D)
            Batch-major inputs.
        lengths : ndarray of shape (N,)
            Valid steps per sequence.

        Returns
        -------
        ndarray of shape (N, O) for ``output="last"``, else (N, T, O) with
        zeros at padded steps.
        """
        self.sync()
        order, lengths, x, states = self._prepare(values, lengths)
        W, b = self.coefs["head.weight"], self.coefs["head.bias"]
        N, T = x.shape[1], values.shape[1]
        if self.output == "last":
            raw = np.zeros((N, W.shape[0]), dtype=self.dtype)
        else:
            raw = np.zeros((T, N, W.shape[0]), dtype=self.dtype)
        for t0, t1 in self._windows(x.shape[0], INFERENCE_WINDOW):
            lens = np.clip(lengths - t0, 0, t1 - t0)
            top, _ = self._run_layers(engine, x[t0:t1], lens, states, False)
            feats, where = self._head_rows(top, lengths, t0, t1)
            z = feats @ W.T + b
            if self.output == "last":
                raw[where[1]] = z
            else:
                raw[t0:t1][where] = z
        inverse = np.argsort(order)
        return raw[inverse] if self.output == "last" else raw.transpose(1, 0, 2)[inverse]

    def loss_grad(self, engine, values, lengths, targets, weights, loss, bptt_steps):
        """Loss and its gradient (into ``self.grad``) over a batch.

        Parameters
        ----------
        engine : Engine
            The engine that runs the layers.
        values : ndarray of shape (N, T, D)
            Batch-major inputs.
        lengths : ndarray of shape (N,)
            Valid steps per sequence.
        targets : ndarray of shape (N, ...) or (N, T, ...)
            Per-sample or per-step targets, as ``loss`` reads them.
        weights : ndarray of shape (N,)
            Sample weights divided by the batch's total weight, so that the
            loss is a weighted mean.
        loss : callable
            ``loss(z, y, w) -> (weighted loss sum, dz)``.
        bptt_steps : int or None
            Truncated BPTT window: state carried across windows, gradients
            cut at their start.

        Returns
        -------
        float
            The data loss (no penalty).
        """
        self.sync()
        order, lengths, x, states = self._prepare(values, lengths)
        targets, weights = targets[order], weights[order]
        if self.output == "sequence":
            targets = targets.swapaxes(0, 1)
        W, b = self.coefs["head.weight"], self.coefs["head.bias"]
        gW, gb = self._grad_views["head.weight"], self._grad_views["head.bias"]
        self.grad[:] = 0
        total = 0.0
        for t0, t1 in self._windows(x.shape[0], bptt_steps):
            lens = np.clip(lengths - t0, 0, t1 - t0)
            top, caches = self._run_layers(engine, x[t0:t1], lens, states, True)
            feats, where = self._head_rows(top, lengths, t0, t1)
            if self.output == "sequence":
                y = targets[t0:t1][where]
                w = np.broadcast_to(weights, where.shape)[where]
            else:
                y, w = targets[where[1]], weights[where[1]]
            value, dz = loss(feats @ W.T + b, y, w)
            total += value
            gW += dz.T @ feats
            gb += dz.sum(axis=0)
            d_top = self._scatter_head_grad(dz @ W, where, top.shape)
            self._backward_layers(engine, d_top, caches)
        return total
