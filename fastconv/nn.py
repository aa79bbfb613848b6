"""Layers over fastconv's kernels, with PyTorch's constructors and key names.

``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d`` and
``AdaptiveMaxPool2d`` take ``torch.nn``'s constructor arguments (names, order,
defaults) and initialise like it; parameters and their gradients are plain
NumPy arrays. Each layer is its own tape: ``y = layer(x)`` keeps what the
backward needs, ``grad_x = layer.backward(grad_y)`` returns the input's
gradient and adds the parameters' gradients to ``grad_weight`` and
``grad_bias``. ``Sequential`` chains layers and prefixes their state_dict keys
as ``torch.nn.Sequential`` does, so weights move between the two with
``{k: v.numpy() for k, v in model.state_dict().items()}`` one way and
``{k: torch.from_numpy(v) for k, v in model.state_dict().items()}`` the other.

Dense layers, losses and optimisers are not here: they are a few lines of
NumPy (see ``python -m fastconv demo`` and its source, ``fastconv/_demo.py``).

Semantics, following PyTorch where it has them:

* Gradients **accumulate**: ``backward`` adds to ``grad_weight``/``grad_bias``
  (zero after construction) and ``zero_grad()`` resets them, as in PyTorch, so
  several backwards (micro-batches) sum.
* One forward, one backward: a layer keeps only its latest training-mode
  forward, and a backward consumes it (a second backward raises). It keeps a
  reference to its input, not a copy: don't modify that array in place
  before the backward.
* ``eval()`` mode keeps nothing; a backward after an eval-mode forward raises.
* ``requires_grad = False`` freezes a layer: ``backward`` still returns the
  input's gradient but leaves the parameter gradients alone, and for a
  stride-1 convolution computes only the input's gradient (a transposed
  convolution, about half the work of the full backward).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _params
from .conv import conv2d, conv2d_backward
from .pool import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

__all__ = [
    "Module",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "Sequential",
]

Pair = Tuple[int, int]
IntOrPair = Union[int, Pair]
RNGLike = Union[None, int, np.random.Generator, np.random.SeedSequence]


class Module:
    """What every layer here shares: train/eval mode, freezing, state_dict.

    To write a layer (the demo's dense layer is one): subclass, implement
    ``forward(x)`` calling ``self.save_for_backward(...)`` and
    ``backward(grad)`` calling ``self.take_saved()``, and name the parameters
    in ``param_names``: each parameter ``p`` is an ndarray attribute with
    its gradient in ``grad_<p>``. Train/eval mode, ``state_dict`` and
    ``zero_grad`` then work as for the built-in layers.

    Attributes
    ----------
    training : bool
        True (the default) keeps what ``backward`` needs at each forward.
    requires_grad : bool
        False freezes the parameters: ``backward`` returns the input gradient
        only.

    Examples
    --------
    A ReLU layer of one's own:

    >>> import numpy as np
    >>> from fastconv.nn import Module
    >>> class ReLU(Module):
    ...     def forward(self, x):
    ...         self.save_for_backward(x > 0)
    ...         return np.maximum(x, 0)
    ...     def backward(self, grad):
    ...         (mask,) = self.take_saved()
    ...         return grad * mask
    >>> relu = ReLU()
    >>> relu(np.array([-1.0, 2.0]))
    array([0., 2.])
    >>> relu.backward(np.array([5.0, 5.0]))
    array([0., 5.])
    """

    param_names: Tuple[str, ...] = ()

    def __init__(self) -> None:
        self.training = True
        self.requires_grad = True
        self._saved: Optional[Tuple[Any, ...]] = None
        self._why_none = "there was no forward pass yet"

    # -- the tape -------------------------------------------------------------

    def __call__(self, input: Any) -> Any:
        return self.forward(input)

    def forward(self, input: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_output: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_for_backward(self, *saved: Any) -> None:
        """Keep what backward needs (in training mode; in eval mode, nothing)."""
        if self.training:
            self._saved = saved
        else:
            self._saved = None
            self._why_none = "the last forward ran in eval mode (call .train() before it)"

    def take_saved(self) -> Tuple[Any, ...]:
        """What the forward saved, handed to backward once; raises ValueError
        when there is none (eval mode, no forward, or already consumed)."""
        saved = self._saved
        if saved is None:
            raise ValueError(
                f"{type(self).__name__}.backward: needs the input of a training-mode forward, "
                f"but {self._why_none}"
            )
        self._saved = None
        self._why_none = "its forward was consumed by a previous backward (run a forward again)"
        return saved

    # -- modes ----------------------------------------------------------------

    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``mode=False``: eval mode); returns the layer."""
        self.training = bool(mode)
        if not self.training:
            self._saved = None
        return self

    def eval(self) -> "Module":
        """Eval mode: forwards keep nothing, so there is no backward."""
        return self.train(False)

    # -- parameters -----------------------------------------------------------

    def named_parameters(self) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, parameter, gradient)`` for each parameter."""
        for name in self.param_names:
            yield name, getattr(self, name), getattr(self, "grad_" + name)

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero (in place)."""
        for _, _, grad in self.named_parameters():
            grad[...] = 0

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the parameters under PyTorch's key names (``weight``, ``bias``)."""
        return {name: param.copy() for name, param, _ in self.named_parameters()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Copy parameters from ``state_dict`` (PyTorch's key names and shapes).

        Values are copied into the existing arrays (converted to their
        dtype); a missing or unexpected key (``strict=True``) or a wrong shape
        raises ValueError naming the layer, the key, what was expected and what
        was given. Accepts anything ``np.asarray`` takes, so
        ``{k: v.numpy() for k, v in torch_model.state_dict().items()}`` and
        torch tensors themselves both work.
        """
        _load(type(self).__name__ + ".load_state_dict", {"": self}, state_dict, strict)

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra_repr()})"


def _load(func: str, layers: Mapping[str, Module], state_dict: Mapping[str, Any],
          strict: bool) -> None:
    """Check every key and shape first, then copy: a failed load changes nothing."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{func}: state_dict must be a mapping of names to arrays, "
                        f"got {type(state_dict).__name__}")
    expected = {}
    for prefix, layer in layers.items():
        for name, param, _ in layer.named_parameters():
            expected[prefix + name] = (layer, name, param)
    if strict:
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing key(s) {', '.join(map(repr, missing))}")
            if unexpected:
                parts.append(f"unexpected key(s) {', '.join(map(repr, unexpected))}")
            raise ValueError(
                f"{func}: state_dict must have exactly the keys "
                f"{', '.join(map(repr, expected)) or '(none)'}, got {' and '.join(parts)}"
            )
    updates = []
    for key, (layer, name, param) in expected.items():
        if key not in state_dict:
            continue
        value = np.asarray(state_dict[key])
        if value.dtype.kind not in "fiu":
            raise TypeError(f"{func}: {key!r} ({layer!r}) must be a real array, "
                            f"got dtype {value.dtype}")
        if value.shape != param.shape:
            raise ValueError(
                f"{func}: {key!r} ({layer!r}) must have shape {param.shape}, "
                f"got shape {value.shape}"
            )
        updates.append((param, value))
    for param, value in updates:
        param[...] = value


def _rng(func: str, rng: RNGLike) -> np.random.Generator:
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError):
        raise TypeError(
            f"{func}: rng must be None, an int seed or a numpy.random.Generator, got {rng!r}"
        ) from None


