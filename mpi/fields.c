/*
 * mpi/fields.c — what the ranks must share, checked before they train together.
 *
 * Ranks started with different arguments do not fail where they differ: with other --steps one
 * rank leaves while another waits in a reduction, with another seed or data file they train
 * apart and report success. So the ranks gather named 64-bit values (counts, or digests of
 * configurations and data) and compare them: every rank sees every rank's values, so every
 * rank reaches the same verdict, naming the first differing field and the ranks and values that
 * differ. tg_dist_attach and tg_dist_broadcast_params check what the library knows (parameter
 * count, sizes and shapes, the configuration); the program adds what only it knows.
 */
#include "mpi/dist_internal.h"

#include <stdio.h>

/* At most this many fields per check, so that one rank's records fit an int count of bytes. */
#define MAX_FIELDS 4096

/* One field of one rank as gathered: a fixed size, so every rank sends the same bytes. */
typedef struct field_record {
    char name[TG_DIST_FIELD_NAME_MAX];
    int64_t value;
    int64_t digest;
} field_record;

/* A 64-bit mix over 8 bytes at a time (not cryptographic: it tells different inputs apart,
 * about 5 GB/s, so a data set of hundreds of MB is fingerprinted in a fraction of a second). */
uint64_t tg_dist_digest(uint64_t seed, const void *bytes, size_t size) {
    const unsigned char *p = bytes;
    if (!p) size = 0;
    uint64_t h = seed ^ 0x9E3779B97F4A7C15ull ^ (uint64_t)size * 0xFF51AFD7ED558CCDull;
    for (; size >= 8; size -= 8, p += 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        h = (h ^ word) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    if (size) {
        uint64_t word = 0;
        memcpy(&word, p, size);
        h = (h ^ word) * 0xBF58476D1CE4E5B9ull;
    }
    h ^= h >> 33;
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 29);
}

/* The local checks of a field list (TG_ERR_INVALID naming the field), the records of it. */
static tg_status local_records(tg_dist *dist, const tg_dist_field *fields, int n, const char *what,
                               field_record *records) {
    if (n < 0 || n > MAX_FIELDS || (n > 0 && !fields))
        return dist_error(dist->ctx, TG_ERR_INVALID, "%s: %d fields at %p (0..%d, non-NULL)", what, n,
                          (const void *)fields, MAX_FIELDS);
    for (int i = 0; i < n; i++) {
        const char *name = fields[i].name;
        size_t length = name ? strlen(name) : 0;
        if (!length || length >= TG_DIST_FIELD_NAME_MAX)
            return dist_error(dist->ctx, TG_ERR_INVALID, "%s: field %d's name is %s (1 to %d bytes)", what, i,
                              !name ? "NULL" : !length ? "empty" : "too long", TG_DIST_FIELD_NAME_MAX - 1);
        memcpy(records[i].name, name, length);
        records[i].value = fields[i].value;
        records[i].digest = fields[i].digest;
    }
    return TG_OK;
}

static void format_value(const field_record *record, char *out, size_t size) {
    if (record->digest) snprintf(out, size, "0x%016llx", (unsigned long long)record->value);
    else snprintf(out, size, "%lld", (long long)record->value);
}

/* The first field where some rank's record differs from rank 0's, as an error; TG_OK when none. */
static tg_status compare(tg_dist *dist, const field_record *all, int n, const char *what,
                         tg_status status, const char *advice) {
    for (int i = 0; i < n; i++) {
        const field_record *first = &all[i];
        int differ = 0, rank = -1;
        for (int r = 1; r < dist->size; r++) {
            const field_record *other = &all[(size_t)r * (size_t)n + (size_t)i];
            if (strcmp(other->name, first->name) != 0)
                return dist_error(dist->ctx, status, "%s: field %d is '%s' on rank 0 but '%s' on rank %d "
                                  "(every rank must pass the same fields in the same order)", what, i,
                                  first->name, other->name, r);
            if (other->value != first->value || other->digest != first->digest) {
                if (rank < 0) rank = r;
                differ++;
            }
        }
        if (rank < 0) continue;
        char theirs[32], ours[32], more[64] = "";
        format_value(&all[(size_t)rank * (size_t)n + (size_t)i], theirs, sizeof theirs);
        format_value(first, ours, sizeof ours);
        if (differ > 1) snprintf(more, sizeof more, " (%d ranks differ from rank 0)", differ);
        return dist_error(dist->ctx, status, "%s: the ranks disagree on %s: rank %d's %s = %s, rank 0's = "
                          "%s%s%s%s", what, first->name, rank, first->name, theirs, ours, more,
                          advice ? ": " : "", advice ? advice : "");
    }
    return TG_OK;
}

