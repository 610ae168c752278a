#!/usr/bin/env bash
# Build tidalloc (warnings as errors) and run every test with CTest.
# Usage: scripts/test.sh            (from a fresh Debian machine; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDAL_WERROR=ON -DTIDAL_DEBUG=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" --timeout 600
