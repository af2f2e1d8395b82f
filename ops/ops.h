/*
 * ops/ops.h — what the built-in ops share: their ids, the broadcasting and reduction plans,
 * GEMM, declarative gradient-check examples, and the registry's internal calls.
 */
#ifndef TAPEGRAD_OPS_H
#define TAPEGRAD_OPS_H

#include "autograd/internal.h"

/* ---- built-in op ids ----------------------------------------------------------------------- */

/* Built-ins are registered first, in this order, so their id is their position here and the
 * typed wrappers (tg_add, ...) need no name lookup. ops/builtins.c checks the order at start-up. */
#define TGI_BUILTIN_OPS(X)                                                                       \
    X(ADD, add) X(SUB, sub) X(MUL, mul) X(DIV, div)                                              \
    X(NEG, neg) X(SCALE, scale) X(ADD_SCALAR, add_scalar) X(POW, pow) X(SQUARE, square)         \
    X(SQRT, sqrt) X(EXP, exp) X(LOG, log) X(ABS, abs)                                            \
    X(SIGMOID, sigmoid) X(TANH, tanh) X(RELU, relu) X(LEAKY_RELU, leaky_relu) X(ELU, elu)        \
    X(SOFTPLUS, softplus) X(GELU, gelu)                                                          \
    X(SOFTMAX, softmax) X(LOG_SOFTMAX, log_softmax) X(DROPOUT, dropout)                         \
    X(MATMUL, matmul) X(LINEAR, linear) X(TRANSPOSE, transpose)                                  \
    X(RESHAPE, reshape) X(CONCAT, concat) X(SLICE, slice)                                        \
    X(SUM, sum) X(MEAN, mean) X(SUM_AXIS, sum_axis) X(MEAN_AXIS, mean_axis)                      \
    X(MSE, mse) X(CROSS_ENTROPY, cross_entropy) X(BCE_WITH_LOGITS, bce_with_logits)              \
    X(BATCH_NORM, batch_norm) X(BATCH_NORM_RELU, batch_norm_relu) X(LAYER_NORM, layer_norm)     \
    X(CONV2D, conv2d) X(CONV1D, conv1d)                                                          \
    X(MAX_POOL2D, max_pool2d) X(AVG_POOL2D, avg_pool2d) X(GLOBAL_AVG_POOL2D, global_avg_pool2d)  \
    X(RNN_CELL, rnn_cell) X(LSTM_GATES, lstm_gates) X(LSTM_CELL, lstm_cell)                      \
    X(LSTM_HIDDEN, lstm_hidden) X(GRU_CELL, gru_cell)                                           \
    X(EMBEDDING, embedding) X(MASKED_FILL, masked_fill) X(MAX_AXIS, max_axis)                    \
    X(ARGMAX_AXIS, argmax_axis) X(PERMUTE, permute) X(CLAMP, clamp) X(SIN, sin) X(COS, cos)      \
    X(SOFTMAX_AXIS, softmax_axis) X(LOG_SOFTMAX_AXIS, log_softmax_axis)                          \
    X(ATTENTION, attention) X(ATTENTION_QKV, attention_qkv)                                      \
    X(UNARY_DERIVATIVE, unary_derivative) X(SELECT_CLASS, select_class)                        \
    X(MAX_AXIS_SELECT, max_axis_select) X(MAX_POOL2D_TANGENT, max_pool2d_tangent)                \
    X(GATES_TANGENT, gates_tangent) X(LSTM_CELL_TANGENT, lstm_cell_tangent)                      \
    X(LSTM_HIDDEN_TANGENT, lstm_hidden_tangent)

enum {
#define TGI_OP_ENUM(id, name) TGI_OP_##id,
    TGI_BUILTIN_OPS(TGI_OP_ENUM)
#undef TGI_OP_ENUM
    TGI_BUILTIN_COUNT
};

/* Definition tables, one per source file, in the order above. */
#define TGI_DEF_TABLE(file) \
    TGI_HIDDEN extern const tg_op_def tgi_##file##_defs[]; TGI_HIDDEN extern const int tgi_##file##_count;
