/*
 * bench/bench_kann.c — the scalar chain of bench_core (y = tanh(1.01 y), 1,000 times: 2,000 ops,
 * forward + backward) in four programs, rounds interleaved in one process:
 *   ours      tapegrad, recorded every pass (tg_tape_reset, tg_scale, tg_tanh, tg_backward);
 *   replayed  tapegrad, recorded once, then tg_tape_replay + tg_backward;
 *   kann      KANN's static graph (attractivechaos/kann, kautodiff.c): kad_tanh(kad_mul(y, c))
 *             with c a scalar constant 1.01, compiled once, then kad_eval_at + kad_grad per pass;
 *   plain     plain C: the forward keeps every y, the backward multiplies the derivatives
 *             (glibc's tanhf, as bench_models' reference);
 *   rec_fwd   tapegrad's recording alone (ours without tg_backward), and
 *   rep_fwd   the replay alone (replayed without tg_backward): ours - rec_fwd and
 *             replayed - rep_fwd are the backward walk, per node, to set beside the forward's.
 * Times are the process's CPU time (CLOCK_PROCESS_CPUTIME_ID): on a machine shared with other
 * work, the time slices the scheduler gives others on this core are not counted (the cache they
 * evict still is). Wall-clock medians there were 2-3x the quiet figures; CPU time's within 10%.
 * Not built by `zig build` (it needs KANN's source, which is never copied into this repository):
 * bench/kann_chain.sh fetches kautodiff.c/.h into a temporary directory, builds this file
 * against them and the ReleaseFast library, and runs it.
 *
 *   bench_kann [ROUNDS [PASSES]]   ROUNDS rounds (default 7) of PASSES passes (default 300) each;
 *                                  one line per round, then medians with min-max (ns per op)
 *   bench_kann only NAME [PASSES]  one program alone (NAME: one of the six above): a
 *                                  warm-up pass, then PASSES in counted_passes, for
 *                                  `valgrind --tool=callgrind --toggle-collect=counted_passes`:
 *                                  instructions per op = Ir / (PASSES x 2,000), the steady
 *                                  state (the warm-up pass grows the tape's memory once)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "kautodiff.h"
#include "tapegrad.h"

#ifndef CHAIN
#define CHAIN 1000 /* -DCHAIN=N for another length (the cache-size effect) */
#endif
#define OPS (2 * CHAIN)
#define MAX_ROUNDS 64

static void die(tg_ctx *ctx, const char *what) {
    fprintf(stderr, "bench_kann: %s: %s\n", what, ctx ? tg_errmsg(ctx) : "failed");
    exit(1);
}

/* ---- tapegrad ---------------------------------------------------------------------------- */

typedef struct ours {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_tensor *x, *y; /* y: the recorded end, for replaying */
} ours;

static void ours_new(ours *o) {
    o->ctx = tg_ctx_new();
    o->tape = tg_tape_new(o->ctx);
    o->x = tg_scalar(o->ctx, 0.5f);
    o->y = NULL;
    if (!o->tape || !o->x || tg_set_requires_grad(o->x, true) != TG_OK) die(o->ctx, "set-up");
}

static tg_tensor *ours_record(ours *o) {
    tg_tape_reset(o->tape);
    tg_tensor *y = o->x;
    for (int i = 0; i < CHAIN; i++) y = tg_tanh(o->tape, tg_scale(o->tape, y, 1.01f));
    return y;
}

/* Not inlined, so that a profile shows each program apart. */
__attribute__((noinline)) static float ours_pass(ours *o) {
    tg_tensor *y = ours_record(o);
    if (!y || tg_backward(o->tape, y) != TG_OK) die(o->ctx, "backward");
    float g = o->x->grad[0];
    tg_zero_grad(o->x);
    return g;
}

