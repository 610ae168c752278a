/*
 * Thread churn: thousands of short-lived threads (a few alive at a time) each
 * allocate a few hundred blocks, free some, hand some to the main thread
 * (which verifies and frees them after the thread has exited) and free the
 * rest: nothing leaks. Thread exit must hand the thread's cached memory back:
 * RSS after 4000 threads must not be much larger than after 400.
 */
#include "testutil.h"

#include <pthread.h>

#define CONCURRENT 8
#define PER_THREAD 300
#define HANDOFF 12

struct handed {
    void *p;
    size_t size;
    uint64_t tag;
};

static pthread_mutex_t hand_mu = PTHREAD_MUTEX_INITIALIZER;
static struct handed *handed;
static size_t nhanded, caphanded;

static size_t pick_size(tt_rng *r)
{
    uint64_t k = tt_below(r, 100);
    if (k < 75)
        return 1 + tt_below(r, 256);
    if (k < 97)
        return 257 + tt_below(r, 8000);
    return 8192 + tt_below(r, 120000);
}

static void *short_lived(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    tt_rng r = {tt_seed ^ (id * 0x9e3779b97f4a7c15ULL)};
    void *p[PER_THREAD];
    size_t n[PER_THREAD];
    uint64_t tag[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        n[i] = pick_size(&r);
        tag[i] = tt_next(&r);
        p[i] = (i % 7 == 3) ? calloc(1, n[i]) : (i % 11 == 5) ? tt_aligned_alloc(256, n[i]) : malloc(n[i]);
        CHECK(p[i] != NULL, "thread %llu: allocation of %zu failed", (unsigned long long)id, n[i]);
        tt_fill(p[i], n[i], tag[i]);
        if (i % 3 == 2) { /* free some as we go */
            int j = (int)tt_below(&r, (uint64_t)i);
            if (p[j]) {
                CHECK(tt_check(p[j], n[j], tag[j]) == SIZE_MAX, "thread %llu: block corrupted",
                      (unsigned long long)id);
                free(p[j]);
                p[j] = NULL;
            }
        }
    }
    /* hand some to main */
    int given = 0;
    pthread_mutex_lock(&hand_mu);
    for (int i = 0; i < PER_THREAD && given < HANDOFF; i += 17) {
        if (!p[i])
            continue;
        if (nhanded == caphanded) {
            caphanded = caphanded ? 2 * caphanded : 1024;
            handed = realloc(handed, caphanded * sizeof *handed);
            CHECK(handed != NULL);
        }
        handed[nhanded++] = (struct handed){p[i], n[i], tag[i]};
        p[i] = NULL;
        given++;
    }
    pthread_mutex_unlock(&hand_mu);
    /* and free the rest, leaking nothing */
    for (int i = 0; i < PER_THREAD; i++)
        if (p[i]) {
            CHECK(tt_check(p[i], n[i], tag[i]) == SIZE_MAX, "thread %llu: block corrupted",
                  (unsigned long long)id);
            free(p[i]);
        }
    return NULL;
}

static void free_handed(void)
{
    pthread_mutex_lock(&hand_mu);
    for (size_t i = 0; i < nhanded; i++) {
        size_t bad = tt_check(handed[i].p, handed[i].size, handed[i].tag);
        CHECK(bad == SIZE_MAX, "block %p (%zu bytes) handed over by an exited thread is corrupted at %zu",
              handed[i].p, handed[i].size, bad);
        free(handed[i].p);
    }
    nhanded = 0;
    pthread_mutex_unlock(&hand_mu);
}

int main(void)
{
    tt_expect_tidalloc();
    tt_init_seed(777);
    long nthreads = tt_scaled(4000, 400);
    long checkpoint = nthreads / 10;
    tt_watchdog(120, "stress_thread_churn");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    long rss_checkpoint = -1, started = 0;
    while (started < nthreads) {
        pthread_t t[CONCURRENT];
        int k = 0;
        for (; k < CONCURRENT && started < nthreads; k++, started++) {
            int rc = pthread_create(&t[k], &attr, short_lived, (void *)(uintptr_t)started);
            CHECK(rc == 0, "pthread_create #%ld: %s", started, strerror(rc));
        }
        for (int i = 0; i < k; i++)
            CHECK(pthread_join(t[i], NULL) == 0);
        free_handed();
        if (started == checkpoint)
            rss_checkpoint = tt_rss_kb();
    }
    long rss_end = tt_rss_kb();
    free(handed);
    printf("stress_thread_churn: %ld threads; RSS %ld kB after %ld threads, %ld kB after %ld (seed %llu)\n",
           nthreads, rss_checkpoint, checkpoint, rss_end, nthreads, tt_seed);
    if (TT_RSS_CHECKS) {
        CHECK(rss_checkpoint > 0 && rss_end > 0);
        /* Each thread touches ~150 KiB; if exiting threads kept even a small
         * part of it, 3600 more threads would add far more than this. */
        long limit = rss_checkpoint + rss_checkpoint / 4 + 16 * 1024;
        CHECK(rss_end <= limit,
              "RSS grew from %ld kB after %ld threads to %ld kB after %ld (limit %ld kB): exiting threads do not "
              "hand their memory back",
              rss_checkpoint, checkpoint, rss_end, nthreads, limit);
    }
    printf("stress_thread_churn: OK\n");
    return 0;
}
