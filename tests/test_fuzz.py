"""Fuzzing every public function with valid and invalid arguments.

Each example is one call with arguments drawn across everything the API
accepts or must refuse: batched (N, C, H, W) and unbatched (C, H, W) inputs
with sizes of 0 and 1, every padding form, strides, dilations, groups,
ceil_mode, count_include_pad, divisor_override, return_indices and indices,
``algorithm=`` and ``out=``, dtypes (float32/64, float16, integers, and the
refused bool, complex, object and str), memory layouts (C, Fortran, strided
and reversed views, read-only, broadcast, nested lists) and values (random,
ties, NaN and infinities, huge strides). Every call must

* return what ``fastconv.reference`` returns (same shape and dtype, values
  within the dtype's tolerance, max pooling and indices exactly), or
* raise ValueError or TypeError whose message starts with the function's
  name, when the reference refuses the call or the call breaks a rule only
  fastconv has (``out=``, ``algorithm=``, its stricter type and range rules);

and must leave its input arrays exactly as they were.

Profiles (registered in conftest.py): ``ci``, the default, runs a fixed
(derandomized) set of examples, 250 per function, 2,500 in all;
``HYPOTHESIS_PROFILE=long`` runs 5,000 random ones per function.
``pytest --hypothesis-show-statistics`` reports the counts.
"""
import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, note  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastconv  # noqa: E402
from fastconv import _choose  # noqa: E402
from fastconv import reference as ref  # noqa: E402

# --------------------------------------------------------------------------
# values, dtypes and layouts

VALID_DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int32, np.int64, np.uint8]
BAD_DTYPES = [np.bool_, np.complex64, np.complex128, object, "U2"]


def make_values(rng, shape, dtype, kind):
    """An array of ``shape`` and ``dtype``: random values, ties, or specials."""
    return np.asarray(_values(rng, shape, np.dtype(dtype), kind))


def _values(rng, shape, dtype, kind):
    if dtype.kind in "iu":
        lo = 0 if dtype.kind == "u" else -3
        return rng.integers(lo, 4, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j).astype(dtype)
    if dtype.kind in "OU":
        return rng.integers(0, 9, size=shape).astype(dtype)
    if kind == "ties":  # few distinct values: argmax ties, exact sums
        return rng.integers(-2, 3, size=shape).astype(dtype)
    a = rng.standard_normal(shape)
    if kind == "special" and a.size:
        # a few NaN and +-inf (max pooling must rank them as PyTorch does)
        n = max(1, a.size // 8)
        a.flat[rng.integers(0, a.size, n)] = rng.choice([np.nan, np.inf, -np.inf], n)
    return a.astype(dtype)


LAYOUTS = ["C", "C", "C", "F", "strided", "reversed", "readonly", "broadcast", "list"]


def with_layout(a, layout):
    """The same values as ``a`` in another memory layout (or as nested lists)."""
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided" and a.ndim:  # every other element of a larger array
        big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed" and a.ndim:  # negative strides along the last axis
        return a[..., ::-1].copy()[..., ::-1]
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "broadcast" and a.ndim and a.shape[0] > 0:
        # zero strides along the first axis: its entries repeat entry 0
        return np.broadcast_to(a[:1], a.shape)
    if layout == "list" and a.dtype.kind in "fiu" and a.size <= 64 and a.dtype != np.float16:
        # nested Python lists are array-likes (floats become float64)
        return a.tolist()
    return a


def snapshot(arrays):
    """Copies of every ndarray argument, to prove that none is modified."""
    return [(a, a.copy(), a.dtype) for a in arrays if isinstance(a, np.ndarray)]


def assert_unchanged(snap, name):
    for a, copy, dtype in snap:
        assert a.dtype == dtype, f"{name} changed an input's dtype"
        # bytes, not values: NaN payloads and -0.0 count too
        assert a.tobytes() == copy.tobytes(), f"{name} modified an input array"


# --------------------------------------------------------------------------
# the checker


def tolerance(dtype, reduction):
    """conftest's rule: 1e-4 (float32) or 1e-10 (float64), grown with sqrt(length / 64)."""
    base = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}[np.dtype(dtype)]
    return base * max(1.0, np.sqrt(reduction / 64.0))


def term_scale(name, args):
    """Largest magnitude of one term of the result's sums (finite values only):
    the scale of its rounding errors, which a sum that cancels to nearly 0
    (ties: -2 - 1 + 1 + 2) does not show."""
    def top(a):
        a = np.asarray(a) if isinstance(a, (np.ndarray, list)) else np.zeros(0)
        if a.dtype.kind not in "fiu":
            return 0.0
        a = a[np.isfinite(a)].astype(np.float64)
        return float(np.abs(a).max()) if a.size else 0.0
    if name == "conv2d":
        return top(args[0]) * top(args[1]) + top(args[2])
    if name == "conv2d_backward":
        return top(args[0]) * max(top(args[1]), top(args[2]))
    return top(args[0])


