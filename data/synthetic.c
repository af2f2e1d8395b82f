/*
 * data/synthetic.c — generated data sets for the gradient-flow experiments: the adding
 * problem and the copy task (long-range memory for RNN vs LSTM), two spirals and parity (hard
 * for shallow nets, easy to see).
 *
 * Every generator draws from one tg_rng seeded by the caller, sample after sample, so a seed
 * gives the same data on every machine.
 */
#include "data/dataset.h"

#include <math.h>

#define PI 3.14159265358979323846

/* Each generator checks its size arguments here first: a message naming it and the argument. */
static bool check_size(tg_ctx *ctx, const char *what, const char *name, int64_t value,
                       int64_t low, int64_t high) {
    if (value >= low && value <= high) return true;
    tgi_error(ctx, TG_ERR_INVALID, "%s: %s %lld, expected %lld to %lld", what, name,
              (long long)value, (long long)low, (long long)high);
    return false;
}

tg_dataset *tg_dataset_adding(tg_ctx *ctx, int64_t count, int64_t length, uint64_t seed) {
    const char *what = "dataset_adding";
    if (!ctx || !check_size(ctx, what, "length", length, 2, TGI_DATASET_MAX_COUNT)) return NULL;
    tg_dataset *ds = tgi_dataset_new(ctx, what, count, 2, (const int64_t[]){length, 2}, 0, NULL, 0);
    if (!ds) return NULL;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    int64_t half = length / 2;
    for (int64_t i = 0; i < count; i++) {
        float *steps = ds->x + i * length * 2; /* (value, marker) per time step */
        for (int64_t t = 0; t < length; t++) steps[2 * t] = tg_rng_uniform(&rng);
        int64_t first = tg_rng_below(&rng, (uint32_t)half);
        int64_t second = half + tg_rng_below(&rng, (uint32_t)(length - half));
        steps[2 * first + 1] = 1.0f;
        steps[2 * second + 1] = 1.0f;
        ds->y[i] = steps[2 * first] + steps[2 * second];
    }
    return ds;
}

tg_dataset *tg_dataset_copy_task(tg_ctx *ctx, int64_t count, int64_t symbols, int64_t delay,
                                 int64_t vocab, uint64_t seed) {
    const char *what = "dataset_copy_task";
    /* the bounds keep 2 * symbols + delay from overflowing; the data set checks the total */
    const int64_t limit = (int64_t)1 << 40;
    if (!ctx || !check_size(ctx, what, "symbols", symbols, 1, limit) ||
        !check_size(ctx, what, "delay", delay, 0, limit) ||
        !check_size(ctx, what, "vocab", vocab, 1, UINT32_MAX))
        return NULL;
    int64_t steps = 2 * symbols + delay, channels = vocab + 1;
    tg_dataset *ds = tgi_dataset_new(ctx, what, count, 2, (const int64_t[]){steps, channels}, 1,
                                     (const int64_t[]){symbols}, vocab);
    if (!ds) return NULL;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < count; i++) {
        float *x = ds->x + i * steps * channels, *y = ds->y + i * symbols;
        for (int64_t s = 0; s < symbols; s++) {
            uint32_t symbol = tg_rng_below(&rng, (uint32_t)vocab);
            x[s * channels + symbol] = 1.0f;
            y[s] = (float)symbol;
            /* the recall steps are the last `symbols` steps, after the blank delay */
            x[(symbols + delay + s) * channels + vocab] = 1.0f;
        }
    }
    return ds;
}

tg_dataset *tg_dataset_spirals(tg_ctx *ctx, int64_t count, float noise, uint64_t seed) {
    if (!ctx) return NULL;
    if (!(noise >= 0 && isfinite(noise))) {
        tgi_error(ctx, TG_ERR_INVALID, "dataset_spirals: noise %g, expected a finite value >= 0",
                  (double)noise);
        return NULL;
    }
    tg_dataset *ds = tgi_dataset_new(ctx, "dataset_spirals", count, 1, (const int64_t[]){2}, 0,
                                     NULL, 2);
    if (!ds) return NULL;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < count; i++) {
        /* Alternating classes keep them balanced. Radius t, two turns; class 1 is class 0
         * turned by half a turn. t = sqrt(u) spreads the points evenly along the arms (with a
         * uniform t the outer turns would be sparse and hard to learn). In double, so that a
         * last-bit difference between C libraries' cos and sin does not reach the float. */
        int64_t label = i % 2;
        double t = sqrt(tg_rng_uniform(&rng));
        double angle = 4.0 * PI * t + PI * (double)label;
        ds->x[2 * i] = (float)(t * cos(angle) + noise * tg_rng_normal(&rng));
        ds->x[2 * i + 1] = (float)(t * sin(angle) + noise * tg_rng_normal(&rng));
        ds->y[i] = (float)label;
    }
    return ds;
}

tg_dataset *tg_dataset_parity(tg_ctx *ctx, int64_t count, int64_t bits, uint64_t seed) {
    const char *what = "dataset_parity";
    if (!ctx || !check_size(ctx, what, "bits", bits, 1, (int64_t)1 << 40)) return NULL;
    tg_dataset *ds = tgi_dataset_new(ctx, what, count, 1, (const int64_t[]){bits}, 0, NULL, 2);
    if (!ds) return NULL;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < count; i++) {
        uint32_t parity = 0;
        for (int64_t b = 0; b < bits; b++) {
            uint32_t bit = tg_rng_u32(&rng) >> 31; /* the top bit: the generator's best */
            ds->x[i * bits + b] = (float)bit;
            parity ^= bit;
        }
        ds->y[i] = (float)parity;
    }
    return ds;
}
