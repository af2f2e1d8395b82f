#!/usr/bin/env bash
# bench/kann_chain.sh — the scalar chain (bench/bench_kann.c) in tapegrad, KANN and plain C, on
# one core, rounds interleaved, medians with min-max; then callgrind's instructions per op.
#
#   bench/kann_chain.sh [--kann SRC] [--baseline REV] [--rounds N] [--passes P] [--cpu C]
#                       [--no-callgrind]
#
# SRC: a git directory of attractivechaos/kann (default: the fetched mirror below) or a
# directory holding kautodiff.c and kautodiff.h. Those two files are extracted into a temporary
# directory and compiled there: KANN's code never enters this repository.
# --baseline REV also builds the library of git revision REV (in a temporary worktree) and
# alternates the two programs round by round, so before and after are measured in one run.
#
# Times are CPU time (bench_kann.c says why). rec_fwd and rep_fwd are the recording and the
# replay alone; walk_rec and walk_rep the backward walk per node (ours - rec_fwd, replayed -
# rep_fwd, within each round), to set beside them.
#
# Flags: the library is `zig build -Doptimize=ReleaseFast` (zig's clang at -O2, the build
# machine's CPU: -mcpu=native, here znver3, -ffp-contract=off); bench_kann.c and kautodiff.c
# get the same from `zig cc -O2 -march=native -ffp-contract=off`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
kann=/work/.mirror/attractivechaos+kann/repo
baseline="" rounds=7 passes=300 cpu=1 callgrind=1
while [ $# -gt 0 ]; do
    case "$1" in
        --kann) kann=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --passes) passes=$2; shift 2 ;;
        --cpu) cpu=$2; shift 2 ;;
        --no-callgrind) callgrind=0; shift ;;
        *) sed -n '2,18p' "$0" >&2; exit 2 ;;
    esac
done

tmp=$(mktemp -d)
cleanup() {
    if [ -n "$baseline" ] && [ -d "$tmp/base" ]; then git -C "$root" worktree remove --force "$tmp/base"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/kann"
if [ -f "$kann/kautodiff.c" ]; then
    cp "$kann/kautodiff.c" "$kann/kautodiff.h" "$tmp/kann/"
else
    for f in kautodiff.c kautodiff.h; do git --git-dir="$kann" show "HEAD:$f" >"$tmp/kann/$f"; done
    echo "KANN: $(git --git-dir="$kann" log -1 --format='%h %s' HEAD)"
fi

cflags=(-O2 -march=native -ffp-contract=off -D_POSIX_C_SOURCE=200809L)
zig cc "${cflags[@]}" -w -c "$tmp/kann/kautodiff.c" -o "$tmp/kautodiff.o"

# build_program NAME TREE: TREE's ReleaseFast library, static, and bench_kann linked against it
build_program() {
    local name=$1 tree=$2 prefix="$tmp/$1-prefix"
    (cd "$tree" && zig build -Doptimize=ReleaseFast -Dlinkage=static -Dmpi=false -p "$prefix")
    # bench_kann.c of this tree: a baseline older than it gets today's driver
    zig cc "${cflags[@]}" -std=c11 -I"$root" -I"$tmp/kann" -I"$prefix/include" \
        "$root/bench/bench_kann.c" "$tmp/kautodiff.o" \
        -Wl,--whole-archive "$prefix/lib/libtapegrad.a" -Wl,--no-whole-archive -Wl,--export-dynamic \
        $(pkg-config --libs libffi jansson zlib) -lm -ldl -lpthread -o "$tmp/$name"
}

programs=(after)
build_program after "$root"
if [ -n "$baseline" ]; then
    git -C "$root" worktree add --detach "$tmp/base" "$baseline" >/dev/null
    build_program before "$tmp/base"
    programs=(before after)
fi

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), pinned to core $cpu"
# One process per program per round, alternating: both see the same machine state.
for ((r = 0; r < rounds; r++)); do
    for prog in "${programs[@]}"; do
        taskset -c "$cpu" "$tmp/$prog" 1 "$passes" | sed -n "s/^round/$prog/p"
    done
done >"$tmp/rounds"

python3 - "$tmp/rounds" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    prog, vals = f[0], dict(zip(f[1::2], map(float, f[2::2])))
    # the backward walk per node: the pass less its forward alone, within the round
    if "rec_fwd" in vals:
        vals["walk_rec"] = vals["ours"] - vals["rec_fwd"]
        vals["walk_rep"] = vals["replayed"] - vals["rep_fwd"]
    for name, v in vals.items():
        rows.setdefault((prog, name), []).append(v)
        rows.setdefault((prog, name + "/kann"), []).append(v / vals["kann"])
        rows.setdefault((prog, name + "/plain"), []).append(v / vals["plain"])
print(f"{'':9} {'program':9} {'ns/op median [min-max]':>25} {'/ KANN':>20} {'/ plain C':>20}")
for (prog, name), v in rows.items():
    if "/" in name: continue
    k, p = rows[(prog, name + "/kann")], rows[(prog, name + "/plain")]
    print(f"{prog:9} {name:9} {statistics.median(v):9.2f} [{min(v):.2f}-{max(v):.2f}]"
          f" {statistics.median(k):7.3f} [{min(k):.2f}-{max(k):.2f}]"
          f" {statistics.median(p):7.3f} [{min(p):.2f}-{max(p):.2f}]")
print(f"({len(v)} rounds; ratios within a round)")
EOF

[ "$callgrind" = 1 ] || exit 0
echo "callgrind, instructions per op (20 passes of 2,000 ops after a warm-up pass):"
for prog in "${programs[@]}"; do
    for name in ours replayed kann plain rec_fwd rep_fwd; do
        out="$tmp/cg.$prog.$name"
        valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect=counted_passes \
            "$tmp/$prog" only "$name" 20 >/dev/null 2>"$out.log"
        ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        printf '%-9s %-9s %7.1f\n' "$prog" "$name" "$(echo "$ir / (20 * 2000)" | bc -l)"
    done
done