TGI_DEF_TABLE(elementwise)
TGI_DEF_TABLE(activation)
TGI_DEF_TABLE(linalg)
TGI_DEF_TABLE(shape)
TGI_DEF_TABLE(reduce)
TGI_DEF_TABLE(loss)
TGI_DEF_TABLE(batch_norm)
TGI_DEF_TABLE(norm)
TGI_DEF_TABLE(conv)
TGI_DEF_TABLE(pool)
TGI_DEF_TABLE(recurrent)
TGI_DEF_TABLE(index)
TGI_DEF_TABLE(attention)
TGI_DEF_TABLE(derivative)
TGI_DEF_TABLE(index_tangent)
TGI_DEF_TABLE(pool_tangent)
TGI_DEF_TABLE(recurrent_tangent)
#undef TGI_DEF_TABLE
/* Set tgi_op.scalar_vjp of the files' UNARY_OP built-ins (after registration). */
TGI_HIDDEN void tgi_elementwise_scalar_rules(tg_ctx *ctx);
TGI_HIDDEN void tgi_activation_scalar_rules(tg_ctx *ctx);
TGI_HIDDEN void tgi_index_scalar_rules(tg_ctx *ctx);

/* Calls built-in op `id` (attrs complete and in signature order). */
TGI_HIDDEN tg_tensor *tgi_call_builtin(tg_tape *tape, int id, tg_tensor *const *inputs,
                                       int n_inputs, const tg_attr_value *attrs);
/* Shorthands for the typed wrappers. */
TGI_HIDDEN tg_tensor *tgi_binary(tg_tape *tape, int id, tg_tensor *a, tg_tensor *b);
/* Inline: every scalar op of a tape passes here, and a call more was ~4% of its cost. */
static inline tg_tensor *tgi_unary(tg_tape *tape, int id, tg_tensor *x) {
    return tape ? tgi_record1(tape, tape->ctx->registry.ops[id], x, 0) : NULL;
}

static inline tg_tensor *tgi_unary_f32(tg_tape *tape, int id, tg_tensor *x, float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits); /* the live member only: the tape copies no more */
    return tape ? tgi_record1(tape, tape->ctx->registry.ops[id], x, bits) : NULL;
}

/* Fused recurrent cells (ops/recurrent.c), for models/rnn.c. xp is the [B, T, G*H] input
 * projection, read in place at `step` (0-based); h [B,H]; w [G*H,H]; b [G*H]. */
TGI_HIDDEN tg_tensor *tgi_rnn_cell(tg_tape *tape, tg_tensor *xp, tg_tensor *h, tg_tensor *w,
                                   tg_tensor *b, int64_t step);
/* The LSTM's activated gates [B, 4H] (i, f, g, o), then c' = f*c + i*g and h' = o*tanh(c'). */
TGI_HIDDEN tg_tensor *tgi_lstm_gates(tg_tape *tape, tg_tensor *xp, tg_tensor *h, tg_tensor *w,
                                     tg_tensor *b, int64_t step);
TGI_HIDDEN tg_tensor *tgi_lstm_cell(tg_tape *tape, tg_tensor *gates, tg_tensor *c);
TGI_HIDDEN tg_tensor *tgi_lstm_hidden(tg_tape *tape, tg_tensor *gates, tg_tensor *c);
TGI_HIDDEN tg_tensor *tgi_gru_cell(tg_tape *tape, tg_tensor *xp, tg_tensor *h, tg_tensor *w,
                                   tg_tensor *b, int64_t step);

/* The tangents of the cells as fused ops (ops/recurrent_tangent.c), for their JVP rules; each
 * tangent argument may be NULL (zero: completed with zeros, or *out = NULL when all are).
 * gates_tangent: the tangent [B, G*H] of rnn_cell's (G = 1) or lstm_gates' (G = 4) output y
 * when xp, h, w, b move along xd, hd, wd, bd. */
TGI_HIDDEN tg_status tgi_gates_tangent(tg_tape *tape, tg_tensor *y, tg_tensor *xd, tg_tensor *h,
                                       tg_tensor *hd, tg_tensor *w, tg_tensor *wd, tg_tensor *bd,
                                       int64_t step, tg_tensor **out);
/* The tangent of lstm_cell(g, c) along (gd, cd): gd_f c + g_f cd + gd_i g_g + g_i gd_g, a
 * symmetric bilinear form (here g and c may be NULL as well). */
