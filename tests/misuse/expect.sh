#!/bin/sh
# Runs one misuse scenario and checks how it ends and what strata said.
#
#   expect.sh OUTCOME PROGRAM SCENARIO [PATTERN...]
#
# OUTCOME: abort (killed by SIGABRT), segv (killed by SIGSEGV) or exit0.
# Each PATTERN (grep -E) must match a line of the program's stderr; the
# pattern "--silent" instead requires that no line starts with "strata:".
# The environment (LD_PRELOAD, MALLOC_CHECK_, STRATA_OPTIONS) comes from ctest.
outcome=$1 program=$2 scenario=$3
shift 3
err=$(mktemp)
trap 'rm -f "$err"' EXIT
"$program" "$scenario" >/dev/null 2>"$err"
status=$?
case $outcome in
  abort) want=134 ;;
  segv) want=139 ;;
  exit0) want=0 ;;
  *) echo "expect.sh: unknown outcome $outcome"; exit 2 ;;
esac
failed=0
if [ "$status" -ne "$want" ]; then
  echo "FAIL: $scenario ended with status $status, expected $outcome ($want)"
  failed=1
fi
for pattern in "$@"; do
  if [ "$pattern" = "--silent" ]; then
    if grep -q '^strata:' "$err"; then
      echo "FAIL: $scenario: expected no report"
      failed=1
    fi
  elif ! grep -Eq -- "$pattern" "$err"; then
    echo "FAIL: $scenario: no line of stderr matches: $pattern"
    failed=1
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "--- stderr of $scenario:"
  cat "$err"
  exit 1
fi
exit 0
