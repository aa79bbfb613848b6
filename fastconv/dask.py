"""Convolution and pooling of dask arrays, block by block through fastconv's kernels.

For a batch or an image larger than memory, or for a cluster: the input is a
``dask.array`` of shape (N, C, H, W) chunked along the batch and/or along H
and W, and the result is a lazy ``dask.array`` equal to what the in-memory
function returns for the whole array, whatever the chunking. The kernels
release the GIL, so the threaded scheduler runs blocks on every core; the
same graph runs on a ``dask.distributed`` cluster.

How a spatially chunked array is split: along each of H and W the output
chunking is computed first. Output position ``p`` belongs to the input chunk
holding the start of its window (``p * stride - padding``, clipped to the
image), so output chunks follow the input chunks, their boundaries fall on
whole strides, and an input chunk smaller than the stride simply owns no
output. Each output block then reads the input rows its windows span (its
chunk plus a halo of ``dilation * (kernel - 1) + 1 - stride`` rows from the
next chunks, however small those are) and pads only where that range leaves
the image: by the kernel's own zero padding (convolution), -inf (max
pooling) or zeros with the average's divisor taken from the whole image
(average pooling, so ``count_include_pad`` and ``ceil_mode`` see the true
image border, not a chunk border). One task per output block; it receives
the input chunks it overlaps and nothing else.

Requires the optional extra: ``pip install "fastconv[dask]"``.
"""
import bisect
import functools
import math
import operator

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "fastconv.dask needs dask[array]; install it with: pip install 'fastconv[dask]'"
    ) from exc

from . import _choose, _params
from .conv import conv2d as _conv2d
from .pool import avg_pool2d as _avg_pool2d
from .pool import max_pool2d as _max_pool2d

__all__ = ["conv2d", "max_pool2d", "avg_pool2d"]


# --------------------------------------------------------------------------
# the input and the split of one spatial axis


def _as_dask(func, input):
    """``(4-D dask array, unbatched, shape-only stand-in for validation)``."""
    if not isinstance(input, da.Array):
        input = da.asarray(_params._as_array(input, func, "input"))
    if any(math.isnan(c) for chunks in input.chunks for c in chunks):
        raise ValueError(
            f"{func}: input must have known chunk sizes (see dask's compute_chunk_sizes()), "
            f"got chunks {input.chunks}"
        )
    # a zero-strided view: _params validates its shape and dtype, no memory behind it
    meta = np.broadcast_to(np.zeros((), input.dtype), input.shape)
    _, unbatched = _params._batched(meta, func)
    return (input[None] if unbatched else input), unbatched, meta


class _Block:
    """One output block along one axis: outputs ``[p0, p1)``, reading input
    ``[lo, hi)`` (may extend past the image: that part is padding)."""

    __slots__ = ("p0", "p1", "lo", "hi", "chunk_ids", "slices", "pad")

    def __init__(self, p0, p1, lo, hi, bounds, size, owner):
        self.p0, self.p1, self.lo, self.hi = p0, p1, lo, hi
        a, b = max(lo, 0), min(hi, size)
        self.pad = (a - lo, hi - b) if a < b else (0, 0)
        # the non-empty chunks overlapping [a, b)
        ids = [i for i in range(bisect.bisect_right(bounds, a) - 1, bisect.bisect_left(bounds, b))
               if bounds[i] < bounds[i + 1]] if a < b else []
        if not ids:  # the block reads padding only: an empty slice of its chunk
            self.chunk_ids, self.slices = [owner], [slice(0, 0)]
            self.pad = (0, hi - lo)
            return
        self.chunk_ids = ids
        self.slices = [slice(max(a, bounds[i]) - bounds[i], min(b, bounds[i + 1]) - bounds[i])
                       for i in ids]


