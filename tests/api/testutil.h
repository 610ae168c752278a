/*
 * Shared helpers for tidalloc's black-box tests (tests/api, tests/stress):
 * check macros that print where and why a test failed and exit non-zero, the
 * "the allocator in use really is tidalloc" assertion, a seeded PRNG, byte
 * patterns, /proc/self/status readers and the stress scale factor.
 *
 * Compile-time switches:
 *   TIDAL_TEST_SYSTEM_MALLOC  the test is not linked to tidalloc but runs on
 *                        the system allocator: glibc (to check the tests' own
 *                        expectations: compile a test by hand with
 *                        -DTIDAL_TEST_SYSTEM_MALLOC) or, in ASan/TSan builds,
 *                        the sanitizer's. Skips the identity check and
 *                        supplies the entry points glibc 2.36 lacks.
 *   TIDAL_TEST_STATIC    the program links libtidalloc.a into the executable:
 *                        the identity check expects malloc in the executable.
 *   TIDAL_TEST_TSAN_LIB  (set by tests/stress/tsan_rename.h) a TSan program
 *                        that runs on libtidalloc_tsan.so, tidalloc built
 *                        with TSan, through its renamed entry points
 *                        (tdt_malloc...): the allocator is tidalloc, so the
 *                        identity check runs on the tdt_ names and glibc's
 *                        semantics are expected; only the stress scale
 *                        shrinks for TSan's slowdown.
 * Under ASan/TSan (TT_SANITIZED_MALLOC) glibc-specific edge cases are not
 * checked either: the sanitizers' allocators differ from glibc on purpose.
 */
#ifndef TIDAL_TESTUTIL_H
#define TIDAL_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tidalloc.h"

/* TT_TSAN: built with ThreadSanitizer; TT_SANITIZED_MALLOC: with ASan or
 * TSan, whose runtime replaces malloc (gcc and clang spellings). */
#if defined(__SANITIZE_THREAD__)
#define TT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TT_TSAN 1
#endif
#endif
#ifndef TT_TSAN
#define TT_TSAN 0
#endif
#if defined(TIDAL_TEST_TSAN_LIB)
#define TT_SANITIZED_MALLOC 0 /* TSan, but malloc is tidalloc's (tdt_malloc) */
#elif TT_TSAN || defined(__SANITIZE_ADDRESS__)
#define TT_SANITIZED_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TT_SANITIZED_MALLOC 1
#endif
#endif
#ifndef TT_SANITIZED_MALLOC
#define TT_SANITIZED_MALLOC 0
#endif
#if TT_TSAN
#define TT_SANITIZER_SLOWDOWN 10.0
#elif TT_SANITIZED_MALLOC
#define TT_SANITIZER_SLOWDOWN 4.0
#else
#define TT_SANITIZER_SLOWDOWN 1.0
#endif

/* glibc-conformance edge cases hold only when the allocator is tidalloc (or
 * glibc itself), not a sanitizer's. */
#define TT_GLIBC_SEMANTICS (!TT_SANITIZED_MALLOC)

/* RSS bounds measure the allocator only without a sanitizer: ASan's and
 * TSan's shadow memory and per-thread state count in the RSS too (even when
 * the allocator is tidalloc, TIDAL_TEST_TSAN_LIB). */
#define TT_RSS_CHECKS (!TT_SANITIZED_MALLOC && !TT_TSAN && !tt_emulated())
/* Under qemu-user (TIDAL_TEST_EMULATED set by scripts/test.sh for the arm64
 * runs) the RSS is the emulator's, translation caches and all. */
static inline int tt_emulated(void) { return getenv("TIDAL_TEST_EMULATED") != NULL; }

#define TT_UNUSED __attribute__((unused))

#ifdef __cplusplus
extern "C" {
#endif
/* Not declared by glibc 2.36 (C23 / removed from the API). */
void free_sized(void *, size_t);
void free_aligned_sized(void *, size_t, size_t);
void cfree(void *);
#ifdef __cplusplus
}
#endif

/* ---------------------------------------------------------------------------
 * Failure reporting
 * ------------------------------------------------------------------------- */

