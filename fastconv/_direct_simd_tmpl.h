/* Micro-kernels of the direct convolution, written once and instantiated by
 * _direct_simd.h for each (element type, instruction set) pair.
 *
 * The including file defines:
 *   FC_T, FC_UINT  element type (float or double) and its unsigned twin
 *   FC_EXP_MASK    the exponent bits of FC_T
 *   FC_SFX         name suffix, e.g. f32_avx512
 *   FC_VB          vector width in bytes (64 AVX-512, 32 AVX2, 16 SSE2/NEON,
 *                  sizeof(FC_T) without GCC vector extensions)
 *   FC_TARGET      function attribute selecting the instruction set, or empty
 *   FC_PLIST, FC_GLIST, FC_KLIST, FC_KGLIST, FC_DWLIST and their bounds:
 *                  the tile shapes of the kernels below
 *
 * The kernels use GCC vector extensions (also understood by Clang), so one
 * source serves every width; `a * b + c` becomes an FMA where the target has
 * one (GCC contracts by default; no -ffast-math anywhere, so NaN and signed
 * zero semantics are IEEE). Every loop over a register tile has a
 * compile-time trip count and is fully unrolled, so the accumulators live in
 * registers; each tile shape is a function of its own (FC_NOINLINE), called
 * once per tile.
 *
 * Kernels (x is a buffer prepared by fill: rows of input, zero-padded, tap t
 * at offset toff[t], channel c at c * cs):
 *
 * pband     pixels in lanes over a run of J positions ("wide grid"):
 *           out[k][j] = bias[k] + sum over c, t of w[c][t][k] * x[c*cs + toff[t] + j];
 *           tiles of KB channels x NV vectors, the weights broadcast
 *           (Zhang, Franchetti & Low 2018).
 * prow      the same on rows of Q results stored straight into the
 *           destination; tiles of KB channels x NR rows x NV vectors.
 * prow_dw3  one channel, 3x3 taps on consecutive rows (depthwise): each
 *           input row loaded once for the three output rows it reaches.
 * krow      channels in lanes: tiles of KV vectors of channels x NP pixels of
 *           a row, the input broadcast, transposed into place.
 * gband     grad_weight over the wide grid: gw[k][t] += sum over j of
 *           g[k][j] * x[toff[t] + j], tiles of KB channels x NT taps.
 * kgband    grad_weight, channels in lanes: part[t][k] += sum over the
 *           pixels of g[pixel][k] * x[toff[t] + pixel].
 * dw2_fwd, dw2_gx, dw2_gw
 *           depthwise at stride 2, one channel's plane: the forward's input
 *           rows copied zero-padded and split into even and odd columns as
 *           they are read, grad_weight's split into a ring of them first
 *           (dw2_split), grad_input's two column parities interleaved on the
 *           store (dw2_zip_store).
 * dwc_fwd, dwc_bwd
 *           depthwise, channels in lanes: VL channels of an image
 *           transposed into a zero-padded [pixel][channel] block
 *           (dwc_pack), every tap a whole-vector load whatever the stride
 *           or dilation; row tiles (dwrtile) reuse each loaded input vector
 *           for every tap of a kernel row it serves.
 * fill, copy, transpose, all_finite, sum: the data movement around them.
 *
 * Buffers are padded by the callers so that whole vectors can always be
 * loaded (and, for pband, stored).
 */

#define FC_CAT2(a, b) a##_##b
#define FC_CAT(a, b) FC_CAT2(a, b)
#define FC_N(name) FC_CAT(name, FC_SFX)

#define FC_VL ((ptrdiff_t)(FC_VB / sizeof(FC_T)))

#ifdef FC_SCALAR
typedef FC_T FC_N(vec);
typedef FC_T FC_N(uvec);
#else
typedef FC_T FC_N(vec) __attribute__((vector_size(FC_VB)));
typedef FC_T FC_N(uvec) __attribute__((vector_size(FC_VB), aligned(sizeof(FC_T)), may_alias));
#endif

#define FC_VEC FC_N(vec)
#define FC_LOAD(p) (*(const FC_N(uvec) *)(p))
#define FC_STORE(p, v) (*(FC_N(uvec) *)(p) = (v))
/* Keep a loaded vector in a register: without this the compiler folds the
 * load into every multiply-add that uses it, loading it again each time. */
#if FC_X86
#define FC_IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define FC_IN_REGISTER(v) ((void)0)
#endif
/* s - 0 is s for every s (including -0 and NaN), so this is an exact broadcast */
#ifdef FC_SCALAR
#define FC_BCAST(s) ((FC_T)(s))
#else
#define FC_BCAST(s) ((FC_T)(s) - (FC_VEC){0})
#endif

/* p[0:n] = the first n lanes of v (0 < n < VL): AVX-512's masked store, on
 * AVX2 a few narrower stores (see _store.h); a library call per row would
 * cost more than the row's arithmetic. */
static FC_INLINE FC_TARGET void
FC_N(store_part)(FC_T *p, FC_VEC v, ptrdiff_t n)
{
#if FC_X86 && FC_VB == 64 && FC_ELEM == 4
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
#elif FC_X86 && FC_VB == 64
    _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), (__m512d)v);
#elif FC_X86 && FC_VB == 32 && FC_ELEM == 4
    fc_store_part_ps256(p, (__m256)v, n);  /* (not vmaskmovps: see _store.h) */
#elif FC_X86 && FC_VB == 32
    fc_store_part_pd256(p, (__m256d)v, n);
#else
    union { FC_VEC v; FC_T e[FC_VB / sizeof(FC_T)]; } u = {v};
    for (ptrdiff_t i = 0; i < n; i++)
        p[i] = u.e[i];
#endif
}

/* p[j + l] for the lanes with 0 <= j + l < n, else 0; nothing outside is
 * read (AVX-512 and AVX2 masked loads, which do not fault on masked lanes). */
static FC_INLINE FC_TARGET FC_VEC
FC_N(load_range)(const FC_T *p, ptrdiff_t j, ptrdiff_t n)
{
    if (j >= 0 && j + FC_VL <= n)
        return FC_LOAD(p + j);
#if FC_X86 && FC_VB == 64
    {
        ptrdiff_t lo = j < 0 ? -j : 0, hi = n - j < FC_VL ? n - j : FC_VL;
        unsigned m = hi <= lo ? 0u : ((1u << hi) - 1u) & ~((1u << lo) - 1u);
#if FC_ELEM == 4
        return (FC_VEC)_mm512_maskz_loadu_ps((__mmask16)m, p + j);
#else
        return (FC_VEC)_mm512_maskz_loadu_pd((__mmask8)m, p + j);
#endif
    }
#elif FC_X86 && FC_VB == 32 && FC_ELEM == 4
    {
        __m256i i = _mm256_add_epi32(_mm256_set1_epi32((int)j),
                                     _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256i m = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), i),
                                        _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), i));
        return (FC_VEC)_mm256_maskload_ps(p + j, m);
    }
#elif FC_X86 && FC_VB == 32
    {
        __m256i i = _mm256_add_epi64(_mm256_set1_epi64x((long long)j),
                                     _mm256_setr_epi64x(0, 1, 2, 3));
        __m256i m = _mm256_andnot_si256(_mm256_cmpgt_epi64(_mm256_setzero_si256(), i),
                                        _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)n), i));
        return (FC_VEC)_mm256_maskload_pd(p + j, m);
    }
#else
    {
        union { FC_VEC v; FC_T e[FC_VB / sizeof(FC_T)]; } u;
        for (ptrdiff_t l = 0; l < FC_VL; l++)
            u.e[l] = j + l >= 0 && j + l < n ? p[j + l] : (FC_T)0;
        return u.v;
    }
#endif
}

/* ------------------------------------------------------------------------ */
/* pixels in lanes */

/* A tile of KB channels x NR rows x NV vectors: row r of the tile reads
 * x + r * xrs and writes out + r * ors; the last vector of each row is
 * stored only as far as lastn lanes. */
static FC_INLINE FC_TARGET void
FC_N(pmk)(const int KB, const int NR, const int NV, const FC_T *FC_RESTRICT x,
          ptrdiff_t xrs, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *FC_RESTRICT toff,
          ptrdiff_t nt, const FC_T *FC_RESTRICT w, const FC_T *FC_RESTRICT bias,
          FC_T *FC_RESTRICT out, ptrdiff_t ldo, ptrdiff_t ors, ptrdiff_t lastn)
{
    FC_VEC acc[FC_PKB * FC_PNV];
    FC_VEC xv[FC_PKB * FC_PNV];
    ptrdiff_t c, t;
#define FC_ACC(k, r, v) acc[((k) * NR + (r)) * NV + (v)]
#pragma GCC unroll 8
    for (int k = 0; k < KB; k++) {
        FC_VEC b0 = FC_BCAST(bias ? bias[k] : (FC_T)0);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++)
                FC_ACC(k, r, v) = b0;
        }
    }
    for (c = 0; c < nc; c++) {
        const FC_T *xc = x + c * cs;
        for (t = 0; t < nt; t++) {
            const FC_T *xp = xc + toff[t];
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                const FC_T *xr = xp + r * xrs;
#pragma GCC unroll 16
                for (int v = 0; v < NV; v++)
                    xv[r * NV + v] = FC_LOAD(xr + v * FC_VL);
            }
#pragma GCC unroll 8
            for (int k = 0; k < KB; k++) {
                FC_VEC wb = FC_BCAST(w[k]);
#pragma GCC unroll 8
                for (int r = 0; r < NR; r++) {
#pragma GCC unroll 16
                    for (int v = 0; v < NV; v++)
                        FC_ACC(k, r, v) += wb * xv[r * NV + v];
                }
            }
            w += KB;
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < KB; k++) {
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            FC_T *o = out + k * ldo + r * ors;
#pragma GCC unroll 16
            for (int v = 0; v < NV - 1; v++)
                FC_STORE(o + v * FC_VL, FC_ACC(k, r, v));
            if (lastn == FC_VL) {
                FC_STORE(o + (NV - 1) * FC_VL, FC_ACC(k, r, NV - 1));
            } else {
                FC_N(store_part)(o + (NV - 1) * FC_VL, FC_ACC(k, r, NV - 1), lastn);
            }
        }
    }
#undef FC_ACC
}

/* Rows per tile for rows of NV vectors: the largest power of two (up to 4,
 * so that the row pointers stay in general registers)
 * whose accumulators and input vectors fit the register file (for KB == 1
 * the inputs are used once, straight from memory). */
#define FC_NR1(m) ((m) >= 4 ? 4 : (m) >= 2 ? 2 : 1)
#define FC_NR(KB, NV) FC_NR1((KB) == 1 ? FC_PACC / (NV) : FC_PREG / (((KB) + 1) * (NV)))

/* n = 1 .. 16, for the switches over a run-time vector count */
#define FC_SWITCH16(X, a, b) X(a, b, 1) X(a, b, 2) X(a, b, 3) X(a, b, 4) X(a, b, 5) \
    X(a, b, 6) X(a, b, 7) X(a, b, 8) X(a, b, 9) X(a, b, 10) X(a, b, 11)        \
    X(a, b, 12) X(a, b, 13) X(a, b, 14) X(a, b, 15) X(a, b, 16)

/* Each tile shape as a function of its own: called once per tile, it keeps
 * the compiler from turning the constant offsets of the vectors into
 * induction variables of the loops around it (one register each). */
#define FC_TILE(KB, NR, NV) FC_CAT(FC_CAT(FC_CAT(FC_N(tile), KB), NR), NV)
#define FC_DEFTILES(KB, NVM, n)                                               \
static FC_NOINLINE FC_TARGET void FC_TILE(KB, 1, n)(            \
    const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,         \
    ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,  \
    ptrdiff_t xrs, ptrdiff_t ors, ptrdiff_t lastn)                            \
{                                                                             \
    FC_N(pmk)(KB, 1, n, x, xrs, cs, nc, toff, nt, w, bias, out, ldo, ors, lastn); \
}                                                                             \
static FC_NOINLINE FC_TARGET void FC_TILE(KB, R, n)( \
    const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,         \
    ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,  \
    ptrdiff_t xrs, ptrdiff_t ors, ptrdiff_t lastn)                            \
{                                                                             \
    FC_N(pmk)(KB, FC_NR(KB, n), n, x, xrs, cs, nc, toff, nt, w, bias, out, ldo, ors, \
              lastn);                                                         \
}
#define FC_DEFTILES_KB(KB, NVM) FC_SWITCH16(FC_DEFTILES, KB, NVM)
FC_PLIST(FC_DEFTILES_KB)

/* One band: all of j < J in tiles of NVM vectors, the remainder in one
 * narrower tile. */
#define FC_PTAIL(KB, NVM, n)                                                  \
    if (NVM > n && nv == n)                                                   \
        FC_TILE(KB, 1, n)(x + j, cs, nc, toff, nt, w, bias, out + j, ldo, 0, 0, FC_VL); \
    else

#define FC_PBAND(KB, NVM)                                                     \
static FC_TARGET void FC_CAT(FC_N(pband), KB)(                                \
    const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,         \
    ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,  \
    ptrdiff_t J)                                                              \
{                                                                             \
    ptrdiff_t j = 0, nv;                                                      \
    for (; J - j > (NVM - 1) * FC_VL; j += NVM * FC_VL)                       \
        FC_TILE(KB, 1, NVM)(x + j, cs, nc, toff, nt, w, bias, out + j, ldo, 0, 0, FC_VL); \
    nv = (J - j + FC_VL - 1) / FC_VL;                                         \
    FC_SWITCH16(FC_PTAIL, KB, NVM) {}                                         \
}

