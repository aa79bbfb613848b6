"""The direct-convolution kernels of ``fastconv._direct``, called directly.

Each kernel is compared with ``fastconv.reference`` for every SIMD variant
this machine supports (``_direct.set_simd_variant``), both ways of laying results
out (stored row by row in place, or through the wide grid;
``_direct.set_layout``), float32 and float64, and 1 and 2 threads, over a
table of geometries: kernel sizes 1..7 and rectangular kernels, strides 1..3
(also different per axis), asymmetric and oversized padding, dilation,
groups including depthwise with a channel multiplier, channel counts that
do not fill a register block, 1-pixel, odd and wide images.

Outputs are allocated the way ``fastconv.conv`` does; the kernels' status
codes are checked. The public functions' own tests live in test_conv.py.
"""
import contextlib

import numpy as np
import pytest

from fastconv import _direct
from fastconv import reference as ref

DTYPES = [np.float32, np.float64]
LAYOUTS = ["auto", "rows", "wide", "lanes"]


def case(id, N=2, C=3, H=7, W=6, K=4, R=3, S=None, stride=1, pads=0, dilation=1,
         groups=1, bias=True):
    """pads: int or (top, bottom, left, right)."""
    S = R if S is None else S
    stride = stride if isinstance(stride, tuple) else (stride, stride)
    dilation = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    pads = pads if isinstance(pads, tuple) else (pads,) * 4
    return pytest.param(dict(N=N, C=C, H=H, W=W, K=K, R=R, S=S, stride=stride, pads=pads,
                             dilation=dilation, groups=groups, bias=bias), id=id)


CASES = [
    case("k1", C=5, K=3, H=4, W=5, R=1),
    case("k1-stride2-pad1", C=4, K=6, H=5, W=6, R=1, stride=2, pads=1, bias=False),
    case("k2", H=5, W=6, R=2),
    case("k3-pad1", R=3, pads=1),
    case("k4-asym", H=6, W=5, R=4, pads=(1, 2, 2, 1)),
    case("k5-stride2-pad2", H=9, W=8, R=5, stride=2, pads=2),
    case("k6-dil2", N=1, H=12, W=13, R=6, pads=(5, 5, 4, 6), dilation=2),
    case("k7-pad3", N=1, C=2, K=3, H=7, W=7, R=7, pads=3),
    case("k7-stride2-stem", N=1, C=3, K=9, H=20, W=22, R=7, stride=2, pads=3),
    case("k1x3", H=1, W=9, R=1, S=3),
    case("k3x1", H=6, W=3, R=3, S=1, pads=(1, 1, 0, 0)),
    case("k5x2-stride-2x3", H=9, W=7, R=5, S=2, stride=(2, 3), pads=(1, 1, 0, 0)),
    case("stride3-beyond-kernel", H=10, W=8, R=2, stride=3),
    case("stride-1x2", stride=(1, 2), pads=1),
    case("stride-3x1-dil", H=11, W=9, stride=(3, 1), dilation=(2, 1), pads=(2, 0, 1, 1)),
    case("pad-beyond-kernel", H=4, W=3, R=2, pads=(3, 2, 0, 4), stride=(1, 2)),
    case("dil-1x3", H=6, W=11, dilation=(1, 3), stride=2, pads=1),
    case("groups2", C=4, K=6, groups=2, pads=1),
    case("groups3-stride-dil", C=6, K=3, H=9, W=9, groups=3, stride=2, dilation=2),
    case("depthwise", C=5, K=5, groups=5, pads=1),
    case("depthwise-mult3-k5", C=2, K=6, H=8, W=7, R=5, groups=2, pads=2),
    case("depthwise-stride2", C=4, K=4, H=9, W=10, groups=4, stride=2, pads=1),
    case("depthwise-mult2", C=3, K=6, H=7, W=20, groups=3, pads=(1, 0, 2, 1)),
    case("depthwise-stride-1x2-dil-1x2", C=4, K=4, H=11, W=40, groups=4, stride=(1, 2),
         dilation=(1, 2), pads=(1, 1, 2, 2)),
    case("depthwise-long-rows", N=1, C=2, K=2, H=13, W=150, groups=2, pads=1),
    case("1px-k1", H=1, W=1, R=1),
    case("1px-k3-pad1", H=1, W=1, pads=1),
    case("1-col", H=6, W=1, R=3, S=2, pads=(0, 0, 1, 0)),
    # channel counts around the register blocks (8 on AVX-512, 4 otherwise)
    case("K9-C1", C=1, K=9, H=8, W=8, R=5, pads=2),
    case("K17-C10", N=1, C=10, K=17, H=6, W=7, pads=1),
    case("K6-C6-k5", N=2, C=6, K=6, H=10, W=10, R=5),
    # 5 channels as one block (5 x 2 vectors below AVX-512), rows of 2-3
    # vectors and a part vector, grad_input's 5 input channels alike
    case("K5-C5", N=2, C=5, K=5, H=6, W=19, pads=1),
    # channels in lanes on deep weights: blocks of 2 + 2 + 1 vectors of
    # channels, rows of 29 in tiles of 10, 10 and 9 pixels
    case("deep-K80-C40", N=1, C=40, K=80, H=5, W=29, pads=1),
    # rows longer than a whole tile of vectors (128 floats on AVX-512)
    case("wide-image", N=1, C=2, K=3, H=4, W=150, pads=1),
    case("wide-image-stride2", N=1, C=1, K=2, H=5, W=301, R=4, stride=2, pads=(1, 2, 0, 1)),
    # stride 2 beyond the vectorised column split's stack row (64 padding
    # columns, 1024 in all): the element-by-element fill
    case("stride2-pad-beyond-split", N=1, C=2, K=3, H=4, W=5, stride=2, pads=(1, 0, 70, 3)),
    case("stride2-row-beyond-split", N=1, C=1, K=2, H=3, W=1100, stride=2, pads=1),
]


