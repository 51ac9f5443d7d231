"""Python workload: build many small objects, sort and group them.

Run with PYTHONMALLOC=malloc (bench/run.py does) so that every object goes
through malloc instead of Python's own small-object allocator.

usage: py_objects.py N
"""
import hashlib
import sys


class Record:
    __slots__ = ("key", "name", "tags", "score")

    def __init__(self, key, name, tags, score):
        self.key = key
        self.name = name
        self.tags = tags
        self.score = score


def main():
    n = int(sys.argv[1])
    state = 12345

    def rand():
        nonlocal state
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        return state >> 12  # the low bits of this generator are weak

    records = []
    for i in range(n):
        r = rand()
        name = "item-%d-%s" % (i, "x" * (r % 40))
        tags = {"t%d" % (rand() % 50): rand() % 1000 for _ in range(r % 6)}
        records.append(Record(r % 100000, name, tags, [rand() % 997 for _ in range(r % 8)]))

    records.sort(key=lambda rec: (rec.key, rec.name))
    groups = {}
    for rec in records:
        groups.setdefault(rec.key % 1000, []).append(rec)
    # Short-lived churn: rebuild strings and lists from the records.
    digest = hashlib.sha256()
    for key in sorted(groups):
        members = groups[key]
        line = ",".join(rec.name[:12] + str(sum(rec.score)) for rec in members)
        digest.update(line.encode())
        digest.update(repr(sorted(t for rec in members for t in rec.tags)).encode())
    del records, groups
    print("python: n=%d digest=%s" % (n, digest.hexdigest()[:32]))


if __name__ == "__main__":
    main()
