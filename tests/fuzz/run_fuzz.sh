#!/usr/bin/env bash
# Build the libFuzzer target with clang (tidalloc's sources compiled in) and
# run it for a few seconds. Exit 77 (CTest: skipped) without clang/libFuzzer.
# Usage: run_fuzz.sh SECONDS [WORKDIR]
set -u
secs=${1:-20}; work=${2:-$(mktemp -d)}
src=$(cd "$(dirname "$0")/../.." && pwd)
cc=$(command -v clang-14 || command -v clang || true)
[ -n "$cc" ] || { echo "SKIP: clang not installed"; exit 77; }
mkdir -p "$work/corpus"
bin="$work/fuzz_api"
if ! "$cc" -std=gnu11 -O1 -g -fsanitize=fuzzer -D_GNU_SOURCE -DTIDAL_DEBUG=1 \
     -DTIDAL_VERSION_STRING='"fuzz"' -I"$src/src" -I"$src/include" \
     "$src/tests/fuzz/fuzz_api.c" $(ls "$src"/src/*.c) -lpthread -ldl -o "$bin" 2>"$work/build.log"; then
  if grep -q "libclang_rt.fuzzer\|fsanitize=fuzzer" "$work/build.log"; then
    echo "SKIP: libFuzzer runtime not installed (Debian: libclang-rt-14-dev)"; cat "$work/build.log" | head -5; exit 77
  fi
  echo "FAIL: fuzzer build failed"; cat "$work/build.log"; exit 1
fi
"$bin" -max_total_time="$secs" -max_len=4096 -seed=1 -print_final_stats=1 "$work/corpus" 2>"$work/run.log"
rc=$?
grep -E "stat::number_of_executed_units|Done" "$work/run.log" | head -3
[ $rc -eq 0 ] || { tail -30 "$work/run.log"; echo "FAIL: fuzzer found a problem (exit $rc)"; exit 1; }
echo "fuzz_api: OK"
