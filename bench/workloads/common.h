/* Shared helpers for the tidalloc benchmark workloads.
 *
 * Every workload is a plain C11 + pthreads program that only uses
 * malloc/calloc/realloc/free; the allocator under test is chosen at run time
 * with LD_PRELOAD (see bench/run.py).  Rules every workload follows:
 *   - deterministic: a private xorshift64* generator seeded from constants,
 *     so every allocator performs exactly the same sequence of requests;
 *   - touches what it allocates (first cache line, one byte per 4 KiB page,
 *     last byte) and verifies those bytes before freeing, so a corrupting
 *     allocator is caught and the work cannot be optimised away;
 *   - prints "checksum <hex>" computed from object contents and sizes only
 *     (never from addresses), which bench/run.py compares across allocators.
 */
#ifndef TIDAL_BENCH_COMMON_H
#define TIDAL_BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_PAGE 4096u

/* ---- deterministic PRNG: splitmix64 seeding + xorshift64* ------------- */
typedef struct { uint64_t s; } rng_t;

static inline uint64_t bench_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void rng_seed(rng_t *r, uint64_t seed)
{
    r->s = bench_mix64(seed + 0x9e3779b97f4a7c15ULL);
    if (r->s == 0)
        r->s = 0x2545f4914f6cdd1dULL;
}

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* uniform in [0, n) (n > 0); the modulo bias is irrelevant here */
static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
    return (rng_next(r) >> 11) % n;
}

/* uniform in [0, 1) */
static inline double rng_unit(rng_t *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- command line: positional integer arguments with defaults ---------- */
static inline void bench_usage(const char *usage)
{
    fprintf(stderr, "usage: %s\n", usage);
    exit(2);
}

/* Argument i (1-based); missing or "-" gives def; must lie in [lo, hi]. */
static inline long bench_arg(int argc, char **argv, int i, long def, long lo, long hi,
                             const char *usage)
{
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
        bench_usage(usage);
    if (i >= argc || strcmp(argv[i], "-") == 0)
        return def;
    char *end;
    errno = 0;
    long v = strtol(argv[i], &end, 10);
    if (errno || *end || end == argv[i] || v < lo || v > hi) {
        fprintf(stderr, "bad argument %d '%s' (want %ld..%ld)\n", i, argv[i], lo, hi);
        bench_usage(usage);
    }
    return v;
}

static inline void *bench_xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench: out of memory allocating %zu bytes\n", n);
        exit(3);
    }
    return p;
}

/* ---- touching and verifying objects ------------------------------------ */
/* Writes the first min(n, 64) bytes (tag, then a byte pattern), one byte in
 * every further 4 KiB page and the last byte. */
static inline void obj_fill(void *p, size_t n, uint64_t tag)
{
    unsigned char *b = (unsigned char *)p;
    size_t head = n < 64 ? n : 64;
    if (head >= 8) {
        memcpy(b, &tag, 8);
        memset(b + 8, (int)(tag & 0xff), head - 8);
    } else {
        memset(b, (int)(tag & 0xff), head);
    }
    if (n > BENCH_PAGE) {
        /* the volatile copy stops GCC's -Warray-bounds from reasoning about
         * callers that only ever allocate less than a page */
        unsigned char *volatile vb = b;
        unsigned char *pb = vb;
        for (size_t off = BENCH_PAGE; off < n - 1; off += BENCH_PAGE)
            pb[off] = (unsigned char)(tag + (off >> 12));
    }
    if (n > 64)
        b[n - 1] = (unsigned char)(tag >> 8);
}

static inline void bench_corrupt(const void *p, size_t n, size_t off)
{
    fprintf(stderr, "bench: HEAP CORRUPTION: object of %zu bytes, offset %zu has wrong content\n",
            n, off);
    (void)p;
    abort();
}

/* Verifies what obj_fill wrote; returns a contribution to the checksum. */
static inline uint64_t obj_check(const void *p, size_t n, uint64_t tag)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t head = n < 64 ? n : 64;
    if (head >= 8) {
        uint64_t t;
        memcpy(&t, b, 8);
        if (t != tag)
            bench_corrupt(p, n, 0);
        if (head > 8 && b[head - 1] != (unsigned char)(tag & 0xff))
            bench_corrupt(p, n, head - 1);
    } else if (head > 0 && b[head - 1] != (unsigned char)(tag & 0xff)) {
        bench_corrupt(p, n, head - 1);
    }
    if (n > BENCH_PAGE) {
        const unsigned char *volatile vb = b;
        const unsigned char *pb = vb;
        for (size_t off = BENCH_PAGE; off < n - 1; off += BENCH_PAGE)
            if (pb[off] != (unsigned char)(tag + (off >> 12)))
                bench_corrupt(p, n, off);
    }
    if (n > 64 && b[n - 1] != (unsigned char)(tag >> 8))
        bench_corrupt(p, n, n - 1);
    return bench_mix64(tag ^ ((uint64_t)n << 40));
}

static inline void bench_print_checksum(uint64_t sum)
{
    printf("checksum %016llx\n", (unsigned long long)bench_mix64(sum));
}

/* Resident set size of this process in KiB (informational only). */
static inline long bench_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * 4;
}

#endif
