#!/usr/bin/env bash
# Run a real program on a deterministic workload twice: once with the system
# allocator and once with LD_PRELOAD=libtidalloc.so. Their stdout and exit
# status must be identical, and the preloaded run must really have used
# tidalloc (the dynamic loader bound malloc to libtidalloc; for python the
# process also finds libtidalloc in its own /proc/self/maps).
#
# Usage: preload_programs.sh LIBTIDALLOC_SO {python3|perl|sqlite3|git}
# Exit: 0 pass, 1 fail, 77 skip (program not installed).
set -u

lib=${1:?usage: preload_programs.sh LIBTIDALLOC_SO PROGRAM}
prog=${2:?usage: preload_programs.sh LIBTIDALLOC_SO PROGRAM}
here=$(cd "$(dirname "$0")" && pwd)
work=$here/preload

fail() {
    echo "FAIL [$prog]: $*"
    exit 1
}

case $prog in
python3) exe=/usr/bin/python3 ;;
perl) exe=$(command -v perl || true) ;;
sqlite3) exe=$(command -v sqlite3 || true) ;;
git) exe=$(command -v git || true) ;;
*) fail "unknown program" ;;
esac
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
    echo "SKIP: $prog is not installed"
    exit 77
fi
[ -f "$lib" ] || fail "library $lib not found"
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tidal-preload-$prog.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# Run "$@" with the allocator of this run: $pre is empty (system malloc) or
# the library (plus loader debugging to record the bindings).
run() {
    if [ -n "$pre" ]; then
        LD_PRELOAD=$pre LD_DEBUG=bindings LD_DEBUG_OUTPUT=$dir/ld "$@"
    else
        env -u LD_PRELOAD "$@"
    fi
}

# --- the workloads: write to $dir/out (compared) and $dir/err ---------------
work_python3() {
    TIDAL_MAPS_REPORT=${pre:+$dir/maps} PYTHONHASHSEED=0 PYTHONMALLOC=malloc \
        run "$exe" -I -S "$work/workload.py"
}

work_perl() {
    PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0 run "$exe" "$work/workload.pl"
}

work_sqlite3() {
    run "$exe" -batch "$dir/db.sqlite" <"$work/workload.sql"
}

work_git() {
    local repo=$dir/repo
    export HOME=$dir/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME=Tidal GIT_AUTHOR_EMAIL=tidal@example.com
    export GIT_COMMITTER_NAME=Tidal GIT_COMMITTER_EMAIL=tidal@example.com
    export GIT_AUTHOR_DATE='2024-01-01T00:00:00+0000' GIT_COMMITTER_DATE='2024-01-01T00:00:00+0000'
    mkdir -p "$HOME" "$repo" || return 1
    cd "$repo" || return 1
    run "$exe" init -q -b main . || return 1
    run "$exe" config pack.threads 1 && run "$exe" config gc.auto 0 || return 1
    local i
    for i in $(seq 1 25); do
        # deterministic content: 40 files, a few changing per commit
        awk -v c="$i" 'BEGIN {
            for (f = 0; f < 40; f++) {
                if ((f + c) % 5 != 0 && c > 1) continue
                file = sprintf("dir%d/file%02d.txt", f % 4, f)
                system("mkdir -p dir" (f % 4))
                printf "" > file
                for (l = 0; l < 300; l++)
                    printf "line %d of file %d, revision %d: %s\n", l, f, c, substr("the quick brown fox jumps over the lazy dog", 1 + (l * f + c) % 30) >> file
                close(file)
            }
        }' || return 1
        run "$exe" add -A || return 1
        run "$exe" commit -q -m "commit $i" || return 1
        [ $((i % 8)) -eq 0 ] && { run "$exe" branch "b$i" || return 1; }
    done
    run "$exe" log --stat --format='%H %an %s'
    run "$exe" rev-list --count HEAD
    run "$exe" ls-tree -r HEAD
    run "$exe" diff HEAD~10 HEAD --stat
    run "$exe" log -p -5
    run "$exe" blame dir1/file01.txt
    run "$exe" grep -c 'revision 7' HEAD~3
    run "$exe" gc -q || return 1
    run "$exe" fsck --full --no-progress || return 1
    run "$exe" count-objects -v | grep -v -e '^size' -e '^prune-packable' -e '^garbage'
    run "$exe" rev-parse HEAD b8 b16 b24
    run "$exe" show --format='%H %s' --stat HEAD~12
}

