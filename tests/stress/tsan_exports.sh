#!/usr/bin/env bash
# The TSan build of tidalloc (libtidalloc_tsan.so) must export its entry
# points under the tdt_ names only: a plain malloc, free... (or a glibc alias
# such as __libc_malloc) would interpose on TSan's runtime in the test
# programs, which is exactly what that build avoids.
# Usage: tsan_exports.sh LIBTIDALLOC_TSAN.so
set -euo pipefail
so=$1
syms=$(nm -D --defined-only "$so" | awk '$2 ~ /[TDBRVWi]/ {print $3}' | sed 's/@.*//' | sort -u)
fail=0
for fn in malloc free calloc realloc reallocarray aligned_alloc posix_memalign memalign valloc pvalloc \
          malloc_usable_size free_sized free_aligned_sized cfree malloc_trim mallinfo mallinfo2 \
          malloc_stats malloc_info mallopt; do
  grep -qx "tdt_$fn" <<<"$syms" || { echo "FAIL: $so does not export tdt_$fn"; fail=1; }
done
bad=$(grep -Ev '^(tdt_[a-z0-9_]+|tidal_[a-z_]+)$' <<<"$syms" || true)
if [ -n "$bad" ]; then
  echo "FAIL: $so exports names other than tdt_* and tidal_*:"; echo "$bad" | head -20; fail=1
fi
[ $fail -eq 0 ] && echo "tsan exports: OK ($(wc -l <<<"$syms") symbols, all tdt_* or tidal_*)"
exit $fail
