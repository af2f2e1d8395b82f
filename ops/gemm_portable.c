/*
 * ops/gemm_portable.c — our own GEMM: the backend when no BLAS can be loaded (and in
 * -Dblas=false builds), the reference a loaded BLAS is checked against at start-up, and
 * bit-identical on every CPU.
 *
 * The order of operations, which is the promise: C is first scaled by beta (0 when beta is 0);
 * then, for each block of KC = 256 steps of k in order, each element's block sum is taken from
 * zero over p = 0, 1, ... by fused multiply-adds, sum = fma(a, b, sum): the exact a * b + sum
 * rounded once, which IEEE 754 defines, so a CPU with FMA instructions and one computing fmaf()
 * in software get the same bits; and C += alpha * block sum (a product, then an addition:
 * separate, the library is built with -ffp-contract=off). Nothing in that depends on the tile an
 * element falls in, on the blocking of m and n, on the vector width or on the CPU, so every
 * machine computes the same bits (tests/test_gemm.c checks them against a scalar loop of fmaf()
 * in that order). Why fused: with a separate product and addition in the block sums (the order
 * before), a kernel kept the multiply and add pipes of a CPU like Zen 3 (two of each) both busy
 * and was front-end bound (~35 macro-ops per 6 cycles), at 0.66-0.81x OpenBLAS.
 *
 * How it is fast, in the way of BLIS (the loops and packing; the code is our own): for each
 * panel of NC columns and each KC block of k, a block of op(A) (up to A_ROOM floats: 144 rows at
 * KC = 256, more when k is shallower) is packed into strips of MR = 6 rows, p-major, so the
 * kernel reads one strip's 6 values of a step of k side by side; then for each sliver of NR = 16
 * columns, op(B)'s kc x 16
 * sliver is packed (zero-padded past n) into 16 KiB that stays in L1 while the kernel runs down
 * the strips, which come from L2. The micro-kernel sums a 6 x 16 tile in twelve 8-float
 * accumulators: per step of k two loads of B, six broadcasts of A and 12 FMAs (23 macro-ops with
 * the loop's, for 6 cycles of Zen 3's two FMA pipes), unrolled 4 steps deep; 12 sums + 2 of B + a
 * broadcast fill 15 of the 16 AVX2 registers. A build for x86 without FMA in its target carries
 * a second copy compiled for AVX2 + FMA, chosen by CPUID (see blocked_fma below).
 * A strip shorter than 6 rows runs a kernel of its own height instead of summing zero
 * rows (and 7-8 rows left go as 4+3 or 4+4: 1 or 2 rows keep too few sums in flight). Where op(A)
 * or op(B) runs the other way in memory, packing transposes 8 x 8 blocks with vector shuffles.
 * C's tile is prefetched while its sums are taken (+5% at 1024^3 and at 512x128x32). When m
 * takes several blocks of A, the kc x NC panel of op(B) (NC = 512 columns, 512 KiB, in L2/L3) is
 * packed once, before the first of them, and every block of A reads it (at 1024^3 B was packed
 * 8 times per block of k, each time reading 256 rows 4 KiB apart: the best of 25 rounds went
 * from 71 to 81 GFLOP/s, Zen 3, one thread); its slivers are packed two at a time (128 bytes of
 * a row per visit). Otherwise a sliver is packed right before the kernels read it, from L1.
 * A block of 32 steps of k or fewer packs B's panel whole too, and takes C's tiles along its rows
 * (see blocked).
 *
 * Both buffers (about 662 KiB) are the calling thread's own, allocated at its first product and
 * freed when it ends: too big for the stack of a small thread (musl's default is 128 KiB), and as
 * static thread-local storage every thread of a host program would pay for them. So the steady
 * state allocates nothing, no state is shared between threads, and the blocking depends only on
 * the shapes. A thread that cannot get them (out of memory) computes in the same order, element
 * by element.
 */
#include "ops/ops.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MR 6
#define NR 16
#define KC 256 /* part of the documented order: do not change without tests/test_gemm.c */
#define A_ROOM (144 * KC) /* floats of the packed A block (144 KiB, in L2): 144 rows of KC steps */

typedef float v8 __attribute__((vector_size(32)));

