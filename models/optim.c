/*
 * models/optim.c — optimizers (SGD, Adam, AdamW, RMSprop) and the schedule they follow (its
 * rates: models/schedule.c), L1/L2 penalties as ops, and accuracy.
 *
 * The update rules follow PyTorch's torch.optim (same defaults, same bias correction, SGD's
 * momentum buffer starting at the first gradient), so runs can be compared number for number.
 * All optimizer state is allocated when the optimizer is made: a step never allocates.
 */
#include "models/models.h"

#include <math.h>
#include <string.h>

struct tg_optimizer {
    tg_ctx *ctx;
    tg_optimizer_config config;
    tg_tensor **params;
    int n_params;
    float **first, **second;  /* per parameter: momentum / m, and v (Adam, RMSprop) */
    int64_t *steps;           /* per parameter, as PyTorch's state['step']: a skipped parameter's
                                 count stays, so its Adam bias correction is its own */
    tgi_retired retired;      /* tg_optimizer_free */
    int64_t step_count;       /* tg_optimizer_step calls: the schedule's position */
    bool scheduled;           /* follow `schedule` (its lr: config.lr) */
    tg_schedule schedule;
    double lr_scale;          /* the step guard's factor (1: none), in double as the guard's */
};

static bool needs_first(const tg_optimizer_config *c) {
    return c->kind == TG_OPT_ADAM || c->kind == TG_OPT_ADAMW || c->momentum != 0.0f;
}

static bool needs_second(const tg_optimizer_config *c) {
    return c->kind != TG_OPT_SGD;
}

static tg_optimizer_config with_defaults(const tg_optimizer_config *c) {
    tg_optimizer_config d = *c;
    if (d.beta1 == 0.0f) d.beta1 = 0.9f;
    if (d.beta2 == 0.0f) d.beta2 = 0.999f;
    if (d.eps == 0.0f) d.eps = 1e-8f;
    if (d.alpha == 0.0f) d.alpha = 0.99f;
    return d;
}

void tg_optimizer_free(tg_optimizer *opt) {
    if (!opt || opt->retired.freed) return;
    tg_ctx *ctx = opt->ctx;
    for (int i = 0; i < opt->n_params; i++) {
        size_t bytes = (size_t)opt->params[i]->size * sizeof(float);
        if (opt->first) tgi_free(ctx, opt->first[i], bytes);
        if (opt->second) tgi_free(ctx, opt->second[i], bytes);
    }
    size_t table = (size_t)opt->n_params * sizeof(float *);
    tgi_free(ctx, opt->first, table);
    tgi_free(ctx, opt->second, table);
    tgi_free(ctx, opt->steps, (size_t)opt->n_params * sizeof *opt->steps);
    tgi_free(ctx, opt->params, (size_t)opt->n_params * sizeof *opt->params);
    tgi_retire(ctx, &opt->retired, opt, sizeof *opt);
}

/* One zeroed state buffer per parameter. */
static float **state_buffers(tg_optimizer *opt) {
    size_t table = (size_t)opt->n_params * sizeof(float *);
    float **buffers = tgi_alloc(opt->ctx, table);
    if (!buffers) return NULL;
    memset(buffers, 0, table);
    for (int i = 0; i < opt->n_params; i++) {
        size_t bytes = (size_t)opt->params[i]->size * sizeof(float);
        if (!(buffers[i] = tgi_alloc(opt->ctx, bytes))) return buffers; /* caller sees the NULL */
        memset(buffers[i], 0, bytes);
    }
    return buffers;
}

static bool complete(float **buffers, int n) {
    if (!buffers) return false;
    for (int i = 0; i < n; i++)
        if (!buffers[i]) return false;
    return true;
}

