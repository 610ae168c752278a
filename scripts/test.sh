#!/usr/bin/env bash
# Build tidalloc (warnings as errors) and run every test with CTest; build,
# install, use and purge the Debian packages (tests/install); then
# build tidalloc itself with ThreadSanitizer (clang, second tree) and run the
# stress tests on it (ctest -L tsan, see tests/stress/CMakeLists.txt).
# Usage: scripts/test.sh            (from a fresh Debian machine; installs what it needs)
#   BUILD_DIR, TSAN_BUILD_DIR   build trees (build, build-tsan)
#   TIDAL_TSAN=0                skip the ThreadSanitizer run
#   TIDAL_INSTALL_TEST=0        skip the Debian packages' installed-layout test
#   TIDAL_TSAN_STRESS_SCALE     its stress scale (default 6: about 2.5 minutes on 2 idle cores)
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
