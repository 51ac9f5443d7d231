#!/bin/sh
# git workload: import a generated history, check it out, and run the usual
# read and maintenance commands over it. Prints only deterministic results.
#
# usage: git_workload.sh STREAM WORKDIR   (WORKDIR must be empty)
set -eu
stream=$1
cd "$2"
export HOME="$PWD" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
git init -q -b main repo
cd repo
git fast-import --quiet <"$stream"
git checkout -q -f main
echo "head: $(git rev-parse HEAD)"
echo "log: $(git log --stat --format='%H %s' | cksum)"
echo "grep: $(git grep -c -e 'slab span' HEAD | cksum)"
echo "diff: $(git diff --stat HEAD~20 HEAD | tail -n 1)"
echo "blame: $(git blame -s src/dir00/file00000.txt | cksum)"
git -c pack.threads=1 repack -a -d -q
git -c pack.threads=1 gc -q --prune=now
echo "fsck: $(git fsck --no-progress 2>&1 | wc -l)"
echo "objects: $(git rev-list --all --objects | wc -l)"
