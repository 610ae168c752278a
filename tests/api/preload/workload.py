# Deterministic Python workload for preload_programs.sh: prints only values
# that do not depend on addresses, timing or hash seeds.
import collections
import gc
import hashlib
import json
import os
import random
import re
import threading
import zlib

rng = random.Random(12345)

# dict/list churn
d = {}
for i in range(200000):
    d["key%d" % i] = [i, str(i) * 3, {"x": i}]
for i in range(0, 200000, 3):
    del d["key%d" % i]
print("dict", len(d), sum(v[0] for v in d.values()))

# json round trip
data = [{"id": i, "name": "n" * (i % 50), "vals": list(range(i % 30))} for i in range(30000)]
s = json.dumps(data, sort_keys=True)
print("json", len(s), hashlib.sha256(s.encode()).hexdigest())
assert json.loads(s) == data

# strings and regular expressions
words = ["alpha", "beta", "gamma", "delta", "epsilon"]
text = " ".join(rng.choice(words) + str(rng.randint(0, 999)) for _ in range(200000))
counts = collections.Counter(re.findall(r"([a-z]+)(\d)", text))
print("re", sorted(counts.items())[:12])
print("split", len(text.split()), hashlib.md5(text.upper().encode()).hexdigest())

# sorting many tuples
lst = [(rng.random(), rng.randint(0, 10**6), str(i)) for i in range(200000)]
lst.sort()
print("sort", lst[0][1], lst[-1][1], hashlib.md5(repr(lst[:1000]).encode()).hexdigest())

# bytes, bytearray growth (realloc), zlib
blob = bytes(rng.getrandbits(8) for _ in range(300000))
comp = zlib.compress(blob * 3, 6)
print("zlib", len(comp), zlib.crc32(zlib.decompress(comp)))
ba = bytearray()
for i in range(100000):
    ba += b"xyz%d" % i
print("bytearray", len(ba), hashlib.sha256(ba).hexdigest())

# big integers
big = 3 ** 200000
print("bigint", len(hex(big)), big % 1000003)

# reference cycles collected by the gc
class Node:
    def __init__(self, n):
        self.n = n
        self.other = None

gc.collect()
for i in range(50000):
    a, b = Node(i), Node(-i)
    a.other, b.other = b, a
print("gc", gc.collect() >= 0)

# threads allocating concurrently
results = [None] * 4

def work(k):
    r = random.Random(k)
    items = [str(r.random()) * (k + 1) for _ in range(40000)]
    results[k] = hashlib.sha1("".join(sorted(items)).encode()).hexdigest()

threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("threads", results)

# Tell the test whether libtidalloc is mapped into this process.
report = os.environ.get("TIDAL_MAPS_REPORT")
if report:
    with open("/proc/self/maps") as f:
        mapped = "libtidalloc" in f.read()
    with open(report, "w") as f:
        f.write("mapped\n" if mapped else "not mapped\n")
