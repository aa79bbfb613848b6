/* Row primitives of the pooling kernels, one source for every ISA and dtype.
 *
 * The kernels in _pool.pyx walk planes and output rows; everything that
 * touches a whole row lives here as plain C loops that GCC vectorises at -O3
 * (contiguous or constant-stride accesses, `restrict` pointers, selects
 * instead of branches). The body below is compiled six times - float and
 * double, each for AVX-512, AVX2+FMA and the baseline - by including this
 * file into itself with FP_T / FP_FN / FP_TGT defined, and one variant is
 * picked at run time (fp_use; never -march=native). One routine is written
 * with intrinsics, for AVX-512 and AVX2: fp_max2x2_back (see there).
 *
 * Max pooling follows PyTorch's update rule: v replaces the running maximum
 * m when v > m or v is NaN. Written as the nested select
 * (v != v) ? v : (v > m ? v : m), which GCC turns into compare + blend;
 * the equivalent `(v > m) | (v != v)` does not vectorise (GCC 12).
 * Argmax positions are kept as int32 offsets from a row base (int64 selects
 * would not vectorise either) and widened once per output row.
 *
 * FP_K3S2: for 3-tap windows at stride 2 GCC reads b[2q + 2], past the last
 * pair it loads, so it peels the last vector iteration into its scalar
 * remainder ("data access with gaps"); with Q a multiple of the vector length
 * nothing would be left for the vector loop. Those loops therefore compute one
 * window more (Q + 1): callers give room for out[Q] (m, best, cdiv) and b[2Q + 2].
 *
 * Row buffers: a padded row holds the input row at offset `pw` with -inf
 * (max) or 0 (average) around it, so every window reads k taps at
 * q * s + j * d with no bounds checks. Padding taps never win a max: -inf
 * is never > anything and is not NaN.
 */
#ifndef FP_BODY

#ifndef FASTCONV_POOL_SIMD_H
#define FASTCONV_POOL_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef ptrdiff_t fp_index;

#define FP_NMAX(m, v) (((v) != (v)) ? (v) : ((v) > (m) ? (v) : (m)))

/* Software prefetch of the cache lines of [p, p + bytes), for reading or (with
 * write intent, so the line is owned before the stores reach it) for writing.
 * Rows of pooling layers are short (LeNet: 112 bytes); measured on a Xeon VM,
 * the hardware prefetchers leave a cold (DRAM-bound) call about 2x slower than
 * a call over the same data when it sits in the last-level cache, and writes to
 * cold lines are the worst. The kernels prefetch a few KiB ahead of each row,
 * at most fp_prefetch_max bytes of it: a longer burst stalls on the line fill
 * buffers, and long rows are streams the hardware prefetchers do follow.
 * Prefetches never fault, so addresses past the data are harmless. */
static fp_index fp_prefetch_max = 1024;  /* 0 turns prefetching off (benchmarks) */
static fp_index fp_ahead = 4096;  /* bytes: how far ahead of the current row to prefetch */

static inline void fp_prefetch(const void *p, fp_index bytes)
{
#if defined(__GNUC__)
    const char *end = (const char *)p + (bytes < fp_prefetch_max ? bytes : fp_prefetch_max);
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63);
    for (; c < end; c += 64) __builtin_prefetch(c, 0, 3);
#else
    (void)p; (void)bytes;
#endif
}

static inline void fp_prefetchw(void *p, fp_index bytes)
{
#if defined(__GNUC__)
    char *end = (char *)p + (bytes < fp_prefetch_max ? bytes : fp_prefetch_max);
    char *c = (char *)((uintptr_t)p & ~(uintptr_t)63);
    for (; c < end; c += 64) __builtin_prefetch(c, 1, 3);
#else
    (void)p; (void)bytes;
#endif
}

