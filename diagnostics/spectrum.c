/*
 * diagnostics/spectrum.c — Lanczos with full reorthogonalisation, and the eigen-decomposition
 * of the symmetric tridiagonal matrix it builds (implicit QL), for the curvature and Jacobian
 * instruments (diagnostics/curvature.c, diagnostics/jacobian.c).
 *
 * Why reorthogonalise: in floating point the three-term recurrence loses orthogonality as
 * soon as a Ritz value converges, and the lost directions come back as spurious copies of the
 * top eigenvalue ("ghosts"), which would read as multiplicity. The instruments run few steps
 * (tens) on large operators, so every basis vector is kept, and at every step the new vector's
 * overlap with each of them is measured (one pass over the basis) and, when any exceeds
 * sqrt(eps) of its norm, removed (classical Gram-Schmidt, repeated when it cancelled much: the
 * "twice is enough" rule). Below sqrt(eps) the basis is semi-orthogonal, which keeps the
 * tridiagonal the operator's projection to working precision (Simon 1984) at half the
 * traffic: the passes over the basis, not the arithmetic, are the cost (the basis of 20 steps
 * of a 1.2M-parameter model is 96 MB, read j times at step j).
 *
 * Vectors are kept in f32 (the models' precision; f64 would double both memory and traffic);
 * every inner product is summed in double, and the tridiagonal and its eigenproblem are double
 * throughout. The passes run on the context's threads in fixed chunks whose partial sums are
 * added in order, so a seed gives the same numbers on any thread count.
 */
#include "diagnostics/spectrum.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Elements per block of the blocked loops: a block of w stays in L1 while every basis vector
 * streams past it once. */
#define BLOCK 1024
/* Elements per item of the parallel passes (64 blocks: a quarter MB of each vector). */
#define CHUNK (64 * BLOCK)
/* A residual below this fraction of the operator's norm (as seen so far) means the Krylov
 * space closed: f32 products leave noise near 1e-6 of it, so anything smaller is no direction. */
#define CLOSED 1e-5
/* Semi-orthogonality: overlaps below sqrt(eps) of f32 (Simon 1984: the tridiagonal is then the
 * operator's projection to working precision, and no ghost appears) need no subtraction. The
 * products carry f32 noise near 1e-6 of |w| into every overlap, so most steps measure and go on;
 * the overlaps grow past this once a Ritz value has converged, and are then removed. */
#define SEMI 2.4e-4
/* Repeat the projection when it removed more than this fraction of w's norm (Daniel, Gragg,
 * Kaufman and Stewart's criterion, 1/sqrt(2)). */
#define REPEAT 0.7071

static int64_t chunk_count(int64_t n) { return (n + CHUNK - 1) / CHUNK; }

/* ---- storage -------------------------------------------------------------------------------- */

static void free_vectors(tgi_lanczos *lz) {
    if (lz->basis) tgi_free(lz->ctx, lz->basis, (size_t)lz->vectors * (size_t)lz->n * sizeof(float));
    if (lz->w) tgi_free(lz->ctx, lz->w, (size_t)lz->n * sizeof(float));
    lz->basis = lz->w = NULL;
    lz->vectors = 0;
}

static void free_steps(tgi_lanczos *lz) {
    size_t c = (size_t)lz->cap;
    if (lz->alpha) tgi_free(lz->ctx, lz->alpha, 4 * c * sizeof(double));
    if (lz->s) tgi_free(lz->ctx, lz->s, c * c * sizeof(double));
    lz->alpha = lz->beta = lz->theta = lz->h = lz->s = NULL;
    lz->cap = 0;
}

void tgi_lanczos_release(tgi_lanczos *lz) {
    if (!lz || !lz->ctx) return;
    free_vectors(lz);
    free_steps(lz);
    if (lz->partial) tgi_free(lz->ctx, lz->partial, lz->partial_room * sizeof(double));
    lz->partial = NULL;
    lz->partial_room = 0;
}

