/*
 * autograd/internal.h — the library's private structures and helpers, shared by autograd/,
 * ops/ and (later) models/ and diagnostics/. Nothing here is installed.
 *
 * Internal functions shared between files carry the tgi_ prefix and hidden visibility, so the
 * shared library exports only the tg_ names of tapegrad.h.
 */
#ifndef TAPEGRAD_INTERNAL_H
#define TAPEGRAD_INTERNAL_H

#include "tapegrad.h"

#include "autograd/checked.h"

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__)
#define TGI_HIDDEN __attribute__((visibility("hidden")))
#define TGI_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#define TGI_NOINLINE __attribute__((noinline))
#define TGI_ALWAYS_INLINE __attribute__((always_inline))
#define TGI_LIKELY(x) __builtin_expect(!!(x), 1)
#define TGI_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TGI_LIKELY(x) (x)
#define TGI_UNLIKELY(x) (x)
#define TGI_NOINLINE
#define TGI_ALWAYS_INLINE
#define TGI_HIDDEN
#define TGI_PRINTF(fmt_index, first_arg)
#endif

/* ---- allocation ---------------------------------------------------------------------------- */

/* Every allocation goes through the context's allocator (tests count them). */
TGI_HIDDEN void *tgi_alloc(tg_ctx *ctx, size_t bytes);
TGI_HIDDEN void *tgi_realloc(tg_ctx *ctx, void *ptr, size_t old_bytes, size_t new_bytes);
TGI_HIDDEN void tgi_free(tg_ctx *ctx, void *ptr, size_t bytes);
TGI_HIDDEN char *tgi_strdup(tg_ctx *ctx, const char *s);

/* ---- arena --------------------------------------------------------------------------------- */

/* Chunked bump allocator. Rewinding keeps every chunk, so a repeated sequence of requests is
 * served from the same chunks without touching the allocator. */
typedef struct tgi_chunk {
    struct tgi_chunk *next;
    size_t capacity;
    size_t used;         /* bytes handed out; for the current chunk, see tgi_arena.cursor */
    size_t used_before;  /* bytes in use in the chunks before this one, at the time we entered it */
    unsigned char *base; /* 64-byte aligned start of the usable area */
} tgi_chunk;

typedef struct tgi_arena {
    /* The current chunk's free range, kept here so that an allocation is a compare and an add
     * (tgi_arena_alloc below); the chunk's `used` is brought up to date when we leave it. */
    unsigned char *cursor;
    unsigned char *limit;
    tg_ctx *ctx;
    tgi_chunk *first;
    tgi_chunk *current;
    size_t chunk_size;   /* default capacity of a new chunk */
    size_t reserved;
    size_t peak;         /* high-water mark at the last chunk change or rewind (tgi_arena_peak) */
} tgi_arena;

/* A position in the arena, to rewind to (used by gradient checking's repeated forwards). */
typedef struct tgi_arena_mark {
    tgi_chunk *chunk;
    size_t used;
} tgi_arena_mark;

#define TGI_ARENA_ALIGN 64

TGI_HIDDEN void tgi_arena_init(tgi_arena *arena, tg_ctx *ctx, size_t chunk_size);
TGI_HIDDEN void tgi_arena_release(tgi_arena *arena);
/* The slow path of tgi_arena_alloc: moves to (or adds) a chunk with room for `bytes` (aligned). */
TGI_HIDDEN void *tgi_arena_alloc_next(tgi_arena *arena, size_t bytes);
TGI_HIDDEN void tgi_arena_rewind(tgi_arena *arena);
TGI_HIDDEN size_t tgi_arena_in_use(const tgi_arena *arena);
TGI_HIDDEN size_t tgi_arena_peak(const tgi_arena *arena);
TGI_HIDDEN tgi_arena_mark tgi_arena_mark_get(const tgi_arena *arena);
TGI_HIDDEN void tgi_arena_mark_rewind(tgi_arena *arena, tgi_arena_mark mark);

static inline size_t tgi_align64(size_t n) {
    return (n + (TGI_ARENA_ALIGN - 1)) & ~(size_t)(TGI_ARENA_ALIGN - 1);
}

/* tgi_arena_alloc for a size already a non-zero multiple of 64. Inline: every op call makes one
 * or two requests. */
static inline void *tgi_arena_take(tgi_arena *arena, size_t bytes) {
    unsigned char *p = arena->cursor;
    if ((size_t)(arena->limit - p) < bytes) return tgi_arena_alloc_next(arena, bytes);
    arena->cursor = p + bytes;
    return p;
}

/* 64-byte aligned, uninitialised; NULL when out of memory. */
static inline void *tgi_arena_alloc(tgi_arena *arena, size_t bytes) {
    return tgi_arena_take(arena, tgi_align64(bytes ? bytes : 1));
}

/* ---- indirect calls that alternate --------------------------------------------------------- */

/* A pass over the tape calls each node's function through a pointer from one place in a loop.
 * When the nodes alternate between ops (a chain of scale, tanh, scale, ...), that one call site
 * alternates between targets, and as the branches before it are the same at every node, the
 * predictor has nothing to tell them apart by: the walk's call of scalar_vjp was mispredicted
 * at every node of the scalar chain (14 ns a node, 6 with this). TGI_CALL_AT_SITE gives the
 * two targets called last a call site each, which then always calls the same function and is
 * predicted. (The replay's call of scalar_forward was predicted already: its loop differs.) */
