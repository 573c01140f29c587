"""The sanitizer build catches what it is there to catch.

CI runs the kernel tests against a build with AddressSanitizer and
UndefinedBehaviorSanitizer (``SKRNN_SANITIZE_BUILD=1``, see ``.ci/run``);
this test, which runs only there, checks that the build does stop at an
invalid access: a kernel called directly, past the Python checks, with a
state array two rows short of the batch writes past its end, and the
sanitizer ends the process with a report.
"""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("SKRNN_SANITIZE_BUILD", "0") in ("", "0"),
    reason="runs against the sanitizer build only (SKRNN_SANITIZE_BUILD=1)",
)

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
    h=np.zeros((N - 2, H)), out=out, gates=out, h_prev=empty3, hn=empty3,
    work=empty2, packed=np.empty(0, np.float32),
)
print("no report")
"""


def test_an_out_of_bounds_write_is_reported(tmp_path):
    # run elsewhere than the repository, whose source tree would shadow the
    # installed (sanitized) skrnn
    result = subprocess.run(
        [sys.executable, "-c", OUT_OF_BOUNDS],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "no report" not in result.stdout
    assert "AddressSanitizer: heap-buffer-overflow" in result.stderr
