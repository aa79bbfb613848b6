"""conv2d and conv2d_backward against fastconv.reference and finite differences.

The case table covers each axis of the issue's grid (kernel sizes 1..7,
rectangular kernels, every padding form, strides, dilations, groups including
depthwise with a channel multiplier, odd / 1-pixel / rectangular images,
batched / unbatched, N = 0) and the pairs that interact (even kernels with
"same", dilation with padding, stride with ceil-like leftovers, groups with
1x1); each case runs in float32 and float64 and with every algorithm that
accepts it.
"""
import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

DTYPES = [np.float32, np.float64]
ALGORITHMS = ["direct", "im2col", "1x1", "winograd-2x2", "winograd-4x4", "winograd", "auto"]


def case(id, N=2, C=3, H=7, W=6, K=4, R=3, S=None, stride=1, padding=0,
         dilation=1, groups=1, bias=True, batched=True):
    S = R if S is None else S
    return pytest.param(
        dict(N=N, C=C, H=H, W=W, K=K, R=R, S=S, stride=stride, padding=padding,
             dilation=dilation, groups=groups, bias=bias, batched=batched),
        id=id)


CASES = [
    # kernel sizes 1..7
    case("k1", C=5, K=3, H=4, W=5, R=1),
    case("k1-stride2-pad1", C=4, K=6, H=5, W=6, R=1, stride=2, padding=1, bias=False),
    case("k1-stride3-asym", C=3, K=2, H=7, W=5, R=1, stride=(3, 2), padding=((0, 2), (1, 0))),
    case("k1-dilation3", C=2, K=3, H=4, W=4, R=1, dilation=3),
    case("k2", H=5, W=6, R=2, bias=False),
    case("k3-pad1", R=3, padding=1),
    case("k4-same", H=6, W=5, R=4, padding="same"),
    case("k5-stride2-pad2", H=9, W=8, R=5, stride=2, padding=2),
    case("k6-same-dil2", N=1, H=5, W=7, R=6, padding="same", dilation=2),
    case("k7-pad3", N=1, C=2, K=3, H=7, W=7, R=7, padding=3, bias=False),
    case("k7-exact-fit", N=1, C=2, K=2, H=7, W=7, R=7),
    # rectangular kernels
    case("k1x3", H=1, W=9, R=1, S=3),
    case("k3x1-same", H=6, W=3, R=3, S=1, padding="same"),
    case("k2x5-same", H=4, W=7, R=2, S=5, padding="same", bias=False),
    case("k5x2-stride", H=9, W=4, R=5, S=2, stride=(2, 3), padding=(1, 0)),
    # strides
    case("stride2", H=8, W=9, stride=2),
    case("stride3-beyond-kernel", H=10, W=8, R=2, stride=3, bias=False),
    case("stride-1x2", stride=(1, 2), padding=1),
    # padding forms
    case("pad-pair", padding=(1, 2)),
    case("pad-asym", padding=((0, 1), (2, 0))),
    case("pad-asym-big", H=4, W=3, R=2, padding=((1, 2), (0, 3)), stride=(1, 2)),
    case("pad-valid", padding="valid", bias=False),
    case("pad-same-odd", H=5, W=8, padding="same"),
    case("pad-same-dil3", H=8, W=7, padding="same", dilation=3),
    case("pad-same-even-asym-dil", H=5, W=6, R=2, S=4, padding="same", dilation=(1, 2)),
    # dilation
    case("dil2", H=9, W=8, dilation=2),
    case("dil-2x1-pad", dilation=(2, 1), padding=(2, 1), bias=False),
    case("dil-1x3-stride2", H=6, W=11, dilation=(1, 3), stride=2, padding=1),
    # groups
    case("groups2", C=4, K=6, groups=2, padding=1),
    case("groups3-stride-dil", C=6, K=3, H=9, W=9, groups=3, stride=2, dilation=2),
    case("depthwise", C=3, K=3, groups=3, padding=1),
    case("depthwise-mult2", C=4, K=8, groups=4, padding=1, stride=(2, 1)),
    case("depthwise-mult3-k5", C=2, K=6, H=8, W=7, R=5, groups=2, padding="same"),
    case("depthwise-1x1", C=4, K=8, groups=4, R=1),
    case("groups2-1x1-stride", C=6, K=4, groups=2, R=1, stride=2, padding=(0, 1)),
    # image shapes
    case("1px-k1", H=1, W=1, R=1),
    case("1px-k3-pad1", H=1, W=1, padding=1),
    case("1px-same", N=1, H=1, W=1, R=5, padding="same", bias=False),
    case("1-row", H=1, W=8, R=1, S=3, stride=(1, 2)),
    case("1-col-asym", H=6, W=1, R=3, S=2, padding=((0, 0), (1, 0))),
    case("odd-rect", H=5, W=11, stride=2, dilation=2),
    case("wide-channels", N=1, C=16, K=8, H=9, W=9, padding=1),
    # >= 128 output channels per group (grad_weight on the GEMM kernel), small
    # images (grad_input transposed), deep inputs (direct: pixels in lanes)
    case("deep-k130-small", C=5, K=130, H=7, W=6, R=3, S=2, stride=(2, 1),
         padding=(1, 0), dilation=(1, 2)),
    case("deep-groups2-k256", N=1, C=20, K=256, H=7, W=7, groups=2, padding=1),
    case("deep-k128-k5-stride2", C=9, K=128, H=13, W=11, R=5, stride=2, padding=2),
    case("deep-k128-1x1", C=4, K=128, H=9, W=10, R=1),
    case("deep-input-c72", N=1, C=72, K=20, H=6, W=9, padding=1),
    # batch
    case("N1", N=1),
    case("N3", N=3, stride=2, padding=1),
    case("N0", N=0, padding=1),
    case("N0-1x1", N=0, R=1),
    case("unbatched", batched=False, padding=1),
    case("unbatched-groups-1x1", C=4, K=6, R=1, groups=2, batched=False),
    case("unbatched-depthwise-same", C=3, K=6, groups=3, R=4, padding="same",
         batched=False),
]


