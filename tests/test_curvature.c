/*
 * tests/test_curvature.c — the curvature and Jacobian instruments against references built
 * without them: a quadratic whose Hessian is a known matrix; a tiny tanh MLP whose dense Hessian
 * comes from second differences of its loss computed here in double, and whose dense Jacobian
 * from differences of its forward in double (eigenvalues by Jacobi rotations, singular values
 * by one-sided Jacobi, both here); the gradient-noise scale against a hand computation and a
 * simulation with a known answer. Also: same seed same bits, nothing allocated once a workspace
 * has run, the caller's gradients and hooks left alone.
 */
#include "helpers.h"

#include <math.h>

/* ---- dense references ------------------------------------------------------------------------ */

/* Eigenvalues (descending) of the symmetric n x n matrix a (destroyed), cyclic Jacobi. */
static void jacobi_eigenvalues(double *a, int n, double *values) {
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
        if (off < 1e-26) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
    }
    for (int i = 0; i < n; i++) values[i] = a[i * n + i];
    for (int i = 0; i < n; i++) /* descending */
        for (int j = i + 1; j < n; j++)
            if (values[j] > values[i]) {
                double t = values[i];
                values[i] = values[j];
                values[j] = t;
            }
}

/* Singular values (descending) of the rows x cols matrix a (row-major, destroyed), one-sided
 * Jacobi: rotate column pairs until all are orthogonal; the values are the columns' norms. */
static int jacobi_singular_values(double *a, int rows, int cols, double *values) {
    for (int sweep = 0; sweep < 100; sweep++) {
        bool rotated = false;
        for (int p = 0; p < cols; p++)
            for (int q = p + 1; q < cols; q++) {
                double alpha = 0, beta = 0, gamma = 0;
                for (int k = 0; k < rows; k++) {
                    alpha += a[k * cols + p] * a[k * cols + p];
                    beta += a[k * cols + q] * a[k * cols + q];
                    gamma += a[k * cols + p] * a[k * cols + q];
                }
                if (fabs(gamma) <= 1e-15 * sqrt(alpha * beta)) continue;
                rotated = true;
                double zeta = (beta - alpha) / (2 * gamma);
                double t = (zeta >= 0 ? 1 : -1) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), s = c * t;
                for (int k = 0; k < rows; k++) {
                    double x = a[k * cols + p], y = a[k * cols + q];
                    a[k * cols + p] = c * x - s * y;
                    a[k * cols + q] = s * x + c * y;
                }
            }
        if (!rotated) break;
    }
    for (int j = 0; j < cols; j++) {
        double sum = 0;
        for (int k = 0; k < rows; k++) sum += a[k * cols + j] * a[k * cols + j];
        values[j] = sqrt(sum);
    }
    for (int i = 0; i < cols; i++)
        for (int j = i + 1; j < cols; j++)
            if (values[j] > values[i]) {
                double t = values[i];
                values[i] = values[j];
                values[j] = t;
            }
    return rows < cols ? rows : cols; /* the singular values; the rest are zeros */
}

/* ---- a quadratic 0.5 x^T A x: its Hessian is A ----------------------------------------------------- */

#define QN 7

typedef struct quadratic {
    tg_ctx *ctx;
    tg_tensor *a, *x;
    double dense[QN * QN];
} quadratic;

static tg_tensor *quadratic_loss(tg_tape *tape, tg_tensor *const *inputs, int n, void *user) {
    (void)n;
    quadratic *q = user;
    tg_tensor *ax = tg_matmul(tape, q->a, inputs[0]);
    return tg_scale(tape, tg_sum(tape, tg_mul(tape, inputs[0], ax)), 0.5f);
}

/* A = P diag(lambda) P with P = I - 2 u u^T / |u|^2 (a reflection: orthogonal, symmetric);
 * diagonal when not rotated. */
static void quadratic_make(quadratic *q, const double *lambda, bool rotated) {
    q->ctx = tg_ctx_new();
    double u[QN], uu = 0, p[QN * QN];
    for (int i = 0; i < QN; i++) uu += (u[i] = 1.0 + 0.3 * i);
    uu = 0;
    for (int i = 0; i < QN; i++) uu += u[i] * u[i];
    for (int i = 0; i < QN; i++)
        for (int j = 0; j < QN; j++) p[i * QN + j] = (i == j) - (rotated ? 2 * u[i] * u[j] / uu : 0);
    float a[QN * QN];
    for (int i = 0; i < QN; i++)
        for (int j = 0; j < QN; j++) {
            double sum = 0;
            for (int k = 0; k < QN; k++) sum += p[i * QN + k] * lambda[k] * p[j * QN + k];
            q->dense[i * QN + j] = sum;
            a[i * QN + j] = (float)sum;
        }
    for (int i = 0; i < QN; i++) /* exactly symmetric in f32 too */
        for (int j = 0; j < i; j++) a[i * QN + j] = a[j * QN + i];
    q->a = tg_from_data(q->ctx, TG_SHAPE(QN, QN), a);
    q->x = leaf(q->ctx, TG_SHAPE(QN, 1), (float[]){0.3f, -1, 2, 0.5f, -0.7f, 1.1f, 0});
}

