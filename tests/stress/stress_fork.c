/*
 * fork() while other threads allocate hard. In each child: verify and free
 * every block in the shared slots (allocated by threads that do not exist in
 * the child), then malloc/free a lot, including from a new thread, and exit 0.
 * A deadlock in the child (an allocator lock held across fork) is caught by an
 * alarm in the child; the parent checks every child's exit status.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define NWORKERS 3
#define NSLOTS 1024

struct desc {
    void *p;
    size_t size;
    uint64_t tag;
};

static _Atomic(struct desc *) slots[NSLOTS];
static atomic_int stop;
static atomic_long worker_ops, published;

static size_t pick_size(tt_rng *r)
{
    uint64_t k = tt_below(r, 100);
    if (k < 70)
        return 1 + tt_below(r, 512);
    if (k < 97)
        return 513 + tt_below(r, 16384);
    return 16384 + tt_below(r, 1 << 20);
}

/* A block plus its descriptor, both heap-allocated; published fully filled. */
static struct desc *make(tt_rng *r)
{
    struct desc *d = malloc(sizeof *d);
    CHECK(d != NULL);
    d->size = pick_size(r);
    d->tag = tt_next(r);
    d->p = tt_below(r, 4) ? malloc(d->size) : tt_aligned_alloc(128, d->size);
    CHECK(d->p != NULL, "allocation of %zu failed", d->size);
    tt_fill(d->p, d->size, d->tag);
    return d;
}

static void destroy(struct desc *d, const char *who)
{
    size_t bad = tt_check(d->p, d->size, d->tag);
    CHECK(bad == SIZE_MAX, "%s: block %p (%zu bytes) corrupted at offset %zu", who, d->p, d->size, bad);
    free(d->p);
    free(d);
}

static void *hammer(void *arg)
{
    tt_rng r = {tt_seed * 31 + (uint64_t)(uintptr_t)arg};
    long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        struct desc *d = make(&r);
        struct desc *old = atomic_exchange(&slots[tt_below(&r, NSLOTS)], d);
        atomic_fetch_add_explicit(&published, 1, memory_order_relaxed);
        if (old)
            destroy(old, "parent worker");
        if (++ops % 64 == 0) { /* and some realloc traffic */
            void *q = malloc(100);
            CHECK(q != NULL);
            q = realloc(q, 1 + tt_below(&r, 200000));
            CHECK(q != NULL);
            free(q);
        }
    }
    atomic_fetch_add(&worker_ops, ops);
    return NULL;
}

static void *child_thread(void *arg)
{
    tt_rng r = {(uint64_t)(uintptr_t)arg};
    for (int i = 0; i < 5000; i++) {
        struct desc *d = make(&r);
        destroy(d, "child thread");
    }
    return NULL;
}

static void child(int round)
{
    signal(SIGALRM, SIG_DFL); /* the alarm kills the child; the parent reports it */
    alarm(20);
    tt_rng r = {tt_seed + 1000 + (uint64_t)round};
    /* blocks the parent's (now nonexistent) threads allocated */
    int inherited = 0;
    for (int i = 0; i < NSLOTS; i++) {
        struct desc *d = atomic_exchange(&slots[i], NULL);
        if (d) {
            destroy(d, "child, inherited block");
            inherited++;
        }
    }
    CHECK(inherited > NSLOTS / 2, "child saw only %d blocks in the slots", inherited);
    pthread_t t;
    /* qemu-user 7.2 aborts (cpu_exec: assertion cpu == current_cpu) when
     * the child of a multi-threaded process starts a thread: not there. */
    int child_threads = !getenv("TIDAL_TEST_EMULATED");
    if (child_threads)
        CHECK(pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)round) == 0, "pthread_create in child");
    enum { N = 1000 };
    static struct desc *mine[N];
    for (int k = 0; k < 10; k++) {
        for (int i = 0; i < N; i++)
            mine[i] = make(&r);
        for (int i = 0; i < N; i++)
            destroy(mine[i], "child");
    }
    void *big = malloc(64 << 20);
    CHECK(big != NULL);
    memset(big, 1, 1 << 20);
    free(big);
    if (child_threads)
        CHECK(pthread_join(t, NULL) == 0);
    char *s = strdup("child done");
    CHECK(s != NULL);
    free(s);
    exit(0); /* exit, not _exit: atexit handlers and stdio run too */
}

int main(void)
{
#if TT_TSAN && !defined(TIDAL_TEST_TSAN_LIB)
    printf("SKIP: TSan does not support fork() in multi-threaded programs (the child hangs or exits 66)\n");
    return 77;
#endif
    tt_expect_tidalloc();
    tt_init_seed(9001);
    int rounds = (int)tt_scaled(16, 3);
    tt_watchdog(180, "stress_fork (parent)");
    pthread_t w[NWORKERS];
    for (int i = 0; i < NWORKERS; i++)
        CHECK(pthread_create(&w[i], NULL, hammer, (void *)(uintptr_t)i) == 0);
    /* until the slots are mostly full */
    while (atomic_load(&published) < 4 * NSLOTS)
        usleep(1000);
    for (int round = 0; round < rounds; round++) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0)
            child(round);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (WIFSIGNALED(st))
            FAIL("round %d: child killed by signal %d%s", round, WTERMSIG(st),
                 WTERMSIG(st) == SIGALRM ? " (alarm: the child deadlocked in the allocator after fork)" : "");
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: child exited with status %d", round,
              WEXITSTATUS(st));
        /* the parent keeps working */
        void *p = malloc(1000);
        CHECK(p != NULL);
        free(p);
        usleep(10000);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < NWORKERS; i++)
        CHECK(pthread_join(w[i], NULL) == 0);
    for (int i = 0; i < NSLOTS; i++) {
        struct desc *d = atomic_exchange(&slots[i], NULL);
        if (d)
            destroy(d, "parent cleanup");
    }
    printf("stress_fork: OK (%d forks while %d threads made %ld allocations)\n", rounds, NWORKERS,
           (long)worker_ops);
    return 0;
}