tg_optimizer *tg_optimizer_new(tg_ctx *ctx, tg_tensor *const *params, int n_params,
                               const tg_optimizer_config *config) {
    if (!ctx) return NULL;
    if (n_params < 0) { /* the count of a tg_module_params that did not fit, passed on */
        tgi_error(ctx, TG_ERR_INVALID, "optimizer: n_params is %d: a parameter count is at least 1 "
                  "(tg_module_params gives -1 when the array is too small: size it with "
                  "tg_module_param_count, or use tg_optimizer_new_module)", n_params);
        return NULL;
    }
    if (!config || n_params < 1 || !params || !(config->lr >= 0.0f) || (unsigned)config->kind > TG_OPT_RMSPROP) {
        tgi_error(ctx, TG_ERR_INVALID, "optimizer: needs a kind, lr >= 0 and at least one parameter");
        return NULL;
    }
    if (tgi_refuse_stale_list(ctx, params, n_params, "optimizer") != TG_OK) return NULL;
    for (int i = 0; i < n_params; i++)
        if (!params[i] || !params[i]->persistent) {
            tgi_error(ctx, TG_ERR_INVALID, "optimizer: parameter %d is %s", i,
                      params[i] ? "not a persistent tensor (tg_zeros & co.)" : "NULL");
            return NULL;
        }
    tg_optimizer *opt = tgi_alloc(ctx, sizeof *opt);
    if (!opt) goto out_of_memory;
    memset(opt, 0, sizeof *opt);
    opt->ctx = ctx;
    opt->config = with_defaults(config);
    opt->lr_scale = 1.0;
    opt->params = tgi_alloc(ctx, (size_t)n_params * sizeof *opt->params);
    if (!opt->params) goto out_of_memory;
    memcpy(opt->params, params, (size_t)n_params * sizeof *params);
    opt->n_params = n_params;
    if (!(opt->steps = tgi_alloc(ctx, (size_t)n_params * sizeof *opt->steps))) goto out_of_memory;
    memset(opt->steps, 0, (size_t)n_params * sizeof *opt->steps);
    if (needs_first(&opt->config) && !complete(opt->first = state_buffers(opt), n_params)) goto out_of_memory;
    if (needs_second(&opt->config) && !complete(opt->second = state_buffers(opt), n_params)) goto out_of_memory;
    return opt;
out_of_memory:
    tg_optimizer_free(opt);
    tgi_error(ctx, TG_ERR_NOMEM, "optimizer: out of memory for its state");
    return NULL;
}

tg_optimizer *tg_optimizer_new_module(tg_module *module, const tg_optimizer_config *config) {
    if (!module) return NULL;
    tg_ctx *ctx = module->ctx;
    int n = tg_module_param_count(module);
    if (n < 1) {
        tgi_error(ctx, TG_ERR_INVALID, "optimizer_new_module: module '%s' has no parameters", module->name);
        return NULL;
    }
    size_t bytes = (size_t)n * sizeof(tg_tensor *);
    tg_tensor **params = tgi_alloc(ctx, bytes);
    if (!params) {
        tgi_error(ctx, TG_ERR_NOMEM, "optimizer_new_module: out of memory for %d parameters", n);
        return NULL;
    }
    tg_module_params(module, params, n);
    tg_optimizer *opt = tg_optimizer_new(ctx, params, n, config); /* copies the pointers */
    tgi_free(ctx, params, bytes);
    return opt;
}

/*
 * The update loops. Each reads the configuration into locals once and has no branch inside the
 * loop (the cases are separate loops), and its arrays are restrict: so the compiler keeps the
 * constants in registers and vectorises. The arithmetic is written in exactly the order of
 * PyTorch's formulas, so every case gives the numbers the obvious per-element code gives.
 */
