#!/usr/bin/env bash
# Run one misuse case in a child process and check how it ends.
# Usage: run_case.sh PROGRAM CASE EXPECT [MESSAGE-REGEX]
#   EXPECT: abort (SIGABRT + MESSAGE on stderr), segv (SIGSEGV, + MESSAGE if
#           given), ok (exit 0), miss (exit 3: the misuse is known not to be
#           caught in this mode; the table documents it, and the test fails
#           if that changes)
# TIDALLOC_CONF from the environment selects the mode (default or secure).
set -u
prog=$1; case_name=$2; expect=$3; regex=${4:-}
err=$(mktemp)
"$prog" "$case_name" 2>"$err" >/dev/null
rc=$?
msg=$(grep -m1 '^tidalloc:' "$err" || true)
out=$(head -c 600 "$err"); rm -f "$err"
case "$expect" in
  abort)
    [ $rc -eq 134 ] || { echo "FAIL $case_name: expected SIGABRT (134), got exit $rc; stderr: $out"; exit 1; }
    echo "$msg" | grep -Eq -- "$regex" || { echo "FAIL $case_name: message '$msg' does not match /$regex/"; exit 1; } ;;
  segv)
    [ $rc -eq 139 ] || { echo "FAIL $case_name: expected SIGSEGV (139), got exit $rc; stderr: $out"; exit 1; }
    [ -z "$regex" ] || echo "$msg" | grep -Eq -- "$regex" || { echo "FAIL $case_name: message '$msg' does not match /$regex/"; exit 1; } ;;
  miss)
    [ $rc -eq 3 ] || { echo "FAIL $case_name: expected the known miss (exit 3), got exit $rc; stderr: $out"; exit 1; } ;;
  ok)
    [ $rc -eq 0 ] || { echo "FAIL $case_name: expected exit 0, got $rc; stderr: $out"; exit 1; } ;;
  *) echo "bad expectation $expect"; exit 2 ;;
esac
echo "ok $case_name ($expect${msg:+: $msg})"
