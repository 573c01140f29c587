"""Sphinx configuration of skrnn's documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (the ``docs``
extra installs what it needs). The gallery runs every example in full (each
takes under a minute), so the build takes a few minutes; it needs no
network.
"""

import os
from pathlib import Path

import skrnn  # the installed package, whose kernels are built

ROOT = Path(__file__).resolve().parent.parent

# the examples write their PNGs away from the sources (the gallery takes the
# figures from matplotlib itself); they run in their own folder, and print
# the path relative to it, which names no machine
OUTPUT = Path(__file__).resolve().parent / "_build" / "examples_output"
OUTPUT.mkdir(parents=True, exist_ok=True)
os.environ["SKRNN_EXAMPLES_QUICK"] = "0"
os.environ["SKRNN_EXAMPLES_OUTPUT"] = os.path.relpath(OUTPUT, ROOT / "examples")
os.environ["MPLBACKEND"] = "Agg"

project = "skrnn"
author = "the skrnn developers"
copyright = "2026, the skrnn developers"
release = version = skrnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # MathJax's files copied into the site: the equations render offline
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]


def _sklearn_inventory(path):
    """Write an intersphinx inventory of scikit-learn's public classes,
    functions and methods, made from the installed package, so that their
    names link to scikit-learn's site without fetching its inventory (the
    build needs no network). Its pages follow one pattern:
    modules/generated/<full name>.html."""
    import importlib
    import inspect
    import zlib

    import sklearn

    public = [name for name in sklearn.__all__ if not name.startswith("_")]
    modules = [f"sklearn.{name}" for name in public]
    modules += [f"sklearn.utils.{name}" for name in ("estimator_checks", "validation")]
    lines = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a submodule that needs an optional dependency
            continue
        for name in getattr(module, "__all__", []):
            try:
                obj = getattr(module, name)
            except (AttributeError, ImportError):  # experimental, not enabled
                continue
            full = f"{module_name}.{name}"
            page = f"modules/generated/{full}.html#$"
            if inspect.isclass(obj):
                lines.append(f"{full} py:class 1 {page} -")
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and callable(member):
                        lines.append(
                            f"{full}.{attr} py:method 1 "
                            f"modules/generated/{full}.html#{full}.{attr} -"
                        )
            elif callable(obj):
                lines.append(f"{full} py:function 1 {page} -")
    header = (
        "# Sphinx inventory version 2\n# Project: scikit-learn\n"
        f"# Version: {sklearn.__version__}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.write_bytes(header.encode() + zlib.compress("\n".join(lines).encode()))
    return str(path)


intersphinx_mapping = {
    "sklearn": (
        "https://scikit-learn.org/stable/",
        _sklearn_inventory(OUTPUT.parent / "sklearn-objects.inv"),
    )
}

autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# the docstrings name their types in prose ("array-like of shape ..."), which
# numpydoc would otherwise try to turn into cross-references
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # every example runs, the Dask ones on a local cluster
    "filename_pattern": r"\.py$",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}


def _foreign_methods():
    """Per public class, the methods scikit-learn defines and documents with
    references into its own site (set_output, metadata routing): left out
    of the class pages. Its get_params, set_params, fit_transform and
    get_feature_names_out stay."""
    import importlib
    import inspect

    keep = {"get_params", "set_params", "fit_transform", "get_feature_names_out"}
    foreign = {}
    for module in ("skrnn", "skrnn.preprocessing", "skrnn.layers", "skrnn.optim"):
        for name, cls in inspect.getmembers(
            importlib.import_module(module), inspect.isclass
        ):
            fullname = f"{module}.{name}"
            foreign[fullname] = [
                attr
                for attr in dir(cls)
                if not attr.startswith("_")
                and attr not in keep
                and callable(getattr(cls, attr, None))
                and not (
                    getattr(getattr(cls, attr), "__module__", "") or ""
                ).startswith("skrnn")
            ]
    return foreign


autosummary_context = {"foreign_methods": _foreign_methods()}

html_theme = "pydata_sphinx_theme"
html_title = f"skrnn {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "navbar_align": "left",
    "header_links_before_dropdown": 9,
    # one table of contents a page: the page's own, on the right
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
}
# the site's navigation on the left of every page (_templates/site-nav.html)
html_sidebars = {"**": ["site-nav"]}
html_static_path = ["_static"]
html_css_files = ["wide.css"]
templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
