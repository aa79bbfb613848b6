"""Every bad input raises the documented error with a useful message.

Messages follow "<function>: <parameter> must be <rule>, got <value>"; the
patterns below check the function name, the parameter and the received value
(or its shape / dtype) without pinning the wording of the rule.
"""
import re

import numpy as np
import pytest

import fastconv

TE = (TypeError, ValueError)     # a non-integer or a wrong container: either is documented

X = np.zeros((1, 3, 5, 5))
W = np.zeros((4, 3, 3, 3))
G = np.zeros((1, 4, 3, 3))       # grad_output of conv2d(X, W)
X32 = np.zeros((1, 3, 5, 5), np.float32)
P = np.zeros((1, 2, 6, 6))       # pooling input
GP = np.zeros((1, 2, 3, 3))      # grad_output of 2x2 pooling of P
IDX = np.zeros((1, 2, 3, 3), np.int64)
GA = np.zeros((1, 2, 2, 2))      # grad_output of adaptive pooling of P to 2x2


def pat(func, param, value=None):
    """Regex: the function name, later the parameter, later the value."""
    p = rf"(?s){re.escape(func)}: .*(?:{param})"
    if value is not None:
        p += rf".*(?:{value})"
    return p


def shape(*dims):
    return re.escape(str(tuple(dims)))


def huge(shape_, dtype=np.float32):
    """A read-only broadcast view: any shape, no memory."""
    return np.broadcast_to(np.zeros((), dtype), shape_)


CASES = []


def add(id, exc, pattern, call):
    CASES.append(pytest.param(call, exc, pattern, id=id))


# --------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------
f = "conv2d"
add("conv-input-ndim2", ValueError, pat(f, "input", shape(5, 6) + "|2"),
    lambda: fastconv.conv2d(np.zeros((5, 6)), W))
add("conv-input-ndim5", ValueError, pat(f, "input", shape(1, 1, 3, 5, 5) + "|5"),
    lambda: fastconv.conv2d(np.zeros((1, 1, 3, 5, 5)), W))
add("conv-input-0d", ValueError, pat(f, "input"), lambda: fastconv.conv2d(np.float64(1), W))
add("conv-weight-ndim3", ValueError, pat(f, "weight", shape(4, 3, 3) + "|3"),
    lambda: fastconv.conv2d(X, np.zeros((4, 3, 3))))
add("conv-channel-mismatch", ValueError, pat(f, "input|weight|channel|groups", "3|2"),
    lambda: fastconv.conv2d(X, np.zeros((4, 2, 3, 3))))
add("conv-channel-mismatch-groups", ValueError, pat(f, "input|weight|channel|groups"),
    lambda: fastconv.conv2d(np.zeros((1, 4, 5, 5)), np.zeros((4, 1, 3, 3)), groups=2))
add("conv-groups-not-dividing-C", ValueError, pat(f, "groups|input|channel", "4|6"),
    lambda: fastconv.conv2d(np.zeros((1, 6, 5, 5)), np.zeros((4, 1, 3, 3)), groups=4))
add("conv-groups-not-dividing-K", ValueError, pat(f, "groups|weight", "2|5"),
    lambda: fastconv.conv2d(np.zeros((1, 4, 5, 5)), np.zeros((5, 2, 3, 3)), groups=2))
add("conv-kernel-larger-than-input", ValueError, pat(f, "weight|kernel|input|padding"),
    lambda: fastconv.conv2d(np.zeros((1, 3, 3, 3)), np.zeros((4, 3, 5, 5))))
add("conv-kernel-larger-than-padded-input", ValueError, pat(f, "weight|kernel|input|padding"),
    lambda: fastconv.conv2d(np.zeros((1, 3, 3, 2)), np.zeros((4, 3, 3, 5)), padding=1))
add("conv-dilated-kernel-larger", ValueError, pat(f, "weight|kernel|input|padding|dilation"),
    lambda: fastconv.conv2d(np.zeros((1, 3, 4, 4)), W, dilation=2))
