#!/usr/bin/env bash
# The per-CPU experiment (issue 14, item 5) on the whole allocator: tidalloc
# as it is (thread heaps) against the TIDAL_PERCPU build (src/percpu.h:
# per-CPU lists on rseq in front of a shared heap), in one interleaved run.
#   1. ns per malloc or free of a malloc(32)+free loop (bench/micro/pair_ns.c),
#      1 and 2 threads, median of REPS interleaved rounds: the issue's rule
#      (adopt only at most 1 ns more per operation);
#   2. the bytes idle threads strand (bench/tools/stranded.c), 2, 16 and 64
#      threads: what per-CPU lists would save;
#   3. the suite (bench/run.py, tidalloc and mimalloc, the build as the
#      variant `percpu`), time and peak RSS per workload.
# Writes $OUT/percpu.md (default bench/results). About 6 minutes; x86-64.
# Usage: bench/micro/percpu_whole.sh   (REPS=7, BUILD_DIR=build-bench,
#        PERCPU_BUILD_DIR=build-bench-percpu, SUITE_REPS=3, OUT=bench/results)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-bench/results}; reps=${REPS:-7}; suite_reps=${SUITE_REPS:-3}
def=${BUILD_DIR:-build-bench}; pc=${PERCPU_BUILD_DIR:-build-bench-percpu}
cmake -S . -B "$def" -DCMAKE_BUILD_TYPE=Release -DTIDAL_BUILD_TESTS=OFF >/dev/null
cmake --build "$def" -j"$(nproc)" >/dev/null
cmake -S . -B "$pc" -DCMAKE_BUILD_TYPE=Release -DTIDAL_BUILD_TESTS=OFF -DTIDAL_BUILD_BENCH=OFF \
  -DTIDAL_PERCPU=ON >/dev/null
cmake --build "$pc" -j"$(nproc)" --target tidalloc >/dev/null
A=$(readlink -f "$def/libtidalloc.so"); B=$(readlink -f "$pc/libtidalloc.so")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

for threads in 1 2; do
  for r in $(seq "$reps"); do
    printf 'pair %s default %s\n' "$threads" "$(LD_PRELOAD=$A "$def/bench/pair_ns" 50000000 32 "$threads")"
    printf 'pair %s percpu %s\n' "$threads" "$(LD_PRELOAD=$B "$def/bench/pair_ns" 50000000 32 "$threads")"
  done
done >"$work/pair.txt"
for threads in 2 16 64; do
  for lib in default percpu; do
    l=$A; [ "$lib" = percpu ] && l=$B
    printf 'stranded %s %s %s\n' "$threads" "$lib" "$(LD_PRELOAD=$l "$def/bench/stranded" "$threads" | tail -1)"
  done
done >"$work/stranded.txt"
python3 bench/run.py --build-dir "$def" --allocators tidalloc,mimalloc --skip redis --reps "$suite_reps" \
  --out "$work/suite" --variant "percpu=$B" >"$work/suite.log" 2>&1

python3 - "$work" "$out/percpu.md" "$reps" <<'PY'
import csv, math, re, statistics as st, sys, time
work, dest, reps = sys.argv[1], sys.argv[2], sys.argv[3]
L = ["# Per-CPU lists on rseq: the whole-path experiment (issue 14, item 5)", "",
     "Written by `bench/micro/percpu_whole.sh` on %s. `default` is tidalloc as built by "
     "default (thread heaps); `percpu` is the `-DTIDAL_PERCPU=ON` build (`src/percpu.h`: "
     "per-CPU lists of free blocks on glibc's rseq registration, in front of one shared heap "
     "under a lock)." % time.strftime("%Y-%m-%d %H:%M"), "",
     "## 1. ns per operation (malloc(32)+free loop; median of %s interleaved rounds)" % reps, "",
     "| threads | default | percpu | difference |", "|---:|---:|---:|---:|"]
pair = {}
for line in open(work + "/pair.txt"):
    _, t, lib, v = line.split()
    pair.setdefault((t, lib), []).append(float(v))
worst = None
for t in ("1", "2"):
    a, b = st.median(pair[(t, "default")]), st.median(pair[(t, "percpu")])
    L.append("| %s | %.2f | %.2f | %+.2f |" % (t, a, b, b - a))
    worst = b - a if worst is None else max(worst, b - a)
L += ["", "The rule: adopt per-CPU caches only if they cost at most 1 ns more per operation. "
      "Here they cost %+.2f ns at worst: %s." % (worst, "within the rule" if worst <= 1.0 else
      "over the rule, so they are not adopted"), "",
      "## 2. Bytes stranded by idle threads (`stranded T`: RSS - RSS before the threads - live bytes)", "",
      "| threads | default | percpu | RSS default | RSS percpu |", "|---:|---:|---:|---:|---:|"]
sd = {}
for line in open(work + "/stranded.txt"):
    m = re.match(r"stranded (\d+) (\w+) .*rss ([\d.]+) MiB.*overhead ([\d.]+) MiB = ([\d.]+) %", line)
    if m:
        sd[(m.group(1), m.group(2))] = (m.group(4), m.group(5), m.group(3))
for t in ("2", "16", "64"):
    a, b = sd.get((t, "default")), sd.get((t, "percpu"))
    if a and b:
        L.append("| %s | %s MiB (%s %%) | %s MiB (%s %%) | %s MiB | %s MiB |" % (t, a[0], a[1], b[0], b[1], a[2], b[2]))
L += ["", "## 3. The suite (median of the repetitions; ratios percpu / default)", "",
      "| workload | default s | percpu s | mimalloc s | time percpu/default | peak RSS percpu/default |",
      "|---|---:|---:|---:|---:|---:|"]
t, r = {}, {}
for x in csv.DictReader(open(work + "/suite/results.csv")):
    try:
        t.setdefault((x["workload"], x["allocator"]), []).append(float(x["seconds"]))
        r.setdefault((x["workload"], x["allocator"]), []).append(float(x["maxrss_kb"]))
    except (ValueError, KeyError):
        pass
gt, gr = [], []
for w in sorted({w for w, _ in t}):
    if (w, "tidalloc") not in t or (w, "percpu") not in t:
        continue
    a, b = st.median(t[(w, "tidalloc")]), st.median(t[(w, "percpu")])
    ra, rb = st.median(r[(w, "tidalloc")]), st.median(r[(w, "percpu")])
    mi = st.median(t[(w, "mimalloc")]) if (w, "mimalloc") in t else float("nan")
    gt.append(math.log(b / a)); gr.append(math.log(rb / ra))
    L.append("| %s | %.3f | %.3f | %.3f | %.3f | %.3f |" % (w, a, b, mi, b / a, rb / ra))
if gt:
    L.append("| **geomean** | | | | **%.3f** | **%.3f** |" % (math.exp(sum(gt) / len(gt)), math.exp(sum(gr) / len(gr))))
open(dest, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
