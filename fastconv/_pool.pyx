# cython: language_level=3
"""Pooling kernels: max and average, regular and adaptive, forward and backward.

Each kernel walks the N*C planes (independent: no two threads ever write one
element) and, inside a plane, rows; whole-row work is done by the vectorised
primitives of ``_pool_simd.h`` (one variant per instruction set, the widest
the CPU has chosen at import; :func:`set_simd_variant` switches for tests).
Every element of input and output crosses memory once per call.

Forward, one output row at a time ("row oriented"): the window's input rows
are reduced column-wise into a row buffer (max, or sum), then each window's
taps are reduced along that buffer. The buffer holds the input row at offset
``pw`` with -inf (max) or 0 (average) around it, so the horizontal pass reads
``k`` taps at ``q * s + j * d`` with no bounds checks, whatever the padding,
dilation or ceil-mode overhang, and computes Q rounded up to 16 windows into
a scratch row (no scalar remainders), copied out. Max pooling with indices
folds every input row of a window, top to bottom, into the running (max,
argmax) of the output row: PyTorch's row-major scan, so ties and NaNs pick
the same element as it does.

Backward writes every input element once, from cache, instead of zero-filling
the whole array and coming back to it:
- average pooling gathers, for each input row, the output rows whose windows
  cover it (a vertical sum of gy / divisor), then spreads that row along the
  windows' columns; non-overlapping windows (k == s) and 3x3 stride 2 assign
  instead of accumulating;
- max pooling scatters gy through the stored indices, zeroing each input row
  just before the first window that reaches it ("frontier"), so the zeros and
  the sums meet in L1 (a plane of at most 16 KiB is zeroed whole). Indices
  outside their own window (legal when given by the caller) or out of range
  are detected and the call is redone plane by plane with a plain zero-fill +
  scatter that counts the bad ones.

Special cases (``set_fast_paths(False)`` turns them off for tests): 2x2
stride 2 windows inside the input read and write input rows in place (for max
backward only with AVX-512 and rows of 8+ windows, where it beats the
scatter); one window covering the plane is one vectorised sum or fill per
plane; adaptive windows that tile the input evenly become k == s windows.

Calls under GRAIN elements run on one thread. When N*C is small compared with
the thread count, planes are split into blocks of rows so every thread gets
work; results never depend on the split.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from fastconv._types cimport floating


cdef extern from "_pool_simd.h" nogil:
    ctypedef Py_ssize_t fp_index
    ctypedef const fp_index *tab "const fp_index *"   # window tables (adaptive), or NULL
    ctypedef struct fp_ops:  # one variant's row primitives; see _pool_simd.h for each
        const char *name
        void (*colmax_f32)(const float *, fp_index, fp_index, fp_index, float *) noexcept nogil
        void (*colmax_f64)(const double *, fp_index, fp_index, fp_index, double *) noexcept nogil
        void (*hmax_f32)(const float *, fp_index, fp_index, fp_index, fp_index, tab, tab,
                         float *) noexcept nogil
        void (*hmax_f64)(const double *, fp_index, fp_index, fp_index, fp_index, tab, tab,
                         double *) noexcept nogil
        void (*max2x2_f32)(const float *, const float *, fp_index, float *) noexcept nogil
        void (*max2x2_f64)(const double *, const double *, fp_index, double *) noexcept nogil
        void (*hargmax_f32)(const float *, int32_t, fp_index, fp_index, fp_index, fp_index,
                            tab, tab, float *, int32_t *) noexcept nogil
        void (*hargmax_f64)(const double *, int32_t, fp_index, fp_index, fp_index, fp_index,
                            tab, tab, double *, int32_t *) noexcept nogil
        void (*colsum_f32)(const float *, fp_index, fp_index, fp_index, float *) noexcept nogil
        void (*colsum_f64)(const double *, fp_index, fp_index, fp_index, double *) noexcept nogil
        void (*hsum_f32)(const float *, fp_index, fp_index, fp_index, tab, tab, float,
                         const float *, float *) noexcept nogil
        void (*hsum_f64)(const double *, fp_index, fp_index, fp_index, tab, tab, double,
                         const double *, double *) noexcept nogil
        void (*avg2x2_f32)(const float *, const float *, fp_index, float, float *) noexcept nogil
        void (*avg2x2_f64)(const double *, const double *, fp_index, double,
                           double *) noexcept nogil
        void (*vsum_div_f32)(const float *, fp_index, fp_index, const float *, const float *,
                             float *) noexcept nogil
        void (*vsum_div_f64)(const double *, fp_index, fp_index, const double *,
                             const double *, double *) noexcept nogil
        void (*hspread_f32)(const float *, fp_index, fp_index, fp_index, tab, tab,
                            float *) noexcept nogil
        void (*hspread_f64)(const double *, fp_index, fp_index, fp_index, tab, tab,
                            double *) noexcept nogil
        void (*hspread1_f32)(const float *, fp_index, fp_index, fp_index, fp_index,
                             float *) noexcept nogil
        void (*hspread1_f64)(const double *, fp_index, fp_index, fp_index, fp_index,
                             double *) noexcept nogil
        void (*fill_f32)(float *, fp_index, float) noexcept nogil
        void (*fill_f64)(double *, fp_index, double) noexcept nogil
        fp_index (*scatter_f32)(const float *, const int64_t *, fp_index, float *, fp_index,
                                fp_index, fp_index, fp_index) noexcept nogil
        fp_index (*scatter_f64)(const double *, const int64_t *, fp_index, double *, fp_index,
                                fp_index, fp_index, fp_index) noexcept nogil
        fp_index (*max2x2_back_f32)(const float *, const int64_t *, fp_index, fp_index,
                                    fp_index, fp_index, float *) noexcept nogil
        fp_index (*max2x2_back_f64)(const double *, const int64_t *, fp_index, fp_index,
                                    fp_index, fp_index, double *) noexcept nogil
        void (*avg2x2_back_f32)(const float *, fp_index, fp_index, fp_index, fp_index, float,
                                float *) noexcept nogil
        void (*avg2x2_back_f64)(const double *, fp_index, fp_index, fp_index, fp_index, double,
                                double *) noexcept nogil
        void (*gap_f32)(const float *, fp_index, fp_index, float, float *) noexcept nogil
        void (*gap_f64)(const double *, fp_index, fp_index, double, double *) noexcept nogil
        void (*gap_back_f32)(const float *, fp_index, fp_index, float, float *) noexcept nogil
        void (*gap_back_f64)(const double *, fp_index, fp_index, double, double *) noexcept nogil
        void (*widen)(const int32_t *, fp_index, int64_t, int64_t *) noexcept nogil

    const fp_ops *fp_cur
    enum: FP_N_VARIANTS
    Py_ssize_t fp_ahead
    Py_ssize_t fp_prefetch_max
    void fp_prefetch(const void *p, Py_ssize_t nbytes)
    void fp_prefetchw(void *p, Py_ssize_t nbytes)
    int fp_supported(int i)
    const char *fp_name(int i)
    int fp_use(int i)


# --------------------------------------------------------------------------
# the primitives, by dtype (one line each: the C side holds the loops)

cdef inline void colmax(const floating *x, Py_ssize_t step, Py_ssize_t nr, Py_ssize_t n,
                        floating *out) noexcept nogil:
    if floating is float:
        fp_cur.colmax_f32(x, step, nr, n, out)
    else:
        fp_cur.colmax_f64(x, step, nr, n, out)


cdef inline void hmax(const floating *b, Py_ssize_t Q, Py_ssize_t k, Py_ssize_t s, Py_ssize_t d,
                      const Py_ssize_t *cs, const Py_ssize_t *ce, floating *out) noexcept nogil:
    if floating is float:
        fp_cur.hmax_f32(b, Q, k, s, d, cs, ce, out)
    else:
        fp_cur.hmax_f64(b, Q, k, s, d, cs, ce, out)


cdef inline void max2x2(const floating *a, const floating *b, Py_ssize_t Q,
                        floating *out) noexcept nogil:
    if floating is float:
        fp_cur.max2x2_f32(a, b, Q, out)
    else:
        fp_cur.max2x2_f64(a, b, Q, out)


cdef inline void hargmax(const floating *b, int32_t base, Py_ssize_t Q, Py_ssize_t k,
                         Py_ssize_t s, Py_ssize_t d, const Py_ssize_t *cs, const Py_ssize_t *ce,
                         floating *m, int32_t *best) noexcept nogil:
    if floating is float:
        fp_cur.hargmax_f32(b, base, Q, k, s, d, cs, ce, m, best)
    else:
        fp_cur.hargmax_f64(b, base, Q, k, s, d, cs, ce, m, best)


cdef inline void colsum(const floating *x, Py_ssize_t step, Py_ssize_t nr, Py_ssize_t n,
                        floating *out) noexcept nogil:
    if floating is float:
        fp_cur.colsum_f32(x, step, nr, n, out)
    else:
        fp_cur.colsum_f64(x, step, nr, n, out)


cdef inline void hsum(const floating *b, Py_ssize_t Q, Py_ssize_t k, Py_ssize_t s,
                      const Py_ssize_t *cs, const Py_ssize_t *ce, floating rdiv,
                      const floating *cdiv, floating *out) noexcept nogil:
    if floating is float:
        fp_cur.hsum_f32(b, Q, k, s, cs, ce, rdiv, cdiv, out)
    else:
        fp_cur.hsum_f64(b, Q, k, s, cs, ce, rdiv, cdiv, out)


cdef inline void avg2x2(const floating *a, const floating *b, Py_ssize_t Q, floating div,
                        floating *out) noexcept nogil:
    if floating is float:
        fp_cur.avg2x2_f32(a, b, Q, div, out)
    else:
        fp_cur.avg2x2_f64(a, b, Q, div, out)


cdef inline void gap(const floating *x, Py_ssize_t n, Py_ssize_t hw, floating div,
                     floating *y) noexcept nogil:
    if floating is float:
        fp_cur.gap_f32(x, n, hw, div, y)
    else:
        fp_cur.gap_f64(x, n, hw, div, y)


cdef inline void gap_back(const floating *g, Py_ssize_t n, Py_ssize_t hw, floating div,
                          floating *gx) noexcept nogil:
    if floating is float:
        fp_cur.gap_back_f32(g, n, hw, div, gx)
    else:
        fp_cur.gap_back_f64(g, n, hw, div, gx)


cdef inline void avg2x2_back(const floating *g, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t Q,
                             Py_ssize_t W, floating div, floating *gx) noexcept nogil:
    if floating is float:
        fp_cur.avg2x2_back_f32(g, p0, p1, Q, W, div, gx)
    else:
        fp_cur.avg2x2_back_f64(g, p0, p1, Q, W, div, gx)


cdef inline Py_ssize_t max2x2_back(const floating *g, const int64_t *idx, Py_ssize_t p0,
                                   Py_ssize_t p1, Py_ssize_t Q, Py_ssize_t W,
                                   floating *gx) noexcept nogil:
    if floating is float:
        return fp_cur.max2x2_back_f32(g, idx, p0, p1, Q, W, gx)
    else:
        return fp_cur.max2x2_back_f64(g, idx, p0, p1, Q, W, gx)


cdef inline void vsum_div(const floating *g, Py_ssize_t Q, Py_ssize_t np_, const floating *rdiv,
                          const floating *cdiv, floating *t) noexcept nogil:
    if floating is float:
        fp_cur.vsum_div_f32(g, Q, np_, rdiv, cdiv, t)
    else:
        fp_cur.vsum_div_f64(g, Q, np_, rdiv, cdiv, t)


cdef inline void hspread(const floating *t, Py_ssize_t Q, Py_ssize_t k, Py_ssize_t s,
                         const Py_ssize_t *cs, const Py_ssize_t *ce, floating *b) noexcept nogil:
    if floating is float:
        fp_cur.hspread_f32(t, Q, k, s, cs, ce, b)
    else:
        fp_cur.hspread_f64(t, Q, k, s, cs, ce, b)


cdef inline void hspread1(const floating *t, Py_ssize_t Q, Py_ssize_t k, Py_ssize_t off,
                          Py_ssize_t W, floating *row) noexcept nogil:
    if floating is float:
        fp_cur.hspread1_f32(t, Q, k, off, W, row)
    else:
        fp_cur.hspread1_f64(t, Q, k, off, W, row)


cdef inline void fill(floating *out, Py_ssize_t n, floating v) noexcept nogil:
    if floating is float:
        fp_cur.fill_f32(out, n, v)
    else:
        fp_cur.fill_f64(out, n, v)


cdef inline Py_ssize_t scatter(const floating *g, const int64_t *idx, Py_ssize_t Q, floating *gx,
                               Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t blo,
                               Py_ssize_t bhi) noexcept nogil:
    if floating is float:
        return fp_cur.scatter_f32(g, idx, Q, gx, lo, hi, blo, bhi)
    else:
        return fp_cur.scatter_f64(g, idx, Q, gx, lo, hi, blo, bhi)


# --------------------------------------------------------------------------
# SIMD variant (chosen at import: the widest the CPU supports)

def simd_variants():
    """Names of the SIMD variants this CPU can run, widest first."""
    return [fp_name(i).decode() for i in range(FP_N_VARIANTS) if fp_supported(i)]


def simd_variant():
    """Name of the SIMD variant the pooling kernels use."""
    return fp_cur.name.decode()


def set_simd_variant(name):
    """Switch the pooling kernels to variant ``name`` (for tests and benchmarks)."""
    for i in range(FP_N_VARIANTS):
        if fp_name(i).decode() == name:
            if fp_use(i) == 0:
                return
            raise ValueError(f"set_simd_variant: name {name!r} is not supported by this CPU")
    raise ValueError(f"set_simd_variant: name must be one of {simd_variants()}, got {name!r}")


for _i in range(FP_N_VARIANTS):
    if fp_use(_i) == 0:
        break


# --------------------------------------------------------------------------
# geometry


cdef struct Windows:
    Py_ssize_t *start   # first input position of each window (clipped, on a dilation tap)
    Py_ssize_t *stop    # one past its last position (clipped)
    Py_ssize_t *count   # the window's length for the average's divisor
    Py_ssize_t *lo      # first input position the window spans (clipped; no tap adjustment)


cdef int windows_init(Windows *win, Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t k,
                      Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t dil, bint adaptive,
                      bint count_include_pad) noexcept nogil:
    """Fill the window table along one axis; return -1 when out of memory."""
    cdef Py_ssize_t o, a, b
    win.start = <Py_ssize_t *> malloc(4 * n_out * sizeof(Py_ssize_t))
    if win.start == NULL:
        return -1
    win.stop = win.start + n_out
    win.count = win.stop + n_out
    win.lo = win.count + n_out
    for o in range(n_out):
        if adaptive:
            # floor(o * n_in / n_out) to ceil((o + 1) * n_in / n_out)
            a = (o * n_in) // n_out
            b = ((o + 1) * n_in + n_out - 1) // n_out
            win.start[o] = a
            win.lo[o] = a
            win.stop[o] = b
            win.count[o] = b - a
            continue
        a = o * stride - pad
        b = a + (k - 1) * dil + 1
        if count_include_pad:
            # PyTorch counts padding but not the ceil-mode overhang past it
            win.count[o] = (b if b < n_in + pad else n_in + pad) - a
        win.lo[o] = a if a > 0 else 0
        if a < 0:
            a += ((-a + dil - 1) // dil) * dil  # first tap inside the input
        if b > n_in:
            b = n_in
        win.start[o] = a
        win.stop[o] = b
        if not count_include_pad:
            win.count[o] = (b - a + dil - 1) // dil
    return 0


cdef enum:
    # Below this many elements (input + output) a call runs on one thread:
    # waking a second one costs more than it saves (PyTorch's grain is 32768).
    GRAIN = 65536
    # Output rows are computed QALIGN outputs at a time (64 bytes of float32),
    # into a padded row, so the vector loops never end in a scalar remainder.
    QALIGN = 16


cdef bint fast_paths = True


def _set_prefetch(Py_ssize_t ahead, Py_ssize_t most):
    """Software-prefetch ``ahead`` bytes ahead of each row, at most ``most`` bytes of
    it (0: none); returns the previous pair. For tuning on a new machine."""
    global fp_prefetch_max, fp_ahead
    previous = (fp_ahead, fp_prefetch_max)
    fp_ahead = ahead
    fp_prefetch_max = most
    return previous


def set_fast_paths(bint enabled):
    """Turn the special cases (2x2 stride 2, global average, adaptive windows that tile
    the input evenly) off or on again, so tests can compare them with the general row
    kernels; returns the previous setting."""
    global fast_paths
    previous = fast_paths
    fast_paths = enabled
    return previous


cdef struct Plan:
    Py_ssize_t planes, H, W, P, Q
    Py_ssize_t kh, kw, sh, sw, ph, pw, dh, dw
    bint adaptive
    Py_ssize_t Qp       # Q rounded up to QALIGN: the width rows are computed at (not adaptive);
                        # row workspaces hold Qp + 1 (FP_K3S2 in _pool_simd.h)
    Py_ssize_t off      # where an input row starts in the row buffer (the left padding)
    Py_ssize_t nb       # row buffer length: every tap of Qp windows, padding included
    bint direct         # windows can read an input row in place (no padding, no overhang)
    bint fast2          # 2x2 windows, stride 2, all inside the input
    bint back2          # ... and max backward writes each input once (AVX-512, rows >= 8 windows)
    bint gap            # one window covering the whole plane
    int threads         # threads to use
    Py_ssize_t nblk     # blocks of rows per plane; tasks = planes * nblk
    Py_ssize_t rstep    # input rows per output row (the stride; adaptive: H // P, at least 1)
    Windows rows, cols
    const Py_ssize_t *cs    # column windows for the adaptive case (NULL: use kw, sw, dw)
    const Py_ssize_t *ce
    int32_t *code0      # forward with indices: each window's first column (+ off), -1 if none
    Py_ssize_t *first   # backward: for input row h, the first output row reaching it ...
    Py_ssize_t *last    # ... and one past the last


cdef void plan_free(Plan *pl) noexcept nogil:
    free(pl.rows.start)
    free(pl.cols.start)
    free(pl.first)
    free(pl.code0)
    pl.rows.start = pl.cols.start = pl.first = NULL
    pl.code0 = NULL


cdef int plan_init(Plan *pl, Py_ssize_t planes, Py_ssize_t H, Py_ssize_t W, Py_ssize_t P,
                   Py_ssize_t Q, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                   Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, bint adaptive,
                   bint count_include_pad, bint backward, int n_threads) noexcept nogil:
    """Window tables and path choice for one call; -1 when out of memory."""
    cdef Py_ssize_t h, p, q, span, rows, b
    if fast_paths and adaptive and H % P == 0 and W % Q == 0:
        # adaptive windows that tile the input evenly are ordinary k == s windows
        kh = sh = H // P
        kw = sw = W // Q
        ph = pw = 0
        dh = dw = 1
        adaptive = False
    pl.planes, pl.H, pl.W, pl.P, pl.Q = planes, H, W, P, Q
    pl.kh, pl.kw, pl.sh, pl.sw, pl.ph, pl.pw, pl.dh, pl.dw = kh, kw, sh, sw, ph, pw, dh, dw
    pl.adaptive = adaptive
    pl.rows.start = pl.cols.start = pl.first = NULL
    pl.code0 = NULL
    if (windows_init(&pl.rows, H, P, kh, sh, ph, dh, adaptive, count_include_pad)
            or windows_init(&pl.cols, W, Q, kw, sw, pw, dw, adaptive, count_include_pad)):
        plan_free(pl)
        return -1
    if adaptive:
        pl.Qp = Q
        pl.off, pl.nb = 0, W
        pl.cs, pl.ce = pl.cols.start, pl.cols.stop
        pl.direct = True
    else:
        pl.Qp = (Q + QALIGN - 1) // QALIGN * QALIGN
        span = (Q - 1) * sw + (kw - 1) * dw + 1
        pl.direct = pw == 0 and span <= W
        pl.off = pw
        # Qp windows and one more (FP_K3S2 in _pool_simd.h)
        pl.nb = pl.Qp * sw + (kw - 1) * dw + 1
        if pl.nb < pw + W:
            pl.nb = pw + W
        pl.cs = pl.ce = NULL
    pl.fast2 = (fast_paths and not adaptive and kh == 2 and kw == 2 and sh == 2 and sw == 2
                and ph == 0 and pw == 0 and dh == 1 and dw == 1 and 2 * P <= H and 2 * Q <= W)
    # below 8 windows a row, or at baseline SIMD, zeroing rows and scattering gy into
    # them measures as fast as writing each input once (the scatter is scalar anyway)
    pl.back2 = pl.fast2 and fp_cur.max2x2_back_f32 != NULL and Q >= 8
    pl.gap = (fast_paths and P == 1 and Q == 1 and pl.rows.start[0] == 0 and pl.rows.stop[0] == H
              and pl.cols.start[0] == 0 and pl.cols.stop[0] == W and dh == 1 and dw == 1)
    pl.threads = n_threads if planes * (H * W + P * Q) >= GRAIN else 1
    pl.rstep = sh if not adaptive else (H // P if H >= P else 1)
    # blocks of rows per plane so that every thread gets about 8 equal tasks
    rows = H if backward else P
    pl.nblk = 1
    if pl.threads > 1 and planes < 8 * pl.threads:
        b = (8 * pl.threads + planes - 1) // planes
        pl.nblk = b if b < rows else rows
    if not backward:
        pl.code0 = <int32_t *> malloc((pl.Qp + 1) * sizeof(int32_t))
        if pl.code0 == NULL:
            plan_free(pl)
            return -1
        for q in range(pl.Qp + 1):
            if q < Q and pl.cols.start[q] < pl.cols.stop[q]:
                pl.code0[q] = <int32_t> (pl.cols.start[q] + pl.off)
            else:
                pl.code0[q] = -1
    if backward:
        pl.first = <Py_ssize_t *> malloc(2 * H * sizeof(Py_ssize_t))
        if pl.first == NULL:
            plan_free(pl)
            return -1
        pl.last = pl.first + H
        # windows' spans [lo, stop) are non-decreasing in p on both ends
        p = 0
        for h in range(H):
            while p < P and pl.rows.stop[p] <= h:
                p += 1
            pl.first[h] = p
        p = 0
        for h in range(H):
            while p < P and pl.rows.lo[p] <= h:
                p += 1
            pl.last[h] = p
    return 0


def describe_plan(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t P,
                  Py_ssize_t Q, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, bint adaptive,
                  bint backward, int n_threads):
    """The path choices the kernels make for a call (for tests): a dict with ``fast2``,
    ``back2``, ``gap``, ``direct`` (bools), ``threads``, ``blocks`` (row blocks per plane)."""
    cdef Plan pl
    if plan_init(&pl, N * C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw, adaptive, True,
                 backward, n_threads):
        raise MemoryError("describe_plan: could not allocate the window tables")
    out = dict(fast2=bool(pl.fast2), back2=bool(pl.back2), gap=bool(pl.gap),
               direct=bool(pl.direct),
               threads=pl.threads, blocks=pl.nblk)
    plan_free(&pl)
    return out


cdef inline Py_ssize_t block_start(const Plan *pl, Py_ssize_t blk, Py_ssize_t n) noexcept nogil:
    """First of the n rows of a plane in block blk (blk == nblk: n)."""
    return blk * n // pl.nblk


cdef inline Py_ssize_t rows_ahead(Py_ssize_t row_bytes) noexcept nogil:
    """How many rows of row_bytes each make fp_ahead bytes (the prefetch distance)."""
    return fp_ahead // row_bytes + 1


cdef inline Py_ssize_t padded(Py_ssize_t n) noexcept nogil:
    """n rounded up to a multiple of 16 elements: whole 64-byte lines for 4- and
    8-byte elements, so per-thread slices of one workspace never share a line."""
    return (n + 15) // 16 * 16


cdef inline void *align64(void *raw) noexcept nogil:
    """The first 64-byte boundary in a block allocated 64 bytes too long."""
    return <void *> ((<size_t> raw + 63) & ~(<size_t> 63))


# --------------------------------------------------------------------------
# max pooling


cdef void max_rows(const Plan *pl, const floating *xp, floating *yp, Py_ssize_t p0,
                   Py_ssize_t p1, floating *buf, floating *tmp) noexcept nogil:
    """Output rows [p0, p1) of one plane, values only."""
    cdef Py_ssize_t W = pl.W, Q = pl.Q, dh = pl.dh, step = pl.rstep * pl.W
    cdef Py_ssize_t p, rs, re, ra = rows_ahead(step * sizeof(floating))
    cdef floating *yrow
    for p in range(p0, p1):
        rs = pl.rows.start[p]
        re = pl.rows.stop[p]
        yrow = yp + p * Q
        fp_prefetch(xp + (p + ra) * step, step * sizeof(floating))
        fp_prefetchw(yrow + ra * Q, Q * sizeof(floating))
        if pl.fast2:
            max2x2(xp + 2 * p * W, xp + (2 * p + 1) * W, Q, yrow)
        elif rs >= re:  # a dilated window that holds only padding
            fill(yrow, Q, <floating> -INFINITY)
        elif pl.adaptive:
            colmax(xp + rs * W, W, re - rs, W, buf)
            hmax(buf, Q, 1, 1, 1, pl.cs, pl.ce, yrow)
        else:
            colmax(xp + rs * W, dh * W, (re - rs + dh - 1) // dh, W, buf + pl.off)
            hmax(buf, pl.Qp, pl.kw, pl.sw, pl.dw, NULL, NULL, tmp)
            memcpy(yrow, tmp, Q * sizeof(floating))


cdef void argmax_rows(const Plan *pl, const floating *xp, floating *yp, int64_t *ip,
                      Py_ssize_t p0, Py_ssize_t p1, floating *buf, floating *tmp,
                      int32_t *code) noexcept nogil:
    """Output rows [p0, p1) of one plane, values and indices.

    The running (max, argmax) start at -inf and the window's first element, as
    in PyTorch, and take the window's rows top to bottom; positions are int32
    offsets from (row rs, column -off), widened at the end of the row.
    """
    cdef Py_ssize_t W = pl.W, Q = pl.Q, Qp = pl.Qp, off = pl.off, dh = pl.dh
    cdef Py_ssize_t step = pl.rstep * pl.W, ra = rows_ahead(step * sizeof(floating))
    cdef Py_ssize_t p, h, rs, re
    cdef const floating *row
    cdef floating *m
    for p in range(p0, p1):
        rs = pl.rows.start[p]
        re = pl.rows.stop[p]
        fp_prefetch(xp + (p + ra) * step, step * sizeof(floating))
        fp_prefetchw(yp + (p + ra) * Q, Q * sizeof(floating))
        fp_prefetchw(ip + (p + ra) * Q, Q * sizeof(int64_t))
        if pl.adaptive:
            m = yp + p * Q
            fill(m, Q, <floating> -INFINITY)
        else:
            m = tmp
            fill(m, Qp + 1, <floating> -INFINITY)
        if rs < re:
            memcpy(code, pl.code0, (Qp + 1) * sizeof(int32_t))
        else:
            memset(code, 0xFF, (Qp + 1) * sizeof(int32_t))  # all -1: no row in the window
        h = rs
        while h < re:
            if pl.adaptive:
                hargmax(xp + h * W, <int32_t> ((h - rs) * W), Q, 1, 1, 1, pl.cs, pl.ce, m, code)
            else:
                # a copy in the padded buffer: Qp windows read there without bounds checks
                memcpy(buf + off, xp + h * W, W * sizeof(floating))
                hargmax(buf, <int32_t> ((h - rs) * W), Qp, pl.kw, pl.sw, pl.dw, NULL, NULL, m,
                        code)
            h = h + dh
        if not pl.adaptive:
            memcpy(yp + p * Q, tmp, Q * sizeof(floating))
        fp_cur.widen(code, Q, rs * W - off, ip + p * Q)


def max_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                     int64_t[:, :, :, ::1] indices,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                     bint adaptive, int n_threads):
    """y = window maxima; ``indices`` (may be None) gets each argmax as h * W + w.

    As in PyTorch, a NaN wins over any number (a later NaN over an earlier
    one) and among equal maxima the first in row-major order wins. A window
    holding only padding (possible with dilation) gives -inf and index -1,
    where PyTorch gives an index outside the plane. Returns 0, -1 when out of
    memory, -2 when a window spans 2**31 or more buffer positions (indices).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = y.shape[2], Q = y.shape[3], HW = H * W, PQ = P * Q
    cdef Py_ssize_t task, plane, p0, p1, p, span = 0, stride
    cdef bint keep = indices is not None
    cdef Plan pl
    cdef void *raw
    cdef char *ws
    cdef floating *buf
    cdef floating *tmp
    cdef int32_t *code
    cdef int64_t *I = NULL
    cdef const floating *X
    cdef floating *Y
    if N * C == 0:
        return 0
    if plan_init(&pl, N * C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw, adaptive, False,
                 False, n_threads):
        return -1
    if keep:
        for p in range(P):
            if pl.rows.stop[p] - pl.rows.start[p] > span:
                span = pl.rows.stop[p] - pl.rows.start[p]
        if span * W + pl.nb >= 2 ** 31:
            plan_free(&pl)
            return -2
    # per thread: the row buffer, an output row, its argmax codes
    stride = ((padded(pl.nb) + padded(pl.Qp + 1)) * sizeof(floating)
              + padded(pl.Qp + 1) * sizeof(int32_t))
    raw = malloc(pl.threads * stride + 64)
    if raw == NULL:
        plan_free(&pl)
        return -1
    ws = <char *> align64(raw)
    X = &x[0, 0, 0, 0]
    Y = &y[0, 0, 0, 0]
    if keep:
        I = &indices[0, 0, 0, 0]
    with nogil, parallel(num_threads=pl.threads):
        buf = <floating *> (ws + threadid() * stride)
        tmp = buf + padded(pl.nb)
        code = <int32_t *> (tmp + padded(pl.Qp + 1))
        fill(buf, pl.nb, <floating> -INFINITY)  # the padding stays -inf
        for task in prange(pl.planes * pl.nblk, schedule="static"):
            plane = task // pl.nblk
            p0 = block_start(&pl, task % pl.nblk, P)
            p1 = block_start(&pl, task % pl.nblk + 1, P)
            if keep:
                argmax_rows(&pl, X + plane * HW, Y + plane * PQ, I + plane * PQ, p0, p1, buf,
                            tmp, code)
            else:
                max_rows(&pl, X + plane * HW, Y + plane * PQ, p0, p1, buf, tmp)
    free(raw)
    plan_free(&pl)
    return 0


