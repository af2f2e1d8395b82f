/* tests/misuse.h — what the misuse suites share (test_misuse.c, test_misuse_models.c): the
 * MISUSE(fn) case macro, which registers fn's name for the coverage test of test_misuse.c, a
 * world of valid objects, and the expectations. */
#ifndef TAPEGRAD_TESTS_MISUSE_H
#define TAPEGRAD_TESTS_MISUSE_H

#include "helpers.h"

/* Registers a covered function's name (before main runs, from MISUSE's constructor). */
void misuse_cover(const char *name);

/* A constructor per case: the names are known in every test process, the coverage test's too. */
#define MISUSE(fn)                                                                              \
    static void misuse_##fn(void);                                                              \
    __attribute__((constructor)) static void cover_##fn(void) { misuse_cover(#fn); }                   \
    Test(misuse, fn, .init = world_setup, .fini = world_teardown) { misuse_##fn(); }            \
    static void misuse_##fn(void)

/* ---- a world of valid objects, so each case changes one argument ------------------------- */

typedef struct misuse_world {
    tg_ctx *ctx, *other;
    tg_tape *tape;
    tg_tensor *w;            /* persistent [3], requires grad, labelled "w" */
    tg_tensor *x;            /* tape tensor [3] of the current step */
    tg_tensor *foreign;      /* persistent [3] of `other` */
    tg_module *linear;       /* "lin", 3 -> 2 */
    tg_recorder *rec;
    tg_optimizer *opt;
    tg_dataset *ds;
} misuse_world;

extern misuse_world W;

void world_setup(void);
void world_teardown(void);

/* ---- expectations -------------------------------------------------------------------------- */

/* The call is refused and the world's context says why (then forgets it for the next check). */
#define REFUSED(expr)                                                                           \
    do {                                                                                        \
        tg_clear_error(W.ctx);                                                                  \
        tg_status s_ = (expr);                                                                  \
        cr_expect_neq(s_, TG_OK, "`%s` returned TG_OK", #expr);                                 \
        expect_message(#expr);                                                                  \
    } while (0)
/* Refused where no context can hold a message (a NULL handle): the status is all there is. */
#define REFUSED_QUIETLY(expr) cr_expect_neq((expr), TG_OK, "`%s` returned TG_OK", #expr)
#define NULLED(expr)                                                                            \
    do {                                                                                        \
        tg_clear_error(W.ctx);                                                                  \
        cr_expect_null((expr), "`%s` is not NULL", #expr);                                      \
        expect_message(#expr);                                                                  \
    } while (0)
#define NULLED_QUIETLY(expr) cr_expect_null((expr), "`%s` is not NULL", #expr)
#define GIVES(expr, value) cr_expect((expr) == (value), "`%s` is not %s", #expr, #value)
#define GIVES_NAN(expr) cr_expect(isnan((double)(expr)), "`%s` is not NaN", #expr)
#define GIVES_TEXT(expr) cr_expect((expr) != NULL && strlen(expr) < 4096, "`%s` gave no string", #expr)

static inline void expect_message(const char *what) {
    cr_expect_neq(tg_errcode(W.ctx), TG_OK, "`%s`: no error recorded", what);
    cr_expect(tg_errmsg(W.ctx)[0] != '\0', "`%s`: empty message", what);
    tg_clear_error(W.ctx);
}

static inline tg_status ok_hook(tg_ctx *c, const tg_hook_event *e, void *u) {
    (void)c, (void)e, (void)u;
    return TG_OK;
}

static inline tg_status infer_like(const tg_op_call *call, tg_shape *out) {
    return infer_like_first_input(call, out);
}

static inline tg_status forward_noop(tg_op_call *call) {
    (void)call;
    return TG_OK;
}

static inline void kernel_noop(void) {}

#define UNARY_MISUSE(call_with)                                                                 \
    do {                                                                                        \
        tg_tape *tape_ = NULL;                                                                  \
        tg_tensor *x_ = W.w;                                                                    \
        NULLED_QUIETLY(call_with);                                                              \
        tape_ = W.tape;                                                                         \
        x_ = NULL;                                                                              \
        NULLED(call_with);                                                                      \
        x_ = W.foreign;                                                                         \
        NULLED(call_with);                                                                      \
    } while (0)

#endif
