/*
 * cli/model_check.c — `tapegrad gradcheck` on the built-in models end to end: each model, small,
 * on a fixed batch, through tg_gradcheck_function (every parameter; at order 2 also J v and H v
 * along a random direction against finite differences of the loss and of the gradients).
 *
 * LeNet and the ResNets are not in the list: ReLU and max pooling make their loss piecewise,
 * and in f32 no step is both small enough to stay inside one piece for every parameter (a step
 * of 1e-3 along a random direction flips some unit or pooling winner) and large enough to beat
 * rounding, so differences of their gradients measure the kinks, not the code. Their ops are
 * checked one by one (conv2d, batch_norm, relu, max_pool2d, ...), and the conv - batch norm -
 * ReLU - max-pool chain against differences along a direction that crosses no kink
 * (tests/test_jvp_conv.c).
 */
#include "cli/model_check.h"
#include "cli/study.h"

#include <stdio.h>
#include <string.h>

#define MAX_PARAMS 64

typedef struct model_case {
    const char *name;
    tg_module *model;
    tg_tensor *x, *y;            /* a batch and its targets */
    bool language_model;         /* x holds token ids, y the next ones: tg_lm_loss */
    bool regression;             /* mse on y, else cross entropy with class labels y */
    bool sequence;               /* a recurrent model: run tg_rnn_forward, head on the last h */
    tg_module *head;
    int classes;                 /* of the labels (cross entropy), or the vocabulary */
    double eps;                  /* the difference step: 1e-2 unless the loss curves fast */
} model_case;

static tg_tensor *case_loss(tg_tape *tape, tg_tensor *const *inputs, int n, void *user) {
    (void)inputs, (void)n;
    const model_case *c = user;
    if (c->sequence) {
        tg_tensor *h = tg_rnn_forward(c->model, tape, c->x, NULL);
        return tg_mse(tape, tg_module_forward(c->head, tape, h), c->y);
    }
    tg_tensor *out = tg_module_forward(c->model, tape, c->x);
    if (c->language_model) return tg_lm_loss(tape, out, c->y);
    return c->regression ? tg_mse(tape, out, c->y) : tg_cross_entropy(tape, out, c->y);
}

static void fill_labels(const tg_tensor *t, int classes) {
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (float)((i * 7 + 3) % classes);
}

/* Builds case `index` in ctx; false past the last. */
static bool build_case(tg_ctx *ctx, int index, model_case *c) {
    memset(c, 0, sizeof *c);
    switch (index) {
    case 0: {
        tg_mlp_config cfg = {.in = 6, .out = 4, .width = 8, .depth = 3, .activation = TG_ACT_TANH,
                             .norm = TG_NORM_LAYER, .seed = 1};
        c->name = "mlp (tanh, layer norm)";
        c->classes = 4;
        c->model = tg_mlp_new(ctx, "mlp", &cfg);
        c->x = tg_zeros(ctx, TG_SHAPE(5, 6));
        c->y = tg_zeros(ctx, TG_SHAPE(5));
        break;
    }
    case 1: {
        tg_resmlp_config cfg = {.in = 6, .out = 4, .width = 8, .blocks = 2,
                                .activation = TG_ACT_GELU, .norm = TG_NORM_BATCH, .skip = true,
                                .seed = 2};
        c->name = "resmlp (gelu, batch norm)";
        c->classes = 4;
        c->eps = 1e-3; /* batch statistics of 6 rows: a step of 1e-2 leaves the quadratic range */
        c->model = tg_resmlp_new(ctx, "resmlp", &cfg);
        c->x = tg_zeros(ctx, TG_SHAPE(6, 6));
        c->y = tg_zeros(ctx, TG_SHAPE(6));
        break;
    }
    case 2:
    case 3:
    case 4: {
        static const tg_rnn_kind kinds[] = {TG_RNN_TANH, TG_RNN_LSTM, TG_RNN_GRU};
        static const char *const names[] = {"rnn (tanh) + head", "lstm + head", "gru + head"};
        tg_rnn_config cfg = tg_rnn_defaults(kinds[index - 2], 3, 4);
        c->name = names[index - 2];
        c->sequence = c->regression = true;
        c->model = tg_rnn_new(ctx, "rnn", &cfg);
        c->head = tg_linear_new(ctx, "head", 4, 2, true, NULL, 5);
        c->x = tg_zeros(ctx, TG_SHAPE(2, 4, 3));
        c->y = tg_zeros(ctx, TG_SHAPE(2, 2));
        break;
    }
    case 5: {
        tg_gpt_config cfg = {.vocab = 7, .block_size = 6, .d_model = 8, .n_heads = 2,
                             .n_layers = 1, .seed = 6};
        c->name = "gpt (1 block)";
        c->classes = 7;
        /* embeddings of std 0.02 under layer norm: a step of 1e-2 is half a row's spread */
        c->eps = 1e-3;
        c->language_model = true;
        c->model = tg_gpt_new(ctx, "gpt", &cfg);
        c->x = tg_zeros(ctx, TG_SHAPE(2, 5));
        c->y = tg_zeros(ctx, TG_SHAPE(2, 5));
        break;
    }
    case 6: {
        tg_rnn_lm_config cfg = {.kind = TG_RNN_LSTM, .vocab = 7, .embed_dim = 4, .hidden = 5,
                                .seed = 7};
        c->name = "lstm language model";
        c->classes = 7;
        c->language_model = true;
        c->model = tg_rnn_lm_new(ctx, "lm", &cfg);
        c->x = tg_zeros(ctx, TG_SHAPE(2, 4));
        c->y = tg_zeros(ctx, TG_SHAPE(2, 4));
        break;
    }
    default: return false;
    }
    return true;
}

