#!/usr/bin/env bash
# prof_leak / prof_leak_error: a program that leaks 3 x 4 MiB exits 1 with the
# summary line and symbolized stacks; without a leak it exits 0 and prints
# nothing; prof_leak alone reports but keeps the exit status.
# Usage: leak.sh PROF_API WORKDIR
set -euo pipefail
bin=$1; dir=$2
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$dir"; mkdir -p "$dir"
conf=prof:true,prof_seed:3,prof_leak:true,prof_prefix:$dir/leak
rc=0; TIDALLOC_CONF=$conf,prof_leak_error:true "$bin" leak 2>"$dir/err" || rc=$?
cat "$dir/err"
[ $rc -eq 1 ] || fail "exit status $rc with a leak, expected 1"
line=$(head -1 "$dir/err")
[[ "$line" =~ ^tidalloc:\ 12\.0\ MiB\ in\ [1-3]\ allocation\ sites\ still\ live\ at\ exit\ \(sampled\ estimate\)\;\ profile\ in\ (.*\.heap)$ ]] ||
  fail "summary line: $line"
[ -s "${BASH_REMATCH[1]}" ] || fail "no profile ${BASH_REMATCH[1]}"
grep -q "leak_site" "$dir/err" || fail "stacks not symbolized with the function name"
rc=0; TIDALLOC_CONF=$conf,prof_leak_error:true "$bin" noleak 2>"$dir/err" || rc=$?
[ $rc -eq 0 ] || fail "exit status $rc without a leak: $(cat "$dir/err")"
[ ! -s "$dir/err" ] || fail "report without a leak: $(cat "$dir/err")"
rc=0; TIDALLOC_CONF=$conf "$bin" leak 2>"$dir/err" || rc=$?
[ $rc -eq 0 ] && grep -q "still live at exit" "$dir/err" || fail "prof_leak alone: status $rc, $(cat "$dir/err")"
echo "leak report: OK"
