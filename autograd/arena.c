/*
 * autograd/arena.c — the tape's chunked bump allocator (the fast path is inline, in internal.h).
 *
 * Why chunks and not one growing block: growing would move memory that live tensors point
 * into. Why keep chunks on rewind: the next step of a training loop makes the same requests in
 * the same order, so it walks the same chunks and the allocator is never called again.
 */
#include "autograd/internal.h"

#include <string.h>

void tgi_arena_init(tgi_arena *arena, tg_ctx *ctx, size_t chunk_size) {
    memset(arena, 0, sizeof *arena);
    arena->ctx = ctx;
    arena->chunk_size = chunk_size;
}

static size_t chunk_alloc_bytes(size_t capacity) {
    return sizeof(tgi_chunk) + capacity + TGI_ARENA_ALIGN;
}

void tgi_arena_release(tgi_arena *arena) {
    tgi_chunk *chunk = arena->first;
    while (chunk) {
        tgi_chunk *next = chunk->next;
        tgi_free(arena->ctx, chunk, chunk_alloc_bytes(chunk->capacity));
        chunk = next;
    }
    arena->first = arena->current = NULL;
    arena->cursor = arena->limit = NULL;
    arena->reserved = 0;
}

static tgi_chunk *new_chunk(tgi_arena *arena, size_t capacity) {
    tgi_chunk *chunk = tgi_alloc(arena->ctx, chunk_alloc_bytes(capacity));
    if (!chunk) return NULL;
    chunk->next = NULL;
    chunk->capacity = capacity;
    chunk->used = 0;
    chunk->used_before = 0;
    chunk->base = (unsigned char *)(((uintptr_t)(chunk + 1) + TGI_ARENA_ALIGN - 1) &
                                    ~(uintptr_t)(TGI_ARENA_ALIGN - 1));
    arena->reserved += capacity;
    return chunk;
}

/* Makes `chunk` current with `used` bytes handed out. */
static void enter(tgi_arena *arena, tgi_chunk *chunk, size_t used) {
    arena->current = chunk;
    arena->cursor = chunk->base + used;
    arena->limit = chunk->base + chunk->capacity;
}

size_t tgi_arena_in_use(const tgi_arena *arena) {
    const tgi_chunk *c = arena->current;
    return c ? c->used_before + (size_t)(arena->cursor - c->base) : 0;
}

size_t tgi_arena_peak(const tgi_arena *arena) {
    size_t in_use = tgi_arena_in_use(arena);
    return in_use > arena->peak ? in_use : arena->peak;
}

/* Called before the in-use count can go down or the current chunk changes. */
static void note_peak(tgi_arena *arena) {
    arena->peak = tgi_arena_peak(arena);
}

void *tgi_arena_alloc_next(tgi_arena *arena, size_t bytes) {
    note_peak(arena);
    tgi_chunk *current = arena->current;
    size_t before = 0;
    if (current) {
        current->used = (size_t)(arena->cursor - current->base);
        before = current->used_before + current->used;
    }
    tgi_chunk *next = current ? current->next : arena->first;
    if (!next || next->capacity < bytes) {
        /* Inserted here, in front of a too-small successor, so the order of requests keeps
         * matching the order of chunks from one step to the next. */
        size_t capacity = bytes > arena->chunk_size ? bytes : arena->chunk_size;
        tgi_chunk *fresh = new_chunk(arena, capacity);
        if (!fresh) return NULL;
        fresh->next = next;
        if (current) current->next = fresh;
        else arena->first = fresh;
        next = fresh;
    }
    next->used_before = before;
    enter(arena, next, bytes);
    return next->base;
}

void tgi_arena_rewind(tgi_arena *arena) {
    note_peak(arena);
    if (!arena->first) return;
    arena->first->used_before = 0;
    enter(arena, arena->first, 0);
}

tgi_arena_mark tgi_arena_mark_get(const tgi_arena *arena) {
    tgi_arena_mark mark = {arena->current, tgi_arena_in_use(arena) -
                                               (arena->current ? arena->current->used_before : 0)};
    return mark;
}

void tgi_arena_mark_rewind(tgi_arena *arena, tgi_arena_mark mark) {
    if (!mark.chunk) {
        tgi_arena_rewind(arena);
        return;
    }
    note_peak(arena);
    enter(arena, mark.chunk, mark.used);
}
