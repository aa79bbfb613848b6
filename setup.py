"""Build the Cython kernels.

OpenMP is probed for, not assumed (as scikit-learn does): where the compiler
cannot build an OpenMP program the kernels are built serially, with a warning.
No -march=native: the extension must run on any x86-64; SIMD variants are
chosen at run time inside the kernels.

FASTCONV_DEBUG=1 turns Cython's bounds and initialisation checks back on.
FASTCONV_SANITIZE=1 does too, and builds with AddressSanitizer and
UndefinedBehaviorSanitizer (GCC or Clang); tools/sanitize.sh runs the tests
on such a build. Both write their generated C under build/checked, so they
never leave checked C files where a release build would pick them up.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTCONV_DEBUG", "0") not in ("", "0")
SANITIZE = os.environ.get("FASTCONV_SANITIZE", "0") not in ("", "0")
CHECKED = DEBUG or SANITIZE
# -fno-sanitize-recover: undefined behaviour is an error, not a warning
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer"]
# CPython's own flags (sysconfig CFLAGS) hold -fwrapv, under which a signed
# overflow wraps, so UBSan has nothing to report: the checked build turns it
# off to catch offset arithmetic that overflows Py_ssize_t
SANITIZE_COMPILE_FLAGS = ["-fno-wrapv"]
MODULES = ["_conv", "_pool", "_openmp", "_direct"]

OPENMP_TEST = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n == omp_get_max_threads() ? 0 : 1;
}
"""


#: GCC's: the kernels' row copies and zeroings stay the inline vector loops
#: they are written as, not calls to memmove/memset (a library call per
#: 56-float row was 6-8% of a depthwise layer); added where the compiler takes it
LOOP_FLAG = "-fno-tree-loop-distribute-patterns"


def accepts(compiler, flag):
    """Whether the compiler builds a trivial file with ``flag`` (clang refuses
    GCC's optimisation flags it does not know)."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "flag_test.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        compiler.compile([src], output_dir=tmp, extra_postargs=[flag])
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def openmp_flags(compiler):
    """Return (compile, link) flags for OpenMP, or None when it does not work."""
    if sys.platform == "win32":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                exe = os.path.join(tmp, "omp_test")
                compiler.link_executable(objs, exe, extra_postargs=lflags)
                subprocess.run([exe], check=True, capture_output=True)
                return cflags, lflags
            except Exception:
                continue
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # the modules compile independently
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        if flags is None:
            warnings.warn(
                "fastconv: the C compiler cannot build OpenMP code; "
                "the kernels are built single-threaded."
            )
            cflags, lflags = [], []
        else:
            cflags, lflags = flags
        if sys.platform != "win32" and accepts(self.compiler, LOOP_FLAG):
            cflags = cflags + [LOOP_FLAG]
        for ext in self.extensions:
            ext.extra_compile_args += cflags
            ext.extra_link_args += lflags
        super().build_extensions()


def extension(name):
    compile_args = link_args = []
    if sys.platform != "win32":
        # -fno-math-errno lets sqrt/fmax inline; NaN/inf semantics stay IEEE
        # (no -ffast-math: max pooling must see NaNs).
        compile_args = ["-O3", "-fno-math-errno", "-Wno-unused-function"]
        if DEBUG:
            compile_args = ["-O0", "-g"]
        if SANITIZE:
            # -O1: the usual speed/stack-trace balance for sanitizers; -g1 (line
            # tables) names the source line and compiles in half the time of -g
            compile_args = (["-O1", "-g1", "-Wno-unused-function"] + SANITIZE_FLAGS
                            + SANITIZE_COMPILE_FLAGS)
            link_args = SANITIZE_FLAGS
    return Extension(
        f"fastconv.{name}",
        [f"fastconv/{name}.pyx"],
        include_dirs=[np.get_include(), "fastconv"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=list(link_args),
    )


# wraparound stays off in checked builds too: a negative index is then a
# bounds error (boundscheck compares unsigned), where wraparound would
# quietly read from the end of the array.
directives = {
    "language_level": 3,
    "boundscheck": CHECKED,
    "wraparound": False,
    "initializedcheck": CHECKED,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

setup(
    ext_modules=cythonize(
        [extension(m) for m in MODULES],
        compiler_directives=directives,
        annotate=DEBUG,
        build_dir="build/checked" if CHECKED else None,
        force=CHECKED,
    ),
    cmdclass={"build_ext": BuildExt},
)
