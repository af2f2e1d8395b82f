/*
 * ops/kernels.h — generators for elementwise ops, so each op is one line with its forward and
 * its derivative side by side (micrograd's habit) and the loops are written once.
 *
 * UNARY_OP(name, y, dy_dx): inside the expressions `x` is the input element, `y` the output
 * element (backward only), `attr` the attribute array. The backward adds g * dy_dx.
 *
 * BINARY_OP(name, y, dL_da, dL_db): `a`, `b` are the (broadcast) input elements and `g` the
 * upstream gradient element (backward only). Gradients of stretched inputs accumulate, which is
 * exactly the sum over the broadcast dims.
 *
 * The unary loops take `restrict` parameters (an output never shares memory with an input,
 * nor an input's gradient with the output's; compilers honour restrict on parameters, not on
 * locals): attributes then stay in registers and the overlap tests the compiler would run
 * before every loop, which for the scalars of a long chain cost more than the loop, go away.
 * The two input gradients of a binary op may be one buffer (x * x): no restrict there.
 *
 * A unary op on one element does not enter its loop, which is kept out of line so that only
 * tensors of more than one element pay for its register saves and vector set-up: scalar
 * chains are where the tape's per-op cost shows, and there the set-up cost more than the math.
 */
#ifndef TAPEGRAD_KERNELS_H
#define TAPEGRAD_KERNELS_H

#include "ops/ops.h"

/* Elementwise loops longer than 2 grains are spread over the context's threads (each element
 * is computed on its own, so the cut cannot change a result); shorter ones run here, with no
 * more cost than a call. */
#define TGI_ELEMENTWISE_GRAIN ((int64_t)1 << 15)
#define TGI_ELEMENTWISE(CALL, N, RANGE_FN)                                                      \
    do {                                                                                        \
        if ((N) < 2 * TGI_ELEMENTWISE_GRAIN) RANGE_FN((void *)(CALL), 0, (N));                  \
        else tgi_parallel_for((CALL)->tape->ctx, (N), TGI_ELEMENTWISE_GRAIN, RANGE_FN,          \
                              (void *)(CALL));                                                  \
    } while (0)

#define UNARY_OP(NAME, Y_EXPR, DYDX_EXPR)                                                       \
    TGI_NOINLINE static void NAME##_forward_loop(const float *restrict xs, float *restrict ys,  \
                                                 int64_t n,                                     \
                                                 const tg_attr_value *restrict attr) {          \
        (void)attr;                                                                             \
        for (int64_t i = 0; i < n; i++) {                                                       \
            float x = xs[i];                                                                    \
            ys[i] = (Y_EXPR);                                                                   \
        }                                                                                       \
    }                                                                                           \
    static void NAME##_forward_range(void *arg, int64_t begin, int64_t end) {                   \
        const tg_op_call *call = arg;                                                           \
        NAME##_forward_loop(call->inputs[0]->data + begin, call->output->data + begin,          \
                            end - begin, call->attrs);                                          \
    }                                                                                           \
    /* More than one element: the loop here, or over the threads (kept apart so the one-element \
     * path below needs no stack frame: its other paths are tail calls). */                    \
    TGI_NOINLINE static tg_status NAME##_forward_many(tg_op_call *call, int64_t n) {            \
        if (n < 2 * TGI_ELEMENTWISE_GRAIN)                                                      \
            NAME##_forward_loop(call->inputs[0]->data, call->output->data, n, call->attrs);     \
        else                                                                                    \
            tgi_parallel_for(call->tape->ctx, n, TGI_ELEMENTWISE_GRAIN, NAME##_forward_range,   \
                             call);                                                             \
        return TG_OK;                                                                           \
    }                                                                                           \
    /* One element: the scalar path below, and recording's and replay's for a scalar node     \
     * (tgi_op.scalar_forward), so both give the same numbers */                               \
    static float NAME##_scalar_forward(float x, const tg_attr_value *attr) {                    \
        (void)attr;                                                                             \
        return (Y_EXPR);                                                                        \
    }                                                                                           \
    static tg_status NAME##_forward(tg_op_call *call) {                                         \
        int64_t n = call->output->size;                                                         \
        if (n != 1) return NAME##_forward_many(call, n);                                        \
        call->output->data[0] = NAME##_scalar_forward(call->inputs[0]->data[0], call->attrs);   \
        return TG_OK;                                                                           \
    }                                                                                           \
    TGI_NOINLINE static void NAME##_backward_loop(float *restrict gx, const float *restrict xs, \
                                                  const float *restrict ys,                     \
                                                  const float *restrict gy, int64_t n,          \
                                                  const tg_attr_value *restrict attr,           \
                                                  bool fresh) {                                 \
        (void)attr;                                                                             \
        if (fresh) /* gx holds nothing yet (grad_fresh): written, not added to */               \
            for (int64_t i = 0; i < n; i++) {                                                   \
                float x = xs[i], y = ys[i];                                                     \
                (void)x;                                                                        \
                (void)y;                                                                        \
                gx[i] = gy[i] * (DYDX_EXPR);                                                    \
            }                                                                                   \
        else                                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                   \
                float x = xs[i], y = ys[i];                                                     \
                (void)x;                                                                        \
                (void)y;                                                                        \
                gx[i] += gy[i] * (DYDX_EXPR);                                                   \
            }                                                                                   \
    }                                                                                           \
    static void NAME##_backward_range(void *arg, int64_t begin, int64_t end) {                  \
        const tg_op_call *call = arg;                                                           \
        const tg_tensor *in = call->inputs[0], *out = call->output;                             \
        NAME##_backward_loop(in->grad + begin, in->data + begin, out->data + begin,             \
                             out->grad + begin, end - begin, call->attrs, in->grad_fresh);      \
    }                                                                                           \
    TGI_NOINLINE static tg_status NAME##_backward_many(const tg_op_call *call) {                \
        tg_tensor *in = call->inputs[0];                                                        \
        const tg_tensor *out = call->output;                                                    \
        if (out->size < 2 * TGI_ELEMENTWISE_GRAIN)                                              \
            NAME##_backward_loop(in->grad, in->data, out->data, out->grad, out->size,           \
                                 call->attrs, in->grad_fresh);                                  \
        else                                                                                    \
            tgi_parallel_for(call->tape->ctx, out->size, TGI_ELEMENTWISE_GRAIN,                 \
                             NAME##_backward_range, (void *)call);                              \
        in->grad_fresh = false;                                                                 \
        return TG_OK;                                                                           \
    }                                                                                           \
    /* g * dy/dx of one element: the scalar path below, and the walk's for a scalar node      \
     * (tgi_op.scalar_vjp), so both give the same numbers */                                   \
    static float NAME##_scalar_vjp(float x, float y, float g, const tg_attr_value *attr) {      \
        (void)x;                                                                                \
        (void)y;                                                                                \
        (void)attr;                                                                             \
        return g * (DYDX_EXPR);                                                                 \
    }                                                                                           \
    static tg_status NAME##_backward(const tg_op_call *call) {                                  \
        const tg_tensor *in = call->inputs[0], *out = call->output;                             \
        if (!in->grad) return TG_OK;                                                            \
        if (out->size != 1) return NAME##_backward_many(call);                                  \
        in->grad[0] += NAME##_scalar_vjp(in->data[0], out->data[0], out->grad[0], call->attrs); \
        return TG_OK;                                                                           \
    }

