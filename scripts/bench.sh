#!/usr/bin/env bash
# Run the benchmark suite: tidalloc against glibc, jemalloc, mimalloc and
# tcmalloc on our workloads and real programs (see bench/README.md).
# Usage: scripts/bench.sh [bench/run.py options]   e.g. --quick, --reps 5, --only larson,redis
# Installs what it needs on Debian, builds a Release tree in $BUILD_DIR
# (default build-bench), and writes bench/results/{results.csv,summary.md,bench.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh bench
build=${BUILD_DIR:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTIDAL_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)"
exec /usr/bin/python3 bench/run.py --build-dir "$build" "$@"