/* Every variant fills one of these; the kernels call through fp_cur. */
typedef struct {
    const char *name;
#define FP_SIGS(T, S)                                                                        \
    void (*colmax_##S)(const T *, fp_index, fp_index, fp_index, T *);                        \
    void (*hmax_##S)(const T *, fp_index, fp_index, fp_index, fp_index, const fp_index *,    \
                     const fp_index *, T *);                                                 \
    void (*max2x2_##S)(const T *, const T *, fp_index, T *);                                 \
    void (*hargmax_##S)(const T *, int32_t, fp_index, fp_index, fp_index, fp_index,          \
                        const fp_index *, const fp_index *, T *, int32_t *);                 \
    void (*colsum_##S)(const T *, fp_index, fp_index, fp_index, T *);                        \
    void (*hsum_##S)(const T *, fp_index, fp_index, fp_index, const fp_index *,              \
                     const fp_index *, T, const T *, T *);                                   \
    void (*avg2x2_##S)(const T *, const T *, fp_index, T, T *);                              \
    void (*vsum_div_##S)(const T *, fp_index, fp_index, const T *, const T *, T *);          \
    void (*hspread_##S)(const T *, fp_index, fp_index, fp_index, const fp_index *,           \
                        const fp_index *, T *);                                              \
    void (*hspread1_##S)(const T *, fp_index, fp_index, fp_index, fp_index, T *);           \
    void (*fill_##S)(T *, fp_index, T);                                                      \
    fp_index (*scatter_##S)(const T *, const int64_t *, fp_index, T *, fp_index, fp_index,   \
                            fp_index, fp_index);                                             \
    fp_index (*max2x2_back_##S)(const T *, const int64_t *, fp_index, fp_index, fp_index,    \
                                fp_index, T *);                                              \
    void (*avg2x2_back_##S)(const T *, fp_index, fp_index, fp_index, fp_index, T, T *);      \
    void (*gap_##S)(const T *, fp_index, fp_index, T, T *);                                  \
    void (*gap_back_##S)(const T *, fp_index, fp_index, T, T *);
    FP_SIGS(float, f32)
    FP_SIGS(double, f64)
#undef FP_SIGS
    void (*widen)(const int32_t *, fp_index, int64_t, int64_t *);
} fp_ops;

#define FP_BODY 1
#define FP_OPS_ENTRY(ISA)                                                                    \
    fp_colmax_##ISA##_f32, fp_hmax_##ISA##_f32, fp_max2x2_##ISA##_f32,                       \
    fp_hargmax_##ISA##_f32, fp_colsum_##ISA##_f32, fp_hsum_##ISA##_f32,                      \
    fp_avg2x2_##ISA##_f32, fp_vsum_div_##ISA##_f32,                                          \
    fp_hspread_##ISA##_f32, fp_hspread1_##ISA##_f32, fp_fill_##ISA##_f32,                    \
    fp_scatter_##ISA##_f32,                                                                  \
    FP_BACK2_##ISA##_f32, fp_avg2x2_back_##ISA##_f32, fp_gap_##ISA##_f32,                    \
    fp_gap_back_##ISA##_f32,                                                                 \
    fp_colmax_##ISA##_f64, fp_hmax_##ISA##_f64, fp_max2x2_##ISA##_f64,                       \
    fp_hargmax_##ISA##_f64, fp_colsum_##ISA##_f64, fp_hsum_##ISA##_f64,                      \
    fp_avg2x2_##ISA##_f64, fp_vsum_div_##ISA##_f64,                                          \
    fp_hspread_##ISA##_f64, fp_hspread1_##ISA##_f64, fp_fill_##ISA##_f64,                    \
    fp_scatter_##ISA##_f64,                                                                  \
    FP_BACK2_##ISA##_f64, fp_avg2x2_back_##ISA##_f64, fp_gap_##ISA##_f64,                    \
    fp_gap_back_##ISA##_f64,                                                                 \
    fp_widen_##ISA##_f32

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FP_X86 1
#include <immintrin.h>

/* fp_max2x2_back_avx512 (below), by hand: small layers' rows (LeNet: 14
 * windows) are shorter than one vector, where GCC's loop would run only its
 * scalar and half-width remainders. A chunk is up to one vector of windows:
 * k selects them, slo and shi the input columns they cover in the two
 * vectors of each input row. The tail's masks are computed once per call:
 * per row they cost as much as the chunk. Returns the mask of windows whose
 * index is none of their four taps. */
__attribute__((target("avx512f"), always_inline)) static inline unsigned
fp_back2_chunk_f32(const float *g, const int64_t *idx, __m512i t0, __m512i vw, __m512i vw1,
                   __mmask16 k, __mmask16 slo, __mmask16 shi, float *r0, float *r1)
{
    /* interleave a[0:8] with b[0:8], and a[8:16] with b[8:16] */
    const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ihi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8);
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1);
    __m512 v = _mm512_maskz_loadu_ps(k, g), a, b;
    __m512i o0 = _mm512_sub_epi64(_mm512_maskz_loadu_epi64((__mmask8)k, idx), t0);
    __m512i o1 = _mm512_sub_epi64(_mm512_maskz_loadu_epi64((__mmask8)(k >> 8), idx + 8),
                                  _mm512_add_epi64(t0, _mm512_set1_epi64(16)));
#define FP_EQ16(c) _mm512_kunpackb(_mm512_cmpeq_epi64_mask(o1, c), _mm512_cmpeq_epi64_mask(o0, c))
    __mmask16 e0 = FP_EQ16(zero), e1 = FP_EQ16(one), e2 = FP_EQ16(vw), e3 = FP_EQ16(vw1);
#undef FP_EQ16
    a = _mm512_maskz_mov_ps(e0, v);
    b = _mm512_maskz_mov_ps(e1, v);
    _mm512_mask_storeu_ps(r0, slo, _mm512_permutex2var_ps(a, ilo, b));
    _mm512_mask_storeu_ps(r0 + 16, shi, _mm512_permutex2var_ps(a, ihi, b));
    a = _mm512_maskz_mov_ps(e2, v);
    b = _mm512_maskz_mov_ps(e3, v);
    _mm512_mask_storeu_ps(r1, slo, _mm512_permutex2var_ps(a, ilo, b));
    _mm512_mask_storeu_ps(r1 + 16, shi, _mm512_permutex2var_ps(a, ihi, b));
    return k & ~(e0 | e1 | e2 | e3);
}

__attribute__((target("avx512f"), always_inline)) static inline unsigned
fp_back2_chunk_f64(const double *g, const int64_t *idx, __m512i t0, __m512i vw, __m512i vw1,
                   __mmask8 k, __mmask8 slo, __mmask8 shi, double *r0, double *r1)
{
    const __m512i ilo = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
    const __m512i ihi = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    __m512d v = _mm512_maskz_loadu_pd(k, g), a, b;
    __m512i o = _mm512_sub_epi64(_mm512_maskz_loadu_epi64(k, idx), t0);
    __mmask8 e0 = _mm512_cmpeq_epi64_mask(o, _mm512_setzero_si512());
    __mmask8 e1 = _mm512_cmpeq_epi64_mask(o, _mm512_set1_epi64(1));
    __mmask8 e2 = _mm512_cmpeq_epi64_mask(o, vw), e3 = _mm512_cmpeq_epi64_mask(o, vw1);
    a = _mm512_maskz_mov_pd(e0, v);
    b = _mm512_maskz_mov_pd(e1, v);
    _mm512_mask_storeu_pd(r0, slo, _mm512_permutex2var_pd(a, ilo, b));
    _mm512_mask_storeu_pd(r0 + 8, shi, _mm512_permutex2var_pd(a, ihi, b));
    a = _mm512_maskz_mov_pd(e2, v);
    b = _mm512_maskz_mov_pd(e3, v);
    _mm512_mask_storeu_pd(r1, slo, _mm512_permutex2var_pd(a, ilo, b));
    _mm512_mask_storeu_pd(r1 + 8, shi, _mm512_permutex2var_pd(a, ihi, b));
    return k & ~(e0 | e1 | e2 | e3);
}

/* 2x2 windows, stride 2, inside the input: output rows [p0, p1) of a plane give input
 * rows 2 p0 to 2 p1, each element written once (gy where the stored index points
 * at it, else 0; 0 in an odd last column). Returns nonzero when some index points
 * outside its window (the caller then redoes the call as a scatter). AVX-512 and
 * AVX2 (below) have it; at baseline, and on rows under 8 windows, zeroing and
 * scattering measures as fast. */
#define FP_DEFINE_BACK2(T, S, VL, MASK)                                                       \
__attribute__((target("avx512f"))) static fp_index                                          \
fp_max2x2_back_avx512_##S(const T *g, const int64_t *idx, fp_index p0, fp_index p1,          \
                          fp_index Q, fp_index W, T *gx)                                     \
{                                                                                            \
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);                        \
    const __m512i vw = _mm512_set1_epi64(W), vw1 = _mm512_set1_epi64(W + 1);                 \
    const fp_index qt = (Q - 1) / VL * VL;  /* the last chunk, full or not */                \
    const unsigned n = (unsigned)(Q - qt), all = (1u << VL) - 1;                             \
    const MASK k = (MASK)((1u << n) - 1);                                                    \
    const MASK slo = (MASK)(2 * n >= VL ? all : (1u << (2 * n)) - 1);                        \
    const MASK shi = (MASK)(2 * n > VL ? (1u << (2 * n - VL)) - 1 : 0u);                     \
    unsigned miss = 0;                                                                       \
    fp_index p, q;                                                                           \
    for (p = p0; p < p1; p++) {                                                              \
        const T *gp = g + p * Q;                                                             \
        const int64_t *ip = idx + p * Q;                                                     \
        T *r0 = gx + 2 * p * W, *r1 = r0 + W;                                                \
        __m512i t = _mm512_add_epi64(_mm512_set1_epi64(2 * p * W), even);                    \
        fp_prefetch((const char *)gp + fp_ahead / 4, Q * (fp_index)sizeof(T));               \
        fp_prefetch((const char *)ip + fp_ahead / 2, Q * 8);                                 \
        fp_prefetchw((char *)r0 + fp_ahead, 2 * W * (fp_index)sizeof(T));                    \
        for (q = 0; q < qt; q += VL) {                                                       \
            miss |= fp_back2_chunk_##S(gp + q, ip + q, t, vw, vw1, (MASK)all, (MASK)all,     \
                                       (MASK)all, r0 + 2 * q, r1 + 2 * q);                   \
            t = _mm512_add_epi64(t, _mm512_set1_epi64(2 * VL));                              \
        }                                                                                    \
        miss |= fp_back2_chunk_##S(gp + qt, ip + qt, t, vw, vw1, k, slo, shi, r0 + 2 * qt,   \
                                   r1 + 2 * qt);                                             \
        if (2 * Q < W) {                                                                     \
            r0[2 * Q] = 0;                                                                   \
            r1[2 * Q] = 0;                                                                   \
        }                                                                                    \
    }                                                                                        \
    return miss != 0;                                                                        \
}
FP_DEFINE_BACK2(float, f32, 16, __mmask16)
FP_DEFINE_BACK2(double, f64, 8, __mmask8)
#define FP_BACK2_avx512_f32 fp_max2x2_back_avx512_f32
#define FP_BACK2_avx512_f64 fp_max2x2_back_avx512_f64

/* The same with AVX2, four windows a step: no mask registers, so the compares'
 * 64-bit lanes are blended into 32-bit float masks (f32) or regrouped (f64),
 * and the last step of a row overlaps the one before instead of a masked tail
 * (AVX2 masked stores are slow on AMD; these stores write, so repeating some
 * is harmless). Needs Q >= 4. */
__attribute__((target("avx2"), always_inline)) static inline int
fp_back2_step_avx2_f32(const float *g, const int64_t *idx, __m256i t, __m256i vw, __m256i vw1,
                       float *r0, float *r1)
{
    const __m256i dup = _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0);
    __m256i o = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)idx), t);
    __m256i e0 = _mm256_cmpeq_epi64(o, _mm256_setzero_si256());
    __m256i e1 = _mm256_cmpeq_epi64(o, _mm256_set1_epi64x(1));
    __m256i e2 = _mm256_cmpeq_epi64(o, vw), e3 = _mm256_cmpeq_epi64(o, vw1);
    /* input column 2j takes window j's low half of e0 (e2), column 2j + 1 its
     * high half of e1 (e3) */
    __m256 v = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(g)), dup);
