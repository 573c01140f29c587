"""The CUDA engine's time loops captured into "graphs" and replayed, on the
CPU: :class:`~skrnn._engine.cuda.StepGraphs` with a capture that records the
step kernels' calls on a tape, against the reference engine's passes."""

import threading

import numpy as np
import pytest
from _device_helpers import (
    CELLS,
    REFERENCE,
    TapeCapture,
    _graphed_passes,
    _layer,
    _passes,
)

from skrnn._engine import reference


def _assert_same(actual, expected):
    for a, e in zip(actual, expected):
        if isinstance(e, dict):
            assert set(a) == set(e)
            for name in e:
                np.testing.assert_array_equal(a[name], e[name], err_msg=name)
        else:
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("keep_cache", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell, act, reset_after", CELLS, ids=lambda v: str(v))
def test_replayed_time_loops_equal_the_reference(
    cell, act, reset_after, use_bias, reverse, keep_cache
):
    spec, params, draw = _layer(cell, act, reset_after, use_bias)
    capture = TapeCapture()
    forward, backward = _graphed_passes(capture=capture)
    passes = 1 if not keep_cache else 2
    results = []
    for call in range(4):
        inputs = draw(call)
        expected = _passes(*REFERENCE, spec, params, inputs, keep_cache, reverse)
        results.append(
            (
                _passes(forward, backward, spec, params, inputs, keep_cache, reverse),
                expected,
            )
        )
        # seen once: eager; twice: captured, then replayed every time
        assert capture.captures == (0 if call == 0 else passes)
        assert capture.launches == passes * max(0, call)
    # each call's results are its own: later replays did not overwrite them
    for actual, expected in results:
        _assert_same(actual, expected)


def test_graphs_stay_within_their_budget():
    spec, params, draw = _layer("gru", "tanh", True, True, T=4, N=3, H=5)

    def check(forward, calls):
        for call in range(calls):
            reverse = bool(call % 2)  # alternating directions: two keys
            x, lengths, h0, _, _ = draw(call)
            _assert_same(
                forward(spec, params, x, lengths, h0, reverse=reverse)[:2],
                reference.forward(spec, params, x, lengths, h0, reverse=reverse)[:2],
            )
        return forward.keywords["loops"]

    ample = check(_graphed_passes()[0], 4)
    assert ample.capture.captures == 2 and len(ample._graphs) == 2
    one = ample._bytes // 2  # the two directions' buffers are the same size
    # no room: never captured, always right
    none = check(_graphed_passes(budget=0)[0], 6)
    assert none.capture.captures == 0 and none._bytes == 0
    # room for one: the directions evict each other, and stay right
    single = check(_graphed_passes(budget=one)[0], 8)
    assert single.capture.captures == 6 and single._bytes == one
    assert len([e for e in single._graphs.values() if e]) == 1


def test_a_failed_capture_warns_once_then_runs_eagerly():
    spec, params, draw = _layer("rnn", "tanh", True, True)

    class Failing(TapeCapture):
        def __call__(self, fn):
            raise RuntimeError("operation not permitted when stream is capturing")

    forward, backward = _graphed_passes(capture=Failing())
    for call in range(4):
        inputs = draw(call)
        expected = _passes(*REFERENCE, spec, params, inputs)
        if call == 1:
            with pytest.warns(RuntimeWarning, match="could not capture a CUDA graph"):
                actual = _passes(forward, backward, spec, params, inputs)
        else:
            actual = _passes(forward, backward, spec, params, inputs)
        _assert_same(actual, expected)
    assert not forward.keywords["loops"].enabled


def test_threads_do_not_share_graphs():
    spec, params, draw = _layer("gru", "tanh", False, True)
    forward, backward = _graphed_passes()
    together = threading.Barrier(2)  # both alive at once: two thread ids
    errors = []

    def run(seed, wait=True):
        try:
            if wait:
                together.wait(timeout=30)
            inputs = draw(seed)
            for _ in range(3):
                _assert_same(
                    _passes(forward, backward, spec, params, inputs),
                    _passes(*REFERENCE, spec, params, inputs),
                )
        except Exception as exc:  # reported below, from the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run(3, wait=False)
    assert not errors, errors
    # forward and backward for each of the three threads
    assert len(forward.keywords["loops"]._graphs) == 2 * 3
