#!/usr/bin/env python3
"""bench/torch_mha.py — tg_mha_new checkpoints and torch.nn.MultiheadAttention, both ways.

1. `bench_gpt mha-export DIR` saves two tapegrad attention layers (E 32, 4 heads; plain and
   causal, random non-zero biases) with tg_module_save, their input x [2, 7, 32] and their
   outputs. Each loads here into nn.MultiheadAttention(32, 4, batch_first=True) (strict: the same
   names in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias, the same shapes), runs as
   attn(x, x, x, need_weights=False) (causal: attn_mask = the boolean upper triangle) and must
   give tapegrad's output: max abs diff < 1e-5.
2. Two PyTorch layers of other random weights are written back as safetensors (their state_dict
   under the module name "mha.") with their outputs; `bench_gpt mha-check DIR` loads them with
   tg_module_load and compares its outputs (the C side prints the max abs diff).

Needs Debian's python3-torch (run with /usr/bin/python3); a benchmark dependency only.
    zig build bench-gpt -Doptimize=ReleaseFast -- QUICK     # installs zig-out/bin/bench_gpt
    /usr/bin/python3 bench/torch_mha.py
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch

from torch_gpt import HERE, load_safetensors, save_safetensors

E, HEADS, TOL = 32, 4, 1e-5


def layer():
    return torch.nn.MultiheadAttention(E, HEADS, batch_first=True)


def run(attn, x, causal):
    t = x.shape[1]
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1) if causal else None
    with torch.no_grad():
        return attn(x, x, x, need_weights=False, attn_mask=mask)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "zig-out", "bin", "bench_gpt"))
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} missing: run `zig build bench-gpt -Doptimize=ReleaseFast -- QUICK` first")
    print(f"PyTorch {torch.__version__}; nn.MultiheadAttention(E {E}, {HEADS} heads, batch_first=True)")
    failed = False
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([args.binary, "mha-export", d], check=True, capture_output=True)
        x = load_safetensors(os.path.join(d, "mha_x.safetensors"))["x"]
        torch.manual_seed(7)
        for kind in ("plain", "causal"):
            causal = kind == "causal"
            # tapegrad -> PyTorch
            state = load_safetensors(os.path.join(d, f"mha_{kind}_tg.safetensors"))
            attn = layer()
            attn.load_state_dict({k[len("mha."):]: v for k, v in state.items()}, strict=True)
            expected = load_safetensors(os.path.join(d, f"mha_{kind}_tg_out.safetensors"))["y"]
            diff = (run(attn, x, causal) - expected).abs().max().item()
            ok = diff < TOL
            failed |= not ok
            print(f"tapegrad checkpoint -> PyTorch, {kind}: max abs diff {diff:.3g} {'ok' if ok else 'TOO LARGE'}")
            # PyTorch -> tapegrad: other weights, non-zero biases
            attn = layer()
            with torch.no_grad():
                attn.in_proj_bias.normal_(0.0, 0.5)
                attn.out_proj.bias.normal_(0.0, 0.5)
            save_safetensors({"mha." + k: v for k, v in attn.state_dict().items()},
                             os.path.join(d, f"mha_{kind}_torch.safetensors"))
            save_safetensors({"y": run(attn, x, causal)}, os.path.join(d, f"mha_{kind}_torch_out.safetensors"))
        check = subprocess.run([args.binary, "mha-check", d], capture_output=True, text=True)
        sys.stdout.write(check.stdout)
        sys.stderr.write(check.stderr)
        failed |= check.returncode != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
