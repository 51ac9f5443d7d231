#!/bin/sh
# Builds the options fuzz target with clang and runs it.
#   tests/fuzz/run.sh [SECONDS]      (default 60)
# Environment: STRATA_FUZZ_BUILD, the build directory (default build-fuzz).
# New inputs go to $STRATA_FUZZ_BUILD/corpus, crashes to $STRATA_FUZZ_BUILD/.
set -eu
seconds=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${STRATA_FUZZ_BUILD:-$root/build-fuzz}

cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
if [ ! -x "$build/options_fuzz" ]; then
  echo "run.sh: options_fuzz was not built: it needs clang++ and its fuzzer runtime" \
    "(Debian: apt-get install -y clang libclang-rt-14-dev)" >&2
  exit 1
fi

# A dictionary made from options.def, so that it never falls behind the
# option list: strata's names, glibc's variable and tunable names, and the
# separators and suffixes of the syntax.
dict=$build/options.dict
{
  sed -n 's/^STRATA_OPTION(\([a-z_]*\),.*/"\1"/p' "$root/src/options/options.def"
  grep -o '"\(MALLOC_[A-Z_]*\|glibc\.malloc\.[a-z_]*\)"' "$root/src/options/options.def"
  printf '%s\n' '"STRATA_OPTIONS="' '"GLIBC_TUNABLES="' '":"' '"="' '"0x"' '"k"' '"m"' '"g"' \
    '"true"' '"off"' '"18446744073709551615"' '"2147483647"' '"-1"'
} >"$dict"

mkdir -p "$build/corpus"
exec "$build/options_fuzz" -max_total_time="$seconds" -dict="$dict" -max_len=2048 \
  -artifact_prefix="$build/" -print_final_stats=1 "$build/corpus" "$root/tests/fuzz/seeds"
