#!/usr/bin/python3
"""bench/torch_conv.py — the models of bench/bench_conv.c in PyTorch, at one thread, side by side.

  /usr/bin/python3 bench/torch_conv.py [--bench PATH] [--rounds N] [--torch-only]

For each workload (lenet, block8, block32) it runs the tapegrad binary for that workload, then
the PyTorch model, alternating the two `--rounds` times (default 3) so that both see the same
machine load; it prints each side's median ms per step and the ratio tapegrad / PyTorch
(< 1: tapegrad is faster), by wall time and by CPU time (the steadier figure on a shared machine):
the median of the per-round ratios with their min-max. Shapes, layers and the loss are those of bench_conv.c; each step is
forward, backward and zeroing the gradients. Pin it for steadier figures:
  taskset -c 1 /usr/bin/python3 bench/torch_conv.py
The tapegrad binary: --bench, else the newest bench_conv under zig-out/ or .zig-cache/ (built by
`zig build bench -Doptimize=ReleaseFast`). Never a test dependency.
"""
import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

STEPS = {"lenet": 100, "block8": 50, "block32": 5}
INNER_ROUNDS = 7


def inputs(shape):
    """The input of bench_conv.c: ((i * 7919) % 1000) / 500 - 1."""
    n = 1
    for d in shape:
        n *= d
    i = torch.arange(n, dtype=torch.int64)
    return (((i * 7919) % 1000).float() / 500.0 - 1.0).reshape(shape)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 16, 3, padding=1)
        self.f1 = nn.Linear(64, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.c1(x)), 2)
        h = F.max_pool2d(F.relu(self.c2(h)), 2)
        h = F.relu(self.f1(torch.flatten(h, 1)))
        return self.f3(F.relu(self.f2(h)))


class Block(nn.Module):
    def __init__(self, channels=16):
        super().__init__()
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(channels)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(h)) + x)


def torch_step_fn(name):
    if name == "lenet":
        model, x = LeNet(), inputs((64, 1, 8, 8))
        labels = torch.arange(64) % 10

        def step():
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            model.zero_grad(set_to_none=False)
    else:
        size = 8 if name == "block8" else 32
        model, x = Block(), inputs((32, 16, size, size)).requires_grad_(True)

        def step():
            loss = model(x).mean()
            loss.backward()
            model.zero_grad(set_to_none=False)
            x.grad = None
    return step


def time_torch(name):
    """(wall, cpu) ms per step, medians over INNER_ROUNDS rounds, as bench_conv.c measures."""
    step = torch_step_fn(name)
    step(), step()
    wall, cpu = [], []
    for _ in range(INNER_ROUNDS):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(STEPS[name]):
            step()
        wall.append((time.perf_counter() - start) / STEPS[name])
        cpu.append((time.process_time() - start_cpu) / STEPS[name])
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def time_tapegrad(binary, name, threads=1):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([binary, name, str(threads)], capture_output=True, text=True, env=env, check=True).stdout
    match = re.search(r"([0-9.]+) ms per step .*cpu ([0-9.]+) ms per step", out)
    if not match:
        sys.exit(f"torch_conv.py: no figure in the output of {binary} {name}:\n{out}")
    return float(match.group(1)), float(match.group(2))


def find_binary():
    found = glob.glob("zig-out/bin/bench_conv") + glob.glob(".zig-cache/o/*/bench_conv")
    return max(found, key=os.path.getmtime) if found else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", help="the bench_conv binary")
    parser.add_argument("--rounds", type=int, default=3, help="alternations per workload")
    parser.add_argument("--torch-only", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="threads on both sides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    binary = None if args.torch_only else (args.bench or find_binary())
    if not args.torch_only and not binary:
        sys.exit("torch_conv.py: no bench_conv binary; run `zig build bench -Doptimize=ReleaseFast` "
                 "or give --bench")
    print(f"PyTorch {torch.__version__}, {args.threads} thread(s); tapegrad: {binary or '-'}")
    print("(the machine is shared: figures are medians, and the ratio is what to read)")
    for name in STEPS:
        ours, theirs = [], []
        for _ in range(args.rounds):
            if binary:
                ours.append(time_tapegrad(binary, name, args.threads))
            theirs.append(time_torch(name))
        t_wall = statistics.median(w for w, _ in theirs)
        t_cpu = statistics.median(c for _, c in theirs)
        line = f"{name:8s} pytorch {t_wall:8.3f} ms/step (cpu {t_cpu:8.3f})"
        if ours:
            o_wall = statistics.median(w for w, _ in ours)
            o_cpu = statistics.median(c for _, c in ours)
            # the ratios within each round (both sides saw the same load), median [min-max]
            walls = [a[0] / b[0] for a, b in zip(ours, theirs)]
            cpus = [a[1] / b[1] for a, b in zip(ours, theirs)]
            line += (f"   tapegrad {o_wall:8.3f} ms/step (cpu {o_cpu:8.3f})   ratio tapegrad/pytorch "
                     f"wall {statistics.median(walls):.2f} [{min(walls):.2f}-{max(walls):.2f}], "
                     f"cpu {statistics.median(cpus):.2f} [{min(cpus):.2f}-{max(cpus):.2f}]")
        print(line, flush=True)


if __name__ == "__main__":
    main()