/* Gives built-in op ID (a UNARY_OP) its scalar forward and VJP (ops/builtins.c calls the
 * files' setters). */
#define TGI_SET_SCALAR_RULES(CTX, ID, NAME)                                                     \
    ((CTX)->registry.ops[ID]->scalar_forward = NAME##_scalar_forward,                           \
     (CTX)->registry.ops[ID]->scalar_vjp = NAME##_scalar_vjp)

/* Runs BODY for every output element; ia, ib, io are the offsets into a, b and the output. */
#define FOR_EACH_BROADCAST(plan, ...)                                                          \
    do {                                                                                        \
        int64_t io = 0;                                                                         \
        for (int64_t i0 = 0; i0 < (plan).dims[0]; i0++)                                         \
            for (int64_t i1 = 0; i1 < (plan).dims[1]; i1++)                                     \
                for (int64_t i2 = 0; i2 < (plan).dims[2]; i2++) {                               \
                    int64_t ia = i0 * (plan).stride_a[0] + i1 * (plan).stride_a[1] +            \
                                 i2 * (plan).stride_a[2];                                       \
                    int64_t ib = i0 * (plan).stride_b[0] + i1 * (plan).stride_b[1] +            \
                                 i2 * (plan).stride_b[2];                                       \
                    for (int64_t i3 = 0; i3 < (plan).dims[3];                                   \
                         i3++, io++, ia += (plan).stride_a[3], ib += (plan).stride_b[3]) {      \
                        __VA_ARGS__                                                             \
                    }                                                                           \
                }                                                                               \
    } while (0)

/* Same shapes: element i of a, b and the output go together, and the loops are split over the
 * threads. Broadcasting: serial (a stretched input's gradient sums over many outputs). */
#define BINARY_OP(NAME, Y_EXPR, DA_EXPR, DB_EXPR)                                               \
    static void NAME##_forward_range(void *arg, int64_t begin, int64_t end) {                   \
        const tg_op_call *call = arg;                                                           \
        const float *as = call->inputs[0]->data, *bs = call->inputs[1]->data;                   \
        float *ys = call->output->data;                                                         \
        for (int64_t i = begin; i < end; i++) {                                                 \
            float a = as[i], b = bs[i];                                                         \
            ys[i] = (Y_EXPR);                                                                   \
        }                                                                                       \
    }                                                                                           \
    static tg_status NAME##_forward(tg_op_call *call) {                                         \
        const tg_tensor *ta = call->inputs[0], *tb = call->inputs[1];                           \
        const float *as = ta->data, *bs = tb->data;                                             \
        float *ys = call->output->data;                                                         \
        if (tgi_same_shape(ta, tb)) { /* no plan: the common case costs a compare */            \
            if (ta->size == 1) {                                                                \
                float a = as[0], b = bs[0];                                                     \
                ys[0] = (Y_EXPR);                                                               \
            } else {                                                                            \
                TGI_ELEMENTWISE(call, ta->size, NAME##_forward_range);                          \
            }                                                                                   \
            return TG_OK;                                                                       \
        }                                                                                       \
        tgi_broadcast plan;                                                                     \
        tgi_broadcast_plan(ta, tb, &plan);                                                      \
        FOR_EACH_BROADCAST(plan, {                                                              \
            float a = as[ia], b = bs[ib];                                                       \
            ys[io] = (Y_EXPR);                                                                  \
        });                                                                                     \
        return TG_OK;                                                                           \
    }                                                                                           \
    static void NAME##_backward_range(void *arg, int64_t begin, int64_t end) {                  \
        const tg_op_call *call = arg;                                                           \
        const float *as = call->inputs[0]->data, *bs = call->inputs[1]->data;                   \
        const float *gy = call->output->grad;                                                   \
        float *ga = call->inputs[0]->grad, *gb = call->inputs[1]->grad;                         \
        /* a fresh gradient (grad_fresh) holds nothing yet: written, not added to */            \
        bool fa = ga && call->inputs[0]->grad_fresh, fb = gb && call->inputs[1]->grad_fresh;    \
        for (int64_t i = begin; i < end; i++) {                                                 \
            float a = as[i], b = bs[i], g = gy[i];                                              \
            (void)a;                                                                            \
            (void)b;                                                                            \
            if (ga) ga[i] = (fa ? 0.0f : ga[i]) + (DA_EXPR);                                    \
            if (gb) gb[i] = (fb ? 0.0f : gb[i]) + (DB_EXPR);                                    \
        }                                                                                       \
    }                                                                                           \
    static tg_status NAME##_backward(const tg_op_call *call) {                                  \
        const tg_tensor *ta = call->inputs[0], *tb = call->inputs[1];                           \
        const float *as = ta->data, *bs = tb->data, *gy = call->output->grad;                   \
        float *ga = ta->grad, *gb = tb->grad;                                                   \
        if (tgi_same_shape(ta, tb)) {                                                           \
            if (ta->size == 1) {                                                                \
                float a = as[0], b = bs[0], g = gy[0];                                          \
                (void)a;                                                                        \
                (void)b;                                                                        \
                if (ga) ga[0] += (DA_EXPR);                                                     \
                if (gb) gb[0] += (DB_EXPR);                                                     \
            } else {                                                                            \
                TGI_ELEMENTWISE(call, ta->size, NAME##_backward_range);                         \
                call->inputs[0]->grad_fresh = call->inputs[1]->grad_fresh = false;              \
            }                                                                                   \
            return TG_OK;                                                                       \
        }                                                                                       \
        tgi_grad_settle(call->tape->ctx, call->inputs[0]); /* these paths add */                \
        tgi_grad_settle(call->tape->ctx, call->inputs[1]);                                      \
        tgi_broadcast plan;                                                                     \
        tgi_broadcast_plan(ta, tb, &plan);                                                      \
        FOR_EACH_BROADCAST(plan, {                                                              \
            float a = as[ia], b = bs[ib], g = gy[io];                                           \
            (void)a;                                                                            \
            (void)b;                                                                            \
            if (ga) ga[ia] += (DA_EXPR);                                                        \
            if (gb) gb[ib] += (DB_EXPR);                                                        \
        });                                                                                     \
        return TG_OK;                                                                           \
    }

/* A registry entry for a generated op with declarative examples. */
#define KERNEL_DEF(NAME, ARITY, SIGNATURE, INFER, EXAMPLES)                                     \
    {#NAME, ARITY, SIGNATURE, INFER, NAME##_forward, NAME##_backward, tgi_example_from_spec,    \
     (void *)&(EXAMPLES)}
/* The same with a forward-mode rule (tg_jvp_fn). */
#define KERNEL_DEF_JVP(NAME, ARITY, SIGNATURE, INFER, EXAMPLES, JVP)                            \
    {#NAME, ARITY, SIGNATURE, INFER, NAME##_forward, NAME##_backward, tgi_example_from_spec,    \
     (void *)&(EXAMPLES), JVP}

#endif /* TAPEGRAD_KERNELS_H */
