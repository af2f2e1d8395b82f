/* tests/fuzz/fuzz_ops.c — every registered op through tg_call_id with random small shapes and
 * random attributes, extremes included (0, -1, INT_MAX, 2^62, INT64_MAX and INT64_MIN; NaN, inf
 * and FLT_MAX floats), then, when the call succeeds, backward and a replay. The bytes are a
 * stream of choices: the op, the number of inputs, each input's shape (often input 0's, so that
 * shape checks pass and the kernels run), values and whether it wants a gradient, then each
 * attribute. Nothing may crash or trip a sanitizer, and every refusal must leave a message.
 * Memory goes through an allocator with a budget, so a valid but huge geometry (a padding of
 * 10^9) ends in a clean out-of-memory error instead of the fuzzer's malloc limit. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "fuzz_common.h"

/* the op table's gradient-check examples (the archive the targets link holds them) */
#include "autograd/internal.h"

#define BUDGET ((size_t)64 << 20)

typedef struct choices {
    const uint8_t *data;
    size_t size, at;
} choices;

/* The next byte of the input, 0 once it is used up (so every input is a complete case). */
static unsigned next(choices *c) {
    return c->at < c->size ? c->data[c->at++] : 0u;
}

static int64_t pick_i64(choices *c) {
    static const int64_t extremes[] = {0,        -1,        INT_MAX,   INT_MIN,
                                       INT64_C(1) << 31, INT64_C(1) << 32, INT64_C(1) << 62,
                                       INT64_MAX, INT64_MIN, -(INT64_C(1) << 62), 1000, 40};
    unsigned b = next(c);
    if (b < 192) return (int64_t)(b % 8) - 2; /* mostly small: -2..5 */
    return extremes[b % (sizeof extremes / sizeof extremes[0])];
}

static double pick_f64(choices *c) {
    static const double extremes[] = {0.0, -0.0, 1.0, -1.0, 0.5, NAN, INFINITY, -INFINITY,
                                      FLT_MAX, -FLT_MAX, 1e-45, 1e30, DBL_MAX, 2.0, 0.999999};
    unsigned b = next(c);
    if (b < 128) return (double)((int)b - 64) / 16.0;
    return extremes[b % (sizeof extremes / sizeof extremes[0])];
}

static float pick_value(choices *c) {
    unsigned b = next(c);
    if (b < 240) return (float)((int)b - 120) / 32.0f;
    static const float odd[] = {NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, 1e-40f, 0.0f, -0.0f,
                                3e38f, 1e20f, -1e20f, 16777217.0f, 2147483648.0f, -2147483649.0f,
                                1e10f, 5.0f};
    return odd[b % 16];
}

static tg_attr_value pick_attr(choices *c, tg_attr_type type) {
    tg_attr_value v;
    memset(&v, 0, sizeof v);
    switch (type) {
    case TG_ATTR_F32: v.f32 = (float)pick_f64(c); break;
    case TG_ATTR_F64: v.f64 = pick_f64(c); break;
    case TG_ATTR_I32: {
        int64_t i = pick_i64(c);
        v.i32 = i > INT32_MAX ? INT32_MAX : i < INT32_MIN ? INT32_MIN : (int32_t)i;
        break;
    }
    case TG_ATTR_I64: v.i64 = pick_i64(c); break;
    case TG_ATTR_BOOL: v.b = next(c) & 1; break;
    case TG_ATTR_SHAPE: {
        v.shape.ndim = (int)(next(c) % (TG_MAX_DIMS + 2)) - 1;
        for (int d = 0; d < TG_MAX_DIMS; d++) v.shape.dims[d] = pick_i64(c);
        break;
    }
    }
    return v;
}

/* A shape of 0..4 dims of 1..5, or (often) the first input's. */
static void pick_shape(choices *c, const tg_tensor *first, int *ndim, int64_t *dims) {
    unsigned b = next(c);
    if (first && b < 160) {
        *ndim = first->ndim;
        for (int d = 0; d < TG_MAX_DIMS; d++) dims[d] = first->shape[d];
        return;
    }
    *ndim = (int)(b % (TG_MAX_DIMS + 1));
    for (int d = 0; d < TG_MAX_DIMS; d++) dims[d] = 1 + (int64_t)(next(c) % 5);
}

static tg_tensor *pick_input(choices *c, tg_ctx *ctx, tg_tape *tape, const tg_tensor *first) {
    int ndim;
    int64_t dims[TG_MAX_DIMS];
    pick_shape(c, first, &ndim, dims);
    unsigned how = next(c);
    tg_tensor *t = how & 1 ? tg_zeros(ctx, ndim, dims) : tg_tape_zeros(tape, ndim, dims);
    if (!t) return NULL;
    for (int64_t i = 0; i < t->size; i++) t->data[i] = pick_value(c);
    if (how & 2) tg_set_requires_grad(t, true);
    return t;
}

