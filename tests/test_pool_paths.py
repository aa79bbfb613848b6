"""Every code path of the pooling kernels against fastconv.reference.

The kernels (fastconv/_pool.pyx over the row primitives of _pool_simd.h) pick
a path per call; the cases below are chosen to reach each one, and
``_pool.describe_plan`` is asserted where a case exists for one path:

max forward, values    fast2 (2x2 stride 2 windows inside the input), the row
                       buffer with the horizontal pass for k2/s2, k3/s2,
                       stride 1 and strided/dilated windows, adaptive
                       windows (tables), windows of padding only
max forward, indices   the same windows through the argmax row pass
max backward           fast2 (each input written once), the frontier scatter
                       (overlapping, gapped, dilated, adaptive), indices that
                       leave their window (the plain-scatter fallback), -1
                       (windows of padding only), out-of-range indices
avg forward            fast2, global average, row buffer + k2/s2, k3/s2,
                       stride 1, strided, adaptive; every divisor rule
avg backward           global average, k == s (assigned, in place and through
                       the padded buffer), 3x3/s2 (gathered), overlapping
                       (accumulated), adaptive

Each runs with every SIMD variant this CPU has and with the special cases
switched off (``_pool.set_fast_paths(False)``, so the general kernels see the
fast-path shapes too), and large inputs with few planes run on 1, 2 and 3
threads, where planes are split into blocks of rows.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _pool
from fastconv import reference as ref

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=_pool.simd_variants())
def variant(request):
    previous = _pool.simd_variant()
    _pool.set_simd_variant(request.param)
    yield request.param
    _pool.set_simd_variant(previous)


@pytest.fixture(params=[True, False], ids=["fast", "general"])
def fast(request):
    previous = _pool.set_fast_paths(request.param)
    yield request.param
    _pool.set_fast_paths(previous)


def case(id, shape, **kw):
    return pytest.param(shape, kw, id=id)


MAX_CASES = [
    case("2x2", (2, 3, 8, 10), kernel_size=2),
    case("2x2-odd-sizes", (2, 3, 9, 11), kernel_size=2),
    case("2x2-one-row", (1, 2, 2, 40), kernel_size=2),
    case("2x2-odd-wide", (2, 3, 9, 37), kernel_size=2),
    # rows of 14 windows (LeNet: one float32 vector, part full) and of 33 (vectors
    # full, then a single window)
    case("2x2-14-windows", (2, 2, 6, 28), kernel_size=2),
    case("2x2-33-windows", (1, 2, 4, 67), kernel_size=2),
    case("2x2-ceil", (1, 2, 7, 9), kernel_size=2, ceil_mode=True),
    case("2x2-pad", (1, 2, 8, 9), kernel_size=2, padding=1),
    case("3x3-s2-p1", (2, 2, 13, 12), kernel_size=3, stride=2, padding=1),
    case("3x3-s2-p1-ceil", (1, 2, 12, 13), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    case("3x3-s2-wide", (1, 2, 5, 71), kernel_size=3, stride=2, padding=1),
    case("3x3-s1-p1", (1, 3, 9, 10), kernel_size=3, stride=1, padding=1),
    case("3x3-s3", (2, 2, 10, 11), kernel_size=3),
    case("2x2-s3-gaps", (1, 2, 10, 11), kernel_size=2, stride=3),
    case("5x5-s2-p2", (1, 2, 12, 17), kernel_size=5, stride=2, padding=2),
    case("dilated", (1, 2, 11, 12), kernel_size=3, stride=1, padding=2, dilation=2),
    case("dilated-ceil", (1, 2, 9, 10), kernel_size=2, stride=2, padding=1, dilation=(1, 3),
         ceil_mode=True),
    case("padding-only-windows", (1, 2, 2, 2), kernel_size=2, stride=1, padding=1, dilation=3),
    case("rect", (2, 2, 7, 8), kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
    case("global", (2, 3, 7, 7), kernel_size=7),
    case("1px", (2, 2, 1, 1), kernel_size=1),
    case("batch-1-odd", (1, 1, 15, 13), kernel_size=3, stride=2),
]

ADAPTIVE_SIZES = [
    case("adaptive-4x3", (2, 3, 9, 8), output_size=(4, 3)),
    case("adaptive-grow", (1, 2, 3, 5), output_size=(5, 7)),
    case("adaptive-keep-h", (1, 2, 6, 9), output_size=(None, 4)),
    case("adaptive-global", (2, 3, 7, 6), output_size=1),
    case("adaptive-even", (2, 3, 14, 12), output_size=(7, 4)),
]

AVG_CASES = [
    case("2x2", (2, 3, 8, 10), kernel_size=2),
    case("2x2-odd-sizes", (2, 3, 9, 11), kernel_size=2),
    case("2x2-override", (1, 2, 6, 8), kernel_size=2, divisor_override=3),
    case("2x2-ceil", (1, 2, 7, 9), kernel_size=2, ceil_mode=True),
    case("2x2-pad", (1, 2, 8, 9), kernel_size=2, padding=1),
    case("2x2-pad-exclude", (1, 2, 8, 9), kernel_size=2, padding=1, count_include_pad=False),
    case("3x3-s2-p1", (2, 2, 13, 12), kernel_size=3, stride=2, padding=1),
    case("3x3-s2-p1-exclude-ceil", (1, 2, 12, 13), kernel_size=3, stride=2, padding=1,
         ceil_mode=True, count_include_pad=False),
    case("3x3-s2-nopad", (1, 2, 11, 13), kernel_size=3, stride=2),
    case("3x3-s1-p1", (1, 3, 9, 10), kernel_size=3, stride=1, padding=1),
    case("3x3-s3", (2, 2, 10, 11), kernel_size=3),
    case("3x3-s3-pad", (1, 2, 10, 11), kernel_size=3, padding=1),
    case("2x2-s3-gaps", (1, 2, 10, 11), kernel_size=2, stride=3),
    case("5x5-s2-p2-override", (1, 2, 12, 17), kernel_size=5, stride=2, padding=2,
         divisor_override=7),
    case("rect", (2, 2, 7, 8), kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
    case("global", (2, 3, 7, 7), kernel_size=7),
    case("global-pad", (1, 2, 1, 1), kernel_size=3, padding=1),
    # planes of 9 (under an AVX-512 float32 vector), of exactly 16, and 140 planes of
    # 25: the backward's blocks of 64 planes, vectors spanning two planes
    case("global-3x3", (1, 5, 3, 3), kernel_size=3),
    case("global-4x4", (2, 20, 4, 4), kernel_size=4),
    case("global-5x5-many", (2, 70, 5, 5), kernel_size=5),
    case("wide", (1, 2, 4, 70), kernel_size=2, stride=2, padding=1),
    # stride 1 across rows wider and narrower than a vector, window ends at both sides
    case("5x5-s1-p2", (1, 2, 7, 37), kernel_size=5, stride=1, padding=2),
    case("2x2-s1", (1, 2, 6, 41), kernel_size=2, stride=1),
    case("4x4-s1-p1-exclude-ceil", (1, 2, 9, 23), kernel_size=4, stride=1, padding=1,
         ceil_mode=True, count_include_pad=False),
    # rows so long that the backward's divided output rows come a few at a time
    case("3x3-s1-long-rows", (1, 2, 9, 1400), kernel_size=3, stride=1, padding=1,
         count_include_pad=False),
    case("5x5-s2-long-rows", (1, 1, 13, 2100), kernel_size=5, stride=2, padding=2),
]


def tie_free(rng, shape, dtype):
    size = int(np.prod(shape))
    return rng.permutation(np.arange(size) * 2.0 / size - 1.0).reshape(shape).astype(dtype)


def plan(shape, out_shape, backward=False, n_threads=1, kernel_size=1, stride=None, padding=0,
         dilation=1, adaptive=False):
    pair = lambda v: (v, v) if np.isscalar(v) else tuple(v)
    k = pair(kernel_size)
    s = k if stride is None else pair(stride)
    return _pool.describe_plan(*shape, *out_shape[2:], *k, *s, *pair(padding), *pair(dilation),
                               adaptive, backward, n_threads)


def test_cases_reach_their_paths():
    """The shapes named after a path do take it (so the tests below cover it)."""
    assert plan((2, 3, 8, 10), (2, 3, 4, 5), kernel_size=2)["fast2"]
    assert plan((1, 2, 2, 40), (1, 2, 1, 20), kernel_size=2)["back2"] == (
        _pool.simd_variant() in ("avx512", "avx2"))
    assert plan((2, 3, 9, 11), (2, 3, 4, 5), kernel_size=2)["fast2"]
    assert not plan((1, 2, 7, 9), (1, 2, 4, 5), kernel_size=2)["fast2"]   # ceil mode
    assert not plan((1, 2, 8, 9), (1, 2, 5, 5), kernel_size=2, padding=1)["fast2"]
    assert plan((2, 3, 7, 7), (2, 3, 1, 1), kernel_size=7)["gap"]
    assert plan((1, 2, 1, 1), (1, 2, 1, 1), kernel_size=3, padding=1)["gap"]
    assert plan((2, 3, 7, 6), (2, 3, 1, 1), adaptive=True)["gap"]
    assert plan((2, 3, 14, 12), (2, 3, 7, 6), adaptive=True)["fast2"]   # tiles evenly
    assert plan((1, 2, 11, 13), (1, 2, 5, 6), kernel_size=3, stride=2)["direct"]
    assert not plan((2, 2, 13, 12), (2, 2, 7, 6), kernel_size=3, stride=2, padding=1)["direct"]
    big = plan((1, 2, 200, 180), (1, 2, 100, 90), n_threads=2, kernel_size=2)
    assert big["threads"] == 2 and big["blocks"] > 1
    small = plan((1, 2, 20, 18), (1, 2, 10, 9), n_threads=2, kernel_size=2)
    assert small["threads"] == 1 and small["blocks"] == 1
    previous = _pool.set_fast_paths(False)
    try:
        assert not plan((2, 3, 8, 10), (2, 3, 4, 5), kernel_size=2)["fast2"]
        assert not plan((2, 3, 7, 7), (2, 3, 1, 1), kernel_size=7)["gap"]
        assert not plan((2, 3, 14, 12), (2, 3, 7, 6), adaptive=True)["fast2"]
    finally:
        _pool.set_fast_paths(previous)


# --------------------------------------------------------------------------
# max pooling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", MAX_CASES)
def test_max_pool(rng, assert_close, variant, fast, shape, kw, dtype):
    x = tie_free(rng, shape, dtype)
    exp, exp_idx = ref.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(fastconv.max_pool2d(x, **kw), exp)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(idx, exp_idx)
    g = rng.standard_normal(exp.shape).astype(dtype)
    exp_g = ref.max_pool2d_backward(g, x, **kw)
    assert_close(fastconv.max_pool2d_backward(g, x, **kw), exp_g, 16)
    assert_close(fastconv.max_pool2d_backward(g, x, indices=idx, **kw), exp_g, 16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", MAX_CASES)
def test_max_pool_ties_infinities_and_nans(rng, assert_close, variant, fast, shape, kw, dtype):
    """Few distinct values (ties: the first maximum wins), -inf, +inf and NaNs
    (the last NaN of a window wins), against the reference's row-major scan."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    flat = x.reshape(-1)
    picks = rng.permutation(flat.size)
    flat[picks[: flat.size // 6]] = np.nan
    flat[picks[flat.size // 6: flat.size // 4]] = -np.inf
    flat[picks[flat.size // 4: flat.size // 3]] = np.inf
    exp, exp_idx = ref.max_pool2d(x, return_indices=True, **kw)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_array_equal(fastconv.max_pool2d(x, **kw), exp)
    g = rng.standard_normal(exp.shape).astype(dtype)
    exp_g = ref.max_pool2d_backward(g, x, **kw)
    assert_close(fastconv.max_pool2d_backward(g, x, indices=idx, **kw), exp_g, 16)
    assert_close(fastconv.max_pool2d_backward(g, x, **kw), exp_g, 16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", ADAPTIVE_SIZES)
def test_adaptive_max_pool(rng, assert_close, variant, fast, shape, kw, dtype):
    for x in (tie_free(rng, shape, dtype), rng.integers(-1, 2, size=shape).astype(dtype)):
        x.reshape(-1)[rng.permutation(x.size)[: x.size // 5]] = np.nan
        exp, exp_idx = ref.adaptive_max_pool2d(x, return_indices=True, **kw)
        out, idx = fastconv.adaptive_max_pool2d(x, return_indices=True, **kw)
        np.testing.assert_array_equal(out, exp)
        np.testing.assert_array_equal(idx, exp_idx)
        np.testing.assert_array_equal(fastconv.adaptive_max_pool2d(x, **kw), exp)
        g = rng.standard_normal(exp.shape).astype(dtype)
        exp_g = ref.adaptive_max_pool2d_backward(g, x, **kw)
        assert_close(fastconv.adaptive_max_pool2d_backward(g, x, **kw), exp_g, 16)
        assert_close(fastconv.adaptive_max_pool2d_backward(g, x, indices=idx, **kw), exp_g, 16)


def scatter(g, idx, shape):
    """The meaning of max_pool2d_backward(indices=...): a plain scatter-add."""
    N, C, H, W = shape
    out = np.zeros((N * C, H * W))
    for plane, (gp, ip) in enumerate(zip(g.reshape(N * C, -1), idx.reshape(N * C, -1))):
        np.add.at(out[plane], ip[ip >= 0], gp[ip >= 0])
    return out.reshape(shape)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=3)], ids=["2x2", "3x3-s2", "3x3-s3"])
def test_max_backward_indices_outside_their_window(rng, variant, fast, kw):
    """Given indices need not be each window's argmax, nor inside the window:
    every kernel detects that and falls back to a plain scatter."""
    shape = (2, 3, 10, 20)
    x = rng.standard_normal(shape)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    g = rng.standard_normal(out.shape)
    moved = idx.copy()
    moved[0, 1, 0, 0] = 10 * 20 - 1          # last element of the plane
    moved[1, 2, -1, -1] = 0                  # first element
    moved[1, 0, 1, 1] = moved[1, 0, 0, 0]    # the same element as another window
    np.testing.assert_allclose(fastconv.max_pool2d_backward(g, x, indices=moved, **kw),
                               scatter(g, moved, shape), rtol=1e-12, atol=1e-12)
    moved[0, 0, 0, 0] = -1                   # "no element": no gradient
    np.testing.assert_allclose(fastconv.max_pool2d_backward(g, x, indices=moved, **kw),
                               scatter(g, moved, shape), rtol=1e-12, atol=1e-12)
    moved[0, 0, 0, 1] = 10 * 20              # out of range: an error
    with pytest.raises(ValueError, match=r"max_pool2d_backward: indices .*200"):
        fastconv.max_pool2d_backward(g, x, indices=moved, **kw)


# --------------------------------------------------------------------------
# average pooling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", AVG_CASES)
def test_avg_pool(rng, assert_close, variant, fast, shape, kw, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    exp = ref.avg_pool2d(x, **kw)
    k = np.prod(np.broadcast_to(kw["kernel_size"], 2))
    assert_close(fastconv.avg_pool2d(x, **kw), exp, k)
    g = rng.standard_normal(exp.shape).astype(dtype)
    assert_close(fastconv.avg_pool2d_backward(g, x, **kw), ref.avg_pool2d_backward(g, x, **kw),
                 k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", ADAPTIVE_SIZES)
def test_adaptive_avg_pool(rng, assert_close, variant, fast, shape, kw, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    exp = ref.adaptive_avg_pool2d(x, **kw)
    assert_close(fastconv.adaptive_avg_pool2d(x, **kw), exp, shape[2] * shape[3])
    g = rng.standard_normal(exp.shape).astype(dtype)
    assert_close(fastconv.adaptive_avg_pool2d_backward(g, x, **kw),
                 ref.adaptive_avg_pool2d_backward(g, x, **kw), shape[2] * shape[3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_backward_at_every_alignment(rng, variant, dtype):
    """The global-average backward writes whole aligned vectors: its head and
    tail elements, for an output starting anywhere within a 64-byte line."""
    gy = rng.standard_normal((1, 67, 1, 1)).astype(dtype)
    exp = np.repeat(gy, 49, axis=2).reshape(1, 67, 7, 7) / dtype(49)
    n = exp.size
    item = np.dtype(dtype).itemsize
    raw = np.full(n + 128 // item, 7.0, dtype)
    base = (-raw.ctypes.data % 64) // item
    for off in range(64 // item):
        gx = raw[base + off:base + off + n].reshape(exp.shape)
        assert _pool.avg_pool_backward(gy, gx, 7, 7, 7, 7, 0, 0, False, True, 0, 1) == 0
        np.testing.assert_array_equal(gx, exp)
        # nothing written outside the output
        assert (raw[:base + off] == 7).all() and (raw[base + off + n:] == 7).all()
        raw[base + off:base + off + n] = 7


def test_avg_pool_nan_and_inf_propagate(variant, fast):
    x = np.zeros((1, 1, 4, 6))
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 5] = np.inf
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)):
        np.testing.assert_array_equal(fastconv.avg_pool2d(x, **kw), ref.avg_pool2d(x, **kw))
    assert np.isnan(fastconv.adaptive_avg_pool2d(x, 1).item())


# --------------------------------------------------------------------------
# threads: few planes, many rows -> each plane split into blocks of rows


THREAD_CASES = [
    ("max", (1, 2, 200, 180), dict(kernel_size=2)),
    ("max", (1, 3, 201, 163), dict(kernel_size=3, stride=2, padding=1)),
    ("max", (1, 2, 150, 170), dict(kernel_size=3, stride=1, padding=2, dilation=2,
                                   ceil_mode=True)),
    ("avg", (1, 2, 200, 180), dict(kernel_size=2)),
    ("avg", (1, 3, 201, 163), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg", (2, 1, 173, 190), dict(kernel_size=(2, 5), stride=(2, 3), padding=(1, 2),
                                   count_include_pad=False)),
    ("adaptive_max", (1, 2, 190, 170), dict(output_size=(37, 41))),
    ("adaptive_avg", (1, 2, 190, 170), dict(output_size=(37, 41))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind, shape, kw", THREAD_CASES,
                         ids=[f"{k}-{'x'.join(map(str, s))}" for k, s, _ in THREAD_CASES])
def test_row_blocks_on_several_threads(threads, rng, assert_close, kind, shape, kw, dtype):
    x = tie_free(rng, shape, dtype)
    forward = getattr(fastconv, f"{kind}_pool2d")
    backward = getattr(fastconv, f"{kind}_pool2d_backward")
    results = []
    for n in (1, 2, 3):
        threads.set_num_threads(n)
        if "max" in kind:
            out, idx = forward(x, return_indices=True, **kw)
            g = np.linspace(-1, 1, out.size).reshape(out.shape).astype(dtype)
            results.append((out, idx, backward(g, x, **kw), backward(g, x, indices=idx, **kw)))
        else:
            out = forward(x, **kw)
            g = np.linspace(-1, 1, out.size).reshape(out.shape).astype(dtype)
            results.append((out, backward(g, x, **kw)))
    for other in results[1:]:   # bit-identical whatever the split
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    exp = getattr(ref, f"{kind}_pool2d")(x, **kw)
    g = np.linspace(-1, 1, exp.size).reshape(exp.shape).astype(dtype)
    exp_g = getattr(ref, f"{kind}_pool2d_backward")(g, x, **kw)
    if "max" in kind:
        np.testing.assert_array_equal(results[0][0], exp)
        assert_close(results[0][2], exp_g, 16)
    else:
        assert_close(results[0][0], exp, 25)
        assert_close(results[0][1], exp_g, 25)
