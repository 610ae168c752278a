/*
 * Threads allocate (malloc, calloc, realloc, aligned_alloc, posix_memalign,
 * memalign) blocks of random sizes, fill each with a pattern derived from the
 * seed, and swap them into random slots of a shared array; the block taken out
 * of the slot (usually allocated by another thread) is verified and freed or
 * realloc'ed by the taking thread: most frees are cross-thread. One thread
 * also calls malloc_trim / tidal_purge / tidal_thread_flush now and then, and
 * takes a statistics snapshot (merging the other threads' live counters).
 *
 * TIDAL_TEST_SEED=n reruns with another seed; TIDAL_STRESS_SCALE scales the
 * number of operations.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#define NTHREADS 4
#define NSLOTS 4096

enum kind { K_MALLOC, K_CALLOC, K_REALLOC, K_ALIGNED_ALLOC, K_POSIX_MEMALIGN, K_MEMALIGN };

struct desc {
    void *p;
    size_t size;
    size_t align; /* 0: malloc's */
    uint64_t tag;
    int kind;
    int owner; /* allocating thread */
};

struct slot {
    atomic_flag lock;
    struct desc d;
};

static struct slot slots[NSLOTS];
static long ops_per_thread, maint_every; /* thread 0's maintenance calls: every maint_every ops */
static atomic_long total_ops, remote_frees;

static size_t pick_size(tt_rng *r)
{
    uint64_t k = tt_below(r, 1000);
    if (k < 600)
        return 1 + tt_below(r, 128);
    if (k < 880)
        return 129 + tt_below(r, 2048 - 128);
    if (k < 990)
        return 2049 + tt_below(r, 65536 - 2048);
    if (k < 998)
        return 65537 + tt_below(r, 512 << 10);
    return (1 << 20) + tt_below(r, 3 << 20);
}

static struct desc make_block(tt_rng *r, int self)
{
    struct desc d = {0};
    d.owner = self;
    d.size = pick_size(r);
    d.tag = tt_next(r) | 1;
    uint64_t k = tt_below(r, 100);
    if (k < 45) {
        d.kind = K_MALLOC;
        d.p = malloc(d.size);
    } else if (k < 60) {
        d.kind = K_CALLOC;
        size_t elem = (d.size % 8 == 0) ? 8 : 1;
        d.p = calloc(d.size / elem, elem);
        CHECK(d.p != NULL, "calloc(%zu)", d.size);
        size_t bad = tt_first_nonzero(d.p, d.size);
        CHECK(bad == SIZE_MAX, "calloc(%zu) = %p not zeroed at %zu", d.size, d.p, bad);
    } else if (k < 68) {
        d.kind = K_REALLOC;
        d.p = realloc(NULL, d.size);
    } else if (k < 80) {
        d.kind = K_ALIGNED_ALLOC;
        d.align = (size_t)16 << tt_below(r, 9); /* 16..4096 */
        d.p = tt_aligned_alloc(d.align, d.size);
    } else if (k < 92) {
        d.kind = K_POSIX_MEMALIGN;
        d.align = (size_t)8 << tt_below(r, 14); /* 8..64 KiB */
        int rc = posix_memalign(&d.p, d.align, d.size);
        CHECK(rc == 0, "posix_memalign(%zu, %zu) = %d", d.align, d.size, rc);
    } else {
        d.kind = K_MEMALIGN;
        d.align = (size_t)32 << tt_below(r, 8);
        d.p = memalign(d.align, d.size);
    }
    CHECK(d.p != NULL, "thread %d: allocation of %zu (kind %d, align %zu) failed", self, d.size, d.kind,
          d.align);
    CHECK(!d.align || ((uintptr_t)d.p & (d.align - 1)) == 0, "%p not %zu-aligned", d.p, d.align);
    CHECK(malloc_usable_size(d.p) >= d.size, "usable %zu < %zu", malloc_usable_size(d.p), d.size);
    tt_fill(d.p, d.size, d.tag);
    return d;
}

