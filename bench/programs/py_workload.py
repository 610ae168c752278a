"""Python allocation workload for the tidalloc benchmark suite.

Run by Debian's /usr/bin/python3 with PYTHONMALLOC=malloc (set by
bench/run.py) so that every object allocation, not only those above
pymalloc's 512-byte limit, goes through the malloc under test.

A deterministic mix of what Python programs spend their allocations on:
object graphs with instance dicts, dict/list/set churn, string building and
splitting, JSON round trips, sorting, and dropping most of a large structure
(a fragmentation wave).  Prints "checksum <hex>" derived from the results.

usage: python3 py_workload.py [scale=10]
"""
import json
import random
import sys
import zlib


class Node:
    def __init__(self, key, payload, parent=None):
        self.key = key
        self.payload = payload
        self.parent = parent
        self.children = []
        self.attrs = {"k": key, "n": len(payload)}


def object_graph(rng, n):
    root = Node(0, "root")
    nodes = [root]
    for i in range(1, n):
        parent = nodes[rng.randrange(len(nodes))]
        node = Node(i, "p%d-%s" % (i, "x" * rng.randrange(1, 48)), parent)
        parent.children.append(node)
        nodes.append(node)
    # walk and summarise
    total = 0
    stack = [root]
    while stack:
        node = stack.pop()
        total += node.attrs["n"] + len(node.children)
        stack.extend(node.children)
    return total


def dict_churn(rng, n):
    d = {}
    acc = 0
    for i in range(n):
        k = "key%d" % rng.randrange(n // 2)
        if k in d and rng.random() < 0.4:
            acc += len(d.pop(k))
        else:
            d[k] = [i, str(i), (i, i * 2)] * rng.randrange(1, 4)
        if i % 1000 == 999:
            s = {v[1] for v in d.values() if v}
            acc += len(s)
    return acc + len(d)


def string_work(rng, n):
    words = ["".join(chr(97 + rng.randrange(26)) for _ in range(rng.randrange(2, 12)))
             for _ in range(2000)]
    acc = 0
    for i in range(n):
        line = " ".join(words[rng.randrange(len(words))] for _ in range(rng.randrange(4, 40)))
        parts = line.split()
        up = line.upper().replace("A", "aa")
        acc += len(parts) + len(up) + line.count("e")
        if i % 50 == 0:
            acc += len("".join(sorted(parts, key=len)))
    return acc


def json_roundtrip(rng, n):
    acc = 0
    for i in range(n):
        doc = {
            "id": i,
            "name": "item-%d" % i,
            "tags": ["t%d" % rng.randrange(100) for _ in range(rng.randrange(1, 10))],
            "nested": {"a": list(range(rng.randrange(20))), "b": {"c": "d" * rng.randrange(64)}},
        }
        text = json.dumps(doc, sort_keys=True)
        back = json.loads(text)
        acc += len(text) + len(back["tags"])
    return acc


def fragment_wave(rng, n):
    # many mixed-size objects, drop a random 85 %, then allocate different sizes
    data = [bytes(rng.randrange(8, 600)) if i % 3 else [i] * rng.randrange(1, 20) for i in range(n)]
    keep = [x for x in data if rng.random() < 0.15]
    del data
    wave = ["%d:%s" % (i, "y" * rng.randrange(100, 2000)) for i in range(n // 4)]
    return sum(len(x) for x in keep) + sum(len(x) for x in wave)


def sorting(rng, n):
    rows = [(rng.randrange(1000), "r%d" % rng.randrange(10**6), rng.random()) for _ in range(n)]
    rows.sort()
    rows.sort(key=lambda r: r[1])
    return sum(r[0] for r in rows[:: max(1, n // 100)])


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rng = random.Random(12345)
    results = []
    for rnd in range(scale):
        results.append(object_graph(rng, 20000))
        results.append(dict_churn(rng, 30000))
        results.append(string_work(rng, 3000))
        results.append(json_roundtrip(rng, 3000))
        results.append(fragment_wave(rng, 30000))
        results.append(sorting(rng, 20000))
    digest = zlib.crc32(repr(results).encode())
    print("scale %d results %d" % (scale, len(results)))
    print("checksum %08x" % digest)


if __name__ == "__main__":
    main()