#define FP_PUT(dst, a, b) \
    _mm256_storeu_ps(dst, _mm256_and_ps(_mm256_castsi256_ps(_mm256_blend_epi32(a, b, 0xAA)), v))
    FP_PUT(r0, e0, e1);
    FP_PUT(r1, e2, e3);
#undef FP_PUT
    return _mm256_movemask_pd(_mm256_castsi256_pd(
        _mm256_or_si256(_mm256_or_si256(e0, e1), _mm256_or_si256(e2, e3)))) ^ 0xF;
}

__attribute__((target("avx2"), always_inline)) static inline int
fp_back2_step_avx2_f64(const double *g, const int64_t *idx, __m256i t, __m256i vw, __m256i vw1,
                       double *r0, double *r1)
{
    __m256i o = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)idx), t);
    __m256i e0 = _mm256_cmpeq_epi64(o, _mm256_setzero_si256());
    __m256i e1 = _mm256_cmpeq_epi64(o, _mm256_set1_epi64x(1));
    __m256i e2 = _mm256_cmpeq_epi64(o, vw), e3 = _mm256_cmpeq_epi64(o, vw1);
    __m256d v = _mm256_loadu_pd(g);
    __m256d v01 = _mm256_permute4x64_pd(v, 0x50), v23 = _mm256_permute4x64_pd(v, 0xFA);
    /* unpacklo: taps of windows 0 and 2, unpackhi: of 1 and 3; regrouped by window */
    __m256i a = _mm256_unpacklo_epi64(e0, e1), b = _mm256_unpackhi_epi64(e0, e1);
