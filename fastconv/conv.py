"""2-D convolution, forward and backward: validate, allocate, dispatch."""
import math
import operator

import numpy as np

from . import _choose, _conv, _direct, _params, _threads

__all__ = ["conv2d", "conv2d_backward", "explain"]


def _call(func, kernel, *args):
    """Run a kernel, mapping its status code to an exception; return the status."""
    status = kernel(*args)
    if status < 0:
        raise MemoryError(f"{func}: {kernel.__name__} could not allocate its workspace")
    return status


def _geometry_args(g):
    sh, sw = g.stride
    dh, dw = g.dilation
    return (sh, sw, g.pad[0], g.pad[2], dh, dw, g.groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm="auto", out=None):
    """2-D convolution (cross-correlation) of NCHW images, as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
        Images; a 3-D array is one unbatched image and gives a 3-D result.
    weight : array_like of shape (K, C / groups, R, S)
        Filters.
    bias : array_like of shape (K,), optional
        Added to each output channel.
    stride : int or (int, int), default 1
    padding : int, (int, int), ((int, int), (int, int)), 'valid' or 'same', default 0
        Zero padding: one value for all sides, ``(ph, pw)`` for top/bottom and
        left/right, ``((top, bottom), (left, right))``, none (``'valid'``), or
        whatever keeps the size at stride 1 (``'same'``; for an even kernel the
        extra row/column goes to the bottom/right, as in PyTorch).
    dilation : int or (int, int), default 1
    groups : int, default 1
        Input and output channels are split into ``groups`` independent
        convolutions; ``groups == C`` is a depthwise convolution.
    algorithm : {'auto', 'direct', 'im2col', '1x1', 'winograd'}, default 'auto'
        The strategy; see :mod:`fastconv._choose` for the rule ``'auto'`` follows.
        ``'winograd'`` (F(2x2, 3x3) or F(4x4, 3x3) for 3x3 kernels, F(2x2,
        5x5), F(3x3, 4x4) and F(5x5, 2x2) for the other square kernels of 2
        to 5 taps, at stride 1; a layer at stride s on both axes, without
        dilation or groups, as a stride-1 convolution of its s x s phases of
        input as s^2 C channels with ceil(R / s) x ceil(R / s) taps, copied
        a block of images at a time, 8 MiB of copies) does 2.25x to 4x
        fewer multiplications, rounding differently from the
        others (errors a few times theirs, far inside float32's); an input
        or weight that is not finite, or large enough that its transforms could
        overflow, runs ``'im2col'`` instead, so infinities and NaNs reach the
        same outputs as in every other strategy. Its workspace holds the
        transformed weights, 16 or 36 x K x C / groups values (K padded to
        whole register blocks per group); ``'auto'`` picks it only while they
        take at most 16 MiB. A dilated layer runs as its dilation_h x
        dilation_w phases, each an undilated convolution of a phase of the
        padded input, copied a block at a time (8 MiB of copies).
    out : ndarray, optional
        C-contiguous array of the result's shape and dtype to write into.

    Returns
    -------
    ndarray of shape (N, K, P, Q) or (K, P, Q)
        ``P = (H + pad_top + pad_bottom - dilation[0] * (R - 1) - 1) // stride[0] + 1``,
        likewise Q. float32 inputs give float32; see the README for the dtype rules.

    Notes
    -----
    The kernels run with flush-to-zero: denormal inputs and results count as
    zero (they would slow the multiply-adds by two orders of magnitude). The
    mode is set in the kernels' own threads only and restored after.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 1, 4, 4), dtype=np.float32)
    >>> w = np.ones((1, 1, 3, 3), dtype=np.float32)
    >>> fastconv.conv2d(x, w, padding=1)[0, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]], dtype=float32)
    """
    func = "conv2d"
    g = _params.conv_geometry(func, input, weight, bias, stride, padding, dilation, groups)
    algo = _choose.resolve(func, algorithm, g)
    shape = g.out_shape[1:] if g.unbatched else g.out_shape
    y = _params.check_out(func, out, shape, g.dtype, input, weight, bias)
    y4 = y.reshape(g.out_shape)
    n_threads = _choose.threads_for(g, _threads.get_num_threads())
    if algo == "winograd" and (_winograd_strided(func, g, y4, n_threads) if g.stride != (1, 1)
                               else _winograd(func, g, y4, n_threads) if g.dilation == (1, 1)
                               else _winograd_dilated(func, g, y4, n_threads)):
        return y
    if algo == "direct":
        _call(func, _direct.conv2d_direct, g.x, g.w, g.b, y4, *_geometry_args(g), n_threads)
    else:
        _call(func, _conv.conv2d_packed, g.x, g.w, g.b, y4, *_geometry_args(g),
              *_choose.gemm_blocks(g, n_threads), _choose.in_place(algo, g, n_threads),
              n_threads)
    return y


