/* thread_churn: many short-lived threads.  Each wave starts T threads that
 * allocate and free a few thousand small objects and then exit, leaving a
 * batch of objects behind that the main thread frees after joining them.
 * Exercises thread-cache creation and teardown and the reclamation of memory
 * owned by threads that no longer exist (thread pools that resize, per-request
 * threads).  Leaks here show up as RSS growth.
 *
 * usage: bench_thread_churn [waves=600] [threads=4] [ops=4000] [leftover=256]
 */
#include "common.h"
#include <pthread.h>

#define USAGE "bench_thread_churn [waves=600] [threads=4] [ops=4000] [leftover=256]"

struct slot { void *p; uint32_t n; uint64_t tag; };

struct worker {
    pthread_t tid;
    uint64_t seed;
    long ops, nleft;
    struct slot *left;   /* allocated by the worker, freed by main */
    uint64_t sum;
};

static uint32_t obj_size(rng_t *r)
{
    uint64_t a = rng_below(r, 2033), b = rng_below(r, 2033);
    return (uint32_t)(16 + a * b / 2032);             /* 16..2048, skewed small */
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    rng_t r;
    rng_seed(&r, w->seed);
    struct slot local[64];
    uint64_t sum = 0, seq = w->seed << 32;
    for (int i = 0; i < 64; i++) {
        local[i].n = obj_size(&r);
        local[i].tag = bench_mix64(++seq);
        local[i].p = bench_xmalloc(local[i].n);
        obj_fill(local[i].p, local[i].n, local[i].tag);
    }
    for (long i = 0; i < w->ops; i++) {
        struct slot *x = &local[rng_below(&r, 64)];
        sum += obj_check(x->p, x->n, x->tag);
        free(x->p);
        x->n = obj_size(&r);
        x->tag = bench_mix64(++seq);
        x->p = bench_xmalloc(x->n);
        obj_fill(x->p, x->n, x->tag);
    }
    for (int i = 0; i < 64; i++) {
        sum += obj_check(local[i].p, local[i].n, local[i].tag);
        free(local[i].p);
    }
    w->left = bench_xmalloc((size_t)w->nleft * sizeof *w->left);
    for (long i = 0; i < w->nleft; i++) {
        w->left[i].n = obj_size(&r);
        w->left[i].tag = bench_mix64(++seq);
        w->left[i].p = bench_xmalloc(w->left[i].n);
        obj_fill(w->left[i].p, w->left[i].n, w->left[i].tag);
    }
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    long waves = bench_arg(argc, argv, 1, 600, 1, 1L << 30, USAGE);
    long nthreads = bench_arg(argc, argv, 2, 4, 1, 1024, USAGE);
    long ops = bench_arg(argc, argv, 3, 4000, 0, 1L << 40, USAGE);
    long nleft = bench_arg(argc, argv, 4, 256, 1, 1L << 24, USAGE);
    struct worker *w = bench_xmalloc((size_t)nthreads * sizeof *w);
    uint64_t sum = 0;
    for (long v = 0; v < waves; v++) {
        for (long i = 0; i < nthreads; i++) {
            w[i] = (struct worker){ .seed = (uint64_t)(v * nthreads + i + 1), .ops = ops,
                                    .nleft = nleft };
            if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
                fprintf(stderr, "pthread_create failed\n");
                return 1;
            }
        }
        for (long i = 0; i < nthreads; i++) {
            pthread_join(w[i].tid, NULL);
            sum += w[i].sum;
            for (long k = 0; k < nleft; k++) {      /* remote frees, owner is gone */
                sum += obj_check(w[i].left[k].p, w[i].left[k].n, w[i].left[k].tag);
                free(w[i].left[k].p);
            }
            free(w[i].left);
        }
    }
    free(w);
    printf("waves %ld threads %ld ops %ld leftover %ld\n", waves, nthreads, ops, nleft);
    bench_print_checksum(sum);
    return 0;
}
