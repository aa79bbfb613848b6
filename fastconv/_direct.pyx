# cython: language_level=3
"""Direct convolution, forward and backward, on register-blocked SIMD micro-kernels.

The method is Zhang, Franchetti and Low's ("High Performance Zero-Memory
Overhead Direct Convolutions", ICML 2018): a tile of output channels x a run
of output pixels lives in vector registers while the loops over input
channels and kernel taps run inside, the weights repacked once per call so
that the kernel reads them in order.  The micro-kernels
(``_direct_simd_tmpl.h``) are compiled for AVX-512, AVX2+FMA and a baseline
and chosen at run time (``set_simd_variant`` forces one).

The buffer: runs of consecutive loads
-------------------------------------
Each work item (image, group, band of output rows) copies the input rows its
band reads into a small per-thread buffer, zero-padded and split by stride
into ``sh * sw`` phase planes (plane (a, b) holds padded rows ``i*sh + a``
and columns ``j*sw + b``).  Output pixel (p, q) of the band then reads
buffer row p + r' and column q + s' of one plane for each tap: whatever the
stride, padding or dilation, consecutive output pixels read consecutive
input, at an offset per tap (``toff``).

Three layouts of the results (_choose_mode picks the cheapest)
--------------------------------------------------------------
- rows (_ROWS): pixels in lanes, the weights broadcast; tiles of up to 8
  output channels x rows x vectors along a row (several rows when a row is
  short), stored straight into the output.  3x3 depthwise layers with stride
  1 in rows take a kernel of their own (``prow_dw3``): each input row is
  loaded once for the three output rows it reaches, the nine weights stay in
  registers.
- wide grid (_WIDE): pixels in lanes over the band as one run of
  ``rows * Wb`` positions (buffer rows are ``Wb = Q + (S-1)*dw // sw`` long,
  so position p*Wb + q is pixel (p, q)); the ``Wb - Q`` columns at the end of
  each row are computed and dropped, the others copied out.  Best for short
  rows with few output channels.
- channels in lanes (_LANES): vectors of output channels, the input
  broadcast (one multiply-add per broadcast, folded into it on AVX-512);
  tiles of two vectors of channels x up to 14 pixels (6 below AVX-512)
  transposed into place; below AVX-512 the tiles run on across the ends of
  contiguous output rows (14-pixel rows as 6-pixel tiles, not 5 + 5 + 4).
  Best when the channels fill whole vectors better than a row's pixels do:
  LeNet's second layer, and the deep layers of short rows (ResNet's 14x14
  and 7x7 outputs), which waste no lanes on padding.

grad_input is the same computation run backwards: for each phase (a, b) of
the input (rows ``h = u*sh + a - pt``), only the taps with ``r*dh % sh == a``
(and likewise columns) reach it, and they form a stride-1 convolution of the
zero-padded grad_output, so it runs on the same kernels with grad_output as
input and the roles of K and C exchanged.  Each work item writes its own
rows of grad_input: no races, no reduction.

Depthwise layers at stride 2 (dilation 1) skip the phase planes, which cost
them a padded copy per phase, stores two elements apart and tiles of 8
channels with one to fill: each input row is split into its even and odd
columns in registers (``dw2_split``, into a small ring of rows), from which
every tap of the forward pass and of grad_weight reads a run of consecutive
values; grad_input computes its even and odd columns as two stride-1 sums of
grad_output and interleaves them as it stores them (``dw2_gx``). Backward
1.6x PyTorch on MobileNet's 3x3 stride-2 block at one thread, where the
general path ran 0.98x.

Depthwise layers on short rows, or with no kernel of rows of their own
(5x5 and 7x7 at stride 1, other strides, dilation), take channels in lanes
instead (``dwc_fwd``, ``dwc_bwd``): per image and block of VL channels, the
planes are transposed into a zero-padded [pixel][channel] block, so every
tap is one whole-vector load and one multiply-add for VL channels, with no
lanes lost to rows of 7 or 14 pixels; grad_input gathers, per phase of the
input, the taps that reach it from a zero-padded copy of grad_output, and
grad_weight is owned per channel block (no partials). Measured at one thread
(float32, Zen 4) on MobileNet's blocks: forward 1.4-2.1x PyTorch where the
row kernels ran 0.3-0.9x, backward 1.5-6x. ``_dwc_fits`` holds the rule.

grad_weight reduces over pixels: channels in lanes (grad_output transposed
to [pixel][channel], only the output's pixels visited) or, for few output
channels, over the wide grid with zeros in the dropped columns (a band
whose input holds an inf or a NaN takes an exact scalar path there, because
0 * inf in a dropped column would be a NaN that PyTorch does not produce).
Partials are per thread, summed once at the end; when those copies of the
weight would be large, work items are (group, channel block) instead and
each owns its rows of grad_weight.

Memory: per thread, one band of the input (sized by ``BAND_BYTES``) and of
the results; grad_weight's partials are bounded by ``PARTIAL_BYTES`` and
``VACC_BYTES``.  Conventions (arguments, return codes: 0, or -1 when a
workspace allocation failed) are those of ``_conv.pyx``.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from fastconv._types cimport end_valid, fc_free64, fc_malloc64, first_valid, floating

cdef extern from "_fpmode.h" nogil:
    # flush-to-zero in each kernel thread, restored when it leaves (see the header)
    unsigned int fc_ftz_on()
    void fc_ftz_restore(unsigned int mode)

cdef extern from "_direct_simd.h" nogil:
    int FC_ISA_BASELINE
    int fc_isa_supported(int isa)
    int fc_best_isa()
    ptrdiff_t fc_vec_len(int isa, size_t size)
    Py_ssize_t fc_pband_kb(int isa, Py_ssize_t n)
    int fc_gband_kbmax(int isa)
    void fc_pband_f32(int isa, int kb, const float *x, ptrdiff_t cs, ptrdiff_t nc,
                      const ptrdiff_t *toff, ptrdiff_t nt, const float *w, const float *bias,
                      float *out, ptrdiff_t ldo, ptrdiff_t J)
    void fc_pband_f64(int isa, int kb, const double *x, ptrdiff_t cs, ptrdiff_t nc,
                      const ptrdiff_t *toff, ptrdiff_t nt, const double *w, const double *bias,
                      double *out, ptrdiff_t ldo, ptrdiff_t J)
    void fc_prow_f32(int isa, int kb, const float *x, ptrdiff_t cs, ptrdiff_t nc,
                     const ptrdiff_t *toff, ptrdiff_t nt, const float *w, const float *bias,
                     float *out, ptrdiff_t ldo, ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows,
                     ptrdiff_t xrs)
    void fc_prow_f64(int isa, int kb, const double *x, ptrdiff_t cs, ptrdiff_t nc,
                     const ptrdiff_t *toff, ptrdiff_t nt, const double *w, const double *bias,
                     double *out, ptrdiff_t ldo, ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows,
                     ptrdiff_t xrs)
    void fc_gband_f32(int isa, int kb, const float *g, ptrdiff_t ldg, const float *x,
                      const ptrdiff_t *toff, ptrdiff_t nt, ptrdiff_t J, float *gw, ptrdiff_t ldk,
                      int vacc)
    void fc_gband_f64(int isa, int kb, const double *g, ptrdiff_t ldg, const double *x,
                      const ptrdiff_t *toff, ptrdiff_t nt, ptrdiff_t J, double *gw,
                      ptrdiff_t ldk, int vacc)
    int fc_all_finite_f32(int isa, const float *p, ptrdiff_t n)
    int fc_all_finite_f64(int isa, const double *p, ptrdiff_t n)
    double fc_sum_f32(int isa, const float *p, ptrdiff_t n)
    double fc_sum_f64(int isa, const double *p, ptrdiff_t n)
    void fc_fill_f32(int isa, const float *src, ptrdiff_t nch, ptrdiff_t Hs, ptrdiff_t Ws,
                     ptrdiff_t h_end, ptrdiff_t w_end, ptrdiff_t sh, ptrdiff_t sw,
                     ptrdiff_t row0, ptrdiff_t col0, ptrdiff_t Bh, ptrdiff_t Wb,
                     ptrdiff_t i_begin, ptrdiff_t i_end, float *buf)
    void fc_fill_f64(int isa, const double *src, ptrdiff_t nch, ptrdiff_t Hs, ptrdiff_t Ws,
                     ptrdiff_t h_end, ptrdiff_t w_end, ptrdiff_t sh, ptrdiff_t sw,
                     ptrdiff_t row0, ptrdiff_t col0, ptrdiff_t Bh, ptrdiff_t Wb,
                     ptrdiff_t i_begin, ptrdiff_t i_end, double *buf)
    void fc_copy_f32(int isa, float *dst, const float *src, ptrdiff_t n)
    void fc_copy_f64(int isa, double *dst, const double *src, ptrdiff_t n)
    int fc_krow_kvmax(int isa)
    int fc_kgband_kvmax(int isa)
    int fc_krow_kv(ptrdiff_t n)
    void fc_krow_f32(int isa, int kv, const float *x, ptrdiff_t cs, ptrdiff_t nc,
                     const ptrdiff_t *toff, ptrdiff_t nt, const float *w, const float *bias,
                     float *out, ptrdiff_t ldo, ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows,
                     ptrdiff_t xrs, ptrdiff_t kk)
    void fc_krow_f64(int isa, int kv, const double *x, ptrdiff_t cs, ptrdiff_t nc,
                     const ptrdiff_t *toff, ptrdiff_t nt, const double *w, const double *bias,
                     double *out, ptrdiff_t ldo, ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows,
                     ptrdiff_t xrs, ptrdiff_t kk)
    void fc_kgband_f32(int isa, int kv, const float *g, ptrdiff_t ldg, const float *x,
                       const ptrdiff_t *toff, ptrdiff_t nt, ptrdiff_t Q, ptrdiff_t nrows,
                       ptrdiff_t xrs, float *part, ptrdiff_t ldp)
    void fc_kgband_f64(int isa, int kv, const double *g, ptrdiff_t ldg, const double *x,
                       const ptrdiff_t *toff, ptrdiff_t nt, ptrdiff_t Q, ptrdiff_t nrows,
                       ptrdiff_t xrs, double *part, ptrdiff_t ldp)
    void fc_prow_dw3_f32(int isa, const float *x, ptrdiff_t xrs, const ptrdiff_t *co,
                         const float *w, ptrdiff_t ws, const float *bias, float *out,
                         ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows)
    void fc_prow_dw3_f64(int isa, const double *x, ptrdiff_t xrs, const ptrdiff_t *co,
                         const double *w, ptrdiff_t ws, const double *bias, double *out,
                         ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows)
    ptrdiff_t fc_dw2_split_len(int isa, size_t size, ptrdiff_t Q, ptrdiff_t S)
    ptrdiff_t fc_dw2_ring_len(int isa, size_t size, ptrdiff_t Q, ptrdiff_t R, ptrdiff_t S)
    void fc_dw2_fwd_f32(int isa, const float *x, ptrdiff_t H, ptrdiff_t W, const float *w,
                        ptrdiff_t R, ptrdiff_t S, float b, float *y, ptrdiff_t P, ptrdiff_t Q,
                        ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t Jn, float *ring)
    void fc_dw2_fwd_f64(int isa, const double *x, ptrdiff_t H, ptrdiff_t W, const double *w,
                        ptrdiff_t R, ptrdiff_t S, double b, double *y, ptrdiff_t P,
                        ptrdiff_t Q, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t Jn, double *ring)
    void fc_dw2_gx_f32(int isa, const float *gy, ptrdiff_t P, ptrdiff_t Q, const float *w,
                       ptrdiff_t R, ptrdiff_t S, ptrdiff_t pt, ptrdiff_t pl, float *gx,
                       ptrdiff_t H, ptrdiff_t W)
    void fc_dw2_gx_f64(int isa, const double *gy, ptrdiff_t P, ptrdiff_t Q, const double *w,
                       ptrdiff_t R, ptrdiff_t S, ptrdiff_t pt, ptrdiff_t pl, double *gx,
                       ptrdiff_t H, ptrdiff_t W)
    void fc_dw2_gw_f32(int isa, const float *x, ptrdiff_t xn, ptrdiff_t H, ptrdiff_t W,
                       const float *gy, ptrdiff_t gn, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t N,
                       ptrdiff_t R, ptrdiff_t S, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t Jn,
                       float *ring, float *gw)
    void fc_dw2_gw_f64(int isa, const double *x, ptrdiff_t xn, ptrdiff_t H, ptrdiff_t W,
                       const double *gy, ptrdiff_t gn, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t N,
                       ptrdiff_t R, ptrdiff_t S, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t Jn,
                       double *ring, double *gw)
    void fc_dwc_fwd_f32(int isa, const float *x, ptrdiff_t cs, ptrdiff_t nc, ptrdiff_t H,
                        ptrdiff_t W, const float *wt, const ptrdiff_t *toff,
                        const ptrdiff_t *widx, ptrdiff_t nt, ptrdiff_t S, ptrdiff_t dw,
                        ptrdiff_t rstep, const float *bias, float *y,
                        ptrdiff_t P, ptrdiff_t Q, ptrdiff_t sh, ptrdiff_t sw, float *xb,
                        ptrdiff_t Wp, const ptrdiff_t *xpo, float *yb)
    void fc_dwc_fwd_f64(int isa, const double *x, ptrdiff_t cs, ptrdiff_t nc, ptrdiff_t H,
                        ptrdiff_t W, const double *wt, const ptrdiff_t *toff,
                        const ptrdiff_t *widx, ptrdiff_t nt, ptrdiff_t S, ptrdiff_t dw,
                        ptrdiff_t rstep, const double *bias, double *y,
                        ptrdiff_t P, ptrdiff_t Q, ptrdiff_t sh, ptrdiff_t sw, double *xb,
                        ptrdiff_t Wp, const ptrdiff_t *xpo, double *yb)
    void fc_dwc_bwd_f32(int isa, const float *x, ptrdiff_t xn, ptrdiff_t cs, const float *gy,
                        ptrdiff_t gn, ptrdiff_t gs, ptrdiff_t nc, ptrdiff_t N, ptrdiff_t H,
                        ptrdiff_t W, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t sh, ptrdiff_t sw,
                        ptrdiff_t pt, ptrdiff_t pl, const float *wt, const ptrdiff_t *toff,
                        ptrdiff_t nt, const ptrdiff_t *ph, const ptrdiff_t *gtoff,
                        const ptrdiff_t *gwidx, float *gx, float *gw, float *xb, ptrdiff_t Wp,
                        const ptrdiff_t *xpo, float *gb, ptrdiff_t Qp, ptrdiff_t goff,
                        const ptrdiff_t *gpo, float *xo, float *acc)
    void fc_dwc_bwd_f64(int isa, const double *x, ptrdiff_t xn, ptrdiff_t cs,
                        const double *gy, ptrdiff_t gn, ptrdiff_t gs, ptrdiff_t nc, ptrdiff_t N,
                        ptrdiff_t H, ptrdiff_t W, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t sh,
                        ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl, const double *wt,
                        const ptrdiff_t *toff, ptrdiff_t nt, const ptrdiff_t *ph,
                        const ptrdiff_t *gtoff, const ptrdiff_t *gwidx, double *gx,
                        double *gw, double *xb, ptrdiff_t Wp, const ptrdiff_t *xpo,
                        double *gb, ptrdiff_t Qp, ptrdiff_t goff, const ptrdiff_t *gpo,
                        double *xo, double *acc)
    void fc_transpose_f32(int isa, float *dst, ptrdiff_t ldd, const float *src, ptrdiff_t lds,
                          ptrdiff_t nk, ptrdiff_t nkp, ptrdiff_t nj)
    void fc_transpose_f64(int isa, double *dst, ptrdiff_t ldd, const double *src,
                          ptrdiff_t lds, ptrdiff_t nk, ptrdiff_t nkp, ptrdiff_t nj)


#: bytes of one band's buffers (input rows + results): well inside L2
BAND_BYTES = 192 * 1024
#: below this many bytes per step of the buffer's fill (a few source
#: planes' rows: depthwise, LeNet's first layer) the band is filled at once
#: and run in one kernel call: such steps are too short to overlap with the
#: kernel. Against a step per 256 results: dw-3x3-128 forward 1.04-1.29x
#: faster, its backward 1.01-1.13x, the stride-2 depthwise mb-dw-s2 1.2x,
#: LeNet-c1 1.03-1.05x, no layer of the yardstick or off it slower (AVX2
#: and AVX-512; 4 KiB missed mb-dw-s2, 64 KiB gained nothing more)
FILL_AHEAD_BYTES = 16384

# --------------------------------------------------------------------------
# instruction set

_ISA_NAMES = ("baseline", "avx2", "avx512")
cdef int _isa = fc_best_isa()


def simd_variants():
    """The SIMD variants this CPU can run, fastest first (as in _conv and _pool)."""
    return [name for i, name in reversed(list(enumerate(_ISA_NAMES))) if fc_isa_supported(i)]


def simd_variant():
    """The SIMD variant the kernels run."""
    return _ISA_NAMES[_isa]


def set_simd_variant(name=None):
    """Force a SIMD variant (for tests and benchmarks); None restores the fastest."""
    global _isa
    if name is None:
        _isa = fc_best_isa()
        return
    if name not in _ISA_NAMES or not fc_isa_supported(_ISA_NAMES.index(name)):
        raise ValueError(
            f"set_simd_variant: name must be one of {simd_variants()} or None, got {name!r}"
        )
    _isa = _ISA_NAMES.index(name)


# --------------------------------------------------------------------------
# switches for tests

# how a band computes its results
cdef enum:
    _WIDE = 0       # pixels in lanes over the wide grid, copied out row by row
    _ROWS = 1       # pixels in lanes, rows stored in place
    _LANES = 2      # output channels in lanes, pixel tiles transposed into place

_LAYOUTS = ("auto", "rows", "wide", "lanes")
cdef int _layout = 0
cdef bint _dw_enabled = True


def set_layout(layout="auto"):
    """Force the kernels' layout (for tests): ``"rows"`` (pixels in lanes,
    stored in place row by row where the column stride allows it), ``"wide"``
    (pixels in lanes over the wide grid), ``"lanes"`` (output channels in
    lanes, for the forward pass, grad_weight and grad_input at stride 1;
    grad_input at a larger stride, which stores its results strided, then
    takes the cheaper of the other two; depthwise layers take their
    channels-in-lanes kernels wherever the block fits, which "rows" and
    "wide" never do) or ``"auto"`` (the cheapest, by _choose_mode and
    _dwc_fits)."""
    global _layout
    if layout not in _LAYOUTS:
        raise ValueError(f"set_layout: layout must be one of {_LAYOUTS}, got {layout!r}")
    _layout = _LAYOUTS.index(layout)


def set_depthwise_kernel(enabled=True):
    """Whether depthwise layers take their own kernels where they have one
    (channels in lanes where the block fits; 3x3 at stride 1 in rows;
    forward and backward at stride 2) or the general ones (for tests; on by
    default)."""
    global _dw_enabled
    _dw_enabled = bool(enabled)


# --------------------------------------------------------------------------
# helpers

#: bytes of all threads' vector partials of grad_weight above which each
#: kernel call reduces its accumulators across lanes instead
VACC_BYTES = 4 * 1024 * 1024
#: bytes of all threads' partial grad_weights above which grad_weight is
#: split by blocks of output channels instead (each block visiting every
#: image), so that no thread needs a copy of the whole weight
PARTIAL_BYTES = 16 * 1024 * 1024


# (cdivision is on: / and // truncate towards zero)
cdef inline Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """ceil(a / b) for b > 0 and any a."""
    cdef Py_ssize_t q = a // b
    return q + 1 if a % b != 0 and a > 0 else q


cdef inline Py_ssize_t _fdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """floor(a / b) for b > 0 and any a."""
    cdef Py_ssize_t q = a // b
    return q - 1 if a % b != 0 and a < 0 else q


cdef inline Py_ssize_t _round_up(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return _cdiv(a, b) * b


cdef inline Py_ssize_t _lane_width(Py_ssize_t n, Py_ssize_t VL) noexcept nogil:
    """Channels a channels-in-lanes block of ``n`` channels takes: whole
    vectors, as many as the kernel runs for them (1, 2 or 4)."""
    return VL * fc_krow_kv(_cdiv(n, VL))


cdef Py_ssize_t _lane_blocks(Py_ssize_t n, Py_ssize_t kvmax, Py_ssize_t VL,
                             Py_ssize_t *nblk, Py_ssize_t *width) noexcept nogil:
    """Split ``n`` channels into ``nblk`` blocks of ``width`` channels, whole
    vectors and at most ``kvmax`` of them, the last block narrower; returns
    the channels as packed, the last block padded with zeros to whole vectors."""
    nblk[0] = _cdiv(n, kvmax * VL)
    width[0] = _lane_width(_cdiv(n, nblk[0]), VL)
    return (nblk[0] - 1) * width[0] + _lane_width(n - (nblk[0] - 1) * width[0], VL)


cdef inline floating *_aligned(void *p, floating *like) noexcept nogil:
    """p rounded up to 64 bytes (``like`` only selects the type)."""
    return <floating *> ((<uintptr_t> p + 63) & ~(<uintptr_t> 63))


cdef Py_ssize_t _band_rows(Py_ssize_t rows, Py_ssize_t row_bytes, Py_ssize_t outer,
                           int n_threads):
    """Rows per band: a band's buffers fit BAND_BYTES, and the work items
    (``outer`` x bands) keep every thread busy."""
    cdef Py_ssize_t nb = max(1, min(rows, BAND_BYTES // max(1, row_bytes)))
    cdef Py_ssize_t nbands = _cdiv(rows, nb)
    if outer % n_threads and outer * nbands < 8 * n_threads:
        # few items: make their number a multiple of the thread count
        while (outer * nbands) % n_threads and nbands < rows:
            nbands += 1
        nb = _cdiv(rows, nbands)
    return nb


cdef Py_ssize_t _rows_per_call(Py_ssize_t ncols, Py_ssize_t nb, Py_ssize_t planes,
                               Py_ssize_t Wb, Py_ssize_t itemsize):
    """Result rows per kernel call in _ROWS and _LANES: about 256 results,
    the buffer filled that far ahead (so that reading the source and the
    multiply-adds overlap), unless a step's fill would move fewer than
    FILL_AHEAD_BYTES: then the whole band (of nb rows) at once."""
    cdef Py_ssize_t rows = max(1, 256 // max(1, ncols))
    if planes * rows * Wb * itemsize < FILL_AHEAD_BYTES:
        return nb
    return rows


cdef int _choose_mode(int isa, Py_ssize_t nout, Py_ssize_t ncols, Py_ssize_t Wb_wide,
                      Py_ssize_t depth, Py_ssize_t VL, bint rows_ok, bint lanes_ok) noexcept nogil:
    """The cheapest way to compute ``nout`` channels of rows of ``ncols``
    results, each a sum of ``depth`` products, counted in multiply-adds of
    single lanes per result row:

    - rows (pixels in lanes, stored in place): ceil(ncols / VL) whole vectors;
    - wide grid: ``Wb_wide`` columns, plus a copy of each result (4);
    - channels in lanes: ``nout`` rounded up to whole vectors, plus moving
      each result from its tile into place (VL: on AVX2 and AVX-512 tiles are
      transposed VL x VL in registers; measured, ResNet's 56x56 64-channel
      layer ran 8-10% faster in lanes than on the wide grid in float32 on
      AVX-512; 2 * VL on the baseline, where a scalar move costs about two
      vector multiply-adds).

    Measured correction (AVX-512, one thread): rows shorter than two vectors
    run their tiles about 10% slower than the wide grid's one long run
    (ResNet's 14x14 layers). ``lanes_ok``: whether channels in lanes can
    store the results (they must lie in contiguous rows).
    """
    cdef Py_ssize_t rows = nout * _round_up(ncols, VL) * depth
    if ncols < 2 * VL:
        rows += rows // 10
    cdef Py_ssize_t wide = nout * (Wb_wide * depth + 4 * ncols)
    cdef Py_ssize_t move = 2 * VL if isa == FC_ISA_BASELINE else VL
    cdef Py_ssize_t lanes = _round_up(nout, VL) * ncols * depth + nout * ncols * move
    cdef int best = _WIDE
    cdef Py_ssize_t cost = wide
    if _layout == 1:
        return _ROWS if rows_ok else _WIDE
    if _layout == 2:
        return _WIDE
    if _layout == 3 and lanes_ok:
        return _LANES
    if rows_ok and rows <= cost:
        best = _ROWS
        cost = rows
    if lanes_ok and _layout == 0 and lanes < cost:
        best = _LANES
    return best


cdef inline void _fill(int isa, const floating *src, Py_ssize_t nch, Py_ssize_t Hs,
                       Py_ssize_t Ws, Py_ssize_t h_end, Py_ssize_t w_end, Py_ssize_t sh,
                       Py_ssize_t sw, Py_ssize_t row0, Py_ssize_t col0, Py_ssize_t Bh,
                       Py_ssize_t Wb, Py_ssize_t i_begin, Py_ssize_t i_end,
                       floating *buf) noexcept nogil:
    """Copy rows of the planes ``src[c]`` (Hs x Ws) into phase planes:
    ``buf[((c*sh + a)*sw + b)*Bh*Wb + i*Wb + j] = src[c, row0 + i*sh + a, col0 + j*sw + b]``
    for i in [i_begin, i_end), where that row is in [0, h_end) and that
    column in [0, w_end), else 0."""
    if floating is float:
        fc_fill_f32(isa, src, nch, Hs, Ws, h_end, w_end, sh, sw, row0, col0, Bh, Wb,
                    i_begin, i_end, buf)
    else:
        fc_fill_f64(isa, src, nch, Hs, Ws, h_end, w_end, sh, sw, row0, col0, Bh, Wb,
                    i_begin, i_end, buf)


cdef inline void _copy(int isa, floating *dst, const floating *src, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fc_copy_f32(isa, dst, src, n)
    else:
        fc_copy_f64(isa, dst, src, n)


cdef inline void _pband(int isa, int kb, const floating *x, Py_ssize_t cs, Py_ssize_t nc,
                        const ptrdiff_t *toff, Py_ssize_t nt, const floating *w,
                        const floating *bias, floating *out, Py_ssize_t ldo,
                        Py_ssize_t J) noexcept nogil:
    if floating is float:
        fc_pband_f32(isa, kb, x, cs, nc, toff, nt, w, bias, out, ldo, J)
    else:
        fc_pband_f64(isa, kb, x, cs, nc, toff, nt, w, bias, out, ldo, J)


cdef inline void _prow(int isa, int kb, const floating *x, Py_ssize_t cs, Py_ssize_t nc,
                       const ptrdiff_t *toff, Py_ssize_t nt, const floating *w,
                       const floating *bias, floating *out, Py_ssize_t ldo, Py_ssize_t ors,
                       Py_ssize_t Q, Py_ssize_t nrows, Py_ssize_t xrs) noexcept nogil:
    if floating is float:
        fc_prow_f32(isa, kb, x, cs, nc, toff, nt, w, bias, out, ldo, ors, Q, nrows, xrs)
    else:
        fc_prow_f64(isa, kb, x, cs, nc, toff, nt, w, bias, out, ldo, ors, Q, nrows, xrs)


cdef inline void _gband(int isa, int kb, const floating *g, Py_ssize_t ldg,
                        const floating *x, const ptrdiff_t *toff, Py_ssize_t nt,
                        Py_ssize_t J, floating *gw, Py_ssize_t ldk, bint vacc) noexcept nogil:
    if floating is float:
        fc_gband_f32(isa, kb, g, ldg, x, toff, nt, J, gw, ldk, vacc)
    else:
        fc_gband_f64(isa, kb, g, ldg, x, toff, nt, J, gw, ldk, vacc)


cdef inline void _krow(int isa, int kv, const floating *x, Py_ssize_t cs, Py_ssize_t nc,
                       const ptrdiff_t *toff, Py_ssize_t nt, const floating *w,
                       const floating *bias, floating *out, Py_ssize_t ldo, Py_ssize_t ors,
                       Py_ssize_t Q, Py_ssize_t nrows, Py_ssize_t xrs,
                       Py_ssize_t kk) noexcept nogil:
    if floating is float:
        fc_krow_f32(isa, kv, x, cs, nc, toff, nt, w, bias, out, ldo, ors, Q, nrows, xrs, kk)
    else:
        fc_krow_f64(isa, kv, x, cs, nc, toff, nt, w, bias, out, ldo, ors, Q, nrows, xrs, kk)


cdef inline void _kgband(int isa, int kv, const floating *g, Py_ssize_t ldg,
                         const floating *x, const ptrdiff_t *toff, Py_ssize_t nt, Py_ssize_t Q,
                         Py_ssize_t nrows, Py_ssize_t xrs, floating *part,
                         Py_ssize_t ldp) noexcept nogil:
    if floating is float:
        fc_kgband_f32(isa, kv, g, ldg, x, toff, nt, Q, nrows, xrs, part, ldp)
    else:
        fc_kgband_f64(isa, kv, g, ldg, x, toff, nt, Q, nrows, xrs, part, ldp)


cdef inline void _prow_dw3(int isa, const floating *x, Py_ssize_t xrs, const ptrdiff_t *co,
                           const floating *w, Py_ssize_t ws, const floating *bias,
                           floating *out, Py_ssize_t ors, Py_ssize_t Q,
                           Py_ssize_t nrows) noexcept nogil:
    if floating is float:
        fc_prow_dw3_f32(isa, x, xrs, co, w, ws, bias, out, ors, Q, nrows)
    else:
        fc_prow_dw3_f64(isa, x, xrs, co, w, ws, bias, out, ors, Q, nrows)


cdef inline void _transpose(int isa, floating *dst, Py_ssize_t ldd, const floating *src,
                            Py_ssize_t lds, Py_ssize_t nk, Py_ssize_t nkp,
                            Py_ssize_t nj) noexcept nogil:
    if floating is float:
        fc_transpose_f32(isa, dst, ldd, src, lds, nk, nkp, nj)
    else:
        fc_transpose_f64(isa, dst, ldd, src, lds, nk, nkp, nj)


cdef inline bint _all_finite(int isa, const floating *p, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fc_all_finite_f32(isa, p, n)
    else:
        return fc_all_finite_f64(isa, p, n)


cdef void _phase_offsets(Py_ssize_t R, Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t Bh, Py_ssize_t Wb,
                         ptrdiff_t *toff) noexcept nogil:
    """Offset of tap (r, s) in the phase-plane buffer written by _fill."""
    cdef Py_ssize_t r, s
    for r in range(R):
        for s in range(S):
            toff[r * S + s] = ((((r * dh) % sh) * sw + (s * dw) % sw) * Bh
                               + (r * dh) // sh) * Wb + (s * dw) // sw


# --------------------------------------------------------------------------
# one band: a stride-1 convolution of a buffer


cdef struct Band:
    # the source planes and how they are copied into the buffer (see _fill)
    Py_ssize_t nch          # source channels (the reduction)
    Py_ssize_t Hs, Ws       # source plane shape
    Py_ssize_t h_end, w_end # source rows / columns beyond these read as zeros
    Py_ssize_t fsh, fsw     # phase split of the copy (the stride; 1 for grad_input)
    Py_ssize_t col0         # source column of buffer column 0
    Py_ssize_t Bh, Wb       # rows and row length of one buffer plane
    Py_ssize_t maxro        # most buffer rows a tap reaches below its result row
    Py_ssize_t nt           # taps (offsets in toff)
    # the results and where they go
    Py_ssize_t nout, kbs    # result channels, channels per kernel call
    Py_ssize_t ldo, ors, ocs  # destination strides: channel, row, column
    Py_ssize_t ncols        # result columns
    Py_ssize_t rows_per_call  # _ROWS and _LANES: result rows per kernel call
    int mode                # _WIDE, _ROWS (ocs == 1) or _LANES (ocs == 1)
    # _ROWS with one source channel and 3x3 taps on consecutive buffer rows
    # (depthwise, stride 1 in rows, no row dilation): tap (r, s) of the
    # buffer (row r, column offset co3[s]) is packed tap dw3_t0 + (3r + s) *
    # dw3_dir (forward: 0, +1; grad_input, whose taps are flipped: 8, -1)
    bint dw3
    ptrdiff_t co3[3]
    Py_ssize_t dw3_t0, dw3_dir


cdef void _run_band(int isa, const Band *bd, const floating *src, Py_ssize_t row0,
                    const ptrdiff_t *toff, const floating *wts, const floating *bias,
                    floating *dst, Py_ssize_t nrows, floating *buf, floating *obuf,
                    Py_ssize_t VL) noexcept nogil:
    """Result rows [0, nrows) of one band: buffer row i + offset of a tap is
    what result row i reads, source row ``row0 + i*fsh + phase`` is buffer row i.

    Weights: ``wts`` holds the blocks of ``kbs`` result channels one after the
    other, each as [source channel][tap][channel in block] (for _LANES the
    last block padded with zeros to whole vectors, and ``bias`` padded the
    same way). _ROWS and _LANES fill the buffer ``rows_per_call`` rows ahead
    of the results (see _rows_per_call) and store
    each row in place; _WIDE fills the band at once, computes ``nrows * Wb``
    positions and copies the ``ncols`` valid ones of each row out.
    """
    cdef Py_ssize_t cs = bd.fsh * bd.fsw * bd.Bh * bd.Wb
    cdef Py_ssize_t nc = bd.nch if bd.nt else 0
    cdef Py_ssize_t nblk = _cdiv(bd.nout, bd.kbs)
    cdef Py_ssize_t kbi, k0, kk, k, i, j, i0, i1, need, filled, J, Jr
    cdef const floating *orow
    cdef floating *drow
    if bd.mode != _WIDE:
        filled = 0
        i0 = 0
        while i0 < nrows:
            i1 = min(nrows, i0 + bd.rows_per_call)
            need = min(bd.Bh, i1 + bd.maxro)
            if nc and need > filled:
                _fill(isa, src, bd.nch, bd.Hs, bd.Ws, bd.h_end, bd.w_end, bd.fsh, bd.fsw, row0,
                      bd.col0, bd.Bh, bd.Wb, filled, need, buf)
                filled = need
            for kbi in range(nblk):
                k0 = kbi * bd.kbs
                kk = min(bd.kbs, bd.nout - k0)
                if bd.mode == _ROWS and bd.dw3 and nc:
                    for k in range(kk):
                        _prow_dw3(isa, buf + i0 * bd.Wb, bd.Wb, bd.co3,
                                  wts + k0 * bd.nch * bd.nt + bd.dw3_t0 * kk + k,
                                  bd.dw3_dir * kk, (bias + k0 + k) if bias != NULL else NULL,
                                  dst + (k0 + k) * bd.ldo + i0 * bd.ors, bd.ors, bd.ncols,
                                  i1 - i0)
                elif bd.mode == _ROWS:
                    _prow(isa, <int> kk, buf + i0 * bd.Wb, cs, nc, toff, bd.nt,
                          wts + k0 * bd.nch * bd.nt, (bias + k0) if bias != NULL else NULL,
                          dst + k0 * bd.ldo + i0 * bd.ors, bd.ldo, bd.ors, bd.ncols,
                          i1 - i0, bd.Wb)
                else:
                    _krow(isa, fc_krow_kv(_cdiv(kk, VL)), buf + i0 * bd.Wb, cs, nc, toff, bd.nt,
                          wts + k0 * bd.nch * bd.nt, (bias + k0) if bias != NULL else NULL,
                          dst + k0 * bd.ldo + i0 * bd.ors, bd.ldo, bd.ors, bd.ncols,
                          i1 - i0, bd.Wb, kk)
            i0 = i1
        return
    if nc:
        _fill(isa, src, bd.nch, bd.Hs, bd.Ws, bd.h_end, bd.w_end, bd.fsh, bd.fsw, row0, bd.col0,
              bd.Bh, bd.Wb, 0, bd.Bh, buf)
    J = nrows * bd.Wb
    Jr = _round_up(J, VL)
    for kbi in range(nblk):
        k0 = kbi * bd.kbs
        kk = min(bd.kbs, bd.nout - k0)
        _pband(isa, <int> kk, buf, cs, nc, toff, bd.nt, wts + k0 * bd.nch * bd.nt,
               (bias + k0) if bias != NULL else NULL, obuf, Jr, J)
        for k in range(kk):
            for i in range(nrows):
                orow = obuf + k * Jr + i * bd.Wb
                drow = dst + (k0 + k) * bd.ldo + i * bd.ors
                if bd.ocs == 1:
                    _copy(isa, drow, orow, bd.ncols)
                else:
                    for j in range(bd.ncols):
                        drow[j * bd.ocs] = orow[j]


# --------------------------------------------------------------------------
# forward


def conv2d_direct(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                  const floating[::1] bias, floating[:, :, :, ::1] y,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int n_threads):
    """y[n, k] = bias[k] + sum over c, r, s of w[k, c, r, s] * shifted x[n, c].

    Work items are (image, group, band of output rows), split over threads;
    each copies its band of the input into phase planes and runs one kernel
    per block of output channels: pixels in lanes (blocks of up to 8 channels
    on AVX-512, else 4) or, where the channels fill whole vectors better
    than the pixels of a row do, channels in lanes (blocks of up to 2
    vectors); see _choose_mode.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = w.shape[0], Cg = w.shape[1], R = w.shape[2], S = w.shape[3]
    cdef Py_ssize_t P = y.shape[2], Q = y.shape[3]
    cdef Py_ssize_t Kg = K // groups, T = R * S
    cdef int isa = _isa
    cdef Py_ssize_t VL = fc_vec_len(isa, sizeof(floating))
    cdef Py_ssize_t nkb, kb, Kgp, maxco, nb, nbands, Jmax, obuf_n = 0, n_items
    cdef Py_ssize_t item, n, g, b, p0, k0, kk, kl, k
    cdef Band bd
    cdef const floating *bp = NULL
    cdef const floating *wsrc
    cdef const floating *wrow
    cdef floating *wdst
    cdef Py_ssize_t ct
    cdef floating *wpack = NULL
    cdef floating *bpack = NULL
    cdef ptrdiff_t *toff = NULL
    cdef void *raw = NULL
    cdef floating *buf = NULL
    cdef floating *obuf = NULL
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    if N == 0 or K == 0:
        return 0
    # (rows shorter than half a vector run faster on the general path's wide
    # grid: 7-pixel rows on AVX-512 0.86x as fast on dw2_fwd, 1.34x on AVX2)
    if _dw_enabled and groups == K == C and P * Q > 0 and _dwc_fits(H, W, P, Q, R, S, sh, sw,
                                                                 pt, pl, dh, dw, VL,
                                                                 sizeof(floating), True):
        return _dwc_forward(x, w, bias, y, sh, sw, pt, pl, dh, dw, n_threads)
    if (_dw_enabled and groups == K == C and sh == sw == 2 and dh == dw == 1 and H * W > 0
            and 2 * Q >= VL):
        return _dw2_forward(x, w, bias, y, pt, pl, n_threads)
    if bias is not None:
        bp = &bias[0]
    maxco = (S - 1) * dw // sw
    bd.mode = _choose_mode(isa, Kg, Q, Q + maxco, Cg * T, VL, True, True)
    if bd.mode == _LANES:
        Kgp = _lane_blocks(Kg, fc_krow_kvmax(isa), VL, &nkb, &kb)
    else:
        kb = fc_pband_kb(isa, Kg)
        nkb = _cdiv(Kg, kb)
        Kgp = Kg
    bd.nch, bd.Hs, bd.Ws, bd.h_end, bd.w_end = Cg, H, W, H, W
    bd.fsh, bd.fsw, bd.col0 = sh, sw, -pl
    bd.maxro = (R - 1) * dh // sh
    bd.nt = T
    bd.nout, bd.kbs = Kg, kb
    bd.ldo, bd.ors, bd.ocs, bd.ncols = P * Q, Q, 1, Q
    # _ROWS reads whole vectors past the end of a row
    bd.Wb = (_round_up(Q, VL) if bd.mode == _ROWS else Q) + maxco
    if bd.mode != _WIDE:
        nb = _band_rows(P, Cg * sh * sw * bd.Wb * sizeof(floating), N * groups, n_threads)
        bd.Bh = nb + bd.maxro
        bd.rows_per_call = _rows_per_call(Q, nb, Cg * sh * sw, bd.Wb, sizeof(floating))
    else:
        nb = _band_rows(P, (Cg * sh * sw + kb) * bd.Wb * sizeof(floating), N * groups,
                        n_threads)
        Jmax = _round_up(nb * bd.Wb, VL)
        bd.Bh = _cdiv(Jmax + bd.maxro * bd.Wb + maxco, bd.Wb)
        obuf_n = kb * Jmax
    nbands = _cdiv(P, nb)
    n_items = N * groups * nbands

    # weights as [group][channel block][c][r*S + s][channel in block]
    wpack = <floating *> fc_malloc64(groups * Kgp * Cg * T * sizeof(floating))
    toff = <ptrdiff_t *> malloc(T * sizeof(ptrdiff_t))
    if bp != NULL and bd.mode == _LANES:
        bpack = <floating *> calloc(groups * Kgp, sizeof(floating))
    if wpack == NULL or toff == NULL or (bp != NULL and bd.mode == _LANES and bpack == NULL):
        fc_free64(wpack)
        free(toff)
        free(bpack)
        return -1
    _phase_offsets(R, S, sh, sw, dh, dw, bd.Bh, bd.Wb, toff)
    bd.dw3 = (_dw_enabled and bd.mode == _ROWS and Cg == 1 and R == 3 and S == 3 and sh == 1
              and dh == 1)
    if bd.dw3:
        bd.co3[0], bd.co3[1], bd.co3[2] = toff[0], toff[1], toff[2]
        bd.dw3_t0, bd.dw3_dir = 0, 1
    wsrc = &w[0, 0, 0, 0]
    if bpack != NULL:
        for g in range(groups):
            for k in range(Kg):
                bpack[g * Kgp + k] = bp[g * Kg + k]
    with nogil:
        # one block of channels per item; the reads walk kk rows of w side by
        # side (kk lines stay in L1), the writes run in order: serial and
        # element by element, this copy took 20-55% of a deep batch-1 layer
        for item in prange(groups * nkb, schedule="static", num_threads=n_threads):
            g = item // nkb
            k0 = item % nkb * kb
            kk = min(kb, Kg - k0)
            kl = _lane_width(kk, VL) if bd.mode == _LANES else kk
            wdst = wpack + (g * Kgp + k0) * Cg * T
            wrow = wsrc + (g * Kg + k0) * Cg * T
            for ct in range(Cg * T):
                for k in range(kk):
                    wdst[ct * kl + k] = wrow[k * Cg * T + ct]
                for k in range(kk, kl):
                    wdst[ct * kl + k] = 0
        if bpack != NULL:
            bp = bpack

    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        raw = malloc((Cg * sh * sw * bd.Bh * bd.Wb + obuf_n + 2 * VL) * sizeof(floating) + 128)
        buf = NULL
        obuf = NULL
        if raw == NULL:
            failed[0] = 1
        else:
            buf = _aligned(raw, buf)
            obuf = _aligned(buf + Cg * sh * sw * bd.Bh * bd.Wb + VL, buf)
        for item in prange(n_items, schedule="static"):
            if failed[0]:
                continue
            n = item // (groups * nbands)
            g = (item // nbands) % groups
            b = item % nbands
            p0 = b * nb
            _run_band(isa, &bd, &x[n, g * Cg, 0, 0], p0 * sh - pt, toff,
                      wpack + g * Kgp * Cg * T,
                      (bp + g * (Kgp if bpack != NULL else Kg)) if bp != NULL else NULL,
                      &y[n, g * Kg, p0, 0], min(nb, P - p0), buf, obuf, VL)
        free(raw)
        fc_ftz_restore(fpmode)
    fc_free64(wpack)
    free(toff)
    free(bpack)
    return -status


cdef int _dw2_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                      const floating[::1] bias, floating[:, :, :, ::1] y,
                      Py_ssize_t pt, Py_ssize_t pl, int n_threads):
    """Depthwise at stride 2 (dilation 1) on a kernel of its own (dw2_fwd),
    plane by plane: each input row copied once into a zero-padded ring,
    from which two vectors give a run of even and odd columns by one shuffle
    each (mb-dw-s2 on Zen 3: 1.3x the kernel that split rows into a ring of
    even and odd columns, itself 1.26x and 1.49x the general path on 28- and
    56-wide output rows, AVX-512)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t R = w.shape[2], S = w.shape[3], P = y.shape[2], Q = y.shape[3]
    cdef int isa = _isa
    cdef Py_ssize_t Jn = fc_dw2_split_len(isa, sizeof(floating), Q, S)
    cdef Py_ssize_t item, n, c
    cdef floating b
    cdef void *raw = NULL
    cdef floating *ring = NULL
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode = 0
    if P * Q == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        raw = malloc(fc_dw2_ring_len(isa, sizeof(floating), Q, R, S) * sizeof(floating) + 64)
        ring = NULL
        if raw == NULL:
            failed[0] = 1
        else:
            ring = _aligned(raw, ring)
        for item in prange(N * C, schedule="static"):
            if failed[0]:
                continue
            n = item // C
            c = item % C
            b = 0
            if bias is not None:
                b = bias[c]
            if floating is float:
                fc_dw2_fwd_f32(isa, &x[n, c, 0, 0], H, W, &w[c, 0, 0, 0], R, S, b,
                               &y[n, c, 0, 0], P, Q, pt, pl, Jn, ring)
            else:
                fc_dw2_fwd_f64(isa, &x[n, c, 0, 0], H, W, &w[c, 0, 0, 0], R, S, b,
                               &y[n, c, 0, 0], P, Q, pt, pl, Jn, ring)
        free(raw)
        fc_ftz_restore(fpmode)
    return -status


# --------------------------------------------------------------------------
# backward


def grad_bias(const floating[:, :, :, ::1] gy, floating[::1] gb, int n_threads):
    """``gb[k] = sum of gy[:, k]``, conv2d_backward's grad_bias for every
    strategy: one vectorised pass over grad_output, a channel per item."""
    cdef Py_ssize_t N = gy.shape[0], K = gy.shape[1], PQ = gy.shape[2] * gy.shape[3]
    cdef Py_ssize_t k
    cdef int isa = _isa
    if N * PQ == 0:
        gb[:] = 0
        return
    with nogil:
        if n_threads == 1:  # an OpenMP region costs ~1.5 us even for one thread
            for k in range(K):
                gb[k] = _channel_sum(isa, &gy[0, k, 0, 0], N, K * PQ, PQ)
        else:
            for k in prange(K, num_threads=n_threads, schedule="static"):
                gb[k] = _channel_sum(isa, &gy[0, k, 0, 0], N, K * PQ, PQ)


cdef inline floating _channel_sum(int isa, const floating *p, Py_ssize_t N, Py_ssize_t ld,
                                  Py_ssize_t PQ) noexcept nogil:
    """The sum of N planes of PQ values ld apart, each in chunks, added up in double."""
    cdef Py_ssize_t n
    cdef double s = 0
    for n in range(N):
        if floating is float:
            s = s + fc_sum_f32(isa, p + n * ld, PQ)
        else:
            s = s + fc_sum_f64(isa, p + n * ld, PQ)
    return <floating> s


def conv2d_backward_direct(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                           const floating[:, :, :, ::1] w, floating[:, :, :, ::1] gx,
                           floating[:, :, :, ::1] gw,
                           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                           Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int n_threads):
    """grad_input as a stride-1 direct convolution per input phase, grad_weight
    as per-thread partial correlations over the wide grid, summed once.
    ``gx`` None: grad_weight only (grad_input computed elsewhere).

    Returns 1, having written nothing, when grad_input is asked for and a
    weight is not finite: it convolves the zero-padded grad_output with the
    weights, so an infinite weight meets padding zeros (0 * inf = NaN) where
    PyTorch's (and im2col's) col2im has no such term; the caller runs im2col."""
    cdef Py_ssize_t N = x.shape[0]
    cdef Py_ssize_t K = w.shape[0]
    if gx is not None and K > 0 and not _all_finite(
            _isa, &w[0, 0, 0, 0], K * w.shape[1] * w.shape[2] * w.shape[3]):
        return 1
    if N == 0:
        memset(&gw[0, 0, 0, 0], 0, gw.shape[0] * gw.shape[1] * gw.shape[2] * gw.shape[3]
               * sizeof(floating))
        return 0
    if K == 0:
        if gx is not None:
            memset(&gx[0, 0, 0, 0], 0, gx.shape[0] * gx.shape[1] * gx.shape[2] * gx.shape[3]
                   * sizeof(floating))
        return 0
    cdef Py_ssize_t VL = fc_vec_len(_isa, sizeof(floating))
    if (_dw_enabled and groups == K == x.shape[1] and gy.shape[2] * gy.shape[3] > 0
            and _dwc_fits(x.shape[2], x.shape[3], gy.shape[2], gy.shape[3], w.shape[2],
                          w.shape[3], sh, sw, pt, pl, dh, dw, VL, sizeof(floating),
                          False)):
        return _dwc_backward(gy, x, w, gx, gw, sh, sw, pt, pl, dh, dw, n_threads)
    if (_dw_enabled and groups == K == x.shape[1] and sh == sw == 2 and dh == dw == 1
            and gw.shape[2] * gw.shape[3] <= 64 and gy.shape[2] * gy.shape[3] > 0
            and x.shape[2] * x.shape[3] > 0):
        return _dw2_backward(gy, x, w, gx, gw, pt, pl, n_threads)
    if gx is not None and _grad_input(gy, w, gx, sh, sw, pt, pl, dh, dw, groups, n_threads):
        return -1
    return _grad_weight(gy, x, gw, sh, sw, pt, pl, dh, dw, groups, n_threads)


cdef int _dw2_backward(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                       const floating[:, :, :, ::1] w, floating[:, :, :, ::1] gx,
                       floating[:, :, :, ::1] gw, Py_ssize_t pt, Py_ssize_t pl,
                       int n_threads):
    """Depthwise at stride 2 (dilation 1, up to 64 taps) on kernels of its own
    (dw2_gx, dw2_gw): grad_input plane by plane; grad_weight channel by
    channel over the batch, each item owning its channel's weights (no
    partials)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t R = w.shape[2], S = w.shape[3], P = gy.shape[2], Q = gy.shape[3]
    cdef int isa = _isa
    cdef Py_ssize_t Jn = fc_dw2_split_len(isa, sizeof(floating), Q, S)
    cdef Py_ssize_t item, n, c
    cdef void *raw = NULL
    cdef floating *ring = NULL
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode = 0
    if gx is not None:
        with nogil, parallel(num_threads=n_threads):
            fpmode = fc_ftz_on()
            for item in prange(N * C, schedule="static"):
                n = item // C
                c = item % C
                if floating is float:
                    fc_dw2_gx_f32(isa, &gy[n, c, 0, 0], P, Q, &w[c, 0, 0, 0], R, S, pt, pl,
                                  &gx[n, c, 0, 0], H, W)
                else:
                    fc_dw2_gx_f64(isa, &gy[n, c, 0, 0], P, Q, &w[c, 0, 0, 0], R, S, pt, pl,
                                  &gx[n, c, 0, 0], H, W)
            fc_ftz_restore(fpmode)
    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        raw = malloc(fc_dw2_ring_len(isa, sizeof(floating), Q, R, S) * sizeof(floating) + 64)
        ring = NULL
        if raw == NULL:
            failed[0] = 1
        else:
            ring = _aligned(raw, ring)
        for c in prange(C, schedule="static"):
            if failed[0]:
                continue
            if floating is float:
                fc_dw2_gw_f32(isa, &x[0, c, 0, 0], C * H * W, H, W, &gy[0, c, 0, 0], C * P * Q,
                              P, Q, N, R, S, pt, pl, Jn, ring, &gw[c, 0, 0, 0])
            else:
                fc_dw2_gw_f64(isa, &x[0, c, 0, 0], C * H * W, H, W, &gy[0, c, 0, 0], C * P * Q,
                              P, Q, N, R, S, pt, pl, Jn, ring, &gw[c, 0, 0, 0])
        free(raw)
        fc_ftz_restore(fpmode)
    return -status