def _split(size, chunks, n_out, kernel, stride, pad_lo, dilation):
    """The output blocks along one axis of input ``size`` chunked as ``chunks``."""
    bounds = np.concatenate([[0], np.cumsum(chunks, dtype=np.int64)])
    start = np.arange(n_out, dtype=np.int64) * stride - pad_lo
    # the chunk holding each window's (clipped) start; side="right" skips empty chunks
    owner = np.searchsorted(bounds, np.clip(start, 0, max(size - 1, 0)), side="right") - 1
    owner = np.minimum(owner, len(chunks) - 1)
    edges = [0, *(np.flatnonzero(np.diff(owner)) + 1).tolist(), n_out]
    span = dilation * (kernel - 1) + 1
    bounds = bounds.tolist()
    return [
        _Block(p0, p1, p0 * stride - pad_lo, (p1 - 1) * stride - pad_lo + span, bounds, size,
               int(owner[p0]))
        for p0, p1 in zip(edges[:-1], edges[1:])
    ]


def _gather(parts, rows, cols):
    """The input region of one block from the chunks it overlaps (a view when one)."""
    pieces = [[part[..., r, c] for part, c in zip(row, cols)] for row, r in zip(parts, rows)]
    if len(pieces) == 1 and len(pieces[0]) == 1:
        return pieces[0][0]
    return np.block(pieces)


def _graph(name, x, hblocks, wblocks, channel_chunks, task):
    """One task per output block: ``task(hblock, wblock)`` returns ``(callable, *args)``
    whose first argument is filled with the grid of input chunk keys."""
    tasks = {(j, k): task(hb, wb) for j, hb in enumerate(hblocks)
             for k, wb in enumerate(wblocks)}
    dsk = {}
    for n in range(len(x.chunks[0])):
        for c in range(channel_chunks):
            for (j, k), (fn, *args) in tasks.items():
                parts = [[(x.name, n, c, a, b) for b in wblocks[k].chunk_ids]
                         for a in hblocks[j].chunk_ids]
                dsk[(name, n, c, j, k)] = (fn, parts, *args)
    return dsk


def _array(name, dsk, x, chunks, dtype, extra=None):
    layer = dict(dsk)
    if extra:
        layer.update(extra)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[x])
    return da.Array(graph, name, chunks, meta=np.empty((0, 0, 0, 0), dtype))


def _finish(y, unbatched):
    return y[0] if unbatched else y


# --------------------------------------------------------------------------
# convolution


