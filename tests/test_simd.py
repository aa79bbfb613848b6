"""Every SIMD variant of the GEMM micro-kernels this CPU can run, against the reference.

The variant is chosen once at import (the fastest the CPU supports); these
tests switch through all of them so the AVX2 and baseline code paths are
exercised on an AVX-512 machine too.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _choose, _conv, _params, reference

VARIANTS = _conv.simd_variants()

CASES = [
    # N, C, H, W, K, R, S, stride, padding, dilation, groups
    (2, 3, 9, 7, 5, 3, 3, 1, 1, 1, 1),
    (1, 16, 12, 13, 20, 3, 3, 1, 1, 1, 1),  # K not a multiple of any MR
    (2, 8, 10, 9, 12, 3, 2, 2, ((1, 0), (2, 1)), (2, 1), 2),
    (3, 6, 7, 7, 9, 1, 1, 1, 0, 1, 3),  # pointwise, read in place
    (2, 5, 11, 6, 7, 1, 1, 2, 1, 1, 1),  # 1x1 with stride and padding
    (1, 40, 5, 5, 50, 5, 5, 1, 2, 1, 1),  # reduction longer than one block
    (1, 2, 1, 1, 3, 1, 1, 1, 0, 1, 1),  # a single pixel
    # rows of several vectors: the row copy's whole and masked vectors
    (1, 3, 6, 75, 5, 3, 3, 2, 1, 1, 1),
    (1, 2, 4, 70, 3, 3, 3, 1, 1, 1, 1),
    # 6x6 outputs (36 pixels) across 5 images: panels straddle images
    (5, 4, 6, 6, 9, 3, 3, 1, 1, 1, 1),
    # 2x2 outputs across 30 images: every panel spans several images
    (30, 3, 4, 4, 10, 3, 3, 1, 0, 1, 1),
]


@pytest.fixture
def variant(request):
    old = _conv.simd_variant()
    _conv.set_simd_variant(request.param)
    yield request.param
    _conv.set_simd_variant(old)


def test_variants_listed():
    assert VARIANTS, "at least the baseline variant must run"
    assert VARIANTS[-1] == "baseline"
    assert _conv.simd_variant() == VARIANTS[0]


def test_unknown_variant_rejected():
    with pytest.raises(ValueError, match="set_simd_variant: .*'sse9'"):
        _conv.set_simd_variant("sse9")


# the packed-GEMM strategies, each on every case it accepts
RUNS = [(case, "im2col") for case in CASES] + [
    (case, "1x1") for case in CASES if case[5:7] == (1, 1)
]
# Winograd F(2x2, 3x3) and F(4x4, 3x3) (the backward: its grad_input): its
# own shapes too. Rows of tiles run through the batch (items spanning images),
# odd output sizes drop a tile's last row or column, rows of more tiles than a
# vector, more channels than one reduction block, output channels past a
# register block.
WINOGRAD_CASES = [
    case for case in CASES if case[5:7] == (3, 3) and case[7] == 1
] + [
    (3, 5, 7, 9, 6, 3, 3, 1, 1, 1, 1),
    (2, 3, 9, 70, 4, 3, 3, 1, 0, 1, 1),
    (1, 300, 6, 5, 11, 3, 3, 1, 1, 1, 1),
    (7, 2, 3, 3, 3, 3, 3, 1, 1, 1, 1),
    (2, 4, 12, 12, 17, 3, 3, 1, 2, 1, 1),
    # groups: each group's channels, weights and outputs at their offsets
    (2, 12, 9, 11, 8, 3, 3, 1, 1, 1, 4),
    (3, 6, 7, 6, 6, 3, 3, 1, (0, 2), 1, 6),  # depthwise
    (1, 64, 5, 13, 40, 3, 3, 1, 1, 1, 2),
    # padding beyond 2 (tiles of padding alone), and uneven
    (2, 3, 5, 10, 4, 3, 3, 1, 3, 1, 1),
    (3, 2, 6, 7, 5, 3, 3, 1, ((0, 1), (2, 0)), 1, 1),
    # F(4x4)'s rows of 8 tiles and more (their own transform loop), padded
    (1, 3, 5, 37, 4, 3, 3, 1, 2, 1, 1),
    (2, 2, 6, 33, 3, 3, 3, 1, ((1, 0), (0, 2)), 1, 1),
    # dilated, through its phases: phases of unequal sizes, uneven padding,
    # groups (blocks of phases: see test_conv's test_dilated_winograd_blocks)
    (2, 4, 9, 11, 5, 3, 3, 1, 2, 2, 1),
    (1, 3, 10, 7, 4, 3, 3, 1, ((1, 1), (3, 3)), (2, 3), 1),
    (3, 6, 8, 8, 6, 3, 3, 1, 0, 3, 3),
    (2, 2, 5, 5, 3, 3, 3, 1, ((0, 4), (3, 1)), (1, 2), 1),
]
RUNS += [(case, a) for case in WINOGRAD_CASES for a in ("winograd-2x2", "winograd-4x4")]
# the other kernel sizes on 6x6 tiles (F(2x2, 5x5), F(3x3, 4x4), F(5x5, 2x2)),
# rows of 8 tiles and more, groups, dilated; strided layers on their phases
# (11x11/4 and 5x5/2 as 3x3 taps, so both tiles)
RUNS += [(case, "winograd") for case in [
    (2, 5, 11, 13, 6, 5, 5, 1, 2, 1, 1),
    (1, 3, 9, 40, 4, 5, 5, 1, ((0, 2), (4, 1)), 1, 1),
    (2, 6, 10, 9, 9, 4, 4, 1, ((1, 2), (2, 1)), 1, 3),
    (1, 4, 7, 30, 5, 4, 4, 1, 0, 1, 1),
    (3, 4, 12, 11, 8, 2, 2, 1, 1, 1, 2),
    (1, 2, 6, 45, 3, 2, 2, 1, 0, 1, 1),
    (2, 3, 13, 12, 4, 5, 5, 1, 4, 2, 1),
    (2, 3, 17, 16, 5, 4, 4, 2, 1, 1, 1),
    (1, 2, 15, 21, 4, 7, 7, 2, 3, 1, 1),
]]
RUNS += [(case, a) for a in ("winograd-2x2", "winograd-4x4") for case in [
    (2, 3, 35, 31, 6, 11, 11, 4, 2, 1, 1),
    (2, 5, 14, 15, 7, 5, 5, 2, (2, 1), 1, 1),
]]


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case, algorithm", RUNS, ids=str)
def test_forward_matches_reference(variant, dtype, case, algorithm, algo, rng, assert_close):
    N, C, H, W, K, R, S, stride, padding, dilation, groups = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // groups, R, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    got = fastconv.conv2d(x, w, b, stride, padding, dilation, groups, algorithm=algo(algorithm))
    want = reference.conv2d(x, w, b, stride, padding, dilation, groups)
    assert got.dtype == dtype
    assert_close(got, want, reduction=C // groups * R * S)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case, algorithm", RUNS, ids=str)
def test_backward_matches_reference(variant, dtype, case, algorithm, algo, rng, assert_close):
    N, C, H, W, K, R, S, stride, padding, dilation, groups = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // groups, R, S)).astype(dtype)
    y = reference.conv2d(x, w, None, stride, padding, dilation, groups)
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = fastconv.conv2d_backward(gy, x, w, stride, padding, dilation, groups,
                                   algorithm=algo(algorithm))
    want = reference.conv2d_backward(gy, x, w, stride, padding, dilation, groups)
    P, Q = y.shape[2:]
    assert_close(got[0], want[0], reduction=K // groups * R * S)
    assert_close(got[1], want[1], reduction=N * P * Q)
    assert_close(got[2], want[2], reduction=N * P * Q)


# thresholds (GW_GEMM_MIN_CHANNELS, GWT_MIN_CHANNELS, GWT_MIN_PIXELS) that send
# every shape down one grad_weight path of the packed backward
GW_PATHS = {"dot": (10**9, 10**9, 10**9), "gemm": (1, 1, 10**9),
            "gemm-transposed": (10**9, 1, 10**9)}


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("path", GW_PATHS)
@pytest.mark.parametrize("case, algorithm",
                         [run for run in RUNS if not run[1].startswith("winograd")], ids=str)
def test_grad_weight_paths_match_reference(variant, dtype, n_threads, path, case, algorithm,
                                           monkeypatch, threads, rng, assert_close):
    """Each of grad_weight's three paths (the "dot" kernel, the GEMM, the
    GEMM transposed) on every packed-GEMM case, whatever auto's thresholds
    would pick: tiles crossing images, partial register blocks, in-place
    pointwise rows, blocks split among threads."""
    gemm_min, transposed_min, transposed_pixels = GW_PATHS[path]
    monkeypatch.setattr(_choose, "GW_GEMM_MIN_CHANNELS", gemm_min)
    monkeypatch.setattr(_choose, "GWT_MIN_CHANNELS", transposed_min)
    monkeypatch.setattr(_choose, "GWT_MIN_PIXELS", transposed_pixels)
    N, C, H, W, K, R, S, stride, padding, dilation, groups = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // groups, R, S)).astype(dtype)
    y = reference.conv2d(x, w, None, stride, padding, dilation, groups)
    gy = rng.standard_normal(y.shape).astype(dtype)
    threads.set_num_threads(n_threads)
    got = fastconv.conv2d_backward(gy, x, w, stride, padding, dilation, groups,
                                   algorithm=algorithm)[1]
    want = reference.conv2d_backward(gy, x, w, stride, padding, dilation, groups)[1]
    assert_close(got, want, reduction=N * y.shape[2] * y.shape[3])


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
# the in-place bound is float64's only: float32 runs once
@pytest.mark.parametrize("dtype, f64_in_place", [(np.float32, False), (np.float64, True),
                                                 (np.float64, False)])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("nhw, algorithm", [
    ((1, 7, 7), "im2col"),  # one block of pixels: the weights read in place
    ((1, 7, 7), "1x1"),
    ((3, 5, 6), "1x1"),  # three blocks (images)
    ((1, 24, 30), "im2col"),  # several blocks: packed on one thread
])
def test_output_channels_split_among_threads(variant, dtype, n_threads, nhw, algorithm,
                                             f64_in_place, threads, rng, assert_close):
    """Fewer blocks of pixels than threads, or not a multiple of them: the
    GEMM also splits the output channels among the threads, in parts of whole
    register blocks (42 channels: uneven parts, a partial last block). Float64
    reads the weights in place on calls of few pixels, or (bound 0) packs
    them like float32."""
    N, H, W = nhw
    R = 1 if algorithm == "1x1" else 3
    x = rng.standard_normal((N, 20, H, W)).astype(dtype)
    w = rng.standard_normal((42, 20, R, R)).astype(dtype)
    b = rng.standard_normal(42).astype(dtype)
    threads.set_num_threads(n_threads)
    old = _conv.set_unpacked_max_pixels(1 << 30 if f64_in_place else 0)
    try:
        got = fastconv.conv2d(x, w, b, padding=R // 2, algorithm=algorithm)
    finally:
        _conv.set_unpacked_max_pixels(old)
    assert_close(got, reference.conv2d(x, w, b, padding=R // 2), reduction=20 * R * R)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2])
def test_grad_weight_rows_split_among_threads(variant, dtype, n_threads, groups,
                                              threads, rng, assert_close):
    """grad_weight on the GEMM kernel (>= 128 output channels per group) with
    fewer blocks of its columns (c, r, s) than threads (a 1x1 layer with one
    vector block of input channels per group): the threads also split its
    rows, in parts of whole register blocks (130 per group: a partial last)."""
    nr = _conv.gemm_block()[1 if dtype == np.float32 else 2]
    C, K = nr * groups, 130 * groups
    x = rng.standard_normal((2, C, 9, 10)).astype(dtype)
    w = rng.standard_normal((K, nr, 1, 1)).astype(dtype)
    gy = rng.standard_normal((2, K, 9, 10)).astype(dtype)
    threads.set_num_threads(n_threads)
    want = reference.conv2d_backward(gy, x, w, groups=groups)
    for algorithm in ("im2col", "1x1"):
        got = fastconv.conv2d_backward(gy, x, w, groups=groups, algorithm=algorithm)
        assert_close(got[0], want[0], reduction=130)
        assert_close(got[1], want[1], reduction=2 * 9 * 10)
        assert_close(got[2], want[2], reduction=2 * 9 * 10)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", [(8, 8), (32, 35)])  # one pixel block, and several
@pytest.mark.parametrize("C", [5, _choose.REDUCTION_BLOCK + 5])  # one reduction block, two
def test_pointwise_in_place_at_every_alignment(variant, dtype, hw, C, rng, assert_close):
    # the 1x1 path reads the image in place and starts its blocks at a
    # vector-aligned pixel, running the first few pixels apart (in every
    # block of the reduction): every offset of the image from a 64-byte boundary
    N, K = 2, 7
    H, W = hw
    item = np.dtype(dtype).itemsize
    size = N * C * H * W
    w = rng.standard_normal((K, C, 1, 1)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    g = _params.conv_geometry("conv2d", np.empty((N, C, H, W), dtype), w, b, 1, 0, 1, 1)
    assert _choose.in_place("1x1", g)
    for offset in range(0, 64, item):
        raw = np.zeros(size * item + 128, np.uint8)
        start = (-raw.ctypes.data) % 64 + offset
        x = raw[start:start + size * item].view(dtype).reshape(N, C, H, W)
        x[...] = rng.standard_normal(x.shape)
        before = x.copy()
        got = fastconv.conv2d(x, w, b, algorithm="1x1")
        assert_close(got, reference.conv2d(x, w, b), reduction=C)
        np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("extra", ["one", "panel - 1", "panel", "batched"])
@pytest.mark.parametrize("algorithm", ["im2col", "1x1"])
def test_last_pixel_block_under_a_panel_joins_the_previous(variant, dtype, extra, algorithm,
                                                          rng, assert_close):
    # pixels of a block and less than a panel more run as one block of up to
    # a panel more than the others (its im2col block sized for it, and in a
    # batch of small images its slots for panels straddling images); two
    # images of that many pixels run as one batch, their pixels end to end
    # (float64's 14x14: 196 = 192 + 4); a whole panel more is a block of its
    # own, and its images run apart
    g0 = _params.conv_geometry("conv2d", np.empty((1, 1, 1, 1), dtype),
                               np.empty((1, 1, 1, 1), dtype), None, 1, 0, 1, 1)
    nr = _conv.gemm_block()[1 if dtype == np.float32 else 2]
    block = _choose.gemm_blocks(g0, 1)[0] // nr * nr
    if extra == "batched":  # two images of half a block and a pixel
        W = block // 2 + 1
    else:
        W = block + {"one": 1, "panel - 1": nr - 1, "panel": nr}[extra]
    R = 3 if algorithm == "im2col" else 1
    x = rng.standard_normal((2, 3, 1, W)).astype(dtype)
    w = rng.standard_normal((5, 3, R, R)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    padding = (R - 1) // 2
    got = fastconv.conv2d(x, w, b, padding=padding, algorithm=algorithm)
    assert_close(got, reference.conv2d(x, w, b, padding=padding), reduction=3 * R * R)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_pointwise_small_images_batched(variant, n_threads, threads, rng, assert_close):
    # a deep 1x1 layer on 5x5 images (25 pixels: a lane past whole vectors
    # on every variant) copies the images so that the batch's pixels share
    # panels where there are more images than threads, and reads them in
    # place otherwise
    C, K = 40, _choose.BATCHED_MIN_OUTPUTS + 4
    w = rng.standard_normal((K, C, 1, 1)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    threads.set_num_threads(n_threads)
    for n in (1, 2, 3):
        x = rng.standard_normal((n, C, 5, 5)).astype(np.float32)
        g = _params.conv_geometry("conv2d", x, w, b, 1, 0, 1, 1)
        assert _choose.in_place("1x1", g, n_threads) == (n <= n_threads)
        got = fastconv.conv2d(x, w, b, algorithm="1x1")
        assert_close(got, reference.conv2d(x, w, b), reduction=C)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("case", [
    ((2, 5, 16, 20), (7, 5, 3, 3), dict(padding=1)),  # C R S = 45: a partial panel of W^T
    ((2, 6, 19, 40), (8, 3, 3, 3), dict(stride=2, groups=2)),
    ((3, 10, 6, 17), (12, 10, 1, 1), {}),  # pointwise: grad_input straight from the GEMM
])
def test_grad_input_weights_packed_or_in_place(variant, dtype, packed, case, rng, assert_close):
    # the backward's GEMM reads W^T from a packed copy, or (beyond its
    # memory bound) from the weights themselves
    xs, ws, kw = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    gy = rng.standard_normal(reference.conv2d(x, w, **kw).shape).astype(dtype)
    want = reference.conv2d_backward(gy, x, w, **kw)
    old = _conv.set_wt_pack_max_bytes(1 << 30 if packed else 0)
    try:
        got = fastconv.conv2d_backward(gy, x, w, **kw, algorithm="im2col")
    finally:
        _conv.set_wt_pack_max_bytes(old)
    assert_close(got[0], want[0], reduction=ws[0])
    assert_close(got[1], want[1], reduction=xs[0] * xs[2] * xs[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", [(16, 16), (8, 16), (32, 33)])
def test_pointwise_rows_a_kib_apart_are_copied(dtype, hw, rng, assert_close):
    # image rows a multiple of 1 KiB apart would share a few L1 sets: the
    # 1x1 path copies them instead of reading them in place
    H, W = hw
    x = rng.standard_normal((2, 12, H, W)).astype(dtype)
    w = rng.standard_normal((20, 12, 1, 1)).astype(dtype)
    g = _params.conv_geometry("conv2d", x, w, None, 1, 0, 1, 1)
    apart = H * W * x.itemsize % _choose.IN_PLACE_CONFLICT_BYTES == 0
    assert _choose.in_place("1x1", g) == (not apart)
    assert_close(fastconv.conv2d(x, w, algorithm="1x1"), reference.conv2d(x, w), reduction=12)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups", [1, 2])
def test_pointwise_backward_large_images(variant, dtype, groups, rng, assert_close):
    # images of at least 1024 pixels: grad_weight's "dot" kernel reads the
    # image and grad_output rows in place, in stretches that cross images
    N, C, K, H, W = 3, 6, 10, 32, 33
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // groups, 1, 1)).astype(dtype)
    gy = rng.standard_normal((N, K, H, W)).astype(dtype)
    want = reference.conv2d_backward(gy, x, w, groups=groups)
    for algorithm in ("1x1", "im2col"):
        got = fastconv.conv2d_backward(gy, x, w, groups=groups, algorithm=algorithm)
        assert_close(got[0], want[0], reduction=K // groups)
        assert_close(got[1], want[1], reduction=N * H * W)
        assert_close(got[2], want[2], reduction=N * H * W)


@pytest.mark.parametrize("name", VARIANTS)
def test_environment_selects_variant_everywhere(name):
    from fastconv import _direct, _pool, _simd

    try:
        assert _simd.apply_environment({"FASTCONV_SIMD": name.upper()}) == name
        assert (_conv.simd_variant(), _direct.simd_variant(), _pool.simd_variant()) == (
            name, name, name)
    finally:
        _simd.use(VARIANTS[0])


def test_environment_unknown_variant_warns_and_keeps_default():
    from fastconv import _simd

    with pytest.warns(RuntimeWarning, match=r"FASTCONV_SIMD must be one of .*got 'sse9'"):
        assert _simd.apply_environment({"FASTCONV_SIMD": "sse9"}) == VARIANTS[0]
    assert _simd.apply_environment({}) == VARIANTS[0]


def test_environment_applies_at_import(tmp_path):
    import os
    import subprocess
    import sys

    name = VARIANTS[-1]
    code = ("import fastconv; from fastconv import _conv, _direct, _pool; "
            "print(_conv.simd_variant(), _direct.simd_variant(), _pool.simd_variant())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "FASTCONV_SIMD": name}, check=True,
                         cwd=tmp_path).stdout  # the installed package, not the source tree
    assert out.split() == [name] * 3


def test_reduction_block_shrinks_where_the_blocks_spill_l2(monkeypatch):
    """The GEMM paths' reduction block is REDUCTION_BLOCK while the weight
    block and the pixel block fit in L2 together, SPILL_REDUCTION_BLOCK
    where they do not (forward and grad_input alike)."""
    from fastconv import _choose
    from fastconv._params import conv_geometry
    g = conv_geometry("conv2d", np.zeros((8, 256, 56, 56), np.float32),
                      np.zeros((512, 256, 1, 1), np.float32), None, 2, 0, 1, 1,
                      operands=False)
    full = (512 + 384) * _choose.REDUCTION_BLOCK * 4
    monkeypatch.setattr(_choose, "L2_BYTES", full)
    assert _choose.gemm_blocks(g, 1)[1] == _choose.REDUCTION_BLOCK
    monkeypatch.setattr(_choose, "L2_BYTES", full - 1)
    assert _choose.gemm_blocks(g, 1)[1] == _choose.SPILL_REDUCTION_BLOCK
    monkeypatch.setattr(_choose, "L2_BYTES", 1)
    assert _choose.backward_blocks(g, 1)[-1] == _choose.SPILL_REDUCTION_BLOCK
    monkeypatch.setattr(_choose, "L2_BYTES", 1 << 40)
    assert _choose.backward_blocks(g, 1)[-1] == _choose.REDUCTION_BLOCK


@pytest.mark.parametrize("x_shape, w_shape, stride, path", [
    ((8, 64, 56, 56), (8, 64, 1, 1), 1, 0),  # few output channels: "dot"
    ((8, 256, 56, 56), (64, 256, 1, 1), 1, 2),  # tens of them: transposed
    ((8, 128, 28, 28), (256, 128, 3, 3), 2, 1),  # deep, 14x14 outputs: the GEMM
    ((8, 256, 56, 56), (512, 256, 1, 1), 2, 2),  # deep, 28x28 outputs: transposed
    ((8, 3, 56, 56), (256, 3, 1, 1), 1, 0),  # deep, but too few columns (c, r, s)
])
def test_grad_weight_path_by_shape(x_shape, w_shape, stride, path):
    """backward_blocks' grad_weight path: by output channels per group (the
    "dot" kernel below GWT_MIN_CHANNELS, the transposed GEMM up to
    GW_GEMM_MIN_CHANNELS), then by output pixels per image (GWT_MIN_PIXELS)."""
    from fastconv import _choose
    from fastconv._params import conv_geometry
    g = conv_geometry("conv2d", np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32),
                      None, stride, w_shape[2] // 2, 1, 1, operands=False)
    assert _choose.backward_blocks(g, 2)[1] == path


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm, R, C", [("1x1", 1, 400), ("im2col", 3, 40)])
def test_spilled_reduction_blocks_match_reference(variant, dtype, algorithm, R, C,
                                                  monkeypatch, rng, assert_close):
    """With no L2 to speak of, every GEMM call runs SPILL_REDUCTION_BLOCK rows
    per block: reductions of 400 and 360 rows end in a partial block."""
    from fastconv import _choose
    monkeypatch.setattr(_choose, "L2_BYTES", 1)
    x = rng.standard_normal((2, C, 9, 11)).astype(dtype)
    w = rng.standard_normal((21, C, R, R)).astype(dtype)
    b = rng.standard_normal(21).astype(dtype)
    got = fastconv.conv2d(x, w, b, stride=2, padding=R // 2, algorithm=algorithm)
    assert_close(got, reference.conv2d(x, w, b, stride=2, padding=R // 2), reduction=C * R * R)
    gy = rng.standard_normal(got.shape).astype(dtype)
    got = fastconv.conv2d_backward(gy, x, w, stride=2, padding=R // 2, algorithm=algorithm)
    want = reference.conv2d_backward(gy, x, w, stride=2, padding=R // 2)
    assert_close(got[0], want[0], reduction=21 * R * R)
    assert_close(got[1], want[1], reduction=2 * 5 * 6)
