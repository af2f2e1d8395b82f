#!/usr/bin/env python3
"""bench/torch_gpt.py — bench_gpt's GPT training step in PyTorch, from tapegrad's own weights.

The model: token + position embeddings, a stack of nn.TransformerEncoderLayer(d_model, nhead,
dim_feedforward=4*d, dropout=0, activation="gelu" (exact erf GELU), batch_first=True,
norm_first=True) run with a causal mask, a final LayerNorm and a linear head without bias —
tapegrad's tg_gpt_new (pre-LN) layer for layer. PyTorch's fast path for TransformerEncoderLayer
(torch._transformer_encoder_layer_fwd) is taken only in inference (no grad, eval mode); a
training step, as here, always runs the normal path: in_proj / scaled dot-product / out_proj,
layer norms, linear1, GELU, linear2.

1. `bench_gpt export DIR` writes tapegrad's initial weights (safetensors, names gpt.*), the
   fixed batch and tapegrad's losses of the first steps; this script maps the names
   (attn.in_proj_weight -> self_attn.in_proj_weight, fc -> linear1, proj -> linear2,
   ln1 -> norm1, ln2 -> norm2, ...), loads them with strict=True and checks that its losses
   agree (first step: forward only; the next ones: after AdamW updates).
2. Rounds interleave PyTorch's step (in this process), `bench_gpt step THREADS` (recorded every
   step), `bench_gpt step THREADS replay` and, with --llmc, a user-built llm.c step binary that
   prints "ms_per_step X" (run with OMP_NUM_THREADS=THREADS); medians with min-max and the
   per-round ratios against PyTorch.

Same optimizer everywhere: AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
Needs Debian's python3-torch (run with /usr/bin/python3); a benchmark dependency only.
    zig build bench-gpt -Doptimize=ReleaseFast -- QUICK     # installs zig-out/bin/bench_gpt
    taskset -c 1 /usr/bin/python3 bench/torch_gpt.py --threads 1 [--rounds 7] [--llmc PATH]
    /usr/bin/python3 bench/torch_gpt.py --threads 2
"""
import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.999), 1e-8, 0.01


# ---- safetensors: the `safetensors` package when installed, else this reader/writer ----------

def load_safetensors(path):
    """{name: float32 tensor} of a safetensors file (F32 entries only)."""
    try:
        from safetensors.torch import load_file
        return {k: v.float() for k, v in load_file(path).items()}
    except ImportError:
        pass
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(info["shape"]).clone()
    return out


def save_safetensors(tensors, path):
    """Writes {name: tensor} as F32 safetensors (8-byte header length, JSON header, raw data)."""
    try:
        from safetensors.torch import save_file
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, path)
        return
    except ImportError:
        pass
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        blob = t.detach().float().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# ---- the model -----------------------------------------------------------------------------

class TorchGPT(torch.nn.Module):
    def __init__(self, vocab, block, d, heads, layers):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, d)
        self.wpe = torch.nn.Embedding(block, d)
        self.layers = torch.nn.ModuleList([
            torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=0.0,
                                             activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers)])
        self.ln_f = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab, bias=False)

    def forward(self, ids, mask):
        x = self.wte(ids) + self.wpe.weight[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x, src_mask=mask)
        return self.head(self.ln_f(x))


def causal_mask(t):
    """Boolean mask, True where attention is not allowed (key after query)."""
    return torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)


PART_NAMES = [("attn.", "self_attn."), ("ln1.", "norm1."), ("ln2.", "norm2."),
              ("fc.", "linear1."), ("proj.", "linear2.")]


def torch_name(name):
    """gpt.block3.attn.in_proj_weight -> layers.3.self_attn.in_proj_weight, gpt.ln_f.bias -> ln_f.bias."""
    assert name.startswith("gpt."), name
    rest = name[len("gpt."):]
    if rest.startswith("block"):
        index, rest = rest[len("block"):].split(".", 1)
        for old, new in PART_NAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        return f"layers.{index}.{rest}"
    return rest


def tapegrad_export(binary, directory):
    out = subprocess.run([binary, "export", directory], check=True, capture_output=True, text=True).stdout
    config, losses = {}, []
    for line in out.splitlines():
        words = line.split()
        if words[0] == "config":
            config = {words[i]: float(words[i + 1]) for i in range(1, len(words), 2)}
        elif words[0] == "loss":
            losses.append(float(words[2]))
    return config, losses


def build(binary, directory):
    """The PyTorch model with tapegrad's weights, its batch, and tapegrad's first losses."""
    config, tg_losses = tapegrad_export(binary, directory)
    c = {k: int(v) for k, v in config.items() if k not in ("lr", "weight_decay")}
    model = TorchGPT(c["vocab"], c["block"], c["d_model"], c["heads"], c["layers"])
    weights = load_safetensors(os.path.join(directory, "gpt_init.safetensors"))
    model.load_state_dict({torch_name(k): v for k, v in weights.items()}, strict=True)
    batch = load_safetensors(os.path.join(directory, "gpt_batch.safetensors"))
    ids, targets = batch["ids"].long(), batch["targets"].long()
    return model, ids, targets, tg_losses, c


