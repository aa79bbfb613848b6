"""Pooling forward and backward on the yardstick layers, fastconv vs PyTorch.

Rates count input + output bytes (backward: grad_output + grad_input, the
same amount).  Max pooling backward passes the forward's indices to both."""
import math

import numpy as np
import pytest

from fastconv import _bench

DTYPES = ["float32", "float64"]
LAYERS = _bench.load_shapes()["pool"]
CASES = [
    pytest.param(layer, impl, id=f"{layer['name']}-{impl}")
    for layer in LAYERS
    for impl in ("fastconv", "torch")
]


def _bytes(layer, dtype):
    out_shape = _bench.forward_shape("pool", layer, dtype)
    in_size = layer["N"] * layer["C"] * layer["H"] * layer["W"]
    return (in_size + math.prod(out_shape)) * np.dtype(dtype).itemsize


@pytest.mark.parametrize("layer, impl", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool(run_checked, threads, torch_module, dtype, layer, impl):
    if impl == "torch" and torch_module is None:
        pytest.skip("torch is not installed")
    fn = _bench.pool_forward_call(layer, impl, dtype, torch=torch_module)
    run_checked(
        fn,
        group=f"pool {layer['name']} {dtype} {threads}t",
        key=("pool", layer["name"], dtype),
        reference=_bench.pool_forward_call(layer, "fastconv", dtype),
        work=_bytes(layer, dtype),
        unit="GB/s",
    )


@pytest.mark.parametrize("layer, impl", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_backward(run_checked, threads, torch_module, dtype, layer, impl):
    if impl == "torch" and torch_module is None:
        pytest.skip("torch is not installed")
    fn = _bench.pool_backward_call(layer, impl, dtype, torch=torch_module)
    run_checked(
        fn,
        group=f"pool_backward {layer['name']} {dtype} {threads}t",
        key=("pool_backward", layer["name"], dtype),
        reference=_bench.pool_backward_call(layer, "fastconv", dtype),
        work=_bytes(layer, dtype),
        unit="GB/s",
    )