static const double quadratic_lambda[QN] = {6, 3, 3, 1, 0.5, -1, -2.5}; /* 3 twice */

Test(curvature, lanczos_finds_a_known_spectrum_with_its_multiplicity) {
    quadratic q;
    quadratic_make(&q, quadratic_lambda, true);
    tg_curvature *c = tg_curvature_new(q.ctx, &q.x, 1, NULL); /* 20 steps, capped at 7 */
    cr_assert_not_null(c, "%s", tg_errmsg(q.ctx));
    tg_eigenvalues r;
    float top[QN];
    cr_assert_eq(tg_curvature_top_eigenvalues(c, quadratic_loss, &q, 4, &r, (float *[]){top}), TG_OK,
                 "%s", tg_errmsg(q.ctx));
    cr_expect(r.exact);
    cr_expect_eq(r.steps, QN);
    cr_assert_eq(r.count, 4);
    for (int i = 0; i < 4; i++)
        cr_expect(fabs(r.values[i] - quadratic_lambda[i]) < 2e-5, "value %d: %.8g, expected %g", i,
                  r.values[i], quadratic_lambda[i]);
    cr_expect(fabs(r.smallest + 2.5) < 2e-5, "smallest %.8g", r.smallest);
    /* the top vector is A's eigenvector of 6: A y = 6 y */
    double norm = 0, worst = 0;
    for (int i = 0; i < QN; i++) norm += (double)top[i] * top[i];
    for (int i = 0; i < QN; i++) {
        double ay = 0;
        for (int j = 0; j < QN; j++) ay += q.dense[i * QN + j] * top[j];
        worst = fmax(worst, fabs(ay - 6 * top[i]));
    }
    cr_expect(fabs(norm - 1) < 1e-5, "|y|^2 = %g", norm);
    cr_expect(worst < 1e-4, "|A y - 6 y| reaches %g", worst);
    tg_curvature_free(c);
    tg_ctx_free(q.ctx);
}

Test(curvature, hutchinson_is_exact_on_a_diagonal_and_within_its_error_otherwise) {
    double trace = 0;
    for (int i = 0; i < QN; i++) trace += quadratic_lambda[i];
    quadratic d;
    quadratic_make(&d, quadratic_lambda, false);
    tg_curvature_config cfg = tg_curvature_defaults();
    tg_curvature *c = tg_curvature_new(d.ctx, &d.x, 1, &cfg);
    double mean, error;
    cr_assert_eq(tg_curvature_trace(c, quadratic_loss, &d, &mean, &error), TG_OK, "%s", tg_errmsg(d.ctx));
    /* z^T D z = tr D for every z of +-1 */
    cr_expect(fabs(mean - trace) < 1e-5 && error < 1e-5, "trace %.8g +- %g, expected %g", mean, error, trace);
    tg_curvature_free(c);
    tg_ctx_free(d.ctx);

    quadratic q;
    quadratic_make(&q, quadratic_lambda, true);
    cfg.probes = 200;
    c = tg_curvature_new(q.ctx, &q.x, 1, &cfg);
    cr_assert_eq(tg_curvature_trace(c, quadratic_loss, &q, &mean, &error), TG_OK, "%s", tg_errmsg(q.ctx));
    /* the error bar itself: Var(z^T A z) = 2 sum_{i != j} A_ij^2 for Rademacher z */
    double off = 0;
    for (int i = 0; i < QN; i++)
        for (int j = 0; j < QN; j++) off += i != j ? q.dense[i * QN + j] * q.dense[i * QN + j] : 0;
    double expected_error = sqrt(2 * off / cfg.probes);
    cr_expect(fabs(mean - trace) < 4 * error, "trace %.6g +- %.3g, expected %g", mean, error, trace);
    cr_expect(error > 0.7 * expected_error && error < 1.3 * expected_error,
              "standard error %.4g, expected about %.4g", error, expected_error);
    tg_curvature_free(c);
    tg_ctx_free(q.ctx);
}

