/*
 * models/rnn.c — vanilla (tanh) RNN, LSTM and GRU layers, stacked and bidirectional as in
 * PyTorch, unrolled step by step on the tape.
 *
 * For each layer and direction, the input projection x W_ih^T + b_ih of every time step is one
 * GEMM over [B, T, in] before the loop; each step is then a fused cell (ops/recurrent.c) that
 * reads its slab of that projection in place, adds the recurrent projection h W_hh^T + b_hh of
 * all gates in one GEMM and applies the gates. The reverse direction reads the same projection
 * from step T down to 1, so it needs no reversed copy of the input. Layer l > 0 reads the
 * layer below's output, [B, T, directions * hidden]: at each t the forward h, then the reverse h.
 * Every hidden state is labelled ("<name>.h[t]", or "<name>.l<l>[_reverse].h[t]" when there is
 * more than one layer or direction), so pattern hooks (and the recorder) can follow the
 * gradient back through time and down through the layers.
 */
#include "models/models.h"
#include "ops/ops.h"

#include <string.h>

typedef struct rnn_impl {
    tg_rnn_config config;
    int gates;               /* 1 (tanh), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n) */
    int layers, directions;  /* settled from the config: at least 1 each */
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

/* One layer and direction's own state while it runs over the sequence. */
typedef struct direction_run {
    const rnn_impl *impl;
    tg_tensor *const *params;    /* weight_ih, weight_hh, bias_ih, bias_hh of this direction */
    char prefix[TG_LABEL_MAX];   /* "<name>" or "<name>.l<l>[_reverse]": labels are prefix.h[t] */
    int d;                       /* 1: the reverse direction */
    int64_t steps;
} direction_run;

/* One time step (t counts from 1): returns the new h (and updates *c for the LSTM). The fused
 * cells (ops/recurrent.c) read step t of xp_all, x W_ih^T + b_ih, in place. */
static tg_tensor *step(const rnn_impl *impl, const direction_run *d, tg_tape *tape,
                       tg_tensor *xp_all, tg_tensor *h, tg_tensor **c, int64_t t) {
    tg_tensor *w = d->params[1], *b = d->params[3];
    switch (impl->config.kind) {
    case TG_RNN_TANH:
        tg_tape_label_next(tape, "%s.h[%lld]", d->prefix, (long long)t);
        return tgi_rnn_cell(tape, xp_all, h, w, b, t - 1);
    case TG_RNN_LSTM: {
        tg_tensor *gates = tgi_lstm_gates(tape, xp_all, h, w, b, t - 1);
        tg_tape_label_next(tape, "%s.c[%lld]", d->prefix, (long long)t);
        *c = tgi_lstm_cell(tape, gates, *c);
        tg_tape_label_next(tape, "%s.h[%lld]", d->prefix, (long long)t);
        return tgi_lstm_hidden(tape, gates, *c);
    }
    case TG_RNN_GRU: /* PyTorch's GRU: n = tanh(x_n + r * (W_hn h + b_hn)), h' = n + z (h - n) */
        tg_tape_label_next(tape, "%s.h[%lld]", d->prefix, (long long)t);
        return tgi_gru_cell(tape, xp_all, h, w, b, t - 1);
    }
    return NULL;
}

/* Truncated BPTT: no gradient flows back past step s (from 1, in the direction's order). */
static bool cut_after(const direction_run *d, int64_t s) {
    int bptt = d->impl->config.bptt;
    return bptt > 0 && s % bptt == 0 && s < d->steps;
}

/* The time step of step s: the reverse direction reads x[T] first. */
static int64_t time_of(const direction_run *d, int64_t s) { return d->d ? d->steps + 1 - s : s; }

/* Step s of the run: returns the new h, and *h, *c carry on (cut off from the gradient after
 * the step when `cut` and truncated BPTT say so). */
static tg_tensor *advance(const direction_run *d, tg_tape *tape, tg_tensor *xp_all, tg_tensor **h,
                          tg_tensor **c, int64_t s, bool cut) {
    tg_tensor *state = step(d->impl, d, tape, xp_all, *h, c, time_of(d, s));
    *h = state;
    if (state && cut && cut_after(d, s)) {
        *h = tg_detach(tape, state);
        if (d->impl->config.kind == TG_RNN_LSTM) *c = tg_detach(tape, *c);
    }
    return state;
}

/* Steps [first, end) of a direction as one recomputed segment (tg_module_set_recompute): inputs
 * the projection, h and c; outputs h after each step when they are kept (else after the last),
 * then the LSTM's c. */
typedef struct chunk_run {
    direction_run dir;
    int64_t first, end;
    bool keep;
} chunk_run;

static tg_status chunk_forward(tg_tape *tape, tg_tensor *const *inputs, int n_inputs,
                               tg_tensor **outputs, int n_outputs, void *user) {
    (void)n_inputs;
    (void)n_outputs;
    const chunk_run *r = user;
    tg_tensor *h = inputs[1], *c = inputs[2];
    int k = 0;
    for (int64_t s = r->first; s < r->end && h && c; s++) {
        tg_tensor *state = advance(&r->dir, tape, inputs[0], &h, &c, s, s < r->end - 1);
        if (r->keep && s < r->end - 1) outputs[k++] = state;
    }
    outputs[k++] = h;
    if (r->dir.impl->config.kind == TG_RNN_LSTM) outputs[k] = c;
    return h && c ? TG_OK : TG_ERR_INVALID; /* the op that failed said why */
}

/* Slice k of an initial state [L*D, B, H] as [B, H]; zeros when there is none. */
static tg_tensor *initial_slice(tg_tape *tape, tg_tensor *all, int k, int64_t batch, int64_t hidden) {
    if (!all) return tg_tape_zeros(tape, TG_SHAPE(batch, hidden));
    return tg_reshape(tape, tg_slice(tape, all, 0, k, k + 1), TG_SHAPE(batch, hidden));
}

/* The suffix of layer l, direction d: "_l1_reverse" (PyTorch's); "" for a single plain layer,
 * whose names predate stacking (checkpoints and hook patterns use them). */
static void layer_suffix(const rnn_impl *impl, int l, int d, char *out, size_t size) {
    if (impl->layers == 1 && impl->directions == 1) out[0] = '\0';
    else snprintf(out, size, "_l%d%s", l, d ? "_reverse" : "");
}

/* Where a run over the whole stack leaves what its caller asked for. */
typedef struct stack_out {
    tg_tensor **states;          /* NULL, or L*D*T pointers: layer, direction, then time */
    tg_tensor **h_last, **c_last; /* L*D final states (arena arrays) */
    tg_tensor *output;           /* the last layer's [B, T, D*H], when want_output */
    bool want_output;
} stack_out;

/* The run in chunks of `span` steps, each a recomputed segment; the chunk's description lives
 * in the tape's arena, where backward and a replay find it. */
static bool run_chunks(tg_module *m, tg_tape *tape, const direction_run *dr, tg_tensor *xp_all,
                       tg_tensor **h, tg_tensor **c, bool keep, tg_tensor **hs, stack_out *out, int k) {
    const rnn_impl *impl = dr->impl;
    int64_t span = m->recompute, D = impl->directions;
    bool lstm = impl->config.kind == TG_RNN_LSTM;
    for (int64_t first = 1; first <= dr->steps; first += span) {
        int64_t end = first + span <= dr->steps + 1 ? first + span : dr->steps + 1;
        int n_out = (int)(keep ? end - first : 1) + lstm;
        chunk_run *r = tgi_arena_alloc(&tape->arena, sizeof *r);
        tg_tensor **outs = tgi_arena_alloc(&tape->arena, (size_t)n_out * sizeof *outs);
        if (!r || !outs) {
            tgi_error(m->ctx, TG_ERR_NOMEM, "rnn '%s': out of memory", m->name);
            return false;
        }
        *r = (chunk_run){*dr, first, end, keep};
        tg_tensor *ins[3] = {xp_all, *h, *c};
        if (tg_recompute(tape, chunk_forward, r, 3, ins, n_out, outs) != TG_OK) return false;
        for (int64_t s = first; s < end; s++) {
            int64_t t = time_of(dr, s);
            tg_tensor *hs_t = keep ? outs[s - first] : outs[0];
            if (keep || s == end - 1) hs[(t - 1) * D + dr->d] = hs_t;
            if (out->states) out->states[(int64_t)k * dr->steps + t - 1] = hs_t;
        }
        *h = outs[n_out - 1 - lstm];
        if (lstm) *c = outs[n_out - 1];
        if (cut_after(dr, end - 1)) { /* the chunk's last step: cut here, on the tape */
            *h = tg_detach(tape, *h);
            if (lstm) *c = tg_detach(tape, *c);
        }
    }
    return true;
}

/* One direction of one layer over the whole sequence: hs[(t-1)*D + d] = h[t] (each t when
 * `keep`, else at least the last). */
static bool run_direction(tg_module *m, tg_tape *tape, tg_tensor *input, const tg_rnn_state *initial,
                          int l, int d, bool keep, tg_tensor **hs, stack_out *out) {
    const rnn_impl *impl = m->impl;
    int k = l * impl->directions + d;
    int64_t batch = input->shape[0], steps = input->shape[1], H = impl->config.hidden;
    direction_run dr = {impl, m->params + 4 * k, "", d, steps};
    char suffix[32];
    layer_suffix(impl, l, d, suffix, sizeof suffix);
    if (suffix[0]) snprintf(dr.prefix, sizeof dr.prefix, "%s.l%d%s", m->name, l, d ? "_reverse" : "");
    else snprintf(dr.prefix, sizeof dr.prefix, "%s", m->name);
    tg_tensor *xp_all = tg_linear(tape, input, dr.params[0], dr.params[2]); /* [B, T, gates*H] */
    tg_tensor *h = initial_slice(tape, initial ? initial->h : NULL, k, batch, H);
    tg_tensor *c = initial_slice(tape, initial && impl->config.kind == TG_RNN_LSTM ? initial->c : NULL,
                                 k, batch, H);
    if (m->recompute > 0 && xp_all && h && c && tgi_segment_possible(tape)) {
        if (!run_chunks(m, tape, &dr, xp_all, &h, &c, keep, hs, out, k)) return false;
    } else {
        for (int64_t s = 1; s <= steps && h && c; s++) {
            int64_t t = time_of(&dr, s);
            tg_tensor *state = advance(&dr, tape, xp_all, &h, &c, s, true);
            hs[(t - 1) * impl->directions + d] = state;
            if (out->states) out->states[(int64_t)k * steps + t - 1] = state;
        }
    }
    out->h_last[k] = h;
    out->c_last[k] = c;
    return h && c;
}

/* [B, T, D*H] from the per-step states hs (time-major, direction-minor): one concat. */
static tg_tensor *layer_output(tg_tape *tape, tg_tensor **hs, int64_t batch, int64_t steps,
                               int64_t width, int directions) {
    int64_t n = steps * directions;
    tg_tensor *flat = n == 1 ? hs[0] : tg_concat(tape, hs, (int)n, 1);
    return tg_reshape(tape, flat, TG_SHAPE(batch, steps, width));
}

static tg_status check_state(tg_module *m, const tg_tensor *s, const char *what, int64_t batch) {
    const rnn_impl *impl = m->impl;
    int64_t want[3] = {impl->layers * impl->directions, batch, impl->config.hidden};
    if (!s || (s->ndim == 3 && memcmp(s->shape, want, sizeof want) == 0)) return TG_OK;
    char shape[96];
    return tgi_error(m->ctx, TG_ERR_SHAPE, "rnn '%s': initial %s '%s' %s, expected [%lld, %lld, %lld] "
                     "(layers x directions, batch, hidden)", m->name, what, tg_tensor_name(s),
                     tg_shape_str(s, shape, sizeof shape), (long long)want[0], (long long)want[1],
                     (long long)want[2]);
}

/* The whole stack over x; false with the error on the context. */
static bool run_stack(tg_module *m, tg_tape *tape, tg_tensor *x, const tg_rnn_state *initial,
                      stack_out *out) {
    if (!m || !tape) return false;
    if (!x) return false; /* an earlier failure: its message is on the context */
    if (strcmp(m->cls->kind, "rnn") != 0) { /* another module's impl is not an rnn_impl */
        tgi_error(m->ctx, TG_ERR_INVALID, "rnn_forward: '%s' is not a recurrent module", m->name);
        return false;
    }
    const rnn_impl *impl = m->impl;
    if (x->ndim != 3 || x->shape[2] != impl->config.in) {
        char shape[96];
        tgi_error(m->ctx, TG_ERR_SHAPE, "rnn '%s': input '%s' %s, expected [batch, time, %lld]",
                  m->name, tg_tensor_name(x), tg_shape_str(x, shape, sizeof shape),
                  (long long)impl->config.in);
        return false;
    }
    int64_t batch = x->shape[0], steps = x->shape[1], D = impl->directions;
    if (initial && (check_state(m, initial->h, "h", batch) != TG_OK ||
                    (impl->config.kind == TG_RNN_LSTM && check_state(m, initial->c, "c", batch) != TG_OK)))
        return false;
    /* pointer arrays live in the tape's arena: nothing to free, no heap in a training step */
    size_t finals = (size_t)(impl->layers * D) * sizeof(tg_tensor *);
    out->h_last = tgi_arena_alloc(&tape->arena, finals);
    out->c_last = tgi_arena_alloc(&tape->arena, finals);
    tg_tensor **hs = tgi_arena_alloc(&tape->arena, (size_t)(steps * D) * sizeof(tg_tensor *));
    if (!out->h_last || !out->c_last || !hs) {
        tgi_error(m->ctx, TG_ERR_NOMEM, "rnn '%s': out of memory", m->name);
        return false;
    }
    tg_tensor *input = x;
    for (int l = 0; l < impl->layers; l++) {
        bool last = l == impl->layers - 1;
        bool keep = out->states || out->want_output || !last; /* every h[t] is read */
        for (int d = 0; d < D; d++)
            if (!run_direction(m, tape, input, initial, l, d, keep, hs, out)) return false;
        if (!last || out->want_output) {
            input = layer_output(tape, hs, batch, steps, D * impl->config.hidden, (int)D);
            if (!input) return false;
        }
        if (last) out->output = out->want_output ? input : NULL;
    }
    return true;
}

/* The final states [L*D, B, H]: one concat over the first axis of [B, H] pieces. */
static tg_tensor *stack_states(tg_tape *tape, tg_tensor **pieces, int n, int64_t batch, int64_t hidden) {
    tg_tensor *flat = n == 1 ? pieces[0] : tg_concat(tape, pieces, n, 0);
    return tg_reshape(tape, flat, TG_SHAPE(n, batch, hidden));
}

tg_tensor *tg_rnn_forward(tg_module *m, tg_tape *tape, tg_tensor *x, tg_tensor **states) {
    stack_out out = {.states = states};
    if (!run_stack(m, tape, x, NULL, &out)) return NULL;
    const rnn_impl *impl = m->impl;
    tg_tensor **top = out.h_last + (impl->layers - 1) * impl->directions;
    return impl->directions == 1 ? top[0] : tg_concat(tape, top, impl->directions, 1);
}

tg_tensor *tg_rnn_sequence(tg_module *m, tg_tape *tape, tg_tensor *x, const tg_rnn_state *initial,
                           tg_rnn_state *final, tg_tensor **states) {
    stack_out out = {.states = states, .want_output = true};
    if (final) *final = (tg_rnn_state){NULL, NULL};
    if (!run_stack(m, tape, x, initial, &out)) return NULL;
    if (final) {
        const rnn_impl *impl = m->impl;
        int n = impl->layers * impl->directions;
        int64_t batch = x->shape[0], H = impl->config.hidden;
        final->h = stack_states(tape, out.h_last, n, batch, H);
        if (impl->config.kind == TG_RNN_LSTM) final->c = stack_states(tape, out.c_last, n, batch, H);
        if (!final->h || (impl->config.kind == TG_RNN_LSTM && !final->c)) return NULL;
    }
    return out.output;
}

static tg_tensor *rnn_module_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    return tg_rnn_forward(m, tape, x, NULL);
}

