/* The transforms of Winograd's F(2x2, 3x3) and F(4x4, 3x3) convolutions
 * (Lavin & Gray 2016), and of F(2x2, 5x5), F(3x3, 4x4) and F(5x5, 2x2) on
 * F(4x4, 3x3)'s 6x6 tiles, one source for every ISA (instantiated below with
 * __attribute__((target)), picked with the GEMM micro-kernels in
 * _gemm_kernels.h). F(2x2)'s data transforms add and subtract only, the
 * 6x6 tiles' also multiply by powers of two (exact, contracted into FMAs or
 * not): they give the same bits in every variant.
 *
 * A 2x2 block of outputs comes from a 4x4 tile d of input (rows 2 tp - pt to
 * 2 tp - pt + 3, columns 2 tq - pl to 2 tq - pl + 3):
 *     y = A^T [ (G g G^T) (.) (B^T d B) ] A
 * with B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] and
 * A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]; the 16 products of each tile, summed
 * over input channels, are 16 GEMMs (see conv2d_winograd in _conv.pyx).
 */
#ifndef FASTCONV_WINOGRAD_H
#define FASTCONV_WINOGRAD_H

#include <stddef.h>
#include <string.h>

#include "_gemm_kernels.h"

/* rows of one buffer at run-time distances: no dependence between iterations */
#if defined(__GNUC__) && !defined(__clang__)
#define FC_IVDEP _Pragma("GCC ivdep")
#elif defined(__clang__)
#define FC_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#else
#define FC_IVDEP
#endif

/* 1 when input value a is not finite or above lim in magnitude (see below) */
#define FC_WINO_BAD(a, lim) (((a) > (lim)) | ((a) < -(lim)) | ((a) != (a)))

/* Tiles of one input channel for rows of tiles [r0, r1) of the batch (row r:
 * row r % TP of image r / TP): v[xi * ldv + u] = (B^T d B)[xi], xi = 4 a + b,
 * for the tile in slot u = (r - r0) * (TQ + 1) + tq. Each row of tiles has
 * one slot more than tiles, its junk: the transform then runs as one long
 * vector loop over every slot (rows of 7 tiles would leave the vectors
 * mostly in their scalar remainder), and the GEMMs carry the junk along.
 * The four input rows of each tile row (zero outside the image) are split
 * into their even and odd columns in buf (8 x ((r1 - r0) (TQ + 1) + 1)), so
 * that every operand is read with unit stride. Returns nonzero when an
 * element of those rows is not finite or above lim in magnitude: the
 * transforms mix a tile's inputs, and an inf would make NaNs (inf - inf) in
 * outputs whose windows do not hold it. */