/* The forwards alone: a recording (reset, then the chain), or a replay of the recorded step. */
__attribute__((noinline)) static float rec_fwd_pass(ours *o) {
    tg_tensor *y = ours_record(o);
    if (!y) die(o->ctx, "record");
    return y->data[0];
}

__attribute__((noinline)) static float rep_fwd_pass(ours *o) {
    if (!o->y) o->y = ours_record(o);
    else if (tg_tape_replay(o->tape) != TG_OK) die(o->ctx, "replay");
    if (!o->y) die(o->ctx, "record");
    return o->y->data[0];
}

__attribute__((noinline)) static float replayed_pass(ours *o) {
    if (!o->y) o->y = ours_record(o);
    else if (tg_tape_replay(o->tape) != TG_OK) die(o->ctx, "replay");
    if (!o->y || tg_backward(o->tape, o->y) != TG_OK) die(o->ctx, "backward");
    float g = o->x->grad[0];
    tg_zero_grad(o->x);
    return g;
}

/* ---- KANN --------------------------------------------------------------------------------- */

typedef struct kann {
    float x, gx, factor;
    int n;
    kad_node_t **graph;
} kann;

static void kann_new(kann *k) {
    k->x = 0.5f;
    k->gx = 0.0f;
    k->factor = 1.01f;
    kad_node_t *y = kad_var(&k->x, &k->gx, 0), *c = kad_const(&k->factor, 0);
    for (int i = 0; i < CHAIN; i++) y = kad_tanh(kad_mul(y, c));
    k->graph = kad_compile(&k->n, 1, y);
    if (!k->graph || k->n != OPS + 2) {
        fprintf(stderr, "bench_kann: KANN's graph has %d nodes, expected %d\n", k->n, OPS + 2);
        exit(1);
    }
}

/* kad_grad zeroes the gradients (the variable's too) before it walks. */
__attribute__((noinline)) static float kann_pass(kann *k) {
    kad_eval_at(k->n, k->graph, -1);
    kad_grad(k->n, k->graph, -1);
    return k->gx;
}

/* ---- plain C ------------------------------------------------------------------------------ */

static float ys[CHAIN];
static volatile float start_x = 0.5f; /* read each pass: the compiler cannot compute it once */

__attribute__((noinline)) static float plain_pass(void) {
    float y = start_x;
    for (int i = 0; i < CHAIN; i++) ys[i] = y = tanhf(1.01f * y);
    float g = 1.0f;
    for (int i = CHAIN - 1; i >= 0; i--) g *= (1.0f - ys[i] * ys[i]) * 1.01f;
    return g;
}

/* ---- driver ------------------------------------------------------------------------------- */

enum { OURS, REPLAYED, KANN, PLAIN, REC_FWD, REP_FWD, PROGRAMS };
static const char *const names[PROGRAMS] = {"ours", "replayed", "kann", "plain", "rec_fwd",
                                            "rep_fwd"};

typedef struct programs {
    ours recorded, replayed, rec_fwd, rep_fwd;
    kann k;
} programs;

static float run(programs *p, int which) {
    switch (which) {
    case OURS: return ours_pass(&p->recorded);
    case REPLAYED: return replayed_pass(&p->replayed);
    case KANN: return kann_pass(&p->k);
    case REC_FWD: return rec_fwd_pass(&p->rec_fwd);
    case REP_FWD: return rep_fwd_pass(&p->rep_fwd);
    default: return plain_pass();
    }
}

/* The passes callgrind counts (not inlined: --toggle-collect=counted_passes). */
__attribute__((noinline)) static float counted_passes(programs *p, int which, int passes) {
    float grad = 0.0f;
    for (int i = 0; i < passes; i++) grad = run(p, which);
    return grad;
}

/* Nanoseconds per op over `passes` passes, of the process's CPU time (see the top). */
static double time_program(programs *p, int which, int passes, float *grad) {
    double start = bench_cpu_seconds();
    for (int i = 0; i < passes; i++) *grad = run(p, which);
    return (bench_cpu_seconds() - start) / passes / OPS * 1e9;
}

