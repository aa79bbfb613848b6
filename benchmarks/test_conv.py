"""conv2d and conv2d_backward on the yardstick layers: every fastconv strategy,
PyTorch and (forward only) the NumPy as_strided im2col baseline."""
import pytest

from fastconv import _bench

DTYPES = ["float32", "float64"]
LAYERS = _bench.load_shapes()["conv"]


def _cases(peers, backward=False):
    return [
        pytest.param(layer, impl, id=f"{layer['name']}-{impl}")
        for layer in LAYERS
        for impl in _bench.conv_strategies(layer, backward) + peers
    ]


def _peer_available(impl, torch_module):
    if impl == "torch" and torch_module is None:
        pytest.skip("torch is not installed")


@pytest.mark.parametrize("layer, impl", _cases(("torch", "numpy")))
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d(run_checked, threads, torch_module, dtype, layer, impl):
    _peer_available(impl, torch_module)
    fn = _bench.conv_forward_call(layer, impl, dtype, torch=torch_module)
    out_shape = _bench.forward_shape("conv", layer, dtype)
    run_checked(
        fn,
        group=f"conv2d {layer['name']} {dtype} {threads}t",
        key=("conv2d", layer["name"], dtype),
        reference=_bench.conv_forward_call(layer, "auto", dtype),
        work=_bench.conv_flops(layer, out_shape),
        unit="GFLOP/s",
    )


@pytest.mark.parametrize("layer, impl", _cases(("torch",), backward=True))
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward(run_checked, threads, torch_module, dtype, layer, impl):
    _peer_available(impl, torch_module)
    out_shape = _bench.forward_shape("conv", layer, dtype)
    fn = _bench.conv_backward_call(layer, impl, dtype, out_shape, torch=torch_module)
    run_checked(
        fn,
        group=f"conv2d_backward {layer['name']} {dtype} {threads}t",
        key=("conv2d_backward", layer["name"], dtype),
        reference=_bench.conv_backward_call(layer, "auto", dtype, out_shape),
        # grad input + grad weight: twice the forward's FLOPs
        work=2 * _bench.conv_flops(layer, out_shape),
        unit="GFLOP/s",
    )