#define FC_DEFINE_WINO_IN(NAME, T, TARGET)                                              \
TARGET static int NAME(const T *x, fc_index C, fc_index H, fc_index W, fc_index c,      \
                       fc_index TP, fc_index r0, fc_index r1, fc_index pt, fc_index pl, \
                       fc_index TQ, T lim, T *restrict buf, T *restrict v, fc_index ldv) \
{                                                                                       \
    const fc_index n = TQ + 1, S = (r1 - r0) * n + 1;                                   \
    /* even buffer column j is input column 2 j - pl, odd 2 j + 1 - pl; [jlo, jhi)     \
     * have both inside the row */                                                      \
    fc_index jlo = (pl + 1) / 2, jhi = (W + pl) / 2;                                    \
    fc_index i, j, r, u;                                                                \
    int bad = 0;                                                                        \
    if (jhi > n) jhi = n;                                                               \
    if (jlo > jhi) jlo = jhi;                                                           \
    for (r = r0; r < r1; r++) {                                                         \
        const T *xc = x + ((r / TP) * C + c) * H * W;                                   \
        fc_index h0 = 2 * (r % TP) - pt;                                                \
        for (i = 0; i < 4; i++) {                                                       \
            T *restrict e = buf + 2 * i * S + (r - r0) * n, *restrict o = e + S;        \
            const T *src = xc + (h0 + i) * W;                                           \
            if (h0 + i < 0 || h0 + i >= H) {                                            \
                for (j = 0; j < n; j++) e[j] = o[j] = 0;                                \
                continue;                                                               \
            }                                                                           \
            for (j = 0; j < W; j++) {                                                   \
                T a = src[j];                                                           \
                bad |= FC_WINO_BAD(a, lim);                                             \
            }                                                                           \
            for (j = 0; j < jlo; j++) {                                                 \
                fc_index col = 2 * j - pl;                                              \
                e[j] = col >= 0 && col < W ? src[col] : 0;                              \
                o[j] = col + 1 >= 0 && col + 1 < W ? src[col + 1] : 0;                  \
            }                                                                           \
            for (j = jlo; j < jhi; j++) {                                               \
                e[j] = src[2 * j - pl];                                                 \
                o[j] = src[2 * j + 1 - pl];                                             \
            }                                                                           \
            for (j = jhi; j < n; j++) {                                                 \
                fc_index col = 2 * j - pl;                                              \
                e[j] = col >= 0 && col < W ? src[col] : 0;                              \
                o[j] = col + 1 >= 0 && col + 1 < W ? src[col + 1] : 0;                  \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    for (i = 0; i < 8; i++) buf[i * S + S - 1] = 0;  /* read by the last junk slot */   \
    {                                                                                   \
        const T *e0 = buf, *o0 = buf + S, *e1 = buf + 2 * S, *o1 = buf + 3 * S;         \
        const T *e2 = buf + 4 * S, *o2 = buf + 5 * S, *e3 = buf + 6 * S, *o3 = buf + 7 * S; \
        /* the 16 rows of v (and of buf) never overlap: vectorise */                   \
        FC_IVDEP                                                                        \
        for (u = 0; u < S - 1; u++) {                                                   \
            /* rows of B^T d, then columns of (B^T d) B */                              \
            T r0a = e0[u] - e2[u], r0b = o0[u] - o2[u];                                 \
            T r0c = e0[u + 1] - e2[u + 1], r0d = o0[u + 1] - o2[u + 1];                 \
            T r1a = e1[u] + e2[u], r1b = o1[u] + o2[u];                                 \
            T r1c = e1[u + 1] + e2[u + 1], r1d = o1[u + 1] + o2[u + 1];                 \
            T r2a = e2[u] - e1[u], r2b = o2[u] - o1[u];                                 \
            T r2c = e2[u + 1] - e1[u + 1], r2d = o2[u + 1] - o1[u + 1];                 \
            T r3a = e1[u] - e3[u], r3b = o1[u] - o3[u];                                 \
            T r3c = e1[u + 1] - e3[u + 1], r3d = o1[u + 1] - o3[u + 1];                 \
            v[0 * ldv + u] = r0a - r0c;  v[1 * ldv + u] = r0b + r0c;                    \
            v[2 * ldv + u] = r0c - r0b;  v[3 * ldv + u] = r0b - r0d;                    \
            v[4 * ldv + u] = r1a - r1c;  v[5 * ldv + u] = r1b + r1c;                    \
            v[6 * ldv + u] = r1c - r1b;  v[7 * ldv + u] = r1b - r1d;                    \
            v[8 * ldv + u] = r2a - r2c;  v[9 * ldv + u] = r2b + r2c;                    \
            v[10 * ldv + u] = r2c - r2b; v[11 * ldv + u] = r2b - r2d;                   \
            v[12 * ldv + u] = r3a - r3c; v[13 * ldv + u] = r3b + r3c;                   \
            v[14 * ldv + u] = r3c - r3b; v[15 * ldv + u] = r3b - r3d;                   \
        }                                                                               \
    }                                                                                   \
    return bad;                                                                         \
}

/* Its counterpart for one output channel k: A^T m A + b of the tile in slot u
 * (its 16 sums at m[xi * ldm + u]) to columns 2 tq, 2 tq + 1 of output rows
 * 2 tp, 2 tp + 1 (either below P, Q) of image r / TP, for the rows of tiles
 * [r0, r1). y: the output's first element; buf: 4 x (r1 - r0) (TQ + 1). */
#define FC_DEFINE_WINO_OUT(NAME, T, TARGET)                                             \
TARGET static void NAME(const T *restrict m, fc_index ldm, fc_index TP, fc_index r0,    \
                        fc_index r1, fc_index TQ, T b, T *restrict buf, T *restrict y,   \
                        fc_index K, fc_index k, fc_index P, fc_index Q)                 \
{                                                                                       \
    const fc_index n = TQ + 1, S = (r1 - r0) * n;                                       \
    T *restrict a0 = buf, *restrict a1 = buf + S, *restrict c0 = buf + 2 * S;           \
    T *restrict c1 = buf + 3 * S;                                                       \
    fc_index u, r, tq;                                                                  \
    FC_IVDEP                                                                            \
    for (u = 0; u < S; u++) {                                                           \
        /* columns of m A, then rows of A^T (m A) */                                    \
        T t00 = m[0 * ldm + u] + m[1 * ldm + u] + m[2 * ldm + u];                        \
        T t01 = m[1 * ldm + u] - m[2 * ldm + u] - m[3 * ldm + u];                        \
        T t10 = m[4 * ldm + u] + m[5 * ldm + u] + m[6 * ldm + u];                        \
        T t11 = m[5 * ldm + u] - m[6 * ldm + u] - m[7 * ldm + u];                        \
        T t20 = m[8 * ldm + u] + m[9 * ldm + u] + m[10 * ldm + u];                       \
        T t21 = m[9 * ldm + u] - m[10 * ldm + u] - m[11 * ldm + u];                      \
        T t30 = m[12 * ldm + u] + m[13 * ldm + u] + m[14 * ldm + u];                     \
        T t31 = m[13 * ldm + u] - m[14 * ldm + u] - m[15 * ldm + u];                     \
        a0[u] = t00 + t10 + t20 + b;                                                    \
        a1[u] = t01 + t11 + t21 + b;                                                    \
        c0[u] = t10 - t20 - t30 + b;                                                    \
        c1[u] = t11 - t21 - t31 + b;                                                    \
    }                                                                                   \
    /* interleaved into the rows (loops of their own: stores two apart) */              \
    for (r = r0; r < r1; r++) {                                                         \
        fc_index tp = r % TP, s = (r - r0) * n;                                         \
        T *restrict y0 = y + (((r / TP) * K + k) * P + 2 * tp) * Q;                     \
        for (tq = 0; tq < Q / 2; tq++) {                                                \
            y0[2 * tq] = a0[s + tq];                                                    \
            y0[2 * tq + 1] = a1[s + tq];                                                \
        }                                                                               \
        if (Q % 2) y0[Q - 1] = a0[s + TQ - 1];                                          \
        if (2 * tp + 1 >= P) continue;  /* an odd last row */                           \
        y0 += Q;                                                                        \
        for (tq = 0; tq < Q / 2; tq++) {                                                \
            y0[2 * tq] = c0[s + tq];                                                    \
            y0[2 * tq + 1] = c1[s + tq];                                                \
        }                                                                               \
        if (Q % 2) y0[Q - 1] = c0[s + TQ - 1];                                          \
    }                                                                                   \
}

/* For grad_weight (see conv2d_grad_weight_winograd in _conv.pyx): the
 * transposed output transform of one output channel k of grad_output,
 * z[xi * ldz + u] = (A dy A^T)[xi] for the 2x2 block dy of the tile in slot u,
 * slots laid out as FC_DEFINE_WINO_IN's (the junk slot of each row of tiles
 * zero, so that it adds nothing), outputs past P, Q zero. A = [[1, 0], [1, 1],
 * [1, -1], [0, -1]]: adds and subtracts only. buf: 4 (r1 - r0) (TQ + 1).
 * Returns nonzero when an element of those rows is not finite or above lim
 * in magnitude. */
#define FC_DEFINE_WINO_GY(NAME, T, TARGET)                                              \
TARGET static int NAME(const T *gy, fc_index K, fc_index P, fc_index Q, fc_index k,     \
                       fc_index TP, fc_index r0, fc_index r1, fc_index TQ, T lim,       \
                       T *restrict buf, T *restrict z, fc_index ldz)                    \
{                                                                                       \
    const fc_index n = TQ + 1, S = (r1 - r0) * n;                                       \
    T *restrict e0 = buf, *restrict o0 = buf + S, *restrict e1 = buf + 2 * S;           \
    T *restrict o1 = buf + 3 * S;                                                       \
    fc_index r, j, u;                                                                   \
    int bad = 0;                                                                        \
    for (r = r0; r < r1; r++) {  /* even and odd columns of the two rows */             \
        fc_index tp = r % TP, s = (r - r0) * n;                                         \
        const T *g0 = gy + (((r / TP) * K + k) * P + 2 * tp) * Q;                       \
        const T *g1 = 2 * tp + 1 < P ? g0 + Q : NULL;                                   \
        for (j = 0; j < Q; j++) bad |= FC_WINO_BAD(g0[j], lim);                         \
        if (g1 != NULL)                                                                 \
            for (j = 0; j < Q; j++) bad |= FC_WINO_BAD(g1[j], lim);                     \
        for (j = 0; j < Q / 2; j++) {                                                   \
            e0[s + j] = g0[2 * j];                                                      \
            o0[s + j] = g0[2 * j + 1];                                                  \
            e1[s + j] = g1 != NULL ? g1[2 * j] : 0;                                     \
            o1[s + j] = g1 != NULL ? g1[2 * j + 1] : 0;                                 \
        }                                                                               \
        for (j = Q / 2; j < n; j++) {  /* an odd last column, then zeros */             \
            e0[s + j] = 2 * j < Q ? g0[2 * j] : 0;                                      \
            e1[s + j] = 2 * j < Q && g1 != NULL ? g1[2 * j] : 0;                        \
            o0[s + j] = o1[s + j] = 0;                                                  \
        }                                                                               \
    }                                                                                   \
    FC_IVDEP                                                                            \
    for (u = 0; u < S; u++) {                                                           \
        /* columns A dy (rows a), then rows (A dy) A^T */                               \
        T ea[4], oa[4];                                                                 \
        fc_index a;                                                                     \
        ea[0] = e0[u], ea[1] = e0[u] + e1[u], ea[2] = e0[u] - e1[u], ea[3] = -e1[u];    \
        oa[0] = o0[u], oa[1] = o0[u] + o1[u], oa[2] = o0[u] - o1[u], oa[3] = -o1[u];    \
        for (a = 0; a < 4; a++) {                                                       \
            z[(4 * a) * ldz + u] = ea[a];                                               \
            z[(4 * a + 1) * ldz + u] = ea[a] + oa[a];                                   \
            z[(4 * a + 2) * ldz + u] = ea[a] - oa[a];                                   \
            z[(4 * a + 3) * ldz + u] = -oa[a];                                          \
        }                                                                               \
    }                                                                                   \
    return bad;                                                                         \
}

/* The weight transforms take FC_WINO_CB channels c at a time: each element's
 * rows of their panels go to a buffer, then into the packed panels as one
 * contiguous copy per element (stored straight from the loop, the 16 or 36
 * streams of MR values, each a page or more apart, took most of the time). */
#define FC_WINO_CB 16

/* the NT taps (R x R) of channel pairs (k0 + kk, c), kk < MR, as vectors g[tap]
 * (lane kk; zero past K), built lane by lane in registers (written to an
 * array first, each vector's load waited on its MR scalar stores: with the
 * buffer above, 2.5-3.5x slower on 256 x 256 channels), with the caller's kk
 * and i as the loops' counters */
#define FC_WINO_TAPS(g, w, K, C, k0, c, MR, NT)                                         \
    do {                                                                                \
        if (k0 + MR <= K)                                                               \
            for (i = 0; i < NT; i++)                                                    \
                for (kk = 0; kk < MR; kk++) g[i][kk] = w[((k0 + kk) * C + c) * NT + i]; \
        else                                                                            \
            for (i = 0; i < NT; i++)                                                    \
                for (kk = 0; kk < MR; kk++)                                             \
                    g[i][kk] = k0 + kk < K ? w[((k0 + kk) * C + c) * NT + i] : 0;       \
    } while (0)

/* the buffer's rows of channels [c0, c0 + cn) into the panels of k0 */
#define FC_WINO_FLUSH(buf, E, apack, ld, k0, C, c0, cn, MR)                             \
    for (i = 0; i < E; i++)                                                             \
        memcpy(apack + i * ld + k0 * C + c0 * MR, buf[i], cn * sizeof(buf[i][0]))

/* Output channels [k0, k0 + MR) of the transformed weights G g G^T, G = [[1, 0,
 * 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], into the GEMM
 * micro-kernels' packed panels: element xi = 4 a + b of channel pair (k, c) at
 * apack[xi * K_pad * C + k0 * C + c * MR + k - k0], rows past K zero. The MR
 * channels of a panel are one vector's lanes (a scalar loop per pair was half
 * of a batch-1 256-channel layer). */
#define FC_DEFINE_WINO_W(NAME, T, MR, TARGET)                                           \
TARGET static void NAME(const T *w, fc_index K, fc_index C, fc_index k0, T *apack)     \
{                                                                                       \
    typedef T vec __attribute__((vector_size(MR * sizeof(T)), aligned(sizeof(T))));   \
    const fc_index ld = (K + MR - 1) / MR * MR * C;  /* between elements xi */         \
    fc_index c0, c, kk, i;                                                              \
    vec buf[16][FC_WINO_CB];                                                            \
    for (c0 = 0; c0 < C; c0 += FC_WINO_CB) {                                            \
        const fc_index cn = C - c0 < FC_WINO_CB ? C - c0 : FC_WINO_CB;                  \
        for (c = c0; c < c0 + cn; c++) {                                                \
            /* t = G g (rows), then t G^T (columns) */                                  \
            vec g[9], t[4][3];                                                          \
            FC_WINO_TAPS(g, w, K, C, k0, c, MR, 9);                                        \
            for (i = 0; i < 3; i++) {                                                   \
                t[0][i] = g[i];                                                         \
                t[1][i] = (g[i] + g[3 + i] + g[6 + i]) * (T)0.5;                        \
                t[2][i] = (g[i] - g[3 + i] + g[6 + i]) * (T)0.5;                        \
                t[3][i] = g[6 + i];                                                     \
            }                                                                           \
            for (i = 0; i < 4; i++) {                                                   \
                buf[4 * i][c - c0] = t[i][0];                                           \
                buf[4 * i + 1][c - c0] = (t[i][0] + t[i][1] + t[i][2]) * (T)0.5;        \
                buf[4 * i + 2][c - c0] = (t[i][0] - t[i][1] + t[i][2]) * (T)0.5;        \
                buf[4 * i + 3][c - c0] = t[i][2];                                       \
            }                                                                           \
        }                                                                               \
        FC_WINO_FLUSH(buf, 16, apack, ld, k0, C, c0, cn, MR);                           \
    }                                                                                   \
}

/* Winograd's F(4x4, 3x3) (Lavin & Gray 2016, points 0, +-1, +-2): a 4x4 block
 * of outputs from a 6x6 tile (rows 4 tp - pt to 4 tp - pt + 5), 36 multiplies
 * per tile and channel pair instead of F(2x2, 3x3)'s 64 for the same outputs,
 * with
 *     B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
 *            [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
 *     G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6],
 *          [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]],
 *     A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
 *            [0, 1, -1, 8, -8, 1]].
 * The data transforms multiply by powers of two only (5 d = 4 d + d), so
 * contracting them into FMAs changes no bits and every variant agrees. Each
 * runs as two passes of the 1-D transform (along the tile's rows, then its
 * columns) through a buffer, which keeps a vector loop's operands in
 * registers (one pass over all 36 values spills). */

/* B^T applied to six values (a column or a row of a tile) */
#define FC_WINO4_BT(T, d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5)                    \
    do {                                                                                \
        T p_ = d4 - 4 * d2, q_ = d3 - 4 * d1, s_ = d4 - d2, e_ = 2 * (d3 - d1);         \
        o0 = 4 * (d0 - d2) + s_;                                                        \
        o1 = p_ + q_;                                                                   \
        o2 = p_ - q_;                                                                   \
        o3 = s_ + e_;                                                                   \
        o4 = s_ - e_;                                                                   \
        o5 = 4 * (d1 - d3) + (d5 - d3);                                                 \
    } while (0)

/* A^T of F(M x M, (7 - M) x (7 - M)) applied to six values, result k < M
 * passed to OUT(M, k, value): row k of A^T is the powers k of the points,
 * (0^k, 1, (-1)^k, 2^k, (-2)^k), and 1 at infinity in the last row (dead
 * branches of a constant M fold away) */
#define FC_WINO6_AT(T, M, m0, m1, m2, m3, m4, m5, OUT)                                  \
    do {                                                                                \
        T s12_ = m1 + m2, d12_ = m1 - m2, s34_ = m3 + m4, d34_ = m3 - m4;               \
        OUT(M, 0, m0 + s12_ + s34_);                                                    \
        if ((M) == 2) OUT(M, 1, d12_ + 2 * d34_ + m5);                                  \
        else OUT(M, 1, d12_ + 2 * d34_);                                                \
        if ((M) == 3) OUT(M, 2, s12_ + 4 * s34_ + m5);                                  \
        else if ((M) > 3) OUT(M, 2, s12_ + 4 * s34_);                                   \
        if ((M) == 4) OUT(M, 3, d12_ + 8 * d34_ + m5);                                  \
        else if ((M) > 4) OUT(M, 3, d12_ + 8 * d34_);                                   \
        if ((M) == 5) OUT(M, 4, s12_ + 16 * s34_ + m5);                                 \
    } while (0)

/* The input transform of F(M x M, (7 - M) x (7 - M)) (F(4x4, 3x3) for M = 4),
 * with FC_DEFINE_WINO_IN's arguments and result: tiles M apart,
 * v[xi * ldv + u] = (B^T d B)[xi], xi = 6 a + b, for the tile in slot
 * u = (r - r0) TQ + tq (no junk slots: at 14x14, F(2x2)'s one per row of
 * tiles would be a GEMM column in five). buf: 6 L + W + 36 (r1 - r0) TQ, L
 * as below. Per row of tiles, B^T runs down the six input rows at unit
 * stride (rows outside the image read a row of zeros) into six rows of L
 * columns, column pl + j holding input column j and the rest zero; then
 * along each tile's six columns M tq to M tq + 5 of those, a loop over the
 * tiles that the compiler vectorises with shuffles (the six outputs must be
 * distinct restrict pointers for it to). Rows of fewer than FC_WINO6_SHORT
 * tiles are too short for that loop (a 14x14 128-channel layer ran 20%
 * slower): their tiles' columns are copied out, column i of every tile in
 * array i, and one loop runs over all the item's tiles. */
#define FC_WINO6_SHORT 8
#define FC_WINO6_ROW(M, W, TQ, pl)                                                      \
    ((M) * (TQ) + 6 - (M) > (pl) + (W) ? (M) * (TQ) + 6 - (M) : (pl) + (W))
/* the eight-tile float32 input transform's row of L8 columns (below; outside
 * FC_X86 so that the buffer's size has one formula on every machine) */
#define FC_WINO6_ROW8(M, W, TQ, pl)                                                     \
    (((M) * ((TQ) - 1) + 8 > (pl) + (W) ? (M) * ((TQ) - 1) + 8 : (pl) + (W)) + 7) / 8 * 8
#define FC_DEFINE_WINO6_IN(NAME, T, TARGET, M)                                           \
TARGET static int NAME(const T *x, fc_index C, fc_index H, fc_index W, fc_index c,      \
                       fc_index TP, fc_index r0, fc_index r1, fc_index pt, fc_index pl, \
                       fc_index TQ, T lim, T *restrict buf, T *restrict v, fc_index ldv) \
{                                                                                       \
    const fc_index L = FC_WINO6_ROW(M, W, TQ, pl), S = (r1 - r0) * TQ;                  \
    T *restrict t = buf, *restrict zero = buf + 6 * L, *restrict col = zero + W;        \
    fc_index i, j, r, a;                                                                \
    int bad = 0;                                                                        \
    for (j = 0; j < W; j++) zero[j] = 0;                                                \
    for (a = 0; a < 6; a++) {  /* the padding columns, never written below */           \
        for (j = 0; j < pl; j++) t[a * L + j] = 0;                                      \
        for (j = pl + W; j < L; j++) t[a * L + j] = 0;                                  \
    }                                                                                   \
    for (r = r0; r < r1; r++) {                                                         \
        const T *xc = x + ((r / TP) * C + c) * H * W;                                   \
        const T *d[6];                                                                  \
        fc_index h0 = M * (r % TP) - pt;                                                \
        for (i = 0; i < 6; i++)                                                         \
            d[i] = h0 + i >= 0 && h0 + i < H ? xc + (h0 + i) * W : zero;                \
        {                                                                               \
            const T *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4];         \
            const T *d5 = d[5];                                                         \
            T *restrict t0 = t + pl, *restrict t1 = t0 + L, *restrict t2 = t0 + 2 * L;  \
            T *restrict t3 = t0 + 3 * L, *restrict t4 = t0 + 4 * L;                     \
            T *restrict t5 = t0 + 5 * L;                                                \
            FC_IVDEP                                                                    \
            for (j = 0; j < W; j++) {                                                   \
                T a0 = d0[j], a1 = d1[j], a2 = d2[j], a3 = d3[j], a4 = d4[j], a5 = d5[j]; \
                bad |= FC_WINO_BAD(a0, lim) | FC_WINO_BAD(a1, lim) | FC_WINO_BAD(a2, lim) \
                       | FC_WINO_BAD(a3, lim) | FC_WINO_BAD(a4, lim) | FC_WINO_BAD(a5, lim); \
                FC_WINO4_BT(T, a0, a1, a2, a3, a4, a5, t0[j], t1[j], t2[j], t3[j], t4[j], \
                            t5[j]);                                                     \
            }                                                                           \
        }                                                                               \
        for (a = 0; a < 6; a++) {                                                       \
            const T *ta = t + a * L;                                                    \
            T *restrict v0, *restrict v1, *restrict v2, *restrict v3, *restrict v4;     \
            T *restrict v5;                                                             \
            if (TQ < FC_WINO6_SHORT) {  /* split, for the loop below */                \
                T *restrict o = col + 6 * a * S + (r - r0) * TQ;                        \
                for (j = 0; j < TQ; j++)                                                \
                    for (i = 0; i < 6; i++) o[i * S + j] = ta[M * j + i];               \
                continue;                                                               \
            }                                                                           \
            v0 = v + 6 * a * ldv + (r - r0) * TQ;                                       \
            v1 = v0 + ldv, v2 = v0 + 2 * ldv, v3 = v0 + 3 * ldv;                        \
            v4 = v0 + 4 * ldv, v5 = v0 + 5 * ldv;                                       \
            FC_IVDEP                                                                    \
            for (j = 0; j < TQ; j++)                                                    \
                FC_WINO4_BT(T, ta[M * j], ta[M * j + 1], ta[M * j + 2], ta[M * j + 3],  \
                            ta[M * j + 4], ta[M * j + 5], v0[j], v1[j], v2[j], v3[j],   \
                            v4[j], v5[j]);                                              \
        }                                                                               \
    }                                                                                   \
    if (TQ < FC_WINO6_SHORT)  /* rows of few tiles: one loop over all of them */       \
        for (a = 0; a < 6; a++) {                                                       \
            const T *c0 = col + 6 * a * S, *c1 = c0 + S, *c2 = c0 + 2 * S;              \
            const T *c3 = c0 + 3 * S, *c4 = c0 + 4 * S, *c5 = c0 + 5 * S;              \
            T *restrict v0 = v + 6 * a * ldv, *restrict v1 = v0 + ldv;                  \
            T *restrict v2 = v0 + 2 * ldv, *restrict v3 = v0 + 3 * ldv;                 \
            T *restrict v4 = v0 + 4 * ldv, *restrict v5 = v0 + 5 * ldv;                 \
            FC_IVDEP                                                                    \
            for (j = 0; j < S; j++)                                                     \
                FC_WINO4_BT(T, c0[j], c1[j], c2[j], c3[j], c4[j], c5[j], v0[j], v1[j],  \
                            v2[j], v3[j], v4[j], v5[j]);                                \
        }                                                                               \
    return bad;                                                                         \
}

#if FC_X86
/* The same input transform in float32 on eight tiles at a time (AVX2 code,
 * which the AVX-512 variant runs too). The item's input rows are first copied, zero-
 * padded, into six rows of L8 columns per row of tiles (column pl + j: input
 * column j; a row outside the image: zeros). For tiles u0 to u0 + 7, eight
 * vectors each hold one tile's columns M tq to M tq + 7 of an input row; as
 * an 8 x 8 transpose they become the six columns' vectors across the tiles.
 * B^T down the tile's six rows, then along them (FC_DEFINE_WINO6_IN's order,
 * so the bits agree) gives the 36 values of the eight tiles as vectors,
 * stored at slots u0 to u0 + 7.
 * Tiles may come from different rows of tiles, so rows of few tiles need no
 * path of their own. Rows of more than FC_WINO6_VIN_TQ tiles take the generic
 * loop, which the compiler vectorises well there. (Zen 3, F(4x4, 3x3)'s
 * input transform against the generic one, both as built: 1.2-1.45x faster
 * on rows of 5 to 8 tiles, 1.1x on rows of 2, the same on rows of 4; on
 * longer rows the same or up to 1.35x slower.) buf: 6 (r1 - r0) L8 floats. */
#define FC_WINO6_VIN_TQ 8
#define FC_DEFINE_WINO6_IN8(NAME, TARGET, M, GENERIC)                                    \
TARGET static int NAME(const float *x, fc_index C, fc_index H, fc_index W, fc_index c,   \
                       fc_index TP, fc_index r0, fc_index r1, fc_index pt, fc_index pl,  \
                       fc_index TQ, float lim, float *restrict buf, float *restrict v,   \
                       fc_index ldv)                                                     \
{                                                                                        \
    typedef float v8 __attribute__((vector_size(32), aligned(4)));                       \
    const fc_index L = FC_WINO6_ROW8(M, W, TQ, pl), S = (r1 - r0) * TQ;                  \
    const __m256 sign = _mm256_set1_ps(-0.0f), vlim = _mm256_set1_ps(lim);              \
    __m256 bad = _mm256_setzero_ps();                                                    \
    fc_index r, i, j, u0, a, b;                                                          \
    if (TQ > FC_WINO6_VIN_TQ)  /* long rows: the generic loop vectorises well */       \
        return GENERIC(x, C, H, W, c, TP, r0, r1, pt, pl, TQ, lim, buf, v, ldv);        \
    for (r = r0; r < r1; r++) {                                                          \
        const float *xc = x + ((r / TP) * C + c) * H * W;                                \
        for (i = 0; i < 6; i++) {                                                        \
            float *restrict row = buf + ((r - r0) * 6 + i) * L;                          \
            fc_index h = (M) * (r % TP) - pt + i;                                        \
            for (j = 0; j < L; j += 8) _mm256_storeu_ps(row + j, _mm256_setzero_ps());  \
            if (h < 0 || h >= H) continue;                                               \
            /* whole vectors, then the last part vector (masked loads are                \
             * microcoded on AMD's Zen cores: only that one) */                          \
            for (j = 0; j < W; j += 8) {                                                 \
                __m256 d = W - j >= 8 ? _mm256_loadu_ps(xc + h * W + j)                  \
                                      : FC_PS256_MLOAD(xc + h * W + j, W - j);           \
                bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_andnot_ps(sign, d), vlim,   \
                                                      _CMP_NLE_UQ));                     \
                if (W - j >= 8)                                                          \
                    _mm256_storeu_ps(row + pl + j, d);                                   \
                else                                                                     \
                    fc_store_part_ps256(row + pl + j, d, W - j);                         \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    for (u0 = 0; u0 < S; u0 += 8) {                                                      \
        const fc_index n = S - u0 < 8 ? S - u0 : 8;                                      \
        const float *base[8];                                                            \
        v8 z[6][6];                                                                      \
        for (j = 0; j < 8; j++) {  /* lanes past the last tile repeat it */              \
            fc_index uu = u0 + (j < n ? j : n - 1);                                      \
            base[j] = buf + (uu / TQ) * 6 * L + (M) * (uu % TQ);                         \
        }                                                                                \
        for (a = 0; a < 6; a++) {                                                        \
            __m256 q0 = _mm256_loadu_ps(base[0] + a * L), q1 = _mm256_loadu_ps(base[1] + a * L); \
            __m256 q2 = _mm256_loadu_ps(base[2] + a * L), q3 = _mm256_loadu_ps(base[3] + a * L); \
            __m256 q4 = _mm256_loadu_ps(base[4] + a * L), q5 = _mm256_loadu_ps(base[5] + a * L); \
            __m256 q6 = _mm256_loadu_ps(base[6] + a * L), q7 = _mm256_loadu_ps(base[7] + a * L); \
            __m256 t0 = _mm256_unpacklo_ps(q0, q1), t1 = _mm256_unpackhi_ps(q0, q1);     \
            __m256 t2 = _mm256_unpacklo_ps(q2, q3), t3 = _mm256_unpackhi_ps(q2, q3);     \
            __m256 t4 = _mm256_unpacklo_ps(q4, q5), t5 = _mm256_unpackhi_ps(q4, q5);     \
            __m256 t6 = _mm256_unpacklo_ps(q6, q7), t7 = _mm256_unpackhi_ps(q6, q7);     \
            __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee); \
            __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee); \
            __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee); \
            __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee); \
            /* column i of the eight tiles: lanes 0-3 from s_i's low half, 4-7 from s_{i+4}'s */ \
            z[a][0] = (v8)_mm256_permute2f128_ps(s0, s4, 0x20);                          \
            z[a][1] = (v8)_mm256_permute2f128_ps(s1, s5, 0x20);                          \
            z[a][2] = (v8)_mm256_permute2f128_ps(s2, s6, 0x20);                          \
            z[a][3] = (v8)_mm256_permute2f128_ps(s3, s7, 0x20);                          \
            z[a][4] = (v8)_mm256_permute2f128_ps(s0, s4, 0x31);                          \
            z[a][5] = (v8)_mm256_permute2f128_ps(s1, s5, 0x31);                          \
        }                                                                                \
        for (b = 0; b < 6; b++) {  /* down each column, as FC_DEFINE_WINO6_IN: same bits */ \
            v8 d0 = z[0][b], d1 = z[1][b], d2 = z[2][b], d3 = z[3][b], d4 = z[4][b];      \
            v8 d5 = z[5][b];                                                             \
            FC_WINO4_BT(v8, d0, d1, d2, d3, d4, d5, z[0][b], z[1][b], z[2][b], z[3][b],  \
                        z[4][b], z[5][b]);                                               \
        }                                                                                \
        for (a = 0; a < 6; a++) {  /* then along each row */                             \
            v8 o[6];                                                                     \
            FC_WINO4_BT(v8, z[a][0], z[a][1], z[a][2], z[a][3], z[a][4], z[a][5], o[0],  \
                        o[1], o[2], o[3], o[4], o[5]);                                   \
            for (b = 0; b < 6; b++)                                                      \
                fc_store_part_ps256(v + (6 * a + b) * ldv + u0, (__m256)o[b], n);        \
        }                                                                                \
    }                                                                                    \
    return !_mm256_testz_ps(bad, bad);                                                   \
}
#endif

