/* random_sizes: one thread, many live objects whose sizes follow a power law
 * from 8 B to 1 MiB (median ~35 B, ~9 % above 64 KiB, mean ~30 KiB).  Each
 * operation replaces a random live object; one allocation in eight uses
 * calloc and checks that the memory really is zeroed.  Exercises every size
 * class at once, the small/large boundary and the cost of returning and
 * re-faulting pages.
 *
 * usage: bench_random_sizes [ops=800000] [live=4000] [max_size=1048576] [seed=7]
 */
#include "common.h"
#include <math.h>

#define USAGE "bench_random_sizes [ops=800000] [live=4000] [max_size=1048576] [seed=7]"

struct slot { void *p; uint32_t n; uint64_t tag; };

static double log2max;

static uint32_t rand_size(rng_t *r)
{
    double u = rng_unit(r);
    double s = 8.0 * exp2(log2max * u * u * u);
    return (uint32_t)s;
}

static void new_obj(rng_t *r, struct slot *s, uint64_t tag)
{
    s->n = rand_size(r);
    s->tag = tag;
    if ((rng_next(r) & 7) == 0) {
        unsigned char *b = calloc(1, s->n);
        if (!b) {
            fprintf(stderr, "out of memory\n");
            exit(3);
        }
        /* spot-check the zeroing: first, middle, last byte and one per page */
        if (b[0] || b[s->n / 2] || b[s->n - 1])
            bench_corrupt(b, s->n, 0);
        for (size_t off = BENCH_PAGE; off < s->n; off += BENCH_PAGE)
            if (b[off] != 0)
                bench_corrupt(b, s->n, off);
        s->p = b;
    } else {
        s->p = bench_xmalloc(s->n);
    }
    obj_fill(s->p, s->n, s->tag);
}

int main(int argc, char **argv)
{
    long ops = bench_arg(argc, argv, 1, 800000, 1, 1L << 40, USAGE);
    long live = bench_arg(argc, argv, 2, 4000, 1, 1L << 26, USAGE);
    long maxsz = bench_arg(argc, argv, 3, 1 << 20, 16, 1L << 30, USAGE);
    long seed = bench_arg(argc, argv, 4, 7, 0, 1L << 40, USAGE);
    log2max = log2((double)maxsz / 8.0);
    rng_t r;
    rng_seed(&r, (uint64_t)seed);
    struct slot *s = bench_xmalloc((size_t)live * sizeof *s);
    uint64_t sum = 0, seq = 0, bytes = 0;
    for (long i = 0; i < live; i++) {
        new_obj(&r, &s[i], bench_mix64(++seq));
        bytes += s[i].n;
    }
    for (long i = 0; i < ops; i++) {
        struct slot *x = &s[rng_below(&r, (uint64_t)live)];
        sum += obj_check(x->p, x->n, x->tag);
        free(x->p);
        new_obj(&r, x, bench_mix64(++seq));
        bytes += x->n;
    }
    for (long i = 0; i < live; i++) {
        sum += obj_check(s[i].p, s[i].n, s[i].tag);
        free(s[i].p);
    }
    free(s);
    printf("ops %ld live %ld allocated_mb %llu\n", ops, live, (unsigned long long)(bytes >> 20));
    bench_print_checksum(sum);
    return 0;
}
