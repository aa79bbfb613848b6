"""Random valid shapes and arguments for every function, compared with the reference.

The profile (derandomized, modest example count, no deadline) is registered
in conftest.py; ``HYPOTHESIS_PROFILE=thorough pytest tests/test_hypothesis.py``
runs a longer, randomized search.
"""
import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, note  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastconv  # noqa: E402
from fastconv import reference as ref  # noqa: E402

dtypes = st.sampled_from([np.float32, np.float64])
seeds = st.integers(0, 2**32 - 1)

# assert_close is conftest's session-scoped fixture (session scope mixes with @given)


def pair_or_int(draw, a, b):
    """Pass (a, b) as a pair, or as an int when a == b and hypothesis likes it."""
    if a == b and draw(st.booleans()):
        return a
    return (a, b)


def batch_shape(draw, C, H, W):
    if draw(st.booleans()):
        return (C, H, W)
    return (draw(st.integers(0, 2)), C, H, W)


# --------------------------------------------------------------------------
# conv2d / conv2d_backward
# --------------------------------------------------------------------------

@st.composite
def conv_problems(draw):
    groups = draw(st.integers(1, 3))
    C = groups * draw(st.integers(1, 3))
    K = groups * draw(st.integers(1, 3))
    R, S = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    eR, eS = dh * (R - 1) + 1, dw * (S - 1) + 1
    form = draw(st.sampled_from(["int", "pair", "asym", "valid", "same"]))
    if form == "same":
        sh = sw = 1
    else:
        sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    p = st.integers(0, 3)
    if form == "int":
        padding = draw(p)
        pads = (padding,) * 4
    elif form == "pair":
        ph, pw = draw(p), draw(p)
        padding, pads = (ph, pw), (ph, ph, pw, pw)
    elif form == "asym":
        pads = tuple(draw(p) for _ in range(4))
        padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    elif form == "valid":
        padding, pads = "valid", (0, 0, 0, 0)
    else:
        padding = "same"
        pads = ((eR - 1) // 2, eR - 1 - (eR - 1) // 2, (eS - 1) // 2, eS - 1 - (eS - 1) // 2)
    minH = max(1, eR - pads[0] - pads[1])
    minW = max(1, eS - pads[2] - pads[3])
    H = draw(st.integers(minH, minH + 7))
    W = draw(st.integers(minW, minW + 7))
    algorithm = draw(st.sampled_from(
        ["auto", "direct", "im2col"] + (["1x1"] if R == S == 1 else [])))
    return dict(
        x_shape=batch_shape(draw, C, H, W), w_shape=(K, C // groups, R, S),
        bias=draw(st.booleans()), dtype=draw(dtypes), seed=draw(seeds),
        kw=dict(stride=pair_or_int(draw, sh, sw), padding=padding,
                dilation=pair_or_int(draw, dh, dw), groups=groups),
        algorithm=algorithm)


@given(prob=conv_problems())
def test_conv2d_forward_and_backward(assert_close, prob):
    note(repr(prob))
    rng = np.random.default_rng(prob["seed"])
    dtype, kw, algorithm = prob["dtype"], prob["kw"], prob["algorithm"]
    x = rng.standard_normal(prob["x_shape"]).astype(dtype)
    w = rng.standard_normal(prob["w_shape"]).astype(dtype)
    K = w.shape[0]
    b = rng.standard_normal(K).astype(dtype) if prob["bias"] else None
    expected = ref.conv2d(x, w, b, **kw)
    L = int(np.prod(w.shape[1:]))
    assert_close(fastconv.conv2d(x, w, b, algorithm=algorithm, **kw), expected, L,
                 err_msg="conv2d")
    g = rng.standard_normal(expected.shape).astype(dtype)
    exp_grads = ref.conv2d_backward(g, x, w, **kw)
    grads = fastconv.conv2d_backward(g, x, w, algorithm=algorithm, **kw)
    npq = max(1, expected.size // K)
    reductions = ((K // kw["groups"]) * w.shape[2] * w.shape[3], npq, npq)
    for got, exp, red, what in zip(grads, exp_grads, reductions,
                                   ("grad_input", "grad_weight", "grad_bias")):
        assert_close(got, exp, red, err_msg=what)


# --------------------------------------------------------------------------
# max_pool2d / avg_pool2d and their backwards
# --------------------------------------------------------------------------

def pool_input(draw, eff_h, eff_w, ph, pw):
    C = draw(st.integers(1, 3))
    minH = max(1, eff_h - 2 * ph)
    minW = max(1, eff_w - 2 * pw)
    return batch_shape(draw, C, draw(st.integers(minH, minH + 7)),
                       draw(st.integers(minW, minW + 7)))


@st.composite
def max_pool_problems(draw):
    kh, kw_ = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    eh, ew = dh * (kh - 1) + 1, dw * (kw_ - 1) + 1
    ph, pw = draw(st.integers(0, eh // 2)), draw(st.integers(0, ew // 2))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    return dict(
        shape=pool_input(draw, eh, ew, ph, pw), dtype=draw(dtypes), seed=draw(seeds),
        ties=draw(st.booleans()),
        kw=dict(kernel_size=pair_or_int(draw, kh, kw_), stride=stride,
                padding=pair_or_int(draw, ph, pw), dilation=pair_or_int(draw, dh, dw),
                ceil_mode=draw(st.booleans())))


def pool_data(rng, shape, dtype, ties):
    if ties:
        return rng.integers(-2, 3, size=shape).astype(dtype)
    n = int(np.prod(shape))
    return rng.permutation(np.linspace(-1, 1, n)).reshape(shape).astype(dtype)


@given(prob=max_pool_problems())
def test_max_pool2d_forward_and_backward(assert_close, prob):
    note(repr(prob))
    rng = np.random.default_rng(prob["seed"])
    kw = prob["kw"]
    x = pool_data(rng, prob["shape"], prob["dtype"], prob["ties"])
    exp, exp_idx = ref.max_pool2d(x, return_indices=True, **kw)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    assert out.dtype == exp.dtype
    np.testing.assert_array_equal(out, exp)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_array_equal(fastconv.max_pool2d(x, **kw), exp)
    g = rng.standard_normal(exp.shape).astype(prob["dtype"])
    exp_gi = ref.max_pool2d_backward(g, x, **kw)
    assert_close(fastconv.max_pool2d_backward(g, x, **kw), exp_gi, 16, err_msg="recomputed")
    assert_close(fastconv.max_pool2d_backward(g, x, indices=idx, **kw), exp_gi, 16,
                 err_msg="indices")


@st.composite
def avg_pool_problems(draw):
    kh, kw_ = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw_ // 2))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    return dict(
        shape=pool_input(draw, kh, kw_, ph, pw), dtype=draw(dtypes), seed=draw(seeds),
        kw=dict(kernel_size=pair_or_int(draw, kh, kw_), stride=stride,
                padding=pair_or_int(draw, ph, pw), ceil_mode=draw(st.booleans()),
                count_include_pad=draw(st.booleans()),
                divisor_override=draw(st.one_of(st.none(), st.integers(1, 7)))),
        area=kh * kw_)


@given(prob=avg_pool_problems())
def test_avg_pool2d_forward_and_backward(assert_close, prob):
    note(repr(prob))
    rng = np.random.default_rng(prob["seed"])
    kw = prob["kw"]
    x = rng.standard_normal(prob["shape"]).astype(prob["dtype"])
    exp = ref.avg_pool2d(x, **kw)
    assert_close(fastconv.avg_pool2d(x, **kw), exp, prob["area"], err_msg="avg_pool2d")
    g = rng.standard_normal(exp.shape).astype(prob["dtype"])
    assert_close(fastconv.avg_pool2d_backward(g, x, **kw), ref.avg_pool2d_backward(g, x, **kw),
                 prob["area"], err_msg="avg_pool2d_backward")


# --------------------------------------------------------------------------
# adaptive pooling and their backwards
# --------------------------------------------------------------------------

@st.composite
def adaptive_problems(draw):
    C, H, W = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    size = st.one_of(st.none(), st.integers(1, 11))
    if draw(st.booleans()):
        output_size = draw(st.integers(1, 11))
    else:
        output_size = (draw(size), draw(size))
    return dict(shape=batch_shape(draw, C, H, W), output_size=output_size, dtype=draw(dtypes),
                seed=draw(seeds), ties=draw(st.booleans()))


@given(prob=adaptive_problems())
def test_adaptive_avg_pool2d_forward_and_backward(assert_close, prob):
    note(repr(prob))
    rng = np.random.default_rng(prob["seed"])
    x = rng.standard_normal(prob["shape"]).astype(prob["dtype"])
    os_ = prob["output_size"]
    exp = ref.adaptive_avg_pool2d(x, os_)
    L = x.shape[-1] * x.shape[-2]
    assert_close(fastconv.adaptive_avg_pool2d(x, os_), exp, L, err_msg="adaptive_avg_pool2d")
    g = rng.standard_normal(exp.shape).astype(prob["dtype"])
    assert_close(fastconv.adaptive_avg_pool2d_backward(g, x, os_),
                 ref.adaptive_avg_pool2d_backward(g, x, os_), L, err_msg="backward")


@given(prob=adaptive_problems())
def test_adaptive_max_pool2d_forward_and_backward(assert_close, prob):
    note(repr(prob))
    rng = np.random.default_rng(prob["seed"])
    x = pool_data(rng, prob["shape"], prob["dtype"], prob["ties"])
    os_ = prob["output_size"]
    exp, exp_idx = ref.adaptive_max_pool2d(x, os_, return_indices=True)
    out, idx = fastconv.adaptive_max_pool2d(x, os_, return_indices=True)
    np.testing.assert_array_equal(out, exp)
    assert out.dtype == exp.dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_array_equal(fastconv.adaptive_max_pool2d(x, os_), exp)
    g = rng.standard_normal(exp.shape).astype(prob["dtype"])
    exp_gi = ref.adaptive_max_pool2d_backward(g, x, os_)
    assert_close(fastconv.adaptive_max_pool2d_backward(g, x, os_), exp_gi, 16,
                 err_msg="recomputed")
    assert_close(fastconv.adaptive_max_pool2d_backward(g, x, os_, indices=idx), exp_gi, 16,
                 err_msg="indices")
