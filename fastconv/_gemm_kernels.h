/* GEMM micro-kernels for the packed convolution path, one source for every ISA.
 *
 * A micro-kernel computes one MR x NR block of the output,
 *     C[i, j] (+)= sum_p A[p, i] * B[p, j],   0 <= p < kc,
 * from a weight panel A (kc rows of MR values, lda apart: a packed [kc][MR]
 * panel, or for grad_input the weight array itself) and a pixel
 * panel B (kc rows of NR contiguous output pixels, ldb apart: a packed im2col
 * panel, or for a pointwise convolution the image itself). C rows are output channels,
 * C columns contiguous output pixels of an NCHW image (row stride ldc); the
 * backward runs the same kernels on other products (grad_weight[K, CRS] over
 * pixels, dcols^T = dY^T @ W), with the roles named in _conv.pyx.
 *
 * The accumulators live in vector registers for the whole reduction; the body
 * is written with GCC vector extensions and instantiated per instruction set
 * with __attribute__((target)), so one binary carries AVX-512, AVX2+FMA and
 * baseline SSE2 code and picks at run time (never -march=native). Blocking
 * per ISA: MR output channels x NV vectors of pixels, sized to the register
 * file (AVX-512: 8 x 3 zmm = 24 accumulators of 32; AVX2 and SSE2: 4 x 3 = 12 of 16).
 */
#ifndef FASTCONV_GEMM_KERNELS_H
#define FASTCONV_GEMM_KERNELS_H

#include <stddef.h>
#include <string.h>

typedef ptrdiff_t fc_index;

/* kc, A panel, lda, B panel, ldb, C, ldc, accumulate (0: overwrite), valid rows m, valid cols n */
typedef void (*fc_kernel_f32)(fc_index, const float *, fc_index, const float *, fc_index, float *, fc_index, int, fc_index, fc_index);
typedef void (*fc_kernel_f64)(fc_index, const double *, fc_index, const double *, fc_index, double *, fc_index, int, fc_index, fc_index);

#define FC_DEFINE_KERNEL(NAME, T, VBYTES, MR, NV, TARGET)                              \
TARGET static void NAME(fc_index kc, const T *a, fc_index lda, const T *b,           \
                        fc_index ldb, T *c,                                           \
                        fc_index ldc,                                                 \
                        int accumulate, fc_index m, fc_index n)                       \
{                                                                                     \
    typedef T vec __attribute__((vector_size(VBYTES), aligned(sizeof(T))));          \
    enum { VL = VBYTES / sizeof(T), NR = NV * VL };                                   \
    vec acc[MR][NV];                                                                  \
    fc_index p;                                                                       \
    int i, j;                                                                         \
    _Pragma("GCC unroll 16")                                                          \
    for (i = 0; i < MR; i++) {                                                        \
        _Pragma("GCC unroll 16")                                                      \
        for (j = 0; j < NV; j++) acc[i][j] = (vec){0};                                \
    }                                                                                 \
    for (p = 0; p < kc; p++) {                                                        \
        vec bv[NV];                                                                   \
        _Pragma("GCC unroll 16")                                                      \
        for (j = 0; j < NV; j++) bv[j] = *(const vec *)(b + p * ldb + j * VL);        \
        _Pragma("GCC unroll 16")                                                      \
        for (i = 0; i < MR; i++) {                                                    \
            vec av = a[p * lda + i] - (vec){0}; /* x - 0 == x: a pure broadcast */\
            _Pragma("GCC unroll 16")                                                  \
            for (j = 0; j < NV; j++) acc[i][j] += av * bv[j];                         \
        }                                                                             \
    }                                                                                 \
    if (m == MR && n == NR) {                                                         \
        _Pragma("GCC unroll 16")                                                      \
        for (i = 0; i < MR; i++) {                                                    \
            _Pragma("GCC unroll 16")                                                  \
            for (j = 0; j < NV; j++) {                                                \
                vec *cp = (vec *)(c + i * ldc + j * VL);                              \
                *cp = accumulate ? *cp + acc[i][j] : acc[i][j];                       \
            }                                                                         \
        }                                                                             \
    } else { /* a partial block at the edge of the output */                          \
        T buf[MR * NR];                                                               \
        fc_index ii, jj;                                                              \
        memcpy(buf, acc, sizeof(buf));                                                \
        for (ii = 0; ii < m; ii++)                                                    \
            for (jj = 0; jj < n; jj++)                                                \
                c[ii * ldc + jj] = accumulate ? c[ii * ldc + jj] + buf[ii * NR + jj]  \
                                              : buf[ii * NR + jj];                    \
    }                                                                                 \
}

