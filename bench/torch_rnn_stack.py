#!/usr/bin/env python3
"""Reference numbers for stacked and bidirectional RNN/LSTM/GRU, from PyTorch.

    python3 bench/torch_rnn_stack.py > tests/rnn_stack_expected.h

PyTorch is a development dependency only: this script runs once, and tests/test_rnn_stack.c
compares tapegrad against the fixed numbers it printed. Every value (weights, input, initial
state, the probe that turns the output into a loss) comes from fill(), which the test repeats
in C: float32(0.5 * sin(0.61 * j + 1.7 * salt)) for element j of the tensor with that salt.
"""
import math

import torch

BATCH, STEPS, IN, HIDDEN, LAYERS = 2, 5, 3, 4, 2
CASES = [("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("rnn", torch.nn.RNN)]


def fill(shape, salt):
    n = math.prod(shape)
    return torch.tensor([0.5 * math.sin(0.61 * j + 1.7 * salt) for j in range(n)],
                        dtype=torch.float32).reshape(shape)


def c_array(name, values):
    body = ", ".join(f"{v:.9g}f" for v in values)
    return f"static const float {name}[] = {{{body}}};"


def case(kind, cls):
    torch.manual_seed(0)
    m = cls(IN, HIDDEN, num_layers=LAYERS, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for i, (_, p) in enumerate(m.named_parameters()):
            p.copy_(fill(p.shape, 10 + i))
    x = fill((BATCH, STEPS, IN), 1).requires_grad_(True)
    h0 = fill((2 * LAYERS, BATCH, HIDDEN), 2).requires_grad_(True)
    if kind == "lstm":
        c0 = fill((2 * LAYERS, BATCH, HIDDEN), 3).requires_grad_(True)
        out, (hn, cn) = m(x, (h0, c0))
    else:
        out, hn = m(x, h0)
    probe = fill(out.shape, 4)
    loss = (out * probe).sum() + (hn * fill(hn.shape, 5)).sum()
    if kind == "lstm":
        loss = loss + (cn * fill(cn.shape, 6)).sum()
    loss.backward()
    names = [n for n, _ in m.named_parameters()]
    print(f"/* {kind}: parameters in order: {' '.join(names)} */")
    print(c_array(f"{kind}_output", out.detach().flatten().tolist()))
    print(c_array(f"{kind}_h_n", hn.detach().flatten().tolist()))
    if kind == "lstm":
        print(c_array(f"{kind}_c_n", cn.detach().flatten().tolist()))
        print(c_array(f"{kind}_grad_c0", c0.grad.flatten().tolist()))
    print(c_array(f"{kind}_grad_x", x.grad.flatten().tolist()))
    print(c_array(f"{kind}_grad_h0", h0.grad.flatten().tolist()))
    # each parameter's gradient, whole (the largest is 16 x 8)
    for n, p in m.named_parameters():
        print(c_array(f"{kind}_grad_{n}", p.grad.flatten().tolist()))
    print(f"static const float *const {kind}_param_grads[] = {{"
          + ", ".join(f"{kind}_grad_{n}" for n in names) + "};")
    print()


def main():
    print("/* tests/rnn_stack_expected.h — written by bench/torch_rnn_stack.py "
          f"(PyTorch {torch.__version__}); do not edit. */")
    print(f"#define REF_BATCH {BATCH}\n#define REF_STEPS {STEPS}\n#define REF_IN {IN}\n"
          f"#define REF_HIDDEN {HIDDEN}\n#define REF_LAYERS {LAYERS}\n")
    for kind, cls in CASES:
        case(kind, cls)


if __name__ == "__main__":
    main()
