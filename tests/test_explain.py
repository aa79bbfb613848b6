"""fastconv.explain: what algorithm="auto" runs, and the cost model behind it."""
import json
from pathlib import Path

import numpy as np
import pytest

import fastconv

SHAPES = json.loads((Path(fastconv.__file__).parent / "shapes.json").read_text())["conv"]


def _args(layer):
    """(input shape, weight shape, stride, padding, dilation, groups) of a layer."""
    groups = layer.get("groups", 1)
    x = (layer["N"], layer["C"], layer["H"], layer["W"])
    w = (layer["K"], layer["C"] // groups, layer["R"], layer["S"])
    return (x, w, layer.get("stride", 1), layer.get("pad", 0), layer.get("dilation", 1),
            groups)


@pytest.mark.parametrize("layer", SHAPES, ids=[s["name"] for s in SHAPES])
def test_explain_yardstick(layer):
    e = fastconv.explain(*_args(layer))
    assert e.algorithm in e.costs
    assert e.costs[e.algorithm] == min(e.costs.values())
    assert all(np.isfinite(v) and v > 0 for v in e.costs.values())
    assert ("1x1" in e.costs) == (layer["R"] == layer["S"] == 1)
    assert e.simd == fastconv._conv.simd_variant()
    assert e.algorithm in str(e) and e.reason in str(e)


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((2, 3, 9, 9), (4, 3, 3, 3), dict(padding=1)),
        ((1, 8, 12, 10), (8, 1, 3, 3), dict(groups=8, padding="same")),
        ((2, 16, 7, 7), (6, 16, 1, 1), {}),
        ((5, 6, 6), (2, 5, 2, 2), dict(stride=2)),  # unbatched
    ],
)
def test_auto_runs_what_explain_says(x_shape, w_shape, kwargs, rng):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    e = fastconv.explain(x_shape, w_shape, **kwargs)
    auto = fastconv.conv2d(x, w, **kwargs)
    chosen = fastconv.conv2d(x, w, **kwargs, algorithm=e.algorithm)
    np.testing.assert_array_equal(auto, chosen)
    # explain reports the batched (N, K, P, Q) shape, also for one unbatched image
    assert e.output_shape == (auto.shape if auto.ndim == 4 else (1, *auto.shape))


def test_winograd_cost_of_groups():
    """Grouped 3x3 layers have a Winograd cost, per group: it picks Winograd
    where each group has as many channels as a dense layer that does (64 in,
    64 out), not for depthwise layers (one channel per group); auto's reason
    names the channels per group."""
    dense = fastconv.explain((4, 64, 28, 28), (64, 64, 3, 3), padding=1)
    grouped = fastconv.explain((4, 128, 28, 28), (128, 64, 3, 3), padding=1, groups=2)
    depthwise = fastconv.explain((4, 64, 28, 28), (64, 1, 3, 3), padding=1, groups=64)
    assert dense.algorithm == grouped.algorithm == "winograd"
    assert "64 input and 64 output channels per group" in grouped.reason
    # two groups of the dense layer's size: twice its cost, within the blocking's rounding
    assert grouped.costs["winograd"] == pytest.approx(2 * dense.costs["winograd"], rel=0.05)
    # (measured on Zen 3, one thread: F(4x4) 5.2x direct's time, F(2x2) 6.7x)
    assert depthwise.costs["winograd"] > 2 * depthwise.costs["direct"]


def test_winograd_grad_input_bounded_on_avx512(vector_variants):
    """The backward's Winograd grad_input is costed at no more than
    WINOGRAD_GRAD_INPUT_VECTOR_BYTES vectors' peak: with the AVX-512 kernels
    the 16-to-32-channel c3-small backward goes to the direct kernels
    (measured 1.27x faster on an Ice Lake Xeon), with AVX2 it keeps Winograd."""
    from fastconv import _choose

    f32 = np.dtype(np.float32)
    for variant in vector_variants:
        backward = fastconv.explain((16, 16, 32, 32), (32, 16, 3, 3), padding=1,
                                    backward=True).algorithm
        assert backward == ("direct" if variant == "avx512" else "winograd"), variant
        assert _choose._winograd_grad_input_peak(f32) == min(_choose._peak(f32), 48)


