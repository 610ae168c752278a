#!/usr/bin/env bash
# The memory-pressure scenario, side by side with the peers: two processes share
# a memory cgroup of LIMIT MiB; the first allocates HOLD MiB, frees 90 % and idles;
# the second then allocates TAKE MiB. An allocator that sits on freed memory gets
# one of them OOM-killed. Reports, per allocator, who survived and (tidalloc) the
# time from the second process's start to the first one's memory going back.
# Usage: two_process.sh PAIR_BINARY LIBTIDALLOC [LIMIT HOLD TAKE] [OUT.md]
# Needs root and a cgroup memory controller (v1 or v2); exits 77 otherwise.
set -u
pair=$1; lib=$2; limit=${3:-2048}; hold=${4:-1536}; take=${5:-1280}; out=${6:-}
d=/usr/lib/x86_64-linux-gnu
declare -A libs=([glibc]="" [jemalloc]=$d/libjemalloc.so.2 [mimalloc]=$d/libmimalloc.so.2
                 [tcmalloc]=$d/libtcmalloc_minimal.so.4 [tidalloc]=$lib
                 [tidalloc-retain]=$lib [tidalloc-retain-nopressure]=$lib)
# tidalloc at its defaults, and two settings that keep freed memory dirty (no
# ceiling, a minute's decay) like the peers, so that only pressure handling
# can give it back, once with it and once without.
declare -A confs=([tidalloc-retain]="dirty_mult:1000,dirty_decay_ms:60000,muzzy_decay_ms:60000"
                  [tidalloc-retain-nopressure]="dirty_mult:1000,dirty_decay_ms:60000,muzzy_decay_ms:60000,pressure:false")
if [ -d /sys/fs/cgroup/memory ]; then v=1; base=/sys/fs/cgroup/memory
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then v=2; base=/sys/fs/cgroup
else echo "SKIP: no cgroup memory controller"; exit 77; fi
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root to create a cgroup"; exit 77; }

run_one() {  # $1 = allocator name; prints "survived_hold survived_take latency_ms resident_kb"
  local name=$1 pre=${libs[$1]} cg="$base/tidal-pressure-$$-$1" conf=${confs[$1]:-}
  mkdir "$cg" 2>/dev/null || { echo "SKIP: cannot create $cg"; return 77; }
  if [ $v = 1 ]; then
    echo $((limit << 20)) > "$cg/memory.limit_in_bytes"
    echo 0 > "$cg/memory.swappiness" 2>/dev/null
  else
    echo $((limit << 20)) > "$cg/memory.max"; echo 0 > "$cg/memory.swap.max" 2>/dev/null
  fi
  local hold_out take_out; hold_out=$(mktemp); take_out=$(mktemp)
  sh -c "echo \$\$ > $cg/cgroup.procs; exec env ${pre:+LD_PRELOAD=$pre} ${conf:+TIDALLOC_CONF=$conf} $pair hold $hold 10" > "$hold_out" 2>&1 &
  local hpid=$!
  for _ in $(seq 1 600); do grep -q ready "$hold_out" && break; kill -0 $hpid 2>/dev/null || break; sleep 0.1; done
  sh -c "echo \$\$ > $cg/cgroup.procs; exec env ${pre:+LD_PRELOAD=$pre} ${conf:+TIDALLOC_CONF=$conf} $pair take $take" > "$take_out" 2>&1
  local trc=$?
  sleep 1
  kill -TERM $hpid 2>/dev/null; wait $hpid; local hrc=$?
  local start rel res
  start=$(sed -n 's/^take: start_ns=//p' "$take_out")
  rel=$(sed -n 's/.*released_at_ns=\([0-9]*\).*/\1/p' "$hold_out")
  res=$(sed -n 's/.*hold: .*resident_kb=\([0-9]*\).*/\1/p' "$hold_out")
  local lat="-"
  if [ -n "$rel" ] && [ "$rel" != 0 ] && [ -n "$start" ]; then lat=$(( (rel - start) / 1000000 )); fi
  rmdir "$cg" 2>/dev/null
  rm -f "$hold_out" "$take_out"
  echo "$([ $hrc -eq 0 ] && echo yes || echo "no (status $hrc)") $([ $trc -eq 0 ] && echo yes || echo "no (status $trc)") $lat ${res:--}"
}

table="| allocator | idle process survived | allocating process survived | first process's memory back after (ms from the second's start) | its resident kB at the end |
|---|---|---|---:|---:|"
for a in ${ALLOCATORS:-glibc jemalloc mimalloc tcmalloc tidalloc tidalloc-retain tidalloc-retain-nopressure}; do
  pre=${libs[$a]}
  [ -n "$pre" ] && [ ! -e "$pre" ] && { echo "skipping $a: $pre missing"; continue; }
  r=$(run_one "$a") || exit $?
  read -r h t lat res <<<"$(echo "$r" | sed 's/no (status \([0-9]*\))/no(\1)/g')"
  row="| $a | $h | $t | $lat | $res |"
  table+=$'\n'"$row"
  echo "$row"
done
if [ -n "$out" ]; then
  { echo "# Memory pressure: two processes in one ${limit} MiB cgroup"; echo
    echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), cgroup v$v. The idle process allocates ${hold} MiB, frees 90 % and idles; the other then allocates ${take} MiB."
    echo "tidalloc-retain: TIDALLOC_CONF=${confs[tidalloc-retain]} (freed memory stays dirty, as with the peers); -nopressure adds pressure:false."
    echo "A negative time means the memory went back before the second process even started (decay and the dirty ceiling)."
    echo; echo "$table"; } > "$out"
fi
