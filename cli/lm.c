/*
 * cli/lm.c — language models in the tool: `tapegrad train --model gpt|rnn-lm|lstm-lm|gru-lm`
 * on text (held-out bits per character), and `tapegrad sample` from a saved model.
 *
 * A saved language model carries in its file's metadata what rebuilds it: the model kind, its
 * sizes and the vocabulary (hex, since a corpus may hold any byte), so `sample` needs nothing
 * but the checkpoint.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/files.h"
#include "cli/lm.h"
#include "cli/study.h"

typedef enum lm_kind { LM_GPT, LM_RNN, LM_LSTM, LM_GRU } lm_kind;
static const char *const lm_models[] = {"gpt", "rnn-lm", "lstm-lm", "gru-lm"};

/* What builds a model; written to and read from a checkpoint's metadata. */
typedef struct lm_shape {
    lm_kind kind;
    long vocab, layers, width, hidden, heads, context;
    bool post_ln, qk_norm, tie;
    float dropout;
    unsigned long long seed;
} lm_shape;

typedef struct lm_options {
    lm_shape shape;
    const char *data, *save, *load, *schedule_text;
    tg_schedule schedule;              /* --schedule, or --warmup N as warmup:N (kind CONSTANT) */
    long batch, steps, warmup, eval_every, threads;
    double lr, weight_decay, clip_norm;
    int optimizer;                     /* tg_optimizer_kind */
    bool layers_given, width_given, lr_given;
} lm_options;

bool lm_model_name(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, lm_models[i]) == 0) return true;
    return false;
}

static int lm_bad(const char *command, const char *fmt, const char *a) {
    fprintf(stderr, "tapegrad %s: ", command);
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    return EXIT_USAGE;
}

/* ---- models from shapes, shapes from files --------------------------------------------------- */

static tg_module *build_lm(tg_ctx *ctx, const lm_shape *s) {
    if (s->kind == LM_GPT) {
        tg_gpt_config c = {.vocab = s->vocab, .block_size = s->context, .d_model = s->width,
                           .n_heads = s->heads, .n_layers = (int)s->layers, .post_ln = s->post_ln,
                           .qk_norm = s->qk_norm, .tie_weights = s->tie, .dropout = s->dropout,
                           .seed = s->seed};
        return tg_gpt_new(ctx, "gpt", &c);
    }
    tg_rnn_kind kind = s->kind == LM_RNN ? TG_RNN_TANH : s->kind == LM_LSTM ? TG_RNN_LSTM : TG_RNN_GRU;
    tg_rnn_lm_config c = {kind, s->vocab, s->width, s->hidden, (int)s->layers, s->seed};
    return tg_rnn_lm_new(ctx, "lm", &c);
}

static void shape_text(const lm_shape *s, char *buf, size_t size) {
    snprintf(buf, size, "%s vocab=%ld layers=%ld width=%ld hidden=%ld heads=%ld context=%ld "
             "post_ln=%d qk_norm=%d tie=%d", lm_models[s->kind], s->vocab, s->layers, s->width,
             s->hidden, s->heads, s->context, s->post_ln, s->qk_norm, s->tie);
}

static bool parse_shape_text(const char *text, lm_shape *s) {
    char kind[16];
    int post_ln, qk_norm, tie;
    memset(s, 0, sizeof *s);
    if (sscanf(text, "%15s vocab=%ld layers=%ld width=%ld hidden=%ld heads=%ld context=%ld "
               "post_ln=%d qk_norm=%d tie=%d", kind, &s->vocab, &s->layers, &s->width, &s->hidden,
               &s->heads, &s->context, &post_ln, &qk_norm, &tie) != 10)
        return false;
    int k = 0;
    while (k < 4 && strcmp(kind, lm_models[k]) != 0) k++;
    s->kind = (lm_kind)k;
    s->post_ln = post_ln, s->qk_norm = qk_norm, s->tie = tie;
    return k < 4 && s->vocab >= 1 && s->vocab <= 256;
}

