/*
 * autograd/headers.c — the slots that hold a tape's tensor headers (see tgi_header_chunk).
 *
 * Why apart from the arena: a tensor kept past tg_tape_reset is a pointer into memory the next
 * step reuses. When headers shared the arena with data, that pointer could land on floats or
 * on the middle of a node, and even the staleness check read garbage. Here a header slot is
 * only ever a header of this tape, so the check always reads a real generation, and the slots
 * of the step before the current one are never touched (the halves alternate by step).
 */
#include "autograd/internal.h"

/* Slots per half of the first chunk: a small model's step fits; each new chunk doubles. */
#define FIRST_HALF 256

static int parity(const tg_tape *tape) { return (int)(tape->generation & 1u); }

/* A chunk: its struct, its slots (aligned: up to 63 bytes of padding), their label storage. */
static size_t chunk_bytes(int64_t half) {
    return sizeof(tgi_header_chunk) + 63 + (size_t)(2 * half) * (sizeof(tgi_header_slot) + TG_LABEL_MAX);
}

const char tgi_no_label[1] = "";

char *tgi_label_room(tg_tensor *t) {
    if (!t->tape) return (char *)(t + 1); /* persistent: room after the header (context.c) */
    const tgi_header_slot *slot = (const tgi_header_slot *)t; /* the tensor is a slot's start */
    for (tgi_header_chunk *chunk = t->tape->header_first; chunk; chunk = chunk->next)
        if (slot >= chunk->slots && slot < chunk->slots + 2 * chunk->half)
            return chunk->labels[slot - chunk->slots];
    return NULL; /* not reached: every tape tensor's header is a slot of its tape */
}

/* Makes chunk's half of the current parity the free range. */
static tg_tensor *enter(tg_tape *tape, tgi_header_chunk *chunk) {
    tape->header_current = chunk;
    tape->header_cursor = chunk->slots + (parity(tape) ? chunk->half : 0);
    tape->header_limit = tape->header_cursor + chunk->half;
    return &tape->header_cursor->tensor;
}

tg_tensor *tgi_header_take_next(tg_tape *tape) {
    tgi_header_chunk *chunk = tape->header_current ? tape->header_current->next : tape->header_first;
    if (!chunk) {
        int64_t half = tape->header_current ? 2 * tape->header_current->half : FIRST_HALF;
        chunk = tgi_alloc(tape->ctx, chunk_bytes(half));
        if (!chunk) {
            tgi_error(tape->ctx, TG_ERR_NOMEM, "tape: out of memory for %lld tensor headers",
                      (long long)half);
            return NULL;
        }
        chunk->next = NULL;
        chunk->half = half;
        /* zeroed once: every label slot then holds a string, even one no label was set in */
        uintptr_t after = (uintptr_t)(chunk + 1);
        chunk->slots = (tgi_header_slot *)(void *)((unsigned char *)(chunk + 1) +
                                                   ((64 - after % 64) % 64));
        chunk->labels = (char (*)[TG_LABEL_MAX])(chunk->slots + 2 * half);
        memset(chunk->labels, 0, (size_t)(2 * half) * TG_LABEL_MAX);
        if (tape->header_current) tape->header_current->next = chunk;
        else tape->header_first = chunk;
    }
    tg_tensor *t = enter(tape, chunk);
    tape->header_cursor++;
    return t;
}

void tgi_header_rewind(tg_tape *tape) {
    if (tape->header_first) enter(tape, tape->header_first);
}

void tgi_header_release(tg_tape *tape) {
    for (tgi_header_chunk *chunk = tape->header_first, *next; chunk; chunk = next) {
        next = chunk->next;
        tgi_free(tape->ctx, chunk, chunk_bytes(chunk->half));
    }
    tape->header_first = tape->header_current = NULL;
    tape->header_cursor = tape->header_limit = NULL;
}