/* A seed printed with every failure message (0: none). */
static unsigned long long tt_seed TT_UNUSED;
/* Free-form context printed with every failure message (e.g. "size=17"). */
static __thread char tt_ctx[160] TT_UNUSED;

static void tt_vfail(const char *file, int line, const char *cond, const char *fmt, va_list ap)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "FAIL %s:%d: %s", file, line, cond);
    /* fmt is " " (no message) or " message..." (see CHECK). */
    if (fmt && fmt[0] && fmt[1] && n < (int)sizeof buf) {
        n += snprintf(buf + n, sizeof buf - n, ":");
        if (n < (int)sizeof buf)
            n += vsnprintf(buf + n, sizeof buf - n, fmt, ap);
    }
    if (tt_ctx[0] && n < (int)sizeof buf)
        n += snprintf(buf + n, sizeof buf - n, " [%s]", tt_ctx);
    if (tt_seed && n < (int)sizeof buf)
        n += snprintf(buf + n, sizeof buf - n, " (seed=%llu; rerun with TIDAL_TEST_SEED=%llu)",
                      tt_seed, tt_seed);
    if (n >= (int)sizeof buf)
        n = (int)sizeof buf - 1;
    buf[n++] = '\n';
    fflush(stdout);
    /* write(2), not stdio: the allocator under test may be broken. */
    ssize_t w TT_UNUSED = write(2, buf, (size_t)n);
    _exit(1);
}

TT_UNUSED __attribute__((noreturn, format(printf, 4, 5)))
static void tt_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tt_vfail(file, line, cond, fmt, ap);
    va_end(ap);
    _exit(1);
}

/* CHECK(cond) or CHECK(cond, "fmt", args...): exits 1 with a message. */
#define CHECK(cond, ...) \
    ((cond) ? (void)0 : tt_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__))
#define FAIL(...) tt_fail(__FILE__, __LINE__, "failure", " " __VA_ARGS__)

#define TT_CTX(...) snprintf(tt_ctx, sizeof tt_ctx, __VA_ARGS__)

/* Hide a value from the compiler, so calls like malloc(SIZE_MAX) are made as
 * written and not warned about or folded. */
TT_UNUSED static size_t tt_hide(size_t x)
{
    volatile size_t v = x;
    return v;
}
TT_UNUSED static void *tt_hidep(void *x)
{
    void *volatile v = x;
    return v;
}
TT_UNUSED static void tt_escape(const void *p)
{
    __asm__ volatile("" : : "g"(p) : "memory");
}

/* aligned_alloc for tests that just want an aligned block of n bytes: C17
 * and glibc accept any n, the sanitizers only multiples of the alignment. */
TT_UNUSED static void *tt_aligned_alloc(size_t align, size_t n)
{
#if TT_SANITIZED_MALLOC
    n = (n + align - 1) & ~(align - 1);
#endif
    return aligned_alloc(align, n);
}

/* ---------------------------------------------------------------------------
 * Environment
 * ------------------------------------------------------------------------- */

TT_UNUSED static size_t tt_page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

TT_UNUSED static int tt_is_pow2(size_t x)
{
    return x && !(x & (x - 1));
}

/* Seed: $TIDAL_TEST_SEED or the given default (deterministic). Printed on
 * failure. */
TT_UNUSED static unsigned long long tt_init_seed(unsigned long long dflt)
{
    const char *s = getenv("TIDAL_TEST_SEED");
    tt_seed = (s && *s) ? strtoull(s, NULL, 0) : dflt;
    if (!tt_seed)
        tt_seed = 1;
    return tt_seed;
}

/* $TIDAL_STRESS_SCALE (default 1), divided by the sanitizer slowdown. */
TT_UNUSED static double tt_stress_scale(void)
{
    const char *s = getenv("TIDAL_STRESS_SCALE");
    double f = (s && *s) ? strtod(s, NULL) : 1.0;
    if (!(f > 0))
        f = 1.0;
    return f / TT_SANITIZER_SLOWDOWN;
}

/* n scaled by tt_stress_scale(), at least lo. */
TT_UNUSED static long tt_scaled(long n, long lo)
{
    double v = (double)n * tt_stress_scale();
    return v < (double)lo ? lo : (long)v;
}

