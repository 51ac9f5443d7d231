#!/bin/sh
# What STRATA_OPTIONS=stats=1 prints at exit (stderr only, once per process,
# after exit() as after a return from main), the JSON of strata_stats_json
# (checked with python3's json module when there is one), and
# `strata run --stats`, whose program's stdout must be unchanged.
#
# usage: stats_output.sh LIBSTRATA_SO STATS_PROGRAM [STRATA_CLI]
set -u
lib=$1
prog=$2
cli=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

fail() {
  echo "FAIL: $*"
  failed=1
}

show() {
  echo "--- stdout"
  cat "$tmp/out"
  echo "--- stderr"
  cat "$tmp/err"
  echo "---"
}

# run MODE OPTIONS: the program under libstrata.so, output in $tmp/out, $tmp/err.
run() {
  LD_PRELOAD=$lib STRATA_OPTIONS=$2 "$prog" "$1" >"$tmp/out" 2>"$tmp/err"
  status=$?
  [ $status -eq 0 ] || fail "$prog $1 (STRATA_OPTIONS=$2) exited with $status"
}

tables() { grep -c '^strata statistics for pid ' "$tmp/err"; }

# column N of the table row whose first fields are $1 $2, without commas
cell() {
  awk -v a="$1" -v b="$2" -v n="$3" '$1 == a && $2 == b { gsub(",", "", $n); print $n; exit }' "$tmp/err"
}

check_table() {
  what=$1
  [ "$(cat "$tmp/out")" = "stats_program done" ] || { fail "$what: stdout changed"; show; }
  [ "$(tables)" = 1 ] || { fail "$what: expected one table on stderr"; show; }
  head -n 1 "$tmp/err" | grep -q "^strata statistics for pid [0-9]* (stats_program)$" ||
    { fail "$what: bad title"; show; }
  for label in allocated active dirty cached metadata mapped reserved purged resident \
    'page faults' mallocs heaps; do
    grep -q "^  $label  *[0-9]" "$tmp/err" || fail "$what: no line for $label"
  done
  allocations=$(cell 6 112 3)
  frees=$(cell 6 112 4)
  in_use=$(cell 6 112 5)
  [ -n "$allocations" ] && [ "$allocations" -ge 1000 ] && [ "$frees" -ge 500 ] &&
    [ "$in_use" -ge 500 ] && [ "$allocations" -eq $((frees + in_use)) ] ||
    { fail "$what: row of class 6 (112 bytes): allocations=$allocations frees=$frees in_use=$in_use"; show; }
  large=$(awk '$1 == "large" && $2 ~ /^[0-9,]+$/ { gsub(",", "", $2); gsub(",", "", $4); print $2, $4; exit }' "$tmp/err")
  set -- $large
  [ "${1:-0}" -ge 3 ] && [ "${2:-0}" -ge 3 ] || { fail "$what: large row: '$large'"; show; }
}

run exit stats=1
check_table "exit()"
run return stats=1
check_table "return from main"
run fork stats=1
check_table "after a forked child ended (only the parent prints)"

run exit ""
[ ! -s "$tmp/err" ] || { fail "stderr written without stats=1"; show; }
run exit stats=0
[ ! -s "$tmp/err" ] || { fail "stderr written with stats=0"; show; }

# JSON
LD_PRELOAD=$lib "$prog" json >"$tmp/json" 2>"$tmp/err" || fail "json mode failed: $(cat "$tmp/err")"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$tmp/json" <<'PY' || fail "JSON check"
import json, sys
with open(sys.argv[1]) as f:
    s = json.load(f)
assert s["version"] == 1, s["version"]
m = s["memory"]
assert m["mapped"] == m["active"] + m["dirty"] + m["cached"] + m["metadata"], m
assert m["allocated"] <= m["active"], m
classes = {c["block_size"]: c for c in s["classes"]}
c = classes[112]
assert c["allocations"] >= 1000 and c["in_use"] >= 500, c
for c in s["classes"]:
    assert c["allocations"] == c["frees"] + c["in_use"], c
    assert c["in_use_bytes"] == c["in_use"] * c["block_size"], c
assert s["large"]["in_use"] >= 3 and s["large"]["bytes"] >= 9 << 20, s["large"]
assert s["calls"]["mallocs"] >= 1003, s["calls"]
assert s["process"]["resident"] > 0, s["process"]
PY
else
  grep -q '^{"version":1,"memory":{"allocated":[0-9]' "$tmp/json" || fail "JSON: $(cat "$tmp/json")"
fi

# strata run --stats
if [ -n "$cli" ]; then
  "$cli" run --stats -- "$prog" exit >"$tmp/out" 2>"$tmp/err" || fail "strata run failed"
  check_table "strata run --stats"
  if command -v python3 >/dev/null 2>&1; then
    "$cli" run --stats -- python3 -c 'print(sum(range(10**6)))' >"$tmp/out" 2>"$tmp/err" ||
      fail "strata run python3 failed"
    [ "$(cat "$tmp/out")" = 499999500000 ] || { fail "python3's stdout changed"; show; }
    [ "$(tables)" -ge 1 ] || { fail "no table from python3"; show; }
    grep -q '^  large  ' "$tmp/err" || { fail "no large row from python3"; show; }
  fi
fi

[ $failed -eq 0 ] && echo "all stats output checks passed"
exit $failed