/* Its output transform, with FC_DEFINE_WINO_OUT's arguments (m: 36 rows, TQ
 * slots per row of tiles; buf: (6 M + M^2) (r1 - r0) TQ); the M x M block
 * of tile (tp, tq) goes to rows M tp + i, columns M tq + j below P, Q. */
#define FC_WINO6_TO_T(M, k, val) ta[(k) * S + u] = (val)
#define FC_WINO6_TO_O(M, k, val) o[((k) * (M) + j) * S + u] = (val) + b
#define FC_DEFINE_WINO6_OUT(NAME, T, TARGET, M)                                         \
TARGET static void NAME(const T *restrict m, fc_index ldm, fc_index TP, fc_index r0,    \
                        fc_index r1, fc_index TQ, T b, T *restrict buf, T *restrict y,   \
                        fc_index K, fc_index k, fc_index P, fc_index Q)                 \
{                                                                                       \
    const fc_index S = (r1 - r0) * TQ;                                                  \
    T *restrict t = buf, *restrict o = buf + 6 * (M) * S;                               \
    fc_index u, r, tq, a, i, j;                                                         \
    for (a = 0; a < 6; a++) {  /* along each row of the tile: t[M a + j] */             \
        const T *ma = m + 6 * a * ldm;                                                  \
        T *restrict ta = t + (M) * a * S;                                               \
        FC_IVDEP                                                                        \
        for (u = 0; u < S; u++)                                                         \
            FC_WINO6_AT(T, M, ma[u], ma[ldm + u], ma[2 * ldm + u], ma[3 * ldm + u],     \
                        ma[4 * ldm + u], ma[5 * ldm + u], FC_WINO6_TO_T);               \
    }                                                                                   \
    for (j = 0; j < (M); j++) {  /* down each column: o[M i + j], plus the bias */      \
        const T *tj = t + j * S;                                                        \
        FC_IVDEP                                                                        \
        for (u = 0; u < S; u++)                                                         \
            FC_WINO6_AT(T, M, tj[u], tj[(M) * S + u], tj[2 * (M) * S + u],              \
                        tj[3 * (M) * S + u], tj[4 * (M) * S + u], tj[5 * (M) * S + u],  \
                        FC_WINO6_TO_O);                                                 \
    }                                                                                   \
    for (r = r0; r < r1; r++) {  /* interleaved into the rows */                        \
        fc_index tp = r % TP, s = (r - r0) * TQ;                                        \
        for (i = 0; i < (M) && (M) * tp + i < P; i++) {                                 \
            T *restrict yr = y + (((r / TP) * K + k) * P + (M) * tp + i) * Q;           \
            const T *oi = o + (M) * i * S + s;                                          \
            for (tq = 0; tq < Q / (M); tq++)                                            \
                for (j = 0; j < (M); j++) yr[(M) * tq + j] = oi[j * S + tq];            \
            for (j = Q / (M) * (M); j < Q; j++) yr[j] = oi[(j % (M)) * S + Q / (M)];    \
        }                                                                               \
    }                                                                                   \
}

