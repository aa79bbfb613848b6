"""Pure-NumPy reference implementations of every fastconv function.

This module is the oracle the test suite compares fastconv's compiled kernels
with, and a readable statement of what each function computes.  The semantics
are PyTorch's (``torch.nn.functional``): NCHW arrays, the same argument names
and order, the same output sizes, padding rules, ``ceil_mode``, NaN and tie
rules.  The functions have the signatures of the public API without
``algorithm=`` and ``out=``.

The module imports nothing but NumPy and shares no code with the rest of
fastconv: it parses its arguments again, on purpose, so that a bug in the
package's argument handling cannot hide in the oracle as well.  Validation is
light (it rejects what would otherwise give a wrong shape or a wrong answer,
with fastconv's message format); the public functions are the validators.

Dtypes: every computation is done in float64.  The result dtype follows
fastconv's policy: float32 and float64 are kept, float16 gives float32,
integer arrays give float64, mixed operands promote as NumPy does (float32
with float64 gives float64).  Other dtypes raise ``TypeError``.  Indices are
int64.

Speed is not a goal, clarity is; the code is still vectorised (windows are
strided views or gathered with index tables, contractions are ``einsum``) so
that a test suite can call it thousands of times.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
]


# ---------------------------------------------------------------------------
# Argument handling (a private copy; see the module docstring)
# ---------------------------------------------------------------------------

def _to_float64(fn, **arrays):
    """Convert array-likes to float64 and return them with the result dtype."""
    converted, dtypes = [], []
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.dtype.itemsize <= 8:
            dtypes.append(np.float32 if a.dtype.itemsize <= 4 else np.float64)
        elif a.dtype.kind in "iu":
            dtypes.append(np.float64)
        else:
            raise TypeError(
                f"{fn}: {name} must be a float or integer array, got dtype {a.dtype}"
            )
        converted.append(a.astype(np.float64))
    return converted, np.result_type(*dtypes)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _pair(fn, name, value, minimum):
    """``value`` as a pair of ints >= ``minimum``; an int stands for both."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(_is_int(v) for v in values):
        raise TypeError(
            f"{fn}: {name} must be an int >= {minimum} or a pair of them, got {value!r}"
        )
    if min(values) < minimum:
        raise ValueError(
            f"{fn}: {name} must be an int >= {minimum} or a pair of them, got {value!r}"
        )
    return int(values[0]), int(values[1])


def _batched(fn, x):
    """A 4-D view of ``x`` and whether ``x`` was a 3-D (unbatched) image."""
    if x.ndim == 3:
        return x[np.newaxis], True
    if x.ndim == 4:
        return x, False
    raise ValueError(
        f"{fn}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {x.shape}"
    )


def _batched_grad(fn, grad_output, shape, unbatched):
    """``grad_output`` as a 4-D array, after checking it has the output's shape."""
    expected = shape[1:] if unbatched else shape
    if grad_output.shape != tuple(expected):
        raise ValueError(
            f"{fn}: grad_output must have the output's shape {tuple(expected)}, "
            f"got {grad_output.shape}"
        )
    return grad_output[np.newaxis] if unbatched else grad_output


def _result(a, unbatched, dtype):
    return (a[0] if unbatched else a).astype(dtype, copy=False)


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------

