"""Argument normalisation, output-size formulas and the dtype policy.

Every public function goes through these helpers, so each rule (and each
error message) exists exactly once.  Messages follow one format:
``"<function>: <parameter> must be <rule>, got <value>"``.
"""
import math
import numbers
import operator
import sys

import numpy as np

__all__ = [
    "ConvGeometry",
    "PoolGeometry",
    "conv_geometry",
    "pool_geometry",
    "adaptive_pool_geometry",
    "avg_pool_divisors",
    "check_grad_output",
    "check_out",
    "check_indices",
]

# Largest element count we let an output or workspace reach: beyond it index
# arithmetic in Py_ssize_t could overflow once multiplied by the item size.
_MAX_ELEMENTS = sys.maxsize // 16
# Largest zero-padded input (C x padded H x padded W) we accept. The kernels'
# workspaces grow with it (a band of the direct kernel holds up to ~60 values
# per padded position and channel, the pooling row buffers span the padding),
# so below this bound every size they compute, in bytes, fits in Py_ssize_t
# with room to spare (2**53 on 64-bit; no real input comes near it).
_MAX_PADDED = sys.maxsize // 1024


# --------------------------------------------------------------------------
# scalars and pairs


def _int(value, func, name, minimum):
    """Return ``value`` as a Python int >= ``minimum`` (bools are not ints here)."""
    if type(value) is int and value >= minimum:  # the common case, without the ABC check
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{func}: {name} must be an int, got {value!r}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{func}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def _pair(value, func, name, minimum=1):
    """Normalise an int or a pair of ints to a tuple ``(a, b)``, each >= minimum."""
    if type(value) is int and value >= minimum:  # the common case, without the ABC checks
        return (value, value)
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{func}: {name} must be an int >= {minimum} or a pair of them, got {value!r}"
            )
        items = value
    else:
        items = (value, value)
    out = []
    for item in items:
        if type(item) is int and item >= minimum:
            out.append(item)
            continue
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise TypeError(
                f"{func}: {name} must be an int >= {minimum} or a pair of them, got {value!r}"
            )
        if item < minimum:
            raise ValueError(
                f"{func}: {name} must be an int >= {minimum} or a pair of them, got {value!r}"
            )
        out.append(operator.index(item))
    return tuple(out)


