"""The Examples sections of the public docstrings run as doctests."""

import doctest
import importlib

import pytest

MODULES = [
    "skrnn._regressor",
    "skrnn._classifier",
    "skrnn.layers",
    "skrnn.optim",
    "skrnn.datasets",
    "skrnn.preprocessing",
    "skrnn.onnx",
]
# modules that need an extra: skipped without it
OPTIONAL = {"skrnn.onnx": ["onnx", "skl2onnx", "onnxruntime"]}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    for requirement in OPTIONAL.get(name, []):
        pytest.importorskip(requirement)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no doctest examples"
    assert result.failed == 0
