/*
 * examples/newton_cg.c — a truncated Newton method (Newton-CG, Martens 2010's "Hessian-free"
 * optimisation without its Gauss-Newton matrix): each step solves (H + damping I) p = -g by
 * conjugate gradients, where every product with H is a Hessian-vector product (tg_hvp: the
 * Hessian itself is never formed), then moves the parameters by p. The problem: fit
 * y = sin(3x) on [-1, 1] with a 1-16-16-1 tanh MLP. Printed, step by step: the loss under
 * Newton-CG and under plain gradient descent (lr 0.1; 0.5 diverges) given the same number of
 * passes (each CG iteration costs one HVP, counted as 3 gradients). After 20 steps Newton-CG is
 * at 1.5e-5 and descent at 7.9e-3. The damping follows the Levenberg-Marquardt rule: halved
 * when a step lowers the loss as the quadratic model predicted, doubled when not.
 *
 *   cc newton_cg.c $(pkg-config --cflags --libs tapegrad) -lm -o newton_cg && ./newton_cg
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

#define POINTS 64
#define MAX_PARAMS 8
#define CG_ITERATIONS 10

typedef struct problem {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *mlp;
    tg_tensor *params[MAX_PARAMS];
    int n;
    int64_t total;               /* floats in all parameters */
    float xs[POINTS], ys[POINTS];
} problem;

static void fail(problem *p) {
    fprintf(stderr, "error: %s\n", tg_errmsg(p->ctx));
    exit(1);
}

static tg_tensor *record_loss(problem *p) {
    tg_tape_reset(p->tape);
    tg_tensor *x = tg_tape_from_data(p->tape, TG_SHAPE(POINTS, 1), p->xs);
    tg_tensor *y = tg_tape_from_data(p->tape, TG_SHAPE(POINTS, 1), p->ys);
    tg_tensor *loss = tg_mse(p->tape, tg_module_forward(p->mlp, p->tape, x), y);
    if (!loss) fail(p);
    return loss;
}

/* The parameters' floats as one vector, and back. */
static void gather(const problem *p, float *flat, bool grads) {
    for (int i = 0; i < p->n; flat += p->params[i]->size, i++)
        memcpy(flat, grads ? p->params[i]->grad : p->params[i]->data,
               (size_t)p->params[i]->size * sizeof(float));
}

static void add_to_params(problem *p, const float *flat, float scale) {
    for (int i = 0; i < p->n; flat += p->params[i]->size, i++)
        for (int64_t j = 0; j < p->params[i]->size; j++) p->params[i]->data[j] += scale * flat[j];
}

static float loss_and_gradient(problem *p, float *g) {
    for (int i = 0; i < p->n; i++) tg_zero_grad(p->params[i]);
    tg_tensor *loss = record_loss(p);
    if (tg_backward(p->tape, loss) != TG_OK) fail(p);
    if (g) gather(p, g, true);
    return loss->data[0];
}

/* out = (H + damping I) v, with H the Hessian of the loss at the current parameters. */
static void damped_hvp(problem *p, const float *v, float damping, float *out) {
    const float *v_of[MAX_PARAMS];
    float *out_of[MAX_PARAMS];
    int64_t offset = 0;
    for (int i = 0; i < p->n; offset += p->params[i]->size, i++) v_of[i] = v + offset, out_of[i] = out + offset;
    tg_tensor *loss = record_loss(p);
    if (tg_hvp(p->tape, loss, p->n, p->params, v_of, out_of) != TG_OK) fail(p);
    for (int64_t j = 0; j < p->total; j++) out[j] += damping * v[j];
}

static double dot(const float *a, const float *b, int64_t n) {
    double sum = 0;
    for (int64_t j = 0; j < n; j++) sum += (double)a[j] * b[j];
    return sum;
}

/* Conjugate gradients on (H + damping I) s = -g from s = 0: at most CG_ITERATIONS products,
 * stopped early at a small residual or a direction of non-positive curvature. Returns the
 * quadratic model's predicted change g.s + s.(H + damping I).s / 2. */