one_run() { # $1 = name, sets dir; runs the workload; records rc
    dir=$tmp/$1
    mkdir -p "$dir" || exit 1
    (cd "$dir" && "work_$prog") >"$dir/out" 2>"$dir/err" </dev/null
    echo $? >"$dir/rc"
}

pre= one_run plain
pre=$lib one_run preload

rc_plain=$(cat "$tmp/plain/rc") rc_pre=$(cat "$tmp/preload/rc")
echo "$prog: system malloc: exit $rc_plain, $(wc -c <"$tmp/plain/out") bytes of output;" \
    "LD_PRELOAD=tidalloc: exit $rc_pre, $(wc -c <"$tmp/preload/out") bytes"
if [ "$rc_plain" != 0 ]; then
    head -c 3000 "$tmp/plain/err"
    fail "the workload fails even without tidalloc (exit $rc_plain)"
fi
if [ "$rc_pre" != "$rc_plain" ]; then
    echo "--- stderr with tidalloc:"
    tail -c 3000 "$tmp/preload/err"
    fail "exit status $rc_pre with tidalloc, $rc_plain without"
fi
if ! cmp -s "$tmp/plain/out" "$tmp/preload/out"; then
    echo "--- diff (system malloc vs tidalloc), first lines:"
    diff "$tmp/plain/out" "$tmp/preload/out" | head -40
    echo "--- stderr with tidalloc:"
    tail -c 2000 "$tmp/preload/err"
    fail "output differs with tidalloc"
fi
[ -s "$tmp/plain/out" ] || fail "the workload printed nothing"

# Did the preloaded run use tidalloc? The loader's binding records name the
# object each symbol was bound to: malloc must have gone to libtidalloc.
ls "$tmp/preload"/ld.* >/dev/null 2>&1 || fail "no LD_DEBUG output: was the program run at all?"
libname=$(basename "$lib")
bound=$(grep -h "normal symbol \`malloc'" "$tmp/preload"/ld.* | head -1)
if ! grep -qh "to .*/$libname\( \[[0-9]*\]\)\?: normal symbol \`malloc'" "$tmp/preload"/ld.*; then
    echo "first malloc binding: ${bound:-none}"
    fail "malloc was not bound to $libname in the preloaded run"
fi
# No object may reach glibc's allocator. (Bindings to a non-PIE executable's
# own canonical PLT entry for malloc are fine: that entry jumps to tidalloc.)
if grep -hE "to [^ ]*/libc\.so[^ ]* \[[0-9]+\]: normal symbol .(malloc|free|calloc|realloc|posix_memalign|aligned_alloc|memalign|malloc_usable_size)'" \
    "$tmp/preload"/ld.* | head -3 | grep .; then
    fail "some objects bound allocation functions to glibc's, not $libname (above)"
fi
# ... in every process the workload started (git runs many).
nproc=0
for f in "$tmp/preload"/ld.*; do
    nproc=$((nproc + 1))
    grep -q "to .*/$libname\( \[[0-9]*\]\)\?: normal symbol \`malloc'" "$f" ||
        fail "process ${f##*.} did not bind malloc to $libname"
done
echo "$prog: malloc bound to $libname in all $nproc process(es)"
if [ "$prog" = python3 ]; then
    [ "$(cat "$tmp/preload/maps" 2>/dev/null)" = mapped ] ||
        fail "python did not find libtidalloc in /proc/self/maps ($(cat "$tmp/preload/maps" 2>/dev/null))"
    echo "python3: libtidalloc is mapped (per /proc/self/maps)"
fi
echo "PASS [$prog]"
exit 0
