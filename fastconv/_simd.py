"""The SIMD variant all kernel modules run, and the FASTCONV_SIMD override.

Each extension (_conv, _direct, _pool) picks the widest variant the CPU
supports when it is imported. ``FASTCONV_SIMD=avx2`` (or ``baseline``) in the
environment makes all three run a narrower one instead: to measure what an
AVX2-only machine would see, or to rule the wide kernels out while chasing
a problem (like ``ATEN_CPU_CAPABILITY`` for PyTorch and ``OPENBLAS_CORETYPE``
for OpenBLAS).
"""
import os
import warnings

from . import _conv, _direct, _pool

ENV = "FASTCONV_SIMD"
_MODULES = (_conv, _direct, _pool)


def use(name):
    """Run every kernel module on variant ``name`` (one this CPU supports)."""
    for module in _MODULES:
        module.set_simd_variant(name)


def apply_environment(environ=None):
    """Apply ``FASTCONV_SIMD`` if set; returns the variant now in use.

    A value this CPU cannot run (or a misspelt one) leaves the default in
    place with a RuntimeWarning rather than failing the import, so one
    setting can serve a cluster of mixed machines.
    """
    environ = os.environ if environ is None else environ
    name = environ.get(ENV, "").strip().lower()
    supported = _conv.simd_variants()
    if name and name not in supported:
        warnings.warn(
            f"fastconv: {ENV} must be one of {supported} (the SIMD variants this CPU "
            f"runs), got {environ[ENV]!r}; using {supported[0]!r}",
            RuntimeWarning,
            stacklevel=2,
        )
    elif name:
        use(name)
    return _conv.simd_variant()
