"""Shared fixtures for the fastconv test suite.

The suite runs with ``--import-mode=importlib`` (see pyproject.toml), under
which test modules cannot import helpers from this file, so the helpers are
handed out as fixtures:

``rng``
    A seeded ``numpy.random.Generator``. The seed is fixed for the session
    (``FASTCONV_TEST_SEED`` overrides it) and mixed with the test's node id,
    so every test sees the same data whether it runs alone (``-k``) or in the
    whole suite.
``assert_close``
    Compares a fastconv result with the reference, with a tolerance chosen
    from the dtype and the reduction length (never loosened per test).
``numerical_grad``
    Float64 central finite differences of ``sum(f(x) * g)``.
``threads``
    Restores fastconv's thread count after a test that changes it.
``algo``
    Maps a test's algorithm name to fastconv's: ``"winograd-2x2"`` and
    ``"winograd-4x4"`` run ``algorithm="winograd"`` on F(2x2, 3x3) or
    F(4x4, 3x3) alone, whichever auto's cost model would pick.
``sample_call``
    One valid, non-trivial call of each public function (used by the
    invariance and thread tests, parametrized over ``func_name``).

Hypothesis profiles ``ci`` (the default: derandomized, no deadline) and
``long`` are registered here; ``HYPOTHESIS_PROFILE=long`` selects the latter.
"""
import os
import zlib

