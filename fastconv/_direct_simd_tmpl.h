/* Micro-kernels of the direct convolution, written once and instantiated by
 * _direct_simd.h for each (element type, instruction set) pair.
 *
 * The including file defines:
 *   FC_T       element type (float or double)
 *   FC_SFX     name suffix, e.g. f32_avx512
 *   FC_VB      vector width in bytes (64 AVX-512, 32 AVX2, 16 SSE2/NEON,
 *              sizeof(FC_T) without GCC vector extensions)
 *   FC_NREG    vector registers of the instruction set (32 or 16)
 *   FC_TARGET  function attribute selecting the instruction set, or empty
 *
 * The kernels use GCC vector extensions (also understood by Clang), so one
 * source serves every width; `a * b + c` becomes an FMA where the target has
 * one (GCC contracts by default; no -ffast-math anywhere, so NaN and signed
 * zero semantics are IEEE). Every loop over register tiles has a compile-time
 * trip count after inlining and is fully unrolled, so the accumulators live in
 * registers.
 *
 * Two kernels:
 *
 * pband  "pixels in lanes": out[k][j] = bias[k] + sum over c < nc, t < nt of
 *        w[c][t][k] * x[c * cs + toff[t] + j] for k < KB and j < J, where j
 *        runs over a "wide" row-major grid of output pixels (the rows of the
 *        input buffer are as long as the rows of the grid, so a run of
 *        consecutive j reads consecutive input for every tap). A tile is KB
 *        output channels x NV vectors of pixels; per tap it loads NV input
 *        vectors and broadcasts KB weights (Zhang, Franchetti & Low 2018).
 *        Forward convolution and grad_input (as a stride-1 convolution per
 *        output phase) both run on it.
 *
 * gband  grad_weight: gw[k * ldk + t] += sum over j < J of
 *        g[k * ldg + j] * x[toff[t] + j], a tile of KB channels x NT taps of
 *        vector accumulators, reduced across lanes once per call.
 *
 * Buffers are padded by the callers so that whole vectors can always be
 * loaded and stored: `out` rows and `g` rows hold J rounded up to a whole
 * vector, and `x` is readable that far past every tap offset.
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
/* s - 0 is s for every s (including -0 and NaN), so this is an exact broadcast */
#ifdef FC_SCALAR
#define FC_BCAST(s) ((FC_T)(s))
#else
#define FC_BCAST(s) ((FC_T)(s) - (FC_VEC){0})
#endif

/* ------------------------------------------------------------------------ */
/* pixels in lanes */

static FC_INLINE FC_TARGET void
FC_N(pmk)(const int KB, const int NV, const FC_T *FC_RESTRICT x, ptrdiff_t cs, ptrdiff_t nc,
          const ptrdiff_t *FC_RESTRICT toff, ptrdiff_t nt, const FC_T *FC_RESTRICT w,
          const FC_T *FC_RESTRICT bias, FC_T *FC_RESTRICT out, ptrdiff_t ldo)
{
    FC_VEC acc[FC_PKB][FC_PNV];
    FC_VEC xv[FC_PNV];
    ptrdiff_t c, t;
#pragma GCC unroll 8
    for (int k = 0; k < KB; k++) {
        FC_VEC b0 = FC_BCAST(bias ? bias[k] : (FC_T)0);
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            acc[k][v] = b0;
    }
    for (c = 0; c < nc; c++) {
        const FC_T *xc = x + c * cs;
        for (t = 0; t < nt; t++) {
            const FC_T *xp = xc + toff[t];
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++)
                xv[v] = FC_LOAD(xp + v * FC_VL);
#pragma GCC unroll 8
            for (int k = 0; k < KB; k++) {
                FC_VEC wb = FC_BCAST(w[k]);
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++)
                    acc[k][v] += wb * xv[v];
            }
            w += KB;
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < KB; k++) {
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            FC_STORE(out + k * ldo + v * FC_VL, acc[k][v]);
    }
}

/* One band: all of j < J in tiles of NVM vectors, the remainder in one
 * narrower tile (NV < NVM). */