/* A applied to four values (A = (A^T)^T: powers of two only) */
#define FC_WINO4_A(T, g0, g1, g2, g3, o0, o1, o2, o3, o4, o5)                            \
    do {                                                                                \
        T s02_ = g0 + g2, s13_ = g1 + g3, q02_ = g0 + 4 * g2, q13_ = 2 * g1 + 8 * g3;   \
        o0 = g0;                                                                        \
        o1 = s02_ + s13_;                                                               \
        o2 = s02_ - s13_;                                                               \
        o3 = q02_ + q13_;                                                               \
        o4 = q02_ - q13_;                                                               \
        o5 = g3;                                                                        \
    } while (0)

/* Its transposed output transform for grad_weight, with FC_DEFINE_WINO_GY's
 * arguments and result: z[xi * ldz + u] = (A dy A^T)[xi], xi = 6 a + b, for
 * the 4x4 block dy of the tile in slot u = (r - r0) TQ + tq (zero past P, Q).
 * buf: 40 (r1 - r0) TQ: the blocks' 16 values split into arrays of their own
 * (d), then A down the columns (t), then along the rows. */
#define FC_DEFINE_WINO4_GY(NAME, T, TARGET)                                             \
TARGET static int NAME(const T *gy, fc_index K, fc_index P, fc_index Q, fc_index k,     \
                       fc_index TP, fc_index r0, fc_index r1, fc_index TQ, T lim,       \
                       T *restrict buf, T *restrict z, fc_index ldz)                    \
{                                                                                       \
    const fc_index S = (r1 - r0) * TQ;                                                  \
    T *restrict d = buf, *restrict t = buf + 16 * S;                                    \
    fc_index r, i, j, u, a;                                                             \
    int bad = 0;                                                                        \
    for (r = r0; r < r1; r++) {                                                         \
        fc_index tp = r % TP, s = (r - r0) * TQ, tq;                                    \
        for (i = 0; i < 4; i++) {                                                       \
            T *restrict di = d + 4 * i * S + s;                                         \
            const T *src = gy + (((r / TP) * K + k) * P + 4 * tp + i) * Q;              \
            if (4 * tp + i >= P) {                                                      \
                for (j = 0; j < 4; j++)                                                 \
                    for (tq = 0; tq < TQ; tq++) di[j * S + tq] = 0;                     \
                continue;                                                               \
            }                                                                           \
            for (j = 0; j < Q; j++) bad |= FC_WINO_BAD(src[j], lim);                    \
            for (tq = 0; tq < Q / 4; tq++)                                              \
                for (j = 0; j < 4; j++) di[j * S + tq] = src[4 * tq + j];               \
            for (tq = Q / 4; tq < TQ; tq++)  /* the last, partial block */              \
                for (j = 0; j < 4; j++)                                                 \
                    di[j * S + tq] = 4 * tq + j < Q ? src[4 * tq + j] : 0;              \
        }                                                                               \
    }                                                                                   \
    for (j = 0; j < 4; j++) {  /* down each column: t[4 a + j] */                       \
        const T *c0 = d + j * S, *c1 = c0 + 4 * S, *c2 = c0 + 8 * S, *c3 = c0 + 12 * S; \
        T *restrict t0 = t + j * S, *restrict t1 = t0 + 4 * S, *restrict t2 = t0 + 8 * S; \
        T *restrict t3 = t0 + 12 * S, *restrict t4 = t0 + 16 * S;                       \
        T *restrict t5 = t0 + 20 * S;                                                   \
        FC_IVDEP                                                                        \
        for (u = 0; u < S; u++)                                                         \
            FC_WINO4_A(T, c0[u], c1[u], c2[u], c3[u], t0[u], t1[u], t2[u], t3[u], t4[u],  \
                       t5[u]);                                                          \
    }                                                                                   \
    for (a = 0; a < 6; a++) {  /* along each row: z[6 a + b] */                         \
        const T *c0 = t + 4 * a * S, *c1 = c0 + S, *c2 = c0 + 2 * S, *c3 = c0 + 3 * S;  \
        T *restrict z0 = z + 6 * a * ldz, *restrict z1 = z0 + ldz;                      \
        T *restrict z2 = z0 + 2 * ldz, *restrict z3 = z0 + 3 * ldz;                     \
        T *restrict z4 = z0 + 4 * ldz, *restrict z5 = z0 + 5 * ldz;                     \
        FC_IVDEP                                                                        \
        for (u = 0; u < S; u++)                                                         \
            FC_WINO4_A(T, c0[u], c1[u], c2[u], c3[u], z0[u], z1[u], z2[u], z3[u], z4[u],  \
                       z5[u]);                                                          \
    }                                                                                   \
    return bad;                                                                         \
}