def _conv_block(parts, weight, bias, *, rows, cols, pad, stride, dilation, groups, algorithm):
    x = _gather(parts, rows, cols)
    if x.shape[2] == 0 or x.shape[3] == 0:  # only padding along an axis: make it real zeros
        (t, b), (l, r) = pad
        x = np.zeros(x.shape[:2] + (x.shape[2] + t + b, x.shape[3] + l + r), x.dtype)
        pad = 0
    return _conv2d(x, weight, bias, stride, pad, dilation, groups, algorithm=algorithm)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm="auto"):
    """2-D convolution of a dask array, lazily, as :func:`fastconv.conv2d`.

    Parameters
    ----------
    input : dask.array.Array of shape (N, C, H, W) or (C, H, W)
        Chunked along N and/or H and W, any chunk sizes. The channel axis is
        rechunked to one chunk (every output channel needs all input channels
        of its group). An array-like that is not a dask array is wrapped with
        ``dask.array.asarray``.
    weight : array_like of shape (K, C / groups, R, S)
        An in-memory array; it is put into the graph once.
    bias : array_like of shape (K,), optional
    stride, padding, dilation, groups
        As for :func:`fastconv.conv2d`: ``padding`` may be an int, a pair,
        ``((top, bottom), (left, right))``, ``'valid'`` or ``'same'``.
    algorithm : {'auto', 'direct', 'im2col', '1x1', 'winograd'}, default 'auto'
        Passed to :func:`fastconv.conv2d` for every block ('auto' chooses per
        block shape).

    Returns
    -------
    dask.array.Array of shape (N, K, P, Q) or (K, P, Q)
        ``P = (H + pad_top + pad_bottom - dilation[0] * (R - 1) - 1) // stride[0] + 1``,
        likewise Q. Batch chunks as the input's, one channel chunk, and along
        P and Q one chunk per input chunk that holds the start of at least
        one window.

    See Also
    --------
    fastconv.conv2d : the in-memory function each block runs.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastconv, fastconv.dask
    >>> x = np.random.default_rng(0).standard_normal((4, 3, 20, 20))
    >>> w = np.random.default_rng(1).standard_normal((8, 3, 3, 3))
    >>> xd = da.from_array(x, chunks=(2, 3, 7, 7))
    >>> y = fastconv.dask.conv2d(xd, w, stride=2, padding=1)
    >>> y.shape, y.chunks[2]  # output chunk boundaries fall on whole strides
    ((4, 8, 10, 10), (4, 4, 2))
    >>> np.allclose(y.compute(), fastconv.conv2d(x, w, stride=2, padding=1))
    True
    """
    func = "fastconv.dask.conv2d"
    x, unbatched, meta = _as_dask(func, input)
    g = _params.conv_geometry(func, meta, weight, bias, stride, padding, dilation, groups,
                              operands=False)
    _choose.resolve(func, algorithm, g)  # validates the name (and '1x1' on a larger kernel)
    w = _params._contiguous(np.asarray(weight), g.dtype)
    b = None if bias is None else _params._contiguous(np.asarray(bias), g.dtype)
    if len(x.chunks[1]) > 1:
        x = x.rechunk({1: -1})
    hblocks = _split(g.H, x.chunks[2], g.P, g.R, g.stride[0], g.pad[0], g.dilation[0])
    wblocks = _split(g.W, x.chunks[3], g.Q, g.S, g.stride[1], g.pad[2], g.dilation[1])
    token = tokenize(x, w, b, g.stride, g.pad, g.dilation, g.groups, algorithm)
    name = f"fastconv-conv2d-{token}"
    wkey, bkey = f"{name}-weight", (None if b is None else f"{name}-bias")
    common = dict(stride=g.stride, dilation=g.dilation, groups=g.groups, algorithm=algorithm)

    def task(hb, wb):
        fn = functools.partial(_conv_block, rows=hb.slices, cols=wb.slices,
                               pad=(hb.pad, wb.pad), **common)
        return fn, wkey, bkey

    dsk = _graph(name, x, hblocks, wblocks, 1, task)
    operands = {wkey: w} if b is None else {wkey: w, bkey: b}
    chunks = (x.chunks[0], (g.K,), tuple(hb.p1 - hb.p0 for hb in hblocks),
              tuple(wb.p1 - wb.p0 for wb in wblocks))
    return _finish(_array(name, dsk, x, chunks, g.dtype, operands), unbatched)


# --------------------------------------------------------------------------
# pooling


def _padded(x, pad, dtype, value):
    """``x`` in ``dtype`` with ``pad = ((top, bottom), (left, right))`` rows/columns
    of ``value`` (no copy when there is nothing to pad)."""
    if not any(pad[0]) and not any(pad[1]):
        return x
    return np.pad(x.astype(dtype, copy=False), ((0, 0), (0, 0), *pad), constant_values=value)