typedef void (*tgi_any_fn)(void);
typedef struct tgi_call_sites {
    tgi_any_fn first, second; /* the targets of site 1 and site 2 */
} tgi_call_sites;

/* 1 or 2: fn is that site's target; 0: neither, and fn becomes site 1's (site 1's, site 2's). */
static inline int tgi_call_site(tgi_call_sites *sites, tgi_any_fn fn) {
    if (fn == sites->first) return 1;
    if (fn == sites->second) return 2;
    sites->second = sites->first;
    sites->first = fn;
    return 0;
}

#if defined(__GNUC__)
/* Hides fn's value from the compiler, so that it keeps the three calls apart rather than
 * merging them into one (which would be the one alternating site again). */
#define TGI_SITE_APART(fn, site) __asm__ volatile("# call site " site : "+r"(fn))
#else
#define TGI_SITE_APART(fn, site) ((void)0)
#endif

/* result = fn args (args in parentheses), from the call site of sites that has fn (a
 * modifiable lvalue). Tests, not a switch: a jump table would be an indirect jump again. */
#define TGI_CALL_AT_SITE(result, sites, fn, args)                            \
    do {                                                                     \
        int tgi_site_ = tgi_call_site((sites), (tgi_any_fn)(fn));            \
        if (tgi_site_ == 1) {                                                \
            TGI_SITE_APART(fn, "1");                                         \
            result = (fn)args;                                               \
        } else if (tgi_site_ == 2) {                                         \
            TGI_SITE_APART(fn, "2");                                         \
            result = (fn)args;                                               \
        } else {                                                             \
            result = (fn)args;                                               \
        }                                                                    \
    } while (0)

/* ---- registry ------------------------------------------------------------------------------ */

typedef float (*tgi_scalar_vjp_fn)(float x, float y, float g, const tg_attr_value *attr);
typedef float (*tgi_scalar_forward_fn)(float x, const tg_attr_value *attr);

typedef struct tgi_attr_spec {
    char *name;
    tg_attr_type type;
} tgi_attr_spec;

/* One registered op. Allocated on its own so that pointers to it stay valid as the registry grows. */
typedef struct tgi_op {
    int id;
    char *name;
    int arity;
    char *signature;         /* normalised */
    int n_attrs;
    tgi_attr_spec attrs[TG_MAX_ATTRS];
    tg_infer_shape_fn infer_shape;
    tg_forward_fn forward;
    tg_backward_fn backward;
    tg_jvp_fn jvp;           /* forward-mode rule, or NULL */
    tg_example_fn example;
    void *op_data;
    void (*release)(tg_ctx *ctx, void *op_data); /* frees op_data with the registry, or NULL */
    bool native;
    bool shaped_like_input;  /* infer_shape gives input 0's shape: the tape copies it, no call */
    bool like_input_when_alike; /* so it does when inputs 0 and 1 have the same shape
                                   (broadcasting ops) */
    /* Bytes of a node for a one-input call of this op when record1's fast path can take it
     * (one input, shaped like it, a backward, no attribute or one of 4 bytes), else 0. */
    size_t unary_node_bytes;
    /* A built-in elementwise op's VJP of one element, g * dy/dx (UNARY_OP's scalar_vjp), or
     * NULL: the unwatched walk applies it to a scalar fast-path node itself, reading what the
     * node holds, rather than calling backward, which reloads it all through call->inputs. */
    tgi_scalar_vjp_fn scalar_vjp;
    /* Its forward of one element (y from x), set with scalar_vjp: recording and the unwatched
     * replay compute a scalar fast-path node with it rather than through forward. */
    tgi_scalar_forward_fn scalar_forward;
    /* Its randomness comes from an attribute fixed when the call is recorded (dropout's seed):
     * a replay would draw the same numbers again, so tg_tape_replay refuses a step holding it. */
    bool seeded_by_attribute;
    /* Its forward writes some of its inputs (batch norm's running statistics in training): a
     * call made again for a second derivative (autograd/double_backward.c) works on copies. */
    bool writes_inputs;
    /* Its backward honours grad_fresh: an input whose flag is set gets every element written
     * (=, not +=) and the flag cleared, or is zeroed first (tgi_grad_settle). Backward then
     * hands such an op its inputs' new gradient buffers without zeroing them, which saved a
     * memset of each activation gradient per step (7% of a ResNet block at 32x32). */
    bool fresh_grads;
} tgi_op;

typedef struct tgi_registry {
    tgi_op **ops;            /* by id */
    int count;
    int capacity;
    int32_t *slots;          /* open addressing: op id, or -1 for empty */
    int n_slots;             /* power of two, kept at most half full */
} tgi_registry;

/* ---- context ------------------------------------------------------------------------------- */

/* Room for two full paths (PATH_MAX each) and the reason: a message is never cut before its end. */
#define TGI_ERRMSG_MAX 16384

/* A persistent allocation, linked so tg_ctx_free can release everything. */
typedef struct tgi_block {
    struct tgi_block *next;
    size_t bytes;            /* including this header */
} tgi_block;

/* A registered hook. Removed hooks keep their slot (fn = NULL) until no hook is running, so a
 * hook may add or remove hooks without moving the array under the loop that calls it. */
typedef enum tgi_hook_target {
    TGI_HOOK_TENSOR,
    TGI_HOOK_PATTERN,
    TGI_HOOK_PARAMS,         /* a pattern over persistent tensors only */
    TGI_HOOK_GLOBAL
} tgi_hook_target;

