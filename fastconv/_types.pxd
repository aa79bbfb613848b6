# Shared C-level types and small helpers for the kernels.

cdef extern from "_alloc.h" nogil:
    # 64-byte aligned buffers for whatever the kernels load whole vectors from
    void *fc_malloc64(size_t n)
    void fc_free64(void *p)


ctypedef fused floating:
    float
    double


cdef inline Py_ssize_t first_valid(Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    """Smallest q >= 0 with q * stride + offset >= 0."""
    if offset >= 0:
        return 0
    return (-offset + stride - 1) // stride


cdef inline Py_ssize_t end_valid(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t limit,
                                  Py_ssize_t n) noexcept nogil:
    """Smallest q (capped at n) with q * stride + offset >= limit."""
    cdef Py_ssize_t q
    if limit - offset <= 0:
        return 0
    q = (limit - offset + stride - 1) // stride
    return q if q < n else n
