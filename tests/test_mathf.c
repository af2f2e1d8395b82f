/* tests/test_mathf.c — our tanh and sigmoid (ops/mathf.h) against the same functions in double:
 * error at most 0.55 / 0.6 ulp (the f32-lane versions: 1.6 / 2.45) on a sample of every sign and binade (each 127th float bit
 * pattern), and the special values as IEEE and PyTorch give them. An exhaustive run of tanh
 * over all floats (0.53 ulp worst) is recorded in ops/mathf.h. */
#include "helpers.h"
#include "ops/mathf.h"

#include <stdint.h>

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* |got - exact| in units of the last place of the f32 nearest to exact. */
static double ulp_error(float got, double exact) {
    float nearest = fabsf((float)exact);
    double ulp = (double)nextafterf(nearest, INFINITY) - nearest;
    return fabs((double)got - exact) / ulp;
}

/* The worst ulp error of f against exact over each 127th float bit pattern of both signs below
 * `limit` (bits of a positive float); results whose exact value is below half the smallest
 * subnormal must be 0 (counted, not asserted one by one: for some functions that is half the
 * sample). */
static void expect_within(float (*f)(float), double (*exact_of)(float), double bound,
                          const char *name, uint32_t limit) {
    double worst = 0.0;
    float worst_x = 0.0f;
    long samples = 0, nonzero_underflows = 0;
    for (uint32_t u = 0; u < limit; u += 127)
        for (int sign = 0; sign < 2; sign++) {
            float x = from_bits(u | (sign ? 0x80000000u : 0u));
            double exact = exact_of(x);
            samples++;
            if (fabs(exact) < 0x1p-150) {
                nonzero_underflows += f(x) != 0.0f;
                continue;
            }
            double err = ulp_error(f(x), exact);
            if (err > worst) worst = err, worst_x = x;
        }
    cr_expect_leq(worst, bound, "%s: worst error %.3f ulp at x = %.9g (%ld samples)", name, worst,
                  (double)worst_x, samples);
    cr_expect_eq(nonzero_underflows, 0, "%s: %ld results that underflow f32 are not 0", name,
                 nonzero_underflows);
}

static double tanh_exact(float x) { return tanh((double)x); }
static double sigmoid_exact(float x) { return 1.0 / (1.0 + exp(-(double)x)); }

Test(mathf, tanh_is_within_0_55_ulp_everywhere) {
    expect_within(tgi_tanhf, tanh_exact, 0.55, "tanh", 0x7f800000u);
}

Test(mathf, tanh_special_values) {
    cr_expect(isnan(tgi_tanhf(NAN)), "tanh(NaN) is NaN");
    cr_expect_eq(tgi_tanhf(INFINITY), 1.0f);
    cr_expect_eq(tgi_tanhf(-INFINITY), -1.0f);
    cr_expect_eq(tgi_tanhf(20.0f), 1.0f);
    float negative_zero = tgi_tanhf(-0.0f);
    cr_expect(negative_zero == 0.0f && signbit(negative_zero), "tanh(-0) is -0");
    float tiny = from_bits(1); /* the smallest subnormal: tanh(x) = x */
    cr_expect_eq(tgi_tanhf(tiny), tiny);
    cr_expect_eq(tgi_tanhf(-tiny), -tiny);
    /* the branch edges, each side */
    const float edges[] = {0.625f, 9.125f};
    for (int i = 0; i < 2; i++)
        for (float x = nextafterf(edges[i], 0.0f), n = 0; n < 3; n++, x = nextafterf(x, 100.0f))
            cr_expect_leq(ulp_error(tgi_tanhf(x), tanh((double)x)), 0.55, "x = %.9g", x);
}

Test(mathf, sigmoid_is_within_0_6_ulp_everywhere) {
    expect_within(tgi_sigmoidf, sigmoid_exact, 0.6, "sigmoid", 0x7f800000u);
}

Test(mathf, sigmoid_special_values) {
    cr_expect(isnan(tgi_sigmoidf(NAN)), "sigmoid(NaN) is NaN");
    cr_expect_eq(tgi_sigmoidf(INFINITY), 1.0f);
    cr_expect_eq(tgi_sigmoidf(-INFINITY), 0.0f);
    cr_expect_eq(tgi_sigmoidf(0.0f), 0.5f);
    cr_expect_eq(tgi_sigmoidf(-0.0f), 0.5f);
    cr_expect_eq(tgi_sigmoidf(20.0f), 1.0f);
    cr_expect_eq(tgi_sigmoidf(-200.0f), 0.0f);
    /* the branch edge, each side, and results in the subnormal range */
    for (float x = nextafterf(104.0f, 0.0f), n = 0; n < 3; n++, x = nextafterf(x, 200.0f))
        cr_expect_eq(tgi_sigmoidf(x), 1.0f, "x = %.9g", x);
    for (float x = -103.0f; x > -104.0f; x -= 0.25f)
        cr_expect_leq(ulp_error(tgi_sigmoidf(x), sigmoid_exact(x)), 0.6, "x = %.9g", x);
}