#define FP_PUT(dst, sel, v) _mm256_storeu_pd( \
    dst, _mm256_and_pd(_mm256_castsi256_pd(_mm256_permute2x128_si256(a, b, sel)), v))
    FP_PUT(r0, 0x20, v01);
    FP_PUT(r0 + 4, 0x31, v23);
    a = _mm256_unpacklo_epi64(e2, e3);
    b = _mm256_unpackhi_epi64(e2, e3);
    FP_PUT(r1, 0x20, v01);
    FP_PUT(r1 + 4, 0x31, v23);
#undef FP_PUT
    return _mm256_movemask_pd(_mm256_castsi256_pd(
        _mm256_or_si256(_mm256_or_si256(e0, e1), _mm256_or_si256(e2, e3)))) ^ 0xF;
}

#define FP_DEFINE_BACK2_AVX2(T, S)                                                            \
__attribute__((target("avx2"))) static fp_index                                              \
fp_max2x2_back_avx2_##S(const T *g, const int64_t *idx, fp_index p0, fp_index p1,            \
                        fp_index Q, fp_index W, T *gx)                                       \
{                                                                                            \
    const __m256i even = _mm256_set_epi64x(6, 4, 2, 0);                                      \
    const __m256i vw = _mm256_set1_epi64x(W), vw1 = _mm256_set1_epi64x(W + 1);               \
    int miss = 0;                                                                            \
    fp_index p, q;                                                                           \
    for (p = p0; p < p1; p++) {                                                              \
        const T *gp = g + p * Q;                                                             \
        const int64_t *ip = idx + p * Q;                                                     \
        T *r0 = gx + 2 * p * W, *r1 = r0 + W;                                                \
        const int64_t base = 2 * p * W;                                                      \
        fp_prefetch((const char *)gp + fp_ahead / 4, Q * (fp_index)sizeof(T));               \
        fp_prefetch((const char *)ip + fp_ahead / 2, Q * 8);                                 \
        fp_prefetchw((char *)r0 + fp_ahead, 2 * W * (fp_index)sizeof(T));                    \
        for (q = 0;; q += 4) {                                                               \
            if (q > Q - 4) q = Q - 4;  /* the last step, overlapping */                      \
            miss |= fp_back2_step_avx2_##S(                                                  \
                gp + q, ip + q, _mm256_add_epi64(_mm256_set1_epi64x(base + 2 * q), even),    \
                vw, vw1, r0 + 2 * q, r1 + 2 * q);                                            \
            if (q == Q - 4) break;                                                           \
        }                                                                                    \
        if (2 * Q < W) {                                                                     \
            r0[2 * Q] = 0;                                                                   \
            r1[2 * Q] = 0;                                                                   \
        }                                                                                    \
    }                                                                                        \
    return miss != 0;                                                                        \
}
FP_DEFINE_BACK2_AVX2(float, f32)
FP_DEFINE_BACK2_AVX2(double, f64)
#define FP_BACK2_avx2_f32 fp_max2x2_back_avx2_f32
#define FP_BACK2_avx2_f64 fp_max2x2_back_avx2_f64

#define FP_TGT __attribute__((target("avx512f")))
#define FP_VBYTES 64
#define FP_T float
#define FP_FN(name) fp_##name##_avx512_f32
#include "_pool_simd.h"
#undef FP_T
#undef FP_FN
#define FP_T double
#define FP_FN(name) fp_##name##_avx512_f64
#include "_pool_simd.h"
#undef FP_T
#undef FP_FN
#undef FP_TGT
#undef FP_VBYTES

#define FP_TGT __attribute__((target("avx2,fma")))
#define FP_VBYTES 32
#define FP_T float
#define FP_FN(name) fp_##name##_avx2_f32
#include "_pool_simd.h"
#undef FP_T
#undef FP_FN
#define FP_T double
#define FP_FN(name) fp_##name##_avx2_f64
#include "_pool_simd.h"
#undef FP_T
#undef FP_FN
#undef FP_TGT
#undef FP_VBYTES
#else
#define FP_X86 0
#endif

#define FP_BACK2_base_f32 NULL
#define FP_BACK2_base_f64 NULL
#define FP_TGT
#define FP_VBYTES 16
#define FP_T float
#define FP_FN(name) fp_##name##_base_f32
#include "_pool_simd.h"
#undef FP_T
#undef FP_FN
#define FP_T double
#define FP_FN(name) fp_##name##_base_f64
#include "_pool_simd.h"
#undef FP_T
#undef FP_FN
#undef FP_TGT
#undef FP_VBYTES
#undef FP_BODY

static const fp_ops fp_table[] = {
#if FP_X86
    {"avx512", FP_OPS_ENTRY(avx512)},
    {"avx2", FP_OPS_ENTRY(avx2)},
#endif
    {"baseline", FP_OPS_ENTRY(base)},
};
enum { FP_N_VARIANTS = sizeof(fp_table) / sizeof(fp_table[0]) };

static const fp_ops *fp_cur = &fp_table[FP_N_VARIANTS - 1];

