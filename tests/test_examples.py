"""The scripts in examples/ run, print what they promise and save valid PNGs.

Each script runs as a subprocess in quick mode (``SKRNN_EXAMPLES_QUICK=1``:
the same code with fewer epochs and less data), with its figures written to
a temporary folder (``SKRNN_EXAMPLES_OUTPUT``) that is also its working
directory. The child gets a copy of this process's environment, with the
entries of ``PYTHONPATH`` made absolute (a relative one, such as ``.``,
would point elsewhere from the temporary folder) and the folder holding the
skrnn these tests imported put first, so that it imports the same skrnn.

``distributed_grid_search.py`` and ``out_of_core_dask.py`` are run by
``test_distributed.py`` (they need a Dask cluster).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import skrnn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SKRNN_ROOT = Path(skrnn.__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# script -> the PNGs it saves (an empty tuple: it saves none)
SCRIPTS = {
    "plot_binary_sum.py": ("binary_sum.png",),
    "plot_char_rnn_hello.py": ("char_rnn_hello.png",),
    "plot_digits_as_sequences.py": ("digits_as_sequences.png",),
    "plot_forecasting_intervals.py": ("forecasting_intervals.png",),
    "plot_forecasting_pendulum.py": ("forecasting_pendulum.png",),
    "plot_long_memory_adding.py": ("long_memory_adding.png",),
    "plot_step_attributions.py": ("step_attributions.png",),
    "plot_streaming_anomalies.py": ("streaming_anomalies.png",),
    "pipeline_grid_search.py": ("pipeline_grid_search.png",),
    "text_brackets.py": ("text_brackets.png",),
}
SKIPPED = {"distributed_grid_search.py", "out_of_core_dask.py"}

# runs `path` as __main__ with every import of matplotlib failing
NO_MATPLOTLIB = """
import runpy, sys

class BlockMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, BlockMatplotlib())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def run_example(args, tmp_path, timeout=60):
    env = os.environ.copy()
    entries = [
        os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    env["PYTHONPATH"] = os.pathsep.join([str(SKRNN_ROOT), *entries])
    env["SKRNN_EXAMPLES_QUICK"] = "1"
    env["SKRNN_EXAMPLES_OUTPUT"] = str(tmp_path)
    env["MPLBACKEND"] = "Agg"
    result = subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{args[-1]} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


def number_after(label, text):
    """The first number after ``label`` in ``text``."""
    match = re.search(re.escape(label) + r"\s*(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)", text)
    assert match, f"no number after {label!r} in:\n{text}"
    return float(match.group(1))


def check_output(script, stdout):
    if script == "plot_binary_sum.py":
        assert abs(number_after("wx   =", stdout) - 1.0) <= 0.01
        assert abs(number_after("wRec =", stdout) - 1.0) <= 0.01
        assert abs(number_after("1, 1] ->", stdout) - 5.0) <= 0.05
        assert "Part 2: SequenceRegressor" in stdout
        for n_bits in (10, 50):
            assert f"fresh sequences of {n_bits} bits: R^2 =" in stdout
    elif script == "plot_char_rnn_hello.py":
        assert "'hell' -> 'ello'" in stdout
        lines = re.findall(r"T=(\d\.\d+): '(.*)'", stdout)
        assert len(lines) == 3
        for _, line in lines:
            assert len(line) > 20
    elif script == "plot_digits_as_sequences.py":
        accuracy = number_after("held-out accuracy:", stdout)
        assert 0.3 < accuracy <= 1.0  # quick mode: a few epochs only (chance: 0.1)
    elif script == "plot_forecasting_pendulum.py":
        # quick mode: 15 epochs; the forecast already beats the last value
        assert number_after("best validation R^2 =", stdout) > 0.9
        assert number_after("GRU error / naive error:", stdout) < 0.8
    elif script == "plot_forecasting_intervals.py":
        # the 90 % interval covers about 90 % of the test targets, and the
        # quantile GRU's pinball loss beats both baselines'
        assert abs(number_after("quantile'       coverage", stdout) - 0.9) < 0.05
        assert number_after("GRU pinball / best baseline:", stdout) < 1.0
        if "MAPIE is not installed" not in stdout:
            assert abs(number_after("conformal      coverage", stdout) - 0.9) < 0.05
    elif script == "plot_long_memory_adding.py":
        # the LSTM and the GRU keep the first value; the Elman RNN does not
        assert number_after("lstm  held-out R^2 =", stdout) > 0.95
        assert number_after("gru   held-out R^2 =", stdout) > 0.95
        assert number_after("rnn   held-out R^2 =", stdout) < 0.5
    elif script == "plot_step_attributions.py":
        # the attributions point at the two marked steps and add up; the CO2
        # forecast reads the same season a year before the forecast month
        assert number_after("held-out R^2 =", stdout) > 0.95
        assert number_after("are the marked steps:", stdout) >= 0.95
        assert number_after("change of prediction|:", stdout) < 0.01
        assert 10 <= number_after("before the forecast month:", stdout) <= 13
    elif script == "plot_streaming_anomalies.py":
        # quick mode: most glitches caught, few normal readings flagged
        assert number_after("glitches flagged:", stdout) >= 0.8
        assert number_after("normal readings flagged:", stdout) < 50  # of 980
        assert number_after("median time of a step:", stdout) > 0
    elif script == "text_brackets.py":
        # the order of the characters decides: a bag of them is near chance
        bag = number_after("bag of characters, held-out accuracy:", stdout)
        gru = number_after("GRU on characters, held-out accuracy:", stdout)
        assert bag < 0.6 and gru > bag + 0.1
    elif script == "pipeline_grid_search.py":
        assert "mean_test_score +/- std" in stdout and "rank" in stdout
        rows = re.findall(
            r"^(rnn|gru)\s+(\d+)\s+(\d\.\d+) \+/- (\d\.\d+)\s+(\d+)$", stdout, re.M
        )
        assert sorted((cell, int(h)) for cell, h, *_ in rows) == [
            ("gru", 4),
            ("gru", 16),
            ("rnn", 4),
            ("rnn", 16),
        ]
        ranks = [int(rank) for *_, rank in rows]
        assert ranks == sorted(ranks) and ranks[0] == 1
        for *_, mean, std, _ in rows:
            assert 0.0 <= float(mean) <= 1.0 and 0.0 <= float(std) <= 1.0
        assert "held-out accuracy of the refitted best pipeline:" in stdout


def check_png(path):
    assert path.is_file(), f"{path.name} was not saved"
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, f"{path.name} is not a PNG"
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4), image.shape
    assert image.shape[0] > 100 and image.shape[1] > 100, image.shape


def test_every_example_is_covered():
    on_disk = {path.name for path in EXAMPLES.glob("*.py")}
    assert on_disk - SKIPPED == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs(script, tmp_path):
    result = run_example([str(EXAMPLES / script)], tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    check_output(script, result.stdout)
    pytest.importorskip("matplotlib")
    for png in SCRIPTS[script]:
        check_png(tmp_path / png)
    saved = {path.name for path in tmp_path.glob("*.png")}
    assert saved == set(SCRIPTS[script])


def test_binary_sum_without_matplotlib(tmp_path):
    result = run_example(
        ["-c", NO_MATPLOTLIB, str(EXAMPLES / "plot_binary_sum.py")], tmp_path
    )
    assert "matplotlib is not installed: plot skipped" in result.stdout
    check_output("plot_binary_sum.py", result.stdout)
    assert not list(tmp_path.glob("*.png"))
