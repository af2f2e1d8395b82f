/*
 * tests/test_misuse_higher.c — the higher-order products refuse bad arguments with a message:
 * NULL handles and arrays, stale or foreign tensors, shapes that do not match, inputs that were
 * never recorded from, a no-grad scope, and a non-scalar loss.
 */
#include "misuse.h"

/* loss = sum(w * w) on the world's tape; w is persistent and requires a gradient */
static tg_tensor *world_loss(void) {
    tg_tensor *loss = tg_sum(W.tape, tg_mul(W.tape, W.w, W.w));
    cr_assert_not_null(loss, "%s", tg_errmsg(W.ctx));
    return loss;
}

/* A tensor of the step before the last reset (its header stays readable: see tg_tape_reset). */
static tg_tensor *stale_tensor(void) {
    tg_tensor *old = tg_tape_from_data(W.tape, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_tape_reset(W.tape);
    return old;
}

MISUSE(tg_jvp) {
    tg_tensor *old = stale_tensor();
    tg_tensor *loss = world_loss(), *out = NULL;
    tg_tensor *v = tg_tape_from_data(W.tape, TG_SHAPE(3), (float[]){1, 0, 0});
    tg_tensor *wrong = tg_tape_from_data(W.tape, TG_SHAPE(2), (float[]){1, 0});
    REFUSED_QUIETLY(tg_jvp(NULL, loss, 1, &W.w, &v, &out));
    REFUSED(tg_jvp(W.tape, NULL, 1, &W.w, &v, &out));
    REFUSED(tg_jvp(W.tape, loss, 1, NULL, &v, &out));
    REFUSED(tg_jvp(W.tape, loss, 1, &W.w, NULL, &out));
    REFUSED(tg_jvp(W.tape, loss, 1, &W.w, &v, NULL));
    REFUSED(tg_jvp(W.tape, loss, -1, &W.w, &v, &out));
    REFUSED(tg_jvp(W.tape, loss, 1, &W.w, &wrong, &out));
    REFUSED(tg_jvp(W.tape, loss, 1, &W.w, &old, &out));
    REFUSED(tg_jvp(W.tape, old, 1, &W.w, &v, &out));
    REFUSED(tg_jvp(W.tape, loss, 1, &W.foreign, &v, &out));
    REFUSED(tg_jvp(W.tape, loss, 1, &W.x, &v, &out)); /* never recorded from: no requires_grad */
    tg_no_grad_begin(W.tape);
    REFUSED(tg_jvp(W.tape, loss, 1, &W.w, &v, &out));
    tg_no_grad_end(W.tape);
    /* and it works */
    cr_expect_eq(tg_jvp(W.tape, loss, 1, &W.w, &v, &out), TG_OK, "%s", tg_errmsg(W.ctx));
    cr_expect_float_eq(out->data[0], 1.0f, 1e-6); /* d sum(w^2) along e0 = 2 w0 = 1 */
}

MISUSE(tg_vjp) {
    tg_tensor *loss = world_loss();
    float g[3];
    const float one = 1.0f;
    REFUSED_QUIETLY(tg_vjp(NULL, loss, &one, 1, &W.w, (float *[]){g}));
    REFUSED(tg_vjp(W.tape, NULL, &one, 1, &W.w, (float *[]){g}));
    REFUSED(tg_vjp(W.tape, loss, NULL, 1, &W.w, (float *[]){g}));
    REFUSED(tg_vjp(W.tape, loss, &one, 1, &W.w, NULL));
    REFUSED(tg_vjp(W.tape, loss, &one, 1, &W.w, (float *[]){NULL}));
    REFUSED(tg_vjp(W.tape, loss, &one, 1, &W.foreign, (float *[]){g}));
    REFUSED(tg_vjp(W.tape, loss, &one, 1, &W.x, (float *[]){g}));
    cr_expect_eq(tg_vjp(W.tape, loss, &one, 1, &W.w, (float *[]){g}), TG_OK, "%s", tg_errmsg(W.ctx));
    cr_expect_float_eq(g[2], 1.0f, 1e-6);
    REFUSED(tg_vjp(W.tape, loss, &one, 1, &W.w, (float *[]){g})); /* the step was walked */
}

MISUSE(tg_hvp) {
    tg_tensor *loss = world_loss(), *vector = tg_mul(W.tape, W.w, W.w);
    const float v[3] = {1, 2, 3};
    float hv[3];
    REFUSED_QUIETLY(tg_hvp(NULL, loss, 1, &W.w, (const float *[]){v}, (float *[]){hv}));
    REFUSED(tg_hvp(W.tape, NULL, 1, &W.w, (const float *[]){v}, (float *[]){hv}));
    REFUSED(tg_hvp(W.tape, vector, 1, &W.w, (const float *[]){v}, (float *[]){hv}));
    REFUSED(tg_hvp(W.tape, loss, 1, &W.w, NULL, (float *[]){hv}));
    REFUSED(tg_hvp(W.tape, loss, 1, &W.w, (const float *[]){v}, NULL));
    REFUSED(tg_hvp(W.tape, loss, 1, &W.w, (const float *[]){NULL}, (float *[]){hv}));
    REFUSED(tg_hvp(W.tape, loss, 1, &W.foreign, (const float *[]){v}, (float *[]){hv}));
    cr_expect_eq(tg_hvp(W.tape, loss, 1, &W.w, (const float *[]){v}, (float *[]){hv}), TG_OK,
                 "%s", tg_errmsg(W.ctx));
    for (int i = 0; i < 3; i++) cr_expect_float_eq(hv[i], 2.0f * v[i], 1e-5); /* H = 2 I */
}

MISUSE(tg_grad) {
    tg_tensor *old = stale_tensor();
    tg_tensor *loss = world_loss(), *vector = tg_mul(W.tape, W.w, W.w), *g = NULL;
    REFUSED_QUIETLY(tg_grad(NULL, loss, 1, &W.w, &g));
    REFUSED(tg_grad(W.tape, NULL, 1, &W.w, &g));
    REFUSED(tg_grad(W.tape, vector, 1, &W.w, &g));
    REFUSED(tg_grad(W.tape, loss, 1, NULL, &g));
    REFUSED(tg_grad(W.tape, loss, 1, &W.w, NULL));
    REFUSED(tg_grad(W.tape, loss, 1, &old, &g));
    REFUSED(tg_grad(W.tape, old, 1, &W.w, &g));
    REFUSED(tg_grad(W.tape, loss, 1, &W.x, &g));
    cr_expect_eq(tg_grad(W.tape, loss, 1, &W.w, &g), TG_OK, "%s", tg_errmsg(W.ctx));
    cr_expect_float_eq(g->data[1], 1.0f, 1e-6); /* 2 w = 1 */
}

static tg_status square_fn(tg_tape *tape, tg_tensor *const *in, int n_in, tg_tensor **out,
                           int n_out, void *user) {
    (void)n_in, (void)n_out, (void)user;
    out[0] = tg_square(tape, in[0]);
    return out[0] ? TG_OK : TG_ERR_INVALID;
}

MISUSE(tg_recompute) {
    tg_tensor *out = NULL;
    REFUSED_QUIETLY(tg_recompute(NULL, square_fn, NULL, 1, &W.w, 1, &out));
    REFUSED(tg_recompute(W.tape, NULL, NULL, 1, &W.w, 1, &out));
    REFUSED(tg_recompute(W.tape, square_fn, NULL, 1, NULL, 1, &out));
    REFUSED(tg_recompute(W.tape, square_fn, NULL, -1, &W.w, 1, &out));
    REFUSED(tg_recompute(W.tape, square_fn, NULL, 1, &W.w, 0, &out));
    REFUSED(tg_recompute(W.tape, square_fn, NULL, 1, &W.w, 1, NULL));
    REFUSED(tg_recompute(W.tape, square_fn, NULL, 1, &W.foreign, 1, &out));
    REFUSED(tg_recompute(W.tape, square_fn, NULL, 1, (tg_tensor *[]){NULL}, 1, &out));
    cr_expect_null(out);
    cr_expect_eq(tg_recompute(W.tape, square_fn, NULL, 1, &W.w, 1, &out), TG_OK, "%s",
                 tg_errmsg(W.ctx));
    cr_expect_not_null(out);
}

MISUSE(tg_recomputing) {
    GIVES(tg_recomputing(NULL), false);
    GIVES(tg_recomputing(W.tape), false);
}
