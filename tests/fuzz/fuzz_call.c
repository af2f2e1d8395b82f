/* tests/fuzz/fuzz_call.c — native op signatures and tg_call attributes from any bytes. The input
 * is NUL-separated: a signature, an op name for tg_call, then attributes as "name=type:value"
 * (type f32|f64|i32|i64|bool, any name and value). Registration, the call and backward either
 * work or fail with a message. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

/* Any kernel: the registered signature decides the arguments libffi passes; reading none of
 * them is safe for every signature. */
static void kernel(void) {}

static tg_attr_type attr_type(const char *s, const char **value) {
    static const char *const names[] = {"f32:", "f64:", "i32:", "i64:", "bool:"};
    for (int t = 0; t < 5; t++)
        if (strncmp(s, names[t], strlen(names[t])) == 0) {
            *value = s + strlen(names[t]);
            return (tg_attr_type)t;
        }
    *value = s;
    return (tg_attr_type)(unsigned char)(s[0] % 7); /* also types out of range */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    const char *parts[2 + TG_MAX_ATTRS] = {0};
    int n_parts = 0;
    for (char *p = text; n_parts < 2 + TG_MAX_ATTRS && p <= text + size; p += strlen(p) + 1)
        parts[n_parts++] = p;
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_op_register_native(ctx, "fuzzed", parts[0] ? parts[0] : "", (tg_native_fn)kernel,
                          (tg_native_fn)kernel, NULL);
    tg_named_attr attrs[TG_MAX_ATTRS];
    int n_attrs = 0;
    for (int i = 2; i < n_parts; i++, n_attrs++) {
        char *eq = strchr(parts[i], '=');
        const char *value = "";
        if (eq) *eq = '\0';
        attrs[n_attrs].name = parts[i];
        attrs[n_attrs].type = attr_type(eq ? eq + 1 : "", &value);
        attrs[n_attrs].value.i64 = strtoll(value, NULL, 0);
    }
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(3, 4));
    tg_set_requires_grad(x, true);
    tg_tensor *inputs[8] = {x, x, x, x, x, x, x, x};
    tg_tensor *y = tg_call(tape, parts[1] ? parts[1] : "fuzzed", inputs, (int)(size % 9), attrs, n_attrs);
    if (y && y->size == 1) tg_backward(tape, y);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    free(text);
    return 0;
}
