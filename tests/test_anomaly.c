/* tests/test_anomaly.c — anomaly mode: the first NaN/Inf in execution order, whether the op
 * created it or received it, the counts, the dump of the culprit's inputs, counts-only mode,
 * and the recorder hearing of a step anomaly mode stopped. */
#include "fixture.h"

#include <float.h>
#include <unistd.h>

TestSuite(anomaly, .init = fixture_setup, .fini = fixture_teardown);

static tg_tensor *param(const char *label, int64_t n, const float *values) {
    tg_tensor *x = tg_set_label(tg_from_data(ctx, TG_SHAPE(n), values), "%s", label);
    tg_set_requires_grad(x, true);
    return x;
}

Test(anomaly, count_values_tells_every_kind_apart) {
    const float v[7] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MIN / 4, 1.0f};
    tg_value_counts c;
    tg_count_values(v, 7, &c);
    cr_expect(c.count == 7 && c.nan == 1 && c.pos_inf == 1 && c.neg_inf == 1);
    cr_expect(c.zero == 2 && c.subnormal == 1, "zero %lld subnormal %lld", (long long)c.zero,
              (long long)c.subnormal);
}

Test(anomaly, an_op_that_makes_inf_from_finite_inputs_is_named_as_its_creator) {
    tg_set_anomaly_mode(ctx, true);
    tg_tensor *w = param("fc.weight", 4, (float[]){1, 0, 2, 3});
    tg_tensor *y = tg_log(tape, tg_scale(tape, w, 2.0f));
    cr_expect_null(y);
    cr_expect_eq(tg_errcode(ctx), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "forward pass", "step 0", "log produced -Inf at element 1",
                      "created from finite inputs", "1 -Inf", "inputs ('scale#0' [4])");
    tg_anomaly_report r;
    cr_assert_eq(tg_anomaly_last(ctx, &r), TG_OK);
    cr_expect(r.created);
    cr_expect_eq(r.pass, TG_PASS_FORWARD);
    cr_expect_str_eq(r.op, "log");
    cr_expect_eq(r.element, 1);
    cr_expect(isinf(r.value) && r.value < 0);
    cr_expect(r.counts.count == 4 && r.counts.neg_inf == 1 && r.counts.nan == 0);
    cr_expect_eq(r.n_inputs, 1);
    cr_expect_eq(r.input_counts[0].zero, 1, "the input's zero is what log turned into -Inf");
    cr_expect_str_eq(r.message, tg_errmsg(ctx));
}

Test(anomaly, a_nan_that_arrives_is_traced_to_the_input_that_brought_it) {
    tg_set_anomaly_mode(ctx, true);
    tg_tensor *w = param("fc.weight", 3, (float[]){1, NAN, 2});
    tg_tensor *b = param("fc.bias", 3, (float[]){0, 0, 0});
    /* the first op to read the NaN weight is the one named: its output is the first bad value */
    cr_expect_null(tg_mul(tape, b, w));
    expect_errmsg_has(ctx, "mul produced NaN at element 1", "propagated from input 'fc.weight'");
    tg_anomaly_report r;
    cr_assert_eq(tg_anomaly_last(ctx, &r), TG_OK);
    cr_expect_not(r.created);
    cr_expect_str_eq(r.source, "input 'fc.weight'");
    cr_expect(r.input_counts[0].zero == 3 && r.input_counts[1].nan == 1);
}

Test(anomaly, the_backward_pass_names_the_vjp_that_created_the_inf) {
    tg_set_anomaly_mode(ctx, true);
    tg_tensor *w = param("huge.weight", 2, (float[]){0, 4});
    tg_tensor *loss = tg_sum(tape, tg_sqrt(tape, w)); /* finite forward; d sqrt(x)/dx at 0 = Inf */
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "backward pass", "VJP of sqrt", "+Inf", "'huge.weight'", "element 0",
                      "created from finite inputs");
    tg_anomaly_report r;
    cr_assert_eq(tg_anomaly_last(ctx, &r), TG_OK);
    cr_expect_eq(r.pass, TG_PASS_BACKWARD);
    cr_expect(r.created);
    cr_expect_eq(r.n_inputs, 2, "the input, then the incoming gradient");
    cr_expect_eq(r.input_counts[0].zero, 1);
    cr_expect_eq(r.input_counts[1].count, 2);
}

Test(anomaly, a_bad_incoming_gradient_is_the_source_not_the_vjp) {
    tg_set_anomaly_mode(ctx, true);
    tg_tensor *w = param("w", 2, (float[]){1, 2});
    tg_tensor *y = tg_scale(tape, w, 3.0f);
    cr_assert_not_null(y);
    /* a seed with a NaN: scale's VJP only passes it on */
    cr_expect_eq(tg_backward_with(tape, y, (float[]){NAN, 1}), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "VJP of scale", "propagated from the incoming gradient of 'scale#0'");
}