/* A refusal without a message is a finding: abort, so libFuzzer keeps the input. */
static void expect_message(tg_ctx *ctx, const char *what, const char *op) {
    if (tg_errmsg(ctx)[0]) return;
    fprintf(stderr, "fuzz_ops: %s of op '%s' failed with no message (status %s)\n", what, op,
            tg_status_name(tg_errcode(ctx)));
    abort();
}

/* malloc/realloc/free with a running total: requests past BUDGET get NULL. */
static void *budget_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    size_t *used = user;
    if (new_size == 0) {
        free(ptr);
        *used -= old_size;
        return NULL;
    }
    if (new_size > old_size && new_size - old_size > BUDGET - *used) return NULL;
    void *p = realloc(ptr, new_size);
    if (p) *used = *used - old_size + new_size;
    return p;
}

/* Inputs and attributes from one of the op's gradient-check examples (valid ones: a conv's
 * weight fits its input), each attribute then kept or replaced by a random one. Random shapes
 * alone seldom get a convolution or a recurrent cell past its shape checks. */
static bool from_example(choices *c, tg_tape *tape, const tgi_op *op, tg_tensor **inputs,
                         int *n_inputs, tg_attr_value *attrs) {
    int index = (int)(next(c) % 8);
    if (op->example(tape, op->op_data, index, inputs, n_inputs, attrs) != TG_OK &&
        op->example(tape, op->op_data, 0, inputs, n_inputs, attrs) != TG_OK)
        return false;
    for (int a = 0; a < op->n_attrs; a++)
        if (next(c) >= 128) attrs[a] = pick_attr(c, op->attrs[a].type);
    return true;
}

static bool from_choices(choices *c, tg_ctx *ctx, tg_tape *tape, const tg_op_info *info,
                         tg_tensor **inputs, int *n_inputs, tg_attr_value *attrs) {
    *n_inputs = info->arity >= 0 ? info->arity : 1 + (int)(next(c) % 4);
    if (next(c) == 255) *n_inputs = (int)(next(c) % 6); /* now and then a wrong count */
    for (int i = 0; i < *n_inputs; i++)
        if (!(inputs[i] = pick_input(c, ctx, tape, inputs[0]))) {
            expect_message(ctx, "an input", info->name);
            return false;
        }
    for (int a = 0; a < info->n_attrs; a++) attrs[a] = pick_attr(c, info->attr_types[a]);
    return true;
}

static void run_case(choices *c, tg_ctx *ctx, tg_tape *tape) {
    unsigned low = next(c), high = next(c);
    int op = (int)((low | high << 8) % (unsigned)tg_op_count(ctx));
    tg_op_info info;
    if (tg_op_get_info(ctx, op, &info) != TG_OK) abort();
    const tgi_op *def = tgi_op_by_id(ctx, op);
    tg_tensor *inputs[TG_EXAMPLE_MAX_INPUTS] = {0}; /* from_choices: at most 5 */
    tg_attr_value attrs[TG_MAX_ATTRS];
    memset(attrs, 0, sizeof attrs);
    int n_inputs = 0;
    bool example = def->example && next(c) < 160;
    if (example ? !from_example(c, tape, def, inputs, &n_inputs, attrs)
                : !from_choices(c, ctx, tape, &info, inputs, &n_inputs, attrs))
        return;
    tg_tensor *y = tg_call_id(tape, op, inputs, n_inputs, attrs, info.n_attrs);
    if (getenv("FUZZ_OPS_TRACE")) { /* which ops run and which refuse, over a corpus */
        fprintf(stderr, "%s %s %s", info.name, y ? "ok" : "refused", y ? "" : tg_errmsg(ctx));
        for (int a = 0; a < info.n_attrs; a++)
            if (info.attr_types[a] == TG_ATTR_I64)
                fprintf(stderr, " %s=%lld", info.attr_names[a], (long long)attrs[a].i64);
        fprintf(stderr, "\n");
    }
    if (!y) {
        expect_message(ctx, "the call", info.name);
        return;
    }
    tg_tensor *loss = y->ndim == 0 ? y : tg_sum(tape, y);
    if (!loss) {
        expect_message(ctx, "the sum of the output", info.name);
        return;
    }
    if (tg_backward(tape, loss) != TG_OK) expect_message(ctx, "backward", info.name);
    tg_clear_error(ctx);
    if (tg_tape_replay(tape) != TG_OK) expect_message(ctx, "the replay", info.name);
    tg_clear_error(ctx);
    if (tg_backward(tape, loss) != TG_OK) expect_message(ctx, "backward after the replay", info.name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t used = 0;
    tg_ctx *ctx = tg_ctx_new_with_allocator(budget_alloc, &used);
    tg_tape *tape = ctx ? tg_tape_new(ctx) : NULL;
    choices c = {data, size, 0};
    if (tape) run_case(&c, ctx, tape);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
