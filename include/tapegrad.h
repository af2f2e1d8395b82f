/*
 * tapegrad.h — tape-based reverse-mode automatic differentiation over f32 tensors.
 *
 * The one public header. Every public name starts with tg_ / TG_.
 *
 * The model in five lines:
 *   - a tg_ctx owns the op registry, persistent tensors (parameters) and the last error message;
 *   - a tg_tape records op calls in execution order; its intermediates live in an arena that
 *     tg_tape_reset() rewinds without freeing, so a fixed-shape training loop stops allocating
 *     after its first step;
 *   - every op call (tg_add, tg_matmul, ... or tg_call_id by id) computes its output at once and,
 *     when an input requires a gradient, appends one entry to the tape;
 *   - tg_backward() walks the tape once in reverse and accumulates gradients into t->grad;
 *   - errors never abort: a call returns a status or NULL and tg_errmsg(ctx) says what went wrong,
 *     naming the op, the node labels and the shapes.
 *
 * Error propagation: an op given a NULL input returns NULL and keeps the first error message, so
 * a whole expression can be written without checks and tested once at the end.
 *
 * NULL handles and pointers: every function accepts NULL for any handle or pointer argument and
 * returns without reading through it — a status function returns TG_ERR_INVALID, a function
 * returning a pointer NULL, a count, size or step 0, a bool false, a float NaN, and a void
 * function does nothing — unless its comment says otherwise. The message goes to the context
 * the call can reach (tg_errmsg); when the handle it would be found through is itself NULL (the
 * ctx, tape, tensor, module, recorder, ...) there is no context to hold one, and the return
 * value is all the caller gets. Names (of modules, labels, series, ops, hooks) are never NULL:
 * such a call is refused with a message. Every op refuses an input made by another context.
 *
 * Freeing twice: every tg_<object>_free (tape, module, optimizer, recorder, guard, curvature,
 * jacobian, dataset, batcher, text, text batcher) of an object freed already does nothing (and
 * tg_module_free returns TG_OK), as long as its context lives: a freed object's struct (tens to
 * hundreds of bytes) stays, marked freed, until tg_ctx_free, so its address is never given to a
 * new object meanwhile. tg_ctx_free of a freed context does nothing too, unless a newer context
 * has been given the same address (the process keeps a list of live contexts, not their memory).
 *
 * Names follow one rule:
 *   - tg_<op>(tape, ...) records an op on a tape: tg_linear, tg_tanh, tg_conv2d. Modules, which
 *     own parameters, are made by tg_<kind>_new(ctx, name, ...) and return a tg_module *:
 *     tg_linear_new, tg_rnn_new. tg_call (by name) and tg_call_id (by id) record any op.
 *   - tg_tape_<x> makes or does something on a tape, valid until tg_tape_reset (tg_tape_zeros,
 *     tg_tape_label_next); the same without tape_ lives in the context (tg_zeros: persistent).
 *   - tg_<object>_<verb> acts on an object (tg_module_save, tg_recorder_detect); _new and _free
 *     pair up; _name returns an identifier, _str a sentence for people (tg_status_name gives
 *     "TG_ERR_SHAPE", tg_status_str "shape error").
 *   - hooks: tg_hook_grad (one tensor's gradient, in backward), tg_hook_pattern and
 *     tg_hook_global (either pass). Only a label given before the op runs (tg_tape_label_next)
 *     can match a forward pattern hook: tg_set_label names a tensor that has been computed.
 *   - tg_op_save_for_backward keeps what backward needs, as PyTorch's ctx.save_for_backward.
 * Names before this rule are kept as macros at the end of this header, for a while.
 *
 * Reproducibility: every random thing takes a seed and uses the library's own PRNG, and the
 * library is compiled without floating-point contraction, so a seed gives the same numbers on
 * every machine — with -Dblas=false. OpenBLAS picks its kernels by CPU, and different kernels
 * sum in different orders: with BLAS, results are reproducible on one machine, not across CPUs.
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
#include <initializer_list>
extern "C" {
#endif

#define TG_VERSION_MAJOR 0
#define TG_VERSION_MINOR 1
#define TG_VERSION_PATCH 0

/** Maximum number of dimensions of a tensor. */
#define TG_MAX_DIMS 4
/** Maximum length of a tensor label or module name, including the terminating NUL: a longer one
 *  (63 bytes and more, formatted) is refused with TG_ERR_INVALID and a message naming the limit,
 *  never cut (a cut name could be another tensor's). */
#define TG_LABEL_MAX 64
/** Maximum number of attributes of one op. */
#define TG_MAX_ATTRS 8

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                               */
/* ------------------------------------------------------------------------------------------ */

/** Result of every fallible call. TG_OK is zero; everything else is an error. */
typedef enum tg_status {
    TG_OK = 0,
    TG_ERR_INVALID,   /**< invalid argument (NULL, bad attribute, unknown op, bad signature) */
    TG_ERR_SHAPE,     /**< shapes do not fit the op */
    TG_ERR_NOMEM,     /**< the allocator returned NULL */
    TG_ERR_STATE,     /**< call not valid in this state (backward twice, stale tensor, ...) */
    TG_ERR_NOGRAD,    /**< an op without a backward was given an input that requires a gradient */
    TG_ERR_NUMERIC,   /**< a non-finite value or a numeric domain error */
    TG_ERR_IO,        /**< a file could not be read or written */
    TG_ERR_NOT_FOUND  /**< no such name (op, example index, ...) */
} tg_status;

/** The status's identifier, "TG_OK", "TG_ERR_SHAPE", ... ("TG_ERR_UNKNOWN" for a value that is
 *  not a tg_status). */
const char *tg_status_name(tg_status status);
/** A short constant description of a status for people: "ok", "shape error", ... */
const char *tg_status_str(tg_status status);

/**
 * What computes matrix products, e.g. "OpenBLAS 0.3.21, SkylakeX kernels (chosen from the CPU:
 * AVX-512 AVX2 FMA AVX)" or "portable (...)". Chosen once per process, at the first product or
 * this call: a cblas_sgemm the program already links; else TAPEGRAD_BLAS (the path of a cblas
 * library, or "portable"); else OpenBLAS (libopenblas.so.0), loaded with the kernels for the
 * features this CPU has, or those a fixed table measured faster on its family (Haswell's on AMD
 * family 19h, Zen 3; an OPENBLAS_CORETYPE in the environment wins); else our own kernels. With
 * OpenBLAS loaded, the kernels are then chosen per shape class (tg_gemm_choice) by timing the
 * table's, OpenBLAS's under a second core type and ours, once per machine: the decision is kept
 * in a cache file ($TAPEGRAD_BLAS_CACHE, else $XDG_CACHE_HOME/tapegrad/ or ~/.cache/tapegrad/)
 * keyed by the CPU model and the library versions, so later runs take the same kernels and give
 * the same numbers. TAPEGRAD_BLAS_TUNE=0 keeps the table's (the test suite runs so).
 * TAPEGRAD_BLAS=openblas+onednn adds oneDNN's dnnl_sgemm (libdnnl.so.2, one OpenMP thread) for
 * thin products (m <= 64, n and k <= 512, A not transposed), chosen by shape alone so a run's
 * numbers do not change; not the default, as it allocates from the heap at every call.
 * A BLAS that disagrees with our kernels on a few small products at start-up is not used.
 * -Dblas=false builds always use our own kernels. Never NULL.
 */
const char *tg_gemm_backend(void);

/** How the matrix product kernels were chosen (see tg_gemm_backend). */
typedef enum tg_gemm_how {
    TG_GEMM_NO_BLAS,  /**< ours for every product: -Dblas=false, TAPEGRAD_BLAS=portable, no
                           OpenBLAS found, or it disagreed with ours */
    TG_GEMM_GIVEN,    /**< by the environment or the program: OPENBLAS_CORETYPE,
                           TAPEGRAD_BLAS=<library>, a cblas_sgemm the program links */
    TG_GEMM_TABLE,    /**< from the CPU's features and a fixed table (TAPEGRAD_BLAS_TUNE=0) */
    TG_GEMM_MEASURED, /**< per shape class, timed at this process's first product */
    TG_GEMM_CACHED    /**< per shape class, as timed by an earlier run on this machine */
} tg_gemm_how;

/**
 * How the kernels were chosen, and in *kernels (when not NULL) the name of those that compute a
 * product of op(A) (m x k, transposed when trans_a) by op(B) (k x n): an OpenBLAS core type
 * ("Haswell", "Zen", ...), "portable" (ours), "thin" (ours, for products that fit L2: A read
 * where it lies, fused multiply-adds; chosen only by measurement), or "cblas" (a library given by
 * the program or TAPEGRAD_BLAS). Shape classes: A transposed (weight gradients), m <= 64 (thin), k <= 32
 * (shallow), the rest (large). The same answer for the life of the process.
 */
tg_gemm_how tg_gemm_choice(bool trans_a, int64_t m, int64_t n, int64_t k, const char **kernels);

/* ------------------------------------------------------------------------------------------ */
/* Context                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct tg_ctx tg_ctx;
typedef struct tg_tape tg_tape;

/**
 * Allocator in the style of Lua's lua_Alloc: new_size == 0 frees ptr and returns NULL; otherwise
 * it behaves like realloc(ptr, new_size) (ptr may be NULL). old_size is the size the block had
 * (0 for a new block). Every byte tapegrad allocates goes through it.
 */
typedef void *(*tg_alloc_fn)(void *user, void *ptr, size_t old_size, size_t new_size);

/** A new context with the built-in ops registered, using malloc/realloc/free. NULL if out of memory. */
tg_ctx *tg_ctx_new(void);
/** A new context whose every allocation goes through alloc(user, ...). */
tg_ctx *tg_ctx_new_with_allocator(tg_alloc_fn alloc, void *user);
/** Frees the context, its persistent tensors and its registry. Tapes must be freed first. */
void tg_ctx_free(tg_ctx *ctx);

/** The message of the first error since the last tg_clear_error ("" when none; "no context"
 *  for a NULL ctx). */
const char *tg_errmsg(const tg_ctx *ctx);
/** The status of that error (TG_OK when none). */
tg_status tg_errcode(const tg_ctx *ctx);
/** Forgets the current error so the next one is recorded. */
void tg_clear_error(tg_ctx *ctx);

/** Bytes currently held by persistent tensors of the context. */
size_t tg_ctx_bytes_persistent(const tg_ctx *ctx);

/** Most threads a context may use. */
#define TG_MAX_THREADS 256

/**
 * Threads the context's ops may use, the caller's included: matrix products (BLAS too: it
 * runs single-threaded inside our ranges, never beside them), convolutions and large
 * elementwise ops are cut into fixed pieces and spread over a pool owned by the context.
 * n = 0 means the cores this process may run on (the default for a new context); 1 runs
 * everything on the caller. The pool's threads start at the first op large enough to split
 * and are reused by every later step. Results do not depend on n: the pieces are fixed by the
 * shapes alone. Programs that run several contexts at once (one training per thread) want 1.
 * Returns TG_ERR_INVALID for n < 0 or n > TG_MAX_THREADS (or a NULL ctx).
 */
tg_status tg_ctx_set_threads(tg_ctx *ctx, int n);
/** The context's thread budget (0 for a NULL ctx). */
int tg_ctx_threads(const tg_ctx *ctx);
/**
 * Threads never make a step slower than one thread would: the pool times its parallel regions
 * (the whole region against its ranges' work: their CPU time in long regions) and, when over a
 * few milliseconds they took 0.9x or more of what one thread would have (another process holds
 * a core, or two of the pool's threads share one), it backs off: regions run whole on the
 * calling thread, the workers stop spinning and sleep, and after 20 ms, then 40, ... up to
 * 320 ms the threads are tried again if the kernel says our CPUs idled meanwhile (Linux:
 * /proc/stat; elsewhere they are simply tried). Results are the same either way. This runs that
 * judgment now, on ~20 us probe regions (a few ms; at most 60 ms), so tg_ctx_threads_describe
 * has a verdict before any work: `tapegrad --version` calls it. TG_OK at once with 1 thread;
 * TG_ERR_INVALID for NULL, TG_ERR_STATE inside a parallel region.
 */
tg_status tg_ctx_threads_calibrate(tg_ctx *ctx);
/**
 * On (the default), the pool backs off as tg_ctx_threads_calibrate says; off, it keeps its
 * threads and spins whatever the machine does (the behaviour before the back-off: for programs
 * that own the machine, and for measuring the back-off). TG_ERR_INVALID for NULL.
 */
tg_status tg_ctx_set_threads_backoff(tg_ctx *ctx, bool on);
/** Whether the pool has backed off to the calling thread (false for NULL or 1 thread). */
bool tg_ctx_threads_backed_off(const tg_ctx *ctx);
/**
 * What the pool decided, in words, snprintf-style (returns the length it wanted): e.g.
 * "2 (spinning: parallel regions took 0.55x their one-thread time)" or "2, backed off to 1: the
 * other cores are busy (parallel regions took 1.21x ...)".
 */
int tg_ctx_threads_describe(const tg_ctx *ctx, char *buf, size_t size);
/**
 * Flush denormals to zero (x86 FTZ and DAZ) on the calling thread and the context's pool.
 * Off by default: the diagnostics measure gradients down to 1e-38, and flushing would report
 * a gradient of 1e-39 as exactly zero. On, a deep sigmoid net whose gradients fall into the
 * denormal range trains several times faster (bench/bench_core.c measures it). The calling
 * thread keeps the mode after the call; other threads are not affected. TG_ERR_INVALID for NULL.
 */