@pytest.mark.parametrize("vendor, forward", [("GenuineIntel", "im2col"),
                                             ("AuthenticAMD", "direct"), ("", "direct")])
def test_strided_short_rows_by_vendor(monkeypatch, vendor, forward):
    """ResNet's 3x3/2 downsampling layer: on Intel the GEMM measured faster
    forward than the direct kernels (DIRECT_EFFICIENCY_BY_VENDOR), on AMD
    and where the vendor is unknown direct; the backward takes the GEMM on
    each, and a stride-1 short-row layer is costed alike on each."""
    from fastconv import _choose

    monkeypatch.setattr(_choose, "CPU_VENDOR", vendor)
    _choose.clear_cache()
    try:
        args = dict(stride=2, padding=1)
        assert fastconv.explain((8, 128, 28, 28), (256, 128, 3, 3), **args).algorithm == forward
        assert fastconv.explain((8, 128, 28, 28), (256, 128, 3, 3), backward=True,
                                **args).algorithm == "im2col"
        stride1 = fastconv.explain((8, 256, 14, 14), (256, 256, 5, 1), padding=(2, 0))
        monkeypatch.setattr(_choose, "CPU_VENDOR", "")
        assert fastconv.explain((8, 256, 14, 14), (256, 256, 5, 1),
                                padding=(2, 0)).costs == stride1.costs
    finally:
        _choose.clear_cache()


