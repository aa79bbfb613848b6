"""fastconv.nn: layers against fastconv's functions, the reference and PyTorch.

Forward and backward of every layer equal the functional calls they wrap
(and the NumPy reference); initialisation follows PyTorch's bounds and is
reproducible; train/eval, freezing, gradient accumulation and state_dict
behave as documented; bad arguments raise with clear messages. The PyTorch
cross-check (skipped without torch) loads a torch model's exported weights
and compares outputs and all gradients.
"""
import math

import numpy as np
import pytest

import fastconv
from fastconv import nn
from fastconv import reference as ref

CONV_CASES = [
    pytest.param(dict(in_channels=3, out_channels=4, kernel_size=3, padding=1), (2, 3, 7, 6),
                 id="k3-pad1"),
    pytest.param(dict(in_channels=3, out_channels=5, kernel_size=(5, 2), stride=(2, 3),
                      padding=(2, 1)), (2, 3, 9, 8), id="rect-stride"),
    pytest.param(dict(in_channels=4, out_channels=6, kernel_size=3, dilation=(2, 1), padding=2,
                      groups=2), (1, 4, 9, 8), id="groups-dilation"),
    pytest.param(dict(in_channels=4, out_channels=8, kernel_size=3, padding=1, groups=4,
                      bias=False), (2, 4, 6, 7), id="depthwise-nobias"),
    pytest.param(dict(in_channels=3, out_channels=2, kernel_size=(4, 2), padding="same"),
                 (1, 3, 6, 7), id="same-even"),
    pytest.param(dict(in_channels=2, out_channels=3, kernel_size=3, padding=3), (2, 2, 5, 5),
                 id="pad-beyond-kernel"),
    pytest.param(dict(in_channels=2, out_channels=3, kernel_size=3, padding=1), (2, 5, 5),
                 id="unbatched"),
]


def make_x(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def conv_call_args(layer):
    return (layer.stride, layer.padding, layer.dilation, layer.groups)


# --------------------------------------------------------------------------
# Conv2d: forward, backward


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs,shape", CONV_CASES)
def test_conv2d_forward_backward(rng, assert_close, kwargs, shape, dtype):
    layer = nn.Conv2d(**kwargs, dtype=dtype, rng=rng)
    x = make_x(rng, shape, dtype)
    y = layer(x)
    args = conv_call_args(layer)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, fastconv.conv2d(x, layer.weight, layer.bias, *args))
    taps = layer.weight[0].size
    assert_close(y, ref.conv2d(x, layer.weight, layer.bias, *args).astype(dtype), taps)

    gy = make_x(rng, y.shape, dtype)
    gx = layer.backward(gy)
    egx, egw, egb = fastconv.conv2d_backward(gy, x, layer.weight, *args)
    np.testing.assert_array_equal(gx, egx)
    np.testing.assert_array_equal(layer.grad_weight, egw)
    rgx, rgw, rgb = ref.conv2d_backward(gy, x, layer.weight, *args)
    assert_close(gx, rgx.astype(dtype), taps)
    assert_close(layer.grad_weight, rgw.astype(dtype), gy[..., 0, :, :].size)
    if layer.bias is None:
        assert layer.grad_bias is None
        assert list(layer.state_dict()) == ["weight"]
    else:
        np.testing.assert_array_equal(layer.grad_bias, egb)


def test_conv2d_gradients_accumulate_until_zero_grad(rng):
    layer = nn.Conv2d(2, 3, 3, rng=rng)
    x1, x2 = make_x(rng, (2, 2, 6, 6)), make_x(rng, (2, 2, 6, 6))
    g1, g2 = make_x(rng, (2, 3, 4, 4)), make_x(rng, (2, 3, 4, 4))
    np.testing.assert_array_equal(layer.grad_weight, 0)
    layer(x1)
    layer.backward(g1)
    layer(x2)
    layer.backward(g2)
    _, w1, b1 = fastconv.conv2d_backward(g1, x1, layer.weight)
    _, w2, b2 = fastconv.conv2d_backward(g2, x2, layer.weight)
    np.testing.assert_allclose(layer.grad_weight, w1 + w2, rtol=1e-6)
    np.testing.assert_allclose(layer.grad_bias, b1 + b2, rtol=1e-6)
    layer.zero_grad()
    np.testing.assert_array_equal(layer.grad_weight, 0)
    np.testing.assert_array_equal(layer.grad_bias, 0)