tg_status tg_ctx_set_flush_denormals(tg_ctx *ctx, bool on);
/** Whether tg_ctx_set_flush_denormals is on (false for NULL). */
bool tg_ctx_flush_denormals(const tg_ctx *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/**
 * An f32 tensor: contiguous, row-major, 0 to 4 dims (0 dims = scalar, size 1).
 * Read freely; write only the contents of data (and grad). The remaining fields are the
 * library's: change them only through the functions below.
 */
typedef struct tg_tensor {
    float *data;                    /**< size floats */
    float *grad;                    /**< size floats when a gradient is held, else NULL */
    int64_t shape[TG_MAX_DIMS];     /**< shape[0..ndim-1]; unused dims are 1 */
    int64_t size;                   /**< number of elements (product of the shape) */
    int32_t ndim;                   /**< 0..TG_MAX_DIMS */
    bool requires_grad;             /**< a leaf that wants a gradient, or a recorded node */
    bool persistent;                /**< owned by the context (true) or by a tape's arena */
    bool grad_unset;                /**< internal: the gradient was zeroed (tg_zero_grad, or made
                                         by tg_set_requires_grad) and no backward pass has reached
                                         the tensor since: optimizers skip it */
    bool grad_fresh;                /**< internal: during one backward call, grad holds no values
                                         yet (backward handed the buffer unzeroed to an op that
                                         writes every element rather than adding) */
    int32_t node;                   /**< index of the producing tape entry, -1 for leaves */
    uint32_t generation;            /**< the tape generation this node belongs to */
    tg_tape *tape;                  /**< the tape owning this tensor, NULL if persistent */
    tg_ctx *ctx;                    /**< the context */
    const char *label;              /**< name given by tg_set_label or tg_tape_label_next ("" when
                                         none; never NULL), at most TG_LABEL_MAX - 1 characters.
                                         A pointer, not an array: a tape op's header stays two
                                         cache lines (the label's storage is apart) */
    uint64_t visit;                 /**< internal: last backward pass that reached this leaf */
    const void *producer;           /**< internal: the op that computed it (NULL for leaves) */
    float *grad_room;               /**< internal: a recorded output's gradient buffer, handed
                                         out by backward when it first reaches the tensor */
} tg_tensor;

/**
 * Shape helper: TG_SHAPE(64, 10) expands to the two arguments `2, (const int64_t[]){64, 10}`.
 * Use it wherever a function takes (int ndim, const int64_t *shape).
 */
#ifndef __cplusplus
#define TG_SHAPE(...) \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#else /* C++ has no compound literals; an initializer_list lives to the end of the call */
#define TG_SHAPE(...)                                              \
    (int)std::initializer_list<int64_t>{__VA_ARGS__}.size(),       \
        std::initializer_list<int64_t>{__VA_ARGS__}.begin()
#endif

/** A persistent tensor of zeros owned by the context (for parameters and long-lived data). */
tg_tensor *tg_zeros(tg_ctx *ctx, int ndim, const int64_t *shape);
/** A persistent tensor of ones. */
tg_tensor *tg_ones(tg_ctx *ctx, int ndim, const int64_t *shape);
/** A persistent tensor filled with value. */
tg_tensor *tg_full(tg_ctx *ctx, int ndim, const int64_t *shape, float value);
/** A persistent tensor holding a copy of data (size = product of shape floats); zeros when data
 *  is NULL. */
tg_tensor *tg_from_data(tg_ctx *ctx, int ndim, const int64_t *shape, const float *data);
/** A persistent scalar (0-dim tensor). */
tg_tensor *tg_scalar(tg_ctx *ctx, float value);

/**
 * A tensor of zeros in the tape's arena: valid until the next tg_tape_reset (for batches).
 * Using a tape tensor after the reset (a stale tensor) is refused with TG_ERR_STATE by every
 * function that takes a tensor (ops, backward, tg_set_requires_grad, tg_hook_grad, the fills,
 * tg_copy_in, tg_set_label, tg_init_tensor, tg_detach, tg_save_safetensors and
 * tg_load_safetensors, tg_clip_grad_norm, tg_accuracy (NaN), the optimizers and instruments
 * given parameters, tg_activation_stats_compute; getters return "(stale)" or do nothing):
 * the tensor's tape and step are compared with the tape's before anything else of it is read,
 * and the message never reads the stale tensor's label, shape or producer.
 * The guarantee: tensor headers live in slots of their own, apart from tensor data, that are
 * only ever reused as tensor headers of the same tape, and a step never reuses the slots of the
 * step before it. So a stale pointer never makes the library read float data or freed memory as
 * a tensor (while its tape lives), and a tensor kept across **one** reset is always detected. A
 * tensor kept across two or more resets may share its slot with a tensor of the current step:
 * it then designates that tensor (memory-safe, but not detected). Do not keep tape tensors
 * across a reset; after tg_tape_free, its tensors must not be used at all.
 */
tg_tensor *tg_tape_zeros(tg_tape *tape, int ndim, const int64_t *shape);
/** A copy of data in the tape's arena (zeros when data is NULL): valid until the next reset. */
tg_tensor *tg_tape_from_data(tg_tape *tape, int ndim, const int64_t *shape, const float *data);

/** Sets every element to value. */
void tg_fill(tg_tensor *t, float value);
/** Fills with U[low, high) from the library's own PRNG: the same seed gives the same numbers everywhere. */
void tg_fill_uniform(tg_tensor *t, float low, float high, uint64_t seed);
/** Fills with N(mean, std^2) from the library's own PRNG (Marsaglia polar method, in double). */
void tg_fill_normal(tg_tensor *t, float mean, float std, uint64_t seed);
/** Copies n floats into t; n must equal t->size. */
tg_status tg_copy_in(tg_tensor *t, const float *data, int64_t n);

/** Names the tensor (printf-style). The name appears in error messages, hooks and reports.
 *  NULL (the label unchanged) for a label longer than TG_LABEL_MAX - 1 bytes. */
tg_tensor *tg_set_label(tg_tensor *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/**
 * A printable name: the label if set, else "<op>#<node>" for a recorded node, else "leaf"
 * ("(null)" for NULL, "(stale)" for a stale tensor). The returned pointer stays valid until the
 * next call of tg_tensor_name on the same context.
 */
const char *tg_tensor_name(const tg_tensor *t);
/** Formats the shape as "[64,10]" into buf (at least 64 bytes recommended; "(null)" for a NULL
 *  t, "(stale)" for a stale one). Returns buf. */
char *tg_shape_str(const tg_tensor *t, char *buf, size_t buf_size);

/**
 * Marks a leaf tensor as wanting (or not) a gradient. Turning it on allocates t->grad, zeroed,
 * in the tensor's own storage. Recorded nodes always require a gradient: refused for them.
 */
tg_status tg_set_requires_grad(tg_tensor *t, bool requires_grad);
/**
 * Sets t->grad to zero (no-op when t has no gradient) and marks it as not set, like PyTorch 2's
 * zero_grad(set_to_none=True): until a backward pass reaches t, optimizers leave t alone (see
 * tg_optimizer_step). A gradient made by tg_set_requires_grad starts not set as well.
 */
void tg_zero_grad(tg_tensor *t);
/**
 * Whether t holds a gradient the optimizers step: a backward pass reached it since its last
 * tg_zero_grad, or something non-zero was written into its grad by hand since (false for NULL,
 * a tensor without a gradient buffer, or a stale one). For optimizers of your own, and for
 * data-parallel code that must agree on it over the ranks (tg_dist_wait does).
 */
bool tg_grad_is_set(const tg_tensor *t);
/** The name of the op that produced t ("leaf" for leaves, "(null)" for NULL, "(stale)"). */
const char *tg_tensor_op_name(const tg_tensor *t);

/* ------------------------------------------------------------------------------------------ */
/* Tape, grad mode, backward                                                                  */
/* ------------------------------------------------------------------------------------------ */

/** A new, empty tape on ctx. NULL if out of memory. */
tg_tape *tg_tape_new(tg_ctx *ctx);
/** Frees the tape and everything in its arena. */
void tg_tape_free(tg_tape *tape);
/**
 * Forgets every entry and rewinds the arena (nothing is freed, so the next step of the same
 * shape allocates nothing). Tensors created on the tape become invalid. Increments the step.
 */
void tg_tape_reset(tg_tape *tape);
/**
 * Runs the step recorded on the tape again, without recording it again: every op recorded
 * before the step's first tg_backward (or every op so far, before any) computes its output
 * anew, in order, from the current contents of its inputs; tg_backward may then run again.
 * For training loops of fixed shapes, where each step records the same ops: record the first
 * step, then per step write the new batch into the same input tensors (tg_batcher_next_into,
 * tg_copy_in), replay, backward, step the optimizer. Recording is most of a small op's cost:
 * the 1,000-op scalar chain of bench_models costs 23 ns per op replayed, 36 ns recorded.
 *
 * The same tensors are reused: the outputs of the step hold the new numbers; their gradients
 * start over. Tensors made on the tape without an op (tg_tape_zeros, ...) keep what they hold,
 * and a leaf's gradient accumulates over backward passes as a parameter's does (tg_zero_grad).
 * Hooks fire as in a recorded step, anomaly mode checks every output, tg_tape_step adds one.
 * Nothing is allocated: ops that save for backward get their buffers back.
 *
 * Refused with TG_ERR_STATE, nothing computed: nothing recorded; op calls that did not go on
 * the tape (no input required a gradient, or a no-grad scope: they would keep their old
 * numbers); an op whose randomness is fixed by an attribute (tg_dropout's seed). Ops recorded
 * after the first backward stay on the tape, are not replayed, and keep their memory until
 * tg_tape_reset. When an op fails part-way, the error names it and tg_backward refuses the
 * tape until it is replayed or reset. TG_ERR_INVALID for NULL.
 */
tg_status tg_tape_replay(tg_tape *tape);
/** The context of a tape. */
tg_ctx *tg_tape_ctx(const tg_tape *tape);
/** Number of entries recorded since the last reset. */
int64_t tg_tape_entries(const tg_tape *tape);
/** Step counter: the number of tg_tape_reset and tg_tape_replay calls so far (or since
 *  tg_tape_set_step). */
int64_t tg_tape_step(const tg_tape *tape);
/** Numbers the current step as a training loop does (hooks, anomaly reports and recorders
 *  attached by pattern then show the loop's step); each tg_tape_reset still adds one. */
void tg_tape_set_step(tg_tape *tape, int64_t step);
/** Arena bytes in use now (entries array excluded). */
size_t tg_tape_bytes_in_use(const tg_tape *tape);
/** Largest value tg_tape_bytes_in_use has had since the tape was made; with recomputed segments
 *  (tg_recompute), plus the largest one segment's inside took on the scratch tape. */
size_t tg_tape_bytes_peak(const tg_tape *tape);
/** Arena bytes obtained from the allocator (kept across resets; the scratch tape's included). */
size_t tg_tape_bytes_reserved(const tg_tape *tape);

/**
 * Names the output of the next op recorded on this tape (printf-style). Use it where forward
 * hooks on a name pattern must see the node: a label given afterwards with tg_set_label is
 * seen by backward hooks only, since the forward hooks have already run. A label longer than
 * TG_LABEL_MAX - 1 bytes is refused (TG_ERR_INVALID), and the next op then fails (NULL).
 */
void tg_tape_label_next(tg_tape *tape, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/** Enters a no-grad scope (nests): ops compute values but record nothing. */
void tg_no_grad_begin(tg_tape *tape);
/** Leaves the innermost no-grad scope. */
void tg_no_grad_end(tg_tape *tape);
/** True when ops called on this tape are being recorded. */
bool tg_grad_enabled(const tg_tape *tape);

/**
 * Reverse pass from a scalar (size 1) node: d loss/d loss = 1. Gradients accumulate (+=) into
 * the grad of every node and leaf that requires one; intermediate gradients stay readable until
 * tg_tape_reset. A tape can be walked once per reset: a second call is TG_ERR_STATE.
 */
tg_status tg_backward(tg_tape *tape, tg_tensor *loss);
/** Reverse pass from any node with an explicit seed gradient of output->size floats. */
tg_status tg_backward_with(tg_tape *tape, tg_tensor *output, const float *seed);

/* ------------------------------------------------------------------------------------------ */
/* Higher-order derivatives (autograd/higher.c)                                               */
/* ------------------------------------------------------------------------------------------ */
/*
 * Forward mode: every built-in op has a JVP rule beside its forward and VJP, which computes the
 * output's tangent from the inputs' tangents by calling ops on the tape. Tangents are therefore
 * ordinary tape tensors: they can be differentiated in reverse, which is how tg_hvp works
 * (reverse over forward) and how tg_grad's gradients are differentiated again (the VJP of a
 * recorded gradient is a JVP, differentiated in reverse). A product that reaches an op without
 * a JVP rule (a user's op registered without one) fails with TG_ERR_NOGRAD naming the op.
 *
 * What each costs, against one gradient (forward + backward) of the same step: tg_jvp adds
 * about one forward (two products per matmul); tg_hvp is a forward, a JVP and a backward
 * through both (measured in the README); tg_grad records the backward as nodes and computes
 * each node's VJP once per input.
 */

/**
 * J v: the tangent of `output` when inputs[i] moves along tangents[i] (same shape; NULL: does
 * not move), computed from the recorded step and returned as a tape tensor (*output_tangent;
 * zeros when the output does not depend on the inputs). Inputs are leaves or nodes of the
 * current step, or persistent tensors. The tangent's ops go on the tape when anything they read
 * requires a gradient, so a backward pass from a function of the tangent differentiates it.
 */
tg_status tg_jvp(tg_tape *tape, tg_tensor *output, int n, tg_tensor *const *inputs,
                 tg_tensor *const *tangents, tg_tensor **output_tangent);
/**
 * J^T u: the gradients of `output` (seeded with u, output->size floats) with respect to
 * inputs[i], written to grads[i] (inputs[i]->size floats each; zeros for an input the output
 * does not depend on). Walks the step backward like tg_backward_with (once per step); the
 * grad buffers of the inputs and of every other leaf are left as they were. grads may share
 * floats with u. Allowed inside a no-grad scope (it records nothing).
 */
tg_status tg_vjp(tg_tape *tape, tg_tensor *output, const float *u, int n,
                 tg_tensor *const *inputs, float *const *grads);
/**
 * H v: the product of the Hessian of the scalar `loss` (with respect to params, all of them
 * together) with the direction v (v[i]: params[i]->size floats), written to hv[i]. Reverse over
 * forward: the tangent of the loss along v is recorded, then walked backward. Uses the step's
 * backward pass; no persistent tensor's grad buffer changes, and backward hooks do not run
 * (the values are curvature, not gradients: a clipping hook must not clip them, nor a
 * recorder count them as a step's gradients). v is read in place, not copied; hv may be v
 * (power iteration). The product is transient: its nodes and buffers are taken back before
 * the call returns, so a tg_tape_replay of the step followed by tg_hvp again gives the next
 * product with no growth of the tape. Allocates nothing once the
 * tape's arena has grown to the step (an HVP every step stays allocation-free).
 */
tg_status tg_hvp(tg_tape *tape, tg_tensor *loss, int n, tg_tensor *const *params,
                 const float *const *v, float *const *hv);
/**
 * Gradients that can be differentiated again (PyTorch's create_graph=True): grads[i] is the
 * gradient of the scalar `output` with respect to inputs[i], as a tape tensor whose computation
 * is recorded, so a later tg_backward through a function of it (a gradient penalty, a
 * meta-learning step) gives second derivatives. Does not use the step's backward pass and
 * leaves every grad buffer as it was. Second order is where it stops: a recorded gradient is
 * differentiated by tg_backward or tg_vjp, not by tg_jvp, tg_hvp or tg_grad (TG_ERR_NOGRAD).
 * Each node's VJP is computed by running its op again on a scratch tape, which hooks, anomaly
 * mode and the running statistics of batch norm do not see. An input listed twice gets its
 * gradient twice; tg_jvp moves an input listed twice along the sum of its tangents.
 */
tg_status tg_grad(tg_tape *tape, tg_tensor *output, int n, tg_tensor *const *inputs,
                  tg_tensor **grads);

/* ---- gradient checkpointing: memory for time ---------------------------------------------- */

/**
 * A segment's function for tg_recompute: computes outputs[0..n_outputs) from inputs[0..n_inputs)
 * by recording ops on `tape` (not the caller's tape: a scratch tape of its own), reading
 * parameters as it likes. It runs once in the forward pass and once more when backward reaches
 * the segment, so it must compute the same numbers from the same inputs each time (its only
 * randomness the seeds of ops such as tg_dropout, which the second run gets back); a function
 * that advances a counter of its own per call can ask tg_recomputing(tape). TG_OK, or a status
 * (an op that failed has said why).
 */
typedef tg_status (*tg_recompute_fn)(tg_tape *tape, tg_tensor *const *inputs, int n_inputs,
                                     tg_tensor **outputs, int n_outputs, void *user);
/**
 * Gradient checkpointing (PyTorch's torch.utils.checkpoint): runs fn as a segment of the step
 * whose inside is not kept. The step's tape holds only the segment's inputs and outputs (one
 * node with every output's floats, and a view per output in outputs[k]); what fn computed
 * inside is taken back at once, and recorded again, walked and taken back when tg_backward
 * reaches the segment. Memory then goes with the segments' boundaries plus one segment's
 * inside (tg_tape_bytes_peak), for about one more forward pass of time. Gradients are those of
 * the step recorded without the segment, to the bit: every buffer is summed in the same order.
 *
 * inputs are tensors of this step (or persistent); the parameters fn reads need not be listed
 * (they are found on the first run). What the second run must repeat, it does: dropout's masks
 * (each op seeded by an attribute gets its first run's seed), batch norm's running statistics
 * (updated by the first run only); its outputs are compared with the first run's to the bit,
 * and a difference is an error naming the output and element. Forward hooks and anomaly mode
 * watch the first run; backward hooks fire on the inside's nodes as in a plain step, with their
 * complete gradients (a hook on an output in outputs[] sees the gradient from outside the
 * segment). tg_tape_replay runs fn again (fresh seeds). Second-order products (tg_jvp, tg_hvp,
 * tg_grad) through a segment are refused (TG_ERR_NOGRAD); tg_backward and tg_vjp go through.
 * Allocation-free once the tape and its scratch tape have grown to the step. In a no-grad
 * scope fn simply runs on tape.
 *
 * TG_ERR_STATE when called inside a segment's function (segments do not nest) or from a hook
 * during a pass; TG_ERR_INVALID for a NULL fn, n_outputs < 1, a NULL output, an output not
 * computed on fn's tape or returned twice. On error every outputs[k] is NULL.
 */
tg_status tg_recompute(tg_tape *tape, tg_recompute_fn fn, void *user, int n_inputs,
                       tg_tensor *const *inputs, int n_outputs, tg_tensor **outputs);
/** True on the tape a segment's function is given while it runs again, in backward. */
bool tg_recomputing(const tg_tape *tape);

/* ------------------------------------------------------------------------------------------ */
/* Built-in ops                                                                               */
/* ------------------------------------------------------------------------------------------ */
/*
 * Each returns a new tensor in the tape's arena, or NULL (see tg_errmsg). Binary elementwise ops
 * broadcast NumPy-style (align trailing dims; a dim of 1 stretches), so a [N,M] + [M] bias works
 * and its gradient sums over the batch. NaN propagates through every op as in PyTorch (relu(NaN)
 * is NaN), so a NaN weight always shows in the loss. An input of another context or of an
 * earlier step of the tape is refused (TG_ERR_INVALID, TG_ERR_STATE).
 */

tg_tensor *tg_add(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_sub(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_mul(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_div(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_neg(tg_tape *tape, tg_tensor *x);
/** x * factor */
tg_tensor *tg_scale(tg_tape *tape, tg_tensor *x, float factor);
/** x + value */
tg_tensor *tg_add_scalar(tg_tape *tape, tg_tensor *x, float value);
/** x ^ exponent, elementwise (x > 0 unless exponent is a whole number). */
tg_tensor *tg_pow(tg_tape *tape, tg_tensor *x, float exponent);
tg_tensor *tg_square(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_sqrt(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_exp(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_log(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_abs(tg_tape *tape, tg_tensor *x);

/**
 * [..., M, K] x [..., K, N] -> [..., M, N]: matrix products over up to 2 leading batch dims (4
 * dims in all) that broadcast by numpy's rules: [B,H,T,D] x [B,H,D,T], [B,1,M,K] x [H,K,N] ->
 * [B,H,M,N], [M,K] x [B,K,N]. A 2-D B serves every row of A ([B,M,K] x [K,N]: one GEMM). The
 * gradient of a broadcast operand is summed over the batch dims it was stretched along, in a
 * fixed order (the same numbers on any thread count).
 */
tg_tensor *tg_matmul(tg_tape *tape, tg_tensor *a, tg_tensor *b);
/** x W^T + b, fused: x [..., in], w [out, in], b [out] -> [..., out]. */
tg_tensor *tg_linear(tg_tape *tape, tg_tensor *x, tg_tensor *w, tg_tensor *b);
/** Swaps two axes (negative axes count from the end). */
tg_tensor *tg_transpose(tg_tape *tape, tg_tensor *x, int dim0, int dim1);
/**
 * Reorders dims: output dim i is input dim order[i]; order (ndim entries, ndim = x's) is a
 * permutation of 0..ndim-1, else refused naming the order. Op "permute", attribute
 * "order:shape". Use as tg_permute(tape, x, TG_SHAPE(0, 2, 1, 3)) ([B,T,H,D] -> [B,H,T,D]);
 * when the last dim stays last, whole rows are copied at once.
 */
tg_tensor *tg_permute(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *order);
/** Same data, new shape; one dim may be -1 (inferred). */
tg_tensor *tg_reshape(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape);
/** Joins tensors along an axis; all other dims must match. */
tg_tensor *tg_concat(tg_tape *tape, tg_tensor *const *xs, int n, int axis);
/** Elements start..end-1 (end exclusive) along axis. */
tg_tensor *tg_slice(tg_tape *tape, tg_tensor *x, int axis, int64_t start, int64_t end);

/** Sum of all elements -> scalar. */
tg_tensor *tg_sum(tg_tape *tape, tg_tensor *x);
/** Mean of all elements -> scalar. */
tg_tensor *tg_mean(tg_tape *tape, tg_tensor *x);
/** Sum along one axis (kept as size 1 when keepdim). */
tg_tensor *tg_sum_axis(tg_tape *tape, tg_tensor *x, int axis, bool keepdim);
/** Mean along one axis. */
tg_tensor *tg_mean_axis(tg_tape *tape, tg_tensor *x, int axis, bool keepdim);
/**
 * Maximum along one axis (kept as size 1 when keepdim). The gradient goes to the FIRST maximal
 * element of each lane only (PyTorch's max(dim) picks one index too). A NaN counts as maximal:
 * a lane holding one gives NaN. Op "max_axis", attributes "axis:i64,keepdim:bool".
 */
tg_tensor *tg_max_axis(tg_tape *tape, tg_tensor *x, int axis, bool keepdim);
/**
 * The index (as a float) of the first maximal element along one axis. A lane holding a NaN
 * gives NaN (PyTorch gives the NaN's index; here, as for every op, a NaN in gives a NaN out).
 * Not differentiable: the gradient is zero (x may require a gradient, as logits do). Op
 * "argmax_axis", attributes "axis:i64,keepdim:bool".
 */
tg_tensor *tg_argmax_axis(tg_tape *tape, tg_tensor *x, int axis, bool keepdim);

tg_tensor *tg_sigmoid(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_tanh(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_relu(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_leaky_relu(tg_tape *tape, tg_tensor *x, float alpha);
tg_tensor *tg_elu(tg_tape *tape, tg_tensor *x, float alpha);
/** log(1 + e^x), computed without overflow. */
tg_tensor *tg_softplus(tg_tape *tape, tg_tensor *x);
/** x * Phi(x), the exact (erf) form. */
tg_tensor *tg_gelu(tg_tape *tape, tg_tensor *x);
/** Softmax over the last axis (max-subtracted: stable for any finite input). */
tg_tensor *tg_softmax(tg_tape *tape, tg_tensor *x);
/** Log-softmax over the last axis (stable). */
tg_tensor *tg_log_softmax(tg_tape *tape, tg_tensor *x);
/**
 * Softmax over `axis` (negative counts from the end). Entries of -inf (masked) get 0 and the
 * rest stay finite; a lane that is all -inf gives NaN, as in PyTorch. Op "softmax_axis",
 * attribute "axis:i64".
 */
tg_tensor *tg_softmax_axis(tg_tape *tape, tg_tensor *x, int axis);
/** Log-softmax over `axis` (-inf entries give -inf). Op "log_softmax_axis", "axis:i64". */
tg_tensor *tg_log_softmax_axis(tg_tape *tape, tg_tensor *x, int axis);
/** min(max(x, lo), hi); gradient 1 where lo <= x <= hi (bounds included, as in PyTorch), else
 * 0; a NaN stays NaN. Op "clamp", attributes "lo:f32,hi:f32"; lo > hi is refused. */
tg_tensor *tg_clamp(tg_tape *tape, tg_tensor *x, float lo, float hi);
/** Elementwise sine. */
tg_tensor *tg_sin(tg_tape *tape, tg_tensor *x);
/** Elementwise cosine. */
tg_tensor *tg_cos(tg_tape *tape, tg_tensor *x);
/**
 * Rows of table [V, E] picked by ids (any shape up to 3 dims, whole numbers in [0, V) held as
 * floats) -> [ids..., E]. An id that is not a whole number in [0, V) (fractional, negative,
 * too large, NaN, inf) is refused at forward time with the element index, the id and V. The
 * table's gradient is a scatter-add (repeated ids sum, the same on any thread count); ids get
 * none. Op "embedding", inputs (ids, table).
 */
tg_tensor *tg_embedding(tg_tape *tape, tg_tensor *ids, tg_tensor *table);
/**
 * x where mask == 0, value where mask != 0; the mask broadcasts to x's shape (numpy rules, as
 * tg_add). The gradient flows to x where mask == 0 only; the mask gets none. value may be
 * -INFINITY: followed by tg_softmax_axis that is the causal mask. Op "masked_fill", inputs
 * (x, mask), attribute "value:f32".
 */
tg_tensor *tg_masked_fill(tg_tape *tape, tg_tensor *x, tg_tensor *mask, float value);

/** Mean squared error over all elements -> scalar. */
tg_tensor *tg_mse(tg_tape *tape, tg_tensor *pred, tg_tensor *target);
/**
 * Mean cross entropy of logits [N,C] against labels [N] holding class indices 0..C-1 (as
 * floats), fused with log-softmax: finite for any finite logits -> scalar. Logits [..., C] with
 * labels [...] (the classes last: a language model's [B,T,V] and [B,T]) are taken as rows too.
 */
tg_tensor *tg_cross_entropy(tg_tape *tape, tg_tensor *logits, tg_tensor *labels);
/** Mean binary cross entropy of logits against targets in [0,1] (stable form) -> scalar. */
tg_tensor *tg_bce_with_logits(tg_tape *tape, tg_tensor *logits, tg_tensor *targets);

/** Inverted dropout: zeroes each element with probability p, scales the rest by 1/(1-p). The
 *  mask depends only on seed, so a step can be replayed exactly. */
tg_tensor *tg_dropout(tg_tape *tape, tg_tensor *x, float p, uint64_t seed);
/**
 * Batch normalisation of x [N,C] over the batch, per feature; of x [N,C,L] or [N,C,H,W] over
 * N and the spatial dims, per channel (PyTorch's BatchNorm1d/2d). In training (train = true) uses
 * the batch statistics and updates running_mean/running_var in place with momentum
 * (running = (1-momentum)*running + momentum*batch, unbiased variance); in evaluation uses the
 * running statistics. gamma, beta, running_mean, running_var are [C].
 */
tg_tensor *tg_batch_norm(tg_tape *tape, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                         tg_tensor *running_mean, tg_tensor *running_var, float momentum,
                         float eps, bool train);
/**
 * relu(tg_batch_norm(x, ...) + residual): a ResNet block's batch norm, residual add (residual
 * NULL: none; else x's shape) and ReLU as one op — the same numbers as the three ops one after
 * the other, in about half the passes over memory forward and backward, with no intermediate
 * tensors. The pre-activation is not kept: record the three ops to hook it.
 */
tg_tensor *tg_batch_norm_relu(tg_tape *tape, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                              tg_tensor *running_mean, tg_tensor *running_var,
                              tg_tensor *residual, float momentum, float eps, bool train);
/** Layer normalisation over the last axis; gamma and beta have the size of that axis. */
tg_tensor *tg_layer_norm(tg_tape *tape, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                         float eps);

/**
 * Scaled dot-product attention, fused: softmax(scale q k^T) v over q [..., Tq, D],
 * k [..., Tk, D], v [..., Tk, Dv] (3 or 4 dims, the same leading dims: [B, H, T, D]) ->
 * [..., Tq, Dv]. causal: query i sees keys j <= i only (PyTorch's is_causal). scale 0 means
 * 1/sqrt(D). Keeps only the probabilities for backward; the heads run on the context's threads
 * with the same results on any thread count. Registered as "attention" (causal:bool,scale:f32).
 */
tg_tensor *tg_attention(tg_tape *tape, tg_tensor *q, tg_tensor *k, tg_tensor *v, bool causal,
                        float scale);
/**
 * The same for the packed projections of a multi-head layer: qkv [B, T, 3E] holds q, k and v
 * side by side (as x in_proj_weight^T does), head h in the columns [h D, (h+1) D) of each third
 * (D = E / heads); the output [B, T, E] has the heads side by side the same way. No copies split
 * or merge the heads. Registered as "attention_qkv" (heads:i64,causal:bool,scale:f32).
 */
tg_tensor *tg_attention_qkv(tg_tape *tape, tg_tensor *qkv, int64_t heads, bool causal,
                            float scale);

/* ---- convolution and pooling (NCHW, f32; PyTorch's semantics and output sizes) ----------- */

/** Geometry of a convolution. Zero fields take the defaults: stride 1, dilation 1, groups 1
 *  (padding 0 is the default and a zero). */
typedef struct tg_conv2d_opts {
    int stride_h, stride_w;
    int pad_h, pad_w;
    int dilation_h, dilation_w;
    int groups;
} tg_conv2d_opts;

/**
 * 2-D convolution (cross-correlation, as PyTorch's conv2d): x [N,C,H,W], weight
 * [O, C/groups, kh, kw], bias [O] or NULL -> [N, O, OH, OW] with
 * OH = (H + 2 pad_h - dilation_h (kh - 1) - 1) / stride_h + 1 (likewise OW). opts NULL: defaults.
 * Registered as "conv2d" (inputs x, weight[, bias]; attributes stride_h, stride_w, pad_h, pad_w,
 * dilation_h, dilation_w, groups).
 */
tg_tensor *tg_conv2d(tg_tape *tape, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                     const tg_conv2d_opts *opts);
/** 1-D convolution: x [N,C,L], weight [O, C/groups, k], bias [O] or NULL -> [N, O, OL]
 *  (OL by the rule above). Zero stride, dilation or groups take the default 1. Registered as
 *  "conv1d" (inputs x, weight[, bias]; attributes stride, pad, dilation, groups). */
tg_tensor *tg_conv1d(tg_tape *tape, tg_tensor *x, tg_tensor *weight, tg_tensor *bias, int stride,
                     int pad, int dilation, int groups);
/**
 * Max pooling over kernel_h x kernel_w windows of x [N,C,H,W] (stride 0 = the kernel size;
 * padding counts as -infinity and may be at most half the kernel, as in PyTorch, so no window
 * lies in the padding alone). Output size (H + 2 pad_h - kernel_h) / stride_h + 1 (floor). The
 * gradient goes to the first maximum of each window; a NaN in a window is its maximum (it
 * propagates). Registered as "max_pool2d" (attributes kernel_h, kernel_w, stride_h, stride_w,
 * pad_h, pad_w; stride 0 is refused there).
 */
tg_tensor *tg_max_pool2d(tg_tape *tape, tg_tensor *x, int kernel_h, int kernel_w, int stride_h,
                         int stride_w, int pad_h, int pad_w);
/** Average pooling, arguments as max pooling; padding counts as zeros in the average (PyTorch's
 *  count_include_pad): every window divides by kernel_h kernel_w. Registered as "avg_pool2d". */
tg_tensor *tg_avg_pool2d(tg_tape *tape, tg_tensor *x, int kernel_h, int kernel_w, int stride_h,
                         int stride_w, int pad_h, int pad_w);
/** Mean over H and W: x [N,C,H,W] -> [N,C]. */
tg_tensor *tg_global_avg_pool2d(tg_tape *tape, tg_tensor *x);
/** x [N, ...] -> [N, product of the rest]: the reshape op, so it is recorded as "reshape". */
tg_tensor *tg_flatten(tg_tape *tape, tg_tensor *x);

/* ------------------------------------------------------------------------------------------ */
/* The op registry                                                                            */
/* ------------------------------------------------------------------------------------------ */
/*
 * Every op — built-in or a user's — is one registry entry: name, arity, typed attribute
 * signature, infer_shape, forward, backward. Ids are small integers valid within one context;
 * files and messages name ops by string.
 *
 * Attribute signature grammar (whitespace ignored):
 *   signature := "" | attr ("," attr)*
 *   attr      := name ":" type
 *   name      := [a-z_][a-z0-9_]*          (unique within the signature)
 *   type      := "f32" | "f64" | "i32" | "i64" | "bool" | "shape"
 * e.g. "alpha:f32", "axis:i64,keepdim:bool". At most TG_MAX_ATTRS attributes.
 */

typedef enum tg_attr_type {
    TG_ATTR_F32,
    TG_ATTR_F64,
    TG_ATTR_I32,
    TG_ATTR_I64,
    TG_ATTR_BOOL,
    TG_ATTR_SHAPE
} tg_attr_type;

/** A shape value: ndim dims (for reshape-like attributes). */
typedef struct tg_shape {
    int32_t ndim;
    int64_t dims[TG_MAX_DIMS];
} tg_shape;

/** One attribute value; which member is live is given by the op's signature. */
typedef union tg_attr_value {
    float f32;
    double f64;
    int32_t i32;
    int64_t i64;
    bool b;
    tg_shape shape;
} tg_attr_value;

/** Arity of an op taking one or more inputs (e.g. concat). */
#define TG_VARIADIC (-1)

/**
 * What an op function sees. forward reads inputs and attrs and writes output->data (the output
 * tensor is already allocated with the shape infer_shape gave); it may keep values for its
 * backward in `saved` (see tg_op_save_for_backward). backward reads output->grad and ADDS (+=) into
 * inputs[i]->grad for every input whose grad is non-NULL. The call itself lives in the tape's
 * arena: infer_shape, forward and backward of one op call get the same tg_op_call, at an
 * address that stays valid until the tape's next reset.
 */
typedef struct tg_op_call {
    tg_tape *tape;
    int op_id;
    const char *op_name;
    tg_tensor *const *inputs;
    int n_inputs;
    tg_tensor *output;              /**< NULL inside infer_shape */
    const tg_attr_value *attrs;     /**< in signature order */
    void *saved;                    /**< what forward stored with tg_op_save_for_backward, else NULL */
    void *op_data;                  /**< the op_data given at registration */
} tg_op_call;

/** Computes the output shape, or reports an error with tg_op_fail. */
typedef tg_status (*tg_infer_shape_fn)(const tg_op_call *call, tg_shape *out);
/** Computes call->output->data from the inputs. */
typedef tg_status (*tg_forward_fn)(tg_op_call *call);
/** Accumulates input gradients from call->output->grad. */
typedef tg_status (*tg_backward_fn)(const tg_op_call *call);
/**
 * Forward-mode rule: *tangent_out = the tangent of call->output when input i moves along
 * tangents[i] (NULL: that input does not move; at least one is not NULL). Computed by calling
 * ops on call->tape (tg_mul, tg_matmul, ... on the call's inputs, output and the tangents), so
 * that the tangent can itself be differentiated in reverse. *tangent_out NULL means zero.
 */
typedef tg_status (*tg_jvp_fn)(const tg_op_call *call, tg_tensor *const *tangents,
                               tg_tensor **tangent_out);
/**
 * Builds example number `index` (op_data is the op's registration op_data) of valid inputs (on the tape) and attributes for gradient
 * checking: inputs away from kinks and domain edges, requires_grad set on the inputs to check.
 * Returns TG_ERR_NOT_FOUND when index is past the last example.
 */
typedef tg_status (*tg_example_fn)(tg_tape *tape, void *op_data, int index, tg_tensor **inputs,
                                   int *n_inputs, tg_attr_value *attrs);

/** Maximum number of inputs an example may build. */
#define TG_EXAMPLE_MAX_INPUTS 8

/** An op definition, copied by tg_op_register (name and signature strings are copied too). */
typedef struct tg_op_def {
    const char *name;
    int arity;                      /**< exact number of inputs, or TG_VARIADIC */
    const char *attr_signature;     /**< see the grammar above; NULL or "" for none */
    tg_infer_shape_fn infer_shape;
    tg_forward_fn forward;
    tg_backward_fn backward;        /**< NULL: not differentiable (refused at record time when
                                         an input requires a gradient) */
    tg_example_fn example;          /**< optional, used by gradient checking */
    void *op_data;                  /**< passed to the functions as call->op_data */
    tg_jvp_fn jvp;                  /**< forward-mode rule; NULL: higher-order products (tg_jvp,
                                         tg_hvp, tg_grad) that reach the op are refused */
} tg_op_def;

/** Registers an op; returns its id (>= 0) or -1 (duplicate name, bad signature, ...). */
int tg_op_register(tg_ctx *ctx, const tg_op_def *def);
/** The id of the op with that name, or -1. */
int tg_op_find(const tg_ctx *ctx, const char *name);
/** Number of registered ops; ids are 0..count-1. */
int tg_op_count(const tg_ctx *ctx);

/** What the registry says about one op. Strings belong to the registry. */
typedef struct tg_op_info {
    const char *name;
    int arity;
    const char *attr_signature;     /**< normalised: "axis:i64,keepdim:bool" */
    int n_attrs;
    const char *attr_names[TG_MAX_ATTRS];
    tg_attr_type attr_types[TG_MAX_ATTRS];
    bool has_backward;
    bool has_example;
    bool native;                    /**< registered with tg_op_register_native */
    bool has_jvp;                   /**< a forward-mode rule: higher-order products pass it */
} tg_op_info;

/** Fills info for op id. */
tg_status tg_op_get_info(const tg_ctx *ctx, int op_id, tg_op_info *info);

/** Calls op id on the inputs with attribute values in signature order. */
tg_tensor *tg_call_id(tg_tape *tape, int op_id, tg_tensor *const *inputs, int n_inputs,
                    const tg_attr_value *attrs, int n_attrs);

/**
 * For op implementations: keeps `bytes` of scratch memory (in the tape's arena) for backward;
 * the same pointer arrives as call->saved. Returns NULL when out of memory.
 */
void *tg_op_save_for_backward(tg_op_call *call, size_t bytes);
/**
 * For op implementations: records an error that names the op, every input's label and shape,
 * then the printf-style reason; returns status so a function can `return tg_op_fail(...)`
 * (status alone, nothing recorded, for a NULL call or a call without a tape).
 */
tg_status tg_op_fail(const tg_op_call *call, tg_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ------------------------------------------------------------------------------------------ */
/* Hooks                                                                                      */
/* ------------------------------------------------------------------------------------------ */
/*
 * A hook is a function called with a node's values: its gradient in the backward pass (when
 * that gradient is complete: after every consumer's VJP, before the node's own producer's VJP;
 * for leaves such as parameters, once the walk is over), or its activation in the forward pass
 * (right after the op computed it). A hook may read the values, change them in place (clipping:
 * upstream nodes then receive the changed gradient), or stop the pass by returning an error
 * status (use tg_hook_fail for a message that names the node).
 *
 * Where a hook attaches:
 *   - tg_hook_grad: one tensor. On a tape node it lasts until the tape's next reset; on a
 *     persistent tensor (a parameter) it lasts until removed. Backward pass only: a node's
 *     activation exists before a hook can be put on it.
 *   - tg_hook_pattern: every node and parameter whose label matches a glob pattern ('*' any run
 *     of characters, '?' one character, everything else literal: "mlp.*.weight", "lstm.h[*]").
 *     Lasts until removed.
 *   - tg_hook_global: every node and every leaf that receives a gradient. Lasts until removed.
 * For one node, matching hooks run in registration order. A hook registered while hooks run
 * takes effect from the next node. With no hook registered, the walk pays one test per entry.
 */

typedef enum tg_pass {
    TG_PASS_FORWARD,
    TG_PASS_BACKWARD
} tg_pass;

/** What a hook is told. */
typedef struct tg_hook_event {
    tg_pass pass;
    tg_tensor *node;         /**< the node (label, shape, data, grad) */
    const char *name;        /**< the label, else "<op>#<entry>" (recorded), "<op>" (not), "leaf" */
    const char *op_name;     /**< the op that produced the node, or "leaf" */
    int64_t step;            /**< the tape's step (tg_tape_step) */
    float *values;           /**< the gradient (backward) or activation (forward): writable */
    int64_t size;            /**< number of values */
} tg_hook_event;

/** Returns TG_OK to go on; anything else stops the pass with that status. */
typedef tg_status (*tg_hook_fn)(tg_ctx *ctx, const tg_hook_event *event, void *user);

/** Hook on one tensor (backward pass). Returns a handle > 0, or -1 (see tg_errmsg). */
int64_t tg_hook_grad(tg_tensor *node, tg_hook_fn fn, void *user);
/** Hook on every node and parameter whose label matches pattern, in the given pass. */
int64_t tg_hook_pattern(tg_ctx *ctx, const char *pattern, tg_pass pass, tg_hook_fn fn, void *user);
/** Backward hook on every parameter (persistent tensor) whose label matches pattern, never on
 *  a tape node: "lstm.*" then means the LSTM's weights, not its h[t] and c[t]. */
int64_t tg_hook_params(tg_ctx *ctx, const char *pattern, tg_hook_fn fn, void *user);
/** Hook on every node (and, backward, every leaf that gets a gradient) in the given pass. */
int64_t tg_hook_global(tg_ctx *ctx, tg_pass pass, tg_hook_fn fn, void *user);
/** Removes a hook by handle (also while hooks run). TG_ERR_NOT_FOUND for an unknown handle. */
tg_status tg_hook_remove(tg_ctx *ctx, int64_t handle);
/** Number of hooks registered and not removed. */
int tg_hook_count(const tg_ctx *ctx);
/** True when a label matches a hook pattern (the same glob rules). */
bool tg_pattern_match(const char *pattern, const char *label);

/**
 * For hooks: records an error naming the node, its shape, the op that produced it, the pass and
 * the step, followed by the printf-style reason; returns status (so `return tg_hook_fail(...)`).
 * A NULL event gives a message without the node; a NULL ctx records nothing.
 */
tg_status tg_hook_fail(tg_ctx *ctx, const tg_hook_event *event, tg_status status,
                       const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/**
 * Anomaly mode finds the first NaN or Inf in execution order: each op's output as the forward
 * computes it, then in the backward pass each node's gradient and every gradient a VJP writes.
 *
 *   TG_ANOMALY_FULL (tg_set_anomaly_mode(ctx, true)): the first non-finite value stops the step
 *     with TG_ERR_NUMERIC. The message names the op, the node, the shapes, the pass, the step and
 *     the element, says whether the op `created from finite inputs` the value or received it
 *     (`propagated from input 'x'`, or from the incoming gradient), and gives the counts of NaN,
 *     +Inf, -Inf, zero and subnormal values of the tensors involved. tg_anomaly_last returns the
 *     same as fields; tg_set_anomaly_dump writes the culprit op's inputs to a file.
 *   TG_ANOMALY_COUNTS: never stops; counts the non-finite values of every node of the step
 *     (tg_anomaly_step_counts). A quick integer test per tensor: cheap enough to leave on.
 *
 * Recorders of the context get a record of a step that anomaly mode stopped (tg_recorder_detect
 * mentions it). Off by default.
 */
typedef enum tg_anomaly_level {
    TG_ANOMALY_OFF,
    TG_ANOMALY_COUNTS,       /**< count non-finite values per node, never stop */
    TG_ANOMALY_FULL          /**< stop at the first non-finite value */
} tg_anomaly_level;

/** tg_set_anomaly_mode(ctx, true) is TG_ANOMALY_FULL, false TG_ANOMALY_OFF. */
void tg_set_anomaly_mode(tg_ctx *ctx, bool enabled);
/** True at TG_ANOMALY_FULL. */
bool tg_anomaly_mode(const tg_ctx *ctx);
/** Sets the level (an unknown level is TG_ERR_INVALID with a message). */
tg_status tg_set_anomaly_level(tg_ctx *ctx, tg_anomaly_level level);
/** The level (TG_ANOMALY_OFF for a NULL ctx). */
tg_anomaly_level tg_get_anomaly_level(const tg_ctx *ctx);

/** How many values of a tensor are of each kind. */
typedef struct tg_value_counts {
    int64_t count;           /**< values read */
    int64_t nan, pos_inf, neg_inf;
    int64_t zero;            /**< +0 and -0 */
    int64_t subnormal;       /**< non-zero values below FLT_MIN in magnitude */
} tg_value_counts;

/** Counts the kinds of n values (NULL values or n < 0: all counts 0). */
void tg_count_values(const float *values, int64_t n, tg_value_counts *out);

#define TG_ANOMALY_MAX_INPUTS 8

/** The first non-finite value anomaly mode (TG_ANOMALY_FULL) found. */
typedef struct tg_anomaly_report {
    tg_pass pass;
    int64_t step;                        /**< the tape's step */
    char op[TG_LABEL_MAX];               /**< the op whose forward or VJP wrote the value */
    char node[TG_LABEL_MAX + 32];        /**< that op's output node ("label" or "op#entry") */
    char tensor[TG_LABEL_MAX + 48];      /**< what holds it: the output, or "gradient of input 0 'x'" */
    int64_t element;                     /**< index of the first non-finite element */
    float value;                         /**< NaN, +Inf or -Inf */
    bool created;                        /**< every value the op read was finite */
    char source[TG_LABEL_MAX + 48];      /**< created false: the first non-finite input read */
    tg_value_counts counts;              /**< of `tensor` */
    int n_inputs;                        /**< forward: the op's inputs; backward: the same, then
                                              the incoming gradient last */
    tg_value_counts input_counts[TG_ANOMALY_MAX_INPUTS + 1];
    char message[1536];                  /**< what tg_errmsg said */
} tg_anomaly_report;

/** The report of the latest stop since the context was made (TG_ERR_NOT_FOUND, no message,
 *  when anomaly mode has not stopped a step). */
tg_status tg_anomaly_last(const tg_ctx *ctx, tg_anomaly_report *out);

/**
 * From now on, when anomaly mode stops a step, writes the culprit op's inputs to a safetensors
 * file at path (replacing it): "input.0", "input.1", ... (and "grad_output", the incoming
 * gradient, for the backward pass), with the op, node, pass, step, the inputs' names and the
 * attributes ("attr.<name>") as metadata, so the case can be replayed with tg_call. NULL path:
 * no more dumps. A dump that fails leaves its reason after the anomaly's message. The file keeps
 * the *first* stop after this call (the cause; a later stop, an evaluation pass's say, is an
 * echo and would overwrite it): later stops say where it is and are not dumped. Calling it again
 * (the same path or another) arms it for the next stop.
 */
tg_status tg_set_anomaly_dump(tg_ctx *ctx, const char *path);

#define TG_ANOMALY_MAX_NODES 32

/** A node with non-finite values, as TG_ANOMALY_COUNTS saw it. */
typedef struct tg_nonfinite_node {
    char name[TG_LABEL_MAX + 32];
    char op[TG_LABEL_MAX];
    tg_pass pass;                /**< forward: its values; backward: its gradient */
    int64_t nan, inf;
} tg_nonfinite_node;

/** What TG_ANOMALY_COUNTS found in the latest step (of any tape of the context). */
typedef struct tg_anomaly_counts {
    int64_t step;
    int64_t tensors_scanned;
    int64_t tensors_nonfinite;   /**< may exceed n_nodes: the list keeps the first ones */
    int64_t nan, inf;            /**< over every tensor scanned */
    int n_nodes;
    tg_nonfinite_node nodes[TG_ANOMALY_MAX_NODES]; /**< in execution order */
} tg_anomaly_counts;

/** Copies the counts of the latest step (all zero before any step was counted). */
tg_status tg_anomaly_step_counts(const tg_ctx *ctx, tg_anomaly_counts *out);

/* ------------------------------------------------------------------------------------------ */
/* Diagnostics: statistics, clipping                                                          */
/* ------------------------------------------------------------------------------------------ */

/**
 * Statistics of a gradient (or any values). Non-finite values are counted (n_nan, n_inf) and
 * poison the norms as in torch.linalg.norm: l2_norm and max_abs are NaN when any value is NaN,
 * +Inf when any is infinite (and none NaN), so an all-NaN gradient never reads as a vanished
 * one. The moments (mean, std) are of the finite values.
 */
typedef struct tg_stats {
    int64_t count;           /**< number of values */
    double l2_norm;          /**< sqrt(sum of squares); NaN / Inf as said above */
    double max_abs;          /**< largest |value|; NaN / Inf as said above */
    double mean;
    double std;              /**< population standard deviation */
    double zero_fraction;    /**< fraction of values exactly 0 */
    int64_t n_nan;
    int64_t n_inf;
} tg_stats;

/** Computes the statistics of n values (in double). NULL values or n < 0: the statistics of no
 *  values (all zero). */
void tg_stats_compute(const float *values, int64_t n, tg_stats *out);

/** Activation statistics of a node, read from its producer op. */
typedef struct tg_activation_stats {
    /** sigmoid/tanh nodes, and a plain RNN's h[t] (tanh): fraction of values within 0.01 of an
     *  asymptote; else -1 */
    double saturated_fraction;
    /** relu nodes: fraction of units that are 0 for every sample of the batch (a unit: a
     *  position along the last axis; of a 4-D NCHW node, a channel); else -1 */
    double dead_fraction;
    /** an LSTM's h[t] (recorded: its gates are read through the tape): fraction of the forget
     *  gate's values within 0.01 of 0 or 1, where its derivative f(1 - f) is below 0.01;
     *  else -1 */
    double forget_saturated_fraction;
    /** ... of them, the fraction below 0.01 (a closed gate: the cell state is erased); else -1 */
    double forget_closed_fraction;
} tg_activation_stats;

/** Saturation (sigmoid, tanh, rnn_cell), dead units (relu) or the forget gate (an LSTM's h[t])
 *  of a node's activation; every field -1 when it does not apply (a NULL or stale node). */
void tg_activation_stats_compute(const tg_tensor *node, tg_activation_stats *out);

/**
 * Built-in hooks, for tg_hook_grad / tg_hook_pattern / tg_hook_global:
 *   tg_hook_clip_value: clamps every value to [-limit, limit] (a NaN stays NaN); user is a
 *     `const float *limit`;
 *   tg_hook_clip_norm: scales the tensor so that its L2 norm is at most *max_norm (exactly
 *     *max_norm when larger); user is a `const float *max_norm`.
 */
tg_status tg_hook_clip_value(tg_ctx *ctx, const tg_hook_event *event, void *user);
tg_status tg_hook_clip_norm(tg_ctx *ctx, const tg_hook_event *event, void *user);

/**
 * Clips the gradients of a parameter set together: computes the total norm of all grads
 * (norm_type 2, 1, or INFINITY), and when it exceeds max_norm scales every grad by
 * max_norm / total, so the new total is exactly max_norm. *total_norm receives the norm before
 * clipping. A NaN/Inf total changes nothing; with error_if_nonfinite it is also TG_ERR_NUMERIC.
 * Tensors without a gradient are skipped; total_norm may be NULL. n_params < 0, or params NULL
 * for n_params > 0, is TG_ERR_INVALID with no message (no tensor leads to the context).
 */
tg_status tg_clip_grad_norm(tg_tensor *const *params, int n_params, double max_norm,
                            double norm_type, bool error_if_nonfinite, double *total_norm);

/*
 * A step guard, as llm.c has, that rescues the run. Before the optimizer steps, it checks the loss
 * and the global gradient norm against the steps accepted so far and refuses the update when
 * either is NaN/Inf, or when the step is an outlier: its score, the loss's and the norm's rises
 * above their medians in robust standard deviations ((x - median) / (1.4826 MAD)) added up,
 * exceeds z_threshold (a step that overshoots raises both at once). The scales have floors: a
 * hundredth of the loss's median and half the norm's (the norm rises several-fold in healthy
 * training), and a twentieth of the loss's and a tenth of the norm's starting level (the medians
 * of the first `warmup` accepted steps), so that a run that has fit its data, whose losses are
 * tiny and heavy-tailed, is not judged by multiples of nearly nothing. A gradient norm that falls
 * to 1 / (1 + z_threshold / 2) of its median while the loss is still above half its starting
 * level is refused too: too large a step can kill a ReLU net's units wholesale, leaving a small
 * gradient and a loss at chance that no rise reveals. In warm-up (fewer than `warmup` accepted
 * steps) the scales are the medians themselves, so the score is the relative rises added up,
 * (loss / median - 1) + (norm / median - 1): a blow-up in the very first steps is caught
 * before it is taken as the norm.
 * Only accepted steps enter the window, so a blow-up stays refused rather than becoming the new
 * normal; but `settle` refused steps in a row that are finite and steady (none an outlier among
 * them) are a new level, not a blow-up: they are accepted and become the window, so the test
 * never refuses a run forever.
 *
 * Alone, the guard only judges: the caller skips a refused update (tg_optimizer_zero_grad, no
 * step). With an optimizer attached (tg_guard_attach) it rescues: it keeps copies of the
 * parameters and the optimizer's state (momentum, Adam's moments and step counts); a refused
 * step restores the last good copy, one that `trust` accepted steps followed (a blow-up can take
 * a few steps to show, so the state right before the refused update may already be inside it),
 * zeroes the gradients and multiplies the learning rate by lr_factor (not below min_lr_scale of
 * the original). After growth_interval accepted steps in a row the rate grows by 1 / lr_factor
 * back toward the original: AMP's loss scaler in reverse. A refusal at the restored state (no
 * update since) lowers nothing, since no step was taken that the rate could be blamed for, and
 * its values enter the window (the restored state's level is what the baseline must follow).
 * Every rescue, growth, new level and alarm (most recent steps refused) is an event, given as
 * it happens to tg_guard_on_event's callback and counted in the stats. The copies are made at
 * attach: a guarded step never allocates. Not caught: a net that dies without its loss or norm
 * moving much first (the onset report's vanishing finding names it).
 */
typedef struct tg_guard_config {
    double z_threshold;      /**< score above which a step is refused (6); <= 0: only
                                  non-finite steps are refused */
    int window;              /**< accepted steps the median is taken over (32; 2..256); also the
                                  recent steps the alarm counts */
    int warmup;              /**< accepted steps before the z-scores are used (4; <= window) */
    /* 0 in the fields below: the default, so a config of the first three alone keeps working */
    double lr_factor;        /**< the rate is multiplied by it on each rescue (0.5; in (0, 1)) */
    double min_lr_scale;     /**< the rate's floor, as a fraction of the original (1e-3; (0, 1]) */
    int growth_interval;     /**< accepted steps in a row before the rate grows by 1 / lr_factor
                                  (50; < 0: never grows back) */
    int settle;              /**< finite, steady refused steps in a row taken as a new level (16;
                                  2..window; < 0: never) */
    int trust;               /**< accepted steps that must follow a state before a refusal rolls
                                  back to it (4; 1..1000): a rollback undoes trust + 1 to
                                  2 trust updates (fewer at the start or just after a rollback) */
} tg_guard_config;

tg_guard_config tg_guard_defaults(void);

typedef enum tg_guard_verdict {
    TG_GUARD_ACCEPT,
    TG_GUARD_SKIP_NONFINITE, /**< the loss or the gradient norm is NaN or Inf */
    TG_GUARD_SKIP_OUTLIER    /**< over the z-score threshold */
} tg_guard_verdict;

typedef struct tg_guard_stats {
    int64_t checked, skipped, nonfinite, outliers; /**< skipped: refused (nonfinite + outliers) */
    int64_t first_skipped_step, last_skipped_step;  /**< -1: none */
    double last_z;           /**< the score of the last check (NaN before an accepted step) */
    int64_t rescues;         /**< refused steps rolled back with the rate lowered (or at its floor) */
    int64_t growths;         /**< times the rate grew back */
    int64_t new_levels;      /**< steady refused steps accepted as the new level */
    double lr;               /**< the optimizer's rate now (NaN: no optimizer attached) */
    double lr_scale;         /**< the guard's factor: the rate as a fraction of the optimizer's
                                  own, base or scheduled (1: untouched) */
    double lowest_lr_scale;  /**< the lowest it went */
    int recent_refused, recent_checked; /**< refusals among the last `window` checks */
    bool alarm;              /**< most recent steps are refused: raised at half or more of the
                                  last `window` checks (at least window / 2 and `warmup` of
                                  them), cleared below a quarter */
    int64_t alarms;          /**< times the alarm was raised */
} tg_guard_stats;

typedef enum tg_guard_event_kind {
    TG_GUARD_RESCUE,         /**< a refused step, rolled back; the rate lowered (or at its floor) */
    TG_GUARD_SKIP,           /**< a refused step skipped: no optimizer attached, no good state
                                  copied yet, or the state is the restored one already (the
                                  rate is kept) */
    TG_GUARD_GROW,           /**< growth_interval accepted steps in a row: the rate grew back */
    TG_GUARD_NEW_LEVEL,      /**< `settle` steady refused steps: accepted as the new level */
    TG_GUARD_ALARM           /**< most recent steps are refused (raised again only after it
                                  cleared) */
} tg_guard_event_kind;

typedef struct tg_guard_event {
    tg_guard_event_kind kind;
    int64_t step;
    tg_guard_verdict verdict;  /**< the step's verdict (ACCEPT for GROW and NEW_LEVEL) */
    double loss, grad_norm;    /**< the step's */
    bool by_norm;              /**< the gradient norm, not the loss, is the non-finite value or
                                    gave more of the outlier's score */
    double z;                  /**< an outlier's score (NaN otherwise) */
    double loss_ratio, norm_ratio; /**< an outlier's loss and gradient norm over their windows'
                                        medians (NaN otherwise) */
    double lr_before, lr_after; /**< the optimizer's rate (NaN: none attached) */
    int recent_refused, recent_checked; /**< as in the stats, after this step */
} tg_guard_event;

/** Called with each event as it happens (from tg_guard_commit); the event lives for the call. */
typedef void (*tg_guard_event_fn)(const tg_guard_event *event, void *user);

typedef struct tg_guard tg_guard;
struct tg_optimizer; /* typedef'd as tg_optimizer further down, with the optimizers */

/** A guard (config NULL: tg_guard_defaults()); NULL with a message for a config out of range. */
tg_guard *tg_guard_new(tg_ctx *ctx, const tg_guard_config *config);
void tg_guard_free(tg_guard *guard);
/**
 * Makes the guard rescue opt's runs: it keeps copies of opt's parameters and state, and of
 * buffers (other persistent tensors to roll back with them, such as batch norm's running
 * statistics; NULL when n_buffers is 0), restores the good copy on a refused step, and sets
 * opt's rate. The guard's factor multiplies whatever rate opt would use (tg_optimizer_lr): its
 * base rate, a rate the caller sets later by hand, or its schedule's rate at each step
 * (tg_optimizer_set_schedule); attaching sets that factor to the guard's (1 for a new guard),
 * and tg_guard_free leaves the last one in place. Allocates the two
 * copies (replacing an earlier attachment's): with Adam, six floats per parameter element; it
 * refreshes one every `trust` accepted steps (on average about half the time of Adam's own
 * step). TG_ERR_INVALID for a NULL argument, a buffer that is not persistent, or an optimizer or
 * buffer of another context.
 */
tg_status tg_guard_attach(tg_guard *guard, struct tg_optimizer *opt, tg_tensor *const *buffers,
                          int n_buffers);
/** Events go to fn(event, user) (fn NULL: no more events). TG_ERR_INVALID for a NULL guard. */
tg_status tg_guard_on_event(tg_guard *guard, tg_guard_event_fn fn, void *user);
/**
 * One line, without a newline, saying what happened: "step 5: loss 3.062 (1.23x its median),
 * gradient norm 9.221 (3.35x): z 6.93: rolled back, lr 0.5 -> 0.25". TG_ERR_INVALID for a NULL
 * event or buf, size 0 or an unknown kind; a line longer than size is cut.
 */
tg_status tg_guard_event_text(const tg_guard_event *event, char *buf, size_t size);
/** Judges the step and commits the verdict: tg_guard_commit(tg_guard_judge(...)) (a NULL guard
 *  accepts everything). */
tg_guard_verdict tg_guard_check(tg_guard *guard, int64_t step, double loss, double grad_norm);
/**
 * The verdict tg_guard_check would give, without counting it or entering the step into the
 * window (only stats.last_z changes); a NULL guard accepts everything. With data parallelism,
 * judge on the all-reduced loss and gradient norm, agree on the verdict over the ranks (skip
 * when any rank would: tg_dist_agree), then commit that verdict on every rank, so that every
 * rank skips the same steps, keeps the same window and the same rate, and rolls back alike
 * (each rank its own copy of the state).
 */
tg_guard_verdict tg_guard_judge(tg_guard *guard, double loss, double grad_norm);
/**
 * Counts the verdict for step and, when it accepts, enters loss and grad_norm into the window
 * (and, attached, copies the state the update will start from); when it refuses, attached,
 * rolls back and lowers the rate as above. TG_ERR_INVALID for a NULL guard, a value that is not
 * a verdict, or an accepted step whose loss or norm is not finite (a NaN would poison the
 * median).
 */
tg_status tg_guard_commit(tg_guard *guard, int64_t step, double loss, double grad_norm,
                          tg_guard_verdict verdict);
/** What the guard did so far. */
tg_status tg_guard_get_stats(const tg_guard *guard, tg_guard_stats *out);

/* ------------------------------------------------------------------------------------------ */
/* Diagnostics: the gradient-flow recorder and onset detection                                */
/* ------------------------------------------------------------------------------------------ */
/*
 * A recorder keeps, per named series (a parameter or labelled node) and per step, the gradient
 * statistics, in a window of the last `window` steps; it can stream every record to a file as
 * CSV or JSON Lines as it arrives. Series are listed in natural order of their names
 * ("fc2" before "fc10"), which for layer-numbered names is the order from input to output.
 */

typedef struct tg_recorder tg_recorder;

typedef enum tg_format {
    TG_FORMAT_CSV,    /**< step,name,l2_norm,max_abs,mean,std,zero_fraction,n_nan,n_inf */
    TG_FORMAT_JSONL   /**< one JSON object per line with the same fields; NaN/Inf as null */
} tg_format;

/** A recorder keeping the last `window` steps (>= 1) of each series. */
tg_recorder *tg_recorder_new(tg_ctx *ctx, int window);
/** Removes its hooks and frees it. */
void tg_recorder_free(tg_recorder *recorder);
/** Records the gradient statistics of every node and parameter whose label matches pattern, at
 *  every backward pass (a backward pattern hook; removed by tg_recorder_free), with the norm of
 *  its values and a gradient histogram. */
int64_t tg_recorder_attach(tg_recorder *recorder, const char *pattern);
/** tg_recorder_attach restricted to parameters (persistent tensors): "lstm.*" then leaves out
 *  the h[t] and c[t] nodes (see tg_hook_params). */
int64_t tg_recorder_attach_params(tg_recorder *recorder, const char *pattern);
/**
 * Watches the forward pass of every recorded relu, sigmoid, tanh, plain-RNN (rnn_cell) and
 * LSTM (h[t]) node at every `every`-th step (>= 1), keeping of each the statistics of its
 * latest watched step (tg_activation_stats: dead units, saturation, the forget gate), for the
 * findings of tg_recorder_detect. Passes that record nothing (no-grad evaluation) are not
 * watched. Nodes are named by their label, with any "[t]" made "[*]" (an RNN's h[1..T] are one
 * entry, summed over time), else by the op and its nearest labelled inputs, as
 * "relu(batch_norm(mlp.layer2.out))", else "relu#7". A forward global hook (removed by
 * tg_recorder_free) that reads each watched activation once, as the op wrote it; entries are
 * allocated when a name first appears, so the steady state allocates nothing. Returns the
 * hook's handle (> 0), or -1 (also when the recorder already watches).
 */
int64_t tg_recorder_attach_activations(tg_recorder *recorder, int every);
/** Adds one record by hand (what the attached hooks do). Steps must not decrease. A series
 *  added by hand counts as a parameter and has no value norm or histogram. */
tg_status tg_recorder_add(tg_recorder *recorder, int64_t step, const char *name,
                          const tg_stats *stats);
/** Adds the record of a tensor by its label (or node name): its gradient's statistics (all zero
 *  without a gradient), the norm of its values, a histogram when one is due; a persistent
 *  tensor is a parameter, a tape node an activation. */
tg_status tg_recorder_add_tensor(tg_recorder *recorder, int64_t step, const tg_tensor *tensor);
/** Adds the training loss of a step (onset detection watches it for blow-ups). */
tg_status tg_recorder_add_loss(tg_recorder *recorder, int64_t step, double loss);
/** Notes a step anomaly mode stopped (tg_anomaly_last): a NaN global norm at `step`, the first
 *  NaN there, and the culprit for the onset summary. Recorders with attached hooks are told by
 *  the context themselves (at the tape's step); a loop that numbers its own steps calls this. */
tg_status tg_recorder_add_anomaly(tg_recorder *recorder, int64_t step,
                                  const tg_anomaly_report *report);
/** Whether series `index` (natural order) is of a parameter (false for activations and out of
 *  range). */
bool tg_recorder_series_is_param(const tg_recorder *recorder, int index);
/** Copies up to max value norms (the L2 norm of the tensor's values at each record, NaN when
 *  not known) of series `index`, oldest first, aligned with tg_recorder_series; returns how many. */
int tg_recorder_value_norms(const tg_recorder *recorder, int index, double *norms, int max);
/** Writes every record added from now on to file (NULL stops); CSV gets a header line first. */
void tg_recorder_stream(tg_recorder *recorder, FILE *file, tg_format format);
/** Number of series. */
int tg_recorder_series_count(const tg_recorder *recorder);
/** Name of series `index` in natural order (NULL when out of range). */
const char *tg_recorder_series_name(const tg_recorder *recorder, int index);
/** Copies up to max records of series `index`, oldest first; returns how many. */
int tg_recorder_series(const tg_recorder *recorder, int index, int64_t *steps, tg_stats *stats,
                       int max);
/** Global gradient norm per step, oldest first: sqrt of the sum of the squared norms of the
 *  parameter series (of every series while there is no parameter series). */
int tg_recorder_global_norms(const tg_recorder *recorder, int64_t *steps, double *norms, int max);
/** L2 norm of the first series over that of the last (natural order), at the latest step both
 *  have; NAN when there are fewer than two series. */
double tg_recorder_first_last_ratio(const tg_recorder *recorder);

/*
 * Gradient histograms, TensorBoard-style: per series, the counts of |gradient| in log-scale
 * bins, each a factor 4 wide: bin b holds [tg_histogram_edge(b), tg_histogram_edge(b + 1)),
 * the first bin also everything smaller (but not 0), the last everything larger. Memory is
 * bounded: each series keeps at most TG_HIST_SNAPSHOTS histograms; when they are all used, every
 * other one is dropped and snapshots are taken half as often, so they always span the whole run.
 */
#define TG_HIST_BINS 30
#define TG_HIST_SNAPSHOTS 32

typedef struct tg_histogram {
    int64_t step;
    int64_t zero;                    /**< values exactly 0 */
    int64_t nonfinite;               /**< NaN and Inf */
    int64_t counts[TG_HIST_BINS];
} tg_histogram;

/** Lower edge of bin b, 4^(b - 20) (about 1e-12 for bin 0); NaN outside 0..TG_HIST_BINS. */
double tg_histogram_edge(int bin);
/** Counts values into h (zeroing it first, step set to `step`). */
void tg_histogram_compute(const float *values, int64_t n, int64_t step, tg_histogram *h);
/** Copies up to max histograms of series `index` (natural order), oldest first; returns how
 *  many (0 for a series added by tg_recorder_add, which has no values). */
int tg_recorder_histograms(const tg_recorder *recorder, int index, tg_histogram *out, int max);

/*
 * Findings and advice. Every verdict of the diagnostics comes as a finding: what was measured,
 * in plain words with its numbers, and a short suggestion of what to try, grounded in what
 * `tapegrad study` demonstrates (the advice names the experiment that shows the remedy at
 * work). tg_recorder_detect fills report->findings; the verdicts made elsewhere (a step the
 * guard refused, a learning rate past the edge of stability, a Jacobian far from isometry, an
 * activation's statistics) have a tg_advice_* function each: pure functions of their numbers,
 * returning the finding by value (no context, nothing allocated, never a NULL to check).
 */

typedef enum tg_finding_kind {
    TG_FINDING_EXPLOSION,    /**< the gradient norm or the loss blew up; value: the growth */
    TG_FINDING_NONFINITE,    /**< the first NaN/Inf; value: steps since the blow-up began (NaN: none) */
    TG_FINDING_ANOMALY,      /**< anomaly mode stopped a step; subject: the op */
    TG_FINDING_VANISHING,    /**< series that stopped receiving gradient; value: the worst ratio
                                  (vanishing_ratio[0]); subject: its series */
    TG_FINDING_DEAD_RELU,    /**< ReLU units 0 for a whole batch; value: the worst fraction */
    TG_FINDING_SATURATION,   /**< sigmoid/tanh values at an asymptote; value: the worst fraction */
    TG_FINDING_FORGET_GATE,  /**< an LSTM's forget gate saturated; value: the fraction */
    TG_FINDING_REFUSED_STEP, /**< the guard refused a step; value: its z-score (Inf: non-finite),
                                  or for a frozen run the fraction of steps refused */
    TG_FINDING_SHARPNESS,    /**< the learning rate times the top Hessian eigenvalue; value: it */
    TG_FINDING_ISOMETRY      /**< a Jacobian's singular values; value: sigma_max / sigma_min */
} tg_finding_kind;

#define TG_FINDING_TEXT 512
#define TG_MAX_FINDINGS 8

typedef struct tg_finding {
    tg_finding_kind kind;
    bool problem;            /**< false: measured and within bounds (advice is then "") */
    int64_t step;            /**< the step it was found at, -1 when none */
    char subject[TG_LABEL_MAX]; /**< the series, layer or op it is about (the worst of several) */
    double value;            /**< the number judged (see tg_finding_kind) */
    char what[TG_FINDING_TEXT];   /**< the verdict in plain words, with its numbers */
    char advice[TG_FINDING_TEXT]; /**< what to try, and the study experiment that shows it */
} tg_finding;

/** Thresholds of onset detection (see tg_onset_defaults). */
typedef struct tg_onset_opts {
    double jump_factor;      /**< explosion: the norm grows this much in one step (100) */
    double growth_factor;    /**< ... or reaches this multiple of the baseline (1000) */
    int baseline_steps;      /**< baseline = median norm of the first steps (5) */
    double vanish_ratio;     /**< vanishing: norm below this fraction of the largest series (1e-4) */
    int vanish_steps;        /**< ... for this many consecutive steps (5) */
    /** watched activations (tg_recorder_attach_activations) are a finding at or above these
     *  fractions; outside (0, 1]: never */
    double dead_fraction;    /**< of a ReLU's units dead (0.5) */
    double saturated_fraction; /**< of a sigmoid/tanh's values, or a forget gate's, saturated (0.5) */
} tg_onset_opts;

tg_onset_opts tg_onset_defaults(void);

#define TG_MAX_VANISHING 16
#define TG_MAX_GROWTH 16

/** What onset detection found. Steps are the recorded step numbers. */
typedef struct tg_onset_report {
    bool exploded;
    int64_t explosion_start_step;    /**< last step before the growth took off */
    int64_t explosion_step;          /**< first step over a threshold */
    double explosion_growth;         /**< norm at explosion_step / norm at explosion_start_step */
    bool has_nan;
    int64_t first_nan_step;          /**< first step with a NaN or Inf anywhere */
    char first_nan_name[TG_LABEL_MAX];
    /* Vanishing series: vanishing_count of them, the worst n_vanishing (at most
     * TG_MAX_VANISHING) listed worst first. A series' ratio is its gradient norm over the
     * largest of its kind at the same step (parameters with parameters, activations with
     * activations; in a net whose gradient vanishes towards the input, the last layer's), the
     * largest over the vanish_steps steps that found it: it got less than this throughout. */
    int n_vanishing;
    int vanishing_count;
    char vanishing[TG_MAX_VANISHING][TG_LABEL_MAX];
    int64_t vanishing_since[TG_MAX_VANISHING];
    double vanishing_ratio[TG_MAX_VANISHING];
    /* the loss (tg_recorder_add_loss): the same thresholds as the gradient norm */
    bool loss_exploded;
    int64_t loss_explosion_start_step, loss_explosion_step;
    double loss_growth;
    /* After an explosion (of either) or a NaN: which series grew first, and the order the
     * others followed. A series took off at the first step its gradient norm, or the norm of its
     * values (weights, activations: how Adam blows up with a flat gradient), reached 10x its own
     * baseline or stopped being finite; ties go to the larger growth. */
    int n_growth;
    char growth_name[TG_MAX_GROWTH][TG_LABEL_MAX];
    int64_t growth_step[TG_MAX_GROWTH];
    double growth_ratio[TG_MAX_GROWTH];   /**< over the series' baseline; Inf when non-finite */
    bool growth_of_values[TG_MAX_GROWTH]; /**< its values grew (else its gradient) */
    bool growth_is_param[TG_MAX_GROWTH];
    /* a step anomaly mode stopped (recorders of the context are told) */
    bool anomaly_stopped;
    int64_t anomaly_step;
    char anomaly[256];               /**< "log at 'probs.log' created NaN from finite inputs" */
    char summary[1024];              /**< one line in plain words */
    /* Each verdict as a finding with its advice, in the order of the summary: the explosion,
     * the first NaN, anomaly mode's stop, vanishing series, then (watched activations) dead
     * ReLUs, saturated sigmoid/tanh, saturated forget gates. Only problems are listed. */
    int n_findings;
    tg_finding findings[TG_MAX_FINDINGS];
} tg_onset_report;

/** Onset detection on a norm series (steps ascending): explosion and first non-finite value,
 *  with their findings. NULL steps or norms: nothing found. */
void tg_detect_explosion(const int64_t *steps, const double *norms, int n,
                         const tg_onset_opts *opts, tg_onset_report *report);
/** Onset detection over a recorder: explosion of the global norm or of the loss, the first
 *  NaN/Inf and the series it appeared in, the order in which the series grew, a step anomaly
 *  mode stopped, vanishing series, and of the watched activations (tg_recorder_attach_activations)
 *  dead ReLUs and saturated sigmoid/tanh and forget gates; each verdict also as a finding with
 *  its advice (report->findings). opts may be NULL (defaults). */
tg_status tg_recorder_detect(const tg_recorder *recorder, const tg_onset_opts *opts,
                             tg_onset_report *report);

/**
 * A step the guard refused, or (TG_GUARD_ACCEPT) the guard's record so far. A problem when the
 * step was refused, and when more than half of at least 10 checked steps were: then the run is
 * frozen rather than rescued, and the finding says so whatever the verdict. stats: the guard's,
 * after the verdict was committed (NULL: unknown; its last_skipped_step and last_z are the
 * refused step's); lr: the learning rate of the step (NaN: unknown).
 */
tg_finding tg_advice_refused_step(tg_guard_verdict verdict, const tg_guard_stats *stats, double lr);
/**
 * The learning rate against the sharpness: gradient descent diverges along a Hessian
 * eigenvector whose eigenvalue exceeds 2/lr (Cohen et al. 2021 on the edge of stability). A
 * problem when lr x lambda_max > 2; between 1 and 2 the finding says the run trains at the edge.
 * NaN or a negative lr: not measured (problem false).
 */
tg_finding tg_advice_sharpness(double lr, double lambda_max);
/**
 * The singular values of an input-output (or one block's) Jacobian against isometry (all 1:
 * Saxe et al. 2014, Pennington et al. 2017): a problem when sigma_max / sigma_min exceeds 100
 * (sigma_min 0: an infinite spread) or the mean squared singular value mean_sq (NaN: unknown)
 * is below 0.1 or above 10 — gradients then vanish or explode through it on average.
 */
tg_finding tg_advice_isometry(double sigma_min, double sigma_max, double mean_sq);
/**
 * An activation's statistics (tg_activation_stats_compute) against opts' thresholds (NULL:
 * defaults): dead ReLU units, saturated sigmoid/tanh values, or a saturated forget gate,
 * whichever the statistics hold. name: the layer (NULL: ""); op: "relu", "sigmoid", "tanh",
 * "rnn_cell", "lstm_hidden" (NULL: not known, the advice is then for sigmoid and tanh alike).
 * stats NULL: nothing measured (problem false).
 */
tg_finding tg_advice_activation(const char *name, const char *op, const tg_activation_stats *stats,
                                const tg_onset_opts *opts);

/* ------------------------------------------------------------------------------------------ */
/* Diagnostics: curvature and Jacobian spectra                                                */
/* ------------------------------------------------------------------------------------------ */
/*
 * Why a run diverges or stops learning, measured rather than guessed. Gradient descent is
 * stable along a direction of curvature lambda only while lr * lambda < 2, so the largest
 * Hessian eigenvalue (the sharpness) against 2 / lr says how close a run is to blowing up
 * (Cohen et al. 2021: it rises to 2 / lr, "the edge of stability"). Gradients vanish or
 * explode as the singular values of the input-output Jacobian spread away from 1 (Saxe et
 * al. 2014; Pennington, Schoenholz & Ganguli 2017). The gradient-noise scale (McCandlish et
 * al. 2018) is the batch size beyond which a larger batch stops buying a larger step.
 *
 * The spectra come from Lanczos with full reorthogonalisation over Hessian-vector products
 * (tg_hvp) or Jacobian products (tg_jvp, tg_vjp): each product records the function again on
 * the instrument's own tape, so it never disturbs the caller's tape (a replayed training step
 * stays replayable) nor any parameter's gradient, and backward hooks (clipping, recorders)
 * neither see nor change the products. An instrument is a workspace: its first call sizes its
 * buffers and its tape's arena, every later call of the same sizes allocates nothing (one
 * every K training steps stays allocation-free). Memory: `steps` f32 vectors of the operator's
 * dimension (20 vectors of bench_curvature's 1.2M-parameter MLP: 96 MB), plus one tape of the
 * product. Time: the products, plus step j's pass over the j vectors kept (0.6 of the products'
 * time at 20 steps on that MLP, whose gradient is cheap for its size: 8 ms).
 *
 * The function is recorded many times at the same point: it must compute the same value each
 * time (eval-mode batch norm or fixed statistics, dropout off or with a fixed seed). A
 * training-mode batch norm would move its running statistics at every product.
 *
 * Randomness: the start vector and the probes come from config.seed, the same at every call,
 * so two calls on the same function give the same bits, and a series over training differs
 * by the model's change, not by the probes' (common random numbers).
 */

/** A scalar function of the inputs, recorded on tape (a model's loss on a fixed batch). */
typedef tg_tensor *(*tg_gradcheck_fn)(tg_tape *tape, tg_tensor *const *inputs, int n_inputs,
                                      void *user);

/** Sizes of the spectra (see tg_curvature_defaults). */
typedef struct tg_curvature_config {
    int steps;      /**< Lanczos steps, each one product (20; 1..512; capped at the dimension,
                         where the values become exact) */
    int probes;     /**< Hutchinson probes of a trace (10; >= 1; 2 or more for an error bar) */
    uint64_t seed;  /**< start vectors and probes (1) */
} tg_curvature_config;

/** steps 20, probes 10, seed 1. */
tg_curvature_config tg_curvature_defaults(void);

/** Most values at each end of a spectrum the results below hold. */
#define TG_SPECTRUM_MAX 16

/** The top of a Hessian's spectrum, from Lanczos. */
typedef struct tg_eigenvalues {
    int count;                          /**< values below: min(k, steps taken) */
    double values[TG_SPECTRUM_MAX];     /**< the largest (algebraic) Ritz values, descending */
    double residuals[TG_SPECTRUM_MAX];  /**< |H y - value y| of each unit Ritz vector y: an
                                             eigenvalue of H lies within this of the value
                                             (small: converged). Lanczos's estimate, never
                                             below 1e-6 of the largest |value|: the f32
                                             products' own rounding */
    double smallest;                    /**< the smallest Ritz value (negative: a direction of
                                             negative curvature exists; it converges slower
                                             than the top, see its residual) */
    double smallest_residual;
    int steps;                          /**< Lanczos steps taken (= Hessian-vector products) */
    bool exact;                         /**< the steps spanned the whole parameter space: the
                                             values are the Hessian's own */
} tg_eigenvalues;

typedef struct tg_curvature tg_curvature;

/**
 * An instrument for the Hessian of a scalar function of the persistent tensors params[0..n-1]
 * (all of them together, flattened in that order; each must require a gradient). The array is
 * copied, the tensors are not. config NULL: tg_curvature_defaults(). NULL with a message for
 * bad arguments or out of memory.
 */
tg_curvature *tg_curvature_new(tg_ctx *ctx, tg_tensor *const *params, int n,
                               const tg_curvature_config *config);
/** Frees the instrument (its tape and buffers; the parameters are the caller's). */
void tg_curvature_free(tg_curvature *curvature);
/**
 * The k (1..TG_SPECTRUM_MAX) largest eigenvalues of the Hessian of fn(tape, params, n, user)
 * (a tg_gradcheck_fn: a scalar, a model's loss on a fixed batch) at the parameters' current
 * values, by config.steps Lanczos steps (one tg_hvp each, about 3 gradients' cost). The
 * largest converges first (bench_curvature's MLP: 8 steps give it to 7 digits, 4 steps are
 * 40% off); the residuals say how far each value can be. When top_vector is not NULL, top_vector[i]
 * (params[i]->size floats) receives the unit eigenvector estimate (Ritz vector) of the
 * largest value. Parameters and their gradients are left as they were. An error of fn (NULL)
 * or of a product is returned with its message; TG_ERR_NUMERIC when a product is not finite.
 */
tg_status tg_curvature_top_eigenvalues(tg_curvature *curvature, tg_gradcheck_fn fn, void *user,
                                       int k, tg_eigenvalues *result, float *const *top_vector);
/**
 * The Hessian's trace by Hutchinson's estimator: the mean of z^T H z over config.probes
 * Rademacher vectors z (+-1 entries, seeded), one tg_hvp each; *std_error (may be NULL) is the
 * standard error of that mean (sample standard deviation / sqrt(probes); NaN for 1 probe).
 */
tg_status tg_curvature_trace(tg_curvature *curvature, tg_gradcheck_fn fn, void *user,
                             double *trace, double *std_error);
/**
 * The spectral density of the Hessian by stochastic Lanczos quadrature (Ghorbani, Krishnan &
 * Xiao 2019; PyHessian): `vectors` Lanczos runs of config.steps steps from normalised
 * Rademacher vectors; run r contributes the Ritz values of its tridiagonal as nodes, each
 * weighted by the squared first component of its eigenvector, / vectors. nodes and weights
 * have room for vectors * config.steps values; *count receives how many were written (fewer
 * when the dimension is smaller than the steps). The weights sum to 1; the density is
 * sum_i weights[i] delta(x - nodes[i]), to be smoothed for display (tg_spectrum_density).
 */
tg_status tg_curvature_density(tg_curvature *curvature, tg_gradcheck_fn fn, void *user,
                               int vectors, double *nodes, double *weights, int *count);
/**
 * Smooths a quadrature (nodes, weights, count) into a density on grid[0..n_grid-1]: each node
 * a Gaussian of standard deviation sigma (> 0) and mass weights[i], evaluated at the grid's
 * points into density. TG_ERR_INVALID for NULL arrays or bad sizes (no context: the status
 * only).
 */
tg_status tg_spectrum_density(const double *nodes, const double *weights, int count, double sigma,
                              const double *grid, int n_grid, double *density);

/** A function recording an output from an input (a model's logits from its batch, or one
 *  block's output from its input) on tape. */
typedef tg_tensor *(*tg_jacobian_fn)(tg_tape *tape, tg_tensor *input, void *user);

/** The extremes of a Jacobian's singular values. */
typedef struct tg_singular_values {
    int count;                               /**< values at each end: min(k, steps taken) */
    double largest[TG_SPECTRUM_MAX];         /**< descending */
    double smallest[TG_SPECTRUM_MAX];        /**< ascending (of the min(in, out) singular values) */
    double largest_bound[TG_SPECTRUM_MAX];   /**< a singular value lies within this of each
                                                  (from the Lanczos residual); the smallest
                                                  converge slowly: read their bounds */
    double smallest_bound[TG_SPECTRUM_MAX];
    double mean_square;                      /**< the mean squared singular value,
                                                  trace(J^T J) / min(in, out): 1 at isometry */
    double mean_square_std_error;            /**< 0 when exact */
    bool mean_square_exact;                  /**< exact (the whole spectrum was found, or a
                                                  product per basis vector of the smaller side
                                                  when that is at most config.probes) or
                                                  Hutchinson's estimate over config.probes */
    int64_t input_size, output_size;
    int steps;                               /**< Lanczos steps taken */
    int products;                            /**< recordings of the function in all */
    bool exact;                              /**< the steps spanned the whole space */
} tg_singular_values;

typedef struct tg_jacobian tg_jacobian;

/** An instrument for input-output Jacobians (config NULL: tg_curvature_defaults()). Its
 *  buffers are sized by the first call and grow when a later call needs more. */
tg_jacobian *tg_jacobian_new(tg_ctx *ctx, const tg_curvature_config *config);
/** Frees it. */
void tg_jacobian_free(tg_jacobian *jacobian);
/**
 * The k (1..TG_SPECTRUM_MAX) largest and smallest singular values of J = d output / d input,
 * where output = fn(tape, x, user) and x is a tape tensor holding a copy of input's values
 * (input itself, persistent or of this context's tapes, is only read; the model's parameters
 * stay as they are, their gradients too). For a batch, J covers the whole batch:
 * when the samples do not interact (no batch norm) it is block-diagonal and its extremes are
 * the extremes over the samples. Lanczos runs on the smaller Gram matrix, J^T J (input side)
 * or J J^T (output side), so the smallest values are of the min(in, out) that can be non-zero;
 * each step records fn once and takes a tg_jvp and a tg_vjp (1.2 gradients' cost on
 * bench_curvature's MLP: the VJP computes the parameters' gradients too). Then the
 * mean squared singular value: exact when the steps spanned the space or min(in, out) <=
 * config.probes (one product per basis vector), else Hutchinson over config.probes Rademacher
 * vectors of the smaller side (one product each).
 */
tg_status tg_jacobian_singular_values(tg_jacobian *jacobian, tg_jacobian_fn fn, void *user,
                                      const tg_tensor *input, int k, tg_singular_values *result);

/** The singular values of the last call's Lanczos run, descending: one per step (sqrt of the
 *  Ritz values of the Gram matrix), the whole spectrum when that call's result was exact (set
 *  config.steps to min(in, out), at most 512, for a histogram of it). Copies up to max into
 *  values; returns how many there are (0 when the last call failed or before any; 0 for NULL). */
int tg_jacobian_spectrum(const tg_jacobian *jacobian, double *values, int max);

/** The gradient-noise scale of McCandlish, Kaplan, Amodei et al. (2018), appendix A. */
typedef struct tg_noise_scale {
    double b_simple;         /**< trace_sigma / grad_norm_sq: the critical batch size's simple
                                  estimate (NaN when grad_norm_sq is not positive: noise swamps
                                  the signal at these batch sizes) */
    double trace_sigma;      /**< tr(Sigma), Sigma the per-example gradients' covariance:
                                  (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big) */
    double grad_norm_sq;     /**< |G|^2 of the true gradient: (B_big |G_big|^2 - B_small
                                  |G_small|^2) / (B_big - B_small) */
    double small_norm_sq;    /**< |G_small|^2 as given (the mean over micro-batches) */
    double big_norm_sq;      /**< |G_big|^2 */
    int64_t small_batch, big_batch;
} tg_noise_scale;

/**
 * The estimators from the squared norms of gradients (means over their examples) at two batch
 * sizes, small_batch < big_batch: each of trace_sigma and grad_norm_sq is unbiased, their ratio
 * is not; the paper averages each over steps (an exponential moving average) before dividing,
 * which a caller does with the two fields. Under data parallelism, small is the mean of the
 * ranks' local |g|^2 at the local batch and big the |g|^2 of the averaged gradient (no extra
 * pass). TG_ERR_INVALID for sizes out of order or non-finite norms.
 */
tg_status tg_noise_scale_from_norms(tg_ctx *ctx, double small_norm_sq, int64_t small_batch,
                                    double big_norm_sq, int64_t big_batch, tg_noise_scale *result);
/**
 * The same from n_micro >= 2 per-micro-batch gradients grads[0..n_micro-1] (dim floats each,
 * flattened over the parameters, each the mean over micro_batch examples): small is the mean of
 * |g_i|^2 at micro_batch, big the |mean g_i|^2 at n_micro * micro_batch. Summed in double.
 */
tg_status tg_gradient_noise_scale(tg_ctx *ctx, const float *const *grads, int n_micro, int64_t dim,
                                  int64_t micro_batch, tg_noise_scale *result);

/*
 * Instruments over training. A recorder also keeps scalar series (a reading per measured step:
 * the Hessian's top eigenvalue, lr x lambda_max, a trace, a Jacobian's extreme singular
 * values, a noise scale, or any number of yours), in bounded memory: each keeps at most
 * TG_METRIC_POINTS points; when full, every other point is dropped and points are kept half as
 * often, so a series always spans the whole run (as the histograms do); the newest point is
 * always kept as the last. Every point added is streamed (tg_recorder_stream_metrics).
 *
 * tg_recorder_instruments makes the recorder take the instruments itself every K steps: a loop
 * calls tg_recorder_measure at each step (a no-op costing nothing at the other steps), which
 * records the series named below. Each instrument is a workspace of its own (tg_curvature,
 * tg_jacobian): a measurement neither moves the parameters nor their gradients nor the caller's
 * tape, and once the first measurement has sized it, later ones allocate nothing.
 */

/** Most points a scalar series keeps. */
#define TG_METRIC_POINTS 256

/** Adds a point to the scalar series `name` (created when first seen; at most TG_LABEL_MAX - 1
 *  bytes). Steps must not decrease within a series. value may be NaN or infinite. */
tg_status tg_recorder_add_metric(tg_recorder *recorder, int64_t step, const char *name, double value);
/** Number of scalar series (0 for NULL). */
int tg_recorder_metric_count(const tg_recorder *recorder);
/** Name of scalar series `index`, in the order they first appeared (NULL when out of range). */
const char *tg_recorder_metric_name(const tg_recorder *recorder, int index);
/** Index of the scalar series called name, or -1. */
int tg_recorder_metric_find(const tg_recorder *recorder, const char *name);
/** Copies up to max kept points of scalar series `index`, oldest first (steps or values may be
 *  NULL); returns how many. */
int tg_recorder_metric(const tg_recorder *recorder, int index, int64_t *steps, double *values, int max);
/** Writes every point added from now on to file (NULL stops): CSV "step,name,value" (a header
 *  line first), or JSON Lines {"step":..,"name":..,"value":..} with NaN/Inf as null. */
void tg_recorder_stream_metrics(tg_recorder *recorder, FILE *file, tg_format format);

/** What tg_recorder_measure takes, and how often (tg_instruments_defaults). */
typedef struct tg_instruments_config {
    int every;                 /**< measure at steps that are multiples of this (>= 1; 10) */
    int hessian_top;           /**< the Hessian's k largest eigenvalues (0..TG_SPECTRUM_MAX; 1):
                                    series "hessian.lambda_max" (and "hessian.lambda2".. for
                                    k > 1), with "lr_lambda_max" when the measure gives a rate */
    bool hessian_trace;        /**< Hutchinson's trace, "hessian.trace" (false) */
    int jacobian_top;          /**< the input-output Jacobian's k largest and smallest singular
                                    values (0..TG_SPECTRUM_MAX; 0): "jacobian.sigma_max",
                                    "jacobian.sigma_min", "jacobian.mean_square" (and
                                    "jacobian.sigma_max2".. for k > 1) */
    tg_curvature_config spectra; /**< Lanczos steps, probes, seed (8 steps: lambda_max to about
                                      7 digits on bench_curvature's MLP; probes 10; seed 1) */
} tg_instruments_config;

/** every 10, hessian_top 1, no trace, no Jacobian, spectra: 8 steps, 10 probes, seed 1. */
tg_instruments_config tg_instruments_defaults(void);

/** One measurement: the functions the instruments differentiate. */
typedef struct tg_measure {
    tg_gradcheck_fn loss;      /**< the loss of a fixed batch (for the Hessian's instruments) */
    void *loss_user;
    tg_jacobian_fn model;      /**< output from input (for the Jacobian's) */
    void *model_user;
    const tg_tensor *input;    /**< the Jacobian's input (a batch or one sample) */
    double lr;                 /**< > 0: also records lr x lambda_max (2: the edge of stability) */
} tg_measure;

/**
 * Makes the recorder take the configured instruments (config NULL: tg_instruments_defaults())
 * at every tg_recorder_measure of a step that is a multiple of config.every, of the Hessian of
 * the persistent tensors params[0..n-1] (the array is copied). Calling it again replaces the
 * instruments. TG_ERR_INVALID for bad sizes, naming the field.
 */
tg_status tg_recorder_instruments(tg_recorder *recorder, tg_tensor *const *params, int n,
                                  const tg_instruments_config *config);
/**
 * At a step that is a multiple of config.every: takes the instruments and adds their readings
 * as scalar series at `step` (*measured true); at other steps it does nothing (*measured false;
 * measured may be NULL). The function that an instrument needs (what->loss, or what->model and
 * what->input) must be given. A function's error, or a product that is not finite, is returned
 * with its message (TG_ERR_NUMERIC), and nothing of that step is recorded.
 */
tg_status tg_recorder_measure(tg_recorder *recorder, int64_t step, const tg_measure *what,
                              bool *measured);

/* ------------------------------------------------------------------------------------------ */
/* Diagnostics: plots (self-contained SVG)                                                    */
/* ------------------------------------------------------------------------------------------ */
/*
 * Charts a person can read: labelled axes with tick values, a legend, log scales where values
 * span orders of magnitude (decades labelled 1e-3, 1e-2, ...), and non-finite or non-positive
 * values (on a log axis) left out of a line rather than drawn as garbage. The SVG is
 * self-contained (no scripts, fonts or external files) and can be inlined in an HTML page.
 */

typedef struct tg_plot_series {
    const char *name;            /**< legend entry */
    const double *x;             /**< NULL: 0, 1, 2, ... */
    const double *y;
    int64_t n;
    int style;                   /**< 0: colour and dash by the series' position; k > 0: the
                                      palette's k-th (1-based), so that a run keeps one colour
                                      across charts that show different subsets of runs */
} tg_plot_series;

typedef struct tg_line_plot {
    const char *title;
    const char *x_label, *y_label;
    bool log_x, log_y;
    const tg_plot_series *series;
    int n_series;
    int width, height;           /**< pixels; 0: 640 x 360 */
} tg_line_plot;

/** Writes a line chart as one <svg> element. TG_ERR_IO when writing fails. */
tg_status tg_svg_line_plot(FILE *out, const tg_line_plot *plot);

typedef struct tg_heatmap {
    const char *title;
    const char *x_label, *y_label, *value_label;
    const double *values;        /**< rows x cols, row-major */
    int rows, cols;
    const char *const *row_names; /**< y tick labels (NULL: row numbers) */
    const double *col_values;    /**< x tick values (NULL: column numbers) */
    bool log_values;             /**< colour by log10 of the value */
    int width, height;           /**< 0: 640 x 360 */
} tg_heatmap;

/** Writes a heatmap (rows top to bottom) with a colour bar, as one <svg> element. */
tg_status tg_svg_heatmap(FILE *out, const tg_heatmap *map);

/* ------------------------------------------------------------------------------------------ */
/* Native ops: plain C functions called through libffi                                        */
/* ------------------------------------------------------------------------------------------ */
/*
 * A native op is a pair of ordinary C functions with their own parameter lists, registered
 * with a signature string and called through libffi: the registry validates the signature and
 * prepares the call descriptions once; each op call then costs one ffi_call, never one per
 * element. The tape, the backward walk and the hooks treat it like a built-in op.
 *
 * Signature grammar (whitespace ignored):
 *   signature  := inputs "->" output [ ";" attributes ]
 *   inputs     := name ( "," name )*            1 to 8 input tensors
 *   output     := name                          one output tensor
 *   attributes := attr ( "," attr )*            as in the registry grammar, with type
 *                                               f32 | f64 | i32 | i64 | bool (no shape)
 * e.g. "x -> y; beta:f32" or "a, b -> out; alpha:f32, axis:i64, exact:bool".
 *
 * The kernels' parameters follow from it, in this order (attribute types: f32 = float,
 * f64 = double, i32 = int32_t, i64 = int64_t, bool = bool):
 *   forward:  (const float *in_0, int64_t size_0, ..., float *out, int64_t out_size, attrs...)
 *   backward: (const float *in_0, int64_t size_0, ..., const float *out, const float *grad_out,
 *              int64_t out_size, float *grad_in_0, ..., attrs...)
 * The backward ADDS into each grad_in_i, which is NULL when that input needs no gradient.
 * Sizes are element counts; by default the output has input 0's shape and every input must
 * have that shape too (give infer_shape in the options for anything else).
 */

/** A kernel, cast to this type for registration: (tg_native_fn)my_forward. */
typedef void (*tg_native_fn)(void);

/** Optional parts of a native op (zero-initialise, then set what you need). */
typedef struct tg_native_opts {
    tg_infer_shape_fn infer_shape;        /**< NULL: like input 0, all inputs of that shape */
    tg_example_fn example;                /**< NULL: every input [3,4] from N(0,1) */
    void *op_data;                        /**< given to infer_shape and example as call->op_data */
    tg_attr_value example_attrs[TG_MAX_ATTRS]; /**< attributes of the default example */
    tg_jvp_fn jvp;                        /**< forward-mode rule, written with ops as for any op
                                               (tg_op_def.jvp; it sees op_data above): gives
                                               the op second derivatives (tg_hvp, tg_grad) */
} tg_native_opts;

/**
 * Registers a native op; backward may be NULL (then the op is refused at record time when an
 * input requires a gradient). Returns the op id, or -1 with a message (bad signature, duplicate
 * name, libffi refusing the call description).
 */
int tg_op_register_native(tg_ctx *ctx, const char *name, const char *signature,
                          tg_native_fn forward, tg_native_fn backward, const tg_native_opts *opts);

/** An attribute given by name, for tg_call. */
typedef struct tg_named_attr {
    const char *name;
    tg_attr_type type;
    tg_attr_value value;
} tg_named_attr;

/* TG_F32("alpha", 0.5f) ... : one named attribute, for arrays given to tg_call. */
#ifndef __cplusplus
#define TG_F32(attr_name, v) ((tg_named_attr){(attr_name), TG_ATTR_F32, {.f32 = (v)}})
#define TG_F64(attr_name, v) ((tg_named_attr){(attr_name), TG_ATTR_F64, {.f64 = (v)}})
#define TG_I32(attr_name, v) ((tg_named_attr){(attr_name), TG_ATTR_I32, {.i32 = (v)}})
#define TG_I64(attr_name, v) ((tg_named_attr){(attr_name), TG_ATTR_I64, {.i64 = (v)}})
#define TG_BOOL(attr_name, v) ((tg_named_attr){(attr_name), TG_ATTR_BOOL, {.b = (v)}})
#else /* C++ (no compound literals, no designated union members before C++20): functions */
#define TGI_NAMED_ATTR(fn, type_tag, c_type, member)                                       \
    static inline tg_named_attr fn(const char *name, c_type v) {                          \
        tg_named_attr a;                                                                  \
        a.name = name;                                                                    \
        a.type = type_tag;                                                                \
        a.value.member = v;                                                               \
        return a;                                                                         \
    }
TGI_NAMED_ATTR(tg_named_f32, TG_ATTR_F32, float, f32)
TGI_NAMED_ATTR(tg_named_f64, TG_ATTR_F64, double, f64)
TGI_NAMED_ATTR(tg_named_i32, TG_ATTR_I32, int32_t, i32)
TGI_NAMED_ATTR(tg_named_i64, TG_ATTR_I64, int64_t, i64)
TGI_NAMED_ATTR(tg_named_bool, TG_ATTR_BOOL, bool, b)
#undef TGI_NAMED_ATTR
#define TG_F32(attr_name, v) tg_named_f32((attr_name), (v))
#define TG_F64(attr_name, v) tg_named_f64((attr_name), (v))
#define TG_I32(attr_name, v) tg_named_i32((attr_name), (v))
#define TG_I64(attr_name, v) tg_named_i64((attr_name), (v))
#define TG_BOOL(attr_name, v) tg_named_bool((attr_name), (v))
#endif

/**
 * Calls any registered op by name, with attributes by name (any order, each exactly once,
 * types exactly as in the op's signature). Unknown op, wrong arity, unknown, missing, repeated
 * or mistyped attributes return NULL with a message that names the op.
 */
tg_tensor *tg_call(tg_tape *tape, const char *op_name, tg_tensor *const *inputs, int n_inputs,
                   const tg_named_attr *attrs, int n_attrs);

/* ------------------------------------------------------------------------------------------ */
/* Plugins                                                                                    */
/* ------------------------------------------------------------------------------------------ */
/*
 * A plugin is a shared library that registers ops (and named hooks) into a context. It defines
 *     TG_PLUGIN_DEFINE_ABI;                                  // exports tapegrad_plugin_abi
 *     TG_PLUGIN_EXPORT tg_status tapegrad_plugin_init(tg_ctx *ctx) { ... register ... }
 * and is built without linking libtapegrad: its tg_* calls resolve against the program that
 * loads it (link that program with -rdynamic when it links libtapegrad statically).
 * tg_plugin_load refuses a plugin whose tapegrad_plugin_abi differs from TG_PLUGIN_ABI.
 * Loaded plugins stay loaded until tg_ctx_free (their functions are in the registry).
 */

#define TG_PLUGIN_ABI 1
#define TG_PLUGIN_EXPORT __attribute__((visibility("default")))
#define TG_PLUGIN_DEFINE_ABI TG_PLUGIN_EXPORT const int tapegrad_plugin_abi = TG_PLUGIN_ABI

/** The entry point a plugin exports as `tapegrad_plugin_init`. */
typedef tg_status (*tg_plugin_init_fn)(tg_ctx *ctx);

/**
 * Loads a plugin and runs its entry point. Errors name the file and what is wrong. A path (any
 * name with a '/') is checked before dlopen: a regular file (a directory, device or FIFO is
 * refused without blocking), an ELF shared object of this program's word size, byte order and
 * machine, whose program headers and mapped segments lie inside the file (a truncated file
 * would otherwise kill the process with SIGBUS inside dlopen). A bare name is left to dlopen's
 * library search.
 */
tg_status tg_plugin_load(tg_ctx *ctx, const char *path);

/** Makes a hook available by name (plugins call this from their entry point). */
tg_status tg_hook_export(tg_ctx *ctx, const char *name, tg_hook_fn fn, void *user);
/** Finds a hook exported by name; TG_ERR_NOT_FOUND with a message when there is none. */
tg_status tg_hook_find(tg_ctx *ctx, const char *name, tg_hook_fn *fn, void **user);

/* ------------------------------------------------------------------------------------------ */
/* Models: initialisers                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** Activations layers can use (and the gain tables of initialisers refer to). */
typedef enum tg_activation {
    TG_ACT_IDENTITY,
    TG_ACT_SIGMOID,
    TG_ACT_TANH,
    TG_ACT_RELU,
    TG_ACT_LEAKY_RELU,   /**< slope 0.01 */
    TG_ACT_ELU,          /**< alpha 1 */
    TG_ACT_GELU,
    TG_ACT_SOFTPLUS
} tg_activation;

/** Lower-case name ("relu"), and back (-1 for an unknown name). */
const char *tg_activation_name(tg_activation act);
int tg_activation_from_name(const char *name);
/** Applies an activation op (identity returns x itself; NULL for a NULL tape, identity too). */
tg_tensor *tg_activate(tg_tape *tape, tg_tensor *x, tg_activation act);

typedef enum tg_init_kind {
    TG_INIT_UNIFORM,         /**< U[a, b] */
    TG_INIT_NORMAL,          /**< N(a, b^2): mean a, std b */
    TG_INIT_CONSTANT,        /**< a */
    TG_INIT_XAVIER_UNIFORM,  /**< Glorot: U[-g sqrt(6/(fan_in+fan_out)), +...] */
    TG_INIT_XAVIER_NORMAL,   /**< Glorot: N(0, g^2 2/(fan_in+fan_out)) */
    TG_INIT_HE_UNIFORM,      /**< Kaiming: U[-g sqrt(3/fan), +...], fan = fan_in or fan_out */
    TG_INIT_HE_NORMAL,       /**< Kaiming: N(0, g^2/fan) */
    TG_INIT_ORTHOGONAL,      /**< g times a random orthogonal matrix (rows or columns orthonormal) */
    TG_INIT_IDENTITY         /**< g times the identity (IRNN); 2-D only */
} tg_init_kind;

/**
 * An initialiser. For a weight [out, in] (or [out, in, ...]): fan_in = in * receptive field,
 * fan_out = out * receptive field. The gain g is tg_init_gain(nonlinearity) unless `gain` is
 * non-zero. Same seed, same numbers.
 */
typedef struct tg_init {
    tg_init_kind kind;
    float a, b;                 /**< uniform bounds / normal mean and std / constant value */
    float gain;                 /**< 0: the gain of `nonlinearity` */
    tg_activation nonlinearity; /**< for the gain of Xavier, He, orthogonal, identity */
    bool fan_out;               /**< He: use fan_out instead of fan_in */
} tg_init;

/** The recommended gain: 1 (identity, sigmoid), 5/3 (tanh), sqrt(2) (relu), sqrt(2/(1+0.01^2)) (leaky relu), ... */
float tg_init_gain(tg_activation act);
/** Fills t according to init. TG_ERR_SHAPE for identity/orthogonal on fewer than 2 dims. */
tg_status tg_init_tensor(tg_tensor *t, const tg_init *init, uint64_t seed);
/** Shorthands. */
tg_init tg_init_xavier(tg_activation act);       /**< Xavier uniform for act */
tg_init tg_init_he(tg_activation act);           /**< He normal, fan_in, for act */
tg_init tg_init_normal(float mean, float std);

/* ------------------------------------------------------------------------------------------ */
/* Models: modules and layers                                                                 */
/* ------------------------------------------------------------------------------------------ */
/*
 * A module owns named parameters (persistent tensors labelled hierarchically, e.g.
 * "res.block3.fc1.weight") and child modules, knows train/eval mode, and computes its output on
 * a tape. Every intermediate output a hook may want is labelled as it is recorded
 * ("mlp.layer2.out", "lstm.h[17]"), so name-pattern hooks see them in both passes.
 */

typedef struct tg_module tg_module;

/** Computes the module's output (NULL with a message on error). */
tg_tensor *tg_module_forward(tg_module *m, tg_tape *tape, tg_tensor *x);
/**
 * Frees a root module (one that is no module's child) and, once each, every module below it; their
 * parameters and buffers belong to the context and stay. A module added with tg_module_add_child
 * (or made by a built-in model: an MLP's layers) belongs to its parent: freeing it is refused with
 * TG_ERR_INVALID and a message naming the root to free, and nothing is freed, since the parent
 * would still use it. TG_OK for NULL (nothing to do) and for a freed module. A user module's
 * release runs before its children are freed, so calling tg_module_free on a child from there is
 * refused, never a double free.
 */
tg_status tg_module_free(tg_module *m);
/** The module's name ("(null)" for NULL). */
const char *tg_module_name(const tg_module *m);
/**
 * Number of parameter tensors, the module's own and its children's: the size of the array
 * tg_module_params fills. To train all of them, tg_optimizer_new_module needs no array at all.
 */
int tg_module_param_count(const tg_module *m);
/** Parameter i in a fixed order (depth first, registration order). */
tg_tensor *tg_module_param(const tg_module *m, int i);
/**
 * Copies every parameter pointer (tg_module_param order) into out, which has room for max, and
 * returns how many it copied, so the result can be passed on as an array's length:
 *
 *     int n = tg_module_param_count(mlp);
 *     tg_tensor **params = malloc(n * sizeof *params);
 *     tg_module_params(mlp, params, n);              (n again)
 *
 * When max is smaller than tg_module_param_count(m), nothing is copied and the result is -1,
 * with TG_ERR_INVALID on the module's context naming both counts. (Before, it returned the
 * count while copying only max: passed on, that count read past the array.) out NULL: copies
 * nothing and returns the count, whatever max is. 0 for a NULL module.
 */
int tg_module_params(const tg_module *m, tg_tensor **out, int max);
/**
 * Everything a checkpoint needs: the parameters (in tg_module_param order), then the buffers
 * (batch norm's running statistics), children included. Copies them all into out (room for max)
 * and returns how many; as tg_module_params, -1 with a message and nothing copied when max is
 * too small, and the count with out NULL.
 */
int tg_module_state(const tg_module *m, tg_tensor **out, int max);
/**
 * Writes a table of the module tree to out: for m and each module below it (indented by depth),
 * its name, kind ("linear", "mlp", "module" for tg_module_new's) and the parameters it holds
 * with its children; under each module its own parameters and buffers, by name, shape and
 * count; then the totals (parameters, how many are trainable, buffer values). Columns are as
 * wide as the longest name: nothing is cut. TG_OK; TG_ERR_INVALID for a NULL module (quietly)
 * or out (with a message); TG_ERR_IO when out reports a write error.
 */
tg_status tg_module_summary(const tg_module *m, FILE *out);
/** The parameter with that full name, or NULL. */
tg_tensor *tg_module_find_param(const tg_module *m, const char *name);
/** Total number of scalars in the parameters. */
int64_t tg_module_num_elements(const tg_module *m);
/** Train (true) or eval mode, for the module and its children (dropout, batch norm). */
void tg_module_set_training(tg_module *m, bool training);
bool tg_module_training(const tg_module *m);
/**
 * Gradient checkpointing for a module (tg_recompute): its forward runs in recomputed segments,
 * `span` units each: an RNN/LSTM/GRU's time steps (each layer and direction cut into chunks of
 * span steps: T = 1000 in chunks of 32 keeps ~32 states of the 1000 and their inside one chunk
 * at a time), a ResNet's residual blocks; any other module's whole forward is one segment (the
 * blocks of a GPT, a user module: set it on each). 0 turns it off. Inside another segment a
 * module runs plainly (segments do not nest). The gradients are those without it, to the bit.
 */
tg_status tg_module_set_recompute(tg_module *m, int64_t span);
/** The span set by tg_module_set_recompute (0: off). */
int64_t tg_module_recompute(const tg_module *m);
/** Zeroes every parameter gradient. */
void tg_module_zero_grad(tg_module *m);
/** Number of child modules, and child i. */
int tg_module_child_count(const tg_module *m);
tg_module *tg_module_child(const tg_module *m, int i);

/* ---- your own modules --------------------------------------------------------------------- */
/*
 * A module of your own is a tg_module like the built-in ones: give it a forward function and
 * your data, then its parameters, buffers and children; tg_module_save/load, tg_module_params,
 * tg_module_state, train/eval mode, zero_grad, tg_module_free and name-pattern hooks then work
 * on it as on a tg_mlp. Names are hierarchical: a parameter "w" of module "net" is "net.w", and
 * a child must be named "net.<part>" (so "net.fc1.weight"). Label the outputs hooks may want
 * with tg_tape_label_next(tape, "%s.out", tg_module_name(m)) inside forward.
 *
 *     static tg_tensor *skip_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
 *         skip *s = tg_module_data(m);
 *         return tg_add(tape, x, tg_module_forward(s->fc, tape, tg_relu(tape, x)));
 *     }
 *     tg_module *m = tg_module_new(ctx, "block0", &(tg_module_def){skip_forward, free}, s);
 *     tg_module_add_child(m, s->fc = tg_linear_new(ctx, "block0.fc", 64, 64, true, NULL, 1));
 */

/** What makes a module yours: its forward, and what frees its data (NULL: nothing). */
typedef struct tg_module_def {
    tg_tensor *(*forward)(tg_module *m, tg_tape *tape, tg_tensor *x);
    void (*release)(void *data);
} tg_module_def;

/**
 * A module named `name` computing def->forward (required; def is copied), holding `data` (for
 * tg_module_data; def->release(data) runs when the module is freed). No parameters yet. NULL
 * with a message on error; data stays the caller's then.
 */
tg_module *tg_module_new(tg_ctx *ctx, const char *name, const tg_module_def *def, void *data);
/** The data given to tg_module_new (NULL for a built-in module). */
void *tg_module_data(const tg_module *m);
/** The context the module was made on. */
tg_ctx *tg_module_ctx(const tg_module *m);
/**
 * A new parameter "<module name>.<local>" of the given shape, filled by init (NULL: zeros) with
 * seed, requiring a gradient, owned by the context, in the module's parameters and state.
 * Refused (NULL with a message) for a built-in module, an empty local name, a full name longer
 * than TG_LABEL_MAX - 1 bytes, or one the module's tree (from its root) has already: a
 * parameter's or buffer's name, or one among a module's names ("fc.weight" of "net" beside a
 * child "net.fc"); the message names both.
 */
tg_tensor *tg_module_add_param(tg_module *m, const char *local, int ndim, const int64_t *shape,
                               const tg_init *init, uint64_t seed);
/** A new buffer "<module name>.<local>" filled with value: saved and loaded with the module's
 *  state (tg_module_state), never trained (running statistics, step counters). As above. */
tg_tensor *tg_module_add_buffer(tg_module *m, const char *local, int ndim, const int64_t *shape,
                                float value);
/**
 * Makes child (named "<m's name>.<part>", of the same context, without a parent) a child of m:
 * its parameters and buffers follow m's own, and m frees it. On any refusal the child is freed
 * too (unless it already sits in a tree: it has a parent, or it is m or one of m's parents), so
 * tg_module_add_child(m, tg_linear_new(...)) never leaks; a NULL child returns the error its
 * constructor left on the context. Names stay unique in a tree: a child is refused when its
 * name, or a name in its own tree, is one m's tree has (a sibling's, a parameter's), or sits
 * among another module's names ("net.fc.inner" beside "net.fc"); the message names both.
 */
tg_status tg_module_add_child(tg_module *m, tg_module *child);

/** y = x W^T + b, W [out, in] initialised by init, b zero (when bias). Named "<name>.weight", "<name>.bias". */
tg_module *tg_linear_new(tg_ctx *ctx, const char *name, int64_t in, int64_t out, bool bias,
                         const tg_init *init, uint64_t seed);

typedef enum tg_norm_kind {
    TG_NORM_NONE,
    TG_NORM_BATCH,
    TG_NORM_LAYER
} tg_norm_kind;

/** Batch norm (running statistics, momentum 0.1, eps 1e-5) or layer norm over `features`.
 *  Batch norm takes [N, features] or images [N, features, H, W] (per channel, statistics over
 *  N, H and W: PyTorch's BatchNorm2d); layer norm normalises the last axis. The state has
 *  PyTorch's names: "<name>.weight", "<name>.bias" (layer norm: nothing else, as LayerNorm) and
 *  for batch norm "<name>.running_mean", "<name>.running_var" (a checkpoint's I64
 *  "<name>.num_batches_tracked" is accepted on load; ours is not written, and PyTorch's
 *  load_state_dict accepts that). */
tg_module *tg_norm_new(tg_ctx *ctx, const char *name, tg_norm_kind kind, int64_t features);

typedef struct tg_mlp_config {
    int64_t in, out;            /**< input features and output size */
    int64_t width;              /**< hidden width */
    int depth;                  /**< number of linear layers (>= 1) */
    tg_activation activation;   /**< between layers (not after the last) */
    tg_init init;               /**< weights (all-zero: Xavier uniform for the activation);
                                     biases start at zero */
    tg_norm_kind norm;          /**< after each hidden linear layer, before the activation */
    float dropout;              /**< after each hidden activation, in training mode (0: none) */
    uint64_t seed;
    /** A registered one-input op used as the activation instead of `activation` (which still
     *  picks the initialisers' gain), e.g. a plugin's "swish"; NULL: `activation`. The name and
     *  the attributes (given to tg_call: every one the op's signature has) are copied. */
    const char *activation_op;
    const tg_named_attr *activation_attrs;
    int n_activation_attrs;
} tg_mlp_config;

/** MLP: layers "<name>.layer<i>" (fc, norm), each hidden pre-activation labelled
 *  "<name>.layer<i>.out", the output "<name>.out". */
tg_module *tg_mlp_new(tg_ctx *ctx, const char *name, const tg_mlp_config *config);

typedef struct tg_resmlp_config {
    int64_t in, out, width;
    int blocks;                 /**< residual blocks, 2 linear layers each (+2: input and output) */
    tg_activation activation;
    tg_init init;               /**< weights (all-zero: Xavier uniform for the activation) */
    tg_norm_kind norm;          /**< inside each block, before each activation */
    bool skip;                  /**< false: the plain twin (same layers, no identity path) */
    uint64_t seed;
} tg_resmlp_config;

/** Residual MLP of pre-activation blocks h + fc2(act(norm(fc1(act(norm(h)))))): "<name>.in",
 *  "<name>.block<i>.fc1|fc2|norm1|norm2", "<name>.head"; block outputs labelled
 *  "<name>.block<i>.out". */
tg_module *tg_resmlp_new(tg_ctx *ctx, const char *name, const tg_resmlp_config *config);

/* ---- convolutional layers and models ---------------------------------------------------- */

/**
 * 2-D convolution layer: weight "<name>.weight" [out, in/groups, kernel_h, kernel_w] and, when
 * bias, "<name>.bias" [out] (zero). Weights by init (all-zero or NULL: He normal for ReLU, fan
 * in) with fan_in = in/groups * kh * kw and fan_out = out/groups * kh * kw (the outputs one
 * input really feeds; PyTorch leaves out the /groups). opts NULL: stride 1, no padding.
 * Forward: tg_conv2d on x [N, in, H, W].
 */
tg_module *tg_conv2d_new(tg_ctx *ctx, const char *name, int64_t in, int64_t out, int kernel_h,
                         int kernel_w, const tg_conv2d_opts *opts, bool bias, const tg_init *init,
                         uint64_t seed);

typedef struct tg_lenet_config {
    int64_t channels, height, width; /**< input images [N, channels, height, width] (each >= 4) */
    int64_t classes;
    tg_init init;               /**< conv and linear weights (all-zero: He normal for ReLU) */
    uint64_t seed;
} tg_lenet_config;

/**
 * LeNet-5's layout with ReLU, sized for small images: conv 3x3 (16 channels, padding 1) - max
 * pool 2 - conv 3x3 (32, padding 1) - max pool 2 - fc 120 - fc 84 - fc classes. 3x3 kernels
 * with padding keep an 8x8 digit alive through both poolings (5x5 kernels would not); with
 * LeNet-5's 6 and 16 channels an 8x8 digit keeps too little (95-97% test accuracy on the
 * bundled digits against 98-99% with 16 and 32).
 * Layers "<name>.conv1|conv2|fc1|fc2|fc3"; outputs labelled "<name>.conv1.out", "<name>.conv2.out",
 * "<name>.fc1.out", "<name>.fc2.out" (before their ReLU) and "<name>.out" (the logits).
 */
tg_module *tg_lenet_new(tg_ctx *ctx, const char *name, const tg_lenet_config *config);

typedef struct tg_resnet_config {
    int64_t channels;           /**< input channels */
    int64_t classes;
    int depth;                  /**< weight layers, 6n + 2 (8, 20, 32, 56, 110, ...) */
    int64_t width;              /**< channels of stage 1; stages 2 and 3 have 2x and 4x (0: 16) */
    bool skip;                  /**< false: the plain twin (same layers, no identity path) */
    tg_init init;               /**< conv weights (all-zero: He normal for ReLU, fan in) */
    uint64_t seed;
} tg_resnet_config;

/**
 * The CIFAR ResNet of He et al. (2016, section 4.2): a 3x3 conv stem (conv, batch norm, ReLU),
 * three stages of n basic blocks, global average pooling and a linear layer. A basic block is
 * relu(bn2(conv2(relu(bn1(conv1(h))))) + shortcut(h)) with 3x3 convs without bias; the first
 * block of stages 2 and 3 halves H and W (conv1 has stride 2) and doubles the width, and its
 * shortcut is a 1x1 projection with the same stride 2 plus batch norm (option B); every other
 * shortcut is the identity. The plain twin (skip false) drops the shortcut, projections included,
 * and keeps every other layer with the same initial values.
 * Names (stages and blocks count from 1): "<name>.stem.conv|bn",
 * "<name>.stage<s>.block<b>.conv1|bn1|conv2|bn2|shortcut.conv|shortcut.bn", "<name>.fc";
 * outputs labelled "<name>.stem.out", "<name>.stage<s>.block<b>.out" and "<name>.out".
 */
tg_module *tg_resnet_new(tg_ctx *ctx, const char *name, const tg_resnet_config *config);

typedef enum tg_rnn_kind {
    TG_RNN_TANH,
    TG_RNN_LSTM,
    TG_RNN_GRU
} tg_rnn_kind;

typedef struct tg_rnn_config {
    tg_rnn_kind kind;
    int64_t in, hidden;
    tg_init input_init;         /**< W_ih (all-zero: Xavier uniform) */
    tg_init recurrent_init;     /**< W_hh (all-zero: orthogonal; identity for an IRNN) */
    float forget_bias;          /**< LSTM: initial forget-gate bias (use 1.0) */
    int bptt;                   /**< truncated BPTT: gradients flow back at most this many steps (0: all) */
    uint64_t seed;
    int num_layers;             /**< stacked layers, 1..TG_RNN_MAX_LAYERS (0: one); layer l > 0
                                     reads the layer below's h, directions concatenated */
    bool bidirectional;         /**< a second, reverse direction per layer (PyTorch's layout) */
} tg_rnn_config;

/** The most layers a recurrent module stacks. */
#define TG_RNN_MAX_LAYERS 16

/** Sensible settings: Xavier-uniform input weights, orthogonal recurrent weights, forget bias
 *  1.0, full BPTT, seed 1, one layer, one direction. */
tg_rnn_config tg_rnn_defaults(tg_rnn_kind kind, int64_t in, int64_t hidden);

/**
 * A recurrent layer, or a stack of them, with gates in PyTorch's order (LSTM i,f,g,o; GRU
 * r,z,n) and PyTorch's shapes. One layer in one direction has the parameters "<name>.weight_ih",
 * "<name>.weight_hh", "<name>.bias_ih", "<name>.bias_hh" (PyTorch adds "_l0"; these names are
 * older than stacking, and checkpoints use them). With num_layers > 1 or bidirectional every
 * name carries PyTorch's suffix: "<name>.weight_ih_l0", "<name>.weight_hh_l1_reverse", ...;
 * weight_ih of layer l > 0 is [gates*hidden, directions*hidden]. Parameters come layer by
 * layer, forward before reverse, each as weight_ih, weight_hh, bias_ih, bias_hh.
 * NULL (message on ctx) for a NULL ctx or config, or a config out of range.
 */
tg_module *tg_rnn_new(tg_ctx *ctx, const char *name, const tg_rnn_config *config);

/**
 * Runs a recurrent module over x [B, T, in], unrolled on the tape, from zero state. Each hidden
 * state is labelled "<name>.h[t]" for t = 1..T (and the LSTM cell "<name>.c[t]"); with more than
 * one layer or direction "<name>.l<l>.h[t]" and "<name>.l<l>_reverse.h[t]" (layers count from 0;
 * the reverse direction's h[t] has read x[t..T], so it is made before h[t-1]). Returns the last
 * layer's final hidden state: h[T] [B, hidden], or with two directions the forward h[T] and the
 * reverse h[1] side by side, [B, 2*hidden]. When states is not NULL it receives every hidden
 * state, layers*directions*T pointers: states[(l*D + d)*T + t-1] (for one layer, h[1..T]).
 * tg_module_forward does the same without states. Each step is a fused cell op (registered as
 * rnn_cell; lstm_gates, lstm_cell, lstm_hidden; gru_cell): one GEMM for the recurrent
 * projection of all gates, the gates applied in the same pass, the step's input projection
 * read in place. After backward, the gradient of the LSTM's internal gates node holds the
 * pre-activation gradient. NULL for a NULL module, tape or x, or another kind of module.
 */
tg_tensor *tg_rnn_forward(tg_module *rnn, tg_tape *tape, tg_tensor *x, tg_tensor **states);

/** A recurrent state, PyTorch's (h_n, c_n): [layers*directions, B, hidden] each, layer 0's
 *  forward direction first; c is the LSTM's cell state (NULL for the others). */
typedef struct tg_rnn_state {
    tg_tensor *h, *c;
} tg_rnn_state;

/**
 * Like tg_rnn_forward, from an initial state and returning the whole output sequence, as
 * PyTorch's RNN modules do: the last layer's h at every t, [B, T, directions*hidden] (forward
 * h, then reverse h). initial NULL, or a NULL member: zeros (initial->c is read by the LSTM
 * only); its tensors may be tape tensors that need a gradient (a learned or carried state).
 * When final is not NULL it receives the final states (the reverse direction's is the one at
 * t = 1). NULL with the error on the context (initial shapes are checked), for a NULL module,
 * tape or x.
 */
tg_tensor *tg_rnn_sequence(tg_module *rnn, tg_tape *tape, tg_tensor *x, const tg_rnn_state *initial,
                           tg_rnn_state *final, tg_tensor **states);

/** A copy of x that is a leaf: gradients stop here (truncated BPTT, target networks). */
tg_tensor *tg_detach(tg_tape *tape, tg_tensor *x);

/* ---- language models: embeddings, attention, transformers ------------------------------ */

/**
 * A token embedding (nn.Embedding): "<name>.weight" [num, dim], N(0, 1) unless init says
 * otherwise. Its forward maps ids [...] (f32 whole numbers in [0, num)) to [..., dim].
 */
tg_module *tg_embedding_new(tg_ctx *ctx, const char *name, int64_t num, int64_t dim,
                            const tg_init *init, uint64_t seed);

typedef struct tg_mha_config {
    int64_t embed_dim, num_heads; /**< E and H; H divides E */
    bool causal;                  /**< query t sees positions <= t (a decoder) */
    bool qk_norm;                 /**< layer norm of q and k over the head size before the
                                       product (Wortsman et al. 2023): "<name>.q_norm.weight",
                                       "<name>.q_norm.bias", and k_norm the same */
    uint64_t seed;
} tg_mha_config;

/** embed_dim, num_heads; no mask, no qk-norm, seed 1. */
tg_mha_config tg_mha_defaults(int64_t embed_dim, int64_t num_heads);

/**
 * Multi-head self-attention over x [B, T, E] -> [B, T, E], with nn.MultiheadAttention's
 * parameters and layout: "<name>.in_proj_weight" [3E, E] (q, k, v stacked; Xavier uniform),
 * "<name>.in_proj_bias" [3E] (0), "<name>.out_proj.weight" [E, E], "<name>.out_proj.bias" [E] (0),
 * so a checkpoint loads into PyTorch's module (batch_first=True) and back. The heads run fused
 * (attention_qkv, no copies); when a name-pattern hook matches "<name>.probs", the layer
 * computes the attention from separate ops instead, so that the probabilities [B, H, T, T] are
 * a node of that name the hook sees in both passes (same numbers, more memory).
 */
tg_module *tg_mha_new(tg_ctx *ctx, const char *name, const tg_mha_config *config);

typedef struct tg_transformer_config {
    int64_t d_model;              /**< E */
    int64_t n_heads;              /**< H, dividing E */
    int64_t d_ff;                 /**< the MLP's hidden width (0: 4 E) */
    bool causal;                  /**< masked self-attention (a decoder) */
    bool post_ln;                 /**< false: pre-LN, x + f(LN(x)) (GPT-2); true: post-LN,
                                       LN(x + f(x)) (Vaswani et al. 2017) */
    bool qk_norm;                 /**< see tg_mha_config */
    float dropout;                /**< on each residual branch in training, 0 <= p < 1 */
    uint64_t seed;
} tg_transformer_config;

/**
 * One transformer block over [B, T, E]: self-attention "<name>.attn" (tg_mha_new), then a GELU
 * MLP "<name>.fc" [d_ff, E] and "<name>.proj" [E, d_ff], each on a residual path with layer
 * norms "<name>.ln1" and "<name>.ln2" placed before (pre-LN) or after (post-LN) the sum. The
 * output is labelled "<name>.out".
 */
tg_module *tg_transformer_block_new(tg_ctx *ctx, const char *name,
                                    const tg_transformer_config *config);

typedef struct tg_gpt_config {
    int64_t vocab;                /**< token ids 0..vocab-1 */
    int64_t block_size;           /**< the longest sequence (rows of the position table) */
    int64_t d_model, n_heads;
    int n_layers;                 /**< 0..TG_GPT_MAX_LAYERS */
    bool post_ln;                 /**< post-LN blocks (and no final norm) instead of pre-LN */
    bool qk_norm;
    bool tie_weights;             /**< the head is the token table (logits = x wte^T) */
    float dropout;                /**< on the embeddings and every residual branch */
    uint64_t seed;
} tg_gpt_config;

#define TG_GPT_MAX_LAYERS 64

/**
 * A decoder-only transformer language model: ids [B, T] (T <= block_size) -> logits
 * [B, T, vocab]. Token and learned position embeddings "<name>.wte.weight" [vocab, E] and
 * "<name>.wpe.weight" [block_size, E] (both N(0, 0.02)), causal blocks "<name>.block0" ...
 * (tg_transformer_block_new), for pre-LN a final norm "<name>.ln_f", and unless tied a head
 * "<name>.head.weight" [vocab, E] without bias. Every block's output is labelled
 * "<name>.block<i>.out", the logits "<name>.logits".
 */
tg_module *tg_gpt_new(tg_ctx *ctx, const char *name, const tg_gpt_config *config);

typedef struct tg_rnn_lm_config {
    tg_rnn_kind kind;
    int64_t vocab, embed_dim, hidden;
    int num_layers;               /**< stacked recurrent layers (0: one) */
    uint64_t seed;
} tg_rnn_lm_config;

/**
 * A character-level recurrent language model: ids [B, T] -> logits [B, T, vocab], through an
 * embedding "<name>.embed", a (stacked) RNN/LSTM/GRU "<name>.rnn" (tg_rnn_new's names and
 * labels) and a linear head "<name>.head".
 */
tg_module *tg_rnn_lm_new(tg_ctx *ctx, const char *name, const tg_rnn_lm_config *config);

/** Mean cross entropy of next-token logits [B, T, V] against targets [B, T] -> scalar. */
tg_tensor *tg_lm_loss(tg_tape *tape, tg_tensor *logits, tg_tensor *targets);

/**
 * Continues a sequence: runs a language model (ids [1, T] -> logits [1, T, V]) on the last
 * `context` ids of ids[0..n_prompt) and appends a token drawn from softmax(logits / temperature)
 * (temperature 0: the most likely), n_new times, into ids[n_prompt .. n_prompt + n_new), which
 * must have room. Seeded. Uses and resets tape; the model is put in eval mode for the calls and
 * put back. TG_OK or the first error.
 */
tg_status tg_lm_generate(tg_module *model, tg_tape *tape, float *ids, int64_t n_prompt,
                         int64_t n_new, int64_t context, float temperature, uint64_t seed);

/* ------------------------------------------------------------------------------------------ */
/* Models: optimizers, schedules, penalties, metrics                                          */
/* ------------------------------------------------------------------------------------------ */

typedef enum tg_optimizer_kind {
    TG_OPT_SGD,
    TG_OPT_ADAM,
    TG_OPT_ADAMW,
    TG_OPT_RMSPROP
} tg_optimizer_kind;

typedef struct tg_optimizer_config {
    tg_optimizer_kind kind;
    float lr;
    float momentum;             /**< SGD, RMSprop */
    bool nesterov;              /**< SGD */
    float weight_decay;         /**< L2 added to the gradient (SGD, Adam, RMSprop); decoupled (AdamW) */
    float beta1, beta2, eps;    /**< Adam/AdamW (0: 0.9, 0.999, 1e-8); eps also RMSprop (0: 1e-8) */
    float alpha;                /**< RMSprop smoothing (0: 0.99) */
} tg_optimizer_config;

typedef struct tg_optimizer tg_optimizer;

/**
 * An optimizer over a parameter set (the pointers are copied; state is allocated here, once).
 * n_params is the length of params, at least 1.
 */
tg_optimizer *tg_optimizer_new(tg_ctx *ctx, tg_tensor *const *params, int n_params,
                               const tg_optimizer_config *config);
/**
 * An optimizer over every parameter of module (tg_module_params order), on the module's
 * context: the way to train a whole model without sizing an array. NULL for a NULL module
 * (quietly), or with a message for a module without parameters and what tg_optimizer_new
 * refuses.
 */
tg_optimizer *tg_optimizer_new_module(tg_module *module, const tg_optimizer_config *config);
void tg_optimizer_free(tg_optimizer *opt);
/**
 * One update from the current gradients. A parameter that received no gradient since its last
 * tg_zero_grad (tg_optimizer_zero_grad, tg_module_zero_grad) — no backward pass reached it and
 * nothing non-zero was written into its grad by hand — is skipped entirely, as PyTorch 2 skips
 * a parameter whose grad is None: no weight decay, no momentum, its optimizer state unchanged.
 * Parameters without a gradient buffer are skipped too.
 */
tg_status tg_optimizer_step(tg_optimizer *opt);
/** Zeroes the gradients of its parameters. */
void tg_optimizer_zero_grad(tg_optimizer *opt);
/**
 * tg_optimizer_step, then tg_optimizer_zero_grad, with the same numbers, in one pass: each
 * block of a gradient is zeroed right after the update read it, while it is in the cache,
 * rather than by a second pass over every gradient (on the 20-layer MLP of bench_models, 5 MB
 * less memory traffic per step). For training loops that do not read the gradients after the
 * update.
 */
tg_status tg_optimizer_step_zero_grad(tg_optimizer *opt);
/**
 * Sets the base rate: the rate itself without a schedule, the schedule's peak with one
 * (tg_optimizer_set_schedule). Nothing for a NULL optimizer.
 */
void tg_optimizer_set_lr(tg_optimizer *opt, float lr);
/**
 * The rate the next tg_optimizer_step uses: the schedule's rate at the optimizer's position
 * (tg_optimizer_step_count), or the base rate without one, times the step guard's factor when
 * a guard is attached (tg_guard_attach; 1 otherwise). NaN for a NULL optimizer.
 */
float tg_optimizer_lr(const tg_optimizer *opt);

/*
 * Learning-rate schedules, as PyTorch's lr_scheduler classes (step = optimizer steps taken,
 * PyTorch's last_epoch when scheduler.step() follows each optimizer.step()):
 *   - warm-up (warmup_steps W > 0): lr (step + 1) / W for step < W, i.e. LinearLR(start_factor
 *     = 1/W, total_iters = W - 1); then the kind below runs on step - W (SequentialLR with
 *     milestones [W]);
 *   - CONSTANT: lr;
 *   - STEP: StepLR(step_size, gamma): lr gamma^floor(step / step_size);
 *   - COSINE: CosineAnnealingLR(T_max = total_steps - W, eta_min = min_lr); from T_max on it
 *     stays at min_lr (PyTorch's would rise again: its cosine is periodic);
 *   - LINEAR: LinearLR(start_factor 1, end_factor min_lr / lr, total_iters = total_steps - W):
 *     lr + (min_lr - lr) step / T, then min_lr.
 */
typedef enum tg_schedule_kind {
    TG_SCHEDULE_CONSTANT,
    TG_SCHEDULE_STEP,           /**< lr * gamma^(floor(step / step_size)) */
    TG_SCHEDULE_COSINE,         /**< min_lr + (lr - min_lr) (1 + cos(pi step / total)) / 2 */
    TG_SCHEDULE_LINEAR          /**< lr + (min_lr - lr) step / total, then min_lr */
} tg_schedule_kind;

typedef struct tg_schedule {
    tg_schedule_kind kind;
    float lr;                   /**< base rate (attached to an optimizer: 0, the optimizer's) */
    int64_t step_size;          /**< STEP: steps between decays (>= 1) */
    float gamma;                /**< STEP: the factor of each decay (>= 0) */
    int64_t total_steps;        /**< COSINE, LINEAR: steps to min_lr, warm-up included */
    float min_lr;               /**< COSINE, LINEAR: the final rate (>= 0) */
    int64_t warmup_steps;       /**< linear warm-up from lr/warmup to lr over these steps first */
} tg_schedule;

/** The learning rate at a step (0-based). NaN for a NULL schedule. */
float tg_schedule_lr(const tg_schedule *schedule, int64_t step);
/**
 * Makes opt follow schedule (copied): each tg_optimizer_step uses the schedule's rate at the
 * optimizer's position (tg_optimizer_step_count: steps taken so far, also before the schedule
 * was set), the schedule's base rate being the optimizer's (its config.lr, tg_optimizer_set_lr);
 * so a loop that steps once per iteration gets tg_schedule_lr(schedule, iteration) with no call
 * of its own, and allocates nothing for it. schedule->lr must be 0 or the optimizer's rate.
 * A step guard (tg_guard_attach) multiplies the scheduled rate by its factor: a rescue halves
 * whatever the schedule gives from then on, until the guard grows its factor back. The
 * position is part of the optimizer's state: a guard's rollback takes it back with Adam's step
 * counts (the schedule replays those steps), and steps the guard refuses (no
 * tg_optimizer_step) do not advance it. NULL schedule: back to the constant base rate.
 * TG_ERR_INVALID with a message naming the field for a schedule out of range (a kind that is
 * none, warmup_steps < 0; STEP: step_size < 1, gamma < 0; COSINE/LINEAR: total_steps not past
 * warmup_steps, min_lr < 0; a non-finite number), quietly for a NULL optimizer.
 */
tg_status tg_optimizer_set_schedule(tg_optimizer *opt, const tg_schedule *schedule);
/**
 * Steps taken (tg_optimizer_step and tg_optimizer_step_zero_grad calls, less those a guard's
 * rollback undid): the position in the schedule. -1 for a NULL optimizer.
 */
int64_t tg_optimizer_step_count(const tg_optimizer *opt);

/** coeff * sum over params of w^2, built from ops so it shows in the graph. */
tg_tensor *tg_l2_penalty(tg_tape *tape, tg_tensor *const *params, int n_params, float coeff);
/** coeff * sum over params of |w|. */
tg_tensor *tg_l1_penalty(tg_tape *tape, tg_tensor *const *params, int n_params, float coeff);
/** Fraction of rows of logits [N, C] whose arg-max equals the label in labels [N]; a row holding
 *  a NaN never counts as right. NaN when the shapes do not fit. */
float tg_accuracy(const tg_tensor *logits, const tg_tensor *labels);

/* ------------------------------------------------------------------------------------------ */
/* Data                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/**
 * A data set in memory: `count` samples, each with an input of shape x_shape and a target of
 * shape y_shape (y_ndim 0: one value per sample, e.g. a class index when classes > 0).
 */
typedef struct tg_dataset {
    int64_t count;
    int x_ndim;
    int64_t x_shape[3];
    int y_ndim;
    int64_t y_shape[3];
    int64_t classes;            /**< > 0: targets are class indices 0..classes-1 */
    float *x;                   /**< count * prod(x_shape) */
    float *y;                   /**< count * prod(y_shape) */
    tg_ctx *ctx;
} tg_dataset;

void tg_dataset_free(tg_dataset *ds);
int64_t tg_dataset_x_size(const tg_dataset *ds);   /**< floats per sample input (-1 for NULL) */
int64_t tg_dataset_y_size(const tg_dataset *ds);   /**< floats per sample target (-1 for NULL) */

/** The bundled digits set: 1,797 8x8 images (pixels scaled to [0,1]), 10 classes. */
tg_dataset *tg_dataset_digits(tg_ctx *ctx);
/**
 * Gives every sample the input shape `shape` (ndim 1 to 3) of the same number of floats, in
 * place (no copy): the digits as images is tg_dataset_reshape(ds, 3, (int64_t[]){1, 8, 8}).
 */
tg_status tg_dataset_reshape(tg_dataset *ds, int ndim, const int64_t *shape);
/** Splits into train and test (test_fraction of the samples, seeded shuffle), as copies. */
tg_status tg_dataset_split(const tg_dataset *ds, double test_fraction, uint64_t seed,
                           tg_dataset **train, tg_dataset **test);

/** The adding problem: x [T, 2] (a value in U[0,1], a marker in {0,1} on exactly two steps,
 *  one in each half), y = the sum of the two marked values. Predicting 1 gives MSE ~0.167. */
tg_dataset *tg_dataset_adding(tg_ctx *ctx, int64_t count, int64_t length, uint64_t seed);
/** Copy (memory) task: x [symbols + delay + symbols, vocab + 1] holds `symbols` one-hot
 *  symbols (of `vocab`), `delay` blank steps, then `symbols` steps flagged on channel `vocab`
 *  ("recall now"); y [symbols] holds the symbols' class indices to produce during the recall
 *  steps (classes = vocab). */
tg_dataset *tg_dataset_copy_task(tg_ctx *ctx, int64_t count, int64_t symbols, int64_t delay,
                                 int64_t vocab, uint64_t seed);
/** Two interleaved spirals: x [2], class 0 or 1. */
tg_dataset *tg_dataset_spirals(tg_ctx *ctx, int64_t count, float noise, uint64_t seed);
/** Parity of `bits` random bits (as 0/1 floats): class 0 or 1. */
tg_dataset *tg_dataset_parity(tg_ctx *ctx, int64_t count, int64_t bits, uint64_t seed);

/** CSV of numeric columns, one of which (label_column, negative counts from the end) holds
 *  whole-number class labels; an optional header line is skipped. Errors name line and column. */
tg_dataset *tg_dataset_read_csv(tg_ctx *ctx, const char *path, int label_column);
/** The same for regression: target_column holds any finite number (the target, classes 0);
 *  train with tg_mse. */
tg_dataset *tg_dataset_read_csv_regression(tg_ctx *ctx, const char *path, int target_column);
/**
 * MNIST IDX files: images (ubyte, 3 dims, pixels scaled to [0,1]; samples flat, x_ndim 1) and
 * labels (ubyte, 1 dim; classes = the largest label + 1). Either file may be gzipped (told by
 * its magic 1f 8b, not its name): it is inflated as it is read, straight into the data set,
 * and its header may claim no more than the compressed file can hold (deflate's 1032:1), so
 * memory and time never follow a header's claim. A short, cut or corrupt stream, trailing
 * data, a wrong magic number or image and label counts that differ are errors (TG_ERR_IO)
 * naming the file and what was expected ("truncated: 3 of 200 images ...").
 */
tg_dataset *tg_dataset_read_idx(tg_ctx *ctx, const char *images_path, const char *labels_path);
/**
 * Fashion-MNIST (Xiao et al. 2017): 28x28 grey images of 10 kinds of clothing, pixels in [0,1],
 * samples shaped [1, 28, 28] (x_ndim 3, ready for conv layers; an MLP takes them after
 * tg_dataset_reshape(ds, 1, (int64_t[]){784})), classes 10. train: the 60,000 training images,
 * else the 10,000 test images. dir holds {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (or the
 * same names inflated, without .gz); NULL means /usr/share/datasets/fashion-mnist, where
 * Debian's package dataset-fashion-mnist puts them. When they are absent the error says so and
 * names the package. The original MNIST files have the same names and load the same way.
 */
tg_dataset *tg_dataset_fashion_mnist(tg_ctx *ctx, const char *dir, bool train);
/**
 * How many samples the files hold, from their headers alone: both headers are read and checked
 * as the readers above check them (a gzipped file inflates only its first bytes), the bodies
 * are not read, so a file cut short is found only by the reader. -1 with the error on ctx.
 * For sizing a run (epochs into steps) before it loads: 60,000 images cost 0.4 s to read.
 */
int64_t tg_dataset_idx_count(tg_ctx *ctx, const char *images_path, const char *labels_path);
int64_t tg_dataset_fashion_mnist_count(tg_ctx *ctx, const char *dir, bool train);

/** Minibatches of a data set, reshuffled each epoch by a seeded permutation. */
typedef struct tg_batcher tg_batcher;

tg_batcher *tg_batcher_new(const tg_dataset *ds, int64_t batch_size, bool shuffle, bool drop_last,
                           uint64_t seed);
void tg_batcher_free(tg_batcher *b);
/** The next batch as tape tensors x [B, x_shape...] and y [B, y_shape...] (y [B] for scalar
 *  targets); false at the end of an epoch (the next call starts a new, reshuffled epoch). */
bool tg_batcher_next(tg_batcher *b, tg_tape *tape, tg_tensor **x, tg_tensor **y);
/**
 * The next batch written into x and y, which must be [batch_size, x_shape...] and
 * [batch_size, y_shape...] (y [batch_size] for scalar targets; any tensors, tape or
 * persistent): for a loop that replays its step (tg_tape_replay) on the same input tensors.
 * Only full batches fit, so a shorter last batch ends the epoch as drop_last does. False at the
 * end of an epoch (the next call starts a new one), and with the error on the context for NULL,
 * stale or misshapen tensors (the message gives both shapes).
 */
bool tg_batcher_next_into(tg_batcher *b, tg_tensor *x, tg_tensor *y);
int64_t tg_batcher_epoch(const tg_batcher *b);

/* ---- image augmentation ------------------------------------------------------------------- */

/**
 * torchvision's Compose([RandomCrop(H, padding=crop_padding), RandomHorizontalFlip(),
 * ToTensor(), Normalize(mean, std)]) on a batch [B,C,H,W] of images of H x W, each part optional.
 */
typedef struct tg_augment_config {
    int crop_padding;   /**< p > 0: pad p zeros on every side, then crop an H x W window at
                             offsets uniform in [0, 2p] (each image its own); 0: no crop */
    bool flip;          /**< mirror each image left-right with probability 0.5 */
    int channels;       /**< C of mean and std; 0 (both NULL): no normalisation */
    const float *mean;  /**< [channels]: x = (x - mean[c]) / std[c], after the crop and flip */
    const float *std;   /**< [channels], each > 0; both arrays are copied */
} tg_augment_config;

/**
 * Augments batches in place, seeded (same seed, same crops and flips), allocation-free once the
 * first batch of the largest image size has gone through (it allocates one image of scratch).
 * The padding is zeros in the data's units, so after normalisation it reads -mean/std, as in
 * torchvision. NULL with the message on ctx for crop_padding < 0 or > 4096, channels without
 * both arrays (or arrays without channels), a std <= 0 or a non-finite mean or std.
 * Usage: tg_batcher_next(b, tape, &x, &y); tg_augment_apply(aug, x); then the model on x.
 */
typedef struct tg_augment tg_augment;
tg_augment *tg_augment_new(tg_ctx *ctx, const tg_augment_config *config, uint64_t seed);
/**
 * Crops, flips and normalises every image of batch [B,C,H,W] (data only, not recorded on a tape)
 * in place. Refused (the message gives the shapes, the batch untouched) for another number of
 * dims (one-channel images are [B,1,H,W]: tg_dataset_reshape(ds, 3, {1,H,W})), C other than
 * channels, crop_padding >= H or W, and a stale tape tensor.
 */
tg_status tg_augment_apply(tg_augment *aug, tg_tensor *batch);
/**
 * Normalises only (no crop, no flip, no random draw): for evaluation data, with the same
 * augmenter as training, so both see the same mean and std. The same checks but the padding's.
 */
tg_status tg_augment_normalize(tg_augment *aug, tg_tensor *batch);
/** Frees it; NULL or a second free does nothing. */
void tg_augment_free(tg_augment *aug);
/**
 * Per-channel mean and standard deviation (population: divided by the count, as numpy's
 * x.std(axis=(0, 2, 3))) over every pixel of a data set of images [C,H,W], computed in double:
 * the arrays for tg_augment_config (compute them on the training split). The arrays hold
 * `channels` floats, which must be C. TG_ERR_SHAPE for samples of other than 3 dims or another C.
 */
tg_status tg_dataset_channel_stats(const tg_dataset *ds, float *mean, float *std, int channels);

/* ---- text corpora (character-level language models) -------------------------------------- */

/**
 * A text corpus: its bytes mapped to ids 0..vocab-1 through a vocabulary of the distinct bytes
 * in ascending order (so the same text gives the same ids on every machine). At most 1 GiB.
 * A call that fails leaves its message on the context (tg_errmsg).
 */
typedef struct tg_text tg_text;

/** The whole file at path (a regular, non-empty file of at most 1 GiB); NULL with the message
 *  (naming the file) on ctx. */
tg_text *tg_text_load(tg_ctx *ctx, const char *path);
/**
 * A packaged corpus by name. "fortunes": the plain-text files of Debian's package `fortunes`
 * (/usr/share/games/fortunes; about 2.5 MB of English: quotations, jokes, poems), concatenated
 * in sorted name order, the "%" lines between fortunes turned into empty lines. NULL when the
 * package is not installed, with a message that says `apt-get install fortunes`.
 */
tg_text *tg_text_load_corpus(tg_ctx *ctx, const char *name);
/** A corpus of n bytes copied from memory (1 <= n <= 1 GiB; the bytes may hold NULs). */
tg_text *tg_text_from_memory(tg_ctx *ctx, const char *bytes, int64_t n);
void tg_text_free(tg_text *text);

int64_t tg_text_length(const tg_text *text);                 /**< bytes (0 for NULL) */
int tg_text_vocab_size(const tg_text *text);                 /**< distinct bytes, 1..256 */
/** The vocabulary: vocab_size bytes (not a C string), byte i having id i; store it beside a
 *  model so that sampling can decode without the corpus. */
const unsigned char *tg_text_vocab(const tg_text *text);
/** The text as ids, tg_text_length of them (one byte each, as every id is below 256). */
const unsigned char *tg_text_ids(const tg_text *text);
/** The id of a byte, -1 when the text does not hold it. */
int tg_text_encode_byte(const tg_text *text, unsigned char byte);
/** The byte of an id, -1 when id is not in 0..vocab_size-1. */
int tg_text_decode_id(const tg_text *text, int id);
/** TG_ERR_SHAPE (with both sizes in the message) when a model with model_vocab outputs cannot
 *  cover the text's vocabulary. */
tg_status tg_text_check_vocab(const tg_text *text, int model_vocab);

/** The parts of a split text. Before any split all of it is training text. */
typedef enum tg_text_part { TG_TEXT_TRAIN = 0, TG_TEXT_HELD_OUT = 1 } tg_text_part;

/**
 * Splits the text into training and held-out text: it is cut into chunks of `chunk` bytes
 * (4096 suits a corpus of megabytes) and a seeded sample of llround(fraction * chunks) of them
 * is held out. Neighbouring chunks of a part join, and no window of a batcher crosses from one
 * part into the other. The same seed gives the same split; a later split replaces an earlier.
 */
tg_status tg_text_split(tg_text *text, double held_out_fraction, int64_t chunk, uint64_t seed);
/** Bytes in a part. */
int64_t tg_text_part_length(const tg_text *text, tg_text_part part);

/** How a batcher picks its windows: uniformly at random among all the windows of the part
 *  (seeded; for training), or every non-overlapping window once, in text order (evaluation). */
typedef enum tg_text_order { TG_TEXT_RANDOM = 0, TG_TEXT_SEQUENTIAL = 1 } tg_text_order;

/**
 * Windows of `window` ids from one part of a text, `batch` of them per batch: x holds
 * ids[p .. p+window-1] and y ids[p+1 .. p+window] (the next byte of each), as floats. A window
 * lies inside one run of the part, so a part needs a run of window + 1 bytes (an error
 * otherwise). The text must outlive the batcher; a later tg_text_split does not change it.
 */
typedef struct tg_text_batcher tg_text_batcher;

tg_text_batcher *tg_text_batcher_new(const tg_text *text, tg_text_part part, tg_text_order order,
                                     int64_t batch, int64_t window, uint64_t seed);
void tg_text_batcher_free(tg_text_batcher *b);
/**
 * Writes the next batch into x and y, which must be [batch, window] tensors (any tensors, tape
 * or persistent; the message gives both shapes otherwise), and returns how many rows hold a
 * window: `batch`, except at the end of a TG_TEXT_SEQUENTIAL pass, where the last batch may
 * have fewer (the rest are zeros) and the call after it returns 0 (the next starts a new pass).
 * -1 with the message on the context for NULL, stale or misshapen tensors. Allocates nothing.
 * Held-out bits per character: run a sequential pass, sum the cross-entropy (in nats) of the
 * targets in the returned rows, divide by rows * window summed and by ln 2.
 */
int64_t tg_text_batcher_next_into(tg_text_batcher *b, tg_tensor *x, tg_tensor *y);
/** The windows of one sequential pass, or the distinct windows random batches draw from. */
int64_t tg_text_batcher_windows(const tg_text_batcher *b);

/* ------------------------------------------------------------------------------------------ */
/* Save and load (safetensors)                                                                */
/* ------------------------------------------------------------------------------------------ */

/**
 * Writes tensors to path in the safetensors format (8-byte little-endian header length, a JSON
 * header with dtype "F32", shape and data_offsets per tensor name, then the raw little-endian
 * data), named by their labels (which must be unique and non-empty). Atomic: written to a
 * temporary file "<path>.tmp-XXXXXX" in the same directory, flushed, then renamed over path; a
 * failed save removes it, and temporary files of earlier saves of path that died (kill -9) are
 * removed by the next one. path must be absent or a regular file: a directory, device or FIFO
 * is refused (TG_ERR_IO), never replaced. A symbolic link is followed, as cp does: the file it
 * leads to is replaced atomically and the link stays.
 */
tg_status tg_save_safetensors(tg_ctx *ctx, const char *path, tg_tensor *const *tensors, int n);
/**
 * Whether tg_save_safetensors could write path now, without writing it: the same checks (a
 * regular file or nothing at the end of its links, in an existing folder) and a temporary file
 * made and removed next to it. TG_OK, or TG_ERR_IO with the reason. Programs call it before a
 * long training whose result they mean to save.
 */
tg_status tg_check_save_path(tg_ctx *ctx, const char *path);
/**
 * Reads the tensors named by the labels of `tensors` from a safetensors file into them. The
 * whole file is validated first (header length, JSON, dtypes, offsets inside the data and not
 * overlapping, shapes equal to the tensors'); F32/F64/F16/BF16 are converted to f32, entries of
 * integer dtypes (PyTorch's num_batches_tracked) are checked and may be present as long as they
 * are not asked for. On any error nothing is changed and the message names the file, the tensor
 * and what is wrong.
 */
tg_status tg_load_safetensors(tg_ctx *ctx, const char *path, tg_tensor *const *tensors, int n);
/** A module's state (tg_module_state: parameters and running statistics), by their names. */
tg_status tg_module_save(const tg_module *m, const char *path);
tg_status tg_module_load(tg_module *m, const char *path);
/**
 * tg_module_save with string metadata in the file's "__metadata__" (what a program needs to
 * rebuild the model: its configuration, a vocabulary): n_meta pairs, meta[2k] the key and
 * meta[2k + 1] the value; "format" is the format's own key and refused.
 */
tg_status tg_module_save_with_metadata(const tg_module *m, const char *path,
                                       const char *const *meta, int n_meta);
/**
 * One metadata string of a safetensors file into buf (size bytes, NUL included); the file is
 * validated as tg_load_safetensors does. TG_ERR_NOT_FOUND when the file has no such key,
 * TG_ERR_INVALID (nothing written) when the value does not fit.
 */
tg_status tg_safetensors_metadata(tg_ctx *ctx, const char *path, const char *key, char *buf,
                                  size_t size);
/**
 * The names of the tensors in a safetensors file (the metadata aside), sorted, the file
 * validated as tg_load_safetensors does: up to max into names (NULL with max 0 to count).
 * Returns how many the file holds, -1 on error (a name too long for a label is one). What a
 * program compares a checkpoint's names with, before a partial load (tapegrad train
 * --load-partial).
 */
int tg_safetensors_names(tg_ctx *ctx, const char *path, char (*names)[TG_LABEL_MAX], int max);

/** Most dimensions of a listed tensor's shape kept (a file may hold more; ndim says so). */
#define TG_SAFETENSORS_MAX_DIMS 8

/** One tensor of a safetensors file, as its header describes it. */
typedef struct tg_safetensors_entry {
    char name[TG_LABEL_MAX];
    char dtype[8];                              /**< "F32", "F16", "BF16", "F64", "I64", ... */
    int ndim;                                   /**< as in the file (0: a scalar) */
    int64_t shape[TG_SAFETENSORS_MAX_DIMS];     /**< the first min(ndim, 8) dims */
    int64_t elements, bytes;
} tg_safetensors_entry;

/** tg_safetensors_names with each tensor's dtype, shape and size (what `tapegrad inspect`
 *  prints): up to max into entries (NULL with max 0 to count); returns how many the file holds,
 *  -1 on error. */
int tg_safetensors_list(tg_ctx *ctx, const char *path, tg_safetensors_entry *entries, int max);

/*
 * Checkpoints: a module's state (parameters and buffers) and, optionally, its optimizer's (the
 * moments, every parameter's step count, the schedule's position) in one safetensors file, so
 * that a stopped run resumes to the same bits as one that never stopped. The optimizer's state
 * is the tensor "optimizer.state" with its counts in the metadata; `tapegrad inspect` lists it.
 */

/** How a checkpoint's names meet the module's (all zero: the same names, every one). */
typedef struct tg_checkpoint_options {
    const char *file_prefix;    /**< the names' prefix in the file ("other.") ... */
    const char *model_prefix;   /**< ... stands for this prefix of the module's ("net."): a model
                                     saved under another root name; NULL: "" */
    bool partial;               /**< load what both hold (PyTorch's strict=False) and report the
                                     rest; else a tensor missing on either side refuses the load
                                     (nothing is written), naming the first of each */
} tg_checkpoint_options;

/** What a load did. */
typedef struct tg_checkpoint_report {
    int loaded;                          /**< module tensors read from the file */
    int missing;                         /**< module tensors the file does not hold */
    int unexpected;                      /**< file tensors the module does not hold (the
                                              optimizer's state aside) */
    char first_missing[TG_LABEL_MAX], first_unexpected[TG_LABEL_MAX];
    bool optimizer;                      /**< the optimizer's state was loaded */
} tg_checkpoint_report;

/** Writes m's state and, when opt is not NULL, opt's (over m's parameters), atomically. */
tg_status tg_checkpoint_save(const tg_module *m, const tg_optimizer *opt, const char *path);
/**
 * Reads a checkpoint into m and, when opt is not NULL and the file holds an optimizer's state,
 * into opt (refused when it was over another number of parameters or state size). options NULL:
 * the same names, all of them. report (may be NULL) says what was loaded, missing, unexpected.
 */
tg_status tg_checkpoint_load(tg_module *m, tg_optimizer *opt, const char *path,
                             const tg_checkpoint_options *options, tg_checkpoint_report *report);
/**
 * tg_checkpoint_save for a model that is not one module (say a recurrent body and its
 * read-out): state[0..n) as listed (tg_module_state of each part), opt's state when opt is not
 * NULL, and n_pairs metadata pairs (meta_pairs[2i] the key, [2i+1] the value; at most 8; keys
 * starting "optimizer." are the library's) that tg_safetensors_metadata reads back.
 */
tg_status tg_checkpoint_save_tensors(tg_ctx *ctx, tg_tensor *const *state, int n, const tg_optimizer *opt,
                                     const char *const *meta_pairs, int n_pairs, const char *path);
/**
 * Only the optimizer's state of a checkpoint (its moments, step counts and the schedule's
 * position), for a model loaded by other means (tg_load_safetensors, or tg_checkpoint_load with
 * a NULL optimizer). TG_ERR_NOT_FOUND when the file holds none, TG_ERR_SHAPE when it was an
 * optimizer over another number of parameters or state size.
 */
tg_status tg_checkpoint_load_optimizer(tg_optimizer *opt, const char *path);

/* ------------------------------------------------------------------------------------------ */
/* Gradient checking                                                                          */
/* ------------------------------------------------------------------------------------------ */

/** Tolerances of a gradient check (see tg_gradcheck_defaults). */
typedef struct tg_gradcheck_opts {
    double eps;     /**< central-difference step */
    double atol;    /**< absolute tolerance */
    double rtol;    /**< relative tolerance: pass when |analytic-numeric| <= atol + rtol*|numeric| */
    uint64_t seed;  /**< seed of the random projection of the output (and of the sampling) */
    int64_t max_elements; /**< tg_gradcheck_function: elements checked per input, evenly spread
                               from a seeded offset (0: every element; a model of many
                               parameters wants a few dozen) */
    int order;      /**< 1 (and 0): the gradient; 2: also the JVP against differences of the
                         forward, and double backward (tg_grad) and tg_hvp against differences
                         of the gradient (see autograd/gradcheck2.c) */
} tg_gradcheck_opts;

/** Defaults: eps 1e-2, atol 2e-3, rtol 1e-2, seed 1, every element, order 1 (why: see
 *  autograd/gradcheck.c). eps, atol and rtol must be finite and > 0, max_elements >= 0:
 *  anything else is TG_ERR_INVALID. */
tg_gradcheck_opts tg_gradcheck_defaults(void);

/** Outcome of checking one example of one op. */
typedef struct tg_gradcheck_result {
    bool passed;
    int64_t n_checked;       /**< gradient elements compared */
    double max_abs_err;
    double max_rel_err;      /**< |a-n| / max(|n|, atol) at the worst element */
    int worst_input;         /**< input index of the worst element (-1 if none) */
    int64_t worst_index;     /**< element index within that input */
    double worst_analytic;
    double worst_numeric;
    bool vacuous;            /**< every gradient checked was zero, backward's and the finite
                                  differences' alike: nothing was tested, so passed is false */
    const char *worst_check; /**< what the worst element came from: "gradient", "jvp" (then
                                  worst_input is -1 and worst_index an output element),
                                  "double backward" or "hvp" */
} tg_gradcheck_result;

/**
 * Checks op id's backward on its example number `example_index` against central finite
 * differences of L = sum(w * op(inputs)) with a fixed random w, on a scratch tape. Returns
 * TG_ERR_NOT_FOUND when the op has no such example, TG_OK when the check ran (see
 * result->passed), another status when the op itself failed.
 */
tg_status tg_gradcheck(tg_ctx *ctx, int op_id, int example_index, const tg_gradcheck_opts *opts,
                       tg_gradcheck_result *result);

/* tg_gradcheck_fn, the function checked below, is declared with the curvature instruments
 * (Diagnostics: curvature and Jacobian spectra), which measure the same kind of function. */

/**
 * Checks a whole function, as PyTorch's gradcheck or KANN's kad_check_grad do: fn(tape, inputs,
 * n_inputs, user) is recorded on a scratch tape and walked backward once, then every element
 * (or opts->max_elements per input) of every input that requires a gradient is moved by
 * +-eps and fn run again without recording, and the backward's gradient is compared with the
 * central difference (summed in double; the step is the one f32 can represent). inputs are
 * persistent tensors (parameters, tg_zeros & co.), the ones to check with requires_grad set;
 * their data and gradients are as before when the call returns. fn must compute the same value
 * for the same inputs (no fresh dropout masks: eval mode, or fixed seeds) and return a scalar
 * that depends on a checked input; other leaves it uses (parameters not among the inputs)
 * receive the gradient of the one backward pass. The worst element is result->worst_input
 * (an index into inputs) and worst_index; when every gradient is zero the check is vacuous
 * and fails (result->vacuous). With opts->order 2 it then checks, along a seeded random
 * direction v over the inputs (elements past max_elements too): tg_jvp of fn against
 * (f(x + eps v) - f(x - eps v)) / 2 eps, and tg_hvp against the difference of backward's
 * gradients at x +- eps v, element by element (the worst_check "jvp" or "hvp"; both
 * differences are taken at eps and eps/2 and extrapolated, which cancels their eps^2 error; fn
 * must be smooth along v: no max-pool winner or relu kink crossed within eps). Returns TG_OK when
 * the check ran (see result->passed), an
 * error when fn failed (its message), or for bad arguments.
 */
tg_status tg_gradcheck_function(tg_ctx *ctx, tg_gradcheck_fn fn, void *user,
                                tg_tensor *const *inputs, int n_inputs,
                                const tg_gradcheck_opts *opts, tg_gradcheck_result *result);

/* ------------------------------------------------------------------------------------------ */
/* Random numbers                                                                             */
/* ------------------------------------------------------------------------------------------ */

/** The library's PRNG (xoshiro128** seeded through splitmix64): same seed, same stream on every
 *  machine. With a NULL rng the functions below return 0 (tg_rng_normal too). */
typedef struct tg_rng {
    uint32_t s[4];
} tg_rng;

void tg_rng_seed(tg_rng *rng, uint64_t seed);
uint32_t tg_rng_u32(tg_rng *rng);
/** Uniform in [0, 1) with 24 random bits. */
float tg_rng_uniform(tg_rng *rng);
/** Standard normal (Marsaglia polar method in double). */
double tg_rng_normal(tg_rng *rng);
/** Uniform integer in [0, n) without modulo bias. */
uint32_t tg_rng_below(tg_rng *rng, uint32_t n);

#ifdef __cplusplus
}

/**
 * C++: the address of a temporary, valid to the end of the full expression — for the C idioms
 * `&(tg_optimizer_config){...}` and `&TG_F32(...)`, which C++ refuses:
 *     tg_optimizer_config adam = {};  adam.kind = TG_OPT_ADAM;  adam.lr = 1e-3f;
 *     tg_optimizer_new(ctx, params, n, tg_ref(adam));
 *     tg_call(tape, "leaky_relu", &x, 1, tg_ref(TG_F32("slope", 0.1f)), 1);
 */
template <class T>
static inline const T *tg_ref(const T &value) {
    return &value;
}
#endif

/* ---- names before the naming rule (see the top of this header); use the new ones ---------- */
#define tg_hook_node tg_hook_grad           /**< deprecated: tg_hook_grad */
#define tg_apply tg_call_id                 /**< deprecated: tg_call_id */
#define tg_op_save tg_op_save_for_backward  /**< deprecated: tg_op_save_for_backward */

#endif /* TAPEGRAD_H */