tg_status tgi_lanczos_reserve(tgi_lanczos *lz, tg_ctx *ctx, int64_t n, int vectors, int steps) {
    lz->ctx = ctx;
    if (n < 1 || vectors < 1 || steps < 1 || steps > TGI_LANCZOS_MAX_STEPS)
        return tgi_error(ctx, TG_ERR_INVALID, "lanczos: dimension %lld, %d vectors, %d steps",
                         (long long)n, vectors, steps);
    if (n != lz->n) free_vectors(lz);
    lz->n = n;
    if (vectors > lz->vectors) {
        if ((uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)vectors)
            return tgi_error(ctx, TG_ERR_NOMEM, "lanczos: %d vectors of %lld floats do not fit in "
                             "memory", vectors, (long long)n);
        size_t bytes = (size_t)vectors * (size_t)n * sizeof(float);
        float *basis = lz->basis ? tgi_realloc(ctx, lz->basis, (size_t)lz->vectors * (size_t)n *
                                               sizeof(float), bytes)
                                 : tgi_alloc(ctx, bytes);
        if (!basis)
            return tgi_error(ctx, TG_ERR_NOMEM, "lanczos: out of memory for %d vectors of %lld "
                             "floats (%.1f MB; fewer steps need less)", vectors, (long long)n,
                             (double)bytes / 1e6);
        lz->basis = basis;
        lz->vectors = vectors;
    }
    if (!lz->w && !(lz->w = tgi_alloc(ctx, (size_t)n * sizeof(float))))
        return tgi_error(ctx, TG_ERR_NOMEM, "lanczos: out of memory");
    if (steps > lz->cap) {
        free_steps(lz);
        size_t c = (size_t)steps;
        double *block = tgi_alloc(ctx, 4 * c * sizeof(double));
        double *s = tgi_alloc(ctx, c * c * sizeof(double));
        if (!block || !s) {
            if (block) tgi_free(ctx, block, 4 * c * sizeof(double));
            if (s) tgi_free(ctx, s, c * c * sizeof(double));
            return tgi_error(ctx, TG_ERR_NOMEM, "lanczos: out of memory");
        }
        lz->alpha = block, lz->beta = block + c, lz->theta = block + 2 * c, lz->h = block + 3 * c;
        lz->s = s;
        lz->cap = steps;
    }
    size_t partial = (size_t)chunk_count(n) * (size_t)(lz->cap + 1);
    if (partial > lz->partial_room) {
        double *room = lz->partial ? tgi_realloc(ctx, lz->partial, lz->partial_room * sizeof(double),
                                                 partial * sizeof(double))
                                   : tgi_alloc(ctx, partial * sizeof(double));
        if (!room) return tgi_error(ctx, TG_ERR_NOMEM, "lanczos: out of memory");
        lz->partial = room;
        lz->partial_room = partial;
    }
    return TG_OK;
}

/* ---- vectors -------------------------------------------------------------------------------- */

/* Eight running sums, not one: a single double accumulator is a chain of dependent adds (one
 * per 4 cycles), which made the reorthogonalisation cost more than the products it serves.
 * The lanes are fixed, so the result does not depend on the machine. */
double tgi_dot(const float *a, const float *b, int64_t n) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) lane[l] += (double)a[i + l] * b[i + l];
    double sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    for (; i < n; i++) sum += (double)a[i] * b[i];
    return sum;
}

void tgi_fill_rademacher(float *v, int64_t n, tg_rng *rng) {
    for (int64_t i = 0; i < n; i += 32) {
        uint32_t bits = tg_rng_u32(rng);
        int64_t end = i + 32 < n ? i + 32 : n;
        for (int64_t k = i; k < end; k++, bits >>= 1) v[k] = (bits & 1u) ? 1.0f : -1.0f;
    }
}

static void fill_random(float *v, int64_t n, tg_rng *rng, bool rademacher) {
    if (rademacher) {
        tgi_fill_rademacher(v, n, rng);
        return;
    }
    for (int64_t i = 0; i < n; i++) v[i] = (float)tg_rng_normal(rng);
}