int main(int argc, char **argv) {
    static programs p;
    ours_new(&p.recorded);
    ours_new(&p.replayed);
    ours_new(&p.rec_fwd);
    ours_new(&p.rep_fwd);
    kann_new(&p.k);
    if (argc > 1 && strcmp(argv[1], "only") == 0) {
        int which = 0, passes = argc > 3 ? atoi(argv[3]) : 20;
        while (which < PROGRAMS && (argc < 3 || strcmp(argv[2], names[which]) != 0)) which++;
        if (which == PROGRAMS || passes < 1) {
            fprintf(stderr, "usage: bench_kann only ours|replayed|kann|plain|rec_fwd|rep_fwd "
                            "[PASSES]\n");
            return 2;
        }
        run(&p, which); /* warm-up */
        float grad = counted_passes(&p, which, passes);
        printf("%s: dy/dx %.7g after %d passes\n", names[which], grad, passes + 1);
        return 0;
    }
    int rounds = argc > 1 ? atoi(argv[1]) : 7, passes = argc > 2 ? atoi(argv[2]) : 300;
    if (rounds < 1 || rounds > MAX_ROUNDS || passes < 1) {
        fprintf(stderr, "usage: bench_kann [ROUNDS (1-%d) [PASSES]]\n", MAX_ROUNDS);
        return 2;
    }
    float grads[PROGRAMS];
    double ns[PROGRAMS][MAX_ROUNDS], ratio[PROGRAMS][MAX_ROUNDS];
    for (int w = 0; w < PROGRAMS; w++) time_program(&p, w, 20, &grads[w]); /* warm-up */
    for (int r = 0; r < rounds; r++) {
        printf("round");
        for (int w = 0; w < PROGRAMS; w++) {
            ns[w][r] = time_program(&p, w, passes, &grads[w]);
            printf(" %s %.2f", names[w], ns[w][r]);
        }
        for (int w = 0; w < PROGRAMS; w++) ratio[w][r] = ns[w][r] / ns[KANN][r];
        printf("\n");
    }
    printf("scalar chain, %d x (scale, tanh), forward+backward, dy/dx:", CHAIN);
    for (int w = 0; w < REC_FWD; w++) printf(" %s %.7g", names[w], grads[w]);
    /* the backward walk per node, beside its forward's per op: differences within a round,
     * taken before the summaries below sort the rounds */
    const int with[2][2] = {{OURS, REC_FWD}, {REPLAYED, REP_FWD}};
    bench_timing walks[2], fwds[2];
    for (int k = 0; k < 2; k++) {
        double walk[MAX_ROUNDS], fwd[MAX_ROUNDS];
        for (int r = 0; r < rounds; r++) {
            walk[r] = ns[with[k][0]][r] - ns[with[k][1]][r];
            fwd[r] = ns[with[k][1]][r];
        }
        walks[k] = bench_summarize(walk, rounds);
        fwds[k] = bench_summarize(fwd, rounds);
    }
    printf("\n%-10s %24s %24s\n", "", "ns per op: median [min-max]", "/ KANN in the round");
    for (int w = 0; w < PROGRAMS; w++) {
        bench_timing t = bench_summarize(ns[w], rounds), q = bench_summarize(ratio[w], rounds);
        printf("%-10s %8.2f [%.2f-%.2f] %12.3f [%.3f-%.3f]\n", names[w], t.median, t.min, t.max,
               q.median, q.min, q.max);
    }
    for (int k = 0; k < 2; k++)
        printf("walk after %-8s %6.2f [%.2f-%.2f] ns a node; that forward %.2f [%.2f-%.2f] an op\n",
               names[with[k][1]], walks[k].median, walks[k].min, walks[k].max, fwds[k].median,
               fwds[k].min, fwds[k].max);
    return 0;
}
