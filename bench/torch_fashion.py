#!/usr/bin/python3
"""bench/torch_fashion.py — PyTorch's side of the Fashion-MNIST comparison (issue 23).

Trains tapegrad's LeNet or CIFAR ResNet, layer for layer, in PyTorch with tapegrad's optimizer,
per-step schedule and augmentation, to compare test accuracy (within 0.5 points) and time per
epoch with `tapegrad train --model lenet|resnet --data fashion-mnist --epochs N ...`:

  taskset -c 1 /usr/bin/python3 bench/torch_fashion.py --model resnet --depth 20 --epochs 1 \\
      --train-subset 5000 --threads 1

Options mirror `tapegrad train`: --model lenet|resnet|plaincnn --depth --width --epochs --batch
--lr --optimizer sgd|adam|adamw --momentum --weight-decay --init he|xavier|orthogonal|normal:STD
--schedule cosine|linear|step:N:GAMMA|warmup:N[,cosine|,linear|,step:N:GAMMA] (steps, not
epochs: the rate is set before every step, as tg_optimizer_set_schedule does; cosine and linear
reach 0 at the run's last step) --augment crop:P,flip --threads N --seed N --train-subset N.
Defaults are tapegrad's for the CNNs: Adam, lr 3e-3, batch 64, width 8, depth 20, He init.
Per epoch it prints the epoch, the mean training loss over its steps, the test accuracy, the
seconds of training (wall and CPU, evaluation excluded) and images per second (of wall time, and
of CPU time: the steadier figure on a shared machine, where wall time counts the neighbours;
with --threads N the CPU time adds up N threads); at the end one line `JSON {...}` with every
figure. Needs Debian's python3-torch (1.13, CPU); no torchvision.

Data: the gzipped IDX files of /usr/share/datasets/fashion-mnist (Debian's
dataset-fashion-mnist), read with gzip + numpy; pixels / 255 in [0, 1] and nothing else (no
mean/std normalisation: tapegrad's IDX reader does only that); the official 60,000 / 10,000
split. --train-subset N keeps N training images drawn by a seeded permutation. An epoch is
floor(N / batch) steps over a fresh seeded permutation, the last partial batch dropped
(tg_batcher_new(..., shuffle true, drop_last true, seed)). Evaluation: the whole test set in
eval mode (batch norm's running statistics), no gradients.

Augmentation (per image, seeded, on torch tensors): crop:P pads by P zeros on each side and
takes a random 28x28 window (torchvision's RandomCrop(28, padding=P)); flip mirrors left-right
with probability 1/2 (RandomHorizontalFlip).

The architectures (models/cnn.c, cli/runner.c; tapegrad name -> torch module; state_dict keys
are tapegrad's names without the root "lenet." / "resnet."):

  LeNet (tg_lenet_new), 1x28x28 input:
    lenet.conv1  conv2d 1->16, 3x3, pad 1, bias  -> nn.Conv2d(1, 16, 3, padding=1), ReLU, max pool 2
    lenet.conv2  conv2d 16->32, 3x3, pad 1, bias -> nn.Conv2d(16, 32, 3, padding=1), ReLU, max pool 2
    lenet.fc1    linear 32*7*7=1568 -> 120       -> nn.Linear(1568, 120), ReLU
    lenet.fc2    linear 120 -> 84                -> nn.Linear(120, 84), ReLU
    lenet.fc3    linear 84 -> 10 (the logits)    -> nn.Linear(84, 10)
    204,094 parameters in 10 tensors (tapegrad params --model lenet on 28x28 IDX data).
  ResNet-(6n+2) (tg_resnet_new; He et al. 2016, section 4.2), width w (tapegrad's CLI default 8):
    resnet.stem.conv|bn         -> stem.conv nn.Conv2d(1, w, 3, padding=1, bias=False), stem.bn
                                   nn.BatchNorm2d(w), ReLU
    resnet.stage<s>.block<b>    -> stage<s>.block<b>: BasicBlock, s = 1..3 of widths w, 2w, 4w,
                                   b = 1..n; relu(bn2(conv2(relu(bn1(conv1(h))))) + shortcut(h)),
                                   3x3 convs without bias; block 1 of stages 2 and 3 has stride 2
                                   in conv1
      .conv1|bn1|conv2|bn2      -> .conv1 .bn1 .conv2 .bn2 (nn.Conv2d / nn.BatchNorm2d)
      .shortcut.conv|bn         -> .shortcut.conv nn.Conv2d(in, out, 1, stride=2, bias=False) +
                                   .shortcut.bn: the projection (option B), only where the stride
                                   or the width changes; elsewhere the identity
    global average pool, resnet.fc linear 4w -> 10 -> fc nn.Linear(4w, 10)
    plaincnn: the same without any shortcut (projections included).
    Depth 20, width 8: 68,642 parameters in 65 tensors; width 16: 272,186; depth 8, width 8:
    19,810 (tapegrad params --model resnet --depth D --width W; this script prints its count).
  Initialisation (models/init.c; tapegrad's gains are torch.nn.init.calculate_gain's):
    conv weights, lenet fc1/fc2: tg_init_he(RELU), He normal fan_in ->
        nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu");
        --init xavier -> xavier_uniform_(w, gain=sqrt 2); orthogonal -> orthogonal_(w, gain=sqrt 2);
        normal:STD -> normal_(w, 0, STD)
    the logits (lenet.fc3, resnet.fc): tg_init_xavier(IDENTITY) -> nn.init.xavier_uniform_(w)
    every bias: zero (torch's default is uniform: reset here); batch norm: weight 1, bias 0,
    running mean 0, var 1, eps 1e-5, momentum 0.1 (PyTorch's defaults).
  Loss: mean cross entropy. Optimizers (models/optim.c follows PyTorch's): sgd -> torch.optim.SGD
  (momentum, dampening 0, weight decay as L2 on the gradient), adam -> Adam (0.9, 0.999, 1e-8,
  L2 weight decay), adamw -> AdamW (decoupled); weight decay on every parameter, batch norm's and
  biases included, as tapegrad's optimizer over all the module's parameters.
"""
import argparse
import ctypes
import gzip
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = 10