static int fp_supported(int i)
{
    if (i < 0 || i >= FP_N_VARIANTS) return 0;
#if FP_X86
    __builtin_cpu_init();
    if (i == 0) return __builtin_cpu_supports("avx512f");
    if (i == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 1;
}

static const char *fp_name(int i) { return (i >= 0 && i < FP_N_VARIANTS) ? fp_table[i].name : ""; }

/* Use variant i (0 = widest); returns -1 (and changes nothing) if the CPU lacks it. */
static int fp_use(int i)
{
    if (!fp_supported(i)) return -1;
    fp_cur = &fp_table[i];
    return 0;
}

#endif /* FASTCONV_POOL_SIMD_H */

#else /* FP_BODY: one instantiation, for FP_T under FP_TGT */

#define T FP_T

/* ---------------------------------------------------------------- max --- */

/* out[i] = max over nr rows x[r * step + i] (any NaN wins). */
FP_TGT static void FP_FN(colmax)(const T *x, fp_index step, fp_index nr, fp_index n,
                                 T *restrict out)
{
    const T *restrict a = x, *restrict b = x + step, *restrict c = x + 2 * step;
    fp_index i, r;
    if (nr == 1) {
        memcpy(out, a, (size_t)n * sizeof(T));
        return;
    }
    if (nr == 2) {
        for (i = 0; i < n; i++) {
            T u = a[i], v = b[i];
            out[i] = FP_NMAX(u, v);
        }
        return;
    }
    for (i = 0; i < n; i++) {
        T u = a[i], v = b[i], w = c[i];
        T m = FP_NMAX(u, v);
        out[i] = FP_NMAX(m, w);
    }
    for (r = 3; r < nr; r++) {
        const T *restrict e = x + r * step;
        for (i = 0; i < n; i++) {
            T u = out[i], v = e[i];
            out[i] = FP_NMAX(u, v);
        }
    }
}

/* out[q] = max_j b[q * s + j * d], j < k; or over b[cs[q]:ce[q]] when cs is given. */
FP_TGT static void FP_FN(hmax)(const T *restrict b, fp_index Q, fp_index k, fp_index s, fp_index d,
                               const fp_index *cs, const fp_index *ce, T *restrict out)
{
    fp_index q, j;
    if (cs) {
        for (q = 0; q < Q; q++) {
            T m = b[cs[q]];
            for (j = cs[q] + 1; j < ce[q]; j++) {
                T v = b[j];
                m = FP_NMAX(m, v);
            }
            out[q] = m;
        }
        return;
    }
    if (d == 1 && s == 2 && k == 2) {
        for (q = 0; q < Q; q++) {
            T u = b[2 * q], v = b[2 * q + 1];
            out[q] = FP_NMAX(u, v);
        }
        return;
    }
    if (d == 1 && s == 2 && k == 3) {
        for (q = 0; q < Q + 1; q++) {  /* one window more: see FP_K3S2 */
            T u = b[2 * q], v = b[2 * q + 1], w = b[2 * q + 2];
            T m = FP_NMAX(u, v);
            out[q] = FP_NMAX(m, w);
        }
        return;
    }
    if (s == 1) {
        for (q = 0; q < Q; q++) out[q] = b[q];
        for (j = 1; j < k; j++) {
            const T *restrict bj = b + j * d;
            for (q = 0; q < Q; q++) {
                T u = out[q], v = bj[q];
                out[q] = FP_NMAX(u, v);
            }
        }
        return;
    }
    for (q = 0; q < Q; q++) out[q] = b[q * s];
    for (j = 1; j < k; j++) {
        const T *restrict bj = b + j * d;
        for (q = 0; q < Q; q++) {
            T u = out[q], v = bj[q * s];
            out[q] = FP_NMAX(u, v);
        }
    }
}

/* 2x2 windows, stride 2, both rows inside the input: out[q] = max of a[2q:2q+2], b[2q:2q+2]. */
FP_TGT static void FP_FN(max2x2)(const T *restrict a, const T *restrict b, fp_index Q,
                                 T *restrict out)
{
    fp_index q;
    for (q = 0; q < Q; q++) {
        T a0 = a[2 * q], a1 = a[2 * q + 1], b0 = b[2 * q], b1 = b[2 * q + 1];
        T u = FP_NMAX(a0, a1);
        T v = FP_NMAX(b0, b1);
        out[q] = FP_NMAX(u, v);
    }
}

/* One input row's taps of every window, in window order, folded into the running
 * (m, best): best holds positions as offsets base + (index into b). Visiting the
 * rows of a window top to bottom reproduces PyTorch's row-major scan exactly
 * (first maximum wins a tie, the last NaN wins). */
FP_TGT static void FP_FN(hargmax)(const T *restrict b, int32_t base, fp_index Q, fp_index k,
                                  fp_index s, fp_index d, const fp_index *cs, const fp_index *ce,
                                  T *restrict m, int32_t *restrict best)
{
    fp_index q, j;
    if (cs) {
        for (q = 0; q < Q; q++) {
            T mq = m[q];
            int32_t bq = best[q];
            for (j = cs[q]; j < ce[q]; j++) {
                T v = b[j];
                if (v > mq || v != v) {
                    mq = v;
                    bq = base + (int32_t)j;
                }
            }
            m[q] = mq;
            best[q] = bq;
        }
        return;
    }
#define FP_ARG_TAP(v, p)                                                                     \
    do {                                                                                     \
        bq = ((v) != (v)) ? (p) : ((v) > mq ? (p) : bq);                                     \
        mq = FP_NMAX(mq, (v));                                                               \
    } while (0)
    if (d == 1 && s == 2 && k == 2) {
        for (q = 0; q < Q; q++) {
            T mq = m[q], v0 = b[2 * q], v1 = b[2 * q + 1];
            int32_t bq = best[q], p = base + 2 * (int32_t)q;
            FP_ARG_TAP(v0, p);
            FP_ARG_TAP(v1, p + 1);
            m[q] = mq;
            best[q] = bq;
        }
        return;
    }
    if (d == 1 && s == 2 && k == 3) {
        for (q = 0; q < Q + 1; q++) {  /* one window more: see FP_K3S2 */
            T mq = m[q], v0 = b[2 * q], v1 = b[2 * q + 1], v2 = b[2 * q + 2];
            int32_t bq = best[q], p = base + 2 * (int32_t)q;
            FP_ARG_TAP(v0, p);
            FP_ARG_TAP(v1, p + 1);
            FP_ARG_TAP(v2, p + 2);
            m[q] = mq;
            best[q] = bq;
        }
        return;
    }
#undef FP_ARG_TAP
    for (j = 0; j < k; j++) {
        const T *restrict bj = b + j * d;
        int32_t pj = base + (int32_t)(j * d);
        for (q = 0; q < Q; q++) {
            T v = bj[q * s], mq = m[q];
            int32_t p = pj + (int32_t)(q * s);
            best[q] = (v != v) ? p : (v > mq ? p : best[q]);
            m[q] = FP_NMAX(mq, v);
        }
    }
}

/* --------------------------------------------------------------- mean --- */

/* out[i] = sum over nr rows x[r * step + i], rows added in order. */
FP_TGT static void FP_FN(colsum)(const T *x, fp_index step, fp_index nr, fp_index n,
                                 T *restrict out)
{
    const T *restrict a = x, *restrict b = x + step, *restrict c = x + 2 * step;
    fp_index i, r;
    if (nr == 1) {
        memcpy(out, a, (size_t)n * sizeof(T));
        return;
    }
    if (nr == 2) {
        for (i = 0; i < n; i++) out[i] = a[i] + b[i];
        return;
    }
    for (i = 0; i < n; i++) out[i] = (a[i] + b[i]) + c[i];
    for (r = 3; r < nr; r++) {
        const T *restrict e = x + r * step;
        for (i = 0; i < n; i++) out[i] += e[i];
    }
}

/* out[q] = (sum_j b[q * s + j], j < k; or over b[cs[q]:ce[q]]) / (rdiv * cdiv[q]). */
FP_TGT static void FP_FN(hsum)(const T *restrict b, fp_index Q, fp_index k, fp_index s,
                               const fp_index *cs, const fp_index *ce, T rdiv,
                               const T *restrict cdiv, T *restrict out)
{
    typedef T vec __attribute__((vector_size(FP_VBYTES), aligned(sizeof(T)), may_alias));
    enum { VL = FP_VBYTES / sizeof(T) };
    fp_index q, j;
    if (cs) {
        for (q = 0; q < Q; q++) {
            T acc = 0;
            for (j = cs[q]; j < ce[q]; j++) acc += b[j];
            out[q] = acc / (rdiv * cdiv[q]);
        }
        return;
    }
    if (s == 2 && k == 2) {
        for (q = 0; q < Q; q++) out[q] = (b[2 * q] + b[2 * q + 1]) / (rdiv * cdiv[q]);
        return;
    }
    if (s == 2 && k == 3) {
        for (q = 0; q < Q + 1; q++)  /* one window more: see FP_K3S2 */
            out[q] = ((b[2 * q] + b[2 * q + 1]) + b[2 * q + 2]) / (rdiv * cdiv[q]);
        return;
    }
    if (s == 1 && Q >= VL) {
        /* each out[q] summed and divided in registers and stored once, the last
         * vector overlapping (recomputed, not divided twice): k passes of
         * out[q] += b[q + j] re-read each store, and a division loop of its own
         * ends in scalar divisions (60% of the time on 28-wide rows) */
        for (q = 0; q < Q; q += VL) {
            fp_index a = q + VL <= Q ? q : Q - VL;
            vec acc = *(const vec *)(b + a);
            for (j = 1; j < k; j++) acc += *(const vec *)(b + a + j);
            *(vec *)(out + a) = acc / (rdiv * *(const vec *)(cdiv + a));
        }
        return;
    } else if (s == 1) {
        for (q = 0; q < Q; q++) out[q] = b[q];
        for (j = 1; j < k; j++) {
            const T *restrict bj = b + j;
            for (q = 0; q < Q; q++) out[q] += bj[q];
        }
    } else {
        for (q = 0; q < Q; q++) out[q] = b[q * s];
        for (j = 1; j < k; j++) {
            const T *restrict bj = b + j;
            for (q = 0; q < Q; q++) out[q] += bj[q * s];
        }
    }
    for (q = 0; q < Q; q++) out[q] = out[q] / (rdiv * cdiv[q]);
}

/* 2x2 windows, stride 2, inside the input, one divisor: summed in PyTorch's row-major order. */
FP_TGT static void FP_FN(avg2x2)(const T *restrict a, const T *restrict b, fp_index Q, T div,
                                 T *restrict out)
{
    fp_index q;
    for (q = 0; q < Q; q++) out[q] = (((a[2 * q] + a[2 * q + 1]) + b[2 * q]) + b[2 * q + 1]) / div;
}

/* sum of x[0:n] with vector accumulators (global average pooling). */
FP_TGT static T FP_FN(sum)(const T *x, fp_index n)
{
    typedef T vec __attribute__((vector_size(FP_VBYTES), aligned(sizeof(T)), may_alias));
    enum { VL = FP_VBYTES / sizeof(T) };
    vec a0 = {0}, a1 = {0};
    T acc = 0;
    fp_index i = 0;
    int l;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        a0 += *(const vec *)(x + i);
        a1 += *(const vec *)(x + i + VL);
    }
    if (i + VL <= n) {
        a0 += *(const vec *)(x + i);
        i += VL;
    }
    a0 += a1;
    {   /* pairwise over the lanes: a chain of log2(VL) adds, not VL */
        int w;
#if FP_VBYTES == 64
        /* the halves added in registers first: storing the whole vector and
         * loading its upper half missed store forwarding (AVX-512 global
         * average pooling ran at half the speed of AVX2's) */
        typedef T half __attribute__((vector_size(32), may_alias));
        half lo = (half)_mm512_castpd512_pd256((__m512d)a0);
        lo += (half)_mm512_extractf64x4_pd((__m512d)a0, 1);
        T lanes[VL / 2];
        memcpy(lanes, &lo, sizeof(lanes));
        for (w = VL / 4; w >= 1; w /= 2)
#else
        T lanes[VL];
        memcpy(lanes, &a0, sizeof(lanes));
        for (w = VL / 2; w >= 1; w /= 2)
#endif
            for (l = 0; l < w; l++) lanes[l] += lanes[l + w];
        acc = lanes[0];
    }
    for (; i < n; i++) acc += x[i];
    return acc;
}

