#!/usr/bin/python3
"""bench/compare_fashion.py — time per epoch on Fashion-MNIST, tapegrad against PyTorch, interleaved.

Each round trains one epoch of the same model on the same subset with `tapegrad train` and with
bench/torch_fashion.py (PyTorch 1.13, the same architecture, optimizer, batch and augmentation),
one after the other, and keeps each epoch's wall and CPU seconds (evaluation excluded on both
sides). Prints, per model and thread count, the medians over the rounds with min-max and the
median of the per-round ratios tapegrad / PyTorch. One thread is pinned (`taskset -c 1`); two are
not pinned. On a shared machine compare the ratios, not the absolute times.

  /usr/bin/python3 bench/compare_fashion.py --tapegrad zig-out/bin/tapegrad --rounds 5 \\
      --subset 5000 --models lenet,resnet --threads 1,2

Needs Debian's dataset-fashion-mnist and python3-torch; build tapegrad with -Doptimize=ReleaseFast.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TAPEGRAD_EPOCH = re.compile(r"epoch 1/1: .*?, ([0-9.]+) s \(([0-9.]+) s of CPU\)")
TORCH_EPOCH = re.compile(r"epoch 1: .*?, ([0-9.]+) s training \(([0-9.]+) s CPU\)")


def model_args(model):
    return ["--model", "resnet", "--depth", "20"] if model == "resnet" else ["--model", "lenet"]


def run(cmd, pattern, threads):
    if threads == 1:
        cmd = ["taskset", "-c", "1"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True)
    m = pattern.search(out.stdout)
    if out.returncode != 0 or not m:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return float(m.group(1)), float(m.group(2))


def summary(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tapegrad", default="zig-out/bin/tapegrad")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--subset", type=int, default=5000)
    p.add_argument("--models", default="lenet,resnet")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--augment", default="crop:2,flip")
    args = p.parse_args()
    common = ["--epochs", "1", "--train-subset", str(args.subset), "--augment", args.augment]
    cpu = open("/proc/cpuinfo").read()
    name = re.search(r"model name\s*:\s*(.*)", cpu)
    print(f"CPU: {name.group(1) if name else '?'}, {os.cpu_count()} cores; load average "
          f"{open('/proc/loadavg').read().split()[0]}; {args.rounds} rounds, {args.subset} images an epoch")
    for model in args.models.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            tg_cmd = [args.tapegrad, "train", "--data", "fashion-mnist", "--threads", str(threads)] + \
                model_args(model) + common
            torch_cmd = ["/usr/bin/python3", os.path.join(HERE, "torch_fashion.py"), "--threads", str(threads)] + \
                model_args(model) + common
            tg, torch = [], []
            for _ in range(args.rounds):
                tg.append(run(tg_cmd, TAPEGRAD_EPOCH, threads))
                torch.append(run(torch_cmd, TORCH_EPOCH, threads))
            wall = [a[0] / b[0] for a, b in zip(tg, torch)]
            cpu_ratio = [a[1] / b[1] for a, b in zip(tg, torch)]
            print(f"{model:6s} {threads} thread{'s' if threads > 1 else ' '}: "
                  f"tapegrad {summary([t[0] for t in tg])} s ({summary([t[1] for t in tg])} CPU), "
                  f"PyTorch {summary([t[0] for t in torch])} s ({summary([t[1] for t in torch])} CPU); "
                  f"tapegrad / PyTorch wall {summary(wall)}, CPU {summary(cpu_ratio)}", flush=True)


if __name__ == "__main__":
    main()