typedef struct tgi_hook {
    int64_t handle;
    tg_pass pass;
    tgi_hook_target target;
    tg_tensor *tensor;       /* TGI_HOOK_TENSOR */
    const tg_tape *tape;     /* the tensor's tape (NULL for a persistent tensor); compared only */
    uint32_t generation;     /* the tape step the tensor belongs to */
    char *pattern;           /* TGI_HOOK_PATTERN */
    tg_hook_fn fn;           /* NULL once removed */
    void *user;
} tgi_hook;

/* A hook exported by name (tg_hook_export), for plugins and the command line. */
typedef struct tgi_named_hook {
    char *name;
    tg_hook_fn fn;
    void *user;
} tgi_named_hook;

/* Told of every stop of anomaly mode, with the culprit call (valid during the call only). */
typedef void (*tgi_anomaly_observer)(tg_ctx *ctx, const tg_anomaly_report *report,
                                     const tg_op_call *call, void *user);
#define TGI_MAX_OBSERVERS 8

/* ---- freed objects (autograd/context.c) ----------------------------------------------------
 * The free of a context's object (tape, module, optimizer, recorder, guard, ...) releases what
 * the object holds but keeps the object's own struct, marked freed, until tg_ctx_free. So a
 * second free reads a real struct, sees the mark and does nothing; and as the address is not
 * handed to a new object while the context lives, a kept pointer never designates a newer object
 * (a pool of reused structs would make the second free free someone else's). The cost is the
 * struct, tens to hundreds of bytes, per object freed; a module's parameters, far larger, stay
 * in the context anyway. Objects the library makes and frees for itself (gradcheck's tapes) are
 * freed outright: no pointer to them escapes. */
typedef struct tgi_retired {
    struct tgi_retired *next; /* the context's list of freed objects */
    void *block;              /* the struct's allocation */
    size_t bytes;
    bool freed;
} tgi_retired;

/* Marks the object freed and keeps its struct (block, bytes) until tg_ctx_free. */
TGI_HIDDEN void tgi_retire(tg_ctx *ctx, tgi_retired *r, void *block, size_t bytes);
/* A context cannot keep its own struct past its free: the process keeps a list of live contexts
 * instead, and tg_ctx_free of one not in it (freed already) does nothing. Unlike the objects
 * above, a new context may get a freed one's address: then the stale pointer designates it. */
TGI_HIDDEN void tgi_ctx_live_add(tg_ctx *ctx);
/* Takes ctx off the list; false when it was not on it. */
TGI_HIDDEN bool tgi_ctx_live_remove(tg_ctx *ctx);

struct tg_ctx {
    tg_alloc_fn alloc;
    void *alloc_user;
    tg_status err_code;
    char err_msg[TGI_ERRMSG_MAX];
    tgi_block *blocks;       /* persistent tensors */
    size_t persistent_bytes;
    tgi_registry registry;
    char name_buf[TG_LABEL_MAX + 32]; /* for tg_tensor_name */
    tgi_hook *hooks;
    int n_hooks, cap_hooks;
    int live_hooks[2];       /* by pass: the walk's one test per entry */
    int watch_forward;       /* anomaly mode or a forward hook: record's one test per call
                                (tgi_update_watch keeps it) */
    int firing;              /* depth of hook calls in progress */
    int64_t next_handle;
    uint64_t backward_passes;
    int anomaly;             /* tg_anomaly_level: the walk and record test it as a flag */
    bool has_anomaly;        /* last_anomaly holds a stop */
    tg_anomaly_report last_anomaly;
    tg_anomaly_counts counts; /* TG_ANOMALY_COUNTS, of counts_tape's step counts.step */
    const tg_tape *counts_tape;
    char *anomaly_dump_path; /* tg_set_anomaly_dump */
    bool anomaly_dumped;     /* the first stop since it was set is in the file: keep it */
    int64_t anomaly_dump_step;
    tgi_anomaly_observer observers[TGI_MAX_OBSERVERS];
    void *observer_users[TGI_MAX_OBSERVERS];
    tgi_named_hook *named_hooks; /* exported by name (plugins) */
    int n_named_hooks, cap_named_hooks;
    void **plugins;          /* dlopen handles, closed by tg_ctx_free after the registry */
    int n_plugins, cap_plugins;
    int threads;             /* tg_ctx_set_threads: the budget, BLAS included */
    bool flush_denormals;
    bool keep_threads;       /* tg_ctx_set_threads_backoff(ctx, false): never back off */
    struct tgi_pool *pool;   /* started on the first parallel region (autograd/threads.c) */
    tgi_retired *retired;    /* structs of freed objects, released by tg_ctx_free */
    tg_ctx *next_live;       /* the process's list of live contexts (ops/builtins.c) */
};

/* Sets up the core of a context (no ops registered). */
TGI_HIDDEN void tgi_ctx_init(tg_ctx *ctx, tg_alloc_fn alloc, void *user);
/* Releases the core (persistent tensors); the registry is released by its owner. */
TGI_HIDDEN void tgi_ctx_release(tg_ctx *ctx);

/* Records an error unless one is already recorded (the first error is the informative one).
 * Returns status. */
TGI_HIDDEN tg_status tgi_error(tg_ctx *ctx, tg_status status, const char *fmt, ...) TGI_PRINTF(3, 4);
TGI_HIDDEN tg_status tgi_verror(tg_ctx *ctx, tg_status status, const char *fmt, va_list args);

/* ---- threads (autograd/threads.c) -------------------------------------------------------- */

