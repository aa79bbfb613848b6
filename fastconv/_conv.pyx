# cython: language_level=3
"""Convolution kernels: im2col + GEMM and 1x1 GEMM, forward and backward, and the
Winograd F(2x2, 3x3) forward, on fastconv's own micro-kernels (the direct
strategy lives in _direct.pyx).

Conventions shared by every kernel:
- arrays are C-contiguous NCHW; weight is (K, C/groups, R, S);
- ``pt``/``pl`` are the top/left padding (bottom/right padding only shows in
  the output size P, Q, which the caller has already computed);
- the caller validated every argument and allocated the outputs;
- work is split with OpenMP over independent items (images x channels, or
  images x groups x pixel tiles); each thread allocates its own workspace once
  per call, sized by the caller's blocking (fastconv/_choose.py) to stay in cache;
- a kernel returns 0, or -1 when a workspace allocation failed (the Winograd
  forward also 1: see there).
"""
from math import gcd

from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from fastconv._types cimport end_valid, fc_free64, fc_malloc64, first_valid, floating

cdef extern from "_fpmode.h" nogil:
    # flush-to-zero in each kernel thread, restored when it leaves (see the header)
    unsigned int fc_ftz_on()
    void fc_ftz_restore(unsigned int mode)


# --------------------------------------------------------------------------
# im2col + GEMM, tiled over output pixels


#: im2col_rows asks for the input rows of the channel this many ahead while it
#: copies one (stride-2 1x1 layers, whose copy is a gather from memory: 10%
#: faster on AVX2, 6% on AVX-512; one channel ahead measured best of 1, 2, 4),
#: each row once for all its taps s (asked for by every tap, the prefetches
#: were a quarter of the copy's time on 3x3 layers, Ice Lake)
cdef enum:
    PREFETCH_CHANNELS = 1


