"""Thread count: results do not depend on it, and the setters behave.

Every test that changes the thread count uses the ``threads`` fixture, which
restores the default afterwards.
"""
import os

import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

TE = (TypeError, ValueError)


def call(name, args, kwargs):
    return getattr(fastconv, name)(*args, **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_and_two_threads_agree(threads, sample_call, assert_same_results, func_name,
                                   dtype):
    name, args, kwargs = sample_call(func_name, dtype)
    threads.set_num_threads(1)
    one = call(name, args, kwargs)
    threads.set_num_threads(2)
    two = call(name, args, kwargs)
    assert_same_results(two, one, err_msg=f"{func_name}: 1 vs 2 threads")


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "1x1", "auto"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_conv_thread_counts_agree_on_uneven_work(threads, rng, assert_close, algorithm, n):
    """Batch, channel and row counts that do not divide evenly among threads."""
    x = rng.standard_normal((3, 6, 11, 9))
    R = 1 if algorithm == "1x1" else 3
    w = rng.standard_normal((10, 3, R, R))
    b = rng.standard_normal(10)
    kw = dict(stride=(1, 2), padding=1, groups=2, algorithm=algorithm)
    threads.set_num_threads(1)
    y1 = fastconv.conv2d(x, w, b, **kw)
    g = rng.standard_normal(y1.shape)
    grads1 = fastconv.conv2d_backward(g, x, w, **kw)
    threads.set_num_threads(n)
    assert_close(fastconv.conv2d(x, w, b, **kw), y1, 3 * R * R)
    grads = fastconv.conv2d_backward(g, x, w, **kw)
    for got, exp, red in zip(grads, grads1, (5 * R * R, y1.size // 10, y1.size // 10)):
        assert_close(got, exp, red)


@pytest.mark.parametrize("tile", ["winograd-2x2", "winograd-4x4"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_winograd_thread_counts_agree_exactly(threads, rng, assert_close, algo, n, groups,
                                              tile):
    """Winograd's items are rows of tiles (of one group), fewer or more of
    them with more threads; each tile's sums run in the same order, so the
    bits agree. grad_weight by Winograd sums each thread's tiles, then the
    threads' sums: close, not the same bits. (7.5 MFLOP dense, 3.7 grouped:
    above the size that runs on one thread whatever the setting.)"""
    x = rng.standard_normal((3, 16, 21, 17)).astype(np.float32)
    w = rng.standard_normal((24, 16 // groups, 3, 3)).astype(np.float32)
    g = rng.standard_normal((3, 24, 21, 17)).astype(np.float32)
    kw = dict(padding=1, groups=groups, algorithm=algo(tile))
    threads.set_num_threads(1)
    y1 = fastconv.conv2d(x, w, **kw)
    gi1, gw1, _ = fastconv.conv2d_backward(g, x, w, **kw)
    threads.set_num_threads(n)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, **kw), y1)
    gi, gw, _ = fastconv.conv2d_backward(g, x, w, **kw)
    np.testing.assert_array_equal(gi, gi1)
    assert_close(gw, gw1, g.size // 24)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 9, 13, 11), (128, 9, 5, 5), dict(stride=2, padding=2)),  # phases as channels
    ((2, 3, 47, 45), (16, 3, 11, 11), dict(stride=4, padding=2)),
    ((3, 4, 21, 17), (8, 4, 3, 3), dict(padding=2, dilation=2)),  # dilated: its phases
    ((2, 4, 19, 23), (6, 2, 5, 5), dict(padding=3, dilation=(2, 3), groups=2)),
])
def test_winograd_on_phases_thread_counts_agree_exactly(threads, rng, n, x_shape, w_shape, kw):
    """Strided and dilated layers run Winograd on copies of their phases, made
    by the threads a plane each: bit for bit the one-thread result, call after
    call (the copies once shared their phase indices between the threads and
    went wrong on two threads once the heap handed back used memory)."""
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    threads.set_num_threads(1)
    y1 = fastconv.conv2d(x, w, algorithm="winograd", **kw)
    np.testing.assert_allclose(y1, ref.conv2d(x, w, **kw), rtol=1e-4,
                               atol=1e-4 * np.abs(y1).max())
    threads.set_num_threads(n)
    for _ in range(4):
        np.testing.assert_array_equal(fastconv.conv2d(x, w, algorithm="winograd", **kw), y1)


@pytest.mark.parametrize("n", [2, 3])
def test_pool_thread_counts_agree_on_single_image(threads, rng, make_tie_free, n):
    """One image with few channels: work split must not depend on N."""
    x = make_tie_free(rng, (1, 3, 13, 10))
    threads.set_num_threads(1)
    r1 = [fastconv.max_pool2d(x, 3, 2, 1, return_indices=True),
          fastconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
          fastconv.adaptive_max_pool2d(x, (5, 4), return_indices=True),
          fastconv.adaptive_avg_pool2d(x, (5, 4))]
    threads.set_num_threads(n)
    rn = [fastconv.max_pool2d(x, 3, 2, 1, return_indices=True),
          fastconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
          fastconv.adaptive_max_pool2d(x, (5, 4), return_indices=True),
          fastconv.adaptive_avg_pool2d(x, (5, 4))]
    for a, b in zip(r1, rn):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            np.testing.assert_allclose(u, v, rtol=1e-14, atol=0)


def test_more_threads_than_work(threads, rng, assert_close):
    x = rng.standard_normal((1, 1, 3, 3))
    w = rng.standard_normal((1, 1, 2, 2))
    expected = fastconv.conv2d(x, w)
    threads.set_num_threads(8)
    assert threads.get_num_threads() == 8
    assert_close(fastconv.conv2d(x, w), expected, 4)
    np.testing.assert_array_equal(fastconv.max_pool2d(x, 2, 1), np.max(
        np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3)), axis=(4, 5)))


def test_set_and_get(threads):
    threads.set_num_threads(1)
    assert threads.get_num_threads() == 1
    threads.set_num_threads(2)
    assert threads.get_num_threads() == 2
    threads.set_num_threads(np.int64(3))
    assert threads.get_num_threads() == 3
    assert isinstance(threads.get_num_threads(), int)


def test_none_restores_default(threads):
    threads.set_num_threads(None)
    default = threads.get_num_threads()
    assert isinstance(default, int) and default >= 1
    threads.set_num_threads(1)
    threads.set_num_threads(None)
    assert threads.get_num_threads() == default


def test_default_is_openmp_max_or_env(threads):
    """Default: OMP_NUM_THREADS if set, else all cores (or 1 without OpenMP)."""
    threads.set_num_threads(None)
    default = threads.get_num_threads()
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) >= 1:
        assert default in (int(env), 1)
    else:
        assert default in (os.cpu_count(), len(os.sched_getaffinity(0))
                           if hasattr(os, "sched_getaffinity") else os.cpu_count(), 1)


@pytest.mark.parametrize("bad, exc, shown", [
    (0, ValueError, "0"), (-1, ValueError, "-1"), (1.5, TE, r"1\.5"), ("2", TE, "2"),
    ([2], TE, r"\[2\]"),
])
def test_set_num_threads_rejects_bad_values(threads, bad, exc, shown):
    before = threads.get_num_threads()
    with pytest.raises(exc, match=rf"(?s)set_num_threads: .*n.*{shown}"):
        threads.set_num_threads(bad)
    assert threads.get_num_threads() == before


def test_winograd_grad_weight_kernel_needs_a_thread():
    """The kernel sizes its threads' sums by n_threads, and OpenMP would read
    0 as every thread: refused rather than written past."""
    from fastconv import _conv
    x = np.ones((1, 2, 6, 6))
    gy = np.ones((1, 3, 6, 6))
    gw = np.empty((3, 2, 3, 3))
    with pytest.raises(ValueError, match="n_threads must be at least 1, got 0"):
        _conv.conv2d_grad_weight_winograd(gy, x, gw, 1, 1, 1, 2, 1, 64, 1e15, 1e15, False, 0)
    assert _conv.conv2d_grad_weight_winograd(gy, x, gw, 1, 1, 1, 2, 1, 64, 1e15, 1e15, False,
                                             1) == 0


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_grad_weight_per_thread_and_shared_sums(rng, assert_close, tile, groups,
                                                        dtype):
    """Winograd's grad_weight both ways, on 1 to 3 threads: each thread
    summing its items (rows of tiles) into sums of its own, added at the
    end, or one item per group whose elements xi the threads share, into
    one set of sums (what conv2d_backward picks for small batches). Short
    reduction blocks (16 tiles) split the GEMMs too."""
    from fastconv import _conv, reference as ref
    x = rng.standard_normal((3, 8, 13, 11)).astype(dtype)
    w = rng.standard_normal((10, 8 // groups, 3, 3)).astype(dtype)
    gy = rng.standard_normal((3, 10, 13, 11)).astype(dtype)
    expected = ref.conv2d_backward(gy, x, w, padding=1, groups=groups)[1]
    rows_of_tiles = 3 * -(-13 // tile)
    for shared in (False, True):
        for n in (1, 2, 3):
            gw = np.full(w.shape, np.nan, dtype)
            status = _conv.conv2d_grad_weight_winograd(
                gy, x, gw, 1, 1, groups, tile, rows_of_tiles if shared else 2, 16, 1e15, 1e15,
                shared, n)
            assert status == 0
            assert_close(gw, expected, gy.size // 10, err_msg=f"shared={shared}, {n} threads")
