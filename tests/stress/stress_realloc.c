/*
 * Realloc storm across threads: threads take blocks out of shared slots,
 * realloc them to random sizes (mostly small steps, sometimes across size
 * classes and into large/huge sizes, sometimes back down), check that the
 * retained prefix survived, refill, and put them back for other threads.
 * Blocks start life from malloc, calloc, posix_memalign and memalign, so
 * realloc also sees aligned blocks and blocks allocated by other threads.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#define NTHREADS 4
#define NSLOTS 512

struct blk {
    unsigned char *p;
    size_t size;
    uint64_t tag;
};

static _Atomic(struct blk *) slots[NSLOTS];
static long ops_per_thread;
static atomic_long moved, in_place;

static size_t new_size(tt_rng *r, size_t cur)
{
    uint64_t k = tt_below(r, 1000);
    if (k < 500) { /* small step up or down */
        size_t d = 1 + tt_below(r, 64);
        return (tt_below(r, 2) && cur > d) ? cur - d : cur + d;
    }
    if (k < 800)
        return 1 + tt_below(r, 4096);
    if (k < 960)
        return 1 + tt_below(r, 100000);
    if (k < 995)
        return 100000 + tt_below(r, 400000);
    if (TT_SANITIZED_MALLOC) /* sanitizers make huge reallocs very slow */
        return 100000 + tt_below(r, 400000);
    return (1 << 20) + tt_below(r, 3 << 20);
}

static struct blk *fresh(tt_rng *r)
{
    struct blk *b = malloc(sizeof *b);
    CHECK(b != NULL);
    b->size = 1 + tt_below(r, 2000);
    b->tag = tt_next(r);
    switch (tt_below(r, 4)) {
    case 0: b->p = malloc(b->size); break;
    case 1: b->p = calloc(1, b->size); break;
    case 2: CHECK(posix_memalign((void **)&b->p, 64, b->size) == 0); break;
    default: b->p = memalign(4096, b->size); break;
    }
    CHECK(b->p != NULL);
    tt_fill(b->p, b->size, b->tag);
    return b;
}

static void *storm(void *arg)
{
    int self = (int)(intptr_t)arg;
    tt_rng r = {tt_seed * 131 + (uint64_t)self};
    long mv = 0, ip = 0;
    for (long i = 0; i < ops_per_thread; i++) {
        int s = (int)tt_below(&r, NSLOTS);
        struct blk *b = atomic_exchange(&slots[s], NULL);
        if (!b)
            b = fresh(&r);
        /* a few reallocs in a row on the block we hold */
        int n = 1 + (int)tt_below(&r, 4);
        for (int k = 0; k < n; k++) {
            size_t to = new_size(&r, b->size), keep = to < b->size ? to : b->size;
            TT_CTX("thread %d op %ld: realloc(%p, %zu -> %zu)", self, i, (void *)b->p, b->size, to);
            unsigned char *q = realloc(b->p, to);
            CHECK(q != NULL, "realloc failed");
            CHECK(malloc_usable_size(q) >= to, "usable size %zu", malloc_usable_size(q));
            size_t bad = q == b->p ? tt_check_range(q, keep > 512 ? keep - 512 : 0, keep, b->tag)
                                   : tt_check(q, keep, b->tag);
            CHECK(bad == SIZE_MAX, "contents lost at offset %zu (block %s)", bad, q == b->p ? "in place" : "moved");
            q == b->p ? ip++ : mv++;
            if (to > keep)
                tt_fill_range(q, keep, to, b->tag);
            b->p = q;
            b->size = to;
        }
        tt_ctx[0] = 0;
        if (tt_below(&r, 50) == 0) { /* retire it now and then */
            size_t bad = tt_check(b->p, b->size, b->tag);
            CHECK(bad == SIZE_MAX, "thread %d: retired block corrupted at %zu", self, bad);
            free(b->p);
            free(b);
            continue;
        }
        b = atomic_exchange(&slots[s], b);
        if (b) { /* someone else put one there meanwhile */
            CHECK(tt_check(b->p, b->size, b->tag) == SIZE_MAX, "thread %d: block corrupted", self);
            free(b->p);
            free(b);
        }
    }
    atomic_fetch_add(&moved, mv);
    atomic_fetch_add(&in_place, ip);
    return NULL;
}

int main(void)
{
    tt_expect_tidalloc();
    tt_init_seed(31337);
    ops_per_thread = tt_scaled(60000, 1000);
    tt_watchdog(120, "stress_realloc");
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&t[i], NULL, storm, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < NSLOTS; i++) {
        struct blk *b = atomic_exchange(&slots[i], NULL);
        if (b) {
            CHECK(tt_check(b->p, b->size, b->tag) == SIZE_MAX, "slot %d: block corrupted at the end", i);
            free(b->p);
            free(b);
        }
    }
    printf("stress_realloc: OK (%ld reallocs moved, %ld in place; seed %llu)\n", (long)moved, (long)in_place,
           tt_seed);
    return 0;
}
