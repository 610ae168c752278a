/* random_replace: random replacement in a large working set.  Each thread
 * owns an array of live slots; every step frees the block in a random slot
 * and puts a new block of a random size in its place.  With a working set
 * much larger than the caches, every free touches cold memory, so this
 * measures the dependent loads on the free path (address -> span -> list)
 * rather than the allocator's own caches.
 *
 * usage: bench_random_replace [threads=1] [slots=262144] [steps=4000000]
 *                             [min=8] [max=1024]
 *   threads  threads, each with its own `slots` live blocks
 *   steps    replacements per thread
 *   min/max  block sizes, uniform in [min, max]
 * Examples of the shapes in issue 14: 256k slots of 8 B-1 KiB on 1 or 2
 * threads; a 512 MiB heap of 16 B-2 KiB blocks (slots=500000 min=16 max=2048)
 * with 10 % replaced per round (steps = rounds x 50000).
 */
#include "common.h"
#include <pthread.h>

#define USAGE "bench_random_replace [threads=1] [slots=262144] [steps=4000000] [min=8] [max=1024]"

struct slot { void *p; uint32_t n; uint64_t tag; };

struct worker {
    pthread_t tid;
    int id;
    long slots, steps, min, max;
    uint64_t sum;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    rng_t r;
    rng_seed(&r, 7000 + (uint64_t)w->id);
    struct slot *s = bench_xmalloc((size_t)w->slots * sizeof *s);
    uint64_t sum = 0, seq = (uint64_t)w->id << 48;
    uint64_t span = (uint64_t)(w->max - w->min + 1);

    for (long i = 0; i < w->slots; i++) {
        s[i].n = (uint32_t)(w->min + (long)rng_below(&r, span));
        s[i].tag = ++seq;
        s[i].p = bench_xmalloc(s[i].n);
        obj_fill(s[i].p, s[i].n, s[i].tag);
    }
    for (long i = 0; i < w->steps; i++) {
        struct slot *x = &s[rng_below(&r, (uint64_t)w->slots)];
        sum += obj_check(x->p, x->n, x->tag);
        free(x->p);
        x->n = (uint32_t)(w->min + (long)rng_below(&r, span));
        x->tag = ++seq;
        x->p = bench_xmalloc(x->n);
        obj_fill(x->p, x->n, x->tag);
    }
    for (long i = 0; i < w->slots; i++) {
        sum += obj_check(s[i].p, s[i].n, s[i].tag);
        free(s[i].p);
    }
    free(s);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = bench_arg(argc, argv, 1, 1, 1, 1024, USAGE);
    long slots = bench_arg(argc, argv, 2, 262144, 1, 1L << 28, USAGE);
    long steps = bench_arg(argc, argv, 3, 4000000, 0, 1L << 40, USAGE);
    long min = bench_arg(argc, argv, 4, 8, 1, 1L << 20, USAGE);
    long max = bench_arg(argc, argv, 5, 1024, min, 1L << 24, USAGE);
    struct worker *w = bench_xmalloc((size_t)threads * sizeof *w);
    uint64_t sum = 0;

    for (long i = 0; i < threads; i++) {
        w[i] = (struct worker){ .id = (int)i, .slots = slots, .steps = steps,
                                .min = min, .max = max };
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "bench: pthread_create failed\n");
            return 3;
        }
    }
    for (long i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
        sum ^= w[i].sum;
    }
    free(w);
    bench_print_checksum(sum);
    return 0;
}