/* Its weight transform G g G^T into the packed panels, laid out as
 * FC_DEFINE_WINO_W's (36 elements xi = 6 a + b), computed in double (G's
 * sixths and 24ths are inexact) and rounded once; the MR channels of a panel
 * are one vector's lanes (scalar, it took 60% of a 256-channel 14x14 layer). */
#define FC_DEFINE_WINO4_W(NAME, T, MR, TARGET)                                          \
TARGET static void NAME(const T *w, fc_index K, fc_index C, fc_index k0, T *apack)     \
{                                                                                       \
    typedef T vec __attribute__((vector_size(MR * sizeof(T)), aligned(sizeof(T))));   \
    typedef double vd __attribute__((vector_size(MR * sizeof(double)),                \
                                     aligned(sizeof(double))));                         \
    const fc_index ld = (K + MR - 1) / MR * MR * C;  /* between elements xi */         \
    fc_index c0, c, kk, i;                                                              \
    vec buf[36][FC_WINO_CB];                                                            \
    for (c0 = 0; c0 < C; c0 += FC_WINO_CB) {                                            \
        const fc_index cn = C - c0 < FC_WINO_CB ? C - c0 : FC_WINO_CB;                  \
        for (c = c0; c < c0 + cn; c++) {                                                \
            /* t = G g (down the kernel's columns: t<a><column>), then t G^T */         \
            vd g[9], t00, t10, t20, t30, t40, t50, t01, t11, t21, t31, t41, t51;        \
            vd t02, t12, t22, t32, t42, t52;                                            \
            FC_WINO_TAPS(g, w, K, C, k0, c, MR, 9);                                        \
            FC_WINO4_G(vd, g[0], g[3], g[6], t00, t10, t20, t30, t40, t50);             \
            FC_WINO4_G(vd, g[1], g[4], g[7], t01, t11, t21, t31, t41, t51);             \
            FC_WINO4_G(vd, g[2], g[5], g[8], t02, t12, t22, t32, t42, t52);             \
            FC_WINO4_G_ROW(vec, vd, buf, c - c0, 0, t00, t01, t02);                     \
            FC_WINO4_G_ROW(vec, vd, buf, c - c0, 1, t10, t11, t12);                     \
            FC_WINO4_G_ROW(vec, vd, buf, c - c0, 2, t20, t21, t22);                     \
            FC_WINO4_G_ROW(vec, vd, buf, c - c0, 3, t30, t31, t32);                     \
            FC_WINO4_G_ROW(vec, vd, buf, c - c0, 4, t40, t41, t42);                     \
            FC_WINO4_G_ROW(vec, vd, buf, c - c0, 5, t50, t51, t52);                     \
        }                                                                               \
        FC_WINO_FLUSH(buf, 36, apack, ld, k0, C, c0, cn, MR);                           \
    }                                                                                   \
}