/* Work on the items [begin, end) of a parallel loop. */
typedef void (*tgi_range_fn)(void *arg, int64_t begin, int64_t end);

/* Runs fn over [0, n), cut into at most ctx->threads contiguous ranges of at least `grain`
 * items, one per thread (the caller runs the first). Returns when all are done. Nested calls
 * (from inside a range) and contexts with one thread run fn(arg, 0, n) on the caller. fn must
 * give results that do not depend on where the cuts fall: independent items, or fixed blocks
 * whose partials the caller combines in order afterwards. A NULL ctx runs serially. */
TGI_HIDDEN void tgi_parallel_for(tg_ctx *ctx, int64_t n, int64_t grain, tgi_range_fn fn, void *arg);
/* Stops and frees the pool (tg_ctx_free, or a new thread count). */
TGI_HIDDEN void tgi_pool_release(tg_ctx *ctx);
/* Cores this process may run on (its affinity mask), at least 1. */
TGI_HIDDEN int tgi_cores_available(void);
/* The machine's online CPUs, whatever this process may run on (taskset, cgroups): what
 * must not change a run's numbers, such as how a matrix product is cut, depends on this. */
TGI_HIDDEN int tgi_cores_online(void);
/* Idle (and iowait) ticks of the CPUs this process may run on since boot, as the kernel counts
 * them (autograd/cpu_idle.c); -1 where that is unknown (not Linux, no /proc). No allocation. */
TGI_HIDDEN int64_t tgi_idle_ticks(void);
/* The ticks tgi_idle_ticks counts in a second (USER_HZ, usually 100). */
TGI_HIDDEN int64_t tgi_ticks_per_second(void);

/* ---- tensors ------------------------------------------------------------------------------- */

/* Keeps sizes well inside int64 and size_t arithmetic. */
#define TGI_MAX_ELEMENTS_64 ((uint64_t)1 << 40)
#define TGI_MAX_ELEMENTS_SIZE_T ((uint64_t)(SIZE_MAX / sizeof(float) / 2)) /* room for headers */
#define TGI_MAX_ELEMENTS ((int64_t)(TGI_MAX_ELEMENTS_64 < TGI_MAX_ELEMENTS_SIZE_T ? \
                                    TGI_MAX_ELEMENTS_64 : TGI_MAX_ELEMENTS_SIZE_T))

/* The number of elements of a valid shape (dims >= 1, at most TGI_MAX_ELEMENTS in all), else
 * -1 (tgi_check_shape then says why). Inline and division-free (the product is checked by
 * tgi_mul_ok): every op call checks the shape its infer_shape gave. */
static inline int64_t tgi_shape_elements(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > TG_MAX_DIMS) return -1;
    int64_t size = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1 || !tgi_mul_ok(size, shape[d], &size) || size > TGI_MAX_ELEMENTS)
            return -1;
    }
    return size;
}

/* Validates a shape; on error records a message naming `what`. */
TGI_HIDDEN tg_status tgi_check_shape(tg_ctx *ctx, const char *what, int ndim, const int64_t *shape);
/* count zeroed floats of persistent storage (gradient buffers of persistent leaves). */
TGI_HIDDEN float *tgi_persistent_floats(tg_ctx *ctx, int64_t count);
/* Fills the shape fields of t from (ndim, shape). */
TGI_HIDDEN void tgi_set_shape(tg_tensor *t, int ndim, const int64_t *shape);
/* Allocates a tensor (struct + data, data uninitialised) in the tape's arena. */
TGI_HIDDEN tg_tensor *tgi_tape_tensor(tg_tape *tape, int ndim, const int64_t *shape);
/* Sets every field of a tape tensor t of the current step: no gradient, no label, not on the
 * tape (node -1), made by `producer` (NULL: a leaf).
 * `dims` has TG_MAX_DIMS entries, 1 past ndim, as in a tensor (so it is copied whole, without a
 * test per dim). requires_grad and grad_room (its gradient buffer): for a recorded output. Defined after
 * struct tg_tape, below. */
static inline void tgi_init_tape_tensor(tg_tensor *t, tg_tape *tape, float *data, int ndim,
                                        const int64_t *shape, int64_t size, const void *producer,
                                        bool requires_grad, float *grad_room);
/* A printable node name into buf: label, else "<op>#<node>", else "leaf". */
TGI_HIDDEN const char *tgi_node_name(const tg_tensor *t, char *buf, size_t size);
/* "'a' [2,3], 'b' [3]": the inputs of an op call on tape, for messages. An input of another
 * tape or step is not read (its memory may have been reused): it shows as "(not of this step)". */
TGI_HIDDEN void tgi_describe_inputs(char *buf, size_t size, const tg_tape *tape,
                                    tg_tensor *const *inputs, int n_inputs);
/* "[2,3]" */
TGI_HIDDEN char *tgi_format_shape(int ndim, const int64_t *shape, char *buf, size_t size);
/* Inline and without a loop (unused dims are 1, so all four compare): every binary op asks. */
static inline bool tgi_same_shape(const tg_tensor *a, const tg_tensor *b) {
    return ((a->ndim ^ b->ndim) | (a->shape[0] ^ b->shape[0]) | (a->shape[1] ^ b->shape[1]) |
            (a->shape[2] ^ b->shape[2]) | (a->shape[3] ^ b->shape[3])) == 0;
}

/* ---- tape ---------------------------------------------------------------------------------- */

