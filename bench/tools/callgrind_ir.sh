#!/usr/bin/env bash
# Instruction counts (callgrind's total Ir) of the benchmark workloads at their
# quick scale, under one build of tidalloc: a noise-free stand-in for timing on
# a shared machine (it does not see syscall or page-fault time in the kernel).
# Usage: bench/tools/callgrind_ir.sh LIB BIN_DIR [TIDALLOC_CONF]
#   prints "workload Ir" per line.
set -euo pipefail
lib=$1; bin=$2; conf=${3:-background_thread:false}
run() {   # name args...
  local name=$1; shift
  local ir
  ir=$(TIDALLOC_CONF=$conf LD_PRELOAD="$lib" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$bin/bench_$name" "$@" 2>&1 >/dev/null |
       sed -n 's/.*Collected : \([0-9]*\).*/\1/p' || true)
  echo "$name ${ir:-?}"
}
run small_churn 1500000 5000
run threads_local 4 15000
run prodcons 2 2 300000
run larson 4 1000 15000 4
run random_sizes 40000 1000
run realloc_growth 8
run large_repeat 30
run fragmentation 24 3
