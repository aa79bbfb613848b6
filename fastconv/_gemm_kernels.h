/* GEMM micro-kernels for the packed convolution path, one source for every ISA.
 *
 * A micro-kernel computes one MR x NR block of the output,
 *     C[i, j] (+)= sum_p A[p, i] * B[p, j],   0 <= p < kc,
 * from a weight panel A (kc rows of MR values, lda apart: a packed [kc][MR]
 * panel, or for grad_input the weight array itself; the "_t" kernels read A
 * as MR rows of kc values, lda apart: the weights unpacked) and a pixel
 * panel B (kc rows of NR contiguous output pixels, ldb apart: a packed im2col
 * panel, or for a pointwise convolution the image itself). C rows are output channels,
 * C columns contiguous output pixels of an NCHW image (row stride ldc); the
 * backward runs the same kernels on other products (grad_weight[K, CRS] over
 * pixels, dcols^T = dY^T @ W), with the roles named in _conv.pyx. The
 * ISA table holds macro-kernels, each running its micro-kernel for every
 * MR-row panel of A against one panel of B.
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

/* The macro-kernel: C[m, n] (+)= A[m, kc] @ B[kc, n] for one column panel of B
 * (n <= NR pixels), every MR-row panel of A in turn, so that the panel of B
 * stays in L1 while A streams past it and the loop over A's panels costs no
 * call per block (one call a block through the ISA table was 2-9% of a 1x1
 * layer's time, most where the reduction is short). Arguments: kc; A, lda,
 * a_panel (A's panels a_panel apart), a_tail (NULL, or the last partial
 * panel as [kc][MR]); m; B, ldb; C, ldc;
 * accumulate (0: overwrite); n; bias (NULL, or a value per row of C added to
 * the sums: no pass of its own over the output); pf, pf_ld, pf_bytes (NULL,
 * or kc rows pf_ld apart to prefetch, pf_bytes each, a share per panel of A:
 * the next B panel, where the hardware prefetchers cannot follow it). */
typedef void (*fc_kernel_f32)(fc_index, const float *, fc_index, fc_index, const float *,
                              fc_index, const float *, fc_index, float *, fc_index, int,
                              fc_index, const float *, const float *, fc_index, fc_index);
typedef void (*fc_kernel_f64)(fc_index, const double *, fc_index, fc_index, const double *,
                              fc_index, const double *, fc_index, double *, fc_index, int,
                              fc_index, const double *, const double *, fc_index, fc_index);

/* Ask for the cache lines of src[0, n) ahead of their use (a hint: never
 * faults, so it may run past the array); the im2col copy calls it one input
 * channel ahead, where the hardware prefetchers, restarting at every channel
 * of a block, leave the copy waiting on memory. */
static inline void fc_prefetch(const void *src, fc_index nbytes)
{
#if defined(__GNUC__)
    const char *p = (const char *)src;
    for (fc_index b = 0; b < nbytes; b += 64) __builtin_prefetch(p + b, 0, 3);
    __builtin_prefetch(p + nbytes - 1, 0, 3);
#else
    (void)src; (void)nbytes;
#endif
}

/* One MR x NV-vector register block: the accumulators live in vector
 * registers for the whole reduction; ACOL: A's MR rows of kc values, lda apart
 * (the weights unpacked), else kc rows of MR values (a packed panel). */