add("conv-zero-size-spatial", ValueError, pat(f, "weight|kernel|input|padding"),
    lambda: fastconv.conv2d(np.zeros((1, 3, 0, 5)), W))
for value, exc, shown in [(0, ValueError, "0"), (-1, ValueError, "-1"),
                          ((1, 0), ValueError, shape(1, 0)), (1.5, TE, r"1\.5"),
                          ("2", TE, "2"), ((1, 2, 3), TE, shape(1, 2, 3)), (None, TE, "None")]:
    add(f"conv-stride-{value!r}", exc, pat(f, "stride", shown),
        lambda v=value: fastconv.conv2d(X, W, stride=v))
for value, exc, shown in [(0, ValueError, "0"), (-2, ValueError, "-2"),
                          ((2, 0), ValueError, shape(2, 0)), (1.5, TE, r"1\.5"),
                          ("1", TE, "1")]:
    add(f"conv-dilation-{value!r}", exc, pat(f, "dilation", shown),
        lambda v=value: fastconv.conv2d(X, W, dilation=v))
for value, exc, shown in [(0, ValueError, "0"), (-1, ValueError, "-1"), (1.5, TE, r"1\.5"),
                          ("1", TE, "1"), (None, TE, "None")]:
    add(f"conv-groups-{value!r}", exc, pat(f, "groups", shown),
        lambda v=value: fastconv.conv2d(X, W, groups=v))
for value, exc, shown in [(-1, ValueError, "-1"), ((1, -1), ValueError, shape(1, -1)),
                          (((0, -1), (0, 0)), ValueError, r"-1"),
                          ("full", ValueError, "full"), ("SAME ", ValueError, "SAME"),
                          (1.5, TE, r"1\.5"), ((1, 1, 1), TE, shape(1, 1, 1)),
                          (((1, 1), (1,)), TE, ""), (None, TE, "None")]:
    add(f"conv-padding-{value!r}", exc, pat(f, "padding", shown),
        lambda v=value: fastconv.conv2d(X, W, padding=v))
add("conv-same-stride2", ValueError, pat(f, "padding|stride", "same|2"),
    lambda: fastconv.conv2d(X, W, stride=2, padding="same"))
add("conv-same-stride-1x2", ValueError, pat(f, "padding|stride", "same|2"),
    lambda: fastconv.conv2d(X, W, stride=(1, 2), padding="same"))
add("conv-bias-length", ValueError, pat(f, "bias", shape(5) + "|5"),
    lambda: fastconv.conv2d(X, W, np.zeros(5)))
add("conv-bias-2d", ValueError, pat(f, "bias", shape(1, 4)),
    lambda: fastconv.conv2d(X, W, np.zeros((1, 4))))
add("conv-bias-scalar", ValueError, pat(f, "bias"),
    lambda: fastconv.conv2d(X, W, 1.0))
add("conv-bias-complex", TypeError, pat(f, "bias", "complex"),
    lambda: fastconv.conv2d(X, W, np.zeros(4, complex)))
add("conv-algorithm-unknown", ValueError, pat(f, "algorithm", "fft"),
    lambda: fastconv.conv2d(X, W, algorithm="fft"))
add("conv-algorithm-None", TE, pat(f, "algorithm", "None"),
    lambda: fastconv.conv2d(X, W, algorithm=None))
add("conv-1x1-on-3x3", ValueError, pat(f, "algorithm|1x1", "1x1|3"),
    lambda: fastconv.conv2d(X, W, algorithm="1x1"))
add("conv-winograd-on-1x3", ValueError, pat(f, "winograd", "1, 3"),
    lambda: fastconv.conv2d(X, np.zeros((4, 3, 1, 3)), algorithm="winograd"))
