"""Max, average and adaptive pooling, forward and backward: validate, allocate, dispatch.

Every backward takes the forward's own arguments, in the forward's order,
after ``grad_output`` and ``input``.
"""
import numpy as np

from . import _params, _pool, _threads

__all__ = [
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
]


def _call(func, kernel, *args):
    status = kernel(*args)
    if status == -2:
        raise ValueError(
            f"{func}: input must have windows spanning fewer than 2**31 elements to return "
            f"indices, got input of shape {args[0].shape}"
        )
    if status < 0:
        raise MemoryError(f"{func}: could not allocate the kernel's window tables and buffers")
    return status


def _window_args(g):
    return (*g.kernel, *g.stride, *g.pad)


def _result(g, arr):
    return arr[0] if g.unbatched else arr


# --------------------------------------------------------------------------
# max pooling (regular and adaptive share these two helpers)


def _max_forward(func, g, return_indices):
    y = np.empty(g.out_shape, g.dtype)
    idx = np.empty(g.out_shape, np.int64) if return_indices else None
    _call(func, _pool.max_pool_forward, g.x, y, idx, *_window_args(g), *g.dilation,
          g.adaptive, _threads.get_num_threads())
    if return_indices:
        return _result(g, y), _result(g, idx)
    return _result(g, y)