/* One output row of avg2x2_back: g[q] / div to the four inputs of window q. */
FP_TGT __attribute__((noinline)) static void FP_FN(avg2x2_back_row)(const T *restrict g,
                                                                    fp_index Q, T div,
                                                                    T *restrict r0,
                                                                    T *restrict r1)
{
    fp_index q;
    for (q = 0; q < Q; q++) {
        T v = g[q] / div;
        r0[2 * q] = v;
        r0[2 * q + 1] = v;
        r1[2 * q] = v;
        r1[2 * q + 1] = v;
    }
}

/* The adjoint of avg2x2 for output rows [p0, p1) of a plane: input rows 2 p0 to 2 p1
 * (0 in an odd last column). */
FP_TGT static void FP_FN(avg2x2_back)(const T *g, fp_index p0, fp_index p1, fp_index Q,
                                      fp_index W, T div, T *gx)
{
    fp_index p;
    for (p = p0; p < p1; p++) {
        fp_prefetch((const char *)(g + p * Q) + fp_ahead / 4, Q * (fp_index)sizeof(T));
        fp_prefetchw((char *)(gx + 2 * p * W) + fp_ahead, 2 * W * (fp_index)sizeof(T));
        FP_FN(avg2x2_back_row)(g + p * Q, Q, div, gx + 2 * p * W, gx + (2 * p + 1) * W);
        if (2 * Q < W) {
            gx[2 * p * W + 2 * Q] = 0;
            gx[(2 * p + 1) * W + 2 * Q] = 0;
        }
    }
}

