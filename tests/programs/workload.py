"""Allocation-heavy Python workload with deterministic output.

Run by compare_under_preload.sh with and without strata preloaded; both runs
must print the same lines.
"""
import collections
import gc
import hashlib
import json
import random
import re
import threading
import zlib


def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


def dicts_and_strings(rng):
    table = {}
    for i in range(200_000):
        key = "k%d-%s" % (i, "x" * (i % 37))
        table[key] = [i, str(i) * (i % 5), {"n": i % 97}]
    for i in range(0, 200_000, 3):
        del table["k%d-%s" % (i, "x" * (i % 37))]
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 12)))
             for _ in range(100_000)]
    counts = collections.Counter(words)
    print("dict size", len(table))
    print("distinct words", len(counts), "top", counts.most_common(3))
    print("joined", digest(" ".join(sorted(words)).encode()))


def bytes_objects(rng):
    blobs = []
    for i in range(3000):
        size = rng.choice([1, 10, 100, 1000, 10_000, 100_000, 1_000_000]) + i
        blobs.append(bytes([i % 251]) * size)
        if len(blobs) > 50:
            blobs.pop(rng.randrange(len(blobs)))
    total = sum(len(b) for b in blobs)
    compressed = zlib.compress(b"".join(blobs[:20]))
    print("bytes kept", len(blobs), total, "compressed", len(compressed))
    print("bytearray", digest(bytes(bytearray(b"ab" * 500_000))))


def json_and_regex(rng):
    doc = {"items": [{"id": i, "name": "item-%d" % i, "tags": ["t%d" % (i % 13)] * (i % 4),
                      "score": (i * 7919) % 1000 / 10} for i in range(50_000)]}
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    print("json", len(text), digest(text.encode()), back == doc)
    hits = re.findall(r'"name": "item-(\d*7)"', text)
    print("regex hits", len(hits), hits[:5])
    lines = "\n".join("%d %s" % (i, "word" * (i % 9)) for i in range(100_000))
    print("split", len(lines.split()), digest(re.sub(r"o+", "0", lines).encode()))


def threads():
    results = [None] * 8

    def work(index):
        local = [str(j) * (j % 50) for j in range(30_000)]
        chunks = [zlib.compress(("%d" % index).encode() * 10_000) for _ in range(50)]
        results[index] = (len("".join(local)), sum(len(c) for c in chunks))

    pool = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print("threads", results)


def cycles():
    class Node:
        def __init__(self, value):
            self.value = value
            self.peers = []

    for _ in range(5):
        nodes = [Node(i) for i in range(20_000)]
        for i, node in enumerate(nodes):
            node.peers.append(nodes[(i * 31) % len(nodes)])
        del nodes
        gc.collect()
    print("gc ok", gc.collect() >= 0)


def main():
    rng = random.Random(42)
    dicts_and_strings(rng)
    bytes_objects(rng)
    json_and_regex(rng)
    threads()
    cycles()


main()
