#!/usr/bin/env bash
# shellcheck disable=SC2317  # the workload_* functions are called indirectly
# Runs a real program's workload twice, once with the system allocator and
# once with strata preloaded, and fails unless both runs print the same
# output and exit with the same status.
#
#   compare_under_preload.sh LIBSTRATA_SO PROGRAM [STRATA_TOOL]
#
# PROGRAM is python3, perl, sqlite3, git, or strata-run: python3 started by
# `STRATA_TOOL run --stats -- ...` instead of LD_PRELOAD, whose statistics
# must go to stderr, leaving stdout unchanged. Exits 77 (skip) when the
# program is not installed.
set -u

lib=${1:?usage: compare_under_preload.sh LIBSTRATA_SO PROGRAM [STRATA_TOOL]}
program=${2:?usage: compare_under_preload.sh LIBSTRATA_SO PROGRAM [STRATA_TOOL]}
tool=${3:-}
here=$(cd "$(dirname "$0")" && pwd)

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The strata-run mode runs the python3 workload through the tool.
workload=$program
[ "$program" = strata-run ] && workload=python3
if ! command -v "$workload" >/dev/null 2>&1; then
  echo "SKIP: $workload is not installed"
  exit 77
fi
[ -f "$lib" ] || fail "$lib does not exist"

work=$(mktemp -d "${TMPDIR:-/tmp}/strata-programs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Deterministic environment for both runs.
export LC_ALL=C TZ=UTC PYTHONHASHSEED=0 PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME"

# ---- Workloads: each prints its results on stdout, run from an empty
# directory. ----

workload_python3() {
  python3 "$here/workload.py"
}

workload_perl() {
  perl "$here/workload.pl"
}

workload_sqlite3() {
  sqlite3 -batch db.sqlite <"$here/workload.sql"
}

workload_git() {
  export GIT_AUTHOR_NAME=Strata GIT_AUTHOR_EMAIL=strata@example.invalid
  export GIT_COMMITTER_NAME=Strata GIT_COMMITTER_EMAIL=strata@example.invalid
  export GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'
  git init -q -b main repo && cd repo || return 1
  git config gc.auto 0
  for round in 1 2 3 4 5 6; do
    for i in $(seq 1 120); do
      mkdir -p "dir$((i % 7))"
      {
        echo "file $i round $round"
        seq "$i" $((i * round + 200)) | sed "s/^/line $round: /"
      } >"dir$((i % 7))/file$i.txt"
    done
    git add -A && git commit -q -m "round $round" || return 1
    if [ "$round" = 3 ]; then
      git checkout -q -b topic
      seq 1 5000 >topic.txt
      git add topic.txt && git commit -q -m "topic work"
      git checkout -q main
      git merge -q --no-ff -m "merge topic" topic || return 1
    fi
  done
  git log --stat --format='%H %s' | head -n 400
  git diff HEAD~3 HEAD --stat | tail -n 3
  git diff HEAD~5 HEAD -- dir3 | sha256sum
  git rev-list --count HEAD
  git grep -c 'line 4: 7' | sort | head -n 20
  git gc -q --aggressive 2>/dev/null
  git count-objects -v | grep -E '^(count|in-pack|packs):'
  git fsck --full --no-progress 2>&1
  git blame -s dir1/file50.txt | tail -n 5
  git archive --format=tar HEAD | sha256sum
}

# run MODE OUTPUT_PREFIX: runs the workload in a fresh directory.
run() {
  local mode=$1 out=$2
  mkdir -p "$work/$mode" && cd "$work/$mode" || exit 1
  case $mode in
    system)
      (workload_"$workload") >"$out.stdout" 2>"$out.stderr"
      ;;
    preload)
      (export LD_PRELOAD="$lib" && workload_"$workload") >"$out.stdout" 2>"$out.stderr"
      ;;
    tool)
      "$tool" run --stats -- python3 "$here/workload.py" >"$out.stdout" 2>"$out.stderr"
      ;;
  esac
  echo $? >"$out.status"
  cd "$work" || exit 1
}

# The library must really load: the loader only warns when a preload fails.
maps=$(LD_PRELOAD="$lib" cat /proc/self/maps 2>"$work/loader.stderr")
grep -q "$(basename "$lib")" <<<"$maps" || {
  cat "$work/loader.stderr" >&2
  fail "$lib is not mapped into a process started with LD_PRELOAD"
}
if [ "$program" = strata-run ]; then
  [ -x "$tool" ] || fail "strata tool $tool is not executable"
  tool_maps=$("$tool" run -- cat /proc/self/maps 2>"$work/tool.stderr")
  grep -q libstrata <<<"$tool_maps" || {
    cat "$work/tool.stderr" >&2
    fail "'$tool run -- cat /proc/self/maps' does not show libstrata mapped"
  }
fi

run system "$work/system"
if [ "$program" = strata-run ]; then
  run tool "$work/strata"
else
  run preload "$work/strata"
fi

status=0
if grep -q "ld.so" "$work/strata.stderr"; then
  echo "the dynamic loader complained under preload:" >&2
  cat "$work/strata.stderr" >&2
  status=1
fi
if ! cmp -s "$work/system.status" "$work/strata.status"; then
  echo "exit status differs: system $(cat "$work/system.status"), strata $(cat "$work/strata.status")" >&2
  status=1
fi
if [ "$(cat "$work/system.status")" != 0 ]; then
  echo "the workload itself failed with the system allocator:" >&2
  tail -n 20 "$work/system.stderr" >&2
  status=1
fi
if ! cmp -s "$work/system.stdout" "$work/strata.stdout"; then
  echo "output differs between the system allocator and strata:" >&2
  diff "$work/system.stdout" "$work/strata.stdout" | head -n 40 >&2
  echo "stderr under strata:" >&2
  tail -n 20 "$work/strata.stderr" >&2
  status=1
fi
if [ "$program" = strata-run ] && [ ! -s "$work/strata.stderr" ]; then
  echo "'strata run --stats' printed no statistics on stderr" >&2
  status=1
fi
lines=$(wc -l <"$work/system.stdout")
if [ "$lines" -lt 5 ]; then
  echo "the workload printed only $lines lines: it did not do its work" >&2
  status=1
fi
if [ "$status" = 0 ]; then
  echo "PASS: $program printed the same $lines lines with and without strata"
fi
exit $status