def _conv_padding(padding, kernel, stride, dilation):
    """``((top, bottom), (left, right))`` for every padding form conv2d accepts."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"conv2d: stride must be 1 with padding='same', got {stride!r}"
                )
            # PyTorch: total = d*(k-1); an odd total puts the extra row/column
            # at the bottom/right.
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in total)
        raise ValueError(
            f"conv2d: padding must be an int, a pair, ((top, bottom), (left, right)), "
            f"'valid' or 'same', got {padding!r}"
        )
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        return _pair("conv2d", "padding", padding[0], 0), _pair(
            "conv2d", "padding", padding[1], 0
        )
    ph, pw = _pair("conv2d", "padding", padding, 0)
    return (ph, ph), (pw, pw)


def _conv_setup(fn, x, w, stride, padding, dilation, groups):
    """Check shapes; return (stride, dilation, pads, output shape (N, K, P, Q))."""
    if w.ndim != 4:
        raise ValueError(f"{fn}: weight must be 4-D (K, C/groups, R, S), got shape {w.shape}")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"{fn}: groups must be an int >= 1, got {groups!r}")
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    if C != Cg * groups or K % groups:
        raise ValueError(
            f"{fn}: weight must have shape (K, C/groups, R, S) with K divisible by "
            f"groups={groups}, got {w.shape} for {C} input channels"
        )
    stride = _pair(fn, "stride", stride, 1)
    dilation = _pair(fn, "dilation", dilation, 1)
    pads = _conv_padding(padding, (R, S), stride, dilation)
    out = []
    for size, k, s, d, (before, after) in zip((H, W), (R, S), stride, dilation, pads):
        span = size + before + after - d * (k - 1) - 1
        if span < 0:
            raise ValueError(
                f"{fn}: kernel (dilated) must fit in the padded input, got kernel "
                f"{(R, S)} with dilation {dilation} on padded input {H + sum(pads[0])}"
                f"x{W + sum(pads[1])}"
            )
        out.append(span // s + 1)
    return stride, dilation, pads, (N, K, out[0], out[1])


def _conv_windows(x, R, S, stride, dilation, pads):
    """Strided view of shape (N, C, P, Q, R, S): the window each output pixel reads."""
    (top, bottom), (left, right) = pads
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    windows = sliding_window_view(xp, (dh * (R - 1) + 1, dw * (S - 1) + 1), axis=(2, 3))
    return windows[:, :, ::sh, ::sw, ::dh, ::dw]


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    ``out[n, k, p, q] = bias[k] + sum over c, r, s of
    weight[k, c, r, s] * xpad[n, g*C/groups + c, p*sh + r*dh, q*sw + s*dw]``
    where ``g = k // (K/groups)`` and ``xpad`` is the zero-padded input.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    weight : array_like of shape (K, C/groups, R, S)
    bias : array_like of shape (K,), optional
    stride, dilation : int or (int, int)
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        "same" requires stride 1 and pads ``d*(k-1)`` in total per axis, the
        odd extra row/column at the bottom/right (PyTorch's rule).
    groups : int
        C and K must both be divisible by it; ``groups == C`` is depthwise.

    Returns
    -------
    ndarray of shape (N, K, P, Q), or (K, P, Q) for a 3-D input
        ``P = (H + top + bottom - dh*(R-1) - 1) // sh + 1``, Q likewise.

    Examples
    --------
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> conv2d(x, np.ones((1, 1, 2, 2)), stride=2)
    array([[[[10., 18.],
             [42., 50.]]]])
    """
    fn = "conv2d"
    arrays = dict(input=input, weight=weight)
    if bias is not None:
        arrays["bias"] = bias
    converted, dtype = _to_float64(fn, **arrays)
    x, unbatched = _batched(fn, converted[0])
    w = converted[1]
    stride, dilation, pads, (N, K, P, Q) = _conv_setup(
        fn, x, w, stride, padding, dilation, groups
    )
    _, Cg, R, S = w.shape
    G = groups
    windows = _conv_windows(x, R, S, stride, dilation, pads)
    windows = windows.reshape(N, G, Cg, P, Q, R, S)
    y = np.einsum(
        "ngcpqrs,gkcrs->ngkpq", windows, w.reshape(G, K // G, Cg, R, S), optimize=True
    ).reshape(N, K, P, Q)
    if bias is not None:
        b = converted[2]
        if b.shape != (K,):
            raise ValueError(f"{fn}: bias must have shape ({K},), got {b.shape}")
        y = y + b[:, np.newaxis, np.newaxis]
    return _result(y, unbatched, dtype)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of :func:`conv2d` with respect to input, weight and bias.

    Parameters
    ----------
    grad_output : array_like of shape (N, K, P, Q), or (K, P, Q) for a 3-D input
        Gradient of the loss with respect to ``conv2d``'s output.
    input, weight, stride, padding, dilation, groups
        As for :func:`conv2d`.

    Returns
    -------
    grad_input : ndarray of the shape of ``input``
    grad_weight : ndarray of shape (K, C/groups, R, S)
    grad_bias : ndarray of shape (K,)
        ``grad_output`` summed over N, P and Q.

    Examples
    --------
    >>> gx, gw, gb = conv2d_backward(np.ones((1, 2, 2)), np.ones((1, 3, 3)), np.ones((1, 1, 2, 2)))
    >>> gx
    array([[[1., 2., 1.],
            [2., 4., 2.],
            [1., 2., 1.]]])
    >>> gw, gb
    (array([[[[4., 4.],
             [4., 4.]]]]), array([4.]))
    """
    fn = "conv2d_backward"
    (go, x, w), dtype = _to_float64(fn, grad_output=grad_output, input=input, weight=weight)
    x, unbatched = _batched(fn, x)
    stride, dilation, pads, out_shape = _conv_setup(
        fn, x, w, stride, padding, dilation, groups
    )
    go = _batched_grad(fn, go, out_shape, unbatched)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    _, _, P, Q = out_shape
    G = groups
    go_g = go.reshape(N, G, K // G, P, Q)
    w_g = w.reshape(G, K // G, Cg, R, S)

    windows = _conv_windows(x, R, S, stride, dilation, pads).reshape(N, G, Cg, P, Q, R, S)
    grad_weight = np.einsum("ngcpqrs,ngkpq->gkcrs", windows, go_g, optimize=True)
    grad_bias = go.sum(axis=(0, 2, 3))

    # Each output pixel (p, q) read xpad[p*sh + r*dh, q*sw + s*dw] for every
    # (r, s); send grad_output * weight back along the same paths
    # (a transposed convolution), then crop the padding away.
    sent = np.einsum("ngkpq,gkcrs->ngcrspq", go_g, w_g, optimize=True)
    sent = sent.reshape(N, C, R, S, P, Q)
    (top, bottom), (left, right) = pads
    (sh, sw), (dh, dw) = stride, dilation
    grad_padded = np.zeros((N, C, H + top + bottom, W + left + right))
    for r in range(R):
        for s in range(S):
            rows = slice(r * dh, r * dh + sh * (P - 1) + 1, sh)
            cols = slice(s * dw, s * dw + sw * (Q - 1) + 1, sw)
            grad_padded[:, :, rows, cols] += sent[:, :, r, s]
    grad_input = grad_padded[:, :, top : top + H, left : left + W]

    return (
        _result(grad_input, unbatched, dtype),
        grad_weight.reshape(K, Cg, R, S).astype(dtype, copy=False),
        grad_bias.astype(dtype, copy=False),
    )


# ---------------------------------------------------------------------------
# Pooling machinery: windows as index tables
# ---------------------------------------------------------------------------

def _pool_output_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size along one axis.

    ``floor((size + 2p - d(k-1) - 1) / s) + 1`` (``ceil`` in ceil mode); in
    ceil mode the last window must start inside the input or the left padding,
    otherwise it is dropped.
    """
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_setup(fn, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Normalised pairs and the output size (OH, OW) of a fixed-window pooling.

    PyTorch's padding limit (pad <= kernel_size // 2) is left to the public
    functions: the oracle gives a defined answer for any padding >= 0.
    """
    kernel = _pair(fn, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(fn, "stride", stride, 1)
    padding = _pair(fn, "padding", padding, 0)
    dilation = _pair(fn, "dilation", dilation, 1)
    out = tuple(
        _pool_output_size(n, k, s, p, d, bool(ceil_mode))
        for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)
    )
    if min(out) < 1:
        raise ValueError(
            f"{fn}: kernel_size (dilated) must fit in the padded input, got output "
            f"size {out} for input {x.shape[2:]}, kernel_size {kernel}, padding "
            f"{padding}, dilation {dilation}"
        )
    return kernel, stride, padding, dilation, out


def _axis_windows(starts, length, step, size, ends=None):
    """Positions read along one axis by each window, shape (O, length).

    Window o reads ``starts[o] + step*i`` for ``i < length``.  Returns the
    positions clipped into the input (safe to index with) and a mask of the
    positions that really lie in ``[0, size)`` (and before ``ends[o]``);
    the others are padding.
    """
    pos = starts[:, np.newaxis] + step * np.arange(length)
    valid = (pos >= 0) & (pos < size)
    if ends is not None:
        valid &= pos < ends[:, np.newaxis]
    return np.clip(pos, 0, max(size - 1, 0)), valid


def _window_index(rows, cols, W):
    """Flat in-plane indices ``h*W + w`` and validity mask of every window.

    Both have shape (OH, OW, L) with ``L = LH*LW`` in row-major window order;
    index a plane-flattened input ``x.reshape(N, C, H*W)`` with them to get the
    windows' values, of shape (N, C, OH, OW, L).
    """
    (rpos, rvalid), (cpos, cvalid) = rows, cols
    OH, OW = len(rpos), len(cpos)
    flat = rpos[:, np.newaxis, :, np.newaxis] * W + cpos[np.newaxis, :, np.newaxis, :]
    valid = rvalid[:, np.newaxis, :, np.newaxis] & cvalid[np.newaxis, :, np.newaxis, :]
    return flat.reshape(OH, OW, -1), valid.reshape(OH, OW, -1)


def _window_values(x, flat):
    """Values of the windows of ``x`` (N, C, H, W): shape (N, C, OH, OW, L)."""
    N, C, H, W = x.shape
    return x.reshape(N, C, H * W)[:, :, flat]


def _window_argmax(values, valid):
    """Position in each window of PyTorch's maximum, or -1 if it has no element.

    PyTorch CPU scans a window in row-major order, starting from -inf at the
    first element inside the input, and moves to an element when
    ``v > best or isnan(v)``.  Hence: a window holding NaN gives its *last*
    NaN; otherwise the *first* maximum; a window of -inf only gives its first
    element inside the input.  Padding is never selected.
    """
    L = values.shape[-1]
    isnan = np.isnan(values) & valid
    last_nan = L - 1 - np.argmax(isnan[..., ::-1], axis=-1)
    finite = np.where(valid & ~isnan, values, -np.inf)
    best = finite.max(axis=-1, keepdims=True)
    is_best = valid & (finite == best)
    first_best = np.argmax(is_best, axis=-1)
    pos = np.where(isnan.any(axis=-1), last_nan, first_best)
    return np.where(valid.any(axis=-1), pos, -1)


def _window_max(x, flat, valid):
    """Maximum of each window (-inf if it has no element) and its int64 flat index."""
    values = _window_values(x, flat)
    pos = _window_argmax(values, valid)[..., np.newaxis]
    safe = np.maximum(pos, 0)
    out = np.take_along_axis(values, safe, axis=-1)[..., 0]
    index = np.take_along_axis(np.broadcast_to(flat, values.shape), safe, axis=-1)[..., 0]
    has_element = pos[..., 0] >= 0
    # PyTorch gives -inf and an index outside the plane for a window that only
    # covers padding (possible with dilation); we give -inf and -1.
    return np.where(has_element, out, -np.inf), np.where(has_element, index, -1).astype(np.int64)


def _scatter_add(values, index, shape):
    """Sum ``values`` into planes of ``shape`` (N, C, H, W) at flat in-plane ``index``.

    ``index`` broadcasts against ``values`` (N, C, ...); entries < 0 are dropped.
    """
    N, C, H, W = shape
    index = np.broadcast_to(index, values.shape)
    plane = np.arange(N * C).reshape((N, C) + (1,) * (values.ndim - 2))
    keep = index >= 0
    total = np.bincount(
        (plane * (H * W) + index)[keep], weights=values[keep], minlength=N * C * H * W
    )
    return total.reshape(shape)


def _checked_indices(fn, indices, grad_output, unbatched, input_shape):
    """User-given max-pooling ``indices`` as int64 of grad_output's (batched) shape."""
    indices = np.asarray(indices)
    expected = grad_output.shape[1:] if unbatched else grad_output.shape
    plane_size = input_shape[2] * input_shape[3]
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{fn}: indices must be an integer array, got dtype {indices.dtype}")
    if indices.shape != expected:
        raise ValueError(
            f"{fn}: indices must have grad_output's shape {expected}, got {indices.shape}"
        )
    if indices.size and (indices.min() < -1 or indices.max() >= plane_size):
        raise ValueError(
            f"{fn}: indices must lie in [0, H*W) = [0, {plane_size}) (or be -1), got "
            f"values in [{indices.min()}, {indices.max()}]"
        )
    indices = indices.astype(np.int64)
    return indices[np.newaxis] if unbatched else indices


# ---------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------

def _max_pool_windows(fn, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Flat indices and validity mask, shape (OH, OW, kh*kw), of every window."""
    kernel, stride, padding, dilation, (OH, OW) = _pool_setup(
        fn, x, kernel_size, stride, padding, dilation, ceil_mode
    )
    H, W = x.shape[2:]
    rows = _axis_windows(np.arange(OH) * stride[0] - padding[0], kernel[0], dilation[0], H)
    cols = _axis_windows(np.arange(OW) * stride[1] - padding[1], kernel[1], dilation[1], W)
    return _window_index(rows, cols, W)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode=False, return_indices=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Window ``(oh, ow)`` reads rows ``oh*sh - ph + i*dh`` (``i < kh``) and the
    matching columns; padding counts as -inf and is never selected.  A window
    holding NaN gives NaN (index: its last NaN in row-major order); otherwise
    the index is the first maximum in row-major order, as PyTorch CPU does.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    kernel_size, dilation : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Implicit -inf on both sides.
    ceil_mode : bool
        Round the output size up; a last window starting beyond the input and
        the left padding is dropped.
    return_indices : bool
        Also return the flat in-plane position ``h*W + w`` of each maximum.

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), or (C, OH, OW) for a 3-D input
        ``OH = floor((H + 2*ph - dh*(kh-1) - 1) / sh) + 1`` (ceil in ceil mode).
    indices : ndarray of int64, same shape, only if ``return_indices``
        -1 for a window that covers only padding (value -inf).

    Examples
    --------
    >>> x = np.array([[[1.0, 5.0, 2.0], [4.0, 3.0, 0.0]]])
    >>> max_pool2d(x, 2, stride=1, return_indices=True)
    (array([[[5., 5.]]]), array([[[1, 1]]]))
    """
    fn = "max_pool2d"
    (x,), dtype = _to_float64(fn, input=input)
    x, unbatched = _batched(fn, x)
    flat, valid = _max_pool_windows(fn, x, kernel_size, stride, padding, dilation, ceil_mode)
    out, indices = _window_max(x, flat, valid)
    out = _result(out, unbatched, dtype)
    if return_indices:
        return out, _result(indices, unbatched, np.int64)
    return out


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0,
                        dilation=1, ceil_mode=False, *, indices=None):
    """Gradient of :func:`max_pool2d` with respect to its input.

    Each ``grad_output`` element goes to its window's maximum (the element
    ``indices`` points at); overlapping windows accumulate.

    Parameters
    ----------
    grad_output : array_like of shape (N, C, OH, OW), or (C, OH, OW)
    input, kernel_size, stride, padding, dilation, ceil_mode
        As for :func:`max_pool2d`.
    indices : array_like of int, same shape as grad_output, optional
        From ``max_pool2d(..., return_indices=True)``; recomputed when absent.
        Entries of -1 (windows with no input element) are skipped.

    Returns
    -------
    grad_input : ndarray of the shape of ``input``

    Examples
    --------
    >>> x = np.array([[[1.0, 5.0, 2.0], [4.0, 3.0, 0.0]]])
    >>> max_pool2d_backward(np.ones((1, 1, 2)), x, 2, stride=1)
    array([[[0., 2., 0.],
            [0., 0., 0.]]])
    """
    fn = "max_pool2d_backward"
    (go, x), dtype = _to_float64(fn, grad_output=grad_output, input=input)
    x, unbatched = _batched(fn, x)
    flat, valid = _max_pool_windows(fn, x, kernel_size, stride, padding, dilation, ceil_mode)
    go = _batched_grad(fn, go, x.shape[:2] + flat.shape[:2], unbatched)
    if indices is None:
        _, indices = _window_max(x, flat, valid)
    else:
        indices = _checked_indices(fn, indices, go, unbatched, x.shape)
    return _result(_scatter_add(go, indices, x.shape), unbatched, dtype)


# ---------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------

def _avg_pool_windows(fn, x, kernel_size, stride, padding, ceil_mode,
                      count_include_pad, divisor_override):
    """Index tables of the windows and the divisor of each, shape (OH, OW)."""
    kernel, stride, padding, _, (OH, OW) = _pool_setup(
        fn, x, kernel_size, stride, padding, 1, ceil_mode
    )
    if divisor_override is not None and (not _is_int(divisor_override) or divisor_override == 0):
        raise ValueError(
            f"{fn}: divisor_override must be None or a nonzero int, got {divisor_override!r}"
        )
    axes = []
    counts = []
    for o, k, s, p, size in zip((OH, OW), kernel, stride, padding, x.shape[2:]):
        start = np.arange(o) * s - p
        axes.append(_axis_windows(start, k, 1, size))
        if count_include_pad:
            # PyTorch clips the window to the padded input [-p, size + p) only,
            # so a ceil-mode window hanging beyond the padding counts less.
            counts.append(np.minimum(start + k, size + p) - start)
        else:
            counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
    if divisor_override is not None:
        divisor = np.full((OH, OW), float(divisor_override))
    else:
        # A window with no element (only reachable with padding > kernel/2)
        # sums to 0; PyTorch leaves 0 there, so avoid dividing by 0.
        divisor = np.maximum(np.multiply.outer(counts[0], counts[1]), 1).astype(np.float64)
    return axes, divisor


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Each output is the sum of its window's input elements (padding adds 0)
    divided by:

    - ``divisor_override`` when given;
    - else with ``count_include_pad``: the window's size after clipping it to
      the padded input ``[-p, H + p)`` (a ceil-mode window reaching beyond the
      padding is not counted in full);
    - else: the number of input elements in the window.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Implicit zeros on both sides.
    ceil_mode : bool
        As for :func:`max_pool2d`.
    count_include_pad : bool
    divisor_override : int, optional

    Returns
    -------
    ndarray of shape (N, C, OH, OW), or (C, OH, OW) for a 3-D input
        ``OH = floor((H + 2*ph - kh) / sh) + 1`` (ceil in ceil mode).

    Examples
    --------
    >>> avg_pool2d(np.ones((1, 3, 3)), 2, padding=1)
    array([[[0.25, 0.5 ],
            [0.5 , 1.  ]]])
    """
    fn = "avg_pool2d"
    (x,), dtype = _to_float64(fn, input=input)
    x, unbatched = _batched(fn, x)
    (rows, cols), divisor = _avg_pool_windows(
        fn, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    flat, valid = _window_index(rows, cols, x.shape[3])
    sums = np.where(valid, _window_values(x, flat), 0.0).sum(axis=-1)
    return _result(sums / divisor, unbatched, dtype)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` with respect to its input.

    Each ``grad_output`` element, divided by its window's divisor, is added to
    every input element of the window (padding receives nothing).

    Parameters
    ----------
    grad_output : array_like of shape (N, C, OH, OW), or (C, OH, OW)
    input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        As for :func:`avg_pool2d`.

    Returns
    -------
    grad_input : ndarray of the shape of ``input``

    Examples
    --------
    >>> avg_pool2d_backward(np.ones((1, 2, 2)), np.zeros((1, 3, 3)), 2, stride=1)
    array([[[0.25, 0.5 , 0.25],
            [0.5 , 1.  , 0.5 ],
            [0.25, 0.5 , 0.25]]])
    """
    fn = "avg_pool2d_backward"
    (go, x), dtype = _to_float64(fn, grad_output=grad_output, input=input)
    x, unbatched = _batched(fn, x)
    (rows, cols), divisor = _avg_pool_windows(
        fn, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    go = _batched_grad(fn, go, x.shape[:2] + divisor.shape, unbatched)
    flat, valid = _window_index(rows, cols, x.shape[3])
    share = (go / divisor)[..., np.newaxis]  # (N, C, OH, OW, 1)
    share = np.broadcast_to(share, share.shape[:-1] + (flat.shape[-1],))
    grad_input = _scatter_add(share, np.where(valid, flat, -1), x.shape)
    return _result(grad_input, unbatched, dtype)


# ---------------------------------------------------------------------------
# Adaptive pooling
# ---------------------------------------------------------------------------

def _adaptive_output_size(fn, output_size, in_size):
    """(OH, OW) from an int or a pair whose None entries keep the input size."""
    values = (
        tuple(output_size) if isinstance(output_size, (tuple, list))
        else (output_size, output_size)
    )
    if len(values) != 2 or not all(v is None or _is_int(v) for v in values):
        raise TypeError(
            f"{fn}: output_size must be an int >= 1 or a pair of ints >= 1 or None, "
            f"got {output_size!r}"
        )
    out = tuple(n if v is None else int(v) for v, n in zip(values, in_size))
    if min(out) < 1:
        raise ValueError(
            f"{fn}: output_size must be an int >= 1 or a pair of ints >= 1 or None, "
            f"got {output_size!r}"
        )
    return out


def _adaptive_bounds(size, out):
    """Window o covers [floor(o*size/out), ceil((o+1)*size/out)), as in PyTorch."""
    o = np.arange(out)
    return (o * size) // out, -(-((o + 1) * size) // out)


def _adaptive_avg_matrix(size, out):
    """(out, size) matrix whose row o averages window o of the input axis."""
    start, end = _adaptive_bounds(size, out)
    j = np.arange(size)
    inside = (j >= start[:, np.newaxis]) & (j < end[:, np.newaxis])
    return inside / (end - start)[:, np.newaxis]


def adaptive_avg_pool2d(input, output_size):
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output ``(oh, ow)`` averages rows ``floor(oh*H/OH) <= h < ceil((oh+1)*H/OH)``
    and the matching columns; ``output_size=1`` is global average pooling.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        None keeps that input dimension.

    Returns
    -------
    ndarray of shape (N, C, OH, OW), or (C, OH, OW) for a 3-D input

    Examples
    --------
    >>> adaptive_avg_pool2d(np.arange(6.0).reshape(1, 2, 3), (1, 2))
    array([[[2., 3.]]])
    """
    fn = "adaptive_avg_pool2d"
    (x,), dtype = _to_float64(fn, input=input)
    x, unbatched = _batched(fn, x)
    (H, W) = x.shape[2:]
    OH, OW = _adaptive_output_size(fn, output_size, (H, W))
    A, B = _adaptive_avg_matrix(H, OH), _adaptive_avg_matrix(W, OW)
    y = np.einsum("oh,nchw,pw->ncop", A, x, B, optimize=True)
    return _result(y, unbatched, dtype)


def adaptive_avg_pool2d_backward(grad_output, input, output_size):
    """Gradient of :func:`adaptive_avg_pool2d` with respect to its input.

    Parameters
    ----------
    grad_output : array_like of shape (N, C, OH, OW), or (C, OH, OW)
    input, output_size
        As for :func:`adaptive_avg_pool2d`.

    Returns
    -------
    grad_input : ndarray of the shape of ``input``

    Examples
    --------
    >>> adaptive_avg_pool2d_backward(np.ones((1, 1, 1)), np.zeros((1, 2, 2)), 1)
    array([[[0.25, 0.25],
            [0.25, 0.25]]])
    """
    fn = "adaptive_avg_pool2d_backward"
    (go, x), dtype = _to_float64(fn, grad_output=grad_output, input=input)
    x, unbatched = _batched(fn, x)
    N, C, H, W = x.shape
    OH, OW = _adaptive_output_size(fn, output_size, (H, W))
    go = _batched_grad(fn, go, (N, C, OH, OW), unbatched)
    A, B = _adaptive_avg_matrix(H, OH), _adaptive_avg_matrix(W, OW)
    grad_input = np.einsum("oh,ncop,pw->nchw", A, go, B, optimize=True)
    return _result(grad_input, unbatched, dtype)


def _adaptive_max_windows(fn, x, output_size):
    """Flat indices and validity mask, shape (OH, OW, L), of every window.

    Adaptive windows differ in size; each is padded to the largest, L, with
    positions marked invalid.
    """
    H, W = x.shape[2:]
    OH, OW = _adaptive_output_size(fn, output_size, (H, W))
    axes = []
    for size, out in ((H, OH), (W, OW)):
        start, end = _adaptive_bounds(size, out)
        axes.append(_axis_windows(start, int((end - start).max()), 1, size, ends=end))
    return _window_index(*axes, W)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """2-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``.

    Windows as in :func:`adaptive_avg_pool2d`; maximum, NaN and tie rules as in
    :func:`max_pool2d`.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        None keeps that input dimension.
    return_indices : bool
        Also return the flat in-plane position ``h*W + w`` of each maximum.

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), or (C, OH, OW) for a 3-D input
    indices : ndarray of int64, same shape, only if ``return_indices``

    Examples
    --------
    >>> x = np.array([[[1.0, 5.0, 2.0], [4.0, 3.0, 0.0]]])
    >>> adaptive_max_pool2d(x, (1, 2), return_indices=True)
    (array([[[5., 5.]]]), array([[[1, 1]]]))
    """
    fn = "adaptive_max_pool2d"
    (x,), dtype = _to_float64(fn, input=input)
    x, unbatched = _batched(fn, x)
    out, indices = _window_max(x, *_adaptive_max_windows(fn, x, output_size))
    out = _result(out, unbatched, dtype)
    if return_indices:
        return out, _result(indices, unbatched, np.int64)
    return out


def adaptive_max_pool2d_backward(grad_output, input, output_size, *, indices=None):
    """Gradient of :func:`adaptive_max_pool2d` with respect to its input.

    Parameters
    ----------
    grad_output : array_like of shape (N, C, OH, OW), or (C, OH, OW)
    input, output_size
        As for :func:`adaptive_max_pool2d`.
    indices : array_like of int, same shape as grad_output, optional
        From ``adaptive_max_pool2d(..., return_indices=True)``; recomputed when
        absent.

    Returns
    -------
    grad_input : ndarray of the shape of ``input``

    Examples
    --------
    >>> x = np.array([[[1.0, 5.0, 2.0], [4.0, 3.0, 0.0]]])
    >>> adaptive_max_pool2d_backward(np.ones((1, 1, 2)), x, (1, 2))
    array([[[0., 2., 0.],
            [0., 0., 0.]]])
    """
    fn = "adaptive_max_pool2d_backward"
    (go, x), dtype = _to_float64(fn, grad_output=grad_output, input=input)
    x, unbatched = _batched(fn, x)
    flat, valid = _adaptive_max_windows(fn, x, output_size)
    go = _batched_grad(fn, go, x.shape[:2] + flat.shape[:2], unbatched)
    if indices is None:
        _, indices = _window_max(x, flat, valid)
    else:
        indices = _checked_indices(fn, indices, go, unbatched, x.shape)
    return _result(_scatter_add(go, indices, x.shape), unbatched, dtype)
