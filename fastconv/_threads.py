"""Thread count for the kernels (OpenMP over images, channel blocks or tiles).

The kernels call no BLAS, so there is no second thread pool to keep in step.
The count itself lives in the compiled ``_openmp`` module, which exports it as
C symbols; a threadpoolctl controller registered here reads and sets it there,
so ``threadpoolctl.threadpool_limits(n)`` limits fastconv as it limits NumPy's
BLAS: for every thread of the process, until the ``with`` block ends.
"""
import numbers

from . import _openmp

__all__ = ["set_num_threads", "get_num_threads"]

# Most threads a call may ask OpenMP for: libgomp sets up a team on the
# calling thread's stack, which ~100,000 threads overflow (a crash), and
# each thread is an OS thread the process limits may refuse (an exit)
MAX_THREADS = 1024


def set_num_threads(n):
    """Set the number of threads fastconv's kernels use.

    The count applies to every thread of the process that calls fastconv,
    and replaces a limit set by ``threadpoolctl.threadpool_limits`` until that
    ``with`` block ends.

    Parameters
    ----------
    n : int in [1, 1024] or None
        Thread count; None restores the default (all cores, or
        ``OMP_NUM_THREADS`` when set).

    See Also
    --------
    get_num_threads

    Examples
    --------
    >>> import fastconv
    >>> fastconv.set_num_threads(1)
    >>> fastconv.get_num_threads()
    1
    >>> fastconv.set_num_threads(None)  # back to the default
    """
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(
                f"set_num_threads: n must be an int in [1, {MAX_THREADS}] or None, got {n!r}"
            )
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(
                f"set_num_threads: n must be an int in [1, {MAX_THREADS}] or None, got {n!r}"
            )
    _openmp.set_num_threads(0 if n is None else int(n))


def get_num_threads():
    """Return the number of threads fastconv's kernels use.

    Inside ``threadpoolctl.threadpool_limits(n)`` that is ``n``; otherwise the
    count given to :func:`set_num_threads`, or OpenMP's default
    (``omp_get_max_threads()``: all cores, or ``OMP_NUM_THREADS``). Calls too
    small to repay waking a thread team run on one thread whatever the count.

    Returns
    -------
    int

    Examples
    --------
    >>> import fastconv
    >>> fastconv.get_num_threads() >= 1
    True

    With threadpoolctl installed::

        with threadpoolctl.threadpool_limits(1):
            fastconv.get_num_threads()  # 1, in every thread, until the block ends
    """
    return min(_openmp.get_num_threads(), MAX_THREADS)


def _register_threadpoolctl():
    """Make fastconv's kernels one of the thread pools threadpoolctl controls.

    threadpoolctl finds the libraries a process has loaded by file name and
    checks for their symbols; fastconv's ``_openmp`` extension exports
    ``fastconv_get_num_threads`` / ``fastconv_set_thread_limit`` for it. The
    user API is "openmp" (the kernels' threads are OpenMP threads), so
    ``threadpool_limits(n)`` and ``threadpool_limits(n, user_api="openmp")``
    both apply; ``ThreadpoolController().select(internal_api="fastconv")``
    selects fastconv alone.
    Without threadpoolctl, or with one too old to accept third-party
    controllers (< 3.5), nothing is registered.
    """
    try:
        import threadpoolctl
    except ImportError:
        return
    register = getattr(threadpoolctl, "register", None)
    base = getattr(threadpoolctl, "LibController", None)
    if register is None or base is None:
        return
    if any(getattr(c, "internal_api", None) == "fastconv"
           for c in getattr(threadpoolctl, "_ALL_CONTROLLERS", ())):
        return  # already registered (fastconv imported twice)

    class FastconvController(base):
        user_api = "openmp"
        internal_api = "fastconv"
        filename_prefixes = ("_openmp.",)
        check_symbols = ("fastconv_get_num_threads", "fastconv_set_thread_limit")

        def get_num_threads(self):
            return self.dynlib.fastconv_get_num_threads()

        def set_num_threads(self, num_threads):
            self.dynlib.fastconv_set_thread_limit(int(num_threads))

        def get_version(self):
            from . import __version__
            return __version__

    register(FastconvController)


_register_threadpoolctl()
