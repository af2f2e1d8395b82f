#!/usr/bin/env python3
"""bench/torch_compare.py — the issue-14 workloads in PyTorch, interleaved with tapegrad.

Each round times PyTorch, then runs `bench_models mlp D W B THREADS` (`bench_models chain`,
`bench_rnn lstm THREADS`), which times tapegrad the same way — so both see the same machine state. Medians of the rounds, with
min-max, and the ratio tapegrad / PyTorch per round. Same workloads as bench/bench_models.c:
depth = linear layers, 64 inputs, 10 classes, sigmoid, softmax cross-entropy, SGD lr 0.01.

Needs Debian's python3-torch (run with /usr/bin/python3); a benchmark dependency only.
    zig build bench-models bench-rnn -Doptimize=ReleaseFast   # installs zig-out/bin/bench_models, bench_rnn
    taskset -c 1 /usr/bin/python3 bench/torch_compare.py [--threads 1] [--rounds 7]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

WORKLOADS = [(4, 32, 16), (20, 256, 64), (4, 1024, 256)]
IN, CLASSES = 64, 10


def torch_ms_per_step(depth, width, batch):
    torch.manual_seed(3)
    dims = [IN] + [width] * (depth - 1) + [CLASSES]
    layers = []
    for i in range(depth):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < depth - 1:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, IN)
    y = torch.arange(batch) % CLASSES
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    for _ in range(3):
        step()
    steps = int(0.2 / ((time.perf_counter() - start) / 3)) + 3
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


def torch_chain_ns_per_op():
    """y = tanh(1.01 y), 1,000 times, forward and backward: 2,000 ops."""
    x = torch.tensor(0.5, requires_grad=True)

    def one_pass():
        y = x
        for _ in range(1000):
            y = torch.tanh(y * 1.01)
        y.backward()
        x.grad = None

    one_pass()
    passes = 5
    start = time.perf_counter()
    for _ in range(passes):
        one_pass()
    return (time.perf_counter() - start) / passes / 2000 * 1e9


def torch_lstm_ms_per_step():
    """LSTM hidden 128, T 100, batch 32, 16 inputs, linear head on h[T], MSE, SGD lr 0.01."""
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(16, 128, batch_first=True)
    head = torch.nn.Linear(128, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    x = torch.randn(32, 100, 16)
    y = torch.randn(32, 1)

    def step():
        opt.zero_grad(set_to_none=False)
        out, _ = lstm(x)
        loss = torch.nn.functional.mse_loss(head(out[:, -1]), y)
        loss.backward()
        opt.step()

    step()
    steps = 5
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


def tapegrad_lstm_ms_per_step(binary, threads):
    out = subprocess.run([binary, "lstm", str(threads)], check=True, capture_output=True, text=True).stdout
    return float(out.split()[1])


def tapegrad_chain_ns_per_op(binary, mode="chain"):
    """mode "chain" records the chain every pass; "chain-replayed" records it once and replays it."""
    out = subprocess.run([binary, mode], check=True, capture_output=True, text=True).stdout
    return float(out.split()[1])


def tapegrad_ms_per_step(binary, depth, width, batch, threads):
    out = subprocess.run([binary, "mlp", str(depth), str(width), str(batch), str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[1])


def fmt(values):
    return f"{statistics.median(values):9.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", "zig-out", "bin", "bench_models"))
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} missing: run `zig build bench-models -Doptimize=ReleaseFast` first")
    torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__}, {args.threads} thread(s); {args.rounds} interleaved rounds")
    t_torch, t_tg, t_replayed, ratio = [], [], [], []
    for _ in range(args.rounds):
        a = torch_chain_ns_per_op()
        b = tapegrad_chain_ns_per_op(args.binary)
        c = tapegrad_chain_ns_per_op(args.binary, "chain-replayed")
        t_torch.append(a)
        t_tg.append(b)
        t_replayed.append(c)
        ratio.append(b / a)
    print(f"scalar chain per op: PyTorch {fmt(t_torch)} ns, tapegrad {fmt(t_tg)} ns "
          f"(replayed {fmt(t_replayed)} ns), tapegrad/PyTorch {fmt(ratio)}")
    rnn_binary = os.path.join(os.path.dirname(args.binary), "bench_rnn")
    if os.path.exists(rnn_binary):
        t_torch, t_tg, ratio = [], [], []
        for _ in range(args.rounds):
            a = torch_lstm_ms_per_step()
            b = tapegrad_lstm_ms_per_step(rnn_binary, args.threads)
            t_torch.append(a)
            t_tg.append(b)
            ratio.append(b / a)
        print(f"LSTM h128 T100 b32 in16: PyTorch {fmt(t_torch)} ms, tapegrad {fmt(t_tg)} ms, "
              f"tapegrad/PyTorch {fmt(ratio)}")
    else:
        print(f"({rnn_binary} missing: `zig build bench-rnn -Doptimize=ReleaseFast` first; LSTM skipped)")
    for depth, width, batch in WORKLOADS:
        t_torch, t_tg, ratio = [], [], []
        for _ in range(args.rounds):
            a = torch_ms_per_step(depth, width, batch)
            b = tapegrad_ms_per_step(args.binary, depth, width, batch, args.threads)
            t_torch.append(a)
            t_tg.append(b)
            ratio.append(b / a)
        print(f"MLP d{depth} w{width} b{batch}: PyTorch {fmt(t_torch)} ms, tapegrad {fmt(t_tg)} ms, "
              f"tapegrad/PyTorch {fmt(ratio)}")


if __name__ == "__main__":
    main()
