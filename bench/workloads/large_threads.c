/* large_threads: many threads churning 64-256 KiB blocks, half of them freed
 * by another thread.  Each thread keeps a small window of live blocks; when
 * it replaces one, it frees it itself or (every other time) passes it to the
 * next thread through a one-slot mailbox, and frees what its own mailbox
 * holds.  Every allocation and free is a page-run operation, so this shows
 * how much the page layer's lock is on the path of large allocations under
 * threads (issue 14's shared cache of page runs).
 *
 * usage: bench_large_threads [threads=16] [iters=20000] [window=4]
 *                            [min_kib=64] [max_kib=256]
 */
#include "common.h"
#include <pthread.h>

#define USAGE "bench_large_threads [threads=16] [iters=20000] [window=4] [min_kib=64] [max_kib=256]"

struct blk { unsigned char *p; size_t n; uint64_t tag; };

struct worker {
    pthread_t tid;
    int id;
    long iters, window, min, max;
    uint64_t sum;
    struct blk mailbox;          /* written by the previous thread (atomic on p) */
    char pad[64];
};

static struct worker *workers;
static long nthreads;

/* Hand b to thread `to` if its mailbox is empty (this thread is its only
 * writer); false when it is still full. */
static int mail(struct worker *to, struct blk b)
{
    if (__atomic_load_n(&to->mailbox.p, __ATOMIC_ACQUIRE) != NULL)
        return 0;
    to->mailbox.n = b.n;
    to->mailbox.tag = b.tag;
    __atomic_store_n(&to->mailbox.p, b.p, __ATOMIC_RELEASE);
    return 1;
}

/* Free what the mailbox holds, if anything; returns its checksum. */
static uint64_t drain(struct worker *w)
{
    unsigned char *p = __atomic_load_n(&w->mailbox.p, __ATOMIC_ACQUIRE);
    if (!p)
        return 0;
    uint64_t s = obj_check(p, w->mailbox.n, w->mailbox.tag);
    free(p);
    __atomic_store_n(&w->mailbox.p, NULL, __ATOMIC_RELEASE);
    return s;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct worker *next = &workers[(w->id + 1) % nthreads];
    rng_t r;
    rng_seed(&r, 9100 + (uint64_t)w->id);
    struct blk *win = calloc((size_t)w->window, sizeof *win);
    uint64_t sum = 0, seq = (uint64_t)w->id << 48;

    for (long i = 0; i < w->iters; i++) {
        struct blk *b = &win[i % w->window];
        if (b->p) {
            if (!((i & 1) && mail(next, *b))) {
                sum += obj_check(b->p, b->n, b->tag);
                free(b->p);
            }
        }
        sum += drain(w);
        b->n = (size_t)(w->min + (long)rng_below(&r, (uint64_t)(w->max - w->min + 1))) * 1024 - 16;
        b->tag = ++seq;
        b->p = bench_xmalloc(b->n);
        obj_fill(b->p, b->n, b->tag);
    }
    for (long k = 0; k < w->window; k++)
        if (win[k].p) {
            sum += obj_check(win[k].p, win[k].n, win[k].tag);
            free(win[k].p);
        }
    free(win);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    nthreads = bench_arg(argc, argv, 1, 16, 1, 1024, USAGE);
    long iters = bench_arg(argc, argv, 2, 20000, 1, 1L << 32, USAGE);
    long window = bench_arg(argc, argv, 3, 4, 1, 1 << 20, USAGE);
    long min = bench_arg(argc, argv, 4, 64, 1, 1 << 20, USAGE);
    long max = bench_arg(argc, argv, 5, 256, min, 1 << 20, USAGE);
    workers = calloc((size_t)nthreads, sizeof *workers);
    uint64_t sum = 0;
    for (long i = 0; i < nthreads; i++) {
        workers[i].id = (int)i;
        workers[i].iters = iters;
        workers[i].window = window;
        workers[i].min = min;
        workers[i].max = max;
    }
    for (long i = 0; i < nthreads; i++)
        if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "bench: pthread_create failed\n");
            return 3;
        }
    for (long i = 0; i < nthreads; i++) {
        pthread_join(workers[i].tid, NULL);
        sum += workers[i].sum;
    }
    /* blocks still in mailboxes: their senders have finished */
    for (long i = 0; i < nthreads; i++)
        sum += drain(&workers[i]);
    free(workers);
    bench_print_checksum(sum);
    return 0;
}