add("conv-winograd-on-6x6", ValueError, pat(f, "winograd", "6, 6"),
    lambda: fastconv.conv2d(np.zeros((1, 3, 8, 8)), np.zeros((4, 3, 6, 6)),
                            algorithm="winograd"))
add("conv-winograd-stride3", ValueError, pat(f, "winograd", "stride \\(3, 3\\)"),
    lambda: fastconv.conv2d(np.zeros((1, 3, 8, 8)), W, stride=3, algorithm="winograd"))
add("conv-winograd-stride2x1", ValueError, pat(f, "winograd", "stride \\(2, 1\\)"),
    lambda: fastconv.conv2d(X, W, stride=(2, 1), algorithm="winograd"))
add("conv-winograd-stride2-groups", ValueError, pat(f, "winograd", "groups 3"),
    lambda: fastconv.conv2d(X, np.zeros((3, 1, 3, 3)), stride=2, groups=3,
                            algorithm="winograd"))
add("conv-1x1-on-1x3", ValueError, pat(f, "algorithm|1x1", "1x1|3"),
    lambda: fastconv.conv2d(X, np.zeros((4, 3, 1, 3)), algorithm="1x1"))
for name, arr, shown in [
    ("complex", np.zeros((1, 3, 5, 5), complex), "complex"),
    ("bool", np.zeros((1, 3, 5, 5), bool), "bool"),
    ("object", np.zeros((1, 3, 5, 5), object), "object|O"),
    ("str", np.full((1, 3, 5, 5), "a"), "U1|str"),
    ("bytes", np.full((1, 3, 5, 5), b"a"), "S1|bytes"),
    ("datetime", np.zeros((1, 3, 5, 5), "datetime64[s]"), "datetime"),
    ("timedelta", np.zeros((1, 3, 5, 5), "timedelta64[s]"), "timedelta"),
]:
    add(f"conv-input-{name}", TypeError, pat(f, "input", shown),
        lambda a=arr: fastconv.conv2d(a, W))
    add(f"conv-weight-{name}", TypeError, pat(f, "weight", shown),
        lambda a=arr: fastconv.conv2d(X, a.reshape(3, 25)[:, :9].reshape(1, 3, 3, 3)))
add("conv-input-None", TypeError, pat(f, "input"), lambda: fastconv.conv2d(None, W))
add("conv-weight-None", TypeError, pat(f, "weight"), lambda: fastconv.conv2d(X, None))
add("conv-out-shape", ValueError, pat(f, "out", shape(1, 4, 3, 4)),
    lambda: fastconv.conv2d(X, W, out=np.zeros((1, 4, 3, 4))))
add("conv-out-dtype", ValueError, pat(f, "out", "float32"),
    lambda: fastconv.conv2d(X, W, out=np.zeros((1, 4, 3, 3), np.float32)))
add("conv-out-dtype-f32-input", ValueError, pat(f, "out", "float64"),
    lambda: fastconv.conv2d(X32, W.astype(np.float32), out=np.zeros((1, 4, 3, 3))))
add("conv-out-not-array", TE, pat(f, "out"),
    lambda: fastconv.conv2d(X, W, out=[[0.0]]))

# --------------------------------------------------------------------------
# conv2d_backward
# --------------------------------------------------------------------------
f = "conv2d_backward"
add("convb-grad-output-shape", ValueError, pat(f, "grad_output", shape(1, 4, 3, 4)),
    lambda: fastconv.conv2d_backward(np.zeros((1, 4, 3, 4)), X, W))
add("convb-grad-output-channels", ValueError, pat(f, "grad_output", shape(1, 5, 3, 3)),
    lambda: fastconv.conv2d_backward(np.zeros((1, 5, 3, 3)), X, W))
add("convb-grad-output-batch", ValueError, pat(f, "grad_output", shape(2, 4, 3, 3)),
    lambda: fastconv.conv2d_backward(np.zeros((2, 4, 3, 3)), X, W))