#: by Winograd's F(m x m, r x r), (m, r): a bound on the weight transform's
#: partial sums / max |g| (F(4x4, 3x3)'s g0 + 2 g1 + 4 g2 reaches 7, F(2x2,
#: 3x3)'s g0 + g1 + g2 3, F(2x2, 5x5)'s 31 (1.29 x 31 in its second pass)),
#: and bounds on |G g G^T| / max |g|, |B^T d B| / max |d| and |A^T m A| / max
#: |m| (squares of the matrices' largest absolute row sums)
_WINOGRAD_GROWTH = {(2, 3): (4, 2.25, 4, 9), (4, 3): (8, 1, 100, 361),
                    (2, 5): (41, 1.67, 100, 49), (3, 4): (16, 1, 100, 121),
                    (5, 2): (4, 1, 100, 1225)}


def _winograd(func, g, y4, n_threads, tile=None):
    """Run the stride-1 Winograd forward into ``y4`` (F(tile x tile, r x r), by
    default auto's tile); False when the operands' values rule it out (not
    finite, or large enough to overflow in the transforms)."""
    if tile is None:  # forced beyond auto's weight bound: the smallest
        tile = _choose.winograd_tile(g) or _choose.winograd_tiles(g.R)[0]
    big = float(np.finfo(g.dtype).max)  # a Python float: the bounds below exceed float32's
    sums, u, v, a = _WINOGRAD_GROWTH[tile, g.R]
    wmax = float(max(g.w.max(initial=0), -g.w.min(initial=0)))  # NaN if any
    if not wmax < big / sums:  # also NaN and inf
        return False
    # |output transform . sum over a group's C of U V|, with a factor 2 to spare
    # for the bias and rounding; and |B^T d B| itself below the largest float
    lim = min(big / (2 * v), big / (2 * a * u * v * (g.C // g.groups) * wmax) if wmax > 0
              else big)
    return _call(func, _conv.conv2d_winograd, g.x, g.w, g.b, y4, g.pad[0], g.pad[2], g.groups,
                 tile, *_choose.winograd_blocks(g, n_threads, tile), lim, n_threads) == 0


def _winograd_dilated(func, g, y4, n_threads):
    """A dilated 3x3 convolution at stride 1 into ``y4`` by Winograd on its
    phases (see _choose.dilated_phases), copied a block at a time; False as
    for _winograd."""
    (dh, dw), (pt, _, pl, _) = g.dilation, g.pad
    hs, ws, block, _ = _choose.dilated_phases(g)
    # one tile for all blocks, so that an image rounds alike wherever it sits
    tile = _choose.winograd_tile(_choose.phase_geometry(g)) or _choose.winograd_tiles(g.R)[0]
    phases = g.N * dh * dw
    for q0 in range(0, phases, block):
        m = min(block, phases - q0)
        xs = np.empty((m, g.C, hs, ws), g.dtype)
        _conv.phases_in(g.x, xs, q0, dh, dw, pt, pl, n_threads)
        ys = np.empty((m, g.K, hs - g.R + 1, ws - g.S + 1), g.dtype)
        if not _winograd(func, _choose.phase_geometry(g, xs, m), ys, n_threads, tile):
            return False
        _conv.phases_out(ys, y4, q0, dh, dw, n_threads)
    return True


def _winograd_strided(func, g, y4, n_threads):
    """A convolution at stride s into ``y4`` by Winograd at stride 1 on its
    input's s x s phases as input channels (see _choose.strided_phases),
    copied a block of images at a time; False as for _winograd."""
    s, (pt, _, pl, _) = g.stride[0], g.pad
    hs, ws, block, _ = _choose.strided_phases(g)
    w = _choose.strided_weights(g)
    tile = (_choose.winograd_tile(_choose.strided_geometry(g))
            or _choose.winograd_tiles(w.shape[2])[0])
    for n0 in range(0, g.N, block):
        m = min(block, g.N - n0)
        xs = np.empty((m * s * s, g.C, hs, ws), g.dtype)
        _conv.phases_in(g.x, xs, n0 * s * s, s, s, pt, pl, n_threads)
        sub = _choose.strided_geometry(g, xs.reshape(m, s * s * g.C, hs, ws), w, m)
        if not _winograd(func, sub, y4[n0:n0 + m], n_threads, tile):
            return False
    return True


#: by Winograd tile m: bounds on |A dy A^T| / max |dy| and |B^T d B| / max |d|
#: (squares of the matrices' largest absolute row sums) and on G^T's growth
#: of the sums (at least 1: the sums themselves must stay finite)
_WINOGRAD_GW_GROWTH = {2: (4, 4, 4), 4: (225, 100, 2.8)}


def _winograd_grad_weight(func, g, gy, gw, tile, n_threads):
    """grad_weight by Winograd F(tile x tile, 3x3) into ``gw``; False when
    the operands' values rule it out: not finite, or so large that the sums
    over the batch's tiles could overflow (inputs and grad_output bounded
    alike by the square root of that bound)."""
    z, v, back = _WINOGRAD_GW_GROWTH[tile]
    tiles = g.N * -(-g.P // tile) * -(-g.Q // tile)
    lim = math.sqrt(float(np.finfo(g.dtype).max) / (2 * max(1, tiles) * z * v * back))
    rows, kc, shared = _choose.winograd_gw_blocks(g, n_threads, tile)
    return _call(func, _conv.conv2d_grad_weight_winograd, gy, g.x, gw, g.pad[0], g.pad[2],
                 g.groups, tile, rows, kc, lim, lim, shared, n_threads) == 0


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    algorithm="auto"):
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like of shape (N, K, P, Q) or (K, P, Q)
        Gradient of the loss with respect to ``conv2d``'s output.
    input, weight, stride, padding, dilation, groups, algorithm
        As given to :func:`conv2d`; ``'winograd'`` computes grad_input by
        Winograd (an R x R convolution of grad_output at stride 1, for a
        layer at stride 1 without dilation whose paddings are at most R - 1;
        else, strided or dilated layers included, all of it runs
        ``'im2col'``) and, for 3x3 kernels, grad_weight by Winograd too (its
        sums over the tiles, (m + 2)^2 x K x C / groups values per thread,
        within 16 MiB for two threads; else, or where an input or
        grad_output element is not finite or near overflow, as ``'direct'``
        does); ``'auto'`` picks Winograd's grad_weight only where the cost
        model finds it faster than the direct kernels.

    Returns
    -------
    grad_input : ndarray of shape (N, C, H, W) or (C, H, W)
    grad_weight : ndarray of shape (K, C / groups, R, S)
    grad_bias : ndarray of shape (K,)
        The sum of ``grad_output`` over N, P and Q.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 1, 3, 3)); w = np.ones((1, 1, 2, 2))
    >>> gx, gw, gb = fastconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> gx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> gb
    array([4.])
    """
    func = "conv2d_backward"
    g = _params.conv_geometry(func, input, weight, None, stride, padding, dilation, groups)
    gy, dtype = _params.check_grad_output(func, grad_output, g.out_shape, g.unbatched, g.dtype)
    if dtype != g.dtype:  # a float64 grad_output promotes float32 operands
        g.dtype, g.x, g.w = dtype, g.x.astype(dtype), g.w.astype(dtype)
    algo = _choose.resolve(func, algorithm, g, backward=True)
    gx = np.empty((g.N, g.C, g.H, g.W), dtype)
    gw = np.empty((g.K, g.C // g.groups, g.R, g.S), dtype)
    n_threads = _choose.threads_for(g, _threads.get_num_threads(), backward=True)
    if algo == "winograd":
        # grad_input by Winograd, an R x R stride-1 convolution of grad_output
        # with the flipped, transposed weights (first: where its operands rule
        # it out, all of the backward runs im2col); grad_weight by Winograd
        # or the direct kernels
        if not _winograd(func, _choose.grad_input_geometry(g, gy, n_threads), gx, n_threads):
            algo = "im2col"  # not finite, or near overflow: all of it by the GEMM
        else:
            by = _choose.winograd_grad_weight(g, n_threads, forced=algorithm == "winograd")
            if by is None or not _winograd_grad_weight(func, g, gy, gw, *by):
                _call(func, _direct.conv2d_backward_direct, gy, g.x, g.w, None, gw,
                      *_geometry_args(g), n_threads)
    if algo == "direct" and _call(func, _direct.conv2d_backward_direct, gy, g.x, g.w, gx, gw,
                                  *_geometry_args(g), n_threads) == 1:
        algo = "im2col"  # a weight is not finite: see conv2d_backward_direct
    if algo in ("im2col", "1x1"):
        _call(func, _conv.conv2d_backward_packed, gy, g.x, g.w, gx, gw, *_geometry_args(g),
              *_choose.backward_blocks(g, n_threads), n_threads)
    gb = np.empty(g.K, dtype)
    _direct.grad_bias(gy, gb, n_threads)
    return (gx[0] if g.unbatched else gx), gw, gb


def explain(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, *,
            dtype="float32", backward=False):
    """What ``conv2d(..., algorithm="auto")`` runs for these shapes, and why.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, C, H, W)`` or ``(C, H, W)``.
    weight_shape : tuple of int
        ``(K, C / groups, R, S)``.
    stride, padding, dilation, groups
        As for :func:`conv2d`.
    dtype : dtype, default float32
    backward : bool, default False
        Explain ``conv2d_backward``'s choice instead, which weighs the
        strategies' backward kernels.

    Returns
    -------
    Explanation
        ``.algorithm`` (the strategy auto picks), ``.costs`` (the estimated
        cost of every strategy that can run the shape, millions of core
        cycles on one thread), ``.reason``, ``.simd`` (the SIMD variant in
        use); ``print()`` it for a summary.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.explain((8, 256, 56, 56), (64, 256, 1, 1)).algorithm
    '1x1'
    """
    func = "explain"
    shapes = []
    for name, shape in (("input_shape", input_shape), ("weight_shape", weight_shape)):
        try:
            shape = tuple(operator.index(d) for d in shape)
        except TypeError:
            raise TypeError(f"{func}: {name} must be a tuple of ints, got {shape!r}") from None
        if any(d < 0 for d in shape):
            raise ValueError(f"{func}: {name} must hold no negative size, got {shape!r}")
        shapes.append(shape)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{func}: dtype must be a NumPy dtype, got {dtype!r}") from None
    # zero-strided views: validated like arrays, but no memory behind them
    x, w = (np.broadcast_to(np.zeros((), dtype), shape) for shape in shapes)
    g = _params.conv_geometry(func, x, w, None, stride, padding, dilation, groups,
                              operands=False)
    return _choose.explain(g, backward=bool(backward))