TGI_HIDDEN tg_status tgi_lstm_cell_tangent(tg_tape *tape, tg_tensor *g, tg_tensor *c,
                                           tg_tensor *gd, tg_tensor *cd, tg_tensor **out);
/* The tangent of lstm_hidden(g, c) along (gd, cd): gd_o tanh(c) + g_o tanh'(c) cd. */
TGI_HIDDEN tg_status tgi_lstm_hidden_tangent(tg_tape *tape, tg_tensor *g, tg_tensor *c,
                                             tg_tensor *gd, tg_tensor *cd, tg_tensor **out);

/* Softmax (log: log-softmax) of input 0 over `axis` (already checked) into the output, and its
 * VJP: for the last-axis ops (ops/activation.c) and the any-axis ones (ops/index.c). */
TGI_HIDDEN tg_status tgi_softmax_forward(tg_op_call *call, int axis, bool log);
TGI_HIDDEN tg_status tgi_softmax_backward(const tg_op_call *call, int axis, bool log);
/* Their JVP rule over `axis`, with ops on the output. */
TGI_HIDDEN tg_status tgi_softmax_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out,
                                     int axis, bool log);

/* y = x with its dims reordered (output dim d is input dim order[d]; order has TG_MAX_DIMS
 * entries, the identity past x's dims). forward: copies x->data into y->data; otherwise adds
 * y->grad into x->grad. For permute and transpose (ops/index.c). */
TGI_HIDDEN void tgi_permute_move(const tg_tensor *x, const tg_tensor *y, const int *order,
                                 bool forward);

/* Logits [..., C] with labels [...] (cross_entropy, select_class), or an error naming the op. */
TGI_HIDDEN tg_status tgi_check_labelled_rows(const tg_op_call *call);
/* The class index of row r (input 1 of the call, checked: a whole number in [0, classes)). */
TGI_HIDDEN tg_status tgi_label_at(const tg_op_call *call, int64_t r, int64_t classes,
                                  int64_t *index);

/* Calls a reduction over one axis with attributes "axis:i64,keepdim:bool" (ops/reduce.c). */
TGI_HIDDEN tg_tensor *tgi_call_axis(tg_tape *tape, int id, tg_tensor *x, int axis, bool keepdim);

/* ---- forward-mode rules (ops/derivative.c) ------------------------------------------------- */

/* g * f^(order)(x) for built-in unary op `op` (ab: its first two f32 attributes, or NULL),
 * recorded: the unary_derivative op. */
TGI_HIDDEN tg_tensor *tgi_derivative_times(tg_tape *tape, int op, int order, tg_tensor *x,
                                           tg_tensor *g, const tg_attr_value *ab);
/* The tangent of a normalisation (ops/norm.c; batch norm's groups for batch_norm and
 * batch_norm_relu, layer norm's otherwise): t[0..2] those of x, gamma and beta; running_mean and
 * running_var the fixed statistics (batch norm in evaluation), else NULL. */
TGI_HIDDEN tg_status tgi_normalize_jvp(const tg_op_call *call, tg_tensor *const *t,
                                       tg_tensor **out, float eps, tg_tensor *running_mean,
                                       tg_tensor *running_var);
/* The JVP rule of an elementwise unary op: f'(x) * t. */
TGI_HIDDEN tg_status tgi_jvp_elementwise(const tg_op_call *call, tg_tensor *const *t,
                                         tg_tensor **out);
/* The JVP rule of an op linear in its one input: the op itself, on the tangent. */
TGI_HIDDEN tg_status tgi_jvp_linear(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out);
/* a + b for tangents (NULL is zero: the other is returned; both NULL: NULL). */
TGI_HIDDEN tg_tensor *tgi_tangent_add(tg_tape *tape, tg_tensor *a, tg_tensor *b);
/* t stretched to like's shape (a broadcast input's tangent as the output's); NULL stays NULL. */
TGI_HIDDEN tg_tensor *tgi_tangent_expand(tg_tape *tape, tg_tensor *t, const tg_tensor *like);

/* ---- registry internals -------------------------------------------------------------------- */

#define TGI_ATTR_NAME_MAX 32

TGI_HIDDEN tg_status tgi_parse_signature(tg_ctx *ctx, const char *op_name, const char *signature,
                                         tgi_attr_spec *specs, char names[][TGI_ATTR_NAME_MAX],
                                         int *n_attrs);