/* row a of t G^T, rounded to the vectors of T, into elements 6 a to 6 a + 5
 * of the buffer's column j */
#define FC_WINO4_G_ROW(VT, VD, buf, j, a, t0, t1, t2)                                   \
    do {                                                                                \
        VD u0_, u1_, u2_, u3_, u4_, u5_;                                                \
        FC_WINO4_G(VD, t0, t1, t2, u0_, u1_, u2_, u3_, u4_, u5_);                       \
        buf[6 * a][j] = __builtin_convertvector(u0_, VT);                               \
        buf[6 * a + 1][j] = __builtin_convertvector(u1_, VT);                           \
        buf[6 * a + 2][j] = __builtin_convertvector(u2_, VT);                           \
        buf[6 * a + 3][j] = __builtin_convertvector(u3_, VT);                           \
        buf[6 * a + 4][j] = __builtin_convertvector(u4_, VT);                           \
        buf[6 * a + 5][j] = __builtin_convertvector(u5_, VT);                           \
    } while (0)

/* G applied to three values (or vectors) of type TD, in double */
#define FC_WINO4_G(TD, g0, g1, g2, o0, o1, o2, o3, o4, o5)                              \
    do {                                                                                \
        TD h0_ = g0, h1_ = g1, h2_ = g2, s_ = h0_ + h2_, q_ = h0_ + 4 * h2_;            \
        o0 = h0_ * 0.25;                                                                \
        o1 = (s_ + h1_) * (-1.0 / 6);                                                   \
        o2 = (s_ - h1_) * (-1.0 / 6);                                                   \
        o3 = (q_ + 2 * h1_) * (1.0 / 24);                                               \
        o4 = (q_ - 2 * h1_) * (1.0 / 24);                                               \
        o5 = h2_;                                                                       \
    } while (0)