/* The f32-lane versions the cells and the sigmoid op use: exhaustively 2.40 ulp (sigmoid,
 * worst at x = -4.157) and 1.57 ulp (tanh, at 0.856) over every float; the same special
 * values as the double ones. */
Test(mathf, lane_functions_are_within_their_bounds_everywhere) {
    expect_within(tgi_sigmoid_lanes, sigmoid_exact, 2.45, "sigmoid (lanes)", 0x7f800000u);
    expect_within(tgi_tanh_lanes, tanh_exact, 1.6, "tanh (lanes)", 0x7f800000u);
}

Test(mathf, lane_functions_special_values) {
    cr_expect(isnan(tgi_sigmoid_lanes(NAN)) && isnan(tgi_tanh_lanes(NAN)), "NaN stays NaN");
    cr_expect_eq(tgi_sigmoid_lanes(INFINITY), 1.0f);
    cr_expect_eq(tgi_sigmoid_lanes(-INFINITY), 0.0f);
    cr_expect_eq(tgi_sigmoid_lanes(0.0f), 0.5f);
    cr_expect_eq(tgi_sigmoid_lanes(-0.0f), 0.5f);
    cr_expect_eq(tgi_sigmoid_lanes(-200.0f), 0.0f);
    cr_expect_eq(tgi_tanh_lanes(INFINITY), 1.0f);
    cr_expect_eq(tgi_tanh_lanes(-INFINITY), -1.0f);
    cr_expect_eq(tgi_tanh_lanes(20.0f), 1.0f);
    float negative_zero = tgi_tanh_lanes(-0.0f);
    cr_expect(negative_zero == 0.0f && signbit(negative_zero), "tanh(-0) is -0");
    float tiny = from_bits(1);
    cr_expect_eq(tgi_tanh_lanes(tiny), tiny);
    /* results in the subnormal range: 2^-k is formed as two normal factors */
    for (float x = -88.0f; x > -104.0f; x -= 0.25f)
        cr_expect_leq(ulp_error(tgi_sigmoid_lanes(x), sigmoid_exact(x)), 2.45, "x = %.9g", x);
    const float edges[] = {0.625f, 9.125f}; /* tanh's select edges, each side */
    for (int i = 0; i < 2; i++)
        for (float x = nextafterf(edges[i], 0.0f), n = 0; n < 3; n++, x = nextafterf(x, 100.0f))
            cr_expect_leq(ulp_error(tgi_tanh_lanes(x), tanh((double)x)), 1.6, "x = %.9g", x);
}

static double gelu_exact(float x) { return (double)x * 0.5 * erfc(-(double)x * 0.70710678118654752); }

/* Up to |x| = 2^24: beyond, gelu is x or 0 in f32 (checked below). */
Test(mathf, gelu_is_within_1_ulp_everywhere) {
    expect_within(tgi_geluf, gelu_exact, 1.0, "gelu", 0x4b800000u);
    cr_expect(isnan(tgi_geluf(NAN)));
    cr_expect_eq(tgi_geluf(INFINITY), INFINITY);
    cr_expect_eq(tgi_geluf(-INFINITY), 0.0f);
    cr_expect_eq(tgi_geluf(1e30f), 1e30f);
    cr_expect_eq(tgi_geluf(0.0f), 0.0f);
}

/* The derivative crosses 0 near x = -0.75 (Phi(x) + x phi(x) cancel): there an absolute error
 * of 3e-8 (Phi read off the rounded forward, y / x), not a number of ulps, is what it promises. */
Test(mathf, gelu_derivative_matches_phi_plus_x_density) {
    double worst = 0.0;
    float worst_x = 0.0f;
    for (int i = -2000000; i <= 2000000; i++) {
        float x = (float)i * 1e-5f;
        double xd = x, exact = 0.5 * erfc(-xd * 0.70710678118654752) +
                               xd * exp(-0.5 * xd * xd) * 0.3989422804014327;
        float nearest = fabsf((float)exact);
        double ulp = (double)nextafterf(nearest, INFINITY) - nearest;
        double err = fabs((double)tgi_gelu_grad(x, tgi_geluf(x)) - exact) / (ulp + 3e-8);
        if (err > worst) worst = err, worst_x = x;
    }
    cr_expect_leq(worst, 1.0, "gelu': worst %.3f (ulp + 3e-8) at x = %.9g", worst, worst_x);
    const float xs[] = {NAN, 30.0f, -30.0f, INFINITY, -INFINITY, 0.0f, 1e-30f, -1e-42f};
    const float want[] = {NAN, 1.0f, 0.0f, 1.0f, 0.0f, 0.5f, 0.5f, 0.5f};
    for (int i = 0; i < 8; i++) {
        float g = tgi_gelu_grad(xs[i], tgi_geluf(xs[i]));
        cr_expect(isnan(want[i]) ? isnan(g) : g == want[i], "gelu'(%g) = %g, want %g", (double)xs[i],
                  (double)g, (double)want[i]);
    }
}
