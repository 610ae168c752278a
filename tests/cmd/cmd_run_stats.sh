#!/usr/bin/env bash
# tidalloc run / stats / options / version, with the build tree's library:
# run preloads the library and merges TIDALLOC_CONF (keeping what was set),
# refuses set-ID and static programs, prints statistics at exit with --stats;
# stats reads a live process's statistics (text and JSON) and says clearly
# why it cannot; options lists the whole table; exit codes 0/1/2.
# Usage: cmd_run_stats.sh TIDALLOC CC WORKDIR
set -euo pipefail
cmd=$1; cc=$2; dir=$3
fail() { echo "FAIL: $*"; exit 1; }
rc_of() { set +e; "$@" >/dev/null 2>&1; local rc=$?; set -e; echo $rc; }
mkdir -p "$dir"; cd "$dir"
py=/usr/bin/python3; [ -x $py ] || py=$(command -v python3)   # not a shim script: one process

# run: the library is first in LD_PRELOAD, the old entries stay; options merge
# (awk reads to the end: an early exit would kill ldconfig with SIGPIPE, which
# pipefail turns into the script's silent end)
other=$(ldconfig -p | awk '/libm\.so\.6 / && !n++ {print $NF}')
out=$(LD_PRELOAD=$other TIDALLOC_CONF=dirty_decay_ms:5000 "$cmd" run -o thp=never --secure -- \
      sh -c 'echo "$LD_PRELOAD"; echo "$TIDALLOC_CONF"')
preload=$(echo "$out" | sed -n 1p); conf=$(echo "$out" | sed -n 2p)
case "$preload" in */libtidalloc.so.0" $other") ;; *) fail "LD_PRELOAD: $preload" ;; esac
[ "$conf" = "dirty_decay_ms:5000,thp:never,secure:true,stats_signal:$(( $(kill -l SIGRTMIN) + 5 ))" ] ||
  fail "TIDALLOC_CONF: $conf"