/* The weight transform G g G^T of F((7 - R) x (7 - R), R x R) for R = 2, 4,
 * 5 (R = 3: FC_DEFINE_WINO4_W), into the panels as FC_DEFINE_WINO4_W's. Row
 * i of G, for point p_i of 0, 1, -1, 2, -2, is s_i (1, p_i, ..., p_i^(R-1)),
 * s_i = 1 / prod_{j != i} (p_i - p_j) (1/4, -1/6, -1/6, 1/24, 1/24), and the
 * last, at infinity, (0, ..., 0, 1): the input transform B^T is the same for
 * every R (Toom-Cook on the same six points), only G and A^T change. In
 * double, by Horner's rule: its products by p_i are exact, so FMAs or not
 * every variant rounds alike, once per sum and once by s_i. */
#define FC_WINO6_G(TD, R, h, st, ia, out)                                               \
    do {                                                                                \
        static const double p_[5] = {0, 1, -1, 2, -2};                                  \
        static const double s_[5] = {0.25, -1.0 / 6, -1.0 / 6, 1.0 / 24, 1.0 / 24};     \
        TD acc_ = h[((R) - 1) * (st)];                                                  \
        fc_index n_;                                                                    \
        if ((ia) < 5) {                                                                 \
            for (n_ = (R) - 2; n_ >= 0; n_--) acc_ = acc_ * p_[ia] + h[n_ * (st)];       \
            acc_ = acc_ * s_[ia];                                                       \
        }                                                                               \
        out = acc_;                                                                     \
    } while (0)
#define FC_DEFINE_WINO6_W(NAME, T, MR, TARGET, R)                                       \
TARGET static void NAME(const T *w, fc_index K, fc_index C, fc_index k0, T *apack)     \
{                                                                                       \
    typedef T vec __attribute__((vector_size(MR * sizeof(T)), aligned(sizeof(T))));   \
    typedef double vd __attribute__((vector_size(MR * sizeof(double)),                \
                                     aligned(sizeof(double))));                         \
    const fc_index ld = (K + MR - 1) / MR * MR * C;  /* between elements xi */         \
    fc_index c0, c, kk, i, a, j;                                                        \
    vec buf[36][FC_WINO_CB];                                                            \
    for (c0 = 0; c0 < C; c0 += FC_WINO_CB) {                                            \
        const fc_index cn = C - c0 < FC_WINO_CB ? C - c0 : FC_WINO_CB;                  \
        for (c = c0; c < c0 + cn; c++) {                                                \
            vd g[(R) * (R)], t[6][R], u_;  /* t = G g (down the columns), then t G^T */ \
            FC_WINO_TAPS(g, w, K, C, k0, c, MR, (R) * (R));                             \
            for (a = 0; a < 6; a++)                                                     \
                for (j = 0; j < (R); j++) FC_WINO6_G(vd, R, (g + j), (R), a, t[a][j]);  \
            for (a = 0; a < 6; a++)                                                     \
                for (j = 0; j < 6; j++) {                                               \
                    FC_WINO6_G(vd, R, t[a], 1, j, u_);                                  \
                    buf[6 * a + j][c - c0] = __builtin_convertvector(u_, vec);          \
                }                                                                       \
        }                                                                               \
        FC_WINO_FLUSH(buf, 36, apack, ld, k0, C, c0, cn, MR);                           \
    }                                                                                   \
}

typedef void (*fc_wino_w_f32)(const float *, fc_index, fc_index, fc_index, float *);
typedef void (*fc_wino_w_f64)(const double *, fc_index, fc_index, fc_index, double *);
typedef int (*fc_wino_in_f32)(const float *, fc_index, fc_index, fc_index, fc_index, fc_index,
                              fc_index, fc_index, fc_index, fc_index, fc_index, float, float *,
                              float *, fc_index);
typedef int (*fc_wino_in_f64)(const double *, fc_index, fc_index, fc_index, fc_index, fc_index,
                              fc_index, fc_index, fc_index, fc_index, fc_index, double, double *,
                              double *, fc_index);
typedef void (*fc_wino_out_f32)(const float *, fc_index, fc_index, fc_index, fc_index, fc_index,
                                float, float *, float *, fc_index, fc_index, fc_index, fc_index);
typedef void (*fc_wino_out_f64)(const double *, fc_index, fc_index, fc_index, fc_index, fc_index,
                                double, double *, double *, fc_index, fc_index, fc_index,
                                fc_index);

typedef int (*fc_wino_gy_f32)(const float *, fc_index, fc_index, fc_index, fc_index, fc_index,
                              fc_index, fc_index, fc_index, float, float *, float *, fc_index);
typedef int (*fc_wino_gy_f64)(const double *, fc_index, fc_index, fc_index, fc_index,
                              fc_index, fc_index, fc_index, fc_index, double, double *,
                              double *, fc_index);