/* One op call, in the tape's arena (one request: this struct, then, for a recorded call, the
 * inputs array and the attributes that backward needs after the caller's arrays are gone; its
 * output's header is a slot of the tape's header chunks, call.output).
 * Arena memory never moves, so forward and backward are handed &node->call itself: nothing is
 * copied per call, and an op or hook that records on the tape meanwhile cannot move it. */
typedef struct tgi_node {
    tg_op_call call;                 /* call.output: the output's header slot */
    const tgi_op *op;
    /* Set by tg_op_save_for_backward when the call is this node's (tg_tape.call_node), and
     * read only when it was: the bytes call.saved holds, and the tape's replay count when the
     * forward last took it (a replayed forward gets the same buffer back: tg_tape_replay
     * allocates nothing). */
    size_t saved_bytes;
    uint32_t saved_replay;
    /* A scalar node of the one-input fast path (record_unary): the request is 128 bytes, two
     * cache lines, holding after this struct the input pointer, the attribute, the output's
     * value and gradient, and the input's gradient room (TGI_SCALAR_ROOM_AT), which the walk
     * reads there rather than from the input's header (whose second line it then never
     * touches). A chain of scalar ops is this memory: 2,000 ops must fit in a 512 KiB L2. */
    bool scalar_unary;
} tgi_node;

/* The layout of a scalar fast-path node (bytes from the node): input pointer, the attribute
 * (its 4 live bytes: the fast path takes no other), the output's value, its gradient, then
 * the input's gradient room (float *). */
#define TGI_UNARY_INPUT_AT sizeof(tgi_node)
#define TGI_UNARY_ATTR_AT (TGI_UNARY_INPUT_AT + sizeof(tg_tensor *))
#define TGI_UNARY_DATA_AT (TGI_UNARY_ATTR_AT + 8)
#define TGI_SCALAR_ROOM_AT (TGI_UNARY_DATA_AT + 2 * sizeof(float))
#define TGI_UNARY_NODE_BYTES ((size_t)128)
_Static_assert(sizeof(tgi_node) == 96 && TGI_SCALAR_ROOM_AT + sizeof(float *) == TGI_UNARY_NODE_BYTES,
               "a scalar fast-path node is two cache lines");

static inline float *tgi_scalar_room(const tgi_node *node) {
    float *room;
    memcpy(&room, (const unsigned char *)node + TGI_SCALAR_ROOM_AT, sizeof room);
    return room;
}

/* Tensor headers of a tape live apart from its data, in chunks of fixed-size slots that are
 * only ever reused as tensor headers of the same tape: a stale tensor pointer always lands on a
 * header, never on float data or a node. Each chunk has two halves, one for even steps and one
 * for odd steps, so a step never overwrites the headers of the step before it: a tensor kept
 * across one tg_tape_reset still reads its own, older, generation. One allocation serves both
 * halves, so the second step allocates nothing the first did not. */
/* A header's slot: 128 bytes on a 64-byte boundary, so that what the replayed forward and the
 * walk read of a header (data, grad, shape, size and the flags: its first 64 bytes) is one
 * cache line, not two for 7 headers in 8 as with 120-byte slots; the second line (node,
 * generation, tape, ...) is for recording and the checks. */
typedef struct tgi_header_slot {
    _Alignas(64) tg_tensor tensor;
} tgi_header_slot;
_Static_assert(sizeof(tgi_header_slot) == 128 && offsetof(tg_tensor, size) < 64 &&
                   offsetof(tg_tensor, grad_unset) < 64,
               "a header slot is two cache lines, the first with what the passes read");

typedef struct tgi_header_chunk {
    struct tgi_header_chunk *next;
    int64_t half;            /* slots per half */
    char (*labels)[TG_LABEL_MAX]; /* 2 * half, after the slots: slot i's label storage, apart
                                     so that an unlabelled step never touches it */
    tgi_header_slot *slots;  /* 2 * half, 64-byte aligned in the chunk's allocation: [0, half)
                                even steps, [half, 2 half) odd steps */
} tgi_header_chunk;

/* Where the next header comes from, to rewind to (gradient checking's repeated forwards). */
typedef struct tgi_header_mark {
    tgi_header_chunk *chunk;
    tgi_header_slot *cursor, *limit;
} tgi_header_mark;

/* The fields of a tape tensor's header that are the same for every tensor of a step, in the
 * order tg_tensor has them (node, generation, tape, ctx, label): a new header gets them in one
 * 32-byte copy from the tape's prototype (tgi_init_tape_tensor). */
typedef struct tgi_step_fields {
    int32_t node;            /* -1: not on the tape (record sets it once it is) */
    uint32_t generation;
    tg_tape *tape;
    tg_ctx *ctx;
    const char *label;       /* tgi_no_label */
} tgi_step_fields;

#define TGI_STEP_FIELDS_AT offsetof(tg_tensor, node)
_Static_assert(offsetof(tg_tensor, generation) - TGI_STEP_FIELDS_AT ==
                       offsetof(tgi_step_fields, generation) &&
                   offsetof(tg_tensor, tape) - TGI_STEP_FIELDS_AT ==
                       offsetof(tgi_step_fields, tape) &&
                   offsetof(tg_tensor, ctx) - TGI_STEP_FIELDS_AT == offsetof(tgi_step_fields, ctx) &&
                   offsetof(tg_tensor, label) - TGI_STEP_FIELDS_AT ==
                       offsetof(tgi_step_fields, label),
               "tgi_step_fields mirrors a run of tg_tensor");

