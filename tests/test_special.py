"""NaN, infinities and denormals.

Max pooling ranks NaN above everything (a window holding one gives NaN, and
its index is the window's last NaN, as PyTorch's CPU kernel does); the sums
of convolution and average pooling follow IEEE arithmetic (inf + -inf and
0 * inf are NaN) on the zero-padded input, so a padding zero meeting an
infinite weight gives NaN, as in the reference and PyTorch's im2col path
(its oneDNN path skips padding taps). conv2d_backward's grad_input has no
such term, as in PyTorch. Results are compared with the reference and, when
PyTorch is installed, with it. Denormals: the convolution kernels flush
them to zero (they made them 70-340 times slower), each kernel thread
restoring its mode after; pooling keeps them exactly.
"""
import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

SPECIALS = np.array([np.nan, np.inf, -np.inf])
CONV_ALGOS = ["direct", "im2col"]


def sprinkle(rng, shape, dtype, fraction=0.1, values=SPECIALS):
    """Standard normal values with a fraction replaced by NaN / +inf / -inf."""
    a = rng.standard_normal(shape)
    n = max(1, int(a.size * fraction))
    a.flat[rng.choice(a.size, n, replace=False)] = rng.choice(values, n)
    return a.astype(dtype)


def assert_same_specials(got, expected, rtol, what=""):
    """Same NaN and inf positions (and signs), finite values close."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{what}: NaN")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected), err_msg=f"{what}: +inf")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected), err_msg=f"{what}: -inf")
    finite = np.isfinite(expected)
    scale = float(np.abs(expected[finite]).max()) if finite.any() else 0.0
    np.testing.assert_allclose(got[finite], expected[finite], rtol=rtol, atol=rtol * scale,
                               err_msg=what)


# --------------------------------------------------------------------------
# max pooling


def test_window_with_nan_gives_nan():
    x = np.array([[[1.0, np.nan, 3.0, 4.0],
                   [5.0, 6.0, 7.0, 8.0]]])
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, [[[np.nan, 8.0]]])
    np.testing.assert_array_equal(idx, [[[1, 7]]])


def test_last_nan_of_a_window_wins():
    x = np.array([[[np.nan, 1.0], [np.nan, 2.0]]], np.float32)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y).all() and idx.item() == 2


def test_infinities_rank_as_numbers():
    x = np.array([[[-np.inf, -np.inf, 1.0, np.inf],
                   [-np.inf, -np.inf, np.inf, 0.0]]], np.float32)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, [[[-np.inf, np.inf]]])
    np.testing.assert_array_equal(idx, [[[0, 3]]])  # the first of equal maxima


def test_padding_never_wins_over_minus_inf():
    x = np.full((1, 3, 3), -np.inf)
    y, idx = fastconv.max_pool2d(x, 3, 1, 1, return_indices=True)
    assert np.isneginf(y).all()
    assert ((idx >= 0) & (idx < 9)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=1, dilation=(2, 1)),
    dict(kernel_size=2, stride=2),  # the 2x2 fast path
])
def test_max_pool_specials_match_reference(rng, dtype, kw):
    x = sprinkle(rng, (2, 3, 17, 20), dtype, 0.2)
    y, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    ey, eidx = ref.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(idx, eidx)
    g = sprinkle(rng, y.shape, dtype, 0.1)
    with np.errstate(invalid="ignore"):
        expected = ref.max_pool2d_backward(g, x, **kw)
    assert_same_specials(fastconv.max_pool2d_backward(g, x, **kw), expected, 1e-5)
    assert_same_specials(fastconv.max_pool2d_backward(g, x, indices=idx, **kw), expected, 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_max_specials_match_reference(rng, dtype):
    x = sprinkle(rng, (2, 3, 13, 11), dtype, 0.2)
    for size in [(5, 4), (13, 11), 1]:
        y, idx = fastconv.adaptive_max_pool2d(x, size, return_indices=True)
        ey, eidx = ref.adaptive_max_pool2d(x, size, return_indices=True)
        np.testing.assert_array_equal(y, ey)
        np.testing.assert_array_equal(idx, eidx)


# --------------------------------------------------------------------------
# sums: average pooling and convolution


def window_means(x, P, Q):
    """Adaptive average pooling of one (C, H, W) array, window by window in float64
    (the reference's matrix product would spread a NaN into other windows)."""
    C, H, W = x.shape
    out = np.empty((C, P, Q))
    for p in range(P):
        h0, h1 = p * H // P, -(-(p + 1) * H // P)
        for q in range(Q):
            w0, w1 = q * W // Q, -(-(q + 1) * W // Q)
            out[:, p, q] = x[:, h0:h1, w0:w1].astype(np.float64).mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_avg_specials_stay_in_their_windows(rng, dtype):
    x = sprinkle(rng, (3, 13, 11), dtype, 0.05)
    for size in [(5, 4), (13, 11), (6, 11), 1]:
        P, Q = (size, size) if isinstance(size, int) else size
        with np.errstate(invalid="ignore"):
            expected = window_means(x, P, Q)
        assert_same_specials(fastconv.adaptive_avg_pool2d(x, size), expected, 1e-5, str(size))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_avg_backward_specials_stay_in_their_windows(rng, dtype):
    """Each input gets the sum of g / window size over the windows holding it."""
    x = rng.standard_normal((2, 9, 7)).astype(dtype)
    for P, Q in [(4, 3), (9, 7), (1, 1)]:
        g = sprinkle(rng, (2, P, Q), dtype, 0.2)
        expected = np.zeros(x.shape)
        with np.errstate(invalid="ignore"):
            for p in range(P):
                h0, h1 = p * 9 // P, -(-(p + 1) * 9 // P)
                for q in range(Q):
                    w0, w1 = q * 7 // Q, -(-(q + 1) * 7 // Q)
                    expected[:, h0:h1, w0:w1] += (g[:, p, q] / ((h1 - h0) * (w1 - w0)))[:, None,
                                                                                        None]
        assert_same_specials(fastconv.adaptive_avg_pool2d_backward(g, x, (P, Q)), expected,
                             1e-5, f"{(P, Q)}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=1, divisor_override=3),
])
def test_avg_pool_specials_match_reference(rng, dtype, kw):
    x = sprinkle(rng, (2, 3, 17, 20), dtype, 0.05)
    with np.errstate(invalid="ignore"):
        expected = ref.avg_pool2d(x, **kw)
    y = fastconv.avg_pool2d(x, **kw)
    assert_same_specials(y, expected, 1e-5)
    g = sprinkle(rng, y.shape, dtype, 0.05)
    with np.errstate(invalid="ignore"):
        expected = ref.avg_pool2d_backward(g, x, **kw)
    assert_same_specials(fastconv.avg_pool2d_backward(g, x, **kw), expected, 1e-5)