def make_step(model, ids, targets):
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    mask = causal_mask(ids.shape[1])
    vocab = model.head.weight.shape[0]

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(ids, mask)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    return step


def torch_ms_per_step(step):
    """(wall-clock ms, process CPU ms) per step."""
    start = time.perf_counter()
    for _ in range(2):
        step()
    steps = max(3, int(0.3 / ((time.perf_counter() - start) / 2)))
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3, (time.process_time() - cpu) / steps * 1e3


def binary_ms_per_step(command, env=None):
    """(wall-clock ms, CPU ms or None) per step, from the "ms_per_step X" and optional
    "cpu_ms_per_step X" lines of a program's output."""
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    found = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("ms_per_step", "cpu_ms_per_step"):
            found[words[0]] = float(words[1])
    if "ms_per_step" not in found:
        raise RuntimeError(f"{command[0]}: no 'ms_per_step X' line in its output:\n{out}")
    return found["ms_per_step"], found.get("cpu_ms_per_step")


def fmt(values):
    return f"{statistics.median(values):9.3f} (min {min(values):.3f}, max {max(values):.3f})"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "zig-out", "bin", "bench_gpt"))
    parser.add_argument("--llmc", action="append", default=[],
                        help="an llm.c training-step binary you built, printing 'ms_per_step X' "
                             "(repeat for several builds; each is a column named after its file)")
    parser.add_argument("--check-only", action="store_true", help="the loss agreement only, no timing")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} missing: run `zig build bench-gpt -Doptimize=ReleaseFast -- QUICK` first")
    torch.set_num_threads(args.threads)
    affinity = sorted(os.sched_getaffinity(0))
    print(f"PyTorch {torch.__version__}, {args.threads} thread(s), CPU {cpu_name()}, "
          f"cores allowed {affinity}, load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory() as directory:
        model, ids, targets, tg_losses, c = build(args.binary, directory)
    step = make_step(model, ids, targets)
    print(f"GPT V{c['vocab']} E{c['d_model']} H{c['heads']} L{c['layers']}, batch {c['batch']} x T {c['seq']}, "
          f"AdamW lr {LR} wd {WEIGHT_DECAY}")
    worst_first = None
    for k, tg_loss in enumerate(tg_losses):
        loss = step()
        rel = abs(loss - tg_loss) / abs(tg_loss)
        worst_first = rel if worst_first is None else worst_first
        print(f"  loss step {k}: PyTorch {loss:.7f}  tapegrad {tg_loss:.7f}  relative diff {rel:.2e}"
              + ("  (forward only)" if k == 0 else "  (after AdamW updates)"))
    if worst_first is None or worst_first > 1e-4:
        sys.exit("first-step losses disagree by more than 1e-4 relative")
    if args.check_only:
        return

    columns = [("PyTorch", None), ("tapegrad", [args.binary, "step", str(args.threads)]),
               ("tapegrad replayed", [args.binary, "step", str(args.threads), "replay"])]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    llmc_names = []
    for binary in args.llmc:
        llmc_names.append(f"llm.c {os.path.basename(binary)}")
        columns.append((llmc_names[-1], [binary]))
    times = {name: [] for name, _ in columns}
    cpu_times = {name: [] for name, _ in columns}
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, command in columns:
            wall, cpu = torch_ms_per_step(step) if command is None else binary_ms_per_step(command, env)
            times[name].append(wall)
            cpu_times[name].append(cpu)
    loads.append(os.getloadavg()[0])
    print(f"{args.rounds} interleaved rounds; load average (1 min) during the rounds "
          f"{min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores")
    tables = [("wall clock", times)]
    if args.threads == 1:  # one thread: its CPU time leaves out the time others held the core
        tables.append(("process CPU time", {k: v for k, v in cpu_times.items() if None not in v}))
    for title, table in tables:
        print(f"ms per training step, {title} (median, min-max):")
        for name in table:
            print(f"  {name:<28} {fmt(table[name])} ms")
        for name in list(table)[1:]:
            ratio = [a / b for a, b in zip(table[name], table["PyTorch"])]
            print(f"  {name + ' / PyTorch':<40} {fmt(ratio)}")
        for llmc in llmc_names:
            if llmc not in table:
                continue
            for name in ("tapegrad", "tapegrad replayed"):
                ratio = [a / b for a, b in zip(table[name], table[llmc])]
                print(f"  {name + ' / ' + llmc:<40} {fmt(ratio)}")


if __name__ == "__main__":
    main()
