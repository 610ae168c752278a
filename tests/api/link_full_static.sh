#!/bin/sh
# api_link_full_static: link api_link.c fully -static against libtidalloc.a and
# run it. Linking happens here, at test time, so that a failing link (e.g.
# duplicate malloc symbols with glibc's libc.a) fails this test, not the build.
# Usage: link_full_static.sh CC LIBTIDALLOC_A SRC_DIR INCLUDE_DIR OUT_DIR
set -u
cc=$1 lib=$2 src=$3 inc=$4 out=$5
mkdir -p "$out" || exit 1
exe=$out/api_link_full_static
map=$out/api_link_full_static.map
if [ ! -e /usr/lib/x86_64-linux-gnu/libc.a ] && ! "$cc" -print-file-name=libc.a | grep -q /; then
    echo "SKIP: no static libc (libc.a) installed"
    exit 77
fi
echo "+ $cc -static ... $lib -lpthread"
if ! "$cc" -O2 -g -D_GNU_SOURCE -DTIDAL_TEST_FULL_STATIC -fno-builtin -I"$src" -I"$inc" \
        "$src/api_link.c" -o "$exe" -static -Wl,-Map="$map" "$lib" -lpthread 2>"$out/link.err"; then
    cat "$out/link.err"
    echo "FAIL: linking a fully static executable with libtidalloc.a failed (see the linker errors above)"
    exit 1
fi
cat "$out/link.err"
# glibc's own malloc must not have been linked in as well (libc.a's malloc.o
# defines malloc, free, ...; if it is in the link, some caller uses it).
if grep -E 'libc\.a\(malloc\.o\)' "$map"; then
    echo "FAIL: libc.a(malloc.o) was linked into the static executable (see the archive members above)"
    exit 1
fi
if ldd "$exe" >/dev/null 2>&1; then
    echo "FAIL: $exe is not a static executable"
    exit 1
fi
"$exe"
rc=$?
[ $rc -eq 0 ] || echo "FAIL: $exe exited with status $rc"
exit $rc
