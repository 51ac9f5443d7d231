#!/usr/bin/env python3
"""Counts the instructions of one malloc+free pair on each allocator's fast
path, with callgrind (valgrind --tool=callgrind).

For each mode of the fastpath program (fixed32, ring, classes) the measured
function runs twice, with N1 and N2 pairs; only that function is counted
(--toggle-collect), and (I(N2) - I(N1)) / (N2 - N1) is the steady-state cost
of one pair, warm-up excluded. It includes a few instructions of loop
overhead per pair, the same for every allocator.

usage: measure.py [--binary PATH] [--build-dir DIR] [--strata-lib PATH]
                  [--allocators glibc,jemalloc,...]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
MODES = ("fixed32", "ring", "classes")
N1, N2 = 20000, 120000

LIB_DIR = "/usr/lib/x86_64-linux-gnu"
PEER_LIBS = {
    "glibc": None,
    "jemalloc": LIB_DIR + "/libjemalloc.so.2",
    "tcmalloc": LIB_DIR + "/libtcmalloc_minimal.so.4",
    "mimalloc": LIB_DIR + "/libmimalloc.so.2",
}


def callgrind_total(binary, mode, n, preload):
    """Instructions executed inside fastpath_measured() for one run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
               "--collect-atstart=no", "--toggle-collect=fastpath_measured",
               str(binary), mode, str(n)]
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if preload:
            env["LD_PRELOAD"] = preload
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError("callgrind failed (%s %s %d):\n%s" % (preload or "glibc", mode, n,
                                                                      proc.stderr[-2000:]))
        with open(out, encoding="utf-8", errors="replace") as f:
            text = f.read()
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if not match:
        raise RuntimeError("no instruction total in callgrind output")
    return int(match.group(1))


def per_pair(binary, mode, preload):
    """Instructions per malloc+free pair in steady state."""
    low = callgrind_total(binary, mode, N1, preload)
    high = callgrind_total(binary, mode, N2, preload)
    return (high - low) / (N2 - N1)


def find_binary(build_dir):
    return Path(build_dir) / "bench" / "bin" / "fastpath"


def measure(binary, libs):
    """{allocator: {mode: instructions per pair}} for libs {name: preload or None}."""
    return {name: {mode: per_pair(binary, mode, lib) for mode in MODES}
            for name, lib in libs.items()}


def format_table(results):
    lines = ["| allocator | " + " | ".join(MODES) + " |",
             "|---|" + "---:|" * len(MODES)]
    for name, row in results.items():
        lines.append("| %s | %s |" % (name, " | ".join("%.1f" % row[m] for m in MODES)))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=str(BENCH_DIR.parent / "build"))
    parser.add_argument("--binary", help="fastpath program (default: BUILD/bench/bin/fastpath)")
    parser.add_argument("--strata-lib", help="libstrata.so (default: BUILD/libstrata.so)")
    parser.add_argument("--allocators", default="glibc,jemalloc,tcmalloc,mimalloc,strata")
    args = parser.parse_args()

    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    binary = Path(args.binary) if args.binary else find_binary(args.build_dir)
    if not binary.exists():
        sys.exit("%s not found: build it with cmake --build BUILD --target bench_fastpath" % binary)
    strata = args.strata_lib or os.path.join(args.build_dir, "libstrata.so")
    libs = {}
    for name in args.allocators.split(","):
        lib = strata if name == "strata" else PEER_LIBS.get(name, "?")
        if lib == "?":
            sys.exit("unknown allocator: " + name)
        if lib and not os.path.exists(lib):
            print("skipping %s: %s not found" % (name, lib), file=sys.stderr)
            continue
        libs[name] = lib
    print("Instructions per malloc+free pair (callgrind, N=%d..%d)\n" % (N1, N2))
    print(format_table(measure(binary, libs)))


if __name__ == "__main__":
    main()