Test(anomaly, counts_only_never_stops_and_lists_the_bad_nodes_in_order) {
    cr_assert_eq(tg_set_anomaly_level(ctx, TG_ANOMALY_COUNTS), TG_OK);
    cr_expect_not(tg_anomaly_mode(ctx), "counts only is not the stopping mode");
    tg_tensor *w = param("w", 3, (float[]){-1, 0, 4});
    tg_tape_label_next(tape, "logw"); /* a label given after the call comes too late for the check */
    tg_tensor *loss = tg_sum(tape, tg_log(tape, w));
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    tg_anomaly_counts c;
    cr_assert_eq(tg_anomaly_step_counts(ctx, &c), TG_OK);
    cr_expect_eq(c.step, 0);
    cr_expect_geq(c.tensors_scanned, 4, "two outputs, two node gradients and the leaf's");
    cr_assert_geq(c.n_nodes, 2);
    cr_expect_str_eq(c.nodes[0].name, "logw", "the forward's first bad value first");
    cr_expect(c.nodes[0].pass == TG_PASS_FORWARD && c.nodes[0].nan == 1 && c.nodes[0].inf == 1);
    cr_expect_str_eq(c.nodes[0].op, "log");
    cr_expect_eq(c.nodes[c.n_nodes - 1].pass, TG_PASS_BACKWARD);
    cr_expect_str_eq(c.nodes[c.n_nodes - 1].name, "w", "the leaf's gradient (1/0 = Inf) last");
    cr_expect_eq(c.tensors_nonfinite, c.n_nodes);
    tg_tape_reset(tape);
    cr_assert_not_null(tg_sum(tape, tg_scale(tape, w, 1.0f)));
    cr_assert_eq(tg_anomaly_step_counts(ctx, &c), TG_OK);
    cr_expect(c.step == 1 && c.n_nodes == 0 && c.nan == 0, "a new step counts afresh");
}

Test(anomaly, the_dump_holds_the_culprits_inputs) {
    char path[] = "/tmp/tapegrad-anomaly-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    tg_set_anomaly_mode(ctx, true);
    cr_assert_eq(tg_set_anomaly_dump(ctx, path), TG_OK);
    tg_tensor *a = param("a", 2, (float[]){1e30f, 2});
    tg_tensor *b = param("b", 2, (float[]){1e30f, 3});
    cr_expect_null(tg_mul(tape, a, b)); /* 1e60 overflows */
    expect_errmsg_has(ctx, "mul produced +Inf at element 0", "created from finite inputs", "inputs dumped to");
    tg_tensor *in0 = tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "input.0");
    tg_tensor *in1 = tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "input.1");
    cr_assert_eq(tg_load_safetensors(ctx, path, (tg_tensor *[]){in0, in1}, 2), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(in0->data[0] == 1e30f && in0->data[1] == 2.0f && in1->data[1] == 3.0f);
    FILE *f = fopen(path, "rb");
    char header[512] = {0};
    cr_assert(f && fread(header, 1, sizeof header - 1, f) > 8);
    fclose(f);
    /* after the 8-byte length, the JSON header: text */
    cr_expect(strstr(header + 8, "\"op\":\"mul\"") != NULL, "%s", header + 8);
    cr_expect(strstr(header + 8, "\"input.1.name\":\"b\"") != NULL, "%s", header + 8);

    /* a later stop (an evaluation pass, say) leaves the first one in the file */
    tg_clear_error(ctx);
    tg_tape_reset(tape);
    tg_tape_set_step(tape, 7);
    tg_tensor *c = param("c", 2, (float[]){-1, 2});
    cr_expect_null(tg_log(tape, c));
    expect_errmsg_has(ctx, "log", "not dumped", "keeps the first stop (step 0)");
    cr_assert_eq(tg_load_safetensors(ctx, path, (tg_tensor *[]){in0, in1}, 2), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(in0->data[0] == 1e30f, "the first stop's inputs were overwritten");
    /* armed again, the next stop is dumped */
    cr_assert_eq(tg_set_anomaly_dump(ctx, path), TG_OK);
    cr_expect_null(tg_log(tape, c));
    expect_errmsg_has(ctx, "inputs dumped to");
    tg_tensor *only = tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "input.0");
    cr_assert_eq(tg_load_safetensors(ctx, path, &only, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(only->data[0] == -1.0f);
    cr_expect_eq(tg_set_anomaly_dump(ctx, NULL), TG_OK);
    unlink(path);
}

Test(anomaly, an_attached_recorder_gets_the_stopped_step) {
    tg_tensor *w = param("net.weight", 2, (float[]){1, 2});
    tg_recorder *rec = tg_recorder_new(ctx, 16);
    cr_assert(rec && tg_recorder_attach_params(rec, "net.*") > 0);
    tg_set_anomaly_mode(ctx, true);
    for (int step = 1; step <= 4; step++) {
        tg_tape_reset(tape);
        if (step == 4) w->data[1] = 0.0f; /* the step the forward makes -Inf */
        tg_tensor *loss = tg_sum(tape, tg_log(tape, w));
        if (step < 4) cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        else cr_expect_null(loss);
        tg_zero_grad(w);
    }
    tg_onset_report report;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &report), TG_OK);
    cr_expect(report.anomaly_stopped);
    cr_expect_eq(report.anomaly_step, 4);
    cr_expect(report.has_nan && report.first_nan_step == 4);
    cr_expect(strstr(report.summary, "anomaly mode stopped step 4: log at 'log#0' created Inf from "
                                     "finite inputs (forward pass)") != NULL, "%s", report.summary);
    int64_t steps[16];
    double norms[16];
    int n = tg_recorder_global_norms(rec, steps, norms, 16);
    cr_expect(n == 4 && steps[3] == 4 && isnan(norms[3]), "the stopped step is in the record");
    expect_errmsg_has(ctx, "log produced -Inf", "created from finite inputs");
    tg_recorder_free(rec);
}