static void hex_of(const unsigned char *bytes, int n, char *out) {
    for (int i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", bytes[i]);
    out[2 * n] = '\0';
}

/* 0 on success; the vocabulary's bytes and count from its hex text. */
static int bytes_of(const char *hex, unsigned char *bytes, int *n) {
    size_t len = strlen(hex);
    if (len % 2 || len / 2 > 256 || len == 0) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned value;
        if (sscanf(hex + 2 * i, "%2x", &value) != 1) return -1;
        bytes[i] = (unsigned char)value;
    }
    *n = (int)(len / 2);
    return 0;
}

/* ---- training --------------------------------------------------------------------------------- */

/* Held-out bits per character over one sequential pass (up to max_windows windows; 0: all). */
static double held_out_bpc(tg_module *model, tg_tape *tape, tg_text_batcher *eval, tg_tensor *x,
                           tg_tensor *y, int64_t max_windows) {
    double nats = 0.0;
    int64_t chars = 0, windows = 0, rows;
    tg_module_set_training(model, false);
    while ((rows = tg_text_batcher_next_into(eval, x, y)) > 0) {
        tg_tape_reset(tape);
        tg_no_grad_begin(tape);
        /* the rows that hold a window (the last batch of a pass may have fewer) */
        tg_tensor *loss = tg_lm_loss(tape, tg_slice(tape, tg_module_forward(model, tape, x), 0, 0, rows),
                                     tg_slice(tape, y, 0, 0, rows));
        tg_no_grad_end(tape);
        if (!loss) {
            rows = -1;
            break;
        }
        nats += (double)loss->data[0] * (double)(rows * x->shape[1]);
        chars += rows * x->shape[1];
        windows += rows;
        if (max_windows && windows >= max_windows) {
            while (tg_text_batcher_next_into(eval, x, y) > 0) {} /* the next pass starts afresh */
            break;
        }
    }
    tg_module_set_training(model, true);
    return rows < 0 || chars == 0 ? NAN : nats / (double)chars / log(2.0);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct lm_run {
    tg_ctx *ctx;
    tg_text *text;
    tg_module *model;
    tg_optimizer *opt;
    tg_tape *tape;
    tg_text_batcher *train, *eval;
    tg_tensor *x, *y, *ex, *ey;
    tg_tensor **params;
    int n_params;
} lm_run;

static void lm_run_free(lm_run *r) {
    tg_text_batcher_free(r->train);
    tg_text_batcher_free(r->eval);
    tg_optimizer_free(r->opt);
    tg_tape_free(r->tape);
    tg_module_free(r->model);
    tg_text_free(r->text);
    free(r->params);
    tg_ctx_free(r->ctx);
}

static tg_text *load_text(tg_ctx *ctx, const char *data) {
    if (strncmp(data, "text:", 5) == 0) return tg_text_load(ctx, data + 5);
    return tg_text_load_corpus(ctx, data);
}

/* Everything a run needs; 0, or 1 after printing why. */
static int lm_prepare(lm_options *o, lm_run *r) {
    memset(r, 0, sizeof *r);
    if (!(r->ctx = tg_ctx_new())) return lm_bad("train", "out of memory%s", "");
    if (o->threads) tg_ctx_set_threads(r->ctx, (int)o->threads);
    lm_shape *s = &o->shape;
    int64_t b = o->batch, t = s->context;
    bool ok = (r->text = load_text(r->ctx, o->data)) != NULL;
    if (ok && tg_text_length(r->text) < 10 * (t + 1)) { /* a tenth held out, a window in each part */
        fprintf(stderr, "tapegrad train: --data %s: %lld bytes, too short for windows of --context "
                "%lld (at least %lld bytes)\n", o->data, (long long)tg_text_length(r->text),
                (long long)t, (long long)(10 * (t + 1)));
        return 1;
    }
    if (ok) { /* chunks of 4 KiB, fewer bytes for a small text: a tenth of 20 chunks held out */
        int64_t chunk = tg_text_length(r->text) / 20;
        chunk = chunk > 4096 ? 4096 : chunk < 2 * (t + 1) ? 2 * (t + 1) : chunk;
        ok = tg_text_split(r->text, 0.1, chunk, s->seed) == TG_OK;
    }
    if (ok) s->vocab = tg_text_vocab_size(r->text);
    ok = ok && (r->model = build_lm(r->ctx, s)) &&
         (!o->load || tg_module_load(r->model, o->load) == TG_OK) &&
         (r->train = tg_text_batcher_new(r->text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, b, t, s->seed)) &&
         (r->eval = tg_text_batcher_new(r->text, TG_TEXT_HELD_OUT, TG_TEXT_SEQUENTIAL, b, t, 0)) &&
         (r->tape = tg_tape_new(r->ctx)) && (r->x = tg_zeros(r->ctx, TG_SHAPE(b, t))) &&
         (r->y = tg_zeros(r->ctx, TG_SHAPE(b, t)));
    if (ok) {
        r->n_params = tg_module_params(r->model, NULL, 0);
        ok = (r->params = calloc((size_t)r->n_params, sizeof *r->params)) != NULL;
    }
    if (ok) {
        tg_module_params(r->model, r->params, r->n_params);
        tg_optimizer_config oc = {.kind = (tg_optimizer_kind)o->optimizer, .lr = (float)o->lr,
                                  .weight_decay = (float)o->weight_decay};
        ok = (r->opt = tg_optimizer_new(r->ctx, r->params, r->n_params, &oc)) != NULL &&
             tg_optimizer_set_schedule(r->opt, &o->schedule) == TG_OK;
    }
    if (!ok) {
        fprintf(stderr, "tapegrad train: %s\n", r->ctx ? tg_errmsg(r->ctx) : "out of memory");
        return 1;
    }
    return 0;
}

/* One training step on the next batch; its loss, or NAN after printing why. */
static double lm_step(const lm_options *o, lm_run *r, long step) {
    if (tg_text_batcher_next_into(r->train, r->x, r->y) < 0) goto failed;
    tg_tape_reset(r->tape);
    tg_tensor *loss = tg_lm_loss(r->tape, tg_module_forward(r->model, r->tape, r->x), r->y);
    if (!loss || tg_backward(r->tape, loss) != TG_OK) goto failed;
    if (o->clip_norm > 0) tg_clip_grad_norm(r->params, r->n_params, o->clip_norm, 2.0, false, NULL);
    if (tg_optimizer_step_zero_grad(r->opt) != TG_OK) goto failed;
    return loss->data[0];
failed:
    fprintf(stderr, "tapegrad train: step %ld: %s\n", step, tg_errmsg(r->ctx));
    return NAN;
}

static int lm_save(const lm_options *o, lm_run *r) {
    char shape[256], vocab[513];
    shape_text(&o->shape, shape, sizeof shape);
    hex_of(tg_text_vocab(r->text), tg_text_vocab_size(r->text), vocab);
    const char *meta[] = {"tapegrad.lm", shape, "tapegrad.vocab", vocab};
    if (tg_module_save_with_metadata(r->model, o->save, meta, 2) != TG_OK) {
        fprintf(stderr, "tapegrad train: %s\n", tg_errmsg(r->ctx));
        return 1;
    }
    printf("saved: %s\n", o->save);
    return 0;
}

static int lm_train(lm_options *o) {
    lm_run r;
    if (lm_prepare(o, &r)) {
        lm_run_free(&r);
        return 1;
    }
    const lm_shape *s = &o->shape;
    printf("%s: %lld parameters; %s: %lld training and %lld held-out characters, vocabulary %ld\n",
           lm_models[s->kind], (long long)tg_module_num_elements(r.model), o->data,
           (long long)tg_text_part_length(r.text, TG_TEXT_TRAIN),
           (long long)tg_text_part_length(r.text, TG_TEXT_HELD_OUT), s->vocab);
    double started = now_seconds(), loss = NAN;
    int status = 0;
    for (long step = 0; step < o->steps; step++) {
        if (isnan(loss = lm_step(o, &r, step))) {
            status = 1;
            break;
        }
        if ((step + 1) % o->eval_every == 0 || step + 1 == o->steps) {
            double elapsed = now_seconds() - started;
            double bpc = held_out_bpc(r.model, r.tape, r.eval, r.x, r.y, 64);
            printf("step %ld/%ld: training loss %.4f (%.3f bpc), held-out %.3f bpc (first 64 "
                   "windows), %.0f chars/s\n", step + 1, o->steps, loss, loss / log(2.0), bpc,
                   (double)(step + 1) * (double)(o->batch * s->context) / elapsed);
            fflush(stdout);
        }
    }
    if (!status) {
        double bpc = held_out_bpc(r.model, r.tape, r.eval, r.x, r.y, 0);
        printf("held-out bits per character: %.4f (all %lld held-out windows of %ld)\n", bpc,
               (long long)tg_text_batcher_windows(r.eval), s->context);
        if (!isfinite(bpc)) status = 1;
    }
    if (!status && o->save) status = lm_save(o, &r);
    lm_run_free(&r);
    return status;
}

/* ---- options ---------------------------------------------------------------------------------- */

static void lm_usage(FILE *f) {
    fprintf(f,
            "usage: tapegrad train --model gpt|rnn-lm|lstm-lm|gru-lm [options]\n\n"
            "Character-level language models; reports held-out bits per character.\n"
            "  --data NAME|text:PATH   fortunes (Debian's package, the default) or any file\n"
            "  --layers N        blocks (gpt, default 4) or stacked recurrent layers (default 1)\n"
            "  --width N         d_model (gpt, default 128) or the embedding size (default 64)\n"
            "  --hidden N        recurrent hidden size (default 256)\n"
            "  --heads N         attention heads (default 4)\n"
            "  --context N       characters per window, the model's block size (default 64)\n"
            "  --post-ln --qk-norm --tie --dropout X   (gpt)\n"
            "  --batch N (32)  --steps N (1000)  --lr X (gpt 1e-3, recurrent 3e-3)\n"
            "  --optimizer adam|adamw|sgd|rmsprop (adamw)  --weight-decay X (0)\n"
            "  --warmup N        linear learning-rate warm-up over the first N steps\n"
            "  --schedule S      cosine | linear | step:N:GAMMA | warmup:N[,cosine|,linear|,step:N:GAMMA]\n"
            "                    (as train's; --warmup N is warmup:N)\n"
            "  --clip-norm X     global gradient-norm clipping (default 1; 0: off)\n"
            "  --eval-every N    progress with held-out bpc (default steps/10)\n"
            "  --threads N  --seed N  --save PATH  --load PATH\n");
}

typedef struct lm_number {
    const char *flag;
    double low, high;
    size_t offset;               /* into lm_options */
    bool is_double;
} lm_number;

#define LONG_OPT(flag, low, high, field) {flag, low, high, offsetof(lm_options, field), false}
#define DOUBLE_OPT(flag, low, high, field) {flag, low, high, offsetof(lm_options, field), true}
static const lm_number lm_numbers[] = {
    LONG_OPT("--layers", 0, TG_GPT_MAX_LAYERS, shape.layers),
    LONG_OPT("--width", 1, 4096, shape.width),
    LONG_OPT("--hidden", 1, 4096, shape.hidden),
    LONG_OPT("--heads", 1, 256, shape.heads),
    LONG_OPT("--context", 2, 4096, shape.context),
    LONG_OPT("--batch", 1, 65536, batch),
    LONG_OPT("--steps", 0, 100000000, steps),
    LONG_OPT("--warmup", 0, 100000000, warmup),
    LONG_OPT("--eval-every", 1, 100000000, eval_every),
    LONG_OPT("--threads", 1, 1024, threads),
    DOUBLE_OPT("--lr", 0, 100, lr),
    DOUBLE_OPT("--weight-decay", 0, 10, weight_decay),
    DOUBLE_OPT("--clip-norm", 0, 1e12, clip_norm),
};

/* A seed: a whole number >= 0 that fits 64 bits; 0, or EXIT_USAGE after saying why. */
static int parse_seed(const char *command, const char *value, unsigned long long *seed) {
    char *end;
    errno = 0;
    *seed = strtoull(value, &end, 10);
    if (!*value || *end || errno || value[0] == '-')
        return lm_bad(command, "--seed: '%s' is not a whole number from 0 to 2^64 - 1", value);
    return 0;
}

static int lm_number_option(lm_options *o, const lm_number *n, const char *value) {
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (!*value || *end || errno || !(v >= n->low && v <= n->high) || (!n->is_double && v != floor(v)))
        return lm_bad("train", "%s: not a valid value", n->flag);
    char *field = (char *)o + n->offset;
    if (n->is_double) *(double *)field = v;
    else *(long *)field = (long)v;
    o->layers_given |= strcmp(n->flag, "--layers") == 0;
    o->width_given |= strcmp(n->flag, "--width") == 0;
    o->lr_given |= strcmp(n->flag, "--lr") == 0;
    return 0;
}

static int lm_word_option(lm_options *o, const char *arg, const char *value) {
    static const char *const optimizers[] = {"sgd", "adam", "adamw", "rmsprop"};
    if (strcmp(arg, "--model") == 0) {
        int k = 0;
        while (k < 4 && strcmp(value, lm_models[k]) != 0) k++;
        o->shape.kind = (lm_kind)k;
    } else if (strcmp(arg, "--data") == 0) o->data = value;
    else if (strcmp(arg, "--save") == 0) o->save = value;
    else if (strcmp(arg, "--load") == 0) o->load = value;
    else if (strcmp(arg, "--schedule") == 0) {
        if (parse_schedule_arg(value, &o->schedule))
            return lm_bad("train", "--schedule: expected cosine, linear, step:N:GAMMA or warmup:N[,cosine|,"
                          "linear|,step:N:GAMMA], not '%s'", value);
        o->schedule_text = value;
    }
    else if (strcmp(arg, "--seed") == 0) return parse_seed("train", value, &o->shape.seed);
    else if (strcmp(arg, "--dropout") == 0) {
        char *end;
        o->shape.dropout = strtof(value, &end);
        if (*end || !(o->shape.dropout >= 0.0f && o->shape.dropout < 1.0f))
            return lm_bad("train", "--dropout: '%s' is not in [0, 1)", value);
    } else if (strcmp(arg, "--optimizer") == 0) {
        int k = 0;
        while (k < 4 && strcmp(value, optimizers[k]) != 0) k++;
        if (k == 4) return lm_bad("train", "--optimizer: '%s' is none of sgd, adam, adamw, rmsprop", value);
        o->optimizer = k;
    } else return -1;
    return 0;
}

static int lm_parse(int argc, char **argv, lm_options *o) {
    static const char *const words[] = {"--model", "--data", "--save", "--load", "--seed",
                                        "--dropout", "--optimizer", "--schedule"};
    static const char *const flags[] = {"--post-ln", "--qk-norm", "--tie"};
    *o = (lm_options){.shape = {.hidden = 256, .heads = 4, .context = 64, .seed = 1},
                      .data = "fortunes", .batch = 32, .steps = 1000, .clip_norm = 1.0,
                      .optimizer = TG_OPT_ADAMW};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            lm_usage(stdout);
            return -1;
        }
        bool *flag = strcmp(arg, flags[0]) == 0 ? &o->shape.post_ln
                     : strcmp(arg, flags[1]) == 0 ? &o->shape.qk_norm
                     : strcmp(arg, flags[2]) == 0 ? &o->shape.tie : NULL;
        if (flag) {
            *flag = true;
            continue;
        }
        const lm_number *n = NULL;
        for (size_t k = 0; k < sizeof lm_numbers / sizeof lm_numbers[0]; k++)
            if (strcmp(arg, lm_numbers[k].flag) == 0) n = &lm_numbers[k];
        bool word = false;
        for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) word |= strcmp(arg, words[k]) == 0;
        if (!n && !word) {
            const char *all[32];
            int count = 0;
            for (size_t k = 0; k < sizeof lm_numbers / sizeof lm_numbers[0]; k++) all[count++] = lm_numbers[k].flag;
            for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) all[count++] = words[k];
            for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) all[count++] = flags[k];
            char hint[96], message[256];
            snprintf(message, sizeof message, "unknown option '%%s' for a language model%s (see "
                     "tapegrad train --model gpt --help)", did_you_mean(arg, all, count, hint, sizeof hint));
            return lm_bad("train", message, arg);
        }
        if (!value) return lm_bad("train", "%s needs a value", arg);
        i++;
        int status = n ? lm_number_option(o, n, value) : lm_word_option(o, arg, value);
        if (status) return status;
    }
    return 0;
}