FC_PLIST(FC_PBAND)

#define FC_PCASE(KB, NVM)                                                     \
    case KB: FC_CAT(FC_N(pband), KB)(x, cs, nc, toff, nt, w, bias, out, ldo, J); break;

static void
FC_N(pband)(int kb, const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,
            ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,
            ptrdiff_t J)
{
    switch (kb) {
        FC_PLIST(FC_PCASE)
    }
}

/* Rows: out[k * ldo + i * ors + q] for k < KB, i < nrows, q < Q, reading
 * row i of the input at x + i * xrs (readable up to Q rounded up to a whole
 * vector past every tap offset); the results are stored straight into the
 * destination, the last vector of a row only as far as Q. Rows of fewer
 * than NVM vectors go NR at a time. */
#define FC_RSHORT(KB, NVM, n)                                                 \
    if (NVM > n && nrem == n) {                                               \
        for (; nrows - i >= FC_NR(KB, n); i += FC_NR(KB, n))                  \
            FC_TILE(KB, R, n)(x + i * xrs + q0, cs, nc, toff, nt, w, bias,    \
                              out + i * ors + q0, ldo, xrs, ors, lastn);      \
        for (; i < nrows; i++)                                                \
            FC_TILE(KB, 1, n)(x + i * xrs + q0, cs, nc, toff, nt, w, bias,    \
                              out + i * ors + q0, ldo, 0, 0, lastn);          \
    } else

/* Each row in tiles of NVM vectors up to the last nrem (1 .. NVM) vectors,
 * which go several rows per tile when nrem < NVM (a row of 7 vectors with
 * NVM = 3: tiles of 3, 3 per row, then 1 vector of 2 or 4 rows at once). */
#define FC_PROW(KB, NVM)                                                      \
static FC_TARGET void FC_CAT(FC_N(prow), KB)(                                 \
    const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,         \
    ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,  \
    ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t xrs)               \
{                                                                             \
    ptrdiff_t vpr = (Q + FC_VL - 1) / FC_VL, i = 0;                           \
    ptrdiff_t lastn = Q - (vpr - 1) * FC_VL;                                  \
    ptrdiff_t nrem = vpr % NVM ? vpr % NVM : NVM;                             \
    ptrdiff_t q0 = (vpr - nrem) * FC_VL;                                      \
    for (ptrdiff_t q = 0; q < q0; q += NVM * FC_VL)                           \
        for (i = 0; i < nrows; i++)                                           \
            FC_TILE(KB, 1, NVM)(x + i * xrs + q, cs, nc, toff, nt, w, bias,   \
                                out + i * ors + q, ldo, 0, 0, FC_VL);         \
    i = 0;                                                                    \
    FC_SWITCH16(FC_RSHORT, KB, NVM)                                           \
    for (; i < nrows; i++)                                                    \
        FC_TILE(KB, 1, NVM)(x + i * xrs + q0, cs, nc, toff, nt, w, bias,      \
                            out + i * ors + q0, ldo, 0, 0, lastn);            \
}

FC_PLIST(FC_PROW)

#define FC_RCASE(KB, NVM)                                                     \
    case KB: FC_CAT(FC_N(prow), KB)(x, cs, nc, toff, nt, w, bias, out, ldo, ors, Q, nrows, xrs); break;

static void
FC_N(prow)(int kb, const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,
           ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,
           ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t xrs)
{
    switch (kb) {
        FC_PLIST(FC_RCASE)
    }
}

/* ------------------------------------------------------------------------ */
/* one input channel, 3x3 taps, stride 1 in rows: depthwise convolutions */

/* A tile of NR rows x NV vectors of one output channel. Output row k reads
 * input rows k .. k+2 (x + row * xrs), columns shifted by co[0..2]; each
 * input row is loaded once and used by every output row it reaches (up to
 * three), with the nine weights held in registers: half the loads of the
 * generic tile, whose loads (mostly across cache lines) are what bounds a
 * depthwise convolution. */
static FC_INLINE FC_TARGET void
FC_N(dw3mk)(const int NR, const int NV, const FC_T *FC_RESTRICT x, ptrdiff_t xrs,
            const ptrdiff_t *FC_RESTRICT co, const FC_VEC *FC_RESTRICT wv, FC_VEC b0,
            FC_T *FC_RESTRICT out, ptrdiff_t ors, ptrdiff_t lastn)
{
    FC_VEC acc[FC_DWNR * FC_DWNV];
    FC_VEC w[9];
    const ptrdiff_t c0 = co[0], c1 = co[1], c2 = co[2];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++)
        w[t] = wv[t];
#pragma GCC unroll 16
    for (int i = 0; i < NR * NV; i++)
        acc[i] = b0;