#define FC_PTAIL(KB, NVM, n)                                                  \
    if (NVM > n && nv == n)                                                   \
        FC_N(pmk)(KB, n, x + j, cs, nc, toff, nt, w, bias, out + j, ldo);     \
    else

#define FC_PBAND(KB, NVM)                                                     \
static FC_TARGET void FC_CAT(FC_N(pband), KB)(                                \
    const FC_T *x, ptrdiff_t cs, ptrdiff_t nc, const ptrdiff_t *toff,         \
    ptrdiff_t nt, const FC_T *w, const FC_T *bias, FC_T *out, ptrdiff_t ldo,  \
    ptrdiff_t J)                                                              \
{                                                                             \
    ptrdiff_t j = 0, nv;                                                      \
    for (; j + NVM * FC_VL <= J; j += NVM * FC_VL)                            \
        FC_N(pmk)(KB, NVM, x + j, cs, nc, toff, nt, w, bias, out + j, ldo);   \
    nv = (J - j + FC_VL - 1) / FC_VL;                                         \
    FC_PTAIL(KB, NVM, 1) FC_PTAIL(KB, NVM, 2) FC_PTAIL(KB, NVM, 3)            \
    FC_PTAIL(KB, NVM, 4) FC_PTAIL(KB, NVM, 5) FC_PTAIL(KB, NVM, 6)            \
    FC_PTAIL(KB, NVM, 7) {}                                                   \
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
          FC_T *FC_RESTRICT gw, ptrdiff_t ldk)
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
#pragma GCC unroll 8
    for (int k = 0; k < KB; k++) {
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
            gw[k * ldk + t] += FC_N(hsum)(acc[k][t]);
    }
}

#define FC_GTAIL(KB, NTM, n)                                                  \
    if (NTM > n && ntl == n)                                                  \
        FC_N(gmk)(KB, n, g, ldg, x, toff + t, J, gw + t, ldk);                \
    else

#define FC_GBAND(KB, NTM)                                                     \
static FC_TARGET void FC_CAT(FC_N(gband), KB)(                                \
    const FC_T *g, ptrdiff_t ldg, const FC_T *x, const ptrdiff_t *toff,       \
    ptrdiff_t nt, ptrdiff_t J, FC_T *gw, ptrdiff_t ldk)                       \
{                                                                             \
    ptrdiff_t t = 0, ntl;                                                     \
    for (; t + NTM <= nt; t += NTM)                                           \
        FC_N(gmk)(KB, NTM, g, ldg, x, toff + t, J, gw + t, ldk);              \
    ntl = nt - t;                                                             \
    FC_GTAIL(KB, NTM, 1) FC_GTAIL(KB, NTM, 2) FC_GTAIL(KB, NTM, 3)            \
    FC_GTAIL(KB, NTM, 4) FC_GTAIL(KB, NTM, 5) FC_GTAIL(KB, NTM, 6)            \
    FC_GTAIL(KB, NTM, 7) FC_GTAIL(KB, NTM, 8) FC_GTAIL(KB, NTM, 9)            \
    FC_GTAIL(KB, NTM, 10) FC_GTAIL(KB, NTM, 11) {}                            \
}

FC_GLIST(FC_GBAND)

#define FC_GCASE(KB, NTM)                                                     \
    case KB: FC_CAT(FC_N(gband), KB)(g, ldg, x, toff, nt, J, gw, ldk); break;

static void
FC_N(gband)(int kb, const FC_T *g, ptrdiff_t ldg, const FC_T *x, const ptrdiff_t *toff,
            ptrdiff_t nt, ptrdiff_t J, FC_T *gw, ptrdiff_t ldk)
{
    switch (kb) {
        FC_GLIST(FC_GCASE)
    }
}

#undef FC_PTAIL
#undef FC_PBAND
#undef FC_PCASE
#undef FC_GTAIL
#undef FC_GBAND
#undef FC_GCASE
#undef FC_VEC
#undef FC_LOAD
#undef FC_STORE
#undef FC_BCAST
#undef FC_VL
#undef FC_N
