/*
 * autograd/rng.c — the library's own PRNG, so a seed means the same numbers on every machine
 * and C library (rand() and random() differ between platforms).
 *
 * xoshiro128** (Blackman & Vigna): 32-bit outputs, tiny state, passes BigCrush; seeded through
 * splitmix64 so that nearby seeds give unrelated streams.
 */
#include "tapegrad.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void tg_rng_seed(tg_rng *rng, uint64_t seed) {
    if (!rng) return;
    uint64_t x = seed;
    uint64_t a = splitmix64(&x), b = splitmix64(&x);
    rng->s[0] = (uint32_t)a;
    rng->s[1] = (uint32_t)(a >> 32);
    rng->s[2] = (uint32_t)b;
    rng->s[3] = (uint32_t)(b >> 32);
    if (!(rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3])) rng->s[0] = 1; /* all-zero is a fixed point */
}

static uint32_t rotl(uint32_t x, int k) {
    return (x << k) | (x >> (32 - k));
}

uint32_t tg_rng_u32(tg_rng *rng) {
    if (!rng) return 0;
    uint32_t *s = rng->s;
    uint32_t result = rotl(s[1] * 5, 7) * 9;
    uint32_t t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
}

float tg_rng_uniform(tg_rng *rng) {
    return (float)(tg_rng_u32(rng) >> 8) * (1.0f / 16777216.0f);
}

/* Marsaglia's polar method needs only log and sqrt (sqrt is exact in IEEE arithmetic); working
 * in double keeps any last-bit difference between C libraries' log from reaching the float. */
double tg_rng_normal(tg_rng *rng) {
    if (!rng) return 0.0; /* the loop below would never end on a stream of zeros */
    for (;;) {
        double u = 2.0 * ((double)tg_rng_u32(rng) / 4294967296.0) - 1.0;
        double v = 2.0 * ((double)tg_rng_u32(rng) / 4294967296.0) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0) return u * sqrt(-2.0 * log(s) / s);
    }
}

uint32_t tg_rng_below(tg_rng *rng, uint32_t n) {
    if (n == 0 || !rng) return 0;
    /* Lemire's multiply-shift with rejection: unbiased without a division on the fast path. */
    uint64_t m = (uint64_t)tg_rng_u32(rng) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)tg_rng_u32(rng) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