/* Fills the batch: ids and labels whole numbers, features N(0,1), regression targets too. */
static void fill_batch(model_case *c) {
    if (c->language_model) {
        fill_labels(c->x, c->classes);
        for (int64_t i = 0; i < c->y->size; i++) c->y->data[i] = (float)((i * 3 + 1) % c->classes);
        return;
    }
    tg_fill_normal(c->x, 0.0f, 1.0f, 11);
    if (c->regression) tg_fill_normal(c->y, 0.0f, 1.0f, 12);
    else fill_labels(c->y, c->classes);
}

static int check_case(int index, int order, FILE *out, bool *found) {
    tg_ctx *ctx = tg_ctx_new();
    model_case c;
    *found = ctx && build_case(ctx, index, &c);
    if (!*found) {
        tg_ctx_free(ctx);
        return 0;
    }
    int failed = 1;
    if (c.model && c.x && c.y && (!c.sequence || c.head)) {
        fill_batch(&c);
        tg_tensor *params[MAX_PARAMS];
        int n = list_modules(c.model, c.head, false, params, MAX_PARAMS);
        tg_gradcheck_opts opts = tg_gradcheck_defaults();
        opts.order = order;
        opts.max_elements = 6;
        if (c.eps > 0) opts.eps = c.eps;
        tg_gradcheck_result r;
        tg_status status = n > 0 && n <= MAX_PARAMS
                               ? tg_gradcheck_function(ctx, case_loss, &c, params, n, &opts, &r)
                               : TG_ERR_INVALID;
        bool ok = status == TG_OK && r.passed;
        char what[64];
        snprintf(what, sizeof what, "model: %s", c.name);
        if (status == TG_OK)
            fprintf(out, "%-32s %-10lld %-12.2e %s%s%s\n", what, (long long)r.n_checked,
                    r.max_rel_err, ok ? "pass" : "FAIL (worst: ",
                    ok ? "" : r.worst_check ? r.worst_check : "gradient", ok ? "" : ")");
        else
            fprintf(out, "%-32s %-10s %-12s %s\n", what, "-", "-", tg_errmsg(ctx));
        failed = !ok;
    } else {
        fprintf(out, "model %d: %s\n", index, tg_errmsg(ctx));
    }
    tg_ctx_free(ctx); /* frees the modules' parameters with it */
    return failed;
}

int tgc_check_models(int order, FILE *out) {
    int failures = 0;
    fprintf(out, "\n%-32s %-10s %-12s %s\n", "built-in model (whole loss)", "checked",
            "max rel err", "result");
    for (int index = 0;; index++) {
        bool found;
        failures += check_case(index, order, out, &found);
        if (!found) break;
    }
    return failures;
}
