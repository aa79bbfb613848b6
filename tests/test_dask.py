"""fastconv.dask: lazy results equal to in-memory fastconv, whatever the chunking.

Chunkings cover batch-only, spatial-only and both; chunks of odd sizes, of
one pixel, smaller than the kernel, the halo or the stride; blocks that read
only padding. Max pooling is compared bit for bit (values and indices, with
-inf and NaN in the data); convolution and average pooling to the dtype's
tolerance (a block may run another algorithm or kernel path than the whole
image). Everything runs under the threaded scheduler; a few cases also run
on a ``distributed.LocalCluster`` with a worker process.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv

da = pytest.importorskip("dask.array")
fdask = pytest.importorskip("fastconv.dask")

DTYPES = [np.float32, np.float64]


def compute(y):
    return y.compute(scheduler="threads")


def conv_case(id, shape, chunks, wshape, bias=False, **kw):
    return pytest.param(shape, chunks, wshape, bias, kw, id=id)


CONV_CASES = [
    conv_case("batch-chunks", (5, 4, 9, 8), (2, 4, 9, 8), (6, 4, 3, 3), padding=1),
    conv_case("spatial-odd", (2, 4, 17, 19), ((2,), (4,), (5, 1, 7, 4), (6, 6, 7)),
              (6, 4, 3, 3), bias=True, padding=1),
    conv_case("both-s2", (3, 4, 17, 19), (2, 4, 5, 6), (6, 4, 3, 3), stride=2, padding=1),
    conv_case("chunks-below-kernel", (2, 3, 13, 12), (1, 3, 2, 1), (4, 3, 5, 3), bias=True,
              stride=(1, 2), padding=(2, 1)),
    conv_case("one-pixel-chunks-s2", (1, 3, 9, 7), (1, 3, 1, 1), (4, 3, 3, 3), stride=2),
    conv_case("chunks-below-stride", (2, 2, 23, 17), ((1, 1), (2,), (1, 2, 9, 1, 10), (3, 14)),
              (3, 2, 3, 2), stride=(4, 3), padding=1),
    conv_case("asymmetric-dilated-groups", (2, 4, 23, 21), (1, 4, 4, 5), (6, 2, 3, 2),
              bias=True, stride=(3, 2), padding=((2, 0), (1, 3)), dilation=(2, 1), groups=2),
    conv_case("same-even-kernel", (2, 3, 16, 15), (2, 1, 3, 4), (5, 3, 4, 3),
              padding="same", dilation=(1, 2)),
    conv_case("valid", (2, 3, 12, 13), (1, 3, 5, 4), (4, 3, 3, 3), padding="valid"),
    conv_case("depthwise-dilated", (2, 4, 15, 14), (1, 2, 5, 5), (4, 1, 3, 3), groups=4,
              stride=2, padding=1, dilation=2),
    # bottom/right padding wider than the stride: the last blocks read only padding
    conv_case("padding-only-blocks", (2, 2, 10, 9), ((1, 1), (2,), (9, 1), (1, 8)),
              (3, 2, 1, 1), bias=True, stride=5, padding=((12, 10), (6, 11))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, chunks, wshape, bias, kw", CONV_CASES)
def test_conv2d_matches_in_memory(rng, assert_close, shape, chunks, wshape, bias, kw, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype) if bias else None
    expected = fastconv.conv2d(x, w, b, **kw)
    y = fdask.conv2d(da.from_array(x, chunks=chunks), w, b, **kw)
    assert isinstance(y, da.Array)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    assert_split(y, chunks)
    assert_close(compute(y), expected, int(np.prod(wshape[1:])))


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_conv2d_algorithm_passes_through(rng, assert_close, algorithm):
    x = rng.standard_normal((2, 4, 11, 10))
    w = rng.standard_normal((6, 4, 3, 3))
    y = fdask.conv2d(da.from_array(x, chunks=(1, 4, 4, 3)), w, stride=2, padding=1,
                     algorithm=algorithm)
    assert_close(compute(y), fastconv.conv2d(x, w, stride=2, padding=1, algorithm=algorithm),
                 36)


def test_conv2d_winograd_blocks(rng, assert_close):
    """Winograd's tiles start at each block's first output: odd-sized blocks
    still give the whole array's result (to rounding)."""
    x = rng.standard_normal((2, 4, 11, 10))
    w = rng.standard_normal((6, 4, 3, 3))
    y = fdask.conv2d(da.from_array(x, chunks=(1, 4, 5, 3)), w, padding=1, algorithm="winograd")
    assert_close(compute(y), fastconv.conv2d(x, w, padding=1), 36)