cdef Py_ssize_t max_back_rows(const Plan *pl, const floating *gyp, const int64_t *ip,
                              floating *gxp, Py_ssize_t h0, Py_ssize_t h1) noexcept nogil:
    """Input rows [h0, h1) of one plane; returns the count of indices it cannot place."""
    cdef Py_ssize_t W = pl.W, Q = pl.Q, HW = pl.H * pl.W, PQ = pl.P * pl.Q
    cdef Py_ssize_t step = pl.rstep * W, ra = rows_ahead(step * sizeof(floating))
    cdef Py_ssize_t p, e, f = h0, odd = 0
    if h0 >= h1:
        return 0
    if h0 == 0 and h1 == pl.H and HW * sizeof(floating) <= 16384:
        # a small plane, zeroed while it sits in L1: one scatter for all its windows
        # (contiguous enough for the hardware prefetchers: prefetching the next
        # plane in one burst here stalled on the line fill buffers)
        memset(gxp, 0, HW * sizeof(floating))
        return scatter(gyp, ip, PQ, gxp, 0, HW, 0, 0)
    for p in range(pl.first[h0], pl.last[h1 - 1]):
        fp_prefetch(gyp + (p + ra) * Q, Q * sizeof(floating))
        fp_prefetch(ip + (p + ra) * Q, Q * sizeof(int64_t))
        fp_prefetchw(gxp + (p + ra) * step, step * sizeof(floating))
        e = pl.rows.stop[p]
        if e > h1:
            e = h1
        if e > f:  # zero the rows this window is first to reach
            memset(gxp + f * W, 0, (e - f) * W * sizeof(floating))
            f = e
        odd += scatter(gyp + p * Q, ip + p * Q, Q, gxp, h0 * W, f * W,
                       pl.rows.lo[p] * W, pl.rows.stop[p] * W)
    if f < h1:  # rows no window reaches
        memset(gxp + f * W, 0, (h1 - f) * W * sizeof(floating))
    return odd


