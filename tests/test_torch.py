"""Cross-check every function against PyTorch CPU in float64 (skipped without torch).

Asymmetric padding has no direct PyTorch form, so torch gets F.pad first.
PyTorch's CPU max pooling rejects padding > kernel_size // 2 even when the
dilated kernel is larger (fastconv allows up to half the dilated kernel), so
those combinations are compared with the reference only (test_pool.py).
"""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastconv  # noqa: E402

RTOL = 1e-10


def t(a, grad=False):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=grad)


def n(tensor):
    return tensor.detach().numpy()


def close(got, expected, what=""):
    expected = np.asarray(expected)
    assert got.shape == expected.shape, what
    finite = expected[np.isfinite(expected)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * scale, equal_nan=True,
                               err_msg=what)


# --------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------

CONV = [
    pytest.param((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=1), id="k3-pad1"),
    pytest.param((2, 3, 8, 9), (4, 3, 5, 2), dict(stride=(2, 3), padding=(2, 1)),
                 id="rect-stride-pad"),
    pytest.param((1, 4, 9, 8), (6, 2, 3, 3), dict(groups=2, dilation=(2, 1), padding=2),
                 id="groups-dil"),
    pytest.param((2, 4, 7, 7), (8, 1, 3, 3), dict(groups=4, padding=1), id="depthwise-mult2"),
    pytest.param((1, 3, 6, 7), (2, 3, 4, 2), dict(padding="same"), id="same-even"),
    pytest.param((1, 3, 6, 7), (2, 3, 3, 4), dict(padding="same", dilation=2),
                 id="same-even-dil"),
    pytest.param((1, 2, 5, 6), (3, 2, 2, 3), dict(padding="valid", stride=2), id="valid"),
    pytest.param((2, 3, 5, 4), (4, 3, 2, 2), dict(padding=((0, 2), (1, 0)), stride=(1, 2)),
                 id="asym"),
    pytest.param((1, 4, 6, 6), (4, 2, 3, 1), dict(padding=((1, 2), (3, 0)), groups=2,
                                                 dilation=(1, 2)), id="asym-groups-dil"),
    pytest.param((3, 5, 4, 6), (7, 5, 1, 1), dict(stride=2, padding=1), id="1x1-stride-pad"),
    pytest.param((2, 1, 1, 1), (3, 1, 3, 3), dict(padding=1), id="1px"),
    pytest.param((1, 2, 7, 7), (2, 2, 7, 7), dict(), id="k7-exact"),
    pytest.param((0, 3, 5, 5), (2, 3, 3, 3), dict(), id="N0"),
    pytest.param((3, 6, 5), (4, 3, 3, 2), dict(padding=(1, 0)), id="unbatched"),
    pytest.param((4, 5, 6), (4, 2, 3, 2), dict(groups=2, padding=((1, 0), (0, 1))),
                 id="unbatched-groups-asym"),
]


def torch_conv(x, w, b, kw):
    """F.conv2d with fastconv's arguments (asymmetric padding via F.pad)."""
    kw = dict(kw)
    padding = kw.pop("padding", 0)
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        (top, bottom), (left, right) = padding
        x = F.pad(x, (left, right, top, bottom))
        padding = 0
    with warnings.catch_warnings():
        # torch warns (once per process) that "same" with an even kernel copies the input
        warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
        return F.conv2d(x, w, b, padding=padding, **kw)


def winograd_fits(c):
    x_shape, w_shape, kw = c.values
    return w_shape[2:] == (3, 3) and kw.get("stride", 1) == 1


CONV_ALGORITHMS = [
    pytest.param(*c.values, a, id=f"{c.id}-{a}") for c in CONV
    for a in ("direct", "im2col", "1x1", "winograd-2x2", "winograd-4x4", "auto")
    if (a != "1x1" or c.values[1][2:] == (1, 1))
    and (not a.startswith("winograd") or winograd_fits(c))]


