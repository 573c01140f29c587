"""The public docstrings follow numpydoc, as scikit-learn's own are checked
(``sklearn/tests/test_docstrings.py``), and the two estimators describe
what they share in the same words."""

import importlib
import inspect

import pytest

numpydoc_validation = pytest.importorskip("numpydoc.validate")

PUBLIC = {
    "skrnn": [
        "SequenceRegressor",
        "SequenceClassifier",
        "Stream",
        "CudaUnavailableError",
    ],
    "skrnn.preprocessing": [
        "SequenceScaler",
        "CharacterEncoder",
        "TableToSequences",
        "sliding_windows",
    ],
    "skrnn.inspection": ["permutation_importance", "step_attributions"],
    "skrnn.datasets": ["make_binary_sum", "make_char_sequences"],
    "skrnn.layers": ["RNN", "GRU", "LSTM"],
    "skrnn.optim": ["SGD", "Adam", "Rprop", "clip_grad_norm"],
    "skrnn.onnx": ["to_onnx"],  # with the onnx extra only
}


def _objects():
    """(dotted name, method name or None) of every public object and of
    each public method that skrnn defines."""
    for module_name, names in PUBLIC.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an optional module without its extra
            continue
        for name in names:
            obj = getattr(module, name)
            yield f"{module_name}.{name}", None
            if not inspect.isclass(obj):
                continue
            for attr, value in inspect.getmembers(obj, callable):
                defined_here = (getattr(value, "__module__", None) or "").startswith(
                    "skrnn"
                )
                if not attr.startswith("_") and defined_here:
                    yield f"{module_name}.{name}.{attr}", attr


def _errors(name, method):
    """numpydoc's findings, less those scikit-learn's test ignores too."""
    for code, message in numpydoc_validation.validate(name)["errors"]:
        # the Returns section may name what it returns; where the summary
        # starts relative to the quotes is a matter of style
        if code in ("RT02", "GL01", "GL02"):
            continue
        # an extended summary, See Also and Examples: for the objects
        # themselves, not for each method
        if method is not None and code in ("ES01", "SA01", "EX01"):
            continue
        yield f"{code}: {message}"


@pytest.mark.parametrize("name, method", list(_objects()), ids=lambda v: v or "")
def test_docstring_follows_numpydoc(name, method):
    errors = list(_errors(name, method))
    assert not errors, f"{name}:\n" + "\n".join(errors)


def test_the_estimators_describe_what_they_share_alike():
    from sklearn.utils._testing import assert_docstring_consistency

    from skrnn import SequenceClassifier, SequenceRegressor

    assert_docstring_consistency(
        [SequenceRegressor, SequenceClassifier],
        include_params=True,
        # each one's own
        exclude_params=["class_weight", "loss", "quantile", "normalize_y"],
        include_attrs=True,
        # what the loss, the head and the validation score are differs;
        # only the classifier has classes
        exclude_attrs=["loss_", "n_outputs_", "validation_scores_", "classes_"],
    )
    # each describes every parameter itself
    from numpydoc.docscrape import NumpyDocString

    for cls in (SequenceRegressor, SequenceClassifier):
        sections = NumpyDocString(inspect.getdoc(cls))["Parameters"]
        described = {name for p in sections for name in p.name.split(", ")}
        assert described == set(cls().get_params())
