/*
 * tests/test_jvp_recurrent.c — forward-mode rules of the fused recurrent cells (rnn_cell,
 * lstm_gates, lstm_cell, lstm_hidden, gru_cell) and of the fused tangent ops their rules use
 * (gates_tangent, lstm_cell_tangent, lstm_hidden_tangent): Hessian-vector products of small
 * recurrent models against central differences of their gradients (every op's own examples are
 * checked at order 2 in test_higher.c).
 */
#include "helpers.h"

/* ---- Hessian-vector products of small models ------------------------------------------------ */

enum { BATCH = 2, STEPS = 4, INPUTS = 2, HIDDEN = 3, MAX_PARAMS = 4 * 4 + 2 };

typedef struct model {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *rnn, *head;
    tg_tensor *x, *y;
    tg_tensor *params[MAX_PARAMS];
    int n;
    float *v[MAX_PARAMS];   /* the direction, one array per parameter */
    float *kept[MAX_PARAMS]; /* the parameters' values, while they are moved */
} model;

static void model_init(model *m, tg_rnn_kind kind, int layers, bool bidirectional) {
    memset(m, 0, sizeof *m);
    m->ctx = tg_ctx_new();
    tg_rnn_config c = tg_rnn_defaults(kind, INPUTS, HIDDEN);
    c.num_layers = layers;
    c.bidirectional = bidirectional;
    c.seed = 11;
    m->rnn = tg_rnn_new(m->ctx, "rnn", &c);
    m->head = tg_linear_new(m->ctx, "head", (bidirectional ? 2 : 1) * HIDDEN, 1, true, NULL, 5);
    m->x = tg_zeros(m->ctx, TG_SHAPE(BATCH, STEPS, INPUTS));
    m->y = tg_zeros(m->ctx, TG_SHAPE(BATCH, 1));
    m->tape = tg_tape_new(m->ctx);
    cr_assert(m->rnn && m->head && m->x && m->y && m->tape, "%s", tg_errmsg(m->ctx));
    tg_fill_normal(m->x, 0, 1, 3);
    tg_fill_normal(m->y, 0, 1, 4);
    m->n = tg_module_params(m->rnn, m->params, MAX_PARAMS);
    m->n += tg_module_params(m->head, m->params + m->n, MAX_PARAMS - m->n);
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    for (int i = 0; i < m->n; i++) {
        size_t bytes = (size_t)m->params[i]->size * sizeof(float);
        m->v[i] = malloc(bytes);
        m->kept[i] = malloc(bytes);
        cr_assert(m->v[i] && m->kept[i]);
        /* a small direction, for differences with a step of 1e-2 to be in their quadratic
         * regime (with N(0, 1) elements the steps move the tanh RNN out of it: 3% off) */
        for (int64_t j = 0; j < m->params[i]->size; j++) m->v[i][j] = 0.25f * (float)tg_rng_normal(&rng);
        memcpy(m->kept[i], m->params[i]->data, bytes);
    }
}

static void model_free(model *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->v[i]);
        free(m->kept[i]);
    }
    tg_tape_free(m->tape);
    tg_module_free(m->rnn);
    tg_module_free(m->head);
    tg_ctx_free(m->ctx);
}

/* mean((head(rnn(x)) - y)^2), recorded on a fresh step. */
static tg_tensor *record_loss(model *m) {
    tg_tape *t = m->tape;
    tg_tape_reset(t);
    tg_tensor *out = tg_module_forward(m->head, t, tg_rnn_forward(m->rnn, t, m->x, NULL));
    tg_tensor *loss = tg_mean(t, tg_square(t, tg_sub(t, out, m->y)));
    cr_assert_not_null(loss, "%s", tg_errmsg(m->ctx));
    return loss;
}

/* Parameters at kept + step * v. */
static void move_params(model *m, double step) {
    for (int i = 0; i < m->n; i++)
        for (int64_t j = 0; j < m->params[i]->size; j++)
            m->params[i]->data[j] = (float)(m->kept[i][j] + step * m->v[i][j]);
}

/* The gradient of the loss at kept + step * v into grads. */
static void gradient_at(model *m, double step, float *const *grads) {
    move_params(m, step);
    tg_tensor *loss = record_loss(m);
    const float one = 1.0f;
    cr_assert_eq(tg_vjp(m->tape, loss, &one, m->n, m->params, grads), TG_OK, "%s", tg_errmsg(m->ctx));
    move_params(m, 0.0);
}

