#!/usr/bin/env python3
"""Checks strata's fast-path instruction counts against golden.txt.

Fails (exit 1) if any mode costs more than the golden count plus the
tolerance (default 10%). Exits 77 (skipped, for ctest) when valgrind, the
fastpath program or libstrata.so is missing, or while golden.txt still holds
placeholders. --update writes the measured counts into golden.txt.

usage: check.py --lib PATH --binary PATH [--tolerance 0.10] [--update]
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
import measure  # noqa: E402  (bench/fastpath/measure.py)

SKIP = 77
GOLDEN = Path(__file__).resolve().parent / "golden.txt"


def read_golden(path):
    """{mode: count or None}: None where the file still has a placeholder."""
    golden = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        mode, value = line.split()
        golden[mode] = None if value == "PLACEHOLDER" else float(value)
    return golden


def write_golden(path, counts):
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) == 2 and fields[0] in counts:
            line = "%s %.1f" % (fields[0], counts[fields[0]])
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lib", required=True, help="libstrata.so")
    parser.add_argument("--binary", required=True, help="the fastpath program")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--update", action="store_true", help="write the counts to golden.txt")
    args = parser.parse_args()

    for what, missing in (("valgrind", not shutil.which("valgrind")),
                          (args.lib, not Path(args.lib).exists()),
                          (args.binary, not Path(args.binary).exists())):
        if missing:
            print("SKIP: %s not found" % what)
            return SKIP

    counts = {mode: measure.per_pair(args.binary, mode, args.lib) for mode in measure.MODES}
    if args.update:
        write_golden(GOLDEN, counts)
        print("wrote %s" % GOLDEN)
    golden = read_golden(GOLDEN)
    failed = False
    placeholder = False
    for mode in measure.MODES:
        expected = golden.get(mode)
        if expected is None:
            print("%-8s %7.1f instructions/pair  (golden: placeholder)" % (mode, counts[mode]))
            placeholder = True
            continue
        limit = expected * (1 + args.tolerance)
        verdict = "ok" if counts[mode] <= limit else "FAIL"
        failed |= verdict == "FAIL"
        print("%-8s %7.1f instructions/pair  golden %.1f  limit %.1f  %s" %
              (mode, counts[mode], expected, limit, verdict))
    if failed:
        print("fast path got slower than bench/fastpath/golden.txt allows; if intended, "
              "rerun with --update and commit the new golden.txt")
        return 1
    if placeholder:
        print("SKIP: golden.txt has placeholders; fill them with check.py --update")
        return SKIP
    return 0


if __name__ == "__main__":
    sys.exit(main())