static void sgd(const tg_optimizer_config *c, float *restrict w, const float *restrict g,
                float *restrict buf, int64_t n, bool first_step) {
    const float lr = c->lr, decay = c->weight_decay, momentum = c->momentum;
    if (!buf) {
        for (int64_t i = 0; i < n; i++) w[i] -= lr * (g[i] + decay * w[i]);
        return;
    }
    /* The buffer starts at the first gradient: 0 * (its zeros) + d on the first step. */
    const float keep = first_step ? 0.0f : momentum;
    if (c->nesterov)
        for (int64_t i = 0; i < n; i++) {
            float d = g[i] + decay * w[i];
            buf[i] = keep * buf[i] + d;
            w[i] -= lr * (d + momentum * buf[i]);
        }
    else
        for (int64_t i = 0; i < n; i++) {
            buf[i] = keep * buf[i] + (g[i] + decay * w[i]);
            w[i] -= lr * buf[i];
        }
}

/* sqrt of a non-negative number, correctly rounded like sqrtf but without errno, so the loop
 * may use the vector instruction (a sqrtf call keeps a loop scalar when errno is honoured, and
 * __builtin_sqrtf honours it too). */
#if defined(__has_builtin)
#if __has_builtin(__builtin_elementwise_sqrt)
#define TGI_HAVE_ELEMENTWISE_SQRT 1
#endif
#endif
static inline float root(float x) {
#if defined(TGI_HAVE_ELEMENTWISE_SQRT)
    return __builtin_elementwise_sqrt(x);
#else
    return sqrtf(x);
#endif
}

/* Adam: d = g + wd w (L2 in the gradient); AdamW: w -= lr wd w first, d = g. */
static void adam(const tg_optimizer_config *c, float *restrict w, const float *restrict g,
                 float *restrict m, float *restrict v, int64_t n, int64_t t) {
    const bool decoupled = c->kind == TG_OPT_ADAMW;
    const float lr = c->lr, eps = c->eps, beta1 = c->beta1, beta2 = c->beta2;
    const float rest1 = 1.0f - beta1, rest2 = 1.0f - beta2;
    const float correct1 = 1.0f - powf(beta1, (float)t), correct2 = 1.0f - powf(beta2, (float)t);
    const float l2 = decoupled ? 0.0f : c->weight_decay, shrink = decoupled ? lr * c->weight_decay : 0.0f;
    if (decoupled)
        for (int64_t i = 0; i < n; i++) w[i] -= shrink * w[i];
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + l2 * w[i];
        m[i] = beta1 * m[i] + rest1 * d;
        v[i] = beta2 * v[i] + rest2 * d * d;
        w[i] -= lr * (m[i] / correct1) / (root(v[i] / correct2) + eps);
    }
}

static void rmsprop(const tg_optimizer_config *c, float *restrict w, const float *restrict g,
                    float *restrict buf, float *restrict v, int64_t n) {
    const float lr = c->lr, eps = c->eps, alpha = c->alpha, rest = 1.0f - c->alpha;
    const float decay = c->weight_decay, momentum = c->momentum;
    if (buf)
        for (int64_t i = 0; i < n; i++) {
            float d = g[i] + decay * w[i];
            v[i] = alpha * v[i] + rest * d * d;
            buf[i] = momentum * buf[i] + d / (root(v[i]) + eps);
            w[i] -= lr * buf[i];
        }
    else
        for (int64_t i = 0; i < n; i++) {
            float d = g[i] + decay * w[i];
            v[i] = alpha * v[i] + rest * d * d;
            w[i] -= lr * (d / (root(v[i]) + eps));
        }
}

/* The update of parameter i's elements [from, from + n), step t of it, by c (the optimizer's
 * configuration at this step's rate). */
static void update(const tg_optimizer *opt, const tg_optimizer_config *c, int i, int64_t from,
                   int64_t n, int64_t t) {
    tg_tensor *p = opt->params[i];
    float *w = p->data + from, *g = p->grad + from;
    float *first = opt->first ? opt->first[i] + from : NULL;
    float *second = opt->second ? opt->second[i] + from : NULL;
    switch (c->kind) {
    case TG_OPT_SGD: sgd(c, w, g, first, n, t == 1); break;
    case TG_OPT_ADAM:
    case TG_OPT_ADAMW: adam(c, w, g, first, second, n, t); break;
    case TG_OPT_RMSPROP: rmsprop(c, w, g, first, second, n); break;
    }
}

