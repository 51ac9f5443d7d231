#!/usr/bin/env python3
"""Overhead of strata's debugging modes on the benchmark workloads.

Runs each workload of bench/ (full sizes) under LD_PRELOAD of one
libstrata.so in several modes, interleaved within each round, and prints
the median wall and CPU (user + sys) time per mode with its ratio to the
default mode, as a Markdown table (docs/hardening.md). CPU time is the
statistic reported (median, or minimum with --stat min).

  tests/misuse/overhead.py --bin-dir build-bench/bench/bin \
      --lib build/libstrata.so [--baseline-lib other/libstrata.so] [--rounds 3]
      [--other-lib before=old/libstrata.so]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

WORKLOADS = {
    "larson-1t": ["larson", "--threads", "1", "--slots", "8000", "--rounds", "60", "--ops", "150000"],
    "xmalloc-2t": ["xmalloc", "--threads", "2", "--batches", "80000"],
    "mstress-1t": ["mstress", "--threads", "1", "--generations", "10", "--items", "40000",
                   "--ops", "250000"],
    "alloc-test-1t": ["alloc_test", "--threads", "1", "--live", "8000", "--ops", "3000000"],
    "glibc-simple": ["glibc_simple", "--iters", "6000"],
    "glibc-thread-2t": ["glibc_thread", "--threads", "2", "--ops", "12000000"],
    "rbtree": ["rbtree", "--base", "100000", "--ops", "250000"],
    "realloc-growth": ["realloc_growth", "--max", "256M", "--strings", "6000", "--appends", "150",
                       "--repeat", "1"],
}

MODES = {
    "default": {},
    "sampled 1/1000": {"STRATA_OPTIONS": "guard_sample_rate=1000"},
    "sampled 1/10000": {"STRATA_OPTIONS": "guard_sample_rate=10000"},
    "sampled 1/100000": {"STRATA_OPTIONS": "guard_sample_rate=100000"},
    "check=3": {"MALLOC_CHECK_": "3"},
    "guard all": {"STRATA_OPTIONS": "guard_sample_rate=1"},
}


def run(argv, env, timeout):
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid != 0:
            break
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return None
        time.sleep(0.005)
    wall = time.monotonic() - start
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    return wall, usage.ru_utime + usage.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--lib", required=True)
    p.add_argument("--baseline-lib", help="a libstrata.so without the debugging hooks")
    p.add_argument("--other-lib", action="append", default=[], metavar="LABEL=PATH",
                   help="also run every mode but default with this libstrata.so, as 'MODE (LABEL)' "
                        "(e.g. an older build, to compare before and after in one interleaved run)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--only", help="comma-separated workloads")
    p.add_argument("--modes", help="comma-separated modes")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="statistic over the rounds (min is steadier on a loaded machine)")
    args = p.parse_args()

    variants = []  # (label, lib, extra env)
    if args.baseline_lib:
        variants.append(("baseline (no hooks)", os.path.abspath(args.baseline_lib), {}))
    modes = args.modes.split(",") if args.modes else list(MODES)
    for mode in modes:
        for other in args.other_lib:
            label, _, path = other.partition("=")
            if mode != "default":
                variants.append(("%s (%s)" % (mode, label), os.path.abspath(path), MODES[mode]))
        variants.append((mode, os.path.abspath(args.lib), MODES[mode]))
    names = args.only.split(",") if args.only else list(WORKLOADS)
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("LD_PRELOAD", "STRATA_OPTIONS", "MALLOC_CHECK_")}
    results = {(w, v[0]): [] for w in names for v in variants}
    for r in range(args.rounds):
        for w in names:
            argv = [os.path.join(args.bin_dir, WORKLOADS[w][0])] + WORKLOADS[w][1:]
            for label, lib, extra in variants:
                env = dict(base_env, LD_PRELOAD=lib, **extra)
                res = run(argv, env, args.timeout)
                results[(w, label)].append(res)
                shown = "failed/timeout" if res is None else "%.3f s wall %.3f s cpu" % res
                print("round %d %-16s %-20s %s" % (r + 1, w, label, shown), file=sys.stderr)

    def median(w, label, index):
        values = [x[index] for x in results[(w, label)] if x is not None]
        if not values:
            return None
        return statistics.median(values) if args.stat == "median" else min(values)

    labels = [v[0] for v in variants]
    print("| workload | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    ratios = {label: [] for label in labels}
    for w in names:
        ref = median(w, "default", 1)
        cells = []
        for label in labels:
            m = median(w, label, 1)
            if m is None:
                cells.append("failed")
                continue
            ratio = m / ref if ref else float("nan")
            ratios[label].append(ratio)
            cells.append("%.3f (%.2f)" % (m, ratio))
        print("| %s | %s |" % (w, " | ".join(cells)))
    geo = []
    for label in labels:
        rs = ratios[label]
        geo.append("**%.2f**" % statistics.geometric_mean(rs) if rs else "-")
    print("| **geometric mean of ratios** | " + " | ".join(geo) + " |")


if __name__ == "__main__":
    main()
