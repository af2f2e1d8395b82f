/*
 * examples/residual.c — why residual connections let deep nets train: a 50-layer tanh MLP on
 * the digits, once plain and once with identity skips (same layers, same initialisation), side
 * by side: the gradient norm reaching the first layer, and the training loss.
 *
 * The net is a module of our own (tg_module_new): its forward is the function below, its
 * layers are children, and so saving, loading, parameter listing and name-pattern hooks work
 * on it as on a built-in model. At the end the residual net is saved, loaded into a fresh net
 * and checked to give the same loss. `./residual summary` prints the net's tree instead
 * (tg_module_summary: every layer, its parameters' shapes and counts, the totals).
 *
 *   ./residual [STEPS] [CHECKPOINT]    (default 300 steps, /tmp/residual.safetensors)
 *   ./residual summary
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

#define BLOCKS 24 /* 2 linear layers each, plus the input and output layers: 50 */
#define WIDTH 64
#define BATCH 64

/* What the forward needs: the layers (children of the module, freed with it) and the switch. */
typedef struct skipnet {
    bool skip;
    tg_module *in, *head, *fc1[BLOCKS], *fc2[BLOCKS];
} skipnet;

/* h = in(x); per block t = fc2(tanh(fc1(tanh(h)))), h = h + t (plain: h = t); head(tanh(h)).
 * Block outputs are labelled "<name>.block<i>.out" for name-pattern hooks. */
static tg_tensor *skipnet_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    const skipnet *net = tg_module_data(m);
    tg_tensor *h = tg_module_forward(net->in, tape, x);
    for (int i = 0; i < BLOCKS; i++) {
        tg_tensor *t = tg_tanh(tape, tg_module_forward(net->fc1[i], tape, tg_tanh(tape, h)));
        if (!net->skip) tg_tape_label_next(tape, "%s.block%d.out", tg_module_name(m), i);
        t = tg_module_forward(net->fc2[i], tape, t);
        if (net->skip) tg_tape_label_next(tape, "%s.block%d.out", tg_module_name(m), i);
        h = net->skip ? tg_add(tape, h, t) : t;
    }
    return tg_module_forward(net->head, tape, tg_tanh(tape, h));
}

/* A linear child "<net>.<part>"; the seed depends on the layer only, so both nets start alike. */
static tg_module *add_linear(tg_module *m, const char *part, int64_t in, int64_t out, uint64_t seed) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", tg_module_name(m), part);
    tg_init init = tg_init_xavier(TG_ACT_TANH);
    tg_module *fc = tg_linear_new(tg_module_ctx(m), name, in, out, true, &init, seed);
    return tg_module_add_child(m, fc) == TG_OK ? fc : NULL;
}

static tg_module *skipnet_new(tg_ctx *ctx, const char *name, bool skip) {
    skipnet *net = calloc(1, sizeof *net);
    tg_module *m = net ? tg_module_new(ctx, name, &(tg_module_def){skipnet_forward, free}, net) : NULL;
    if (!m) {
        free(net);
        return NULL;
    }
    net->skip = skip;
    bool ok = (net->in = add_linear(m, "in", 64, WIDTH, 1));
    for (int i = 0; ok && i < BLOCKS; i++) {
        char part[32];
        snprintf(part, sizeof part, "block%d.fc1", i);
        ok = (net->fc1[i] = add_linear(m, part, WIDTH, WIDTH, 100 + 2 * (uint64_t)i));
        snprintf(part, sizeof part, "block%d.fc2", i);
        ok = ok && (net->fc2[i] = add_linear(m, part, WIDTH, WIDTH, 101 + 2 * (uint64_t)i));
    }
    if (!ok || !(net->head = add_linear(m, "head", WIDTH, 10, 2))) {
        tg_module_free(m); /* frees the children made so far, and net */
        return NULL;
    }
    return m;
}

typedef struct run {
    const char *name;
    tg_module *net;
    tg_optimizer *opt;
    tg_tensor *first_weight;
    double first_norm_at_start;
    float loss;
} run;

static double grad_norm(const tg_tensor *t) {
    tg_stats stats;
    tg_stats_compute(t->grad, t->size, &stats);
    return stats.l2_norm;
}

static tg_tensor *loss_of(tg_module *net, tg_tape *tape, tg_tensor *x, tg_tensor *y) {
    return tg_cross_entropy(tape, tg_module_forward(net, tape, x), y);
}

