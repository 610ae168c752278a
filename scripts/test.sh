#!/usr/bin/env bash
# Build tidalloc (warnings as errors) and run every test with CTest; build,
# install, use and purge the Debian packages (tests/install); then
# build tidalloc itself with ThreadSanitizer (clang, second tree) and run the
# stress tests on it (ctest -L tsan, see tests/stress/CMakeLists.txt); the
# arm64 cross build under qemu-user; and the per-CPU experiment's build.
# Usage: scripts/test.sh            (from a fresh Debian machine; installs what it needs)
#   BUILD_DIR, TSAN_BUILD_DIR   build trees (build, build-tsan)
#   TIDAL_TSAN=0                skip the ThreadSanitizer run
#   TIDAL_INSTALL_TEST=0        skip the Debian packages' installed-layout test
#   TIDAL_TSAN_STRESS_SCALE     its stress scale (default 6: about 2.5 minutes on 2 idle cores)
#   TIDAL_ARM64=0               skip the arm64 cross build run under qemu-user
#   ARM64_BUILD_DIR             its build tree (build-arm64)
#   TIDAL_ARM64_STRESS_SCALE    its stress scale (default 0.2)
#   TIDAL_PERCPU_TEST=0         skip the per-CPU experiment's build and tests
#   PERCPU_BUILD_DIR            its build tree (build-percpu)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDAL_WERROR=ON -DTIDAL_DEBUG=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
(cd "$build" && ctest --output-on-failure -j"$(nproc)" --timeout 600)

# Debian packages built from a copy of the tree, installed, used through
# pkg-config, CMake, the command and the manual pages, and purged (as root;
# about 2-3 minutes). TIDAL_INSTALL_TEST=0 skips it.
if [ "${TIDAL_INSTALL_TEST:-1}" != 0 ]; then
  rc=0; tests/install/installed_layout.sh || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 77 ] || exit "$rc"
fi

if [ "${TIDAL_TSAN:-1}" != 0 ]; then
  tsan=${TSAN_BUILD_DIR:-build-tsan}
  CC=clang CXX=clang++ cmake -S . -B "$tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDAL_WERROR=ON \
    -DTIDAL_DEBUG=ON -DTIDAL_BUILD_BENCH=OFF -DTIDAL_TSAN_LIB=ON \
    -DTIDAL_TSAN_STRESS_SCALE="${TIDAL_TSAN_STRESS_SCALE:-6}" >/dev/null
  cmake --build "$tsan" -j"$(nproc)" --target tsan_stress
  # One at a time: each runs 4+ threads under TSan; side by side on 2 cores
  # they only stretch each other's run time towards the watchdogs.
  (cd "$tsan" && ctest -L tsan --output-on-failure -j1 --timeout 600)
fi

# arm64: cross-built with Debian's gcc-aarch64-linux-gnu, run under qemu-user
# (cmake/aarch64-linux-gnu.cmake). Unit, API and stress tests with 4 KiB pages,
# and again with 16 and 64 KiB pages (qemu -p; tidalloc reads the page size at
# run time). Only tests that run a single arm64 program are selected: scripts
# and preloaded host programs are x86-64 only. TIDAL_TEST_EMULATED tells the
# tests what qemu-user cannot show (the RSS and AnonHugePages of the
# emulated program, threads started in a forked child). About 3 minutes on
# 2 cores.
if [ "${TIDAL_ARM64:-1}" != 0 ]; then
  arm=${ARM64_BUILD_DIR:-build-arm64}
  cmake -S . -B "$arm" -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTIDAL_WERROR=ON -DTIDAL_DEBUG=ON -DTIDAL_BUILD_BENCH=OFF >/dev/null
  cmake --build "$arm" -j"$(nproc)"
  arm_api='api_(entry_points|alignment|realloc|calloc|errors|cxx|link_static|boot_ctor|boot_thread|boot_dlopen|stats|objcache|preload|heaps_(reset|visit|memfd|meta|fail))'
  arm_stress='stress_(threads|prodcons|thread_churn|fork|realloc|faults)'
  for page in 4096 16384 65536; do
    echo "arm64 under qemu-user, ${page}-byte pages"
    (cd "$arm" && QEMU_PAGESIZE=$page TIDAL_TEST_EMULATED=1 TIDAL_STRESS_SCALE=${TIDAL_ARM64_STRESS_SCALE:-0.2} \
      ctest --output-on-failure -j"$(nproc)" --timeout 300 -R "^(unit_[a-z]+|$arm_api|$arm_stress)\$")
  done
fi

# The per-CPU experiment (src/percpu.h, -DTIDAL_PERCPU=ON; never the default
# build): its lists' own test and the API, stress, misuse and regression
# tests on it, so the experiment keeps building and keeps working. Left
# out: what asserts that a thread owns the slabs it allocates from
# (unit_heap, unit_pagemap, unit_holes) or exact statistics (api_stats,
# stress_faults*: the lists' blocks count as allocated). About 3 minutes.
# x86-64 only.
if [ "${TIDAL_PERCPU_TEST:-1}" != 0 ] && [ "$(uname -m)" = x86_64 ]; then
  pc=${PERCPU_BUILD_DIR:-build-percpu}
  cmake -S . -B "$pc" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDAL_WERROR=ON -DTIDAL_DEBUG=ON \
    -DTIDAL_PERCPU=ON -DTIDAL_BUILD_BENCH=OFF >/dev/null
  cmake --build "$pc" -j"$(nproc)"
  (cd "$pc" && ctest --output-on-failure -j"$(nproc)" --timeout 300 \
    -R '^(unit_percpu|api_.*|stress_(threads|prodcons|thread_churn|fork|realloc|misuse.*)|misuse_.*|regress_.*)$' \
    -E '^api_stats$')
fi