static void scale_into(float *out, const float *v, int64_t n, double factor) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)(v[i] * factor);
}

/* The passes over the basis run on the context's threads, a chunk of CHUNK elements per item;
 * each chunk's partial sums go to lz->partial and are added in chunk order, so the numbers are
 * the same on any thread count. */
typedef struct pass {
    const tgi_lanczos *lz;
    int count;     /* basis vectors */
    float *w;      /* read (overlaps) or updated (subtract) */
    const double *coefficients; /* of the Ritz vector */
    float *out;
} pass;

/* Per chunk: <q_i, w> for i < count at partial[i], |w|^2 at partial[cap]; blocked so that a
 * block of w stays in L1 while the basis streams past it once. */
static void overlaps_range(void *arg, int64_t begin, int64_t end) {
    const pass *p = arg;
    const tgi_lanczos *lz = p->lz;
    const int64_t n = lz->n;
    for (int64_t c = begin; c < end; c++) {
        double *partial = lz->partial + c * (lz->cap + 1);
        for (int i = 0; i < p->count; i++) partial[i] = 0;
        partial[lz->cap] = 0;
        int64_t stop = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        for (int64_t b = c * CHUNK; b < stop; b += BLOCK) {
            int64_t len = stop - b < BLOCK ? stop - b : BLOCK;
            partial[lz->cap] += tgi_dot(p->w + b, p->w + b, len);
            for (int i = 0; i < p->count; i++)
                partial[i] += tgi_dot(lz->basis + (int64_t)i * n + b, p->w + b, len);
        }
    }
}

/* h[i] = <q_i, w> over the first `count` basis vectors; returns |w|^2 (the same pass). */
static double overlaps(const tgi_lanczos *lz, int count, float *w) {
    pass p = {lz, count, w, NULL, NULL};
    const int64_t chunks = chunk_count(lz->n);
    tgi_parallel_for(lz->ctx, chunks, 1, overlaps_range, &p);
    double squares = 0;
    for (int i = 0; i < count; i++) lz->h[i] = 0;
    for (int64_t c = 0; c < chunks; c++) {
        const double *partial = lz->partial + c * (lz->cap + 1);
        for (int i = 0; i < count; i++) lz->h[i] += partial[i];
        squares += partial[lz->cap];
    }
    return squares;
}

static void subtract_range(void *arg, int64_t begin, int64_t end) {
    const pass *p = arg;
    const tgi_lanczos *lz = p->lz;
    const int64_t n = lz->n;
    for (int64_t c = begin; c < end; c++) {
        int64_t stop = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        for (int64_t b = c * CHUNK; b < stop; b += BLOCK) {
            int64_t block_end = stop - b < BLOCK ? stop : b + BLOCK;
            for (int i = 0; i < p->count; i++) {
                const float *q = lz->basis + (int64_t)i * n;
                const double hi = lz->h[i];
                for (int64_t k = b; k < block_end; k++) p->w[k] = (float)(p->w[k] - hi * q[k]);
            }
        }
    }
}

/* w -= sum_i h[i] q_i (classical Gram-Schmidt: every h was taken from the same w). */
static void subtract(const tgi_lanczos *lz, int count, float *w) {
    pass p = {lz, count, w, NULL, NULL};
    tgi_parallel_for(lz->ctx, chunk_count(lz->n), 1, subtract_range, &p);
}

/* Orthogonalises w against the first `count` basis vectors; returns its norm afterwards. Every
 * call measures w's overlap with every basis vector (one pass over the basis); the subtraction,
 * a second pass, is made when an overlap exceeds SEMI of |w| (or always, when forced). */
static double orthogonalise(const tgi_lanczos *lz, int count, float *w, bool force) {
    double before = sqrt(overlaps(lz, count, w)), largest = 0;
    for (int i = 0; i < count; i++) largest = fmax(largest, fabs(lz->h[i]));
    if (!force && largest <= SEMI * before) return before;
    subtract(lz, count, w);
    double after = sqrt(tgi_dot(w, w, lz->n));
    if (force || after < REPEAT * before) {
        overlaps(lz, count, w);
        subtract(lz, count, w);
        after = sqrt(tgi_dot(w, w, lz->n));
    }
    return after;
}

