/*
 * diagnostics/advice.h — the findings' words, shared by onset detection (diagnostics/onset.c),
 * the activation watch and the public tg_advice_* functions (diagnostics/advice.c).
 */
#ifndef TAPEGRAD_DIAGNOSTICS_ADVICE_H
#define TAPEGRAD_DIAGNOSTICS_ADVICE_H

#include "autograd/internal.h"

/* A finding of that kind with nothing said yet: a problem, value NaN. */
TGI_HIDDEN tg_finding tgi_finding_new(tg_finding_kind kind, int64_t step, const char *subject);
/* Appends printf-style text to buf (size bytes), cut to fit and always NUL-terminated. */
TGI_HIDDEN void tgi_append(char *buf, size_t size, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
#define TGI_SAY(field, ...) tgi_append((field), sizeof(field), __VA_ARGS__)

/* The findings of an onset report's explosion, first NaN and anomaly stop. */
TGI_HIDDEN tg_finding tgi_finding_explosion(const tg_onset_report *report);
TGI_HIDDEN tg_finding tgi_finding_nonfinite(const tg_onset_report *report);
TGI_HIDDEN tg_finding tgi_finding_anomaly(const tg_onset_report *report);
/* The advice of a vanishing finding: activation the op the watched activations show
 * ("lstm_hidden", "rnn_cell", "sigmoid", "tanh", "relu"; NULL: not known); over_time when the
 * vanishing series are the steps of an unrolled net (h[t]). */
TGI_HIDDEN void tgi_vanishing_advice(tg_finding *f, const char *activation, bool over_time);

#endif