Test(curvature, the_density_of_a_diagonal_is_its_eigenvalues_each_of_weight_one_over_n) {
    static const double lambda[QN] = {5, 2, 1, 0.25, -0.5, -1, -4};
    quadratic d;
    quadratic_make(&d, lambda, false);
    tg_curvature_config cfg = tg_curvature_defaults();
    cfg.steps = QN;
    tg_curvature *c = tg_curvature_new(d.ctx, &d.x, 1, &cfg);
    double nodes[3 * QN], weights[3 * QN];
    int count = 0;
    cr_assert_eq(tg_curvature_density(c, quadratic_loss, &d, 3, nodes, weights, &count), TG_OK,
                 "%s", tg_errmsg(d.ctx));
    cr_assert_eq(count, 3 * QN);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < QN; i++) { /* ascending per run */
            double node = nodes[r * QN + i], weight = weights[r * QN + i];
            cr_expect(fabs(node - lambda[QN - 1 - i]) < 1e-5, "run %d node %d: %g", r, i, node);
            cr_expect(fabs(weight - 1.0 / (3 * QN)) < 1e-6, "run %d weight %d: %g", r, i, weight);
        }
    /* smoothed, it integrates to 1 */
    double grid[801], density[801], integral = 0;
    for (int g = 0; g < 801; g++) grid[g] = -10 + 0.025 * g;
    cr_assert_eq(tg_spectrum_density(nodes, weights, count, 0.3, grid, 801, density), TG_OK);
    for (int g = 0; g < 801; g++) integral += density[g] * 0.025;
    cr_expect(fabs(integral - 1) < 1e-3, "integral %g", integral);
    tg_curvature_free(c);
    tg_ctx_free(d.ctx);
}

/* ---- a tiny tanh MLP: 3 -> 4 (tanh) -> 2, batch 5, MSE ------------------------------------------ */

#define IN 3
#define HID 4
#define OUT 2
#define BATCH 5
#define NP (IN * HID + HID + HID * OUT + OUT)

typedef struct mlp {
    tg_ctx *ctx;
    tg_tensor *params[4]; /* w1 [IN,HID], b1 [HID], w2 [HID,OUT], b2 [OUT] */
    tg_tensor *x, *y;
} mlp;

static tg_tensor *mlp_forward(tg_tape *tape, tg_tensor *x, tg_tensor *const *p) {
    tg_tensor *h = tg_tanh(tape, tg_add(tape, tg_matmul(tape, x, p[0]), p[1]));
    return tg_add(tape, tg_matmul(tape, h, p[2]), p[3]);
}

static tg_tensor *mlp_loss(tg_tape *tape, tg_tensor *const *inputs, int n, void *user) {
    (void)n;
    mlp *m = user;
    return tg_mse(tape, mlp_forward(tape, m->x, inputs), m->y);
}

/* The same model in double: theta is the parameters flattened in order, x one sample. */
static void forward_double(const double *theta, const double *x, double *out) {
    const double *w1 = theta, *b1 = w1 + IN * HID, *w2 = b1 + HID, *b2 = w2 + HID * OUT;
    double h[HID];
    for (int j = 0; j < HID; j++) {
        double sum = b1[j];
        for (int i = 0; i < IN; i++) sum += x[i] * w1[i * HID + j];
        h[j] = tanh(sum);
    }
    for (int o = 0; o < OUT; o++) {
        double sum = b2[o];
        for (int j = 0; j < HID; j++) sum += h[j] * w2[j * OUT + o];
        out[o] = sum;
    }
}

static double loss_double(const mlp *m, const double *theta) {
    double sum = 0, out[OUT];
    for (int b = 0; b < BATCH; b++) {
        double x[IN];
        for (int i = 0; i < IN; i++) x[i] = m->x->data[b * IN + i];
        forward_double(theta, x, out);
        for (int o = 0; o < OUT; o++) {
            double d = out[o] - m->y->data[b * OUT + o];
            sum += d * d;
        }
    }
    return sum / (BATCH * OUT);
}

static void mlp_make(mlp *m) {
    m->ctx = tg_ctx_new();
    m->params[0] = tg_zeros(m->ctx, TG_SHAPE(IN, HID));
    m->params[1] = tg_zeros(m->ctx, TG_SHAPE(HID));
    m->params[2] = tg_zeros(m->ctx, TG_SHAPE(HID, OUT));
    m->params[3] = tg_zeros(m->ctx, TG_SHAPE(OUT));
    for (int p = 0; p < 4; p++) {
        tg_fill_normal(m->params[p], 0, 0.8f, 10 + (uint64_t)p);
        cr_assert_eq(tg_set_requires_grad(m->params[p], true), TG_OK);
    }
    m->x = tg_zeros(m->ctx, TG_SHAPE(BATCH, IN));
    m->y = tg_zeros(m->ctx, TG_SHAPE(BATCH, OUT));
    tg_fill_normal(m->x, 0, 1, 3);
    tg_fill_normal(m->y, 0, 1, 4);
}

/* The dense Hessian by second central differences of the double loss (step 1e-4: truncation
 * and rounding both near 1e-8). */
static void dense_hessian(const mlp *m, double *hessian) {
    double theta[NP];
    int k = 0;
    for (int p = 0; p < 4; p++)
        for (int64_t i = 0; i < m->params[p]->size; i++) theta[k++] = m->params[p]->data[i];
    const double h = 1e-4;
    for (int i = 0; i < NP; i++)
        for (int j = i; j < NP; j++) {
            double f[4];
            for (int s = 0; s < 4; s++) {
                double t[NP];
                memcpy(t, theta, sizeof t);
                t[i] += (s & 1 ? -h : h);
                t[j] += (s & 2 ? -h : h);
                f[s] = loss_double(m, t);
            }
            hessian[i * NP + j] = hessian[j * NP + i] = (f[0] - f[1] - f[2] + f[3]) / (4 * h * h);
        }
}