typedef struct {
    fc_wino_w_f32 w_f32;
    fc_wino_w_f64 w_f64;
    fc_wino_in_f32 in_f32;
    fc_wino_in_f64 in_f64;
    fc_wino_out_f32 out_f32;
    fc_wino_out_f64 out_f64;
    /* F(M x M, R x R) on 6x6 tiles, M + R = 7, with the same arguments: [M - 2]
     * (F(4x4, 3x3) at [2]), the weights' [R - 2] */
    fc_wino_w_f32 w6_f32[4];
    fc_wino_w_f64 w6_f64[4];
    fc_wino_in_f32 in6_f32[4];
    fc_wino_in_f64 in6_f64[4];
    fc_wino_out_f32 out6_f32[4];
    fc_wino_out_f64 out6_f64[4];
    fc_wino_gy_f32 gy_f32;  /* grad_weight's, F(2x2) then F(4x4) */
    fc_wino_gy_f64 gy_f64;
    fc_wino_gy_f32 gy4_f32;
    fc_wino_gy_f64 gy4_f64;
    int mr;  /* the panels' rows: checked against fc_isas' at import */
} fc_wino;

/* F(M x M, R x R)'s data transforms */
#define FC_DEFINE_WINO6_M(ISA, TARGET, MR, M, R)                                        \
    FC_DEFINE_WINO6_IN(fc_wino6_in##M##_##ISA##_f32, float, TARGET, M)                  \
    FC_DEFINE_WINO6_IN(fc_wino6_in##M##_##ISA##_f64, double, TARGET, M)                 \
    FC_DEFINE_WINO6_OUT(fc_wino6_out##M##_##ISA##_f32, float, TARGET, M)                \
    FC_DEFINE_WINO6_OUT(fc_wino6_out##M##_##ISA##_f64, double, TARGET, M)

/* MR: the ISA's register block of output channels (fc_isas' mr) */
#define FC_DEFINE_WINO(ISA, TARGET, MR)                                                 \
    FC_DEFINE_WINO_W(fc_wino_w_##ISA##_f32, float, MR, TARGET)                          \
    FC_DEFINE_WINO_W(fc_wino_w_##ISA##_f64, double, MR, TARGET)                         \
    FC_DEFINE_WINO_IN(fc_wino_in_##ISA##_f32, float, TARGET)                            \
    FC_DEFINE_WINO_IN(fc_wino_in_##ISA##_f64, double, TARGET)                           \
    FC_DEFINE_WINO_OUT(fc_wino_out_##ISA##_f32, float, TARGET)                          \
    FC_DEFINE_WINO_OUT(fc_wino_out_##ISA##_f64, double, TARGET)                         \
    FC_DEFINE_WINO4_W(fc_wino6_w3_##ISA##_f32, float, MR, TARGET)                       \
    FC_DEFINE_WINO4_W(fc_wino6_w3_##ISA##_f64, double, MR, TARGET)                      \
    FC_DEFINE_WINO6_M(ISA, TARGET, MR, 2, 5)                                            \
    FC_DEFINE_WINO6_M(ISA, TARGET, MR, 3, 4)                                            \
    FC_DEFINE_WINO6_M(ISA, TARGET, MR, 4, 3)                                            \
    FC_DEFINE_WINO6_M(ISA, TARGET, MR, 5, 2)                                            \
    FC_DEFINE_WINO6_W(fc_wino6_w2_##ISA##_f32, float, MR, TARGET, 2)                    \
    FC_DEFINE_WINO6_W(fc_wino6_w2_##ISA##_f64, double, MR, TARGET, 2)                   \
    FC_DEFINE_WINO6_W(fc_wino6_w4_##ISA##_f32, float, MR, TARGET, 4)                    \
    FC_DEFINE_WINO6_W(fc_wino6_w4_##ISA##_f64, double, MR, TARGET, 4)                   \
    FC_DEFINE_WINO6_W(fc_wino6_w5_##ISA##_f32, float, MR, TARGET, 5)                    \
    FC_DEFINE_WINO6_W(fc_wino6_w5_##ISA##_f64, double, MR, TARGET, 5)                   \
    FC_DEFINE_WINO_GY(fc_wino_gy_##ISA##_f32, float, TARGET)                            \
    FC_DEFINE_WINO_GY(fc_wino_gy_##ISA##_f64, double, TARGET)                           \
    FC_DEFINE_WINO4_GY(fc_wino4_gy_##ISA##_f32, float, TARGET)                          \
    FC_DEFINE_WINO4_GY(fc_wino4_gy_##ISA##_f64, double, TARGET)
#define FC_WINO6_LIST(F, ISA, T)                                                        \
    fc_wino6_##F##2_##ISA##_##T, fc_wino6_##F##3_##ISA##_##T, fc_wino6_##F##4_##ISA##_##T, \
        fc_wino6_##F##5_##ISA##_##T
/* IN32: the float32 input transforms, "in" or the eight-tile "vin" */
#define FC_WINO(ISA, MR, IN32)                                                          \
    {fc_wino_w_##ISA##_f32, fc_wino_w_##ISA##_f64, fc_wino_in_##ISA##_f32,              \
     fc_wino_in_##ISA##_f64, fc_wino_out_##ISA##_f32, fc_wino_out_##ISA##_f64,           \
     {FC_WINO6_LIST(w, ISA, f32)}, {FC_WINO6_LIST(w, ISA, f64)},                         \
     {FC_WINO6_LIST(IN32, ISA, f32)}, {FC_WINO6_LIST(in, ISA, f64)},                     \
     {FC_WINO6_LIST(out, ISA, f32)}, {FC_WINO6_LIST(out, ISA, f64)},                     \
     fc_wino_gy_##ISA##_f32, fc_wino_gy_##ISA##_f64, fc_wino4_gy_##ISA##_f32,            \
     fc_wino4_gy_##ISA##_f64, MR}

#if FC_X86
#define FC_DEFINE_WINO6_VIN(ISA, TARGET)                                                \
    FC_DEFINE_WINO6_IN8(fc_wino6_vin2_##ISA##_f32, TARGET, 2, fc_wino6_in2_##ISA##_f32) \
    FC_DEFINE_WINO6_IN8(fc_wino6_vin3_##ISA##_f32, TARGET, 3, fc_wino6_in3_##ISA##_f32) \
    FC_DEFINE_WINO6_IN8(fc_wino6_vin4_##ISA##_f32, TARGET, 4, fc_wino6_in4_##ISA##_f32) \
    FC_DEFINE_WINO6_IN8(fc_wino6_vin5_##ISA##_f32, TARGET, 5, fc_wino6_in5_##ISA##_f32)
FC_DEFINE_WINO(avx512, FC_TARGET_AVX512, 8)
FC_DEFINE_WINO(avx2, FC_TARGET_AVX2, 4)
FC_DEFINE_WINO6_VIN(avx512, FC_TARGET_AVX512)
FC_DEFINE_WINO6_VIN(avx2, FC_TARGET_AVX2)
#endif
FC_DEFINE_WINO(base, , 4)

/* in the order of fc_isas: fc_winos[i] goes with fc_isas[i] */
static const fc_wino fc_winos[] = {
#if FC_X86
    FC_WINO(avx512, 8, vin),
    FC_WINO(avx2, 4, vin),
#endif
    FC_WINO(base, 4, in),
};
_Static_assert(sizeof(fc_winos) / sizeof(fc_winos[0]) == FC_N_ISAS, "one fc_wino per fc_isa");

#endif
