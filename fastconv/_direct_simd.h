/* SIMD variants of the direct-convolution micro-kernels, chosen at run time.
 *
 * _direct_simd_tmpl.h is compiled once per (element type, instruction set):
 *   avx512    AVX-512F + FMA, 64-byte vectors, 32 vector registers
 *   avx2      AVX2 + FMA, 32-byte vectors, 16 registers
 *   baseline  what every x86-64 has (SSE2, 16-byte vectors); on other
 *             architectures the compiler's default vector unit
 * each through __attribute__((target(...))), never -march=native, so one
 * build runs on any x86-64 and uses what the CPU has: fc_best_isa() asks
 * cpuid (__builtin_cpu_supports, which also checks that the OS saves the
 * wide registers). Compilers without GCC vector extensions get scalar code.
 *
 * The fc_*_f32 / fc_*_f64 entry points at the end take the variant as
 * their first argument. The tile shapes (the lists below) fill the register
 * file: accumulators plus the vectors they are fed from stay within 32 (or
 * 16) registers.
 */
#ifndef FASTCONV_DIRECT_SIMD_H
#define FASTCONV_DIRECT_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FC_ISA_BASELINE 0
#define FC_ISA_AVX2 1
#define FC_ISA_AVX512 2

#if defined(__GNUC__) && !defined(FC_FORCE_SCALAR)
#define FC_INLINE inline __attribute__((always_inline))
#define FC_NOINLINE __attribute__((noinline))
#define FC_RESTRICT __restrict__
#else
/* no GCC vector extensions (or FC_FORCE_SCALAR, to test this path with GCC):
 * the same kernels on scalars */
#define FC_INLINE inline
#if defined(_MSC_VER)
#define FC_NOINLINE __declspec(noinline)
#else
#define FC_NOINLINE
#endif
#define FC_RESTRICT
#define FC_SCALAR 1
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(FC_SCALAR)
#define FC_X86 1
#include <immintrin.h>
#include "_store.h"
#else
#define FC_X86 0
#endif

/* rows in the ring of split input rows of the stride-2 depthwise kernels */
#define FC_DW2_SLOTS(R) ((R) + 3)

/* Tile lists X(KB, largest NV) for pband and X(KB, largest NT) for gband,
 * and the array bounds they need. */
#define FC_PLIST32(X) X(1, 16) X(2, 8) X(3, 7) X(4, 6) X(5, 5) X(6, 4) X(7, 3) X(8, 3)
#define FC_GLIST32(X) X(1, 9) X(2, 9) X(3, 7) X(4, 6)
/* (16 registers: 5 or 6 channels x 2 vectors serve layers of 5-6 output
 * channels in one block, each input vector loaded once for all of them) */
#define FC_PLIST16(X) X(1, 6) X(2, 4) X(3, 3) X(4, 3) X(5, 2) X(6, 2)
#define FC_GLIST16(X) X(1, 6) X(2, 4) X(3, 3)
#define FC_KLIST32(X) X(1, 24) X(2, 14)
#define FC_KGLIST32(X) X(1, 9) X(2, 9) X(4, 5)
#define FC_KLIST16(X) X(1, 12) X(2, 6)
/* depthwise 3x3 tiles: X(rows, largest NV) for the full and the single-row tiles */
#define FC_DWLIST32(X) X(4, 4) X(1, 4)
#define FC_DWLIST16(X) X(2, 2) X(1, 2)
#define FC_KGLIST16(X) X(1, 6) X(2, 6)

/* ---- baseline ---------------------------------------------------------- */
#define FC_TARGET
#define FC_PLIST FC_PLIST16
#define FC_GLIST FC_GLIST16
#define FC_KLIST FC_KLIST16
#define FC_KGLIST FC_KGLIST16
#define FC_DWLIST FC_DWLIST16
#define FC_DWNR 2
#define FC_DWNV 2
#define FC_KKV 2
#define FC_KNP 12
#define FC_KNT 6
#define FC_PKB 6
#define FC_PNV 8
#define FC_PACC 12
#define FC_PREG 14
#define FC_GKB 3
#define FC_GNT 6

#define FC_T float
#define FC_UINT uint32_t
#define FC_ELEM 4
#define FC_EXP_MASK 0x7f800000u
#define FC_SFX f32_base
#ifdef FC_SCALAR
#define FC_VB 4
#else
#define FC_VB 16
#endif
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_UINT
#undef FC_ELEM
#undef FC_EXP_MASK
#undef FC_SFX
#undef FC_VB

