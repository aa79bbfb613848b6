"""Invariances: algorithms agree, memory layout and read-only flags do not matter,
inputs are never modified, out= is honoured, and the dtype policy holds.

Most tests run once per public function through the ``func_name`` parameter
and the ``sample_call`` fixture (see conftest.py).
"""
import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

DTYPES = [np.float32, np.float64]


def call(name, args, kwargs):
    return getattr(fastconv, name)(*args, **kwargs)


def map_arrays(fn, args, kwargs):
    """Apply `fn` to every ndarray among args and kwargs values."""
    args = tuple(fn(a) if isinstance(a, np.ndarray) else a for a in args)
    kwargs = {k: fn(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    return args, kwargs


# --------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------

def strided(a):
    """A view with every axis stepped by 2 and offset by 1 (non-contiguous)."""
    big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def reversed_view(a):
    """A view with negative strides on the last two axes holding the same values."""
    if a.ndim < 2:
        return np.ascontiguousarray(a[::-1])[::-1]
    return np.ascontiguousarray(a[..., ::-1, ::-1])[..., ::-1, ::-1]


def transposed_view(a):
    """Same values, memory order of the last two axes swapped (a transposed copy)."""
    if a.ndim < 2:
        return a.copy()
    return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


LAYOUTS = {
    "strided": strided,
    "fortran": np.asfortranarray,
    "reversed": reversed_view,
    "transposed": transposed_view,
    "read-only": read_only,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_does_not_change_result(sample_call, assert_same_results, func_name, layout):
    name, args, kwargs = sample_call(func_name)
    expected = call(name, args, kwargs)
    args2, kwargs2 = map_arrays(LAYOUTS[layout], args, kwargs)
    for a, a2 in zip(args, args2):
        if isinstance(a, np.ndarray) and a.ndim > 1 and layout not in ("read-only",):
            assert not a2.flags.c_contiguous
    got = call(name, args2, kwargs2)
    assert_same_results(got, expected, err_msg=f"{func_name} {layout}")


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("algorithm, R", [("direct", 3), ("im2col", 3), ("1x1", 1),
                                          ("direct", 1), ("im2col", 1)])
def test_conv_layouts_every_algorithm(rng, assert_close, algorithm, R, layout):
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((6, 2, R, R)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    kw = dict(stride=(1, 2), padding=1, groups=2, algorithm=algorithm)
    y = fastconv.conv2d(x, w, b, **kw)
    g = rng.standard_normal(y.shape).astype(np.float32)
    grads = fastconv.conv2d_backward(g, x, w, **kw)
    fn = LAYOUTS[layout]
    before = [x.copy(), w.copy(), b.copy(), g.copy()]
    x2, w2, b2, g2 = fn(x), fn(w), fn(b), fn(g)
    assert_close(fastconv.conv2d(x2, w2, b2, **kw), y, 2 * R * R)
    for got, exp in zip(fastconv.conv2d_backward(g2, x2, w2, **kw), grads):
        assert_close(got, exp, 64)
    for a, a0 in zip((x2, w2, b2, g2), before):
        np.testing.assert_array_equal(a, a0)


def test_broadcast_inputs(rng, assert_close):
    """Zero-stride (broadcast, read-only) inputs give the same result as copies."""
    x = np.broadcast_to(rng.standard_normal((1, 3, 6, 5)), (4, 3, 6, 5))
    w = np.broadcast_to(rng.standard_normal((1, 3, 3, 3)), (2, 3, 3, 3))
    b = np.broadcast_to(np.float64(0.5), (2,))
    for algorithm in ("direct", "im2col", "auto"):
        assert_close(fastconv.conv2d(x, w, b, padding=1, algorithm=algorithm),
                     fastconv.conv2d(x.copy(), w.copy(), b.copy(), padding=1,
                                     algorithm=algorithm), 27)
    assert_close(fastconv.max_pool2d(x, 2), fastconv.max_pool2d(x.copy(), 2))
    assert_close(fastconv.avg_pool2d(x, 3, 2, 1), fastconv.avg_pool2d(x.copy(), 3, 2, 1), 9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inputs_are_not_modified(sample_call, func_name, dtype):
    name, args, kwargs = sample_call(func_name, dtype)
    args_before, kwargs_before = map_arrays(np.copy, args, kwargs)
    call(name, args, kwargs)
    for a, b in zip(args, args_before):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    for k, v in kwargs.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, kwargs_before[k])


def test_inputs_with_nan_and_inf_are_not_modified(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    x[0, 0, 0, 0], x[1, 2, 3, 3], x[0, 1, 5, 5] = np.nan, np.inf, -np.inf
    before = x.copy()
    w = rng.standard_normal((4, 3, 3, 3))
    fastconv.conv2d(x, w, padding=1)
    fastconv.conv2d_backward(np.ones((2, 4, 6, 6)), x, w, padding=1)
    fastconv.max_pool2d(x, 2, return_indices=True)
    fastconv.max_pool2d_backward(np.ones((2, 3, 3, 3)), x, 2)
    fastconv.avg_pool2d(x, 2)
    fastconv.adaptive_max_pool2d(x, 4)
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------
# algorithms agree
# --------------------------------------------------------------------------

AGREE_CASES = [
    pytest.param((2, 6, 9, 8), (4, 3, 3, 3), dict(groups=2, padding=1, stride=2), id="groups"),
    pytest.param((1, 4, 7, 7), (8, 1, 3, 3), dict(groups=4, padding="same", dilation=2),
                 id="depthwise-mult"),
    pytest.param((2, 3, 8, 6), (5, 3, 5, 2), dict(padding=((2, 1), (0, 1)), stride=(2, 1)),
                 id="rect-asym"),
    pytest.param((3, 8, 5, 7), (6, 8, 1, 1), dict(), id="1x1"),
    pytest.param((2, 4, 6, 5), (6, 2, 1, 1), dict(groups=2, stride=2, padding=(1, 0)),
                 id="1x1-groups-stride-pad"),
    pytest.param((1, 16, 12, 12), (16, 16, 3, 3), dict(padding=1), id="wider"),
    pytest.param((0, 3, 5, 5), (2, 3, 3, 3), dict(), id="N0"),
    pytest.param((3, 5, 5), (2, 3, 1, 1), dict(groups=1), id="unbatched-1x1"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kw", AGREE_CASES)
def test_algorithms_agree(rng, assert_close, x_shape, w_shape, kw, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    algorithms = ["direct", "im2col", "auto"]
    if w_shape[2:] == (1, 1):
        algorithms.append("1x1")
    L = int(np.prod(w_shape[1:]))
    base = fastconv.conv2d(x, w, b, algorithm="direct", **kw)
    g = rng.standard_normal(base.shape).astype(dtype)
    base_grads = fastconv.conv2d_backward(g, x, w, algorithm="direct", **kw)
    npq = max(1, base.size // w_shape[0])
    for algorithm in algorithms[1:]:
        assert_close(fastconv.conv2d(x, w, b, algorithm=algorithm, **kw), base, L,
                     err_msg=algorithm)
        grads = fastconv.conv2d_backward(g, x, w, algorithm=algorithm, **kw)
        for got, exp, red in zip(grads, base_grads, (L, npq, npq)):
            assert_close(got, exp, red, err_msg=f"backward {algorithm}")


def test_auto_is_one_of_the_algorithms(rng):
    """'auto' must return exactly what one of the concrete algorithms returns."""
    x = rng.standard_normal((2, 4, 9, 9))
    for w_shape in [(3, 4, 3, 3), (3, 4, 1, 1)]:
        w = rng.standard_normal(w_shape)
        auto = fastconv.conv2d(x, w, padding=1)
        candidates = ["direct", "im2col"] + (["1x1"] if w_shape[2:] == (1, 1) else [])
        assert any(np.array_equal(auto, fastconv.conv2d(x, w, padding=1, algorithm=a))
                   for a in candidates)


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["direct", "im2col", "auto"])
def test_out_is_filled_and_returned(rng, dtype, algorithm):
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    expected = fastconv.conv2d(x, w, b, padding=1, algorithm=algorithm)
    out = np.full((2, 4, 6, 5), np.nan, dtype)
    got = fastconv.conv2d(x, w, b, padding=1, algorithm=algorithm, out=out)
    assert got is out
    np.testing.assert_array_equal(out, expected)
    # reusing the same out (stale contents) gives the same answer
    got = fastconv.conv2d(x, w, b, padding=1, algorithm=algorithm, out=out)
    assert got is out
    np.testing.assert_array_equal(out, expected)


def test_out_1x1_unbatched_and_empty(rng):
    x = rng.standard_normal((3, 4, 5))
    w = rng.standard_normal((2, 3, 1, 1))
    out = np.empty((2, 4, 5))
    assert fastconv.conv2d(x, w, algorithm="1x1", out=out) is out
    np.testing.assert_array_equal(out, fastconv.conv2d(x, w, algorithm="1x1"))
    out = np.empty((0, 2, 4, 5))
    assert fastconv.conv2d(np.zeros((0, 3, 4, 5)), w, out=out) is out


def test_out_float16_input_takes_float32_out(rng):
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float16)
    out = np.empty((1, 3, 2, 2), np.float32)
    assert fastconv.conv2d(x, w, out=out) is out


def test_out_overlapping_input_raises(rng):
    x = rng.standard_normal((1, 3, 5, 5))
    w = rng.standard_normal((3, 3, 1, 1))
    before = x.copy()
    with pytest.raises(ValueError, match=r"(?s)conv2d: .*out"):
        fastconv.conv2d(x, w, out=x)
    np.testing.assert_array_equal(x, before)
    buf = np.zeros(2 * x.size)
    x2 = buf[: x.size].reshape(x.shape)
    x2[...] = x
    out = buf[x.size // 2: x.size // 2 + x.size].reshape(x.shape)
    with pytest.raises(ValueError, match=r"(?s)conv2d: .*out"):
        fastconv.conv2d(x2, w, out=out)
    np.testing.assert_array_equal(x2, before)


def test_out_overlapping_weight_or_bias_raises(rng):
    buf = np.zeros(3 * 3 + 3 + 3)
    w = buf[:9].reshape(3, 3, 1, 1)
    w[...] = rng.standard_normal(w.shape)
    x = rng.standard_normal((1, 3, 1, 3))
    out = buf[:9].reshape(1, 3, 1, 3)
    with pytest.raises(ValueError, match=r"(?s)conv2d: .*out"):
        fastconv.conv2d(x, w, out=out)
    b = buf[9:12]
    out = buf[6:15].reshape(1, 3, 1, 3)
    with pytest.raises(ValueError, match=r"(?s)conv2d: .*out"):
        fastconv.conv2d(x, np.ones((3, 3, 1, 1)), b, out=out)


def _at_odd_offset(a):
    """A C-contiguous copy of ``a`` one byte into a byte buffer: not aligned
    to its items, which NumPy allows and C may not load from."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    view = raw[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert view.flags.c_contiguous and not view.flags.aligned
    return view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_not_aligned_to_their_items(rng, dtype):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = fastconv.conv2d(x, w, b, padding=1)
    gy = rng.standard_normal(y.shape).astype(dtype)
    grads = fastconv.conv2d_backward(gy, x, w, padding=1)
    pooled, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    xo, wo, bo, gyo = (_at_odd_offset(a) for a in (x, w, b, gy))
    np.testing.assert_array_equal(fastconv.conv2d(xo, wo, bo, padding=1), y)
    for got, want in zip(fastconv.conv2d_backward(gyo, xo, wo, padding=1), grads):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fastconv.max_pool2d(xo, 2), pooled)
    np.testing.assert_array_equal(
        fastconv.max_pool2d_backward(_at_odd_offset(pooled), xo, 2, indices=_at_odd_offset(idx)),
        fastconv.max_pool2d_backward(pooled, x, 2, indices=idx))
    np.testing.assert_array_equal(xo, x)  # inputs unchanged
    with pytest.raises(ValueError, match=r"conv2d: out must be .*aligned"):
        fastconv.conv2d(x, w, padding=1, out=_at_odd_offset(y))


def test_out_read_only_raises(rng):
    x = rng.standard_normal((1, 3, 5, 5))
    w = rng.standard_normal((2, 3, 3, 3))
    out = np.zeros((1, 2, 3, 3))
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"(?s)conv2d: .*out"):
        fastconv.conv2d(x, w, out=out)


def test_out_non_contiguous_is_filled_or_rejected(rng):
    """A strided out= must be filled correctly or rejected with ValueError."""
    x = rng.standard_normal((1, 3, 5, 5))
    w = rng.standard_normal((2, 3, 3, 3))
    expected = fastconv.conv2d(x, w)
    big = np.zeros((1, 2, 3, 6))
    out = big[..., ::2]
    try:
        got = fastconv.conv2d(x, w, out=out)
    except ValueError as e:
        assert "conv2d:" in str(e) and "out" in str(e)
    else:
        assert got is out
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(big[..., 1::2], 0)


# --------------------------------------------------------------------------
# dtype policy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("func_dtype", [np.float16, np.int8, np.int32, np.int64, np.uint8,
                                        np.uint16, "list"])
def test_dtype_policy_single_dtype(assert_close, sample_call, func_name, func_dtype):
    """float16 -> float32; integers and Python lists -> float64, with correct values."""
    name, args, kwargs = sample_call(func_name, np.float64)
    expected_dtype = np.dtype(np.float32 if func_dtype is np.float16 else np.float64)

    def convert(a):
        v = np.round(a * 4)               # small integers: exact in every dtype
        if func_dtype == "list":
            return v.tolist()
        if np.dtype(func_dtype).kind == "u":
            v = np.abs(v)
        return v.astype(func_dtype)

    got_args, exp_args = [], []
    for a in args:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            c = convert(a)
            got_args.append(c)
            exp_args.append(np.asarray(c).astype(expected_dtype))
        else:
            got_args.append(a)
            exp_args.append(a)
    # integer data has ties, so indices computed on the original data no longer
    # apply; the dtype policy, not the tie rule, is under test here
    kwargs.pop("indices", None)
    got = call(name, got_args, kwargs)
    expected = getattr(ref, name)(*exp_args, **kwargs)
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for g_, e_ in zip(got, expected):
        if e_ is None:
            assert g_ is None
        elif e_.dtype.kind in "iu":
            assert g_.dtype == np.int64
            np.testing.assert_array_equal(g_, e_)
        else:
            assert g_.dtype == expected_dtype, f"{name}: {g_.dtype}"
            assert_close(g_, e_, 64)


@pytest.mark.parametrize("dtypes, expected, expected_backward", [
    ((np.float32, np.float64, None), np.float64, np.float64),
    ((np.float64, np.float32, None), np.float64, np.float64),
    ((np.float32, np.float32, np.float64), np.float64, np.float32),   # backward has no bias
    ((np.float32, np.float16, np.float32), np.float32, np.float32),
    ((np.float16, np.float16, None), np.float32, np.float32),
    ((np.float32, np.int64, None), np.float64, np.float64),
    ((np.int32, np.float32, None), np.float64, np.float64),
])
def test_dtype_policy_mixed_conv(rng, assert_close, dtypes, expected, expected_backward):
    """Mixed operands are promoted (and computed) in NumPy's result type."""
    def make(shape, dtype):
        v = rng.standard_normal(shape)
        return (np.round(3 * v) if np.dtype(dtype).kind in "iu" else v).astype(dtype)

    x = make((2, 3, 5, 5), dtypes[0])
    w = make((2, 3, 3, 3), dtypes[1])
    b = None if dtypes[2] is None else make(2, dtypes[2])
    exp = ref.conv2d(x.astype(expected), w.astype(expected),
                     None if b is None else b.astype(expected), padding=1)
    for algorithm in ("direct", "im2col", "auto"):
        got = fastconv.conv2d(x, w, b, padding=1, algorithm=algorithm)
        assert got.dtype == np.dtype(expected)
        assert_close(got, exp, 27)
    g = make(exp.shape, dtypes[0])     # grad_output has the input's dtype
    exp_grads = ref.conv2d_backward(g.astype(expected_backward), x.astype(expected_backward),
                                    w.astype(expected_backward), padding=1)
    grads = fastconv.conv2d_backward(g, x, w, padding=1)
    for got, exp_g, red in zip(grads, exp_grads, (18, 50, 50)):
        assert got.dtype == np.dtype(expected_backward)
        assert_close(got, exp_g, red)


@pytest.mark.parametrize("name", ["max_pool2d_backward", "avg_pool2d_backward",
                                  "adaptive_avg_pool2d_backward", "adaptive_max_pool2d_backward"])
@pytest.mark.parametrize("g_dtype, x_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_dtype_policy_mixed_pool_backward(rng, assert_close, make_tie_free, name, g_dtype,
                                          x_dtype):
    x = make_tie_free(rng, (1, 2, 6, 6), x_dtype)
    arg = 3 if name.startswith("adaptive") else 2
    g = rng.standard_normal((1, 2, 3, 3)).astype(g_dtype)
    got = getattr(fastconv, name)(g, x, arg)
    assert got.dtype == np.float64
    exp = getattr(ref, name)(g.astype(np.float64), x.astype(np.float64), arg)
    assert_close(got, exp, 4)     # float64 accuracy: computed in float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_result_dtype_follows_input(rng, sample_call, func_name, dtype):
    name, args, kwargs = sample_call(func_name, dtype)
    result = call(name, args, kwargs)
    for r in (result if isinstance(result, tuple) else (result,)):
        if r is not None and r.dtype.kind == "f":
            assert r.dtype == np.dtype(dtype)
        elif r is not None:
            assert r.dtype == np.int64
        if r is not None:
            assert r.flags.c_contiguous and r.flags.writeable