def assert_matches(got, expected, reduction, exact, scale, what):
    """Same shape and dtype; values exactly, or within the dtype's tolerance for
    sums of ``reduction`` terms (conftest's rule), relative to the larger of
    the result's and the terms' magnitudes."""
    assert isinstance(got, np.ndarray), f"{what}: returned {type(got).__name__}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    if exact or expected.dtype.kind in "iu":
        np.testing.assert_array_equal(got, expected, err_msg=what)
        return
    rtol = tolerance(expected.dtype, reduction)
    finite = expected[np.isfinite(expected)]
    scale = max(scale, float(np.abs(finite).max()) if finite.size else 0.0)
    # (convolutions flush denormals to zero: a difference below the normal range)
    atol = max(rtol * scale, float(np.finfo(expected.dtype).tiny) * reduction)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def check_call(name, args, kwargs, extra=None, *, invalid=False, reductions=(1,),
               exact=(False,), out_spec=None, rng=None):
    """Run fastconv's ``name`` and the reference's on the same arguments.

    ``extra`` holds fastconv-only keyword arguments (``algorithm``); ``invalid``
    says the call breaks a rule of fastconv's the reference does not check;
    ``out_spec`` names the ``out=`` array to pass (built once the reference's
    result shape is known).
    """
    kwargs = dict(kwargs)
    extra = dict(extra or {})
    note(f"{name}: kwargs={kwargs!r} extra={extra!r} invalid={invalid} out={out_spec}")
    for a in args:
        if isinstance(a, np.ndarray):
            note(f"  array {a.shape} {a.dtype} strides={a.strides} "
                 f"writeable={a.flags.writeable}")
    try:
        with np.errstate(all="ignore"):  # NaN and inf make NumPy warn; fastconv must not
            expected = getattr(ref, name)(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        expected, refused = None, exc
    except Exception as exc:  # the oracle need not handle what fastconv refuses
        if not invalid:
            raise
        expected, refused = None, exc
    else:
        refused = None
    note(f"  reference: {'refuses: ' + str(refused) if refused else 'returns'}")
    must_fail = invalid or refused is not None
    if out_spec is not None:
        out, out_ok = make_out(out_spec, expected, args, rng)
        extra["out"] = out
        must_fail = must_fail or not out_ok
    snap = snapshot(list(args) + [kwargs.get("indices")])
    try:
        got = getattr(fastconv, name)(*args, **kwargs, **extra)
    except (ValueError, TypeError) as exc:
        assert must_fail, f"{name} refused a valid call: {exc!r}"
        assert str(exc).startswith(f"{name}: "), f"message does not name {name}: {exc}"
        assert_unchanged(snap, name)
        return
    assert not must_fail, f"{name} accepted an invalid call (the reference says: {refused})"
    assert_unchanged(snap, name)
    results = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(results) == len(expected)
    for i, (r, e) in enumerate(zip(results, expected)):
        assert_matches(r, e, reductions[min(i, len(reductions) - 1)],
                       exact[min(i, len(exact) - 1)], term_scale(name, args),
                       f"{name} result {i}")
    if extra.get("out") is not None:
        assert got is extra["out"], f"{name} did not return out"


def make_out(spec, expected, args, rng):
    """An ``out=`` array for conv2d and whether conv2d must accept it."""
    if expected is None:  # the call fails anyway
        return np.empty(1), False
    shape, dtype = expected.shape, expected.dtype
    if spec == "good":
        return np.full(shape, np.nan, dtype), True
    if spec == "wrong_dtype":
        other = np.float32 if dtype == np.float64 else np.float64
        return np.empty(shape, other), False
    if spec == "wrong_shape":
        return np.empty(shape + (1,), dtype), False
    if spec == "list":
        return np.empty(shape, dtype).tolist(), False
    if spec == "fortran":
        out = np.asfortranarray(np.empty(shape, dtype))
        return out, out.flags.c_contiguous  # a shape of ones is both
    if spec == "strided":
        out = np.empty(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
        return out, out.flags.c_contiguous
    if spec == "readonly":
        out = np.empty(shape, dtype)
        out.flags.writeable = False
        return out, False
    if spec == "overlap":  # the input itself, when it could hold the result
        x = args[0]
        if isinstance(x, np.ndarray) and x.shape == shape and x.dtype == dtype \
                and x.flags.c_contiguous and x.flags.writeable:
            return x, x.size == 0  # an empty array overlaps nothing
        return np.zeros(shape, dtype), True
    raise AssertionError(spec)


# --------------------------------------------------------------------------
# strategies shared by the functions

seeds = st.integers(0, 2**32 - 1)
value_kinds = st.sampled_from(["random", "random", "ties", "special"])
# The reference averages adaptive windows by a dense matrix product, where a
# NaN or inf meets the zeros of other windows (0 * inf = NaN) and spreads;
# test_special.py checks those functions' special values window by window.
finite_kinds = st.sampled_from(["random", "random", "ties"])
big = st.sampled_from([2**31, 2**40, 2**62])


@st.composite
def small_int(draw, lo, hi, huge=False):
    """An int in [lo, hi], sometimes a NumPy integer, sometimes (huge) 2**31+."""
    if huge and draw(st.integers(0, 19)) == 0:
        return draw(big)
    v = draw(st.integers(lo, hi))
    return np.int64(v) if draw(st.integers(0, 9)) == 0 else v


@st.composite
def pair_arg(draw, a, b):
    """An int when a == b (sometimes), else a tuple or a list."""
    if a == b and draw(st.booleans()):
        return a
    return list((a, b)) if draw(st.integers(0, 4)) == 0 else (a, b)


@st.composite
def bad_scalar(draw, minimum, none_ok=False):
    """A value no int parameter >= minimum accepts (None too, unless it has a meaning)."""
    bad = [minimum - 1, -5, 1.5, "2", True, (1, 2, 3), [1], (1, 0.5)]
    return draw(st.sampled_from(bad if none_ok else bad + [None]))


@st.composite
def dtype_for(draw, bad_ok=True):
    """(dtype, refused): mostly valid dtypes, sometimes one fastconv refuses."""
    if bad_ok and draw(st.integers(0, 14)) == 0:
        return draw(st.sampled_from(BAD_DTYPES)), True
    return draw(st.sampled_from(VALID_DTYPES[:2] * 3 + VALID_DTYPES[2:])), False


@st.composite
def array(draw, shape, dtype, kind, rng):
    return with_layout(make_values(rng, shape, dtype, kind), draw(st.sampled_from(LAYOUTS)))


@st.composite
def batch(draw, C, H, W):
    """(shape, N): an unbatched (C, H, W) or a batched (N, C, H, W) input."""
    r = draw(st.integers(0, 19))
    if r < 6:
        return (C, H, W), 1
    if r == 6:  # not an image
        return draw(st.sampled_from([(H, W), (1, 1, C, H, W), ()])), 1
    N = draw(st.sampled_from([0, 1, 1, 2, 3]))
    return (N, C, H, W), N


def set_threads(draw):
    """Run the example on 1 or 2 threads, tiny calls included (restored by the caller)."""
    n = draw(st.sampled_from([1, 2]))
    fastconv.set_num_threads(n)
    _choose.PARALLEL_MIN_FLOPS = 0 if n > 1 else _PARALLEL_MIN_FLOPS


_PARALLEL_MIN_FLOPS = _choose.PARALLEL_MIN_FLOPS


@pytest.fixture(autouse=True, scope="module")
def _restore_threads():
    yield
    fastconv.set_num_threads(None)
    _choose.PARALLEL_MIN_FLOPS = _PARALLEL_MIN_FLOPS


# --------------------------------------------------------------------------
# conv2d and conv2d_backward


@st.composite
def conv_geometry(draw):
    """Keyword arguments of a convolution and the shapes they fit (mostly)."""
    invalid = False
    groups = draw(st.integers(1, 3))
    Cg, Kg = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if draw(st.integers(0, 29)) == 0:  # an empty weight dimension
        Kg, invalid = 0, True
    # (a single tap's dilation plays no part: sometimes 2**31 and more)
    dh, dw = draw(small_int(1, 3, huge=R == 1)), draw(small_int(1, 3, huge=S == 1))
    eR, eS = dh * (R - 1) + 1, dw * (S - 1) + 1
    form = draw(st.sampled_from(["int", "pair", "asym", "valid", "same"]))
    sh, sw = (1, 1) if form == "same" else (draw(small_int(1, 3, huge=True)),
                                             draw(small_int(1, 3, huge=True)))
    if form == "int":
        padding = draw(small_int(0, 3))
        pads = (padding,) * 4
    elif form == "pair":
        ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        padding, pads = draw(pair_arg(ph, pw)), (ph, ph, pw, pw)
    elif form == "asym":
        pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
        padding = ((pads[0], pads[1]), [pads[2], pads[3]])
    elif form == "valid":
        padding, pads = "valid", (0, 0, 0, 0)
    else:
        padding = "same"
        pads = ((eR - 1) // 2, eR - 1 - (eR - 1) // 2, (eS - 1) // 2, eS - 1 - (eS - 1) // 2)
    # sizes the kernel fits, or (sometimes) any size from 0, which may not fit
    if draw(st.integers(0, 7)) == 0:
        H, W = draw(st.sampled_from([0, 0, 1, 2, 5])), draw(st.integers(0, 6))
        invalid = invalid or H == 0 or W == 0  # PyTorch refuses an empty plane too
    else:
        minH, minW = max(1, eR - pads[0] - pads[1]), max(1, eS - pads[2] - pads[3])
        H, W = draw(st.integers(minH, minH + 6)), draw(st.integers(minW, minW + 6))
    kw = dict(stride=draw(pair_arg(sh, sw)), padding=padding,
              dilation=draw(pair_arg(dh, dw)), groups=groups)
    # one argument made wrong
    if draw(st.integers(0, 9)) == 0:
        param = draw(st.sampled_from(["stride", "dilation", "groups", "padding"]))
        bad = [-1, 1.5, "2", None, True, (1, 2, 3), "full", ((1, 1), 1),
               ((0, -1), (0, 0)), ((1, 2, 3), (0, 0)), np.float64(1.0)]
        if param != "padding":  # (a padding of 0 is valid)
            bad += [0, (1, 0)]
        kw[param] = draw(st.sampled_from(bad))
        invalid = True  # (the reference refuses some of these too)
    if form == "same" and kw["stride"] not in (1, (1, 1), [1, 1]) and not invalid:
        invalid = True  # 'same' needs stride 1
    algorithm = draw(st.sampled_from(["auto", "auto", "direct", "im2col", "1x1", "fft", None]))
    if algorithm not in ("auto", "direct", "im2col") and not (algorithm == "1x1" and R == S == 1):
        invalid = True
    return dict(groups=groups, C=groups * Cg, K=groups * Kg, Cg=Cg, Kg=Kg, R=R, S=S,
                H=H, W=W, kw=kw, algorithm=algorithm, invalid=invalid)


@given(geo=conv_geometry(), data=st.data(), seed=seeds, kind=value_kinds)
def test_conv2d(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    set_threads(draw)
    xt, bad_x = draw(dtype_for())
    wt, bad_w = draw(dtype_for())
    x_shape, N = draw(batch(geo["C"], geo["H"], geo["W"]))
    if geo["C"] and draw(st.integers(0, 29)) == 0:
        x_shape = x_shape[:-3] + (geo["C"] + 1,) + x_shape[-2:]  # channels do not match
    x = draw(array(x_shape, xt, kind, rng))
    w = draw(array((geo["K"], geo["Cg"], geo["R"], geo["S"]), wt, kind, rng))
    b = None
    if draw(st.booleans()):
        bt, _ = draw(dtype_for(bad_ok=False))
        b_shape = (geo["K"] + draw(st.sampled_from([0, 0, 0, 1])),)
        b = draw(array(b_shape, bt, kind, rng))
    out_spec = draw(st.sampled_from(
        [None] * 6 + ["good", "good", "wrong_dtype", "wrong_shape", "list", "fortran",
                      "strided", "readonly", "overlap"]))
    check_call("conv2d", (x, w, b), geo["kw"], dict(algorithm=geo["algorithm"]),
               invalid=geo["invalid"] or bad_x or bad_w,
               reductions=(geo["Cg"] * geo["R"] * geo["S"],), out_spec=out_spec, rng=rng)


@given(geo=conv_geometry(), data=st.data(), seed=seeds, kind=value_kinds)
def test_conv2d_backward(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    set_threads(draw)
    xt, bad_x = draw(dtype_for())
    wt, bad_w = draw(dtype_for())
    gt, bad_g = draw(dtype_for())
    x_shape, N = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    w_shape = (geo["K"], geo["Cg"], geo["R"], geo["S"])
    w = draw(array(w_shape, wt, kind, rng))
    try:  # grad_output has the forward's output shape (when there is one)
        y_shape = ref.conv2d(np.zeros(x_shape), np.zeros(w_shape), **geo["kw"]).shape
    except Exception:  # an invalid call
        y_shape = (1, 1, 1, 1)
    if draw(st.integers(0, 14)) == 0:
        y_shape = y_shape[:-1] + (y_shape[-1] + 1,) if y_shape else (1,)
    g = draw(array(y_shape, gt, kind, rng))
    P_Q = int(np.prod(y_shape[-2:])) if len(y_shape) >= 2 else 1
    red_pixels = max(1, N * P_Q)
    check_call("conv2d_backward", (g, x, w), geo["kw"],
               dict(algorithm=geo["algorithm"]),
               invalid=geo["invalid"] or bad_x or bad_w or bad_g,
               reductions=(geo["Kg"] * geo["R"] * geo["S"], red_pixels, red_pixels))


# --------------------------------------------------------------------------
# max and average pooling


@st.composite
def pool_geometry(draw, avg):
    """Keyword arguments of a max (avg=False) or average pooling and an input size."""
    invalid = False
    kh, kw_ = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = (1, 1) if avg else (draw(small_int(1, 3, huge=kh == 1)),
                                 draw(small_int(1, 3, huge=kw_ == 1)))
    eh, ew = dh * (kh - 1) + 1, dw * (kw_ - 1) + 1
    ph, pw = draw(st.integers(0, eh // 2)), draw(st.integers(0, ew // 2))
    if draw(st.integers(0, 14)) == 0:  # padding above half the kernel: PyTorch refuses it
        ph, invalid = eh // 2 + 1, True
    if draw(st.integers(0, 9)) == 0:
        stride = None
    else:
        stride = draw(pair_arg(draw(small_int(1, 4, huge=True)), draw(small_int(1, 4, huge=True))))
    if draw(st.integers(0, 7)) == 0:
        H, W = draw(st.integers(0, 6)), draw(st.integers(0, 6))
        invalid = invalid or H == 0 or W == 0  # fastconv needs a non-empty plane
    else:
        minH, minW = max(1, eh - 2 * ph), max(1, ew - 2 * pw)
        H, W = draw(st.integers(minH, minH + 7)), draw(st.integers(minW, minW + 7))
    kw = dict(kernel_size=draw(pair_arg(kh, kw_)), stride=stride,
              padding=draw(pair_arg(ph, pw)), ceil_mode=draw(st.booleans()))
    if not avg:
        kw["dilation"] = draw(pair_arg(dh, dw))
    else:
        kw["count_include_pad"] = draw(st.booleans())
        kw["divisor_override"] = draw(st.sampled_from([None, None, None, 1, 2, 5, 2**62, 2**63]))
        invalid = invalid or (kw["divisor_override"] or 0) > 2**63 - 1  # a Py_ssize_t
    if draw(st.integers(0, 9)) == 0:
        params = ["kernel_size", "stride", "padding", "ceil_mode"]
        params += ["count_include_pad", "divisor_override"] if avg else ["dilation"]
        param = draw(st.sampled_from(params))
        if param in ("ceil_mode", "count_include_pad"):
            kw[param] = draw(st.sampled_from([1, 0, "yes", None]))  # bools only
        else:
            kw[param] = draw(bad_scalar(0 if param == "padding" else 1,
                                        none_ok=param in ("stride", "divisor_override")))
        invalid = True
    C = draw(st.integers(0, 3)) if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, 3))
    return dict(C=C, H=H, W=W, kw=kw, invalid=invalid, area=eh * ew)


def window_indices(draw, rng, shape, H, W):
    """Indices for a max pooling backward: any in-range position (windows need
    not hold them), -1, or (sometimes) an out-of-range value, a float or a
    wrong shape; returns (indices, invalid)."""
    r = draw(st.integers(0, 11))
    idx = rng.integers(-1, max(H * W, 1), size=shape)
    if r == 0:
        bad = draw(st.sampled_from([-2, H * W, 2**40, -2**63, 2**63 - 1]))
        if idx.size:
            idx.flat[rng.integers(0, idx.size)] = bad
            return idx, True
    if r == 1:
        return idx.astype(np.float64), True
    if r == 2:
        return idx[..., :0] if idx.ndim and idx.shape[-1] else idx.reshape(-1, 1), True
    dtype = draw(st.sampled_from([np.int64, np.int64, np.int32, np.int16]))
    if dtype != np.int64 and H * W >= np.iinfo(dtype).max:
        dtype = np.int64
    return with_layout(idx.astype(dtype), draw(st.sampled_from(LAYOUTS))), False


def pool_output_shape(name, x_shape, kw):
    try:
        return getattr(ref, name)(np.zeros(x_shape), **kw).shape
    except Exception:  # the call is invalid (the oracle may fail in its own way)
        return (1, 1, 1)


@given(geo=pool_geometry(avg=False), data=st.data(), seed=seeds, kind=value_kinds)
def test_max_pool2d(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    xt, bad = draw(dtype_for())
    x_shape, _ = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    kw = dict(geo["kw"])
    kw["return_indices"] = draw(st.sampled_from([True, True, False, np.True_, 1]))
    invalid = geo["invalid"] or bad or not isinstance(kw["return_indices"], (bool, np.bool_))
    check_call("max_pool2d", (x,), kw, invalid=invalid, exact=(True,))


@given(geo=pool_geometry(avg=False), data=st.data(), seed=seeds, kind=value_kinds)
def test_max_pool2d_backward(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    xt, bad_x = draw(dtype_for())
    gt, bad_g = draw(dtype_for())
    x_shape, _ = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    y_shape = pool_output_shape("max_pool2d", x_shape, geo["kw"])
    g = draw(array(y_shape, gt, kind, rng))
    kw = dict(geo["kw"])
    invalid = geo["invalid"] or bad_x or bad_g
    if draw(st.booleans()):
        kw["indices"], bad_i = window_indices(draw, rng, y_shape, geo["H"], geo["W"])
        invalid = invalid or bad_i
    # overlapping windows (or any indices) sum up to P*Q gradients into one input
    check_call("max_pool2d_backward", (g, x), kw, invalid=invalid,
               reductions=(max(1, int(np.prod(y_shape[-2:]))),))


@given(geo=pool_geometry(avg=True), data=st.data(), seed=seeds, kind=value_kinds)
def test_avg_pool2d(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    xt, bad = draw(dtype_for())
    x_shape, _ = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    check_call("avg_pool2d", (x,), geo["kw"], invalid=geo["invalid"] or bad,
               reductions=(geo["area"],))


@given(geo=pool_geometry(avg=True), data=st.data(), seed=seeds, kind=value_kinds)
def test_avg_pool2d_backward(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    xt, bad_x = draw(dtype_for())
    gt, bad_g = draw(dtype_for())
    x_shape, _ = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    y_shape = pool_output_shape("avg_pool2d", x_shape, geo["kw"])
    if draw(st.integers(0, 14)) == 0:
        y_shape = y_shape[:-2] + (y_shape[-2] + 1,) + y_shape[-1:] if len(y_shape) >= 2 \
            else (2,)
    g = draw(array(y_shape, gt, kind, rng))
    check_call("avg_pool2d_backward", (g, x), geo["kw"],
               invalid=geo["invalid"] or bad_x or bad_g,
               reductions=(geo["area"],))


# --------------------------------------------------------------------------
# adaptive pooling


@st.composite
def adaptive_geometry(draw):
    C = draw(st.integers(0, 3)) if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    invalid = False
    if draw(st.integers(0, 14)) == 0:
        H, invalid = 0, True
    size = st.one_of(st.none(), st.integers(1, 12))
    r = draw(st.integers(0, 9))
    if r < 4:
        output_size = draw(st.integers(1, 12))
    elif r < 8:
        output_size = draw(pair_arg(draw(size), draw(size)))
        if output_size is None:
            output_size = (None, None)
    else:
        output_size = draw(st.sampled_from([0, -1, (0, 2), (2, -3), 1.5, "2", (1, 2, 3), True,
                                            (True, 1), [None]]))
        invalid = True
    return dict(C=C, H=H, W=W, output_size=output_size, invalid=invalid)


def adaptive_reduction(H, W):
    """Bound on an adaptive window's size (at most ceil(H/P) + 1 rows, likewise columns)."""
    return (H + 1) * (W + 1)


@given(geo=adaptive_geometry(), data=st.data(), seed=seeds, kind=finite_kinds)
def test_adaptive_avg_pool2d(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    xt, bad = draw(dtype_for())
    x_shape, _ = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    check_call("adaptive_avg_pool2d", (x, geo["output_size"]), {},
               invalid=geo["invalid"] or bad,
               reductions=(adaptive_reduction(geo["H"], geo["W"]),))


@given(geo=adaptive_geometry(), data=st.data(), seed=seeds, kind=finite_kinds)
def test_adaptive_avg_pool2d_backward(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    xt, bad_x = draw(dtype_for())
    gt, bad_g = draw(dtype_for())
    x_shape, _ = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    try:
        y_shape = ref.adaptive_avg_pool2d(np.zeros(x_shape), geo["output_size"]).shape
    except Exception:  # an invalid call
        y_shape = (1, 1, 1)
    g = draw(array(y_shape, gt, kind, rng))
    check_call("adaptive_avg_pool2d_backward", (g, x, geo["output_size"]), {},
               invalid=geo["invalid"] or bad_x or bad_g,
               reductions=(adaptive_reduction(geo["H"], geo["W"]),))


@given(geo=adaptive_geometry(), data=st.data(), seed=seeds, kind=value_kinds)
def test_adaptive_max_pool2d(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    xt, bad = draw(dtype_for())
    x_shape, _ = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    ri = draw(st.sampled_from([True, True, False, np.False_, 0]))
    check_call("adaptive_max_pool2d", (x, geo["output_size"]),
               dict(return_indices=ri),
               invalid=geo["invalid"] or bad or not isinstance(ri, (bool, np.bool_)),
               exact=(True,))


@given(geo=adaptive_geometry(), data=st.data(), seed=seeds, kind=value_kinds)
def test_adaptive_max_pool2d_backward(geo, data, seed, kind):
    rng = np.random.default_rng(seed)
    draw = data.draw
    xt, bad_x = draw(dtype_for())
    gt, bad_g = draw(dtype_for())
    x_shape, _ = draw(batch(geo["C"], geo["H"], geo["W"]))
    x = draw(array(x_shape, xt, kind, rng))
    try:
        y_shape = ref.adaptive_max_pool2d(np.zeros(x_shape), geo["output_size"]).shape
    except Exception:  # an invalid call
        y_shape = (1, 1, 1)
    g = draw(array(y_shape, gt, kind, rng))
    kw = {}
    invalid = geo["invalid"] or bad_x or bad_g
    if draw(st.booleans()):
        kw["indices"], bad_i = window_indices(draw, rng, y_shape, geo["H"], geo["W"])
        invalid = invalid or bad_i
    check_call("adaptive_max_pool2d_backward", (g, x, geo["output_size"]), kw,
               invalid=invalid, reductions=(max(1, int(np.prod(y_shape[-2:]))),))


# --------------------------------------------------------------------------
# regressions: the fuzzer's (and the sanitizer's) finds, minimised


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "1x1"])
@pytest.mark.parametrize("stride", [2**20, 2**31, (1, 2**62), 2**62])
def test_conv_stride_beyond_the_input(algorithm, stride):
    """A stride longer than the input (one output along that axis) once sized
    the direct kernel's phase buffers by stride x stride: a MemoryError, or an
    overflowed size and a crash."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, 1, 1))
    y = fastconv.conv2d(x, w, stride=stride, padding=1, algorithm=algorithm)
    np.testing.assert_allclose(y, ref.conv2d(x, w, stride=stride, padding=1), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    for got, exp in zip(fastconv.conv2d_backward(g, x, w, stride, 1, algorithm=algorithm),
                        ref.conv2d_backward(g, x, w, stride, 1)):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dilation", [2**40, 2**63, (2**63, 1)])
def test_dilation_of_a_single_tap(dilation):
    """A 1-tap kernel's dilation plays no part, but reached the kernels: 2**63
    raised OverflowError (found by atheris). The result is that of dilation 1
    (which the reference, whose index arithmetic is int64, is given)."""
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 6))
    np.testing.assert_array_equal(
        fastconv.max_pool2d(x, (1, 1), 1, dilation=dilation, return_indices=True),
        ref.max_pool2d(x, (1, 1), 1, return_indices=True))
    w = np.ones((2, 3, 1, 1))
    for algorithm in ("direct", "im2col"):
        np.testing.assert_allclose(fastconv.conv2d(x, w, dilation=dilation, algorithm=algorithm),
                                   ref.conv2d(x, w), rtol=1e-12)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("stride", [2**40, 2**62, (1, 2**62)])
def test_pool_stride_beyond_the_input(name, stride):
    """... and the pooling row buffer by 16 windows x stride (a floating-point
    exception or a crash at 2**62)."""
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 7))
    np.testing.assert_allclose(getattr(fastconv, name)(x, 2, stride),
                               getattr(ref, name)(x, 2, stride), rtol=1e-12)
    g = np.ones(getattr(ref, name)(x, 2, stride).shape)
    np.testing.assert_allclose(getattr(fastconv, name + "_backward")(g, x, 2, stride),
                               getattr(ref, name + "_backward")(g, x, 2, stride), rtol=1e-12)


@pytest.mark.parametrize("call", [
    lambda x: fastconv.max_pool2d(x, (1, 2**62), padding=(0, 2**61)),
    lambda x: fastconv.avg_pool2d(x, (2**62, 1), padding=(2**61, 0)),
    lambda x: fastconv.conv2d(x, np.ones((1, 2, 1, 1)), stride=2**40, padding=2**40),
    lambda x: fastconv.conv2d_backward(np.ones((1, 1, 3, 3)), x, np.ones((1, 2, 1, 1)),
                                       stride=2**40, padding=2**40),
], ids=["max-kernel", "avg-kernel", "conv", "conv-backward"])
def test_huge_padded_input_is_refused(call):
    """Windows and padding of 2**61 and more: the kernels' buffer sizes would
    overflow (a crash); the padded input is bounded instead."""
    with pytest.raises(ValueError, match=r"^\w+: the zero-padded input .* elements"):
        call(np.ones((1, 2, 5, 7)))


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "auto"])
def test_backward_with_infinite_weight(algorithm):
    """grad_input has no term pairing a weight with grad_output's padding: the
    direct kernel once multiplied an infinite weight by a padding zero (NaN)."""
    x = np.array([[[np.nan], [-0.13]]], np.float32)
    w = np.array([[[[0.1], [np.inf]]]], np.float32)
    g = np.array([[[-np.inf]]], np.float32)
    gx, gw, gb = fastconv.conv2d_backward(g, x, w, stride=(1, 2), algorithm=algorithm)
    np.testing.assert_array_equal(gx, [[[-np.inf], [-np.inf]]])  # as PyTorch
    np.testing.assert_array_equal(gx, ref.conv2d_backward(g, x, w, stride=(1, 2))[0])


def test_grad_bias_of_infinities_does_not_warn():
    """inf + -inf in grad_output is a NaN grad_bias, silently (as the kernels'
    sums), not a NumPy RuntimeWarning (an error under this suite's filters)."""
    g = np.array([[[[np.inf, -np.inf]]]])
    gb = fastconv.conv2d_backward(g, np.ones((1, 1, 1, 2)), np.ones((1, 1, 1, 1)))[2]
    assert np.isnan(gb).all()


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_conv_empty_plane_is_refused(algorithm):
    """An input of height 0 with padding: PyTorch refuses it; the checked build's
    bounds checks caught the kernels taking the address of its first row."""
    with pytest.raises(ValueError, match=r"^conv2d: input must have non-empty height"):
        fastconv.conv2d(np.zeros((1, 2, 0, 3)), np.ones((3, 2, 1, 1)), padding=1,
                        algorithm=algorithm)
    with pytest.raises(ValueError, match=r"^conv2d_backward: input must have non-empty"):
        fastconv.conv2d_backward(np.ones((1, 3, 2, 5)), np.zeros((1, 2, 0, 3)),
                                 np.ones((3, 2, 1, 1)), padding=1, algorithm=algorithm)


@pytest.mark.parametrize("bad", [-2**63, 2**63 - 1, -2, 256 * 256])
def test_extreme_indices_on_a_split_plane(bad):
    """On planes split among threads the backward's range check computed
    index - first row's offset in signed arithmetic: -2**63 overflowed (UBSan)."""
    fastconv.set_num_threads(2)
    try:
        x = np.random.default_rng(3).standard_normal((1, 1, 256, 256))
        y, idx = fastconv.max_pool2d(x, 3, 1, return_indices=True)
        idx[0, 0, 200, 5] = bad
        with pytest.raises(ValueError, match=r"^max_pool2d_backward: indices must be"):
            fastconv.max_pool2d_backward(np.ones_like(y), x, 3, 1, indices=idx)
    finally:
        fastconv.set_num_threads(None)


@pytest.mark.parametrize("n", [100_000, 2**31, 2**64])
def test_thread_count_is_bounded(n):
    """set_num_threads(100_000) once let the next call crash inside libgomp (which
    sets up the team on the caller's stack); 2**64 raised OverflowError there."""
    with pytest.raises(ValueError, match=r"^set_num_threads: n must be an int in \[1, 1024\]"):
        fastconv.set_num_threads(n)
    assert fastconv.get_num_threads() <= 1024


def test_divisor_override_beyond_ssize_t():
    """An int the kernels' Py_ssize_t cannot hold raised OverflowError."""
    x = np.arange(16.0).reshape(1, 4, 4)
    for name in ("avg_pool2d", "avg_pool2d_backward"):
        args = (x,) if name == "avg_pool2d" else (np.ones((1, 2, 2)), x)
        with pytest.raises(ValueError, match=rf"^{name}: divisor_override must be"):
            getattr(fastconv, name)(*args, 2, divisor_override=2**63)
        np.testing.assert_allclose(getattr(fastconv, name)(*args, 2, divisor_override=2**63 - 1),
                                   getattr(ref, name)(*args, 2, divisor_override=2**63 - 1))


@pytest.mark.parametrize("call", [
    lambda x: fastconv.adaptive_avg_pool2d(x, (2**62, 2**62)),
    lambda x: fastconv.adaptive_max_pool2d(x, (2**62, 4), return_indices=True),
    lambda x: fastconv.adaptive_avg_pool2d_backward(x[:, :, :1, :1], x, (2**62, 2**62)),
], ids=["avg", "max", "avg-backward"])
def test_empty_output_of_unaddressable_shape(call):
    """An empty batch with output sizes whose product overflows: the size check
    counted 0 elements, and NumPy's own refusal (a message naming no function)
    came out instead (found by atheris)."""
    with pytest.raises(ValueError, match=r"^adaptive_\w+: the output would have"):
        call(np.zeros((0, 3, 2, 2)))


@pytest.mark.parametrize("kw", [
    dict(kernel_size=(1, 3), stride=3),
    dict(kernel_size=(1, 4), stride=3, padding=(0, 1)),
    dict(kernel_size=(2, 3), stride=(2, 3), padding=(1, 0), dilation=(2, 1)),
])
def test_ceil_mode_window_longer_than_the_input(kw):
    """In ceil mode a window longer than the padded input still gives one output
    when the stride covers the overhang (PyTorch rounds the negative span
    down); fastconv refused it as 'must fit' (found by the long profile)."""
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 1))
    y, idx = fastconv.max_pool2d(x, ceil_mode=True, return_indices=True, **kw)
    ey, eidx = ref.max_pool2d(x, ceil_mode=True, return_indices=True, **kw)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(idx, eidx)
    g = np.ones(y.shape)
    np.testing.assert_allclose(fastconv.max_pool2d_backward(g, x, ceil_mode=True, **kw),
                               ref.max_pool2d_backward(g, x, ceil_mode=True, **kw))
    if "dilation" not in kw:
        for cip in (True, False):
            akw = dict(kw, ceil_mode=True, count_include_pad=cip)
            np.testing.assert_allclose(fastconv.avg_pool2d(x, **akw), ref.avg_pool2d(x, **akw))
            np.testing.assert_allclose(fastconv.avg_pool2d_backward(g, x, **akw),
                                       ref.avg_pool2d_backward(g, x, **akw))


@pytest.mark.parametrize("kw", [
    dict(kernel_size=(1, 3), stride=3),
    dict(kernel_size=(1, 4), stride=3, padding=(0, 1)),
    dict(kernel_size=(2, 3), stride=(2, 3), padding=(1, 0), dilation=(2, 1)),
])
def test_ceil_mode_window_longer_than_the_input_as_torch(kw):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 1))
    ty, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), ceil_mode=True,
                                              return_indices=True, **kw)
    y, idx = fastconv.max_pool2d(x, ceil_mode=True, return_indices=True, **kw)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())


@pytest.mark.parametrize("k", [2**40, 2**63])
@pytest.mark.parametrize("padding", [0, 1])
def test_ceil_mode_single_window_of_any_length(k, padding):
    """... and that window can be of any length (found by atheris: 2**63 raised
    OverflowError, 2**40 needed a row buffer of 2**40): the kernels get the
    shortest one with the same taps and count. The reference, which builds
    its windows tap by tap, is given an equivalent window of 40."""
    x = np.random.default_rng(8).standard_normal((2, 3, 3, 5))
    for cip in (True, False):
        akw = dict(padding=padding, ceil_mode=True, count_include_pad=cip)
        np.testing.assert_allclose(fastconv.avg_pool2d(x, k, **akw),
                                   ref.avg_pool2d(x, 40, 2**62, **akw), rtol=1e-12)
        g = np.ones((2, 3, 1, 1))
        np.testing.assert_allclose(fastconv.avg_pool2d_backward(g, x, k, **akw),
                                   ref.avg_pool2d_backward(g, x, 40, 2**62, **akw), rtol=1e-12)
    got = fastconv.max_pool2d(x, k, padding=padding, ceil_mode=True, return_indices=True)
    exp = ref.max_pool2d(x, 40, 2**62, padding=padding, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(got[0], exp[0])
    np.testing.assert_array_equal(got[1], exp[1])
    # two taps 2**62 apart: the second is past the input (the first, with padding,
    # before it: an empty window, -inf and index -1)
    got = fastconv.max_pool2d(x, 2, 2**63, padding=padding, dilation=2**62, ceil_mode=True,
                              return_indices=True)
    exp = ref.max_pool2d(x, 1, 2**62, padding=padding, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(got[0], exp[0])
    np.testing.assert_array_equal(got[1], exp[1])