#define FC_T double
#define FC_UINT uint64_t
#define FC_ELEM 8
#define FC_EXP_MASK 0x7ff0000000000000u
#define FC_SFX f64_base
#ifdef FC_SCALAR
#define FC_VB 8
#else
#define FC_VB 16
#endif
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_UINT
#undef FC_ELEM
#undef FC_EXP_MASK
#undef FC_SFX
#undef FC_VB

#undef FC_TARGET

#if FC_X86
/* ---- AVX2 + FMA -------------------------------------------------------- */
#define FC_TARGET __attribute__((target("avx2,fma")))
#define FC_VB 32

#define FC_T float
#define FC_UINT uint32_t
#define FC_ELEM 4
#define FC_EXP_MASK 0x7f800000u
#define FC_SFX f32_avx2
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_UINT
#undef FC_ELEM
#undef FC_EXP_MASK
#undef FC_SFX

#define FC_T double
#define FC_UINT uint64_t
#define FC_ELEM 8
#define FC_EXP_MASK 0x7ff0000000000000u
#define FC_SFX f64_avx2
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_UINT
#undef FC_ELEM
#undef FC_EXP_MASK
#undef FC_SFX

#undef FC_VB
#undef FC_TARGET
#undef FC_PLIST
#undef FC_GLIST
#undef FC_KLIST
#undef FC_KGLIST
#undef FC_DWLIST
#undef FC_DWNR
#undef FC_DWNV
#undef FC_KKV
#undef FC_KNP
#undef FC_KNT
#undef FC_PKB
#undef FC_PNV
#undef FC_PACC
#undef FC_PREG
#undef FC_GKB
#undef FC_GNT

/* ---- AVX-512F + FMA ---------------------------------------------------- */
#define FC_TARGET __attribute__((target("avx512f,avx2,fma")))
#define FC_VB 64
#define FC_PLIST FC_PLIST32
#define FC_GLIST FC_GLIST32
#define FC_KLIST FC_KLIST32
#define FC_KGLIST FC_KGLIST32
#define FC_DWLIST FC_DWLIST32
#define FC_DWNR 4
#define FC_DWNV 4
#define FC_KKV 4
#define FC_KNP 24
#define FC_KNT 9
#define FC_PKB 8
#define FC_PNV 16
#define FC_PACC 24
#define FC_PREG 30
#define FC_GKB 4
#define FC_GNT 9

#define FC_T float
#define FC_UINT uint32_t
#define FC_ELEM 4
#define FC_EXP_MASK 0x7f800000u
#define FC_SFX f32_avx512
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_UINT
#undef FC_ELEM
#undef FC_EXP_MASK
#undef FC_SFX

#define FC_T double
#define FC_UINT uint64_t
#define FC_ELEM 8
#define FC_EXP_MASK 0x7ff0000000000000u
#define FC_SFX f64_avx512
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_UINT
#undef FC_ELEM
#undef FC_EXP_MASK
#undef FC_SFX

#undef FC_VB
#undef FC_TARGET
#endif /* FC_X86 */

#undef FC_PLIST
#undef FC_GLIST
#undef FC_KLIST
#undef FC_KGLIST
#undef FC_DWLIST
#undef FC_DWNR
#undef FC_DWNV
#undef FC_KKV
#undef FC_KNP
#undef FC_KNT
#undef FC_PKB
#undef FC_PNV
#undef FC_PACC
#undef FC_PREG
#undef FC_GKB
#undef FC_GNT

/* ---- run-time choice ----------------------------------------------------- */