/* One SGD step of one net on the batch; returns false on error. */
static bool train_step(run *r, tg_tape *tape, tg_tensor *x, tg_tensor *y, int step) {
    tg_tape_reset(tape);
    tg_tensor *loss = loss_of(r->net, tape, x, y);
    if (!loss || tg_backward(tape, loss) != TG_OK) return false;
    if (step == 0) r->first_norm_at_start = grad_norm(r->first_weight);
    r->loss = loss->data[0];
    tg_optimizer_step(r->opt);
    tg_optimizer_zero_grad(r->opt);
    return true;
}

/* Saves net, loads the file into a fresh net of the same shape, and compares their losses. */
static bool save_and_reload(tg_ctx *ctx, tg_tape *tape, tg_module *net, const char *path,
                            tg_tensor *x, tg_tensor *y) {
    tg_module *copy = skipnet_new(ctx, tg_module_name(net), true);
    bool ok = copy && tg_module_save(net, path) == TG_OK && tg_module_load(copy, path) == TG_OK;
    if (ok) {
        tg_tape_reset(tape);
        tg_no_grad_begin(tape);
        tg_tensor *a = loss_of(net, tape, x, y), *b = loss_of(copy, tape, x, y);
        tg_no_grad_end(tape);
        ok = a && b;
        if (ok) printf("saved %d tensors to %s; reloaded, the loss is %.6f (trained: %.6f)\n",
                       tg_module_param_count(net), path, b->data[0], a->data[0]);
    }
    tg_module_free(copy);
    return ok;
}

/* The residual net's tree, as tg_module_summary writes it. */
static int print_summary(void) {
    tg_ctx *ctx = tg_ctx_new();
    tg_module *net = ctx ? skipnet_new(ctx, "residual", true) : NULL;
    tg_status status = net ? tg_module_summary(net, stdout) : TG_ERR_NOMEM;
    if (status != TG_OK) fprintf(stderr, "error: %s\n", ctx ? tg_errmsg(ctx) : "out of memory");
    tg_module_free(net);
    tg_ctx_free(ctx);
    return status == TG_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "summary") == 0) return print_summary();
    int steps = argc > 1 ? atoi(argv[1]) : 300;
    const char *checkpoint = argc > 2 ? argv[2] : "/tmp/residual.safetensors";
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_dataset *digits = tg_dataset_digits(ctx);
    tg_batcher *batches = digits ? tg_batcher_new(digits, BATCH, true, true, 1) : NULL;
    /* the batch is copied into persistent tensors so both nets, each on its own step, see it */
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(BATCH, 64)), *y = tg_zeros(ctx, TG_SHAPE(BATCH));
    if (!batches || !x || !y) goto fail;

    run runs[2] = {{.name = "plain"}, {.name = "residual"}};
    for (int r = 0; r < 2; r++) {
        runs[r].net = skipnet_new(ctx, runs[r].name, r == 1);
        if (!runs[r].net) goto fail;
        tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 0.01f, .momentum = 0.9f};
        runs[r].opt = tg_optimizer_new_module(runs[r].net, &sgd);
        runs[r].first_weight = tg_module_find_param(runs[r].net, r ? "residual.in.weight" : "plain.in.weight");
        if (!runs[r].opt || !runs[r].first_weight) goto fail;
    }

    printf("50-layer tanh MLP on digits, Xavier init, SGD 0.01 momentum 0.9, batch %d\n", BATCH);
    for (int step = 0; step < steps; step++) {
        tg_tensor *bx, *by;
        tg_tape_reset(tape);
        if (!tg_batcher_next(batches, tape, &bx, &by)) tg_batcher_next(batches, tape, &bx, &by);
        tg_copy_in(x, bx->data, bx->size);
        tg_copy_in(y, by->data, by->size);
        for (int r = 0; r < 2; r++)
            if (!train_step(&runs[r], tape, x, y, step)) goto fail;
        if (step == 0 || (step + 1) % 50 == 0)
            printf("step %4d  loss: plain %.4f  residual %.4f\n", step + 1, runs[0].loss, runs[1].loss);
    }
    printf("first-layer gradient norm at step 1: plain %.3e, residual %.3e (ratio %.3g)\n",
           runs[0].first_norm_at_start, runs[1].first_norm_at_start,
           runs[1].first_norm_at_start / runs[0].first_norm_at_start);
    if (!save_and_reload(ctx, tape, runs[1].net, checkpoint, x, y)) goto fail;
    for (int r = 0; r < 2; r++) {
        tg_optimizer_free(runs[r].opt);
        tg_module_free(runs[r].net);
    }
    tg_batcher_free(batches);
    tg_dataset_free(digits);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
fail:
    fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
    return 1;
}