/* Defaults that depend on the model, and what the flags must agree on. */
static int lm_settle(lm_options *o) {
    lm_shape *s = &o->shape;
    bool gpt = s->kind == LM_GPT;
    if (!o->layers_given) s->layers = gpt ? 4 : 1;
    if (!o->width_given) s->width = gpt ? 128 : 64;
    if (!o->lr_given) o->lr = gpt ? 1e-3 : 3e-3;
    if (!o->eval_every) o->eval_every = o->steps >= 10 ? o->steps / 10 : 1;
    if (o->warmup && o->schedule_text)
        return lm_bad("train", "--warmup N and --schedule: give one (%s)", "--schedule warmup:N,cosine has both");
    if (o->warmup) o->schedule = (tg_schedule){.kind = TG_SCHEDULE_CONSTANT, .warmup_steps = o->warmup};
    char why[160];
    if ((o->warmup || o->schedule_text) && settle_schedule(&o->schedule, (int)o->steps, why, sizeof why))
        return lm_bad("train", "%s", why);
    if (!gpt && (s->post_ln || s->qk_norm || s->tie || s->dropout > 0.0f))
        return lm_bad("train", "--post-ln, --qk-norm, --tie and --dropout are for --model gpt, not %s",
                      lm_models[s->kind]);
    if (!gpt && s->layers < 1) return lm_bad("train", "--layers: a recurrent model needs at least 1%s", "");
    if (gpt && s->width % s->heads)
        return lm_bad("train", "--width must be a multiple of --heads (%s)", "d_model = heads x head size");
    if (strncmp(o->data, "text:", 5) != 0 && strcmp(o->data, "fortunes") != 0)
        return lm_bad("train", "--data: a language model reads fortunes or text:PATH, not '%s'", o->data);
    if (o->steps == 0 && !o->load) return lm_bad("train", "--steps 0 evaluates a model given with --load%s", "");
    if (o->load && check_path_arg("train", "--load", o->load)) return EXIT_USAGE;
    if (o->save && check_save_arg("train", "--save", o->save)) return EXIT_USAGE;
    return 0;
}

