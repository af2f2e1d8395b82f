/*
 * ops/mathf.h — float functions the ops need faster than libm gives them.
 *
 * tgi_tanhf: glibc's tanhf goes through expm1f and costs ~95 instructions; tanh is the
 * nonlinearity of RNN, LSTM and GRU cells, and of the scalar chain benchmark, where it was a
 * quarter of the work. This one is ~20 instructions, inline and call-free, and more exact than
 * glibc's: checked over every float, its error is at most 0.53 ulp (glibc's: 2.2 ulp), and all
 * but 136,002 of the 4.28e9 results are correctly rounded (tests/test_mathf.c samples them).
 *
 * tgi_sigmoidf: the LSTM's and GRU's gates are sigmoids, and with glibc's expf (a call, ~30
 * instructions, then a divide) they were half of a small LSTM's step (hidden 32, the study's).
 * Same method as tgi_tanhf; tests/test_mathf.c bounds its error on a dense sample.
 *
 * tgi_sigmoid_lanes and tgi_tanh_lanes: the same in f32 throughout, a few ulp instead of half
 * of one, so loops take 8 lanes of AVX2 where the double versions take 4: the sigmoid op and
 * every recurrent cell use them (in the d20 w256 MLP's step the double sigmoid was 6% of the
 * time, in the LSTM's the gate activations 11%).
 *
 * tgi_geluf and tgi_gelu_grad: GELU's forward and derivative with glibc's erff and expf (calls)
 * were a third of a GPT training step (d 128: 16.6% in erff alone, 11% in the loops around it).
 * These are call-free selects in double: loops of them vectorise; the derivative reads Phi(x)
 * off the forward's output.
 */
#ifndef TAPEGRAD_OPS_MATHF_H
#define TAPEGRAD_OPS_MATHF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* 2^t for -151 <= t <= 28, in double: 2^k e^r with k = t rounded, |r| <= ln2/2, and e^r by its
 * Taylor polynomial of degree 7 (relative error < 6e-9). No conversion to an integer: adding
 * 1.5 * 2^52 rounds t and leaves k in the low bits, so a loop of these vectorises with AVX2
 * (which has no double-to-int64 conversion; with one, the vectoriser split the loop into
 * scalar conversions and the GRU step got 15% slower). */
static inline double tgi_exp2_near(double t) {
    const double shifter = 0x1.8p52;
    double shifted = t + shifter;
    double k = shifted - shifter;
    double r = (t - k) * 0.6931471805599453;
    double e = 1.0 / 5040;
    e = e * r + 1.0 / 720;
    e = e * r + 1.0 / 120;
    e = e * r + 1.0 / 24;
    e = e * r + 1.0 / 6;
    e = e * r + 0.5;
    e = e * r + 1.0;
    e = e * r + 1.0;
    uint64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits + 1023) << 52; /* the low bits are 2^51 + k: this keeps k + 1023, 2^k */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

/* tanh, computed in double and rounded once:
 *  - |x| < 0.625: x + x^3 P(x^2), P of degree 5 fitted (iteratively reweighted least squares, to
 *    minimise the relative error, ~1.6e-10) to (tanh(a)/a - 1)/a^2 on [0, 0.625];
 *  - up to 9.125: 1 - 2/(e^{2|x|} + 1), with e^{2|x|} = 2^k e^r, |r| <= ln2/2, e^r by its Taylor
 *    polynomial of degree 7 (relative error < 6e-9; no cancellation, the result is >= 0.55);
 *  - beyond: 1 (tanh(9.125) rounds to 1 in f32).
 * NaN takes the first branch and comes out NaN; -0 stays -0 (copysign). */
static inline float tgi_tanhf(float x) {
    double a = fabs((double)x), y;
    if (!(a >= 0.625)) {
        /* P by Estrin's scheme (three pairs, with z^2 and z^4 beside them), and a*z formed
         * while P is: two operations more than Horner's rule, and 6 dependent operations after
         * z where it had 13, which is what a chain of scalar tanh waits for (the scalar chain:
         * 8 ns less per tanh). Every float below 0.625 gives the result Horner's rule gave
         * (checked exhaustively, 2.1e9 of them). */
        double z = a * a, z2 = z * z, z4 = z2 * z2;
        double p01 = -0.33333330802643585 + 0.13333206005452047 * z;
        double p23 = -0.05394676273619092 + 0.021700701613141388 * z;
        double p45 = -0.008177394592678296 + 0.0021429587496981815 * z;
        double p = (p01 + z2 * p23) + z4 * p45;
        y = a + (a * z) * p;
    } else if (a < 9.125) {
        double e = tgi_exp2_near(a * 2.8853900817779268); /* e^{2|x|} = 2^{2|x| log2(e)} */
        y = 1.0 - 2.0 / (e + 1.0);
    } else {
        y = 1.0;
    }
    return copysignf((float)y, x);
}