TGI_HIDDEN const char *tgi_attr_type_name(tg_attr_type type);
/* tg_op_register with a destructor for op_data and the native flag. */
TGI_HIDDEN int tgi_op_register(tg_ctx *ctx, const tg_op_def *def,
                               void (*release)(tg_ctx *ctx, void *op_data), bool native);
/* Closes the plugins of a context (after its registry is gone). */
TGI_HIDDEN void tgi_plugins_release(tg_ctx *ctx);

/* ---- shared infer_shape helpers ------------------------------------------------------------ */

/* Output shaped like input 0. */
TGI_HIDDEN tg_status tgi_infer_like_input(const tg_op_call *call, tg_shape *out);
/* The broadcast shape of inputs 0 and 1 (the tape takes input 0's when the two are alike). */
TGI_HIDDEN tg_status tgi_infer_broadcast(const tg_op_call *call, tg_shape *out);
/* Output is a scalar (0 dims). */
TGI_HIDDEN tg_status tgi_infer_scalar(const tg_op_call *call, tg_shape *out);
/* Inputs 0 and 1 must have equal shapes (losses); output is a scalar. */
TGI_HIDDEN tg_status tgi_infer_pair_to_scalar(const tg_op_call *call, tg_shape *out);
/* Turns a possibly negative axis into 0..ndim-1, or fails naming the op. */
TGI_HIDDEN tg_status tgi_normalize_axis(const tg_op_call *call, int64_t axis, int ndim, int *out);
/* A reduction over the axis attrs[0] of input 0, kept as size 1 when attrs[1] (keepdim). */
TGI_HIDDEN tg_status tgi_infer_reduce_axis(const tg_op_call *call, tg_shape *out);
TGI_HIDDEN void tgi_shape_of(const tg_tensor *t, tg_shape *out);

/* Splits a tensor around one axis: outer (dims before) x n (the axis) x inner (dims after). */
typedef struct tgi_axis_split {
    int64_t outer, n, inner;
} tgi_axis_split;
TGI_HIDDEN tgi_axis_split tgi_split_at(const tg_tensor *t, int axis);
/* Input 0 split at the axis attrs[0] (negative counts from the end), once infer_shape passed. */
TGI_HIDDEN tgi_axis_split tgi_split_at_attr_axis(const tg_op_call *call);

/* ---- sliding windows (convolution and pooling) -------------------------------------------- */

/* Every attribute of the call is a window size, stride, dilation or group count (>= 1) or, when
 * its name starts with "pad", a padding (>= 0); fails naming the attribute otherwise. */
TGI_HIDDEN tg_status tgi_check_window_attrs(const tg_op_call *call);
/* PyTorch's output length (in + 2 pad - dilation (kernel - 1) - 1) / stride + 1, every step
 * checked (tgi_window_size, autograd/checked.h); fails naming the op, `what` ("height",
 * "length") and the field when an attribute is out of range, a step would overflow (a padding
 * or dilation near INT64_MAX) or the dilated kernel does not fit (output < 1). */
TGI_HIDDEN tg_status tgi_window_output(const tg_op_call *call, const char *what, int64_t in,
                                       int64_t kernel, int64_t stride, int64_t pad,
                                       int64_t dilation, int64_t *out);

/* A stride-1, undilated, ungrouped convolution whose output is as large as its input
 * (kernel (2 pad_h + 1) x (2 pad_w + 1)): ops/conv_same.c runs it without im2col when the
 * channel counts are small. x [n, c, h, w], weight [o, c, kh, kw]. */
typedef struct tgi_same_conv {
    int64_t n, c, o, h, w, kh, kw, ph, pw;
} tgi_same_conv;
TGI_HIDDEN bool tgi_conv_same_applies(const tgi_same_conv *s);
/* y = conv(x, w), no bias. */
TGI_HIDDEN tg_status tgi_conv_same_forward(const tg_op_call *call, const tgi_same_conv *s,
                                           const float *x, const float *w, float *y);
/* dx += and dw += the call's input and weight gradients (either may be NULL). */
TGI_HIDDEN tg_status tgi_conv_same_backward(const tg_op_call *call, const tgi_same_conv *s,
                                            float *dx, float *dw);

/* The output positions o in [0, out) whose tap o * stride + offset falls inside [0, in):
 * [*lo, *hi). Outside that range the tap reads padding. */