def output_size(p):
    R, S = p["R"], p["S"]
    (sh, sw), (dh, dw) = p["stride"], p["dilation"]
    pt, pb, pl, pr = p["pads"]
    P = (p["H"] + pt + pb - dh * (R - 1) - 1) // sh + 1
    Q = (p["W"] + pl + pr - dw * (S - 1) - 1) // sw + 1
    return P, Q


def make(rng, p, dtype):
    x = rng.standard_normal((p["N"], p["C"], p["H"], p["W"])).astype(dtype)
    w = rng.standard_normal((p["K"], p["C"] // p["groups"], p["R"], p["S"])).astype(dtype)
    b = rng.standard_normal(p["K"]).astype(dtype) if p["bias"] else None
    pt, pb, pl, pr = p["pads"]
    kw = dict(stride=p["stride"], padding=((pt, pb), (pl, pr)), dilation=p["dilation"],
              groups=p["groups"])
    return x, w, b, kw


def kernel_args(p):
    (sh, sw), (dh, dw) = p["stride"], p["dilation"]
    return (sh, sw, p["pads"][0], p["pads"][2], dh, dw, p["groups"])


def forward(x, w, b, p, threads):
    P, Q = output_size(p)
    y = np.empty((x.shape[0], w.shape[0], P, Q), x.dtype)
    assert _direct.conv2d_direct(x, w, b, y, *kernel_args(p), threads) == 0
    return y


def backward(g, x, w, p, threads):
    gx = np.empty_like(x)
    gw = np.empty_like(w)
    assert _direct.conv2d_backward_direct(g, x, w, gx, gw, *kernel_args(p), threads) == 0
    return gx, gw


@pytest.fixture(params=_direct.simd_variants())
def isa(request):
    _direct.set_simd_variant(request.param)
    yield request.param
    _direct.set_simd_variant(None)


@pytest.fixture(params=LAYOUTS)
def layout(request):
    _direct.set_layout(request.param)
    yield request.param
    _direct.set_layout("auto")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", CASES)
def test_forward_matches_reference(rng, assert_close, isa, layout, p, dtype, threads):
    x, w, b, kw = make(rng, p, dtype)
    got = forward(x, w, b, p, threads)
    assert_close(got, ref.conv2d(x, w, b, **kw), w.shape[1] * p["R"] * p["S"])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", CASES)
def test_backward_matches_reference(rng, assert_close, isa, layout, p, dtype, threads):
    x, w, _, kw = make(rng, p, dtype)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(dtype)
    gx, gw = backward(g, x, w, p, threads)
    exp_gx, exp_gw, _ = ref.conv2d_backward(g, x, w, **kw)
    assert_close(gx, exp_gx, (p["K"] // p["groups"]) * p["R"] * p["S"], err_msg="grad_input")
    assert_close(gw, exp_gw, p["N"] * P * Q, err_msg="grad_weight")


YARDSTICK_LIKE = [
    # the yardstick's direct-convolution layers, shrunk in batch and size
    case("lenet-c1", N=3, C=1, K=6, H=28, W=28, R=5, pads=2),
    case("lenet-c2", N=3, C=6, K=16, H=14, W=14, R=5),
    case("stem", N=1, C=3, K=64, H=40, W=38, R=7, stride=2, pads=3),
    case("dw-3x3", N=2, C=32, K=32, H=20, W=21, groups=32, pads=1),
    case("dense-3x3", N=1, C=24, K=40, H=13, W=17, pads=1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", YARDSTICK_LIKE)
def test_yardstick_like_layers(rng, assert_close, isa, p, dtype):
    x, w, b, kw = make(rng, p, dtype)
    assert_close(forward(x, w, b, p, 2), ref.conv2d(x, w, b, **kw), w[0].size)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(dtype)
    gx, gw = backward(g, x, w, p, 2)
    exp_gx, exp_gw, _ = ref.conv2d_backward(g, x, w, **kw)
    assert_close(gx, exp_gx, (p["K"] // p["groups"]) * p["R"] * p["S"], err_msg="grad_input")
    assert_close(gw, exp_gw, p["N"] * P * Q, err_msg="grad_weight")


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_counts_agree(rng, dtype):
    p = CASES[8].values[0]  # the strided stem-like case
    x, w, b, _ = make(rng, p, dtype)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(dtype)
    y1 = forward(x, w, b, p, 1)
    gx1, gw1 = backward(g, x, w, p, 1)
    for threads in (2, 3, 5):
        # forward and grad_input have one writer per element and no reduction
        np.testing.assert_array_equal(forward(x, w, b, p, threads), y1)
        gx, gw = backward(g, x, w, p, threads)
        np.testing.assert_array_equal(gx, gx1)
        np.testing.assert_allclose(gw, gw1, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)


def test_inputs_unchanged_and_read_only_accepted(rng):
    p = CASES[3].values[0]
    x, w, b, kw = make(rng, p, np.float32)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(np.float32)
    copies = [a.copy() for a in (x, w, b, g)]
    for a in (x, w, b, g):
        a.flags.writeable = False
    forward(x, w, b, p, 2)
    backward(g, x, w, p, 2)
    for a, c in zip((x, w, b, g), copies):
        np.testing.assert_array_equal(a, c)


def test_empty_batch():
    p = CASES[3].values[0]
    x = np.zeros((0, 3, 7, 6), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    y = forward(x, w, None, dict(p, N=0), 1)
    assert y.shape == (0, 4, 7, 6)
    gx, gw = backward(np.zeros(y.shape, np.float32), x, w, p, 1)
    np.testing.assert_array_equal(gw, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (8, 8), (33, 35), (56, 57)])
@pytest.mark.parametrize("threads", [1, 2])
def test_grad_bias(rng, isa, dtype, hw, threads):
    # planes below one vector, whole vectors, and past one 1024-element chunk
    # with a ragged end; a plane of 1.5 offset by a large constant also
    # checks that the sum does not run in a single float32 accumulator
    g = (rng.standard_normal((3, 5, *hw)) + 1e3).astype(dtype)
    gb = np.full(5, np.nan, dtype)
    _direct.grad_bias(g, gb, threads)
    exact = g.astype(np.float64).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(gb, exact, rtol=4 * np.finfo(dtype).eps, atol=0)
    _direct.grad_bias(g[:0], gb, threads)  # no images: zeros
    np.testing.assert_array_equal(gb, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_non_finite_input_gives_the_reference_pattern(rng, isa, value, dtype):
    """An inf or NaN in the input reaches exactly the outputs and weight
    gradients that PyTorch's (and the reference's) sums give it. Column 0
    of row 1 is read by a dropped column of the wide grid for taps s > 0,
    where a 0 * inf would otherwise leak a NaN into grad_weight."""
    p = dict(N=1, C=2, H=6, W=7, K=3, R=3, S=3, stride=(1, 1), pads=(0, 0, 0, 0),
             dilation=(1, 1), groups=1, bias=True)
    x, w, b, kw = make(rng, p, dtype)
    x[0, 1, 1, 0] = value
    y = forward(x, w, b, p, 1)
    exp_y = ref.conv2d(x, w, b, **kw)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(exp_y))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(exp_y))
    P, Q = output_size(p)
    g = rng.standard_normal((1, 3, P, Q)).astype(dtype)
    gx, gw = backward(g, x, w, p, 1)
    _, exp_gw, _ = ref.conv2d_backward(g, x, w, **kw)
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(exp_gw))
    np.testing.assert_array_equal(np.isinf(gw), np.isinf(exp_gw))
    finite = np.isfinite(exp_gw)
    np.testing.assert_allclose(gw[finite], exp_gw[finite], rtol=1e-4)


def test_isa_selection():
    supported = _direct.simd_variants()
    assert "baseline" in supported
    best = _direct.simd_variant()
    assert best == supported[0]
    for name in supported:
        _direct.set_simd_variant(name)
        assert _direct.simd_variant() == name
    _direct.set_simd_variant(None)
    assert _direct.simd_variant() == best
    with pytest.raises(ValueError, match=r"set_simd_variant: name must be one of .*got 'sse9'"):
        _direct.set_simd_variant("sse9")
    with pytest.raises(ValueError, match=r"set_layout: layout must be one of .*got 'tall'"):
        _direct.set_layout("tall")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("knob, layout", [("PARTIAL_BYTES", "lanes"), ("VACC_BYTES", "wide")])
@pytest.mark.parametrize("p", [CASES[i] for i in (6, 8, 12, 19, 26)])
def test_grad_weight_without_partials(rng, assert_close, monkeypatch, isa, p, dtype, knob,
                                      layout):
    """grad_weight split by channel blocks instead of per-thread partials
    (PARTIAL_BYTES, for large weights), and reduced across lanes per call
    instead of as vector partials (VACC_BYTES)."""
    monkeypatch.setattr(_direct, knob, 0)
    _direct.set_layout(layout)
    try:
        x, w, _, kw = make(rng, p, dtype)
        P, Q = output_size(p)
        g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(dtype)
        gx, gw = backward(g, x, w, p, 2)
    finally:
        _direct.set_layout("auto")
    exp_gx, exp_gw, _ = ref.conv2d_backward(g, x, w, **kw)
    assert_close(gw, exp_gw, p["N"] * P * Q, err_msg="grad_weight")
    assert_close(gx, exp_gx, (p["K"] // p["groups"]) * p["R"] * p["S"], err_msg="grad_input")


@pytest.mark.parametrize("fill_ahead", [0, 1 << 40])
@pytest.mark.parametrize("p", [CASES[i] for i in (0, 6, 8, 12, 19, 26)] + [
    c for c in CASES if c.id.startswith("depthwise")])
def test_fill_ahead_and_whole_band(rng, assert_close, monkeypatch, isa, p, fill_ahead):
    """The buffer filled a few rows ahead of the kernel calls (FILL_AHEAD_BYTES
    0) and the whole band filled for one call (no step small enough)."""
    monkeypatch.setattr(_direct, "FILL_AHEAD_BYTES", fill_ahead)
    monkeypatch.setattr(_direct, "BAND_BYTES", 4000)  # several bands per plane
    x, w, b, kw = make(rng, p, np.float64)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q))
    y = forward(x, w, b, p, 2)
    gx, gw = backward(g, x, w, p, 2)
    exp_gx, exp_gw, _ = ref.conv2d_backward(g, x, w, **kw)
    assert_close(y, ref.conv2d(x, w, b, **kw), (p["C"] // p["groups"]) * p["R"] * p["S"],
                 err_msg="forward")
    assert_close(gx, exp_gx, (p["K"] // p["groups"]) * p["R"] * p["S"], err_msg="grad_input")
    assert_close(gw, exp_gw, p["N"] * P * Q, err_msg="grad_weight")


@contextlib.contextmanager
def depthwise_kernel(enabled):
    """The depthwise layers' own kernels on or off inside the block."""
    _direct.set_depthwise_kernel(enabled)
    try:
        yield
    finally:
        _direct.set_depthwise_kernel(True)


DEPTHWISE_3X3 = [c for c in CASES if c.id.startswith("depthwise") and c.values[0]["R"] == 3]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("band_bytes", [None, 1, 2000])
@pytest.mark.parametrize("p", DEPTHWISE_3X3)
def test_depthwise_3x3_kernel_on_and_off(rng, assert_close, monkeypatch, isa, p, dtype,
                                         band_bytes):
    """The 3x3 depthwise kernel and the generic one agree with the reference,
    on whole planes and on bands of one or a few rows (the kernel runs a
    band in one call)."""
    if band_bytes is not None:
        monkeypatch.setattr(_direct, "BAND_BYTES", band_bytes)
    x, w, b, kw = make(rng, p, dtype)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(dtype)
    exp_y = ref.conv2d(x, w, b, **kw)
    exp_gx, exp_gw, _ = ref.conv2d_backward(g, x, w, **kw)
    for enabled in (True, False):
        with depthwise_kernel(enabled):
            y = forward(x, w, b, p, 2)
            gx, gw = backward(g, x, w, p, 2)
        assert_close(y, exp_y, 9, err_msg=f"forward, kernel {enabled}")
        assert_close(gx, exp_gx, (p["K"] // p["groups"]) * 9, err_msg=f"grad_input {enabled}")
        assert_close(gw, exp_gw, p["N"] * P * Q, err_msg=f"grad_weight {enabled}")


# Depthwise at stride 2 (dilation 1) has kernels of its own (dw2_fwd, dw2_gx,
# dw2_gw): kernel sizes with their own code (3x3, 5x5) and the general one,
# both column parities of the padding, padding beyond the kernel, rows of
# one vector or part of one and rows of many (interior and edge vectors).
DEPTHWISE_STRIDE2 = [
    case("dw2-k3-pad1", C=5, K=5, H=9, W=10, groups=5, stride=2, pads=1),
    case("dw2-k3-pad0", C=3, K=3, H=8, W=8, groups=3, stride=2),
    case("dw2-k3-asym", C=3, K=3, H=11, W=13, groups=3, stride=2, pads=(0, 2, 1, 0)),
    case("dw2-k5-pad2", C=4, K=4, H=15, W=17, R=5, groups=4, stride=2, pads=2),
    case("dw2-k2x3", C=2, K=2, H=7, W=9, R=2, S=3, groups=2, stride=2, pads=(1, 0, 0, 1)),
    case("dw2-k7-pad3", N=1, C=2, K=2, H=13, W=12, R=7, groups=2, stride=2, pads=3),
    case("dw2-k1", C=3, K=3, H=5, W=6, R=1, groups=3, stride=2),
    case("dw2-k4-pad-beyond", C=2, K=2, H=4, W=3, R=4, groups=2, stride=2,
         pads=(5, 4, 6, 3)),
    case("dw2-1px", C=2, K=2, H=1, W=1, groups=2, stride=2, pads=1),
    case("dw2-long-rows", N=1, C=2, K=2, H=5, W=301, groups=2, stride=2, pads=1),
    case("dw2-k3-pad1-56", N=1, C=3, K=3, H=20, W=56, groups=3, stride=2, pads=1),
    case("dw2-k9-general-path", N=1, C=2, K=2, H=12, W=11, R=9, groups=2, stride=2, pads=4),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", DEPTHWISE_STRIDE2)
def test_depthwise_stride2(rng, assert_close, isa, p, dtype, threads):
    """The stride-2 depthwise kernels and the general ones both match the reference."""
    x, w, b, kw = make(rng, p, dtype)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(dtype)
    exp_y = ref.conv2d(x, w, b, **kw)
    exp_gx, exp_gw, _ = ref.conv2d_backward(g, x, w, **kw)
    for enabled in (True, False):
        with depthwise_kernel(enabled):
            y = forward(x, w, b, p, threads)
            y_nobias = forward(x, w, None, p, threads)
            gx, gw = backward(g, x, w, p, threads)
            gw_only = np.full_like(w, np.nan)
            assert _direct.conv2d_backward_direct(g, x, w, None, gw_only, *kernel_args(p),
                                                  threads) == 0
        taps = p["R"] * p["S"]
        assert_close(y, exp_y, taps, err_msg=f"forward, kernel {enabled}")
        assert_close(y_nobias, exp_y - b[:, None, None], taps, err_msg=f"no bias, {enabled}")
        assert_close(gx, exp_gx, taps, err_msg=f"grad_input, kernel {enabled}")
        assert_close(gw, exp_gw, p["N"] * P * Q, err_msg=f"grad_weight, kernel {enabled}")
        np.testing.assert_array_equal(gw_only, gw, err_msg="grad_weight alone")


def test_depthwise_stride2_runs_its_own_kernels(rng):
    """The switch reaches the kernels: their sums run in another order than
    the general path's, so float32 results differ in their last bits."""
    p = DEPTHWISE_STRIDE2[10].values[0]  # rows of 28 outputs: dw2_fwd's too
    x, w, _, _ = make(rng, p, np.float32)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(np.float32)
    results = []
    for enabled in (True, False):
        with depthwise_kernel(enabled):
            results.append((forward(x, w, None, p, 1),) + backward(g, x, w, p, 1))
    for got, other, what in zip(*results, ("forward", "grad_input", "grad_weight")):
        if what != "grad_input":  # (its sums of one or two terms round alike)
            assert not np.array_equal(got, other), what


# Depthwise layers with channels in lanes (dwc_fwd, dwc_bwd): VL channels of
# an image transposed into one zero-padded [pixel][channel] block (VL is 16,
# 8 or 4 floats, half as many doubles). Channel counts of whole blocks and a
# part block; the row tiles (3 or 5 taps a row, column stride 1 or 2, any
# kernel height) and the tap-list tiles (any stride, dilation); input pixels
# no tap reaches (stride beyond the kernel), padding beyond the kernel.
DEPTHWISE_LANES = [
    case("dwc-k3-s1-C20", C=20, K=20, H=7, W=7, groups=20, pads=1),
    case("dwc-k3-s2-C24", C=24, K=24, H=14, W=14, groups=24, stride=2, pads=1),
    case("dwc-k5-s1-C18-Q29", N=1, C=18, K=18, H=6, W=29, R=5, groups=18, pads=2),
    case("dwc-k5-s2-C17", N=1, C=17, K=17, H=9, W=6, R=5, groups=17, stride=2, pads=2),
    case("dwc-k5x3-s1", N=1, C=9, K=9, H=8, W=13, R=5, S=3, groups=9, pads=(2, 2, 1, 1)),
    case("dwc-k2x5-s2", C=6, K=6, H=7, W=12, R=2, S=5, groups=6, stride=2, pads=(0, 1, 2, 2)),
    case("dwc-k3-s2x1-C33", C=33, K=33, H=14, W=14, groups=33, stride=(2, 1),
         pads=(0, 0, 1, 1)),
    case("dwc-k3x2-s3x2-dil2x1", N=1, C=5, K=5, H=8, W=11, S=2, groups=5, stride=(3, 2),
         pads=(2, 2, 0, 0), dilation=(2, 1)),
    case("dwc-k3-dil2", C=8, K=8, H=9, W=9, groups=8, dilation=2, pads=2),
    case("dwc-k7-s1x2-dil1x2-C40", N=1, C=40, K=40, H=13, W=7, R=7, groups=40,
         stride=(1, 2), pads=3, dilation=(1, 2)),
    case("dwc-k1-s2", N=3, C=16, K=16, H=5, W=5, R=1, groups=16, stride=2, bias=False),
    case("dwc-k2-s3-beyond-kernel", C=5, K=5, H=10, W=8, R=2, groups=5, stride=3),
    case("dwc-pad-beyond-kernel", C=4, K=4, H=3, W=4, groups=4, stride=2, pads=(4, 3, 5, 2)),
    case("dwc-1px", N=1, C=3, K=3, H=1, W=1, groups=3, pads=1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
@pytest.mark.parametrize("p, layout", [
    pytest.param(c.values[0], layout, id=c.id)
    for c, layout in [(DEPTHWISE_STRIDE2[i], "auto") for i in (0, 2, 3, 9)]
    + [(DEPTHWISE_LANES[i], "lanes") for i in (0, 3, 7, 12)]])
def test_depthwise_specials(rng, isa, p, dtype, where, layout):
    """NaN and inf land where the reference puts them: specials in the input
    (the stride-2 kernels' split rows, the lanes' packed block), in the
    weights (times the padding's zeros: NaN) and in grad_output (masked past
    each row's end; the lanes' zero-padded copy). Weights that are not
    finite make the kernel decline grad_input (status 1, nothing written:
    conv2d_backward takes im2col for them); grad_weight alone still runs."""
    x, w, b, kw = make(rng, p, dtype)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf], dtype)
    target = {"input": x, "weight": w, "grad_output": g}[where]
    idx = rng.choice(target.size, max(1, target.size // 50), replace=False)
    target.flat[idx] = rng.choice(specials, idx.size)
    with np.errstate(invalid="ignore"):
        expected = [ref.conv2d(x, w, b, **kw)] + list(ref.conv2d_backward(g, x, w, **kw)[:2])
    _direct.set_layout(layout)
    try:
        got = [forward(x, w, b, p, 2)]
        if where == "weight":
            gx = np.full_like(x, 7)
            gw = np.full_like(w, 7)
            assert _direct.conv2d_backward_direct(g, x, w, gx, gw, *kernel_args(p), 2) == 1
            assert (gx == 7).all() and (gw == 7).all()  # declined before writing
            assert _direct.conv2d_backward_direct(g, x, w, None, gw, *kernel_args(p), 2) == 0
            got.append(gw)
        else:
            got += backward(g, x, w, p, 2)
    finally:
        _direct.set_layout("auto")
    whats = ["forward", "grad_input", "grad_weight"]
    if where == "weight":
        del expected[1], whats[1]
    for got, exp, what in zip(got, expected, whats):
        for test in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(test(got), test(exp), err_msg=f"{what}: {test}")
        finite = np.isfinite(exp)
        np.testing.assert_allclose(got[finite], exp[finite], rtol=1e-4,
                                   atol=1e-4 * max(1.0, np.abs(exp[finite]).max(initial=0)),
                                   err_msg=what)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", DEPTHWISE_LANES)
def test_depthwise_channels_in_lanes(rng, assert_close, isa, p, dtype, threads):
    """Channels in lanes (layout "lanes" takes it wherever the block fits,
    "auto" by the measured rule) and the kernels of rows ("rows" never takes
    it) all match the reference: with and without bias, grad_weight alone."""
    x, w, b, kw = make(rng, p, dtype)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(dtype)
    exp_y = ref.conv2d(x, w, b, **kw)
    exp_y_nobias = ref.conv2d(x, w, None, **kw)
    exp_gx, exp_gw, _ = ref.conv2d_backward(g, x, w, **kw)
    taps = p["R"] * p["S"]
    for layout in ("lanes", "auto", "rows"):
        _direct.set_layout(layout)
        try:
            y = forward(x, w, b, p, threads)
            y_nobias = forward(x, w, None, p, threads)
            gx, gw = backward(g, x, w, p, threads)
            gw_only = np.full_like(w, np.nan)
            assert _direct.conv2d_backward_direct(g, x, w, None, gw_only, *kernel_args(p),
                                                  threads) == 0
        finally:
            _direct.set_layout("auto")
        assert_close(y, exp_y, taps, err_msg=f"forward, {layout}")
        assert_close(y_nobias, exp_y_nobias, taps, err_msg=f"no bias, {layout}")
        assert_close(gx, exp_gx, taps, err_msg=f"grad_input, {layout}")
        assert_close(gw, exp_gw, p["N"] * P * Q, err_msg=f"grad_weight, {layout}")
        np.testing.assert_array_equal(gw_only, gw, err_msg=f"grad_weight alone, {layout}")


def test_depthwise_channels_in_lanes_is_taken(rng, monkeypatch):
    """The rule reaches the kernels: channels in lanes sums grad_weight in
    another order than the row kernels, so float32 results differ in their
    last bits; with the block over DWC_BYTES even "lanes" runs the stride-2
    kernels of rows."""
    p = DEPTHWISE_LANES[1].values[0]
    x, w, _, _ = make(rng, p, np.float32)
    P, Q = output_size(p)
    g = rng.standard_normal((p["N"], p["K"], P, Q)).astype(np.float32)
    got = {}
    for layout, limit in (("lanes", None), ("rows", None), ("lanes", 0)):
        if limit is not None:
            monkeypatch.setattr(_direct, "DWC_BYTES", limit)
        _direct.set_layout(layout)
        try:
            got[layout, limit] = backward(g, x, w, p, 1)[1]
        finally:
            _direct.set_layout("auto")
    assert not np.array_equal(got["lanes", None], got["rows", None])
    np.testing.assert_array_equal(got["lanes", 0], got["rows", None])
