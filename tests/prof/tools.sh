#!/usr/bin/env bash
# The heap profile's readers: jeprof (libjemalloc-dev), google-pprof
# (google-perftools) and go tool pprof (golang-go) must each rank keep_big and
# keep_small first, with big/small in [8.5, 11.5], from a dump of prof_sites
# (built like a Debian package: -O2 -g, no frame pointers) run under
# LD_PRELOAD. A tool that is not installed is skipped (exit 77 when none is);
# CI installs all three (scripts/deps.sh).
# Usage: tools.sh PROF_SITES LIBTIDALLOC WORKDIR
set -euo pipefail
bin=$1; lib=$2; dir=$3
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$dir"; mkdir -p "$dir"
LD_PRELOAD=$lib TIDALLOC_CONF=prof:true,prof_sample:16384,prof_seed:7,prof_final:true,prof_prefix:$dir/sites \
  "$bin" 4096 65536
dump=$(ls "$dir"/sites.*.heap)
[ -s "$dump" ] || fail "no dump"
head -1 "$dump" | grep -Eq '^heap profile: [0-9]+: [0-9]+ \[0: 0\] @ heapprofile$' || fail "header: $(head -1 "$dump")"

# check NAME: stdin holds "value function" lines, largest first (MiB or any
# one unit); the first two must be keep_big then keep_small, ratio in range.
check() {
  local name=$1 top
  top=$(head -2)
  echo "$name:"; echo "$top" | sed 's/^/  /'
  local f1 f2 v1 v2
  read -r v1 f1 <<<"$(echo "$top" | sed -n 1p)"
  read -r v2 f2 <<<"$(echo "$top" | sed -n 2p)"
  [ "$f1" = keep_big ] && [ "$f2" = keep_small ] || fail "$name ranks '$f1' and '$f2' first"
  awk -v a="$v1" -v b="$v2" 'BEGIN { r = a / b; printf "  ratio %.2f\n", r; exit !(r >= 8.5 && r <= 11.5) }' ||
    fail "$name: ratio out of [8.5, 11.5]"
}

ran=0
for tool in jeprof google-pprof; do
  if ! command -v $tool >/dev/null; then echo "SKIP: $tool not installed"; continue; fi
  # "   100.0  90.7%  90.7%    100.0  90.7% keep_big"  (MiB)
  $tool --text "$bin" "$dump" 2>/dev/null | awk '$2 ~ /%$/ && NF >= 6 { print $1, $6 }' | check $tool
  ran=$((ran + 1))
done
if command -v go >/dev/null && go tool -n pprof >/dev/null 2>&1; then
  # "   99.97MB 90.74% 90.74%    99.97MB 90.74%  keep_big"  (units vary: to bytes)
  HOME=$dir GOCACHE=$dir/gocache go tool pprof -top "$bin" "$dump" 2>/dev/null |
    awk 'function bytes(v) { u = v; gsub(/[0-9.]/, "", u); n = v + 0;
                             return n * (u == "GB" ? 2^30 : u == "MB" ? 2^20 : u == "kB" ? 2^10 : 1) }
         $2 ~ /%$/ && NF >= 6 && $1 != "flat" { print bytes($1), $6 }' | check "go tool pprof"
  ran=$((ran + 1))
else
  echo "SKIP: go tool pprof not installed"
fi
[ $ran -gt 0 ] || exit 77
echo "profile readers: OK ($ran tools)"