Test(curvature, lanczos_agrees_with_a_dense_hessian_of_a_small_mlp) {
    mlp m;
    mlp_make(&m);
    double hessian[NP * NP], lambda[NP], trace = 0;
    dense_hessian(&m, hessian);
    for (int i = 0; i < NP; i++) trace += hessian[i * NP + i];
    jacobi_eigenvalues(hessian, NP, lambda);
    const double scale = fmax(fabs(lambda[0]), fabs(lambda[NP - 1]));

    /* as many steps as parameters: the whole spectrum, to f32 precision */
    tg_curvature_config cfg = tg_curvature_defaults();
    cfg.steps = NP;
    tg_curvature *c = tg_curvature_new(m.ctx, m.params, 4, &cfg);
    cr_assert_not_null(c, "%s", tg_errmsg(m.ctx));
    tg_eigenvalues r;
    cr_assert_eq(tg_curvature_top_eigenvalues(c, mlp_loss, &m, 5, &r, NULL), TG_OK, "%s", tg_errmsg(m.ctx));
    cr_expect(r.exact);
    for (int i = 0; i < 5; i++)
        cr_expect(fabs(r.values[i] - lambda[i]) < 1e-4 * scale, "value %d: %.7g, dense %.7g", i,
                  r.values[i], lambda[i]);
    cr_expect(fabs(r.smallest - lambda[NP - 1]) < 1e-4 * scale, "smallest %.7g, dense %.7g",
              r.smallest, lambda[NP - 1]);
    tg_curvature_free(c);

    /* 12 steps of 26: the top converges, and every value has an eigenvalue within its residual */
    cfg.steps = 12;
    c = tg_curvature_new(m.ctx, m.params, 4, &cfg);
    cr_assert_eq(tg_curvature_top_eigenvalues(c, mlp_loss, &m, 3, &r, NULL), TG_OK, "%s", tg_errmsg(m.ctx));
    cr_expect_not(r.exact);
    cr_expect_eq(r.steps, 12);
    cr_expect(fabs(r.values[0] - lambda[0]) < 1e-3 * scale, "top %.7g, dense %.7g", r.values[0], lambda[0]);
    for (int i = 0; i < r.count; i++) {
        double nearest = INFINITY;
        for (int e = 0; e < NP; e++) nearest = fmin(nearest, fabs(r.values[i] - lambda[e]));
        cr_expect(nearest <= r.residuals[i] + 1e-4 * scale, "value %d: %.7g is %.3g from the "
                  "spectrum, residual %.3g", i, r.values[i], nearest, r.residuals[i]);
    }

    /* Hutchinson against the dense trace */
    double mean, error;
    cfg.probes = 100;
    tg_curvature *h = tg_curvature_new(m.ctx, m.params, 4, &cfg);
    cr_assert_eq(tg_curvature_trace(h, mlp_loss, &m, &mean, &error), TG_OK, "%s", tg_errmsg(m.ctx));
    cr_expect(error > 0 && fabs(mean - trace) < 4 * error, "trace %.6g +- %.3g, dense %.6g", mean,
              error, trace);
    tg_curvature_free(h);
    tg_curvature_free(c);
    tg_ctx_free(m.ctx);
}

Test(curvature, the_same_seed_gives_the_same_bits_and_another_seed_other_probes) {
    mlp m;
    mlp_make(&m);
    tg_curvature_config cfg = tg_curvature_defaults();
    cfg.steps = 8;
    tg_curvature *a = tg_curvature_new(m.ctx, m.params, 4, &cfg), *b = tg_curvature_new(m.ctx, m.params, 4, &cfg);
    cfg.seed = 2;
    tg_curvature *other = tg_curvature_new(m.ctx, m.params, 4, &cfg);
    tg_eigenvalues ra, rb, ro;
    double ta, tb, to;
    cr_assert_eq(tg_curvature_top_eigenvalues(a, mlp_loss, &m, 3, &ra, NULL), TG_OK);
    cr_assert_eq(tg_curvature_top_eigenvalues(b, mlp_loss, &m, 3, &rb, NULL), TG_OK);
    cr_assert_eq(tg_curvature_top_eigenvalues(other, mlp_loss, &m, 3, &ro, NULL), TG_OK);
    cr_assert_eq(tg_curvature_trace(a, mlp_loss, &m, &ta, NULL), TG_OK);
    cr_assert_eq(tg_curvature_trace(b, mlp_loss, &m, &tb, NULL), TG_OK);
    cr_assert_eq(tg_curvature_trace(other, mlp_loss, &m, &to, NULL), TG_OK);
    cr_expect(memcmp(&ra, &rb, sizeof ra) == 0, "two runs of seed 1 differ");
    cr_expect(ta == tb, "traces %.17g and %.17g", ta, tb);
    cr_expect(ra.values[2] != ro.values[2] && ta != to, "seed 2 gave seed 1's numbers");
    /* and a second call of the same instrument gives the same again (the seed is per call) */
    tg_eigenvalues again;
    cr_assert_eq(tg_curvature_top_eigenvalues(a, mlp_loss, &m, 3, &again, NULL), TG_OK);
    cr_expect(memcmp(&ra, &again, sizeof ra) == 0);
    tg_curvature_free(a);
    tg_curvature_free(b);
    tg_curvature_free(other);
    tg_ctx_free(m.ctx);
}

