#!/usr/bin/env bash
# Builds strata and runs every test: a g++ 12 build and a clang 14 build with
# the whole ctest suite (API conformance under glibc, preloaded, static and
# prefixed; stress; fork, thread exit, out-of-memory, RSS; real programs;
# unit tests; benchmark smoke pass and fast-path instruction counts), then
# ASan+UBSan and TSan builds of the tests that can run under a sanitizer (the
# prefixed API, its stress test, the unit tests), and a clang-format check.
# Usage: scripts/test-all.sh [gcc|clang|asan|tsan|format]...   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/deps.sh
source "$root/scripts/deps.sh"
install_deps

jobs=$(nproc)
builds=${STRATA_BUILD_ROOT:-$root}

configure() {
  local dir=$1
  shift
  cmake -S "$root" -B "$builds/$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
}

run_ctest() {
  ctest --test-dir "$builds/$1" --output-on-failure --no-tests=error -j "$jobs" "${@:2}"
}

full() {
  local dir=$1
  shift
  configure "$dir" "$@"
  cmake --build "$builds/$dir" -j "$jobs"
  run_ctest "$dir"
}

# Sanitizer builds hold only the prefixed suites and the unit tests:
# libstrata.so and anything that replaces malloc cannot sit under a sanitizer.
sanitized() {
  local dir=$1 sanitizer=$2
  configure "$dir" -DSTRATA_SANITIZE="$sanitizer" -DSTRATA_BUILD_BENCH=OFF
  cmake --build "$builds/$dir" -j "$jobs" --target api_tests_prefixed stress_tests_prefixed \
    strata_unit_tests stats_tests
  run_ctest "$dir" -L 'api|stress|unit|stats'
}

format_check() {
  local files
  mapfile -t files < <(git -C "$root" ls-files '*.cpp' '*.hpp' '*.h' '*.c')
  (cd "$root" && clang-format --dry-run --Werror "${files[@]}")
  echo "clang-format: ${#files[@]} files clean"
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(format gcc clang asan tsan)
for step in "${steps[@]}"; do
  echo "== $step"
  case $step in
    gcc) CC=gcc CXX=g++ full build-gcc ;;
    clang) CC=clang CXX=clang++ full build-clang -DSTRATA_BUILD_BENCH=OFF ;;
    asan) CC=gcc CXX=g++ sanitized build-asan address ;;
    tsan) CC=gcc CXX=g++ sanitized build-tsan thread ;;
    format) format_check ;;
    *)
      echo "usage: $0 [gcc|clang|asan|tsan|format]..." >&2
      exit 2
      ;;
  esac
done
echo "all test steps passed: ${steps[*]}"
