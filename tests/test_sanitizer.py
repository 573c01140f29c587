"""The sanitizer build catches what it is there to catch.

CI runs the kernel tests against a build with AddressSanitizer and
UndefinedBehaviorSanitizer (``SKRNN_SANITIZE_BUILD=1``, see ``.ci/run``);
this test, which runs only there, checks that the build does stop at an
invalid access: a kernel called directly, past the Python checks, with a
state array two rows short of the batch writes past its end, and the
sanitizer ends the process with a report. In every build, the same call
with a state of the right size runs: the script stays valid as the kernels'
signatures change.
"""

import os
import subprocess
import sys

import pytest

SANITIZED = os.environ.get("SKRNN_SANITIZE_BUILD", "0") not in ("", "0")

OUT_OF_BOUNDS = """
import numpy as np
from skrnn._engine import _recurrent

T, N, D, H = 3, 4, 2, 5
empty3, empty2 = np.empty((0, 0, 0)), np.empty((0, 0))
out = np.zeros((T, N, H))
_recurrent.forward.__signatures__["double"](
    cell=0, act=0, reverse=False, x=np.ones((T, N, D)),
    n_live=np.full(T, N, dtype=np.intp), w_ih=np.ones((H, D)),
    w_hh=np.ones((H, H)), b_ih=np.zeros(H), b_hh=np.zeros(H),
    h=np.zeros((N - SHORT, H)), c=empty2, out=out, gates=out, h_prev=empty3,
    hn=empty3, c_new=empty3, work=empty2, packed=np.empty(0, np.float32),
)
print("no report")
"""


def _run(short, cwd):
    # run elsewhere than the repository, whose source tree would shadow the
    # installed (sanitized) skrnn
    return subprocess.run(
        [sys.executable, "-c", f"SHORT = {short}\n" + OUT_OF_BOUNDS],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_the_call_is_valid_but_for_the_short_state(tmp_path):
    result = _run(0, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no report" in result.stdout


@pytest.mark.skipif(
    not SANITIZED,
    reason="runs against the sanitizer build only (SKRNN_SANITIZE_BUILD=1)",
)
def test_an_out_of_bounds_write_is_reported(tmp_path):
    result = _run(2, tmp_path)
    assert result.returncode != 0
    assert "no report" not in result.stdout
    assert "AddressSanitizer: heap-buffer-overflow" in result.stderr