/* A field of /proc/self/status in kB ("VmRSS", "VmHWM"), -1 if unknown. */
TT_UNUSED static long tt_status_kb(const char *field)
{
    char buf[4096];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    size_t fl = strlen(field);
    while (fgets(buf, sizeof buf, f))
        if (!strncmp(buf, field, fl) && buf[fl] == ':') {
            v = strtol(buf + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

TT_UNUSED static long tt_rss_kb(void)
{
    return tt_status_kb("VmRSS");
}

/* Watchdog: a hang fails with a message instead of waiting for CTest.
 * Under TSan (slower, and more so on a loaded machine) it waits twice as
 * long. */
static const char *tt_watchdog_what TT_UNUSED;
TT_UNUSED static void tt_watchdog_handler(int sig)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "FAIL: watchdog expired (deadlock or far too slow) in %s (seed=%llu)\n",
                     tt_watchdog_what ? tt_watchdog_what : "test", tt_seed);
    ssize_t w TT_UNUSED = write(2, buf, (size_t)n);
    _exit(1);
}
TT_UNUSED static void tt_watchdog(unsigned seconds, const char *what)
{
    tt_watchdog_what = what;
    signal(SIGALRM, tt_watchdog_handler);
    alarm(TT_TSAN ? 2 * seconds : seconds);
}

/* ---------------------------------------------------------------------------
 * PRNG and byte patterns
 * ------------------------------------------------------------------------- */

typedef struct {
    uint64_t s;
} tt_rng;

TT_UNUSED static uint64_t tt_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
TT_UNUSED static uint64_t tt_next(tt_rng *r) /* splitmix64 */
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return tt_mix64(r->s);
}
/* Uniform-ish in [0, n). */
TT_UNUSED static uint64_t tt_below(tt_rng *r, uint64_t n)
{
    return n ? tt_next(r) % n : 0;
}

/* Pattern byte i of a block tagged `tag`: depends on both, so a block that
 * was overwritten by another block's pattern, shifted or zeroed is caught. */
static inline uint8_t tt_pat_byte(uint64_t tag, size_t i)
{
    uint64_t x = (tag ^ ((uint64_t)(i >> 3) * 0x9e3779b97f4a7c15ULL));
    x ^= x >> 29;
    return (uint8_t)(x >> ((i & 7) * 8));
}

static inline uint64_t tt_pat_word(uint64_t tag, size_t w)
{
    uint64_t x = (tag ^ ((uint64_t)w * 0x9e3779b97f4a7c15ULL));
    return x ^ (x >> 29);
}

/* Fill [from, to) of p with the pattern of `tag` (offsets relative to p). */
TT_UNUSED static void tt_fill_range(void *p, size_t from, size_t to, uint64_t tag)
{
    unsigned char *b = (unsigned char *)p;
    size_t i = from;
    while (i < to && (i & 7))
        b[i] = tt_pat_byte(tag, i), i++;
    for (; i + 8 <= to; i += 8) {
        uint64_t w = tt_pat_word(tag, i >> 3);
        __builtin_memcpy(b + i, &w, 8);
    }
    for (; i < to; i++)
        b[i] = tt_pat_byte(tag, i);
}

TT_UNUSED static void tt_fill(void *p, size_t n, uint64_t tag)
{
    tt_fill_range(p, 0, n, tag);
}

/* Offset of the first byte of [from, to) not matching the pattern, or
 * SIZE_MAX if all match. */
TT_UNUSED static size_t tt_check_range(const void *p, size_t from, size_t to, uint64_t tag)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i = from;
    while (i < to && (i & 7)) {
        if (b[i] != tt_pat_byte(tag, i))
            return i;
        i++;
    }
    for (; i + 8 <= to; i += 8) {
        uint64_t w = tt_pat_word(tag, i >> 3), v;
        __builtin_memcpy(&v, b + i, 8);
        if (v != w) {
            for (size_t j = i; j < i + 8; j++)
                if (b[j] != tt_pat_byte(tag, j))
                    return j;
        }
    }
    for (; i < to; i++)
        if (b[i] != tt_pat_byte(tag, i))
            return i;
    return SIZE_MAX;
}