import numpy as np
import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    settings = None
else:
    # "ci" (the default): a fixed set of examples, 250 per test (the fuzzer's
    # ten tests: 2,500 calls, well under a minute); "long": random, 20x more.
    settings.register_profile(
        "ci",
        derandomize=True,
        max_examples=250,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.register_profile(
        "long",
        derandomize=False,
        max_examples=5000,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


SEED = int(os.environ.get("FASTCONV_TEST_SEED", "20240611"))

# Base relative tolerances, relative to the largest magnitude in the expected
# array: float32 rounding is ~6e-8 per operation and float64 ~1e-16, so these
# leave two to three orders of magnitude of headroom for short reductions;
# longer reductions scale them by sqrt(length / 64) (random-walk rounding).
BASE_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


# ----------------------------------------------------------------------------
# hypothesis-independent fixtures
# ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def seed():
    """The session seed (``FASTCONV_TEST_SEED`` overrides the default)."""
    return SEED


@pytest.fixture
def rng(seed, request):
    """A Generator seeded from the session seed and the test's node id."""
    return np.random.default_rng([seed, zlib.crc32(request.node.nodeid.encode())])


def tolerance(dtype, reduction=1):
    """Relative tolerance for results of `dtype` summing `reduction` terms."""
    dtype = np.dtype(dtype)
    if dtype not in BASE_RTOL:
        raise AssertionError(f"unexpected result dtype {dtype}")
    return BASE_RTOL[dtype] * max(1.0, np.sqrt(reduction / 64.0))


def _assert_close(actual, expected, reduction=1, *, dtype=None, err_msg=""):
    """Assert that `actual` matches `expected` to a dtype-aware tolerance.

    `expected` is usually the reference result. Both must be ndarrays of the
    same shape and dtype (the dtype policy is part of what is tested); the
    tolerance is relative to the largest magnitude in `expected`, because
    elementwise relative error is meaningless where a sum cancels.
    """
    assert isinstance(actual, np.ndarray), f"{err_msg}: got {type(actual)}"
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{err_msg}: shape {actual.shape} != expected {expected.shape}")
    assert actual.dtype == expected.dtype, (
        f"{err_msg}: dtype {actual.dtype} != expected {expected.dtype}")
    rtol = tolerance(dtype if dtype is not None else expected.dtype, reduction)
    finite = expected[np.isfinite(expected)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True,
        err_msg=err_msg)


@pytest.fixture(scope="session")
def assert_close():
    return _assert_close


def _numerical_grad(f, x, g, h=1e-3):
    """Central differences of ``sum(f(x) * g)`` with respect to every x[i].

    `f` must be piecewise linear in x around the point (convolutions, average
    pooling, tie-free max pooling with `h` below half the smallest gap), so
    the differences are exact up to rounding.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    g = np.asarray(g, dtype=np.float64)
    flat = x.reshape(-1)
    grad = np.zeros(x.size)
    for i in range(x.size):
        old = flat[i]
        flat[i] = old + h
        fp = np.sum(np.asarray(f(x)) * g)
        flat[i] = old - h
        fm = np.sum(np.asarray(f(x)) * g)
        flat[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad.reshape(x.shape)


@pytest.fixture(scope="session")
def numerical_grad():
    return _numerical_grad


def tie_free(rng, shape, dtype=np.float64):
    """Distinct values in [-1, 1) with gaps of at least 2/size (shuffled)."""
    size = int(np.prod(shape))
    vals = (np.arange(size) * 2.0 / max(size, 1)) - 1.0
    return rng.permutation(vals).reshape(shape).astype(dtype)


@pytest.fixture(scope="session")
def make_tie_free():
    return tie_free


# ----------------------------------------------------------------------------
# threads
# ----------------------------------------------------------------------------

@pytest.fixture
def threads(monkeypatch):
    """Give the test fastconv's thread setters; restore the default after.

    Calls too small to be worth a thread team run on one thread; the test
    shapes are small, so that threshold is lifted here and every call really
    runs on the threads the test asks for."""
    import fastconv
    from fastconv import _choose

    monkeypatch.setattr(_choose, "PARALLEL_MIN_FLOPS", 0)
    yield fastconv
    fastconv.set_num_threads(None)


#: the test-only algorithm names that force one Winograd tile
WINOGRAD_TILES = {"winograd-2x2": 2, "winograd-4x4": 4}


@pytest.fixture
def algo(monkeypatch):
    """``algo(name)``: fastconv's algorithm for the test's ``name`` (see the
    module docstring); auto's cached choices are dropped before and after."""
    from fastconv import _choose

    def resolve(name):
        if name not in WINOGRAD_TILES:
            return name
        monkeypatch.setattr(_choose, "WINOGRAD_TILES", (WINOGRAD_TILES[name],))
        _choose.clear_cache()
        return "winograd"

    yield resolve
    _choose.clear_cache()


@pytest.fixture
def vector_variants():
    """The vector variants (AVX2, AVX-512) this CPU runs, as an iterator that
    switches the GEMM kernels' variant, which auto's cost model reads, to
    each in turn, auto's cached choices dropped; restored after."""
    from fastconv import _choose, _conv

    old = _conv.simd_variant()

    def each():
        for variant in [v for v in _conv.simd_variants() if v in ("avx2", "avx512")]:
            _conv.set_simd_variant(variant)
            _choose.clear_cache()
            yield variant

    yield each()
    _conv.set_simd_variant(old)
    _choose.clear_cache()


# ----------------------------------------------------------------------------
# one representative call per public function
# ----------------------------------------------------------------------------

FUNCTION_NAMES = [
    "conv2d",
    "conv2d[bias]",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_backward[indices]",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool2d_backward[indices]",
]


def pytest_configure(config):
    # With filterwarnings=error, hypothesis's failure report can die on a
    # DeprecationWarning raised while it imports an optional formatter
    # (black -> mypy_extensions) and hide the falsifying example behind an
    # INTERNALERROR. Ignore exactly that third-party warning.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


def pytest_generate_tests(metafunc):
    if "func_name" in metafunc.fixturenames:
        metafunc.parametrize("func_name", FUNCTION_NAMES)


def _sample_call(rng, name, dtype=np.float64):
    """Return (function name, args, kwargs) of a valid call of `name`.

    Shapes are small but exercise groups, asymmetric padding, strides,
    dilation, ceil_mode and None output sizes; max-pooling data is tie-free
    so every implementation must pick the same argmax.
    """
    from fastconv import reference as ref

    base = name.split("[")[0]
    x = rng.standard_normal((2, 4, 9, 8)).astype(dtype)
    if base.startswith("conv2d"):
        w = rng.standard_normal((6, 2, 3, 2)).astype(dtype)
        kw = dict(stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2), groups=2)
        if base == "conv2d":
            b = rng.standard_normal(6).astype(dtype) if name.endswith("[bias]") else None
            return "conv2d", (x, w, b), kw
        y = ref.conv2d(x, w, None, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        return "conv2d_backward", (g, x, w), kw
    if "max_pool" in base:
        x = tie_free(rng, x.shape, dtype)
    if base.startswith("max_pool2d"):
        kw = dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True)
        if base == "max_pool2d":
            return base, (x,), dict(kw, return_indices=True)
        y, idx = ref.max_pool2d(x, return_indices=True, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        if name.endswith("[indices]"):
            kw["indices"] = idx
        return base, (g, x), kw
    if base.startswith("avg_pool2d"):
        kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True,
                  count_include_pad=False)
        if base == "avg_pool2d":
            return base, (x,), kw
        y = ref.avg_pool2d(x, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        return base, (g, x), kw
    if base.startswith("adaptive_avg_pool2d"):
        kw = dict(output_size=(4, None))
        if base == "adaptive_avg_pool2d":
            return base, (x,), kw
        y = ref.adaptive_avg_pool2d(x, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        return base, (g, x), kw
    if base.startswith("adaptive_max_pool2d"):
        kw = dict(output_size=(4, 3))
        if base == "adaptive_max_pool2d":
            return base, (x,), dict(kw, return_indices=True)
        y, idx = ref.adaptive_max_pool2d(x, return_indices=True, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        if name.endswith("[indices]"):
            kw["indices"] = idx
        return base, (g, x), kw
    raise AssertionError(name)


@pytest.fixture
def sample_call(rng):
    """``sample_call(name, dtype)`` -> (function name, args, kwargs)."""
    def make(name, dtype=np.float64):
        return _sample_call(rng, name, dtype)
    return make


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def _assert_same_results(actual, expected, reduction=64, err_msg=""):
    """Compare two results of the same call (tuples allowed; int arrays exact)."""
    actual, expected = _as_tuple(actual), _as_tuple(expected)
    assert len(actual) == len(expected), err_msg
    for i, (a, e) in enumerate(zip(actual, expected)):
        msg = f"{err_msg} (result {i})"
        if e is None:
            assert a is None, msg
        elif np.asarray(e).dtype.kind in "iu":
            assert a.dtype == e.dtype, msg
            np.testing.assert_array_equal(a, e, err_msg=msg)
        else:
            _assert_close(a, e, reduction, err_msg=msg)


@pytest.fixture(scope="session")
def assert_same_results():
    return _assert_same_results
