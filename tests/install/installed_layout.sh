#!/usr/bin/env bash
# Installed-layout test: build the Debian packages from a copy of the tree
# (dpkg-buildpackage -b -us -uc, which writes ../*.deb: never in the tree
# the other CI steps use), install them, then with nothing but what they
# installed: compile a program with pkg-config, configure and build one with
# CMake's find_package(tidalloc), run python3 under `tidalloc run` (--stats
# too), read `tidalloc stats` of a live process, open each manual page; then
# purge the packages and check that none of their files is left.
# Needs root (it installs packages); exits 77 otherwise. About 2 minutes.
# Usage: tests/install/installed_layout.sh    (KEEP=1 keeps the work directory;
#   TIDAL_DEBS=DIR installs the packages in DIR instead of building them)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "== $*"; }
[ "$(id -u)" = 0 ] || { echo "installed_layout: needs root to install packages; skipped"; exit 77; }
pkgs=(tidalloc libtidalloc-dev libtidalloc0)
work=$(mktemp -d /tmp/tidalloc-install.XXXXXX)
live=""
cleanup() {
  [ -n "$live" ] && kill "$live" 2>/dev/null || true
  dpkg --purge "${pkgs[@]}" >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
dpkg --purge "${pkgs[@]}" >/dev/null 2>&1 || true   # a previous run's leftovers

step "build the packages in a copy of the tree"
mkdir -p "$work/tidalloc"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$src" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$work/tidalloc"
else
  tar -C "$src" --exclude='./build*' -cf - . | tar -xf - -C "$work/tidalloc"
fi
t0=$SECONDS
if [ -n "${TIDAL_DEBS:-}" ]; then cp "$TIDAL_DEBS"/*.deb "$work"/; : > "$work/build.log"   # reuse (development only)
else (cd "$work/tidalloc" && DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1) ||
  { tail -40 "$work/build.log"; fail "dpkg-buildpackage failed"; }
fi
debs=("$work"/libtidalloc0_*.deb "$work"/libtidalloc-dev_*.deb "$work"/tidalloc_*.deb)
for d in "${debs[@]}"; do [ -f "$d" ] || fail "no package $d"; done
echo "built in $((SECONDS - t0)) s: $(cd "$work" && ls ./*.deb | tr '\n' ' ')"
grep -q "dpkg-gensymbols: warning" "$work/build.log" && { grep -A20 "dpkg-gensymbols: warning" "$work/build.log"; fail "symbols file out of date"; }

step "install"
dpkg -i "${debs[@]}" >/dev/null
files=$(dpkg -L "${pkgs[@]}" | sort -u)
lib=$(dpkg -L libtidalloc0 | grep -E '/libtidalloc\.so\.0$')
[ -n "$lib" ] || fail "libtidalloc0 has no libtidalloc.so.0"
objdump -p "$lib" | grep -E 'SONAME +libtidalloc\.so\.0$' >/dev/null || fail "SONAME of $lib"
[ -f /var/lib/dpkg/info/libtidalloc0:$(dpkg --print-architecture).symbols ] ||
  [ -f /var/lib/dpkg/info/libtidalloc0.symbols ] || fail "no symbols file installed"
ver=$(dpkg-query -W -f='${Version}' libtidalloc0)

# From here on, only installed files: a directory outside the tree, no overrides.
mkdir -p "$work/use/cmake"
cd "$work/use"
unset TIDALLOC_LIB TIDALLOC_CONF LD_PRELOAD
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cat > use.c <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tidalloc.h>
int main(void) {
  char *p = malloc(1000);
  size_t allocated, len = sizeof allocated;
  unsigned long long epoch = 1;
  if (!p || tidal_usable_size(p) < 1000) return 1;
  tidal_ctl("epoch", NULL, NULL, &epoch, sizeof epoch);
  if (tidal_ctl("stats.allocated", &allocated, &len, NULL, 0) != 0 || allocated < 1000) return 2;
  printf("%s\n", tidal_version());
  free(p);
  return 0;
}
C

step "pkg-config"
cc use.c $(pkg-config --cflags --libs tidalloc) -o use_pc
[ "$(./use_pc)" = "${ver%%-*}" ] || fail "pkg-config program printed '$(./use_pc)', expected ${ver%%-*}"
loaded=$(ldd ./use_pc | awk '$1 == "libtidalloc.so.0" {print $3}')
[ "$(realpath "$loaded")" = "$(realpath "$lib")" ] || fail "use_pc loads '$loaded', not the installed $lib"

step "CMake find_package(tidalloc)"
cp use.c cmake/
cat > cmake/CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.16)
project(use_tidalloc C)
find_package(tidalloc REQUIRED)
add_executable(use_cmake use.c)
target_link_libraries(use_cmake PRIVATE tidalloc::tidalloc)
CM
cmake -S cmake -B cmake/build >/dev/null || fail "CMake could not configure with find_package(tidalloc)"
cmake --build cmake/build >/dev/null || fail "CMake build"
[ "$(cmake/build/use_cmake)" = "${ver%%-*}" ] || fail "CMake program"

step "tidalloc run"
py=/usr/bin/python3
out=$(tidalloc run -- "$py" -c 'import sys; m = open("/proc/self/maps").read(); print(sum(range(10**6)), "libtidalloc.so.0" in m)')
[ "$out" = "499999500000 True" ] || fail "tidalloc run -- python3: $out"
tidalloc run --stats -- "$py" -c 'x = [bytes(1000) for i in range(2000)]' 2>stats.txt
grep -q '^allocated: ' stats.txt || fail "tidalloc run --stats printed no statistics"
tidalloc version | grep -q "^library: $lib (version ${ver%%-*})" || fail "version: $(tidalloc version)"

step "tidalloc stats on a live process"
tidalloc run -- "$py" -c 'import time; x = [bytes(1000) for i in range(5000)]; open("ready", "w"); time.sleep(60)' &
live=$!
for i in $(seq 200); do [ -e ready ] && break; sleep 0.05; done
[ -e ready ] || fail "the live process did not start"
tidalloc stats "$live" > live.txt || fail "tidalloc stats $live"
awk '/^allocated:/ {exit !($2 > 5000000)}' live.txt || fail "live statistics: $(head -4 live.txt)"
tidalloc stats "$live" --json | "$py" -c 'import json, sys; assert json.load(sys.stdin)["allocated"] > 5000000' ||
  fail "live JSON statistics"
kill "$live"; wait "$live" 2>/dev/null || true; live=""

step "manual pages"
for page in 1:tidalloc 3:tidalloc 5:tidalloc.conf; do
  sec=${page%%:*}; name=${page#*:}
  path=$(grep -E "/man$sec/$name\.$sec(\.gz)?$" <<<"$files") || fail "no $name($sec) in the packages"
  if [ ! -e "$path" ] && grep -qs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
    # this system tells dpkg not to install manual pages: read the packaged one
    echo "dpkg excludes /usr/share/man here: reading $name($sec) from the package"
    mkdir -p deb; for d in "${debs[@]}"; do dpkg-deb -x "$d" deb; done
    path=$PWD/deb$path
    MANWIDTH=80 man --warnings -l "$path" 2>&1 >/dev/null | grep . && fail "$path renders with warnings"
    continue
  fi
  warn=$(MANWIDTH=80 man --warnings -l "$path" 2>&1 >/dev/null) || fail "$path does not render"
  [ -z "$warn" ] || fail "$path: $warn"
  MANWIDTH=80 man -l "$path" 2>/dev/null | grep "^NAME" >/dev/null || fail "$path has no NAME"
  [ "$(man -w "$sec" "$name")" = "$path" ] || fail "man $sec $name finds $(man -w "$sec" "$name"), not $path"
done

step "remove"
cd /
dpkg --purge "${pkgs[@]}" >/dev/null
left=""
while read -r f; do
  [ -e "$f" ] && [ ! -d "$f" ] && left+="$f "
done <<<"$files"
[ -z "$left" ] || fail "files left after purge: $left"
for p in "${pkgs[@]}"; do
  ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed || fail "$p still installed"
done
ldconfig -p | grep -q libtidalloc && fail "ldconfig still lists libtidalloc"
echo "installed layout: OK (packages built, installed, used and purged in $SECONDS s)"