/* Elements updated before their gradient is zeroed, when both are asked for: 16 KB of gradient,
 * still in the first-level cache when it is zeroed. */
#define ZERO_BLOCK ((int64_t)4096)

/* The rate of the step at the optimizer's position: scheduled or not, times the guard's factor
 * (in double, as the guard always scaled it, so a factor of 1 gives the base rate's bits). */
static float rate_now(const tg_optimizer *opt) {
    float base = opt->scheduled ? tgi_schedule_rate(&opt->schedule, opt->config.lr, opt->step_count)
                                : opt->config.lr;
    return opt->lr_scale == 1.0 ? base : (float)((double)base * opt->lr_scale);
}

static tg_status step(tg_optimizer *opt, bool zero_grads) {
    if (!opt) return TG_ERR_INVALID;
    tg_optimizer_config c = opt->config;
    c.lr = rate_now(opt);
    opt->step_count++;
    for (int i = 0; i < opt->n_params; i++) {
        tg_tensor *p = opt->params[i];
        /* PyTorch 2 (zero_grad(set_to_none=True)) skips a parameter backward did not reach: no
         * weight decay, no momentum, no Adam step on an unused branch */
        if (!tg_grad_is_set(p)) {
            if (zero_grads) tg_zero_grad(p);
            continue;
        }
        int64_t t = ++opt->steps[i];
        if (!zero_grads) {
            update(opt, &c, i, 0, p->size, t);
            continue;
        }
        /* block by block, so the zeros are written while the gradient is in the cache: no
         * second pass over it, as tg_optimizer_zero_grad's */
        for (int64_t from = 0; from < p->size; from += ZERO_BLOCK) {
            int64_t n = p->size - from < ZERO_BLOCK ? p->size - from : ZERO_BLOCK;
            update(opt, &c, i, from, n, t);
            memset(p->grad + from, 0, (size_t)n * sizeof(float));
        }
        p->grad_unset = true;
    }
    return TG_OK;
}

tg_status tg_optimizer_step(tg_optimizer *opt) { return step(opt, false); }

tg_status tg_optimizer_step_zero_grad(tg_optimizer *opt) { return step(opt, true); }

void tg_optimizer_zero_grad(tg_optimizer *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_params; i++) tg_zero_grad(opt->params[i]);
}

void tg_optimizer_set_lr(tg_optimizer *opt, float lr) {
    if (opt) opt->config.lr = lr;
}
float tg_optimizer_lr(const tg_optimizer *opt) { return opt ? rate_now(opt) : NAN; }

tg_status tg_optimizer_set_schedule(tg_optimizer *opt, const tg_schedule *schedule) {
    if (!opt) return TG_ERR_INVALID;
    if (!schedule) {
        opt->scheduled = false;
        return TG_OK;
    }
    if (tgi_schedule_check(opt->ctx, schedule, opt->config.lr) != TG_OK) return TG_ERR_INVALID;
    opt->schedule = *schedule;
    opt->scheduled = true;
    return TG_OK;
}

int64_t tg_optimizer_step_count(const tg_optimizer *opt) { return opt ? opt->step_count : -1; }

/* ---- snapshots (the step guard's rollback, diagnostics/guard.c) ------------------------------ */

tg_ctx *tgi_optimizer_ctx(const tg_optimizer *opt) { return opt->ctx; }

const tg_tensor *tgi_optimizer_first_param(const tg_optimizer *opt) { return opt->params[0]; }

/* Each parameter's step count, then the optimizer's (the schedule's position). */
int tgi_optimizer_state_steps(const tg_optimizer *opt) { return opt->n_params + 1; }

void tgi_optimizer_set_lr_scale(tg_optimizer *opt, double scale) { opt->lr_scale = scale; }