add("convb-grad-output-ndim", ValueError, pat(f, "grad_output", shape(4, 3, 3)),
    lambda: fastconv.conv2d_backward(np.zeros((4, 3, 3)), X, W))
add("convb-grad-output-complex", TypeError, pat(f, "grad_output", "complex"),
    lambda: fastconv.conv2d_backward(G.astype(complex), X, W))
add("convb-input-ndim", ValueError, pat(f, "input"),
    lambda: fastconv.conv2d_backward(G, np.zeros((5, 5)), W))
add("convb-weight-ndim", ValueError, pat(f, "weight"),
    lambda: fastconv.conv2d_backward(G, X, np.zeros((3, 3))))
add("convb-channel-mismatch", ValueError, pat(f, "input|weight|channel|groups"),
    lambda: fastconv.conv2d_backward(G, X, np.zeros((4, 2, 3, 3))))
add("convb-stride-0", ValueError, pat(f, "stride", "0"),
    lambda: fastconv.conv2d_backward(G, X, W, stride=0))
add("convb-dilation-float", TE, pat(f, "dilation", r"1\.5"),
    lambda: fastconv.conv2d_backward(G, X, W, dilation=1.5))
add("convb-groups-0", ValueError, pat(f, "groups", "0"),
    lambda: fastconv.conv2d_backward(G, X, W, groups=0))
add("convb-padding-negative", ValueError, pat(f, "padding", "-1"),
    lambda: fastconv.conv2d_backward(G, X, W, padding=-1))
add("convb-padding-unknown", ValueError, pat(f, "padding", "circular"),
    lambda: fastconv.conv2d_backward(G, X, W, padding="circular"))
add("convb-same-stride2", ValueError, pat(f, "padding|stride"),
    lambda: fastconv.conv2d_backward(np.zeros((1, 4, 3, 3)), X, W, stride=2, padding="same"))
add("convb-kernel-too-large", ValueError, pat(f, "weight|kernel|input|padding"),
    lambda: fastconv.conv2d_backward(G, np.zeros((1, 3, 2, 2)), W))
add("convb-algorithm-unknown", ValueError, pat(f, "algorithm", "fft"),
    lambda: fastconv.conv2d_backward(G, X, W, algorithm="fft"))
add("convb-winograd-stride3", ValueError, pat(f, "winograd", "stride"),
    lambda: fastconv.conv2d_backward(np.zeros((1, 4, 2, 2)), np.zeros((1, 3, 8, 8)), W,
                                     stride=3, algorithm="winograd"))
add("convb-1x1-on-3x3", ValueError, pat(f, "algorithm|1x1", "1x1|3"),
    lambda: fastconv.conv2d_backward(G, X, W, algorithm="1x1"))
add("convb-input-bool", TypeError, pat(f, "input", "bool"),
    lambda: fastconv.conv2d_backward(G, X.astype(bool), W))