#pragma GCC unroll 8
    for (int m = 0; m < NR + 2; m++) {
        const FC_T *xm = x + m * xrs;
#pragma GCC unroll 3
        for (int s = 0; s < 3; s++) {
            const FC_T *xs = xm + (s == 0 ? c0 : s == 1 ? c1 : c2);
            FC_VEC xv[FC_DWNV];
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                xv[v] = FC_LOAD(xs + v * FC_VL);
                FC_IN_REGISTER(xv[v]);
            }
#pragma GCC unroll 8
            for (int k = 0; k < NR; k++) {
                if (m - k >= 0 && m - k < 3) {
#pragma GCC unroll 8
                    for (int v = 0; v < NV; v++)
                        acc[k * NV + v] += w[(m - k) * 3 + s] * xv[v];
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < NR; k++) {
        FC_T *o = out + k * ors;
#pragma GCC unroll 8
        for (int v = 0; v < NV - 1; v++)
            FC_STORE(o + v * FC_VL, acc[k * NV + v]);
        if (lastn == FC_VL) {
            FC_STORE(o + (NV - 1) * FC_VL, acc[k * NV + NV - 1]);
        } else {
            FC_N(store_part)(o + (NV - 1) * FC_VL, acc[k * NV + NV - 1], lastn);
        }
    }
}

#define FC_DWTILE(NR, NV) FC_CAT(FC_CAT(FC_N(dwtile), NR), NV)
#define FC_DEFDWTILE(NR, NVM, n)                                              \
static FC_NOINLINE FC_TARGET void FC_DWTILE(NR, n)(             \
    const FC_T *x, ptrdiff_t xrs, const ptrdiff_t *co, const FC_VEC *wv,      \
    const FC_T *bias, FC_T *out, ptrdiff_t ors, ptrdiff_t lastn)              \
{                                                                             \
    FC_N(dw3mk)(NR, n, x, xrs, co, wv, FC_BCAST(bias ? *bias : (FC_T)0), out, ors, lastn); \
}
#define FC_DEFDWTILES(NR, NVM) FC_SWITCH16(FC_DEFDWTILE, NR, NVM)
FC_DWLIST(FC_DEFDWTILES)

#define FC_DWCALL(NR, NVM, n)                                                 \
    if (NVM >= n && nv == n)                                                  \
        FC_DWTILE(NR, n)(x + i * xrs + q, xrs, co, wv, bias, out + i * ors + q, ors, ln); \
    else

/* Rows i < nrows of one output channel, q < Q: out[i * ors + q] = bias +
 * sum over r, s < 3 of w[(3r + s) * ws] * x[(i + r) * xrs + co[s] + q]. */
static FC_TARGET void
FC_N(prow_dw3)(const FC_T *x, ptrdiff_t xrs, const ptrdiff_t *co, const FC_T *w, ptrdiff_t ws,
               const FC_T *bias, FC_T *out, ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows)
{
    FC_VEC wv[9];
    for (int t = 0; t < 9; t++)
        wv[t] = FC_BCAST(w[t * ws]);
    for (ptrdiff_t q = 0; q < Q; q += FC_DWNV * FC_VL) {
        ptrdiff_t nv = (Q - q + FC_VL - 1) / FC_VL, ln = FC_VL, i = 0;
        if (nv > FC_DWNV)
            nv = FC_DWNV;
        if (q + nv * FC_VL >= Q)
            ln = Q - q - (nv - 1) * FC_VL;
        for (; nrows - i >= FC_DWNR; i += FC_DWNR) {
            FC_SWITCH16(FC_DWCALL, FC_DWNR, FC_DWNV) {}
        }
        for (; i < nrows; i++) {
            FC_SWITCH16(FC_DWCALL, 1, FC_DWNV) {}
        }
    }
}

/* ------------------------------------------------------------------------ */
/* channels in lanes */

/* n = 1 .. 24, for the switches over a run-time pixel or tap count */
#define FC_SWITCH24(X, a, b) FC_SWITCH16(X, a, b) X(a, b, 17) X(a, b, 18)      \
    X(a, b, 19) X(a, b, 20) X(a, b, 21) X(a, b, 22) X(a, b, 23) X(a, b, 24)

/* A tile of KV vectors of output channels x NR rows (1 or 2, xrs apart) of
 * NP consecutive pixels: tmp[(r*NP + p) * KV*VL + k] =
 * bias[k] + sum over c, t of w[c][t][k] * x[c*cs + toff[t] + r*xrs + p],
 * the input broadcast, the weights (zero-padded to whole vectors) loaded
 * once per tap for all NR * NP pixels. NR = 0 is one run of NP pixels at
 * offsets po[p] instead of r*xrs + p: a run of the output that crosses the
 * end of a row (the offsets stay in registers). */
static FC_INLINE FC_TARGET void
FC_N(kmk)(const int KV, const int NR, const int NP, const FC_T *FC_RESTRICT x,
          ptrdiff_t xrs, const ptrdiff_t *FC_RESTRICT po, ptrdiff_t cs, ptrdiff_t nc,
          const ptrdiff_t *FC_RESTRICT toff, ptrdiff_t nt, const FC_T *FC_RESTRICT w,
          const FC_T *FC_RESTRICT bias, FC_T *FC_RESTRICT tmp)
{
    FC_VEC acc[2 * FC_KKV * FC_KNP];
    FC_VEC wv[FC_KKV];
    const FC_T *xq[FC_KNP]; /* NR = 0: where each pixel reads, in registers */
    const int NRS = NR ? NR : 1; /* rows of the tile */
    ptrdiff_t c, t;
#pragma GCC unroll 32
    for (int p = 0; p < NP; p++)
        xq[p] = NR ? x : x + po[p];
#pragma GCC unroll 4
    for (int kv = 0; kv < KV; kv++) {
        FC_VEC b0 = FC_BCAST(0);
        if (bias)
            b0 = FC_LOAD(bias + kv * FC_VL);
#pragma GCC unroll 32
        for (int p = 0; p < NRS * NP; p++)
            acc[kv * NRS * NP + p] = b0;
    }
    for (c = 0; c < nc; c++) {
        const FC_T *xc = x + c * cs;
        for (t = 0; t < nt; t++) {
            const FC_T *xp = xc + toff[t];
#pragma GCC unroll 4
            for (int kv = 0; kv < KV; kv++)
                wv[kv] = FC_LOAD(w + kv * FC_VL);
#pragma GCC unroll 2
            for (int r = 0; r < NRS; r++) {
                const FC_T *xr = xp + r * xrs;
#pragma GCC unroll 32
                for (int p = 0; p < NP; p++) {
                    FC_VEC b = FC_BCAST(NR ? xr[p] : xq[p][c * cs + toff[t]]);
#pragma GCC unroll 4
                    for (int kv = 0; kv < KV; kv++)
                        acc[(kv * NRS + r) * NP + p] += wv[kv] * b;
                }
            }
            w += KV * FC_VL;
        }
    }
#pragma GCC unroll 32
    for (int p = 0; p < NRS * NP; p++) {
#pragma GCC unroll 4
        for (int kv = 0; kv < KV; kv++)
            FC_STORE(tmp + (p * KV + kv) * FC_VL, acc[kv * NRS * NP + p]);
    }
}

#define FC_KTILE(KV, NR, NP) FC_CAT(FC_CAT(FC_CAT(FC_N(ktile), KV), NR), NP)
#define FC_DEFKTILE(KV, NPM, n)                                               \
static FC_NOINLINE FC_TARGET void FC_KTILE(KV, 1, n)(                         \
    const FC_T *x, ptrdiff_t xrs, ptrdiff_t cs, ptrdiff_t nc,                 \
    const ptrdiff_t *toff, ptrdiff_t nt, const FC_T *w, const FC_T *bias,     \
    FC_T *tmp)                                                                \
{                                                                             \
    FC_N(kmk)(KV, 1, n, x, xrs, NULL, cs, nc, toff, nt, w, bias, tmp);        \
}                                                                             \
static FC_NOINLINE FC_TARGET void FC_KTILE(KV, 2, n)(                         \
    const FC_T *x, ptrdiff_t xrs, ptrdiff_t cs, ptrdiff_t nc,                 \
    const ptrdiff_t *toff, ptrdiff_t nt, const FC_T *w, const FC_T *bias,     \
    FC_T *tmp)                                                                \
{                                                                             \
    FC_N(kmk)(KV, 2, n, x, xrs, NULL, cs, nc, toff, nt, w, bias, tmp);        \
}                                                                             \
static FC_NOINLINE FC_TARGET void FC_KTILE(KV, 0, n)(                         \
    const FC_T *x, const ptrdiff_t *po, ptrdiff_t cs, ptrdiff_t nc,           \
    const ptrdiff_t *toff, ptrdiff_t nt, const FC_T *w, const FC_T *bias,     \
    FC_T *tmp)                                                                \
{                                                                             \
    FC_N(kmk)(KV, 0, n, x, 0, po, cs, nc, toff, nt, w, bias, tmp);            \
}
#define FC_DEFKTILES(KV, NPM) FC_SWITCH24(FC_DEFKTILE, KV, NPM)
FC_KLIST(FC_DEFKTILES)

/* o[k * ldo + p] = tmp[p * ldt + k] for k < kk, p < np: a tile of results
 * [pixel][channel] turned into rows of channels. On AVX2 and AVX-512,
 * VL x VL blocks are transposed in registers, log2(VL) rounds of
 * interleaving (r[i], r[i + VL/2]) that GCC turns into shuffles or
 * two-source permutes, and stored a row of pixels at a time (the last part
 * masked); otherwise element by element. */
#define FC_LANES (FC_VB / FC_ELEM)
/* __builtin_shufflevector(a, b, FC_ZIP_LO / FC_ZIP_HI): the lanes of the
 * low / high halves of a and b interleaved (also dw2_zip_store's) */
#if FC_LANES == 16
#define FC_ZIP_LO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define FC_ZIP_HI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#elif FC_LANES == 8
#define FC_ZIP_LO 0, 8, 1, 9, 2, 10, 3, 11
#define FC_ZIP_HI 4, 12, 5, 13, 6, 14, 7, 15
#elif FC_LANES == 4
#define FC_ZIP_LO 0, 4, 1, 5
#define FC_ZIP_HI 2, 6, 3, 7
#elif FC_LANES == 2
#define FC_ZIP_LO 0, 2
#define FC_ZIP_HI 1, 3
#endif
#if FC_X86 && FC_VB >= 32 && (__GNUC__ >= 12 || defined(__clang__))
#if FC_LANES == 16
#define FC_ROUNDS 4
#elif FC_LANES == 8
#define FC_ROUNDS 3
#else
#define FC_ROUNDS 2
#endif
#define FC_VTRANSPOSE 1
/* r[i][j] <-> r[j][i]: a VL x VL block transposed in registers */
static FC_INLINE FC_TARGET void
FC_N(vtranspose)(FC_VEC *r)
{
    FC_VEC t[FC_LANES];
#pragma GCC unroll 4
    for (int round = 0; round < FC_ROUNDS; round++) {
#pragma GCC unroll 8
        for (int i = 0; i < FC_LANES / 2; i++) {
            t[2 * i] = __builtin_shufflevector(r[i], r[i + FC_LANES / 2], FC_ZIP_LO);
            t[2 * i + 1] = __builtin_shufflevector(r[i], r[i + FC_LANES / 2], FC_ZIP_HI);
        }
#pragma GCC unroll 16
        for (int i = 0; i < FC_LANES; i++)
            r[i] = t[i];
    }
}

static FC_INLINE FC_TARGET void
FC_N(kstore)(FC_T *FC_RESTRICT o, ptrdiff_t ldo, const FC_T *FC_RESTRICT tmp, ptrdiff_t ldt,
             ptrdiff_t kk, ptrdiff_t np)
{
    for (ptrdiff_t k0 = 0; k0 < kk; k0 += FC_LANES) {
        for (ptrdiff_t p0 = 0; p0 < np; p0 += FC_LANES) {
            FC_VEC r[FC_LANES];
            ptrdiff_t pn = np - p0 < FC_LANES ? np - p0 : FC_LANES;
            ptrdiff_t kn = kk - k0 < FC_LANES ? kk - k0 : FC_LANES;
            for (int i = 0; i < FC_LANES; i++) {
                r[i] = FC_BCAST(0);
                if (i < pn)
                    r[i] = FC_LOAD(tmp + (p0 + i) * ldt + k0);
            }
            FC_N(vtranspose)(r);
            if (pn == FC_LANES) {
                for (ptrdiff_t k = 0; k < kn; k++)
                    FC_STORE(o + (k0 + k) * ldo + p0, r[k]);
            } else {
                for (ptrdiff_t k = 0; k < kn; k++)
                    FC_N(store_part)(o + (k0 + k) * ldo + p0, r[k], pn);
            }
        }
    }
}
#undef FC_ROUNDS
#else
static FC_INLINE FC_TARGET void
FC_N(kstore)(FC_T *FC_RESTRICT o, ptrdiff_t ldo, const FC_T *FC_RESTRICT tmp, ptrdiff_t ldt,
             ptrdiff_t kk, ptrdiff_t np)
{
    for (ptrdiff_t k = 0; k < kk; k++)
        for (ptrdiff_t p = 0; p < np; p++)
            o[k * ldo + p] = tmp[p * ldt + k];
}
#endif
#undef FC_LANES

#define FC_KTAIL(KV, NPM, n)                                                  \
    if (NPM >= n && np == n)                                                  \
        FC_KTILE(KV, 1, n)(xi + q, 0, cs, nc, toff, nt, w, bias, tmp);        \
    else

#define FC_KSPAN(KV, NPM, n)                                                  \
    if (NPM >= n && np == n)                                                  \
        FC_KTILE(KV, 0, n)(x + i * xrs, po, cs, nc, toff, nt, w, bias, tmp);  \
    else

#define FC_KPAIR(KV, NPM, n)                                                  \
    if (NPM >= 2 * n && Q == n)                                               \
        FC_KTILE(KV, 2, n)(x + i * xrs, xrs, cs, nc, toff, nt, w, bias, tmp); \
    else

/* Whether to tile the rows as one run, tiles crossing row ends: only for
 * tiles of up to 8 pixels (one register per pixel's offset; with 14 on
 * AVX-512 they spill), and where it takes fewer tiles than row by row. On
 * AVX2, 14-pixel rows run as 6-pixel tiles instead of 5 + 5 + 4 and 7-pixel
 * rows instead of 4 + 3: 5-8% and 13-15% faster on data in cache. */
static FC_INLINE int
FC_N(kspan)(ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t npm)
{
    ptrdiff_t by_row = 2 * Q <= npm ? (nrows + 1) / 2 : nrows * ((Q + npm - 1) / npm);
    return npm <= 8 && (nrows * Q + npm - 1) / npm < by_row;
}

/* Rows: out[k * ldo + i * ors + q] for k < kk, i < nrows, q < Q, reading row
 * i at x + i * xrs; tiles of up to NPM pixels (two rows at a time when
 * they fit, or, when kspan says so, one run over the rows that crosses
 * their ends), transposed into place. */
#define FC_KROW(KV, NPM)                                                      \
static FC_TARGET void FC_CAT(FC_N(krow), KV)(                                 \
    const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,         \
    ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,  \
    ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t xrs, ptrdiff_t kk) \
{                                                                             \
    FC_VEC tmpv[NPM * KV];                                                    \
    FC_T *tmp = (FC_T *)tmpv;                                                 \
    ptrdiff_t i = 0;                                                          \
    if (ors == Q && FC_N(kspan)(Q, nrows, NPM)) {                             \
        /* the rows are one run in the output: tiles may cross row ends */   \
        ptrdiff_t n = nrows * Q, left = (n + NPM - 1) / NPM, np, f, q, p;     \
        ptrdiff_t po[NPM];                                                    \
        for (f = 0; f < n; f += np, left--) {                                 \
            np = (n - f + left - 1) / left;                                   \
            i = f / Q;                                                        \
            q = f - i * Q;                                                    \
            if (q + np <= Q) {                                                \
                const FC_T *xi = x + i * xrs;                                 \
                FC_SWITCH24(FC_KTAIL, KV, NPM) {}                             \
            } else {                                                          \
                for (p = 0; p < np; p++)                                      \
                    po[p] = (q + p) / Q * xrs + (q + p) % Q;                  \
                FC_SWITCH24(FC_KSPAN, KV, NPM) {}                             \
            }                                                                 \
            FC_N(kstore)(out + f, ldo, tmp, KV * FC_VL, kk, np);              \
        }                                                                     \
        return;                                                               \
    }                                                                         \
    if (2 * Q <= NPM) {                                                       \
        for (; nrows - i >= 2; i += 2) {                                      \
            FC_SWITCH24(FC_KPAIR, KV, NPM) {}                                 \
            FC_N(kstore)(out + i * ors, ldo, tmp, KV * FC_VL, kk, Q);         \
            FC_N(kstore)(out + (i + 1) * ors, ldo, tmp + Q * KV * FC_VL,      \
                         KV * FC_VL, kk, Q);                                  \
        }                                                                     \
    }                                                                         \
    for (; i < nrows; i++) {                                                  \
        const FC_T *xi = x + i * xrs;                                         \
        /* as few tiles as fit, as even as they go: 29 pixels run as        \
         * 10 + 10 + 9, not 14 + 14 + 1 (a one-pixel tile is load-bound) */ \
        ptrdiff_t left = (Q + NPM - 1) / NPM, np;                             \
        for (ptrdiff_t q = 0; q < Q; q += np, left--) {                       \
            np = (Q - q + left - 1) / left;                                   \
            FC_T *o = out + i * ors + q;                                      \
            FC_SWITCH24(FC_KTAIL, KV, NPM) {}                                 \
            FC_N(kstore)(o, ldo, tmp, KV * FC_VL, kk, np);                    \
        }                                                                     \
    }                                                                         \
}
FC_KLIST(FC_KROW)

#define FC_KCASE(KV, NPM)                                                     \
    case KV: FC_CAT(FC_N(krow), KV)(x, cs, nc, toff, nt, w, bias, out, ldo, ors, Q, nrows, xrs, kk); break;

static void
FC_N(krow)(int kv, const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,
           ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,
           ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t xrs, ptrdiff_t kk)
{
    switch (kv) {
        FC_KLIST(FC_KCASE)
    }
}

/* grad_weight, channels in lanes: part[t * ldp + k] += sum over i < nrows,
 * q < Q of g[(i*Q + q) * ldg + k] * x[toff[t] + i * xrs + q] for k < KV*VL,
 * over the pixels of the output only: g is grad_output transposed to
 * [pixel][channel]. A tile of KV channel vectors x NT taps. */
static FC_INLINE FC_TARGET void
FC_N(kgmk)(const int KV, const int NT, const FC_T *FC_RESTRICT g, ptrdiff_t ldg,
           const FC_T *FC_RESTRICT x, const ptrdiff_t *FC_RESTRICT toff, ptrdiff_t Q,
           ptrdiff_t nrows, ptrdiff_t xrs, FC_T *FC_RESTRICT part, ptrdiff_t ldp)
{
    FC_VEC acc[FC_KKV * FC_KNT];
    FC_VEC gv[FC_KKV];
#pragma GCC unroll 4
    for (int kv = 0; kv < KV; kv++) {
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
            acc[kv * NT + t] = FC_BCAST(0);
    }
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const FC_T *xr[FC_KNT];
        const FC_T *gi = g + i * Q * ldg;
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
            xr[t] = x + toff[t] + i * xrs;
        for (ptrdiff_t q = 0; q < Q; q++) {
#pragma GCC unroll 4
            for (int kv = 0; kv < KV; kv++)
                gv[kv] = FC_LOAD(gi + q * ldg + kv * FC_VL);
#pragma GCC unroll 16
            for (int t = 0; t < NT; t++) {
                FC_VEC b = FC_BCAST(xr[t][q]);
#pragma GCC unroll 4
                for (int kv = 0; kv < KV; kv++)
                    acc[kv * NT + t] += gv[kv] * b;
            }
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) {
#pragma GCC unroll 4
        for (int kv = 0; kv < KV; kv++) {
            FC_T *pp = part + t * ldp + kv * FC_VL;
            FC_STORE(pp, FC_LOAD(pp) + acc[kv * NT + t]);
        }
    }
}

#define FC_KGTILE(KV, NT) FC_CAT(FC_CAT(FC_N(kgtile), KV), NT)
#define FC_DEFKGTILE(KV, NTM, n)                                              \
static FC_NOINLINE FC_TARGET void FC_KGTILE(KV, n)(             \
    const FC_T *g, ptrdiff_t ldg, const FC_T *x, const ptrdiff_t *toff,       \
    ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t xrs, FC_T *part, ptrdiff_t ldp)   \
{                                                                             \
    FC_N(kgmk)(KV, n, g, ldg, x, toff, Q, nrows, xrs, part, ldp);             \
}
#define FC_DEFKGTILES(KV, NTM) FC_SWITCH16(FC_DEFKGTILE, KV, NTM)
FC_KGLIST(FC_DEFKGTILES)

#define FC_KGTAIL(KV, NTM, n)                                                 \
    if (NTM >= n && ntl == n)                                                 \
        FC_KGTILE(KV, n)(g, ldg, x, toff + t, Q, nrows, xrs, part + t * ldp, ldp); \
    else

#define FC_KGBAND(KV, NTM)                                                    \
static FC_TARGET void FC_CAT(FC_N(kgband), KV)(                               \
    const FC_T *g, ptrdiff_t ldg, const FC_T *x, const ptrdiff_t *toff,       \
    ptrdiff_t nt, ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t xrs, FC_T *part,    \
    ptrdiff_t ldp)                                                            \
{                                                                             \
    /* as few tiles of taps as fit, as even as they go (9 = 5 + 4) */        \
    ptrdiff_t left = (nt + NTM - 1) / NTM, ntl;                               \
    for (ptrdiff_t t = 0; t < nt; t += ntl, left--) {                         \
        ntl = (nt - t + left - 1) / left;                                     \
        FC_SWITCH16(FC_KGTAIL, KV, NTM) {}                                    \
    }                                                                         \
}
FC_KGLIST(FC_KGBAND)

#define FC_KGCASE(KV, NTM)                                                    \
    case KV: FC_CAT(FC_N(kgband), KV)(g, ldg, x, toff, nt, Q, nrows, xrs, part, ldp); break;

static void
FC_N(kgband)(int kv, const FC_T *g, ptrdiff_t ldg, const FC_T *x, const ptrdiff_t *toff,
             ptrdiff_t nt, ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t xrs, FC_T *part,
             ptrdiff_t ldp)
{
    switch (kv) {
        FC_KGLIST(FC_KGCASE)
    }
}

/* dst[j * ldd + k] = src[k * lds + j] for k < nk, j < nj, and 0 for
 * nk <= k < nkp: a block of rows turned into columns, zero-padded. */
static FC_TARGET void
FC_N(transpose)(FC_T *FC_RESTRICT dst, ptrdiff_t ldd, const FC_T *FC_RESTRICT src,
                ptrdiff_t lds, ptrdiff_t nk, ptrdiff_t nkp, ptrdiff_t nj)
{
    for (ptrdiff_t j0 = 0; j0 < nj; j0 += 16) {
        ptrdiff_t j1 = nj - j0 < 16 ? nj : j0 + 16;
        for (ptrdiff_t k = 0; k < nk; k++)
            for (ptrdiff_t j = j0; j < j1; j++)
                dst[j * ldd + k] = src[k * lds + j];
        for (ptrdiff_t j = j0; j < j1; j++)
            for (ptrdiff_t k = nk; k < nkp; k++)
                dst[j * ldd + k] = 0;
    }
}

/* rows ahead of the copy that _fill prefetches */
#ifndef FC_PF_ROWS
#define FC_PF_ROWS 8
#endif

/* dst[j] = src[j] for j < n < VL: in 16-byte pieces (the last one
 * overlapping), or one by one below 16 bytes. */
static FC_INLINE FC_TARGET void
FC_N(copy_short)(FC_T *FC_RESTRICT dst, const FC_T *FC_RESTRICT src, ptrdiff_t n)
{
#ifndef FC_SCALAR
    typedef FC_T v16 __attribute__((vector_size(16), aligned(sizeof(FC_T)), may_alias));
    const ptrdiff_t L = 16 / sizeof(FC_T);
    ptrdiff_t j;
    if (n >= L) {
        for (j = 0; j + L <= n; j += L)
            *(v16 *)(dst + j) = *(const v16 *)(src + j);
        if (j < n)
            *(v16 *)(dst + n - L) = *(const v16 *)(src + n - L);
        return;
    }
#endif
    for (ptrdiff_t i = 0; i < n; i++)
        dst[i] = src[i];
}

/* dst[j] = 0 for j < n < VL, likewise. */
static FC_INLINE FC_TARGET void
FC_N(zero_short)(FC_T *FC_RESTRICT dst, ptrdiff_t n)
{
#ifndef FC_SCALAR
    typedef FC_T v16 __attribute__((vector_size(16), aligned(sizeof(FC_T)), may_alias));
    const ptrdiff_t L = 16 / sizeof(FC_T);
    const v16 z = {0};
    ptrdiff_t j;
    if (n >= L) {
        for (j = 0; j + L <= n; j += L)
            *(v16 *)(dst + j) = z;
        if (j < n)
            *(v16 *)(dst + n - L) = z;
        return;
    }
#endif
    for (ptrdiff_t i = 0; i < n; i++)
        dst[i] = 0;
}

/* dst[j] = src[j] for j < n, in whole vectors (the last one overlapping),
 * below one vector as copy_short: a row in a few instructions, not a
 * library call. */
static FC_TARGET void
FC_N(copy)(FC_T *FC_RESTRICT dst, const FC_T *FC_RESTRICT src, ptrdiff_t n)
{
    ptrdiff_t j;
    if (n < FC_VL) {
        FC_N(copy_short)(dst, src, n);
        return;
    }
    for (j = 0; j + FC_VL <= n; j += FC_VL)
        FC_STORE(dst + j, FC_LOAD(src + j));
    if (j < n)
        FC_STORE(dst + n - FC_VL, FC_LOAD(src + n - FC_VL));
}

/* dst[j] = 0 for j < n, likewise. */
static FC_INLINE FC_TARGET void
FC_N(zero_row)(FC_T *FC_RESTRICT dst, ptrdiff_t n)
{
    if (n < FC_VL) {
        FC_N(zero_short)(dst, n);
        return;
    }
    for (ptrdiff_t j = 0; j < n; j += FC_VL)
        FC_STORE(dst + (j < n - FC_VL ? j : n - FC_VL), FC_BCAST(0));
}

/* Stride 2 in columns: source rows are copied into zero-padded rows on the
 * stack, FC_SPLIT_ROWS at a time, then each is split into its two column
 * phases with two-vector shuffles, both planes at once. (Element by element
 * a 14-wide phase row cost ~40 cycles, 10% of a stride-2 layer's time; and
 * splitting a row right after staging it stalls on store forwarding, hence
 * the batches.) */
#undef FC_SPLIT2
#if !defined(FC_SCALAR) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define FC_SPLIT2 1
#endif
#endif

#ifdef FC_SPLIT2
#undef FC_EVEN
#undef FC_ODD
#if FC_VB / FC_ELEM == 16
#define FC_EVEN(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, \
                                              20, 22, 24, 26, 28, 30)