/* sigmoid, computed in double and rounded once: with e = e^{-|x|} <= 1 (it never overflows),
 * 1/(1 + e) for x >= 0 and e/(1 + e) below. |x| is clamped at 104, where the result already
 * rounds to 1 or 0 in f32 (sigmoid(-104) < 2^-150); NaN comes out NaN. Selects, no branch: a
 * loop of these vectorises. */
static inline float tgi_sigmoidf(float x) {
    double a = fabs((double)x);
    double clamped = a < 104.0 ? a : 104.0;
    double e = tgi_exp2_near(-clamped * 1.4426950408889634); /* e^{-|x|} */
    float y = (float)((x >= 0.0f ? 1.0 : e) / (1.0 + e));
    return x == x ? y : x;
}

/* ---- the same two in f32 lanes, for the loops of the MLP's and the LSTM's steps ------------- */

/* e^{-a} for 0 <= a <= 104, all in f32 (so AVX2 takes 8 at a time, not 4 doubles): a = k ln2 +
 * r with k = round(a log2 e) (the 1.5 * 2^23 shifter again), r by Cody and Waite's two-part
 * ln2 (the first part has 12 bits: k times it is exact), e^-r by its Taylor polynomial of
 * degree 7 (|r| <= ln2/2, truncation 6e-9 relative), scaled by 2^-k as two exact factors
 * (2^-k alone leaves the normal range past k = 126). Error about 1 ulp. */
static inline float tgi_exp_neg_lanes(float a) {
    const float shifter = 0x1.8p23f;
    float shifted = a * 1.44269504f + shifter;
    float k = shifted - shifter;
    float r = (k * 0.693145752f - a) + k * 1.42860677e-6f; /* -(a - k ln2) */
    float e = 1.0f / 5040;
    e = e * r + 1.0f / 720;
    e = e * r + 1.0f / 120;
    e = e * r + 1.0f / 24;
    e = e * r + 1.0f / 6;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    int32_t kk = bits - 0x4b400000; /* k: the shifter's low bits */
    int32_t half = kk >> 1;         /* 2^-k = 2^-half 2^-(k - half), each a normal float */
    int32_t bits1 = (127 - half) << 23, bits2 = (127 - (kk - half)) << 23;
    float s1, s2;
    memcpy(&s1, &bits1, sizeof s1);
    memcpy(&s2, &bits2, sizeof s2);
    return e * s1 * s2;
}

/* sigmoid in f32 lanes: (x >= 0 ? 1 : e) / (1 + e) with e = e^{-|x|}, |x| clamped at 104 (the
 * result already rounds to 1 or 0), NaN kept. Within 2.4 ulp of the exact sigmoid over every
 * float (checked exhaustively; tests/test_mathf.c samples each binade), where tgi_sigmoidf, in double, is
 * within 0.6 ulp at a third of the speed: PyTorch's own float sigmoid is not correctly rounded
 * either. Selects and bit moves only: loops of it vectorise 8 wide. */
static inline float tgi_sigmoid_lanes(float x) {
    float a = fabsf(x);
    float e = tgi_exp_neg_lanes(a < 104.0f ? a : 104.0f);
    float y = (x >= 0.0f ? 1.0f : e) / (1.0f + e);
    return x == x ? y : x;
}

/* tanh in f32 lanes, both branches formed and one selected (so a loop of it vectorises):
 * |x| < 0.625: x + x z P(z), z = x^2, with tgi_tanhf's polynomial in f32; beyond, (1 - E) /
 * (1 + E) with E = e^{-2|x|} (|x| clamped at 9.125, where tanh rounds to 1). Sign by copysign
 * (-0 stays -0), NaN kept. Within 1.6 ulp of the exact tanh over every float (checked
 * exhaustively; tests/test_mathf.c samples each binade),
 * at a third of tgi_tanhf's time in a loop; tgi_tanhf (0.53 ulp, a branch) stays the scalar
 * op's, where latency, not throughput, is what counts. */
