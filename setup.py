"""Build the Cython kernels.

``SKRNN_DEBUG_BUILD=1`` compiles them with bounds and wrap-around checks on,
so that an out-of-bounds access raises IndexError instead of corrupting
memory (used by one CI step).
"""

import glob
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("SKRNN_DEBUG_BUILD", "0") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}

# Each build kind keeps its generated C and objects apart, so that switching
# SKRNN_DEBUG_BUILD on or off never reuses the other kind's output.
BUILD_DIR = os.path.join("build", "debug" if DEBUG else "release")

extensions = [
    Extension(
        path[:-4].replace(os.sep, "."),
        [path],
        depends=sorted(glob.glob(os.path.join("skrnn", "_engine", "*.h"))),
        include_dirs=[np.get_include(), os.path.join("skrnn", "_engine")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        # -fno-trapping-math lets the gate loops' clamps vectorise; nothing
        # here reads floating-point exception flags.
        extra_compile_args=(["-O0", "-g"] if DEBUG else ["-O3"])
        + ["-fno-trapping-math"],
    )
    for path in sorted(glob.glob(os.path.join("skrnn", "_engine", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions, compiler_directives=directives, build_dir=BUILD_DIR
    ),
    options={"build": {"build_base": BUILD_DIR}},
)