/* ---- the run ---------------------------------------------------------------------------------- */

tg_status tgi_lanczos_run(tgi_lanczos *lz, int steps, tg_rng *rng, bool rademacher,
                          tgi_apply_fn apply, void *arg) {
    const int64_t n = lz->n;
    const int m = (int64_t)steps < n ? steps : (int)n;
    if (m > lz->vectors || m > lz->cap)
        return tgi_error(lz->ctx, TG_ERR_INVALID, "lanczos: %d steps with room for %d", m,
                         lz->vectors < lz->cap ? lz->vectors : lz->cap);
    lz->steps = 0;
    lz->next_beta = 0;
    lz->spanned = false;
    float *w = lz->w;
    fill_random(w, n, rng, rademacher);
    scale_into(lz->basis, w, n, 1.0 / sqrt(tgi_dot(w, w, n)));
    double scale = 0; /* the operator's norm as seen so far */
    for (int j = 0; j < m; j++) {
        const float *q = lz->basis + (int64_t)j * n;
        const float *previous = j > 0 ? q - n : NULL;
        tg_status status = apply(arg, q, w);
        if (status != TG_OK) return status;
        double a = tgi_dot(q, w, n), b = j > 0 ? lz->beta[j] : 0;
        if (!isfinite(a))
            return tgi_error(lz->ctx, TG_ERR_NUMERIC, "lanczos: step %d's product is not finite "
                             "(the function's value or its derivatives overflow or are NaN "
                             "at this point)", j + 1);
        lz->alpha[j] = a;
        if (previous)
            for (int64_t k = 0; k < n; k++) w[k] = (float)(w[k] - a * q[k] - b * previous[k]);
        else
            for (int64_t k = 0; k < n; k++) w[k] = (float)(w[k] - a * q[k]);
        double norm = orthogonalise(lz, j + 1, w, false);
        scale = fmax(scale, fmax(fabs(a), fmax(b, norm)));
        lz->steps = j + 1;
        if (j + 1 == m) {
            lz->spanned = m == n;
            lz->next_beta = lz->spanned ? 0 : norm;
            break;
        }
        float *next = lz->basis + (int64_t)(j + 1) * n;
        if (norm <= CLOSED * scale) {
            /* An invariant subspace: T splits here (coupling 0) and a fresh direction orthogonal
             * to it goes on, so an eigenvalue the start vector missed (a repeated one) is
             * still found. */
            fill_random(w, n, rng, false); /* Gaussian: a +-1 vector can lie in a small span */
            norm = orthogonalise(lz, j + 1, w, true);
            lz->beta[j + 1] = 0;
        } else {
            lz->beta[j + 1] = norm;
        }
        if (!(norm > 0))
            return tgi_error(lz->ctx, TG_ERR_NUMERIC, "lanczos: no direction left at step %d", j + 1);
        scale_into(next, w, n, 1.0 / norm);
    }
    /* The Ritz pairs: T's eigen-decomposition. */
    const int s = lz->steps;
    for (int j = 0; j < s; j++) lz->theta[j] = lz->alpha[j];
    double *e = lz->h; /* free now */
    for (int j = 1; j < s; j++) e[j] = lz->beta[j];
    if (!tgi_tridiagonal_eigen(lz->theta, e, s, lz->s, lz->cap))
        return tgi_error(lz->ctx, TG_ERR_NUMERIC, "lanczos: the tridiagonal's eigenvalues did not "
                         "converge");
    return TG_OK;
}

/* The recurrence's estimate |beta s_last| assumes exact products; f32 products are not, and a
 * converged estimate (1e-17 on bench_curvature's MLP) would claim digits the products never had
 * (its true residual there: 4e-7 of the value). Hence the floor. */