/* Everything the blocked product runs is inlined into it, so that its FMA clone (below) compiles
 * all of it, kernels and packing, for AVX2 + FMA. */
#define HOT static inline __attribute__((always_inline))

HOT v8 load8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

HOT void store8(float *p, v8 v) {
    memcpy(p, &v, sizeof v);
}

HOT v8 splat8(float s) {
    return (v8){s, s, s, s, s, s, s, s};
}

/* a * b + c rounded once, lane by lane (IEEE 754's fusedMultiplyAdd): one instruction where the
 * target has FMA, fmaf() calls where it has not — the same bits either way. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_elementwise_fma)
#define HAVE_ELEMENTWISE_FMA 1
#endif
#endif
HOT v8 fma8(v8 a, v8 b, v8 c) {
#ifdef HAVE_ELEMENTWISE_FMA
    return __builtin_elementwise_fma(a, b, c);
#else /* gcc (the sanitizer build): expanded to vfmadd where FMA is enabled */
    for (int i = 0; i < 8; i++) c[i] = fmaf(a[i], b[i], c[i]);
    return c;
#endif
}

static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc) {
    if (beta == 1.0f) return;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

/* ---- packing ------------------------------------------------------------------------------- */

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define HAVE_SHUFFLE 1
#endif
#endif

/* A hint to bring a line to the cache ahead of its use: nothing else, so no effect on results. */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

#ifdef HAVE_SHUFFLE
/* t[j] = column j of the 8 x 8 block whose rows are r[0..8): unpack, then shuffle pairs, then
 * swap 128-bit halves — the usual 24-shuffle transpose, which compilers lower to the target's
 * shuffles (vunpcklps / vshufps / vperm2f128 with AVX). */
HOT void transpose8(const v8 r[8], v8 t[8]) {
    v8 lo[4], hi[4], u[8];
    for (int i = 0; i < 4; i++) {
        lo[i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        hi[i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int h = 0; h < 2; h++) { /* rows 0-3 (h = 0) and 4-7 */
        u[4 * h + 0] = __builtin_shufflevector(lo[2 * h], lo[2 * h + 1], 0, 1, 8, 9, 4, 5, 12, 13);
        u[4 * h + 1] = __builtin_shufflevector(lo[2 * h], lo[2 * h + 1], 2, 3, 10, 11, 6, 7, 14, 15);
        u[4 * h + 2] = __builtin_shufflevector(hi[2 * h], hi[2 * h + 1], 0, 1, 8, 9, 4, 5, 12, 13);
        u[4 * h + 3] = __builtin_shufflevector(hi[2 * h], hi[2 * h + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int j = 0; j < 4; j++) {
        t[j] = __builtin_shufflevector(u[j], u[4 + j], 0, 1, 2, 3, 8, 9, 10, 11);
        t[j + 4] = __builtin_shufflevector(u[j], u[4 + j], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}
#endif

/* The height of the strip that starts with `left` rows to go: MR, except that 7 or 8 rows left
 * make two strips of 4 (or 4 and 3) — a strip of 1 or 2 rows keeps too few sums in flight to
 * hide the additions' latency. */
HOT int strip_rows(int64_t left) {
    if (left == MR + 1 || left == MR + 2) return (int)(left + 1) / 2;
    return left < MR ? (int)left : MR;
}

/* Strips of op(A)'s mc x kc block at a (element (i, p) = a[i * rs + p * cs]), as strip_rows cuts
 * them: the strip of rows i0.. is the s-th and holds (i0 + r, p) at dst[s * MR * kc + p * MR + r],
 * rows past its height as zeros. dst has room for 2 floats more (the transposing stores write 8
 * floats for 6). */
HOT void pack_a(const float *a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, float *dst) {
    int mr;
    for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += MR * kc) {
        mr = strip_rows(mc - i0);
        const float *ai = a + i0 * rs;
        int64_t p = 0;
        if (cs == 1) { /* rows contiguous along k: transposed 8 steps at a time, then one by one */
#ifdef HAVE_SHUFFLE
            for (; p + 8 <= kc; p += 8) {
                v8 rows[8] = {{0}}, cols[8];
                for (int r = 0; r < mr; r++) rows[r] = load8(ai + r * rs + p);
                transpose8(rows, cols);
                for (int q = 0; q < 8; q++) store8(dst + (p + q) * MR, cols[q]); /* in order: each
                    store's 2 extra floats are overwritten by the next */
            }
#endif
            for (; p < kc; p++)
                for (int r = 0; r < MR; r++) dst[p * MR + r] = r < mr ? ai[r * rs + p] : 0.0f;
        } else if (mr == MR && mc - i0 >= 8) { /* columns contiguous (rs == 1), and 8 floats
            can be read: 8 copied per step, in order, the 2 extra overwritten by the next */
            for (; p < kc; p++) store8(dst + p * MR, load8(ai + p * cs));
        } else if (mr == MR) {
            for (; p < kc; p++) memcpy(dst + p * MR, ai + p * cs, sizeof(float) * MR);
        } else {
            for (; p < kc; p++)
                for (int r = 0; r < MR; r++) dst[p * MR + r] = r < mr ? ai[p * cs + r] : 0.0f;
        }
    }
}

/* One sliver of op(B)'s kc x nc panel at b (element (p, j) = b[p * rs + j * cs]), nc <= NR:
 * (p, j) at dst[p * NR + j], columns past nc as zeros. */
HOT void pack_sliver(const float *b, int64_t rs, int64_t cs, int64_t kc, int nc, float *dst) {
    int64_t p = 0;
    if (cs == 1 && nc == NR) { /* rows contiguous: copy NR floats per step */
        for (; p < kc; p++) {
            store8(dst + p * NR, load8(b + p * rs));
            store8(dst + p * NR + 8, load8(b + p * rs + 8));
        }
    } else if (cs == 1) {
        for (; p < kc; p++)
            for (int j = 0; j < NR; j++) dst[p * NR + j] = j < nc ? b[p * rs + j] : 0.0f;
    } else { /* columns contiguous along k (rs == 1): transposed 8 x 8 at a time */
#ifdef HAVE_SHUFFLE
        if (nc == NR)
            for (; p + 8 <= kc; p += 8)
                for (int h = 0; h < NR; h += 8) {
                    v8 cols[8], rows[8];
                    for (int j = 0; j < 8; j++) cols[j] = load8(b + (h + j) * cs + p);
                    transpose8(cols, rows);
                    for (int q = 0; q < 8; q++) store8(dst + (p + q) * NR + h, rows[q]);
                }
#endif
        for (; p < kc; p++)
            for (int j = 0; j < NR; j++) dst[p * NR + j] = j < nc ? b[j * cs + p] : 0.0f;
    }
}

/* The slivers of op(B)'s kc x nc panel at b, nc <= 2 * NR: sliver s at dst + s * NR * kc. Two
 * whole slivers of rows contiguous are copied together, a row's 32 floats at once. */
HOT void pack_b(const float *b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, float *dst) {
    if (cs == 1 && nc == 2 * NR) {
        for (int64_t p = 0; p < kc; p++) {
            store8(dst + p * NR, load8(b + p * rs));
            store8(dst + p * NR + 8, load8(b + p * rs + 8));
            store8(dst + NR * kc + p * NR, load8(b + p * rs + NR));
            store8(dst + NR * kc + p * NR + 8, load8(b + p * rs + NR + 8));
        }
        return;
    }
    for (int64_t j = 0; j < nc; j += NR)
        pack_sliver(b + j * cs, rs, cs, kc, nc - j < NR ? (int)(nc - j) : NR, dst + j * kc);
}

/* ---- the micro-kernel ---------------------------------------------------------------------- */

/* C's mr x nr tile at c: C = beta' C + alpha * (the tile's block sum), beta' C being C when beta
 * is 1, 0 when beta is 0, else beta * C — the order of the file header. */
HOT void store_row(float *c, v8 sum, float alpha, float beta) {
    v8 scaled = alpha * sum;
    if (beta == 1.0f) store8(c, load8(c) + scaled);
    else if (beta == 0.0f) store8(c, (v8){0} + scaled);
    else store8(c, beta * load8(c) + scaled);
}

/* store_row's update, one element at a time, for the first nr < NR columns of a row of C whose
 * block sums are sums[0..nr). */
static void update_narrow(int nr, const float *sums, float alpha, float beta, float *c) {
    for (int j = 0; j < nr; j++) {
        float scaled = alpha * sums[j];
        c[j] = beta == 1.0f ? c[j] + scaled : beta == 0.0f ? 0.0f + scaled : beta * c[j] + scaled;
    }
}

/* A row of C's tile from its block sums s0 (columns 0-7) and s1 (8-15), as store_row says. */
HOT void update_row(float *c, v8 s0, v8 s1, float alpha, float beta, int nr) {
    if (nr == NR && beta == 1.0f && alpha == 1.0f) { /* the usual case (an accumulating
        backward): C += sum, the same bits as C += 1 * sum, two multiplies fewer */
        store8(c, load8(c) + s0);
        store8(c + 8, load8(c + 8) + s1);
    } else if (nr == NR) {
        store_row(c, s0, alpha, beta);
        store_row(c + 8, s1, alpha, beta);
    } else {
        float sums[NR];
        store8(sums, s0);
        store8(sums + 8, s1);
        update_narrow(nr, sums, alpha, beta, c);
    }
}

/* The block sums of an mr x NR tile (mr <= MR, a constant once inlined) over kc steps from the
 * packed strip ap and sliver bp, then C updated as store_row says; only nr columns when nr < NR.
 * The sums are named, not an array: an array indexed in loops that the compiler did not unroll
 * everywhere was kept on the stack, stored and reloaded around every tile. */
HOT void kernel(int mr, int64_t kc, const float *ap, const float *bp, float alpha, float beta,
                float *c, int64_t ldc, int nr) {
    for (int r = 0; r < mr; r++) { /* C's rows are needed at the end: fetched during the sums */
        PREFETCH(c + r * ldc);
        PREFETCH(c + r * ldc + nr - 1);
    }
    v8 s00 = {0}, s01 = {0}, s10 = {0}, s11 = {0}, s20 = {0}, s21 = {0}, s30 = {0}, s31 = {0},
       s40 = {0}, s41 = {0}, s50 = {0}, s51 = {0};
#define STEP_ROW(r)                                                                                \
    if (mr > r) {                                                                                  \
        v8 ar = splat8(ap[r]);                                                                     \
        s##r##0 = fma8(ar, b0, s##r##0);                                                           \
        s##r##1 = fma8(ar, b1, s##r##1);                                                           \
    }
    /* unrolled 4 times: 1-4% faster at every bench_gemm shape (medians of 41 interleaved
     * rounds), fewer loop exits to mispredict at shallow k; no sum spilled (with separate
     * multiplies and adds, even twice spilled them) */
#if defined(__clang__)
#pragma clang loop unroll_count(4)
#elif defined(__GNUC__)
#pragma GCC unroll 4
#endif
    for (int64_t p = 0; p < kc; p++, ap += MR, bp += NR) {
        v8 b0 = load8(bp), b1 = load8(bp + 8);
        STEP_ROW(0) STEP_ROW(1) STEP_ROW(2) STEP_ROW(3) STEP_ROW(4) STEP_ROW(5)
    }
#undef STEP_ROW
#define UPDATE_ROW(r) \
    if (mr > r) update_row(c + r * ldc, s##r##0, s##r##1, alpha, beta, nr);
    UPDATE_ROW(0) UPDATE_ROW(1) UPDATE_ROW(2) UPDATE_ROW(3) UPDATE_ROW(4) UPDATE_ROW(5)
#undef UPDATE_ROW
}

/* One kernel per strip height, so a short last strip does no work on zero rows. */
HOT void kernel_rows(int mr, int64_t kc, const float *ap, const float *bp, float alpha, float beta,
                     float *c, int64_t ldc, int nr) {
    switch (mr) {
    case 6: kernel(6, kc, ap, bp, alpha, beta, c, ldc, nr); break;
    case 5: kernel(5, kc, ap, bp, alpha, beta, c, ldc, nr); break;
    case 4: kernel(4, kc, ap, bp, alpha, beta, c, ldc, nr); break;
    case 3: kernel(3, kc, ap, bp, alpha, beta, c, ldc, nr); break;
    case 2: kernel(2, kc, ap, bp, alpha, beta, c, ldc, nr); break;
    default: kernel(1, kc, ap, bp, alpha, beta, c, ldc, nr); break;
    }
}

/* ---- the loops ----------------------------------------------------------------------------- */

#define NC 512 /* columns of op(B) packed at once when several blocks of A read them */
/* At most this many steps of k in a block, the tiles go row by row (below) */
#define SHALLOW_K 32

typedef struct pack_room {
    _Alignas(64) float a[A_ROOM + MR * KC + 8]; /* + a strip cut in two, + 2 floats */
    _Alignas(64) float b[KC * NC];
} pack_room;

static pthread_key_t room_key;
static pthread_once_t room_key_once = PTHREAD_ONCE_INIT;
static bool room_key_made;
static _Thread_local pack_room *thread_room;

static void make_room_key(void) {
    room_key_made = pthread_key_create(&room_key, free) == 0; /* free: when the thread ends */
}

/* This thread's packing room; NULL when there is none to be had. */
static pack_room *packing_room(void) {
    if (thread_room) return thread_room;
    pthread_once(&room_key_once, make_room_key);
    if (!room_key_made) return NULL;
    pack_room *room = aligned_alloc(64, sizeof *room);
    if (room && pthread_setspecific(room_key, room) != 0) {
        free(room);
        room = NULL;
    }
    return thread_room = room;
}

/* The order of the file header, one element at a time: for a thread without packing room. */
void tgi_gemm_in_order(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    int64_t rs_a = trans_a ? 1 : lda, cs_a = trans_a ? lda : 1;
    int64_t rs_b = trans_b ? 1 : ldb, cs_b = trans_b ? ldb : 1;
    scale_c(m, n, beta, c, ldc);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            for (int64_t pc = 0; pc < k; pc += KC) {
                float sum = 0.0f;
                for (int64_t p = pc; p < k && p < pc + KC; p++)
                    sum = fmaf(a[i * rs_a + p * cs_a], b[p * rs_b + j * cs_b], sum);
                c[i * ldc + j] += alpha * sum;
            }
}

/* The product in the order of the file header, blocked and packed in room: op(A)(i, p) =
 * a[i * rs_a + p * cs_a], op(B)(p, j) = b[p * rs_b + j * cs_b], m, n, k > 0. */
HOT void blocked(pack_room *room, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t rs_a, int64_t cs_a, const float *b, int64_t rs_b, int64_t cs_b,
                 float beta, float *c, int64_t ldc) {
    float *a_packed = room->a;
    for (int64_t jc = 0; jc < n; jc += NC) {
        int64_t nc = n - jc < NC ? n - jc : NC;
        for (int64_t pc = 0; pc < k; pc += KC) {
            int64_t kc = k - pc < KC ? k - pc : KC;
            int64_t most_rows = A_ROOM / kc / MR * MR; /* a shallower block takes more rows */
            float beta_here = pc == 0 ? beta : 1.0f; /* C is scaled once, with the first block */
            /* When several blocks of A read this panel of B, it is packed once for all of them;
             * else sliver by sliver, each packed right before the kernels read it (from L1).
             * A shallow block (an input projection of few features) does little work per tile
             * of C, which then costs most: C's tiles go along its rows, whose lines the
             * hardware prefetchers see coming, rather than down 16 columns of every row
             * (1024x512x16 NT: ~1.1x faster, medians of interleaved rounds; k = 32 and 64
             * unchanged). That needs the whole panel of B packed: kc x NC floats, <= 64 KiB. */
            bool rows_first = kc <= SHALLOW_K;
            bool whole = m > most_rows || rows_first;
            const float *b_panel = b + pc * rs_b + jc * cs_b;
            if (whole)
                for (int64_t jr = 0; jr < nc; jr += 2 * NR)
                    pack_b(b_panel + jr * cs_b, rs_b, cs_b, kc,
                           nc - jr < 2 * NR ? nc - jr : 2 * NR, room->b + jr * kc);
            for (int64_t ic = 0; ic < m; ic += most_rows) {
                int64_t mc = m - ic < most_rows ? m - ic : most_rows;
                pack_a(a + ic * rs_a + pc * cs_a, rs_a, cs_a, mc, kc, a_packed);
                if (rows_first) {
                    const float *strip = a_packed;
                    int mr;
                    for (int64_t ir = 0; ir < mc; ir += mr, strip += MR * kc) {
                        mr = strip_rows(mc - ir);
                        for (int64_t j = 0; j < nc; j += NR)
                            kernel_rows(mr, kc, strip, room->b + j * kc, alpha, beta_here,
                                        c + (ic + ir) * ldc + jc + j, ldc,
                                        nc - j < NR ? (int)(nc - j) : NR);
                    }
                    continue;
                }
                /* unpacked B's slivers two at a time when its rows are read again for each
                 * block of A: 128 bytes of a row per visit rather than 64 */
                int64_t group = whole ? 2 * NR : NR;
                for (int64_t jr = 0; jr < nc; jr += group) {
                    int64_t width = nc - jr < group ? nc - jr : group;
                    float *b_packed = whole ? room->b + jr * kc : room->b;
                    if (!whole) pack_b(b_panel + jr * cs_b, rs_b, cs_b, kc, width, b_packed);
                    for (int64_t j = 0; j < width; j += NR) {
                        int nr = width - j < NR ? (int)(width - j) : NR;
                        const float *strip = a_packed;
                        int mr;
                        for (int64_t ir = 0; ir < mc; ir += mr, strip += MR * kc) {
                            mr = strip_rows(mc - ir);
                            kernel_rows(mr, kc, strip, b_packed + j * kc, alpha, beta_here,
                                        c + (ic + ir) * ldc + jc + jr + j, ldc, nr);
                        }
                    }
                }
            }
        }
    }
}

typedef void (*blocked_fn)(pack_room *room, int64_t m, int64_t n, int64_t k, float alpha,
                           const float *a, int64_t rs_a, int64_t cs_a, const float *b, int64_t rs_b,
                           int64_t cs_b, float beta, float *c, int64_t ldc);

static void blocked_generic(pack_room *room, int64_t m, int64_t n, int64_t k, float alpha,
                            const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                            int64_t rs_b, int64_t cs_b, float beta, float *c, int64_t ldc) {
    blocked(room, m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, ldc);
}

/* A build for x86 CPUs without FMA (-Dcpu=baseline, or a distribution's generic x86-64) would
 * run fma8 as eight fmaf() calls: the same bits, several times slower. So such builds carry a
 * second copy of the blocked product compiled for AVX2 + FMA, chosen at run time when the CPU
 * (and the OS, which must save the YMM registers) can run it; the bits are those of the generic
 * copy, every operation being exactly rounded either way. */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(__FMA__) && \
    (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define FMA_CLONE 1

__attribute__((target("avx2,fma"))) static void blocked_fma(pack_room *room, int64_t m, int64_t n,
                                                            int64_t k, float alpha, const float *a,
                                                            int64_t rs_a, int64_t cs_a,
                                                            const float *b, int64_t rs_b,
                                                            int64_t cs_b, float beta, float *c,
                                                            int64_t ldc) {
    blocked(room, m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, ldc);
}

static blocked_fn chosen = blocked_generic;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

/* CPUID's AVX2 and FMA bits, and XCR0's SSE and AVX state (OSXSAVE first, else XGETBV faults). */
static void choose(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
    if (!(fma && osxsave && avx)) return;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6 || __get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    if (b & (1u << 5)) chosen = blocked_fma;
}

static blocked_fn blocked_for_this_cpu(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}
#else
static blocked_fn blocked_for_this_cpu(void) {
    return blocked_generic; /* FMA in the target (e.g. x86-64-v3, native), or not x86 */
}
#endif

/* Strides, the trivial cases, the packing room; the blocked product by `run`. */
static void gemm_with(blocked_fn run, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                      float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                      float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    pack_room *room = packing_room();
    if (!room) {
        tgi_gemm_in_order(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    run(room, m, n, k, alpha, a, trans_a ? 1 : lda, trans_a ? lda : 1, b, trans_b ? 1 : ldb,
        trans_b ? ldb : 1, beta, c, ldc);
}

void tgi_gemm_portable(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    gemm_with(blocked_for_this_cpu(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void tgi_gemm_portable_generic(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                               float alpha, const float *a, int64_t lda, const float *b,
                               int64_t ldb, float beta, float *c, int64_t ldc) {
    gemm_with(blocked_generic, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool tgi_gemm_portable_has_clone(void) {
#ifdef FMA_CLONE
    return blocked_for_this_cpu() != blocked_generic;
#else
    return false;
#endif
}