/* ---- Jacobians: x [B, IN] -> tanh MLP -> [B, out] ------------------------------------------------ */

typedef struct block {
    tg_ctx *ctx;
    int batch, out;
    tg_tensor *w1, *b1, *w2, *b2; /* [IN,HID], [HID], [HID,out], [out] */
    tg_tensor *x;
} block;

static tg_tensor *block_forward(tg_tape *tape, tg_tensor *x, void *user) {
    block *b = user;
    tg_tensor *h = tg_tanh(tape, tg_add(tape, tg_matmul(tape, x, b->w1), b->b1));
    return tg_add(tape, tg_matmul(tape, h, b->w2), b->b2);
}

static void block_make(block *b, int batch, int out, uint64_t seed) {
    b->ctx = tg_ctx_new();
    b->batch = batch, b->out = out;
    b->w1 = tg_zeros(b->ctx, TG_SHAPE(IN, HID));
    b->b1 = tg_zeros(b->ctx, TG_SHAPE(HID));
    b->w2 = tg_zeros(b->ctx, TG_SHAPE(HID, out));
    b->b2 = tg_zeros(b->ctx, TG_SHAPE(out));
    tg_tensor *all[4] = {b->w1, b->b1, b->w2, b->b2};
    for (int p = 0; p < 4; p++) {
        tg_fill_normal(all[p], 0, 1.0f, seed + (uint64_t)p);
        cr_assert_eq(tg_set_requires_grad(all[p], true), TG_OK); /* as a model's are */
    }
    b->x = tg_zeros(b->ctx, TG_SHAPE(batch, IN));
    tg_fill_normal(b->x, 0, 1, seed + 9);
}

/* The dense Jacobian [batch*out, batch*IN] by central differences of the forward in double. */
static void dense_jacobian(const block *b, double *jac) {
    const int rows = b->batch * b->out, cols = b->batch * IN;
    double theta[IN * HID + HID + HID * 8 + 8];
    int k = 0;
    const tg_tensor *all[4] = {b->w1, b->b1, b->w2, b->b2};
    for (int p = 0; p < 4; p++)
        for (int64_t i = 0; i < all[p]->size; i++) theta[k++] = all[p]->data[i];
    const double *w1 = theta, *b1 = w1 + IN * HID, *w2 = b1 + HID, *b2 = w2 + HID * b->out;
    memset(jac, 0, (size_t)rows * cols * sizeof *jac);
    const double h = 1e-5;
    for (int s = 0; s < b->batch; s++)
        for (int i = 0; i < IN; i++) {
            double out[2][8];
            for (int side = 0; side < 2; side++) {
                double x[IN], hid[HID];
                for (int t = 0; t < IN; t++) x[t] = b->x->data[s * IN + t];
                x[i] += side ? -h : h;
                for (int j = 0; j < HID; j++) {
                    double sum = b1[j];
                    for (int t = 0; t < IN; t++) sum += x[t] * w1[t * HID + j];
                    hid[j] = tanh(sum);
                }
                for (int o = 0; o < b->out; o++) {
                    double sum = b2[o];
                    for (int j = 0; j < HID; j++) sum += hid[j] * w2[j * b->out + o];
                    out[side][o] = sum;
                }
            }
            for (int o = 0; o < b->out; o++) /* the samples do not interact */
                jac[(s * b->out + o) * cols + s * IN + i] = (out[0][o] - out[1][o]) / (2 * h);
        }
}