#define F32_NOISE 1e-6

double tgi_lanczos_residual(const tgi_lanczos *lz, int i) {
    const int s = lz->steps;
    double scale = fmax(fabs(lz->theta[0]), fabs(lz->theta[s - 1]));
    return hypot(lz->next_beta * fabs(lz->s[(int64_t)i * lz->cap + s - 1]), F32_NOISE * scale);
}

static void ritz_range(void *arg, int64_t begin, int64_t end) {
    const pass *p = arg;
    const tgi_lanczos *lz = p->lz;
    const int64_t n = lz->n;
    double acc[BLOCK];
    for (int64_t c = begin; c < end; c++) {
        int64_t stop = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        for (int64_t b = c * CHUNK; b < stop; b += BLOCK) {
            int64_t len = stop - b < BLOCK ? stop - b : BLOCK;
            for (int64_t k = 0; k < len; k++) acc[k] = 0;
            for (int j = 0; j < p->count; j++) {
                const float *q = lz->basis + (int64_t)j * n + b;
                const double sj = p->coefficients[j];
                for (int64_t k = 0; k < len; k++) acc[k] += sj * q[k];
            }
            for (int64_t k = 0; k < len; k++) p->out[b + k] = (float)acc[k];
        }
    }
}

void tgi_lanczos_ritz_vector(const tgi_lanczos *lz, int i, float *out) {
    pass p = {lz, lz->steps, NULL, lz->s + (int64_t)i * lz->cap, out};
    tgi_parallel_for(lz->ctx, chunk_count(lz->n), 1, ritz_range, &p);
}

/* ---- the symmetric tridiagonal eigenproblem --------------------------------------------------- */

/* Implicit QL with Wilkinson's shift (the algorithm of EISPACK's tql2): each sweep chases a
 * bulge up the unreduced block [l, m] with plane rotations, which are accumulated into z. */
bool tgi_tridiagonal_eigen(double *d, double *e, int n, double *z, int ldz) {
#define Z(k, i) z[(int64_t)(i) * ldz + (k)]
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) Z(k, i) = k == i;
    if (n <= 0) return true;
    for (int k = 1; k < n; k++) e[k - 1] = e[k]; /* e[k] = T[k][k+1] from here */
    e[n - 1] = 0;
    for (int l = 0; l < n; l++) {
        int iterations = 0, m;
        do {
            for (m = l; m < n - 1; m++) { /* the first negligible coupling below l */
                double dd = fabs(d[m]) + fabs(d[m + 1]);
                if (fabs(e[m]) <= DBL_EPSILON * dd) break;
            }
            if (m == l) break;
            if (iterations++ == 60) return false;
            double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            double r = hypot(g, 1.0);
            g = d[m] - d[l] + e[l] / (g + copysign(r, g));
            double s = 1.0, c = 1.0, p = 0.0;
            int i;
            bool underflow = false;
            for (i = m - 1; i >= l; i--) {
                double f = s * e[i], b = c * e[i];
                e[i + 1] = r = hypot(f, g);
                if (r == 0.0) { /* a rotation of zero: the block splits here */
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                d[i + 1] = g + (p = s * r);
                g = c * r - b;
                for (int k = 0; k < n; k++) {
                    f = Z(k, i + 1);
                    Z(k, i + 1) = s * Z(k, i) + c * f;
                    Z(k, i) = c * Z(k, i) - s * f;
                }
            }
            if (underflow) continue;
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        } while (m != l);
    }
    /* ascending, each vector with its value */
    for (int i = 0; i < n - 1; i++) {
        int low = i;
        for (int j = i + 1; j < n; j++)
            if (d[j] < d[low]) low = j;
        if (low == i) continue;
        double t = d[i];
        d[i] = d[low];
        d[low] = t;
        for (int k = 0; k < n; k++) {
            t = Z(k, i);
            Z(k, i) = Z(k, low);
            Z(k, low) = t;
        }
    }
    return true;
#undef Z
}