# --------------------------------------------------------------------------
# pooling: max_pool2d / avg_pool2d (+ backward)
# --------------------------------------------------------------------------
for f, call in [
    ("max_pool2d", lambda *a, **k: fastconv.max_pool2d(*a, **k)),
    ("avg_pool2d", lambda *a, **k: fastconv.avg_pool2d(*a, **k)),
    ("max_pool2d_backward", lambda x, *a, **k: fastconv.max_pool2d_backward(GP, x, *a, **k)),
    ("avg_pool2d_backward", lambda x, *a, **k: fastconv.avg_pool2d_backward(GP, x, *a, **k)),
]:
    add(f"{f}-input-ndim2", ValueError, pat(f, "input", shape(6, 6) + "|2"),
        lambda c=call: c(np.zeros((6, 6)), 2))
    add(f"{f}-input-ndim5", ValueError, pat(f, "input", shape(1, 1, 2, 6, 6) + "|5"),
        lambda c=call: c(np.zeros((1, 1, 2, 6, 6)), 2))
    for value, exc, shown in [(0, ValueError, "0"), (-1, ValueError, "-1"),
                              ((2, 0), ValueError, shape(2, 0)), (1.5, TE, r"1\.5"),
                              ("2", TE, "2"), ((2, 2, 2), TE, shape(2, 2, 2)),
                              (None, TE, "None")]:
        add(f"{f}-kernel_size-{value!r}", exc, pat(f, "kernel_size", shown),
            lambda c=call, v=value: c(P, v))
    for value, exc, shown in [(0, ValueError, "0"), ((0, 1), ValueError, shape(0, 1)),
                              (-2, ValueError, "-2"), (2.5, TE, r"2\.5")]:
        add(f"{f}-stride-{value!r}", exc, pat(f, "stride", shown),
            lambda c=call, v=value: c(P, 2, v))
    for value, exc, shown in [(-1, ValueError, "-1"), ((0, -1), ValueError, shape(0, -1)),
                              (2, ValueError, "2"), ((1, 2), ValueError, shape(1, 2)),
                              ("same", TE, "same"), ("valid", TE, "valid"),
                              (((0, 1), (0, 1)), TE, ""), (0.5, TE, r"0\.5")]:
        # kernel 3: padding must be <= 1
        add(f"{f}-padding-{value!r}", exc, pat(f, "padding", shown),
            lambda c=call, v=value: c(P, 3, 1, v))
    add(f"{f}-padding-above-half-k2", ValueError, pat(f, "padding", "2"),
        lambda c=call: c(P, 2, 1, 2))
    add(f"{f}-kernel-larger-than-input", ValueError, pat(f, "kernel_size|input|padding"),
        lambda c=call: c(np.zeros((1, 2, 2, 6)), 3))
    for name, arr, shown in [
        ("complex", P.astype(complex), "complex"),
        ("bool", P.astype(bool), "bool"),
        ("object", P.astype(object), "object|O"),
        ("str", np.full(P.shape, "a"), "U1|str"),
    ]:
        add(f"{f}-input-{name}", TypeError, pat(f, "input", shown),
            lambda c=call, a=arr: c(a, 2))

for f, call in [
    ("max_pool2d", lambda *a, **k: fastconv.max_pool2d(*a, **k)),
    ("max_pool2d_backward", lambda x, *a, **k: fastconv.max_pool2d_backward(GP, x, *a, **k)),
]:
    for value, exc, shown in [(0, ValueError, "0"), ((1, 0), ValueError, shape(1, 0)),
                              (-1, ValueError, "-1"), (1.5, TE, r"1\.5")]:
        add(f"{f}-dilation-{value!r}", exc, pat(f, "dilation", shown),
            lambda c=call, v=value: c(P, 2, 1, 0, v))
    # kernel 3 dilated by 2 spans 5: padding 3 is above half of it
    add(f"{f}-padding-above-half-dilated", ValueError, pat(f, "padding", "3"),
        lambda c=call: c(np.zeros((1, 2, 9, 9)), 3, 1, 3, 2))

for f, call in [
    ("avg_pool2d", lambda *a, **k: fastconv.avg_pool2d(*a, **k)),
    ("avg_pool2d_backward", lambda x, *a, **k: fastconv.avg_pool2d_backward(GP, x, *a, **k)),
]:
    add(f"{f}-divisor_override-0", ValueError, pat(f, "divisor_override", "0"),
        lambda c=call: c(P, 2, divisor_override=0))

f = "max_pool2d_backward"
add("maxb-grad-output-shape", ValueError, pat(f, "grad_output", shape(1, 2, 3, 4)),
    lambda: fastconv.max_pool2d_backward(np.zeros((1, 2, 3, 4)), P, 2))
add("maxb-grad-output-ndim", ValueError, pat(f, "grad_output", shape(2, 3, 3)),
    lambda: fastconv.max_pool2d_backward(np.zeros((2, 3, 3)), P, 2))
