/*
 * autograd/arena.c — the tape's chunked bump allocator.
 *
 * Why chunks and not one growing block: growing would move memory that live tensors point
 * into. Why keep chunks on rewind: the next step of a training loop makes the same requests in
 * the same order, so it walks the same chunks and the allocator is never called again.
 */
#include "autograd/internal.h"

#include <string.h>

#define ARENA_ALIGN 64

static size_t align_up(size_t n) {
    return (n + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1);
}

void tgi_arena_init(tgi_arena *arena, tg_ctx *ctx, size_t chunk_size) {
    memset(arena, 0, sizeof *arena);
    arena->ctx = ctx;
    arena->chunk_size = chunk_size;
}

static size_t chunk_alloc_bytes(size_t capacity) {
    return sizeof(tgi_chunk) + capacity + ARENA_ALIGN;
}

void tgi_arena_release(tgi_arena *arena) {
    tgi_chunk *chunk = arena->first;
    while (chunk) {
        tgi_chunk *next = chunk->next;
        tgi_free(arena->ctx, chunk, chunk_alloc_bytes(chunk->capacity));
        chunk = next;
    }
    arena->first = arena->current = NULL;
    arena->reserved = 0;
}

static tgi_chunk *new_chunk(tgi_arena *arena, size_t capacity) {
    tgi_chunk *chunk = tgi_alloc(arena->ctx, chunk_alloc_bytes(capacity));
    if (!chunk) return NULL;
    chunk->next = NULL;
    chunk->capacity = capacity;
    chunk->used = 0;
    chunk->used_before = 0;
    chunk->base = (unsigned char *)(((uintptr_t)(chunk + 1) + ARENA_ALIGN - 1) &
                                    ~(uintptr_t)(ARENA_ALIGN - 1));
    arena->reserved += capacity;
    return chunk;
}

size_t tgi_arena_in_use(const tgi_arena *arena) {
    const tgi_chunk *c = arena->current;
    return c ? c->used_before + c->used : 0;
}

/* Moves to the next chunk able to hold `bytes`, inserting a new one when the next is too small. */
static tgi_chunk *advance(tgi_arena *arena, size_t bytes) {
    tgi_chunk *current = arena->current;
    size_t before = current ? current->used_before + current->used : 0;
    tgi_chunk *next = current ? current->next : arena->first;
    if (!next || next->capacity < bytes) {
        size_t capacity = bytes > arena->chunk_size ? bytes : arena->chunk_size;
        tgi_chunk *fresh = new_chunk(arena, capacity);
        if (!fresh) return NULL;
        fresh->next = next;
        if (current) current->next = fresh;
        else arena->first = fresh;
        next = fresh;
    }
    next->used = 0;
    next->used_before = before;
    arena->current = next;
    return next;
}

void *tgi_arena_alloc(tgi_arena *arena, size_t bytes) {
    bytes = align_up(bytes ? bytes : 1);
    tgi_chunk *chunk = arena->current;
    if (!chunk || chunk->capacity - chunk->used < bytes) {
        chunk = advance(arena, bytes);
        if (!chunk) return NULL;
    }
    void *p = chunk->base + chunk->used;
    chunk->used += bytes;
    size_t in_use = chunk->used_before + chunk->used;
    if (in_use > arena->peak) arena->peak = in_use;
    return p;
}

void tgi_arena_rewind(tgi_arena *arena) {
    arena->current = arena->first;
    if (arena->first) {
        arena->first->used = 0;
        arena->first->used_before = 0;
    }
}

tgi_arena_mark tgi_arena_mark_get(const tgi_arena *arena) {
    tgi_arena_mark mark = {arena->current, arena->current ? arena->current->used : 0};
    return mark;
}

void tgi_arena_mark_rewind(tgi_arena *arena, tgi_arena_mark mark) {
    if (!mark.chunk) {
        tgi_arena_rewind(arena);
        return;
    }
    arena->current = mark.chunk;
    mark.chunk->used = mark.used;
}