# a libtidalloc already preloaded is kept, not doubled
out=$(LD_PRELOAD="$other $(dirname "$cmd")/libtidalloc.so" "$cmd" run -- sh -c 'echo "$LD_PRELOAD"' 2>err)
[ "$out" = "$other $(dirname "$cmd")/libtidalloc.so" ] || fail "LD_PRELOAD with a libtidalloc already: $out"
grep -q "already has .*libtidalloc.so; using it" err || fail "no word about the preloaded library: $(cat err)"
# the program really runs on tidalloc, with those options
out=$("$cmd" run -o dirty_decay_ms=1234 -- "$py" -c '
import ctypes
lib = ctypes.CDLL(None)
v = ctypes.c_int64(); n = ctypes.c_size_t(8)
assert lib.tidal_ctl(b"opt.dirty_decay_ms", ctypes.byref(v), ctypes.byref(n), None, 0) == 0
print("decay", v.value, "maps", "libtidalloc" in open("/proc/self/maps").read())')
[ "$out" = "decay 1234 maps True" ] || fail "program under tidalloc run: $out"
# --stats prints the statistics at exit, text or JSON
"$cmd" run --stats -- "$py" -c 'x = [str(i) for i in range(10000)]' 2>stats.txt
grep -q '^allocated: ' stats.txt || fail "--stats printed no statistics: $(head -3 stats.txt)"
"$cmd" run --stats=json -- "$py" -c 'x = [str(i) for i in range(10000)]' 2>stats.json
"$py" -c 'import json,sys; d = json.load(open("stats.json")); assert d["allocated"] > 0' || fail "--stats=json"

# refusals: set-user-ID, static, missing; usage errors
cp /bin/true ./suid_true && chmod u+s ./suid_true
"$cmd" run -- ./suid_true 2>err && fail "ran a set-user-ID program"
grep -q "set-user-ID" err || fail "set-user-ID message: $(cat err)"
if echo 'int main(void){return 0;}' | "$cc" -static -x c - -o static_prog 2>/dev/null; then
  "$cmd" run -- ./static_prog 2>err && fail "ran a static program"
  grep -q "statically linked" err || fail "static message: $(cat err)"
else echo "no static libc: static refusal not checked"; fi
printf '#!./static_prog\n' > script_on_static; chmod +x script_on_static
[ ! -e static_prog ] || [ "$(rc_of "$cmd" run -- ./script_on_static)" = 1 ] || fail "script on a static interpreter"
[ "$(rc_of "$cmd" run -- no_such_program_here)" = 127 ] || fail "missing program: not 127"
[ "$(rc_of "$cmd" run -o no_such_option=1 -- true)" = 2 ] || fail "unknown -o option: not 2"
[ "$(rc_of "$cmd" run)" = 2 ] || fail "run without a program: not 2"
[ "$(rc_of "$cmd" frobnicate)" = 2 ] || fail "unknown command: not 2"
[ "$(rc_of "$cmd" run -- sh -c 'exit 7')" = 7 ] || fail "run does not end with the program's status"
# --prof: a heap profile at exit, which report reads
rm -f runprof.*.heap
"$cmd" run --prof="$PWD/runprof" -- $py -c 'keep = [bytearray(1 << 20) for i in range(64)]' ||
  fail "--prof with the profiler"
prof=$(ls runprof.*.heap 2>/dev/null | head -1)
[ -n "$prof" ] && head -1 "$prof" | grep -q '^heap profile: .* @ heapprofile$' || fail "--prof wrote no profile"
"$cmd" report "$prof" >/dev/null || fail "report of a --prof profile"
for sub in run stats options report; do
  help=$("$cmd" $sub --help); [[ "$help" == "Usage: tidalloc $sub"* ]] || fail "$sub --help"
done
v=$("$cmd" version); grep -q "^library: .*libtidalloc.so.0 (version [0-9]" <<<"$v" || fail "version: $v"

# options: every option of the table, with its default
n=$("$cmd" options | grep -cE '^[a-z_]+ \((bool|integer|ratio|enum), default ')
[ "$n" -ge 12 ] || fail "options listed $n options"
o=$("$cmd" options stats_signal); [[ "$o" == "stats_signal (integer, default 0; accepts 0 to 64)"* ]] || fail "options stats_signal"

# stats of a live process started with tidalloc run
rm -f ready
"$cmd" run -- "$py" -c 'import time; x = [bytes(1000) for i in range(5000)]; open("ready", "w"); time.sleep(30)' &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for i in $(seq 200); do [ -e ready ] && break; sleep 0.05; done
"$cmd" stats $pid > live.txt || fail "stats of a live process"
awk '/^allocated:/ {exit !($2 > 3000000)}' live.txt || fail "live statistics: $(head -4 live.txt)"
"$cmd" stats $pid --json > live.json
"$py" -c 'import json; d = json.load(open("live.json")); assert d["allocated"] > 3000000, d["allocated"]' ||
  fail "live JSON statistics"
ls /tmp/tidalloc-stats.$pid.* 2>/dev/null && fail "stats left its file behind"
kill $pid; wait $pid 2>/dev/null || true
# clear errors: not tidalloc, stats signal off, no such process
sleep 30 & plain=$!
"$cmd" stats $plain 2>err && fail "stats of a process without tidalloc"
grep -q "does not use tidalloc" err || fail "not-tidalloc message: $(cat err)"
kill $plain
LD_PRELOAD=$(dirname "$cmd")/libtidalloc.so.0 "$py" -c 'import time; time.sleep(30)' & off=$!
for i in $(seq 100); do grep -q libtidalloc /proc/$off/maps 2>/dev/null && break; sleep 0.05; done
"$cmd" stats $off 2>err && fail "stats with the signal off"
grep -q "stats signal is not enabled" err || fail "signal-off message: $(cat err)"
kill $off
# the signal set in its environment but not caught (the handler replaced by
# the default): refused, and the process lives on
rm -f ready
TIDALLOC_CONF=stats_signal:40 LD_PRELOAD=$(dirname "$cmd")/libtidalloc.so.0 "$py" -c '
import signal, time; signal.signal(40, signal.SIG_DFL); open("ready", "w"); time.sleep(30)' & dfl=$!
for i in $(seq 200); do [ -e ready ] && break; sleep 0.05; done
"$cmd" stats $dfl 2>err && fail "stats of a process that does not catch its stats signal"
grep -q "does not catch signal 40" err || fail "not-caught message: $(cat err)"
kill -0 $dfl || fail "the process ended"
kill $dfl
[ "$(rc_of "$cmd" stats 2147483646)" = 1 ] || fail "stats of no process: not 1"
[ "$(rc_of "$cmd" stats)" = 2 ] || fail "stats without a PID: not 2"
echo "cmd run/stats/options: OK"