#define FC_ODD(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, \
                                             21, 23, 25, 27, 29, 31)
#elif FC_VB / FC_ELEM == 8
#define FC_EVEN(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define FC_ODD(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#elif FC_VB / FC_ELEM == 4
#define FC_EVEN(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6)
#define FC_ODD(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7)
#else
#define FC_EVEN(a, b) __builtin_shufflevector(a, b, 0, 2)
#define FC_ODD(a, b) __builtin_shufflevector(a, b, 1, 3)
#endif
/* a stack row: FC_SPLIT_PAD zeros, the source row, zeros (elements) */
#ifndef FC_SPLIT_LEN
#define FC_SPLIT_LEN 512
#endif
#define FC_SPLIT_PAD 64
#define FC_SPLIT_ROWS 8

/* Whether fill_split2 can run: the padded row and every vector it reads
 * fit a stack row. */
static FC_INLINE int
FC_N(split2_fits)(ptrdiff_t w_end, ptrdiff_t col0, ptrdiff_t Wb)
{
    ptrdiff_t span = Wb > FC_VL ? Wb : FC_VL;
    return col0 >= -FC_SPLIT_PAD && col0 <= FC_SPLIT_LEN && w_end <= FC_SPLIT_LEN
           && FC_SPLIT_PAD + w_end <= FC_SPLIT_LEN
           && FC_SPLIT_PAD + col0 + 2 * span <= FC_SPLIT_LEN;
}

/* d0[j] = row[col0 + 2j], d1[j] = row[col0 + 1 + 2j] for j < Wb; the last
 * vector overlaps the one before, or is stored in part. */
static FC_INLINE FC_TARGET void
FC_N(split2_row)(const FC_T *row, ptrdiff_t col0, ptrdiff_t Wb, FC_T *d0, FC_T *d1)
{
    for (ptrdiff_t j = 0; j < Wb; j += FC_VL) {
        ptrdiff_t jj = Wb < FC_VL || j < Wb - FC_VL ? j : Wb - FC_VL;
        const FC_T *u = row + col0 + 2 * jj;
        FC_VEC v0 = FC_LOAD(u), v1 = FC_LOAD(u + FC_VL);
        FC_VEC e = FC_EVEN(v0, v1), o = FC_ODD(v0, v1);
        if (Wb < FC_VL) {
            FC_N(store_part)(d0, e, Wb);
            FC_N(store_part)(d1, o, Wb);
        } else {
            FC_STORE(d0 + jj, e);
            FC_STORE(d1 + jj, o);
        }
    }
}

/* fill (below) for sw == 2 where split2_fits. */
static FC_TARGET void
FC_N(fill_split2)(const FC_T *src, ptrdiff_t nch, ptrdiff_t Hs, ptrdiff_t Ws, ptrdiff_t h_end,
                  ptrdiff_t w_end, ptrdiff_t sh, ptrdiff_t row0, ptrdiff_t col0, ptrdiff_t Bh,
                  ptrdiff_t Wb, ptrdiff_t i_begin, ptrdiff_t i_end, FC_T *buf)
{
    FC_T t[FC_SPLIT_ROWS][FC_SPLIT_LEN] __attribute__((aligned(64)));
    ptrdiff_t span = Wb > FC_VL ? Wb : FC_VL, used, j;
    used = FC_SPLIT_PAD + (w_end > col0 + 2 * span ? w_end : col0 + 2 * span);
    for (int r = 0; r < FC_SPLIT_ROWS; r++)  /* only [PAD, PAD + w_end) is rewritten */
        for (j = 0; j < used; j++)
            t[r][j] = 0;
    for (ptrdiff_t c = 0; c < nch; c++)
    for (ptrdiff_t a = 0; a < sh; a++) {
        FC_T *plane = buf + (c * sh + a) * 2 * Bh * Wb;
        for (ptrdiff_t i0 = i_begin; i0 < i_end; i0 += FC_SPLIT_ROWS) {
            ptrdiff_t i1 = i_end - i0 < FC_SPLIT_ROWS ? i_end : i0 + FC_SPLIT_ROWS;
            for (ptrdiff_t i = i0; i < i1; i++) {  /* stage the batch's rows */
                ptrdiff_t h = row0 + i * sh + a;
                FC_T *row = t[i - i0] + FC_SPLIT_PAD;
                const FC_T *s = src + (c * Hs + h) * Ws;
                if (h < 0 || h >= h_end || w_end <= 0)
                    continue;
                for (j = 0; j < w_end; j += 64 / (ptrdiff_t)sizeof(FC_T))
                    __builtin_prefetch(s + j + FC_PF_ROWS * sh * Ws, 0, 3);
                FC_N(copy)(row, s, w_end);
            }
            for (ptrdiff_t i = i0; i < i1; i++) {  /* and split them */
                ptrdiff_t h = row0 + i * sh + a;
                FC_T *d0 = plane + i * Wb, *d1 = d0 + Bh * Wb;
                if (h >= 0 && h < h_end && w_end > 0) {
                    FC_N(split2_row)(t[i - i0] + FC_SPLIT_PAD, col0, Wb, d0, d1);
                } else {
                    FC_N(zero_row)(d0, Wb);
                    FC_N(zero_row)(d1, Wb);
                }
            }
        }
    }
}
#endif

/* Copy rows of the planes src[c] (Hs x Ws) into phase planes:
 * buf[((c*sh + a)*sw + b)*Bh*Wb + i*Wb + j] = src[c, row0 + i*sh + a, col0 + j*sw + b]
 * for i in [i_begin, i_end), where that row is in [0, h_end) and that column
 * in [0, w_end), else 0. Rows are written with whole vectors (the last one
 * overlapping the one before), so a row costs a few instructions, not a
 * library call per run. */
