/* large_repeat: repeatedly allocate a large block (1-32 MiB, random,
 * not page-aligned), write one byte in every page, verify, and free it, with
 * a small window of blocks live at once.  Models image/decoder buffers and
 * bulk I/O: the cost is dominated by how the allocator obtains and returns
 * large memory (mmap/munmap, caching, page faults, huge pages).
 *
 * usage: bench_large_repeat [iters=400] [min_mib=1] [max_mib=32] [window=2]
 */
#include "common.h"

#define USAGE "bench_large_repeat [iters=400] [min_mib=1] [max_mib=32] [window=2]"

struct blk { unsigned char *p; size_t n; uint64_t tag; };

static uint64_t touch_check(struct blk *b)
{
    uint64_t s = 0;
    for (size_t off = 0; off < b->n; off += BENCH_PAGE)
        s += b->p[off];
    return s + obj_check(b->p, b->n, b->tag);
}

int main(int argc, char **argv)
{
    long iters = bench_arg(argc, argv, 1, 400, 1, 1L << 30, USAGE);
    long minm = bench_arg(argc, argv, 2, 1, 1, 1 << 16, USAGE);
    long maxm = bench_arg(argc, argv, 3, 32, 1, 1 << 16, USAGE);
    long window = bench_arg(argc, argv, 4, 2, 1, 1024, USAGE);
    if (maxm < minm)
        bench_usage(USAGE);
    rng_t r;
    rng_seed(&r, 13);
    struct blk *w = calloc((size_t)window, sizeof *w);
    if (!w)
        return 3;
    uint64_t sum = 0, total = 0;
    for (long i = 0; i < iters; i++) {
        struct blk *b = &w[i % window];
        if (b->p) {
            sum += touch_check(b);
            free(b->p);
        }
        uint64_t lo = (uint64_t)minm << 20, hi = (uint64_t)maxm << 20;
        b->n = (size_t)(lo + rng_below(&r, hi - lo + 1));
        b->tag = bench_mix64((uint64_t)i + 1);
        b->p = bench_xmalloc(b->n);
        obj_fill(b->p, b->n, b->tag); /* first bytes, one byte per page, last byte */
        total += b->n;
    }
    for (long i = 0; i < window; i++)
        if (w[i].p) {
            sum += touch_check(&w[i]);
            free(w[i].p);
        }
    free(w);
    printf("iters %ld window %ld allocated_mb %llu\n", iters, window,
           (unsigned long long)(total >> 20));
    bench_print_checksum(sum);
    return 0;
}
