#!/bin/sh
# A program that preloads or links tidalloc still runs under Valgrind's
# memcheck and under AddressSanitizer. Both bring their own malloc, which
# serves the program's requests instead of tidalloc's: they check the
# program, not tidalloc (README "Valgrind and AddressSanitizer"). Checked
# here, with tidalloc's own statistics (stats_print:json) saying how many
# requests it served:
#   memcheck, tidalloc preloaded or linked: runs, 0 errors, tidalloc served 0
#   gcc -fsanitize=address ... -ltidalloc:   runs, ASan served (tidalloc 0)
#   LD_PRELOAD=libtidalloc.so on an ASan program: ASan refuses to start, with
#     its message, exit status 1 (no crash)
#   LD_PRELOAD="libasan.so libtidalloc.so":   runs, ASan served (tidalloc 0)
# Usage: under_checkers.sh CC LIBTIDALLOC_SO SRCDIR INCLUDEDIR WORKDIR
set -u
cc=$1; lib=$2; src=$3; inc=$4; work=$5
mkdir -p "$work" && cd "$work" || exit 1
libdir=$(dirname "$lib")
fail() { echo "FAIL: $*"; exit 1; }
# requests tidalloc served, from its JSON statistics on stderr (file $1)
served() { grep -o '"requests":[0-9]*' "$1" | head -1 | cut -d: -f2; }
ran=0

$cc -O1 -g -o prog "$src/checkers_prog.c" -lpthread || fail "cannot build the program"
$cc -O1 -g -o prog_linked "$src/checkers_prog.c" -lpthread -L"$libdir" -ltidalloc -Wl,-rpath,"$libdir" ||
  fail "cannot link the program with tidalloc"
# Without a checker the program runs on tidalloc (so the zeros below mean something).
TIDALLOC_CONF=stats_print:json ./prog_linked >out 2>err || fail "plain run: $(cat out err)"
[ "$(served err)" -gt 0 ] || fail "tidalloc served no request without a checker"

if command -v valgrind >/dev/null 2>&1; then
  for how in preload linked; do
    if [ $how = preload ]; then pre=$lib; prog=./prog; else pre=; prog=./prog_linked; fi
    LD_PRELOAD=$pre TIDALLOC_CONF=stats_print:json valgrind --error-exitcode=9 --log-file=vg.log $prog >out 2>err
    rc=$?
    [ $rc -eq 0 ] || fail "memcheck ($how): exit status $rc: $(cat out err vg.log)"
    grep -q "checkers_prog: ok" out || fail "memcheck ($how): no output"
    grep -q "ERROR SUMMARY: 0 errors" vg.log || fail "memcheck ($how) found errors: $(cat vg.log)"
    [ "$(served err)" = 0 ] || fail "memcheck ($how): tidalloc served $(served err) requests (memcheck's malloc should)"
    echo "ok: memcheck, tidalloc $how: runs, 0 errors, malloc is memcheck's"
  done
  ran=1
else
  echo "skip: valgrind not installed"
fi

asan=$($cc -print-file-name=libasan.so)
if $cc -fsanitize=address -O1 -g -o prog_asan "$src/checkers_prog.c" -lpthread 2>/dev/null && [ -e "$asan" ]; then
  $cc -fsanitize=address -O1 -g -o prog_asan_linked "$src/checkers_prog.c" -lpthread -L"$libdir" -ltidalloc \
    -Wl,-rpath,"$libdir" || fail "cannot link an ASan program with tidalloc"
  TIDALLOC_CONF=stats_print:json ./prog_asan_linked >out 2>err || fail "ASan, linked: $(cat out err)"
  grep -q "checkers_prog: ok" out || fail "ASan, linked: no output"
  [ "$(served err)" = 0 ] || fail "ASan, linked: tidalloc served $(served err) requests (ASan's malloc should)"
  echo "ok: ASan program linked with -ltidalloc: runs, malloc is ASan's"

  LD_PRELOAD="$lib" ./prog_asan >out 2>err
  rc=$?
  [ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "ASan, tidalloc preloaded: exit status $rc (want ASan's refusal, no signal)"
  grep -q "ASan runtime does not come first" err || fail "ASan, tidalloc preloaded: not ASan's message: $(cat err)"
  echo "ok: ASan program, tidalloc preloaded: ASan refuses to start (exit $rc), no crash"

  LD_PRELOAD="$asan $lib" TIDALLOC_CONF=stats_print:json ./prog_asan >out 2>err || fail "ASan first, then tidalloc: $(cat out err)"
  grep -q "checkers_prog: ok" out || fail "ASan first, then tidalloc: no output"
  [ "$(served err)" = 0 ] || fail "ASan first, then tidalloc: tidalloc served $(served err) requests"
  echo "ok: LD_PRELOAD=\"libasan.so libtidalloc.so\": runs, malloc is ASan's"
  ran=1
else
  echo "skip: no AddressSanitizer runtime for $cc"
fi
[ $ran = 1 ] || exit 77
