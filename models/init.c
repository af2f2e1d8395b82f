/*
 * models/init.c — activations by name, and weight initialisers (all seeded).
 */
#include "models/models.h"

#include <math.h>
#include <string.h>

static const char *const activation_names[] = {
    [TG_ACT_IDENTITY] = "identity", [TG_ACT_SIGMOID] = "sigmoid", [TG_ACT_TANH] = "tanh",
    [TG_ACT_RELU] = "relu",         [TG_ACT_LEAKY_RELU] = "leaky_relu", [TG_ACT_ELU] = "elu",
    [TG_ACT_GELU] = "gelu",         [TG_ACT_SOFTPLUS] = "softplus",
};

#define N_ACTIVATIONS ((int)(sizeof activation_names / sizeof activation_names[0]))

const char *tg_activation_name(tg_activation act) {
    return (int)act >= 0 && (int)act < N_ACTIVATIONS ? activation_names[act] : "unknown";
}

int tg_activation_from_name(const char *name) {
    for (int i = 0; name && i < N_ACTIVATIONS; i++)
        if (strcmp(activation_names[i], name) == 0) return i;
    return -1;
}

tg_tensor *tg_activate(tg_tape *tape, tg_tensor *x, tg_activation act) {
    if (!tape) return NULL; /* like every op, identity included */
    switch (act) {
    case TG_ACT_IDENTITY: return x;
    case TG_ACT_SIGMOID: return tg_sigmoid(tape, x);
    case TG_ACT_TANH: return tg_tanh(tape, x);
    case TG_ACT_RELU: return tg_relu(tape, x);
    case TG_ACT_LEAKY_RELU: return tg_leaky_relu(tape, x, 0.01f);
    case TG_ACT_ELU: return tg_elu(tape, x, 1.0f);
    case TG_ACT_GELU: return tg_gelu(tape, x);
    case TG_ACT_SOFTPLUS: return tg_softplus(tape, x);
    }
    if (tape) tgi_error(tape->ctx, TG_ERR_INVALID, "activate: unknown activation %d", (int)act);
    return NULL;
}

/* The gains of torch.nn.init.calculate_gain, so results compare with PyTorch's. */
float tg_init_gain(tg_activation act) {
    switch (act) {
    case TG_ACT_TANH: return 5.0f / 3.0f;
    case TG_ACT_RELU: return sqrtf(2.0f);
    case TG_ACT_LEAKY_RELU: return sqrtf(2.0f / (1.0f + 0.01f * 0.01f));
    case TG_ACT_ELU: return 1.0f;
    case TG_ACT_GELU: return sqrtf(2.0f); /* treated like relu, as is common practice */
    default: return 1.0f;
    }
}

tg_init tg_init_xavier(tg_activation act) {
    tg_init init = {TG_INIT_XAVIER_UNIFORM, 0, 0, 0, act, false};
    return init;
}

tg_init tg_init_he(tg_activation act) {
    tg_init init = {TG_INIT_HE_NORMAL, 0, 0, 0, act, false};
    return init;
}

tg_init tg_init_normal(float mean, float std) {
    tg_init init = {TG_INIT_NORMAL, mean, std, 0, TG_ACT_IDENTITY, false};
    return init;
}

/* Member by member, not memcmp: a copied struct's padding bytes are indeterminate (ASan's
 * malloc fills them with 0xbe), and an all-zero init must read as "not given" wherever it was. */
tg_init tgi_init_or(const tg_init *init, tg_init fallback) {
    bool unset = !init || (init->kind == 0 && init->a == 0.0f && init->b == 0.0f &&
                           init->gain == 0.0f && init->nonlinearity == 0 && !init->fan_out);
    return unset ? fallback : *init;
}

/* fan_in and fan_out of a weight [out, in/groups, receptive...]: the inputs one output reads and
 * the outputs one input feeds. Groups 1 is PyTorch's convention; for groups > 1 PyTorch keeps
 * fan_out = out * receptive, which overstates it by the factor groups. */
static void fans(const tg_tensor *t, int64_t groups, double *fan_in, double *fan_out) {
    if (t->ndim < 2) {
        *fan_in = *fan_out = (double)t->size;
        return;
    }
    double receptive = (double)t->size / (double)(t->shape[0] * t->shape[1]);
    *fan_in = (double)t->shape[1] * receptive;
    *fan_out = (double)t->shape[0] / (double)groups * receptive;
}

