"""Thread count for the kernels (OpenMP over images, channel blocks or tiles).

The kernels call no BLAS, so there is no second thread pool to keep in step.
"""
import numbers

from . import _openmp

_num_threads = None  # None: OpenMP's default, which honours OMP_NUM_THREADS
# Most threads a call may ask OpenMP for: libgomp sets up a team on the
# calling thread's stack, which ~100,000 threads overflow (a crash), and
# each thread is an OS thread the process limits may refuse (an exit)
MAX_THREADS = 1024


def set_num_threads(n):
    """Set the number of threads fastconv's kernels use.

    Parameters
    ----------
    n : int in [1, 1024] or None
        Thread count; None restores the default (all cores, or
        ``OMP_NUM_THREADS`` when set).
    """
    global _num_threads
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"set_num_threads: n must be an int >= 1 or None, got {n!r}")
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(
                f"set_num_threads: n must be an int in [1, {MAX_THREADS}] or None, got {n!r}"
            )
        n = int(n)
    _num_threads = n


def get_num_threads():
    """Return the number of threads fastconv's kernels use."""
    n = _num_threads
    return min(_openmp.max_threads(), MAX_THREADS) if n is None else n
