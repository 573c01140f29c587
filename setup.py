"""Build the Cython kernels.

Two builds for CI's checks besides the release build:

- ``SKRNN_DEBUG_BUILD=1`` compiles them with Cython's bounds and wrap-around
  checks on, so that an out-of-bounds access through a memoryview raises
  IndexError instead of corrupting memory;
- ``SKRNN_SANITIZE_BUILD=1`` compiles them, the C gate loops and packed
  GEMMs included, with AddressSanitizer and UndefinedBehaviorSanitizer,
  which stop the process at the first invalid access or undefined
  operation. Python must then run with the sanitizers' runtimes preloaded
  (``LD_PRELOAD``; see ``.ci/run``).
"""

import glob
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("SKRNN_DEBUG_BUILD", "0") not in ("", "0")
SANITIZE = os.environ.get("SKRNN_SANITIZE_BUILD", "0") not in ("", "0")
SANITIZERS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",  # the first report stops the process
    "-fno-omit-frame-pointer",
]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}

# Each build kind keeps its generated C and objects apart, so that switching
# between them never reuses another kind's output.
KIND = "debug" if DEBUG else "sanitize" if SANITIZE else "release"
BUILD_DIR = os.path.join("build", KIND)
OPTIMIZE = {"debug": ["-O0", "-g"], "sanitize": ["-O2", "-g"], "release": ["-O3"]}

extensions = [
    Extension(
        path[:-4].replace(os.sep, "."),
        [path],
        depends=sorted(glob.glob(os.path.join("skrnn", "_engine", "*.h"))),
        include_dirs=[np.get_include(), os.path.join("skrnn", "_engine")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        # -fno-trapping-math lets the gate loops' clamps vectorise; nothing
        # here reads floating-point exception flags.
        extra_compile_args=OPTIMIZE[KIND]
        + ["-fno-trapping-math"]
        + (SANITIZERS if SANITIZE else []),
        extra_link_args=SANITIZERS if SANITIZE else [],
    )
    for path in sorted(glob.glob(os.path.join("skrnn", "_engine", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions, compiler_directives=directives, build_dir=BUILD_DIR
    ),
    options={"build": {"build_base": BUILD_DIR}},
)