def test_short_winograd_reduction_by_vendor(monkeypatch):
    """A grouped 3x3 layer of 32 channels per group: on Intel its Winograd
    GEMMs are costed slower (WINOGRAD_SHORT_REDUCTION_BY_VENDOR), which on
    AVX-512, where it was measured, moves it to direct; on AMD and where the
    vendor is unknown it stays on Winograd. The other strategies, and layers
    of 64 channels per group and more, are costed alike on each."""
    from fastconv import _choose, _conv

    args = dict(padding=1, groups=4)
    old = _conv.simd_variant()

    def costs(vendor, variant, shape):
        monkeypatch.setattr(_choose, "CPU_VENDOR", vendor)
        _conv.set_simd_variant(variant)
        _choose.clear_cache()
        return fastconv.explain(shape, (shape[1], shape[1] // 4, 3, 3), **args)

    try:
        for variant in _conv.simd_variants():
            intel, amd, unknown = (costs(v, variant, (4, 128, 28, 28))
                                   for v in ("GenuineIntel", "AuthenticAMD", ""))
            assert amd.costs == unknown.costs
            assert amd.algorithm == "winograd"
            assert intel.costs["winograd"] > amd.costs["winograd"]
            assert {k: c for k, c in intel.costs.items() if k != "winograd"} == {
                k: c for k, c in amd.costs.items() if k != "winograd"}
            if variant == "avx512":
                assert intel.algorithm == "direct"
            assert (costs("GenuineIntel", variant, (4, 256, 28, 28)).costs
                    == costs("", variant, (4, 256, 28, 28)).costs)
    finally:
        _conv.set_simd_variant(old)
        _choose.clear_cache()


def _geometry(x_shape, w_shape, stride=1, padding=1, dilation=1):
    from fastconv import _params
    x, w = (np.broadcast_to(np.float32(0), shape) for shape in (x_shape, w_shape))
    return _params.conv_geometry("t", x, w, None, stride, padding, dilation, 1,
                                 operands=False)


@pytest.mark.parametrize("x_shape, w_shape, stride", [
    ((2, 3, 224, 224), (96, 3, 4, 4), 4),      # ConvNeXt's stem
    ((4, 64, 56, 56), (128, 64, 2, 2), 2),     # its downsampling
    ((1, 3, 224, 224), (768, 3, 16, 16), 16),  # ViT's patches
    ((2, 8, 9, 9), (4, 8, 2, 3), (3, 3)),      # non-square, the windows apart
])
def test_kernel_within_its_stride_backward_is_pointwise(vector_variants, x_shape, w_shape,
                                                        stride):
    """A backward whose kernel fits within its stride is costed as the
    direct kernels' pointwise kind (grad_input's phases meet one tap each),
    which puts it on the GEMM on every variant; the forward, and a layer
    whose windows overlap, are costed as before."""
    from fastconv import _choose
    for _ in vector_variants:
        assert fastconv.explain(x_shape, w_shape, stride=stride, backward=True).algorithm \
            == "im2col"
        for backward in (False, True):
            kind = _choose._direct_kind(_geometry(x_shape, w_shape, stride, 0), backward)
            assert (kind == "pointwise") == backward
        sh = stride if isinstance(stride, int) else stride[0]
        overlapping = _geometry(x_shape, w_shape[:2] + (sh + 1, w_shape[3]), stride, 0)
        assert _choose._direct_kind(overlapping, True) == _choose._direct_kind(overlapping)
    # within the stride, but dilated past it: two taps in one phase
    dilated = _geometry((2, 8, 9, 9), (4, 8, 2, 2), 2, 0, dilation=2)
    assert _choose._direct_kind(dilated, True) != "pointwise"


def test_winograd_grad_weight_bounds_its_sums():
    """Winograd's grad_weight keeps each thread's sums over the tiles,
    (m + 2)^2 x K x C / groups values: within 16 MiB for two threads, else
    the direct kernels, even when algorithm="winograd" asks for it; on more
    threads only as many run as have their sums fit."""
    from fastconv import _choose
    small = _geometry((2, 16, 12, 12), (16, 16, 3, 3))
    assert _choose.winograd_grad_weight(small, 2, forced=True) is not None
    # F(4x4)'s sums 9 MiB a thread, F(2x2)'s 4 MiB: F(2x2), four threads of eight
    deep = _geometry((8, 256, 14, 14), (256, 256, 3, 3))
    assert _choose.winograd_grad_weight(deep, 8, forced=True) == (2, 4)
    # F(2x2)'s 16 MiB a thread
    assert _choose.winograd_grad_weight(_geometry((1, 512, 7, 7), (512, 512, 3, 3)), 2,
                                        forced=True) is None


def test_explain_names_the_grad_weight_strategy():
    """A 64-channel 56x56 layer runs its whole backward by Winograd; with 16
    channels the transforms cost more than Winograd saves in grad_weight
    (measured on Zen 3, one thread: F(4x4) 1.3-1.7x direct's time)."""
    from fastconv import _choose
    wide = fastconv.explain((8, 64, 56, 56), (64, 64, 3, 3), padding=1, backward=True)
    assert wide.algorithm == "winograd" and "F(4x4, 3x3) in grad_weight" in wide.reason, wide
    narrow = _geometry((8, 16, 32, 32), (16, 16, 3, 3))
    assert _choose._winograd_grad_weight_tile(narrow) is None
    assert _choose._winograd_grad_weight_tile(narrow, forced=True) in _choose.WINOGRAD_TILES


def test_explain_uses_no_memory_for_huge_shapes():
    e = fastconv.explain((1024, 512, 512, 512), (512, 512, 3, 3), padding=1)
    assert e.flops == 2 * 1024 * 512 * 512 * 512 * 512 * 9


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (((2, 3, 9, 9), (4, 2, 3, 3)), {}, ValueError, r"explain: input channels"),
        (((2, 3, 9, 9), (4, 3, 3, 3)), dict(stride=0), ValueError, r"explain: stride .* got 0"),
        (((2, 3, 9, 9), "abc"), {}, TypeError, r"explain: weight_shape must be a tuple of ints, got 'abc'"),
        (((2, 3, -9, 9), (4, 3, 3, 3)), {}, ValueError, r"explain: input_shape .* got \(2, 3, -9, 9\)"),
        (((2, 3, 9, 9), (4, 3, 3, 3)), dict(dtype="complex64"), TypeError, r"explain: .*dtype complex64"),
    ],
)
def test_explain_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fastconv.explain(*args, **kwargs)