/* The counts of fields every rank passes, or which rank failed, agreed: one reduction of
 * [count, -count, -(lowest failed rank)] by MPI_MAX, no allocation (this round also carries a
 * rank's failure to allocate the second). */
static tg_status agree_on_counts(tg_dist *dist, int n, bool failed, const char *what, tg_status status) {
    int64_t big = (int64_t)1 << 40, counts[3] = {failed ? -1 : n, failed ? 1 : -n, failed ? -dist->rank : -big};
    tg_status reduced = dist_allreduce(dist, counts, 3, MPI_INT64_T, MPI_MAX, what);
    if (reduced != TG_OK) return reduced;
    if (failed) return tg_errcode(dist->ctx) != TG_OK ? tg_errcode(dist->ctx) : TG_ERR_STATE;
    if (counts[2] != -big)
        return dist_error(dist->ctx, TG_ERR_STATE, "%s: rank %lld failed before the check (its own message "
                          "says why)", what, (long long)-counts[2]);
    if (counts[0] == -counts[1]) return TG_OK;
    /* which ranks pass the most and the fewest: the lowest of each, the same words everywhere */
    int64_t who[2] = {n == counts[0] ? -dist->rank : -big, n == -counts[1] ? -dist->rank : -big};
    if ((reduced = dist_allreduce(dist, who, 2, MPI_INT64_T, MPI_MAX, what)) != TG_OK) return reduced;
    return dist_error(dist->ctx, status, "%s: the ranks pass different numbers of fields: rank %lld passes "
                      "%lld, rank %lld passes %lld", what, (long long)-who[0], (long long)counts[0],
                      (long long)-who[1], (long long)-counts[1]);
}

tg_status dist_require_same(tg_dist *dist, const tg_dist_field *fields, int n_fields, bool failed,
                            const char *what, tg_status status, const char *advice) {
    tg_status usable = dist_usable(dist);
    if (usable != TG_OK) return usable;
    int n = n_fields >= 0 && n_fields <= MAX_FIELDS ? n_fields : 0;
    size_t mine_bytes = (size_t)n * sizeof(field_record), all_bytes = mine_bytes * (size_t)dist->size;
    field_record *mine = dist_calloc(dist->ctx, mine_bytes), *all = dist_calloc(dist->ctx, all_bytes);
    if (!failed && (!mine || !all))
        failed = dist_error(dist->ctx, TG_ERR_NOMEM, "%s: out of memory for %d ranks' fields", what, dist->size);
    if (!failed) failed = local_records(dist, fields, n_fields, what, mine) != TG_OK;
    tg_status result = agree_on_counts(dist, n, failed, what, status);
    if (result == TG_OK && n > 0)
        result = dist_allgather(dist, mine, all, (int)mine_bytes, what);
    if (result == TG_OK) result = compare(dist, all, n, what, status, advice);
    dist_free(dist->ctx, mine, mine_bytes);
    dist_free(dist->ctx, all, all_bytes);
    return result;
}

tg_status tg_dist_check_same(tg_dist *dist, const tg_dist_field *fields, int n_fields) {
    if (!dist) return TG_ERR_INVALID;
    return dist_require_same(dist, fields, n_fields, false, "dist_check_same", TG_ERR_STATE,
                             "every rank must be started with the same values");
}

tg_status dist_param_fields(tg_dist *dist, tg_tensor *const *params, int n_params, const char *what,
                            tg_dist_field *fields) {
    fields[0] = (tg_dist_field){.name = "parameter count", .value = n_params};
    fields[1] = (tg_dist_field){.name = "parameter floats"};
    fields[2] = (tg_dist_field){.name = "parameter shapes", .digest = true};
    if (n_params < 0 || (n_params > 0 && !params))
        return dist_error(dist->ctx, TG_ERR_INVALID, "%s: %d parameters at %p", what, n_params, (void *)params);
    uint64_t shapes = 0;
    for (int i = 0; i < n_params; i++) {
        const tg_tensor *p = params[i];
        if (!p || !p->persistent || p->ctx != dist->ctx)
            return dist_error(dist->ctx, TG_ERR_INVALID, "%s: parameter %d is %s", what, i,
                              !p ? "NULL" : !p->persistent ? "not persistent (a tape tensor)"
                              : "of another context than tg_dist_init's (its backward passes "
                                "would never reach our hook)");
        fields[1].value += p->size;
        shapes = tg_dist_digest(shapes, &p->ndim, sizeof p->ndim);
        shapes = tg_dist_digest(shapes, p->shape, (size_t)p->ndim * sizeof p->shape[0]);
    }
    fields[2].value = (int64_t)shapes;
    return TG_OK;
}