add("maxb-grad-output-complex", TypeError, pat(f, "grad_output", "complex"),
    lambda: fastconv.max_pool2d_backward(GP.astype(complex), P, 2))
add("maxb-indices-shape", ValueError, pat(f, "indices", shape(1, 2, 3, 2)),
    lambda: fastconv.max_pool2d_backward(GP, P, 2, indices=IDX[..., :2]))
add("maxb-indices-float", TE, pat(f, "indices", "float64"),
    lambda: fastconv.max_pool2d_backward(GP, P, 2, indices=IDX.astype(np.float64)))
# (integer indices of any dtype are accepted: test_pool.py; out-of-range ones are not)
add("maxb-indices-out-of-range", ValueError, pat(f, "indices", "40"),
    lambda: fastconv.max_pool2d_backward(GP, P, 2, indices=np.full(GP.shape, 40, np.int64)))
add("maxb-indices-uint64-wraps-to-minus-1", ValueError, pat(f, "indices", str(2**64 - 1)),
    lambda: fastconv.max_pool2d_backward(
        GP, P, 2, indices=np.full(GP.shape, 2**64 - 1, np.uint64)))
# -1 marks a window that saw only padding (possible with dilation); below is invalid
add("maxb-indices-negative", ValueError, pat(f, "indices", "-2"),
    lambda: fastconv.max_pool2d_backward(GP, P, 2, indices=np.full(GP.shape, -2, np.int64)))
f = "avg_pool2d_backward"
add("avgb-grad-output-shape", ValueError, pat(f, "grad_output", shape(1, 2, 4, 3)),
    lambda: fastconv.avg_pool2d_backward(np.zeros((1, 2, 4, 3)), P, 2))
add("avgb-grad-output-shape-ceil", ValueError, pat(f, "grad_output", shape(1, 2, 3, 3)),
    lambda: fastconv.avg_pool2d_backward(GP, np.zeros((1, 2, 7, 7)), 2, ceil_mode=True))

# --------------------------------------------------------------------------
# adaptive pooling (+ backward)
# --------------------------------------------------------------------------
for f, call in [
    ("adaptive_avg_pool2d", lambda *a, **k: fastconv.adaptive_avg_pool2d(*a, **k)),
    ("adaptive_max_pool2d", lambda *a, **k: fastconv.adaptive_max_pool2d(*a, **k)),
    ("adaptive_avg_pool2d_backward",
     lambda x, *a, **k: fastconv.adaptive_avg_pool2d_backward(GA, x, *a, **k)),
    ("adaptive_max_pool2d_backward",
     lambda x, *a, **k: fastconv.adaptive_max_pool2d_backward(GA, x, *a, **k)),
]:
    for value, exc, shown in [(0, ValueError, "0"), (-1, ValueError, "-1"),
                              ((0, 2), ValueError, shape(0, 2)),
                              ((2, -3), ValueError, shape(2, -3)),
                              ((None, 0), ValueError, shape(None, 0)),
                              (1.5, TE, r"1\.5"), ("a", TE, "a"),
                              ((2, 2, 2), TE, shape(2, 2, 2)), ((2.0, 2), TE, r"2\.0")]:
        add(f"{f}-output_size-{value!r}", exc, pat(f, "output_size", shown),
            lambda c=call, v=value: c(P, v))
    add(f"{f}-input-ndim2", ValueError, pat(f, "input", shape(6, 6) + "|2"),
        lambda c=call: c(np.zeros((6, 6)), 2))
    add(f"{f}-input-complex", TypeError, pat(f, "input", "complex"),
        lambda c=call: c(P.astype(complex), 2))
    add(f"{f}-input-bool", TypeError, pat(f, "input", "bool"),
        lambda c=call: c(P.astype(bool), 2))
    add(f"{f}-input-empty-plane", ValueError, pat(f, "input", shape(1, 2, 0, 6) + "|0"),
        lambda c=call: c(np.zeros((1, 2, 0, 6)), 2))

