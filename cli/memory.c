/*
 * cli/memory.c — a lower bound of what training a model needs, from its config alone, so that
 * `tapegrad train --model resnet --width 4096` is refused in a moment with the figure instead
 * of failing out of memory a minute later. The bound counts the weight matrices only (biases,
 * norms, shortcuts and activations come on top), each with its gradient and the optimizer's
 * slots; every product is checked, so an absurd config is "more than 2^63 bytes", never a
 * wrapped number.
 */
#include "cli/memory.h"

#include <stdio.h>
#include <unistd.h>

#include "autograd/checked.h"

/* Accumulates a sum of products; stays false once any step overflowed. */
typedef struct tally {
    int64_t floats;
    bool ok;
} tally;

static void add_product(tally *t, int64_t a, int64_t b, int64_t c) {
    int64_t p;
    t->ok = t->ok && tgi_mul_ok(a, b, &p) && tgi_mul_ok(p, c, &p) && tgi_add_ok(t->floats, p, &t->floats);
}

/* 3x3 convolutions of the CIFAR ResNet (and its plain twin): the stem, then per stage n blocks
 * of two, the first of stages 2 and 3 widening from the stage before. */
static void resnet_weights(tally *t, const run_config *c, int64_t channels) {
    int64_t width = c->width ? c->width : 16, in = width;
    int n = (c->depth - 2) / 6;
    add_product(t, 9, channels, width);
    for (int s = 0; s < 3; s++) {
        int64_t out;
        t->ok = t->ok && tgi_mul_ok(width, (int64_t)1 << s, &out);
        for (int b = 0; t->ok && b < n; b++) {
            add_product(t, 9, in, out);
            add_product(t, 9, out, out);
            in = out;
        }
    }
}

static void rnn_weights(tally *t, const run_config *c, int64_t in) {
    int64_t gates = c->rnn == TG_RNN_LSTM ? 4 : c->rnn == TG_RNN_GRU ? 3 : 1, h = c->hidden;
    int64_t directions = c->bidirectional ? 2 : 1, layers = c->rnn_layers > 1 ? c->rnn_layers : 1;
    for (int64_t l = 0; l < layers; l++) {
        int64_t layer_in = l ? directions * h : in, rows = 0; /* not computed once t->ok is false */
        t->ok = t->ok && tgi_mul_ok(directions * gates, h, &rows);
        add_product(t, rows, layer_in, 1);
        add_product(t, rows, h, 1);
    }
}

static int64_t weight_floats(const run_config *c, int64_t in, int64_t out, const int64_t *image,
                             bool *ok) {
    tally t = {0, true};
    switch (c->model) {
    case MODEL_MLP:
        if (c->depth <= 1) add_product(&t, in, out, 1);
        else {
            add_product(&t, in, c->width, 1);
            add_product(&t, (int64_t)c->depth - 2, c->width, c->width);
            add_product(&t, c->width, out, 1);
        }
        break;
    case MODEL_RESMLP:
        add_product(&t, in, c->width, 1);
        add_product(&t, 2 * (int64_t)c->depth, c->width, c->width);
        add_product(&t, c->width, out, 1);
        break;
    case MODEL_RNN: rnn_weights(&t, c, in); break;
    case MODEL_LENET: add_product(&t, 32 * 120, image[1] / 4, image[2] / 4); break;
    case MODEL_RESNET: resnet_weights(&t, c, image[0]); break;
    }
    *ok = t.ok;
    return t.floats;
}

/* Per parameter float: the optimizer's running averages (momentum, Adam's two moments). */
static int optimizer_slots(const tg_optimizer_config *o) {
    switch (o->kind) {
    case TG_OPT_ADAM:
    case TG_OPT_ADAMW: return 2;
    case TG_OPT_RMSPROP: return o->momentum > 0 ? 2 : 1;
    case TG_OPT_SGD: return o->momentum > 0 ? 1 : 0;
    }
    return 0;
}

static double gigabytes(double bytes) { return bytes / 1e9; }

bool model_fits_memory(const run_config *c, int64_t in, int64_t out, const int64_t *image,
                       char *why, size_t size) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return true; /* unknown: nothing to compare with */
    double machine = (double)pages * (double)page;
    bool ok;
    int64_t floats = weight_floats(c, in, out, image, &ok), copies = 2 + optimizer_slots(&c->opt);
    int64_t bytes;
    ok = ok && tgi_mul_ok(floats, 4 * copies, &bytes);
    if (ok && (double)bytes <= machine) return true;
    if (!ok)
        snprintf(why, size, "model %s: needs more than 2^63 bytes (its weights x %d copies: values, "
                 "gradients and %d optimizer slots), more than this machine's %.1f GB of memory",
                 model_name(c), (int)copies, (int)copies - 2, gigabytes(machine));
    else
        snprintf(why, size, "model %s: needs at least %.1f GB (%.3g weights x 4 bytes x %d copies: "
                 "values, gradients and %d optimizer slots), more than this machine's %.1f GB of "
                 "memory", model_name(c), gigabytes((double)bytes), (double)floats, (int)copies,
                 (int)copies - 2, gigabytes(machine));
    return false;
}
