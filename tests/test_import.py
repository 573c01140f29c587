"""Importing skrnn where its compiled kernels are missing says why and what to do."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import skrnn


def _import_error(folder):
    """The last line of what ``import skrnn`` in ``folder`` writes to stderr
    (the folder shadows any installed skrnn)."""
    result = subprocess.run(
        [sys.executable, "-c", "import skrnn"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def _copy_without_kernels(dest):
    source = Path(skrnn.__file__).parent
    shutil.copytree(
        source,
        dest / "skrnn",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
    )


@pytest.mark.parametrize("source_tree", [True, False])
def test_missing_kernels_are_explained(tmp_path, source_tree):
    _copy_without_kernels(tmp_path)
    if source_tree:
        (tmp_path / "setup.py").write_text("")
    message = _import_error(tmp_path)
    assert message.startswith("ImportError: ")
    assert "circular import" not in message
    if source_tree:
        assert f"imported from its source folder {tmp_path / 'skrnn'}" in message
        assert "Run Python from another folder" in message
        assert "pip install -e ." in message
    else:
        assert "compiled kernels could not be loaded" in message
        assert "pip install --force-reinstall skrnn" in message