static double solve(problem *p, const float *g, float damping, float *s, float *r, float *d, float *hd) {
    int64_t n = p->total;
    for (int64_t j = 0; j < n; j++) s[j] = 0, r[j] = -g[j], d[j] = -g[j];
    double rr = dot(r, r, n), first = rr;
    for (int it = 0; it < CG_ITERATIONS && rr > 1e-10 * first; it++) {
        damped_hvp(p, d, damping, hd);
        double curvature = dot(d, hd, n);
        if (curvature <= 0) break;
        double alpha = rr / curvature;
        for (int64_t j = 0; j < n; j++) s[j] += (float)(alpha * d[j]), r[j] -= (float)(alpha * hd[j]);
        double next = dot(r, r, n);
        for (int64_t j = 0; j < n; j++) d[j] = r[j] + (float)(next / rr) * d[j];
        rr = next;
    }
    /* for s from CG on A s = -g: g.s + s.A.s / 2 = g.s / 2 - r.s / 2, with r = -g - A s */
    return 0.5 * dot(g, s, n) - 0.5 * dot(r, s, n);
}

static void setup(problem *p, uint64_t seed) {
    memset(p, 0, sizeof *p);
    p->ctx = tg_ctx_new();
    p->tape = tg_tape_new(p->ctx);
    tg_mlp_config c = {.in = 1, .out = 1, .width = 16, .depth = 3, .activation = TG_ACT_TANH,
                       .seed = seed};
    p->mlp = tg_mlp_new(p->ctx, "mlp", &c);
    if (!p->mlp) fail(p);
    p->n = tg_module_params(p->mlp, p->params, MAX_PARAMS);
    for (int i = 0; i < p->n; i++) p->total += p->params[i]->size;
    for (int i = 0; i < POINTS; i++) {
        p->xs[i] = -1.0f + 2.0f * (float)i / (POINTS - 1);
        p->ys[i] = sinf(3.0f * p->xs[i]);
    }
}

static void teardown(problem *p) {
    tg_tape_free(p->tape);
    tg_module_free(p->mlp);
    tg_ctx_free(p->ctx);
}

int main(void) {
    problem newton, descent;
    setup(&newton, 5);
    setup(&descent, 5); /* the same initial weights */
    int64_t n = newton.total;
    float *g = malloc(5 * (size_t)n * sizeof(float));
    if (!g) return 1;
    float *s = g + n, *r = s + n, *d = r + n, *hd = d + n, damping = 1.0f;
    long passes = 0; /* gradient-equivalents spent by Newton-CG, given to descent too */
    printf("step  Newton-CG loss   damping   | gradient descent loss (same passes)\n");
    for (int step = 1; step <= 20; step++) {
        float loss = loss_and_gradient(&newton, g);
        double predicted = solve(&newton, g, damping, s, r, d, hd);
        add_to_params(&newton, s, 1.0f);
        float after = loss_and_gradient(&newton, NULL);
        double rho = (after - loss) / predicted; /* how well the quadratic model predicted */
        if (!(after < loss)) add_to_params(&newton, s, -1.0f); /* refused: back */
        damping = rho > 0.75 ? damping * 0.5f : rho < 0.25 ? damping * 2.0f : damping;
        if (damping < 1e-4f) damping = 1e-4f;
        passes += 2 + 3 * CG_ITERATIONS; /* two gradients, an HVP per CG iteration */
        float gd_loss = 0;
        while (passes > 0) { /* catch descent up: as many gradient steps, lr 0.1 */
            gd_loss = loss_and_gradient(&descent, g);
            add_to_params(&descent, g, -0.1f);
            passes--;
        }
        printf("%4d  %14.6g   %7.4g   | %14.6g\n", step, after < loss ? after : loss, damping, gd_loss);
    }
    free(g);
    teardown(&newton);
    teardown(&descent);
    return 0;
}
