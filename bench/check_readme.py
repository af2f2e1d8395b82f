#!/usr/bin/env python3
"""Checks the figures the README states against what the tool measures now.

    python3 bench/check_readme.py [TAPEGRAD] [--summary DIR/summary.json --seconds S]

Runs `TAPEGRAD study --out DIR` (seed 1, the README's figures are of that run) and `TAPEGRAD
study --quick`, timing both, unless a summary and its time are given. Each claim is found in
README.md by a pattern, its numbers are read from the text (so an edit of the README is checked
as written), and compared with the run's summary.json (its numbers, or the sentence of a finding
that states them) within the claim's tolerance:

- a figure written with k decimals must equal the measured value rounded to k decimals, give or
  take one unit of the last place (accuracies "93%" against 0.9331: 93 +- 1);
- counts and steps at seed 1 exactly;
- timings within a factor TIME_FACTOR either way, of the study's CPU time over the 2 cores the
  README's figures are for: wall time on this shared machine says more about its neighbours than
  about the study (the full study took 41 s quiet, 144-190 s with three builds beside it, while
  its CPU time moved from ~80 to ~91 s).

Prints PASS/FAIL per claim and exits 1 if any fails, or if a claim's pattern is no longer in the
README (a figure reworded must be rewired here, not dropped silently).
"""
import json
import os
import resource
import re
import subprocess
import sys
import tempfile
import time

TIME_FACTOR = 2.0
CORES = 2  # the README states times "on 2 cores"
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def runs(summary, experiment):
    for e in summary["experiments"]:
        if e["name"] == experiment:
            return {r["config"]: r for r in e["runs"]}
    return {}


def finding(summary, experiment):
    return next((e.get("finding", "") for e in summary["experiments"] if e["name"] == experiment), "")


def number_in(text, pattern):
    m = re.search(pattern, text)
    return float(m.group(1).rstrip(".")) if m else None  # "1.261." ends a sentence


def decimals(text):
    return len(text.split(".")[1]) if "." in text else 0


def close_as_written(written, measured, scale=1.0):
    """written (README text) against measured * scale, to the last place written, +- 1 unit."""
    if measured is None:
        return False
    unit = 10.0 ** -decimals(written)
    return abs(float(written) - round(measured * scale, decimals(written))) <= unit + 1e-9


def spread(run):
    return run["jacobian_largest"] / run["jacobian_smallest"]