int run_lm_train(int argc, char **argv) {
    lm_options o;
    int status = lm_parse(argc, argv, &o);
    if (status) return status < 0 ? 0 : status;
    if ((status = lm_settle(&o))) return status;
    return lm_train(&o);
}

int run_lm_params(int argc, char **argv) {
    lm_options o;
    int status = lm_parse(argc, argv, &o);
    if (status) return status < 0 ? 0 : status;
    if ((status = lm_settle(&o))) return status;
    tg_ctx *ctx = tg_ctx_new();
    tg_text *text = ctx ? load_text(ctx, o.data) : NULL; /* the vocabulary sizes the tables */
    if (text) o.shape.vocab = tg_text_vocab_size(text);
    tg_module *model = text ? build_lm(ctx, &o.shape) : NULL;
    if (model && tg_module_summary(model, stdout) != TG_OK) {
        tg_module_free(model);
        model = NULL;
    }
    if (!model) fprintf(stderr, "tapegrad params: %s\n", ctx ? tg_errmsg(ctx) : "out of memory");
    tg_module_free(model);
    tg_text_free(text);
    tg_ctx_free(ctx);
    return model ? 0 : 1;
}

/* ---- sampling --------------------------------------------------------------------------------- */

static void sample_usage(FILE *f) {
    fprintf(f, "usage: tapegrad sample --load CKPT [--prompt TEXT] [--tokens N] [--temperature X] "
               "[--seed N]\n\n"
               "Continues TEXT (default: a new line) by N characters (default 200) drawn from a\n"
               "language model `tapegrad train --model gpt|rnn-lm|lstm-lm|gru-lm --save` wrote;\n"
               "temperature 0 takes the likeliest character (default 0.8).\n");
}