static inline void tgi_window_inside(int64_t offset, int64_t stride, int64_t in, int64_t out,
                                     int64_t *lo, int64_t *hi) {
    /* ceil(-offset / stride) without forming -offset + stride - 1, which overflows for a
     * stride near INT64_MAX; offset > INT64_MIN (it is a tap minus a valid padding) */
    int64_t first = offset >= 0 ? 0 : (-offset - 1) / stride + 1;
    int64_t last = in - 1 - offset < 0 ? 0 : (in - 1 - offset) / stride + 1;
    if (last > out) last = out;
    if (first > last) first = last;
    *lo = first;
    *hi = last;
}

/* ---- numerics shared by several ops ------------------------------------------------------- */

#include <math.h>

#include "ops/mathf.h"

/* The sigmoid of every op and cell (ops/mathf.h: f32 lanes, within 2.4 ulp, no call; in the
 * d20 MLP's step the double-precision tgi_sigmoidf was 6% of the time). */
static inline float tgi_sigmoid(float x) { return tgi_sigmoid_lanes(x); }

/* For one row: *max = its maximum, and the result is log(sum(exp(x - max))). Callers form
 * x - max in f32 (exact for nearby values), so a large common offset costs no precision, and
 * exp never sees a positive argument. */
TGI_HIDDEN float tgi_row_log_sum(const float *x, int64_t n, float *max);
/* The same over a lane of n elements `stride` apart (an axis that is not the last). */
TGI_HIDDEN float tgi_lane_log_sum(const float *x, int64_t n, int64_t stride, float *max);

/* ---- broadcasting -------------------------------------------------------------------------- */

/* The output shape of broadcasting a with b, padded to 4 dims on the left, with each input's
 * strides in that padded space (0 along a stretched dim). */
typedef struct tgi_broadcast {
    int64_t dims[TG_MAX_DIMS];
    int64_t stride_a[TG_MAX_DIMS];
    int64_t stride_b[TG_MAX_DIMS];
} tgi_broadcast;

/* Fails (naming the op) when the shapes do not broadcast. */
TGI_HIDDEN tg_status tgi_broadcast_shapes(const tg_op_call *call, const tg_tensor *a,
                                          const tg_tensor *b, tg_shape *out);
TGI_HIDDEN void tgi_broadcast_plan(const tg_tensor *a, const tg_tensor *b, tgi_broadcast *plan);

/* ---- GEMM ---------------------------------------------------------------------------------- */

/* Row-major C = alpha * op(A) * op(B) + beta * C, op(A) m x k, op(B) k x n, on ctx's threads
 * (ops/gemm.c). The backend is the BLAS ops/blas.c found, else tgi_gemm_portable. Call it from
 * inside a tgi_parallel_for range too: it then runs on that thread alone. */
TGI_HIDDEN void tgi_gemm(tg_ctx *ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                         float beta, float *c, int64_t ldc);
/* The arguments of one tgi_gemm call. */
typedef struct tgi_gemm_args {
    bool trans_a, trans_b;
    int64_t m, n, k;
    float alpha;
    const float *a;
    int64_t lda;
    const float *b;
    int64_t ldb;
    float beta;
    float *c;
    int64_t ldc;
} tgi_gemm_args;
#define TGI_GEMM_BATCH_MAX 4
/* Independent products (no product's C is another's A, B or C) in one parallel region instead
 * of one each: the pieces of all of them, each cut as tgi_gemm cuts it, so the numbers are
 * those of calling tgi_gemm on each in turn. */
TGI_HIDDEN void tgi_gemm_batch(tg_ctx *ctx, const tgi_gemm_args *products, int count);
/* C = bias + X W^T (bias added to every row first: the linear layer's order of additions), X
 * m x k, W n x k; the bias rows are written piece by piece on the threads, beside the product. */
TGI_HIDDEN void tgi_gemm_bias(tg_ctx *ctx, int64_t m, int64_t n, int64_t k, const float *x,
                              int64_t ldx, const float *w, int64_t ldw, const float *bias, float *c,
                              int64_t ldc);
/* Work on the block rows [row_begin, row_end) x columns [col_begin, col_end) of a product. */
typedef void (*tgi_gemm_epilogue)(void *arg, int64_t row_begin, int64_t row_end, int64_t col_begin,
                                  int64_t col_end);