cdef void im2col_rows(const floating *x, Py_ssize_t H, Py_ssize_t W,
                      Py_ssize_t R, Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t Q, Py_ssize_t crs0, Py_ssize_t n_rows, Py_ssize_t j0,
                      Py_ssize_t jn, Py_ssize_t ld, floating *col) noexcept nogil:
    """col[i, j - j0] = padded x[c, p*sh - pt + r*dh, q*sw - pl + s*dw] for the
    im2col rows i = (c, r, s) - crs0 in [0, n_rows) and the output pixels
    j = p*Q + q in [j0, j0 + jn); rows are ``ld`` apart.

    Each row is copied one output row p at a time: zeros where the tap falls
    in the padding, a contiguous copy (stride 1) or a strided gather between."""
    cdef Py_ssize_t i, crs, c, r, s, p, p0, p1, q, qe, h, col_off, qa, qb, qq, lo, hi, d, xo
    cdef Py_ssize_t pf
    p0 = j0 // Q
    p1 = (j0 + jn - 1) // Q
    for i in range(n_rows):
        crs = crs0 + i
        c = crs // (R * S)
        r = (crs // S) % R
        s = crs - (crs // S) * S
        # the same tap's input rows PREFETCH_CHANNELS channels on, if the block holds them
        pf = PREFETCH_CHANNELS * H * W if i + PREFETCH_CHANNELS * R * S < n_rows else 0
        col_off = s * dw - pl
        qa = first_valid(col_off, sw)
        qb = end_valid(col_off, sw, W, Q)
        for p in range(p0, p1 + 1):
            q = j0 - p0 * Q if p == p0 else 0
            qe = j0 + jn - p * Q if p == p1 else Q
            d = i * ld + p * Q - j0  # col[d + qq] holds output column qq of row p
            h = p * sh - pt + r * dh
            if h < 0 or h >= H:
                for qq in range(q, qe):
                    col[d + qq] = 0
                continue
            lo = max(q, min(qa, qe))
            hi = max(lo, min(qb, qe))
            for qq in range(q, lo):
                col[d + qq] = 0
            xo = (c * H + h) * W + col_off  # x[xo + qq * sw] is tap (r, s) of column qq
            if pf and s == 0:  # the row, once for all its taps
                fc_prefetch(x + ((c * H + h) * W + pf), W * sizeof(floating))
            if hi > lo:
                _gather(col + (d + lo), x + (xo + lo * sw), hi - lo, sw)
            for qq in range(hi, qe):
                col[d + qq] = 0


cdef void im2col_span(const floating *x, Py_ssize_t image, Py_ssize_t PQ, Py_ssize_t H,
                      Py_ssize_t W, Py_ssize_t R, Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t Q, Py_ssize_t crs0, Py_ssize_t n_rows, Py_ssize_t j0,
                      Py_ssize_t jn, Py_ssize_t ld, floating *col) noexcept nogil:
    """im2col_rows over the pixels [j0, j0 + jn) of the batch end to end (pixel j
    is pixel j % PQ of image j // PQ; images ``image`` elements apart from x),
    one image's run of pixels at a time."""
    cdef Py_ssize_t a = j0, e
    while a < j0 + jn:
        e = min(j0 + jn, (a // PQ + 1) * PQ)
        im2col_rows(x + a // PQ * image, H, W, R, S, sh, sw, pt, pl, dh, dw, Q, crs0, n_rows,
                    a % PQ, e - a, ld, col + (a - j0))
        a = e


cdef inline Py_ssize_t panel_image(Py_ssize_t j0, Py_ssize_t jn, Py_ssize_t u, Py_ssize_t nr,
                                   Py_ssize_t PQ) noexcept nogil:
    """The image holding all of panel u (pixels j0 + u*nr on, at most nr, up to
    j0 + jn) of the batch end to end, or -1 when the panel straddles two."""
    cdef Py_ssize_t a = j0 + u * nr
    cdef Py_ssize_t e = min(j0 + jn, a + nr)
    return a // PQ if a // PQ == (e - 1) // PQ else -1


cdef void col2im_tile(const floating *col, Py_ssize_t Cg, Py_ssize_t H, Py_ssize_t W,
                      Py_ssize_t R, Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t Q, Py_ssize_t j0, Py_ssize_t jn,
                      floating *x) noexcept nogil:
    """The adjoint of im2col_rows (all rows, ld = jn): scatter-add the tile back into
    x, dropping what falls in the padding."""
    cdef Py_ssize_t c, r, s, j, p, q, qe, h, col_off, qa, qb, base, qq
    cdef floating *xc
    cdef const floating *src
    for c in range(Cg):
        xc = x + c * H * W
        for r in range(R):
            for s in range(S):
                src = col + ((c * R + r) * S + s) * jn
                col_off = s * dw - pl
                qa = first_valid(col_off, sw)
                qb = end_valid(col_off, sw, W, Q)
                j = j0
                while j < j0 + jn:
                    p = j // Q
                    q = j - p * Q
                    qe = Q if Q - q < j0 + jn - j else q + (j0 + jn - j)
                    base = j - j0 - q
                    h = p * sh - pt + r * dh
                    if h >= 0 and h < H:
                        if sw == 1:
                            for qq in range(max(q, qa), min(qb, qe)):
                                xc[h * W + qq + col_off] += src[base + qq]
                        else:
                            for qq in range(max(q, qa), min(qb, qe)):
                                xc[h * W + qq * sw + col_off] += src[base + qq]
                    j += qe - q


cdef inline bint _is_pointwise(Py_ssize_t R, Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw,
                               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t H, Py_ssize_t W,
                               Py_ssize_t P, Py_ssize_t Q) noexcept nogil:
    """A 1x1 kernel at stride 1 with no padding: im2col would be the identity."""
    return R == 1 and S == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and P == H and Q == W


# --------------------------------------------------------------------------
# packed GEMM with our own micro-kernels (fastconv/_gemm_kernels.h)

cdef extern from "_gemm_kernels.h":
    ctypedef void (*fc_kernel_f32)(Py_ssize_t, const float *, Py_ssize_t, Py_ssize_t,
                                   const float *, Py_ssize_t, const float *, Py_ssize_t,
                                   float *, Py_ssize_t, int, Py_ssize_t, const float *,
                                   const float *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fc_kernel_f64)(Py_ssize_t, const double *, Py_ssize_t, Py_ssize_t,
                                   const double *, Py_ssize_t, const double *, Py_ssize_t,
                                   double *, Py_ssize_t, int, Py_ssize_t, const double *,
                                   const double *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fc_dot_f32)(Py_ssize_t, const float *, Py_ssize_t, const float *,
                                Py_ssize_t, float *, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fc_dot_f64)(Py_ssize_t, const double *, Py_ssize_t, const double *,
                                Py_ssize_t, double *, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fc_gather_f32)(float *, const float *, Py_ssize_t, Py_ssize_t) noexcept nogil
    void fc_prefetch(const void *src, Py_ssize_t nbytes) noexcept nogil
    void fc_transpose_f32(const float *src, Py_ssize_t lds, Py_ssize_t rows, Py_ssize_t cols,
                          float *dst, Py_ssize_t ldd, Py_ssize_t rows_pad) noexcept nogil
    void fc_transpose_f64(const double *src, Py_ssize_t lds, Py_ssize_t rows, Py_ssize_t cols,
                          double *dst, Py_ssize_t ldd, Py_ssize_t rows_pad) noexcept nogil
    ctypedef void (*fc_gather_f64)(double *, const double *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef struct fc_isa:
        const char *name
        fc_kernel_f32 f32[3]
        fc_kernel_f64 f64[3]
        fc_kernel_f32 f32t[3]
        fc_kernel_f64 f64t[3]
        int mr
        int nr_f32
        int nr_f64
        fc_dot_f32 dot_f32
        fc_dot_f64 dot_f64
        int dr
        int dc
        fc_gather_f32 gather_f32
        fc_gather_f64 gather_f64
    const fc_isa fc_isas[]
    int FC_N_ISAS
    int fc_isa_supported(int i) nogil

cdef const fc_isa *_isa = NULL
def simd_variants():
    """Names of the micro-kernel variants this CPU can run, fastest first."""
    return [fc_isas[i].name.decode() for i in range(FC_N_ISAS) if fc_isa_supported(i)]


def simd_variant():
    """The micro-kernel variant in use."""
    return _isa.name.decode()


def gemm_block():
    """``(mr, nr_float32, nr_float64)``: the micro-kernel's register block in use."""
    return _isa.mr, _isa.nr_f32, _isa.nr_f64


def set_simd_variant(name):
    """Switch the micro-kernel variant (for tests and benchmarks; not thread-safe)."""
    global _isa
    for i in range(FC_N_ISAS):
        if fc_isas[i].name.decode() == name:
            if not fc_isa_supported(i):
                raise ValueError(f"set_simd_variant: this CPU cannot run {name!r}")
            _isa = &fc_isas[i]
            return
    raise ValueError(f"set_simd_variant: name must be one of {simd_variants()}, got {name!r}")


set_simd_variant(simd_variants()[0])


cdef inline void _micro(Py_ssize_t kc, const floating *a, Py_ssize_t lda, Py_ssize_t a_panel,
                        const floating *a_tail, Py_ssize_t m, const floating *b,
                        Py_ssize_t ldb, floating *c, Py_ssize_t ldc, int accumulate,
                        Py_ssize_t n, Py_ssize_t nv, bint a_rows, const floating *bias,
                        const floating *pf, Py_ssize_t pf_ld) noexcept nogil:
    """The macro-kernel over every panel of A for one panel of B, its
    register block ``nv`` (1 to 3) vectors of pixels wide; ``a_rows``: A as
    rows of the weights, unpacked (see _gemm_kernels.h)."""
    cdef Py_ssize_t pf_bytes = n * sizeof(floating)
    if floating is float:
        if a_rows:
            _isa.f32t[nv - 1](kc, a, lda, a_panel, a_tail, m, b, ldb, c, ldc, accumulate, n,
                              bias, pf, pf_ld, pf_bytes)
        else:
            _isa.f32[nv - 1](kc, a, lda, a_panel, a_tail, m, b, ldb, c, ldc, accumulate, n,
                             bias, pf, pf_ld, pf_bytes)
    elif a_rows:
        _isa.f64t[nv - 1](kc, a, lda, a_panel, a_tail, m, b, ldb, c, ldc, accumulate, n,
                          bias, pf, pf_ld, pf_bytes)
    else:
        _isa.f64[nv - 1](kc, a, lda, a_panel, a_tail, m, b, ldb, c, ldc, accumulate, n,
                         bias, pf, pf_ld, pf_bytes)


cdef inline void _gather(floating *dst, const floating *src, Py_ssize_t n,
                         Py_ssize_t stride) noexcept nogil:
    """dst[j] = src[j * stride] for j < n (vectorised for strides 1 and 2)."""
    if floating is float:
        _isa.gather_f32(dst, src, n, stride)
    else:
        _isa.gather_f64(dst, src, n, stride)


cdef inline void _dot(Py_ssize_t kc, const floating *a, Py_ssize_t lda, const floating *b,
                      Py_ssize_t ldb, floating *c, Py_ssize_t ldc, Py_ssize_t m,
                      Py_ssize_t n) noexcept nogil:
    if floating is float:
        _isa.dot_f32(kc, a, lda, b, ldb, c, ldc, m, n)
    else:
        _isa.dot_f64(kc, a, lda, b, ldb, c, ldc, m, n)


cdef void transpose(const floating *src, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t lds,
                    floating *dst, Py_ssize_t ldd, Py_ssize_t rows_pad) noexcept nogil:
    """dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: a rows x cols
    block transposed, each row of dst zero-padded from rows to rows_pad."""
    if floating is float:
        fc_transpose_f32(src, lds, rows, cols, dst, ldd, rows_pad)
    else:
        fc_transpose_f64(src, lds, rows, cols, dst, ldd, rows_pad)


cdef void pack_weights(const floating *w, Py_ssize_t ld, Py_ssize_t K, Py_ssize_t CRS,
                       Py_ssize_t mr, floating *out) noexcept nogil:
    """w[K, CRS] (rows ld apart) -> panels of mr rows, each [CRS][mr] (rows past K zero)."""
    cdef Py_ssize_t b, mb
    for b in range((K + mr - 1) // mr):
        mb = b * mr
        transpose(w + mb * ld, min(mr, K - mb), CRS, ld, out + mb * CRS, mr, mr)


#: largest packed copy of W^T the backward makes (beyond it W is read in
#: place): the call's extra memory stays bounded whatever the weights
cdef Py_ssize_t WT_PACK_MAX_BYTES = 16 << 20


def set_wt_pack_max_bytes(Py_ssize_t size):
    """Set the bound on the backward's packed copy of W^T (for tests: 0
    reads W in place); returns the previous bound."""
    global WT_PACK_MAX_BYTES
    old = WT_PACK_MAX_BYTES
    WT_PACK_MAX_BYTES = size
    return old


#: float64 forward calls of at most this many output pixels per group (the
#: whole batch's) read the weights in place rather than packing them (see
#: conv2d_packed). On an Ice Lake Xeon, one thread, the 10 such GEMM layers
#: of the yardstick and off_yardstick.json (392 to 3136 pixels) ran 1.00-1.08x
#: as fast in place with the AVX-512 kernels (3x3-s2-128 1.05x), 1.00-1.09x on
#: two threads, 1.00-1.06x with the AVX2 ones (4 layers); beyond, 1x1-s2-512
#: (6272 pixels) 0.95x. In float32, in place measured 0.96-1.07x on the same
#: layers, so float32 packs.
cdef Py_ssize_t UNPACKED_MAX_PIXELS_F64 = 4096


def set_unpacked_max_pixels(Py_ssize_t pixels):
    """Set the float64 forward's bound for reading the weights in place (for
    tests: 0 packs them whenever several blocks read them); returns the
    previous bound."""
    global UNPACKED_MAX_PIXELS_F64
    old = UNPACKED_MAX_PIXELS_F64
    UNPACKED_MAX_PIXELS_F64 = pixels
    return old


cdef void pack_tail(const floating *x, Py_ssize_t ld, Py_ssize_t kc, Py_ssize_t n,
                    Py_ssize_t nr, floating *out) noexcept nogil:
    """Copy a kc x n block (rows ld apart) into one [kc][nr] panel, zero-padded."""
    cdef Py_ssize_t row, j
    for row in range(kc):
        for j in range(nr):
            out[row * nr + j] = x[row * ld + j] if j < n else 0


cdef inline Py_ssize_t channel_step(Py_ssize_t Kg, Py_ssize_t mr,
                                    Py_ssize_t parts) noexcept nogil:
    """Output channels per part, in whole register blocks, of Kg split into at
    most ``parts`` parts; rounding up to whole blocks can leave fewer parts:
    there are ceil(Kg / step)."""
    return ((Kg + parts - 1) // parts + mr - 1) // mr * mr


cdef inline Py_ssize_t spread_rows(Py_ssize_t ld, Py_ssize_t size) noexcept nogil:
    """A row length of at least ``ld`` elements for a packed block whose
    column strips the kernels read a row at a time: rows an odd number of
    cache lines apart, so that a strip's rows spread over every L1 set (384
    floats, 24 lines, put a 256-row strip in 16 of the 64 sets); short rows
    as they are (their whole block stays in L1)."""
    cdef Py_ssize_t line = 64 // size
    if ld * size < 512:
        return ld
    ld = (ld + line - 1) // line * line
    return ld if (ld // line) % 2 else ld + line


cdef void gemm_panels(Py_ssize_t kc, const floating *a, Py_ssize_t lda, Py_ssize_t a_panel,
                      const floating *a_tail, Py_ssize_t m,
                      const floating *b, Py_ssize_t ldb, floating *tail,
                      Py_ssize_t jn, floating *c, Py_ssize_t ldc,
                      int accumulate, bint a_rows=False,
                      const floating *bias=NULL) noexcept nogil:
    """C[m, jn] (+)= A[m, kc] @ B[kc, jn] (+ bias[m] on every column, when
    given), one nr-wide column panel of B at a time, every mr-row panel of A
    streaming past it while it stays in L1 (the Goto/BLIS loop order; the
    loop over A's panels is the macro-kernel's, see _micro).

    A's mr-row panels start ``a_panel`` apart, each kc rows of mr values
    ``lda`` apart (packed panels: lda = mr), except a last partial panel,
    which comes from ``a_tail`` ([kc][mr]) when given; with ``a_rows``, each
    is mr rows of kc values ``lda`` apart instead (the weights unpacked), of
    which the kernel reads only the first m. B's nr-wide column panels are
    read at ``b + jr``, rows ``ldb`` apart. With ``tail`` NULL, B is readable
    as whole panels; otherwise (B read in place) ``tail`` is a workspace of
    kc x (nr + nr/3) into which the last partial panel is copied, zero-padded,
    so that the kernel never reads past B. Rows of C are ``ldc`` apart.

    (The other order, each A panel in L1 while the few B panels stream
    past, had served where A outgrows L2: the batch-1 7x7 512-channel 3x3
    layer, whose weights are 9 MiB. With the loop over A's panels in the
    macro-kernel, this order ran that layer's forward 2-4% and its backward
    4-8% faster, Zen 3.)"""
    cdef Py_ssize_t nr = _isa.nr_f32 if floating is float else _isa.nr_f64
    cdef Py_ssize_t vl = nr // 3  # the widest block is 3 vectors
    cdef Py_ssize_t n_jb = (jn + nr - 1) // nr
    cdef Py_ssize_t jb, jr, jw, l, jt = jn
    cdef const floating *bp
    cdef const floating *pf
    # a last panel of one vector (49 = 48 + 1 pixels) runs, with the panel
    # before it, as two panels of two vectors: the one-vector block is bound
    # by its broadcasts and ran at half the rate (a 1x1 layer on 14x14: 7% of
    # its time on 2% of the pixels)
    cdef bint split = n_jb >= 2 and jn - (n_jb - 1) * nr <= vl
    if tail != NULL and jn % nr:
        # B's columns from jt on are read from their copy, as one panel, or
        # as the two panels of the split (nr + vl wide)
        jt = (n_jb - 2 if split else n_jb - 1) * nr
        pack_tail(b + jt, ldb, kc, jn - jt, nr + vl if split else nr, tail)
    for jb in range(n_jb):
        jr = jb * nr
        jw = min(nr, jn - jr)
        if split and jb >= n_jb - 2:
            jr = (n_jb - 2) * nr + (jb - n_jb + 2) * 2 * vl
            jw = 2 * vl if jb == n_jb - 2 else jn - jr
        bp = b + jr
        l = ldb
        if jr >= jt:
            bp = tail + (jr - jt)
            l = nr + vl if split else nr
        # fetch the next pixel panel, a share of its rows per weight panel,
        # where B is read in place (a 1x1 layer's image): its rows lie a plane
        # apart, too many streams for the hardware prefetchers (ResNet's
        # 256-to-64 1x1, Zen 3: 7-9% faster). A packed B is in L2 already, and
        # fetching its next panel into L1 early only evicted the current one
        # (im2col and Winograd layers 1-5% faster without, Ice Lake)
        pf = b + jr + nr if tail != NULL and (jb + 2) * nr <= jt else NULL
        # a last partial panel runs the narrowest block that covers it
        _micro(kc, a, lda, a_panel, a_tail, m, bp, l, c + jr, ldc, accumulate, jw,
               (jw + vl - 1) // vl, a_rows, bias, pf, ldb)


def conv2d_packed(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                  const floating[::1] bias, floating[:, :, :, ::1] y,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                  Py_ssize_t nc, Py_ssize_t kc_max, bint copy_free, int n_threads):
    """Forward convolution as a blocked GEMM, Y[Kg, PQ] = W[Kg, CRS] @ cols[CRS, PQ],
    per image and group, with our micro-kernels (the Goto/BLIS loop order).

    The weights are packed once per call into mr-row panels (unless each
    panel would be read by one block of pixels per thread). Each work item
    is a block of ``nc`` output pixels of one image and group (of the whole
    batch, for images smaller than a block: see ``batched``); for each slice
    of ``kc_max`` reduction rows its im2col rows are built in a per-thread
    block (L2), and for each nr-pixel column of it (kept in L1 while every
    channel panel of the weights streams past it) the micro-kernel
    accumulates into the NCHW output. Extra memory: the packed weights (if any) plus
    one kc_max x nc block and the panels straddling images per thread.

    ``copy_free``: a pointwise (1x1, stride 1, unpadded) convolution reads the
    image in place as the B operand; only a last partial panel is copied.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = w.shape[0], Cg = w.shape[1], R = w.shape[2], S = w.shape[3]
    cdef Py_ssize_t P = y.shape[2], Q = y.shape[3]
    cdef Py_ssize_t Kg = K // groups, CRS = Cg * R * S, PQ = P * Q
    cdef Py_ssize_t mr = _isa.mr
    cdef Py_ssize_t nr = _isa.nr_f32 if floating is float else _isa.nr_f64
    cdef Py_ssize_t Kg_pad = (Kg + mr - 1) // mr * mr
    cdef Py_ssize_t n_blocks, item, g, t, j0, jn, jp, pb, pc, kc, k, j, i, ld, pixels, slots
    cdef Py_ssize_t n, a, e, u, v, jb, slot, img, lead, nc_max
    cdef Py_ssize_t vb = nr // 3 * sizeof(floating)  # bytes per vector
    cdef bint has_bias = bias is not None
    cdef bint batched
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    cdef floating *apack = NULL
    cdef floating *bpack = NULL
    cdef bint unpacked
    cdef Py_ssize_t la, n_items, n_kp, kstep, k0, km
    cdef const floating *bk
    cdef floating *sbuf = NULL
    cdef floating *sp
    cdef const floating *xg
    cdef bint pointwise = copy_free and _is_pointwise(R, S, sh, sw, pt, pl, H, W, P, Q)
    cdef floating *yt
    cdef const floating *ap
    if N == 0 or K == 0:
        return 0
    nc = max(nr, nc // nr * nr)
    # Images of at most one block (with the last block's merge below: fewer
    # than nc + nr pixels) whose pixels do not fill whole panels (14x14: 196 =
    # 4 x 48 + 4) run as one pixel axis across the batch, so a panel is topped
    # up with the next image's pixels instead of running a narrow kernel on 4
    # of 16 lanes (float64's 196 = 8 x 24 + 4, one block of 192 + 4 per
    # image, ran its last 28 pixels on two-vector blocks: 16% of 3x3-s2-128's
    # time; batched, 4% faster). A panel that straddles two images accumulates
    # in a per-thread buffer (a slot per image boundary in a block) and is
    # scattered into both at the end.
    batched = not pointwise and N > 1 and PQ % nr != 0 and PQ < nc + nr
    pixels = N * PQ if batched else PQ
    # Read in place, the image's rows are where NumPy put them, often 16 bytes
    # past a cache line: every panel's vector loads would straddle lines (res-
    # 1x1-256 ran 15-20% slower than aligned). When all rows share the
    # misalignment (PQ a multiple of the vector), the first ``lead`` pixels of
    # each image run apart, copied, and the blocks start at an aligned pixel.
    lead = 0  # (below one vector, so below PQ)
    if pointwise and C * PQ > 0 and (PQ * sizeof(floating)) % vb == 0:
        lead = (vb - <Py_ssize_t> (<uintptr_t> &x[0, 0, 0, 0] % vb)) % vb // sizeof(floating)
    n_blocks = (pixels - lead + nc - 1) // nc
    if batched and (groups * n_blocks) % n_threads:
        # as many blocks per thread: 5 blocks on 2 threads would idle one for a fifth
        n_blocks = (groups * n_blocks + n_threads - 1) // n_threads * n_threads // groups
        nc = max(nr, (pixels + n_blocks * nr - 1) // (n_blocks * nr) * nr)
        n_blocks = (pixels + nc - 1) // nc
    elif n_blocks > 1 and pixels - lead - (n_blocks - 1) * nc < nr:
        # a last block of less than a panel joins the one before it: run
        # apart, its few pixels took a narrow kernel and an im2col pass of
        # their own (float64 14x14: 196 = 192 + 4, 7% of 3x3-s2-128's time;
        # its float32 batch, 1568 = 4 x 384 + 32, ran 4% slower)
        n_blocks -= 1
    # straddling panels per block: at most one per image boundary, and
    # at most every panel (images of fewer pixels than a panel)
    nc_max = max(nc, pixels - lead - (n_blocks - 1) * nc)  # pixels of the largest block
    slots = min(nc_max // PQ + 2, (nc_max + nr - 1) // nr) if batched else 0
    # Packed weights pay off when several blocks of pixels read them; with one
    # block per thread or fewer (batch-1 small images), the kernels read the
    # weights' rows in place instead (packing was a quarter of the batch-1 7x7
    # 512-channel layer, 9 MiB of weights read once), and in float64 on calls
    # of few pixels (UNPACKED_MAX_PIXELS_F64: 3x3-s2-128's 1568, 1.05x faster)
    unpacked = ((1 if batched else N) * n_blocks <= n_threads
                or (floating is double and N * PQ <= UNPACKED_MAX_PIXELS_F64))
    # Few blocks, not a multiple of the threads (a batch-1 7x7 image: one
    # block of 49 pixels; a 1x1 layer on 3 images of 14x14 on 2 threads): the
    # output channels are split too, each part a whole number of panels, so
    # that every thread gets as much work (b1-3x3-512 on 2 threads: 2.2 to
    # 1.6 ms)
    n_items = (1 if batched else N) * groups * n_blocks
    n_kp = 1
    if n_items < 4 * n_threads:
        n_kp = min(n_threads // gcd(n_items, n_threads), max(1, Kg // mr))
    kstep = channel_step(Kg, mr, n_kp)
    n_kp = (Kg + kstep - 1) // kstep
    la = CRS if unpacked else mr  # the kernels' lda: along a row, or a packed panel
    if not unpacked:
        apack = <floating *> fc_malloc64(groups * Kg_pad * CRS * sizeof(floating))
        if apack == NULL:
            return -1
        with nogil:  # one mr-row panel per item: serial, this was 5% of a 2-thread call
            for item in prange(groups * (Kg_pad // mr), schedule="static",
                               num_threads=n_threads):
                g = item // (Kg_pad // mr)
                k = item % (Kg_pad // mr) * mr
                pack_weights(&w[g * Kg + k, 0, 0, 0], CRS, min(mr, Kg - k), CRS, mr,
                             apack + (g * Kg_pad + k) * CRS)
    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        bpack = <floating *> fc_malloc64(kc_max * sizeof(floating) * spread_rows(
            (nc_max + nr - 1) // nr * nr, sizeof(floating)))
        sbuf = <floating *> fc_malloc64(max(1, slots * Kg * nr) * sizeof(floating))
        if bpack == NULL or sbuf == NULL:
            failed[0] = 1
        for item in prange(n_items * n_kp, schedule="static"):
            if failed[0]:
                continue
            k0 = item % n_kp * kstep  # output channels [k0, k0 + km) of the group
            km = min(kstep, Kg - k0)
            n = 0 if batched else item // n_kp // (groups * n_blocks)
            g = (item // n_kp // n_blocks) % groups
            t = item // n_kp % n_blocks
            j0 = lead + t * nc  # the block's pixels [j0, j0 + jn) of image n (all if batched)
            jn = nc if t < n_blocks - 1 else pixels - j0
            jp = (jn + nr - 1) // nr * nr  # whole panels
            ld = spread_rows(jp, sizeof(floating))
            for pb in range((CRS + kc_max - 1) // kc_max):
                pc = pb * kc_max
                kc = kc_max if CRS - pc > kc_max else CRS - pc
                # the first slice of the reduction starts from the bias (the
                # panels straddling images get theirs when scattered)
                bk = &bias[g * Kg + k0] if has_bias and pc == 0 else NULL
                if unpacked:
                    ap = &w[g * Kg + k0, 0, 0, 0] + pc
                else:
                    ap = apack + (g * Kg_pad + k0) * CRS + pc * mr
                if pointwise:
                    # the image is the B operand, read in place, except the last
                    # partial panel, copied so the kernel never reads past the array
                    xg = &x[n, g * Cg, 0, 0]
                    yt = &y[n, g * Kg + k0, 0, 0] + j0
                    if t == 0 and lead:  # one partial panel: B is only its copy
                        gemm_panels(kc, ap, la, mr * CRS, NULL, km, xg + pc * PQ, PQ, bpack, lead,
                                    yt - lead, PQ, pc > 0, unpacked, bk)
                    gemm_panels(kc, ap, la, mr * CRS, NULL, km, xg + pc * PQ + j0, PQ, bpack,
                                jn, yt, PQ, pc > 0, unpacked, bk)
                    continue
                im2col_span(&x[n, g * Cg, 0, 0], C * H * W, PQ, H, W, R, S, sh, sw, pt, pl,
                            dh, dw, Q, pc, kc, j0, jn, ld, bpack)
                for i in range(kc):  # the last panel's tail: read, results dropped
                    for j in range(jn, jp):
                        bpack[i * ld + j] = 0
                # runs of whole panels within one image go straight to the output
                slot = 0
                u = 0  # panels [u, v) form the current run
                while u < jp // nr:
                    a = j0 + u * nr
                    img = panel_image(j0, jn, u, nr, PQ)
                    if img < 0:  # panel u straddles two images
                        gemm_panels(kc, ap, la, mr * CRS, NULL, km, bpack + u * nr, ld, NULL,
                                    min(nr, j0 + jn - a), sbuf + slot * Kg * nr, nr, pc > 0,
                                    unpacked)
                        slot = slot + 1
                        u = u + 1
                        continue
                    v = u + 1
                    while v < jp // nr and panel_image(j0, jn, v, nr, PQ) == img:
                        v = v + 1
                    e = min(j0 + jn, j0 + v * nr)
                    gemm_panels(kc, ap, la, mr * CRS, NULL, km, bpack + u * nr, ld, NULL,
                                e - a, &y[n + img, g * Kg + k0, 0, 0] + a % PQ, PQ,
                                pc > 0, unpacked, bk)
                    u = v
            if batched:  # scatter the straddling panels
                slot = 0
                for jb in range(jp // nr):
                    if panel_image(j0, jn, jb, nr, PQ) >= 0:
                        continue
                    a = j0 + jb * nr
                    e = min(j0 + jn, a + nr)
                    sp = sbuf + slot * Kg * nr
                    slot = slot + 1
                    for j in range(a, e):
                        yt = &y[j // PQ, g * Kg + k0, 0, 0] + j % PQ
                        for k in range(km):
                            yt[k * PQ] = sp[k * nr + j - a] + (bias[g * Kg + k0 + k]
                                                               if has_bias else 0)
        fc_free64(bpack)
        fc_free64(sbuf)
        fc_ftz_restore(fpmode)
    fc_free64(apack)
    return -status


cdef int _grad_weight_dot(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                          floating *gwp, Py_ssize_t Kg, Py_ssize_t Cg, Py_ssize_t R,
                          Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                          Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                          Py_ssize_t tw, int nt):
    """grad_weight by the "dot" kernel: per-thread copies, summed at the end."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t CRS = Cg * R * S, PQ = P * Q, wsize = groups * Kg * CRS
    cdef Py_ssize_t dr = _isa.dr, dc = _isa.dc
    cdef Py_ssize_t n_wtiles = (N * PQ + tw - 1) // tw
    cdef Py_ssize_t tw_pad = (tw + 15) // 16 * 16
    cdef Py_ssize_t item, n, g, j0, jn, jn_pad, jt, i, t, tid, kb, cb
    # a pointwise layer's channel rows are its im2col rows, read in place
    # where images are large: on small ones the stretches are short and the
    # kernel's per-call sums dominate (a 7x7 layer ran 1.5x slower in place)
    cdef bint pointwise = _is_pointwise(R, S, sh, sw, pt, pl, H, W, P, Q) and PQ >= 1024
    cdef floating *acc
    cdef floating *accp
    cdef floating *abuf = NULL
    cdef floating *bbuf = NULL
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    acc = <floating *> calloc(nt * wsize, sizeof(floating))
    if acc == NULL:
        return -1
    with nogil, parallel(num_threads=nt):
        fpmode = fc_ftz_on()
        tid = threadid()
        # a tile of dY and dc im2col rows, zero-padded to whole vectors
        # (pointwise reads both in place)
        abuf = bbuf = NULL
        if not pointwise:
            abuf = <floating *> fc_malloc64(Kg * tw_pad * sizeof(floating))
            bbuf = <floating *> fc_malloc64(dc * tw_pad * sizeof(floating))
            if abuf == NULL or bbuf == NULL:
                failed[0] = 1
        for item in prange(groups * n_wtiles, schedule="static"):
            if failed[0]:
                continue
            # the tile: pixels [j0, j0 + jn) of all images' pixels, end to end
            g = item // n_wtiles
            j0 = (item % n_wtiles) * tw
            jn = tw if N * PQ - j0 > tw else N * PQ - j0
            jn_pad = (jn + 15) // 16 * 16
            accp = acc + tid * wsize + g * Kg * CRS
            # dY rows of the tile, one image's stretch of pixels at a time
            i = 0
            while i < jn:
                n = (j0 + i) // PQ
                jt = min(jn - i, (n + 1) * PQ - (j0 + i))
                if pointwise:
                    # the stretch's dY and image rows in place (copying the
                    # image rows was 12% of ResNet's 256-to-64 1x1 backward,
                    # the dY rows 12% of MobileNet's 24-to-144 expansion)
                    for cb in range((CRS + dc - 1) // dc):
                        for kb in range((Kg + dr - 1) // dr):
                            _dot(jt, &gy[n, g * Kg + kb * dr, 0, 0] + j0 + i - n * PQ, PQ,
                                 &x[n, g * Cg + cb * dc, 0, 0] + j0 + i - n * PQ, PQ,
                                 accp + kb * dr * CRS + cb * dc, CRS,
                                 min(dr, Kg - kb * dr), min(dc, CRS - cb * dc))
                else:
                    for kb in range(Kg):
                        memcpy(abuf + kb * jn_pad + i,
                               &gy[n, g * Kg + kb, 0, 0] + j0 + i - n * PQ, jt * sizeof(floating))
                i = i + jt
            if pointwise:
                continue
            for kb in range(Kg):
                for i in range(jn, jn_pad):
                    abuf[kb * jn_pad + i] = 0
            for cb in range((CRS + dc - 1) // dc):
                im2col_span(&x[0, g * Cg, 0, 0], x.shape[1] * H * W, PQ, H, W, R, S, sh, sw,
                            pt, pl, dh, dw, Q, cb * dc, min(dc, CRS - cb * dc), j0, jn,
                            jn_pad, bbuf)
                for i in range(jn, jn_pad):
                    for kb in range(min(dc, CRS - cb * dc)):
                        bbuf[kb * jn_pad + i] = 0
                for kb in range((Kg + dr - 1) // dr):
                    _dot(jn_pad, abuf + kb * dr * jn_pad, jn_pad, bbuf, jn_pad,
                         accp + kb * dr * CRS + cb * dc, CRS,
                         min(dr, Kg - kb * dr), min(dc, CRS - cb * dc))
        fc_free64(abuf)
        fc_free64(bbuf)
        fc_ftz_restore(fpmode)
    if status == 0:
        with nogil:
            for i in prange(wsize, schedule="static", num_threads=nt):
                gwp[i] = 0
                for t in range(nt):
                    gwp[i] += acc[t * wsize + i]
    free(acc)
    return -status


cdef int _grad_weight_gemm(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                           floating *gwp, Py_ssize_t Kg, Py_ssize_t Cg, Py_ssize_t R,
                           Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                           Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                           Py_ssize_t tw, Py_ssize_t gw_cols, int nt):
    """grad_weight by the GEMM micro-kernel, each thread owning blocks of
    ``gw_cols`` (a multiple of nr) of its columns (c, r, s), and, where there
    are fewer such blocks than threads (a 1x1 layer on 24 channels has one),
    parts of its rows (output channels) too."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t CRS = Cg * R * S, PQ = P * Q
    cdef Py_ssize_t mr = _isa.mr
    cdef Py_ssize_t nr = _isa.nr_f32 if floating is float else _isa.nr_f64
    cdef Py_ssize_t Kg_pad = (Kg + mr - 1) // mr * mr
    cdef Py_ssize_t n_cb = (CRS + gw_cols - 1) // gw_cols
    cdef Py_ssize_t n_pt = (PQ + tw - 1) // tw
    cdef Py_ssize_t item, n, g, c0, cw, cw_pad, t, j0, jn, k0, km
    # parts of whole register blocks of output channels: each part packs its
    # own rows of dY, and builds the (few) im2col columns again
    cdef Py_ssize_t kstep = channel_step(Kg, mr, min(max(1, nt // (groups * n_cb)),
                                                    Kg_pad // mr))
    cdef Py_ssize_t n_kp = (Kg + kstep - 1) // kstep
    cdef floating *abuf = NULL
    cdef floating *bbuf = NULL
    cdef floating *col = NULL
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    memset(gwp, 0, groups * Kg * CRS * sizeof(floating))
    with nogil, parallel(num_threads=nt):
        fpmode = fc_ftz_on()
        abuf = <floating *> fc_malloc64(Kg_pad * tw * sizeof(floating))
        bbuf = <floating *> fc_malloc64(tw * gw_cols * sizeof(floating))
        col = <floating *> fc_malloc64(gw_cols * tw * sizeof(floating))
        if abuf == NULL or bbuf == NULL or col == NULL:
            failed[0] = 1
        for item in prange(groups * n_cb * n_kp, schedule="static"):
            if failed[0]:
                continue
            k0 = item % n_kp * kstep
            km = min(kstep, Kg - k0)
            g = item // n_kp // n_cb
            c0 = (item // n_kp % n_cb) * gw_cols
            cw = min(gw_cols, CRS - c0)
            cw_pad = (cw + nr - 1) // nr * nr
            for n in range(N):
                for t in range(n_pt):
                    j0 = t * tw
                    jn = min(tw, PQ - j0)
                    # A: the dY rows of the tile in mr-row panels; B: its im2col
                    # rows transposed to [pixel][crs], zero past cw
                    pack_weights(&gy[n, g * Kg + k0, 0, 0] + j0, PQ, km, jn, mr, abuf)
                    im2col_rows(&x[n, g * Cg, 0, 0], H, W, R, S, sh, sw, pt, pl, dh, dw, Q,
                                c0, cw, j0, jn, jn, col)
                    transpose(col, cw, jn, jn, bbuf, cw_pad, cw_pad)
                    gemm_panels(jn, abuf, mr, mr * jn, NULL, km, bbuf, cw_pad, NULL, cw,
                                gwp + (g * Kg + k0) * CRS + c0, CRS, 1)
        fc_free64(abuf)
        fc_free64(bbuf)
        fc_free64(col)
        fc_ftz_restore(fpmode)
    return -status


cdef int _grad_weight_gemm_t(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                             floating *gwp, Py_ssize_t Kg, Py_ssize_t Cg, Py_ssize_t R,
                             Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                             Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                             Py_ssize_t tw, Py_ssize_t gw_rows, int nt):
    """grad_weight transposed by the GEMM micro-kernel, grad_weight^T[CRS, Kg] =
    cols[CRS, pixels] @ dY^T[pixels, Kg], for layers with few output channels:
    A is the im2col rows (the image's own rows for a pointwise layer, read in
    place) as rows of pixels, B the tile of dY transposed to [pixel][k]; each
    thread owns blocks of ``gw_rows`` rows (c, r, s), accumulated in its own
    [rows][Kg] block and stored transposed once at the end."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t CRS = Cg * R * S, PQ = P * Q, HW = H * W
    cdef Py_ssize_t mr = _isa.mr
    cdef Py_ssize_t nr = _isa.nr_f32 if floating is float else _isa.nr_f64
    cdef Py_ssize_t Kg_pad = (Kg + nr - 1) // nr * nr
    cdef Py_ssize_t n_rb = (CRS + gw_rows - 1) // gw_rows
    cdef Py_ssize_t n_pt = (PQ + tw - 1) // tw
    cdef bint pointwise = _is_pointwise(R, S, sh, sw, pt, pl, H, W, P, Q)
    cdef Py_ssize_t item, n, g, c0, cw, t, j0, jn
    cdef floating *bbuf = NULL
    cdef floating *col = NULL
    cdef floating *acc = NULL
    cdef const floating *ap
    cdef Py_ssize_t la
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    with nogil, parallel(num_threads=nt):
        fpmode = fc_ftz_on()
        bbuf = <floating *> fc_malloc64(tw * Kg_pad * sizeof(floating))
        col = <floating *> fc_malloc64(max(1, 0 if pointwise else gw_rows * tw) * sizeof(floating))
        acc = <floating *> fc_malloc64(gw_rows * Kg * sizeof(floating))
        if bbuf == NULL or col == NULL or acc == NULL:
            failed[0] = 1
        for item in prange(groups * n_rb, schedule="static"):
            if failed[0]:
                continue
            g = item // n_rb
            c0 = item % n_rb * gw_rows
            cw = min(gw_rows, CRS - c0)
            memset(acc, 0, cw * Kg * sizeof(floating))
            for n in range(N):
                for t in range(n_pt):
                    j0 = t * tw
                    jn = min(tw, PQ - j0)
                    # B: the tile of dY transposed, [pixel][k], zero past Kg
                    transpose(&gy[n, g * Kg, 0, 0] + j0, Kg, jn, PQ, bbuf, Kg_pad, Kg_pad)
                    if pointwise:
                        ap = &x[n, g * Cg + c0, 0, 0] + j0
                        la = HW
                    else:
                        im2col_rows(&x[n, g * Cg, 0, 0], H, W, R, S, sh, sw, pt, pl, dh, dw,
                                    Q, c0, cw, j0, jn, jn, col)
                        ap = col
                        la = jn
                    gemm_panels(jn, ap, la, mr * la, NULL, cw, bbuf, Kg_pad, NULL, Kg,
                                acc, Kg, 1, True)
            transpose(acc, cw, Kg, Kg, gwp + g * Kg * CRS + c0, CRS, cw)
        fc_free64(bbuf)
        fc_free64(col)
        fc_free64(acc)
        fc_ftz_restore(fpmode)
    return -status


def conv2d_backward_packed(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                           const floating[:, :, :, ::1] w, floating[:, :, :, ::1] gx,
                           floating[:, :, :, ::1] gw,
                           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                           Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                           Py_ssize_t tw, int gw_mode, Py_ssize_t gw_block,
                           Py_ssize_t band_rows, Py_ssize_t kc_max, int n_threads):
    """Backward convolution with our micro-kernels, tile by tile of output rows.

    grad_weight[Kg, CRS] = sum over tiles of dY_tile[Kg, tw] @ cols_tile[CRS, tw]^T,
    one of three ways (``gw_mode``):

    - 1 (deep layers): the GEMM micro-kernel with grad_weight itself as C.
      Work items are blocks of ``gw_block`` columns (c, r, s), each owned by
      one thread, so there are no partial copies to sum; per tile of ``tw``
      pixels of one image the dY rows are packed in mr-row panels and the
      im2col rows built and transposed to [pixel][crs]. The reduction is
      over pixels, so it stays efficient when an image has few of them (a
      batch-1 7x7 layer), where the "dot" kernel's horizontal sums would
      dominate.
    - 2 (tens of output channels): the GEMM micro-kernel on grad_weight
      transposed (see _grad_weight_gemm_t), blocks of ``gw_block`` rows
      (c, r, s): only the tile of dY is transposed, and a pointwise layer's
      image is read in place.
    - 0: both operands are rows of pixels, so the "dot" kernel
      runs along them; per tile (running across images) the dY rows are
      copied once and the im2col rows built a few at a time (both
      zero-padded to whole vectors, so the kernel has no scalar tail); each
      thread accumulates its own copy of grad_weight, summed once at the end.

    grad_input: dcols[CRS, T] = W^T @ dY_tile (the GEMM kernel, reading W and
    dY in place as its two operands), then col2im into grad_input; for a band
    shorter than two register blocks of pixels (a small image) the GEMM runs
    transposed, dcols^T = dY_tile^T @ W, its vectors along the rows of W. Tiles
    are bands of ``band_rows`` output rows whose input footprints overlap only
    their neighbours' (the caller makes band_rows * sh >= the kernel's extent
    minus sh), so even bands run in parallel, then odd bands: no two threads
    ever add into the same grad_input element. A pointwise convolution writes
    grad_input straight from the GEMM, with no col2im.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = w.shape[0], Cg = w.shape[1], R = w.shape[2], S = w.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t Kg = K // groups, CRS = Cg * R * S, PQ = P * Q, HW = H * W
    cdef Py_ssize_t mr = _isa.mr
    cdef Py_ssize_t nr = _isa.nr_f32 if floating is float else _isa.nr_f64
    cdef Py_ssize_t CRS_pad = (CRS + mr - 1) // mr * mr
    cdef Py_ssize_t n_bands = (P + band_rows - 1) // band_rows
    cdef Py_ssize_t T = band_rows * Q
    cdef Py_ssize_t wsize = K * CRS
    cdef Py_ssize_t item, n, g, b, j0, jn, pb, pc, kc
    cdef Py_ssize_t phase, n_phases, stride_b, per_phase, ldc
    cdef bint pointwise = _is_pointwise(R, S, sh, sw, pt, pl, H, W, P, Q)
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    cdef int nt = n_threads
    cdef floating *col = NULL
    cdef floating *tail = NULL
    cdef floating *atail = NULL
    cdef floating *colt = NULL
    cdef floating *apack = NULL
    cdef floating *wt = NULL
    cdef const floating *wg
    # a short band of pixels (a small image): the GEMM runs transposed, its
    # vectors along the rows of W (read once, in order) instead of along a
    # band too short to fill them
    cdef bint transposed = not pointwise and T < 2 * nr
    cdef Py_ssize_t i
    cdef floating *gwp = &gw[0, 0, 0, 0]
    cdef floating *cp
    cdef const floating *gyt
    if N == 0:
        memset(gwp, 0, wsize * sizeof(floating))
        return 0

    # ---- grad_weight
    if gw_mode == 2:
        status = _grad_weight_gemm_t(gy, x, gwp, Kg, Cg, R, S, sh, sw, pt, pl, dh, dw, groups,
                                     tw, gw_block, nt)
    elif gw_mode == 1:
        status = _grad_weight_gemm(gy, x, gwp, Kg, Cg, R, S, sh, sw, pt, pl, dh, dw, groups,
                                   tw, gw_block, nt)
    else:
        status = _grad_weight_dot(gy, x, gwp, Kg, Cg, R, S, sh, sw, pt, pl, dh, dw, groups,
                                  tw, nt)
    if status:
        return -1

    # ---- grad_input
    if not pointwise:
        with nogil:
            memset(&gx[0, 0, 0, 0], 0, N * C * HW * sizeof(floating))
    if not transposed and groups * CRS_pad * Kg * sizeof(floating) <= WT_PACK_MAX_BYTES:
        # W^T packed once in panels of mr columns (c, r, s), [Kg][mr] each: read
        # in place, a panel's rows lie CRS apart, as often a multiple of 1 KiB
        # (128 x 3 x 3 floats: 4.5 KiB), so they shared a few L1 sets (Zen 3,
        # one thread: 3-13% off the backward of 3x3/2, 1x1 and dense 3x3
        # layers)
        wt = <floating *> fc_malloc64(groups * CRS_pad * Kg * sizeof(floating))
        if wt == NULL:
            return -1
        with nogil:
            for item in prange(groups * (CRS_pad // mr), schedule="static", num_threads=nt):
                g = item // (CRS_pad // mr)
                i = item % (CRS_pad // mr) * mr
                pack_tail(&w[g * Kg, 0, 0, 0] + i, CRS, Kg, min(mr, CRS - i), mr,
                          wt + g * CRS_pad * Kg + i * Kg)
    # pointwise tiles never overlap: one phase over every band
    n_phases = 1 if pointwise else 2
    stride_b = 1 if pointwise else 2
    for phase in range(n_phases):
        per_phase = (n_bands - phase + stride_b - 1) // stride_b
        with nogil, parallel(num_threads=nt):
            fpmode = fc_ftz_on()
            col = NULL
            if not pointwise:
                col = <floating *> fc_malloc64(CRS_pad * T * sizeof(floating))
            tail = <floating *> fc_malloc64(kc_max * (nr + nr // 3) * sizeof(floating))
            atail = <floating *> fc_malloc64(kc_max * mr * sizeof(floating))
            colt = NULL
            apack = NULL
            if transposed:
                colt = <floating *> fc_malloc64(CRS * T * sizeof(floating))
                apack = <floating *> fc_malloc64(kc_max * (T + mr) * sizeof(floating))
            if (tail == NULL or atail == NULL or (col == NULL and not pointwise)
                    or (transposed and (colt == NULL or apack == NULL))):
                failed[0] = 1
            for item in prange(N * groups * per_phase, schedule="static"):
                if failed[0]:
                    continue
                n = item // (groups * per_phase)
                g = (item // per_phase) % groups
                b = (item % per_phase) * stride_b + phase
                j0 = b * T
                jn = T if PQ - j0 > T else PQ - j0
                for pb in range((Kg + kc_max - 1) // kc_max):
                    pc = pb * kc_max
                    kc = kc_max if Kg - pc > kc_max else Kg - pc
                    gyt = &gy[n, g * Kg + pc, 0, 0] + j0
                    wg = &w[g * Kg + pc, 0, 0, 0]
                    if transposed:
                        # dcols^T[jn, CRS] = dY^T @ W: dY packed in panels of
                        # mr pixels, the rows of W read in place (the last
                        # partial panel copied: never read past w)
                        for i in range((jn + mr - 1) // mr):
                            pack_tail(gyt + i * mr, PQ, kc, min(mr, jn - i * mr), mr,
                                      apack + i * mr * kc)
                        gemm_panels(kc, apack, mr, mr * kc, NULL, jn, wg, CRS, tail, CRS,
                                    colt, CRS, pc > 0)
                        continue
                    # A = W^T, from its packed copy (wt) or read in place (panels
                    # of mr columns of w, rows k), B = dY in place; the last
                    # partial panels read in place are copied, so the kernel
                    # never reads past either array
                    if CRS % mr and wt == NULL:
                        pack_tail(wg + CRS // mr * mr, CRS, kc, CRS % mr, mr, atail)
                    if pointwise:  # grad_input itself is C
                        cp = &gx[n, g * Cg, 0, 0] + j0
                        ldc = HW
                    else:
                        cp = col
                        ldc = jn
                    if wt != NULL:
                        gemm_panels(kc, wt + g * CRS_pad * Kg + pc * mr, mr, Kg * mr, NULL,
                                    CRS, gyt, PQ, tail, jn, cp, ldc, pc > 0)
                    else:
                        gemm_panels(kc, wg, CRS, mr, atail, CRS, gyt, PQ, tail, jn, cp, ldc,
                                    pc > 0)
                if transposed:
                    transpose(colt, jn, CRS, CRS, col, jn, jn)
                if not pointwise:
                    col2im_tile(col, Cg, H, W, R, S, sh, sw, pt, pl, dh, dw, Q, j0, jn,
                                &gx[n, g * Cg, 0, 0])
            fc_free64(col)
            fc_free64(colt)
            fc_free64(apack)
            fc_free64(tail)
            fc_free64(atail)
            fc_ftz_restore(fpmode)
        if status:
            break
    fc_free64(wt)
    return -status


# --------------------------------------------------------------------------
# Winograd F(2x2, 3x3): 3x3 taps at stride 1 (its transforms: fastconv/_winograd.h)


cdef extern from "_winograd.h":
    # the input transforms' buffer rows, F(m x m, r x r) on 6x6 tiles (see wino_buf_size)
    Py_ssize_t FC_WINO6_ROW(int M, Py_ssize_t W, Py_ssize_t TQ, Py_ssize_t pl) nogil
    Py_ssize_t FC_WINO6_ROW8(int M, Py_ssize_t W, Py_ssize_t TQ, Py_ssize_t pl) nogil
    ctypedef int (*fc_wino_in_f32)(const float *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   Py_ssize_t, float, float *, float *, Py_ssize_t) noexcept nogil
    ctypedef int (*fc_wino_in_f64)(const double *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   Py_ssize_t, Py_ssize_t, double, double *, double *,
                                   Py_ssize_t) noexcept nogil
    ctypedef void (*fc_wino_out_f32)(const float *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                     Py_ssize_t, Py_ssize_t, float, float *, float *, Py_ssize_t,
                                     Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fc_wino_out_f64)(const double *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                     Py_ssize_t, Py_ssize_t, double, double *, double *,
                                     Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fc_wino_w_f32)(const float *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   float *) noexcept nogil
    ctypedef void (*fc_wino_w_f64)(const double *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   double *) noexcept nogil
    ctypedef int (*fc_wino_gy_f32)(const float *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   float, float *, float *, Py_ssize_t) noexcept nogil
    ctypedef int (*fc_wino_gy_f64)(const double *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   double, double *, double *, Py_ssize_t) noexcept nogil
    ctypedef struct fc_wino:
        fc_wino_w_f32 w_f32
        fc_wino_w_f64 w_f64
        fc_wino_in_f32 in_f32
        fc_wino_in_f64 in_f64
        fc_wino_out_f32 out_f32
        fc_wino_out_f64 out_f64
        fc_wino_w_f32 w6_f32[4]
        fc_wino_w_f64 w6_f64[4]
        fc_wino_in_f32 in6_f32[4]
        fc_wino_in_f64 in6_f64[4]
        fc_wino_out_f32 out6_f32[4]
        fc_wino_out_f64 out6_f64[4]
        fc_wino_gy_f32 gy_f32
        fc_wino_gy_f64 gy_f64
        fc_wino_gy_f32 gy4_f32
        fc_wino_gy_f64 gy4_f64
        int mr
    const fc_wino fc_winos[]


for _i in range(FC_N_ISAS):  # the Winograd weight panels are the micro-kernels' A panels
    if fc_winos[_i].mr != fc_isas[_i].mr:
        raise ImportError("fastconv._conv: _winograd.h's MR differs from _gemm_kernels.h's")


# F(m x m, r x r), m = tile, r = taps: F(2x2, 3x3) on 4x4 tiles of input, the
# rest (m + r = 7) on 6x6 tiles
cdef inline bint wino_small(int tile, int taps) noexcept nogil:
    """Whether F(tile x tile, taps x taps) runs on 4x4 tiles: F(2x2, 3x3)'s
    own transforms (one junk slot per row of tiles, see _winograd.h)."""
    return tile + taps == 5


cdef inline int wino_in(int tile, int taps, const floating *x, Py_ssize_t C, Py_ssize_t H,
                        Py_ssize_t W, Py_ssize_t c, Py_ssize_t TP, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t TQ, floating lim,
                        floating *buf, floating *v, Py_ssize_t ldv) noexcept nogil:
    cdef const fc_wino *t = &fc_winos[_isa - &fc_isas[0]]
    cdef bint small = wino_small(tile, taps)
    if floating is float:
        return (t.in_f32 if small else t.in6_f32[tile - 2])(x, C, H, W, c, TP, r0, r1, pt, pl,
                                                            TQ, lim, buf, v, ldv)
    else:
        return (t.in_f64 if small else t.in6_f64[tile - 2])(x, C, H, W, c, TP, r0, r1, pt, pl,
                                                            TQ, lim, buf, v, ldv)


cdef inline void wino_out(int tile, int taps, const floating *m, Py_ssize_t ldm, Py_ssize_t TP,
                          Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t TQ, floating b, floating *buf,
                          floating *y, Py_ssize_t K, Py_ssize_t k, Py_ssize_t P,
                          Py_ssize_t Q) noexcept nogil:
    cdef const fc_wino *t = &fc_winos[_isa - &fc_isas[0]]
    cdef bint small = wino_small(tile, taps)
    if floating is float:
        (t.out_f32 if small else t.out6_f32[tile - 2])(m, ldm, TP, r0, r1, TQ, b, buf, y, K, k,
                                                       P, Q)
    else:
        (t.out_f64 if small else t.out6_f64[tile - 2])(m, ldm, TP, r0, r1, TQ, b, buf, y, K, k,
                                                       P, Q)


cdef inline int wino_gy(int tile, const floating *gy, Py_ssize_t K, Py_ssize_t P, Py_ssize_t Q,
                        Py_ssize_t k, Py_ssize_t TP, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t TQ,
                        floating lim, floating *buf, floating *z, Py_ssize_t ldz) noexcept nogil:
    cdef const fc_wino *t = &fc_winos[_isa - &fc_isas[0]]
    if floating is float:
        return (t.gy_f32 if tile == 2 else t.gy4_f32)(gy, K, P, Q, k, TP, r0, r1, TQ, lim, buf,
                                                      z, ldz)
    else:
        return (t.gy_f64 if tile == 2 else t.gy4_f64)(gy, K, P, Q, k, TP, r0, r1, TQ, lim, buf,
                                                      z, ldz)


cdef inline void wino_weights(int tile, int taps, const floating *w, Py_ssize_t K,
                              Py_ssize_t C, Py_ssize_t k0, floating *apack) noexcept nogil:
    cdef const fc_wino *t = &fc_winos[_isa - &fc_isas[0]]
    cdef bint small = wino_small(tile, taps)
    if floating is float:
        (t.w_f32 if small else t.w6_f32[taps - 2])(w, K, C, k0, apack)
    else:
        (t.w_f64 if small else t.w6_f64[taps - 2])(w, K, C, k0, apack)


cdef inline Py_ssize_t wino_buf_size(int tile, int taps, Py_ssize_t TQ, Py_ssize_t pl,
                                     Py_ssize_t W, Py_ssize_t slots) noexcept nogil:
    """Elements of the transforms' buffer for an item of ``slots`` slots (see
    _winograd.h): the input transform's, and the output's or grad_output's
    (F(4x4, 3x3)'s 40 per slot)."""
    if wino_small(tile, taps):
        return 8 * (slots + 1)
    return max(6 * FC_WINO6_ROW(tile, W, TQ, pl) + W + 36 * slots,
               max(6 * tile + tile * tile, 40) * slots,
               # the eight-tile float32 input transform's, six rows per row of tiles
               6 * ((slots + TQ - 1) // TQ) * FC_WINO6_ROW8(tile, W, TQ, pl))


def conv2d_winograd(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                    const floating[::1] bias, floating[:, :, :, ::1] y,
                    Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups, int tile,
                    Py_ssize_t block_rows, Py_ssize_t kc_max, floating lim, int n_threads):
    """Forward r x r convolution at stride 1 (no dilation) by Winograd's
    F(m x m, r x r) (Lavin & Gray 2016), m = ``tile``, r the weights' taps:
    F(2x2, 3x3), or m + r = 7 (F(4x4, 3x3), F(2x2, 5x5), F(3x3, 4x4),
    F(5x5, 2x2)): each m x m block of outputs from an (m + r - 1)^2 tile of
    input, that many multiplies per tile and channel pair (16 for F(2x2, 3x3),
    36 for the rest) instead of m^2 r^2.

    The weights are transformed (G g G^T) into packed panels once, per group.
    A work item is ``block_rows`` rows of tiles of one group: its input tiles
    transformed into V[E][C/groups][tiles] (E = (m + r - 1)^2; per-thread, L2),
    then for each of the E elements M[xi] = U[xi] @ V[xi] on the GEMM
    micro-kernels, then the output transform into the NCHW output. Items run
    across images: rows of tiles are numbered through the batch. Returns 0, 1
    when an input element is not finite or above ``lim`` (the output is then
    incomplete: the caller runs another strategy), -1 when out of memory.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = w.shape[0], Cg = w.shape[1], P = y.shape[2], Q = y.shape[3]
    cdef int taps = w.shape[2]
    cdef Py_ssize_t Kg = K // groups
    cdef Py_ssize_t TP = (P + tile - 1) // tile, TQ = (Q + tile - 1) // tile
    cdef Py_ssize_t E = (tile + taps - 1) * (tile + taps - 1)
    cdef Py_ssize_t mr = _isa.mr
    cdef Py_ssize_t nr = _isa.nr_f32 if floating is float else _isa.nr_f64
    cdef Py_ssize_t Kg_pad = (Kg + mr - 1) // mr * mr
    cdef Py_ssize_t n_blocks = (N * TP + block_rows - 1) // block_rows
    # slots per row of tiles: F(2x2, 3x3) has one more than tiles (see _winograd.h)
    cdef Py_ssize_t slots = TQ + 1 if wino_small(tile, taps) else TQ
    # slots per item, the GEMMs' panels whole vectors
    cdef Py_ssize_t ld = (block_rows * slots + nr - 1) // nr * nr
    cdef Py_ssize_t n_buf = wino_buf_size(tile, taps, TQ, pl, W, block_rows * slots)
    cdef Py_ssize_t item, r0, r1, tn, c, k, kb, xi, pb, pc, kc, j, item_ld, g
    cdef bint has_bias = bias is not None
    cdef bint bad = False
    cdef bint *badp = &bad
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    cdef floating *apack = NULL
    cdef floating *ag
    cdef floating *v = NULL
    cdef floating *mm = NULL
    cdef floating *rows = NULL
    cdef floating *vt
    if N == 0 or K == 0:
        return 0
    if w.shape[3] != taps or not (tile + taps == 7 and 2 <= taps <= 5
                                  or tile == 2 and taps == 3):
        raise ValueError(f"conv2d_winograd: F({tile}x{tile}, {w.shape[2]}x{w.shape[3]}) is "
                         f"not one of F(2x2, 3x3), F(4x4, 3x3), F(2x2, 5x5), F(3x3, 4x4), "
                         f"F(5x5, 2x2)")
    apack = <floating *> fc_malloc64(groups * E * Kg_pad * Cg * sizeof(floating))
    if apack == NULL:
        return -1
    with nogil:
        for kb in prange(groups * (Kg_pad // mr), schedule="static", num_threads=n_threads):
            g = kb // (Kg_pad // mr)
            wino_weights(tile, taps, &w[g * Kg, 0, 0, 0], Kg, Cg, kb % (Kg_pad // mr) * mr,
                         apack + g * E * Kg_pad * Cg)
    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        v = <floating *> fc_malloc64(E * Cg * ld * sizeof(floating))
        mm = <floating *> fc_malloc64(E * Kg * ld * sizeof(floating))
        rows = <floating *> fc_malloc64(n_buf * sizeof(floating))
        if v == NULL or mm == NULL or rows == NULL:
            failed[0] = 1
        for item in prange(n_blocks * groups, schedule="static"):
            if failed[0]:
                continue
            # rows of tiles [r0, r1) of the whole batch: tile row r is row r % TP of
            # image r // TP (small images share an item, so the GEMMs get wide)
            g = item % groups
            r0 = item // groups * block_rows
            r1 = min(N * TP, r0 + block_rows)
            tn = (r1 - r0) * slots
            item_ld = (tn + nr - 1) // nr * nr
            ag = apack + g * E * Kg_pad * Cg
            for c in range(Cg):
                if wino_in(tile, taps, &x[0, 0, 0, 0], C, H, W, g * Cg + c, TP, r0, r1, pt, pl,
                           TQ, lim, rows, v + c * item_ld, Cg * item_ld):
                    badp[0] = True
                for xi in range(E):  # the last panel's tail: read, results dropped
                    vt = v + (xi * Cg + c) * item_ld
                    for j in range(tn, item_ld):
                        vt[j] = 0
            for xi in range(E):
                for pb in range((Cg + kc_max - 1) // kc_max):
                    pc = pb * kc_max
                    kc = min(kc_max, Cg - pc)
                    gemm_panels(kc, ag + xi * Kg_pad * Cg + pc * mr, mr, mr * Cg, NULL, Kg,
                                v + (xi * Cg + pc) * item_ld, item_ld, NULL, tn,
                                mm + xi * Kg * item_ld, item_ld, pc > 0)
            for k in range(g * Kg, (g + 1) * Kg):
                wino_out(tile, taps, mm + (k - g * Kg) * item_ld, Kg * item_ld, TP, r0, r1, TQ,
                         bias[k] if has_bias else 0, rows, &y[0, 0, 0, 0], K, k, P, Q)
        fc_free64(v)
        fc_free64(mm)
        fc_free64(rows)
        fc_ftz_restore(fpmode)
    fc_free64(apack)
    if status:
        return -1
    return 1 if bad else 0


# G of F(2x2, 3x3) and of F(4x4, 3x3) (see _winograd.h), row-major: grad_weight's
# back transform G^T dU G
cdef double _G2[12]
cdef double _G4[18]
_G2[:] = [1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0.0, 0.0, 1.0]
_G4[:] = [0.25, 0.0, 0.0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
          1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0.0, 0.0, 1.0]


cdef void wino_back(const floating *du, Py_ssize_t ld, Py_ssize_t Cg, const double *G,
                    Py_ssize_t m2, double *half, floating *gw) noexcept nogil:
    """One output channel's 3x3 gradients G^T dU G for its Cg input channels
    (element xi of channel c at du[xi * ld + c]), in double (G's sixths and
    24ths are inexact); each pass a loop along c, which vectorises (scalar
    per channel, this took an eighth of a 256-channel 14x14 layer). half:
    (3 m2 + 9) Cg doubles."""
    cdef Py_ssize_t a, i, j, c
    cdef double q
    cdef double *h
    cdef double *o = half + 3 * m2 * Cg
    for a in range(m2):  # half = dU G, rows half[3 a + j]
        for j in range(3):
            h = half + (a * 3 + j) * Cg
            for c in range(Cg):
                h[c] = 0
            for i in range(m2):
                q = G[i * 3 + j]
                if q != 0:
                    for c in range(Cg):
                        h[c] += q * du[(a * m2 + i) * ld + c]
    for i in range(3):  # G^T half, rows o[3 i + j]
        for j in range(3):
            h = o + (i * 3 + j) * Cg
            for c in range(Cg):
                h[c] = 0
            for a in range(m2):
                q = G[a * 3 + i]
                if q != 0:
                    for c in range(Cg):
                        h[c] += q * half[(a * 3 + j) * Cg + c]
    for c in range(Cg):
        for i in range(9):
            gw[c * 9 + i] = <floating> o[i * Cg + c]


cdef void wino_gw_gemm(const floating *v, const floating *z, Py_ssize_t ld, Py_ssize_t tn,
                       Py_ssize_t Cg, Py_ssize_t Kg, Py_ssize_t kc_max, floating *vt,
                       floating *zt, floating *du) noexcept nogil:
    """du[Kg, Cg] += Z @ V^T for one element xi of tn tiles (V: Cg rows, Z: Kg
    rows, ld apart): V transposed to [tile][channel], rows zero-padded to
    whole vectors (vt), Z packed into the kernels' panels of mr channels,
    [tile][mr] (zt), then the micro-kernels reduce over the tiles."""
    cdef Py_ssize_t mr = _isa.mr
    cdef Py_ssize_t nr = _isa.nr_f32 if floating is float else _isa.nr_f64
    cdef Py_ssize_t Cg_pad = (Cg + nr - 1) // nr * nr
    cdef Py_ssize_t pb, u0, kc
    transpose(v, Cg, tn, ld, vt, Cg_pad, Cg_pad)
    pack_weights(z, ld, Kg, tn, mr, zt)
    for pb in range((tn + kc_max - 1) // kc_max):
        u0 = pb * kc_max
        kc = min(kc_max, tn - u0)
        gemm_panels(kc, zt + u0 * mr, mr, mr * tn, NULL, Kg, vt + u0 * Cg_pad, Cg_pad, NULL, Cg,
                    du, Cg, 1)


cdef inline int wino_gw_channel(int tile, const floating *x, const floating *gy,
                                Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t K,
                                Py_ssize_t P, Py_ssize_t Q, Py_ssize_t Cg, Py_ssize_t Kg,
                                Py_ssize_t g, Py_ssize_t j, Py_ssize_t TP, Py_ssize_t r0,
                                Py_ssize_t r1, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t TQ,
                                floating lim_x, floating lim_gy, floating *rows, floating *v,
                                floating *z, Py_ssize_t ld) noexcept nogil:
    """Channel j of group g's V (j < Cg: input channel g Cg + j) or Z
    (grad_output channel g Kg + j - Cg) for rows of tiles [r0, r1), element
    xi at v[(xi Cg + j) ld] or z[(xi Kg + j - Cg) ld]; nonzero as wino_in."""
    if j < Cg:
        return wino_in(tile, 3, x, C, H, W, g * Cg + j, TP, r0, r1, pt, pl, TQ, lim_x, rows,
                       v + j * ld, Cg * ld)
    return wino_gy(tile, gy, K, P, Q, g * Kg + j - Cg, TP, r0, r1, TQ, lim_gy, rows,
                   z + (j - Cg) * ld, Kg * ld)


def conv2d_grad_weight_winograd(const floating[:, :, :, ::1] gy,
                                const floating[:, :, :, ::1] x, floating[:, :, :, ::1] gw,
                                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups, int tile,
                                Py_ssize_t block_rows, Py_ssize_t kc_max, floating lim_x,
                                floating lim_gy, bint shared, int n_threads):
    """grad_weight of a 3x3 convolution at stride 1 (no dilation) by
    Winograd's F(m x m, 3x3), m = ``tile``: the forward's y = A^T [U (.) V] A
    (U = G g G^T, V = B^T d B, summed over channels) gives, per element xi of
    the (m + 2)^2, dU[xi][k, c] = sum over tiles of Z[xi][k, tile] V[xi][c,
    tile] with Z = A dy A^T, then dg = G^T dU G: (m + 2)^2 multiplies per tile
    and channel pair instead of 9 m^2.

    Work items are rows of tiles of one group, as conv2d_winograd's: V and Z
    of an item (per-thread, sized as the forward's blocks) from the input and
    grad_output; for each element xi, V[xi] transposed to [tile][channel] (B)
    and Z[xi] packed into panels of mr channels (A), then dU[xi] += Z[xi] @
    V[xi]^T on the GEMM micro-kernels, reducing over the item's tiles,
    accumulated per thread over its items; the threads' dU are summed in
    thread order and transformed back once. ``shared``: one item per group
    (``block_rows`` covers the batch), its V and Z transformed by all the
    threads a channel each, then the elements xi shared among the threads,
    each summing into the one dU (with few tiles, per-thread sums cost more
    than the GEMMs they save). Returns 0, 1 when an input or grad_output element
    is not finite or above ``lim_x`` / ``lim_gy`` (``gw`` is then not
    written: the caller runs another strategy), -1 when out of memory.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = gy.shape[1], P = gy.shape[2], Q = gy.shape[3], Cg = gw.shape[1]
    cdef Py_ssize_t Kg = K // groups
    cdef Py_ssize_t TP = (P + tile - 1) // tile, TQ = (Q + tile - 1) // tile
    cdef Py_ssize_t m2 = tile + 2, E = m2 * m2
    cdef Py_ssize_t mr = _isa.mr
    cdef Py_ssize_t nr = _isa.nr_f32 if floating is float else _isa.nr_f64
    cdef Py_ssize_t Kg_pad = (Kg + mr - 1) // mr * mr, Cg_pad = (Cg + nr - 1) // nr * nr
    cdef Py_ssize_t n_blocks = (N * TP + block_rows - 1) // block_rows
    cdef Py_ssize_t slots = TQ + 1 if wino_small(tile, 3) else TQ  # as the forward's
    cdef Py_ssize_t ld = block_rows * slots
    cdef Py_ssize_t n_buf = wino_buf_size(tile, 3, TQ, pl, W, ld)
    cdef Py_ssize_t wsize = groups * E * Kg * Cg  # one thread's dU
    cdef Py_ssize_t item, r0, r1, tn, c, k, xi, g, tid, t, o, sums
    cdef const double *G = &_G2[0] if tile == 2 else &_G4[0]
    cdef bint bad = False
    cdef bint *badp = &bad
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    cdef floating *acc = NULL
    cdef floating *accp
    cdef floating *v = NULL
    cdef floating *z = NULL
    cdef floating *vt = NULL
    cdef floating *zt = NULL
    cdef floating *rows = NULL
    cdef double *half = NULL
    if tile != 2 and tile != 4:
        raise ValueError(f"conv2d_grad_weight_winograd: tile must be 2 or 4, got {tile}")
    if n_threads < 1:  # the threads' sums are sized by it (OpenMP reads 0 as all)
        raise ValueError(f"conv2d_grad_weight_winograd: n_threads must be at least 1, "
                         f"got {n_threads}")
    if N == 0 or K == 0 or Cg == 0:
        gw[...] = 0
        return 0
    if shared and block_rows < N * TP:
        raise ValueError(f"conv2d_grad_weight_winograd: shared needs block_rows >= "
                         f"{N * TP}, got {block_rows}")
    sums = 1 if shared else n_threads
    acc = <floating *> calloc(sums * wsize, sizeof(floating))
    if acc == NULL:
        return -1
    if shared:
        v = <floating *> fc_malloc64(groups * E * Cg * ld * sizeof(floating))
        z = <floating *> fc_malloc64(groups * E * Kg * ld * sizeof(floating))
        if v == NULL or z == NULL:
            status = 1
        with nogil, parallel(num_threads=n_threads):
            # the batch's V and Z, a channel (of the input or grad_output) at a time
            fpmode = fc_ftz_on()
            rows = <floating *> fc_malloc64(n_buf * sizeof(floating))
            if rows == NULL:
                failed[0] = 1
            for item in prange(groups * (Cg + Kg), schedule="static"):
                if failed[0] or badp[0]:
                    continue
                g = item // (Cg + Kg)
                if wino_gw_channel(tile, &x[0, 0, 0, 0], &gy[0, 0, 0, 0], C, H, W, K, P, Q, Cg,
                                   Kg, g, item % (Cg + Kg), TP, 0, N * TP, pt, pl, TQ, lim_x,
                                   lim_gy, rows, v + g * E * Cg * ld, z + g * E * Kg * ld, ld):
                    badp[0] = True
            fc_free64(rows)
            fc_ftz_restore(fpmode)
        if status == 0 and not bad:
            with nogil, parallel(num_threads=n_threads):
                fpmode = fc_ftz_on()
                vt = <floating *> fc_malloc64(ld * Cg_pad * sizeof(floating))
                zt = <floating *> fc_malloc64(ld * Kg_pad * sizeof(floating))
                if vt == NULL or zt == NULL:
                    failed[0] = 1
                for item in prange(groups * E, schedule="static"):
                    if not failed[0]:
                        wino_gw_gemm(v + item * Cg * ld, z + item * Kg * ld, ld, ld, Cg, Kg,
                                     kc_max, vt, zt, acc + item * Kg * Cg)
                fc_free64(vt)
                fc_free64(zt)
                fc_ftz_restore(fpmode)
        fc_free64(v)
        fc_free64(z)
    else:
        with nogil, parallel(num_threads=n_threads):
            fpmode = fc_ftz_on()
            tid = threadid()
            v = <floating *> fc_malloc64(E * Cg * ld * sizeof(floating))
            z = <floating *> fc_malloc64(E * Kg * ld * sizeof(floating))
            vt = <floating *> fc_malloc64(ld * Cg_pad * sizeof(floating))
            zt = <floating *> fc_malloc64(ld * Kg_pad * sizeof(floating))
            rows = <floating *> fc_malloc64(n_buf * sizeof(floating))
            if v == NULL or z == NULL or vt == NULL or zt == NULL or rows == NULL:
                failed[0] = 1
            for item in prange(n_blocks * groups, schedule="static"):
                if failed[0] or badp[0]:
                    continue
                g = item % groups
                r0 = item // groups * block_rows
                r1 = min(N * TP, r0 + block_rows)
                tn = (r1 - r0) * slots
                for c in range(Cg + Kg):
                    if wino_gw_channel(tile, &x[0, 0, 0, 0], &gy[0, 0, 0, 0], C, H, W, K, P, Q,
                                       Cg, Kg, g, c, TP, r0, r1, pt, pl, TQ, lim_x, lim_gy, rows,
                                       v, z, ld):
                        badp[0] = True
                if badp[0]:
                    continue
                accp = acc + tid * wsize + g * E * Kg * Cg
                for xi in range(E):
                    wino_gw_gemm(v + xi * Cg * ld, z + xi * Kg * ld, ld, tn, Cg, Kg, kc_max, vt,
                                 zt, accp + xi * Kg * Cg)
            fc_free64(v)
            fc_free64(z)
            fc_free64(vt)
            fc_free64(zt)
            fc_free64(rows)
            fc_ftz_restore(fpmode)
    if status == 0 and not bad:
        with nogil, parallel(num_threads=n_threads):
            # the threads' dU summed in thread order into the first's
            for o in prange(wsize if sums > 1 else 0, schedule="static"):
                for t in range(1, sums):
                    acc[o] += acc[t * wsize + o]
        with nogil, parallel(num_threads=n_threads):
            half = <double *> fc_malloc64((3 * m2 + 9) * Cg * sizeof(double))
            if half == NULL:
                failed[0] = 1
            for k in prange(K, schedule="static"):
                if half != NULL:
                    g = k // Kg
                    wino_back(acc + (g * E * Kg + k % Kg) * Cg, Kg * Cg, Cg, G, m2, half,
                              &gw[k, 0, 0, 0])
            fc_free64(half)
    free(acc)
    if status:
        return -1
    return 1 if bad else 0


# --------------------------------------------------------------------------
# A dilated layer's phases (see fastconv._choose.dilated_phases): phase q of
# the batch is image q // (dh dw), phase (a, b) = divmod(q % (dh dw), dw).


cdef struct span:
    Py_ssize_t first  # of a phase's indices, the first inside the input
    Py_ssize_t start  # that input index
    Py_ssize_t count  # how many follow inside it


cdef inline span phase_span(Py_ssize_t a, Py_ssize_t d, Py_ssize_t pad, Py_ssize_t size,
                            Py_ssize_t room) noexcept nogil:
    # phase a of a padded axis holds input index a + d i - pad at i; at most
    # ``room`` indices i (the copy's size). Returned, not written through
    # pointers: prange privatises only the variables its body assigns (shared
    # ones raced between the threads)
    cdef span r
    r.first = (pad - a + d - 1) // d if pad > a else 0
    r.start = a + d * r.first - pad
    r.count = (size - r.start + d - 1) // d if r.start < size else 0
    r.count = max(0, min(r.count, room - r.first))
    return r


def phases_in(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] xs, Py_ssize_t q0,
              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl, int n_threads):
    """xs[k] = phases q0 + k of the zero-padded input, each zero beyond its
    part of the input (NumPy's strided copies ran on one thread, and took a
    quarter of a dilated Winograd call on two)."""
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t hs = xs.shape[2], ws = xs.shape[3]
    cdef Py_ssize_t item, k, c, q, n, i, j
    cdef span rows, cols
    cdef floating *d
    cdef const floating *s
    with nogil:
        for item in prange(xs.shape[0] * C, schedule="static", num_threads=n_threads):
            k = item // C
            c = item % C
            q = q0 + k
            n = q // (dh * dw)
            rows = phase_span(q % (dh * dw) // dw, dh, pt, H, hs)
            cols = phase_span(q % dw, dw, pl, W, ws)
            d = &xs[k, c, 0, 0]
            memset(d, 0, hs * ws * sizeof(floating))
            if cols.count == 0:  # (its start is then past the row)
                continue
            for i in range(rows.count):
                s = &x[n, c, rows.start + dh * i, cols.start]
                for j in range(cols.count):
                    d[(rows.first + i) * ws + cols.first + j] = s[dw * j]


def phases_out(const floating[:, :, :, ::1] ys, floating[:, :, :, ::1] y, Py_ssize_t q0,
               Py_ssize_t dh, Py_ssize_t dw, int n_threads):
    """Phases q0 + k of the output from ys[k] (the first of its rows and
    columns that the phase has)."""
    cdef Py_ssize_t K = y.shape[1], P = y.shape[2], Q = y.shape[3]
    cdef Py_ssize_t item, k, c, q, n, i, j
    cdef span rows, cols
    cdef floating *d
    cdef const floating *s
    with nogil:
        for item in prange(ys.shape[0] * K, schedule="static", num_threads=n_threads):
            k = item // K
            c = item % K
            q = q0 + k
            n = q // (dh * dw)
            # the output's phase (a, b) as an unpadded axis's: from row a, column b
            rows = phase_span(q % (dh * dw) // dw, dh, 0, P, ys.shape[2])
            cols = phase_span(q % dw, dw, 0, Q, ys.shape[3])
            if cols.count == 0:  # (its start is then past the row)
                continue
            for i in range(rows.count):
                s = &ys[k, c, i, 0]
                d = &y[n, c, rows.start + dh * i, cols.start]
                for j in range(cols.count):
                    d[dw * j] = s[j]


# --------------------------------------------------------------------------
# grad_input's weights (see fastconv._choose.grad_input_geometry)


def flip_transpose(const floating[:, :, :, ::1] w, floating[:, :, :, ::1] wt,
                   Py_ssize_t groups, int n_threads):
    """wt[g Cg + c, k, R-1-r, S-1-s] = w[g Kg + k, c, r, s]: each group's
    weights transposed, each tap flipped (reversing the R x S taps flipped
    both axes), 8 x 8 blocks of (k, c) at a time, so that the rows read and
    the rows written stay in L1 (NumPy's strided copy, 9 values at a time,
    took 4.3x a plain copy: 0.9 ms of b2-3x3-256's 11.7 ms backward)."""
    cdef Py_ssize_t K = w.shape[0], Cg = w.shape[1], T = w.shape[2] * w.shape[3]
    cdef Py_ssize_t Kg = K // groups, kb = (Kg + 7) // 8
    cdef Py_ssize_t item, g, k0, c0, k, c, t
    cdef const floating *src
    cdef floating *dst
    with nogil:
        for item in prange(groups * kb, schedule="static", num_threads=n_threads):
            g = item // kb
            k0 = item % kb * 8
            for c0 in range(0, Cg, 8):
                for k in range(g * Kg + k0, g * Kg + min(k0 + 8, Kg)):
                    for c in range(c0, min(c0 + 8, Cg)):
                        src = &w[k, c, 0, 0]
                        dst = &wt[g * Cg + c, k - g * Kg, 0, 0]
                        for t in range(T):
                            dst[t] = src[T - 1 - t]