/* Lanczos on the spanned space gives every singular value; compare the ends and the mean square. */
static void expect_dense_singular_values(int batch, int out, int k) {
    block b;
    block_make(&b, batch, out, 21);
    const int rows = batch * out, cols = batch * IN;
    double jac[64 * 64], sigma[64];
    dense_jacobian(&b, jac);
    int count = jacobi_singular_values(jac, rows, cols, sigma);
    double mean_square = 0;
    for (int i = 0; i < count; i++) mean_square += sigma[i] * sigma[i] / count;
    tg_curvature_config cfg = tg_curvature_defaults();
    cfg.steps = 64;
    tg_jacobian *j = tg_jacobian_new(b.ctx, &cfg);
    tg_singular_values r;
    cr_assert_eq(tg_jacobian_singular_values(j, block_forward, &b, b.x, k, &r), TG_OK, "%s", tg_errmsg(b.ctx));
    cr_expect(r.exact && r.mean_square_exact);
    cr_expect_eq(r.input_size, cols);
    cr_expect_eq(r.output_size, rows);
    cr_expect_eq(r.steps, count);
    cr_assert_eq(r.count, k);
    for (int i = 0; i < k; i++) {
        cr_expect(fabs(r.largest[i] - sigma[i]) < 1e-4 * sigma[0], "%dx%d largest %d: %.7g, dense %.7g",
                  rows, cols, i, r.largest[i], sigma[i]);
        cr_expect(fabs(r.smallest[i] - sigma[count - 1 - i]) < 1e-3 * sigma[0],
                  "%dx%d smallest %d: %.7g, dense %.7g", rows, cols, i, r.smallest[i], sigma[count - 1 - i]);
    }
    cr_expect(fabs(r.mean_square - mean_square) < 1e-4 * mean_square, "mean square %.7g, dense %.7g",
              r.mean_square, mean_square);
    double all[64];
    cr_assert_eq(tg_jacobian_spectrum(j, all, 64), count);
    for (int i = 0; i < count; i++)
        cr_expect(fabs(all[i] - sigma[i]) < 1e-3 * sigma[0], "%dx%d sigma %d: %.7g, dense %.7g", rows,
                  cols, i, all[i], sigma[i]);
    tg_jacobian_free(j);
    tg_ctx_free(b.ctx);
}

Test(curvature, jacobian_singular_values_agree_with_a_dense_svd_on_either_side) {
    expect_dense_singular_values(3, 5, 4); /* 15 x 9: Lanczos on J^T J */
    expect_dense_singular_values(4, 2, 3); /* 8 x 12: on J J^T */
}

Test(curvature, jacobian_mean_square_by_basis_or_hutchinson_when_lanczos_stops_short) {
    block b;
    block_make(&b, 8, 4, 33); /* 32 x 24 */
    double jac[32 * 24], sigma[24];
    dense_jacobian(&b, jac);
    double frobenius = 0;
    for (int i = 0; i < 32 * 24; i++) frobenius += jac[i] * jac[i];
    int count = jacobi_singular_values(jac, 32, 24, sigma);
    cr_assert_eq(count, 24);
    const double mean_square = frobenius / 24;

    tg_curvature_config cfg = tg_curvature_defaults();
    cfg.steps = 10;
    cfg.probes = 30; /* >= 24: one product per basis vector, exact */
    tg_jacobian *j = tg_jacobian_new(b.ctx, &cfg);
    tg_singular_values r;
    cr_assert_eq(tg_jacobian_singular_values(j, block_forward, &b, b.x, 2, &r), TG_OK, "%s", tg_errmsg(b.ctx));
    cr_expect_not(r.exact);
    cr_expect(r.mean_square_exact);
    cr_expect(fabs(r.mean_square - mean_square) < 1e-4 * mean_square, "mean square %.7g, dense %.7g",
              r.mean_square, mean_square);
    cr_expect_eq(r.products, 1 + 10 + 24);
    for (int i = 0; i < r.count; i++) { /* a singular value within each bound */
        double near_top = INFINITY, near_bottom = INFINITY;
        for (int e = 0; e < count; e++) {
            near_top = fmin(near_top, fabs(r.largest[i] - sigma[e]));
            near_bottom = fmin(near_bottom, fabs(r.smallest[i] - sigma[e]));
        }
        cr_expect(near_top <= r.largest_bound[i] + 1e-4 * sigma[0], "largest %d: %.6g off by %.3g, "
                  "bound %.3g", i, r.largest[i], near_top, r.largest_bound[i]);
        cr_expect(near_bottom <= r.smallest_bound[i] + 1e-4 * sigma[0], "smallest %d: %.6g off by "
                  "%.3g, bound %.3g", i, r.smallest[i], near_bottom, r.smallest_bound[i]);
    }
    cr_expect(fabs(r.largest[0] - sigma[0]) < 1e-3 * sigma[0], "largest %.7g, dense %.7g", r.largest[0], sigma[0]);
    tg_jacobian_free(j);

    cfg.probes = 12; /* < 24: Hutchinson */
    j = tg_jacobian_new(b.ctx, &cfg);
    cr_assert_eq(tg_jacobian_singular_values(j, block_forward, &b, b.x, 2, &r), TG_OK, "%s", tg_errmsg(b.ctx));
    cr_expect_not(r.mean_square_exact);
    cr_expect(r.mean_square_std_error > 0 && fabs(r.mean_square - mean_square) < 4 * r.mean_square_std_error,
              "mean square %.6g +- %.3g, dense %.6g", r.mean_square, r.mean_square_std_error, mean_square);
    tg_jacobian_free(j);
    tg_ctx_free(b.ctx);
}

