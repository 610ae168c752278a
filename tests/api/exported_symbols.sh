#!/usr/bin/env bash
# Every global symbol that libtidalloc.so and libtidalloc.a define must be part
# of the public API: the malloc family, tidal_*, and C++ operator new/delete.
# Internal names (page_init, heap_collect, ...) must never leak: they would
# clash with a program's own functions when it links tidalloc statically.
# Usage: exported_symbols.sh LIBTIDALLOC.so LIBTIDALLOC.a
set -euo pipefail
so=$1; ar=$2
allowed='^(malloc|free|calloc|realloc|reallocarray|aligned_alloc|posix_memalign|memalign|valloc|pvalloc|malloc_usable_size|free_sized|free_aligned_sized|cfree|malloc_trim|mallinfo2?|malloc_stats|malloc_info|mallopt|__libc_(malloc|free|calloc|realloc|memalign|valloc|pvalloc)|__posix_memalign|tidal_[a-z_]+|_Znwm.*|_Znam.*|_ZdlPv.*|_ZdaPv.*)$'
fail=0
check() {  # $1 = label, stdin = symbol names
  local bad
  bad=$(grep -Ev "$allowed" || true)
  if [ -n "$bad" ]; then echo "FAIL: $1 exports internal symbols:"; echo "$bad" | head -20; fail=1; fi
}
nm -D --defined-only "$so" | awk '$2 ~ /[TDBRVWi]/ {print $3}' | sed 's/@.*//' | sort -u | check "$so"
nm -g --defined-only "$ar" | awk 'NF == 3 {print $3}' | sort -u | check "$ar"
for must in malloc free calloc realloc tidal_ctl _Znwm; do
  nm -D --defined-only "$so" | awk '{print $3}' | grep -x "$must" >/dev/null || { echo "FAIL: $so does not export $must"; fail=1; }
  nm -g --defined-only "$ar" | awk '{print $3}' | grep -x "$must" >/dev/null || { echo "FAIL: $ar does not export $must"; fail=1; }
done
[ $fail -eq 0 ] && echo "exported symbols: OK"
exit $fail
