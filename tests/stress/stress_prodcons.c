/*
 * Producer/consumer: producers allocate and fill blocks and pass them, in
 * batches through a bounded queue, to consumers which verify and free them:
 * every free is remote. Far more memory passes through than is ever live,
 * so the peak RSS must stay bounded: memory freed by remote threads has to be
 * reused (not leaked to the consumers or parked forever).
 */
#include "testutil.h"

#include <pthread.h>

#define NPROD 2
#define NCONS 2
#define BATCH 64
#define QCAP 32 /* batches */

struct item {
    uint64_t tag;
    size_t size;
};

struct batch {
    int n;
    void *p[BATCH];
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    struct batch *q[QCAP];
    int head, count, producers_left;
} queue = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, NPROD};

static long per_producer;
static long consumed[NCONS];
static size_t bytes_passed[NPROD];

static void push(struct batch *b)
{
    pthread_mutex_lock(&queue.mu);
    while (queue.count == QCAP)
        pthread_cond_wait(&queue.not_full, &queue.mu);
    queue.q[(queue.head + queue.count) % QCAP] = b;
    queue.count++;
    pthread_cond_signal(&queue.not_empty);
    pthread_mutex_unlock(&queue.mu);
}

static struct batch *pop(void)
{
    pthread_mutex_lock(&queue.mu);
    while (queue.count == 0 && queue.producers_left > 0)
        pthread_cond_wait(&queue.not_empty, &queue.mu);
    struct batch *b = NULL;
    if (queue.count) {
        b = queue.q[queue.head];
        queue.head = (queue.head + 1) % QCAP;
        queue.count--;
        pthread_cond_signal(&queue.not_full);
    }
    pthread_mutex_unlock(&queue.mu);
    return b;
}

static size_t pick_size(tt_rng *r)
{
    uint64_t k = tt_below(r, 100);
    if (k < 70)
        return sizeof(struct item) + tt_below(r, 256);
    if (k < 95)
        return 256 + tt_below(r, 4096);
    if (k < 99)
        return 4096 + tt_below(r, 60000);
    return 65536 + tt_below(r, 400000);
}

static void *producer(void *arg)
{
    int self = (int)(intptr_t)arg;
    tt_rng r = {tt_seed * 7919 + (uint64_t)self};
    struct batch *b = NULL;
    for (long i = 0; i < per_producer; i++) {
        if (!b) {
            b = malloc(sizeof *b); /* the batch itself is freed remotely too */
            CHECK(b != NULL);
            b->n = 0;
        }
        size_t n = pick_size(&r);
        struct item *it = (i % 5 == 0) ? tt_aligned_alloc(64, n) : malloc(n);
        CHECK(it != NULL, "producer %d: allocation of %zu failed", self, n);
        it->tag = tt_next(&r) | 1;
        it->size = n;
        tt_fill_range(it, sizeof *it, n, it->tag);
        bytes_passed[self] += n;
        b->p[b->n++] = it;
        if (b->n == BATCH) {
            push(b);
            b = NULL;
        }
    }
    if (b)
        push(b);
    pthread_mutex_lock(&queue.mu);
    queue.producers_left--;
    pthread_cond_broadcast(&queue.not_empty);
    pthread_mutex_unlock(&queue.mu);
    return NULL;
}

static void *consumer(void *arg)
{
    int self = (int)(intptr_t)arg;
    struct batch *b;
    while ((b = pop()) != NULL) {
        for (int i = 0; i < b->n; i++) {
            struct item *it = b->p[i];
            size_t n = it->size;
            CHECK(n >= sizeof *it && n < (1 << 20), "consumer %d: item %p has a corrupted header (size %zu)",
                  self, (void *)it, n);
            size_t bad = tt_check_range(it, sizeof *it, n, it->tag);
            CHECK(bad == SIZE_MAX, "consumer %d: item %p (size %zu) corrupted at offset %zu", self, (void *)it, n,
                  bad);
            CHECK(malloc_usable_size(it) >= n);
            if (i & 1)
                free_sized(it, n);
            else
                free(it);
        }
        consumed[self] += b->n;
        free(b);
    }
    return NULL;
}

int main(void)
{
    tt_expect_tidalloc();
    tt_init_seed(424242);
    per_producer = tt_scaled(400000, 5000);
    tt_watchdog(120, "stress_prodcons");
    long hwm0 = tt_status_kb("VmHWM");
    pthread_t p[NPROD], c[NCONS];
    for (int i = 0; i < NCONS; i++)
        CHECK(pthread_create(&c[i], NULL, consumer, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NPROD; i++)
        CHECK(pthread_create(&p[i], NULL, producer, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NPROD; i++)
        CHECK(pthread_join(p[i], NULL) == 0);
    for (int i = 0; i < NCONS; i++)
        CHECK(pthread_join(c[i], NULL) == 0);
    long total = 0;
    size_t passed = 0;
    for (int i = 0; i < NCONS; i++)
        total += consumed[i];
    for (int i = 0; i < NPROD; i++)
        passed += bytes_passed[i];
    CHECK(total == NPROD * per_producer, "consumed %ld items, produced %ld", total, NPROD * per_producer);
    long hwm = tt_status_kb("VmHWM");
    printf("stress_prodcons: OK: %ld items, %zu MiB passed through; peak RSS %ld kB (%ld kB at start)\n", total,
           passed >> 20, hwm, hwm0);
    /* At most QCAP+NCONS+NPROD batches (~38 x 64 blocks) are live at once:
     * a few MiB. If remotely freed memory were not reused, the peak would
     * approach the bytes passed through. */
    if (TT_RSS_CHECKS && hwm > 0) {
        long limit = hwm0 + 96 * 1024;
        CHECK(hwm < limit,
              "peak RSS %ld kB > %ld kB: remotely freed memory is not being reused (%zu MiB passed through)", hwm,
              limit, passed >> 20);
    }
    return 0;
}