static tg_status count_hook(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx, (void)event;
    ++*(int *)user;
    return TG_OK;
}

Test(curvature, the_callers_gradients_values_and_hooks_are_left_alone) {
    mlp m;
    mlp_make(&m);
    float grads_before[NP], values_before[NP];
    int k = 0;
    for (int p = 0; p < 4; p++)
        for (int64_t i = 0; i < m.params[p]->size; i++, k++) {
            m.params[p]->grad[i] = 0.01f * (float)k;
            grads_before[k] = m.params[p]->grad[i];
            values_before[k] = m.params[p]->data[i];
        }
    int fired = 0;
    int64_t hook = tg_hook_global(m.ctx, TG_PASS_BACKWARD, count_hook, &fired);
    cr_assert_gt(hook, 0);
    tg_curvature *c = tg_curvature_new(m.ctx, m.params, 4, NULL);
    tg_eigenvalues r;
    double trace;
    cr_assert_eq(tg_curvature_top_eigenvalues(c, mlp_loss, &m, 1, &r, NULL), TG_OK, "%s", tg_errmsg(m.ctx));
    cr_assert_eq(tg_curvature_trace(c, mlp_loss, &m, &trace, NULL), TG_OK);
    tg_jacobian *j = tg_jacobian_new(m.ctx, NULL);
    tg_singular_values sv;
    block b = {.ctx = m.ctx, .batch = BATCH, .out = OUT, .w1 = m.params[0], .b1 = m.params[1],
               .w2 = m.params[2], .b2 = m.params[3], .x = m.x};
    cr_assert_eq(tg_jacobian_singular_values(j, block_forward, &b, m.x, 1, &sv), TG_OK, "%s",
                 tg_errmsg(m.ctx));
    cr_expect_eq(fired, 0, "backward hooks fired %d times", fired);
    k = 0;
    for (int p = 0; p < 4; p++)
        for (int64_t i = 0; i < m.params[p]->size; i++, k++) {
            cr_expect_eq(m.params[p]->grad[i], grads_before[k]);
            cr_expect_eq(m.params[p]->data[i], values_before[k]);
        }
    tg_hook_remove(m.ctx, hook);
    tg_jacobian_free(j);
    tg_curvature_free(c);
    tg_ctx_free(m.ctx);
}

Test(curvature, a_recorded_training_step_stays_replayable_across_a_measurement) {
    mlp m;
    mlp_make(&m);
    tg_tape *tape = tg_tape_new(m.ctx);
    tg_tensor *loss = mlp_loss(tape, m.params, 4, &m);
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    float first[NP];
    int k = 0;
    for (int p = 0; p < 4; p++) {
        for (int64_t i = 0; i < m.params[p]->size; i++) first[k++] = m.params[p]->grad[i];
        tg_zero_grad(m.params[p]);
    }
    tg_curvature *c = tg_curvature_new(m.ctx, m.params, 4, NULL);
    tg_eigenvalues r;
    cr_assert_eq(tg_curvature_top_eigenvalues(c, mlp_loss, &m, 1, &r, NULL), TG_OK);
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(m.ctx));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(m.ctx));
    k = 0;
    for (int p = 0; p < 4; p++)
        for (int64_t i = 0; i < m.params[p]->size; i++, k++) cr_expect_eq(m.params[p]->grad[i], first[k]);
    tg_curvature_free(c);
    tg_tape_free(tape);
    tg_ctx_free(m.ctx);
}

/* ---- the gradient-noise scale ------------------------------------------------------------------- */