/* The label of a tensor without one. */
TGI_HIDDEN extern const char tgi_no_label[1];
/* The storage of t's label (TG_LABEL_MAX bytes, NUL-terminated): for a tape tensor, the label
 * slot that goes with its header slot (autograd/headers.c); for a persistent tensor, room in
 * its block. Setting a label writes there and points t->label at it. */
TGI_HIDDEN char *tgi_label_room(tg_tensor *t);

typedef enum tgi_tape_state {
    TGI_TAPE_RECORDING,
    TGI_TAPE_CONSUMED,               /* backward has run; reset (or replay) before the next one */
    TGI_TAPE_REPLAY_FAILED           /* a replay stopped part-way: the outputs are of two passes */
} tgi_tape_state;

struct tg_tape {
    tg_ctx *ctx;
    tgi_arena arena;         /* data, nodes and gradients; tensor headers are in the chunks below */
    tgi_header_slot *header_cursor, *header_limit; /* the free slots of this step's half */
    tgi_header_chunk *header_first, *header_current;
    tgi_node **entries;      /* the recorded calls in execution order; entries[t->node] made t */
    int64_t n_entries;
    int64_t cap_entries;
    int no_grad_depth;
    tgi_tape_state state;
    uint32_t generation;
    tgi_step_fields step_fields; /* this step's (generation changes at reset) */
    int64_t step;
    char pending_label[TG_LABEL_MAX]; /* tg_tape_label_next; "" when none */
    tg_tensor **leaves;      /* leaves reached by the current backward (for their hooks) */
    int64_t n_leaves, cap_leaves;
    /* Replay (autograd/replay.c). The step's forward is what was recorded before its first
     * backward: forward_entries is n_entries then (-1 before), forward_unrecorded the count of
     * op calls computed without going on the tape by then (a replay would not redo them). */
    int64_t n_unrecorded;
    int64_t forward_entries, forward_unrecorded;
    int64_t replay_checked;  /* entries found replayable (no attribute-seeded op) so far */
    uint32_t replays;        /* tg_tape_replay calls on this tape, for tgi_node.saved_replay */
    bool replaying;
    /* A pass in progress (tg_tape_replay: replaying; tg_backward: walking) and the event of the
     * hook running on this tape, for tgi_refuse_in_pass; misused: a hook called something the
     * pass refused, so the pass stops when the hook returns. */
    bool walking, misused;
    const tg_hook_event *hook_event;
    tgi_node *call_node;     /* the node whose forward runs (the general record path, replay) */
    struct tg_tape *scratch; /* for the second-order VJPs of tg_grad's nodes (autograd/higher.c),
                                made on first use and kept: its arena is reused */
    /* Gradient checkpointing (autograd/recompute.c). recompute: where segments' functions run,
     * made on first use and kept; parent: on that tape, the tape it serves (its walks leave the
     * leaves' hooks and counts to the parent's); segment: on that tape, the segment whose
     * function is running (NULL otherwise). */
    struct tg_tape *recompute, *parent;
    struct tgi_segment *segment;
    tgi_retired retired;     /* tg_tape_free */
};

/* TG_ERR_STATE while tape is in tg_tape_replay or tg_backward, with a message saying that `what`
 * (tg_tape_reset, ...) was called there and from which hook; TG_OK otherwise. What would pull
 * the step from under the pass (reset, another replay or backward, a new op mid-replay) is
 * refused this way. */
TGI_HIDDEN tg_status tgi_refuse_in_pass(tg_tape *tape, const char *what);
/* Frees a tape the library made for itself outright (tg_tape_free keeps the struct: see
 * tgi_retired). */
TGI_HIDDEN void tgi_tape_destroy(tg_tape *tape); /* NULL: nothing */

static inline void tgi_init_tape_tensor(tg_tensor *t, tg_tape *tape, float *data, int ndim,
                                        const int64_t *shape, int64_t size, const void *producer,
                                        bool requires_grad, float *grad_room) {
    t->data = data;
    t->grad = NULL;
    memcpy(t->shape, shape, sizeof t->shape);
    t->size = size;
    t->ndim = ndim;
    t->requires_grad = requires_grad;
    t->persistent = false;
    t->grad_unset = false;
    t->grad_fresh = false;
    memcpy((unsigned char *)t + TGI_STEP_FIELDS_AT, &tape->step_fields, sizeof tape->step_fields);
    t->visit = 0;
    t->producer = producer;
    t->grad_room = grad_room;
}

/* The slow path of tgi_header_take: the next chunk's half (added if needed), or NULL with an
 * error recorded. */
TGI_HIDDEN tg_tensor *tgi_header_take_next(tg_tape *tape);
/* Starts this step's half of the header slots (after tape->generation changed). */
TGI_HIDDEN void tgi_header_rewind(tg_tape *tape);
TGI_HIDDEN void tgi_header_release(tg_tape *tape);

/* A header slot for a new tape tensor of the current step (uninitialised), or NULL. */
static inline tg_tensor *tgi_header_take(tg_tape *tape) {
    tgi_header_slot *slot = tape->header_cursor;
    if (slot == tape->header_limit) return tgi_header_take_next(tape);
    tape->header_cursor = slot + 1;
    return &slot->tensor;
}

static inline tgi_header_mark tgi_header_mark_get(const tg_tape *tape) {
    tgi_header_mark mark = {tape->header_current, tape->header_cursor, tape->header_limit};
    return mark;
}

static inline void tgi_header_mark_rewind(tg_tape *tape, tgi_header_mark mark) {
    tape->header_current = mark.chunk;
    tape->header_cursor = mark.cursor;
    tape->header_limit = mark.limit;
}

