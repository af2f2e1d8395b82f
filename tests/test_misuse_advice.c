/*
 * tests/test_misuse_advice.c — the activation watch refuses a NULL recorder, a step interval
 * below 1 and a second watch with a message; the advice functions take any numbers and NULL
 * pointers and say "not measured" rather than fail (they return a finding, never a status).
 */
#include "misuse.h"

MISUSE(tg_recorder_attach_activations) {
    GIVES(tg_recorder_attach_activations(NULL, 1), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_recorder_attach_activations(W.rec, 0), -1);
    expect_message("tg_recorder_attach_activations(rec, 0)");
    GIVES(tg_recorder_attach_activations(W.rec, -5), -1);
    expect_message("tg_recorder_attach_activations(rec, -5)");
    cr_expect_gt(tg_recorder_attach_activations(W.rec, 1), 0, "%s", tg_errmsg(W.ctx));
    GIVES(tg_recorder_attach_activations(W.rec, 1), -1);
    expect_message("tg_recorder_attach_activations twice");
    /* the watch goes with the recorder (world_teardown frees it); a relu on the tape is fine */
    cr_expect_not_null(tg_relu(W.tape, tg_mul(W.tape, W.x, W.w)), "%s", tg_errmsg(W.ctx));
}

MISUSE(tg_advice_refused_step) {
    tg_finding f = tg_advice_refused_step((tg_guard_verdict)99, NULL, NAN);
    cr_expect_not(f.problem, "not a verdict: nothing refused");
    f = tg_advice_refused_step(TG_GUARD_SKIP_NONFINITE, NULL, -1.0);
    cr_expect(f.problem && f.step == -1);
    cr_expect_null(strstr(f.advice, "from -1"), "a negative lr is not quoted: %s", f.advice);
}

MISUSE(tg_advice_sharpness) {
    cr_expect_not(tg_advice_sharpness(-1.0, 5.0).problem);
    cr_expect_not(tg_advice_sharpness(0.1, NAN).problem);
    cr_expect_not(tg_advice_sharpness(0.1, -50.0).problem, "a negative eigenvalue: no bound");
    tg_finding f = tg_advice_sharpness(INFINITY, 1.0);
    cr_expect(f.problem && isinf(f.value));
}

MISUSE(tg_advice_isometry) {
    cr_expect_not(tg_advice_isometry(NAN, 1.0, 1.0).problem);
    cr_expect_not(tg_advice_isometry(-1.0, 1.0, 1.0).problem);
    cr_expect_not(tg_advice_isometry(1.0, NAN, 1.0).problem);
}

MISUSE(tg_advice_activation) {
    tg_finding f = tg_advice_activation(NULL, NULL, NULL, NULL);
    cr_expect_not(f.problem);
    GIVES_TEXT(f.what);
    tg_activation_stats none = {-1.0, -1.0, -1.0, -1.0};
    cr_expect_not(tg_advice_activation("x", "gelu", &none, NULL).problem);
    tg_onset_opts bad = tg_onset_defaults();
    bad.saturated_fraction = NAN;
    tg_activation_stats all = {1.0, -1.0, -1.0, -1.0};
    cr_expect_not(tg_advice_activation("x", "tanh", &all, &bad).problem, "a NaN threshold: never");
}
