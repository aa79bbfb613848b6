/* 64-byte aligned buffers for the kernels. malloc aligns to 16 bytes (large
 * blocks sit 16 bytes past a page), so whole-vector loads from its memory
 * straddle two cache lines: one load in two on AVX2, every one on AVX-512
 * (the GEMM micro-kernel ran 7-8% slower on such panels). */
#ifndef FASTCONV_ALLOC_H
#define FASTCONV_ALLOC_H

#include <stdlib.h>

#ifdef _WIN32
#include <malloc.h>
static void *fc_malloc64(size_t n) { return _aligned_malloc(n ? n : 1, 64); }
static void fc_free64(void *p) { _aligned_free(p); }
#else
static void *fc_malloc64(size_t n)
{
    void *p;
    return posix_memalign(&p, 64, n ? n : 1) ? NULL : p;
}
static void fc_free64(void *p) { free(p); }
#endif

#endif /* FASTCONV_ALLOC_H */