/* Rows (or columns, whichever are fewer) of a random normal matrix, orthonormalised by modified
 * Gram-Schmidt in double: the QR that orthogonal initialisation asks for, without LAPACK. */
static tg_status fill_orthogonal(tg_tensor *t, float gain, uint64_t seed) {
    int64_t rows = t->shape[0], cols = t->size / rows;
    bool by_rows = rows <= cols;
    int64_t n = by_rows ? rows : cols, len = by_rows ? cols : rows;
    double *v = tgi_alloc(t->ctx, (size_t)(n * len) * sizeof *v);
    if (!v) return tgi_error(t->ctx, TG_ERR_NOMEM, "init: out of memory for an orthogonal matrix");
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n * len; i++) v[i] = tg_rng_normal(&rng);
    for (int64_t i = 0; i < n; i++) {
        double *vi = v + i * len;
        for (int64_t j = 0; j < i; j++) {
            const double *vj = v + j * len;
            double dot = 0.0;
            for (int64_t k = 0; k < len; k++) dot += vi[k] * vj[k];
            for (int64_t k = 0; k < len; k++) vi[k] -= dot * vj[k];
        }
        double norm = 0.0;
        for (int64_t k = 0; k < len; k++) norm += vi[k] * vi[k];
        norm = sqrt(norm);
        for (int64_t k = 0; k < len; k++) vi[k] /= norm;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < len; k++)
            t->data[by_rows ? i * cols + k : k * cols + i] = (float)(gain * v[i * len + k]);
    tgi_free(t->ctx, v, (size_t)(n * len) * sizeof *v);
    return TG_OK;
}

static tg_status fill_identity(tg_tensor *t, float gain) {
    if (t->ndim != 2)
        return tgi_error(t->ctx, TG_ERR_SHAPE, "init '%s': identity needs a 2-D tensor, %d dims",
                         t->label, t->ndim);
    tg_fill(t, 0.0f);
    for (int64_t i = 0; i < t->shape[0] && i < t->shape[1]; i++) t->data[i * t->shape[1] + i] = gain;
    return TG_OK;
}

tg_status tg_init_tensor(tg_tensor *t, const tg_init *init, uint64_t seed) {
    if (!t) return TG_ERR_INVALID;
    if (tgi_refuse_stale(t, "init_tensor") != TG_OK) return TG_ERR_STATE;
    if (!init) return tgi_error(t->ctx, TG_ERR_INVALID, "init '%s': init is NULL", t->label);
    return tgi_init_grouped(t, init, 1, seed);
}

tg_status tgi_init_grouped(tg_tensor *t, const tg_init *init, int64_t groups, uint64_t seed) {
    float gain = init->gain != 0.0f ? init->gain : tg_init_gain(init->nonlinearity);
    double fan_in, fan_out;
    fans(t, groups, &fan_in, &fan_out);
    switch (init->kind) {
    case TG_INIT_UNIFORM: tg_fill_uniform(t, init->a, init->b, seed); return TG_OK;
    case TG_INIT_NORMAL: tg_fill_normal(t, init->a, init->b, seed); return TG_OK;
    case TG_INIT_CONSTANT: tg_fill(t, init->a); return TG_OK;
    case TG_INIT_XAVIER_UNIFORM: {
        float bound = gain * (float)sqrt(6.0 / (fan_in + fan_out));
        tg_fill_uniform(t, -bound, bound, seed);
        return TG_OK;
    }
    case TG_INIT_XAVIER_NORMAL:
        tg_fill_normal(t, 0.0f, gain * (float)sqrt(2.0 / (fan_in + fan_out)), seed);
        return TG_OK;
    case TG_INIT_HE_UNIFORM: {
        float bound = gain * (float)sqrt(3.0 / (init->fan_out ? fan_out : fan_in));
        tg_fill_uniform(t, -bound, bound, seed);
        return TG_OK;
    }
    case TG_INIT_HE_NORMAL:
        tg_fill_normal(t, 0.0f, gain / (float)sqrt(init->fan_out ? fan_out : fan_in), seed);
        return TG_OK;
    case TG_INIT_ORTHOGONAL:
        if (t->ndim < 2)
            return tgi_error(t->ctx, TG_ERR_SHAPE, "init '%s': orthogonal needs 2 or more dims, "
                             "%d given", t->label, t->ndim);
        return fill_orthogonal(t, gain, seed);
    case TG_INIT_IDENTITY: return fill_identity(t, gain);
    }
    return tgi_error(t->ctx, TG_ERR_INVALID, "init '%s': unknown kind %d", t->label, (int)init->kind);
}
