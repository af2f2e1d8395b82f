/* tests/fixture.h — the usual fixture: a fresh context and tape per test. */
#ifndef TAPEGRAD_TEST_FIXTURE_H
#define TAPEGRAD_TEST_FIXTURE_H

#include "helpers.h"

/* Use as TestSuite(name, .init = fixture_setup, .fini = fixture_teardown). */
static tg_ctx *ctx;
static tg_tape *tape;

static inline void fixture_setup(void) {
    ctx = tg_ctx_new();
    cr_assert_not_null(ctx);
    tape = tg_tape_new(ctx);
    cr_assert_not_null(tape);
}

static inline void fixture_teardown(void) {
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

#endif