def _bool(value, func, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{func}: {name} must be a bool, got {value!r}")
    return bool(value)


# --------------------------------------------------------------------------
# dtypes and arrays


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _float_dtype(dtype, func, name):
    """The dtype policy: which float type an operand of ``dtype`` computes in."""
    if dtype.kind == "f":
        if dtype.itemsize <= 4:  # float16 computes (and returns) as float32
            return _F32
        if dtype.itemsize == 8:
            return _F64
    elif dtype.kind in "iu":  # integers convert to float64, as NumPy's mean does
        return _F64
    raise TypeError(
        f"{func}: {name} must have a real floating or integer dtype, got dtype {dtype}"
    )


def _as_array(value, func, name):
    """``np.asarray`` without copying; reject what cannot be a float array."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{func}: {name} must be an array-like of numbers ({exc})") from None
    _float_dtype(arr.dtype, func, name)  # raise early for bool/complex/object/str
    return arr


def _result_dtype(func, **arrays):
    """Common float dtype of the operands: float64 if any operand computes in float64."""
    dtype = _F32
    for name, a in arrays.items():
        if a is not None and _float_dtype(a.dtype, func, name) is _F64:
            dtype = _F64
    return dtype


def _contiguous(arr, dtype):
    """C-contiguous, aligned array of ``dtype``; copies at most once, never
    modifies ``arr``. A view at an odd byte offset (of a byte buffer, say) is
    contiguous but not aligned to its items, which C may not load from."""
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return arr if arr.flags.aligned else arr.copy()


def _check_size(func, shape, what="output", limit=_MAX_ELEMENTS):
    # empty dimensions count as 1: NumPy refuses a shape whose other sizes
    # multiply past what it can address, even when the array would be empty
    n = math.prod(shape)
    if n == 0:
        n = math.prod(max(d, 1) for d in shape)
    if n > limit:
        empty = " (empty dimensions counted as 1)" if 0 in shape else ""
        raise ValueError(
            f"{func}: the {what} would have {n} elements{empty} (shape {tuple(shape)}), "
            f"more than can be addressed"
        )


def _batched(arr, func, name="input"):
    """Return ``(4-D view, unbatched)`` for an NCHW or unbatched CHW array."""
    if arr.ndim == 4:
        return arr, False
    if arr.ndim == 3:
        return arr[None], True
    raise ValueError(
        f"{func}: {name} must be 3-D (C, H, W) or 4-D (N, C, H, W), "
        f"got {arr.ndim}-D array of shape {arr.shape}"
    )


def _kernel_steps(func, C, padded, out, kernel, stride, dilation):
    """Bound the zero-padded input; return the (stride, dilation) the kernels get.

    Along an axis with a single output the stride plays no part, nor does the
    dilation of a single tap: the kernels are given 1 instead, the same
    result. They size buffers by them (the direct convolution splits its
    input into stride x stride phases, pooling rows span 16 windows), so an
    irrelevant 2**40 was a crash, 2**63 an OverflowError. Any other stride
    or dilation is below the padded size, itself bounded here.
    """
    _check_size(func, (C, *padded), "zero-padded input (per image)", _MAX_PADDED)
    stride = (1 if out[0] == 1 else stride[0], 1 if out[1] == 1 else stride[1])
    dilation = (1 if kernel[0] == 1 else dilation[0], 1 if kernel[1] == 1 else dilation[1])
    return stride, dilation


# --------------------------------------------------------------------------
# output sizes (the only copy of these formulas in the package)


def conv_output_size(size, kernel, stride, pad_lo, pad_hi, dilation):
    """floor((size + pad_lo + pad_hi - dilation*(kernel-1) - 1) / stride) + 1"""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's pooling size: in ceil mode the last window must start inside
    the input or the left padding. ``//`` rounds towards -inf, as PyTorch's
    division does, so in ceil mode a window longer than the padded input
    still gives one output when the stride covers the overhang."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


# --------------------------------------------------------------------------
# convolution


class ConvGeometry:
    """Everything a convolution kernel needs, normalised and validated."""

    __slots__ = (
        "x", "w", "b", "dtype", "unbatched", "N", "C", "H", "W", "K", "R", "S",
        "P", "Q", "stride", "pad", "dilation", "groups",
    )

    @property
    def out_shape(self):
        return (self.N, self.K, self.P, self.Q)

    def shapes(self):
        """Everything but the operands, for conv_geometry's memo."""
        return (self.dtype, self.unbatched, self.N, self.C, self.H, self.W, self.K, self.R,
                self.S, self.P, self.Q, self.stride, self.pad, self.dilation, self.groups)

    @classmethod
    def from_shapes(cls, shapes, x, w, b):
        g = cls()
        (g.dtype, g.unbatched, g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q, g.stride, g.pad,
         g.dilation, g.groups) = shapes
        g.x, g.w, g.b = x, w, b
        return g

    @property
    def flops(self):
        return 2 * self.N * self.K * self.P * self.Q * (self.C // self.groups) * self.R * self.S


def _conv_padding(padding, func, kernel, dilation, stride):
    """Return ``(top, bottom, left, right)`` from any of conv2d's padding forms."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"{func}: padding='same' requires stride 1, got stride={stride}"
                )
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]  # extra at bottom/right
            return tuple(pads)
        raise ValueError(
            f"{func}: padding must be an int, a pair, ((top, bottom), (left, right)), "
            f"'valid' or 'same', got {padding!r}"
        )
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        top, bottom = _pair(padding[0], func, "padding", minimum=0)
        left, right = _pair(padding[1], func, "padding", minimum=0)
        return (top, bottom, left, right)
    ph, pw = _pair(padding, func, "padding", minimum=0)
    return (ph, ph, pw, pw)


#: conv_geometry's checked shapes by call signature: the checks are pure
#: Python (10 of a tiny call's 25 microseconds, Ice Lake), and a training
#: loop or an image pipeline asks about the same few shapes again and again.
#: Only arrays and plain ints, strings and tuples of ints key it (a bool
#: equals 1 but must be refused); holds no arrays; emptied when full.
_geometry_memo: dict[tuple, tuple] = {}
GEOMETRY_MEMO_SIZE = 1024


def _plain(value):
    """Whether ``value`` keys the memo as itself: an int, a str or a tuple of ints."""
    t = type(value)
    return t is int or t is str or (t is tuple and all(type(v) is int for v in value))


def conv_geometry(func, input, weight, bias, stride, padding, dilation, groups,
                  operands=True):
    """Validate conv2d's arguments; return a ConvGeometry with contiguous operands
    (``operands=False``: the shapes and dtype only, nothing is copied)."""
    key = None
    if (type(input) is np.ndarray and type(weight) is np.ndarray
            and (bias is None or type(bias) is np.ndarray) and _plain(stride)
            and _plain(padding) and _plain(dilation) and type(groups) is int):
        key = (func, input.shape, input.dtype, weight.shape, weight.dtype,
               None if bias is None else (bias.shape, bias.dtype),
               stride, padding, dilation, groups)
        shapes = _geometry_memo.get(key)
        if shapes is not None:
            if not operands:
                return ConvGeometry.from_shapes(shapes, None, None, None)
            dtype = shapes[0]
            return ConvGeometry.from_shapes(
                shapes, _contiguous(input if input.ndim == 4 else input[None], dtype),
                _contiguous(weight, dtype), None if bias is None else _contiguous(bias, dtype))
    g = _check_geometry(func, input, weight, bias, stride, padding, dilation, groups,
                        operands)
    if key is not None:
        if len(_geometry_memo) >= GEOMETRY_MEMO_SIZE:
            _geometry_memo.clear()
        _geometry_memo[key] = g.shapes()
    return g


def _check_geometry(func, input, weight, bias, stride, padding, dilation, groups, operands):
    """conv_geometry's checks, from scratch."""
    x = _as_array(input, func, "input")
    w = _as_array(weight, func, "weight")
    b = None if bias is None else _as_array(bias, func, "bias")
    x4, unbatched = _batched(x, func)
    if 0 in x4.shape[2:]:  # as PyTorch: only the batch and channels may be empty
        raise ValueError(
            f"{func}: input must have non-empty height and width, got shape {x.shape}"
        )
    if w.ndim != 4:
        raise ValueError(
            f"{func}: weight must be 4-D (K, C/groups, R, S), got {w.ndim}-D array of shape {w.shape}"
        )
    g = ConvGeometry()
    g.stride = _pair(stride, func, "stride")
    g.dilation = _pair(dilation, func, "dilation")
    g.groups = groups = _int(groups, func, "groups", 1)
    N, C, H, W = x4.shape
    K, Cg, R, S = w.shape
    if min(K, Cg, R, S) < 1:
        raise ValueError(f"{func}: weight must have no empty dimension, got shape {w.shape}")
    if C % groups:
        raise ValueError(
            f"{func}: groups must divide the input channels, got groups={groups} "
            f"and {C} input channels"
        )
    if K % groups:
        raise ValueError(
            f"{func}: groups must divide the output channels, got groups={groups} "
            f"and weight of shape {w.shape}"
        )
    if C != Cg * groups:
        raise ValueError(
            f"{func}: input channels must equal weight.shape[1] * groups = {Cg} * {groups} "
            f"= {Cg * groups}, got input of shape {x.shape}"
        )
    g.pad = pad = _conv_padding(padding, func, (R, S), g.dilation, g.stride)
    if b is not None and b.shape != (K,):
        raise ValueError(f"{func}: bias must have shape ({K},), got shape {b.shape}")
    P = conv_output_size(H, R, g.stride[0], pad[0], pad[1], g.dilation[0])
    Q = conv_output_size(W, S, g.stride[1], pad[2], pad[3], g.dilation[1])
    if P < 1 or Q < 1:
        raise ValueError(
            f"{func}: the dilated kernel ({g.dilation[0] * (R - 1) + 1}, "
            f"{g.dilation[1] * (S - 1) + 1}) must fit in the padded input "
            f"({H + pad[0] + pad[1]}, {W + pad[2] + pad[3]}), got input of shape {x.shape}"
        )
    _check_size(func, (N, K, P, Q))
    g.stride, g.dilation = _kernel_steps(func, C, (H + pad[0] + pad[1], W + pad[2] + pad[3]),
                                         (P, Q), (R, S), g.stride, g.dilation)
    g.dtype = _result_dtype(func, input=x, weight=w, bias=b)
    g.x = g.w = g.b = None
    if operands:
        g.x = _contiguous(x4, g.dtype)
        g.w = _contiguous(w, g.dtype)
        g.b = None if b is None else _contiguous(b, g.dtype)
    g.unbatched = unbatched
    g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q = N, C, H, W, K, R, S, P, Q
    return g


def check_grad_output(func, grad_output, out_shape, unbatched, dtype):
    """Validate grad_output against the forward output's shape; return it 4-D, contiguous."""
    gy = _as_array(grad_output, func, "grad_output")
    expected = out_shape[1:] if unbatched else out_shape
    if gy.shape != tuple(expected):
        raise ValueError(
            f"{func}: grad_output must have the forward output's shape {tuple(expected)}, "
            f"got shape {gy.shape}"
        )
    gdtype = _float_dtype(gy.dtype, func, "grad_output")
    dtype = dtype if gdtype == dtype else np.result_type(dtype, gdtype)
    return _contiguous(gy.reshape(out_shape), dtype), dtype


def check_out(func, out, shape, dtype, *inputs):
    """Validate a user's ``out=`` array; return it, or a fresh array when None."""
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{func}: out must be a NumPy array, got {type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"{func}: out must have shape {tuple(shape)} and dtype {dtype}, "
            f"got shape {out.shape} and dtype {out.dtype}"
        )
    if not (out.flags.c_contiguous and out.flags.writeable and out.flags.aligned):
        raise ValueError(
            f"{func}: out must be a writeable, C-contiguous array aligned to its items"
        )
    for arr in inputs:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"{func}: out must not overlap an input array")
    return out


# --------------------------------------------------------------------------
# pooling


class PoolGeometry:
    """A pooling call, normalised: the operand and the window parameters."""

    __slots__ = (
        "x", "dtype", "unbatched", "N", "C", "H", "W", "P", "Q", "kernel", "stride",
        "pad", "dilation", "ceil_mode", "adaptive",
    )

    @property
    def out_shape(self):
        return (self.N, self.C, self.P, self.Q)


def _pool_input(func, input):
    x = _as_array(input, func, "input")
    x4, unbatched = _batched(x, func)
    g = PoolGeometry()
    g.N, g.C, g.H, g.W = x4.shape
    if g.H < 1 or g.W < 1:
        raise ValueError(f"{func}: input must have non-empty height and width, got shape {x.shape}")
    g.dtype = _float_dtype(x.dtype, func, "input")
    g.unbatched = unbatched
    g.x = x4
    return g


def pool_geometry(func, input, kernel_size, stride, padding, dilation, ceil_mode,
                  operands=True):
    """Validate a max/avg pooling call (avg passes dilation=1); ``operands=False``:
    the shapes and dtype only, the input is not made contiguous."""
    g = _pool_input(func, input)
    g.kernel = _pair(kernel_size, func, "kernel_size")
    g.stride = g.kernel if stride is None else _pair(stride, func, "stride")
    g.dilation = _pair(dilation, func, "dilation")
    g.pad = _pair(padding, func, "padding", minimum=0)
    g.ceil_mode = _bool(ceil_mode, func, "ceil_mode")
    g.adaptive = False
    for k, p, d in zip(g.kernel, g.pad, g.dilation):
        if p > ((k - 1) * d + 1) // 2:
            raise ValueError(
                f"{func}: padding must be at most half of the (dilated) kernel size "
                f"{(k - 1) * d + 1}, got padding={padding!r}"
            )
    g.P = pool_output_size(g.H, g.kernel[0], g.stride[0], g.pad[0], g.dilation[0], g.ceil_mode)
    g.Q = pool_output_size(g.W, g.kernel[1], g.stride[1], g.pad[1], g.dilation[1], g.ceil_mode)
    if g.P < 1 or g.Q < 1:
        raise ValueError(
            f"{func}: kernel_size {g.kernel} (dilation {g.dilation}) must fit in the padded "
            f"input, got input of shape {g.x.shape[1:] if g.unbatched else g.x.shape} "
            f"and padding={padding!r}"
        )
    _check_size(func, g.out_shape)
    padded = (g.H + 2 * g.pad[0], g.W + 2 * g.pad[1])
    # In ceil mode a single window may be longer than the padded input (any
    # length: 2**63 raised OverflowError, 2**40 a MemoryError, a dilation of
    # 2**62 an overflowed buffer size): the kernels get only its taps inside
    # the padded input, the same result (and, dilation being 1 for average
    # pooling, the same divisor: the window still reaches its end)
    if g.P == 1 or g.Q == 1:
        g.kernel = tuple(
            min(k, (n - 1) // d + 1) if out == 1 else k
            for k, d, n, out in zip(g.kernel, g.dilation, padded, (g.P, g.Q))
        )
    g.stride, g.dilation = _kernel_steps(func, g.C, padded, (g.P, g.Q), g.kernel, g.stride,
                                         g.dilation)
    if operands:
        g.x = _contiguous(g.x, g.dtype)
    return g


def avg_pool_divisors(size, kernel, stride, pad, n_out, count_include_pad):
    """Along one axis, each average-pooling window's factor of its divisor.

    The window of output ``o`` starts at ``o * stride - pad``; its factor is
    its length clipped to the padded input ``[-pad, size + pad)`` (so a
    ceil-mode overhang beyond the padding does not count) with
    ``count_include_pad``, else the number of input positions it covers. A
    window's divisor is the product of its row and column factors. (The
    kernels compute the same in ``_pool.pyx``'s window tables.)
    """
    start = np.arange(n_out, dtype=np.int64) * stride - pad
    stop = start + kernel
    if count_include_pad:
        return np.minimum(stop, size + pad) - start
    return np.minimum(stop, size) - np.maximum(start, 0)


def adaptive_pool_geometry(func, input, output_size, operands=True):
    """Validate an adaptive pooling call; ``None`` in output_size keeps that size
    (``operands=False``: as pool_geometry's)."""
    g = _pool_input(func, input)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(
                f"{func}: output_size must be an int >= 1 or a pair of ints/None, got {output_size!r}"
            )
        sizes = output_size
    else:
        sizes = (output_size, output_size)
    out = []
    for s, full in zip(sizes, (g.H, g.W)):
        if s is None:
            out.append(full)
            continue
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(
                f"{func}: output_size must be an int >= 1 or a pair of ints/None, got {output_size!r}"
            )
        if s < 1:
            raise ValueError(
                f"{func}: output_size must be an int >= 1 or a pair of ints/None, got {output_size!r}"
            )
        out.append(operator.index(s))
    g.P, g.Q = out
    g.kernel = g.stride = g.dilation = (1, 1)
    g.pad = (0, 0)
    g.ceil_mode = False
    g.adaptive = True
    _check_size(func, g.out_shape)
    if operands:
        g.x = _contiguous(g.x, g.dtype)
    return g


def check_divisor(func, divisor_override):
    if divisor_override is None:
        return 0
    value = _int(divisor_override, func, "divisor_override", 1)
    if value > sys.maxsize:  # the kernels take a Py_ssize_t
        raise ValueError(
            f"{func}: divisor_override must be an int in [1, {sys.maxsize}], got {value!r}"
        )
    return value


def check_indices(func, indices, out_shape, unbatched):
    """Validate user-given max-pooling indices; return them 4-D int64 contiguous."""
    idx = np.asarray(indices)
    expected = out_shape[1:] if unbatched else out_shape
    if idx.shape != tuple(expected):
        raise ValueError(
            f"{func}: indices must have the forward output's shape {tuple(expected)}, "
            f"got shape {idx.shape}"
        )
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{func}: indices must have an integer dtype, got dtype {idx.dtype}")
    if idx.dtype == np.uint64 and idx.size and idx.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"{func}: indices must be flat positions h * W + w within each input plane, "
            f"got {idx.max()}"
        )
    return _contiguous(idx.reshape(out_shape), np.int64)