def test_small_calls_run_on_one_thread():
    from fastconv import _choose, _params

    x = np.zeros((1, 1, 8, 8), np.float32)
    tiny = _params.conv_geometry("t", x, np.zeros((1, 1, 3, 3), np.float32), None, 1, 0, 1, 1)
    assert _choose.threads_for(tiny, 8) == 1
    big = _params.conv_geometry("t", np.zeros((8, 64, 56, 56), np.float32),
                                np.zeros((64, 64, 3, 3), np.float32), None, 1, 1, 1, 1)
    assert _choose.threads_for(big, 8) == 8


OFF = json.loads((Path(__file__).parent.parent / "benchmarks" / "off_yardstick.json")
                 .read_text())["conv"]


def test_auto_cache_keeps_the_cost_models_choice(monkeypatch):
    """auto remembers its choice per shape, SIMD variant and direction: on
    every layer of both lists, every variant, forward and backward, what
    resolve returns (from the cache, the second time) is explain's choice."""
    from fastconv import _choose, _conv, _params
    _choose.clear_cache()
    old = _conv.simd_variant()
    try:
        for variant in _conv.simd_variants():
            _conv.set_simd_variant(variant)
            for layer in SHAPES + OFF:
                x, w, *args = _args(layer)
                g = _params.conv_geometry("conv2d", np.empty(x, np.float32),
                                          np.empty(w, np.float32), None, *args,
                                          operands=False)
                for backward in (False, True):
                    want = fastconv.explain(x, w, *args, backward=backward).algorithm
                    for _ in range(2):
                        assert _choose.resolve("conv2d", "auto", g, backward) == want
    finally:
        _conv.set_simd_variant(old)
    # bounded, and emptied on request
    monkeypatch.setattr(_choose, "AUTO_CACHE_SIZE", 3)
    _choose.clear_cache()
    for n in range(1, 8):
        g = _params.conv_geometry("conv2d", np.empty((n, 2, 5, 5), np.float32),
                                  np.empty((3, 2, 3, 3), np.float32), None, 1, 0, 1, 1,
                                  operands=False)
        _choose.resolve("conv2d", "auto", g)
        assert 1 <= len(_choose._auto_cache) <= 3
    _choose.clear_cache()
    assert not _choose._auto_cache


@pytest.mark.parametrize("x_shape, w_shape, kwargs, words", [
    ((4, 48, 27, 27), (64, 48, 5, 5), dict(padding=2), ["F(2x2, 5x5)", "2.78x"]),
    ((2, 3, 227, 227), (64, 3, 11, 11), dict(stride=4, padding=2),
     ["3x3) to pay for 3.36x", "4x4 phases", "48 input channels"]),
])
def test_explain_names_the_other_winograd_algorithms(x_shape, w_shape, kwargs, words):
    """A 5x5 layer with enough channels, and AlexNet's 11x11/4 on its phases
    (the cost model: 1.4-1.5x cheaper than direct): explain names the
    algorithm and the phases."""
    e = fastconv.explain(x_shape, w_shape, **kwargs)
    assert e.algorithm == "winograd", e
    for word in words:
        assert word in e.reason, (word, e.reason)


def test_winograd_needs_what_it_can_run():
    """Strided layers run Winograd on their phases only without groups or
    dilation and at equal strides; kernels of 6 taps and more never."""
    def costs(x_shape, w_shape, **kw):
        return fastconv.explain(x_shape, w_shape, **kw).costs
    assert "winograd" in costs((2, 8, 27, 27), (8, 8, 5, 5), stride=2)
    assert "winograd" not in costs((2, 8, 27, 27), (8, 4, 5, 5), stride=2, groups=2)
    assert "winograd" not in costs((2, 8, 27, 27), (8, 8, 5, 5), stride=(2, 1))
    assert "winograd" not in costs((2, 8, 27, 27), (8, 8, 5, 5), stride=2, dilation=2)
    assert "winograd" not in costs((2, 8, 27, 27), (8, 8, 6, 6))
    assert "winograd" not in costs((2, 8, 27, 27), (8, 8, 3, 3), stride=3)