/* ---- gradient checkpointing (autograd/recompute.c) ---------------------------------------- */

/* The op ids of tg_grad's vjp nodes and of tg_recompute's nodes: neither is in the registry. */
#define TGI_OP_ID_VJP (-1)
#define TGI_OP_ID_RECOMPUTE (-2)
typedef struct tgi_segment tgi_segment;
/* While a segment's function runs on tape (tape->segment set), an op seeded by an attribute or
 * writing its inputs goes through here first: it may get the attributes of the first run, or
 * copies of the inputs it writes (*inputs, *attrs replaced). */
TGI_HIDDEN tg_status tgi_segment_call(tg_tape *tape, const tgi_op *op, tg_tensor *const **inputs,
                                      int n_inputs, const tg_attr_value **attrs);
/* A segment's function is running again, in backward (tg_recomputing). */
TGI_HIDDEN bool tgi_recomputing(const tg_tape *tape);
/* A module set to recompute makes its segments here: recording with gradients, and not inside
 * another segment's function (segments do not nest; the outer one recomputes it already). */
static inline bool tgi_segment_possible(const tg_tape *tape) {
    return tape->no_grad_depth == 0 && !tape->segment;
}
/* The reverse walk from entry `last` (autograd/walk.c): the gradients of its outputs set. */
TGI_HIDDEN tg_status tgi_walk(tg_tape *tape, int64_t last);

/* Runs op on inputs (attrs already validated and complete) and records it when needed. */
TGI_HIDDEN tg_tensor *tgi_record(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                                 int n_inputs, const tg_attr_value *attrs);
/* tgi_record for one input, made faster by knowing it (every unary op). The op has no attribute
 * (attr_bits is ignored) or one of 4 bytes (f32 or i32), passed as its bits: the caller builds
 * no attribute array, so its call is a jump. */
TGI_HIDDEN tg_tensor *tgi_record1(tg_tape *tape, const tgi_op *op, tg_tensor *x,
                                  uint32_t attr_bits);
/* tgi_record for two inputs and no attribute (add, mul, ...), its loops unrolled. */
TGI_HIDDEN tg_tensor *tgi_record2(tg_tape *tape, const tgi_op *op, tg_tensor *a, tg_tensor *b);
/* The node bytes tgi_op.unary_node_bytes holds for op (0: not for the fast path). */
TGI_HIDDEN size_t tgi_unary_node_bytes(const tgi_op *op);
/* The op that produced t, or NULL for a leaf. */
TGI_HIDDEN const tgi_op *tgi_producer(const tg_tensor *t);

/* ---- hooks and anomaly mode (autograd/hooks.c, autograd/anomaly.c) ------------------------- */

/* The library's own work on a tape of its own (tg_grad's scratch tape, a gradient check): what
 * the context shows the user (hooks, recorders, anomaly mode, the count of backward passes) is
 * set aside while it runs, then put back as it was. */
typedef struct tgi_isolation {
    tg_ctx *ctx;
    int live_hooks[2];
    int watch_forward;
    int anomaly;
    uint64_t backward_passes;
} tgi_isolation;

static inline tgi_isolation tgi_isolate(tg_ctx *ctx) {
    tgi_isolation scope = {ctx, {ctx->live_hooks[0], ctx->live_hooks[1]}, ctx->watch_forward,
                           ctx->anomaly, ctx->backward_passes};
    ctx->live_hooks[0] = ctx->live_hooks[1] = 0;
    ctx->watch_forward = 0;
    ctx->anomaly = 0;
    return scope;
}

static inline void tgi_unisolate(const tgi_isolation *scope) {
    tg_ctx *ctx = scope->ctx;
    ctx->live_hooks[0] = scope->live_hooks[0];
    ctx->live_hooks[1] = scope->live_hooks[1];
    ctx->watch_forward = scope->watch_forward;
    ctx->anomaly = scope->anomaly;
    ctx->backward_passes = scope->backward_passes;
}

/* Recomputes ctx->watch_forward after anomaly mode or the hooks changed. */
static inline void tgi_update_watch(tg_ctx *ctx) {
    ctx->watch_forward = (ctx->anomaly | ctx->live_hooks[TG_PASS_FORWARD]) != 0;
}
/* Runs the hooks of pass that match node, on values. */
TGI_HIDDEN tg_status tgi_fire_hooks(tg_tape *tape, tg_tensor *node, tg_pass pass, float *values);
/* Whether a live name-pattern hook (either pass) matches label: a layer that can compute a
 * value inside a fused op or as a node of its own (attention's probabilities) makes the node
 * only when someone looks at it. */
TGI_HIDDEN bool tgi_label_watched(const tg_ctx *ctx, const char *label);
/* Forgets the node hooks of a tape (at reset and free). */
TGI_HIDDEN void tgi_drop_tape_hooks(tg_ctx *ctx, const tg_tape *tape);
TGI_HIDDEN void tgi_hooks_release(tg_ctx *ctx);
/* Remembers a leaf reached by the current backward pass, once. */
TGI_HIDDEN tg_status tgi_note_leaf(tg_tape *tape, tg_tensor *leaf);
/* What watches a computed output (ctx->watch_forward): the anomaly check, then the forward
 * hooks; TG_OK or the status that stops the step (autograd/tape.c). */
