/* tests/helpers.h — small helpers shared by the test files. */
#ifndef TAPEGRAD_TEST_HELPERS_H
#define TAPEGRAD_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

/* Every element of got within tol of want (absolute), with the first mismatch reported. */
static inline void expect_close(const float *got, const float *want, int64_t n, float tol,
                                const char *what) {
    for (int64_t i = 0; i < n; i++) {
        if (!(fabsf(got[i] - want[i]) <= tol)) {
            cr_expect_fail("%s[%lld] = %.7g, expected %.7g (tol %g)", what, (long long)i,
                           (double)got[i], (double)want[i], (double)tol);
            return;
        }
    }
    cr_expect(true);
}

/* The error message contains every one of the given fragments. */
#define expect_errmsg_has(ctx, ...)                                                             \
    do {                                                                                        \
        const char *fragments_[] = {__VA_ARGS__};                                               \
        for (size_t i_ = 0; i_ < sizeof fragments_ / sizeof fragments_[0]; i_++)                \
            cr_expect(strstr(tg_errmsg(ctx), fragments_[i_]) != NULL,                           \
                      "message \"%s\" lacks \"%s\"", tg_errmsg(ctx), fragments_[i_]);           \
    } while (0)

/* A persistent leaf holding data, with a gradient. */
static inline tg_tensor *leaf(tg_ctx *ctx, int ndim, const int64_t *shape, const float *data) {
    tg_tensor *t = tg_from_data(ctx, ndim, shape, data);
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_set_requires_grad(t, true), TG_OK);
    return t;
}

/* infer_shape of a user op whose output is shaped like its first input. */
static inline tg_status infer_like_first_input(const tg_op_call *call, tg_shape *out) {
    out->ndim = call->inputs[0]->ndim;
    for (int d = 0; d < TG_MAX_DIMS; d++) out->dims[d] = call->inputs[0]->shape[d];
    return TG_OK;
}

#endif