static const tgi_module_class rnn_class = {"rnn", rnn_module_forward, NULL, sizeof(rnn_impl), true};

/* The four parameters of layer l, direction d (the order step() relies on), each seeded by its
 * position: layer 0's forward direction keeps the seeds a single layer always had. */
static bool add_direction(tg_module *m, int l, int d, const tg_init *input, const tg_init *recurrent) {
    const rnn_impl *impl = m->impl;
    const tg_rnn_config *config = &impl->config;
    int k = l * impl->directions + d;
    int64_t rows = impl->gates * config->hidden, in = l ? impl->directions * config->hidden : config->in;
    char suffix[32], name[4][48];
    layer_suffix(impl, l, d, suffix, sizeof suffix);
    static const char *const locals[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    for (int i = 0; i < 4; i++) snprintf(name[i], sizeof name[i], "%s%s", locals[i], suffix);
    uint64_t seed_ih = k ? tgi_seed_mix(config->seed, 2 * (uint64_t)k + 2) : config->seed;
    uint64_t seed_hh = tgi_seed_mix(config->seed, k ? 2 * (uint64_t)k + 3 : 1);
    bool ok = tgi_module_param(m, name[0], TG_SHAPE(rows, in), input, seed_ih) &&
              tgi_module_param(m, name[1], TG_SHAPE(rows, config->hidden), recurrent, seed_hh) &&
              tgi_module_param(m, name[2], TG_SHAPE(rows), NULL, 0) &&
              tgi_module_param(m, name[3], TG_SHAPE(rows), NULL, 0);
    if (ok && config->kind == TG_RNN_LSTM) /* forget gate: rows H..2H of bias_ih */
        for (int64_t j = config->hidden; j < 2 * config->hidden; j++)
            m->params[4 * k + 2]->data[j] = config->forget_bias;
    return ok;
}

tg_module *tg_rnn_new(tg_ctx *ctx, const char *name, const tg_rnn_config *config) {
    if (!ctx || tgi_check_name(ctx, "rnn", name) != TG_OK) return NULL;
    if (!config || config->in < 1 || config->hidden < 1 || config->bptt < 0 ||
        config->num_layers < 0 || config->num_layers > TG_RNN_MAX_LAYERS ||
        (unsigned)config->kind > TG_RNN_GRU) {
        tgi_error(ctx, TG_ERR_INVALID, "rnn '%s': needs a kind, in >= 1, hidden >= 1, bptt >= 0, "
                  "num_layers 0..%d", name, TG_RNN_MAX_LAYERS);
        return NULL;
    }
    int gates = config->kind == TG_RNN_LSTM ? 4 : config->kind == TG_RNN_GRU ? 3 : 1;
    int directions = config->bidirectional ? 2 : 1;
    /* the stacked gate rows and a stacked layer's input, checked before any is formed */
    if (tgi_layer_size(ctx, "rnn", name, "gates", gates, "hidden", config->hidden) < 0 ||
        tgi_layer_size(ctx, "rnn", name, "directions", directions, "hidden", config->hidden) < 0)
        return NULL;
    tg_module *m = tgi_module_new(ctx, &rnn_class, "%s", name);
    if (!m) return NULL;
    rnn_impl *impl = m->impl;
    impl->config = *config;
    impl->gates = gates;
    impl->layers = config->num_layers ? config->num_layers : 1;
    impl->directions = directions;
    tg_init input = tgi_init_or(&config->input_init, tg_init_xavier(TG_ACT_IDENTITY));
    tg_init recurrent = tgi_init_or(&config->recurrent_init,
                                    (tg_init){TG_INIT_ORTHOGONAL, 0, 0, 0, TG_ACT_IDENTITY, false});
    for (int l = 0; l < impl->layers; l++)
        for (int d = 0; d < impl->directions; d++)
            if (!add_direction(m, l, d, &input, &recurrent)) {
                tgi_module_destroy(m);
                return NULL;
            }
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
