#!/usr/bin/env python3
"""bench/torch_hvp.py — Hessian-vector products in PyTorch against tapegrad's, numbers and cost.

1. Numbers: `bench_higher export DIR` writes tapegrad's MLP d20 w256 b64 (sigmoid, cross
   entropy), its batch, a direction v and tapegrad's H v; this script loads the same weights
   into torch.nn.Linear layers and compares torch.autograd.functional.hvp with tapegrad's.
2. Cost: per round, PyTorch's gradient step (forward + backward) and its HVP by double backward
   (torch.autograd.grad with create_graph=True, then the gradient of <g, v>: what
   torch.autograd.functional.hvp does), then tapegrad's own rounds (`bench_higher mlp THREADS`)
   in the same loop, so both see the same machine. Medians of the rounds with min-max, and each
   library's HVP / gradient ratio.

Needs Debian's python3-torch (run with /usr/bin/python3); a benchmark dependency only.
    zig build bench-higher -Doptimize=ReleaseFast -- export /tmp/hvp   # installs bin/bench_higher
    taskset -c 1 /usr/bin/python3 bench/torch_hvp.py /tmp/hvp [--threads 1] [--rounds 5]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import load_safetensors  # noqa: E402  (the same reader)

DEPTH, WIDTH, BATCH, IN, CLASSES = 20, 256, 64, 64, 10


def build(weights):
    layers = []
    for i in range(DEPTH):
        lin = torch.nn.Linear(IN if i == 0 else WIDTH, CLASSES if i == DEPTH - 1 else WIDTH)
        with torch.no_grad():
            lin.weight.copy_(weights[f"mlp.layer{i}.weight"])
            lin.bias.copy_(weights[f"mlp.layer{i}.bias"])
        layers.append(lin)
        if i < DEPTH - 1:
            layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers)


def compare_numbers(directory):
    weights = load_safetensors(os.path.join(directory, "mlp.safetensors"))
    data = load_safetensors(os.path.join(directory, "hvp.safetensors"))
    model = build(weights)
    x, y = data["x"], data["y"].long()
    params = list(model.parameters())
    names = [f"mlp.layer{i}.{kind}" for i in range(DEPTH) for kind in ("weight", "bias")]
    v = tuple(data["v." + n] for n in names)

    def loss_of(*ps):
        out = x
        for i in range(DEPTH):
            out = torch.nn.functional.linear(out, ps[2 * i], ps[2 * i + 1])
            if i < DEPTH - 1:
                out = torch.sigmoid(out)
        return torch.nn.functional.cross_entropy(out, y)

    _, hv = torch.autograd.functional.hvp(loss_of, tuple(p.detach() for p in params), v)
    num = den = worst = 0.0
    for n, h in zip(names, hv):
        ours = data["hv." + n]
        num += float(((ours - h) ** 2).sum())
        den += float((h ** 2).sum())
        worst = max(worst, float((ours - h).abs().max()))
    largest = max(float(h.abs().max()) for h in hv)
    print(f"H v, tapegrad against torch.autograd.functional.hvp on the MLP d{DEPTH} w{WIDTH} "
          f"b{BATCH}: relative error {(num / den) ** 0.5:.2e} (2-norm), largest error "
          f"{worst / largest:.2e} of the largest entry {largest:.3g}")


def torch_times(reps):
    torch.manual_seed(3)
    layers = []
    for i in range(DEPTH):
        layers.append(torch.nn.Linear(IN if i == 0 else WIDTH, CLASSES if i == DEPTH - 1 else WIDTH))
        if i < DEPTH - 1:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    params = list(model.parameters())
    x = torch.randn(BATCH, IN)
    y = torch.arange(BATCH) % CLASSES
    v = [torch.rand_like(p) - 0.5 for p in params]

    def gradient():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        torch.autograd.grad(loss, params)

    def hvp():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params)

    out = []
    for fn in (gradient, hvp):
        fn()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append(1e3 * (time.perf_counter() - start) / reps)
    return out


def tapegrad_times(binary, threads):
    text = subprocess.run([binary, "mlp", str(threads)], check=True, capture_output=True,
                          text=True).stdout
    found = dict(re.findall(r"^\s+(gradient|hvp)\s+([0-9.]+) ms", text, re.M))
    return float(found["gradient"]), float(found["hvp"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("directory", help="where `bench_higher export` wrote its files")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--binary", default=os.path.join("zig-out", "bin", "bench_higher"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    compare_numbers(args.directory)
    rows = {"torch": [], "tapegrad": []}
    for _ in range(args.rounds):
        rows["torch"].append(torch_times(20))
        rows["tapegrad"].append(tapegrad_times(args.binary, args.threads))
    print(f"MLP d{DEPTH} w{WIDTH} b{BATCH}, {args.threads} thread(s), {args.rounds} interleaved "
          f"rounds: median [min-max]")
    for lib, values in rows.items():
        grads = [g for g, _ in values]
        hvps = [h for _, h in values]
        ratios = [h / g for g, h in values]
        fmt = lambda xs: f"{statistics.median(xs):.3f} [{min(xs):.3f}-{max(xs):.3f}]"  # noqa: E731
        print(f"  {lib:9s} gradient {fmt(grads)} ms   hvp {fmt(hvps)} ms   hvp/gradient {fmt(ratios)}")
    ours = [t[1] for t in rows["tapegrad"]]
    theirs = [t[1] for t in rows["torch"]]
    per_round = [a / b for a, b in zip(ours, theirs)]
    print(f"  tapegrad hvp / torch hvp: {statistics.median(per_round):.3f} "
          f"[{min(per_round):.3f}-{max(per_round):.3f}]")


if __name__ == "__main__":
    main()
