"""The Examples sections of the public docstrings run as doctests, and the
Python code blocks of the README and the user documentation run in order."""

import doctest
import importlib
import re
import textwrap
from pathlib import Path

import pytest

MODULES = [
    "skrnn._regressor",
    "skrnn._classifier",
    "skrnn.layers",
    "skrnn.optim",
    "skrnn.datasets",
    "skrnn.preprocessing",
    "skrnn.inspection",
    "skrnn._stream",
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


# ------------------------------------------ the code blocks of the docs
ROOT = Path(__file__).parents[1]
DOCUMENTS = [
    "README.md",
    "docs/index.rst",
    "docs/getting_started.rst",
    "docs/user_guide.rst",
]


def _blocks(document):
    """The Python code blocks of a README (fenced) or reST document
    (``.. code-block:: python``), dedented, with their line numbers."""
    text = (ROOT / document).read_text()
    if document.endswith(".md"):
        return [
            (text[: m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(r"```python\n(.*?)```", text, re.S)
        ]
    lines, blocks = text.splitlines(), []
    for i, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        body = []
        for follow in lines[i + 1 :]:
            if follow.strip() and not follow.startswith(" "):
                break
            body.append(follow)
        blocks.append((i + 3, textwrap.dedent("\n".join(body)).strip() + "\n"))
    return blocks


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_code_blocks_of_the_docs_run(document, tmp_path, monkeypatch):
    """Each document's blocks run as written, in order, in one namespace, as
    a reader runs them top to bottom; a block whose optional library is
    missing is skipped."""
    monkeypatch.chdir(tmp_path)  # where a block saves its files
    blocks = _blocks(document)
    assert blocks, f"{document} has no Python code blocks"
    namespace = {}
    skipped = []
    for line, code in blocks:
        try:
            exec(compile(code, f"{document}:{line}", "exec"), namespace)
        except ModuleNotFoundError as exc:
            if exc.name.split(".")[0] not in OPTIONAL_MODULES:
                raise
            skipped.append((line, exc.name))
    assert len(skipped) < len(blocks), skipped


# the extras' libraries a documented block may import
OPTIONAL_MODULES = {"onnx", "onnxruntime", "skl2onnx", "skops", "cupy"}