def _first_tap(start, kernel, dilation, size):
    """Per window, the first of its taps ``start + i * dilation`` inside
    ``[0, size)``, or -1 when none is."""
    i = np.where(start < 0, -(start // dilation), 0)  # ceil(-start / dilation)
    tap = start + i * dilation
    return np.where((i < kernel) & (tap < size), tap, -1)


def _max_block(parts, *, rows, cols, pad, kernel, stride, dilation, dtype, return_indices,
               origin, size, first_rows, first_cols):
    x = _padded(_gather(parts, rows, cols), pad, dtype, -np.inf)
    out = _max_pool2d(x, kernel, stride, 0, dilation, False, return_indices)
    if not return_indices:
        return out
    y, idx = out
    # local flat positions of the padded region -> flat positions in the image
    H, W = size
    h = origin[0] + idx // x.shape[3]
    w = origin[1] + idx % x.shape[3]
    inside = (idx >= 0) & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    # A padding position wins only when the window's maximum is -inf (or the
    # window is empty); the in-memory kernel then reports the window's first
    # input position in row-major order, or -1 when it has none.
    fr, fc = first_rows[:, None], first_cols[None, :]
    fallback = np.where((fr >= 0) & (fc >= 0), fr * W + fc, -1)
    return y, np.where(inside, h * W + w, fallback)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling of a dask array, lazily, as :func:`fastconv.max_pool2d`.

    Parameters
    ----------
    input : dask.array.Array of shape (N, C, H, W) or (C, H, W)
        Chunked along any axis (pooling is per channel, so channel chunks are
        kept as they are).
    kernel_size, stride, padding, dilation, ceil_mode, return_indices
        As for :func:`fastconv.max_pool2d` (padding counts as -inf).

    Returns
    -------
    out : dask.array.Array of shape (N, C, P, Q) or (C, P, Q)
        ``P = (H + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1``
        (rounded up in ceil mode, as in :func:`fastconv.max_pool2d`).
    indices : dask.array.Array of int64, same shape, only with ``return_indices=True``
        Flat positions ``h * W + w`` within each whole input plane, equal to
        the in-memory function's.

    See Also
    --------
    fastconv.max_pool2d : the in-memory function each block runs.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastconv, fastconv.dask
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 15, 15))
    >>> y = fastconv.dask.max_pool2d(da.from_array(x, chunks=(1, 3, 4, 6)), 3, 2, 1,
    ...                              ceil_mode=True)
    >>> y.chunks[2:]
    ((3, 2, 2, 1), (4, 3, 1))
    >>> np.array_equal(y.compute(), fastconv.max_pool2d(x, 3, 2, 1, ceil_mode=True))
    True
    """
    func = "fastconv.dask.max_pool2d"
    x, unbatched, meta = _as_dask(func, input)
    g = _params.pool_geometry(func, meta, kernel_size, stride, padding, dilation, ceil_mode,
                              operands=False)
    return_indices = _params._bool(return_indices, func, "return_indices")
    hblocks, wblocks = _pool_split(g, x)
    token = tokenize(x, g.kernel, g.stride, g.pad, g.dilation, g.ceil_mode, return_indices)
    name = f"fastconv-max_pool2d-{token}"
    common = dict(kernel=g.kernel, stride=g.stride, dilation=g.dilation, dtype=g.dtype,
                  return_indices=return_indices, size=(g.H, g.W))

    def first_taps(blk, k, s, p, d, size):
        return _first_tap(np.arange(blk.p0, blk.p1) * s - p, k, d, size)

    def task(hb, wb):
        fn = functools.partial(
            _max_block, rows=hb.slices, cols=wb.slices, pad=(hb.pad, wb.pad),
            origin=(hb.lo, wb.lo),
            first_rows=first_taps(hb, g.kernel[0], g.stride[0], g.pad[0], g.dilation[0], g.H),
            first_cols=first_taps(wb, g.kernel[1], g.stride[1], g.pad[1], g.dilation[1], g.W),
            **common)
        return (fn,)

    dsk = _graph(name, x, hblocks, wblocks, len(x.chunks[1]), task)
    chunks = _pool_chunks(x, hblocks, wblocks)
    if not return_indices:
        return _finish(_array(name, dsk, x, chunks, g.dtype), unbatched)
    results = []
    for i, (part, dtype) in enumerate((("values", g.dtype), ("indices", np.int64))):
        pname = f"{name}-{part}"
        layer = {(pname, *key[1:]): (operator.getitem, key, i) for key in dsk}
        results.append(_finish(_array(pname, layer, x, chunks, dtype, dsk), unbatched))
    return tuple(results)


def _pool_split(g, x):
    hblocks = _split(g.H, x.chunks[2], g.P, g.kernel[0], g.stride[0], g.pad[0], g.dilation[0])
    wblocks = _split(g.W, x.chunks[3], g.Q, g.kernel[1], g.stride[1], g.pad[1], g.dilation[1])
    return hblocks, wblocks


def _pool_chunks(x, hblocks, wblocks):
    return (x.chunks[0], x.chunks[1], tuple(hb.p1 - hb.p0 for hb in hblocks),
            tuple(wb.p1 - wb.p0 for wb in wblocks))


def _avg_block(parts, *, rows, cols, pad, kernel, stride, dtype, row_div, col_div):
    x = _padded(_gather(parts, rows, cols), pad, dtype, 0)
    sums = _avg_pool2d(x, kernel, stride, 0, False, True, divisor_override=1)
    # the kernel divides each sum by (row factor * column factor) in the same dtype
    return sums / (row_div[:, None] * col_div[None, :])


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling of a dask array, lazily, as :func:`fastconv.avg_pool2d`.

    Each block sums its windows with fastconv's kernel and divides by the
    divisor of the window in the whole image, so ``count_include_pad=False``
    and ``ceil_mode`` count what the in-memory function counts.

    Parameters
    ----------
    input : dask.array.Array of shape (N, C, H, W) or (C, H, W)
        Chunked along any axis (channel chunks are kept as they are).
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        As for :func:`fastconv.avg_pool2d`.

    Returns
    -------
    dask.array.Array of shape (N, C, P, Q) or (C, P, Q)
        ``P = (H + 2 * padding - kernel_size) // stride + 1`` (rounded up in
        ceil mode).

    See Also
    --------
    fastconv.avg_pool2d : the in-memory function.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastconv, fastconv.dask
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 15, 15))
    >>> kw = dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)
    >>> y = fastconv.dask.avg_pool2d(da.from_array(x, chunks=(1, 1, 5, 5)), **kw)
    >>> np.allclose(y.compute(), fastconv.avg_pool2d(x, **kw))
    True
    """
    func = "fastconv.dask.avg_pool2d"
    x, unbatched, meta = _as_dask(func, input)
    g = _params.pool_geometry(func, meta, kernel_size, stride, padding, 1, ceil_mode,
                              operands=False)
    count_include_pad = _params._bool(count_include_pad, func, "count_include_pad")
    divisor = _params.check_divisor(func, divisor_override)
    hblocks, wblocks = _pool_split(g, x)
    token = tokenize(x, g.kernel, g.stride, g.pad, g.ceil_mode, count_include_pad, divisor)
    name = f"fastconv-avg_pool2d-{token}"

    def factors(blk, axis, size):
        n = blk.p1 - blk.p0
        if divisor:  # the kernel's row factor is 1, its column factor the override
            return np.full(n, 1 if axis == 0 else divisor, g.dtype)
        f = _params.avg_pool_divisors(size, g.kernel[axis], g.stride[axis], g.pad[axis],
                                      blk.p1, count_include_pad)[blk.p0:]
        return f.astype(g.dtype)

    def task(hb, wb):
        fn = functools.partial(
            _avg_block, rows=hb.slices, cols=wb.slices, pad=(hb.pad, wb.pad),
            kernel=g.kernel, stride=g.stride, dtype=g.dtype,
            row_div=factors(hb, 0, g.H), col_div=factors(wb, 1, g.W))
        return (fn,)

    dsk = _graph(name, x, hblocks, wblocks, len(x.chunks[1]), task)
    return _finish(_array(name, dsk, x, _pool_chunks(x, hblocks, wblocks), g.dtype),
                   unbatched)
