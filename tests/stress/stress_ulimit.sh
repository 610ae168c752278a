#!/bin/sh
# Run a program under an address-space limit (ulimit -v, in KiB) and check
# from outside that it exited normally: no signal, no abort.
# Usage: stress_ulimit.sh LIMIT_KB PROGRAM
limit=$1; prog=$2
( ulimit -v "$limit" && exec "$prog" )
rc=$?
if [ $rc -ne 0 ]; then
  if [ $rc -gt 128 ]; then echo "FAIL: $prog under ulimit -v $limit killed by signal $((rc - 128))"; else echo "FAIL: $prog under ulimit -v $limit exited with $rc"; fi
  exit 1
fi
echo "ok: $prog under ulimit -v $limit"
