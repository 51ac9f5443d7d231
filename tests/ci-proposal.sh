#!/usr/bin/env bash
# Proposed CI sequence for the test suite (for .ci/run). Four builds on two
# cores, in this order, stopping at the first failure:
#   1. g++ 12, RelWithDebInfo: everything, all ctest groups
#   2. clang 14: everything, all ctest groups
#   3. ASan+UBSan (STRATA_SANITIZE=address): prefixed API, prefixed stress, unit
#   4. TSan (STRATA_SANITIZE=thread): prefixed API, prefixed stress, unit
# Measured on the 2-core machine: about 3 + 3 + 1.5 + 1.5 minutes of building
# and 1.5 + 1.5 + 0.5 + 0.5 minutes of tests, well under 20 minutes.
#
# Usage: tests/ci-proposal.sh [all|gcc|clang|asan|tsan]
# Set STRATA_CI_SKIP_APT=1 to skip the package installation, and
# STRATA_CI_BUILD_ROOT to put the build directories elsewhere than the
# repository root.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
builds=${STRATA_CI_BUILD_ROOT:-$root}
what=${1:-all}
jobs=2

# Debian 12 packages: toolchains (clang's runtime for the fuzz target),
# GoogleTest, and the programs that the `programs` tests run under
# LD_PRELOAD (they are skipped when missing).
packages=(
  cmake ninja-build g++ clang clang-format libclang-rt-14-dev
  libgtest-dev libgmock-dev
  python3 perl sqlite3 git
)

if [ "${STRATA_CI_SKIP_APT:-0}" != 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

configure() {
  local dir=$1
  shift
  cmake -S "$root" -B "$builds/$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
}

run_ctest() {
  ctest --test-dir "$builds/$1" --output-on-failure --no-tests=error -j "$jobs" "${@:2}"
}

# Full build and every test group (api, stress, process, programs, unit,
# glibc-reference, and whatever else the project registers).
full() {
  local dir=$1
  shift
  configure "$dir" "$@"
  cmake --build "$builds/$dir" -j "$jobs"
  run_ctest "$dir"
}

# Sanitizer builds: only the prefixed suites and the unit tests exist there;
# libstrata.so and the tools are not built (they replace malloc).
sanitized() {
  local dir=$1 sanitizer=$2
  configure "$dir" -DSTRATA_SANITIZE="$sanitizer" -DSTRATA_BUILD_BENCH=OFF
  local targets=(api_tests_prefixed stress_tests_prefixed)
  if ninja -C "$builds/$dir" -t targets all | grep -q '^strata_unit_tests:'; then
    targets+=(strata_unit_tests)
  fi
  cmake --build "$builds/$dir" -j "$jobs" --target "${targets[@]}"
  run_ctest "$dir" -L 'api|stress|unit'
}

case $what in
  all | gcc) CC=gcc CXX=g++ full build-ci-gcc ;;&
  all | clang) CC=clang CXX=clang++ full build-ci-clang -DSTRATA_BUILD_BENCH=OFF ;;&
  all | asan) CC=gcc CXX=g++ sanitized build-ci-asan address ;;&
  all | tsan) CC=gcc CXX=g++ sanitized build-ci-tsan thread ;;&
  all | gcc | clang | asan | tsan) ;;
  *)
    echo "usage: $0 [all|gcc|clang|asan|tsan]" >&2
    exit 2
    ;;
esac
echo "ci-proposal: $what passed"
