"""Writes a git fast-import stream for the git workload: a repository of
FILES text files and COMMITS commits, each changing a few files. Everything
(contents, names, dates) is derived from a fixed seed, so the resulting
commit hashes are the same on every run.

usage: git_stream.py FILES COMMITS OUT
"""
import random
import sys

WORDS = ("alloc free slab span page heap arena chunk block cache thread "
         "lock list tree node size class bin region map trim grow").split()


def text(rng, lines):
    return "".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n"
        for _ in range(lines))


def write_stream(files, commits, out):
    rng = random.Random(1234)
    contents = {"src/dir%02d/file%05d.txt" % (i % 50, i): text(rng, rng.randint(10, 60))
                for i in range(files)}
    names = sorted(contents)
    with open(out, "w", encoding="ascii") as f:
        mark = 0
        for c in range(commits):
            if c == 0:
                changed = names
            else:
                changed = sorted(rng.sample(names, min(len(names), rng.randint(1, 20))))
                for name in changed:
                    lines = contents[name].splitlines(keepends=True)
                    at = rng.randint(0, len(lines))
                    lines[at:at + rng.randint(0, 3)] = text(rng, rng.randint(1, 5)).splitlines(True)
                    contents[name] = "".join(lines)
            f.write("commit refs/heads/main\n")
            f.write("mark :%d\n" % (mark + 1))
            mark += 1
            when = 1700000000 + c * 3600
            f.write("author Bench <bench@example.invalid> %d +0000\n" % when)
            f.write("committer Bench <bench@example.invalid> %d +0000\n" % when)
            msg = "commit %d: %s\n" % (c, " ".join(rng.choice(WORDS) for _ in range(5)))
            f.write("data %d\n%s" % (len(msg), msg))
            for name in changed:
                data = contents[name]
                f.write("M 100644 inline %s\ndata %d\n%s\n" % (name, len(data), data))
            f.write("\n")


if __name__ == "__main__":
    write_stream(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
