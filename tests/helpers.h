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

/* A fresh folder "/tmp/<prefix>-XXXXXX" for a test's files, written into dir (64 bytes). */
static inline void temp_dir_make(char *dir, const char *prefix) {
    snprintf(dir, 64, "/tmp/%s-XXXXXX", prefix);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", dir);
}

/* Removes that folder and everything in it. */
static inline void temp_dir_remove(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Writes n bytes to dir/name; returns the path (valid until the next call). */
static inline const char *write_in_dir(const char *dir, const char *name, const void *bytes,
                                       size_t n) {
    static char path[192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
    return path;
}

/* A persistent leaf holding data, with a gradient. */
static inline tg_tensor *leaf(tg_ctx *ctx, int ndim, const int64_t *shape, const float *data) {
    tg_tensor *t = tg_from_data(ctx, ndim, shape, data);
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_set_requires_grad(t, true), TG_OK);
    return t;
}

/* An allocator for tg_ctx_new_with_allocator that counts the blocks it hands out and frees and
 * the bytes still live (and the most ever live), and refuses every request once `fail_at`
 * blocks were handed out (never when fail_at < 0). */
typedef struct tally {
    long allocations, frees;
    long live_bytes, peak_bytes;
    long fail_at;
} tally;

static inline void *tally_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    tally *t = user;
    if (new_size == 0) {
        if (ptr) {
            t->frees++;
            t->live_bytes -= (long)old_size;
        }
        free(ptr);
        return NULL;
    }
    if (t->fail_at >= 0 && t->allocations >= t->fail_at) return NULL;
    void *p = realloc(ptr, new_size);
    if (p) {
        t->allocations++;
        if (ptr) t->frees++; /* a block grown is one given back and one handed out */
        t->live_bytes += (long)new_size - (ptr ? (long)old_size : 0);
        if (t->live_bytes > t->peak_bytes) t->peak_bytes = t->live_bytes;
    }
    return p;
}

/* The steady state's checks: no allocation since `before` (which must have seen some, or the
 * test is vacuous), then every byte given back once tape and ctx are freed (they are). */
static inline void expect_steady_then_freed(tally *count, long before, const char *steps,
                                            tg_tape *tape, tg_ctx *ctx) {
    cr_expect_eq(count->allocations, before, "%ld allocations in %s", count->allocations - before,
                 steps);
    cr_expect_gt(before, 0, "the counting allocator saw nothing: the test would be vacuous");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    cr_expect_eq(count->live_bytes, 0, "%ld bytes not freed", count->live_bytes);
}

/* infer_shape of a user op whose output is shaped like its first input. */
static inline tg_status infer_like_first_input(const tg_op_call *call, tg_shape *out) {
    out->ndim = call->inputs[0]->ndim;
    for (int d = 0; d < TG_MAX_DIMS; d++) out->dims[d] = call->inputs[0]->shape[d];
    return TG_OK;
}

/* Gradient-checks every example of every op with id >= first_id (tolerances:
 * tg_gradcheck_defaults); returns the number of ops checked. */
static inline int check_registered_gradients(tg_ctx *c, int first_id) {
    int checked_ops = 0;
    for (int id = first_id; id < tg_op_count(c); id++) {
        tg_op_info info;
        cr_assert_eq(tg_op_get_info(c, id, &info), TG_OK);
        cr_expect(info.has_backward, "op '%s' has no backward", info.name);
        cr_expect(info.has_example, "op '%s' has no gradient-check example", info.name);
        int example = 0;
        for (;; example++) {
            tg_gradcheck_result result;
            tg_status status = tg_gradcheck(c, id, example, NULL, &result);
            if (status == TG_ERR_NOT_FOUND) break;
            cr_expect_eq(status, TG_OK, "op '%s' example %d: %s", info.name, example, tg_errmsg(c));
            cr_expect(result.passed && result.n_checked > 0,
                      "op '%s' example %d: input %d element %lld analytic %.6g numeric %.6g "
                      "(max abs err %.3g, %lld checked)", info.name, example, result.worst_input,
                      (long long)result.worst_index, result.worst_analytic, result.worst_numeric,
                      result.max_abs_err, (long long)result.n_checked);
            tg_clear_error(c);
        }
        cr_expect(example > 0, "op '%s': no example ran", info.name);
        checked_ops++;
    }
    return checked_ops;
}

/* Gradient-checks every example of the op named `name` (tolerances: tg_gradcheck_defaults),
 * expecting at least `least` examples. */
static inline void check_op_examples(tg_ctx *c, const char *name, int least) {
    int id = tg_op_find(c, name);
    cr_assert_geq(id, 0, "%s is not registered", name);
    int example = 0;
    for (;; example++) {
        tg_gradcheck_result r;
        tg_status status = tg_gradcheck(c, id, example, NULL, &r);
        if (status == TG_ERR_NOT_FOUND) break;
        cr_expect_eq(status, TG_OK, "%s example %d: %s", name, example, tg_errmsg(c));
        cr_expect(r.passed && r.n_checked > 0, "%s example %d: input %d element %lld analytic "
                  "%.6g numeric %.6g", name, example, r.worst_input, (long long)r.worst_index,
                  r.worst_analytic, r.worst_numeric);
    }
    cr_expect_geq(example, least, "%s: %d examples", name, example);
}

#endif
