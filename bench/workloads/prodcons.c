/* prodcons: producer threads allocate objects (16-512 B) in batches and push
 * them through a bounded queue; consumer threads verify and free them.  Every
 * free (objects and the batch descriptors) happens on a thread other than the
 * allocating one, so this measures the remote-free path: message passing,
 * work queues, request pipelines.
 *
 * usage: bench_prodcons [producers=2] [consumers=2] [objects_per_producer=5000000]
 *                       [batch=64] [queue_capacity=32]
 */
#include "common.h"
#include <pthread.h>

#define USAGE "bench_prodcons [producers=2] [consumers=2] [objects_per_producer=5000000] " \
              "[batch=64] [queue_capacity=32]"

struct item { void *p; uint32_t n; uint64_t tag; };
struct batch { long count; struct item it[]; };

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct batch **slots;
    long cap, head, len;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
        NULL, 0, 0, 0 };

static void q_push(struct batch *b)
{
    pthread_mutex_lock(&q.lock);
    while (q.len == q.cap)
        pthread_cond_wait(&q.not_full, &q.lock);
    q.slots[(q.head + q.len) % q.cap] = b;
    q.len++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
}

static struct batch *q_pop(void)
{
    pthread_mutex_lock(&q.lock);
    while (q.len == 0)
        pthread_cond_wait(&q.not_empty, &q.lock);
    struct batch *b = q.slots[q.head];
    q.head = (q.head + 1) % q.cap;
    q.len--;
    pthread_cond_signal(&q.not_full);
    pthread_mutex_unlock(&q.lock);
    return b;
}

struct thr { pthread_t tid; int id; long objects, batch; uint64_t sum; };

static uint32_t obj_size(rng_t *r)
{
    uint64_t a = rng_below(r, 497), b = rng_below(r, 497);
    return (uint32_t)(16 + a * b / 496);
}

static void *producer(void *arg)
{
    struct thr *t = arg;
    rng_t r;
    rng_seed(&r, 2000 + (uint64_t)t->id);
    uint64_t seq = (uint64_t)t->id << 48;
    for (long done = 0; done < t->objects;) {
        long n = t->objects - done < t->batch ? t->objects - done : t->batch;
        struct batch *b = bench_xmalloc(sizeof *b + (size_t)n * sizeof(struct item));
        b->count = n;
        for (long i = 0; i < n; i++) {
            b->it[i].n = obj_size(&r);
            b->it[i].tag = bench_mix64(++seq);
            b->it[i].p = bench_xmalloc(b->it[i].n);
            obj_fill(b->it[i].p, b->it[i].n, b->it[i].tag);
        }
        q_push(b);
        done += n;
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct thr *t = arg;
    uint64_t sum = 0;
    for (;;) {
        struct batch *b = q_pop();
        if (!b)
            break;
        for (long i = 0; i < b->count; i++) {
            sum += obj_check(b->it[i].p, b->it[i].n, b->it[i].tag);
            free(b->it[i].p);
        }
        free(b);
    }
    t->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    long np = bench_arg(argc, argv, 1, 2, 1, 256, USAGE);
    long nc = bench_arg(argc, argv, 2, 2, 1, 256, USAGE);
    long objects = bench_arg(argc, argv, 3, 5000000, 1, 1L << 40, USAGE);
    long batch = bench_arg(argc, argv, 4, 64, 1, 1L << 20, USAGE);
    q.cap = bench_arg(argc, argv, 5, 32, 1, 1L << 20, USAGE);
    q.slots = bench_xmalloc((size_t)q.cap * sizeof *q.slots);
    struct thr *p = calloc((size_t)np, sizeof *p), *c = calloc((size_t)nc, sizeof *c);
    if (!p || !c)
        return 3;
    for (long i = 0; i < nc; i++) {
        c[i].id = (int)i;
        if (pthread_create(&c[i].tid, NULL, consumer, &c[i]) != 0)
            return 1;
    }
    for (long i = 0; i < np; i++) {
        p[i] = (struct thr){ .id = (int)i, .objects = objects, .batch = batch };
        if (pthread_create(&p[i].tid, NULL, producer, &p[i]) != 0)
            return 1;
    }
    for (long i = 0; i < np; i++)
        pthread_join(p[i].tid, NULL);
    for (long i = 0; i < nc; i++)
        q_push(NULL); /* one end marker per consumer */
    uint64_t sum = 0;
    for (long i = 0; i < nc; i++) {
        pthread_join(c[i].tid, NULL);
        sum += c[i].sum;
    }
    free(p);
    free(c);
    free(q.slots);
    printf("producers %ld consumers %ld objects %ld batch %ld\n", np, nc, np * objects, batch);
    bench_print_checksum(sum);
    return 0;
}