TGI_HIDDEN tg_status tgi_watch_forward(tg_tape *tape, tgi_node *node);
/* Anomaly checks: the first non-finite value of an op's output (forward; counted at
 * TG_ANOMALY_COUNTS), or of the gradients its VJP wrote (backward, TG_ANOMALY_FULL). */
TGI_HIDDEN tg_status tgi_check_forward(tg_tape *tape, const tgi_node *node);
TGI_HIDDEN tg_status tgi_check_backward(tg_tape *tape, const tgi_node *node);
/* TG_ANOMALY_COUNTS in backward: a node's complete gradient; the leaves' at the walk's end. */
TGI_HIDDEN void tgi_count_node_grad(tg_tape *tape, const tgi_node *node);
TGI_HIDDEN void tgi_count_leaf_grads(tg_tape *tape);
/* Observers of anomaly stops (recorders, the dump); false when all slots are taken. */
TGI_HIDDEN bool tgi_anomaly_observe(tg_ctx *ctx, tgi_anomaly_observer fn, void *user);
TGI_HIDDEN void tgi_anomaly_unobserve(tg_ctx *ctx, tgi_anomaly_observer fn, void *user);
TGI_HIDDEN void tgi_anomaly_release(tg_ctx *ctx);

/* ---- shared argument checks (autograd/validate.c) ---------------------------------------- */

/* True for a tape tensor of an earlier step of its tape (read from the tensor itself). */
TGI_HIDDEN bool tgi_tensor_stale(const tg_tensor *t);
/* TG_ERR_STATE with a message naming `what` (never the tensor) for a stale t, else TG_OK. */
TGI_HIDDEN tg_status tgi_refuse_stale(const tg_tensor *t, const char *what);
/* The same for the first stale tensor of list[0..n) (NULLs skipped), "<what>: tensor <i>: ...",
 * recorded on ctx (NULL: the tensor's). */
TGI_HIDDEN tg_status tgi_refuse_stale_list(tg_ctx *ctx, tg_tensor *const *list, int n,
                                           const char *what);
/* TG_ERR_INVALID when a name of len bytes is longer than a label holds (TG_LABEL_MAX - 1):
 * "<what>: <kind> '<its start>...' is <len> bytes long; names are at most 63 bytes"; TG_OK
 * otherwise. Names are refused, never cut: a cut name is another name (or another's). */
TGI_HIDDEN tg_status tgi_check_name_length(tg_ctx *ctx, const char *what, const char *kind,
                                           const char *name, size_t len);
/* What tg_tape_label_next leaves pending when it refused the label: the next op fails. */
#define TGI_LABEL_REFUSED '\x01'
/* TG_ERR_INVALID with a message for a NULL name, else TG_OK. */
TGI_HIDDEN tg_status tgi_check_name(tg_ctx *ctx, const char *what, const char *name);
/* A file descriptor reading path, which must be a regular file (a directory, device or FIFO is
 * refused, without blocking), and its size; -1 with "<what> '<path>': ..." recorded. */
TGI_HIDDEN int tgi_open_input(tg_ctx *ctx, const char *what, const char *path, uint64_t *size);

/* ---- diagnostics (diagnostics/onset.c) ---------------------------------------------------- */

/* Writes report->summary from the report's findings. */
TGI_HIDDEN void tgi_onset_summarize(tg_onset_report *report, const tg_onset_opts *opts);

/* ---- registry access (ops/registry.c) ------------------------------------------------------ */

TGI_HIDDEN const tgi_op *tgi_op_by_id(const tg_ctx *ctx, int op_id);
TGI_HIDDEN void tgi_registry_release(tg_ctx *ctx);

/* ---- gradient checking (autograd/gradcheck.c) ---------------------------------------------- */

/* An input gradient that may be fresh (tgi_op.fresh_grads), made ready to be added into:
 * zeroed, and its flag cleared, when it is. For the paths of such an op that accumulate. */
TGI_HIDDEN void tgi_grad_settle(tg_ctx *ctx, tg_tensor *t);

TGI_HIDDEN tg_status tgi_gradcheck_op(tg_ctx *ctx, const tgi_op *op, int example_index,
                                      const tg_gradcheck_opts *opts, tg_gradcheck_result *result);
/* Second-order checks of one example (autograd/gradcheck2.c), after the first-order one. */
TGI_HIDDEN tg_status tgi_gradcheck_op2(tg_ctx *ctx, const tgi_op *op, int example_index,
                                       const tg_gradcheck_opts *opts, tg_gradcheck_result *result);
/* Second-order checks of a whole function (tg_gradcheck_function at order 2). */
TGI_HIDDEN tg_status tgi_gradcheck_function2(tg_ctx *ctx, tg_gradcheck_fn fn, void *user,
                                             tg_tensor *const *inputs, int n_inputs,
                                             const tg_gradcheck_opts *opts,
                                             tg_gradcheck_result *result);
/* Counts one compared element into result (check: "gradient", "jvp", ...). */
TGI_HIDDEN void tgi_gradcheck_compare(tg_gradcheck_result *result, const tg_gradcheck_opts *opts,
                                      const char *check, int input, int64_t index,
                                      double analytic, double numeric);
/* TG_OK when eps, atol and rtol are finite and > 0 and max_elements >= 0; else the message
 * names `what` ("gradcheck 'exp'", "gradcheck_function"). */
TGI_HIDDEN tg_status tgi_check_gradcheck_opts(tg_ctx *ctx, const char *what,
                                              const tg_gradcheck_opts *opts);

#endif /* TAPEGRAD_INTERNAL_H */