/* Whether this CPU (and OS) can run variant `isa`. */
static int fc_isa_supported(int isa)
{
    if (isa == FC_ISA_BASELINE)
        return 1;
#if FC_X86
    __builtin_cpu_init();
    if (isa == FC_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == FC_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2")
            && __builtin_cpu_supports("fma");
#endif
    return 0;
}

static int fc_best_isa(void)
{
    if (fc_isa_supported(FC_ISA_AVX512))
        return FC_ISA_AVX512;
    if (fc_isa_supported(FC_ISA_AVX2))
        return FC_ISA_AVX2;
    return FC_ISA_BASELINE;
}

/* Elements of type `size` bytes per vector of variant `isa`. */
static ptrdiff_t fc_vec_len(int isa, size_t size)
{
#ifdef FC_SCALAR
    (void)isa;
    return 1;
#else
    size_t bytes = isa == FC_ISA_AVX512 ? 64 : isa == FC_ISA_AVX2 ? 32 : 16;
    return (ptrdiff_t)(bytes / size);
#endif
}

/* Channels per block of pband for n channels: as few blocks as the widest
 * tile needs (8 channels on AVX-512, 4 below), the blocks even; below
 * AVX-512 up to 6 channels go as one block of 5-6 x 2 vectors rather than two
 * of 3 x 3 (LeNet's 6-channel 5x5 layer, its 28-pixel rows 4 vectors: 1.1x
 * faster on AVX2). */
static ptrdiff_t fc_pband_kb(int isa, ptrdiff_t n)
{
    ptrdiff_t kbmax = isa == FC_ISA_AVX512 ? 8 : 4, nblk;
    if (n < 1)
        return 1;
    if (isa != FC_ISA_AVX512 && n <= 6)
        return n;
    nblk = (n + kbmax - 1) / kbmax;
    return (n + nblk - 1) / nblk;
}
/* Largest channel block of gband. */
static int fc_gband_kbmax(int isa) { return isa == FC_ISA_AVX512 ? 4 : 3; }
/* Largest number of channel vectors of krow and of kgband, and the number
 * they run for n vectors of channels (1, 2 or 4; krow, whose tile list
 * stops at 2, is never given more than fc_krow_kvmax). krow stops at 2 vectors
 * (x 14 pixels on AVX-512): each weight vector it loads feeds 14
 * multiply-adds, where a 4 x 6 tile was bound by streaming deep weights from
 * L2 (ResNet's 14x14 layers ran 22-25% slower than with pixels in lanes;
 * at 2 x 14, 8-11% faster). */
static int fc_krow_kvmax(int isa) { (void)isa; return 2; }
static int fc_kgband_kvmax(int isa) { return isa == FC_ISA_AVX512 ? 4 : 2; }
/* The stride-2 depthwise kernels keep a ring of FC_DW2_SLOTS(R) rows (the
 * R + 2 rows of two output rows, and one more) of 2 Jn elements, Jn =
 * fc_dw2_split_len (every vector a tap reads for Q outputs of S taps: Q
 * rounded up to vectors plus (S - 1) / 2): dw2_gw splits each input row
 * into its even and odd columns, Jn each; dw2_fwd copies it, zero-padded.
 * fc_dw2_ring_len: the ring's elements. */
static ptrdiff_t fc_dw2_split_len(int isa, size_t size, ptrdiff_t Q, ptrdiff_t S)
{
    ptrdiff_t VL = fc_vec_len(isa, size);
    ptrdiff_t n = (Q + VL - 1) / VL * VL + (S - 1) / 2;
    return (n + VL - 1) / VL * VL;
}
static ptrdiff_t fc_dw2_ring_len(int isa, size_t size, ptrdiff_t Q, ptrdiff_t R, ptrdiff_t S)
{
    return FC_DW2_SLOTS(R) * 2 * fc_dw2_split_len(isa, size, Q, S);
}
static int fc_krow_kv(ptrdiff_t n) { return n <= 1 ? 1 : n <= 2 ? 2 : 4; }

#if FC_X86
#define FC_DISPATCH(ret, name, sfx, args)                                     \
    switch (isa) {                                                            \
    case FC_ISA_AVX512: ret name##_##sfx##_avx512 args; break;                \
    case FC_ISA_AVX2: ret name##_##sfx##_avx2 args; break;                    \
    default: ret name##_##sfx##_base args;                                    \
    }
#else
#define FC_DISPATCH(ret, name, sfx, args) ret name##_##sfx##_base args;
#endif

/* One entry point per kernel and element type, taking the variant. */
#define FC_ENTRY_POINTS(T, sfx)                                               \
static void fc_pband_##sfx(int isa, int kb, const T *x, ptrdiff_t cs,         \
                           ptrdiff_t nc, const ptrdiff_t *toff, ptrdiff_t nt, \
                           const T *w, const T *bias, T *out, ptrdiff_t ldo,  \
                           ptrdiff_t J)                                       \
{                                                                             \
    FC_DISPATCH(, pband, sfx, (kb, x, cs, nc, toff, nt, w, bias, out, ldo, J))  \
}                                                                             \
static void fc_prow_##sfx(int isa, int kb, const T *x, ptrdiff_t cs,          \
                          ptrdiff_t nc, const ptrdiff_t *toff, ptrdiff_t nt,  \
                          const T *w, const T *bias, T *out, ptrdiff_t ldo,   \
                          ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows,        \
                          ptrdiff_t xrs)                                      \
{                                                                             \
    FC_DISPATCH(, prow, sfx, (kb, x, cs, nc, toff, nt, w, bias, out, ldo, ors,  \
                            Q, nrows, xrs))                                   \
}                                                                             \
static void fc_gband_##sfx(int isa, int kb, const T *g, ptrdiff_t ldg,        \
                           const T *x, const ptrdiff_t *toff, ptrdiff_t nt,   \
                           ptrdiff_t J, T *gw, ptrdiff_t ldk, int vacc)       \
{                                                                             \
    FC_DISPATCH(, gband, sfx, (kb, g, ldg, x, toff, nt, J, gw, ldk, vacc))    \
}                                                                             \
static int fc_all_finite_##sfx(int isa, const T *p, ptrdiff_t n)              \
{                                                                             \
    FC_DISPATCH(return, all_finite, sfx, (p, n))                              \
    return 0;                                                                 \
}                                                                             \
static double fc_sum_##sfx(int isa, const T *p, ptrdiff_t n)                  \
{                                                                             \
    FC_DISPATCH(return, sum, sfx, (p, n))                                     \
    return 0;                                                                 \
}                                                                             \
static void fc_fill_##sfx(int isa, const T *src, ptrdiff_t nch, ptrdiff_t Hs, \
                          ptrdiff_t Ws, ptrdiff_t h_end, ptrdiff_t w_end,     \
                          ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t row0,         \
                          ptrdiff_t col0, ptrdiff_t Bh, ptrdiff_t Wb,         \
                          ptrdiff_t i_begin, ptrdiff_t i_end, T *buf)         \
{                                                                             \
    FC_DISPATCH(, fill, sfx, (src, nch, Hs, Ws, h_end, w_end, sh, sw, row0,   \
                              col0, Bh, Wb, i_begin, i_end, buf))             \
}                                                                             \
static void fc_copy_##sfx(int isa, T *dst, const T *src, ptrdiff_t n)         \
{                                                                             \
    FC_DISPATCH(, copy, sfx, (dst, src, n))                                   \
}                                                                             \
static void fc_krow_##sfx(int isa, int kv, const T *x, ptrdiff_t cs,          \
                          ptrdiff_t nc, const ptrdiff_t *toff, ptrdiff_t nt,  \
                          const T *w, const T *bias, T *out, ptrdiff_t ldo,   \
                          ptrdiff_t ors, ptrdiff_t Q, ptrdiff_t nrows,        \
                          ptrdiff_t xrs, ptrdiff_t kk)                        \
{                                                                             \
    FC_DISPATCH(, krow, sfx, (kv, x, cs, nc, toff, nt, w, bias, out, ldo, ors,\
                              Q, nrows, xrs, kk))                             \
}                                                                             \
static void fc_kgband_##sfx(int isa, int kv, const T *g, ptrdiff_t ldg,       \
                            const T *x, const ptrdiff_t *toff, ptrdiff_t nt,  \
                            ptrdiff_t Q, ptrdiff_t nrows, ptrdiff_t xrs,      \
                            T *part, ptrdiff_t ldp)                           \
{                                                                             \
    FC_DISPATCH(, kgband, sfx, (kv, g, ldg, x, toff, nt, Q, nrows, xrs, part, \
                                ldp))                                         \
}                                                                             \
static void fc_prow_dw3_##sfx(int isa, const T *x, ptrdiff_t xrs,            \
                              const ptrdiff_t *co, const T *w, ptrdiff_t ws,  \
                              const T *bias, T *out, ptrdiff_t ors,           \
                              ptrdiff_t Q, ptrdiff_t nrows)                   \
{                                                                             \
    FC_DISPATCH(, prow_dw3, sfx, (x, xrs, co, w, ws, bias, out, ors, Q, nrows)) \
}                                                                             \
static void fc_dw2_fwd_##sfx(int isa, const T *x, ptrdiff_t H, ptrdiff_t W,   \
                             const T *w, ptrdiff_t R, ptrdiff_t S, T b, T *y, \
                             ptrdiff_t P, ptrdiff_t Q, ptrdiff_t pt,          \
                             ptrdiff_t pl, ptrdiff_t Jn, T *ring)             \
{                                                                             \
    FC_DISPATCH(, dw2_fwd, sfx, (x, H, W, w, R, S, b, y, P, Q, pt, pl, Jn,    \
                                 ring))                                       \
}                                                                             \
static void fc_dw2_gx_##sfx(int isa, const T *gy, ptrdiff_t P, ptrdiff_t Q,   \
                            const T *w, ptrdiff_t R, ptrdiff_t S, ptrdiff_t pt, \
                            ptrdiff_t pl, T *gx, ptrdiff_t H, ptrdiff_t W)    \
{                                                                             \
    FC_DISPATCH(, dw2_gx, sfx, (gy, P, Q, w, R, S, pt, pl, gx, H, W))         \
}                                                                             \
static void fc_dw2_gw_##sfx(int isa, const T *x, ptrdiff_t xn, ptrdiff_t H,   \
                            ptrdiff_t W, const T *gy, ptrdiff_t gn,           \
                            ptrdiff_t P, ptrdiff_t Q, ptrdiff_t N,            \
                            ptrdiff_t R, ptrdiff_t S, ptrdiff_t pt,           \
                            ptrdiff_t pl, ptrdiff_t Jn, T *ring, T *gw)       \
{                                                                             \
    FC_DISPATCH(, dw2_gw, sfx, (x, xn, H, W, gy, gn, P, Q, N, R, S, pt, pl,   \
                                Jn, ring, gw))                                \
}                                                                             \
static void fc_dwc_fwd_##sfx(int isa, const T *x, ptrdiff_t cs, ptrdiff_t nc,  \
                             ptrdiff_t H, ptrdiff_t W, const T *wt,           \
                             const ptrdiff_t *toff, const ptrdiff_t *widx,    \
                             ptrdiff_t nt, ptrdiff_t S, ptrdiff_t dw,         \
                             ptrdiff_t rstep, const T *bias, T *y,            \
                             ptrdiff_t P, ptrdiff_t Q, ptrdiff_t sh,          \
                             ptrdiff_t sw, T *xb, ptrdiff_t Wp,               \
                             const ptrdiff_t *xpo, T *yb)                     \
{                                                                             \
    FC_DISPATCH(, dwc_fwd, sfx, (x, cs, nc, H, W, wt, toff, widx, nt, S, dw,  \
                                 rstep, bias, y, P, Q, sh, sw, xb, Wp, xpo,   \
                                 yb))                                         \
}                                                                             \
static void fc_dwc_bwd_##sfx(int isa, const T *x, ptrdiff_t xn, ptrdiff_t cs,  \
                             const T *gy, ptrdiff_t gn, ptrdiff_t gs,         \
                             ptrdiff_t nc, ptrdiff_t N, ptrdiff_t H,          \
                             ptrdiff_t W, ptrdiff_t P, ptrdiff_t Q,           \
                             ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt,        \
                             ptrdiff_t pl, const T *wt, const ptrdiff_t *toff, \
                             ptrdiff_t nt, const ptrdiff_t *ph,               \
                             const ptrdiff_t *gtoff, const ptrdiff_t *gwidx,  \
                             T *gx, T *gw, T *xb, ptrdiff_t Wp,               \
                             const ptrdiff_t *xpo, T *gb, ptrdiff_t Qp,       \
                             ptrdiff_t goff, const ptrdiff_t *gpo, T *xo,     \
                             T *acc)                                          \
{                                                                             \
    FC_DISPATCH(, dwc_bwd, sfx, (x, xn, cs, gy, gn, gs, nc, N, H, W, P, Q, sh, \
                                 sw, pt, pl, wt, toff, nt, ph, gtoff, gwidx,  \
                                 gx, gw, xb, Wp, xpo, gb, Qp, goff, gpo, xo,  \
                                 acc))                                        \
}                                                                             \
static void fc_transpose_##sfx(int isa, T *dst, ptrdiff_t ldd, const T *src,  \
                               ptrdiff_t lds, ptrdiff_t nk, ptrdiff_t nkp,    \
                               ptrdiff_t nj)                                  \
{                                                                             \
    FC_DISPATCH(, transpose, sfx, (dst, ldd, src, lds, nk, nkp, nj))          \
}

FC_ENTRY_POINTS(float, f32)
FC_ENTRY_POINTS(double, f64)

#undef FC_ENTRY_POINTS
#undef FC_DISPATCH

#endif /* FASTCONV_DIRECT_SIMD_H */
