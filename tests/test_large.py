"""Inputs of more than 2**31 elements: every offset in the kernels is a Py_ssize_t.

One float32 input of 2 planes x 1.07e9 (8.1 GiB; its second plane starts past
element 2**31, its planes past 2**30) goes through max pooling (the 2x2 fast
path, and 4x4 windows with indices), average pooling and a 1x1 convolution
read in place (the GEMM's pixel panel at offsets past 2**31). Sampled
outputs (random, the corners, the last rows) are compared with the reference
computed on the slices of the input they read.

Marked ``slow`` (deselected by default: ``pytest -m slow tests/test_large.py``
runs it, in about a minute); skipped unless /proc/meminfo shows 14 GiB
available, and under AddressSanitizer.
"""
import os

import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(os.environ.get("FASTCONV_SANITIZED")),
                       reason="too big for AddressSanitizer's shadow memory"),
]

H, W = 32771, 32771  # one plane: 1.07e9 elements; two: 2**31 + 2 * 4 * 32771 + 18
NEEDED = 14 * 2**30  # the input, the largest output (4 GiB) and room to spare
N_SAMPLES = 300


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.fixture(scope="module")
def big():
    if mem_available() < NEEDED:
        pytest.skip(f"needs {NEEDED / 2**30:.0f} GiB of available memory")
    x = np.empty((1, 2, H, W), np.float32)
    rng = np.random.default_rng(11)
    for c in range(2):
        for r in range(0, H, 4096):  # in bands: no float64 temporary of 8 GiB
            rng.random(out=x[0, c, r:r + 4096], dtype=np.float32)
            x[0, c, r:r + 4096] -= 0.5
    assert x.size > 2**31
    yield x
    del x


def sample_positions(rng, P, Q):
    """(c, p, q) of random outputs, plus the corners and the last row."""
    ps = list(rng.integers(0, P, N_SAMPLES)) + [0, 0, P - 1, P - 1] + [P - 1] * 8
    qs = list(rng.integers(0, Q, N_SAMPLES)) + [0, Q - 1, 0, Q - 1] + list(
        rng.integers(0, Q, 8))
    cs = list(rng.integers(0, 2, len(ps)))
    return zip(cs, ps, qs)


@pytest.mark.parametrize("k, s, indices", [(2, 2, False), (4, 4, True)])
def test_max_pool_beyond_2_31(big, k, s, indices):
    out = fastconv.max_pool2d(big, k, s, return_indices=indices)
    y, idx = out if indices else (out, None)
    P, Q = y.shape[2:]
    assert (P, Q) == ((H - k) // s + 1, (W - k) // s + 1)
    rng = np.random.default_rng(k)
    for c, p, q in sample_positions(rng, P, Q):
        window = big[:, c:c + 1, p * s:p * s + k, q * s:q * s + k]
        ev, ei = ref.max_pool2d(window, k, return_indices=True)
        assert y[0, c, p, q] == ev[0, 0, 0, 0], (c, p, q)
        if indices:  # the window's flat index, moved to the whole plane
            r, col = divmod(int(ei[0, 0, 0, 0]), k)
            assert idx[0, c, p, q] == (p * s + r) * W + q * s + col, (c, p, q)
    del out, y, idx


def test_avg_pool_beyond_2_31(big):
    y = fastconv.avg_pool2d(big, 3, 2)
    rng = np.random.default_rng(3)
    for c, p, q in sample_positions(rng, *y.shape[2:]):
        window = big[:, c:c + 1, 2 * p:2 * p + 3, 2 * q:2 * q + 3]
        # float32 rounding of a sum of 9: relative to the terms, not the (cancelling) sum
        np.testing.assert_allclose(y[0, c, p, q], ref.avg_pool2d(window, 3)[0, 0, 0, 0],
                                   rtol=1e-6, atol=1e-6 * float(np.abs(window).mean()),
                                   err_msg=str((c, p, q)))
    del y


@pytest.mark.parametrize("algorithm", ["1x1", "direct"])
def test_pointwise_conv_beyond_2_31(big, algorithm):
    w = np.array([[[[0.75]], [[-1.5]]]], np.float32)
    b = np.array([0.25], np.float32)
    y = fastconv.conv2d(big, w, b, algorithm=algorithm)
    assert y.shape == (1, 1, H, W)
    rng = np.random.default_rng(5)
    for _, p, q in sample_positions(rng, H, W):
        q0 = max(0, q - 3)  # a short run of the row, across the GEMM's panels
        expected = ref.conv2d(big[:, :, p:p + 1, q0:q + 1], w, b)
        np.testing.assert_allclose(y[:, :, p:p + 1, q0:q + 1], expected, rtol=1e-6,
                                   atol=1e-6 * 2.25, err_msg=str((p, q)))
    del y