/* H v from tg_hvp against (g(p + eps v) - g(p - eps v)) / 2 eps, every element. */
static void expect_hvp_matches_differences(tg_rnn_kind kind, int layers, bool bidirectional) {
    model m;
    model_init(&m, kind, layers, bidirectional);
    float *hv[MAX_PARAMS], *plus[MAX_PARAMS], *minus[MAX_PARAMS];
    for (int i = 0; i < m.n; i++) {
        size_t bytes = (size_t)m.params[i]->size * sizeof(float);
        hv[i] = malloc(bytes);
        plus[i] = malloc(bytes);
        minus[i] = malloc(bytes);
        cr_assert(hv[i] && plus[i] && minus[i]);
    }
    tg_tensor *loss = record_loss(&m);
    cr_assert_eq(tg_hvp(m.tape, loss, m.n, m.params, (const float *const *)m.v, hv), TG_OK, "%s",
                 tg_errmsg(m.ctx));
    const double eps = 1e-2;
    gradient_at(&m, eps, plus);
    gradient_at(&m, -eps, minus);
    double scale = 0.0; /* the largest |H v| element: differences are good to ~3e-4 of it here */
    for (int i = 0; i < m.n; i++)
        for (int64_t j = 0; j < m.params[i]->size; j++) scale = fmax(scale, fabs(hv[i][j]));
    cr_expect_gt(scale, 1e-3, "H v is all but zero: nothing tested");
    int64_t checked = 0;
    for (int i = 0; i < m.n; i++)
        for (int64_t j = 0; j < m.params[i]->size; j++) {
            double numeric = ((double)plus[i][j] - (double)minus[i][j]) / (2 * eps);
            double err = fabs(hv[i][j] - numeric);
            checked++;
            if (!(err <= 1e-3 * scale)) {
                cr_expect_fail("kind %d, %d layer(s)%s: H v of '%s'[%lld] = %.6g, differences "
                               "give %.6g (largest |H v| %.3g)", (int)kind, layers,
                               bidirectional ? ", bidirectional" : "", tg_tensor_name(m.params[i]),
                               (long long)j, (double)hv[i][j], numeric, scale);
                break;
            }
        }
    cr_expect_gt(checked, 0);
    for (int i = 0; i < m.n; i++) {
        free(hv[i]);
        free(plus[i]);
        free(minus[i]);
    }
    model_free(&m);
}

Test(jvp_recurrent, lstm_hvp_matches_differences_of_gradients) {
    expect_hvp_matches_differences(TG_RNN_LSTM, 1, false);
}

Test(jvp_recurrent, stacked_bidirectional_lstm_hvp_matches_differences_of_gradients) {
    expect_hvp_matches_differences(TG_RNN_LSTM, 2, true);
}

Test(jvp_recurrent, tanh_rnn_hvp_matches_differences_of_gradients) {
    expect_hvp_matches_differences(TG_RNN_TANH, 1, false);
}

Test(jvp_recurrent, gru_hvp_matches_differences_of_gradients) {
    expect_hvp_matches_differences(TG_RNN_GRU, 1, false);
}

/* The tangent's ops are entries of the step: replayed at new parameters they give the slope a
 * fresh recording gives there (no value of the old parameters kept as a constant). The
 * directions want gradients, so that the tangents computed from them alone (the input
 * projection's: x and v only) are entries too, which a replay requires. */
static tg_tensor *direction(model *m, int i) {
    tg_tensor *d = tg_tape_from_data(m->tape, m->params[i]->ndim, m->params[i]->shape, m->v[i]);
    cr_assert_not_null(d, "%s", tg_errmsg(m->ctx));
    cr_assert_eq(tg_set_requires_grad(d, true), TG_OK);
    return d;
}

Test(jvp_recurrent, lstm_tangent_follows_the_parameters_on_replay) {
    model m;
    model_init(&m, TG_RNN_LSTM, 1, false);
    tg_tensor *loss = record_loss(&m);
    tg_tensor *directions[MAX_PARAMS];
    for (int i = 0; i < m.n; i++) directions[i] = direction(&m, i);
    tg_tensor *slope = NULL;
    cr_assert_eq(tg_jvp(m.tape, loss, m.n, m.params, directions, &slope), TG_OK, "%s", tg_errmsg(m.ctx));
    float before = slope->data[0];
    move_params(&m, 0.3); /* kept + 0.3 v */
    cr_assert_eq(tg_tape_replay(m.tape), TG_OK, "%s", tg_errmsg(m.ctx));
    float replayed = slope->data[0];
    loss = record_loss(&m);
    for (int i = 0; i < m.n; i++) directions[i] = direction(&m, i);
    cr_assert_eq(tg_jvp(m.tape, loss, m.n, m.params, directions, &slope), TG_OK, "%s", tg_errmsg(m.ctx));
    float fresh = slope->data[0];
    cr_expect(fabsf(before - fresh) > 1e-3f * fabsf(fresh), "the move did not change the slope (%g)",
              (double)fresh);
    cr_expect(fabsf(replayed - fresh) <= 1e-5f * (1.0f + fabsf(fresh)), "replayed slope %.7g, fresh %.7g",
              (double)replayed, (double)fresh);
    model_free(&m);
}
