#!/usr/bin/env bash
# setup.sh — installs what tapegrad needs to build and test, only what is missing, and makes
# `zig` runnable. Safe to run again. Debian packages (needs root or sudo) and Zig from PyPI.
set -euo pipefail

ZIG_VERSION=0.17.0
# Open MPI: dist/ (data-parallel training) and its tests; zig build -Dmpi=false builds without it
# fortunes: ~2.5 MB of English text under /usr/share/games/fortunes, the corpus of character-level
# language models (tg_text_load_corpus(ctx, "fortunes")); no test needs it
# zlib1g-dev: zlib, which inflates gzipped IDX files (tg_dataset_read_idx)
# dataset-fashion-mnist: optional, ~30 MB of gzipped IDX under /usr/share/datasets/fashion-mnist
# (tg_dataset_fashion_mnist); no test needs it (the one that reads it skips without it)
packages=(libffi-dev libjansson-dev libcriterion-dev libopenblas-dev pkg-config libopenmpi-dev openmpi-bin
          zlib1g-dev fortunes dataset-fashion-mnist)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ZIG_VERSION" ]; then
    echo "setup: installing ziglang==$ZIG_VERSION from PyPI" >&2
    python3 -m pip install -q --root-user-action=ignore "ziglang==$ZIG_VERSION"
fi

# A `zig` on PATH that runs the pip-installed compiler.
zig_path=$(command -v zig 2>/dev/null || true)
if [ -z "$zig_path" ] || [ "$("$zig_path" version 2>/dev/null)" != "$ZIG_VERSION" ]; then
    bin_dir=/usr/local/bin
    [ -w "$bin_dir" ] || bin_dir="$HOME/.local/bin"
    mkdir -p "$bin_dir"
    printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$(command -v python3)" > "$bin_dir/zig"
    chmod +x "$bin_dir/zig"
    echo "setup: wrote $bin_dir/zig" >&2
    case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "setup: add $bin_dir to PATH" >&2 ;; esac
fi
