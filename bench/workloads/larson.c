/* larson: a server-style workload in the spirit of Larson & Krishnan's
 * benchmark.  The main thread allocates every "connection" an array of slots
 * holding random-sized objects (8-1000 B); each of T threads takes one array,
 * repeatedly frees a random slot and allocates a replacement, then hands the
 * whole array to a freshly created thread and exits.  Objects are therefore
 * freed by threads that did not allocate them, often after the allocating
 * thread has died: thread-cache teardown, orphaned memory and cross-thread
 * frees all matter.  The run is a fixed amount of work (generations x rounds),
 * not a fixed time, so the checksum is deterministic.
 *
 * usage: bench_larson [threads=4] [slots=4000] [rounds=200000] [generations=24]
 */
#include "common.h"
#include <pthread.h>

#define USAGE "bench_larson [threads=4] [slots=4000] [rounds=200000] [generations=24]"

struct slot { void *p; uint32_t n; uint64_t tag; };

struct chain {
    int id;
    long gen, generations, rounds, nslots;
    rng_t r;
    uint64_t seq, sum;
    struct slot *slots;
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static long chains_done;
static int spawn_failed;

static uint32_t obj_size(rng_t *r)
{
    return (uint32_t)(8 + rng_below(r, 993)); /* uniform 8..1000 like larson */
}

static void new_obj(struct chain *c, struct slot *s)
{
    s->n = obj_size(&c->r);
    s->tag = bench_mix64(++c->seq);
    s->p = bench_xmalloc(s->n);
    obj_fill(s->p, s->n, s->tag);
}

static void *chain_thread(void *arg)
{
    struct chain *c = arg;
    for (long i = 0; i < c->rounds; i++) {
        struct slot *s = &c->slots[rng_below(&c->r, (uint64_t)c->nslots)];
        c->sum += obj_check(s->p, s->n, s->tag);
        free(s->p);
        new_obj(c, s);
    }
    if (++c->gen < c->generations) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &a, chain_thread, c);
        pthread_attr_destroy(&a);
        if (rc == 0)
            return NULL;
        pthread_mutex_lock(&done_lock);
        spawn_failed = 1;
        pthread_mutex_unlock(&done_lock);
    }
    /* last generation: release everything */
    for (long i = 0; i < c->nslots; i++) {
        c->sum += obj_check(c->slots[i].p, c->slots[i].n, c->slots[i].tag);
        free(c->slots[i].p);
    }
    free(c->slots);
    c->slots = NULL;
    pthread_mutex_lock(&done_lock);
    chains_done++;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    return NULL;
}

int main(int argc, char **argv)
{
    long nthreads = bench_arg(argc, argv, 1, 4, 1, 1024, USAGE);
    long nslots = bench_arg(argc, argv, 2, 4000, 1, 1L << 26, USAGE);
    long rounds = bench_arg(argc, argv, 3, 200000, 1, 1L << 40, USAGE);
    long gens = bench_arg(argc, argv, 4, 24, 1, 1L << 20, USAGE);
    struct chain *c = bench_xmalloc((size_t)nthreads * sizeof *c);
    for (long i = 0; i < nthreads; i++) {
        c[i] = (struct chain){ .id = (int)i, .generations = gens, .rounds = rounds,
                               .nslots = nslots, .seq = (uint64_t)i << 48 };
        rng_seed(&c[i].r, 3000 + (uint64_t)i);
        c[i].slots = bench_xmalloc((size_t)nslots * sizeof(struct slot));
        for (long k = 0; k < nslots; k++)
            new_obj(&c[i], &c[i].slots[k]); /* allocated by main, freed by workers */
    }
    for (long i = 0; i < nthreads; i++) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, chain_thread, &c[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
        pthread_attr_destroy(&a);
    }
    pthread_mutex_lock(&done_lock);
    while (chains_done < nthreads)
        pthread_cond_wait(&done_cond, &done_lock);
    int failed = spawn_failed;
    pthread_mutex_unlock(&done_lock);
    if (failed) {
        fprintf(stderr, "larson: could not create a successor thread\n");
        return 1;
    }
    uint64_t sum = 0;
    for (long i = 0; i < nthreads; i++)
        sum += c[i].sum;
    free(c);
    printf("threads %ld slots %ld rounds %ld generations %ld\n", nthreads, nslots, rounds, gens);
    bench_print_checksum(sum);
    return 0;
}