/* tgi_gemm_bias (bias NULL: C = X W^T, C's old values not read), and `then` on each piece of C
 * right after it is computed, on the thread that computed it (the data still in its cache, no
 * second hand-off), when the product is cut into pieces; returns false, not having run `then`, when it is not (the caller then runs its pass
 * its own way: a product too small to cut may come with a pass large enough to share). */
TGI_HIDDEN bool tgi_gemm_bias_then(tg_ctx *ctx, int64_t m, int64_t n, int64_t k, const float *x,
                                   int64_t ldx, const float *w, int64_t ldw, const float *bias,
                                   float *c, int64_t ldc, tgi_gemm_epilogue then, void *arg);
/* dst[j] += the sum over rows of src[r * ld + j], in row order: each column is summed whole by
 * one thread, so the numbers are those of the serial loop at any thread count. */
TGI_HIDDEN void tgi_add_column_sums(tg_ctx *ctx, int64_t rows, int64_t cols, const float *src,
                                    int64_t ld, float *dst);
/* One call of the loaded BLAS on this thread; false (nothing done) when there is none or the
 * dims do not fit its ints (ops/blas.c). */
TGI_HIDDEN bool tgi_blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc);
/* Our own blocked GEMM: always compiled, so it is tested in BLAS builds too. */
TGI_HIDDEN void tgi_gemm_portable(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                  float alpha, const float *a, int64_t lda, const float *b,
                                  int64_t ldb, float beta, float *c, int64_t ldc);
/* tgi_gemm_portable without its run-time choice of kernels: the copy compiled for the build's
 * target (fmaf() calls where that has no FMA). The same bits; for tests. */
TGI_HIDDEN void tgi_gemm_portable_generic(bool trans_a, bool trans_b, int64_t m, int64_t n,
                                          int64_t k, float alpha, const float *a, int64_t lda,
                                          const float *b, int64_t ldb, float beta, float *c,
                                          int64_t ldc);
/* Whether tgi_gemm_portable runs its AVX2 + FMA copy: in a build whose x86 target lacks FMA,
 * on a CPU that has it. */
TGI_HIDDEN bool tgi_gemm_portable_has_clone(void);
/* The same products in the same order, element by element and without packing room: what a
 * thread that cannot have its room (out of memory) computes; tested against the blocked one. */
TGI_HIDDEN void tgi_gemm_in_order(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                  float alpha, const float *a, int64_t lda, const float *b,
                                  int64_t ldb, float beta, float *c, int64_t ldc);

/* Products small enough for L2, computed without packing A (ops/gemm_thin.c): k at most
 * TGI_THIN_MOST_K (its B panel lives on the stack), A and B together at most
 * TGI_THIN_MOST_FLOATS, not both transposed. tgi_gemm_thin returns false (nothing done) for a
 * product that does not fit; its numbers depend on the shapes alone. */
#define TGI_THIN_MOST_K 512
#define TGI_THIN_MOST_FLOATS (128 * 1024)
TGI_HIDDEN bool tgi_gemm_thin_fits(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k);
TGI_HIDDEN bool tgi_gemm_thin(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc);
/* Whether they were compiled with fused multiply-adds (what makes them worth offering). */
TGI_HIDDEN bool tgi_gemm_thin_fused(void);

/* ---- the GEMM kernels per shape class, measured once per machine (ops/blas_tune.c) ---- */

/* cblas_sgemm's signature */
typedef void (*tgi_sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta,
                             float *c, int ldc);
enum { TGI_GEMM_THIN, TGI_GEMM_WEIGHT_GRADIENT, TGI_GEMM_SHALLOW, TGI_GEMM_LARGE, TGI_GEMM_CLASSES };
enum { TGI_GEMM_KERNELS_MAX = 4 };
/* The class a product's kernels are chosen for, by its shape alone (so a product, and each
 * piece tgi_gemm cuts, always takes the same kernels), and the class's name. */
