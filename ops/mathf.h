/*
 * ops/mathf.h — float functions the ops need faster than libm gives them, and no less exact.
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

#endif /* TAPEGRAD_OPS_MATHF_H */
