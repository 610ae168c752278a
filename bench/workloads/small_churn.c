/* small_churn: one thread, small objects (8-256 B, skewed toward small), a
 * ring of live objects.  Most replacements take the oldest object (FIFO, so
 * every object lives `live` operations); one in eight replaces a random slot
 * so lifetimes vary.  Models the hot path of object-heavy single-threaded
 * programs (interpreters, compilers, parsers).
 *
 * usage: bench_small_churn [ops=25000000] [live=20000] [seed=1]
 */
#include "common.h"

#define USAGE "bench_small_churn [ops=25000000] [live=20000] [seed=1]"

struct slot { void *p; uint32_t n; uint64_t tag; };

static uint32_t small_size(rng_t *r)
{
    /* product of two uniforms: density falls off linearly toward 256 */
    uint64_t a = rng_below(r, 249), b = rng_below(r, 249);
    return (uint32_t)(8 + a * b / 248);
}

int main(int argc, char **argv)
{
    long ops = bench_arg(argc, argv, 1, 25000000, 1, 1L << 40, USAGE);
    long live = bench_arg(argc, argv, 2, 20000, 1, 1L << 28, USAGE);
    long seed = bench_arg(argc, argv, 3, 1, 0, 1L << 40, USAGE);
    rng_t r;
    rng_seed(&r, (uint64_t)seed);
    struct slot *ring = bench_xmalloc((size_t)live * sizeof *ring);
    uint64_t sum = 0, seq = 0;

    for (long i = 0; i < live; i++) {
        ring[i].n = small_size(&r);
        ring[i].tag = bench_mix64(++seq);
        ring[i].p = bench_xmalloc(ring[i].n);
        obj_fill(ring[i].p, ring[i].n, ring[i].tag);
    }
    long cursor = 0;
    for (long i = 0; i < ops; i++) {
        long k;
        uint64_t x = rng_next(&r);
        if ((x & 7) == 0) {
            k = (long)((x >> 8) % (uint64_t)live);
        } else {
            k = cursor;
            if (++cursor == live)
                cursor = 0;
        }
        struct slot *s = &ring[k];
        sum += obj_check(s->p, s->n, s->tag);
        free(s->p);
        s->n = small_size(&r);
        s->tag = bench_mix64(++seq);
        s->p = bench_xmalloc(s->n);
        obj_fill(s->p, s->n, s->tag);
    }
    for (long i = 0; i < live; i++) {
        sum += obj_check(ring[i].p, ring[i].n, ring[i].tag);
        free(ring[i].p);
    }
    free(ring);
    printf("ops %ld live %ld\n", ops, live);
    bench_print_checksum(sum);
    return 0;
}
