#!/usr/bin/env python3
"""Writes tests/torch_norm_fixture.h: the state of a PyTorch LayerNorm(4) and BatchNorm1d(4),
as a safetensors file embedded in a C array, so tests/test_norm_checkpoints.c checks loading
PyTorch's names and values without PyTorch at test time. Run once with Debian's python3-torch:
    /usr/bin/python3 tests/torch/make_norm_fixture.py > tests/torch_norm_fixture.h
(safetensors is written by hand: 8-byte little-endian header length, JSON header, raw data.)"""
import json
import struct

import torch

torch.manual_seed(11)
ln = torch.nn.LayerNorm(4)
bn = torch.nn.BatchNorm1d(4)
with torch.no_grad():
    ln.weight.copy_(torch.tensor([1.5, -0.5, 2.0, 0.25]))
    ln.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.4]))
    bn.weight.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
    bn.bias.copy_(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
bn.train()
for _ in range(3):  # running statistics that are neither 0 nor 1, and num_batches_tracked 3
    bn(torch.randn(8, 4) * 2 + 1)

state = {f"ln.{k}": v for k, v in ln.state_dict().items()}
state.update({f"bn.{k}": v for k, v in bn.state_dict().items()})
header, blobs, offset = {}, [], 0
for name, value in state.items():
    dtype = {torch.float32: "F32", torch.int64: "I64"}[value.dtype]
    raw = value.numpy().tobytes()  # little-endian on the machines we run on
    header[name] = {"dtype": dtype, "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
    blobs.append(raw)
    offset += len(raw)
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
data = struct.pack("<Q", len(text)) + text + b"".join(blobs)

print("/* tests/torch_norm_fixture.h — written by tests/torch/make_norm_fixture.py with PyTorch")
print(f" * {torch.__version__}: LayerNorm(4) as 'ln' and BatchNorm1d(4) as 'bn' (3 training batches),")
print(" * their state_dict() in safetensors. Do not edit; run the script again. */")
print("static const unsigned char torch_norm_fixture[] = {")
for i in range(0, len(data), 16):
    print("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",")
print("};")
for name, value in state.items():
    if value.dtype == torch.float32:
        cname = "torch_" + name.replace(".", "_")
        cells = (f"{v:.9g}" for v in value.tolist())
        cells = (c if any(ch in c for ch in ".e") else c + ".0" for c in cells)
        print(f"static const float {cname}[] = {{" + ", ".join(c + "f" for c in cells) + "};")
