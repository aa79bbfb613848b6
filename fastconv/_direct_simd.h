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
 * The tile shapes (channels x pixel vectors for pband, channels x taps for
 * gband) fill the register file: KB * NV accumulators plus the NV input
 * vectors and one broadcast stay within 32 (or 16) registers.
 */
#ifndef FASTCONV_DIRECT_SIMD_H
#define FASTCONV_DIRECT_SIMD_H

#include <stddef.h>
#include <string.h>

#define FC_ISA_BASELINE 0
#define FC_ISA_AVX2 1
#define FC_ISA_AVX512 2

#if defined(__GNUC__)
#define FC_INLINE inline __attribute__((always_inline))
#define FC_RESTRICT __restrict__
#else
#define FC_INLINE inline
#define FC_RESTRICT
#define FC_SCALAR 1
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(FC_SCALAR)
#define FC_X86 1
#else
#define FC_X86 0
#endif

/* Tile lists X(KB, largest NV) for pband and X(KB, largest NT) for gband,
 * and the array bounds they need. */
#define FC_PLIST32(X) X(1, 8) X(2, 8) X(3, 7) X(4, 6) X(5, 5) X(6, 4) X(7, 3) X(8, 3)
#define FC_GLIST32(X) X(1, 9) X(2, 9) X(3, 7) X(4, 6)
#define FC_PLIST16(X) X(1, 6) X(2, 4) X(3, 3) X(4, 3)
#define FC_GLIST16(X) X(1, 6) X(2, 4) X(3, 3)

/* ---- baseline ---------------------------------------------------------- */
#define FC_TARGET
#define FC_PLIST FC_PLIST16
#define FC_GLIST FC_GLIST16
#define FC_PKB 4
#define FC_PNV 6
#define FC_GKB 3
#define FC_GNT 6

#define FC_T float
#define FC_SFX f32_base
#ifdef FC_SCALAR
#define FC_VB 4
#else
#define FC_VB 16
#endif
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_SFX
#undef FC_VB

#define FC_T double
#define FC_SFX f64_base
#ifdef FC_SCALAR
#define FC_VB 8
#else
#define FC_VB 16
#endif
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_SFX
#undef FC_VB

#undef FC_TARGET

#if FC_X86
/* ---- AVX2 + FMA -------------------------------------------------------- */
#define FC_TARGET __attribute__((target("avx2,fma")))
#define FC_VB 32

#define FC_T float
#define FC_SFX f32_avx2
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_SFX

#define FC_T double
#define FC_SFX f64_avx2
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_SFX

#undef FC_VB
#undef FC_TARGET
#undef FC_PLIST
#undef FC_GLIST
#undef FC_PKB
#undef FC_PNV
#undef FC_GKB
#undef FC_GNT

/* ---- AVX-512F + FMA ---------------------------------------------------- */
#define FC_TARGET __attribute__((target("avx512f,avx2,fma")))
#define FC_VB 64
#define FC_PLIST FC_PLIST32
#define FC_GLIST FC_GLIST32
#define FC_PKB 8
#define FC_PNV 8
#define FC_GKB 4
#define FC_GNT 9

#define FC_T float
#define FC_SFX f32_avx512
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_SFX

#define FC_T double
#define FC_SFX f64_avx512
#include "_direct_simd_tmpl.h"
#undef FC_T
#undef FC_SFX

#undef FC_VB
#undef FC_TARGET
#endif /* FC_X86 */

#undef FC_PLIST
#undef FC_GLIST
#undef FC_PKB
#undef FC_PNV
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

/* Largest channel block of pband and gband. */
static int fc_pband_kbmax(int isa) { return isa == FC_ISA_AVX512 ? 8 : 4; }
static int fc_gband_kbmax(int isa) { return isa == FC_ISA_AVX512 ? 4 : 3; }

#if FC_X86
#define FC_DISPATCH(name, sfx, args)                                          \
    switch (isa) {                                                            \
    case FC_ISA_AVX512: name##_##sfx##_avx512 args; break;                    \
    case FC_ISA_AVX2: name##_##sfx##_avx2 args; break;                        \
    default: name##_##sfx##_base args;                                        \
    }
#else
#define FC_DISPATCH(name, sfx, args) name##_##sfx##_base args;
#endif

static void fc_pband_f32(int isa, int kb, const float *x, ptrdiff_t cs, ptrdiff_t nc,
                         const ptrdiff_t *toff, ptrdiff_t nt, const float *w,
                         const float *bias, float *out, ptrdiff_t ldo, ptrdiff_t J)
{
    FC_DISPATCH(pband, f32, (kb, x, cs, nc, toff, nt, w, bias, out, ldo, J))
}

static void fc_pband_f64(int isa, int kb, const double *x, ptrdiff_t cs, ptrdiff_t nc,
                         const ptrdiff_t *toff, ptrdiff_t nt, const double *w,
                         const double *bias, double *out, ptrdiff_t ldo, ptrdiff_t J)
{
    FC_DISPATCH(pband, f64, (kb, x, cs, nc, toff, nt, w, bias, out, ldo, J))
}

static void fc_gband_f32(int isa, int kb, const float *g, ptrdiff_t ldg, const float *x,
                         const ptrdiff_t *toff, ptrdiff_t nt, ptrdiff_t J, float *gw,
                         ptrdiff_t ldk)
{
    FC_DISPATCH(gband, f32, (kb, g, ldg, x, toff, nt, J, gw, ldk))
}

static void fc_gband_f64(int isa, int kb, const double *g, ptrdiff_t ldg, const double *x,
                         const ptrdiff_t *toff, ptrdiff_t nt, ptrdiff_t J, double *gw,
                         ptrdiff_t ldk)
{
    FC_DISPATCH(gband, f64, (kb, g, ldg, x, toff, nt, J, gw, ldk))
}

#undef FC_DISPATCH

#endif /* FASTCONV_DIRECT_SIMD_H */
