#!/usr/bin/env bash
# Idle return after a burst with scattered survivors (issue 13), under each
# allocator, one after the other: resident memory (Rss - LazyFree) sampled
# over SECONDS of idling after ~MIB MiB of 16 B-64 KiB objects were freed
# but 1 in 64, kept at random. Writes OUT_DIR/idle_return.md (table) and
# OUT_DIR/idle_return.png (resident over time, one line per allocator).
# Usage: run.sh IDLE_RETURN_BINARY LIBTIDALLOC OUT_DIR [SECONDS] [MIB] [ALLOCATORS] [trim]
#   ALLOCATORS: comma-separated subset of glibc,jemalloc,mimalloc,tcmalloc,tidalloc (default all)
#   trim: the program calls malloc_trim(0) once after the frees (files get a -trim suffix)
# Every allocator runs with its defaults (tuning variables are cleared).
set -u
bin=$1; lib=$2; out=$3; secs=${4:-30}; mib=${5:-1024}; only=${6:-glibc,jemalloc,mimalloc,tcmalloc,tidalloc}
mode=${7:-}; sfx=${mode:+-$mode}
d=/usr/lib/x86_64-linux-gnu
mkdir -p "$out"; tmp=$(mktemp -d)
declare -A libs=([glibc]="" [jemalloc]=$d/libjemalloc.so.2 [mimalloc]=$d/libmimalloc.so.2
                 [tcmalloc]=$d/libtcmalloc_minimal.so.4 [tidalloc]=$lib)
IFS=, read -ra names <<< "$only"
for a in "${names[@]}"; do
  pre=${libs[$a]-}
  [ -n "$pre" ] && [ ! -e "$pre" ] && { echo "skipped $a (no $pre)"; continue; }
  env -u TIDALLOC_CONF -u MALLOC_CONF -u GLIBC_TUNABLES -u MIMALLOC_PURGE_DELAY ${pre:+LD_PRELOAD=$pre} \
    "$bin" "$secs" "$mib" 250 $mode > "$tmp/idle.$a" 2> "$tmp/err.$a" || echo "idle_return failed under $a: $(tail -1 "$tmp/err.$a")"
done
/usr/bin/python3 - "$tmp" "$out" "$secs" "$mib" "$sfx" "${names[@]}" <<'PY'
import sys, os
tmp, out, secs, mib, sfx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
names = [n for n in sys.argv[6:] if os.path.exists(os.path.join(tmp, "idle." + n)) and os.path.getsize(os.path.join(tmp, "idle." + n))]
series, rows = {}, []
for n in names:
    s = [tuple(map(int, l.split())) for l in open(os.path.join(tmp, "idle." + n)) if l.strip()]
    series[n] = s
    live = s[0][2]
    target = live * 1.05 + 16 * 1024          # live + 5 %, plus 16 MiB for code, stacks and metadata
    def at(sec):
        pts = [r for t, r, _ in s if t <= sec * 1000]
        return "%d" % (pts[-1] // 1024) if pts else "-"
    reached = next((t for t, r, _ in s if r <= target), None)
    rows.append("| %s | %d | %d | %d | %s | %s | %s | %s | %s |" % (
        n, live // 1024, target // 1024, s[0][1] // 1024, at(1), at(5), at(15), at(secs),
        "%.1f s" % (reached / 1000) if reached is not None else "never"))
md = ["# Idle return after a burst with scattered survivors", "",
      "About %d MiB of objects of 16 B-64 KiB (log-uniform sizes, every byte touched) are allocated; 1 in 64, "
      "chosen at random, is kept and the rest freed in random order; then the program idles %d s without "
      "calling the allocator. Resident = Rss - LazyFree of /proc/self/smaps_rollup, sampled every 250 ms "
      "from the end of the frees. Target = live x 1.05 + 16 MiB; \"back within\" = first sample at or "
      "below it.%s Produced by `bench/idle/run.sh` (bench/idle/idle_return.c)." % (
          mib, secs, " The program calls malloc_trim(0) once after the frees." if sfx else ""), "",
      "| allocator | live MiB | target MiB | resident MiB at 0 s | 1 s | 5 s | 15 s | %d s | back within |" % secs,
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"] + rows
open(os.path.join(out, "idle_return%s.md" % sfx), "w").write("\n".join(md) + "\n")
print("\n".join(md))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for n in names:
        s = series[n]
        ax.plot([t / 1000 for t, _, _ in s], [r / 1024 for _, r, _ in s], label=n, linewidth=2 if n == "tidalloc" else 1)
    if names:
        live = series[names[0]][0][2]
        ax.axhline((live * 1.05 + 16 * 1024) / 1024, color="grey", linestyle="--", linewidth=1, label="target")
    ax.set_xlabel("seconds after the burst was freed (program idle, 1 in 64 objects kept)")
    ax.set_ylabel("Rss - LazyFree (MiB)")
    ax.set_yscale("log")
    ax.set_title("Idle return after a burst with scattered survivors")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "idle_return%s.png" % sfx), dpi=100)
except ImportError:
    print("matplotlib missing: no plot")
PY
rm -rf "$tmp"
