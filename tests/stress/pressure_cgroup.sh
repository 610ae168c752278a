#!/usr/bin/env bash
# Integration test of pressure handling in a memory cgroup made for the test:
# one process frees most of what it allocated and idles with the freed memory
# kept dirty (no ceiling, a minute's decay); another then needs memory. With
# pressure handling on, the first gives its memory back and both survive; with
# it off, the cgroup runs out. Skipped (77) without root or a cgroup memory
# controller. Usage: pressure_cgroup.sh PRESSURE_PAIR LIBTIDALLOC
set -u
out=$(ALLOCATORS="tidalloc-retain tidalloc-retain-nopressure" \
      "$(dirname "$0")/../../bench/pressure/two_process.sh" "$1" "$2" 512 384 320)
rc=$?
[ $rc -eq 77 ] && { echo "$out"; exit 77; }
echo "$out"
on=$(echo "$out" | grep '^| tidalloc-retain |')
off=$(echo "$out" | grep '^| tidalloc-retain-nopressure |')
echo "$on" | grep -q '^| tidalloc-retain | yes | yes | [0-9]' ||
  { echo "FAIL: with pressure handling both processes must survive and the memory must come back"; exit 1; }
echo "$off" | grep -q 'no(' ||
  { echo "FAIL: the run without pressure handling survived too: the test does not test pressure handling"; exit 1; }
echo "pressure_cgroup: OK"