def test_conv2d_backward_consumes_its_forward(rng):
    layer = nn.Conv2d(1, 2, 3, rng=rng)
    with pytest.raises(ValueError, match=r"Conv2d\.backward: .*no forward pass yet"):
        layer.backward(np.ones((1, 2, 2, 2), np.float32))
    y = layer(make_x(rng, (1, 1, 4, 4)))
    layer.backward(np.ones_like(y))
    with pytest.raises(ValueError, match="consumed by a previous backward"):
        layer.backward(np.ones_like(y))


def test_conv2d_input_is_not_modified(rng):
    layer = nn.Conv2d(2, 3, 3, padding=1, rng=rng)
    x = make_x(rng, (2, 2, 5, 5))
    x.flags.writeable = False
    keep = x.copy()
    y = layer(x)
    layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(x, keep)


# --------------------------------------------------------------------------
# initialisation


@pytest.mark.parametrize("cin,cout,k,groups", [(64, 32, 3, 1), (6, 16, 5, 1), (8, 8, 3, 4)])
def test_conv2d_init_bounds_and_statistics(cin, cout, k, groups):
    layer = nn.Conv2d(cin, cout, k, groups=groups, rng=0)
    fan_in = cin // groups * k * k
    bound = 1 / math.sqrt(fan_in)  # PyTorch: kaiming_uniform_(a=sqrt(5)) and the bias rule
    assert layer.weight.shape == (cout, cin // groups, k, k)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    for p in (layer.weight, layer.bias):
        assert np.abs(p).max() <= bound
    w = layer.weight.ravel().astype(np.float64)
    # uniform(-b, b): mean 0, std b / sqrt(3); allow 5 standard errors
    n = w.size
    assert abs(w.mean()) < 5 * bound / math.sqrt(3 * n)
    assert abs(w.std() - bound / math.sqrt(3)) < 5 * bound * math.sqrt(4 / 45 / n)
    # it fills the range: the extremes are close to the bound
    assert np.abs(w).max() > bound * (1 - 20 / n)


def test_conv2d_init_is_reproducible():
    a = nn.Conv2d(3, 8, 3, rng=123)
    b = nn.Conv2d(3, 8, 3, rng=123)
    c = nn.Conv2d(3, 8, 3, rng=124)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weight, c.weight)
    gen1, gen2 = np.random.default_rng(5), np.random.default_rng(5)
    d, e = nn.Conv2d(3, 8, 3, rng=gen1), nn.Conv2d(3, 8, 3, rng=gen2)
    np.testing.assert_array_equal(d.weight, e.weight)
    # a Generator is advanced: two layers from one generator differ
    assert not np.array_equal(nn.Conv2d(3, 8, 3, rng=gen1).weight, d.weight)
    # no rng: fresh entropy
    assert not np.array_equal(nn.Conv2d(3, 8, 3).weight, nn.Conv2d(3, 8, 3).weight)