static FC_TARGET void
FC_N(fill)(const FC_T *src, ptrdiff_t nch, ptrdiff_t Hs, ptrdiff_t Ws, ptrdiff_t h_end,
           ptrdiff_t w_end, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t row0, ptrdiff_t col0,
           ptrdiff_t Bh, ptrdiff_t Wb, ptrdiff_t i_begin, ptrdiff_t i_end, FC_T *buf)
{
    const FC_VEC zero = FC_BCAST(0);
#ifdef FC_SPLIT2
    if (sw == 2 && FC_N(split2_fits)(w_end, col0, Wb)) {
        FC_N(fill_split2)(src, nch, Hs, Ws, h_end, w_end, sh, row0, col0, Bh, Wb, i_begin,
                          i_end, buf);
        return;
    }
#endif
    for (ptrdiff_t c = 0; c < nch; c++)
    for (ptrdiff_t a = 0; a < sh; a++)
    for (ptrdiff_t b = 0; b < sw; b++) {
        FC_T *plane = buf + ((c * sh + a) * sw + b) * Bh * Wb;
        /* buffer columns [ja, jb) hold source columns col0 + j*sw + b in [0, w_end) */
        ptrdiff_t off = col0 + b, ja, jb;
        ja = off >= 0 ? 0 : (-off + sw - 1) / sw;
        jb = w_end - off <= 0 ? 0 : (w_end - off + sw - 1) / sw;
        if (ja > Wb) ja = Wb;
        if (jb > Wb) jb = Wb;
        for (ptrdiff_t i = i_begin; i < i_end; i++) {
            FC_T *d = plane + i * Wb;
            ptrdiff_t h = row0 + i * sh + a, j;
            const FC_T *s;
            int data = h >= 0 && h < h_end && ja < jb;
            if (Wb < FC_VL) {
                FC_N(zero_short)(d, Wb);
                s = src + (c * Hs + h) * Ws + off;
                if (data && sw == 1)
                    FC_N(copy_short)(d + ja, s + ja, jb - ja);
                else if (data && sw == 2)  /* a constant stride: see below */
                    for (j = ja; j < jb; j++)
                        d[j] = s[2 * j];
                else if (data)
                    for (j = ja; j < jb; j++)
                        d[j] = s[j * sw];
                continue;
            }
            if (!data) {
                FC_N(zero_row)(d, Wb);
                continue;
            }
            /* zeros first, in whole vectors that may spill into the data
             * columns; the data is written over them afterwards */
            for (j = 0; j < ja; j += FC_VL)
                FC_STORE(d + (j < Wb - FC_VL ? j : Wb - FC_VL), zero);
            for (j = jb; j < Wb; j += FC_VL)
                FC_STORE(d + (j < Wb - FC_VL ? j : Wb - FC_VL), zero);
            s = src + (c * Hs + h) * Ws + off;
#ifdef __GNUC__
            /* the rows a later call will copy: their reading overlaps the
             * computation in between instead of stalling the copy */
            for (j = 0; j < (jb - ja) * sw; j += 64 / (ptrdiff_t)sizeof(FC_T))
                __builtin_prefetch(s + ja * sw + j + FC_PF_ROWS * sh * Ws, 0, 3);
#endif
            if (sw == 1) {
                FC_N(copy)(d + ja, s + ja, jb - ja);
            } else if (sw == 2) {
                /* a constant stride, which the compiler vectorises (loads
                 * and permutes) where a variable one stays scalar */
                for (j = ja; j < jb; j++)
                    d[j] = s[2 * j];
            } else {
                for (j = ja; j < jb; j++)
                    d[j] = s[j * sw];
            }
        }
    }
}

/* The sum of the lanes of v, in double, as a tree (log2(VL) dependent adds). */
static FC_INLINE FC_TARGET double
FC_N(hsum_double)(FC_VEC v)
{
    union { FC_VEC v; FC_T e[FC_VB / sizeof(FC_T)]; } u = {v};
    double d[FC_VB / sizeof(FC_T)];
#pragma GCC unroll 16
    for (int l = 0; l < (int)FC_VL; l++)
        d[l] = u.e[l];
#pragma GCC unroll 4
    for (int h = (int)FC_VL / 2; h >= 1; h /= 2)
#pragma GCC unroll 8
        for (int l = 0; l < h; l++)
            d[l] += d[l + h];
    return d[0];
}

/* The sum of p[0:n], in double: chunks of up to 1024 elements summed in
 * 4 x VL lanes of FC_T (in float32 at most 64 terms each, so it loses no
 * more than NumPy's pairwise sum), the last part of a chunk in whole
 * vectors and one masked load, the chunks' sums added in double. (Element
 * by element, the 49-pixel planes of a 7x7 layer's grad_bias cost a
 * quarter of its depthwise backward.) */
static FC_TARGET double
FC_N(sum)(const FC_T *p, ptrdiff_t n)
{
    double s = 0;
    ptrdiff_t i = 0;
#ifndef FC_SCALAR
    while (i < n) {
        ptrdiff_t end = n - i > 1024 ? i + 1024 : n;
        FC_VEC a0 = FC_BCAST(0), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 4 * FC_VL <= end; i += 4 * FC_VL) {
            a0 += FC_LOAD(p + i);
            a1 += FC_LOAD(p + i + FC_VL);
            a2 += FC_LOAD(p + i + 2 * FC_VL);
            a3 += FC_LOAD(p + i + 3 * FC_VL);
        }
        for (; i + FC_VL <= end; i += FC_VL)
            a0 += FC_LOAD(p + i);
        if (i < end) {
            a1 += FC_N(load_range)(p + i, 0, end - i);
            i = end;
        }
        s += FC_N(hsum_double)((a0 + a1) + (a2 + a3));
    }
#else
    for (; i < n; i++)
        s += p[i];
#endif
    return s;
}

/* Whether p[0:n] is all finite: an integer test of the exponent bits. */
static FC_TARGET int
FC_N(all_finite)(const FC_T *p, ptrdiff_t n)
{
#ifdef FC_SCALAR
    for (ptrdiff_t i = 0; i < n; i++)
        if (p[i] - p[i] != 0)
            return 0;
    return 1;
#else
    typedef FC_UINT ivec __attribute__((vector_size(FC_VB)));
    typedef FC_UINT uivec __attribute__((vector_size(FC_VB), aligned(sizeof(FC_T)), may_alias));
    ivec bad = {0}, e = bad + FC_EXP_MASK;
    ptrdiff_t i = 0;
    for (; i + FC_VL <= n; i += FC_VL)
        bad |= (*(const uivec *)(p + i) & e) == e;
    for (; i < n; i++)
        if (p[i] - p[i] != 0)
            return 0;
    for (int l = 0; l < (int)FC_VL; l++)
        if (bad[l])
            return 0;
    return 1;
#endif
}

/* ------------------------------------------------------------------------ */
/* grad_weight */

static FC_INLINE FC_TARGET FC_T
FC_N(hsum)(FC_VEC v)
{
    /* a fixed pairwise order: halve the vector until 16 bytes are left */
#if defined(FC_SCALAR)
    return v;
#elif FC_VB >= 64
    {
        typedef FC_T h_t __attribute__((vector_size(32)));
        union { FC_VEC v; h_t h[2]; } u = {v};
        h_t s = u.h[0] + u.h[1];
        typedef FC_T q_t __attribute__((vector_size(16)));
        union { h_t v; q_t h[2]; } u2 = {s};
        q_t q = u2.h[0] + u2.h[1];
        FC_T e[16 / sizeof(FC_T)];
        memcpy(e, &q, 16);
        return sizeof(FC_T) == 4 ? (e[0] + e[2]) + (e[1] + e[3]) : e[0] + e[1];
    }
#elif FC_VB >= 32
    {
        typedef FC_T q_t __attribute__((vector_size(16)));
        union { FC_VEC v; q_t h[2]; } u = {v};
        q_t q = u.h[0] + u.h[1];
        FC_T e[16 / sizeof(FC_T)];
        memcpy(e, &q, 16);
        return sizeof(FC_T) == 4 ? (e[0] + e[2]) + (e[1] + e[3]) : e[0] + e[1];
    }
#else
    {
        FC_T e[FC_VB / sizeof(FC_T)];
        FC_T s = 0;
        memcpy(e, &v, FC_VB);
        for (int i = 0; i < (int)(FC_VB / sizeof(FC_T)); i++)
            s += e[i];
        return s;
    }
#endif
}

static FC_INLINE FC_TARGET void
FC_N(gmk)(const int KB, const int NT, const FC_T *FC_RESTRICT g, ptrdiff_t ldg,
          const FC_T *FC_RESTRICT x, const ptrdiff_t *FC_RESTRICT toff, ptrdiff_t J,
          FC_T *FC_RESTRICT gw, ptrdiff_t ldk, int vacc)
{
    FC_VEC acc[FC_GKB][FC_GNT];
    FC_VEC gv[FC_GKB];
    const FC_T *xt[FC_GNT];
    ptrdiff_t j;
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++)
        xt[t] = x + toff[t];
#pragma GCC unroll 8
    for (int k = 0; k < KB; k++) {
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
            acc[k][t] = FC_BCAST(0);
    }
    for (j = 0; j < J; j += FC_VL) {
#pragma GCC unroll 8
        for (int k = 0; k < KB; k++)
            gv[k] = FC_LOAD(g + k * ldg + j);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
            FC_VEC xv = FC_LOAD(xt[t] + j);
#pragma GCC unroll 8
            for (int k = 0; k < KB; k++)
                acc[k][t] += gv[k] * xv;
        }
    }
    if (vacc) {
#pragma GCC unroll 8
        for (int k = 0; k < KB; k++) {
#pragma GCC unroll 16
            for (int t = 0; t < NT; t++) {
                FC_T *p = gw + (k * ldk + t) * FC_VL;
                FC_STORE(p, FC_LOAD(p) + acc[k][t]);
            }
        }
        return;
    }
#pragma GCC unroll 8
    for (int k = 0; k < KB; k++) {
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
            gw[k * ldk + t] += FC_N(hsum)(acc[k][t]);
    }
}

#define FC_GTAIL(KB, NTM, n)                                                  \
    if (NTM > n && ntl == n)                                                  \
        FC_N(gmk)(KB, n, g, ldg, x, toff + t, J, gw + t * step, ldk, vacc);   \
    else

#define FC_GBAND(KB, NTM)                                                     \
static FC_TARGET void FC_CAT(FC_N(gband), KB)(                                \
    const FC_T *g, ptrdiff_t ldg, const FC_T *x, const ptrdiff_t *toff,       \
    ptrdiff_t nt, ptrdiff_t J, FC_T *gw, ptrdiff_t ldk, int vacc)             \
{                                                                             \
    ptrdiff_t t = 0, ntl, step = vacc ? FC_VL : 1;                            \
    for (; t + NTM <= nt; t += NTM)                                           \
        FC_N(gmk)(KB, NTM, g, ldg, x, toff + t, J, gw + t * step, ldk, vacc); \
    ntl = nt - t;                                                             \
    FC_GTAIL(KB, NTM, 1) FC_GTAIL(KB, NTM, 2) FC_GTAIL(KB, NTM, 3)            \
    FC_GTAIL(KB, NTM, 4) FC_GTAIL(KB, NTM, 5) FC_GTAIL(KB, NTM, 6)            \
    FC_GTAIL(KB, NTM, 7) FC_GTAIL(KB, NTM, 8) FC_GTAIL(KB, NTM, 9)            \
    FC_GTAIL(KB, NTM, 10) FC_GTAIL(KB, NTM, 11) {}                            \
}

FC_GLIST(FC_GBAND)

#define FC_GCASE(KB, NTM)                                                     \
    case KB: FC_CAT(FC_N(gband), KB)(g, ldg, x, toff, nt, J, gw, ldk, vacc); break;

static void
FC_N(gband)(int kb, const FC_T *g, ptrdiff_t ldg, const FC_T *x, const ptrdiff_t *toff,
            ptrdiff_t nt, ptrdiff_t J, FC_T *gw, ptrdiff_t ldk, int vacc)
{
    switch (kb) {
        FC_GLIST(FC_GCASE)
    }
}

/* ------------------------------------------------------------------------ */
/* depthwise, stride 2, dilation 1: one channel at a time, the stride taken
 * apart into even and odd columns in registers. The general path's phase
 * planes cost this layer a padded copy of grad_output per phase and stores
 * two elements apart: its backward ran 1.6x slower (mb-dw-s2, AVX-512, one
 * thread). */

/* E[j] = row[2j - off] and O[j] = row[2j + 1 - off] for j < Jn (a multiple
 * of VL), zero outside [0, n) and for every j when row is NULL. */
static FC_INLINE FC_TARGET void
FC_N(dw2_split)(const FC_T *row, ptrdiff_t n, ptrdiff_t off, ptrdiff_t Jn, FC_T *E, FC_T *O)
{
    for (ptrdiff_t j = 0; j < Jn; j += FC_VL) {
        if (!row) {
            FC_STORE(E + j, FC_BCAST(0));
            FC_STORE(O + j, FC_BCAST(0));
            continue;
        }
#ifdef FC_SPLIT2
        ptrdiff_t c = 2 * j - off;
        int inside = c >= 0 && c + 2 * FC_VL <= n;
        FC_VEC v0, v1;
        if (inside) {
            v0 = FC_LOAD(row + c);
            v1 = FC_LOAD(row + c + FC_VL);
        } else {
            v0 = FC_N(load_range)(row, c, n);
            v1 = FC_N(load_range)(row, c + FC_VL, n);
        }
        FC_STORE(E + j, FC_EVEN(v0, v1));
        FC_STORE(O + j, FC_ODD(v0, v1));
#else
        for (ptrdiff_t l = j; l < j + FC_VL; l++) {
            ptrdiff_t c = 2 * l - off;
            E[l] = c >= 0 && c < n ? row[c] : (FC_T)0;
            O[l] = c + 1 >= 0 && c + 1 < n ? row[c + 1] : (FC_T)0;
        }
#endif
    }
}

/* out[0:n] = a[0], b[0], a[1], b[1], ... (n <= 2 VL) */
static FC_INLINE FC_TARGET void
FC_N(dw2_zip_store)(FC_T *out, FC_VEC a, FC_VEC b, ptrdiff_t n)
{
#ifdef FC_SPLIT2
    FC_VEC lo = __builtin_shufflevector(a, b, FC_ZIP_LO);
    FC_VEC hi = __builtin_shufflevector(a, b, FC_ZIP_HI);
    if (n >= 2 * FC_VL) {
        FC_STORE(out, lo);
        FC_STORE(out + FC_VL, hi);
    } else if (n > FC_VL) {
        FC_STORE(out, lo);
        FC_N(store_part)(out + FC_VL, hi, n - FC_VL);
    } else if (n == FC_VL) {
        FC_STORE(out, lo);
    } else {
        FC_N(store_part)(out, lo, n);
    }
#else
    union { FC_VEC v; FC_T e[FC_VB / sizeof(FC_T)]; } ua = {a}, ub = {b};
    for (ptrdiff_t l = 0; l < n; l++)
        out[l] = l & 1 ? ub.e[l / 2] : ua.e[l / 2];
#endif
}

