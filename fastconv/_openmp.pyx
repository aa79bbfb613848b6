"""What the OpenMP runtime offers (a serial build reports one thread)."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FC_HAVE_OPENMP 1
    #else
    #define FC_HAVE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    int FC_HAVE_OPENMP
    int omp_get_max_threads() nogil

have_openmp = bool(FC_HAVE_OPENMP)


def max_threads():
    """OpenMP's default team size (honours OMP_NUM_THREADS)."""
    return omp_get_max_threads()