static void verify(const struct desc *d, int self)
{
    size_t bad = tt_check(d->p, d->size, d->tag);
    if (bad != SIZE_MAX)
        FAIL("thread %d: block %p (size %zu, kind %d, align %zu, tag %#llx) corrupted at offset %zu: "
             "0x%02x, want 0x%02x",
             self, d->p, d->size, d->kind, d->align, (unsigned long long)d->tag, bad,
             ((unsigned char *)d->p)[bad], tt_pat_byte(d->tag, bad));
    CHECK(malloc_usable_size(d->p) >= d->size, "usable size of %p shrank below %zu", d->p, d->size);
}

static void release(tt_rng *r, struct desc *d, int self)
{
    verify(d, self);
    uint64_t k = tt_below(r, 100);
    if (k < 10 && d->kind != K_ALIGNED_ALLOC) {
        /* realloc a block another thread allocated, then free it */
        size_t n = pick_size(r), keep = n < d->size ? n : d->size;
        void *q = realloc(d->p, n);
        CHECK(q != NULL, "realloc(%zu -> %zu)", d->size, n);
        size_t bad = tt_check(q, keep, d->tag);
        CHECK(bad == SIZE_MAX, "thread %d: realloc %zu -> %zu lost contents at %zu", self, d->size, n, bad);
        free(q);
    } else if (k < 40 && (d->kind == K_MALLOC || d->kind == K_CALLOC || d->kind == K_REALLOC))
        free_sized(d->p, d->size);
    else if (k < 40 && d->kind == K_ALIGNED_ALLOC)
        free_aligned_sized(d->p, d->align, d->size);
    else
        free(d->p);
    d->p = NULL;
}

/* A statistics snapshot while the other threads run, and one value of it. */
static void snapshot_stats(void)
{
#ifdef TIDAL_TEST_SYSTEM_MALLOC
    return; /* no tidal_ctl without tidalloc */
#endif
    uint64_t e = 1;
    size_t allocated = 0, sz = sizeof allocated;
    CHECK(tidal_ctl("epoch", NULL, NULL, &e, sizeof e) == 0);
    CHECK(tidal_ctl("stats.allocated", &allocated, &sz, NULL, 0) == 0);
    CHECK(allocated > 0, "stats.allocated is 0 while blocks are live");
}

static void *worker(void *arg)
{
    int self = (int)(intptr_t)arg;
    tt_rng r = {tt_seed * 1000003 + (uint64_t)self};
    long remote = 0;
    for (long i = 0; i < ops_per_thread; i++) {
        struct desc nd = make_block(&r, self);
        struct slot *s = &slots[tt_below(&r, NSLOTS)];
        while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire))
            ;
        struct desc old = s->d;
        s->d = nd;
        atomic_flag_clear_explicit(&s->lock, memory_order_release);
        if (old.p) {
            remote += old.owner != self;
            release(&r, &old, self);
        }
        if (self == 0 && i % maint_every == maint_every - 1) {
            int t = (int)((i / maint_every) % 4);
            if (t == 0)
                CHECK(malloc_trim(0) <= 1);
            else if (t == 1)
                tidal_purge();
            else if (t == 2)
                tidal_thread_flush();
            else
                snapshot_stats();
        }
    }
    atomic_fetch_add(&total_ops, ops_per_thread);
    atomic_fetch_add(&remote_frees, remote);
    return NULL;
}

int main(void)
{
    tt_expect_tidalloc();
    tt_init_seed(20240611);
    ops_per_thread = tt_scaled(250000, 2000);
    maint_every = ops_per_thread / 16 < 20000 ? ops_per_thread / 16 : 20000;
    if (maint_every < 500)
        maint_every = 500;
    tt_watchdog(120, "stress_threads");
    printf("stress_threads: %d threads x %ld ops, seed %llu\n", NTHREADS, ops_per_thread, tt_seed);
    fflush(stdout);
    for (int i = 0; i < NSLOTS; i++)
        atomic_flag_clear(&slots[i].lock);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    tt_rng r = {tt_seed};
    long live = 0;
    for (int i = 0; i < NSLOTS; i++)
        if (slots[i].d.p) {
            live++;
            release(&r, &slots[i].d, -1);
        }
    printf("stress_threads: OK (%ld ops, %ld cross-thread releases, %ld blocks left in slots freed by main)\n",
           (long)total_ops, (long)remote_frees, live);
    CHECK(remote_frees > total_ops / 4, "too few cross-thread frees (%ld): the test is not testing them",
          (long)remote_frees);
    return 0;
}