/* Split padded input rows [*next, end) of a plane (rows h = t - pt of x,
 * zero outside [0, H)) into the ring: row t at slot t % FC_DW2_SLOTS(R),
 * its even columns then its odd ones, Jn each (fc_dw2_split_len). */
static FC_INLINE FC_TARGET void
FC_N(dw2_split_rows)(const FC_T *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t pt, ptrdiff_t pl,
                     ptrdiff_t Jn, const int R, FC_T *ring, ptrdiff_t *next, ptrdiff_t end)
{
    for (ptrdiff_t t = *next; t < end; t++) {
        ptrdiff_t h = t - pt;
        FC_T *E = ring + t % FC_DW2_SLOTS(R) * 2 * Jn;
        FC_N(dw2_split)(h >= 0 && h < H ? x + h * W : NULL, W, pl, Jn, E, E + Jn);
    }
    if (end > *next)
        *next = end;
}

/* The forward pass splits columns as it reads: two vectors of a row give its
 * even and odd columns by one two-source shuffle each. On AVX2 a shuffle
 * within 128-bit lanes (vshufps, one instruction) leaves them in "lane
 * order", the vector's 64-bit pairs permuted; every tap's vector is in the
 * same order, so the sums are too, and one permute per output vector
 * (FC_UNLANE) puts them back. (Splitting rows into a ring of even and odd
 * columns first, as grad_weight does, with lane-crossing shuffles of three
 * instructions, was half of the forward's time.) Elsewhere the shuffle is
 * one instruction in natural order (AVX-512's vpermt2ps, SSE2's shufps). */
#undef FC_EVEN_L
#undef FC_ODD_L
#undef FC_UNLANE
#ifdef FC_SPLIT2
#if FC_VB == 32 && FC_ELEM == 4
#define FC_EVEN_L(a, b) __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14)
#define FC_ODD_L(a, b) __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15)
#define FC_UNLANE(v) __builtin_shufflevector(v, v, 0, 1, 4, 5, 2, 3, 6, 7)
#elif FC_VB == 32
#define FC_EVEN_L(a, b) __builtin_shufflevector(a, b, 0, 4, 2, 6)
#define FC_ODD_L(a, b) __builtin_shufflevector(a, b, 1, 5, 3, 7)
#define FC_UNLANE(v) __builtin_shufflevector(v, v, 0, 2, 1, 3)
#else
#define FC_EVEN_L(a, b) FC_EVEN(a, b)
#define FC_ODD_L(a, b) FC_ODD(a, b)
#define FC_UNLANE(v) (v)
#endif
#else
#define FC_UNLANE(v) (v)
#endif

/* NR output rows (p, p + 1) x NV vectors (columns q0 onwards) of one
 * channel from its zero-padded input rows (xr[t]: padded row 2p + t):
 * y = b + sum over r, s of w[r][s] * xr[r][2q + s]. Each input vector is
 * split once for both output rows; the sums are kept in two parts (even and
 * odd r), up to eight independent chains of multiply-adds to cover their
 * latency (one per row, as first written, ran a 5x5 layer's 14-wide rows at
 * 0.6x PyTorch). The last vector of a row is stored as far as Q. */
static FC_INLINE FC_TARGET void
FC_N(dw2_fwd_tile)(const int R, const int S, const int NR, const int NV,
                   const FC_T *const *xr, const FC_T *w, FC_T b, FC_T *y, ptrdiff_t Q,
                   ptrdiff_t q0)
{
    FC_VEC acc[2][2][2];  /* [row][vector][parity of r] */
    for (int i = 0; i < NR; i++)
        for (int v = 0; v < NV; v++) {
            acc[i][v][0] = FC_BCAST(b);
            acc[i][v][1] = FC_BCAST(0);
        }
#pragma GCC unroll 8
    for (int t = 0; t < R + 2 * (NR - 1); t++)
#pragma GCC unroll 8
        for (int k = 0; 2 * k < S; k++) {  /* taps 2k (even columns) and 2k + 1 */
            FC_VEC e[2], o[2];
            for (int v = 0; v < NV; v++) {
                const FC_T *xp = xr[t] + 2 * (q0 + v * FC_VL) + 2 * k;
#ifdef FC_SPLIT2
                FC_VEC v0 = FC_LOAD(xp), v1 = FC_LOAD(xp + FC_VL);
                e[v] = FC_EVEN_L(v0, v1);
                o[v] = FC_ODD_L(v0, v1);
#else
                e[v] = xp[0];
                o[v] = xp[1];
#endif
            }
            for (int i = 0; i < NR; i++) {
                const int r = t - 2 * i;
                if (r < 0 || r >= R)
                    continue;
                FC_VEC we = FC_BCAST(w[r * S + 2 * k]);
                for (int v = 0; v < NV; v++)
                    acc[i][v][r & 1] += we * e[v];
                if (2 * k + 1 < S) {
                    FC_VEC wo = FC_BCAST(w[r * S + 2 * k + 1]);
                    for (int v = 0; v < NV; v++)
                        acc[i][v][r & 1] += wo * o[v];
                }
            }
        }
    for (int i = 0; i < NR; i++)
        for (int v = 0; v < NV; v++) {
            ptrdiff_t n = Q - q0 - v * FC_VL;
            FC_VEC sum = FC_UNLANE(acc[i][v][0] + acc[i][v][1]);
            if (n >= FC_VL)
                FC_STORE(y + i * Q + q0 + v * FC_VL, sum);
            else
                FC_N(store_part)(y + i * Q + q0 + v * FC_VL, sum, n);
        }
}

/* The forward pass of one channel (H x W input, P x Q output, bias b), two
 * output rows at a time by two vectors. The input rows are copied, zero-
 * padded, into a ring of FC_DW2_SLOTS(R) rows of 2 Jn (every column a tap
 * reads: see fc_dw2_split_len), so that every load is a whole vector. */
static FC_INLINE FC_TARGET void
FC_N(dw2_fwd_body)(const int R, const int S, const FC_T *x, ptrdiff_t H, ptrdiff_t W,
                   const FC_T *w, FC_T b, FC_T *y, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t pt,
                   ptrdiff_t pl, ptrdiff_t Jn, FC_T *ring)
{
    const FC_T *xr[R + 2];
    const ptrdiff_t L = 2 * Jn, lead = pl < L ? pl : L;
    const ptrdiff_t n = W < L - lead ? W : L - lead;  /* the columns ever read */
    ptrdiff_t next = 0;
    FC_N(zero_row)(ring, FC_DW2_SLOTS(R) * L);  /* the pads are never written again */
    for (ptrdiff_t p = 0; p < P; p += 2) {
        const int two = P - p >= 2;
        for (; next < 2 * p + 2 * two + R; next++) {
            ptrdiff_t h = next - pt;
            FC_T *row = ring + next % FC_DW2_SLOTS(R) * L + lead;
            if (n > 0 && h >= 0 && h < H)
                FC_N(copy)(row, x + h * W, n);
            else if (n > 0)
                FC_N(zero_row)(row, n);
        }
        for (int i = 0; i < R + 2 * two; i++)
            xr[i] = ring + (2 * p + i) % FC_DW2_SLOTS(R) * L;
        FC_T *yp = y + p * Q;
        for (ptrdiff_t q0 = 0; q0 < Q; q0 += 2 * FC_VL) {
            if (two && q0 + FC_VL < Q)
                FC_N(dw2_fwd_tile)(R, S, 2, 2, xr, w, b, yp, Q, q0);
            else if (two)
                FC_N(dw2_fwd_tile)(R, S, 2, 1, xr, w, b, yp, Q, q0);
            else if (q0 + FC_VL < Q)
                FC_N(dw2_fwd_tile)(R, S, 1, 2, xr, w, b, yp, Q, q0);
            else
                FC_N(dw2_fwd_tile)(R, S, 1, 1, xr, w, b, yp, Q, q0);
        }
    }
}

static FC_TARGET void
FC_N(dw2_fwd)(const FC_T *x, ptrdiff_t H, ptrdiff_t W, const FC_T *w, ptrdiff_t R,
              ptrdiff_t S, FC_T b, FC_T *y, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t pt,
              ptrdiff_t pl, ptrdiff_t Jn, FC_T *ring)
{
    if (R == 3 && S == 3)
        FC_N(dw2_fwd_body)(3, 3, x, H, W, w, b, y, P, Q, pt, pl, Jn, ring);
    else if (R == 5 && S == 5)
        FC_N(dw2_fwd_body)(5, 5, x, H, W, w, b, y, P, Q, pt, pl, Jn, ring);
    else
        FC_N(dw2_fwd_body)((int)R, (int)S, x, H, W, w, b, y, P, Q, pt, pl, Jn, ring);
}

/* One vector of even (a) and odd (b) columns of grad_input, i0 onwards, for
 * nr rows of grad_output and of the weights: see dw2_gx. `odd` is pl's
 * parity, hp = pl / 2; edge: some load reaches outside the row's Q. */
static FC_INLINE FC_TARGET void
FC_N(dw2_gx_vec)(const int S, const int odd, const int edge, const FC_T *const *rows,
                 const FC_T *const *wr, int nr, ptrdiff_t Q, ptrdiff_t i0, ptrdiff_t hp,
                 FC_VEC *pa, FC_VEC *pb)
{
    FC_VEC a = FC_BCAST(0), b = FC_BCAST(0);
    for (int k = 0; k < nr; k++) {
#pragma GCC unroll 8
        for (int s = 0; s < S; s++) {
            const int e = (s + odd) & 1;
            ptrdiff_t j = i0 + (e + odd - s) / 2 + hp;  /* exact: e + odd - s is even */
            FC_VEC g;
            if (edge)
                g = FC_N(load_range)(rows[k], j, Q);
            else
                g = FC_LOAD(rows[k] + j);
            if (e)
                b += FC_BCAST(wr[k][s]) * g;
            else
                a += FC_BCAST(wr[k][s]) * g;
        }
    }
    *pa = a;
    *pb = b;
}

/* grad_input of one channel (H x W) from its grad_output (P x Q):
 * gx[h][c] = sum of w[r][s] * gy[p][q] over h + pt = 2p + r, c + pl = 2q + s
 * with (p, q) inside grad_output. Column c = 2i + e takes the taps with
 * s = e + pl (mod 2), from gy column i + (e + pl - s) / 2: each parity is a
 * stride-1 sum over vectors of i, interleaved as it is stored. */
static FC_INLINE FC_TARGET void
FC_N(dw2_gx_body)(const int R, const int S, const int odd, const FC_T *gy, ptrdiff_t P,
                  ptrdiff_t Q, const FC_T *w, ptrdiff_t pt, ptrdiff_t pl, FC_T *gx,
                  ptrdiff_t H, ptrdiff_t W)
{
    const FC_T *rows[(R + 1) / 2], *wr[(R + 1) / 2];
    const ptrdiff_t nI = (W + 1) / 2, hp = pl / 2;
    ptrdiff_t dmin = 0, dmax = 0;
    for (int s = 0; s < S; s++) {  /* the loads' offsets from i0: see dw2_gx_vec */
        ptrdiff_t d = (((s + odd) & 1) + odd - s) / 2 + hp;
        dmin = s == 0 || d < dmin ? d : dmin;
        dmax = s == 0 || d > dmax ? d : dmax;
    }
    for (ptrdiff_t h = 0; h < H; h++) {
        ptrdiff_t t = h + pt;
        int nr = 0;
        for (int r = (int)(t & 1); r < R; r += 2) {
            ptrdiff_t p = (t - r) / 2;  /* exact: t - r is even */
            if (p >= 0 && p < P) {
                rows[nr] = gy + p * Q;
                wr[nr++] = w + r * S;
            }
        }
        if (nr == 0) {
            FC_N(zero_row)(gx + h * W, W);
            continue;
        }
        for (ptrdiff_t i0 = 0; i0 < nI; i0 += FC_VL) {
            FC_VEC a, b;
            if (i0 + dmin >= 0 && i0 + dmax + FC_VL <= Q)
                FC_N(dw2_gx_vec)(S, odd, 0, rows, wr, nr, Q, i0, hp, &a, &b);
            else
                FC_N(dw2_gx_vec)(S, odd, 1, rows, wr, nr, Q, i0, hp, &a, &b);
            FC_N(dw2_zip_store)(gx + h * W + 2 * i0, a, b, W - 2 * i0 < 2 * FC_VL
                                ? W - 2 * i0 : 2 * FC_VL);
        }
    }
}

#define FC_DW2_GX(R, S)                                                       \
    if (pl & 1)                                                               \
        FC_N(dw2_gx_body)(R, S, 1, gy, P, Q, w, pt, pl, gx, H, W);            \
    else                                                                      \
        FC_N(dw2_gx_body)(R, S, 0, gy, P, Q, w, pt, pl, gx, H, W);

static FC_TARGET void
FC_N(dw2_gx)(const FC_T *gy, ptrdiff_t P, ptrdiff_t Q, const FC_T *w, ptrdiff_t R,
             ptrdiff_t S, ptrdiff_t pt, ptrdiff_t pl, FC_T *gx, ptrdiff_t H, ptrdiff_t W)
{
    if (R == 3 && S == 3) {
        FC_DW2_GX(3, 3)
    } else if (R == 5 && S == 5) {
        FC_DW2_GX(5, 5)
    } else {
        FC_DW2_GX((int)R, (int)S)
    }
}
#undef FC_DW2_GX