cdef Py_ssize_t max2x2_back_rows(const Plan *pl, const floating *gyp, const int64_t *ip,
                                 floating *gxp, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    """Output rows [p0, p1) of one plane, non-overlapping 2x2 windows: input rows
    2 p0 to 2 p1 written once (and the rows below the last window, with the last block)."""
    cdef Py_ssize_t odd = max2x2_back(gyp, ip, p0, p1, pl.Q, pl.W, gxp)
    if p0 < p1 == pl.P and 2 * pl.P < pl.H:  # the block with the last window
        memset(gxp + 2 * pl.P * pl.W, 0, (pl.H - 2 * pl.P) * pl.W * sizeof(floating))
    return odd


def max_pool_backward(const floating[:, :, :, ::1] gy, const int64_t[:, :, :, ::1] indices,
                      floating[:, :, :, ::1] gx,
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                      bint adaptive, int n_threads):
    """gx[plane][indices[plane, p, q]] += gy[plane, p, q].

    Index -1 (a window with no input element) receives no gradient. Returns
    the number of other out-of-range indices (they are skipped): the caller
    raises, so user-supplied indices can never write out of bounds. -1 when
    out of memory.
    """
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3], HW = H * W, PQ = P * Q
    cdef Py_ssize_t task, plane, r0, r1, i, j
    cdef Py_ssize_t odd = 0, bad = 0
    cdef Plan pl
    cdef const floating *GY
    cdef const int64_t *I
    cdef floating *GX
    cdef floating *gxp
    if N * C == 0:
        return 0
    if plan_init(&pl, N * C, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw, adaptive, False,
                 True, n_threads):
        return -1
    GY = &gy[0, 0, 0, 0]
    I = &indices[0, 0, 0, 0]
    GX = &gx[0, 0, 0, 0]
    with nogil:
        for task in prange(pl.planes * pl.nblk, schedule="static", num_threads=pl.threads):
            plane = task // pl.nblk
            if pl.back2:  # blocks of output rows
                r0 = block_start(&pl, task % pl.nblk, P)
                r1 = block_start(&pl, task % pl.nblk + 1, P)
                odd += max2x2_back_rows(&pl, GY + plane * PQ, I + plane * PQ, GX + plane * HW,
                                        r0, r1)
            else:  # blocks of input rows
                r0 = block_start(&pl, task % pl.nblk, H)
                r1 = block_start(&pl, task % pl.nblk + 1, H)
                odd += max_back_rows(&pl, GY + plane * PQ, I + plane * PQ, GX + plane * HW,
                                     r0, r1)
        if odd:
            # some index lies outside its own window: place every one plainly
            for plane in prange(N * C, schedule="static", num_threads=pl.threads):
                gxp = GX + plane * HW
                memset(gxp, 0, HW * sizeof(floating))
                for i in range(PQ):
                    j = I[plane * PQ + i]
                    if j >= 0 and j < HW:
                        gxp[j] += GY[plane * PQ + i]
                    elif j != -1:
                        bad += 1
    plan_free(&pl)
    return bad


