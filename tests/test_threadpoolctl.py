"""``threadpoolctl.threadpool_limits(n)`` limits fastconv's threads as it limits
NumPy's BLAS: every calling thread, until the ``with`` block ends.

What is observed is what the kernels get: a spy in front of the compiled
kernels records the ``n_threads`` each call receives and the size of the
OpenMP team a parallel region opened with that count really has.
"""
import threading

import numpy as np
import pytest

import fastconv
from fastconv import _conv, _openmp, _pool

threadpoolctl = pytest.importorskip("threadpoolctl")
if not hasattr(threadpoolctl, "register"):  # pragma: no cover
    pytest.skip("threadpoolctl < 3.5 cannot take fastconv's controller",
                allow_module_level=True)


@pytest.fixture
def kernel_threads(monkeypatch, threads):
    """Call ``kernel_threads()`` to run a convolution and a pooling and get,
    for each, ``(n_threads given to the kernel, OpenMP team size for it)``."""
    seen = []

    def spy(kernel):
        def wrapper(*args):
            n = args[-1]  # every kernel takes n_threads last
            seen.append((n, _openmp.team_size(n)))
            return kernel(*args)
        return wrapper

    monkeypatch.setattr(_conv, "conv2d_packed", spy(_conv.conv2d_packed))
    monkeypatch.setattr(_pool, "max_pool_forward", spy(_pool.max_pool_forward))
    x = np.ones((2, 3, 12, 12))
    w = np.ones((4, 3, 3, 3))

    def run():
        del seen[:]
        fastconv.conv2d(x, w, algorithm="im2col")
        fastconv.max_pool2d(x, 2)
        return list(seen)
    return run


@pytest.mark.parametrize("setting", [None, 3], ids=["default", "set_num_threads(3)"])
def test_threadpool_limits_limits_the_kernels(threads, kernel_threads, setting):
    threads.set_num_threads(setting)
    before = fastconv.get_num_threads()
    if before < 2:
        pytest.skip("OpenMP offers one thread here")
    assert kernel_threads() == [(before, before)] * 2
    with threadpoolctl.threadpool_limits(1):
        assert fastconv.get_num_threads() == 1
        assert kernel_threads() == [(1, 1)] * 2
    assert fastconv.get_num_threads() == before
    assert kernel_threads() == [(before, before)] * 2
    assert _openmp.thread_limit() == 0  # nothing left behind


def test_limit_applies_to_every_thread(threads, kernel_threads):
    """Like OpenBLAS's, the limit holds in threads other than the caller's
    (a dask worker's, say)."""
    threads.set_num_threads(2)
    got = []
    with threadpoolctl.threadpool_limits(1):
        worker = threading.Thread(target=lambda: got.append(kernel_threads()))
        worker.start()
        worker.join()
    assert got == [[(1, 1)] * 2]


def test_threadpool_info_lists_fastconv(threads):
    threads.set_num_threads(2)
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastconv"]
    assert len(info) == 1
    assert info[0]["user_api"] == "openmp"
    assert info[0]["num_threads"] == 2
    assert info[0]["version"] == fastconv.__version__


def test_only_the_selected_apis_are_limited(threads):
    threads.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert fastconv.get_num_threads() == 2
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fastconv.get_num_threads() == 1
    controller = threadpoolctl.ThreadpoolController().select(internal_api="fastconv")
    with controller.limit(limits=1):
        assert fastconv.get_num_threads() == 1
    assert fastconv.get_num_threads() == 2


def test_nested_limits_and_set_num_threads_inside(threads):
    threads.set_num_threads(None)
    default = fastconv.get_num_threads()
    with threadpoolctl.threadpool_limits(3):
        assert fastconv.get_num_threads() == 3
        with threadpoolctl.threadpool_limits(1):
            assert fastconv.get_num_threads() == 1
        assert fastconv.get_num_threads() == 3
        fastconv.set_num_threads(4)  # the last call wins, as with a BLAS
        assert fastconv.get_num_threads() == 4
    assert fastconv.get_num_threads() == default  # the count from before the block