#define FC_DEFINE_KERNEL(NAME, T, VBYTES, MR, NV, TARGET, ACOL)                        \
TARGET static inline __attribute__((always_inline)) void NAME##_block(                 \
    fc_index kc, const T *a, fc_index lda, const T *b, fc_index ldb, T *c,             \
    fc_index ldc, int accumulate, fc_index m, fc_index n, const T *bias)              \
{                                                                                     \
    typedef T vec __attribute__((vector_size(VBYTES), aligned(sizeof(T))));          \
    enum { VL = VBYTES / sizeof(T), NR = NV * VL };                                   \
    vec acc[MR][NV];                                                                  \
    const T *ar[MR]; /* ACOL: A's rows, those past m repeating row 0 (never read past) */ \
    fc_index p;                                                                       \
    int i, j;                                                                         \
    for (i = 0; ACOL && i < MR; i++) ar[i] = a + (i < m ? i : 0) * lda;              \
    _Pragma("GCC unroll 16")                                                          \
    for (i = 0; i < MR; i++) {                                                        \
        vec b0 = (bias ? bias[i < m ? i : 0] : (T)0) - (vec){0};                      \
        _Pragma("GCC unroll 16")                                                      \
        for (j = 0; j < NV; j++) acc[i][j] = b0;                                      \
    }                                                                                 \
    for (p = 0; p < kc; p++) {                                                        \
        vec bv[NV];                                                                   \
        /* a packed A row of a whole cache line (AVX-512 float64: 8 doubles) is a     \
         * new line every step, which the hardware prefetchers, a line ahead,         \
         * left the loop waiting for from L2: asked for 512 bytes ahead, three        \
         * float64 3x3 layers ran 1.04-1.12x faster (Ice Lake; res-3x3-64 the         \
         * same); rows of half a line (the other kernels) measured no faster */       \
        if (!ACOL && MR * sizeof(T) >= 64)                                            \
            __builtin_prefetch(a + (p + 512 / (MR * sizeof(T))) * lda, 0, 3);         \
        _Pragma("GCC unroll 16")                                                      \
        for (j = 0; j < NV; j++) bv[j] = *(const vec *)(b + p * ldb + j * VL);        \
        _Pragma("GCC unroll 16")                                                      \
        for (i = 0; i < MR; i++) {                                                    \
            vec av = (ACOL ? ar[i][p] : a[p * lda + i]) - (vec){0}; /* a broadcast */ \
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
}                                                                                     \
TARGET static void NAME(fc_index kc, const T *a, fc_index lda, fc_index a_panel,      \
                        const T *a_tail, fc_index m, const T *b, fc_index ldb, T *c,  \
                        fc_index ldc, int accumulate, fc_index n, const T *bias,      \
                        const T *pf, fc_index pf_ld, fc_index pf_bytes)              \
{                                                                                     \
    fc_index n_mb = (m + MR - 1) / MR, rpc = n_mb ? (kc + n_mb - 1) / n_mb : 0;       \
    fc_index u, r, mb;                                                                \
    for (u = 0; u < n_mb; u++) {                                                      \
        const T *ap = a + u * a_panel;                                                \
        fc_index la = lda;                                                            \
        mb = u * MR;                                                                  \
        if (a_tail && mb + MR > m) {                                                  \
            ap = a_tail;                                                              \
            la = MR;                                                                  \
        }                                                                             \
        for (r = u * rpc; pf && r < kc && r < (u + 1) * rpc; r++)                     \
            fc_prefetch(pf + r * pf_ld, pf_bytes);                                    \
        NAME##_block(kc, ap, la, b, ldb, c + mb * ldc, ldc, accumulate,              \
                     m - mb < MR ? m - mb : MR, n, bias ? bias + mb : NULL);          \
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

/* The im2col row copy, dst[j] = src[j * stride] for 0 <= j < n: whole vectors
 * then one masked vector, so a row of 14 is one or two instructions instead
 * of a loop with a scalar remainder (the copy was 13-19% of an im2col
 * convolution's time). Stride 2 loads the two vectors its elements span and
 * keeps the even lanes; other strides go element by element. Masked loads
 * and stores neither read outside src[0, (n - 1) * stride] nor write outside
 * dst[0, n). Per ISA and type: vector V of L lanes, LOAD/STORE whole vectors,
 * MLOAD(p, k)/MSTORE(p, k, v) the first k lanes (none for k <= 0, all for
 * k >= L), EVEN(a, b) the even lanes of a then b. */
#define FC_DEFINE_GATHER(NAME, T, V, L, TARGET, LOAD, STORE, MLOAD, MSTORE, EVEN)      \
TARGET static void NAME(T *dst, const T *src, fc_index n, fc_index stride)             \
{                                                                                      \
    fc_index j = 0;                                                                    \
    if (stride == 1) {                                                                 \
        for (; j + L <= n; j += L) STORE(dst + j, LOAD(src + j));                      \
        if (j < n) MSTORE(dst + j, n - j, MLOAD(src + j, n - j));                      \
        return;                                                                        \
    }                                                                                  \
    if (stride == 2) {                                                                 \
        for (; j < n; j += L) {                                                        \
            fc_index left = n - j, span = 2 * (left < L ? left : L) - 1;               \
            V v = EVEN(MLOAD(src + 2 * j, span), MLOAD(src + 2 * j + L, span - L));    \
            if (left >= L)                                                             \
                STORE(dst + j, v);                                                     \
            else                                                                       \
                MSTORE(dst + j, left, v);                                              \
        }                                                                              \
        return;                                                                        \
    }                                                                                  \
    for (; j < n; j++) dst[j] = src[j * stride];                                       \
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FC_X86 1
#define FC_TARGET_AVX512 __attribute__((target("avx512f")))
#define FC_TARGET_AVX2 __attribute__((target("avx2,fma")))
/* NV = 1, 2, 3 vectors of pixels: the narrow ones run a last partial panel, so
 * a 14x14 output (196 = 4 x 48 + 4 pixels) wastes 1/3 of a block, not 11/12 */
#define FC_DEFINE_KERNELS2(ISA, MR, TARGET, SFX, ACOL)                                 \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f32_1##SFX, float, FC_VBYTES_##ISA, MR, 1, TARGET, ACOL) \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f32_2##SFX, float, FC_VBYTES_##ISA, MR, 2, TARGET, ACOL) \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f32_3##SFX, float, FC_VBYTES_##ISA, MR, 3, TARGET, ACOL) \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f64_1##SFX, double, FC_VBYTES_##ISA, MR, 1, TARGET, ACOL) \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f64_2##SFX, double, FC_VBYTES_##ISA, MR, 2, TARGET, ACOL) \
    FC_DEFINE_KERNEL(fc_kernel_##ISA##_f64_3##SFX, double, FC_VBYTES_##ISA, MR, 3, TARGET, ACOL)
#define FC_DEFINE_KERNELS(ISA, MR, TARGET)                                             \
    FC_DEFINE_KERNELS2(ISA, MR, TARGET, , 0) FC_DEFINE_KERNELS2(ISA, MR, TARGET, _t, 1)
#define FC_KERNELS2(ISA, SFX)                                                          \
    {fc_kernel_##ISA##_f32_1##SFX, fc_kernel_##ISA##_f32_2##SFX, fc_kernel_##ISA##_f32_3##SFX}, \
    {fc_kernel_##ISA##_f64_1##SFX, fc_kernel_##ISA##_f64_2##SFX, fc_kernel_##ISA##_f64_3##SFX}
#define FC_KERNELS(ISA) FC_KERNELS2(ISA, ), FC_KERNELS2(ISA, _t)
#define FC_VBYTES_avx512 64
#define FC_VBYTES_avx2 32
#define FC_VBYTES_base 16
FC_DEFINE_KERNELS(avx512, 8, FC_TARGET_AVX512)
FC_DEFINE_KERNELS(avx2, 4, FC_TARGET_AVX2)
FC_DEFINE_DOT(fc_dot_avx512_f32, float, 64, 4, 6, FC_TARGET_AVX512)
FC_DEFINE_DOT(fc_dot_avx512_f64, double, 64, 4, 6, FC_TARGET_AVX512)
FC_DEFINE_DOT(fc_dot_avx2_f32, float, 32, 3, 4, FC_TARGET_AVX2)
FC_DEFINE_DOT(fc_dot_avx2_f64, double, 32, 3, 4, FC_TARGET_AVX2)

#include <immintrin.h>
#include "_store.h"

/* the first k lanes of a mask (see FC_DEFINE_GATHER) */
#define FC_K16(k) ((__mmask16)((k) >= 16 ? 0xffffu : (k) <= 0 ? 0u : (1u << (k)) - 1))
#define FC_K8(k) ((__mmask8)((k) >= 8 ? 0xffu : (k) <= 0 ? 0u : (1u << (k)) - 1))
#define FC_MASK8(k) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k)),                     \
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define FC_MASK4(k) _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(k)),               \
                                       _mm256_setr_epi64x(0, 1, 2, 3))

#define FC_PS512_MLOAD(p, k) _mm512_maskz_loadu_ps(FC_K16(k), p)
#define FC_PS512_MSTORE(p, k, v) _mm512_mask_storeu_ps(p, FC_K16(k), v)
#define FC_PS512_EVEN(a, b) _mm512_permutex2var_ps(a, _mm512_setr_epi32(                \
    0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b)
#define FC_PD512_MLOAD(p, k) _mm512_maskz_loadu_pd(FC_K8(k), p)
#define FC_PD512_MSTORE(p, k, v) _mm512_mask_storeu_pd(p, FC_K8(k), v)
#define FC_PD512_EVEN(a, b) _mm512_permutex2var_pd(a, _mm512_setr_epi64(                \
    0, 2, 4, 6, 8, 10, 12, 14), b)
#define FC_PS256_MLOAD(p, k) _mm256_maskload_ps(p, FC_MASK8(k))
#define FC_PS256_MSTORE(p, k, v) fc_store_part_ps256(p, v, k)
/* even lanes of each 128-bit half, then the halves in order */
#define FC_PS256_EVEN(a, b) _mm256_castpd_ps(_mm256_permute4x64_pd(                     \
    _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8))