typedef struct sample_options {
    const char *load, *prompt;
    long tokens;
    double temperature;
    unsigned long long seed;
} sample_options;

static int parse_sample(int argc, char **argv, sample_options *o) {
    *o = (sample_options){.prompt = "\n", .tokens = 200, .temperature = 0.8, .seed = 1};
    static const char *const known[] = {"--load", "--prompt", "--tokens", "--temperature", "--seed"};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            sample_usage(stdout);
            return -1;
        }
        char hint[96], *end;
        int k = 0;
        while (k < 5 && strcmp(arg, known[k]) != 0) k++;
        if (k == 5) {
            char message[256];
            snprintf(message, sizeof message, "unknown option '%%s'%s (see tapegrad sample --help)",
                     did_you_mean(arg, known, 5, hint, sizeof hint));
            return lm_bad("sample", message, arg);
        }
        if (!value) return lm_bad("sample", "%s needs a value", arg);
        i++;
        long whole;
        errno = 0;
        if (k == 0) o->load = value;
        else if (k == 1) o->prompt = value;
        else if (k == 2) {
            if (parse_whole_arg("sample", arg, value, 0, 1000000, &whole)) return EXIT_USAGE;
            o->tokens = whole;
        } else if (k == 3) {
            o->temperature = strtod(value, &end);
            if (!*value || *end || errno || !(o->temperature >= 0 && o->temperature <= 100))
                return lm_bad("sample", "--temperature: '%s' is not a number from 0 to 100", value);
        } else if (parse_seed("sample", value, &o->seed)) {
            return EXIT_USAGE;
        }
    }
    if (!o->load) return lm_bad("sample", "--load CKPT is required (a model train --save wrote)%s", "");
    if (!o->prompt[0]) return lm_bad("sample", "--prompt: give at least one character%s", "");
    return check_path_arg("sample", "--load", o->load);
}