/* Global average pooling of n planes of hw elements each: y[i] = sum(plane i) / div. */
FP_TGT static void FP_FN(gap)(const T *x, fp_index n, fp_index hw, T div, T *restrict y)
{
    fp_index i;
    for (i = 0; i < n; i++) {
        fp_prefetch((const char *)(x + i * hw) + fp_ahead, hw * (fp_index)sizeof(T));
        y[i] = FP_FN(sum)(x + i * hw, hw);
    }
    for (i = 0; i < n; i++) y[i] = y[i] / div;
}

/* Its adjoint: every element of plane i is g[i] / div. The planes of a block
 * are one contiguous run, written as whole aligned vectors straight through
 * (a vector spanning two planes blends their values), and the block's
 * divisions are done first, in one vector loop: a 7x7 plane is 49 elements,
 * and plane by plane its vectors straddled cache lines and waited on a scalar
 * division each (2048 planes of 7x7: 68 -> 38 us). */
FP_TGT static void FP_FN(gap_back)(const T *g, fp_index n, fp_index hw, T div, T *restrict gx)
{
    typedef T vec __attribute__((vector_size(FP_VBYTES), aligned(sizeof(T)), may_alias));
    typedef __typeof__((vec){0} < (vec){0}) ivec;  /* lanes of T's width: masks */
    enum { VL = FP_VBYTES / sizeof(T), BLOCK = 64 };
    T v[BLOCK + 1];
    vec lane;
    fp_index i0, i, nb, e, e0, end, next;
    for (i = 0; i < VL; i++) lane[i] = (T)i;
    for (i0 = 0; i0 < n; i0 += BLOCK) {
        T *restrict o = gx + i0 * hw;
        nb = n - i0 < BLOCK ? n - i0 : BLOCK;
        for (i = 0; i < nb; i++) v[i] = g[i0 + i] / div;
        v[nb] = 0;  /* read ahead by the last vector, never stored */
        end = nb * hw;
        if (hw < VL) {  /* a vector would span more than two planes */
            for (e = 0; e < end; e++) o[e] = v[e / hw];
            continue;
        }
        /* the elements before the first aligned vector (fewer than VL <= hw: all in
         * the first plane; likewise those after the last, in the last plane) */
        e0 = (fp_index)((FP_VBYTES - (uintptr_t)o % FP_VBYTES) % FP_VBYTES / sizeof(T));
        for (e = 0; e < e0; e++) o[e] = v[0];
        i = 0;
        next = hw;  /* the first element of plane i + 1 */
        vec vi = v[0] - (vec){0}, vn = v[1] - (vec){0};
        for (; e + VL <= end; e += VL) {
            if (next - e >= VL) {
                *(vec *)(o + e) = vi;
                continue;
            }
            ivec m = lane < (T)(next - e);  /* lanes still in plane i */
            *(vec *)(o + e) = (vec)(((ivec)vi & m) | ((ivec)vn & ~m));
            i++;
            next += hw;
            vi = vn;
            vn = v[i + 1] - (vec){0};
        }
        for (; e < end; e++) o[e] = v[nb - 1];
    }
}

/* ----------------------------------------------------------- backward --- */