#define FC_PD256_MLOAD(p, k) _mm256_maskload_pd(p, FC_MASK4(k))
#define FC_PD256_MSTORE(p, k, v) fc_store_part_pd256(p, v, k)
#define FC_PD256_EVEN(a, b) _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xd8)

FC_DEFINE_GATHER(fc_gather_avx512_f32, float, __m512, 16, FC_TARGET_AVX512, _mm512_loadu_ps,
                 _mm512_storeu_ps, FC_PS512_MLOAD, FC_PS512_MSTORE, FC_PS512_EVEN)
FC_DEFINE_GATHER(fc_gather_avx512_f64, double, __m512d, 8, FC_TARGET_AVX512, _mm512_loadu_pd,
                 _mm512_storeu_pd, FC_PD512_MLOAD, FC_PD512_MSTORE, FC_PD512_EVEN)
FC_DEFINE_GATHER(fc_gather_avx2_f32, float, __m256, 8, FC_TARGET_AVX2, _mm256_loadu_ps,
                 _mm256_storeu_ps, FC_PS256_MLOAD, FC_PS256_MSTORE, FC_PS256_EVEN)
FC_DEFINE_GATHER(fc_gather_avx2_f64, double, __m256d, 4, FC_TARGET_AVX2, _mm256_loadu_pd,
                 _mm256_storeu_pd, FC_PD256_MLOAD, FC_PD256_MSTORE, FC_PD256_EVEN)