TT_UNUSED static size_t tt_check(const void *p, size_t n, uint64_t tag)
{
    return tt_check_range(p, 0, n, tag);
}

/* Offset of the first non-zero byte in p[0..n), or SIZE_MAX. */
TT_UNUSED static size_t tt_first_nonzero(const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i = 0;
    for (; i < n && ((uintptr_t)(b + i) & 7); i++)
        if (b[i])
            return i;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        __builtin_memcpy(&v, b + i, 8);
        if (v)
            break;
    }
    for (; i < n; i++)
        if (b[i])
            return i;
    return SIZE_MAX;
}

/* Check that p (of requested size n) is a sane live block: non-NULL, aligned
 * to `align`, usable size >= n, and writable and readable over its whole
 * usable size. Leaves the block filled with the pattern of `tag`.
 * FILL_BLOCK: the same without reading back (the caller checks later, with
 * tt_check over malloc_usable_size(p) bytes, once other blocks are live). */
#define CHECK_BLOCK(p, n, align, tag) tt_check_block_at(__FILE__, __LINE__, (p), (n), (align), (tag), 1)
#define FILL_BLOCK(p, n, align, tag) tt_check_block_at(__FILE__, __LINE__, (p), (n), (align), (tag), 0)
TT_UNUSED static void tt_check_block_at(const char *file, int line, void *p, size_t n, size_t align, uint64_t tag,
                                        int readback)
{
    if (!p)
        tt_fail(file, line, "block != NULL", " allocation of %zu bytes (align %zu) failed, errno=%d", n, align,
                errno);
    if (align && ((uintptr_t)p & (align - 1)))
        tt_fail(file, line, "aligned", " %p is not %zu-aligned (size %zu)", p, align, n);
    size_t us = malloc_usable_size(p);
    if (us < n)
        tt_fail(file, line, "usable >= size", " malloc_usable_size(%p)=%zu < requested %zu", p, us, n);
    if (TT_SANITIZED_MALLOC) /* they flag use beyond the request (TSan's usable size of 0 bytes is 1) */
        us = n;
    tt_fill(p, us, tag);
    if (!readback)
        return;
    size_t bad = tt_check(p, us, tag);
    if (bad != SIZE_MAX)
        tt_fail(file, line, "pattern", " block %p (size %zu, usable %zu) does not hold what was written at offset %zu",
                p, n, us, bad);
}

/* ---------------------------------------------------------------------------
 * "The allocator in use really is tidalloc"
 * ------------------------------------------------------------------------- */

#ifdef TIDAL_TEST_SYSTEM_MALLOC
/* Not linked to tidalloc: supply what glibc 2.36 (and the sanitizers) lack. */
void free_sized(void *p, size_t n) { free(p); }
void free_aligned_sized(void *p, size_t a, size_t n) { free(p); }
void cfree(void *p) { free(p); }
size_t tidal_usable_size(const void *p) { return malloc_usable_size((void *)p); }
const char *tidal_version(void) { return "glibc"; }
size_t tidal_purge(void) { return malloc_trim(0) ? 1 : 0; }
void tidal_thread_flush(void) {}
#endif

/* Which object defines `sym` in the global lookup scope (what every other
 * object, libc included, binds to). */
TT_UNUSED static const char *tt_definer(const char *sym, Dl_info *di)
{
    void *s = dlsym(RTLD_DEFAULT, sym);
    if (!s)
        return NULL;
    if (!dladdr(s, di) || !di->dli_fname)
        return "?";
    return di->dli_fname;
}

/* Symbols every program checks; the API test checks the full list. */
#ifdef TIDAL_TEST_TSAN_LIB
static const char *const tt_core_syms[] TT_UNUSED = {
    "tdt_malloc", "tdt_free", "tdt_calloc", "tdt_realloc", "tdt_posix_memalign", "tdt_aligned_alloc",
    "tdt_memalign", "tdt_malloc_usable_size", NULL,
};
#else
static const char *const tt_core_syms[] TT_UNUSED = {
    "malloc", "free", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign",
    "malloc_usable_size", NULL,
};
#endif

