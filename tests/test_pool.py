"""Pooling forwards and backwards against fastconv.reference and finite differences.

Max pooling must be bit-exact (a max involves no rounding) in values and
indices, including ties (first maximum in row-major window order) and NaN.
"""
import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

DTYPES = [np.float32, np.float64]


def shape_of(N, C, H, W, batched=True):
    return (N, C, H, W) if batched else (C, H, W)


# --------------------------------------------------------------------------
# max_pool2d
# --------------------------------------------------------------------------

def mp(id, shape=(2, 3, 7, 8), kernel_size=2, stride=None, padding=0, dilation=1,
       ceil_mode=False):
    return pytest.param(shape, dict(kernel_size=kernel_size, stride=stride, padding=padding,
                                    dilation=dilation, ceil_mode=ceil_mode), id=id)


MAX_CASES = [
    mp("k2-default-stride"),
    mp("k1", kernel_size=1),
    mp("k3-s2-p1", kernel_size=3, stride=2, padding=1),
    mp("k3-s2-p1-ceil", shape=(2, 2, 6, 6), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    mp("ceil-last-window-dropped", shape=(1, 2, 5, 5), kernel_size=2, stride=2, padding=1,
       ceil_mode=True),
    mp("ceil-no-padding", shape=(1, 2, 7, 5), kernel_size=2, ceil_mode=True),
    mp("k2x3-s1x2-p1x0", kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
    mp("k3-dil2-p1", shape=(1, 2, 9, 8), kernel_size=3, stride=1, padding=1, dilation=2),
    mp("k3-dil2-p2", shape=(1, 2, 9, 8), kernel_size=3, stride=2, padding=2, dilation=2),
    mp("k2-dil-1x3-ceil", kernel_size=2, stride=2, padding=1, dilation=(1, 3), ceil_mode=True),
    mp("k4-s1-p2", shape=(1, 3, 5, 6), kernel_size=4, stride=1, padding=2),
    mp("k5-s3-ceil", shape=(2, 1, 11, 7), kernel_size=5, stride=3, padding=2, ceil_mode=True),
    mp("k6-s4", shape=(1, 2, 9, 13), kernel_size=6, stride=4, padding=3),
    mp("k7-global", shape=(2, 3, 7, 7), kernel_size=7),
    mp("stride-gt-kernel", shape=(1, 2, 10, 9), kernel_size=2, stride=3),
    mp("odd-rect", shape=(1, 2, 5, 11), kernel_size=3, stride=(1, 2)),
    mp("1px-k1", shape=(2, 3, 1, 1), kernel_size=1),
    mp("1px-k2-p1", shape=(1, 2, 1, 1), kernel_size=2, padding=1),
    mp("1px-k3-p1-ceil", shape=(1, 2, 1, 1), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    mp("1-row", shape=(1, 2, 1, 9), kernel_size=(1, 3), stride=(1, 2), ceil_mode=True),
    mp("N0", shape=(0, 3, 6, 6), kernel_size=2),
    mp("unbatched", shape=(3, 7, 6), kernel_size=3, stride=2, padding=1),
    mp("unbatched-ceil", shape=(2, 6, 5), kernel_size=2, ceil_mode=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", MAX_CASES)
def test_max_pool2d_matches_reference(rng, make_tie_free, shape, kw, dtype):
    x = make_tie_free(rng, shape, dtype)
    exp, exp_idx = ref.max_pool2d(x, return_indices=True, **kw)
    out = fastconv.max_pool2d(x, **kw)
    out2, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    assert out.dtype == np.dtype(dtype) and out.shape == exp.shape
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(out2, exp)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, exp_idx)
    assert out.ndim == len(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", MAX_CASES)
def test_max_pool2d_ties_match_reference(rng, assert_close, shape, kw, dtype):
    """Few distinct values: many ties, the first maximum must win."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    exp, exp_idx = ref.max_pool2d(x, return_indices=True, **kw)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(idx, exp_idx)
    y = ref.max_pool2d(x, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    exp_gi = ref.max_pool2d_backward(g, x, **kw)
    # each pixel sums the gradients of the (few) windows it is the maximum of
    assert_close(fastconv.max_pool2d_backward(g, x, **kw), exp_gi, 16)
    assert_close(fastconv.max_pool2d_backward(g, x, indices=idx, **kw), exp_gi, 16)


def test_max_pool2d_tie_picks_first_in_row_major_order():
    x = np.array([[[[1.0, 3.0, 3.0],
                    [3.0, 2.0, 3.0]]]])
    out, idx = fastconv.max_pool2d(x, (2, 3), return_indices=True)
    assert out.item() == 3.0 and idx.item() == 1
    gi = fastconv.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, (2, 3))
    np.testing.assert_array_equal(gi, [[[[0, 1, 0], [0, 0, 0]]]])


def test_max_pool2d_nan_wins_window(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    x[0, 0, 1, 0] = np.nan        # one NaN in window (0, 0) of channel 0
    x[0, 1, 3, 3] = np.nan        # one NaN in window (1, 1) of channel 1
    out, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    exp, exp_idx = ref.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(out[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4
    assert np.isnan(out[0, 1, 1, 1]) and idx[0, 1, 1, 1] == 15
    assert np.isfinite(out).sum() == 6
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(idx, exp_idx)
    g = np.ones_like(out)
    gi = fastconv.max_pool2d_backward(g, x, 2)
    assert gi[0, 0, 1, 0] == 1 and gi[0, 1, 3, 3] == 1
    np.testing.assert_array_equal(gi, ref.max_pool2d_backward(g, x, 2))


def test_max_pool2d_several_nans_pick_the_last_like_pytorch():
    """PyTorch CPU replaces the running max by every NaN it meets (val > max or
    isnan(val)), so the index is the last NaN in row-major window order."""
    n = np.nan
    x = np.array([[[[n, 1.0, n, 2.0],
                    [0.0, n, 5.0, 1.0]]]])
    for out, idx in (fastconv.max_pool2d(x, (2, 4), return_indices=True),
                     fastconv.adaptive_max_pool2d(x, 1, return_indices=True),
                     ref.max_pool2d(x, (2, 4), return_indices=True)):
        assert np.isnan(out.item()) and idx.item() == 5
    gi = fastconv.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, (2, 4))
    assert gi[0, 0, 1, 1] == 1.0 and gi.sum() == 1.0


def test_max_pool2d_window_with_only_padding_matches_reference():
    """Dilation can make a window see padding only: value -inf (as PyTorch) and
    index -1 (PyTorch reports an out-of-plane position there), and
    max_pool2d_backward accepts that index and gives no gradient anywhere.
    """
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    kw = dict(kernel_size=2, stride=1, padding=1, dilation=3)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    exp, exp_idx = ref.max_pool2d(x, return_indices=True, **kw)
    assert out.shape == (1, 1, 1, 1)
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(idx, exp_idx)
    assert out.item() == -np.inf and idx.item() == -1
    g = np.ones_like(out)
    np.testing.assert_array_equal(fastconv.max_pool2d_backward(g, x, **kw), np.zeros_like(x))
    np.testing.assert_array_equal(
        fastconv.max_pool2d_backward(g, x, indices=idx, **kw), np.zeros_like(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", MAX_CASES)
def test_max_pool2d_backward_matches_reference(rng, assert_close, make_tie_free, shape, kw,
                                               dtype):
    x = make_tie_free(rng, shape, dtype)
    y, idx = ref.max_pool2d(x, return_indices=True, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    exp = ref.max_pool2d_backward(g, x, **kw)
    _, own_idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    for extra in ({}, {"indices": idx}, {"indices": own_idx}):
        got = fastconv.max_pool2d_backward(g, x, **kw, **extra)
        assert got.shape == x.shape
        assert_close(got, exp, 16)


def test_max_pool2d_backward_follows_given_indices(rng):
    """indices= is used as given, not recomputed (here: deliberately not the argmax)."""
    x = rng.standard_normal((1, 1, 4, 4))
    idx = np.array([[[[0, 2], [8, 10]]]], dtype=np.int64)     # top-left of each window
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    gi = fastconv.max_pool2d_backward(g, x, 2, indices=idx)
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 0, 0], expected[0, 0, 0, 2] = 1, 2
    expected[0, 0, 2, 0], expected[0, 0, 2, 2] = 3, 4
    np.testing.assert_array_equal(gi, expected)


@pytest.mark.parametrize("idx_dtype", [np.int32, np.uint16, np.int64])
def test_max_pool_backward_accepts_integer_indices(rng, make_tie_free, idx_dtype):
    """Any integer dtype holding valid positions is accepted (cast to int64)."""
    x = make_tie_free(rng, (2, 3, 6, 7))
    _, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    g = rng.standard_normal(idx.shape)
    expected = fastconv.max_pool2d_backward(g, x, 3, 2, 1)
    np.testing.assert_array_equal(
        fastconv.max_pool2d_backward(g, x, 3, 2, 1, indices=idx.astype(idx_dtype)), expected)
    _, idx = fastconv.adaptive_max_pool2d(x, (4, 3), return_indices=True)
    g = rng.standard_normal(idx.shape)
    expected = fastconv.adaptive_max_pool2d_backward(g, x, (4, 3))
    np.testing.assert_array_equal(
        fastconv.adaptive_max_pool2d_backward(g, x, (4, 3), indices=idx.astype(idx_dtype)),
        expected)


def test_max_pool2d_backward_accumulates_overlapping_windows():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0                              # max of all four 2x2 windows
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    gi = fastconv.max_pool2d_backward(g, x, 2, stride=1)
    assert gi[0, 0, 1, 1] == 10.0 and gi.sum() == 10.0


# --------------------------------------------------------------------------
# avg_pool2d
# --------------------------------------------------------------------------

def ap(id, shape=(2, 3, 7, 8), kernel_size=2, stride=None, padding=0, ceil_mode=False,
       count_include_pad=True, divisor_override=None):
    return pytest.param(shape, dict(kernel_size=kernel_size, stride=stride, padding=padding,
                                    ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                                    divisor_override=divisor_override), id=id)


AVG_CASES = [
    ap("k2-default-stride"),
    ap("k1", kernel_size=1),
    ap("k3-s2-p1", kernel_size=3, stride=2, padding=1),
    ap("k3-s2-p1-nopad", kernel_size=3, stride=2, padding=1, count_include_pad=False),
    ap("k3-s2-p1-ceil", shape=(1, 2, 6, 6), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    ap("k3-s2-p1-ceil-nopad", shape=(1, 2, 6, 6), kernel_size=3, stride=2, padding=1,
       ceil_mode=True, count_include_pad=False),
    ap("ceil-beyond-padding", shape=(1, 2, 7, 5), kernel_size=2, ceil_mode=True),
    ap("ceil-beyond-padding-nopad", shape=(1, 2, 7, 5), kernel_size=3, stride=2,
       ceil_mode=True, count_include_pad=False),
    ap("ceil-last-window-dropped", shape=(1, 2, 5, 5), kernel_size=2, stride=2, padding=1,
       ceil_mode=True),
    ap("k2x3-s1x2-p1x1", kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
    ap("divisor", kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), divisor_override=5),
    ap("divisor-1-ceil", kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=1),
    ap("divisor-nopad", kernel_size=3, stride=2, padding=1, count_include_pad=False,
       divisor_override=7),
    ap("k4-s1-p2", shape=(1, 3, 5, 6), kernel_size=4, stride=1, padding=2),
    ap("k5-s3-ceil", shape=(2, 1, 11, 7), kernel_size=5, stride=3, padding=2, ceil_mode=True,
       count_include_pad=False),
    ap("k6-s4-p3", shape=(1, 2, 9, 13), kernel_size=6, stride=4, padding=3),
    ap("k7-global", shape=(2, 3, 7, 7), kernel_size=7),
    ap("stride-gt-kernel", shape=(1, 2, 10, 9), kernel_size=2, stride=3),
    ap("1px-k1", shape=(2, 3, 1, 1), kernel_size=1),
    ap("1px-k2-p1", shape=(1, 2, 1, 1), kernel_size=2, padding=1),
    ap("1px-k2-p1-nopad", shape=(1, 2, 1, 1), kernel_size=2, padding=1,
       count_include_pad=False),
    ap("1-col", shape=(1, 2, 9, 1), kernel_size=(3, 1), stride=(2, 1), ceil_mode=True),
    ap("N0", shape=(0, 3, 6, 6), kernel_size=2),
    ap("unbatched", shape=(3, 7, 6), kernel_size=3, stride=2, padding=1),
    ap("unbatched-nopad-ceil", shape=(2, 6, 5), kernel_size=2, stride=2, padding=1,
       ceil_mode=True, count_include_pad=False),
]


def kernel_area(kw):
    k = kw["kernel_size"]
    k = (k, k) if np.isscalar(k) else k
    return k[0] * k[1]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", AVG_CASES)
def test_avg_pool2d_matches_reference(rng, assert_close, shape, kw, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    exp = ref.avg_pool2d(x, **kw)
    got = fastconv.avg_pool2d(x, **kw)
    assert got.ndim == len(shape)
    assert_close(got, exp, kernel_area(kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", AVG_CASES)
def test_avg_pool2d_backward_matches_reference(rng, assert_close, shape, kw, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    y = ref.avg_pool2d(x, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    exp = ref.avg_pool2d_backward(g, x, **kw)
    got = fastconv.avg_pool2d_backward(g, x, **kw)
    assert got.shape == x.shape
    assert_close(got, exp, kernel_area(kw))


def test_avg_pool2d_known_values():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    close = dict(rel=1e-15, abs=0)
    np.testing.assert_allclose(fastconv.avg_pool2d(x, 2), [[[[2.5, 4.5], [10.5, 12.5]]]],
                               rtol=1e-15)
    # padding 1, count_include_pad: the corner window holds x[0, 0] = 0 and three zeros
    y = fastconv.avg_pool2d(x, 2, padding=1)
    assert y[0, 0, 0, 0] == 0.0 and y[0, 0, 0, 1] == pytest.approx((1 + 2) / 4, **close)
    y = fastconv.avg_pool2d(x, 2, padding=1, count_include_pad=False)
    assert y[0, 0, 0, 1] == pytest.approx((1 + 2) / 2, **close)
    y = fastconv.avg_pool2d(x, 2, divisor_override=3)
    assert y[0, 0, 0, 0] == pytest.approx((0 + 1 + 4 + 5) / 3, **close)


# --------------------------------------------------------------------------
# adaptive pooling
# --------------------------------------------------------------------------

ADAPTIVE_CASES = [
    pytest.param((2, 3, 7, 8), 1, id="global-int"),
    pytest.param((2, 3, 7, 8), (1, 1), id="global-pair"),
    pytest.param((1, 2, 8, 8), 4, id="divisible"),
    pytest.param((1, 2, 7, 5), (3, 2), id="overlapping-windows"),
    pytest.param((1, 2, 5, 7), (None, 3), id="None-H"),
    pytest.param((1, 2, 5, 7), (2, None), id="None-W"),
    pytest.param((1, 2, 5, 7), (None, None), id="None-both"),
    pytest.param((1, 2, 5, 4), (9, 7), id="larger-than-input"),
    pytest.param((1, 2, 3, 6), (5, 4), id="mixed-larger-smaller"),
    pytest.param((2, 2, 1, 1), (2, 3), id="1px-upsample"),
    pytest.param((1, 2, 1, 9), (1, 4), id="1-row"),
    pytest.param((1, 1, 11, 13), (7, 7), id="odd-7x7"),
    pytest.param((0, 3, 5, 5), 2, id="N0"),
    pytest.param((3, 7, 6), (3, 4), id="unbatched"),
    pytest.param((3, 4, 4), (None, 1), id="unbatched-None"),
]


def max_window_area(shape, output_size):
    H, W = shape[-2:]
    out = (output_size, output_size) if np.isscalar(output_size) else output_size
    P = H if out[0] is None else out[0]
    Q = W if out[1] is None else out[1]
    return (-(-H // P) + 1) * (-(-W // Q) + 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_size", ADAPTIVE_CASES)
def test_adaptive_avg_pool2d_matches_reference(rng, assert_close, shape, output_size, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    exp = ref.adaptive_avg_pool2d(x, output_size)
    got = fastconv.adaptive_avg_pool2d(x, output_size)
    L = max_window_area(shape, output_size)
    assert_close(got, exp, L)
    y = exp
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close(fastconv.adaptive_avg_pool2d_backward(g, x, output_size),
                 ref.adaptive_avg_pool2d_backward(g, x, output_size), L)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_size", ADAPTIVE_CASES)
def test_adaptive_max_pool2d_matches_reference(rng, assert_close, make_tie_free, shape,
                                               output_size, dtype):
    x = make_tie_free(rng, shape, dtype)
    exp, exp_idx = ref.adaptive_max_pool2d(x, output_size, return_indices=True)
    out = fastconv.adaptive_max_pool2d(x, output_size)
    out2, idx = fastconv.adaptive_max_pool2d(x, output_size, return_indices=True)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(out2, exp)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, exp_idx)
    g = rng.standard_normal(exp.shape).astype(dtype)
    exp_gi = ref.adaptive_max_pool2d_backward(g, x, output_size)
    for kw in ({}, {"indices": exp_idx}, {"indices": idx}):
        got = fastconv.adaptive_max_pool2d_backward(g, x, output_size, **kw)
        assert got.shape == x.shape
        assert_close(got, exp_gi, 16)


@pytest.mark.parametrize("shape, output_size", ADAPTIVE_CASES)
def test_adaptive_max_pool2d_ties_match_reference(rng, shape, output_size):
    x = rng.integers(-1, 2, size=shape).astype(np.float64)
    exp, exp_idx = ref.adaptive_max_pool2d(x, output_size, return_indices=True)
    out, idx = fastconv.adaptive_max_pool2d(x, output_size, return_indices=True)
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(idx, exp_idx)


def test_adaptive_pool_windows_known_values():
    """Windows are [floor(i*H/P), ceil((i+1)*H/P)), as in PyTorch."""
    x = np.arange(5, dtype=np.float64).reshape(1, 1, 1, 5)
    # W=5 -> Q=3: windows [0,2), [1,4), [3,5)
    np.testing.assert_allclose(fastconv.adaptive_avg_pool2d(x, (1, 3)),
                               [[[[0.5, 2.0, 3.5]]]], rtol=1e-15)
    out, idx = fastconv.adaptive_max_pool2d(x, (1, 3), return_indices=True)
    np.testing.assert_array_equal(out, [[[[1.0, 3.0, 4.0]]]])
    np.testing.assert_array_equal(idx, [[[[1, 3, 4]]]])
    # Q=7 > W: windows [0,1), [0,2), [1,3), [2,3), [2,4), [3,5), [4,5)
    np.testing.assert_allclose(fastconv.adaptive_avg_pool2d(x, (1, 7)),
                               [[[[0, 0.5, 1.5, 2, 2.5, 3.5, 4]]]], rtol=1e-15)


def test_adaptive_avg_pool2d_global_is_mean(rng, assert_close):
    x = rng.standard_normal((3, 4, 5, 6))
    assert_close(fastconv.adaptive_avg_pool2d(x, 1), x.mean(axis=(2, 3), keepdims=True), 30)


# --------------------------------------------------------------------------
# finite differences for every pooling backward (float64, tie-free data)
# --------------------------------------------------------------------------

H_FD = 1e-4  # well below half the smallest gap of tie-free data on these shapes

POOL_FD = [
    pytest.param("max", (2, 2, 5, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                 id="max-k3-s2-p1-ceil"),
    pytest.param("max", (1, 2, 7, 6), dict(kernel_size=(2, 3), stride=1, padding=(1, 1),
                                           dilation=(2, 1)), id="max-overlap-dil"),
    pytest.param("max", (2, 5, 4), dict(kernel_size=2), id="max-unbatched"),
    pytest.param("avg", (2, 2, 5, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                           count_include_pad=False), id="avg-ceil-nopad"),
    pytest.param("avg", (1, 2, 6, 5), dict(kernel_size=(2, 3), stride=1, padding=(1, 1)),
                 id="avg-overlap-pad"),
    pytest.param("avg", (1, 2, 5, 5), dict(kernel_size=2, padding=1, ceil_mode=True,
                                           divisor_override=3), id="avg-divisor"),
    pytest.param("adaptive_avg", (1, 2, 5, 7), dict(output_size=(3, 4)), id="adaptive-avg"),
    pytest.param("adaptive_avg", (1, 2, 3, 4), dict(output_size=(5, None)),
                 id="adaptive-avg-larger-None"),
    pytest.param("adaptive_max", (1, 2, 5, 7), dict(output_size=(3, 4)), id="adaptive-max"),
    pytest.param("adaptive_max", (1, 2, 3, 4), dict(output_size=(5, 6)),
                 id="adaptive-max-larger"),
]


POOL_FD_INDICES = [
    pytest.param(*c.values, with_indices, id=f"{c.id}-{'indices' if with_indices else 'recompute'}")
    for c in POOL_FD for with_indices in (False, True)
    if not with_indices or "max" in c.values[0]]


@pytest.mark.parametrize("kind, shape, kw, with_indices", POOL_FD_INDICES)
def test_pool_backward_finite_differences(rng, make_tie_free, numerical_grad, kind, shape, kw,
                                          with_indices):
    forward = getattr(fastconv, f"{kind}_pool2d")
    backward = getattr(fastconv, f"{kind}_pool2d_backward")
    x = make_tie_free(rng, shape)
    y = forward(x, **kw)
    g = rng.standard_normal(y.shape)
    extra = {}
    if with_indices:
        extra["indices"] = forward(x, return_indices=True, **kw)[1]
    got = backward(g, x, **kw, **extra)
    num = numerical_grad(lambda x_: forward(x_, **kw), x, g, h=H_FD)
    np.testing.assert_allclose(got, num, rtol=1e-7, atol=1e-8)