#else
#define FC_X86 0
#endif
FC_DEFINE_KERNELS(base, 4, )
FC_DEFINE_DOT(fc_dot_base_f32, float, 16, 3, 4, )
FC_DEFINE_DOT(fc_dot_base_f64, double, 16, 3, 4, )

/* baseline: vectors of one element, so every copy goes element by element
 * (the compiler vectorises the stride-1 loop) */
#define FC_SCALAR_LOAD(p) (*(p))
#define FC_SCALAR_STORE(p, v) (*(p) = (v))
#define FC_SCALAR_MLOAD(p, k) ((k) > 0 ? *(p) : 0)
#define FC_SCALAR_MSTORE(p, k, v) ((k) > 0 ? (void)(*(p) = (v)) : (void)0)
#define FC_SCALAR_EVEN(a, b) (a)
FC_DEFINE_GATHER(fc_gather_base_f32, float, float, 1, , FC_SCALAR_LOAD, FC_SCALAR_STORE,
                 FC_SCALAR_MLOAD, FC_SCALAR_MSTORE, FC_SCALAR_EVEN)
FC_DEFINE_GATHER(fc_gather_base_f64, double, double, 1, , FC_SCALAR_LOAD, FC_SCALAR_STORE,
                 FC_SCALAR_MLOAD, FC_SCALAR_MSTORE, FC_SCALAR_EVEN)

/* dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols, and zero for
 * rows <= i < rows_pad: a block transposed, as the weights are packed into
 * the micro-kernel's [CRS][mr] panels. By 4 x 4 (float) or 2 x 2 (double)
 * SSE2 transposes, every x86-64's: element by element, packing was a quarter
 * of a batch-1 7x7 512-channel layer's time (9 MiB of weights). */
