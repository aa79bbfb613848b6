"""fastconv: fast 2-D convolution and pooling kernels for NumPy.

NCHW arrays, float32 and float64, with PyTorch's argument names, order and
semantics. ``fastconv.reference`` holds pure-NumPy versions of every function;
``fastconv.dask`` (the ``[dask]`` extra, imported only on request) runs them
on dask arrays.
"""
from . import _simd, nn  # layers: fastconv.nn.Conv2d, MaxPool2d, ...
from ._threads import get_num_threads, set_num_threads
from .conv import conv2d, conv2d_backward, explain
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

__version__ = "0.1.0"

_simd.apply_environment()  # FASTCONV_SIMD=avx2|baseline: run narrower kernels

__all__ = [
    "conv2d",
    "conv2d_backward",
    "explain",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "set_num_threads",
    "get_num_threads",
]