/* grad_weight of one channel over N images (planes xn and gn apart):
 * gw[r][s] = sum over n, p, q of gy[p][q] * xpad[2p + r][2q + s], xpad the
 * input zero-padded by pt rows and pl columns (0 * inf in the padding is
 * NaN, as in the reference). Each input row is split once into even and
 * odd columns (dw2_split_rows), from which a tap reads consecutive values.
 * In the last vector of a row both factors are masked past Q: a value
 * beyond the row (an inf in the next row of grad_output, or in the split
 * past its end) reaches no sum. */
static FC_INLINE FC_TARGET void
FC_N(dw2_gw_body)(const int R, const int S, const FC_T *x, ptrdiff_t xn, ptrdiff_t H,
                  ptrdiff_t W, const FC_T *gy, ptrdiff_t gn, ptrdiff_t P, ptrdiff_t Q,
                  ptrdiff_t N, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t Jn, FC_T *ring,
                  FC_T *gw)
{
    const ptrdiff_t qfull = Q - Q % FC_VL;
    const FC_T *xr[R];
    FC_VEC acc[R * S];
#ifndef FC_SCALAR
    typedef FC_UINT mvec __attribute__((vector_size(FC_VB)));
    mvec tail;
    for (ptrdiff_t l = 0; l < FC_VL; l++)
        tail[l] = l < Q % FC_VL ? ~(FC_UINT)0 : 0;
#endif
    for (int t = 0; t < R * S; t++)
        acc[t] = FC_BCAST(0);
    for (ptrdiff_t n = 0; n < N; n++) {
        const FC_T *xp = x + n * xn, *gp = gy + n * gn;
        ptrdiff_t next = 0;  /* the next padded input row to split */
        for (ptrdiff_t p = 0; p < P; p++) {
            FC_N(dw2_split_rows)(xp, H, W, pt, pl, Jn, R, ring, &next, 2 * p + R);
            for (int r = 0; r < R; r++)
                xr[r] = ring + (2 * p + r) % FC_DW2_SLOTS(R) * 2 * Jn;
            const FC_T *g = gp + p * Q;
            for (ptrdiff_t q0 = 0; q0 < qfull; q0 += FC_VL) {
                FC_VEC gv = FC_LOAD(g + q0);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++)
#pragma GCC unroll 8
                    for (int s = 0; s < S; s++)
                        acc[r * S + s] += gv * FC_LOAD(xr[r] + (s & 1) * Jn + q0 + s / 2);
            }
#ifndef FC_SCALAR
            if (qfull < Q) {
                FC_VEC gv = FC_N(load_range)(g, qfull, Q);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++)
#pragma GCC unroll 8
                    for (int s = 0; s < S; s++) {
                        FC_VEC xv = FC_LOAD(xr[r] + (s & 1) * Jn + qfull + s / 2);
                        acc[r * S + s] += gv * (FC_VEC)((mvec)xv & tail);
                    }
            }
#endif
        }
    }
    for (int t = 0; t < R * S; t++) {
#ifdef FC_SCALAR
        gw[t] = acc[t];
#else
        double sum = 0;
        for (ptrdiff_t l = 0; l < FC_VL; l++)
            sum += acc[t][l];
        gw[t] = (FC_T)sum;
#endif
    }
}

static FC_TARGET void
FC_N(dw2_gw)(const FC_T *x, ptrdiff_t xn, ptrdiff_t H, ptrdiff_t W, const FC_T *gy,
             ptrdiff_t gn, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t N, ptrdiff_t R, ptrdiff_t S,
             ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t Jn, FC_T *ring, FC_T *gw)
{
    if (R == 3 && S == 3)
        FC_N(dw2_gw_body)(3, 3, x, xn, H, W, gy, gn, P, Q, N, pt, pl, Jn, ring, gw);
    else if (R == 5 && S == 5)
        FC_N(dw2_gw_body)(5, 5, x, xn, H, W, gy, gn, P, Q, N, pt, pl, Jn, ring, gw);
    else
        FC_N(dw2_gw_body)((int)R, (int)S, x, xn, H, W, gy, gn, P, Q, N, pt, pl, Jn, ring,
                          gw);
}

/* ------------------------------------------------------------------------ */
/* depthwise, channels in lanes: a block of VL channels of one image at a
 * time, each plane's pixels transposed into [pixel][channel] vectors
 * (dwc_pack) in a zero-padded buffer, so that every tap of every output
 * pixel is one whole-vector load at a fixed offset, whatever the stride or
 * dilation, and no lane is wasted on rows shorter than a vector (MobileNet's
 * and EfficientNet's 7x7 and 14x14 layers, where the row kernels fill half
 * a vector or less). Offsets (toff, sstep, dstep) count pixels, VL elements
 * each. */

/* buf[po[j]*VL + l] = src[l*cs + j] for j < n, l < nc, and 0 for
 * nc <= l < VL: VL x VL blocks of consecutive pixels transposed in
 * registers, nothing read past a plane; po places each pixel in the padded
 * buffer (a block may span rows). */
static FC_TARGET void
FC_N(dwc_pack)(const FC_T *src, ptrdiff_t cs, ptrdiff_t nc, ptrdiff_t n, const ptrdiff_t *po,
               FC_T *FC_RESTRICT buf)
{
#ifdef FC_VTRANSPOSE
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FC_VL) {
        FC_VEC r[FC_VL];
        if (j0 + FC_VL <= n) {
#pragma GCC unroll 16
            for (int l = 0; l < FC_VL; l++) {
                r[l] = FC_BCAST(0);
                if (l < nc)
                    r[l] = FC_LOAD(src + l * cs + j0);
            }
            FC_N(vtranspose)(r);
#pragma GCC unroll 16
            for (int i = 0; i < FC_VL; i++)
                FC_STORE(buf + po[j0 + i] * FC_VL, r[i]);
        } else {
#pragma GCC unroll 16
            for (int l = 0; l < FC_VL; l++) {
                r[l] = FC_BCAST(0);
                if (l < nc)
                    r[l] = FC_N(load_range)(src + l * cs, j0, n);
            }
            FC_N(vtranspose)(r);
            for (ptrdiff_t i = 0; i < n - j0; i++)
                FC_STORE(buf + po[j0 + i] * FC_VL, r[i]);
        }
    }
#else
    for (ptrdiff_t j = 0; j < n; j++)
        for (ptrdiff_t l = 0; l < FC_VL; l++)
            buf[po[j] * FC_VL + l] = l < nc ? src[l * cs + j] : (FC_T)0;
#endif
}

/* NQ results of the block: dst[j*dstep] = init + sum over t < nt of
 * wt[widx[t]] * src[toff[t] + j*sstep] (vectors; init 0 when NULL). */
static FC_INLINE FC_TARGET void
FC_N(dwc_mk)(const int NQ, const FC_T *FC_RESTRICT src, ptrdiff_t sstep,
             const ptrdiff_t *toff, const ptrdiff_t *widx, ptrdiff_t nt,
             const FC_T *FC_RESTRICT wt, const FC_T *init, FC_T *FC_RESTRICT dst,
             ptrdiff_t dstep)
{
    FC_VEC acc[NQ];
    FC_VEC b = FC_BCAST(0);
    if (init)
        b = FC_LOAD(init);
    for (int j = 0; j < NQ; j++)
        acc[j] = b;
    for (ptrdiff_t t = 0; t < nt; t++) {
        const FC_T *s = src + toff[t] * FC_VL;
        FC_VEC wv = FC_LOAD(wt + widx[t] * FC_VL);
        FC_IN_REGISTER(wv);
        for (int j = 0; j < NQ; j++)
            acc[j] += FC_LOAD(s + j * sstep * FC_VL) * wv;
    }
    for (int j = 0; j < NQ; j++)
        FC_STORE(dst + j * dstep * FC_VL, acc[j]);
}

#define FC_DWCMAX 8
#define FC_DWCTILE(n) FC_CAT(FC_N(dwctile), n)
#define FC_DEFDWCTILE(n)                                                      \
static FC_NOINLINE FC_TARGET void FC_DWCTILE(n)(                              \
    const FC_T *src, ptrdiff_t sstep, const ptrdiff_t *toff,                  \
    const ptrdiff_t *widx, ptrdiff_t nt, const FC_T *wt, const FC_T *init,    \
    FC_T *dst, ptrdiff_t dstep)                                               \
{                                                                             \
    FC_N(dwc_mk)(n, src, sstep, toff, widx, nt, wt, init, dst, dstep);        \
}
FC_DEFDWCTILE(1) FC_DEFDWCTILE(2) FC_DEFDWCTILE(3) FC_DEFDWCTILE(4)
FC_DEFDWCTILE(5) FC_DEFDWCTILE(6) FC_DEFDWCTILE(7) FC_DEFDWCTILE(8)
#define FC_DWCCASE(n) \
    case n: FC_DWCTILE(n)(src, sstep, toff, widx, nt, wt, init, dst, dstep); break;

/* A run of nq results (src, dst: its first), as few tiles as fit, as even as
 * they go (15 as 8 + 7, not 8 + 4 + 2 + 1). */
static FC_TARGET void
FC_N(dwc_run)(ptrdiff_t nq, const FC_T *src, ptrdiff_t sstep, const ptrdiff_t *toff,
              const ptrdiff_t *widx, ptrdiff_t nt, const FC_T *wt, const FC_T *init,
              FC_T *dst, ptrdiff_t dstep)
{
    ptrdiff_t left = nq <= FC_DWCMAX ? 1 : (nq + FC_DWCMAX - 1) / FC_DWCMAX, m;
    for (; nq > 0; nq -= m, left--) {
        m = left == 1 ? nq : (nq + left - 1) / left;
        switch (m) {
            FC_DWCCASE(1) FC_DWCCASE(2) FC_DWCCASE(3) FC_DWCCASE(4)
            FC_DWCCASE(5) FC_DWCCASE(6) FC_DWCCASE(7) FC_DWCCASE(8)
        }
        src += m * sstep * FC_VL;
        dst += m * dstep * FC_VL;
    }
}

/* NQ results of a row (column stride SW, dilation 1 in columns) from the
 * R kernel rows of S taps, rstep pixels apart: each input vector of a
 * kernel row loaded once for all the results it reaches, (NQ - 1) * SW + S
 * loads for NQ * S multiply-adds (dwc_mk: one load each), in the same
 * order of taps as dwc_mk. */
static FC_INLINE FC_TARGET void
FC_N(dwc_rmk)(const int NQ, const int S, const int SW, const FC_T *FC_RESTRICT src,
              ptrdiff_t rstep, ptrdiff_t R, const FC_T *FC_RESTRICT wt, const FC_T *init,
              FC_T *FC_RESTRICT dst)
{
    FC_VEC acc[NQ];
    FC_VEC b = FC_BCAST(0);
    if (init)
        b = FC_LOAD(init);
    for (int j = 0; j < NQ; j++)
        acc[j] = b;
    for (ptrdiff_t r = 0; r < R; r++) {
        const FC_T *row = src + r * rstep * FC_VL;
        FC_VEC wv[S];
        for (int k = 0; k < S; k++) {
            wv[k] = FC_LOAD(wt + (r * S + k) * FC_VL);
            FC_IN_REGISTER(wv[k]);
        }
#pragma GCC unroll 32
        for (int i = 0; i < (NQ - 1) * SW + S; i++) {
            FC_VEC v = FC_LOAD(row + i * FC_VL);
            FC_IN_REGISTER(v);
#pragma GCC unroll 16
            for (int j = 0; j < NQ; j++)
                if (i - j * SW >= 0 && i - j * SW < S)
                    acc[j] += v * wv[i - j * SW];
        }
    }
    for (int j = 0; j < NQ; j++)
        FC_STORE(dst + j * FC_VL, acc[j]);
}

#define FC_DWRTILE(S, SW, n) FC_CAT(FC_CAT(FC_CAT(FC_N(dwrtile), S), SW), n)
#define FC_DEFDWRTILE(S, SW, n)                                               \
static FC_NOINLINE FC_TARGET void FC_DWRTILE(S, SW, n)(                       \
    const FC_T *src, ptrdiff_t rstep, ptrdiff_t R, const FC_T *wt,            \
    const FC_T *init, FC_T *dst)                                              \
{                                                                             \
    FC_N(dwc_rmk)(n, S, SW, src, rstep, R, wt, init, dst);                    \
}
#define FC_DEFDWRTILES(S, SW)                                                 \
    FC_DEFDWRTILE(S, SW, 1) FC_DEFDWRTILE(S, SW, 2) FC_DEFDWRTILE(S, SW, 3)   \
    FC_DEFDWRTILE(S, SW, 4) FC_DEFDWRTILE(S, SW, 5) FC_DEFDWRTILE(S, SW, 6)   \
    FC_DEFDWRTILE(S, SW, 7) FC_DEFDWRTILE(S, SW, 8)