def assert_split(y, chunks):
    """A spatially chunked input gives a spatially chunked output (not one block)."""
    if any(not isinstance(c, int) or c < n for c, n in zip(chunks[2:], y.shape[2:])):
        assert y.numblocks[2] > 1 or y.numblocks[3] > 1, y.chunks


def pool_case(id, shape, chunks, **kw):
    return pytest.param(shape, chunks, kw, id=id)


MAX_CASES = [
    pool_case("batch-chunks", (5, 3, 8, 8), (2, 3, 8, 8), kernel_size=2),
    pool_case("k3-s2-p1-odd", (2, 3, 17, 19), ((1, 1), (1, 2), (5, 1, 7, 4), (6, 6, 7)),
              kernel_size=3, stride=2, padding=1),
    pool_case("ceil", (2, 2, 15, 16), (1, 2, 4, 6), kernel_size=3, stride=2, padding=1,
              ceil_mode=True),
    pool_case("ceil-no-padding", (1, 2, 14, 13), (1, 1, 3, 5), kernel_size=(2, 3),
              ceil_mode=True),
    pool_case("one-pixel-chunks", (1, 2, 9, 8), (1, 2, 1, 1), kernel_size=3, stride=2,
              padding=1, ceil_mode=True),
    pool_case("dilated", (2, 2, 13, 14), (1, 1, 3, 4), kernel_size=3, stride=1, padding=2,
              dilation=2),
    pool_case("dilated-empty-windows", (1, 2, 7, 8), (1, 2, 2, 3), kernel_size=2, stride=2,
              padding=1, dilation=(3, 4), ceil_mode=True),
    pool_case("chunks-below-stride", (1, 2, 19, 17), ((1,), (2,), (1, 1, 2, 15), (2, 1, 14)),
              kernel_size=(2, 3), stride=(4, 5), padding=1),
]


