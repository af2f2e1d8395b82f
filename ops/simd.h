/*
 * ops/simd.h — eight floats as one value (GCC/Clang vector extension): the AVX2 width the
 * hand-tiled kernels (ops/conv_same.c, ops/batch_norm.c) are written for. Loads go through
 * memcpy, so no alignment is assumed; without AVX the compiler splits them into halves.
 */
#ifndef TAPEGRAD_SIMD_H
#define TAPEGRAD_SIMD_H

#include <string.h>

typedef float tgi_v8 __attribute__((vector_size(32)));

static inline tgi_v8 tgi_load8(const float *p) {
    tgi_v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline tgi_v8 tgi_splat8(float s) {
    return (tgi_v8){s, s, s, s, s, s, s, s};
}

/* Whether the target multiplies and adds vectors in one rounding in hardware (a kernel that
 * fuses only then keeps the other path's bits on CPUs without FMA). TGI_FMA8(acc, a, b) is
 * acc + a * b, fused. */
#if defined(__FMA__) && defined(__has_builtin)
#if __has_builtin(__builtin_elementwise_fma)
#define TGI_HAVE_FMA8 1
#define TGI_FMA8(acc, a, b) __builtin_elementwise_fma((a), (b), (acc))
#endif
#endif

#endif /* TAPEGRAD_SIMD_H */