def _max_backward(func, g, grad_output, indices):
    gy, dtype = _params.check_grad_output(func, grad_output, g.out_shape, g.unbatched, g.dtype)
    if indices is None:  # recompute the argmax of every window
        indices = np.empty(g.out_shape, np.int64)
        _call(func, _pool.max_pool_forward, g.x, np.empty(g.out_shape, g.dtype), indices,
              *_window_args(g), *g.dilation, g.adaptive, _threads.get_num_threads())
    else:
        indices = _params.check_indices(func, indices, g.out_shape, g.unbatched)
    gx = np.empty((g.N, g.C, g.H, g.W), dtype)
    bad = _call(func, _pool.max_pool_backward, gy, indices, gx, *_window_args(g), *g.dilation,
                g.adaptive, _threads.get_num_threads())
    if bad:
        hw = g.H * g.W
        first = indices[(indices < -1) | (indices >= hw)].flat[0]
        raise ValueError(
            f"{func}: indices must be flat positions in [0, H*W) = [0, {hw}) within each "
            f"input plane (or -1 for an empty window), got {first} ({bad} entries outside that range)"
        )
    return _result(g, gx)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling of NCHW images, as ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default 0
        Implicit -inf padding on both sides, at most half the dilated kernel.
    dilation : int or (int, int), default 1
    ceil_mode : bool, default False
        Round the output size up; the last window must still start inside the
        input or the left padding.
    return_indices : bool, default False
        Also return the argmax of each window.

    Returns
    -------
    out : ndarray of shape (N, C, P, Q) or (C, P, Q)
        ``P = (H + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1``
        (rounded up in ceil mode).
    indices : ndarray of int64, same shape, only with ``return_indices=True``
        Flat position ``h * W + w`` of each maximum within its input plane.
        A NaN counts as a window's maximum; ties go to the first in row-major order.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> fastconv.max_pool2d(x, 2)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    func = "max_pool2d"
    g = _params.pool_geometry(func, input, kernel_size, stride, padding, dilation, ceil_mode)
    return _max_forward(func, g, _params._bool(return_indices, func, "return_indices"))


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, *, indices=None):
    """Gradient of :func:`max_pool2d` with respect to its input.

    Each output's gradient goes to its window's argmax (summed where windows
    overlap). ``indices`` from ``max_pool2d(..., return_indices=True)`` skips
    recomputing the argmax.

    Parameters
    ----------
    grad_output : array_like of shape (N, C, P, Q) or (C, P, Q)
        Gradient of the loss with respect to ``max_pool2d``'s output.
    input, kernel_size, stride, padding, dilation, ceil_mode
        As given to :func:`max_pool2d`.
    indices : array_like of int, shape of ``grad_output``, optional
        The forward's indices; -1 entries (windows over padding only) are skipped.

    Returns
    -------
    ndarray of the input's shape, (N, C, H, W) or (C, H, W)

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.array([[[1.0, 5.0, 2.0], [4.0, 3.0, 0.0]]])
    >>> fastconv.max_pool2d(x, 2, stride=1)          # both windows pick the 5
    array([[[5., 5.]]])
    >>> fastconv.max_pool2d_backward(np.ones((1, 1, 2)), x, 2, stride=1)
    array([[[0., 2., 0.],
            [0., 0., 0.]]])
    """
    func = "max_pool2d_backward"
    # the input's values are read only to recompute the argmax
    g = _params.pool_geometry(func, input, kernel_size, stride, padding, dilation, ceil_mode,
                              operands=indices is None)
    return _max_backward(func, g, grad_output, indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Adaptive 2-D max pooling, as ``torch.nn.functional.adaptive_max_pool2d``.

    Output cell ``i`` along an axis of input size ``n`` and output size ``m``
    pools input positions ``floor(i * n / m)`` to ``ceil((i + 1) * n / m) - 1``.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        None keeps that dimension's input size.
    return_indices : bool, default False

    Returns
    -------
    out : ndarray of shape (N, C, P, Q) or (C, P, Q)
    indices : ndarray of int64, only with ``return_indices=True``

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_max_pool2d(np.arange(9.0).reshape(1, 3, 3), 1)
    array([[[8.]]])
    """
    func = "adaptive_max_pool2d"
    g = _params.adaptive_pool_geometry(func, input, output_size)
    return _max_forward(func, g, _params._bool(return_indices, func, "return_indices"))


def adaptive_max_pool2d_backward(grad_output, input, output_size, *, indices=None):
    """Gradient of :func:`adaptive_max_pool2d` with respect to its input.

    Parameters
    ----------
    grad_output : array_like of shape (N, C, P, Q) or (C, P, Q)
        Gradient of the loss with respect to ``adaptive_max_pool2d``'s output.
    input, output_size
        As given to :func:`adaptive_max_pool2d`.
    indices : array_like of int, shape of ``grad_output``, optional
        The forward's indices, to skip recomputing the argmax.

    Returns
    -------
    ndarray of the input's shape, (N, C, H, W) or (C, H, W)

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.array([[[1.0, 5.0, 2.0], [4.0, 3.0, 0.0]]])
    >>> fastconv.adaptive_max_pool2d_backward(np.ones((1, 1, 2)), x, (1, 2))
    array([[[0., 2., 0.],
            [0., 0., 0.]]])
    """
    func = "adaptive_max_pool2d_backward"
    g = _params.adaptive_pool_geometry(func, input, output_size, operands=indices is None)
    return _max_backward(func, g, grad_output, indices)


# --------------------------------------------------------------------------
# average pooling


def _avg_forward(func, g, count_include_pad, divisor):
    y = np.empty(g.out_shape, g.dtype)
    _call(func, _pool.avg_pool_forward, g.x, y, *_window_args(g), g.adaptive,
          count_include_pad, divisor, _threads.get_num_threads())
    return _result(g, y)


def _avg_backward(func, g, grad_output, count_include_pad, divisor):
    gy, dtype = _params.check_grad_output(func, grad_output, g.out_shape, g.unbatched, g.dtype)
    gx = np.empty((g.N, g.C, g.H, g.W), dtype)
    _call(func, _pool.avg_pool_backward, gy, gx, *_window_args(g), g.adaptive,
          count_include_pad, divisor, _threads.get_num_threads())
    return _result(g, gx)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling of NCHW images, as ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default 0
        Implicit zero padding on both sides, at most half the kernel.
    ceil_mode : bool, default False
    count_include_pad : bool, default True
        Whether padded zeros count in the divisor (the ceil-mode overhang past
        the padding never does).
    divisor_override : int, optional
        Divide every window's sum by this instead.

    Returns
    -------
    ndarray of shape (N, C, P, Q) or (C, P, Q)
        ``P = (H + 2 * padding - kernel_size) // stride + 1`` (rounded up in ceil mode).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> fastconv.avg_pool2d(x, 2)[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    func = "avg_pool2d"
    g = _params.pool_geometry(func, input, kernel_size, stride, padding, 1, ceil_mode)
    return _avg_forward(func, g, _params._bool(count_include_pad, func, "count_include_pad"),
                        _params.check_divisor(func, divisor_override))


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` with respect to its input.

    Each output's gradient, divided by its window's divisor, goes to every
    input element of the window (padding receives nothing).

    Parameters
    ----------
    grad_output : array_like of shape (N, C, P, Q) or (C, P, Q)
        Gradient of the loss with respect to ``avg_pool2d``'s output.
    input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        As given to :func:`avg_pool2d`.

    Returns
    -------
    ndarray of the input's shape, (N, C, H, W) or (C, H, W)

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.avg_pool2d_backward(np.ones((1, 2, 2)), np.zeros((1, 3, 3)), 2, stride=1)
    array([[[0.25, 0.5 , 0.25],
            [0.5 , 1.  , 0.5 ],
            [0.25, 0.5 , 0.25]]])
    """
    func = "avg_pool2d_backward"  # (the input's shape and dtype only)
    g = _params.pool_geometry(func, input, kernel_size, stride, padding, 1, ceil_mode,
                              operands=False)
    return _avg_backward(func, g, grad_output,
                         _params._bool(count_include_pad, func, "count_include_pad"),
                         _params.check_divisor(func, divisor_override))


def adaptive_avg_pool2d(input, output_size):
    """Adaptive 2-D average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Windows as in :func:`adaptive_max_pool2d`; ``output_size=1`` is global
    average pooling.

    Parameters
    ----------
    input : array_like of shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        None keeps that dimension's input size.

    Returns
    -------
    ndarray of shape (N, C, P, Q) or (C, P, Q)
        ``(P, Q)`` is ``output_size``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_avg_pool2d(np.arange(8.0).reshape(2, 2, 2), 1)
    array([[[1.5]],
    <BLANKLINE>
           [[5.5]]])
    """
    func = "adaptive_avg_pool2d"
    g = _params.adaptive_pool_geometry(func, input, output_size)
    return _avg_forward(func, g, False, 0)


def adaptive_avg_pool2d_backward(grad_output, input, output_size):
    """Gradient of :func:`adaptive_avg_pool2d` with respect to its input.

    Parameters
    ----------
    grad_output : array_like of shape (N, C, P, Q) or (C, P, Q)
        Gradient of the loss with respect to ``adaptive_avg_pool2d``'s output.
    input, output_size
        As given to :func:`adaptive_avg_pool2d`.

    Returns
    -------
    ndarray of the input's shape, (N, C, H, W) or (C, H, W)

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_avg_pool2d_backward(np.ones((1, 1, 1)), np.zeros((1, 2, 2)), 1)
    array([[[0.25, 0.25],
            [0.25, 0.25]]])
    """
    func = "adaptive_avg_pool2d_backward"
    g = _params.adaptive_pool_geometry(func, input, output_size, operands=False)
    return _avg_backward(func, g, grad_output, False, 0)