# ---- data -------------------------------------------------------------------------------------

def read_idx_gz(path, ndim):
    """An IDX file of unsigned bytes (magic 0x0000080<ndim>), gzipped, as a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic != 0x800 + ndim:
        sys.exit(f"{path}: magic 0x{magic:08x}, expected 0x{0x800 + ndim:08x}")
    dims = [int.from_bytes(raw[4 + 4 * d:8 + 4 * d], "big") for d in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        sys.exit(f"{path}: dims {dims} need {int(np.prod(dims))} bytes, the file has {data.size}")
    return data.reshape(dims)


def load_split(data_dir, prefix):
    images = read_idx_gz(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"), 3)
    labels = read_idx_gz(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"), 1)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # [N, 1, 28, 28]
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def parse_augment(text):
    """'crop:P,flip' (either, both, or 'none') -> (padding or 0, flip)."""
    pad, flip = 0, False
    for item in filter(None, (text or "none").split(",")):
        if item == "flip":
            flip = True
        elif item.startswith("crop:") and item[5:].isdigit() and int(item[5:]) >= 1:
            pad = int(item[5:])
        elif item != "none":
            sys.exit(f"--augment: expected crop:P and/or flip (comma-separated), got '{item}'")
    return pad, flip


def augment(x, pad, flip, gen):
    """RandomCrop(H, padding=pad) and RandomHorizontalFlip on a batch, per image, seeded by gen."""
    n, c, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        # each image's own window: its h rows from oy (all padded columns), then w columns from ox
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None].expand(n, c, h, w + 2 * pad)
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :].expand(n, c, h, w)
        x = padded.gather(2, rows).gather(3, cols)
    if flip:
        mirror = torch.rand(n, generator=gen) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x


# ---- models -----------------------------------------------------------------------------------

class LeNet(nn.Module):
    def __init__(self, channels=1, height=28, width=28, classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * (height // 4) * (width // 4), 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)
        self.hidden = [self.conv1, self.conv2, self.fc1, self.fc2]  # tapegrad's `init`
        self.logits = [self.fc3]                                    # Xavier, gain 1

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc1(torch.flatten(h, 1)))
        return self.fc3(F.relu(self.fc2(h)))


class ConvBN(nn.Module):
    """tapegrad's conv_bn pair: '<x>.conv' / '<x>.bn' (the stem, the projection)."""

    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, skip):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = skip
        # the projection exactly where the identity cannot be added (and never in the plain twin)
        self.shortcut = ConvBN(cin, cout, 1, stride) if skip and (stride != 1 or cin != cout) else None

    def forward(self, h):
        t = F.relu(self.bn1(self.conv1(h)))
        t = self.bn2(self.conv2(t))
        if self.skip:
            t = t + (self.shortcut(h) if self.shortcut is not None else h)
        return F.relu(t)