# --------------------------------------------------------------------------
# depthwise, channels in lanes

#: bytes of the padded input block (VL channels of one image) above which a
#: depthwise layer stays on the row kernels
DWC_BYTES = 512 * 1024
#: output rows shorter than this many bytes take channels in lanes where a
#: depthwise kernel of rows exists (3x3 at stride 1 forward, stride 2)
DWC_ROW_BYTES = 112


cdef void _dwc_geometry(Py_ssize_t H, Py_ssize_t W, Py_ssize_t P, Py_ssize_t Q, Py_ssize_t R,
                        Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                        Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t *Hp,
                        Py_ssize_t *Wp, Py_ssize_t *Pp, Py_ssize_t *Qp, Py_ssize_t *goff) noexcept nogil:
    """The padded input (Hp x Wp pixels, x[0][0] at (pt, pl)) holds every
    tap of every output pixel; the padded grad_output (Pp x Qp, gy[0][0] at
    pixel goff) every grad_output pixel any input pixel's taps reach."""
    cdef Py_ssize_t ot = max(0, _cdiv((R - 1) * dh - pt, sh))
    cdef Py_ssize_t ol = max(0, _cdiv((S - 1) * dw - pl, sw))
    Hp[0] = max(H + pt, (P - 1) * sh + (R - 1) * dh + 1)
    Wp[0] = max(W + pl, (Q - 1) * sw + (S - 1) * dw + 1)
    Pp[0] = ot + max(P, (H - 1 + pt) // sh + 1)
    Qp[0] = ol + max(Q, (W - 1 + pl) // sw + 1)
    goff[0] = ot * Qp[0] + ol


cdef bint _dwc_fits(Py_ssize_t H, Py_ssize_t W, Py_ssize_t P, Py_ssize_t Q, Py_ssize_t R,
                    Py_ssize_t S, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                    Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t VL, size_t size, bint forward):
    """Whether a depthwise layer (one output channel per input channel)
    takes channels in lanes: with the input block within DWC_BYTES, under
    the "lanes" layout, or (auto) where no kernel of rows serves it, or its
    output rows are shorter than DWC_ROW_BYTES.

    Measured (AVX-512 and AVX2, one thread, against the row kernels):
    channels in lanes ran 2-4x faster on 7-wide rows, 1.3-1.6x on 14-wide
    rows in float32, even on 28, slower on 56 (3x3 at stride 1 forward:
    0.8-0.9x); on the general path's layers (5x5, 7x7) 1.1-2.7x faster
    at every size that fits; float64 rows of 8 lanes even at 7 and 14."""
    cdef Py_ssize_t Hp, Wp, Pp, Qp, goff
    cdef bint rows
    if H * W == 0 or _layout == 1 or _layout == 2:
        return False
    if _layout == 0:
        rows = (sh == sw == 2 and dh == dw == 1
                or forward and R == S == 3 and sh == 1 and dh == 1)
        if rows and Q * <Py_ssize_t> size >= DWC_ROW_BYTES:
            return False
    _dwc_geometry(H, W, P, Q, R, S, sh, sw, pt, pl, dh, dw, &Hp, &Wp, &Pp, &Qp, &goff)
    return Hp * Wp * VL * <Py_ssize_t> size <= DWC_BYTES


cdef void _dwc_places(ptrdiff_t *po, Py_ssize_t H, Py_ssize_t W, Py_ssize_t Wp,
                      Py_ssize_t off) noexcept nogil:
    """po[h*W + w]: where dwc_pack puts pixel (h, w) of an H x W plane in a
    padded buffer of Wp-pixel rows, pixel (0, 0) at ``off``."""
    cdef Py_ssize_t h, w
    for h in range(H):
        for w in range(W):
            po[h * W + w] = off + h * Wp + w


cdef floating *_dwc_weights(const floating[:, :, :, ::1] w, Py_ssize_t VL) noexcept nogil:
    """The weights as [channel block][tap][lane], VL lanes a block, zero past
    the last channel; NULL when out of memory."""
    cdef Py_ssize_t C = w.shape[0], T = w.shape[2] * w.shape[3], nblk = _cdiv(C, VL), cb
    cdef floating *wt = <floating *> fc_malloc64(nblk * T * VL * sizeof(floating))
    if wt != NULL:
        for cb in range(nblk):
            _transpose(_isa, wt + cb * T * VL, VL, &w[cb * VL, 0, 0, 0], T,
                       min(VL, C - cb * VL), VL, T)
    return wt


cdef int _dwc_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                      const floating[::1] bias, floating[:, :, :, ::1] y,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                      Py_ssize_t dh, Py_ssize_t dw, int n_threads):
    """Depthwise, channels in lanes (dwc_fwd): work items (image, block of VL
    channels), each transposing its planes into a zero-padded per-thread
    buffer of [pixel][channel] vectors, every tap a whole-vector load."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t R = w.shape[2], S = w.shape[3], P = y.shape[2], Q = y.shape[3]
    cdef Py_ssize_t T = R * S
    cdef int isa = _isa
    cdef Py_ssize_t VL = fc_vec_len(isa, sizeof(floating))
    cdef Py_ssize_t nblk = _cdiv(C, VL)
    cdef Py_ssize_t Hp, Wp, Pp, Qp, goff, item, n, cb, c0, t
    cdef floating *wt = NULL
    cdef floating *bt = NULL
    cdef const floating *bp
    cdef ptrdiff_t *toff = NULL
    cdef floating *xb = NULL
    cdef floating *yb = NULL
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode = 0
    _dwc_geometry(H, W, P, Q, R, S, sh, sw, pt, pl, dh, dw, &Hp, &Wp, &Pp, &Qp, &goff)
    wt = _dwc_weights(w, VL)
    toff = <ptrdiff_t *> malloc((2 * T + H * W) * sizeof(ptrdiff_t))
    if bias is not None:
        bt = <floating *> fc_malloc64(nblk * VL * sizeof(floating))
        if bt != NULL:
            memset(bt, 0, nblk * VL * sizeof(floating))
            for c0 in range(C):
                bt[c0] = bias[c0]
    if wt == NULL or toff == NULL or bias is not None and bt == NULL:
        fc_free64(wt)
        fc_free64(bt)
        free(toff)
        return -1
    for t in range(T):
        toff[t] = (t // S) * dh * Wp + (t % S) * dw
        toff[T + t] = t
    _dwc_places(toff + 2 * T, H, W, Wp, pt * Wp + pl)
    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        xb = <floating *> fc_malloc64((Hp * Wp + P * Q) * VL * sizeof(floating))
        yb = NULL
        if xb == NULL:
            failed[0] = 1
        else:
            memset(xb, 0, Hp * Wp * VL * sizeof(floating))
            yb = xb + Hp * Wp * VL
        for item in prange(N * nblk, schedule="static"):
            if failed[0]:
                continue
            n = item // nblk
            cb = item % nblk
            c0 = cb * VL
            bp = NULL
            if bt != NULL:
                bp = bt + c0
            if floating is float:
                fc_dwc_fwd_f32(isa, &x[n, c0, 0, 0], H * W, min(VL, C - c0), H, W,
                               wt + cb * T * VL, toff, toff + T, T, S, dw, dh * Wp, bp,
                               &y[n, c0, 0, 0],
                               P, Q, sh, sw, xb, Wp, toff + 2 * T, yb)
            else:
                fc_dwc_fwd_f64(isa, &x[n, c0, 0, 0], H * W, min(VL, C - c0), H, W,
                               wt + cb * T * VL, toff, toff + T, T, S, dw, dh * Wp, bp,
                               &y[n, c0, 0, 0],
                               P, Q, sh, sw, xb, Wp, toff + 2 * T, yb)
        fc_free64(xb)
        fc_ftz_restore(fpmode)
    fc_free64(wt)
    fc_free64(bt)
    free(toff)
    return -status


cdef int _dwc_backward(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                       const floating[:, :, :, ::1] w, floating[:, :, :, ::1] gx,
                       floating[:, :, :, ::1] gw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                       int n_threads):
    """Depthwise, channels in lanes (dwc_bwd): a work item per block of VL
    channels, over the whole batch (it owns its rows of grad_weight: no
    partials). grad_input gathers, for each input pixel, the taps that reach
    it: those of its phase ((h + pt) % sh, (w + pl) % sw), read from a
    zero-padded grad_output."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t R = w.shape[2], S = w.shape[3], P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t T = R * S
    cdef int isa = _isa
    cdef Py_ssize_t VL = fc_vec_len(isa, sizeof(floating))
    cdef Py_ssize_t nblk = _cdiv(C, VL)
    cdef Py_ssize_t Hp, Wp, Pp, Qp, goff, cb, c0, t, a, e, r, s, k, nbuf
    cdef floating *wt = NULL
    cdef ptrdiff_t *tab = NULL
    cdef ptrdiff_t *ph
    cdef ptrdiff_t *xpo
    cdef ptrdiff_t *gpo
    cdef floating *xb = NULL
    cdef floating *gxp
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode = 0
    _dwc_geometry(H, W, P, Q, R, S, sh, sw, pt, pl, dh, dw, &Hp, &Wp, &Pp, &Qp, &goff)
    wt = _dwc_weights(w, VL)
    # toff[T], then the phases' (first tap, taps) pairs, their taps' offsets
    # in grad_output and their weights' indices
    tab = <ptrdiff_t *> malloc((3 * T + 2 * sh * sw + H * W + P * Q) * sizeof(ptrdiff_t))
    if wt == NULL or tab == NULL:
        fc_free64(wt)
        free(tab)
        return -1
    ph = tab + T
    for t in range(T):
        tab[t] = (t // S) * dh * Wp + (t % S) * dw
    k = 0
    for a in range(sh):
        for e in range(sw):
            ph[2 * (a * sw + e)] = k
            for r in range(R):
                if (a - r * dh) % sh:
                    continue
                for s in range(S):
                    if (e - s * dw) % sw:
                        continue
                    # (exact divisions: truncation is floor)
                    ph[2 * sh * sw + k] = (a - r * dh) // sh * Qp + (e - s * dw) // sw
                    ph[2 * sh * sw + T + k] = r * S + s
                    k += 1
            ph[2 * (a * sw + e) + 1] = k - ph[2 * (a * sw + e)]
    xpo = ph + 2 * sh * sw + 2 * T
    gpo = xpo + H * W
    _dwc_places(xpo, H, W, Wp, pt * Wp + pl)
    _dwc_places(gpo, P, Q, Qp, goff)
    nbuf = Hp * Wp + Pp * Qp + (H * W if gx is not None else 0) + T
    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        xb = <floating *> fc_malloc64(nbuf * VL * sizeof(floating))
        if xb == NULL:
            failed[0] = 1
        else:
            memset(xb, 0, (Hp * Wp + Pp * Qp) * VL * sizeof(floating))
        for cb in prange(nblk, schedule="static"):
            if failed[0]:
                continue
            c0 = cb * VL
            gxp = NULL
            if gx is not None:
                gxp = &gx[0, c0, 0, 0]
            if floating is float:
                fc_dwc_bwd_f32(isa, &x[0, c0, 0, 0], C * H * W, H * W, &gy[0, c0, 0, 0],
                               C * P * Q, P * Q, min(VL, C - c0), N, H, W, P, Q, sh, sw, pt,
                               pl, wt + cb * T * VL, tab, T, ph, ph + 2 * sh * sw,
                               ph + 2 * sh * sw + T, gxp, &gw[c0, 0, 0, 0], xb, Wp, xpo,
                               xb + Hp * Wp * VL, Qp, goff, gpo,
                               xb + (Hp * Wp + Pp * Qp) * VL,
                               xb + (nbuf - T) * VL)
            else:
                fc_dwc_bwd_f64(isa, &x[0, c0, 0, 0], C * H * W, H * W, &gy[0, c0, 0, 0],
                               C * P * Q, P * Q, min(VL, C - c0), N, H, W, P, Q, sh, sw, pt,
                               pl, wt + cb * T * VL, tab, T, ph, ph + 2 * sh * sw,
                               ph + 2 * sh * sw + T, gxp, &gw[c0, 0, 0, 0], xb, Wp, xpo,
                               xb + Hp * Wp * VL, Qp, goff, gpo,
                               xb + (Hp * Wp + Pp * Qp) * VL,
                               xb + (nbuf - T) * VL)
        fc_free64(xb)
        fc_ftz_restore(fpmode)
    fc_free64(wt)
    free(tab)
    return -status


# Per-phase table of _grad_input, _PH_FIELDS entries per phase.
cdef enum:
    _PH_TAP0 = 0    # first entry of the phase's taps in toff
    _PH_ULO         # first phase row u (input row h = u*sh + a - pt)
    _PH_NU          # phase rows
    _PH_VLO         # first phase column v (input column v*sw + b - pl)
    _PH_ROMAX       # grad_output rows above the first one a phase row reads
    _PH_COMAX       # grad_output columns left of the first one a phase column reads
    _PH_WOFS        # offset of the phase's packed weights
    _PH_FIELDS


cdef int _grad_input(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] w,
                     floating[:, :, :, ::1] gx, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                     Py_ssize_t groups, int n_threads):
    """grad_input[n, c, h, w] = sum over k, r, s of w[k, c, r, s] * gy[n, k, p, q]
    with h = p*sh - pt + r*dh, w = q*sw - pl + s*dw.

    The input rows h = u*sh + a - pt and columns v*sw + b - pl of phase
    (a, b) are reached only by the taps with r*dh = a (mod sh) and
    s*dw = b (mod sw), from gy row u - (r*dh - a)/sh and column
    v - (s*dw - b)/sw: a stride-1 convolution of gy padded by romax rows and
    comax columns, with the roles of K (now reduced) and C exchanged.
    """
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t K = w.shape[0], Cg = w.shape[1], R = w.shape[2], S = w.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t Kg = K // groups, T = R * S, nph = sh * sw
    cdef int isa = _isa
    cdef Py_ssize_t VL = fc_vec_len(isa, sizeof(floating))
    cdef Py_ssize_t ncb, cb, nb, nbands, n_items, buf_n = 0, obuf_n = 0, nu_max = 0
    cdef Py_ssize_t row_bytes = 0
    cdef Py_ssize_t ph, a, bb, r, s, nt, tap, romax, comax, wofs, nV, Jr
    cdef Py_ssize_t item, n, g, b, u0, nu, cbi, c0, cc, ci, k, t, cl, Cgp
    cdef Py_ssize_t *info = NULL
    cdef Py_ssize_t *pi
    cdef Band *bands = NULL
    cdef Band *bd
    cdef ptrdiff_t *toff = NULL
    cdef floating *wpack = NULL
    cdef const floating *wsrc = &w[0, 0, 0, 0]
    cdef const floating *wk
    cdef floating *pk
    cdef Py_ssize_t *taps = NULL
    cdef void *raw = NULL
    cdef floating *buf = NULL
    cdef floating *obuf = NULL
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode

    cb = fc_pband_kb(isa, Cg)
    ncb = _cdiv(Cg, cb)
    Cgp = Cg  # channels per group, as packed
    info = <Py_ssize_t *> malloc(nph * _PH_FIELDS * sizeof(Py_ssize_t))
    bands = <Band *> malloc(nph * sizeof(Band))
    toff = <ptrdiff_t *> malloc(T * sizeof(ptrdiff_t))
    taps = <Py_ssize_t *> malloc(T * sizeof(Py_ssize_t))
    # (channels in lanes pads the last block of channels to at most
    # fc_krow_kvmax vectors)
    wpack = <floating *> fc_malloc64(groups * Kg * (Cg + fc_krow_kvmax(isa) * VL) * T
                                * sizeof(floating))
    if info == NULL or bands == NULL or toff == NULL or taps == NULL or wpack == NULL:
        free(info)
        free(bands)
        free(toff)
        free(taps)
        fc_free64(wpack)
        return -1

    # each phase: its taps, rows, columns and packed weights
    tap = 0
    wofs = 0
    for ph in range(nph):
        a = ph // sw
        bb = ph % sw
        pi = info + ph * _PH_FIELDS
        bd = bands + ph
        romax = -1
        comax = -1
        for r in range(R):
            if (r * dh) % sh == a:
                romax = (r * dh - a) // sh
        for s in range(S):
            if (s * dw) % sw == bb:
                comax = (s * dw - bb) // sw
        nt = 0
        if romax >= 0 and comax >= 0:
            for r in range(R):
                for s in range(S):
                    if (r * dh) % sh == a and (s * dw) % sw == bb:
                        nt += 1
        romax = max(romax, 0)
        comax = max(comax, 0)
        pi[_PH_TAP0] = tap
        pi[_PH_ULO] = _cdiv(pt - a, sh)
        pi[_PH_NU] = max(0, _fdiv(H - 1 + pt - a, sh) - pi[_PH_ULO] + 1)
        pi[_PH_VLO] = _cdiv(pl - bb, sw)
        nV = max(0, _fdiv(W - 1 + pl - bb, sw) - pi[_PH_VLO] + 1)
        pi[_PH_ROMAX] = romax
        pi[_PH_COMAX] = comax
        pi[_PH_WOFS] = wofs
        bd.nch, bd.Hs, bd.Ws, bd.h_end, bd.w_end = Kg, P, Q, P, Q
        bd.fsh, bd.fsw, bd.col0 = 1, 1, pi[_PH_VLO] - comax
        bd.maxro = romax
        bd.nt = nt
        bd.ldo, bd.ors, bd.ocs, bd.ncols = H * W, sh * W, sw, nV
        # channels in lanes stores rows in place: stride 1 (a single phase)
        bd.mode = _choose_mode(isa, Cg, nV, nV + comax, Kg * nt, VL, sw == 1, nph == 1)
        if bd.mode == _LANES:
            Cgp = _lane_blocks(Cg, fc_krow_kvmax(isa), VL, &ncb, &cb)
        bd.nout, bd.kbs = Cg, cb
        bd.Wb = max(1, (_round_up(nV, VL) if bd.mode == _ROWS else nV) + comax)
        nu_max = max(nu_max, pi[_PH_NU])
        row_bytes = max(row_bytes, (Kg + (cb if bd.mode == _WIDE else 0)) * bd.Wb
                        * sizeof(floating))
        # weights as [group][channel block][k][tap][channel in block]; the
        # phase's taps listed first (a batch-1 layer spends as long here as
        # in its multiply-adds, so the copy loop must stay simple)
        t = 0
        for r in range(R):
            for s in range(S):
                if nt and (r * dh) % sh == a and (s * dw) % sw == bb:
                    taps[t] = r * S + s
                    t += 1
        for g in range(groups):
            for k in range(Kg):  # each row of w read once, front to back
                for cbi in range(ncb):
                    c0 = cbi * cb
                    cc = min(cb, Cg - c0)
                    cl = _lane_width(cc, VL) if bd.mode == _LANES else cc
                    wk = wsrc + ((g * Kg + k) * Cg + c0) * T
                    pk = wpack + wofs + (g * Cgp + c0) * Kg * nt + k * nt * cl
                    for t in range(nt):
                        for ci in range(cc):
                            pk[t * cl + ci] = wk[ci * T + taps[t]]
                        for ci in range(cc, cl):
                            pk[t * cl + ci] = 0
        wofs += groups * Cgp * Kg * nt
        tap += nt

    nb = _band_rows(nu_max, row_bytes, N * groups, n_threads)
    nbands = _cdiv(nu_max, nb)
    n_items = N * groups * nbands
    for ph in range(nph):
        a = ph // sw
        bb = ph % sw
        pi = info + ph * _PH_FIELDS
        bd = bands + ph
        romax = pi[_PH_ROMAX]
        comax = pi[_PH_COMAX]
        if bd.mode != _WIDE:
            bd.Bh = nb + romax
            bd.rows_per_call = _rows_per_call(bd.ncols, nb, Kg, bd.Wb, sizeof(floating))
        else:
            Jr = _round_up(nb * bd.Wb, VL)
            bd.Bh = _cdiv(Jr + romax * bd.Wb + comax, bd.Wb)
            obuf_n = max(obuf_n, cb * Jr)
        buf_n = max(buf_n, Kg * bd.Bh * bd.Wb)
        # tap offsets in the buffer, in packing order
        tap = pi[_PH_TAP0]
        bd.dw3 = (_dw_enabled and bd.mode == _ROWS and Kg == 1 and R == 3 and S == 3
                  and nph == 1 and dh == 1)
        if bd.nt:
            for r in range(R):
                for s in range(S):
                    if (r * dh) % sh == a and (s * dw) % sw == bb:
                        toff[tap] = ((romax - (r * dh - a) // sh) * bd.Wb
                                     + comax - (s * dw - bb) // sw)
                        tap += 1
        if bd.dw3:
            # buffer tap (r, s) is packed tap (2 - r, 2 - s): buffer column
            # offsets are those of the packed taps (2, 2 - s)
            bd.co3[0], bd.co3[1], bd.co3[2] = toff[8], toff[7], toff[6]
            bd.dw3_t0, bd.dw3_dir = 8, -1

    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        raw = malloc((buf_n + obuf_n + 2 * VL) * sizeof(floating) + 128)
        buf = NULL
        obuf = NULL
        if raw == NULL:
            failed[0] = 1
        else:
            buf = _aligned(raw, buf)
            obuf = _aligned(buf + buf_n + VL, buf)
        for item in prange(n_items, schedule="static"):
            if failed[0]:
                continue
            n = item // (groups * nbands)
            g = (item // nbands) % groups
            b = item % nbands
            for ph in range(nph):
                pi = info + ph * _PH_FIELDS
                bd = bands + ph
                nu = min(nb, pi[_PH_NU] - b * nb)
                if nu <= 0 or bd.ncols <= 0:
                    continue
                u0 = pi[_PH_ULO] + b * nb
                _run_band(isa, bd, &gy[n, g * Kg, 0, 0], u0 - pi[_PH_ROMAX],
                          toff + pi[_PH_TAP0],
                          wpack + pi[_PH_WOFS] + g * Cgp * Kg * bd.nt, NULL,
                          &gx[n, g * Cg, 0, 0] + (u0 * sh + ph // sw - pt) * W
                          + pi[_PH_VLO] * sw + ph % sw - pl,
                          nu, buf, obuf, VL)
        free(raw)
        fc_ftz_restore(fpmode)
    free(info)
    free(bands)
    free(toff)
    free(taps)
    fc_free64(wpack)
    return -status


cdef int _grad_weight(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                      floating[:, :, :, ::1] gw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t groups, int n_threads):
    """grad_weight[k, c, r, s] = sum over n, p, q of gy[n, k, p, q] * x[n, c, h, w]
    (h, w as in _grad_input), from the forward pass's buffer of the input.

    Channels in lanes: grad_output transposed to [pixel][channel], the
    input broadcast, partials [c][tap][channel] per thread; only the pixels
    of the output are visited. Pixels in lanes: over the wide grid (grad_output
    copied with zeros in the dropped columns), partials per thread as vectors
    (``vacc``) or reduced across lanes per call. Which one: _choose_mode.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = gw.shape[0], Cg = gw.shape[1], R = gw.shape[2], S = gw.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t Kg = K // groups, T = R * S, KCT = K * Cg * T
    cdef int isa = _isa
    cdef Py_ssize_t VL = fc_vec_len(isa, sizeof(floating))
    cdef Py_ssize_t maxro = (R - 1) * dh // sh, maxco = (S - 1) * dw // sw
    # channels in lanes unless the padding of the channels to whole vectors
    # costs more than the wide grid's dropped columns and its heavier kernel
    # (more loads per multiply-add, a reduction across lanes): measured, the
    # wide grid is about 1.25 times dearer per lane
    cdef bint lanes_mode = (_layout == 3 or _layout == 0 and
                            4 * _round_up(Kg, VL) * Q <= 5 * Kg * (Q + maxco))
    cdef Py_ssize_t kbg, nkb, Kgp = 0, KCTp, kl
    cdef bint owners = False
    cdef bint vacc
    cdef Py_ssize_t lanes
    cdef Py_ssize_t Wb, nb, nbands, n_items, Jmax, Bh, Bg = 0, ldg = 0, cs, gyb_n
    cdef Py_ssize_t item, n, g, b, p0, npr, Jb, c, kbi, k0, kk, k, t, i, q, idx, l
    cdef Py_ssize_t tid = 0
    cdef ptrdiff_t *toff = NULL
    cdef floating *part = NULL
    cdef floating *pg
    cdef floating *gwp = &gw[0, 0, 0, 0]
    cdef floating s
    cdef void *raw = NULL
    cdef floating *buf = NULL
    cdef floating *gyb = NULL
    cdef const floating *xr
    cdef const floating *gr
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode

    if lanes_mode:
        Kgp = _lane_blocks(Kg, fc_kgband_kvmax(isa), VL, &nkb, &kbg)
        KCTp = groups * Cg * T * Kgp
        owners = n_threads > 1 and n_threads * KCTp * sizeof(floating) > PARTIAL_BYTES
        vacc = False
        lanes = 1
        Wb = Q + maxco
        nb = _band_rows(P, (Cg * sh * sw * Wb + Q * Kgp) * sizeof(floating), N * groups,
                        n_threads)
        Bh = nb + maxro
        gyb_n = nb * Q * Kgp
    else:
        kbg = fc_gband_kbmax(isa)
        nkb = _cdiv(Kg, kbg)
        KCTp = KCT
        vacc = n_threads * KCT * VL * sizeof(floating) <= VACC_BYTES
        lanes = VL if vacc else 1
        Wb = Q + maxco
        nb = _band_rows(P, (Cg * sh * sw + Kg) * Wb * sizeof(floating), N * groups, n_threads)
        Jmax = _round_up(nb * Wb, VL)
        Bh = _cdiv(Jmax + maxro * Wb + maxco, Wb)
        Bg = _cdiv(Jmax, Wb)
        ldg = Bg * Wb
        gyb_n = Kg * ldg
    nbands = _cdiv(P, nb)
    n_items = N * groups * nbands
    cs = sh * sw * Bh * Wb
    toff = <ptrdiff_t *> malloc(T * sizeof(ptrdiff_t))
    if toff == NULL:
        return -1
    _phase_offsets(R, S, sh, sw, dh, dw, Bh, Wb, toff)
    if owners:
        status = _grad_weight_owners(gy, x, gw, sh, sw, pt, pl, groups, n_threads, Wb, Bh,
                                     maxro, nb, nkb, kbg, Kgp, toff)
        free(toff)
        return status
    part = <floating *> calloc(n_threads * KCTp * lanes, sizeof(floating))
    if part == NULL:
        free(toff)
        return -1

    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        tid = threadid()
        raw = malloc((Cg * cs + gyb_n + 2 * VL) * sizeof(floating) + 128)
        buf = NULL
        gyb = NULL
        if raw == NULL:
            failed[0] = 1
        else:
            buf = _aligned(raw, buf)
            gyb = _aligned(buf + Cg * cs + VL, buf)
        for item in prange(n_items, schedule="static"):
            if failed[0]:
                continue
            n = item // (groups * nbands)
            g = (item // nbands) % groups
            b = item % nbands
            p0 = b * nb
            npr = min(nb, P - p0)
            if lanes_mode:
                _fill(isa, &x[n, g * Cg, 0, 0], Cg, H, W, H, W, sh, sw, p0 * sh - pt, -pl, Bh,
                      Wb, 0, npr + maxro, buf)
                _transpose(isa, gyb, Kgp, &gy[n, g * Kg, p0, 0], P * Q, Kg, Kgp, npr * Q)
                pg = part + tid * KCTp + g * Cg * T * Kgp
                for c in range(Cg):
                    for kbi in range(nkb):
                        k0 = kbi * kbg
                        kk = min(kbg, Kg - k0)
                        _kgband(isa, fc_krow_kv(_cdiv(kk, VL)), gyb + k0, Kgp, buf + c * cs,
                                toff, T, Q, npr, Wb, pg + c * T * Kgp + k0, Kgp)
                continue
            _fill(isa, &x[n, g * Cg, 0, 0], Cg, H, W, H, W, sh, sw, p0 * sh - pt, -pl, Bh, Wb,
                  0, Bh, buf)
            # grad_output on the wide grid, zero in the dropped columns and past the band
            _fill(isa, &gy[n, g * Kg, 0, 0], Kg, P, Q, p0 + npr, Q, 1, 1, p0, 0, Bg, Wb, 0, Bg,
                  gyb)
            pg = part + (tid * KCT + g * Kg * Cg * T) * lanes
            if _all_finite(isa, buf, Cg * cs):
                Jb = _round_up(npr * Wb, VL)
                for c in range(Cg):
                    for kbi in range(nkb):
                        k0 = kbi * kbg
                        kk = min(kbg, Kg - k0)
                        _gband(isa, <int> kk, gyb + k0 * ldg, ldg, buf + c * cs, toff, T, Jb,
                               pg + (k0 * Cg + c) * T * lanes, Cg * T, vacc)
            else:
                # exact: only the pixels of the output, never the dropped columns
                for k in range(Kg):
                    for c in range(Cg):
                        for t in range(T):
                            s = 0
                            for i in range(npr):
                                gr = gyb + k * ldg + i * Wb
                                xr = buf + c * cs + toff[t] + i * Wb
                                for q in range(Q):
                                    s = s + gr[q] * xr[q]
                            pg[((k * Cg + c) * T + t) * lanes] += s
        free(raw)
        fc_ftz_restore(fpmode)
    if status == 0 and lanes_mode:
        with nogil:
            # partials are [g][c*T + t][Kgp], grad_weight [g][k][c*T + t]: a
            # transpose, by blocks of 64 rows (their lines stay in L1 while
            # k runs, and each k writes 64 consecutive values)
            nb = _cdiv(Cg * T, 64)
            if n_threads == 1:  # no OpenMP region (~1.5 us) for a tiny call's sum
                for idx in range(groups * nb):
                    _sum_lane_partials(part, gwp, idx // nb, idx % nb, Kg, Cg * T, KCTp, Kgp,
                                       n_threads)
            else:
                for idx in prange(groups * nb, schedule="static", num_threads=n_threads):
                    _sum_lane_partials(part, gwp, idx // nb, idx % nb, Kg, Cg * T, KCTp, Kgp,
                                       n_threads)
    elif status == 0:
        with nogil:
            if n_threads == 1:
                for idx in range(KCT):
                    gwp[idx] = _sum_partials(part + idx * lanes, KCT * lanes, n_threads, lanes)
            else:
                for idx in prange(KCT, schedule="static", num_threads=n_threads):
                    gwp[idx] = _sum_partials(part + idx * lanes, KCT * lanes, n_threads, lanes)
    free(toff)
    free(part)
    return -status


cdef inline floating _sum_partials(const floating *p, Py_ssize_t ld, Py_ssize_t n_parts,
                                   Py_ssize_t lanes) noexcept nogil:
    """The sum of n_parts runs of ``lanes`` values, ld apart."""
    cdef Py_ssize_t t, l
    cdef floating s = 0
    for t in range(n_parts):
        for l in range(lanes):
            s = s + p[t * ld + l]
    return s


cdef inline void _sum_lane_partials(const floating *part, floating *gwp, Py_ssize_t g,
                                    Py_ssize_t b, Py_ssize_t Kg, Py_ssize_t CT,
                                    Py_ssize_t KCTp, Py_ssize_t Kgp,
                                    Py_ssize_t n_parts) noexcept nogil:
    """Rows [64 b, 64 b + 64) of group g's grad_weight [k][c*T + t] from the
    n_parts partials [g][c*T + t][Kgp], KCTp apart."""
    cdef Py_ssize_t k, i
    for k in range(Kg):
        for i in range(b * 64, min(CT, b * 64 + 64)):
            gwp[(g * Kg + k) * CT + i] = _sum_partials(part + (g * CT + i) * Kgp + k, KCTp,
                                                       n_parts, 1)


cdef int _grad_weight_owners(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                             floating[:, :, :, ::1] gw, Py_ssize_t sh, Py_ssize_t sw,
                             Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups, int n_threads,
                             Py_ssize_t Wb, Py_ssize_t Bh, Py_ssize_t maxro, Py_ssize_t nb,
                             Py_ssize_t nkb, Py_ssize_t kbg, Py_ssize_t Kgp,
                             const ptrdiff_t *toff):
    """_grad_weight, channels in lanes, one (group, channel block) per work
    item over every image and band: each item owns its rows of grad_weight,
    so there are no per-thread copies of it (large weights, many threads)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = gw.shape[0], Cg = gw.shape[1], T = gw.shape[2] * gw.shape[3]
    cdef Py_ssize_t P = gy.shape[2], Q = gy.shape[3]
    cdef Py_ssize_t Kg = K // groups
    cdef int isa = _isa
    cdef Py_ssize_t VL = fc_vec_len(isa, sizeof(floating))
    cdef Py_ssize_t cs = sh * sw * Bh * Wb, nbands = _cdiv(P, nb)
    cdef Py_ssize_t item, g, kbi, k0, kk, kl, n, b, p0, npr, c, k, t
    cdef void *raw = NULL
    cdef floating *buf = NULL
    cdef floating *gyb = NULL
    cdef floating *acc = NULL
    cdef floating *gwp = &gw[0, 0, 0, 0]
    cdef int status = 0
    cdef int *failed = &status
    cdef unsigned int fpmode
    with nogil, parallel(num_threads=n_threads):
        fpmode = fc_ftz_on()
        raw = malloc((Cg * cs + nb * Q * kbg + Cg * T * kbg + 3 * VL) * sizeof(floating) + 192)
        buf = NULL
        gyb = NULL
        acc = NULL
        if raw == NULL:
            failed[0] = 1
        else:
            buf = _aligned(raw, buf)
            gyb = _aligned(buf + Cg * cs + VL, buf)
            acc = _aligned(gyb + nb * Q * kbg + VL, buf)
        for item in prange(groups * nkb, schedule="static"):
            if failed[0]:
                continue
            g = item // nkb
            kbi = item % nkb
            k0 = kbi * kbg
            kk = min(kbg, Kg - k0)
            kl = _lane_width(kk, VL)
            memset(acc, 0, Cg * T * kl * sizeof(floating))
            for n in range(N):
                for b in range(nbands):
                    p0 = b * nb
                    npr = min(nb, P - p0)
                    _fill(isa, &x[n, g * Cg, 0, 0], Cg, H, W, H, W, sh, sw, p0 * sh - pt, -pl,
                          Bh, Wb, 0, npr + maxro, buf)
                    _transpose(isa, gyb, kl, &gy[n, g * Kg + k0, p0, 0], P * Q, kk, kl, npr * Q)
                    for c in range(Cg):
                        _kgband(isa, fc_krow_kv(_cdiv(kk, VL)), gyb, kl, buf + c * cs, toff, T,
                                Q, npr, Wb, acc + c * T * kl, kl)
            for k in range(kk):
                for c in range(Cg):
                    for t in range(T):
                        gwp[((g * Kg + k0 + k) * Cg + c) * T + t] = acc[(c * T + t) * kl + k]
        free(raw)
        fc_ftz_restore(fpmode)
    return -status