@pytest.mark.parametrize("x_shape, w_shape, kw, algorithm", CONV_ALGORITHMS)
def test_conv2d_forward_and_backward(rng, algo, x_shape, w_shape, kw, algorithm):
    algorithm = algo(algorithm)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    tx, tw, tb = t(x, True), t(w, True), t(b, True)
    ty = torch_conv(tx, tw, tb, kw)
    close(fastconv.conv2d(x, w, b, algorithm=algorithm, **kw), n(ty), "forward")
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(t(g))
    gi, gw, gb = fastconv.conv2d_backward(g, x, w, algorithm=algorithm, **kw)
    close(gi, n(tx.grad), "grad_input")
    close(gw, n(tw.grad), "grad_weight")
    close(gb, n(tb.grad), "grad_bias")


@pytest.mark.parametrize("x_shape, w_shape, kw", CONV[:4])
def test_conv2d_backward_matches_aten_convolution_backward(rng, x_shape, w_shape, kw):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    kw = dict(kw)
    stride = kw.get("stride", 1)
    dilation = kw.get("dilation", 1)
    padding = kw.get("padding", 0)
    pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]  # noqa: E731
    y = fastconv.conv2d(x, w, **kw)
    g = rng.standard_normal(y.shape)
    gi, gw, gb = torch.ops.aten.convolution_backward(
        t(g), t(x), t(w), [w_shape[0]], pair(stride), pair(padding), pair(dilation),
        False, [0, 0], kw.get("groups", 1), [True, True, True])
    ours = fastconv.conv2d_backward(g, x, w, **kw)
    for a, e in zip(ours, (gi, gw, gb)):
        close(a, n(e))


# --------------------------------------------------------------------------
# max pooling
# --------------------------------------------------------------------------

MAX = [
    pytest.param((2, 3, 7, 8), dict(kernel_size=2), id="k2"),
    pytest.param((2, 3, 7, 8), dict(kernel_size=3, stride=2, padding=1), id="k3-s2-p1"),
    pytest.param((1, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                 id="ceil"),
    pytest.param((1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
                 id="ceil-last-window-dropped"),
    pytest.param((1, 2, 9, 8), dict(kernel_size=3, stride=1, padding=1, dilation=2),
                 id="dilation"),
    pytest.param((2, 2, 7, 9), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1),
                                    dilation=(2, 1), ceil_mode=True), id="rect-all"),
    pytest.param((1, 2, 1, 1), dict(kernel_size=2, padding=1), id="1px"),
    pytest.param((0, 2, 4, 4), dict(kernel_size=2), id="N0"),
    pytest.param((3, 7, 6), dict(kernel_size=3, stride=2, padding=1), id="unbatched"),
]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("shape, kw", MAX)
def test_max_pool2d(rng, shape, kw, ties):
    if ties:
        x = rng.integers(-2, 3, size=shape).astype(np.float64)
    else:
        x = rng.permutation(np.linspace(-1, 1, int(np.prod(shape)))).reshape(shape)
    tx = t(x, True)
    ty, tidx = F.max_pool2d(tx, return_indices=True, **kw)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(out, n(ty))
    np.testing.assert_array_equal(idx, n(tidx))
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(t(g))
    close(fastconv.max_pool2d_backward(g, x, **kw), n(tx.grad), "recomputed")
    close(fastconv.max_pool2d_backward(g, x, indices=n(tidx), **kw), n(tx.grad), "indices")


def nan_data(rng, shape):
    """Random data with NaNs, several per window, some windows all NaN."""
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.3] = np.nan
    x[..., :2, :2] = np.nan
    return x


@pytest.mark.parametrize("shape, kw", MAX[:6])
def test_max_pool2d_nan(rng, shape, kw):
    x = nan_data(rng, shape)
    tx = t(x, True)
    ty, tidx = F.max_pool2d(tx, return_indices=True, **kw)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(out, n(ty))
    np.testing.assert_array_equal(idx, n(tidx))
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(t(g))
    close(fastconv.max_pool2d_backward(g, x, **kw), n(tx.grad))


# --------------------------------------------------------------------------
# avg pooling
# --------------------------------------------------------------------------