def max_data(rng, shape, dtype):
    """Tie-free data with -inf rows and columns (windows whose maximum is -inf,
    where the index rule matters) and a few NaNs."""
    size = int(np.prod(shape))
    x = rng.permutation(np.arange(size) * 2.0 / size - 1.0).reshape(shape).astype(dtype)
    x[..., :3, :] = -np.inf
    x[..., :, -2:] = -np.inf
    x[0, 0, shape[2] // 2, shape[3] // 3] = np.nan
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, chunks, kw", MAX_CASES)
def test_max_pool2d_matches_in_memory_exactly(rng, shape, chunks, kw, dtype):
    x = max_data(rng, shape, dtype)
    expected, expected_idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    xd = da.from_array(x, chunks=chunks)
    y = fdask.max_pool2d(xd, **kw)
    assert y.dtype == expected.dtype and y.shape == expected.shape
    assert_split(y, chunks)
    np.testing.assert_array_equal(compute(y), expected)
    y, idx = fdask.max_pool2d(xd, return_indices=True, **kw)
    got, got_idx = da.compute(y, idx, scheduler="threads")
    np.testing.assert_array_equal(got, expected)
    assert got_idx.dtype == np.int64
    np.testing.assert_array_equal(got_idx, expected_idx)


AVG_CASES = [
    pool_case("batch-chunks", (5, 3, 8, 8), (2, 3, 8, 8), kernel_size=2),
    pool_case("pad-count", (2, 3, 17, 19), ((1, 1), (1, 2), (5, 1, 7, 4), (6, 6, 7)),
              kernel_size=3, stride=2, padding=1),
    pool_case("pad-no-count", (2, 3, 17, 19), (1, 3, 2, 5), kernel_size=3, stride=2,
              padding=1, count_include_pad=False),
    pool_case("ceil-count", (2, 2, 15, 16), (1, 2, 4, 6), kernel_size=3, stride=2, padding=1,
              ceil_mode=True),
    pool_case("ceil-no-count", (2, 2, 15, 16), (1, 1, 1, 3), kernel_size=(3, 2),
              stride=(2, 3), padding=1, ceil_mode=True, count_include_pad=False),
    pool_case("divisor-override", (1, 2, 13, 11), (1, 2, 4, 2), kernel_size=3, stride=2,
              padding=1, ceil_mode=True, divisor_override=5),
    pool_case("chunks-below-stride", (1, 2, 19, 17), ((1,), (2,), (1, 1, 2, 15), (2, 1, 14)),
              kernel_size=(2, 3), stride=(4, 5), padding=1, count_include_pad=False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, chunks, kw", AVG_CASES)
def test_avg_pool2d_matches_in_memory(rng, assert_close, shape, chunks, kw, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    expected = fastconv.avg_pool2d(x, **kw)
    y = fdask.avg_pool2d(da.from_array(x, chunks=chunks), **kw)
    assert y.dtype == expected.dtype and y.shape == expected.shape
    assert_split(y, chunks)
    assert_close(compute(y), expected, 9)


def test_batch_chunks_map_block_by_block(rng):
    """Chunked along N only: one task per batch chunk, each reading only its own chunk."""
    x = da.from_array(rng.standard_normal((6, 2, 8, 8)), chunks=(2, 2, 8, 8))
    w = rng.standard_normal((3, 2, 3, 3))
    for y in (fdask.conv2d(x, w, padding=1), fdask.max_pool2d(x, 2),
              fdask.avg_pool2d(x, 3, 2, 1)):
        layer = y.dask.layers[y.name]
        tasks = {k: v for k, v in layer.items() if isinstance(k, tuple) and k[0] == y.name}
        assert len(tasks) == 3
        for key, task in tasks.items():
            deps = {d for d in _keys_in(task) if d[0] == x.name}
            assert deps == {(x.name, key[1], 0, 0, 0)}


def _keys_in(obj):
    if isinstance(obj, tuple) and obj and isinstance(obj[0], str):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [k for item in obj for k in _keys_in(item)]
    return []


def test_output_chunks_follow_input_chunks_on_whole_strides():
    x = da.zeros((1, 1, 20, 20), chunks=(1, 1, (7, 7, 6), (3, 17)))
    w = np.ones((1, 1, 3, 3))
    y = fdask.conv2d(x, w, stride=2, padding=1)
    # window starts -1, 1, 3, 5 | 7, ..., 13 | 15, 17 and -1, 1 | 3, ..., 17
    assert y.chunks[2:] == ((4, 4, 2), (2, 8))


def test_unbatched_and_numpy_input(rng, assert_close):
    x = rng.standard_normal((3, 10, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    y = fdask.conv2d(da.from_array(x, chunks=(3, 4, 4)), w, padding=1)
    assert y.shape == (4, 10, 9)
    assert_close(compute(y), fastconv.conv2d(x, w, padding=1), 27)
    y = fdask.max_pool2d(x, 3, 2, 1)  # a NumPy array is wrapped
    assert isinstance(y, da.Array)
    np.testing.assert_array_equal(compute(y), fastconv.max_pool2d(x, 3, 2, 1))
    y = fdask.avg_pool2d(da.from_array(x, chunks=(1, 5, 5)), 2, count_include_pad=False)
    assert_close(compute(y), fastconv.avg_pool2d(x, 2), 4)


def test_dtype_policy_follows_in_memory(rng):
    x = rng.integers(-5, 5, (2, 2, 7, 6))
    w = rng.standard_normal((2, 2, 2, 2)).astype(np.float32)
    xd = da.from_array(x, chunks=(1, 2, 3, 3))
    assert compute(fdask.conv2d(xd, w)).dtype == fastconv.conv2d(x, w).dtype == np.float64
    np.testing.assert_array_equal(compute(fdask.max_pool2d(xd, 2, 1, 1)),
                                  fastconv.max_pool2d(x, 2, 1, 1))
    x16 = da.from_array(x.astype(np.float16), chunks=(1, 2, 3, 3))
    assert fdask.avg_pool2d(x16, 2).dtype == np.float32


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda x, w: fdask.conv2d(x, w, stride=0), ValueError,
     r"fastconv\.dask\.conv2d: stride must be an int >= 1 or a pair of them, got 0"),
    (lambda x, w: fdask.conv2d(x, w[:, :1]), ValueError,
     r"fastconv\.dask\.conv2d: input channels must equal"),
    (lambda x, w: fdask.conv2d(x, w, padding="same", stride=2), ValueError,
     r"fastconv\.dask\.conv2d: padding='same' requires stride 1"),
    (lambda x, w: fdask.conv2d(x, w, algorithm="fft"), ValueError,
     r"fastconv\.dask\.conv2d: algorithm"),
    (lambda x, w: fdask.conv2d(x[0, 0], w), ValueError,
     r"fastconv\.dask\.conv2d: input must be 3-D \(C, H, W\) or 4-D"),
    (lambda x, w: fdask.conv2d(x.astype(bool), w), TypeError,
     r"fastconv\.dask\.conv2d: input must have a real floating or integer dtype"),
    (lambda x, w: fdask.max_pool2d(x, 3, padding=2), ValueError,
     r"fastconv\.dask\.max_pool2d: padding must be at most half"),
    (lambda x, w: fdask.max_pool2d(x, 2, return_indices=1), TypeError,
     r"fastconv\.dask\.max_pool2d: return_indices must be a bool, got 1"),
    (lambda x, w: fdask.avg_pool2d(x, 2, divisor_override=0), ValueError,
     r"fastconv\.dask\.avg_pool2d: divisor_override must be an int >= 1, got 0"),
    (lambda x, w: fdask.avg_pool2d(x, 9), ValueError,
     r"fastconv\.dask\.avg_pool2d: kernel_size \(9, 9\) .* must fit"),
])
def test_errors_name_the_function(call, exc, pattern):
    x = da.zeros((2, 4, 8, 8), chunks=(1, 4, 3, 3))
    w = np.zeros((3, 4, 3, 3))
    with pytest.raises(exc, match=pattern):
        call(x, w)


def test_unknown_chunk_sizes_are_rejected():
    x = da.zeros((2, 1, 8, 8), chunks=(1, 1, 4, 4))
    x = x[x[:, 0, 0, 0] == 0]  # a boolean mask leaves the batch chunk sizes unknown
    with pytest.raises(ValueError, match=r"fastconv\.dask\.max_pool2d: input must have known "
                                         r"chunk sizes"):
        fdask.max_pool2d(x, 2)


def test_importing_fastconv_does_not_import_dask(tmp_path):
    code = "import sys, fastconv; print('dask' in sys.modules)"
    # run away from the source tree, whose fastconv/ may hold no compiled modules
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------
# a distributed cluster


def restore_environ(saved):
    for key in set(os.environ) | set(saved):
        if key not in saved:
            del os.environ[key]
        elif os.environ.get(key) != saved[key]:
            os.environ[key] = saved[key]


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    # distributed puts OMP_NUM_THREADS=1 & co. into this process's environment
    # to hand them to its workers, and leaves them there: undo that
    saved = dict(os.environ)
    try:
        # one worker process (tasks and results cross a process boundary); any free port
        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                      dashboard_address=":0", silence_logs=50) as cluster:
            restore_environ(saved)
            with distributed.Client(cluster) as c:
                yield c
    finally:
        restore_environ(saved)


@pytest.mark.parametrize("dtype", DTYPES)
def test_distributed_cluster(client, rng, assert_close, dtype):
    x = max_data(rng, (3, 4, 17, 15), dtype)
    xs = np.nan_to_num(x, nan=0.0, neginf=0.0)
    w = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    xd, xsd = (da.from_array(a, chunks=(2, 2, 5, 4)) for a in (x, xs))
    conv_kw = dict(stride=2, padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)
    pool_kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    conv = fdask.conv2d(xsd, w, b, **conv_kw)
    mx, idx = fdask.max_pool2d(xd, return_indices=True, **pool_kw)
    avg = fdask.avg_pool2d(xsd, count_include_pad=False, **pool_kw)
    got = client.compute([conv, mx, idx, avg], sync=True)
    assert_close(got[0], fastconv.conv2d(xs, w, b, **conv_kw), 18)
    exp_mx, exp_idx = fastconv.max_pool2d(x, return_indices=True, **pool_kw)
    np.testing.assert_array_equal(got[1], exp_mx)
    np.testing.assert_array_equal(got[2], exp_idx)
    assert_close(got[3], fastconv.avg_pool2d(xs, count_include_pad=False, **pool_kw), 9)
