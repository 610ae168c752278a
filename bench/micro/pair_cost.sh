#!/usr/bin/env bash
# Instructions per malloc(SIZE)+free pair under callgrind, per allocator.
# Usage: bench/micro/pair_cost.sh PAIR_BINARY LIBTIDALLOC [SIZE]
set -euo pipefail
bin=$1; lib=$2; size=${3:-32}
d=/usr/lib/x86_64-linux-gnu
# callgrind counts every thread; tidalloc's background thread (periodic purge
# and pressure checks) would add work proportional to run time, so it is off
# here: the difference between the two runs is then the malloc+free loop alone.
count() {  # $1 = preload or "", $2 = iterations
  local out; out=$(mktemp)
  env ${1:+LD_PRELOAD=$1} TIDALLOC_CONF=background_thread:false \
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$2" "$size" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out"; rm -f "$out"
}
printf '%-10s %s\n' allocator "instructions/pair (malloc($size)+free, loop included)"
for entry in glibc: jemalloc:$d/libjemalloc.so.2 mimalloc:$d/libmimalloc.so.2 \
             tcmalloc:$d/libtcmalloc_minimal.so.4 tidalloc:$lib; do
  name=${entry%%:*}; pre=${entry#*:}
  [ -n "$pre" ] && [ ! -e "$pre" ] && { printf '%-10s missing\n' "$name"; continue; }
  a=$(count "$pre" 100000); b=$(count "$pre" 300000)
  printf '%-10s %s\n' "$name" "$(( (b - a) / 200000 ))"
done
