/*
 * examples/quickstart.cpp — tapegrad from C++: an MLP fitted with Adam, a call by name with a
 * named attribute, and the C++ forms of the C idioms (TG_SHAPE works as it is; tg_ref stands in
 * for `&(tg_optimizer_config){...}` and `&TG_F32(...)`).
 *
 *   c++ quickstart.cpp $(pkg-config --cflags --libs tapegrad) -o quickstart_cpp && ./quickstart_cpp
 */
#include <cmath>
#include <cstdio>
#include <vector>

#include "tapegrad.h"

int main() {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_mlp_config config = {};
    config.in = 1;
    config.out = 1;
    config.width = 16;
    config.depth = 2;
    config.activation = TG_ACT_TANH;
    config.seed = 7;
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &config);
    tg_optimizer_config adam = {};
    adam.kind = TG_OPT_ADAM;
    adam.lr = 0.01f;
    tg_optimizer *opt = tg_optimizer_new_module(mlp, tg_ref(adam));
    if (!opt) {
        std::fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
        return 1;
    }

    std::vector<float> xs(32), ys(32); /* y = sin(2x) on [-1, 1] */
    for (int i = 0; i < 32; i++) {
        xs[i] = -1.0f + 2.0f * (float)i / 31.0f;
        ys[i] = std::sin(2.0f * xs[i]);
    }
    float loss_value = 0.0f;
    for (int step = 0; step < 300; step++) {
        tg_tape_reset(tape);
        tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(32, 1), xs.data());
        tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(32, 1), ys.data());
        tg_tensor *pred = tg_module_forward(mlp, tape, x);
        /* an op called by name, with a named attribute: here a no-op scale by 1 */
        pred = tg_call(tape, "scale", &pred, 1, tg_ref(TG_F32("factor", 1.0f)), 1);
        tg_tensor *loss = tg_mse(tape, pred, y);
        if (!loss || tg_backward(tape, loss) != TG_OK || tg_optimizer_step(opt) != TG_OK) {
            std::fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
            return 1;
        }
        tg_optimizer_zero_grad(opt);
        loss_value = loss->data[0];
    }
    std::printf("C++: mse after 300 Adam steps %.5f (%s)\n", loss_value,
                loss_value < 0.01f ? "fitted" : "NOT fitted");
    tg_optimizer_free(opt);
    tg_module_free(mlp);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return loss_value < 0.01f ? 0 : 1;
}