Test(curvature, noise_scale_by_hand) {
    tg_ctx *ctx = tg_ctx_new();
    /* g1 = (3, 1), g2 = (1, 1), 4 examples each: small = (10 + 2) / 2 = 6 at B 4, big = |(2, 1)|^2
     * = 5 at B 8; |G|^2 = (8*5 - 4*6) / 4 = 4, tr(Sigma) = (6 - 5) / (1/4 - 1/8) = 8, B = 2 */
    const float g1[2] = {3, 1}, g2[2] = {1, 1};
    tg_noise_scale r;
    cr_assert_eq(tg_gradient_noise_scale(ctx, (const float *[]){g1, g2}, 2, 2, 4, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(fabs(r.small_norm_sq - 6) < 1e-12 && fabs(r.big_norm_sq - 5) < 1e-12);
    cr_expect(fabs(r.grad_norm_sq - 4) < 1e-12, "|G|^2 %g", r.grad_norm_sq);
    cr_expect(fabs(r.trace_sigma - 8) < 1e-12, "tr %g", r.trace_sigma);
    cr_expect(fabs(r.b_simple - 2) < 1e-12, "B %g", r.b_simple);
    cr_expect_eq(r.small_batch, 4);
    cr_expect_eq(r.big_batch, 8);
    /* the same from the norms; noise swamping the signal gives NaN, not a negative batch */
    tg_noise_scale n;
    cr_assert_eq(tg_noise_scale_from_norms(ctx, 6, 4, 5, 8, &n), TG_OK);
    cr_expect(n.b_simple == r.b_simple);
    cr_assert_eq(tg_noise_scale_from_norms(ctx, 6, 4, 2, 8, &n), TG_OK);
    cr_expect(isnan(n.b_simple) && n.grad_norm_sq < 0);
    tg_ctx_free(ctx);
}

Test(curvature, noise_scale_of_a_simulated_gradient_with_known_noise) {
    /* per-example gradients G + e, e ~ N(0, 4 I) in 50 dims, G = 0.5 (1, ..., 1): tr(Sigma) =
     * 200, |G|^2 = 12.5, B_simple = 16. 400 micro-batches of 8 examples. */
    tg_ctx *ctx = tg_ctx_new();
    enum { DIM = 50, MICRO = 400, PER = 8 };
    static float room[MICRO][DIM];
    const float *grads[MICRO];
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    for (int i = 0; i < MICRO; i++) {
        for (int k = 0; k < DIM; k++) {
            double sum = 0;
            for (int e = 0; e < PER; e++) sum += 0.5 + 2.0 * tg_rng_normal(&rng);
            room[i][k] = (float)(sum / PER);
        }
        grads[i] = room[i];
    }
    tg_noise_scale r;
    cr_assert_eq(tg_gradient_noise_scale(ctx, grads, MICRO, DIM, PER, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(fabs(r.trace_sigma - 200) < 0.1 * 200, "tr(Sigma) %g, expected 200", r.trace_sigma);
    cr_expect(fabs(r.grad_norm_sq - 12.5) < 0.1 * 12.5, "|G|^2 %g, expected 12.5", r.grad_norm_sq);
    cr_expect(fabs(r.b_simple - 16) < 0.15 * 16, "B_simple %g, expected 16", r.b_simple);
    tg_ctx_free(ctx);
}

/* ---- memory --------------------------------------------------------------------------------------- */

Test(curvature, a_workspace_allocates_nothing_after_its_first_calls) {
    tally count = {.fail_at = -1};
    mlp m;
    m.ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    m.params[0] = tg_zeros(m.ctx, TG_SHAPE(IN, HID));
    m.params[1] = tg_zeros(m.ctx, TG_SHAPE(HID));
    m.params[2] = tg_zeros(m.ctx, TG_SHAPE(HID, OUT));
    m.params[3] = tg_zeros(m.ctx, TG_SHAPE(OUT));
    for (int p = 0; p < 4; p++) {
        tg_fill_normal(m.params[p], 0, 0.8f, 10 + (uint64_t)p);
        tg_set_requires_grad(m.params[p], true);
    }
    m.x = tg_zeros(m.ctx, TG_SHAPE(BATCH, IN));
    m.y = tg_zeros(m.ctx, TG_SHAPE(BATCH, OUT));
    tg_fill_normal(m.x, 0, 1, 3);
    block b = {.ctx = m.ctx, .batch = BATCH, .out = OUT, .w1 = m.params[0], .b1 = m.params[1],
               .w2 = m.params[2], .b2 = m.params[3], .x = m.x};
    tg_curvature_config cfg = tg_curvature_defaults();
    cfg.steps = 10;
    tg_curvature *c = tg_curvature_new(m.ctx, m.params, 4, &cfg);
    tg_jacobian *j = tg_jacobian_new(m.ctx, &cfg);
    cr_assert(c && j, "%s", tg_errmsg(m.ctx));
    tg_eigenvalues r;
    tg_singular_values sv;
    double trace, nodes[20], weights[20];
    int n_nodes;
    float top_room[NP], *top[4];
    for (int p = 0, off = 0; p < 4; off += (int)m.params[p]->size, p++) top[p] = top_room + off;
    long warm = 0;
    for (int round = 0; round < 4; round++) {
        if (round == 2) warm = count.allocations;
        cr_assert_eq(tg_curvature_top_eigenvalues(c, mlp_loss, &m, 2, &r, top), TG_OK, "%s", tg_errmsg(m.ctx));
        cr_assert_eq(tg_curvature_trace(c, mlp_loss, &m, &trace, NULL), TG_OK);
        cr_assert_eq(tg_curvature_density(c, mlp_loss, &m, 2, nodes, weights, &n_nodes), TG_OK);
        cr_assert_eq(tg_jacobian_singular_values(j, block_forward, &b, m.x, 2, &sv), TG_OK, "%s", tg_errmsg(m.ctx));
    }
    cr_expect_eq(count.allocations, warm, "%ld allocations in 2 rounds of every instrument",
                 count.allocations - warm);
    tg_jacobian_free(j);
    tg_curvature_free(c);
    tg_ctx_free(m.ctx);
    cr_expect_eq(count.live_bytes, 0);
}