f = "adaptive_avg_pool2d_backward"
add("aavgb-grad-output-shape", ValueError, pat(f, "grad_output", shape(1, 2, 3, 3)),
    lambda: fastconv.adaptive_avg_pool2d_backward(GP, P, 2))
f = "adaptive_max_pool2d_backward"
add("amaxb-grad-output-shape", ValueError, pat(f, "grad_output", shape(1, 2, 3, 3)),
    lambda: fastconv.adaptive_max_pool2d_backward(GP, P, 2))
add("amaxb-indices-shape", ValueError, pat(f, "indices", shape(1, 2, 2, 1)),
    lambda: fastconv.adaptive_max_pool2d_backward(GA, P, 2, indices=IDX[:, :, :2, :1]))
add("amaxb-indices-float", TE, pat(f, "indices", "float32"),
    lambda: fastconv.adaptive_max_pool2d_backward(
        GA, P, 2, indices=np.zeros(GA.shape, np.float32)))
add("amaxb-indices-out-of-range", ValueError, pat(f, "indices", "40"),
    lambda: fastconv.adaptive_max_pool2d_backward(
        GA, P, 2, indices=np.full(GA.shape, 40, np.int64)))

# --------------------------------------------------------------------------
# shapes whose output or index arithmetic would overflow or exhaust memory:
# broadcast views cost nothing; any failure must be a clean exception. Every
# result here needs more bytes than a 64-bit address space holds (or than
# intp can count), so no allocator can satisfy it, whatever the overcommit.
# --------------------------------------------------------------------------
OOM = (ValueError, MemoryError)
BIG = 2**30
add("huge-conv-input", OOM, None,
    lambda: fastconv.conv2d(huge((1, 1, BIG, BIG)), np.ones((1, 1, 1, 1), np.float32)))
add("huge-conv-output-overflows-intp", OOM, None,
    lambda: fastconv.conv2d(huge((1, 1, BIG, BIG)), np.ones((2**10, 1, 1, 1), np.float32)))
add("huge-conv-weight", OOM, None,
    lambda: fastconv.conv2d(np.zeros((1, 1, 4, 4), np.float32), huge((2**58, 1, 1, 1))))
add("huge-conv-im2col", OOM, None,
    lambda: fastconv.conv2d(huge((1, 16, 2**28, 2**28)), huge((1, 16, 3, 3)),
                            algorithm="im2col"))
