"""Thread count for the kernels, and BLAS kept single-threaded inside them.

The kernels parallelise with OpenMP over images, channel blocks or tiles and
call BLAS from inside those parallel regions, so BLAS itself must run on one
thread (as scikit-learn does) or the two pools would oversubscribe the cores.
"""
import contextlib
import numbers
import threading

from . import _openmp

_num_threads = None  # None: OpenMP's default, which honours OMP_NUM_THREADS
_controller = None
_limiter = None
_blas_users = 0
_lock = threading.Lock()


def set_num_threads(n):
    """Set the number of threads fastconv's kernels use.

    Parameters
    ----------
    n : int >= 1 or None
        Thread count; None restores the default (all cores, or
        ``OMP_NUM_THREADS`` when set).
    """
    global _num_threads
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"set_num_threads: n must be an int >= 1 or None, got {n!r}")
        if n < 1:
            raise ValueError(f"set_num_threads: n must be an int >= 1 or None, got {n!r}")
        n = int(n)
    _num_threads = n


def get_num_threads():
    """Return the number of threads fastconv's kernels use."""
    n = _num_threads
    return _openmp.max_threads() if n is None else n


@contextlib.contextmanager
def blas_single_threaded():
    """Limit BLAS to one thread while a kernel runs.

    Reference-counted so that concurrent calls from several Python threads
    restore the user's BLAS setting only when the last of them finishes.
    """
    global _controller, _limiter, _blas_users
    with _lock:
        if _blas_users == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _lock:
            _blas_users -= 1
            if _blas_users == 0:
                _limiter.restore_original_limits()
                _limiter = None