def claims(summary, seconds, quick_seconds):
    """(name, README pattern, function(groups) -> [(written, measured, kind)])."""
    van = runs(summary, "vanishing")
    exp = runs(summary, "exploding")
    iso = runs(summary, "isometry")
    sharp = finding(summary, "sharpness")
    lm = finding(summary, "transformer")

    def acc(run):
        return run["test_accuracy"] * 100 if run and run.get("test_accuracy") is not None else None

    guarded = next((r for k, r in exp.items() if k.endswith("guarded")), None)
    yield ("caption: tanh/Xavier and ReLU/He test accuracy",
           r"reach (\d+)% and (\d+)% test accuracy",
           lambda g: [(g[0], acc(van.get("tanh, Xavier")), "value"), (g[1], acc(van.get("relu, He")), "value")])
    yield ("exploding: the guarded twin's rescues, rates and accuracy",
           r"\((\d+) rescues, lr ([\d.]+) → ([\d.]+) at seed 1\) ends finite at (\d+)% test accuracy",
           lambda g: [(g[0], guarded and guarded["rescues"], "exact"),
                      (g[1], guarded and number_in(guarded["config"], r"lr ([\d.]+)"), "value"),
                      (g[2], guarded and guarded["final_lr"], "value"), (g[3], acc(guarded), "value")])
    t32 = lambda init: iso.get(f"tanh, 32 layers, {init}")
    relu32 = [r for k, r in iso.items() if k.startswith("relu, 32 layers")]
    yield ("isometry: spreads at 32 layers and accuracies",
           r"orthogonal tanh spreads ([\d.]+) \(largest/smallest\) against (\d+) \(Gaussian\) and (\d+) "
           r"\(Xavier\), every ReLU net (\d+) or more, and it reaches (\d+)% where Xavier tanh is at (\d+)%",
           lambda g: [(g[0], spread(t32("orthogonal")), "value"), (g[1], spread(t32("Gaussian 1/fan_in")), "relative"),
                      (g[2], spread(t32("Xavier")), "relative"),
                      (g[3], min(spread(r) for r in relu32) if relu32 else None, "at_most"),
                      (g[4], acc(t32("orthogonal")), "value"), (g[5], acc(t32("Xavier")), "value")])
    yield ("sharpness: the edge of stability at lr 0.4 and 0.6, lr 0.2 below it, lr 2's blow-up",
           r"lr 0.4 and 0.6 settle within (\d+)% and ([\d.]+)% of 2/lr.*?lr 0.2 stays (\d+)% below it.*?"
           r"past 2 from step 0 \((\d+)\) and the onset detector finds the blow-up from step (\d+), NaN at step (\d+)",
           lambda g: [(g[0], number_in(sharp, r"GD lr 0.4 .*?stayed within ([\d.]+)% of 2/lr"), "value"),
                      (g[1], number_in(sharp, r"GD lr 0.6 .*?stayed within ([\d.]+)% of 2/lr"), "value"),
                      (g[2], number_in(sharp, r"GD lr 0.2 .*?stayed ([\d.]+)% below 2/lr"), "value"),
                      (g[3], number_in(sharp, r"GD lr 2 .*?crossed 2 at step 0 \(([\d.]+)\)"), "value"),
                      (g[4], number_in(sharp, r"GD lr 2 .*?blow-up starting at step (\d+)"), "exact"),
                      (g[5], number_in(sharp, r"GD lr 2 .*?NaN/Inf at step (\d+)"), "exact")])
    if lm:
        yield ("transformer: attention entropy at 10x the rate, without and with qk-norm",
               r"collapses \(([\d.]+) nats against ([\d.]+)\) unless q and k are layer-normed \(([\d.]+);",
               lambda g: [(g[0], number_in(lm, r"lowest head entropy reaches ([\d.]+) nats without qk-norm"), "value"),
                          (g[1], number_in(lm, r"without qk-norm against ([\d.]+) at lr"), "value"),
                          (g[2], number_in(lm, r"with qk-layer-norm it stays at or above ([\d.]+)"), "value")])
    yield ("the full study's time", r"run `tapegrad study` \(~(\d+) s on 2 cores\)",
           lambda g: [(g[0], seconds, "time")])
    if quick_seconds is not None:
        yield ("the quick study's time", r"`--quick` runs the same\ncode with fewer steps \(~(\d+) s on 2 cores",
               lambda g: [(g[0], quick_seconds, "time")])


def judge(written, measured, kind):
    if measured is None:
        return False
    if kind == "exact":
        return float(written) == float(measured)
    if kind == "at_most":  # "N or more": the smallest measured is at least N, and N is near it
        return measured >= float(written) and measured < 1.1 * float(written)
    if kind == "relative":  # large spreads: within 5%
        return abs(measured - float(written)) <= 0.05 * float(written)
    if kind == "time":
        return float(written) / TIME_FACTOR <= measured <= float(written) * TIME_FACTOR
    return close_as_written(written, measured)


def run_study(tool, args):
    """The study's CPU time (user + system) over CORES: its wall time on a quiet machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([tool, "study", *args], check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"  study {' '.join(args[:1])}: {wall:.1f} s wall, {cpu:.1f} s CPU ({cpu / CORES:.1f} s over {CORES} cores)")
    return cpu / CORES


def main(argv):
    tool = argv[0] if argv and not argv[0].startswith("--") else "zig-out/bin/tapegrad"
    summary_path = argv[argv.index("--summary") + 1] if "--summary" in argv else None
    seconds = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else None
    quick_seconds = None
    with tempfile.TemporaryDirectory() as out:
        if not summary_path:
            seconds = run_study(tool, ["--out", out, "--seed", "1"])
            quick_seconds = run_study(tool, ["--quick", "--out", os.path.join(out, "quick")])
            summary_path = os.path.join(out, "summary.json")
        with open(summary_path) as f:
            summary = json.load(f)
    with open(README) as f:
        readme = f.read()
    failed = 0
    for name, pattern, measure in claims(summary, seconds, quick_seconds):
        m = re.search(pattern, readme, re.S)
        if not m:
            print(f"  FAIL  {name}: the README no longer says it (pattern {pattern!r})")
            failed += 1
            continue
        pairs = measure(m.groups())
        ok = all(judge(w, v, k) for w, v, k in pairs)
        failed += not ok
        shown = ", ".join(f"{w} vs {v:.4g}" if isinstance(v, (int, float)) else f"{w} vs {v}" for w, v, _ in pairs)
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: README vs measured: {shown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