add("huge-conv-padding", OOM, None,
    lambda: fastconv.conv2d(np.zeros((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), padding=2**62))
add("huge-conv-batch", OOM, None,
    lambda: fastconv.conv2d(huge((2**58, 1, 2, 2)), np.ones((3, 1, 1, 1), np.float32)))
add("huge-conv-backward", OOM, None,
    lambda: fastconv.conv2d_backward(huge((1, 1, BIG, BIG)), huge((1, 1, BIG, BIG)),
                                     np.ones((1, 1, 1, 1), np.float32)))
add("huge-max-pool", OOM, None, lambda: fastconv.max_pool2d(huge((1, 1, BIG, BIG)), 1))
add("huge-avg-pool", OOM, None, lambda: fastconv.avg_pool2d(huge((1, 1, BIG, BIG)), 1))
add("huge-adaptive-avg-output", OOM, None,
    lambda: fastconv.adaptive_avg_pool2d(np.zeros((1, 1, 2, 2)), (2**40, 2**40)))
add("huge-adaptive-max-output", OOM, None,
    lambda: fastconv.adaptive_max_pool2d(np.zeros((1, 1, 2, 2)), (2**31, 2**31),
                                         return_indices=True))
add("huge-adaptive-output-2**63", OOM, None,
    lambda: fastconv.adaptive_avg_pool2d(np.zeros((1, 1, 2, 2)), (2**63, 1)))


@pytest.mark.parametrize("call, exc, pattern", CASES)
def test_bad_input_raises(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_messages_follow_the_format():
    """Spot-check the full "<function>: <parameter> must be <rule>, got <value>" form."""
    with pytest.raises(ValueError, match=r"^conv2d: stride must be .*, got 0$"):
        fastconv.conv2d(X, W, stride=0)
    with pytest.raises(ValueError, match=r"^max_pool2d: kernel_size must be .*, got -1$"):
        fastconv.max_pool2d(P, -1)
    with pytest.raises(ValueError,
                       match=r"^avg_pool2d_backward: divisor_override must be .*, got 0$"):
        fastconv.avg_pool2d_backward(GP, P, 2, divisor_override=0)


def test_1x1_error_says_why():
    with pytest.raises(ValueError, match=r"(?s)conv2d: .*1x1.*(kernel|weight|R|S)"):
        fastconv.conv2d(X, W, algorithm="1x1")


@pytest.mark.parametrize("value", [np.int64(2), np.int32(2), (np.int64(2), 2)])
def test_numpy_integers_are_integers(value, assert_close):
    expected = fastconv.conv2d(X, W, stride=2)
    assert_close(fastconv.conv2d(X, W, stride=value), expected)
    expected = fastconv.max_pool2d(P, 2)
    assert_close(fastconv.max_pool2d(P, value), expected)


@pytest.mark.parametrize("good, bad", [
    (dict(stride=1), dict(stride=True)),
    (dict(stride=(1, 1)), dict(stride=(True, 1))),
    (dict(padding=(1, 0)), dict(padding=(1, False))),
    (dict(dilation=1), dict(dilation=np.bool_(True))),
    (dict(groups=1), dict(groups=True)),
])
def test_a_remembered_shape_keeps_its_checks(good, bad):
    """conv_geometry remembers the checked shapes of a call: a bool that
    equals the int of a good call with the same arrays is still refused."""
    fastconv.conv2d(X, W, **good)
    fastconv.conv2d_backward(np.zeros(fastconv.conv2d(X, W, **good).shape), X, W, **good)
    (name, value), = bad.items()
    with pytest.raises(TypeError, match=pat("conv2d", name, re.escape(repr(value)))):
        fastconv.conv2d(X, W, **bad)
    with pytest.raises(TypeError, match=pat("conv2d_backward", name, re.escape(repr(value)))):
        fastconv.conv2d_backward(G, X, W, **bad)


def test_a_remembered_shape_takes_any_layout(monkeypatch):
    """A call whose shapes are remembered still copies what the kernels
    cannot read (a strided view, another dtype, bytes out of order, an odd
    byte offset) and runs unbatched images; the memo holds no arrays and
    stays within its bound."""
    import gc
    import weakref

    from fastconv import _params, reference
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    raw = np.empty(x.nbytes + 1, np.uint8)[1:].view(np.float64).reshape(x.shape)
    raw[...] = x
    wide = np.zeros((2, 3, 6, 14))
    wide[..., ::2] = x
    for view in (x, wide[..., ::2], x.astype(">f8"), raw, x.astype(np.float32)):
        want = reference.conv2d(np.array(view, np.float64), w, b, padding=1)
        for _ in range(2):  # checked, then remembered
            got = fastconv.conv2d(view, w, b, padding=1)
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(fastconv.conv2d(view[1], w, b, padding=1), want[1],
                                       rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(raw, x)  # the inputs are not modified
    probe = np.ones((1, 3, 6, 7))
    alive = weakref.ref(probe)
    fastconv.conv2d(probe, w)
    del probe
    gc.collect()
    assert alive() is None
    monkeypatch.setattr(_params, "GEOMETRY_MEMO_SIZE", 3)
    _params._geometry_memo.clear()
    for n in range(1, 8):
        fastconv.conv2d(np.zeros((n, 3, 5, 5)), w)
        assert 1 <= len(_params._geometry_memo) <= 3
