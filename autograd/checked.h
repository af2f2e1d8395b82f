/*
 * autograd/checked.h — overflow-checked int64 arithmetic for sizes, shared by every op and layer
 * constructor that computes a size from what a caller gave (dims, attributes, widths).
 *
 * Why: signed overflow is undefined behaviour. A size computed from an absurd attribute (a
 * padding of 2^62, a kernel of INT64_MAX, an image of 2^31 x 2^31) must be refused with a
 * message naming the field, not wrapped into a nonsense number that a later check happens to
 * catch. So each step is checked *before* its result is used, and callers turn a false return
 * into an error in their own words (they know the op, the shapes and the field).
 */
#ifndef TAPEGRAD_CHECKED_H
#define TAPEGRAD_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/* *out = a + b; false (and *out unspecified) when that overflows int64. */
static inline bool tgi_add_ok(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* *out = a * b; false when that overflows int64. */
static inline bool tgi_mul_ok(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* *out = the product of n factors; false when any partial product overflows int64. */
static inline bool tgi_product_ok(int n, const int64_t *factors, int64_t *out) {
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        if (__builtin_mul_overflow(p, factors[i], &p)) return false;
    *out = p;
    return true;
}

/* What tgi_window_size found wrong, in the order it checks. */
typedef enum tgi_window_status {
    TGI_WINDOW_OK,
    TGI_WINDOW_BAD_KERNEL,     /* kernel < 1 */
    TGI_WINDOW_BAD_STRIDE,     /* stride < 1 */
    TGI_WINDOW_BAD_DILATION,   /* dilation < 1 */
    TGI_WINDOW_BAD_PAD,        /* pad < 0 */
    TGI_WINDOW_PAD_OVERFLOW,   /* 2 x pad overflows */
    TGI_WINDOW_SPAN_OVERFLOW,  /* the dilated kernel's extent dilation (kernel - 1) + 1 overflows */
    TGI_WINDOW_IN_OVERFLOW,    /* in + 2 x pad overflows */
    TGI_WINDOW_EMPTY,          /* the output would be < 1: the dilated kernel does not fit */
} tgi_window_status;

/* PyTorch's output length of a sliding window (convolution, pooling; floor mode):
 *   out = (in + 2 pad - dilation (kernel - 1) - 1) / stride + 1
 * with every step checked and the division done only once the numerator is >= 0, so no input
 * can overflow or divide by zero. *span gets the dilated kernel's extent once it is known (for
 * messages), *out the length when TGI_WINDOW_OK. in must be >= 0 (a tensor's dim). */
static inline tgi_window_status tgi_window_size(int64_t in, int64_t kernel, int64_t stride,
                                                int64_t pad, int64_t dilation, int64_t *span,
                                                int64_t *out) {
    int64_t padding, padded;
    if (kernel < 1) return TGI_WINDOW_BAD_KERNEL;
    if (stride < 1) return TGI_WINDOW_BAD_STRIDE;
    if (dilation < 1) return TGI_WINDOW_BAD_DILATION;
    if (pad < 0) return TGI_WINDOW_BAD_PAD;
    if (!tgi_mul_ok(2, pad, &padding)) return TGI_WINDOW_PAD_OVERFLOW;
    if (!tgi_mul_ok(dilation, kernel - 1, span) || !tgi_add_ok(*span, 1, span))
        return TGI_WINDOW_SPAN_OVERFLOW;
    if (!tgi_add_ok(in, padding, &padded)) return TGI_WINDOW_IN_OVERFLOW;
    if (padded < *span) return TGI_WINDOW_EMPTY;
    *out = (padded - *span) / stride + 1;
    return TGI_WINDOW_OK;
}

#endif