class Stage(nn.Module):
    """Blocks named block1..blockn, as tapegrad names them (nn.Sequential would say 0..n-1)."""

    def __init__(self, blocks):
        super().__init__()
        self.names = [f"block{i + 1}" for i in range(len(blocks))]
        for name, block in zip(self.names, blocks):
            self.add_module(name, block)

    def forward(self, h):
        for name in self.names:
            h = getattr(self, name)(h)
        return h


class ResNet(nn.Module):
    def __init__(self, depth=20, width=8, skip=True, channels=1, classes=CLASSES):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            sys.exit(f"--depth: 6n+2 weight layers (8, 20, 32, 56), got {depth}")
        n = (depth - 2) // 6
        self.stem = ConvBN(channels, width, 3, 1)
        cin = width
        for s in (1, 2, 3):
            cout = width << (s - 1)
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if s > 1 and i == 0 else 1, skip))
                cin = cout
            self.add_module(f"stage{s}", Stage(blocks))
        self.fc = nn.Linear(cin, classes)
        self.hidden = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        self.logits = [self.fc]

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = self.stage3(self.stage2(self.stage1(h)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def initialise(model, init):
    """tapegrad's initialisers (models/init.c) for a ReLU net, biases zero."""
    relu_gain = nn.init.calculate_gain("relu")
    for m in model.hidden:
        if init == "he":
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif init == "xavier":
            nn.init.xavier_uniform_(m.weight, gain=relu_gain)
        elif init == "orthogonal":
            nn.init.orthogonal_(m.weight, gain=relu_gain)
        elif init.startswith("normal:"):
            nn.init.normal_(m.weight, 0.0, float(init[7:]))
        else:
            sys.exit(f"--init: expected he, xavier, orthogonal or normal:STD, got '{init}'")
    for m in model.logits:
        nn.init.xavier_uniform_(m.weight)
    for m in model.hidden + model.logits:
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# ---- schedule (models/schedule.c, cli/schedule_arg.c) ------------------------------------------

def parse_schedule(text, total_steps):
    """tapegrad's --schedule spelling -> a function step -> factor on --lr."""
    if not text or text == "constant":
        return lambda step: 1.0
    warmup, decay = 0, text
    if text.startswith("warmup:"):
        head, _, decay = text[7:].partition(",")
        if not head.isdigit() or int(head) < 1:
            sys.exit(f"--schedule: warmup:N wants a whole N >= 1, got '{text}'")
        warmup = int(head)
    kind, step_size, gamma = "constant", 0, 1.0
    if decay in ("cosine", "linear"):
        kind = decay
    elif decay.startswith("step:"):
        parts = decay.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < 1:
            sys.exit(f"--schedule: step:N:GAMMA, got '{decay}'")
        kind, step_size, gamma = "step", int(parts[1]), float(parts[2])
    elif decay:
        sys.exit(f"--schedule: cosine|linear|step:N:GAMMA|warmup:N[,...], got '{text}'")
    if kind in ("cosine", "linear") and warmup >= total_steps:
        sys.exit(f"--schedule: the warm-up ({warmup} steps) leaves no step of {total_steps} to decay over")
    span = total_steps - warmup

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        after = step - warmup
        if kind == "step":
            return gamma ** (after // step_size)
        if kind in ("cosine", "linear"):
            p = min(after / span, 1.0)  # min_lr 0; it stays there past the end
            return 0.5 * (1.0 + math.cos(math.pi * p)) if kind == "cosine" else 1.0 - p
        return 1.0
    return factor


# ---- --verify LIB: the same model built by tapegrad (through ctypes) ----------------------------

class TgInit(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("a", ctypes.c_float), ("b", ctypes.c_float),
                ("gain", ctypes.c_float), ("nonlinearity", ctypes.c_int), ("fan_out", ctypes.c_bool)]


class TgLenetConfig(ctypes.Structure):
    _fields_ = [("channels", ctypes.c_int64), ("height", ctypes.c_int64), ("width", ctypes.c_int64),
                ("classes", ctypes.c_int64), ("init", TgInit), ("seed", ctypes.c_uint64)]


class TgResnetConfig(ctypes.Structure):
    _fields_ = [("channels", ctypes.c_int64), ("classes", ctypes.c_int64), ("depth", ctypes.c_int),
                ("width", ctypes.c_int64), ("skip", ctypes.c_bool), ("init", TgInit),
                ("seed", ctypes.c_uint64)]


def read_safetensors(path):
    """{name: float32 tensor} of an F32 safetensors file (8-byte length, JSON header, data)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        data = np.frombuffer(raw, dtype=np.float32, count=(end - begin) // 4, offset=8 + n + begin)
        out[name] = torch.from_numpy(data.copy()).reshape(t["shape"])
    return out


def verify(args, model, x):
    """Builds args.model in tapegrad (libtapegrad.so at args.verify, default init, args.seed),
    loads its initial state into the torch model by name, and compares the logits of x in
    training mode (batch statistics) and in evaluation mode; then the spread of each weight's
    initial values, tapegrad's against this script's own initialisation. Exit status 1 when the
    names, the shapes or the logits (1e-4 relative) differ."""
    lib = ctypes.CDLL(args.verify)
    lib.tg_ctx_new.restype = ctypes.c_void_p
    lib.tg_tape_new.restype = ctypes.c_void_p
    lib.tg_tape_new.argtypes = [ctypes.c_void_p]
    lib.tg_errmsg.restype = ctypes.c_char_p
    lib.tg_errmsg.argtypes = [ctypes.c_void_p]
    lib.tg_lenet_new.restype = lib.tg_resnet_new.restype = ctypes.c_void_p
    lib.tg_lenet_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(TgLenetConfig)]
    lib.tg_resnet_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(TgResnetConfig)]
    lib.tg_module_save.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.tg_module_set_training.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    lib.tg_tape_from_data.restype = lib.tg_module_forward.restype = ctypes.c_void_p
    lib.tg_tape_from_data.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                                      ctypes.POINTER(ctypes.c_float)]
    lib.tg_module_forward.argtypes = [ctypes.c_void_p] * 3
    lib.tg_tape_reset.argtypes = lib.tg_tape_free.argtypes = [ctypes.c_void_p]
    lib.tg_module_free.argtypes = lib.tg_ctx_free.argtypes = [ctypes.c_void_p]
    ctx = lib.tg_ctx_new()
    root = args.model
    if args.model == "lenet":  # an all-zero init: the CNNs' own default, He
        m = lib.tg_lenet_new(ctx, b"lenet", TgLenetConfig(1, 28, 28, CLASSES, TgInit(), args.seed))
    else:
        rc = TgResnetConfig(1, CLASSES, args.depth, args.width, args.model == "resnet", TgInit(), args.seed)
        m = lib.tg_resnet_new(ctx, root.encode(), rc)
    if not m:
        sys.exit("tapegrad: " + lib.tg_errmsg(ctx).decode())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        if lib.tg_module_save(m, path.encode()) != 0:
            sys.exit("tapegrad: " + lib.tg_errmsg(ctx).decode())
        theirs = {k[len(root) + 1:]: v for k, v in read_safetensors(path).items()}
    ours = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    ok = set(theirs) == set(ours) and all(theirs[k].shape == ours[k].shape for k in ours)
    print(f"verify: {len(theirs)} tapegrad tensors, {len(ours)} torch tensors: names and shapes "
          f"{'agree' if ok else 'DIFFER'}")
    if not ok:
        print("  only tapegrad:", sorted(set(theirs) - set(ours)), "\n  only torch:", sorted(set(ours) - set(theirs)))
        sys.exit(1)
    # the spread of the initial weights (ours are this script's initialisation, seed args.seed)
    for k in ours:
        if k.endswith("weight") and ours[k].dim() > 1:
            print(f"  init {k:34s} std tapegrad {theirs[k].std().item():.4f}  torch {ours[k].std().item():.4f}")
    model.load_state_dict(theirs, strict=False)
    tape = lib.tg_tape_new(ctx)
    shape = (ctypes.c_int64 * 4)(*x.shape)
    worst = 0.0
    for training in (True, False):  # training first: both update their running statistics alike
        model.train(training)
        lib.tg_module_set_training(m, training)
        lib.tg_tape_reset(tape)
        xin = x.contiguous()
        t = lib.tg_tape_from_data(tape, 4, shape, ctypes.cast(xin.data_ptr(), ctypes.POINTER(ctypes.c_float)))
        out = lib.tg_module_forward(m, tape, t)
        if not out:
            sys.exit("tapegrad: " + lib.tg_errmsg(ctx).decode())
        data = ctypes.cast(out, ctypes.POINTER(ctypes.POINTER(ctypes.c_float)))[0]  # tg_tensor.data
        tg = torch.from_numpy(np.ctypeslib.as_array(data, shape=(len(x), CLASSES)).copy())
        with torch.no_grad():
            th = model(x)
        diff = ((tg - th).abs().max() / th.abs().max()).item()
        worst = max(worst, diff)
        print(f"verify: logits of {len(x)} test images, {'training' if training else 'evaluation'} "
              f"mode: max |tapegrad - torch| / max |torch| = {diff:.2e}")
    lib.tg_tape_free(tape)
    lib.tg_module_free(m)
    lib.tg_ctx_free(ctx)
    sys.exit(0 if worst < 1e-4 else 1)


# ---- training ---------------------------------------------------------------------------------

def evaluate(model, x, y, batch=1000):
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            right += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return right / len(x)


def make_optimizer(args, params):
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["lenet", "resnet", "plaincnn"], default="lenet")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    ap.add_argument("--momentum", type=float, default=0.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--init", default="he")
    ap.add_argument("--schedule", default=None)
    ap.add_argument("--augment", default="none")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-subset", type=int, default=0)
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--verify", metavar="LIB", help="check the model against tapegrad's own, built "
                    "through LIB (zig-out/lib/libtapegrad.so), then exit")
    args = ap.parse_args()
    for flag, value, low in (("--epochs", args.epochs, 1), ("--batch", args.batch, 1),
                             ("--threads", args.threads, 1), ("--width", args.width, 1),
                             ("--train-subset", args.train_subset, 0)):
        if value < low:
            sys.exit(f"{flag}: at least {low}, got {value}")
    if not (args.lr > 0 and args.weight_decay >= 0 and 0 <= args.momentum <= 1):
        sys.exit("--lr > 0, --weight-decay >= 0, 0 <= --momentum <= 1")
    if args.momentum and args.optimizer != "sgd":
        sys.exit("--momentum is SGD's (Adam's betas are 0.9, 0.999)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)  # subset, order, augmentation
    pad, flip = parse_augment(args.augment)

    x_train, y_train = load_split(args.data_dir, "train")
    x_test, y_test = load_split(args.data_dir, "t10k")
    if args.train_subset:
        if args.train_subset > len(x_train):
            sys.exit(f"--train-subset {args.train_subset} of {len(x_train)} images")
        keep = torch.randperm(len(x_train), generator=gen)[:args.train_subset]
        x_train, y_train = x_train[keep].contiguous(), y_train[keep].contiguous()
    steps_per_epoch = len(x_train) // args.batch
    if steps_per_epoch < 1:
        sys.exit(f"--batch {args.batch} is larger than the {len(x_train)} training images")
    total_steps = steps_per_epoch * args.epochs

    if args.model == "lenet":
        model = LeNet()
    else:
        model = ResNet(args.depth, args.width, skip=args.model == "resnet")
    initialise(model, args.init)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    opt = make_optimizer(args, params)
    factor = parse_schedule(args.schedule, total_steps)
    name = args.model if args.model == "lenet" else f"{args.model}{args.depth} width {args.width}"
    print(f"{name}: {n_params:,} parameters in {len(params)} tensors; {len(x_train)} training, "
          f"{len(x_test)} test images; {steps_per_epoch} steps of {args.batch} per epoch; "
          f"{args.optimizer} lr {args.lr:g}; augment {args.augment}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    if args.verify:
        verify(args, model, x_test[:64])

    epochs, step = [], 0
    model.train()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x_train), generator=gen)
        loss_sum = 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(steps_per_epoch):
            idx = order[i * args.batch:(i + 1) * args.batch]
            x = x_train[idx]
            if pad or flip:
                x = augment(x, pad, flip, gen)
            for group in opt.param_groups:
                group["lr"] = args.lr * factor(step)
            loss = F.cross_entropy(model(x), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            step += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        accuracy = evaluate(model, x_test, y_test)
        images = steps_per_epoch * args.batch
        e = {"epoch": epoch, "train_loss": loss_sum / steps_per_epoch, "test_accuracy": accuracy,
             "seconds": wall, "cpu_seconds": cpu, "images_per_second": images / wall,
             "images_per_cpu_second": images / cpu,
             "lr_end": args.lr * factor(step - 1)}
        epochs.append(e)
        print(f"epoch {epoch}: train loss {e['train_loss']:.4f}, test accuracy {100 * accuracy:.2f}%, "
              f"{wall:.2f} s training ({cpu:.2f} s CPU), {e['images_per_second']:.0f} images/s "
              f"({e['images_per_cpu_second']:.0f} per CPU second)",
              flush=True)

    images = steps_per_epoch * args.batch * args.epochs  # --epochs >= 1: no division by 0
    summary = {"framework": "pytorch", "torch": torch.__version__, "model": args.model,
               "depth": args.depth if args.model != "lenet" else None,
               "width": args.width if args.model != "lenet" else None,
               "parameters": n_params, "threads": torch.get_num_threads(), "seed": args.seed,
               "batch": args.batch, "optimizer": args.optimizer, "lr": args.lr,
               "momentum": args.momentum, "weight_decay": args.weight_decay, "init": args.init,
               "schedule": args.schedule or "constant", "augment": args.augment,
               "train_images": len(x_train), "test_images": len(x_test),
               "steps": total_steps, "epochs": epochs,
               "test_accuracy": epochs[-1]["test_accuracy"],
               "mean_epoch_seconds": sum(e["seconds"] for e in epochs) / len(epochs),
               "mean_images_per_second": images / sum(e["seconds"] for e in epochs),
               "mean_images_per_cpu_second": images / sum(e["cpu_seconds"] for e in epochs)}
    print("JSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
