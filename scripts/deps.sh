#!/usr/bin/env bash
# Install what building, testing and benchmarking tidalloc needs on Debian.
# Usage: scripts/deps.sh [build|test|bench]   (each level includes the ones before)
set -euo pipefail
level=${1:-build}
pkgs=(cmake make gcc g++ pkg-config)
case "$level" in
  test|bench) pkgs+=(python3 perl sqlite3 git valgrind clang libclang-rt-14-dev
                    qemu-user gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
esac
case "$level" in   # the Debian packages and their installed-layout test; manual pages
  test|bench) pkgs+=(debhelper dpkg-dev man-db) ;;
esac
# heap profile readers for tests/prof (jeprof, google-pprof, go tool pprof; binutils for their symbolization)
case "$level" in
  test|bench) pkgs+=(libjemalloc-dev google-perftools golang-go binutils) ;;
esac
case "$level" in
  bench) pkgs+=(libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 python3-matplotlib
                redis-server redis-tools time) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
