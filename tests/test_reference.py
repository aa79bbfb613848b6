"""Tests of the oracle itself, fastconv.reference.

Three independent witnesses: naive loops (convolution written as a sum over
indices; pooling as transliterations of PyTorch's CPU kernels), central finite
differences for every backward, and PyTorch itself (float64) where installed.
"""

import doctest
import importlib.util
import itertools
import math
import pathlib

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

try:
    from fastconv import reference as ref
except ImportError:
    # The package's __init__ needs the compiled kernels; the oracle does not,
    # so load it from its file when they are not built.
    _path = pathlib.Path(__file__).resolve().parents[1] / "fastconv" / "reference.py"
    _spec = importlib.util.spec_from_file_location("fastconv_reference", _path)
    ref = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(ref)

F64 = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def tt(torch, a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def distinct(rng, shape):
    """Values 0.1 apart in random order: no ties, safe for max-pool finite differences."""
    return rng.permutation(math.prod(shape)).reshape(shape) * 0.1 - 3.0


# ---------------------------------------------------------------------------
# Naive implementations
# ---------------------------------------------------------------------------

def naive_conv2d(x, w, b, stride, pads, dilation, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    (top, bottom), (left, right) = pads
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.zeros((N, C, H + top + bottom, W + left + right))
    xp[:, :, top : top + H, left : left + W] = x
    P = (H + top + bottom - dh * (R - 1) - 1) // sh + 1
    Q = (W + left + right - dw * (S - 1) - 1) // sw + 1
    out = np.zeros((N, K, P, Q))
    Kg = K // groups
    for n, k, p, q in itertools.product(range(N), range(K), range(P), range(Q)):
        g = k // Kg
        acc = 0.0 if b is None else b[k]
        for c, r, s in itertools.product(range(Cg), range(R), range(S)):
            acc += w[k, c, r, s] * xp[n, g * Cg + c, p * sh + r * dh, q * sw + s * dw]
        out[n, k, p, q] = acc
    return out


def naive_pool_size(size, k, s, p, d, ceil_mode):
    span = (size + 2 * p - d * (k - 1) - 1) / s
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def naive_max_pool2d(x, k, s, p, d, ceil_mode):
    """PyTorch's CPU max-pool loop (aten/src/ATen/native/cpu/MaxPoolKernel.cpp)."""
    N, C, H, W = x.shape
    OH = naive_pool_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    OW = naive_pool_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    out = np.empty((N, C, OH, OW))
    idx = np.empty((N, C, OH, OW), dtype=np.int64)
    for n, c, oh, ow in itertools.product(range(N), range(C), range(OH), range(OW)):
        h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
        h1 = min(h0 + (k[0] - 1) * d[0] + 1, H)
        w1 = min(w0 + (k[1] - 1) * d[1] + 1, W)
        while h0 < 0:
            h0 += d[0]
        while w0 < 0:
            w0 += d[1]
        best, best_i = -np.inf, (h0 * W + w0 if h0 < h1 and w0 < w1 else -1)
        for h in range(h0, h1, d[0]):
            for w in range(w0, w1, d[1]):
                v = x[n, c, h, w]
                if v > best or np.isnan(v):
                    best, best_i = v, h * W + w
        out[n, c, oh, ow], idx[n, c, oh, ow] = best, best_i
    return out, idx


def naive_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """PyTorch's CPU avg-pool loop (aten/src/ATen/native/cpu/AvgPoolKernel.cpp)."""
    N, C, H, W = x.shape
    OH = naive_pool_size(H, k[0], s[0], p[0], 1, ceil_mode)
    OW = naive_pool_size(W, k[1], s[1], p[1], 1, ceil_mode)
    out = np.zeros((N, C, OH, OW))
    for oh, ow in itertools.product(range(OH), range(OW)):
        h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
        h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])
        pool_size = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
        if divisor_override:
            div = divisor_override
        else:
            div = pool_size if count_include_pad else (h1 - h0) * (w1 - w0)
        out[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / div
    return out


def naive_adaptive(x, OH, OW, reduce):
    N, C, H, W = x.shape
    out = np.empty((N, C, OH, OW))
    for oh, ow in itertools.product(range(OH), range(OW)):
        h0, h1 = (oh * H) // OH, -(-((oh + 1) * H) // OH)
        w0, w1 = (ow * W) // OW, -(-((ow + 1) * W) // OW)
        out[:, :, oh, ow] = reduce(x[:, :, h0:h1, w0:w1], axis=(2, 3))
    return out


def numeric_grad(loss, a, eps=1e-6):
    """Central finite differences of the scalar loss() with respect to a (in place)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        up = loss()
        a[i] = old - eps
        down = loss()
        a[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


# ---------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------

# (x shape, w shape, bias, stride, padding, dilation, groups, pads for the naive loop)
CONV_CASES = [
    ((2, 4, 7, 7), (3, 4, 3, 3), True, 1, 0, 1, 1, ((0, 0), (0, 0))),
    ((1, 3, 8, 6), (2, 3, 3, 2), False, 2, 1, 1, 1, ((1, 1), (1, 1))),
    ((2, 2, 9, 8), (2, 2, 3, 3), True, (2, 1), (1, 2), (2, 1), 1, ((1, 1), (2, 2))),
    ((1, 4, 6, 7), (4, 2, 2, 3), True, 1, ((1, 2), (0, 3)), 1, 2, ((1, 2), (0, 3))),
    ((2, 4, 6, 6), (8, 1, 3, 3), True, 1, 1, 1, 4, ((1, 1), (1, 1))),  # depthwise x2
    ((1, 3, 5, 5), (3, 1, 3, 3), False, 2, 2, 2, 3, ((2, 2), (2, 2))),  # depthwise x1
    ((1, 2, 6, 5), (3, 2, 2, 4), True, 1, "same", (2, 1), 1, ((1, 1), (1, 2))),
    ((1, 2, 5, 6), (2, 2, 3, 3), False, 1, "same", 1, 1, ((1, 1), (1, 1))),
    ((1, 2, 5, 6), (2, 2, 3, 2), False, 1, "valid", 1, 1, ((0, 0), (0, 0))),
    ((2, 3, 5, 4), (4, 3, 1, 1), True, 2, 1, 3, 1, ((1, 1), (1, 1))),  # 1x1
    ((1, 2, 1, 1), (3, 2, 1, 1), True, 1, 0, 1, 1, ((0, 0), (0, 0))),  # 1 pixel
    ((1, 1, 3, 9), (2, 1, 1, 5), False, (1, 3), (0, 2), 1, 1, ((0, 0), (2, 2))),
    ((1, 2, 7, 7), (2, 2, 7, 7), False, 1, 3, 1, 1, ((3, 3), (3, 3))),  # 7x7
    ((1, 6, 5, 5), (6, 2, 3, 3), True, 1, [1, 0], 1, 3, ((1, 1), (0, 0))),
]


def _conv_args(case, rng):
    xs, ws, has_bias, stride, padding, dilation, groups, pads = case
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if has_bias else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups), pads


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_naive_loops(case, rng):
    x, w, b, kw, pads = _conv_args(case, rng)
    stride, dilation = _pairs(kw["stride"], kw["dilation"])
    expected = naive_conv2d(x, w, b, stride, pads, dilation, kw["groups"])
    assert_allclose(ref.conv2d(x, w, b, **kw), expected, **F64)


@pytest.mark.parametrize("case", CONV_CASES[:10])
def test_conv2d_backward_matches_finite_differences(case, rng):
    x, w, b, kw, _ = _conv_args(case, rng)
    b = rng.standard_normal(w.shape[0])
    G = rng.standard_normal(ref.conv2d(x, w, b, **kw).shape)

    def loss():
        return np.sum(ref.conv2d(x, w, b, **kw) * G)

    gx, gw, gb = ref.conv2d_backward(G, x, w, **kw)
    # conv2d is linear in each argument, so central differences are exact up to rounding.
    assert_allclose(gx, numeric_grad(loss, x), rtol=1e-6, atol=1e-7)
    assert_allclose(gw, numeric_grad(loss, w), rtol=1e-6, atol=1e-7)
    assert_allclose(gb, numeric_grad(loss, b), rtol=1e-6, atol=1e-7)


def _torch_conv_args(torch, case, x, w, b, kw):
    """torch has no asymmetric padding argument: pad the input first."""
    F = torch.nn.functional
    padding = kw["padding"]
    xt, wt = tt(torch, x, True), tt(torch, w, True)
    bt = tt(torch, b, True) if b is not None else None
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        (top, bottom), (left, right) = padding
        xin, padding = F.pad(xt, (left, right, top, bottom)), 0
    elif padding == "same":
        (top, bottom), (left, right) = case[-1]
        xin, padding = F.pad(xt, (left, right, top, bottom)), 0
    else:
        xin = xt
    if isinstance(padding, list):
        padding = tuple(padding)
    y = F.conv2d(xin, wt, bt, stride=kw["stride"], padding=padding,
                 dilation=kw["dilation"], groups=kw["groups"])
    return xt, wt, bt, y


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("unbatched", [False, True])
def test_conv2d_and_backward_match_torch(case, unbatched, rng, torch):
    x, w, b, kw, _ = _conv_args(case, rng)
    b = rng.standard_normal(w.shape[0])
    xt, wt, bt, yt = _torch_conv_args(torch, case, x, w, b, kw)
    G = rng.standard_normal(tuple(yt.shape))
    yt.backward(tt(torch, G))
    if unbatched:
        x, G = x[0], G[0]
    y = ref.conv2d(x, w, b, **kw)
    gx, gw, gb = ref.conv2d_backward(G, x, w, **kw)
    assert_allclose(y, yt.detach().numpy()[0] if unbatched else yt.detach().numpy(), **F64)
    assert_allclose(gx, xt.grad.numpy()[0] if unbatched else xt.grad.numpy(), **F64)
    if not unbatched:  # torch's weight/bias grads are for the whole batch
        assert_allclose(gw, wt.grad.numpy(), **F64)
        assert_allclose(gb, bt.grad.numpy(), **F64)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("kernel", [(2, 2), (4, 3), (1, 4), (3, 5)])
@pytest.mark.parametrize("dilation", [1, 2, (1, 3)])
def test_conv2d_same_matches_torch_same(kernel, dilation, rng, torch):
    x = rng.standard_normal((1, 2, 7, 8))
    w = rng.standard_normal((3, 2) + kernel)
    expected = torch.nn.functional.conv2d(tt(torch, x), tt(torch, w), padding="same",
                                          dilation=dilation).numpy()
    y = ref.conv2d(x, w, padding="same", dilation=dilation)
    assert y.shape == (1, 3, 7, 8)
    assert_allclose(y, expected, **F64)


def test_conv2d_empty_batch(rng):
    w = rng.standard_normal((5, 3, 3, 3))
    y = ref.conv2d(np.zeros((0, 3, 6, 6)), w, np.zeros(5), padding=1)
    assert y.shape == (0, 5, 6, 6)
    gx, gw, gb = ref.conv2d_backward(np.zeros((0, 5, 6, 6)), np.zeros((0, 3, 6, 6)), w, padding=1)
    assert gx.shape == (0, 3, 6, 6)
    assert_array_equal(gw, np.zeros_like(w))
    assert_array_equal(gb, np.zeros(5))


# ---------------------------------------------------------------------------
# Pooling: naive loops and finite differences
# ---------------------------------------------------------------------------

# (input shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    ((2, 3, 7, 7), 2, None, 0, 1, False),
    ((1, 2, 7, 8), 3, 2, 1, 1, False),
    ((1, 2, 7, 8), 3, 2, 1, 1, True),
    ((2, 2, 9, 6), (3, 2), (2, 1), (1, 1), (2, 1), True),
    ((1, 2, 6, 6), 3, 1, 1, 2, False),
    ((1, 1, 5, 9), (1, 4), (1, 3), (0, 2), 1, True),
    ((1, 2, 1, 1), 1, 1, 0, 1, False),
    ((1, 2, 8, 8), 2, 3, 1, 3, True),
    ((1, 2, 10, 10), 5, 3, 2, 1, True),
]

AVG_CASES = [
    # (input shape, kernel_size, stride, padding, ceil_mode)
    ((2, 3, 7, 7), 2, None, 0, False),
    ((1, 2, 7, 8), 3, 2, 1, False),
    ((1, 2, 7, 8), 3, 2, 1, True),
    ((1, 2, 5, 5), 3, 2, 1, True),
    ((2, 2, 9, 6), (3, 2), (2, 1), (1, 1), True),
    ((1, 1, 4, 9), (4, 4), (3, 2), (2, 2), True),
    ((1, 2, 1, 1), 1, 1, 0, False),
]
AVG_OPTIONS = [(True, None), (False, None), (True, 2), (False, -3)]

ADAPTIVE_CASES = [
    ((2, 3, 7, 7), 3),
    ((1, 2, 9, 5), (4, 2)),
    ((1, 2, 5, 6), 1),
    ((1, 2, 4, 5), (7, 9)),  # larger than the input: overlapping windows
    ((1, 2, 6, 7), (None, 3)),
    ((1, 2, 6, 7), (4, None)),
    ((1, 1, 1, 1), 1),
]


def _adaptive_size(shape, output_size):
    pair = output_size if isinstance(output_size, tuple) else (output_size, output_size)
    return tuple(n if o is None else o for o, n in zip(pair, shape[2:]))


def _pairs(*values):
    return [v if isinstance(v, tuple) else (v, v) for v in values]


@pytest.mark.parametrize("case", MAX_CASES)
def test_max_pool2d_matches_naive_loop(case, rng):
    shape, k, s, p, d, ceil_mode = case
    x = rng.integers(-2, 3, size=shape).astype(float)  # many ties
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.1] = -np.inf
    out, idx = ref.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
    k2, p2, d2 = _pairs(k, p, d)
    s2 = k2 if s is None else _pairs(s)[0]
    expected, expected_idx = naive_max_pool2d(x, k2, s2, p2, d2, ceil_mode)
    assert_array_equal(out, expected)  # NaN == NaN for assert_array_equal
    assert_array_equal(idx, expected_idx)
    assert idx.dtype == np.int64


@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_OPTIONS)
def test_avg_pool2d_matches_naive_loop(case, count_include_pad, divisor_override, rng):
    shape, k, s, p, ceil_mode = case
    x = rng.standard_normal(shape)
    y = ref.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override)
    k2, p2 = _pairs(k, p)
    s2 = k2 if s is None else _pairs(s)[0]
    expected = naive_avg_pool2d(x, k2, s2, p2, ceil_mode, count_include_pad, divisor_override)
    assert_allclose(y, expected, **F64)


@pytest.mark.parametrize("case", ADAPTIVE_CASES)
def test_adaptive_pools_match_naive_loops(case, rng):
    shape, output_size = case
    x = rng.standard_normal(shape)
    OH, OW = _adaptive_size(shape, output_size)
    assert_allclose(ref.adaptive_avg_pool2d(x, output_size),
                    naive_adaptive(x, OH, OW, np.mean), **F64)
    assert_array_equal(ref.adaptive_max_pool2d(x, output_size),
                       naive_adaptive(x, OH, OW, np.max))


@pytest.mark.parametrize("case", MAX_CASES)
def test_max_pool2d_backward_matches_finite_differences(case, rng):
    shape, k, s, p, d, ceil_mode = case
    x = distinct(rng, shape)
    args = (k, s, p, d, ceil_mode)
    out, idx = ref.max_pool2d(x, *args, return_indices=True)
    G = rng.standard_normal(out.shape)
    g = ref.max_pool2d_backward(G, x, *args)
    assert_allclose(g, numeric_grad(lambda: np.sum(ref.max_pool2d(x, *args) * G), x),
                    rtol=1e-6, atol=1e-7)
    assert_allclose(ref.max_pool2d_backward(G, x, *args, indices=idx), g, **F64)


@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_OPTIONS)
def test_avg_pool2d_backward_matches_finite_differences(case, count_include_pad,
                                                         divisor_override, rng):
    shape, k, s, p, ceil_mode = case
    x = rng.standard_normal(shape)
    args = (k, s, p, ceil_mode, count_include_pad, divisor_override)
    G = rng.standard_normal(ref.avg_pool2d(x, *args).shape)
    g = ref.avg_pool2d_backward(G, x, *args)
    assert_allclose(g, numeric_grad(lambda: np.sum(ref.avg_pool2d(x, *args) * G), x),
                    rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", ADAPTIVE_CASES)
def test_adaptive_backwards_match_finite_differences(case, rng):
    shape, output_size = case
    x = distinct(rng, shape)
    G = rng.standard_normal(shape[:2] + _adaptive_size(shape, output_size))
    g = ref.adaptive_avg_pool2d_backward(G, x, output_size)
    assert_allclose(g, numeric_grad(
        lambda: np.sum(ref.adaptive_avg_pool2d(x, output_size) * G), x), rtol=1e-6, atol=1e-7)
    g = ref.adaptive_max_pool2d_backward(G, x, output_size)
    assert_allclose(g, numeric_grad(
        lambda: np.sum(ref.adaptive_max_pool2d(x, output_size) * G), x), rtol=1e-6, atol=1e-7)
    _, idx = ref.adaptive_max_pool2d(x, output_size, return_indices=True)
    assert_allclose(ref.adaptive_max_pool2d_backward(G, x, output_size, indices=idx), g, **F64)


# ---------------------------------------------------------------------------
# Max-pooling corner cases, spelled out
# ---------------------------------------------------------------------------

NAN, INF = np.nan, np.inf


@pytest.mark.parametrize("window, value, index", [
    ([[1.0, 3.0], [3.0, 3.0]], 3.0, 1),        # tie: the first maximum
    ([[1.0, NAN], [NAN, 2.0]], NAN, 2),        # several NaN: the last NaN
    ([[NAN, 1.0], [2.0, NAN]], NAN, 3),
    ([[INF, NAN], [3.0, INF]], NAN, 1),        # NaN beats +inf
    ([[-INF, -INF], [-INF, -INF]], -INF, 0),   # all -inf: the first element
    ([[NAN, NAN], [NAN, NAN]], NAN, 3),
])
def test_max_pool_nan_tie_rules(window, value, index):
    x = np.array([window])
    for out, idx in (ref.max_pool2d(x, 2, return_indices=True),
                     ref.adaptive_max_pool2d(x, 1, return_indices=True)):
        assert_array_equal(out, [[[value]]])
        assert_array_equal(idx, [[[index]]])
    g = ref.max_pool2d_backward(np.array([[[5.0]]]), x, 2)
    assert_array_equal(g.ravel(), np.eye(4)[index] * 5.0)


def test_max_pool_padding_is_never_selected():
    x = np.full((1, 3, 3), -np.inf)
    out, idx = ref.max_pool2d(x, 2, padding=1, return_indices=True)
    assert_array_equal(out, np.full((1, 2, 2), -np.inf))
    assert_array_equal(idx, [[[0, 1], [3, 4]]])
    # the first element inside the input, reached in steps of the dilation
    out, idx = ref.max_pool2d(np.full((1, 5, 5), -np.inf), 3, padding=1, dilation=2,
                              return_indices=True)
    assert_array_equal(idx, [[[6]]])


def test_max_pool_window_of_padding_only():
    # kernel 2, dilation 2, padding 1 on a 1-row input: rows -1 and 1, neither
    # in the input.  Value -inf (as torch), index -1 (torch: outside the plane),
    # and no gradient flows.
    x = np.arange(1.0, 7.0).reshape(1, 2, 1, 3)
    out, idx = ref.max_pool2d(x, 2, dilation=2, padding=1, return_indices=True)
    assert_array_equal(out, np.full((1, 2, 1, 2), -np.inf))
    assert_array_equal(idx, np.full((1, 2, 1, 2), -1))
    G = np.ones((1, 2, 1, 2))
    assert_array_equal(ref.max_pool2d_backward(G, x, 2, dilation=2, padding=1), 0 * x)
    assert_array_equal(ref.max_pool2d_backward(G, x, 2, dilation=2, padding=1, indices=idx),
                       0 * x)


def test_max_pool_backward_accumulates_overlapping_windows():
    x = np.array([[[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]])
    g = ref.max_pool2d_backward(np.ones((1, 2, 2)), x, 2, stride=1)
    assert g[0, 1, 1] == 4.0 and g.sum() == 4.0


def test_max_pool_backward_uses_given_indices():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    indices = np.array([[[[0, 3], [12, 15]]]])
    g = ref.max_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, indices=indices)
    assert_array_equal(np.flatnonzero(g), [0, 3, 12, 15])


# ---------------------------------------------------------------------------
# Pooling against torch
# ---------------------------------------------------------------------------

def _torch_pool(torch, fn, x, G, *args, **kwargs):
    """torch forward (and indices, if any) and grad_input for grad_output G."""
    xt = tt(torch, x, True)
    res = fn(xt, *args, **kwargs)
    out, idx = res if isinstance(res, tuple) else (res, None)
    out.backward(tt(torch, G))
    return (out.detach().numpy(), None if idx is None else idx.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("case", MAX_CASES)
@pytest.mark.parametrize("data", ["distinct", "ties_nan_inf"])
def test_max_pool2d_matches_torch(case, data, rng, torch):
    shape, k, s, p, d, ceil_mode = case
    if data == "distinct":
        x = distinct(rng, shape)
    else:
        x = rng.integers(-2, 3, size=shape).astype(float)
        x[rng.random(shape) < 0.15] = np.nan
        x[rng.random(shape) < 0.15] = -np.inf
    args = (k, s, p, d, ceil_mode)
    out, idx = ref.max_pool2d(x, *args, return_indices=True)
    # torch's backward corrupts memory on windows covering only padding
    assert (idx >= 0).all()
    G = rng.standard_normal(out.shape)
    t_out, t_idx, t_grad = _torch_pool(torch, torch.nn.functional.max_pool2d, x, G,
                                       k, s if s is not None else k, p, d, ceil_mode,
                                       return_indices=True)
    assert_array_equal(out, t_out)
    assert_array_equal(idx, t_idx)
    assert_allclose(ref.max_pool2d_backward(G, x, *args), t_grad, **F64)
    assert_allclose(ref.max_pool2d_backward(G, x, *args, indices=t_idx), t_grad, **F64)
    # unbatched
    assert_array_equal(ref.max_pool2d(x[0], *args), t_out[0])
    assert_allclose(ref.max_pool2d_backward(G[0], x[0], *args, indices=idx[0]), t_grad[0], **F64)


def test_max_pool_window_of_padding_only_value_matches_torch(torch):
    # torch's index there lies outside the plane and its backward corrupts the
    # heap (torch 2.13), so only the forward value is compared.
    x = np.arange(1.0, 7.0).reshape(1, 2, 1, 3)
    expected = torch.nn.functional.max_pool2d(tt(torch, x), 2, dilation=2, padding=1)
    assert_array_equal(ref.max_pool2d(x, 2, dilation=2, padding=1), expected.numpy())


@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_OPTIONS)
def test_avg_pool2d_matches_torch(case, count_include_pad, divisor_override, rng, torch):
    shape, k, s, p, ceil_mode = case
    x = rng.standard_normal(shape)
    args = (k, s, p, ceil_mode, count_include_pad, divisor_override)
    y = ref.avg_pool2d(x, *args)
    G = rng.standard_normal(y.shape)
    t_out, _, t_grad = _torch_pool(torch, torch.nn.functional.avg_pool2d, x, G,
                                   k, s if s is not None else k, p, ceil_mode,
                                   count_include_pad, divisor_override)
    assert_allclose(y, t_out, **F64)
    assert_allclose(ref.avg_pool2d_backward(G, x, *args), t_grad, **F64)
    assert_allclose(ref.avg_pool2d_backward(G[0], x[0], *args), t_grad[0], **F64)


@pytest.mark.parametrize("case", ADAPTIVE_CASES)
@pytest.mark.parametrize("data", ["distinct", "ties_nan_inf"])
def test_adaptive_pools_match_torch(case, data, rng, torch):
    F = torch.nn.functional
    shape, output_size = case
    if data == "distinct":
        x = distinct(rng, shape)
    else:
        x = rng.integers(-2, 3, size=shape).astype(float)
        x[rng.random(shape) < 0.15] = np.nan
        x[rng.random(shape) < 0.15] = -np.inf
    G = rng.standard_normal(shape[:2] + _adaptive_size(shape, output_size))

    out, idx = ref.adaptive_max_pool2d(x, output_size, return_indices=True)
    t_out, t_idx, t_grad = _torch_pool(torch, F.adaptive_max_pool2d, x, G, output_size,
                                       return_indices=True)
    assert_array_equal(out, t_out)
    assert_array_equal(idx, t_idx)
    assert_allclose(ref.adaptive_max_pool2d_backward(G, x, output_size), t_grad, **F64)
    assert_allclose(ref.adaptive_max_pool2d_backward(G[0], x[0], output_size, indices=idx[0]),
                    t_grad[0], **F64)

    if data == "distinct":
        t_out, _, t_grad = _torch_pool(torch, F.adaptive_avg_pool2d, x, G, output_size)
        assert_allclose(ref.adaptive_avg_pool2d(x, output_size), t_out, **F64)
        assert_allclose(ref.adaptive_avg_pool2d_backward(G, x, output_size), t_grad, **F64)
        assert_allclose(ref.adaptive_avg_pool2d_backward(G[0], x[0], output_size),
                        t_grad[0], **F64)


def test_pool_output_sizes_match_torch(torch):
    """Output size (floor and ceil mode) over a grid, including 'too small' errors."""
    F = torch.nn.functional
    for size, k, s, d, ceil_mode in itertools.product(range(1, 10), range(1, 5), range(1, 4),
                                                      (1, 2), (False, True)):
        for p in range(k // 2 + 1):
            x = np.zeros((1, 1, size, 3))
            kw = dict(kernel_size=(k, 1), stride=(s, 1), padding=(p, 0), dilation=(d, 1),
                      ceil_mode=ceil_mode)
            try:
                expected = F.max_pool2d(tt(torch, x), **kw).shape
            except RuntimeError:
                with pytest.raises(ValueError, match="max_pool2d: .*kernel_size"):
                    ref.max_pool2d(x, **kw)
                continue
            assert ref.max_pool2d(x, **kw).shape == expected, kw
            if d == 1:
                del kw["dilation"]
                assert ref.avg_pool2d(x, **kw).shape == F.avg_pool2d(tt(torch, x), **kw).shape


# ---------------------------------------------------------------------------
# Shapes, dtypes, errors, docs
# ---------------------------------------------------------------------------

POOL_CALLS = [
    (ref.max_pool2d, ref.max_pool2d_backward, (3, 2, 1, 1, True)),
    (ref.avg_pool2d, ref.avg_pool2d_backward, (3, 2, 1, True, False, None)),
    (ref.adaptive_avg_pool2d, ref.adaptive_avg_pool2d_backward, ((3, None),)),
    (ref.adaptive_max_pool2d, ref.adaptive_max_pool2d_backward, (2,)),
]


@pytest.mark.parametrize("forward, backward, args", POOL_CALLS)
def test_pool_unbatched_and_empty_batch(forward, backward, args, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    y = forward(x, *args)
    G = rng.standard_normal(y.shape)
    assert_allclose(forward(x[1], *args), y[1], **F64)
    assert_allclose(backward(G[1], x[1], *args), backward(G, x, *args)[1], **F64)
    empty = np.zeros((0, 3, 7, 6))
    assert forward(empty, *args).shape == (0,) + y.shape[1:]
    assert backward(np.zeros((0,) + y.shape[1:]), empty, *args).shape == empty.shape


@pytest.mark.parametrize("dtype, expected", [
    (np.float32, np.float32), (np.float64, np.float64), (np.float16, np.float32),
    (np.int32, np.float64), (np.uint8, np.float64), (np.int64, np.float64),
])
def test_result_dtype_policy(dtype, expected, rng):
    x = rng.integers(0, 5, size=(1, 2, 5, 5)).astype(dtype)
    w = rng.integers(-2, 3, size=(2, 2, 3, 3)).astype(dtype)
    assert ref.conv2d(x, w).dtype == expected
    assert all(g.dtype == expected for g in ref.conv2d_backward(np.ones((1, 2, 3, 3), dtype), x, w))
    for forward, backward, args in POOL_CALLS:
        y = forward(x, *args)
        assert y.dtype == expected
        assert backward(np.ones(y.shape, dtype), x, *args).dtype == expected
    _, idx = ref.max_pool2d(x, 2, return_indices=True)
    assert idx.dtype == np.int64


def test_mixed_float32_float64_and_lists_promote_to_float64(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3))
    assert ref.conv2d(x, w).dtype == np.float64
    assert ref.conv2d(x, w.astype(np.float32), bias=np.zeros(2)).dtype == np.float64
    assert ref.max_pool2d_backward(np.ones((1, 2, 2, 2)), x, 2).dtype == np.float64
    y = ref.conv2d(x.tolist(), w.astype(np.float32))
    assert y.dtype == np.float64
    assert ref.conv2d([[[1, 2], [3, 4]]], [[[[1, 1], [1, 1]]]]).tolist() == [[[10.0]]]


@pytest.mark.parametrize("bad", [
    np.ones((1, 1, 3, 3), bool), np.ones((1, 1, 3, 3), complex), np.array([[["a"]]]),
])
def test_unsupported_dtypes_raise_type_error(bad):
    with pytest.raises(TypeError, match="conv2d: input"):
        ref.conv2d(bad, np.ones((1, 1, 1, 1)))
    with pytest.raises(TypeError, match="max_pool2d: input"):
        ref.max_pool2d(bad, 1)


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((2, 2, 3, 3))
    x0, w0 = x.copy(), w.copy()
    x.flags.writeable = w.flags.writeable = False
    ref.conv2d_backward(np.ones((1, 2, 3, 3)), x, w)
    ref.max_pool2d_backward(np.ones((1, 2, 2, 2)), x, 2)
    ref.avg_pool2d_backward(np.ones((1, 2, 3, 3)), x, 2, 2, 1)
    assert_array_equal(x, x0)
    assert_array_equal(w, w0)


@pytest.mark.parametrize("call, error, match", [
    (lambda: ref.conv2d(np.ones((1, 3, 5, 5)), np.ones((2, 2, 3, 3))), ValueError,
     r"conv2d: weight"),
    (lambda: ref.conv2d(np.ones((1, 4, 5, 5)), np.ones((3, 2, 3, 3)), groups=2), ValueError,
     r"conv2d: weight"),
    (lambda: ref.conv2d(np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)), stride=2,
                        padding="same"), ValueError, r"conv2d: stride.*same"),
    (lambda: ref.conv2d(np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)), padding="full"),
     ValueError, r"conv2d: padding.*'full'"),
    (lambda: ref.conv2d(np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)), stride=0), ValueError,
     r"conv2d: stride.*0"),
    (lambda: ref.conv2d(np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)), padding=-1), ValueError,
     r"conv2d: padding.*-1"),
    (lambda: ref.conv2d(np.ones((1, 2, 2, 2)), np.ones((2, 2, 3, 3))), ValueError,
     r"conv2d: kernel"),
    (lambda: ref.conv2d(np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)), np.ones(3)), ValueError,
     r"conv2d: bias"),
    (lambda: ref.conv2d(np.ones((2, 5, 5)), np.ones((2, 2, 3, 3)), stride=1.5), TypeError,
     r"conv2d: stride"),
    (lambda: ref.conv2d(np.ones((5, 5)), np.ones((2, 2, 3, 3))), ValueError,
     r"conv2d: input.*\(5, 5\)"),
    (lambda: ref.conv2d_backward(np.ones((1, 2, 2, 3)), np.ones((1, 2, 5, 5)),
                                 np.ones((2, 2, 3, 3))), ValueError,
     r"conv2d_backward: grad_output.*\(1, 2, 2, 3\)"),
    (lambda: ref.max_pool2d(np.ones((1, 1, 2, 2)), 3), ValueError, r"max_pool2d: kernel_size"),
    (lambda: ref.max_pool2d_backward(np.ones((1, 1, 1, 1)), np.ones((1, 1, 4, 4)), 2),
     ValueError, r"max_pool2d_backward: grad_output"),
    (lambda: ref.max_pool2d_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 4, 4)), 2,
                                     indices=np.full((1, 1, 2, 2), 16)), ValueError,
     r"max_pool2d_backward: indices.*16"),
    (lambda: ref.max_pool2d_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 4, 4)), 2,
                                     indices=np.zeros((1, 1, 2, 1), int)), ValueError,
     r"max_pool2d_backward: indices"),
    (lambda: ref.avg_pool2d(np.ones((1, 1, 4, 4)), 2, divisor_override=0), ValueError,
     r"avg_pool2d: divisor_override.*0"),
    (lambda: ref.adaptive_avg_pool2d(np.ones((1, 1, 4, 4)), (0, 2)), ValueError,
     r"adaptive_avg_pool2d: output_size.*0"),
    (lambda: ref.adaptive_max_pool2d_backward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 4, 4)), 2),
     ValueError, r"adaptive_max_pool2d_backward: grad_output"),
])
def test_errors_name_function_parameter_and_value(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_docstring_examples():
    result = doctest.testmod(ref, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