/* t[q] = sum over np output rows g[r * Q + q] / (rdiv[r] * cdiv[q]). */
FP_TGT static void FP_FN(vsum_div)(const T *restrict g, fp_index Q, fp_index np,
                                   const T *restrict rdiv, const T *restrict cdiv, T *restrict t)
{
    typedef T vec __attribute__((vector_size(FP_VBYTES), aligned(sizeof(T)), may_alias));
    enum { VL = FP_VBYTES / sizeof(T) };
    fp_index q, r;
    if (Q >= VL) {  /* in registers, the last vector overlapping: no scalar divisions */
        for (q = 0; q < Q; q += VL) {
            fp_index a = q + VL <= Q ? q : Q - VL;
            vec cd = *(const vec *)(cdiv + a);
            vec acc = *(const vec *)(g + a) / (rdiv[0] * cd);
            for (r = 1; r < np; r++) acc += *(const vec *)(g + r * Q + a) / (rdiv[r] * cd);
            *(vec *)(t + a) = acc;
        }
        return;
    }
    for (q = 0; q < Q; q++) t[q] = g[q] / (rdiv[0] * cdiv[q]);
    for (r = 1; r < np; r++) {
        const T *restrict gr = g + r * Q;
        T rd = rdiv[r];
        for (q = 0; q < Q; q++) t[q] += gr[q] / (rd * cdiv[q]);
    }
}

/* The adjoint of hsum without the division: b[q * s + j] += t[q] for j < k (or over
 * b[cs[q]:ce[q]]). b must be zero where windows leave gaps; where windows do not
 * overlap (k == s) the taps are assigned, not added. Stride 1 (not adaptive) is
 * hspread1's: the callers never give it here. */
FP_TGT static void FP_FN(hspread)(const T *restrict t, fp_index Q, fp_index k, fp_index s,
                                  const fp_index *cs, const fp_index *ce, T *restrict b)
{
    fp_index q, j;
    if (cs) {
        for (q = 0; q < Q; q++)
            for (j = cs[q]; j < ce[q]; j++) b[j] += t[q];
        return;
    }
    if (k == 2 && s == 2) {
        for (q = 0; q < Q; q++) {
            b[2 * q] = t[q];
            b[2 * q + 1] = t[q];
        }
        return;
    }
    if (k == 3 && s == 2) {  /* taps 2q share with the window before: gather them */
        if (Q > 0) b[0] = t[0];
        for (q = 1; q < Q; q++) b[2 * q] = t[q] + t[q - 1];
        for (q = 0; q < Q; q++) b[2 * q + 1] = t[q];
        if (Q > 0) b[2 * Q] = t[Q - 1];
        return;
    }
    if (k == s) {
        for (j = 0; j < k; j++) {
            T *restrict bj = b + j;
            for (q = 0; q < Q; q++) bj[q * s] = t[q];
        }
        return;
    }
    for (j = 0; j < k; j++) {
        T *restrict bj = b + j;
        for (q = 0; q < Q; q++) bj[q * s] += t[q];
    }
}

/* hspread at stride 1, written straight into an input row: row[c] (c < W) = 0 +
 * t[i] + t[i - 1] + ... over the windows q = i - j in [0, Q) reaching position
 * i = c + off of the padded row (off: the left padding), j ascending, each
 * written once: k passes of b[q + j] += t[q] each re-read the pass before at one
 * element's offset, which the CPU cannot forward from its stores (3x as long). */
FP_TGT static void FP_FN(hspread1)(const T *restrict t, fp_index Q, fp_index k, fp_index off,
                                   fp_index W, T *restrict row)
{
    typedef T vec __attribute__((vector_size(FP_VBYTES), aligned(sizeof(T)), may_alias));
    enum { VL = FP_VBYTES / sizeof(T) };
    /* [c0, c1): every tap inside t, in vectors (the last overlapping) when wide enough */
    fp_index c0 = k - 1 - off, c1 = Q - off, c, i, j;
    if (c0 < 0) c0 = 0;
    if (c1 > W) c1 = W;
    if (c1 - c0 < VL) c0 = c1 = W;
    for (c = 0; c < W; c++) {  /* the ends */
        T acc = 0;
        if (c == c0) c = c1;
        if (c >= W) break;
        i = c + off;
        for (j = i - Q + 1 > 0 ? i - Q + 1 : 0; j < k && j <= i; j++) acc += t[i - j];
        row[c] = acc;
    }
    for (c = c0; c < c1; c += VL) {
        fp_index a = c + VL <= c1 ? c : c1 - VL;
        vec acc = (vec){0};
        for (j = 0; j < k; j++) acc += *(const vec *)(t + a + off - j);
        *(vec *)(row + a) = acc;
    }
}

FP_TGT static void FP_FN(fill)(T *restrict out, fp_index n, T v)
{
    fp_index i;
    for (i = 0; i < n; i++) out[i] = v;
}

/* gx[j] += g[q] for j = idx[q] in [lo, hi) (rows this thread owns and has zeroed).
 * Other positions inside [blo, bhi) (the windows' rows, owned by another thread)
 * and -1 (a window with no input element) are skipped; anything else is counted. */
FP_TGT static fp_index FP_FN(scatter)(const T *restrict g, const int64_t *restrict idx, fp_index Q,
                                      T *restrict gx, fp_index lo, fp_index hi, fp_index blo,
                                      fp_index bhi)
{
    fp_index q, odd = 0;
    for (q = 0; q < Q; q++) {
        int64_t j = idx[q];
        /* unsigned: a caller's index near INT64_MIN must not overflow j - lo */
        if ((uint64_t)j - (uint64_t)lo < (uint64_t)(hi - lo))
            gx[j] += g[q];
        else if (j != -1 && (j < blo || j >= bhi))
            odd++;
    }
    return odd;
}

/* out[q] = base + code[q], or -1 where code[q] < 0 (a window with no input element). */
FP_TGT static void FP_FN(widen)(const int32_t *restrict code, fp_index Q, int64_t base,
                                int64_t *restrict out)
{
    fp_index q;
    for (q = 0; q < Q; q++) out[q] = code[q] < 0 ? -1 : base + code[q];
}

#undef T
#endif /* FP_BODY */