def _positive_int(func: str, name: str, value: Any) -> int:
    return _params._int(value, func, name, 1)


# ---------------------------------------------------------------------------
# convolution


class Conv2d(Module):
    """2-D convolution layer, as ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        C and K.
    kernel_size : int or (int, int)
    stride, padding, dilation, groups
        As for :func:`fastconv.conv2d` (``padding`` may be ``'same'`` or
        ``'valid'``).
    bias : bool, default True
    padding_mode : {'zeros'}
        PyTorch's other modes (reflect, replicate, circular) are not
        implemented and raise ValueError.
    dtype : float32 (default; also for None) or float64
        Of the parameters.
    rng : None, int or numpy.random.Generator
        Source of the initial weights (an int is a seed: the same seed gives
        the same layer). None draws fresh entropy.

    Attributes
    ----------
    weight : ndarray of shape (out_channels, in_channels / groups, *kernel_size)
        Initialised as PyTorch does (``kaiming_uniform_(a=sqrt(5))``): uniform
        in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` with
        ``fan_in = in_channels / groups * kernel_size[0] * kernel_size[1]``.
    bias : ndarray of shape (out_channels,) or None
        Uniform in the same bounds.
    grad_weight, grad_bias : ndarray
        Accumulated gradients (zero after construction and ``zero_grad()``).

    Notes
    -----
    ``forward(x)`` takes ``(N, C, H, W)`` or ``(C, H, W)`` and returns
    ``(N, K, P, Q)`` or ``(K, P, Q)`` with
    ``P = (H + pad_top + pad_bottom - dilation[0] * (kernel_size[0] - 1) - 1) // stride[0] + 1``
    (likewise Q); ``backward(grad_y)`` returns the gradient for ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> conv = nn.Conv2d(1, 6, 5, padding=2, rng=0)
    >>> x = np.ones((2, 1, 28, 28), dtype=np.float32)
    >>> y = conv(x)
    >>> y.shape, y.dtype
    ((2, 6, 28, 28), dtype('float32'))
    >>> gx = conv.backward(np.ones_like(y))
    >>> gx.shape, conv.grad_weight.shape, float(conv.grad_bias[0])
    ((2, 1, 28, 28), (6, 1, 5, 5), 1568.0)
    """

    _func = "Conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair,
                 stride: IntOrPair = 1, padding: Any = 0, dilation: IntOrPair = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 dtype: Any = np.float32, rng: RNGLike = None) -> None:
        super().__init__()
        func = self._func
        self.in_channels = _positive_int(func, "in_channels", in_channels)
        self.out_channels = _positive_int(func, "out_channels", out_channels)
        self.kernel_size = _params._pair(kernel_size, func, "kernel_size")
        groups = _positive_int(func, "groups", groups)
        for name, value in (("in_channels", self.in_channels), ("out_channels", self.out_channels)):
            if value % groups:
                raise ValueError(f"{func}: groups must divide {name}, got groups={groups} "
                                 f"and {name}={value}")
        if padding_mode != "zeros":
            raise ValueError(f"{func}: padding_mode must be 'zeros' (the only padding fastconv "
                             f"implements), got {padding_mode!r}")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{func}: bias must be a bool, got {bias!r}")
        try:  # None is PyTorch's "the default dtype", float32 (np.dtype(None) is float64)
            dt = np.dtype(np.float32 if dtype is None else dtype)
        except TypeError:
            dt = None
        if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{func}: dtype must be float32 or float64, got {dtype!r}")
        # validate stride/padding/dilation now (fastconv's own rules, this
        # layer's name), on a zero-strided input just big enough for the kernel
        R, S = self.kernel_size
        wshape = (self.out_channels, self.in_channels // groups, R, S)
        dh, dw = _params._pair(dilation, func, "dilation")
        probe = _params.conv_geometry(
            func, np.broadcast_to(np.zeros((), dt), (1, self.in_channels, dh * R, dw * S)),
            np.broadcast_to(np.zeros((), dt), wshape), None, stride, padding, dilation, groups,
            operands=False)
        self.stride, self.dilation, self.groups = probe.stride, probe.dilation, groups
        self.padding = padding
        self._pad = probe.pad  # (top, bottom, left, right)
        self.padding_mode = padding_mode
        self.dtype = dt

        gen = _rng(func, rng)
        fan_in = (self.in_channels // groups) * R * S
        # kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in)
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = gen.uniform(-bound, bound, wshape).astype(dt)
        self.grad_weight = np.zeros(wshape, dt)
        if bias:
            self.bias: Optional[np.ndarray] = gen.uniform(-bound, bound, wshape[0]).astype(dt)
            self.grad_bias: Optional[np.ndarray] = np.zeros(wshape[0], dt)
            self.param_names = ("weight", "bias")
        else:
            self.bias = self.grad_bias = None
            self.param_names = ("weight",)

    def _args(self) -> Tuple[Any, ...]:
        return (self.stride, self.padding, self.dilation, self.groups)

    def forward(self, input: Any) -> np.ndarray:
        """``conv2d(input, weight, bias, stride, padding, dilation, groups)``."""
        x = np.asarray(input)
        if x.ndim in (3, 4) and x.shape[-3] != self.in_channels:
            raise ValueError(f"{self._func}: input must have {self.in_channels} channels "
                             f"(in_channels), got input of shape {x.shape}")
        y = conv2d(x, self.weight, self.bias, *self._args())
        self.save_for_backward(x)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        """Return the input's gradient; add the parameters' to ``grad_weight``/``grad_bias``."""
        (x,) = self.take_saved()
        if not self.requires_grad:
            gx = self._input_grad(grad_output, x)
            if gx is not None:
                return gx
        gx, gw, gb = conv2d_backward(grad_output, x, self.weight, *self._args())
        if self.requires_grad:
            self.grad_weight += gw
            if self.grad_bias is not None:
                self.grad_bias += gb
        return gx

    def _input_grad(self, grad_output: Any, x: np.ndarray) -> Optional[np.ndarray]:
        """The input's gradient alone, as a transposed convolution (stride 1).

        ``grad_x[c, h] = sum_{k, r} grad_y[k, h + top - r * d] * w[k, c, r]``
        is a stride-1 convolution of grad_y padded by ``d * (R - 1) - top``
        with the filters flipped and in/out channels swapped per group. None
        where that padding would be negative (or for strides > 1, which would
        need zero-insertion): the full backward runs instead.
        """
        if self.stride != (1, 1):
            return None
        gy = np.asarray(grad_output)
        R, S = self.kernel_size
        (dh, dw), (pt, pb, pl, pr) = self.dilation, self._pad
        H, W = x.shape[-2:]
        P, Q = H + pt + pb - dh * (R - 1), W + pl + pr - dw * (S - 1)
        top, left = dh * (R - 1) - pt, dw * (S - 1) - pl
        bottom, right = dh * (R - 1) - pb, dw * (S - 1) - pr
        if gy.shape != x.shape[:-3] + (self.out_channels, P, Q):
            return None  # conv2d_backward reports the bad grad_output
        if min(top, left, bottom, right) < 0:
            return None
        g = self.groups
        K, Cg = self.weight.shape[:2]
        wt = (self.weight.reshape(g, K // g, Cg, R, S).transpose(0, 2, 1, 3, 4)
              .reshape(g * Cg, K // g, R, S)[:, :, ::-1, ::-1])
        return conv2d(gy, wt, None, 1, ((top, bottom), (left, right)), self.dilation, g)

    def _extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != 0:
            s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


# ---------------------------------------------------------------------------
# pooling


class MaxPool2d(Module):
    """2-D max pooling layer, as ``torch.nn.MaxPool2d``.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, return_indices, ceil_mode
        As for :func:`fastconv.max_pool2d` (note PyTorch's order:
        ``return_indices`` before ``ceil_mode``).

    Notes
    -----
    A training-mode forward also computes the argmax indices, so the
    backward scatters ``grad_output`` without searching the windows again.
    The output shape is as for :func:`fastconv.max_pool2d`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> pool = nn.MaxPool2d(2)
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> pool(x)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    >>> pool.backward(np.ones((1, 1, 2, 2)))[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]])
    """

    def __init__(self, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None,
                 padding: IntOrPair = 0, dilation: IntOrPair = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        func = type(self).__name__
        self.kernel_size = _params._pair(kernel_size, func, "kernel_size")
        self.stride = self.kernel_size if stride is None else _params._pair(stride, func, "stride")
        self.padding = _params._pair(padding, func, "padding", minimum=0)
        self.dilation = _params._pair(dilation, func, "dilation")
        self.return_indices = _params._bool(return_indices, func, "return_indices")
        self.ceil_mode = _params._bool(ceil_mode, func, "ceil_mode")

    def _args(self) -> Tuple[Pair, Pair, Pair, Pair, bool]:
        return (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def forward(self, input: Any) -> Any:
        """``max_pool2d(input, ...)``; ``(out, indices)`` with ``return_indices=True``."""
        x = np.asarray(input)
        if self.training or self.return_indices:
            y, idx = max_pool2d(x, *self._args(), return_indices=True)
        else:
            y, idx = max_pool2d(x, *self._args()), None
        self.save_for_backward(x, idx)
        return (y, idx) if self.return_indices else y

    def backward(self, grad_output: Any) -> np.ndarray:
        """Scatter ``grad_output`` to each window's argmax; return the input's gradient."""
        x, idx = self.take_saved()
        return max_pool2d_backward(grad_output, x, *self._args(), indices=idx)

    def _extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """2-D average pooling layer, as ``torch.nn.AvgPool2d``.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        As for :func:`fastconv.avg_pool2d`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> pool = nn.AvgPool2d(2)
    >>> pool(np.arange(16.0).reshape(1, 1, 4, 4))[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    >>> pool.backward(np.ones((1, 1, 2, 2)))[0, 0, 0]
    array([0.25, 0.25, 0.25, 0.25])
    """

    def __init__(self, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None,
                 padding: IntOrPair = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: Optional[int] = None) -> None:
        super().__init__()
        func = type(self).__name__
        self.kernel_size = _params._pair(kernel_size, func, "kernel_size")
        self.stride = self.kernel_size if stride is None else _params._pair(stride, func, "stride")
        self.padding = _params._pair(padding, func, "padding", minimum=0)
        self.ceil_mode = _params._bool(ceil_mode, func, "ceil_mode")
        self.count_include_pad = _params._bool(count_include_pad, func, "count_include_pad")
        _params.check_divisor(func, divisor_override)
        self.divisor_override = divisor_override

    def _args(self) -> Tuple[Any, ...]:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode,
                self.count_include_pad, self.divisor_override)

    def forward(self, input: Any) -> np.ndarray:
        """``avg_pool2d(input, ...)``."""
        x = np.asarray(input)
        y = avg_pool2d(x, *self._args())
        self.save_for_backward(x)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        """Spread ``grad_output`` over each window; return the input's gradient."""
        (x,) = self.take_saved()
        return avg_pool2d_backward(grad_output, x, *self._args())

    def _extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _output_size(func: str, output_size: Any) -> Any:
    """Validate an adaptive output size now (the rules are fastconv's)."""
    probe = np.broadcast_to(np.zeros(()), (1, 1, 1, 1))
    _params.adaptive_pool_geometry(func, probe, output_size)
    return output_size


class AdaptiveAvgPool2d(Module):
    """Adaptive 2-D average pooling layer, as ``torch.nn.AdaptiveAvgPool2d``.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        As for :func:`fastconv.adaptive_avg_pool2d`; 1 is global average pooling.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> gap = nn.AdaptiveAvgPool2d(1)
    >>> gap(np.arange(8.0).reshape(1, 2, 2, 2)).ravel()
    array([1.5, 5.5])
    """

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = _output_size(type(self).__name__, output_size)

    def forward(self, input: Any) -> np.ndarray:
        """``adaptive_avg_pool2d(input, output_size)``."""
        x = np.asarray(input)
        y = adaptive_avg_pool2d(x, self.output_size)
        self.save_for_backward(x)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        """Spread ``grad_output`` over each window; return the input's gradient."""
        (x,) = self.take_saved()
        return adaptive_avg_pool2d_backward(grad_output, x, self.output_size)

    def _extra_repr(self) -> str:
        return f"output_size={self.output_size!r}"


class AdaptiveMaxPool2d(Module):
    """Adaptive 2-D max pooling layer, as ``torch.nn.AdaptiveMaxPool2d``.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
    return_indices : bool, default False
        Forward returns ``(out, indices)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> nn.AdaptiveMaxPool2d((1, 2))(np.arange(8.0).reshape(1, 2, 4))
    array([[[5., 7.]]])
    """

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        func = type(self).__name__
        self.output_size = _output_size(func, output_size)
        self.return_indices = _params._bool(return_indices, func, "return_indices")

    def forward(self, input: Any) -> Any:
        """``adaptive_max_pool2d(input, output_size)`` (and the indices if asked)."""
        x = np.asarray(input)
        if self.training or self.return_indices:
            y, idx = adaptive_max_pool2d(x, self.output_size, return_indices=True)
        else:
            y, idx = adaptive_max_pool2d(x, self.output_size), None
        self.save_for_backward(x, idx)
        return (y, idx) if self.return_indices else y

    def backward(self, grad_output: Any) -> np.ndarray:
        """Scatter ``grad_output`` to each window's argmax; return the input's gradient."""
        x, idx = self.take_saved()
        return adaptive_max_pool2d_backward(grad_output, x, self.output_size, indices=idx)

    def _extra_repr(self) -> str:
        return f"output_size={self.output_size!r}"


# ---------------------------------------------------------------------------
# a container


class Sequential(Module):
    """Layers applied in order, with PyTorch's ``"<index>.<name>"`` state_dict keys.

    Holds fastconv.nn layers and anything else with the same protocol:
    ``layer(x)`` and ``layer.backward(grad_y)``, plus (optional)
    ``train(mode)``, ``named_parameters()`` and ``zero_grad()``, e.g. your own
    NumPy dense layers. Its state_dict keys are those of a
    ``torch.nn.Sequential`` of the same layers (``"0.weight"``, ``"3.bias"``).

    Parameters
    ----------
    *layers
        The layers, first to last.

    Examples
    --------
    >>> from fastconv import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 6, 5, rng=0), nn.MaxPool2d(2),
    ...                       nn.Conv2d(6, 16, 5, rng=1))
    >>> sorted(model.state_dict())
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """

    def __init__(self, *layers: Any) -> None:
        for i, layer in enumerate(layers):
            if not (callable(layer) and callable(getattr(layer, "backward", None))):
                raise TypeError(f"Sequential: layer {i} must be callable and have a backward "
                                f"method, got {layer!r}")
        self.layers: List[Any] = list(layers)
        super().__init__()

    @property
    def requires_grad(self) -> bool:
        """False when every layer is frozen; setting it sets every layer's
        (``model[:6].requires_grad = False`` freezes the first six)."""
        return any(getattr(layer, "requires_grad", False) for layer in self.layers)

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        for layer in self.layers:
            if hasattr(layer, "requires_grad"):
                layer.requires_grad = value

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __setitem__(self, index: int, layer: Any) -> None:
        self.layers[index] = layer

    def forward(self, input: Any) -> Any:
        """Apply every layer in order."""
        for layer in self.layers:
            input = layer(input)
        return input

    def backward(self, grad_output: Any) -> Any:
        """Run every layer's backward, last to first; return the input's gradient."""
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output

    def train(self, mode: bool = True) -> "Sequential":
        """Set every layer's mode (``mode=False``: eval); returns the container."""
        self.training = bool(mode)
        for layer in self.layers:
            if hasattr(layer, "train"):
                layer.train(mode)
        return self

    def eval(self) -> "Sequential":
        return self.train(False)

    def named_parameters(self) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
        """``(f"{index}.{name}", parameter, gradient)`` of every layer."""
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "named_parameters"):
                for name, param, grad in layer.named_parameters():
                    yield f"{i}.{name}", param, grad

    def zero_grad(self) -> None:
        for layer in self.layers:
            if hasattr(layer, "zero_grad"):
                layer.zero_grad()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """As :meth:`Module.load_state_dict`, keys ``"<index>.<name>"``."""
        layers = {f"{i}.": layer for i, layer in enumerate(self.layers)
                  if hasattr(layer, "named_parameters")}
        _load("Sequential.load_state_dict", layers, state_dict, strict)

    def _extra_repr(self) -> str:
        return "\n" + "".join(f"  ({i}): {layer!r}\n" for i, layer in enumerate(self.layers))
