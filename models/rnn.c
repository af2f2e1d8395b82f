/*
 * models/rnn.c — vanilla (tanh) RNN, LSTM and GRU layers, unrolled step by step on the tape.
 *
 * The input projection x W_ih^T + b_ih of every time step is one GEMM over [B, T, in] before
 * the loop; each step is then a fused cell (ops/recurrent.c) that reads its slab of that
 * projection in place, adds the recurrent projection h W_hh^T + b_hh of all gates in one GEMM
 * and applies the gates. Every hidden state is labelled "<name>.h[t]", so pattern hooks (and the recorder)
 * can follow the gradient back through time.
 */
#include "models/models.h"
#include "ops/ops.h"

#include <string.h>

typedef struct rnn_impl {
    tg_rnn_config config;
    int gates;               /* 1 (tanh), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n) */
} rnn_impl;

tg_rnn_config tg_rnn_defaults(tg_rnn_kind kind, int64_t in, int64_t hidden) {
    tg_rnn_config config = {0};
    config.kind = kind;
    config.in = in;
    config.hidden = hidden;
    config.input_init = tg_init_xavier(TG_ACT_IDENTITY);
    config.recurrent_init = (tg_init){TG_INIT_ORTHOGONAL, 0, 0, 0, TG_ACT_IDENTITY, false};
    config.forget_bias = 1.0f;
    config.seed = 1;
    return config;
}

/* One time step (t counts from 1): returns the new h (and updates *c for the LSTM). The fused
 * cells (ops/recurrent.c) read step t of xp_all, x W_ih^T + b_ih, in place. */
static tg_tensor *step(tg_module *m, tg_tape *tape, tg_tensor *xp_all, tg_tensor *h, tg_tensor **c,
                       int64_t t) {
    const rnn_impl *impl = m->impl;
    tg_tensor *w = m->params[1], *b = m->params[3];
    switch (impl->config.kind) {
    case TG_RNN_TANH:
        tg_tape_label_next(tape, "%s.h[%lld]", m->name, (long long)t);
        return tgi_rnn_cell(tape, xp_all, h, w, b, t - 1);
    case TG_RNN_LSTM: {
        tg_tensor *gates = tgi_lstm_gates(tape, xp_all, h, w, b, t - 1);
        tg_tape_label_next(tape, "%s.c[%lld]", m->name, (long long)t);
        *c = tgi_lstm_cell(tape, gates, *c);
        tg_tape_label_next(tape, "%s.h[%lld]", m->name, (long long)t);
        return tgi_lstm_hidden(tape, gates, *c);
    }
    case TG_RNN_GRU: /* PyTorch's GRU: n = tanh(x_n + r * (W_hn h + b_hn)), h' = n + z (h - n) */
        tg_tape_label_next(tape, "%s.h[%lld]", m->name, (long long)t);
        return tgi_gru_cell(tape, xp_all, h, w, b, t - 1);
    }
    return NULL;
}

tg_tensor *tg_rnn_forward(tg_module *m, tg_tape *tape, tg_tensor *x, tg_tensor **states) {
    if (!m || !tape) return NULL;
    if (!x) return NULL; /* an earlier failure: its message is on the context */
    if (strcmp(m->cls->kind, "rnn") != 0) { /* another module's impl is not an rnn_impl */
        tgi_error(m->ctx, TG_ERR_INVALID, "rnn_forward: '%s' is not a recurrent module", m->name);
        return NULL;
    }
    const rnn_impl *impl = m->impl;
    int64_t H = impl->config.hidden;
    if (x->ndim != 3 || x->shape[2] != impl->config.in) {
        char shape[96];
        tgi_error(m->ctx, TG_ERR_SHAPE, "rnn '%s': input '%s' %s, expected [batch, time, %lld]",
                  m->name, tg_tensor_name(x), tg_shape_str(x, shape, sizeof shape),
                  (long long)impl->config.in);
        return NULL;
    }
    int64_t batch = x->shape[0], steps = x->shape[1];
    tg_tensor *xp_all = tg_linear(tape, x, m->params[0], m->params[2]); /* [B, T, gates*H] */
    tg_tensor *h = tg_tape_zeros(tape, TG_SHAPE(batch, H)), *c = tg_tape_zeros(tape, TG_SHAPE(batch, H));
    for (int64_t t = 1; t <= steps && h; t++) {
        h = step(m, tape, xp_all, h, &c, t);
        if (states) states[t - 1] = h;
        int bptt = impl->config.bptt;
        if (bptt > 0 && t % bptt == 0 && t < steps) { /* truncated BPTT: no gradient past here */
            h = tg_detach(tape, h);
            if (impl->config.kind == TG_RNN_LSTM) c = tg_detach(tape, c);
        }
    }
    return h;
}

static tg_tensor *rnn_module_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    return tg_rnn_forward(m, tape, x, NULL);
}

static const tgi_module_class rnn_class = {"rnn", rnn_module_forward, NULL, sizeof(rnn_impl)};

tg_module *tg_rnn_new(tg_ctx *ctx, const char *name, const tg_rnn_config *config) {
    if (!ctx || tgi_check_name(ctx, "rnn", name) != TG_OK) return NULL;
    if (!config || config->in < 1 || config->hidden < 1 || config->bptt < 0 ||
        (unsigned)config->kind > TG_RNN_GRU) {
        tgi_error(ctx, TG_ERR_INVALID, "rnn '%s': needs a kind, in >= 1, hidden >= 1, bptt >= 0", name);
        return NULL;
    }
    tg_module *m = tgi_module_new(ctx, &rnn_class, "%s", name);
    if (!m) return NULL;
    rnn_impl *impl = m->impl;
    impl->config = *config;
    impl->gates = config->kind == TG_RNN_LSTM ? 4 : config->kind == TG_RNN_GRU ? 3 : 1;
    int64_t rows = impl->gates * config->hidden;
    tg_init input = tgi_init_or(&config->input_init, tg_init_xavier(TG_ACT_IDENTITY));
    tg_init recurrent = tgi_init_or(&config->recurrent_init,
                                    (tg_init){TG_INIT_ORTHOGONAL, 0, 0, 0, TG_ACT_IDENTITY, false});
    /* params[0..3]: weight_ih, weight_hh, bias_ih, bias_hh (the order step() relies on) */
    bool ok = tgi_module_param(m, "weight_ih", TG_SHAPE(rows, config->in), &input, config->seed) &&
              tgi_module_param(m, "weight_hh", TG_SHAPE(rows, config->hidden), &recurrent,
                               tgi_seed_mix(config->seed, 1)) &&
              tgi_module_param(m, "bias_ih", TG_SHAPE(rows), NULL, 0) &&
              tgi_module_param(m, "bias_hh", TG_SHAPE(rows), NULL, 0);
    if (!ok) {
        tg_module_free(m);
        return NULL;
    }
    if (config->kind == TG_RNN_LSTM) /* forget gate: rows H..2H of bias_ih */
        for (int64_t j = config->hidden; j < 2 * config->hidden; j++) m->params[2]->data[j] = config->forget_bias;
    return m;
}

tg_tensor *tg_detach(tg_tape *tape, tg_tensor *x) {
    if (!tape || !x) return NULL;
    if (x->tape && (x->tape != tape || tgi_refuse_stale(x, "detach") != TG_OK)) {
        tgi_error(tape->ctx, TG_ERR_STATE, "detach: the tensor is not of this tape's current step");
        return NULL;
    }
    return tg_tape_from_data(tape, x->ndim, x->shape, x->data);
}
