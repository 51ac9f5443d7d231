#!/usr/bin/env bash
# strata's main job: build it, then run a real program under it (Python
# building, sorting and grouping 200,000 records) and print what it
# allocated. Extra arguments replace the program: scripts/main-job.sh ls -l
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/deps.sh
source "$root/scripts/deps.sh"
install_deps

cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" --target strata_shared strata_cli

if [ $# -eq 0 ]; then
  # PYTHONMALLOC=malloc sends every Python object through malloc rather than
  # Python's own small-object pools.
  export PYTHONMALLOC=malloc
  # The interpreter itself, not a wrapper script that would be measured too.
  python=$(python3 -c 'import sys; print(sys.executable)')
  set -- "$python" "$root/bench/programs/py_objects.py" 200000
fi
echo "== strata run --stats -- $*" >&2
exec "$root/build/strata" run --stats -- "$@"