AVG = [
    pytest.param((2, 3, 7, 8), dict(kernel_size=2), id="k2"),
    pytest.param((2, 3, 7, 8), dict(kernel_size=3, stride=2, padding=1), id="k3-s2-p1"),
    pytest.param((2, 3, 7, 8), dict(kernel_size=3, stride=2, padding=1,
                                    count_include_pad=False), id="nopad"),
    pytest.param((1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                 id="ceil"),
    pytest.param((1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                    count_include_pad=False), id="ceil-nopad"),
    pytest.param((1, 2, 7, 5), dict(kernel_size=2, ceil_mode=True), id="ceil-beyond-input"),
    pytest.param((1, 2, 7, 5), dict(kernel_size=3, stride=2, ceil_mode=True,
                                    count_include_pad=False), id="ceil-beyond-input-nopad"),
    pytest.param((1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
                 id="ceil-last-window-dropped"),
    pytest.param((2, 2, 7, 9), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1),
                                    divisor_override=5), id="divisor"),
    pytest.param((1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                    count_include_pad=False, divisor_override=2),
                 id="divisor-ceil-nopad"),
    pytest.param((1, 2, 1, 1), dict(kernel_size=2, padding=1, count_include_pad=False),
                 id="1px"),
    pytest.param((0, 2, 4, 4), dict(kernel_size=2), id="N0"),
    pytest.param((3, 7, 6), dict(kernel_size=3, stride=2, padding=1), id="unbatched"),
]


@pytest.mark.parametrize("shape, kw", AVG)
def test_avg_pool2d(rng, shape, kw):
    x = rng.standard_normal(shape)
    tx = t(x, True)
    ty = F.avg_pool2d(tx, **kw)
    close(fastconv.avg_pool2d(x, **kw), n(ty), "forward")
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(t(g))
    close(fastconv.avg_pool2d_backward(g, x, **kw), n(tx.grad), "backward")


# --------------------------------------------------------------------------
# adaptive pooling
# --------------------------------------------------------------------------

ADAPTIVE = [
    pytest.param((2, 3, 7, 8), 1, id="global"),
    pytest.param((1, 2, 7, 5), (3, 2), id="overlap"),
    pytest.param((1, 2, 5, 7), (None, 3), id="None-H"),
    pytest.param((1, 2, 5, 7), (2, None), id="None-W"),
    pytest.param((1, 2, 5, 4), (9, 7), id="larger"),
    pytest.param((1, 2, 11, 13), (7, 7), id="odd"),
    pytest.param((2, 2, 1, 1), (2, 3), id="1px"),
    pytest.param((0, 2, 4, 4), 2, id="N0"),
    pytest.param((3, 7, 6), (3, 4), id="unbatched"),
]


@pytest.mark.parametrize("shape, output_size", ADAPTIVE)
def test_adaptive_avg_pool2d(rng, shape, output_size):
    x = rng.standard_normal(shape)
    tx = t(x, True)
    ty = F.adaptive_avg_pool2d(tx, output_size)
    close(fastconv.adaptive_avg_pool2d(x, output_size), n(ty), "forward")
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(t(g))
    close(fastconv.adaptive_avg_pool2d_backward(g, x, output_size), n(tx.grad), "backward")


@pytest.mark.parametrize("data", ["distinct", "ties", "nan"])
@pytest.mark.parametrize("shape, output_size", ADAPTIVE)
def test_adaptive_max_pool2d(rng, shape, output_size, data):
    if data == "distinct":
        x = rng.permutation(np.linspace(-1, 1, int(np.prod(shape)))).reshape(shape)
    elif data == "ties":
        x = rng.integers(-1, 2, size=shape).astype(np.float64)
    else:
        x = nan_data(rng, shape)
    tx = t(x, True)
    ty, tidx = F.adaptive_max_pool2d(tx, output_size, return_indices=True)
    out, idx = fastconv.adaptive_max_pool2d(x, output_size, return_indices=True)
    np.testing.assert_array_equal(out, n(ty))
    np.testing.assert_array_equal(idx, n(tidx))
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(t(g))
    close(fastconv.adaptive_max_pool2d_backward(g, x, output_size), n(tx.grad), "recomputed")
    close(fastconv.adaptive_max_pool2d_backward(g, x, output_size, indices=n(tidx)),
          n(tx.grad), "indices")


def test_float32_close_to_torch(rng):
    """float32 in, float32 out, close to torch's float32 results."""
    x = rng.standard_normal((2, 8, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    ty = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    for algorithm in ("direct", "im2col", "auto"):
        y = fastconv.conv2d(x, w, padding=1, algorithm=algorithm)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-4 * np.abs(ty).max())
    out, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    tout, tidx = F.max_pool2d(torch.from_numpy(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(out, tout.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
