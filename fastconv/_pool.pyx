# cython: language_level=3
"""Pooling kernels: max and average, regular and adaptive, forward and backward.

Every kernel first tabulates, for each output row and each output column, the
window's first and one-past-last input position (clipped to the input) and the
count that feeds the average's divisor. Regular and adaptive pooling differ
only in those tables, so one kernel serves both. Work is split over the
N*C planes, which are independent: no two threads ever write one element.
"""
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from fastconv._types cimport floating


cdef struct Windows:
    Py_ssize_t *start   # first input position of each window (clipped)
    Py_ssize_t *stop    # one past its last position (clipped)
    Py_ssize_t *count   # the window's length for the average's divisor


cdef int windows_init(Windows *win, Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t k,
                      Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t dil, bint adaptive,
                      bint count_include_pad) noexcept nogil:
    """Fill the window table along one axis; return -1 when out of memory."""
    cdef Py_ssize_t o, a, b
    win.start = <Py_ssize_t *> malloc(3 * n_out * sizeof(Py_ssize_t))
    if win.start == NULL:
        return -1
    win.stop = win.start + n_out
    win.count = win.stop + n_out
    for o in range(n_out):
        if adaptive:
            # floor(o * n_in / n_out) to ceil((o + 1) * n_in / n_out)
            a = (o * n_in) // n_out
            b = ((o + 1) * n_in + n_out - 1) // n_out
            win.start[o] = a
            win.stop[o] = b
            win.count[o] = b - a
            continue
        a = o * stride - pad
        b = a + (k - 1) * dil + 1
        if count_include_pad:
            # PyTorch counts padding but not the ceil-mode overhang past it
            win.count[o] = (b if b < n_in + pad else n_in + pad) - a
        if a < 0:
            a += ((-a + dil - 1) // dil) * dil  # first tap inside the input
        if b > n_in:
            b = n_in
        win.start[o] = a
        win.stop[o] = b
        if not count_include_pad:
            win.count[o] = (b - a + dil - 1) // dil
    return 0


cdef inline void windows_free(Windows *win) noexcept nogil:
    free(win.start)
    win.start = NULL


def max_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                     int64_t[:, :, :, ::1] indices,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                     bint adaptive, int n_threads):
    """y = window maxima; ``indices`` (may be None) gets each argmax as h * W + w.

    As in PyTorch, a NaN wins over any number (a later NaN over an earlier
    one) and among equal maxima the first in row-major order wins. A window
    holding only padding (possible with dilation) gives -inf and index -1,
    where PyTorch gives an index outside the plane.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = y.shape[2], Q = y.shape[3]
    cdef Py_ssize_t plane, p, q, h, w_, best
    cdef floating v, m
    cdef const floating *xp
    cdef bint keep = indices is not None
    cdef Windows rows, cols
    if N * C == 0:
        return 0
    if windows_init(&rows, H, P, kh, sh, ph, dh, adaptive, False):
        return -1
    if windows_init(&cols, W, Q, kw, sw, pw, dw, adaptive, False):
        windows_free(&rows)
        return -1
    with nogil:
        for plane in prange(N * C, schedule="static", num_threads=n_threads):
            xp = &x[0, 0, 0, 0] + plane * H * W
            for p in range(P):
                for q in range(Q):
                    m = -INFINITY
                    best = rows.start[p] * W + cols.start[q]
                    if rows.start[p] >= rows.stop[p] or cols.start[q] >= cols.stop[q]:
                        best = -1  # a dilated window that holds only padding
                    # runtime-step ranges need the GIL in Cython: step by hand
                    h = rows.start[p]
                    while h < rows.stop[p]:
                        w_ = cols.start[q]
                        while w_ < cols.stop[q]:
                            v = xp[h * W + w_]
                            if v > m or v != v:
                                m = v
                                best = h * W + w_
                            w_ = w_ + dw
                        h = h + dh
                    (&y[0, 0, 0, 0])[plane * P * Q + p * Q + q] = m
                    if keep:
                        (&indices[0, 0, 0, 0])[plane * P * Q + p * Q + q] = best
    windows_free(&rows)
    windows_free(&cols)
    return 0


def max_pool_backward(const floating[:, :, :, ::1] gy, const int64_t[:, :, :, ::1] indices,
                      floating[:, :, :, ::1] gx, int n_threads):
    """gx[plane][indices[plane, p, q]] += gy[plane, p, q].

    Index -1 (a window with no input element) receives no gradient. Returns
    the number of other out-of-range indices (they are skipped): the caller
    raises, so user-supplied indices can never write out of bounds.
    """
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], HW = gx.shape[2] * gx.shape[3]
    cdef Py_ssize_t PQ = gy.shape[2] * gy.shape[3]
    cdef Py_ssize_t plane, i, j
    cdef Py_ssize_t bad = 0
    cdef floating *gxp
    cdef const floating *gyp
    cdef const int64_t *ip
    if N * C == 0:
        return 0
    with nogil:
        for plane in prange(N * C, schedule="static", num_threads=n_threads):
            gxp = &gx[0, 0, 0, 0] + plane * HW
            gyp = &gy[0, 0, 0, 0] + plane * PQ
            ip = &indices[0, 0, 0, 0] + plane * PQ
            for i in range(HW):
                gxp[i] = 0
            for i in range(PQ):
                j = ip[i]
                if j >= 0 and j < HW:
                    gxp[j] += gyp[i]
                elif j != -1:  # -1 marks a window with no input element
                    bad += 1
    return bad


def avg_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, bint adaptive, bint count_include_pad,
                     Py_ssize_t divisor_override, int n_threads):
    """y = window sums / divisor (divisor_override when > 0, else the window's count)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = y.shape[2], Q = y.shape[3]
    cdef Py_ssize_t plane, p, q, h, w_
    cdef floating acc, div
    cdef const floating *xp
    cdef floating *yp
    cdef Windows rows, cols
    if N * C == 0:
        return 0
    if windows_init(&rows, H, P, kh, sh, ph, 1, adaptive, count_include_pad):
        return -1
    if windows_init(&cols, W, Q, kw, sw, pw, 1, adaptive, count_include_pad):
        windows_free(&rows)
        return -1
    with nogil:
        for plane in prange(N * C, schedule="static", num_threads=n_threads):
            xp = &x[0, 0, 0, 0] + plane * H * W
            yp = &y[0, 0, 0, 0] + plane * P * Q
            for p in range(P):
                for q in range(Q):
                    acc = 0
                    for h in range(rows.start[p], rows.stop[p]):
                        for w_ in range(cols.start[q], cols.stop[q]):
                            acc = acc + xp[h * W + w_]
                    if divisor_override > 0:
                        div = <floating> divisor_override
                    else:
                        div = <floating> (rows.count[p] * cols.count[q])
                    yp[p * Q + q] = acc / div
    windows_free(&rows)
    windows_free(&cols)
    return 0


def avg_pool_backward(const floating[:, :, :, ::1] gy, floating[:, :, :, ::1] gx,
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t ph, Py_ssize_t pw, bint adaptive, bint count_include_pad,
                      Py_ssize_t divisor_override, int n_threads):
    """The adjoint of avg_pool_forward: each gy / divisor spread over its window."""
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t plane, p, q, h, w_, i
    cdef floating g, div
    cdef floating *gxp
    cdef const floating *gyp
    cdef Windows rows, cols
    if N * C == 0:
        return 0
    if windows_init(&rows, H, P, kh, sh, ph, 1, adaptive, count_include_pad):
        return -1
    if windows_init(&cols, W, Q, kw, sw, pw, 1, adaptive, count_include_pad):
        windows_free(&rows)
        return -1
    with nogil:
        for plane in prange(N * C, schedule="static", num_threads=n_threads):
            gxp = &gx[0, 0, 0, 0] + plane * H * W
            gyp = &gy[0, 0, 0, 0] + plane * P * Q
            for i in range(H * W):
                gxp[i] = 0
            for p in range(P):
                for q in range(Q):
                    if divisor_override > 0:
                        div = <floating> divisor_override
                    else:
                        div = <floating> (rows.count[p] * cols.count[q])
                    g = gyp[p * Q + q] / div
                    for h in range(rows.start[p], rows.stop[p]):
                        for w_ in range(cols.start[q], cols.stop[q]):
                            gxp[h * W + w_] += g
    windows_free(&rows)
    windows_free(&cols)
    return 0