def test_conv2d_init_matches_torch_bounds():
    """PyTorch's layers fill exactly our bound: their extremes approach it, never pass it."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for args, kw in [((16, 32, 3), {}), ((6, 64, (5, 2)), {}), ((32, 64, 3), {"groups": 4})]:
        t = torch.nn.Conv2d(*args, **kw)
        f = nn.Conv2d(*args, **kw, rng=0)
        assert f.weight.shape == tuple(t.weight.shape) and f.bias.shape == tuple(t.bias.shape)
        fan_in = f.weight[0].size
        bound = 1 / math.sqrt(fan_in)
        for w in (t.weight.detach().numpy(), f.weight):
            assert bound * 0.99 < np.abs(w).max() <= bound
            assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
        for b in (t.bias.detach().numpy(), f.bias):
            assert np.abs(b).max() <= bound


def test_conv2d_dtype():
    assert nn.Conv2d(1, 2, 3).weight.dtype == np.float32
    layer = nn.Conv2d(1, 2, 3, dtype=np.float64)
    assert layer.weight.dtype == layer.bias.dtype == layer.grad_weight.dtype == np.float64
    with pytest.raises(TypeError, match=r"Conv2d: dtype must be float32 or float64, got .*int32"):
        nn.Conv2d(1, 2, 3, dtype=np.int32)
    with pytest.raises(TypeError, match="Conv2d: dtype must be float32 or float64"):
        nn.Conv2d(1, 2, 3, dtype="not a dtype")
    assert nn.Conv2d(1, 2, 3, dtype=None).weight.dtype == np.float32  # PyTorch's default


# --------------------------------------------------------------------------
# train / eval, freezing


def test_eval_keeps_nothing_and_backward_raises(rng):
    conv, pool = nn.Conv2d(1, 2, 3, rng=rng), nn.MaxPool2d(2)
    x = make_x(rng, (1, 1, 6, 6))
    y_train = pool(conv(x))
    assert conv.eval() is conv and pool.eval() is pool
    assert not conv.training
    y_eval = pool(conv(x))
    np.testing.assert_array_equal(y_eval, y_train)
    assert conv._saved is None and pool._saved is None
    with pytest.raises(ValueError, match=r"Conv2d\.backward: .*eval mode.*train\(\)"):
        conv.backward(np.ones((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d\.backward: .*eval mode"):
        pool.backward(np.ones_like(y_eval))
    # a training-mode forward before eval() is dropped by eval()
    conv.train()
    conv(x)
    conv.eval()
    with pytest.raises(ValueError, match="eval mode"):
        conv.backward(np.ones((1, 2, 4, 4), np.float32))
    conv.train()
    assert conv.training
    y = conv(x)
    assert conv.backward(np.ones_like(y)).shape == x.shape


FREEZE_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), dilation=2, padding="same", groups=2),
    dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, bias=False),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=((0, 2), (1, 0))),
    # these take the full backward and drop grad_weight
    dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=3),
]


@pytest.mark.parametrize("kwargs", FREEZE_CASES)
@pytest.mark.parametrize("batched", [True, False])
def test_frozen_conv2d_returns_input_grad_only(rng, assert_close, kwargs, batched):
    layer = nn.Conv2d(**kwargs, rng=rng)
    layer.requires_grad = False
    shape = (2, kwargs["in_channels"], 7, 6) if batched else (kwargs["in_channels"], 7, 6)
    x = make_x(rng, shape)
    y = layer(x)
    gy = make_x(rng, y.shape)
    gx = layer.backward(gy)
    expected, _, _ = fastconv.conv2d_backward(gy, x, layer.weight, *conv_call_args(layer))
    assert gx.dtype == np.float32
    assert_close(gx, expected, layer.weight[0].size)
    np.testing.assert_array_equal(layer.grad_weight, 0)
    if layer.grad_bias is not None:
        np.testing.assert_array_equal(layer.grad_bias, 0)
    # unfreezing brings the parameter gradients back
    layer.requires_grad = True
    layer(x)
    layer.backward(gy)
    assert np.abs(layer.grad_weight).max() > 0


def test_frozen_conv2d_checks_grad_output(rng):
    layer = nn.Conv2d(2, 3, 3, rng=rng)
    layer.requires_grad = False
    layer(make_x(rng, (1, 2, 6, 6)))
    with pytest.raises(ValueError, match=r"conv2d_backward: grad_output must have the forward "
                                         r"output's shape \(1, 3, 4, 4\), "
                                         r"got shape \(1, 3, 5, 5\)"):
        layer.backward(np.ones((1, 3, 5, 5), np.float32))


# --------------------------------------------------------------------------
# pooling layers


def test_max_pool2d_layer(rng, assert_close, make_tie_free):
    layer = nn.MaxPool2d(3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True)
    x = make_tie_free(rng, (2, 3, 9, 8), np.float32)
    y = layer(x)
    kw = dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True)
    ey, eidx = fastconv.max_pool2d(x, **kw, return_indices=True)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, **kw))
    gy = make_x(rng, y.shape)
    gx = layer.backward(gy)
    np.testing.assert_array_equal(gx, fastconv.max_pool2d_backward(gy, x, **kw, indices=eidx))
    assert_close(gx, ref.max_pool2d_backward(gy, x, **kw))
    # eval mode computes no indices, and still the same output
    np.testing.assert_array_equal(layer.eval()(x), ey)


def test_max_pool2d_layer_return_indices(rng, make_tie_free):
    layer = nn.MaxPool2d(2, return_indices=True)
    x = make_tie_free(rng, (3, 6, 6), np.float32)  # unbatched
    y, idx = layer(x)
    ey, eidx = ref.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(idx, eidx)
    gx = layer.backward(np.ones_like(y))
    assert gx.shape == x.shape and gx.sum() == y.size
    y2, idx2 = layer.eval()(x)
    np.testing.assert_array_equal(idx2, eidx)


def test_avg_pool2d_layer(rng, assert_close):
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True,
              count_include_pad=False, divisor_override=None)
    layer = nn.AvgPool2d(**kw)
    x = make_x(rng, (2, 3, 9, 8), np.float64)
    y = layer(x)
    np.testing.assert_array_equal(y, fastconv.avg_pool2d(x, **kw))
    assert_close(y, ref.avg_pool2d(x, **kw))
    gy = make_x(rng, y.shape, np.float64)
    assert_close(layer.backward(gy), ref.avg_pool2d_backward(gy, x, **kw))
    layer = nn.AvgPool2d(2, divisor_override=3)
    assert_close(layer(x), ref.avg_pool2d(x, 2, divisor_override=3))


def test_adaptive_pool_layers(rng, assert_close, make_tie_free):
    x = make_tie_free(rng, (2, 3, 9, 7), np.float64)
    avg = nn.AdaptiveAvgPool2d((4, None))
    y = avg(x)
    assert_close(y, ref.adaptive_avg_pool2d(x, (4, None)))
    gy = make_x(rng, y.shape, np.float64)
    assert_close(avg.backward(gy), ref.adaptive_avg_pool2d_backward(gy, x, (4, None)))

    mx = nn.AdaptiveMaxPool2d((4, 3))
    y = mx(x)
    ey, eidx = ref.adaptive_max_pool2d(x, (4, 3), return_indices=True)
    np.testing.assert_array_equal(y, ey)
    gy = make_x(rng, y.shape, np.float64)
    assert_close(mx.backward(gy), ref.adaptive_max_pool2d_backward(gy, x, (4, 3)))
    y, idx = nn.AdaptiveMaxPool2d(2, return_indices=True)(x)
    np.testing.assert_array_equal(idx, ref.adaptive_max_pool2d(x, 2, return_indices=True)[1])


def test_pool_layers_have_no_parameters():
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1),
                  nn.AdaptiveMaxPool2d(1)):
        assert layer.state_dict() == {}
        layer.load_state_dict({})
        layer.zero_grad()
        with pytest.raises(ValueError, match=r"unexpected key\(s\) 'weight'"):
            layer.load_state_dict({"weight": np.zeros(1)})


# --------------------------------------------------------------------------
# state_dict


def test_state_dict_round_trip(rng):
    a = nn.Conv2d(3, 4, 3, rng=1)
    b = nn.Conv2d(3, 4, 3, rng=2)
    sd = a.state_dict()
    assert list(sd) == ["weight", "bias"]
    assert sd["weight"].shape == (4, 3, 3, 3) and sd["bias"].shape == (4,)
    sd["weight"][...] = 0  # a copy: the layer is untouched
    assert np.abs(a.weight).max() > 0
    weight_array = b.weight
    b.load_state_dict(a.state_dict())
    assert b.weight is weight_array  # copied into place
    x = make_x(rng, (2, 3, 5, 5))
    np.testing.assert_array_equal(a(x), b(x))
    # float64 values and lists convert to the layer's dtype
    b.load_state_dict({"weight": a.weight.astype(np.float64), "bias": a.bias.tolist()})
    assert b.weight.dtype == np.float32
    np.testing.assert_array_equal(b.weight, a.weight)


def test_load_state_dict_errors_name_layer_key_expected_and_got():
    layer = nn.Conv2d(1, 6, 5)
    good = layer.state_dict()
    before = layer.state_dict()
    with pytest.raises(ValueError, match=r"Conv2d\.load_state_dict: 'weight' \(Conv2d\(1, 6, "
                                         r"kernel_size=\(5, 5\).*\) must have shape "
                                         r"\(6, 1, 5, 5\), got shape \(6, 1, 3, 3\)"):
        layer.load_state_dict({"weight": np.zeros((6, 1, 3, 3)), "bias": good["bias"]})
    with pytest.raises(ValueError, match=r"Conv2d\.load_state_dict: state_dict must have "
                                         r"exactly the keys 'weight', 'bias', got missing "
                                         r"key\(s\) 'bias'"):
        layer.load_state_dict({"weight": good["weight"]})
    with pytest.raises(ValueError, match=r"unexpected key\(s\) 'running_mean'"):
        layer.load_state_dict({**good, "running_mean": np.zeros(6)})
    with pytest.raises(TypeError, match=r"'bias' .* must be a real array, got dtype complex"):
        layer.load_state_dict({"weight": good["weight"], "bias": np.zeros(6, complex)})
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        layer.load_state_dict([("weight", good["weight"])])
    # a failed load changes nothing, even when the bad key comes second
    with pytest.raises(ValueError):
        layer.load_state_dict({"weight": np.ones((6, 1, 5, 5)), "bias": np.ones(7)})
    np.testing.assert_array_equal(layer.weight, before["weight"])
    # strict=False loads what is there and ignores the rest
    layer.load_state_dict({"bias": np.ones(6), "other": 1}, strict=False)
    np.testing.assert_array_equal(layer.bias, 1)
    np.testing.assert_array_equal(layer.weight, before["weight"])


def test_sequential_keys_forward_backward(rng):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.MaxPool2d(2),
                          nn.Conv2d(4, 2, 3, rng=1), nn.AdaptiveAvgPool2d(1))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [name for name, _, _ in model.named_parameters()] == list(model.state_dict())
    assert len(model) == 4 and isinstance(model[1], nn.MaxPool2d)
    assert isinstance(model[:2], nn.Sequential) and len(model[:2]) == 2
    x = make_x(rng, (2, 1, 8, 8))
    y = model(x)
    expected = x
    for layer in model.layers:
        expected = layer(expected)
    np.testing.assert_array_equal(y, expected)
    model(x)
    gx = model.backward(np.ones_like(y))
    assert gx.shape == x.shape
    # the chain rule, by hand through the functional API
    c0, c2 = model[0], model[2]
    a0 = fastconv.conv2d(x, c0.weight, c0.bias, padding=1)
    a1, i1 = fastconv.max_pool2d(a0, 2, return_indices=True)
    a2 = fastconv.conv2d(a1, c2.weight, c2.bias)
    g2 = fastconv.adaptive_avg_pool2d_backward(np.ones_like(y), a2, 1)
    g1, gw2, _ = fastconv.conv2d_backward(g2, a1, c2.weight)
    g0 = fastconv.max_pool2d_backward(g1, a0, 2, indices=i1)
    ex, gw0, _ = fastconv.conv2d_backward(g0, x, c0.weight, padding=1)
    np.testing.assert_allclose(gx, ex, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c2.grad_weight, gw2, rtol=1e-5)
    np.testing.assert_allclose(c0.grad_weight, gw0, rtol=1e-5)
    model.zero_grad()
    np.testing.assert_array_equal(c0.grad_weight, 0)
    model.eval()
    assert not any(layer.training for layer in model)
    model.train()
    assert all(layer.training for layer in model)


def test_sequential_requires_grad_freezes_its_layers(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.MaxPool2d(2), nn.Conv2d(2, 3, 1, rng=1))
    assert model.requires_grad
    model[:2].requires_grad = False  # a slice shares the layers
    assert [layer.requires_grad for layer in model] == [False, False, True]
    y = model(make_x(rng, (2, 1, 8, 8)))
    model.backward(np.ones_like(y))
    np.testing.assert_array_equal(model[0].grad_weight, 0)
    assert np.abs(model[2].grad_weight).max() > 0
    model.requires_grad = False
    assert not model.requires_grad and not model[2].requires_grad


def test_sequential_load_state_dict():
    a = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.MaxPool2d(2), nn.Conv2d(2, 3, 3, rng=1))
    b = nn.Sequential(nn.Conv2d(1, 2, 3, rng=2), nn.MaxPool2d(2), nn.Conv2d(2, 3, 3, rng=3))
    b.load_state_dict(a.state_dict())
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key], value)
    bad = a.state_dict()
    bad["2.weight"] = np.zeros((3, 2, 5, 5))
    with pytest.raises(ValueError, match=r"Sequential\.load_state_dict: '2\.weight' "
                                         r"\(Conv2d\(2, 3, .*\)\) must have shape \(3, 2, 3, 3\), "
                                         r"got shape \(3, 2, 5, 5\)"):
        b.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"missing key\(s\) '0\.bias'.*unexpected key\(s\) "
                                         r"'1\.weight'"):
        b.load_state_dict({"0.weight": np.zeros((2, 1, 3, 3)), "1.weight": 0,
                           "2.weight": np.zeros((3, 2, 3, 3)), "2.bias": np.zeros(3)})
    with pytest.raises(TypeError, match="Sequential: layer 1 must be callable and have a "
                                        "backward method, got 3"):
        nn.Sequential(nn.MaxPool2d(2), 3)


# --------------------------------------------------------------------------
# constructor errors


@pytest.mark.parametrize("call,exc,match", [
    (lambda: nn.Conv2d(3, 4, 3, padding_mode="reflect"), ValueError,
     r"Conv2d: padding_mode must be 'zeros' .*, got 'reflect'"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError,
     r"Conv2d: groups must divide in_channels, got groups=2 and in_channels=3"),
    (lambda: nn.Conv2d(4, 3, 3, groups=2), ValueError,
     r"Conv2d: groups must divide out_channels, got groups=2 and out_channels=3"),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, r"Conv2d: in_channels must be an int >= 1, got 0"),
    (lambda: nn.Conv2d(3, 4.0, 3), TypeError, r"Conv2d: out_channels must be an int, got 4.0"),
    (lambda: nn.Conv2d(3, 4, 0), ValueError,
     r"Conv2d: kernel_size must be an int >= 1 or a pair of them, got 0"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError,
     r"Conv2d: stride must be an int >= 1 or a pair of them, got 0"),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError,
     r"Conv2d: padding='same' requires stride 1, got stride=\(2, 2\)"),
    (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, r"Conv2d: padding must be"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, r"Conv2d: padding must be an int >= 0"),
    (lambda: nn.Conv2d(3, 4, 3, dilation=0), ValueError, r"Conv2d: dilation must be an int >= 1"),
    (lambda: nn.Conv2d(3, 4, 3, bias=None), TypeError, r"Conv2d: bias must be a bool, got None"),
    (lambda: nn.Conv2d(3, 4, 3, rng="seed"), TypeError,
     r"Conv2d: rng must be None, an int seed or a numpy\.random\.Generator, got 'seed'"),
    (lambda: nn.MaxPool2d(0), ValueError, r"MaxPool2d: kernel_size must be an int >= 1"),
    (lambda: nn.MaxPool2d(2, ceil_mode=1), TypeError,
     r"MaxPool2d: ceil_mode must be a bool, got 1"),
    (lambda: nn.AvgPool2d(2, stride=(1, 2, 3)), ValueError, r"AvgPool2d: stride must be an int"),
    (lambda: nn.AvgPool2d(2, divisor_override=0), ValueError,
     r"AvgPool2d: divisor_override must be an int >= 1, got 0"),
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError,
     r"AdaptiveAvgPool2d: output_size must be an int >= 1 or a pair of ints/None, got 0"),
    (lambda: nn.AdaptiveMaxPool2d((2, 2, 2)), ValueError, r"AdaptiveMaxPool2d: output_size must"),
])
def test_constructor_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_forward_errors(rng):
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv2d: input must have 3 channels \(in_channels\), "
                                         r"got input of shape \(2, 2, 5, 5\)"):
        layer(np.zeros((2, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="conv2d: input must be 3-D"):
        layer(np.zeros((5, 5), np.float32))
    pool = nn.MaxPool2d(2)
    y = pool(make_x(rng, (1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: grad_output must have the "
                                         r"forward output's shape \(1, 1, 2, 2\)"):
        pool.backward(np.ones((1, 1, 3, 3), np.float32))
    assert y.shape == (1, 1, 2, 2)


def test_repr():
    assert repr(nn.Conv2d(1, 6, 5, padding=2)) == (
        "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=2)")
    assert "bias=False" in repr(nn.Conv2d(1, 6, 5, bias=False, groups=1))
    assert repr(nn.AdaptiveAvgPool2d(1)) == "AdaptiveAvgPool2d(output_size=1)"


# --------------------------------------------------------------------------
# PyTorch: load its weights, get its outputs and gradients


def test_torch_weights_outputs_and_gradients(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnn = torch.nn
    tmodel = tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1), tnn.MaxPool2d(2, ceil_mode=True),
        tnn.Conv2d(8, 8, (3, 2), stride=(1, 2), dilation=(2, 1), groups=4, padding=(2, 1)),
        tnn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        tnn.Conv2d(8, 6, 1, bias=False), tnn.AdaptiveMaxPool2d((3, 2)),
        tnn.Conv2d(6, 4, 1), tnn.AdaptiveAvgPool2d(1),
    ).double()
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, dtype=np.float64), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(8, 8, (3, 2), stride=(1, 2), dilation=(2, 1), groups=4, padding=(2, 1),
                  dtype=np.float64),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.Conv2d(8, 6, 1, bias=False, dtype=np.float64), nn.AdaptiveMaxPool2d((3, 2)),
        nn.Conv2d(6, 4, 1, dtype=np.float64), nn.AdaptiveAvgPool2d(1),
    )
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})

    x = rng.standard_normal((2, 3, 11, 10))
    gy = rng.standard_normal((2, 4, 1, 1))
    tx = torch.tensor(x, requires_grad=True)
    ty = tmodel(tx)
    ty.backward(torch.tensor(gy))
    y = model(x)
    gx = model.backward(gy)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    grads = {name: grad for name, _, grad in model.named_parameters()}
    tgrads = {name: p.grad.numpy() for name, p in tmodel.named_parameters()}
    assert grads.keys() == tgrads.keys()
    for name in grads:
        np.testing.assert_allclose(grads[name], tgrads[name], rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    # and back: fastconv-trained weights drop into torch
    for _, param, grad in model.named_parameters():
        param -= 0.1 * grad
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(model(x), tmodel(torch.tensor(x)).numpy(), rtol=1e-10,
                                   atol=1e-12)


def test_torch_float32_lenet_layers(rng):
    """float32 (the default) against torch's float32, LeNet's first stages."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tnn = torch.nn
    tmodel = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5))
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5))
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    gy = rng.standard_normal((4, 16, 10, 10)).astype(np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = tmodel(tx)
    ty.backward(torch.from_numpy(gy))
    y = model(x)
    gx = model.backward(gy)
    assert y.dtype == gx.dtype == np.float32

    def close(a, b, what):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max(), err_msg=what)

    close(y, ty.detach().numpy(), "output")
    close(gx, tx.grad.numpy(), "grad input")
    for (name, _, grad), (tname, p) in zip(model.named_parameters(), tmodel.named_parameters()):
        assert name == tname
        close(grad, p.grad.numpy(), name)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(nn, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