# --------------------------------------------------------------------------
# average pooling


cdef int divisors(const Plan *pl, Py_ssize_t divisor_override, floating **rdiv,
                  floating **cdiv) noexcept nogil:
    """Per output row and column factors of each window's divisor (their product);
    the column factors run on to Qp + 1 (with 1s) for the padded rows."""
    cdef Py_ssize_t i
    rdiv[0] = <floating *> malloc((pl.P + pl.Qp + 1) * sizeof(floating))
    if rdiv[0] == NULL:
        return -1
    cdiv[0] = rdiv[0] + pl.P
    for i in range(pl.P):
        rdiv[0][i] = 1 if divisor_override > 0 else <floating> pl.rows.count[i]
    for i in range(pl.Qp + 1):
        if i >= pl.Q:
            cdiv[0][i] = 1
        elif divisor_override > 0:
            cdiv[0][i] = <floating> divisor_override
        else:
            cdiv[0][i] = <floating> pl.cols.count[i]
    return 0


cdef void avg_rows(const Plan *pl, const floating *xp, floating *yp, Py_ssize_t p0, Py_ssize_t p1,
                   const floating *rdiv, const floating *cdiv, floating *buf,
                   floating *tmp) noexcept nogil:
    cdef Py_ssize_t W = pl.W, Q = pl.Q, step = pl.rstep * pl.W
    cdef Py_ssize_t p, rs, re, ra = rows_ahead(step * sizeof(floating))
    cdef floating *yrow
    for p in range(p0, p1):
        rs = pl.rows.start[p]
        re = pl.rows.stop[p]
        yrow = yp + p * Q
        fp_prefetch(xp + (p + ra) * step, step * sizeof(floating))
        fp_prefetchw(yrow + ra * Q, Q * sizeof(floating))
        if pl.fast2:  # every window has 4 taps, one divisor
            avg2x2(xp + 2 * p * W, xp + (2 * p + 1) * W, Q, rdiv[p] * cdiv[0], yrow)
        elif rs >= re:
            fill(yrow, Q, <floating> 0)
        elif pl.adaptive:
            colsum(xp + rs * W, W, re - rs, W, buf)
            hsum(buf, Q, 1, 1, pl.cs, pl.ce, rdiv[p], cdiv, yrow)
        elif pl.sw == 1:  # hsum writes exactly Q outputs: straight into the row
            colsum(xp + rs * W, W, re - rs, W, buf + pl.off)
            hsum(buf, Q, pl.kw, 1, NULL, NULL, rdiv[p], cdiv, yrow)
        else:
            colsum(xp + rs * W, W, re - rs, W, buf + pl.off)
            hsum(buf, pl.Qp, pl.kw, pl.sw, NULL, NULL, rdiv[p], cdiv, tmp)
            memcpy(yrow, tmp, Q * sizeof(floating))


