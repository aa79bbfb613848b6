/* 64-byte aligned workspace for the kernels. malloc aligns to 16 bytes (large
 * blocks sit 16 bytes past a page), so whole-vector loads from its memory
 * straddle two cache lines: one load in two on AVX2, every one on AVX-512
 * (the GEMM micro-kernel ran 7-8% slower on such panels).
 *
 * Each thread keeps the blocks it frees (at most FC_CACHE_SLOTS of them,
 * FC_CACHE_BYTES in all, and FC_CACHE_TOTAL across the threads, so that a
 * pool of many threads holds no more) for its next calls. glibc hands large
 * blocks back to the system when they are freed (each is mmapped, or the
 * heap's top is trimmed), depending on what was freed before, and touching a
 * block afresh costs a page fault per 4 KiB: a 128-channel 28x28 layer took
 * 4.6 ms instead of 2.2 in a loop that hit it (850 faults per call). A
 * request no cached block fits first frees the thread's cache, so the cache
 * does not add to a call's peak beyond its own bounds (a reused block is at
 * most twice the request; blocks a call does not ask for stay cached). The
 * blocks go when their thread exits (its cache is a pthread key's value). */
#ifndef FASTCONV_ALLOC_H
#define FASTCONV_ALLOC_H

#include <stdlib.h>

#ifdef _WIN32
#include <malloc.h>
static void *fc_malloc64(size_t n) { return _aligned_malloc(n ? n : 1, 64); }
static void fc_free64(void *p) { _aligned_free(p); }
#else
#include <pthread.h>

#define FC_CACHE_SLOTS 6
#define FC_CACHE_BYTES ((size_t)32 << 20)
#define FC_CACHE_TOTAL ((size_t)64 << 20) /* per module: each has its own caches */
#define FC_HEADER 64 /* before each block: its size (keeps the block aligned) */

typedef struct {
    void *block[FC_CACHE_SLOTS]; /* the raw allocations, most recently freed first */
    size_t size[FC_CACHE_SLOTS];
    int count;
    size_t total;
} fc_cache;

static pthread_key_t fc_cache_key;
static pthread_once_t fc_cache_once = PTHREAD_ONCE_INIT;
static int fc_cache_ok;
static size_t fc_cache_all; /* bytes cached by every thread (atomic) */

static void fc_cache_clear(fc_cache *c)
{
    int i;
    for (i = 0; i < c->count; i++) free(c->block[i]);
    __atomic_sub_fetch(&fc_cache_all, c->total, __ATOMIC_RELAXED);
    c->count = 0;
    c->total = 0;
}

static void fc_cache_drop(void *c)
{
    fc_cache_clear((fc_cache *)c);
    free(c);
}

static void fc_cache_init(void)
{
    fc_cache_ok = pthread_key_create(&fc_cache_key, fc_cache_drop) == 0;
}

/* this thread's cache, or NULL (then blocks are freed at once) */
static fc_cache *fc_cache_get(void)
{
    fc_cache *c;
    pthread_once(&fc_cache_once, fc_cache_init);
    if (!fc_cache_ok) return NULL;
    c = (fc_cache *)pthread_getspecific(fc_cache_key);
    if (c == NULL && (c = (fc_cache *)calloc(1, sizeof *c)) != NULL
        && pthread_setspecific(fc_cache_key, c) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

static void fc_cache_take(fc_cache *c, int i)
{
    c->total -= c->size[i];
    __atomic_sub_fetch(&fc_cache_all, c->size[i], __ATOMIC_RELAXED);
    for (c->count--; i < c->count; i++) {
        c->block[i] = c->block[i + 1];
        c->size[i] = c->size[i + 1];
    }
}

static void *fc_malloc64(size_t n)
{
    fc_cache *c = fc_cache_get();
    size_t size = (n + 4095) / 4096 * 4096 + FC_HEADER; /* whole pages: sizes recur */
    void *raw = NULL;
    int i, best = -1;
    if (size < n) return NULL; /* overflow */
    if (c != NULL) {
        /* the smallest cached block that fits, unless more than twice the need */
        for (i = 0; i < c->count; i++)
            if (c->size[i] >= size && c->size[i] <= 2 * size
                && (best < 0 || c->size[i] < c->size[best]))
                best = i;
        if (best >= 0) {
            raw = c->block[best];
            fc_cache_take(c, best);
            return (char *)raw + FC_HEADER;
        }
        fc_cache_clear(c);
    }
    if (posix_memalign(&raw, 64, size)) return NULL;
    *(size_t *)raw = size;
    return (char *)raw + FC_HEADER;
}

static void fc_free64(void *p)
{
    fc_cache *c;
    void *raw;
    size_t size;
    int i;
    if (p == NULL) return;
    raw = (char *)p - FC_HEADER;
    size = *(size_t *)raw;
    c = fc_cache_get();
    if (c == NULL || size > FC_CACHE_BYTES) {
        free(raw);
        return;
    }
    /* the oldest blocks make room */
    while (c->count > 0 && (c->count == FC_CACHE_SLOTS || c->total + size > FC_CACHE_BYTES)) {
        void *old = c->block[c->count - 1];
        fc_cache_take(c, c->count - 1);
        free(old);
    }
    if (__atomic_add_fetch(&fc_cache_all, size, __ATOMIC_RELAXED) > FC_CACHE_TOTAL) {
        __atomic_sub_fetch(&fc_cache_all, size, __ATOMIC_RELAXED); /* other threads hold enough */
        free(raw);
        return;
    }
    for (i = c->count; i > 0; i--) {
        c->block[i] = c->block[i - 1];
        c->size[i] = c->size[i - 1];
    }
    c->block[0] = raw;
    c->size[0] = size;
    c->count++;
    c->total += size; /* (fc_cache_all counted it above) */
}
#endif

#endif /* FASTCONV_ALLOC_H */