def make_arrays(rng, p, dtype):
    x_shape = (p["N"], p["C"], p["H"], p["W"]) if p["batched"] else (p["C"], p["H"], p["W"])
    w_shape = (p["K"], p["C"] // p["groups"], p["R"], p["S"])
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(p["K"]).astype(dtype) if p["bias"] else None
    kw = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
              groups=p["groups"])
    return x, w, b, kw


def winograd_taps(p):
    """The kernel side Winograd runs case ``p`` with, or None: a square kernel
    of 2 to 5 taps at stride 1 (dilated: on its phases), or at an equal stride
    s (no dilation or groups) with ceil(R / s) of 2 to 5 (on its s x s phases);
    a stride along an axis of one output counts as 1."""
    x, w, _, kw = make_arrays(np.random.default_rng(0), p, np.float64)
    y_shape = ref.conv2d(x, w, **kw).shape
    stride = p["stride"] if isinstance(p["stride"], tuple) else (p["stride"],) * 2
    stride = tuple(1 if n == 1 else s for s, n in zip(stride, y_shape[-2:]))
    if p["R"] != p["S"]:
        return None
    if stride == (1, 1):
        taps = p["R"]
    elif stride[0] == stride[1] and p["dilation"] == 1 and p["groups"] == 1:
        taps = -(-p["R"] // stride[0])
    else:
        return None
    return taps if 2 <= taps <= 5 else None


def accepts(p, algorithm):
    if algorithm == "1x1":
        return p["R"] == 1 and p["S"] == 1
    if algorithm.startswith("winograd"):  # dilated or strided: on phases (the backward: im2col)
        taps = winograd_taps(p)  # 3x3: both tiles; other sizes have one
        return taps is not None and (taps == 3) == (algorithm != "winograd")
    return True


def with_algorithms(cases):
    """Each case crossed with every algorithm that accepts it ("1x1": 1x1 kernels,
    "winograd-2x2"/"-4x4": those that run 3x3 taps by Winograd, "winograd" the
    other sizes it runs)."""
    return [pytest.param(c.values[0], a, id=f"{c.id}-{a}")
            for c in cases for a in ALGORITHMS if accepts(c.values[0], a)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p, algorithm", with_algorithms(CASES))
def test_conv2d_matches_reference(rng, assert_close, algo, p, dtype, algorithm):
    x, w, b, kw = make_arrays(rng, p, dtype)
    expected = ref.conv2d(x, w, b, **kw)
    got = fastconv.conv2d(x, w, b, algorithm=algo(algorithm), **kw)
    assert got.ndim == x.ndim
    L = w.shape[1] * w.shape[2] * w.shape[3]
    assert_close(got, expected, L)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p, algorithm", with_algorithms(CASES))
def test_conv2d_backward_matches_reference(rng, assert_close, algo, p, dtype, algorithm):
    x, w, _, kw = make_arrays(rng, p, dtype)
    y = ref.conv2d(x, w, None, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    exp_gi, exp_gw, exp_gb = ref.conv2d_backward(g, x, w, **kw)
    gi, gw, gb = fastconv.conv2d_backward(g, x, w, algorithm=algo(algorithm), **kw)
    K, Cg, R, S = w.shape
    npq = int(np.prod(y.shape)) // K if y.size else 1
    assert_close(gi, exp_gi, (K // p["groups"]) * R * S, err_msg="grad_input")
    assert_close(gw, exp_gw, npq, err_msg="grad_weight")
    assert_close(gb, exp_gb, npq, err_msg="grad_bias")
    assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == (K,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("K, Cg, R, S, groups", [
    (1, 1, 1, 1, 1), (9, 17, 3, 3, 1), (12, 5, 3, 2, 3), (8, 1, 5, 5, 8), (20, 7, 1, 4, 4),
    (24, 16, 3, 3, 2),
])
def test_grad_input_weights_flip_and_transpose(rng, dtype, n_threads, K, Cg, R, S, groups):
    """Winograd's grad_input convolves with each group's weights transposed and
    every tap flipped: the kernel's copy equals NumPy's, on blocks of 8 (k, c)
    and their remainders, split over threads."""
    from fastconv import _conv
    w = rng.standard_normal((K, Cg, R, S)).astype(dtype)
    keep = w.copy()
    want = (w.reshape(groups, K // groups, Cg, R, S)[..., ::-1, ::-1]
            .transpose(0, 2, 1, 3, 4).reshape(groups * Cg, K // groups, R, S))
    got = np.full(want.shape, np.nan, dtype)
    _conv.flip_transpose(w, got, groups, n_threads)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(w, keep)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_is_added_per_channel(rng, assert_close, dtype):
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    without = fastconv.conv2d(x, w, padding=1)
    with_zero = fastconv.conv2d(x, w, np.zeros(4, dtype), padding=1)
    with_b = fastconv.conv2d(x, w, b, padding=1)
    np.testing.assert_array_equal(without, with_zero)
    assert_close(with_b, without + b[:, None, None].astype(dtype), 27)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", range(1, 8))
def test_kernel_sizes_1_to_7(rng, assert_close, k, dtype):
    """Each kernel size with stride, dilation, depthwise groups and every padding form."""
    x = rng.standard_normal((2, 4, 9, 8)).astype(dtype)
    for groups, K in ((1, 3), (4, 8)):
        w = rng.standard_normal((K, 4 // groups, k, k)).astype(dtype)
        for stride, dilation, padding in [
                (1, 1, 0), (1, 1, k // 2), (1, 1, "same"), (2, 1, (k // 2, 0)),
                (1, 2, "same"), (2, 1, ((k - 1, 0), (0, k // 2))), (3, 1, "valid")]:
            if dilation * (k - 1) + 1 > 9 and padding in (0, "valid"):
                continue
            kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
            expected = ref.conv2d(x, w, **kw)
            for algorithm in ("direct", "im2col", "auto") + (("1x1",) if k == 1 else ()):
                got = fastconv.conv2d(x, w, algorithm=algorithm, **kw)
                assert_close(got, expected, (4 // groups) * k * k,
                             err_msg=f"{kw} {algorithm}")


@pytest.mark.parametrize("padding, pads", [
    ((1, 2), ((1, 1), (2, 2))),
    (1, ((1, 1), (1, 1))),
    ("valid", ((0, 0), (0, 0))),
    ("same", ((1, 2), (0, 1))),     # kernel (4, 2): extra row/col at bottom/right
])
def test_padding_forms_equal_explicit_zero_padding(rng, assert_close, padding, pads):
    """Every padding form equals an explicit np.pad followed by a valid conv."""
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((2, 3, 4, 2))
    xp = np.pad(x, ((0, 0), (0, 0)) + pads)
    expected = fastconv.conv2d(xp, w)
    for algorithm in ("direct", "im2col", "auto"):
        assert_close(fastconv.conv2d(x, w, padding=padding, algorithm=algorithm),
                     expected, 24)
        assert_close(fastconv.conv2d(x, w, padding=pads, algorithm=algorithm),
                     expected, 24)


def test_same_padding_keeps_spatial_shape(rng):
    for R, S, d in [(1, 1, 1), (2, 3, 1), (4, 5, 2), (6, 1, 3)]:
        x = rng.standard_normal((1, 2, 5, 4))
        w = rng.standard_normal((3, 2, R, S))
        for algorithm in ("direct", "im2col", "auto"):
            y = fastconv.conv2d(x, w, padding="same", dilation=d, algorithm=algorithm)
            assert y.shape == (1, 3, 5, 4)


def test_output_size_formula(rng):
    """P = floor((H + pt + pb - d*(R-1) - 1) / s) + 1, independently of the reference."""
    for H, R, s, d, pt, pb in [(7, 3, 2, 1, 1, 0), (10, 2, 3, 2, 0, 2), (5, 5, 1, 1, 0, 0),
                               (1, 1, 4, 1, 0, 0), (9, 3, 4, 3, 2, 1)]:
        x = rng.standard_normal((1, 1, H, 3))
        w = rng.standard_normal((1, 1, R, 1))
        y = fastconv.conv2d(x, w, stride=(s, 1), dilation=(d, 1), padding=((pt, pb), (0, 0)))
        assert y.shape == (1, 1, (H + pt + pb - d * (R - 1) - 1) // s + 1, 3)


def test_known_values():
    """A hand-computed example, independent of the reference."""
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    expected = np.full((1, 1, 3, 3), -5.0)
    for algorithm in ("direct", "im2col", "auto"):
        np.testing.assert_array_equal(fastconv.conv2d(x, w, algorithm=algorithm), expected)
        np.testing.assert_array_equal(
            fastconv.conv2d(x, w, np.array([2.0]), stride=2, algorithm=algorithm),
            np.full((1, 1, 2, 2), -3.0))


def test_backward_grad_bias_is_sum_of_grad_output(rng, assert_close):
    x = rng.standard_normal((3, 2, 6, 5))
    w = rng.standard_normal((4, 2, 3, 3))
    g = rng.standard_normal((3, 4, 4, 3))
    for algorithm in ("direct", "im2col", "auto"):
        _, _, gb = fastconv.conv2d_backward(g, x, w, algorithm=algorithm)
        assert_close(gb, g.sum(axis=(0, 2, 3)), 36)


# --------------------------------------------------------------------------
# finite differences (float64, small shapes; conv is linear so central
# differences are exact up to rounding)
# --------------------------------------------------------------------------

FD_CASES = [
    case("fd-k3-stride2-pad1", N=2, C=2, K=3, H=5, W=4, stride=2, padding=1),
    case("fd-asym-groups-dil", N=1, C=4, K=2, H=6, W=5, R=2, S=3, padding=((1, 0), (0, 2)),
         dilation=(2, 1), groups=2),
    case("fd-depthwise-mult", N=1, C=2, K=4, H=4, W=5, groups=2, padding="same"),
    case("fd-same-even", N=1, C=2, K=2, H=4, W=4, R=2, S=4, padding="same"),
    case("fd-1x1-stride", N=2, C=3, K=2, H=3, W=4, R=1, stride=2, padding=(1, 0)),
    case("fd-unbatched", C=2, K=2, H=4, W=3, batched=False, stride=(1, 2), padding=1),
]


@pytest.mark.parametrize("p, algorithm", with_algorithms(FD_CASES))
def test_conv2d_backward_finite_differences(rng, numerical_grad, algo, p, algorithm):
    algorithm = algo(algorithm)
    x, w, b, kw = make_arrays(rng, p, np.float64)
    b = rng.standard_normal(p["K"])
    y = fastconv.conv2d(x, w, b, algorithm=algorithm, **kw)
    g = rng.standard_normal(y.shape)
    gi, gw, gb = fastconv.conv2d_backward(g, x, w, algorithm=algorithm, **kw)

    def f_x(x_):
        return fastconv.conv2d(x_, w, b, algorithm=algorithm, **kw)

    def f_w(w_):
        return fastconv.conv2d(x, w_, b, algorithm=algorithm, **kw)

    def f_b(b_):
        return fastconv.conv2d(x, w, b_, algorithm=algorithm, **kw)

    np.testing.assert_allclose(gi, numerical_grad(f_x, x, g), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(gw, numerical_grad(f_w, w, g), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(gb, numerical_grad(f_b, b, g), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("algorithm", ["winograd-2x2", "winograd-4x4"])
def test_dilated_winograd_blocks(rng, assert_close, algo, monkeypatch, algorithm):
    """A dilated layer's Winograd copies its phases a block at a time: with
    room for 1, 5 or all of them (3 images x 6 phases), the same result, and
    the reference's."""
    from fastconv import _choose

    x = rng.standard_normal((3, 5, 13, 12))
    w = rng.standard_normal((4, 5, 3, 3))
    b = rng.standard_normal(4)
    kw = dict(padding=(2, 1), dilation=(2, 3))
    whole = fastconv.conv2d(x, w, b, algorithm=algo(algorithm), **kw)
    g = fastconv._params.conv_geometry("conv2d", x, w, b, 1, (2, 1), (2, 3), 1)
    assert _choose.dilated_phases(g)[2] == 18
    per_phase = _choose.dilated_phases(g)[3]
    for phases in (1, 5):
        monkeypatch.setattr(_choose, "WINOGRAD_PHASE_BYTES", phases * per_phase)
        assert _choose.dilated_phases(g)[2] == phases
        blocks = fastconv.conv2d(x, w, b, algorithm="winograd", **kw)
        np.testing.assert_array_equal(blocks, whole)
    assert_close(whole, ref.conv2d(x, w, b, **kw), 5 * 9)
    # one phase beyond the bound: auto leaves Winograd out
    monkeypatch.setattr(_choose, "WINOGRAD_PHASE_BYTES", per_phase - 1)
    _choose.clear_cache()
    assert "winograd" not in fastconv.explain(x.shape, w.shape, dtype="float64", **kw).costs


def test_dilated_3x3_runs_winograd(vector_variants):
    """auto weighs Winograd for a dilated 3x3 layer of 64 channels on every
    vector variant and takes it with the AVX2 kernels (2x64x30x30, dilation
    2, one thread: 1.45x faster than direct on Zen 3, 1.6x on an Intel Xeon
    (Ice Lake) held to AVX2). With AVX-512 the three strategies measured
    within 6% of each other on that Xeon, so there auto may take any. Its
    backward leaves Winograd out (dilated grad_input has no Winograd path)."""
    shapes = ((2, 64, 30, 30), (64, 64, 3, 3))
    for variant in vector_variants:
        e = fastconv.explain(*shapes, padding=2, dilation=2)
        assert "winograd" in e.costs, e
        if variant == "avx2":
            assert e.algorithm == "winograd", e
        assert "winograd" not in fastconv.explain(*shapes, padding=2, dilation=2,
                                                  backward=True).costs
