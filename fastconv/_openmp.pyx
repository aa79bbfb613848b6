"""What the OpenMP runtime offers, and the thread count the kernels use.

The count lives here, in C, so that threadpoolctl can read and change it
through this library's exported symbols (see ``fastconv._threads``) just as it
does for an OpenMP runtime or a BLAS. A serial build reports one thread.
"""
from cython.parallel cimport parallel

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FC_HAVE_OPENMP 1
    #else
    #define FC_HAVE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_num_threads(void) { return 1; }
    #endif

    #if defined(_WIN32)
    #define FC_EXPORT __declspec(dllexport)
    #elif defined(__GNUC__)
    #define FC_EXPORT __attribute__((visibility("default")))
    #else
    #define FC_EXPORT
    #endif

    /* set_num_threads(): 0 means OpenMP's default (omp_get_max_threads() of
       the calling thread, which honours OMP_NUM_THREADS). */
    static int fc_num_threads = 0;
    /* threadpoolctl's limit, 0 when none: it overrides fc_num_threads, for
       every calling thread, until set_num_threads() is called again. */
    static int fc_thread_limit = 0;
    /* OpenMP's default when the module was loaded. */
    static int fc_initial_default = 1;

    static int fc_unlimited(void) {
        return fc_num_threads > 0 ? fc_num_threads : omp_get_max_threads();
    }

    FC_EXPORT int fastconv_get_num_threads(void) {
        return fc_thread_limit > 0 ? fc_thread_limit : fc_unlimited();
    }

    /* threadpoolctl's setter. Entering threadpool_limits sets the limit;
       leaving it sets back the count it read on entry: when that is what
       fastconv would use without a limit, the limit is dropped, so the
       default goes on following OpenMP. (The process-wide default is
       compared, not the calling thread's, which threadpoolctl may be
       restoring at the same moment.) */
    FC_EXPORT void fastconv_set_thread_limit(int n) {
        int unlimited = fc_num_threads > 0 ? fc_num_threads : fc_initial_default;
        fc_thread_limit = (n < 1 || n == unlimited) ? 0 : n;
    }
    """
    int FC_HAVE_OPENMP
    int fc_num_threads
    int fc_thread_limit
    int fc_initial_default
    int omp_get_max_threads() nogil
    int omp_get_num_threads() nogil
    int fastconv_get_num_threads() nogil
    void fastconv_set_thread_limit(int n) nogil

have_openmp = bool(FC_HAVE_OPENMP)
fc_initial_default = omp_get_max_threads()


def max_threads():
    """OpenMP's default team size for the calling thread (honours OMP_NUM_THREADS)."""
    return omp_get_max_threads()


def get_num_threads():
    """The thread count the kernels use: threadpoolctl's limit if one is
    set, else set_num_threads()'s count, else OpenMP's default."""
    return fastconv_get_num_threads()


def set_num_threads(int n):
    """Set the count (0: OpenMP's default); drops any threadpoolctl limit."""
    global fc_num_threads, fc_thread_limit
    fc_num_threads = n if n > 0 else 0
    fc_thread_limit = 0


def set_thread_limit(int n):
    """What threadpoolctl does through the exported symbol (0: no limit)."""
    fastconv_set_thread_limit(n)


def thread_limit():
    """threadpoolctl's limit, 0 when none is set."""
    return fc_thread_limit


def team_size(int n_threads):
    """The size of the team a kernel gets when it opens its parallel region
    with ``num_threads=n_threads``, as every kernel does."""
    cdef int team[1]
    team[0] = 0
    with nogil, parallel(num_threads=n_threads):
        team[0] = omp_get_num_threads()  # every member writes the same value
    return team[0]