CONV_CASES = [
    dict(w=(4, 3, 3, 3), kw=dict(padding=1)),
    dict(w=(6, 1, 3, 3), kw=dict(padding=1, groups=3)),  # depthwise
    dict(w=(4, 3, 1, 1), kw=dict()),  # pointwise
    dict(w=(4, 3, 2, 3), kw=dict(stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2))),
]


@pytest.mark.parametrize("algorithm", CONV_ALGOS)
@pytest.mark.parametrize("case", CONV_CASES, ids=["3x3", "depthwise", "1x1", "strided"])
@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
def test_conv_specials_match_reference(rng, algorithm, case, where):
    """Specials in one operand at a time: few enough that not every output is NaN."""
    dtype = np.float64
    x = rng.standard_normal((2, 3, 12, 11))
    w = rng.standard_normal(case["w"])
    if where == "input":
        x = sprinkle(rng, x.shape, dtype, 0.01)
    elif where == "weight":
        w.flat[rng.integers(0, w.size)] = rng.choice(SPECIALS)
    with np.errstate(invalid="ignore"):
        expected = ref.conv2d(x, w, **case["kw"])
    y = fastconv.conv2d(x, w, algorithm=algorithm, **case["kw"])
    assert_same_specials(y, expected, 1e-10, "forward")
    g = rng.standard_normal(y.shape)
    if where == "grad_output":
        g = sprinkle(rng, g.shape, dtype, 0.01)
    with np.errstate(invalid="ignore"):
        expected = ref.conv2d_backward(g, x, w, **case["kw"])
    got = fastconv.conv2d_backward(g, x, w, algorithm=algorithm, **case["kw"])
    for a, e, what in zip(got, expected, ("grad_input", "grad_weight", "grad_bias")):
        assert_same_specials(a, e, 1e-10, what)


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("tile", ["winograd-2x2", "winograd-4x4"])
@pytest.mark.parametrize("width", [11, 37])
def test_conv_specials_winograd(rng, algo, tile, dtype, where, groups, width):
    """Winograd's transforms mix a tile's inputs, so an inf would reach outputs
    whose windows do not hold it (inf - inf = NaN): such operands run im2col,
    and the specials land where the reference puts them (also when only one
    group's channels hold them). F(4x4)'s float32 input transform runs eight
    tiles at a time on rows of at most 8 tiles (11 wide) and the generic loop
    on longer ones (37 wide): each checks the input it reads."""
    x = rng.standard_normal((2, 6, 12, width)).astype(dtype)
    w = rng.standard_normal((6, 6 // groups, 3, 3)).astype(dtype)
    if where == "input":
        x = sprinkle(rng, x.shape, dtype, 0.01)
    else:
        w.flat[rng.integers(0, w.size)] = rng.choice(SPECIALS)
    with np.errstate(invalid="ignore"):
        expected = ref.conv2d(x, w, padding=1, groups=groups)
    got = fastconv.conv2d(x, w, padding=1, groups=groups, algorithm=algo(tile))
    assert_same_specials(got, expected, 1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
@pytest.mark.parametrize("tile", ["winograd-2x2", "winograd-4x4"])
def test_conv_backward_specials_winograd(rng, algo, tile, where, groups):
    """grad_input by Winograd convolves grad_output: specials there (or in the
    weights) make the whole backward run as im2col, as the reference places them."""
    x = rng.standard_normal((2, 4, 12, 11))
    w = rng.standard_normal((4, 4 // groups, 3, 3))
    g = rng.standard_normal((2, 4, 12, 11))
    if where == "input":
        x = sprinkle(rng, x.shape, np.float64, 0.01)
    elif where == "weight":
        w.flat[rng.integers(0, w.size)] = rng.choice(SPECIALS)
    else:
        g = sprinkle(rng, g.shape, np.float64, 0.01)
    with np.errstate(invalid="ignore"):
        expected = ref.conv2d_backward(g, x, w, padding=1, groups=groups)
    got = fastconv.conv2d_backward(g, x, w, padding=1, groups=groups, algorithm=algo(tile))
    for a, e, what in zip(got, expected, ("grad_input", "grad_weight", "grad_bias")):
        assert_same_specials(a, e, 1e-10, what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["input", "grad_output"])
@pytest.mark.parametrize("tile", ["winograd-2x2", "winograd-4x4"])
def test_conv_backward_winograd_grad_weight_near_overflow(rng, algo, tile, dtype, where):
    """grad_weight by Winograd sums A dy A^T (.) B^T d B over every tile,
    each factor up to 225 and 100 times its operand (F(4x4)): an input or
    grad_output element near a 30th of the largest float could overflow
    there, where the direct kernels' sums stay finite. Such an input runs
    grad_weight on the direct kernels (their bits, finite); such a
    grad_output also rules out grad_input by Winograd, and all of the
    backward runs im2col."""
    big = np.finfo(dtype).max
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    g = (rng.standard_normal((2, 4, 9, 8)) / 8).astype(dtype)
    if where == "input":
        x[1, 2, 4, 5] = big / 30
    else:
        g[0, 3, 6, 2] = big / 30
        x /= 8
    expected = fastconv.conv2d_backward(
        g, x, w, padding=1, algorithm="direct" if where == "input" else "im2col")[1]
    got = fastconv.conv2d_backward(g, x, w, padding=1, algorithm=algo(tile))[1]
    assert np.isfinite(expected).all()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("tile", ["winograd-2x2", "winograd-4x4"])
def test_conv_winograd_near_overflow(rng, algo, tile, dtype, where, groups):
    """Values whose transforms could overflow (a few times larger than the
    operands) run im2col: the same finite results, or the same infinities."""
    big = np.finfo(dtype).max
    x = rng.standard_normal((1, 2, 6, 6)).astype(dtype)
    w = rng.standard_normal((2, 2 // groups, 3, 3)).astype(dtype)
    if where == "input":
        x[0, 1, 2, 3] = big / 2  # the last group's
        w /= 64
    else:
        w[1, 0, 1, 1] = big / 3
    with np.errstate(over="ignore", invalid="ignore"):
        expected = fastconv.conv2d(x, w, padding=1, groups=groups, algorithm="im2col")
    got = fastconv.conv2d(x, w, padding=1, groups=groups, algorithm=algo(tile))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("tile", ["winograd-2x2", "winograd-4x4"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_winograd_zero_weights_large_input(rng, algo, tile, dtype):
    """Zero weights put no bound on the output, but the input transform
    still multiplies a value by up to 4 (F(2x2)) or 16 (F(4x4)): a third of
    the largest float would become inf there, and 0 * inf NaN, where every
    other strategy gives the bias. Such inputs run im2col."""
    big = np.finfo(dtype).max
    x = rng.standard_normal((1, 2, 9, 8)).astype(dtype)
    x[0, 1, 4, 3] = big / 3
    w = np.zeros((3, 2, 3, 3), dtype)
    b = rng.standard_normal(3).astype(dtype)
    got = fastconv.conv2d(x, w, b, padding=1, algorithm=algo(tile))
    np.testing.assert_array_equal(got, np.broadcast_to(b[None, :, None, None], got.shape))


@pytest.mark.parametrize("tile", ["winograd-2x2", "winograd-4x4"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_winograd_large_weights_tiny_input(rng, algo, tile, dtype):
    """Weights of a fifth of the largest float, on an input small enough that
    the outputs stay finite: F(4x4)'s weight transform would sum g0 + 2 g1 +
    4 g2 to 7/5 of it (inf in float64, NaNs in the output), so such weights
    run im2col; F(2x2)'s sums stay below it. Either way the results match
    im2col's. (Also a check on the overflow bounds' arithmetic: as NumPy
    float32 scalars they overflowed and raised.)"""
    big = np.finfo(dtype).max
    x = (rng.standard_normal((1, 2, 7, 6)) * 1e-7).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    w[0, 0] = big / 5
    expected = fastconv.conv2d(x, w, padding=1, algorithm="im2col")
    got = fastconv.conv2d(x, w, padding=1, algorithm=algo(tile))
    assert np.isfinite(expected).all()
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for k in range(3):  # channel 0 is some 1e30 times the others
        scale = np.abs(expected[:, k]).max()
        np.testing.assert_allclose(got[:, k], expected[:, k], rtol=rtol, atol=rtol * scale)


#: the other Winograd algorithms (R, stride, padding): F(2x2, 5x5), F(3x3,
#: 4x4), F(5x5, 2x2) at stride 1, and strided layers on their phases (11x11/4
#: as F(m x m, 3x3) on 48 channels, 7x7/2 as F(3x3, 4x4))
OTHER_KERNELS = [(5, 1, 2), (4, 1, 1), (2, 1, 0), (11, 4, 2), (7, 2, 3)]


@pytest.mark.parametrize("kernel", OTHER_KERNELS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["input", "weight", "input-special", "weight-special"])
def test_conv_winograd_other_kernels_near_overflow_and_specials(rng, kernel, dtype, where):
    """Each algorithm's own growth bounds (F(5x5, 2x2)'s output transform
    multiplies by up to 35 per pass, F(2x2, 5x5)'s weight transform sums to
    31 times a tap): values that could overflow in its transforms, and
    infinities and NaNs, run im2col, the same bits."""
    R, stride, pad = kernel
    big = np.finfo(dtype).max
    x = rng.standard_normal((2, 2, 15, 14)).astype(dtype)
    w = rng.standard_normal((3, 2, R, R)).astype(dtype)
    if where == "input":
        x[1, 1, 6, 7] = big / 2
        w /= 64
    elif where == "weight":
        w[1, 0, R // 2, R // 2] = big / 3
    elif where == "input-special":
        x = sprinkle(rng, x.shape, dtype, 0.02)
    else:
        w.flat[rng.integers(0, w.size)] = rng.choice(SPECIALS)
    kw = dict(stride=stride, padding=pad)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = fastconv.conv2d(x, w, algorithm="im2col", **kw)
    got = fastconv.conv2d(x, w, algorithm="winograd", **kw)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kernel", OTHER_KERNELS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_winograd_other_kernels_large_weights_tiny_input(rng, kernel, dtype):
    """Weights of a 35th of the largest float on a tiny input, where F(2x2,
    5x5)'s weight transform would sum to 40 times a tap (inf in float64):
    each call either runs Winograd with finite transforms or, by its bounds,
    im2col; either way the results agree with im2col's."""
    R, stride, pad = kernel
    big = np.finfo(dtype).max
    x = (rng.standard_normal((1, 2, 15, 14)) * 1e-7).astype(dtype)
    w = rng.standard_normal((3, 2, R, R)).astype(dtype)
    w[0, 0] = big / 35
    kw = dict(stride=stride, padding=pad)
    expected = fastconv.conv2d(x, w, algorithm="im2col", **kw)
    got = fastconv.conv2d(x, w, algorithm="winograd", **kw)
    assert np.isfinite(expected).all()
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for k in range(3):  # channel 0 is some 1e30 times the others
        scale = np.abs(expected[:, k]).max()
        np.testing.assert_allclose(got[:, k], expected[:, k], rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------
# PyTorch, when installed


@pytest.mark.parametrize("algorithm", CONV_ALGOS)
@pytest.mark.parametrize("case", CONV_CASES, ids=["3x3", "depthwise", "1x1", "strided"])
def test_conv_specials_match_torch(rng, algorithm, case):
    """Specials in the input (and, without padding, in the weight).

    With padding, an infinite weight times a padding zero is NaN by IEEE
    arithmetic on the zero-padded input (fastconv, the reference, PyTorch's
    im2col path); PyTorch's oneDNN path skips padding taps instead, so
    PyTorch's own answer then depends on the shape and is not compared.
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = sprinkle(rng, (2, 3, 12, 11), np.float32, 0.01)
    w = rng.standard_normal(case["w"]).astype(np.float32)
    kw = case["kw"]
    if not kw.get("padding"):
        w.flat[rng.integers(0, w.size)] = np.inf
    pad = kw.get("padding", 0)
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):  # torch: pad asymmetrically first
        (t, b), (left, r) = pad
        xt = F.pad(torch.tensor(x), (left, r, t, b))
        tkw = dict(kw, padding=0)
    else:
        xt, tkw = torch.tensor(x), kw
    xt.requires_grad_(True)
    wt = torch.tensor(w, requires_grad=True)
    yt = F.conv2d(xt, wt, **tkw)
    y = fastconv.conv2d(x, w, algorithm=algorithm, **kw)
    assert_same_specials(y, yt.detach().numpy(), 1e-4, "forward")
    g = rng.standard_normal(y.shape).astype(np.float32)
    if not kw.get("padding"):  # (grad_weight pairs grad_output with the padding)
        g = sprinkle(rng, y.shape, np.float32, 0.01)
    yt.backward(torch.tensor(g))
    gx, gw, _ = fastconv.conv2d_backward(g, x, w, algorithm=algorithm, **kw)
    tgx = xt.grad.numpy()
    if xt.shape != x.shape:  # drop the gradient of the explicit padding
        (t, b), (left, r) = pad
        tgx = tgx[:, :, t:tgx.shape[2] - b, left:tgx.shape[3] - r]
    assert_same_specials(gx, tgx, 1e-4, "grad_input")
    assert_same_specials(gw, wt.grad.numpy(), 1e-4, "grad_weight")


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=1, dilation=2)])
def test_max_pool_specials_match_torch(rng, kw):
    torch = pytest.importorskip("torch")
    x = sprinkle(rng, (2, 3, 17, 20), np.float32, 0.2)
    ty, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    y, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())


@pytest.mark.parametrize("size", [(5, 4), 1, (13, 11)])
def test_adaptive_avg_specials_match_torch(rng, size):
    torch = pytest.importorskip("torch")
    x = sprinkle(rng, (2, 3, 13, 11), np.float32, 0.05)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), size).numpy()
    assert_same_specials(fastconv.adaptive_avg_pool2d(x, size), expected, 1e-5)


# --------------------------------------------------------------------------
# denormals


TINY = {np.float32: np.finfo(np.float32).smallest_subnormal,
        np.float64: np.finfo(np.float64).smallest_subnormal}


def denormals(rng, shape, dtype):
    x = (rng.integers(1, 1000, shape) * TINY[dtype]).astype(dtype)
    assert (x != 0).all() and (np.abs(x) < np.finfo(dtype).tiny).all()
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convolutions_flush_denormals(rng, threads, dtype):
    """The convolution kernels run with flush-to-zero and denormals-are-zero
    (denormals made them 70-340 times slower): denormal inputs count as 0."""
    threads.set_num_threads(2)
    x = denormals(rng, (2, 3, 16, 16), dtype)
    w = np.ones((3, 3, 1, 1), dtype)
    for algorithm in CONV_ALGOS + ["1x1"]:
        assert not fastconv.conv2d(x, w, algorithm=algorithm).any(), algorithm
        y = np.ones((2, 3, 16, 16), dtype)
        gx, gw, _ = fastconv.conv2d_backward(y, x, denormals(rng, w.shape, dtype),
                                             algorithm=algorithm)
        assert not gx.any() and not gw.any(), algorithm
    # results below the normal range flush to 0 too: 1e-20 * 1e-20 (float32), 1e-160 ** 2
    small = np.sqrt(np.finfo(dtype).tiny) / 8
    x = np.full((1, 1, 4, 4), small, dtype)
    assert not fastconv.conv2d(x, np.full((1, 1, 1, 1), small, dtype)).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_denormals_elsewhere_are_kept(rng, threads, dtype):
    """Each kernel thread restores its floating-point mode: after convolutions on
    two threads, pooling on the same OpenMP workers and NumPy in this thread
    still see denormals (max pooling returns them exactly)."""
    threads.set_num_threads(2)
    x = denormals(rng, (1, 4, 128, 128), dtype)  # big enough for pooling to use threads
    fastconv.conv2d(rng.standard_normal((2, 4, 32, 32)).astype(dtype),
                    rng.standard_normal((8, 4, 3, 3)).astype(dtype), algorithm="direct")
    fastconv.conv2d_backward(np.ones((2, 8, 30, 30), dtype), np.ones((2, 4, 32, 32), dtype),
                             np.ones((8, 4, 3, 3), dtype), algorithm="im2col")
    np.testing.assert_array_equal(fastconv.max_pool2d(x, 2), ref.max_pool2d(x, 2))
    y, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    ey, eidx = ref.max_pool2d(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(idx, eidx)
    # sums of denormals are exact: a divisor of 1 keeps them so
    np.testing.assert_array_equal(fastconv.avg_pool2d(x, 2, divisor_override=1),
                                  ref.avg_pool2d(x, 2, divisor_override=1))
    tiny = TINY[dtype]
    assert dtype(tiny) * dtype(3) == dtype(3 * tiny) != 0  # this thread's mode

