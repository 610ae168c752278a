/* threads_local: N threads, each allocating and freeing only its own objects
 * (no sharing).  Each iteration allocates a burst of short-lived objects
 * (16 B - 1 KiB), frees them in random order, and replaces one slot of a
 * per-thread ring of longer-lived objects.  Measures thread-local fast paths
 * and scalability (no lock or cache line should be shared).
 *
 * usage: bench_threads_local [threads=4] [iters=250000] [burst=64] [live=2000]
 */
#include "common.h"
#include <pthread.h>

#define USAGE "bench_threads_local [threads=4] [iters=250000] [burst=64] [live=2000]"

struct slot { void *p; uint32_t n; uint64_t tag; };

struct worker {
    pthread_t tid;
    int id;
    long iters, burst, live;
    uint64_t sum;
};

static uint32_t obj_size(rng_t *r)
{
    /* 16..1024, skewed toward small */
    uint64_t a = rng_below(r, 1009), b = rng_below(r, 1009);
    return (uint32_t)(16 + a * b / 1008);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    rng_t r;
    rng_seed(&r, 1000 + (uint64_t)w->id);
    struct slot *ring = bench_xmalloc((size_t)w->live * sizeof *ring);
    struct slot *burst = bench_xmalloc((size_t)w->burst * sizeof *burst);
    uint64_t sum = 0, seq = (uint64_t)w->id << 48;

    for (long i = 0; i < w->live; i++) {
        ring[i].n = obj_size(&r);
        ring[i].tag = bench_mix64(++seq);
        ring[i].p = bench_xmalloc(ring[i].n);
        obj_fill(ring[i].p, ring[i].n, ring[i].tag);
    }
    for (long it = 0; it < w->iters; it++) {
        long nb = 1 + (long)rng_below(&r, (uint64_t)w->burst);
        for (long j = 0; j < nb; j++) {
            burst[j].n = obj_size(&r);
            burst[j].tag = bench_mix64(++seq);
            burst[j].p = bench_xmalloc(burst[j].n);
            obj_fill(burst[j].p, burst[j].n, burst[j].tag);
        }
        /* free in a random order (Fisher-Yates over the remaining ones) */
        for (long j = nb; j > 0; j--) {
            long k = (long)rng_below(&r, (uint64_t)j);
            sum += obj_check(burst[k].p, burst[k].n, burst[k].tag);
            free(burst[k].p);
            burst[k] = burst[j - 1];
        }
        long k = (long)rng_below(&r, (uint64_t)w->live);
        sum += obj_check(ring[k].p, ring[k].n, ring[k].tag);
        free(ring[k].p);
        ring[k].n = obj_size(&r);
        ring[k].tag = bench_mix64(++seq);
        ring[k].p = bench_xmalloc(ring[k].n);
        obj_fill(ring[k].p, ring[k].n, ring[k].tag);
    }
    for (long i = 0; i < w->live; i++) {
        sum += obj_check(ring[i].p, ring[i].n, ring[i].tag);
        free(ring[i].p);
    }
    free(burst);
    free(ring);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    long nthreads = bench_arg(argc, argv, 1, 4, 1, 1024, USAGE);
    long iters = bench_arg(argc, argv, 2, 250000, 1, 1L << 40, USAGE);
    long burst = bench_arg(argc, argv, 3, 64, 1, 1L << 20, USAGE);
    long live = bench_arg(argc, argv, 4, 2000, 1, 1L << 26, USAGE);
    struct worker *w = bench_xmalloc((size_t)nthreads * sizeof *w);
    for (long i = 0; i < nthreads; i++) {
        w[i] = (struct worker){ .id = (int)i, .iters = iters, .burst = burst, .live = live };
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    uint64_t sum = 0;
    for (long i = 0; i < nthreads; i++) {
        pthread_join(w[i].tid, NULL);
        sum += w[i].sum;
    }
    free(w);
    printf("threads %ld iters %ld burst %ld live %ld\n", nthreads, iters, burst, live);
    bench_print_checksum(sum);
    return 0;
}