#define FC_DEFINE_TRANSPOSE(NAME, T, B, BLOCK)                                         \
static void NAME(const T *src, fc_index lds, fc_index rows, fc_index cols, T *dst,      \
                 fc_index ldd, fc_index rows_pad)                                      \
{                                                                                      \
    /* whole blocks of B rows x B columns, all the rows' blocks of a column  \
     * block in turn (the destination rows then fill in order), then the     \
     * last rows and columns element by element */                            \
    fc_index rb = FC_X86 ? rows / B * B : 0, cb = FC_X86 ? cols / B * B : 0, i, j, i0; \
    for (j = 0; j < cb; j += B)                                                        \
        for (i0 = 0; i0 < rb; i0 += B)                                                 \
            BLOCK(src + i0 * lds + j, lds, dst + j * ldd + i0, ldd);                   \
    for (j = 0; j < cols; j++) {                                                       \
        for (i = j < cb ? rb : 0; i < rows; i++) dst[j * ldd + i] = src[i * lds + j];  \
        for (i = rows; i < rows_pad; i++) dst[j * ldd + i] = 0;                        \
    }                                                                                  \
}

#if FC_X86
static inline void fc_block4_f32(const float *s, fc_index lds, float *d, fc_index ldd)
{
    __m128 a = _mm_loadu_ps(s), b = _mm_loadu_ps(s + lds);
    __m128 c = _mm_loadu_ps(s + 2 * lds), e = _mm_loadu_ps(s + 3 * lds);
    _MM_TRANSPOSE4_PS(a, b, c, e);
    _mm_storeu_ps(d, a);
    _mm_storeu_ps(d + ldd, b);
    _mm_storeu_ps(d + 2 * ldd, c);
    _mm_storeu_ps(d + 3 * ldd, e);
}
static inline void fc_block2_f64(const double *s, fc_index lds, double *d, fc_index ldd)
{
    __m128d a = _mm_loadu_pd(s), b = _mm_loadu_pd(s + lds);
    _mm_storeu_pd(d, _mm_unpacklo_pd(a, b));
    _mm_storeu_pd(d + ldd, _mm_unpackhi_pd(a, b));
}
#else
#define fc_block4_f32(s, lds, d, ldd) ((void)0)
#define fc_block2_f64(s, lds, d, ldd) ((void)0)
#endif
FC_DEFINE_TRANSPOSE(fc_transpose_f32, float, 4, fc_block4_f32)
FC_DEFINE_TRANSPOSE(fc_transpose_f64, double, 2, fc_block2_f64)

/* The variant in use, chosen once at import (fc_select) and switchable for tests. */
typedef void (*fc_dot_f32)(fc_index, const float *, fc_index, const float *, fc_index, float *, fc_index, fc_index, fc_index);
typedef void (*fc_dot_f64)(fc_index, const double *, fc_index, const double *, fc_index, double *, fc_index, fc_index, fc_index);

typedef void (*fc_gather_f32)(float *, const float *, fc_index, fc_index);
typedef void (*fc_gather_f64)(double *, const double *, fc_index, fc_index);

typedef struct {
    const char *name;
    fc_kernel_f32 f32[3]; /* by vectors of pixels per block: 1, 2, 3 */
    fc_kernel_f64 f64[3];
    fc_kernel_f32 f32t[3]; /* the same, A unpacked (the "_t" kernels) */
    fc_kernel_f64 f64t[3];
    int mr;             /* output channels per block */
    int nr_f32, nr_f64; /* output pixels per (widest) block */
    fc_dot_f32 dot_f32;
    fc_dot_f64 dot_f64;
    int dr, dc;         /* the dot kernel's block: rows of A x rows of B */
    fc_gather_f32 gather_f32; /* the im2col row copy */
    fc_gather_f64 gather_f64;
} fc_isa;

static const fc_isa fc_isas[] = {
#if FC_X86
    {"avx512", FC_KERNELS(avx512), 8, 48, 24,
     fc_dot_avx512_f32, fc_dot_avx512_f64, 4, 6, fc_gather_avx512_f32, fc_gather_avx512_f64},
    {"avx2", FC_KERNELS(avx2), 4, 24, 12,
     fc_dot_avx2_f32, fc_dot_avx2_f64, 3, 4, fc_gather_avx2_f32, fc_gather_avx2_f64},
#endif
    {"baseline", FC_KERNELS(base), 4, 12, 6,
     fc_dot_base_f32, fc_dot_base_f64, 3, 4, fc_gather_base_f32, fc_gather_base_f64},
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
