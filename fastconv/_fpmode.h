/* Flush-to-zero (FTZ) and denormals-are-zero (DAZ) for the convolution kernels.
 *
 * A multiply-add that reads or produces a denormal takes a microcode assist
 * on x86 (about 100 cycles instead of a fraction of one): measured, denormal
 * inputs made conv2d 70-340 times slower. The convolution kernels therefore
 * run with FTZ and DAZ set in every thread of their parallel regions (so
 * denormal inputs and results count as zero), and each thread puts back its
 * previous MXCSR when it leaves: the caller's threads and OpenMP's pooled
 * workers keep their own mode for everything else (NumPy, the pooling
 * kernels, whose max must see denormals as they are). Elsewhere than x86
 * both calls do nothing.
 */
#ifndef FASTCONV_FPMODE_H
#define FASTCONV_FPMODE_H

#if defined(__SSE2__) || defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define FC_MXCSR_FTZ 0x8000u
#define FC_MXCSR_DAZ 0x0040u

static inline unsigned int fc_ftz_on(void)
{
    unsigned int mode = _mm_getcsr();
    _mm_setcsr(mode | FC_MXCSR_FTZ | FC_MXCSR_DAZ);
    return mode;
}

static inline void fc_ftz_restore(unsigned int mode) { _mm_setcsr(mode); }
#else
static inline unsigned int fc_ftz_on(void) { return 0; }
static inline void fc_ftz_restore(unsigned int mode) { (void)mode; }
#endif

#endif