FC_DEFDWRTILES(3, 1) FC_DEFDWRTILES(3, 2) FC_DEFDWRTILES(5, 1) FC_DEFDWRTILES(5, 2)
#define FC_DWRCASE(S, SW, n) \
    case n: FC_DWRTILE(S, SW, n)(src, rstep, R, wt, init, dst); break;
#define FC_DWRRUNF(S, SW) FC_CAT(FC_CAT(FC_N(dwc_rrun), S), SW)
#define FC_DWRRUN(S, SW)                                                      \
static FC_TARGET void FC_DWRRUNF(S, SW)(                                      \
    ptrdiff_t nq, const FC_T *src, ptrdiff_t rstep, ptrdiff_t R,              \
    const FC_T *wt, const FC_T *init, FC_T *dst)                              \
{                                                                             \
    ptrdiff_t left = nq <= FC_DWCMAX ? 1 : (nq + FC_DWCMAX - 1) / FC_DWCMAX, m; \
    for (; nq > 0; nq -= m, left--) {                                         \
        m = left == 1 ? nq : (nq + left - 1) / left;                          \
        switch (m) {                                                          \
            FC_DWRCASE(S, SW, 1) FC_DWRCASE(S, SW, 2) FC_DWRCASE(S, SW, 3)    \
            FC_DWRCASE(S, SW, 4) FC_DWRCASE(S, SW, 5) FC_DWRCASE(S, SW, 6)    \
            FC_DWRCASE(S, SW, 7) FC_DWRCASE(S, SW, 8)                         \
        }                                                                     \
        src += m * SW * FC_VL;                                                \
        dst += m * FC_VL;                                                     \
    }                                                                         \
}
FC_DWRRUN(3, 1) FC_DWRRUN(3, 2) FC_DWRRUN(5, 1) FC_DWRRUN(5, 2)

/* The forward pass of one image's block of nc <= VL channels (planes cs
 * apart in x, P*Q in y): y = bias + sum over t of wt[t] * xpad[p*sh, q*sw] +
 * toff[t]. xb: the padded input, Hp x Wp pixels, pixel j of x at xpo[j],
 * its padding zero (dwc_pack writes only the inside); yb: P*Q pixels. */
static FC_TARGET void
FC_N(dwc_fwd)(const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, ptrdiff_t H, ptrdiff_t W,
              const FC_T *wt, const ptrdiff_t *toff, const ptrdiff_t *widx, ptrdiff_t nt,
              ptrdiff_t S, ptrdiff_t dw, ptrdiff_t rstep, const FC_T *bias, FC_T *y,
              ptrdiff_t P, ptrdiff_t Q, ptrdiff_t sh, ptrdiff_t sw, FC_T *xb, ptrdiff_t Wp,
              const ptrdiff_t *xpo, FC_T *yb)
{
    /* rows of 3 or 5 taps at column stride 1 or 2 on the row tiles */
    int rt = dw == 1 && (sw == 1 || sw == 2) && (S == 3 || S == 5) ? (int)(S * 2 + sw) : 0;
    FC_N(dwc_pack)(x, cs, nc, H * W, xpo, xb);
    for (ptrdiff_t p = 0; p < P; p++) {
        const FC_T *src = xb + p * sh * Wp * FC_VL;
        FC_T *dst = yb + p * Q * FC_VL;
        switch (rt) {
        case 7: FC_DWRRUNF(3, 1)(Q, src, rstep, nt / 3, wt, bias, dst); break;
        case 8: FC_DWRRUNF(3, 2)(Q, src, rstep, nt / 3, wt, bias, dst); break;
        case 11: FC_DWRRUNF(5, 1)(Q, src, rstep, nt / 5, wt, bias, dst); break;
        case 12: FC_DWRRUNF(5, 2)(Q, src, rstep, nt / 5, wt, bias, dst); break;
        default: FC_N(dwc_run)(Q, src, sw, toff, widx, nt, wt, bias, dst, 1);
        }
    }
    FC_N(kstore)(y, P * Q, yb, FC_VL, nc, P * Q);
}

/* grad_weight of one tap chunk, NT taps: acc[t] += sum over p < P, q < Q of
 * g[p*gr + q] * x[p*xr + q*sw + toff[t]] (vectors). */
static FC_INLINE FC_TARGET void
FC_N(dwc_gmk)(const int NT, const FC_T *FC_RESTRICT g, ptrdiff_t gr,
              const FC_T *FC_RESTRICT x, ptrdiff_t xr, ptrdiff_t sw, ptrdiff_t P,
              ptrdiff_t Q, const ptrdiff_t *toff, FC_T *FC_RESTRICT acc)
{
    FC_VEC a[NT];
    ptrdiff_t to[NT];
    for (int t = 0; t < NT; t++) {
        a[t] = FC_BCAST(0);
        to[t] = toff[t] * FC_VL;
    }
    for (ptrdiff_t p = 0; p < P; p++) {
        const FC_T *gp = g + p * gr * FC_VL, *xp = x + p * xr * FC_VL;
        for (ptrdiff_t q = 0; q < Q; q++) {
            FC_VEC gv = FC_LOAD(gp + q * FC_VL);
            FC_IN_REGISTER(gv);
            const FC_T *xq = xp + q * sw * FC_VL;
            for (int t = 0; t < NT; t++)
                a[t] += gv * FC_LOAD(xq + to[t]);
        }
    }
    for (int t = 0; t < NT; t++)
        FC_STORE(acc + t * FC_VL, FC_LOAD(acc + t * FC_VL) + a[t]);
}

/* taps per grad_weight tile: accumulators + 2 of the register file */
#if FC_VB == 64
#define FC_DWGMAX 16
#else
#define FC_DWGMAX 10
#endif
#define FC_DWGTILE(n) FC_CAT(FC_N(dwgtile), n)
#define FC_DEFDWGTILE(n)                                                      \
static FC_NOINLINE FC_TARGET void FC_DWGTILE(n)(                              \
    const FC_T *g, ptrdiff_t gr, const FC_T *x, ptrdiff_t xr, ptrdiff_t sw,   \
    ptrdiff_t P, ptrdiff_t Q, const ptrdiff_t *toff, FC_T *acc)               \
{                                                                             \
    FC_N(dwc_gmk)(n, g, gr, x, xr, sw, P, Q, toff, acc);                      \
}
#define FC_DWGCASE(n) \
    case n: FC_DWGTILE(n)(g, gr, xb, xr, sw, P, Q, toff + t0, acc + t0 * FC_VL); break;
FC_DEFDWGTILE(1) FC_DEFDWGTILE(2) FC_DEFDWGTILE(3) FC_DEFDWGTILE(4)
FC_DEFDWGTILE(5) FC_DEFDWGTILE(6) FC_DEFDWGTILE(7) FC_DEFDWGTILE(8)
FC_DEFDWGTILE(9) FC_DEFDWGTILE(10)
#if FC_DWGMAX > 10
FC_DEFDWGTILE(11) FC_DEFDWGTILE(12) FC_DEFDWGTILE(13) FC_DEFDWGTILE(14)
FC_DEFDWGTILE(15) FC_DEFDWGTILE(16)
#endif

/* The backward pass of one block of nc <= VL channels over N images
 * (images xn, gn apart in x, gy and gx; planes cs, gs apart):
 * - grad_input (gx not NULL): for input row h and column class e (the
 *   columns w with (w + pl) % sw == e), phase f = ((h + pt) % sh) * sw + e
 *   takes taps ph[2f] .. ph[2f] + ph[2f + 1] of gtoff / gwidx, which read
 *   consecutive pixels of the padded grad_output gb (Qp pixels a row,
 *   gy[0][0] at pixel goff, pixel j at gpo[j]) from ((h + pt) / sh, (w + pl) / sw) on
 *   (rounded down); the results go to xo (H*W pixels), then to gx.
 * - grad_weight: acc (nt vectors) += sum over pixels of g * xpad (taps
 *   toff, as the forward pass), xb the padded input as in dwc_fwd; gw
 *   (a row of nt per channel) gets acc at the end. */
static FC_TARGET void
FC_N(dwc_bwd)(const FC_T *x, ptrdiff_t xn, ptrdiff_t cs, const FC_T *gy, ptrdiff_t gn,
              ptrdiff_t gs, ptrdiff_t nc, ptrdiff_t N, ptrdiff_t H, ptrdiff_t W,
              ptrdiff_t P, ptrdiff_t Q, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt,
              ptrdiff_t pl, const FC_T *wt, const ptrdiff_t *toff, ptrdiff_t nt,
              const ptrdiff_t *ph, const ptrdiff_t *gtoff, const ptrdiff_t *gwidx,
              FC_T *gx, FC_T *gw, FC_T *xb, ptrdiff_t Wp, const ptrdiff_t *xpo, FC_T *gb,
              ptrdiff_t Qp, ptrdiff_t goff, const ptrdiff_t *gpo, FC_T *xo, FC_T *acc)
{
    const ptrdiff_t tmax = FC_DWGMAX;
    /* the column classes e (columns w with (w + pl) % sw == e) that hold a
     * column: e, the first such w, how many */
    ptrdiff_t cls[3 * (sw < W ? sw : W)], ne = 0;
    for (ptrdiff_t e = 0; e < sw; e++) {
        ptrdiff_t w0 = ((e - pl) % sw + sw) % sw;
        if (w0 < W) {
            cls[3 * ne] = e;
            cls[3 * ne + 1] = w0;
            cls[3 * ne + 2] = (W - 1 - w0) / sw + 1;
            ne++;
        }
    }
    for (ptrdiff_t t = 0; t < nt * FC_VL; t++)
        acc[t] = 0;
    for (ptrdiff_t n = 0; n < N; n++) {
        FC_N(dwc_pack)(gy + n * gn, gs, nc, P * Q, gpo, gb);
        if (gx) {
            /* row h reads grad_output row u = (h + pt) / sh on, phase a */
            ptrdiff_t a = pt % sh, u = pt / sh;
            for (ptrdiff_t h = 0; h < H; h++) {
                const FC_T *grow = gb + (u * Qp + goff) * FC_VL;
                for (ptrdiff_t e = 0; e < ne; e++) {
                    const ptrdiff_t *f = ph + 2 * (a * sw + cls[3 * e]);
                    ptrdiff_t w0 = cls[3 * e + 1];
                    FC_N(dwc_run)(cls[3 * e + 2], grow + (w0 + pl) / sw * FC_VL, 1,
                                  gtoff + f[0], gwidx + f[0], f[1], wt, NULL,
                                  xo + (h * W + w0) * FC_VL, sw);
                }
                if (++a == sh) {
                    a = 0;
                    u++;
                }
            }
            FC_N(kstore)(gx + n * xn, cs, xo, FC_VL, nc, H * W);
        }
        FC_N(dwc_pack)(x + n * xn, cs, nc, H * W, xpo, xb);
        {
            const FC_T *g = gb + goff * FC_VL;
            ptrdiff_t gr = Qp, xr = sh * Wp;
            ptrdiff_t left = (nt + tmax - 1) / tmax, m;
            for (ptrdiff_t t0 = 0; t0 < nt; t0 += m, left--) {
                m = (nt - t0 + left - 1) / left;
                switch (m) {
                    FC_DWGCASE(1) FC_DWGCASE(2) FC_DWGCASE(3) FC_DWGCASE(4)
                    FC_DWGCASE(5) FC_DWGCASE(6) FC_DWGCASE(7) FC_DWGCASE(8)
                    FC_DWGCASE(9) FC_DWGCASE(10)
#if FC_DWGMAX > 10
                    FC_DWGCASE(11) FC_DWGCASE(12) FC_DWGCASE(13) FC_DWGCASE(14)
                    FC_DWGCASE(15) FC_DWGCASE(16)
#endif
                }
            }
        }
    }
    FC_N(kstore)(gw, nt, acc, FC_VL, nc, nt);
}

#undef FC_ZIP_LO
#undef FC_VTRANSPOSE
#undef FC_DWCMAX
#undef FC_DWCTILE
#undef FC_DEFDWCTILE
#undef FC_DWCCASE
#undef FC_DWRTILE
#undef FC_DEFDWRTILE
#undef FC_DEFDWRTILES
#undef FC_DWRCASE
#undef FC_DWRRUN
#undef FC_DWRRUNF
#undef FC_DWGMAX
#undef FC_DWGTILE
#undef FC_DEFDWGTILE
#undef FC_DWGCASE
#undef FC_ZIP_HI
#undef FC_PTAIL
#undef FC_PBAND
#undef FC_PCASE
#undef FC_GTAIL
#undef FC_GBAND
#undef FC_GCASE
#undef FC_TILE
#undef FC_DEFTILES
#undef FC_DEFTILES_KB
#undef FC_DWTILE
#undef FC_DEFDWTILE
#undef FC_DEFDWTILES
#undef FC_DWCALL
#undef FC_KTILE
#undef FC_DEFKTILE
#undef FC_DEFKTILES
#undef FC_KTAIL
#undef FC_KPAIR
#undef FC_KROW
#undef FC_KCASE
#undef FC_KGTILE
#undef FC_DEFKGTILE
#undef FC_DEFKGTILES
#undef FC_KGTAIL
#undef FC_KGBAND
#undef FC_KGCASE
#undef FC_RSHORT
#undef FC_PROW
#undef FC_RCASE
#undef FC_VEC
#undef FC_LOAD
#undef FC_STORE
#undef FC_BCAST
#undef FC_VL
#undef FC_N
