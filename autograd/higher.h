/*
 * autograd/higher.h — what the higher-order products share (autograd/higher.c: tg_jvp, tg_vjp,
 * tg_hvp; autograd/double_backward.c: tg_grad). Private.
 */
#ifndef TAPEGRAD_HIGHER_H
#define TAPEGRAD_HIGHER_H

#include "autograd/internal.h"

/* A tensor an op of this tape may read: of its current step, or persistent of its context. */
static inline bool tgi_of_this_step(const tg_tape *tape, const tg_tensor *t) {
    return t->tape ? t->tape == tape && t->generation == tape->generation : t->ctx == tape->ctx;
}

/* TG_OK for a tensor of this step (or persistent); else an error naming "<what>: <role> <index>". */
TGI_HIDDEN tg_status tgi_check_member(tg_tape *tape, const char *what, const char *role, int index,
                                      const tg_tensor *t);
/* The inputs a product is taken with respect to: valid, requiring a gradient (so the ops that
 * read them were recorded). A product that records (tg_jvp, tg_hvp, tg_grad) is refused inside
 * a no-grad scope, where it could record nothing. */
TGI_HIDDEN tg_status tgi_check_wrt(tg_tape *tape, const char *what, int n, tg_tensor *const *inputs,
                                   bool records);
/* TG_OK when output is an input or a recorded node; else an error saying it was not recorded. */
TGI_HIDDEN tg_status tgi_check_recorded(tg_tape *tape, const char *what, int n,
                                        tg_tensor *const *inputs, const tg_tensor *output);
/* Where t is in list[0..n), or -1. */
TGI_HIDDEN int tgi_find_tensor(tg_tensor *const *list, int n, const tg_tensor *t);
/* The entry of this step that computed t, or -1 (a leaf, a persistent tensor, not recorded). */
TGI_HIDDEN int64_t tgi_recorded_entry(const tg_tape *tape, const tg_tensor *t);
/* A constant tape tensor shaped like `like` over values, not copied (ops only read it). */
TGI_HIDDEN tg_tensor *tgi_borrowed(tg_tape *tape, const tg_tensor *like, const float *values);
/* node's JVP rule on the tangents of its inputs; *out NULL when none moves. */
TGI_HIDDEN tg_status tgi_node_tangent(tg_tape *tape, const char *what, tgi_node *node,
                                      tg_tensor *const *in_tangents, tg_tensor **out);

#endif /* TAPEGRAD_HIGHER_H */