/* The parameters, then the first and second state buffers each parameter has. */
int64_t tgi_optimizer_state_floats(const tg_optimizer *opt) {
    int64_t total = 0;
    int copies = 1 + (opt->first != NULL) + (opt->second != NULL);
    for (int i = 0; i < opt->n_params; i++) total += copies * opt->params[i]->size;
    return total;
}

/* Copies one way or the other between the optimizer and a flat snapshot, in the order above,
 * so saving and loading cannot disagree on the layout. */
static void transfer(tg_optimizer *opt, float *floats, int64_t *steps, bool save) {
    for (int i = 0; i < opt->n_params; i++) {
        float *parts[3] = {opt->params[i]->data, opt->first ? opt->first[i] : NULL,
                           opt->second ? opt->second[i] : NULL};
        size_t bytes = (size_t)opt->params[i]->size * sizeof(float);
        for (int k = 0; k < 3; k++) {
            if (!parts[k]) continue;
            if (save) memcpy(floats, parts[k], bytes);
            else memcpy(parts[k], floats, bytes);
            floats += opt->params[i]->size;
        }
    }
    if (save) memcpy(steps, opt->steps, (size_t)opt->n_params * sizeof *steps);
    else memcpy(opt->steps, steps, (size_t)opt->n_params * sizeof *steps);
    if (save) steps[opt->n_params] = opt->step_count;
    else opt->step_count = steps[opt->n_params];
}

void tgi_optimizer_save(const tg_optimizer *opt, float *floats, int64_t *steps) {
    transfer((tg_optimizer *)opt, floats, steps, true); /* save only reads the optimizer */
}

void tgi_optimizer_load(tg_optimizer *opt, const float *floats, const int64_t *steps) {
    transfer(opt, (float *)floats, (int64_t *)steps, false); /* load only reads the snapshot */
}

/* ---- penalties and metrics ----------------------------------------------------------------- */

typedef tg_tensor *(*elementwise_fn)(tg_tape *, tg_tensor *);

static tg_tensor *penalty(tg_tape *tape, tg_tensor *const *params, int n, float coeff,
                          elementwise_fn each) {
    tg_tensor *total = NULL;
    if (!params && n > 0) n = 0; /* no parameters: refused below */
    for (int i = 0; i < n; i++) {
        tg_tensor *term = tg_sum(tape, each(tape, params[i]));
        total = total ? tg_add(tape, total, term) : term;
        if (!total) return NULL;
    }
    if (!total) {
        if (tape) tgi_error(tape->ctx, TG_ERR_INVALID, "penalty: no parameters");
        return NULL;
    }
    return tg_scale(tape, total, coeff);
}

tg_tensor *tg_l2_penalty(tg_tape *tape, tg_tensor *const *params, int n_params, float coeff) {
    return penalty(tape, params, n_params, coeff, tg_square);
}

tg_tensor *tg_l1_penalty(tg_tape *tape, tg_tensor *const *params, int n_params, float coeff) {
    return penalty(tape, params, n_params, coeff, tg_abs);
}

float tg_accuracy(const tg_tensor *logits, const tg_tensor *labels) {
    if (!logits || !labels || tgi_refuse_stale(logits, "accuracy (logits)") != TG_OK ||
        tgi_refuse_stale(labels, "accuracy (labels)") != TG_OK)
        return NAN;
    if (logits->ndim != 2 || labels->size != logits->shape[0]) return NAN;
    int64_t rows = logits->shape[0], classes = logits->shape[1], correct = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = logits->data + r * classes;
        int64_t best = 0;
        bool nan = isnan(row[0]);
        for (int64_t j = 1; j < classes; j++) {
            if (row[j] > row[best]) best = j;
            nan |= isnan(row[j]);
        }
        correct += !nan && (float)best == labels->data[r]; /* a NaN row is never right by luck */
    }
    return rows ? (float)correct / (float)rows : NAN;
}