/* Assert that each symbol in `syms` (NULL-terminated) resolves to tidalloc:
 * libtidalloc.so, or with TIDAL_TEST_STATIC the executable itself. */
TT_UNUSED static void tt_expect_syms_from_tidalloc(const char *const *syms)
{
#if defined(TIDAL_TEST_SYSTEM_MALLOC) || TT_SANITIZED_MALLOC
    (void)syms;
#else
#ifdef TIDAL_TEST_STATIC
    Dl_info self;
    CHECK(dladdr((void *)tt_definer, &self), "dladdr on the executable failed");
#endif
    for (; *syms; syms++) {
        Dl_info di;
        memset(&di, 0, sizeof di);
        const char *obj = tt_definer(*syms, &di);
        CHECK(obj != NULL, "dlsym(RTLD_DEFAULT, \"%s\") found nothing: %s", *syms, dlerror());
#ifdef TIDAL_TEST_STATIC
        CHECK(di.dli_fbase == self.dli_fbase, "%s resolves to %s, not to the executable (libtidalloc.a)", *syms,
              obj);
#else
        CHECK(strstr(obj, "libtidalloc") != NULL, "%s resolves to %s, not libtidalloc", *syms, obj);
#endif
    }
#endif
}

/* The first thing each test does: fail unless the allocator is tidalloc. */
TT_UNUSED static void tt_expect_tidalloc(void)
{
#if defined(TIDAL_TEST_SYSTEM_MALLOC)
    printf("note: TIDAL_TEST_SYSTEM_MALLOC build (system or sanitizer malloc): allocator identity not checked\n");
#elif TT_SANITIZED_MALLOC
    printf("note: sanitizer build, malloc is the sanitizer's; allocator identity not checked\n");
#else
    tt_expect_syms_from_tidalloc(tt_core_syms);
#ifdef TIDAL_TEST_TSAN_LIB
    {
        /* The plain names stay TSan's: the renamed library must not export
         * (and so interpose) them. */
        Dl_info tsan;
        const char *obj = tt_definer("malloc", &tsan);
        CHECK(obj == NULL || strstr(obj, "libtidalloc") == NULL, "malloc resolves to %s: the TSan build of "
              "tidalloc must export only the renamed tdt_ entry points", obj);
        printf("note: TSan build of tidalloc: malloc() is TSan's, the test calls tidalloc as tdt_malloc()...\n");
    }
#endif
    /* The address this program calls malloc through. */
    Dl_info di;
    CHECK(dladdr((void *)(uintptr_t)&malloc, &di) && di.dli_fname, "dladdr(malloc) failed");
#ifndef TIDAL_TEST_STATIC
    CHECK(strstr(di.dli_fname, "libtidalloc") != NULL, "this program's malloc is in %s", di.dli_fname);
#endif
    /* tidal_version() looked up dynamically, so that programs which are not
     * linked to tidalloc (LD_PRELOAD) can use this too. */
#ifdef TIDAL_TEST_STATIC
    const char *(*ver)(void) = tidal_version; /* not in the dynamic symbol table */
    size_t (*us)(const void *) = tidal_usable_size;
#else
    const char *(*ver)(void) = (const char *(*)(void))(uintptr_t)dlsym(RTLD_DEFAULT, "tidal_version");
    size_t (*us)(const void *) = (size_t(*)(const void *))(uintptr_t)dlsym(RTLD_DEFAULT, "tidal_usable_size");
#endif
    CHECK(ver != NULL, "tidal_version not found");
    const char *v = ver();
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TIDAL_VERSION_MAJOR, TIDAL_VERSION_MINOR, TIDAL_VERSION_PATCH);
    CHECK(v != NULL && strcmp(v, want) == 0, "tidal_version()=\"%s\", header says %s", v ? v : "(null)", want);
    /* And the blocks really are tidalloc's. */
    CHECK(us != NULL, "tidal_usable_size not found");
    void *p = malloc(tt_hide(100));
    CHECK(p && us(p) >= 100 && us(p) == malloc_usable_size(p), "tidal_usable_size disagrees with malloc");
    free(p);
#endif
}

#endif /* TIDAL_TESTUTIL_H */