static inline float tgi_tanh_lanes(float x) {
    float a = fabsf(x);
    float z = a * a, z2 = z * z, z4 = z2 * z2;
    float p01 = -0.333333308f + 0.133332060f * z;
    float p23 = -0.0539467627f + 0.0217007016f * z;
    float p45 = -0.00817739459f + 0.00214295875f * z;
    float p = (p01 + z2 * p23) + z4 * p45;
    float small = a + (a * z) * p;
    float e = tgi_exp_neg_lanes(2.0f * (a < 9.125f ? a : 9.125f));
    float large = (1.0f - e) / (1.0f + e);
    float y = copysignf(a < 0.625f ? small : large, x);
    return x == x ? y : x;
}

/* 2^t for -215 <= t <= 28: tgi_exp2_near of t + 64, scaled back by an exact 2^-64, for the
 * tails of functions whose f32 results reach the subnormals (GELU near -14.1). */
static inline double tgi_exp2_far(double t) {
    return tgi_exp2_near(t + 64.0) * 0x1p-64;
}

/* Phi(-|x|), the standard normal's lower tail at -|x|, in double: erfc(z) / 2 for z = |x|/sqrt2,
 * with erfc(z) = t e^{-z^2 + P(t)}, t = 1/(1 + z/2) and P of degree 10 fitted (iteratively
 * reweighted least squares on 1e5 points of z in [0, 10.5], against math.erfc) to minimise the
 * relative error, 6.7e-9; with tgi_exp2_near's 6e-9 the tail is within 1.3e-8 of itself, a
 * fifth of an f32 half-ulp, from the centre out to where x Phi(x) leaves f32 (|x| = 14.2). z
 * is clamped at 12 (a tail of 1e-64), so no argument leaves tgi_exp2_far's range. */
static inline double tgi_normal_tail(double x) {
    double z = fabs(x) * 0.70710678118654752;
    double zc = z < 12.0 ? z : 12.0;
    double t = 1.0 / (1.0 + 0.5 * zc);
    double p = -0.1337140875006344;
    p = p * t + 0.924951229756682;
    p = p * t - 2.67023355881278;
    p = p * t + 4.070336726268401;
    p = p * t - 3.402130412834899;
    p = p * t + 1.5798040940070737;
    p = p * t - 0.6780300533805422;
    p = p * t + 0.21712308068918632;
    p = p * t + 0.35590393062951786;
    p = p * t + 1.001556172129783;
    p = p * t - 1.2655671142829699;
    return 0.5 * t * tgi_exp2_far((p - zc * zc) * 1.4426950408889634);
}

/* GELU, x Phi(x) (the exact one, PyTorch's default), rounded once. The tail is formed
 * directly for negative x (no 1 - Phi cancellation), so the result keeps its relative accuracy
 * as it goes to 0. NaN comes out NaN. */
static inline float tgi_geluf(float x) {
    double tail = tgi_normal_tail(x);
    double xc = x > -17.0f ? x : -17.0; /* gelu(-inf) is -0, not -inf times a tail */
    float y = (float)(xc * (x >= 0.0f ? 1.0 - tail : tail));
    return x == x ? y : x;
}

/* d/dx x Phi(x) = Phi(x) + x phi(x), phi(x) = e^{-x^2/2} / sqrt(2 pi), given y = gelu(x) as
 * the forward rounded it: Phi(x) is y / x, which costs a divide where the tail cost a divide, a
 * polynomial of degree 10 and an exponential (backward, where it was the larger half of GELU's
 * time). y carries 1 ulp of error into Phi, about 3e-8 absolute where the two terms cancel
 * (x near -0.75). Near 0, where y / x loses x's low bits, Phi is 1/2 + x phi(0); past |x| = 17
 * it is 1 or 0, and x phi(x) (1e-62 there) is taken at +-17. */
static inline float tgi_gelu_grad(float x, float y) {
    double a = fabs((double)x), ac = a < 17.0 ? a : 17.0, xc = copysign(ac, (double)x);
    double density = 0.3989422804014327 * tgi_exp2_far(-0.7213475204444817 * ac * ac);
    double cdf = a < 0x1p-20 ? 0.5 + 0.3989422804014327 * (double)x : (double)y / (double)x;
    cdf = a < 17.0 ? cdf : (x > 0.0f ? 1.0 : 0.0);
    float g = (float)(cdf + xc * density);
    return x == x ? g : x;
}

#endif /* TAPEGRAD_OPS_MATHF_H */