/* The prompt as ids of the model's vocabulary; 0, or EXIT_USAGE naming a character it lacks. */
static int encode_prompt(const char *prompt, const unsigned char *vocab, int n_vocab, float *ids) {
    for (size_t i = 0; prompt[i]; i++) {
        int id = 0;
        while (id < n_vocab && vocab[id] != (unsigned char)prompt[i]) id++;
        if (id == n_vocab) {
            unsigned char byte = (unsigned char)prompt[i];
            char what[32];
            if (byte < 32 || byte > 126) snprintf(what, sizeof what, "byte %d", byte);
            else snprintf(what, sizeof what, "'%c'", byte);
            return lm_bad("sample", "--prompt: %s is not in the model's vocabulary", what);
        }
        ids[i] = (float)id;
    }
    return 0;
}

int run_sample(int argc, char **argv) {
    sample_options o;
    int status = parse_sample(argc, argv, &o);
    if (status) return status < 0 ? 0 : status;
    tg_ctx *ctx = tg_ctx_new();
    if (!ctx) return 1;
    char shape_meta[256], vocab_meta[513];
    unsigned char vocab[256];
    int n_vocab = 0;
    lm_shape shape;
    if (tg_safetensors_metadata(ctx, o.load, "tapegrad.lm", shape_meta, sizeof shape_meta) != TG_OK ||
        tg_safetensors_metadata(ctx, o.load, "tapegrad.vocab", vocab_meta, sizeof vocab_meta) != TG_OK) {
        fprintf(stderr, "tapegrad sample: %s (a model saved by tapegrad train --model gpt|rnn-lm|"
                "lstm-lm|gru-lm --save)\n", tg_errmsg(ctx));
        tg_ctx_free(ctx);
        return 1;
    }
    if (!parse_shape_text(shape_meta, &shape) || bytes_of(vocab_meta, vocab, &n_vocab) ||
        n_vocab != shape.vocab) {
        fprintf(stderr, "tapegrad sample: '%s': its language-model metadata is malformed\n", o.load);
        tg_ctx_free(ctx);
        return 1;
    }
    size_t n_prompt = strlen(o.prompt);
    float *ids = malloc((n_prompt + (size_t)o.tokens) * sizeof *ids);
    tg_module *model = ids ? build_lm(ctx, &shape) : NULL;
    tg_tape *tape = model ? tg_tape_new(ctx) : NULL;
    status = !tape ? 1 : encode_prompt(o.prompt, vocab, n_vocab, ids);
    if (!status && (tg_module_load(model, o.load) != TG_OK ||
                    tg_lm_generate(model, tape, ids, (int64_t)n_prompt, o.tokens, shape.context,
                                   (float)o.temperature, o.seed) != TG_OK))
        status = 1;
    if (status == 1) fprintf(stderr, "tapegrad sample: %s\n", ids ? tg_errmsg(ctx) : "out of memory");
    for (size_t i = 0; !status && i < n_prompt + (size_t)o.tokens; i++) putchar(vocab[(int)ids[i]]);
    if (!status) putchar('\n');
    free(ids);
    tg_tape_free(tape);
    tg_module_free(model);
    tg_ctx_free(ctx);
    return status;
}
