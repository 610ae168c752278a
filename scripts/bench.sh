#!/usr/bin/env bash
# Run the benchmark suite: tidalloc against glibc, jemalloc, mimalloc and
# tcmalloc on our workloads and real programs (see bench/README.md), with two
# tidalloc variants in the same interleaved run (the default checks compiled
# out, to show their cost; and the hardened mode), then the memory-pressure
# scenario and the idle-return / hugepage-coverage measurements.
# Usage: scripts/bench.sh [bench/run.py options]   e.g. --quick, --reps 5
# Installs what it needs on Debian, builds Release trees in $BUILD_DIR
# (default build-bench) and $BUILD_DIR-nochecks, and writes
# bench/results/{results.csv,summary.md,bench.png,pressure.md,hugepage.md,idle_rss.png,
# idle_return.md,idle_return.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh bench
build=${BUILD_DIR:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTIDAL_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)"
cmake -S . -B "$build-nochecks" -DCMAKE_BUILD_TYPE=Release -DTIDAL_BUILD_TESTS=OFF -DTIDAL_BUILD_BENCH=OFF \
      -DTIDAL_CHECKS=OFF >/dev/null
cmake --build "$build-nochecks" -j"$(nproc)" --target tidalloc
/usr/bin/python3 bench/run.py --build-dir "$build" \
  --variant "tidalloc-nochecks=$build-nochecks/libtidalloc.so" \
  --variant "tidalloc-secure=$build/libtidalloc.so,secure:true" "$@"
case " $* " in
  *" --quick "*) ;;   # the pressure scenario takes a couple of minutes: not in quick runs
  *) bench/pressure/two_process.sh "$build/bench/pressure_pair" "$PWD/$build/libtidalloc.so" 2048 1536 1280 \
       bench/results/pressure.md || echo "pressure scenario skipped (needs root and a cgroup memory controller)"
     bench/hugepage/run.sh "$build/bench/idle_coverage" "$PWD/$build/libtidalloc.so" bench/results
     bench/idle/run.sh "$build/bench/idle_return" "$PWD/$build/libtidalloc.so" bench/results 30 1024 ;;
esac