/* The "dot" micro-kernel for products whose reduction dimension is the
 * contiguous one in both operands (grad_weight = grad_output @ cols^T, both
 * rows of pixels):
 *     C[i, j] += sum_p A[i * lda + p] * B[j * ldb + p],   i < m <= DR, j < n <= DC,
 * vectorised along p with DR x DC vector accumulators and one horizontal sum
 * per output at the end; the pixels past the last full vector go scalar. */
#define FC_DEFINE_DOT(NAME, T, VBYTES, DR, DC, TARGET)                                 \
TARGET static void NAME(fc_index kc, const T *a, fc_index lda, const T *b,             \
                        fc_index ldb, T *c, fc_index ldc, fc_index m, fc_index n)      \
{                                                                                      \
    typedef T vec __attribute__((vector_size(VBYTES), aligned(sizeof(T))));           \
    enum { VL = VBYTES / sizeof(T) };                                                  \
    vec acc[DR][DC];                                                                   \
    const T *ar[DR], *br[DC];                                                          \
    fc_index p, kv = kc - kc % VL;                                                     \
    int i, j, l;                                                                       \
    /* rows past m / n repeat row 0: harmless reads, their sums are dropped */         \
    for (i = 0; i < DR; i++) ar[i] = a + (i < m ? i : 0) * lda;                        \
    for (j = 0; j < DC; j++) br[j] = b + (j < n ? j : 0) * ldb;                        \
    _Pragma("GCC unroll 16")                                                           \
    for (i = 0; i < DR; i++) {                                                         \
        _Pragma("GCC unroll 16")                                                       \
        for (j = 0; j < DC; j++) acc[i][j] = (vec){0};                                 \
    }                                                                                  \
    for (p = 0; p < kv; p += VL) {                                                     \
        vec av[DR], bv[DC];                                                            \
        _Pragma("GCC unroll 16")                                                       \
        for (i = 0; i < DR; i++) av[i] = *(const vec *)(ar[i] + p);                    \
        _Pragma("GCC unroll 16")                                                       \
        for (j = 0; j < DC; j++) bv[j] = *(const vec *)(br[j] + p);                    \
        _Pragma("GCC unroll 16")                                                       \
        for (i = 0; i < DR; i++) {                                                     \
            _Pragma("GCC unroll 16")                                                   \
            for (j = 0; j < DC; j++) acc[i][j] += av[i] * bv[j];                       \
        }                                                                              \
    }                                                                                  \
    for (i = 0; i < m; i++) {                                                          \
        for (j = 0; j < n; j++) {                                                      \
            /* horizontal sum: fold to one 16-byte vector, then its 2 or 4 lanes */    \
            typedef T v16 __attribute__((vector_size(16)));                            \
            union { vec v; v16 part[VBYTES / 16]; } u;                                 \
            v16 folded = {0};                                                          \
            T sum = 0;                                                                 \
            u.v = acc[i][j];                                                           \
            for (l = 0; l < VBYTES / 16; l++) folded += u.part[l];                     \
            for (l = 0; l < (int)(16 / sizeof(T)); l++) sum += folded[l];              \
            for (p = kv; p < kc; p++) sum += ar[i][p] * br[j][p];                      \
            c[i * ldc + j] += sum;                                                     \
        }                                                                              \
    }                                                                                  \
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FC_X86 1
#define FC_TARGET_AVX512 __attribute__((target("avx512f")))
#define FC_TARGET_AVX2 __attribute__((target("avx2,fma")))
/* NV = 1, 2, 3 vectors of pixels: the narrow ones run a last partial panel, so
 * a 14x14 output (196 = 4 x 48 + 4 pixels) wastes 1/3 of a block, not 11/12 */
#define FC_DEFINE_KERNELS(ISA, MR, TARGET)                                             \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f32_1, float, FC_VBYTES_##ISA, MR, 1, TARGET)    \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f32_2, float, FC_VBYTES_##ISA, MR, 2, TARGET)    \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f32_3, float, FC_VBYTES_##ISA, MR, 3, TARGET)    \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f64_1, double, FC_VBYTES_##ISA, MR, 1, TARGET)   \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f64_2, double, FC_VBYTES_##ISA, MR, 2, TARGET)   \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f64_3, double, FC_VBYTES_##ISA, MR, 3, TARGET)
#define FC_KERNELS(ISA)                                                                \
    {fc_kernel_##ISA##_f32_1, fc_kernel_##ISA##_f32_2, fc_kernel_##ISA##_f32_3},       \
    {fc_kernel_##ISA##_f64_1, fc_kernel_##ISA##_f64_2, fc_kernel_##ISA##_f64_3}
#define FC_VBYTES_avx512 64
#define FC_VBYTES_avx2 32
#define FC_VBYTES_base 16
FC_DEFINE_KERNELS(avx512, 8, FC_TARGET_AVX512)
FC_DEFINE_KERNELS(avx2, 4, FC_TARGET_AVX2)
FC_DEFINE_DOT(fc_dot_avx512_f32, float, 64, 4, 6, FC_TARGET_AVX512)
FC_DEFINE_DOT(fc_dot_avx512_f64, double, 64, 4, 6, FC_TARGET_AVX512)
FC_DEFINE_DOT(fc_dot_avx2_f32, float, 32, 3, 4, FC_TARGET_AVX2)
FC_DEFINE_DOT(fc_dot_avx2_f64, double, 32, 3, 4, FC_TARGET_AVX2)
#else
#define FC_X86 0
#endif
FC_DEFINE_KERNELS(base, 4, )
FC_DEFINE_DOT(fc_dot_base_f32, float, 16, 3, 4, )
FC_DEFINE_DOT(fc_dot_base_f64, double, 16, 3, 4, )

/* The variant in use, chosen once at import (fc_select) and switchable for tests. */
typedef void (*fc_dot_f32)(fc_index, const float *, fc_index, const float *, fc_index, float *, fc_index, fc_index, fc_index);
typedef void (*fc_dot_f64)(fc_index, const double *, fc_index, const double *, fc_index, double *, fc_index, fc_index, fc_index);

typedef struct {
    const char *name;
    fc_kernel_f32 f32[3]; /* by vectors of pixels per block: 1, 2, 3 */
    fc_kernel_f64 f64[3];
    int mr;             /* output channels per block */
    int nr_f32, nr_f64; /* output pixels per (widest) block */
    fc_dot_f32 dot_f32;
    fc_dot_f64 dot_f64;
    int dr, dc;         /* the dot kernel's block: rows of A x rows of B */
} fc_isa;

static const fc_isa fc_isas[] = {
#if FC_X86
    {"avx512", FC_KERNELS(avx512), 8, 48, 24,
     fc_dot_avx512_f32, fc_dot_avx512_f64, 4, 6},
    {"avx2", FC_KERNELS(avx2), 4, 24, 12,
     fc_dot_avx2_f32, fc_dot_avx2_f64, 3, 4},
#endif
    {"baseline", FC_KERNELS(base), 4, 12, 6,
     fc_dot_base_f32, fc_dot_base_f64, 3, 4},
};
enum { FC_N_ISAS = sizeof(fc_isas) / sizeof(fc_isas[0]) };

static int fc_isa_supported(int i)
{
#if FC_X86
    __builtin_cpu_init();
    if (i == 0) return __builtin_cpu_supports("avx512f");
    if (i == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return i == FC_N_ISAS - 1;
}

#endif
