/*
 * diagnostics/spectrum.h — the Lanczos engine the curvature and Jacobian instruments share
 * (diagnostics/spectrum.c): a symmetric operator given as a callback, a basis kept whole for
 * full reorthogonalisation, and the Ritz pairs of the tridiagonal it builds.
 */
#ifndef TAPEGRAD_DIAGNOSTICS_SPECTRUM_H
#define TAPEGRAD_DIAGNOSTICS_SPECTRUM_H

#include "autograd/internal.h"

/* Most Lanczos steps of one run: the tridiagonal's eigen-decomposition is O(steps^3) and the
 * basis steps vectors of the operator's dimension. */
#define TGI_LANCZOS_MAX_STEPS 512

/* out = A in, both of the operator's dimension; A symmetric. An error stops the run. */
typedef tg_status (*tgi_apply_fn)(void *arg, const float *in, float *out);

typedef struct tgi_lanczos {
    tg_ctx *ctx;
    int64_t n;            /* the operator's dimension */
    int vectors;          /* basis vectors allocated (each n floats) */
    float *basis;         /* vectors * n: q_0, q_1, ... (q_0 doubles as a probe's room) */
    float *w;             /* n: the operator's output, then the next residual */
    int cap;              /* steps the arrays below hold */
    double *alpha, *beta; /* T's diagonal, and beta[j] = T[j-1][j] (beta[0] unused) */
    double *theta;        /* Ritz values, ascending */
    double *s;            /* s[i * cap + j]: component j of T's eigenvector i */
    double *h;            /* cap: projections of the reorthogonalisation */
    double *partial;      /* per chunk of the parallel passes: cap + 1 partial sums */
    size_t partial_room;  /* doubles */
    int steps;            /* steps of the last run */
    double next_beta;     /* norm of the last residual: Ritz pair i's residual is about
                             next_beta * |s[i][steps - 1]|; 0 when the space was spanned */
    bool spanned;         /* the basis spans the whole space: the Ritz values are exact */
} tgi_lanczos;

/* Room for runs of `steps` steps on an operator of dimension n with `vectors` basis vectors
 * (steps' runs need `steps` of them; a probe alone needs 1). Grows, never shrinks: a workspace
 * called again with the same sizes allocates nothing. */
TGI_HIDDEN tg_status tgi_lanczos_reserve(tgi_lanczos *lz, tg_ctx *ctx, int64_t n, int vectors,
                                         int steps);
TGI_HIDDEN void tgi_lanczos_release(tgi_lanczos *lz);

/* A run of min(steps, n) steps from a start vector drawn from rng (Rademacher when rademacher,
 * else Gaussian; normalised), with full reorthogonalisation, restarting from a fresh random
 * vector orthogonal to the basis when the Krylov space closes (so repeated eigenvalues are
 * found with their multiplicity). Leaves theta (ascending) and s. */
TGI_HIDDEN tg_status tgi_lanczos_run(tgi_lanczos *lz, int steps, tg_rng *rng, bool rademacher,
                                     tgi_apply_fn apply, void *arg);

/* |A y - theta y| of Ritz pair i (unit y): an eigenvalue of A lies within it of theta_i. The
 * recurrence's estimate, with a floor of 1e-6 of the largest |theta| for the f32 products. */
TGI_HIDDEN double tgi_lanczos_residual(const tgi_lanczos *lz, int i);

/* The Ritz vector of pair i (unit norm), n floats. */
TGI_HIDDEN void tgi_lanczos_ritz_vector(const tgi_lanczos *lz, int i, float *out);

/* Eigenvalues (ascending, into d) and eigenvectors (z[i * ldz + k]: component k of vector i)
 * of the symmetric tridiagonal matrix of diagonal d[0..n-1] and off-diagonal e[1..n-1]
 * (e[k] = T[k-1][k]; e is overwritten), by implicit QL. Returns false when an eigenvalue
 * did not converge in 60 sweeps (a NaN in T). */
TGI_HIDDEN bool tgi_tridiagonal_eigen(double *d, double *e, int n, double *z, int ldz);

/* v = Rademacher (+-1) entries from rng. */
TGI_HIDDEN void tgi_fill_rademacher(float *v, int64_t n, tg_rng *rng);

/* <a, b> summed in double. */
TGI_HIDDEN double tgi_dot(const float *a, const float *b, int64_t n);

#endif