def avg_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, bint adaptive, bint count_include_pad,
                     Py_ssize_t divisor_override, int n_threads):
    """y = window sums / divisor (divisor_override when > 0, else the window's count)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = y.shape[2], Q = y.shape[3], HW = H * W, PQ = P * Q
    cdef Py_ssize_t task, plane, p0, p1, stride, chunk, ntask
    cdef Plan pl
    cdef floating *rdiv
    cdef floating *cdiv
    cdef void *raw
    cdef char *ws
    cdef floating *buf
    cdef const floating *X
    cdef floating *Y
    if N * C == 0:
        return 0
    if plan_init(&pl, N * C, H, W, P, Q, kh, kw, sh, sw, ph, pw, 1, 1, adaptive,
                 count_include_pad, False, n_threads):
        return -1
    if divisors(&pl, divisor_override, &rdiv, &cdiv):
        plan_free(&pl)
        return -1
    X = &x[0, 0, 0, 0]
    Y = &y[0, 0, 0, 0]
    if pl.gap:  # global average: one vectorised sum per plane, planes in chunks
        chunk = 64
        ntask = (pl.planes + chunk - 1) // chunk
        with nogil:
            for task in prange(ntask, schedule="static", num_threads=pl.threads):
                p0 = task * chunk
                p1 = p0 + chunk if p0 + chunk < pl.planes else pl.planes
                gap(X + p0 * HW, p1 - p0, HW, rdiv[0] * cdiv[0], Y + p0)
        free(rdiv)
        plan_free(&pl)
        return 0
    stride = (padded(pl.nb) + padded(pl.Qp + 1)) * sizeof(floating)
    raw = malloc(pl.threads * stride + 64)
    if raw == NULL:
        free(rdiv)
        plan_free(&pl)
        return -1
    ws = <char *> align64(raw)
    with nogil, parallel(num_threads=pl.threads):
        buf = <floating *> (ws + threadid() * stride)
        fill(buf, pl.nb, <floating> 0)  # the padding stays 0
        for task in prange(pl.planes * pl.nblk, schedule="static"):
            plane = task // pl.nblk
            p0 = block_start(&pl, task % pl.nblk, P)
            p1 = block_start(&pl, task % pl.nblk + 1, P)
            avg_rows(&pl, X + plane * HW, Y + plane * PQ, p0, p1, rdiv, cdiv, buf,
                     buf + padded(pl.nb))
    free(raw)
    free(rdiv)
    plan_free(&pl)
    return 0


cdef inline Py_ssize_t divided_rows(const Plan *pl) noexcept nogil:
    """Output rows of gy / divisor that avg_back_rows keeps (0: it divides in place).

    Where windows overlap down the plane (kh > sh), kh / sh input rows read each
    output row: dividing it once, into a buffer of at least kh rows and about
    16 KiB, saves that many divisions (they cost more than the adds)."""
    if pl.adaptive or pl.kh <= pl.sh:
        return 0
    return max(pl.kh, 4096 // max(1, pl.Q))


cdef void avg_back_rows(const Plan *pl, const floating *gyp, floating *gxp, Py_ssize_t h0,
                        Py_ssize_t h1, const floating *rdiv, const floating *cdiv, floating *buf,
                        floating *t, floating *gd) noexcept nogil:
    """Input rows [h0, h1) of one plane: each written once. gd: divided_rows(pl)
    rows of Q (when that is not 0)."""
    cdef Py_ssize_t W = pl.W, Q = pl.Q, kw = pl.kw, sw = pl.sw, keep = divided_rows(pl)
    cdef Py_ssize_t h, a, b, n, done, c0, c1, ca, r, ra = rows_ahead(W * sizeof(floating))
    cdef bint direct = pl.direct
    cdef floating *row
    cdef floating *dst
    # leading positions hspread assigns outright (the rest must be zero first)
    if pl.adaptive:
        done = 0
    elif kw == sw:
        done = Q * sw
    elif kw == 3 and sw == 2:
        done = 2 * Q + 1
    else:
        done = 0
    c0 = h0
    while c0 < h1:
        # a chunk of input rows [c0, c1) whose output rows [ca, last[c1 - 1]) fit gd
        ca = pl.first[c0]
        c1 = c0 + 1
        if keep:
            while c1 < h1 and pl.last[c1] - ca <= keep:
                c1 += 1
            for r in range(ca, pl.last[c1 - 1]):
                vsum_div(gyp + r * Q, Q, 1, rdiv + r, cdiv, gd + (r - ca) * Q)
        for h in range(c0, c1):
            row = gxp + h * W
            a = pl.first[h]
            b = pl.last[h]
            fp_prefetchw(row + ra * W, W * sizeof(floating))
            fp_prefetch(gyp + (a + ra // pl.rstep) * Q, Q * sizeof(floating))
            if a >= b:
                memset(row, 0, W * sizeof(floating))
                continue
            if keep:  # the same divisions, the same order of adds
                colsum(gd + (a - ca) * Q, Q, b - a, Q, t)
            else:
                vsum_div(gyp + a * Q, Q, b - a, rdiv + a, cdiv, t)
            if sw == 1 and not pl.adaptive:  # every position of the row assigned
                hspread1(t, Q, kw, pl.off, W, row)
                continue
            dst = row if direct else buf
            n = W if direct else pl.nb
            if done == 0:
                memset(dst, 0, n * sizeof(floating))
            hspread(t, Q, kw, sw, pl.cs, pl.ce, dst)
            if done > 0 and done < n:
                memset(dst + done, 0, (n - done) * sizeof(floating))
            if not direct:
                memcpy(row, buf + pl.off, W * sizeof(floating))
        c0 = c1


def avg_pool_backward(const floating[:, :, :, ::1] gy, floating[:, :, :, ::1] gx,
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t ph, Py_ssize_t pw, bint adaptive, bint count_include_pad,
                      Py_ssize_t divisor_override, int n_threads):
    """The adjoint of avg_pool_forward: each gy / divisor spread over its window."""
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3], HW = H * W, PQ = P * Q
    cdef Py_ssize_t task, plane, h0, h1, stride, chunk, ntask
    cdef Plan pl
    cdef floating *rdiv
    cdef floating *cdiv
    cdef void *raw
    cdef char *ws
    cdef floating *buf
    cdef const floating *GY
    cdef floating *GX
    if N * C == 0:
        return 0
    if plan_init(&pl, N * C, H, W, P, Q, kh, kw, sh, sw, ph, pw, 1, 1, adaptive,
                 count_include_pad, True, n_threads):
        return -1
    if divisors(&pl, divisor_override, &rdiv, &cdiv):
        plan_free(&pl)
        return -1
    GY = &gy[0, 0, 0, 0]
    GX = &gx[0, 0, 0, 0]
    if pl.gap:
        chunk = 64
        ntask = (pl.planes + chunk - 1) // chunk
        with nogil:
            for task in prange(ntask, schedule="static", num_threads=pl.threads):
                h0 = task * chunk
                h1 = h0 + chunk if h0 + chunk < pl.planes else pl.planes
                gap_back(GY + h0, h1 - h0, HW, rdiv[0] * cdiv[0], GX + h0 * HW)
        free(rdiv)
        plan_free(&pl)
        return 0
    # per thread: a padded input row, a row of window sums, divided output rows
    stride = (padded(pl.nb) + padded(Q) + padded(divided_rows(&pl) * Q)) * sizeof(floating)
    raw = malloc(pl.threads * stride + 64)
    if raw == NULL:
        free(rdiv)
        plan_free(&pl)
        return -1
    ws = <char *> align64(raw)
    with nogil, parallel(num_threads=pl.threads):
        buf = <floating *> (ws + threadid() * stride)
        for task in prange(pl.planes * pl.nblk, schedule="static"):
            plane = task // pl.nblk
            if pl.fast2:  # blocks of output rows, each writing its two input rows
                h0 = block_start(&pl, task % pl.nblk, P)
                h1 = block_start(&pl, task % pl.nblk + 1, P)
                avg2x2_back(GY + plane * PQ, h0, h1, Q, W, rdiv[0] * cdiv[0], GX + plane * HW)
                if h0 < h1 == P and 2 * P < H:  # the block with the last window
                    memset(GX + plane * HW + 2 * P * W, 0, (H - 2 * P) * W * sizeof(floating))
            else:  # blocks of input rows
                h0 = block_start(&pl, task % pl.nblk, H)
                h1 = block_start(&pl, task % pl.nblk + 1, H)
                avg_back_rows(&pl, GY + plane * PQ, GX + plane * HW, h0, h1, rdiv, cdiv, buf,
                              buf + padded(pl.nb), buf + padded(pl.nb) + padded(Q))
    free(raw)
    free(rdiv)
    plan_free(&pl)
    return 0