TGI_HIDDEN int tgi_gemm_class(bool trans_a, int64_t m, int64_t n, int64_t k);
TGI_HIDDEN const char *tgi_gemm_class_name(int cls);
/* The candidates: kernel 0 is the fixed table's choice; sgemm NULL means the portable GEMM. */
typedef struct tgi_gemm_kernels {
    int count;
    const char *name[TGI_GEMM_KERNELS_MAX];
    tgi_sgemm_fn sgemm[TGI_GEMM_KERNELS_MAX];
} tgi_gemm_kernels;
/* Per class: the kernel chosen (an index into the candidates) and each one's time over kernel
 * 0's (median of the rounds), when measured. */
typedef struct tgi_gemm_decision {
    int kernel[TGI_GEMM_CLASSES];
    double ratio[TGI_GEMM_CLASSES][TGI_GEMM_KERNELS_MAX];
    double seconds; /* the measurement's wall-clock time */
} tgi_gemm_decision;
/* Times the candidates on each class's sample products, alternating them; false when out of
 * memory (a few MB, freed before it returns). */
TGI_HIDDEN bool tgi_gemm_measure(const tgi_gemm_kernels *kernels, tgi_gemm_decision *out);
/* The cache file for key; false when there is to be none. */
TGI_HIDDEN bool tgi_gemm_cache_path(const char *key, char *path, size_t size);
/* The decision kept in the file at path, if it has this key and names a candidate per class. */
TGI_HIDDEN bool tgi_gemm_cache_read(const char *path, const char *key,
                                    const tgi_gemm_kernels *kernels, tgi_gemm_decision *out);
/* Writes it (atomically: a temporary file renamed); false with the reason in err. */
TGI_HIDDEN bool tgi_gemm_cache_write(const char *path, const char *key,
                                     const tgi_gemm_kernels *kernels, const tgi_gemm_decision *d,
                                     char *err, size_t err_size);

/* ---- gradient-check examples, declared as data --------------------------------------------- */

typedef enum tgi_domain {
    TGI_DOMAIN_ANY,        /* N(0,1) */
    TGI_DOMAIN_AWAY_ZERO,  /* +-U[0.2, 1.5]: away from the kinks of relu, abs, ... */
    TGI_DOMAIN_POSITIVE,   /* U[0.5, 2] */
    TGI_DOMAIN_UNIT,       /* U[0, 1] (probabilities, targets) */
    TGI_DOMAIN_LABELS,     /* whole numbers in [0, param) */
    TGI_DOMAIN_DISTINCT,   /* a shuffled grid 0.1 apart: no two elements within a
                              finite-difference step (max pooling) */
} tgi_domain;

typedef struct tgi_example_input {
    tg_shape shape;
    tgi_domain domain;
    float param;           /* the class count for TGI_DOMAIN_LABELS */
    bool constant;         /* true: no gradient wanted */
} tgi_example_input;

typedef struct tgi_example {
    int n_inputs;
    tgi_example_input inputs[TG_EXAMPLE_MAX_INPUTS];
    tg_attr_value attrs[TG_MAX_ATTRS];
} tgi_example;

/* What built-in ops put in op_data: their examples. */
typedef struct tgi_examples {
    int count;
    const tgi_example *list;
} tgi_examples;

/* The tg_example_fn of every built-in op: builds example `index` of call->op_data's list. */
TGI_HIDDEN tg_status tgi_example_from_spec(tg_tape *tape, void *op_data, int index,
                                           tg_tensor **inputs, int *n_inputs,
                                           tg_attr_value *attrs);

/* Shorthands for example tables. */
#define TGI_SHAPE(...) {(int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}}
/* TGI_INPUT(TGI_DOMAIN_ANY, 3, 4): a [3,4] example input that wants a gradient. */
#define TGI_INPUT(DOMAIN, ...) {.shape = TGI_SHAPE(__VA_ARGS__), .domain = (DOMAIN)}
/* An example input that wants no gradient (labels, running statistics). */
#define TGI_CONST_INPUT(DOMAIN, PARAM, ...) \
    {.shape = TGI_SHAPE(__VA_ARGS__), .domain = (DOMAIN), .param = (PARAM), .constant = true}
/* An example with one input and the given attribute values. */
#define TGI_ONE_INPUT(INPUT, ...) {.n_inputs = 1, .inputs = {INPUT}, .attrs = {__VA_ARGS__}}
#define TGI_EXAMPLES(array) {(int)(sizeof(array) / sizeof((array)[0])), (array)}

#endif /* TAPEGRAD_OPS_H */
