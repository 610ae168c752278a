/*
 * Bootstrap: the process's first allocations happen in brand-new threads,
 * several starting at the same instant (racing to initialise the allocator).
 * main allocates nothing (no stdio either) until they are done; then it
 * frees what the threads left and the threads' blocks must be intact.
 */
#include "testutil.h"

#include <pthread.h>

#define NT 8
#define NB 512

static pthread_barrier_t start;
static void *blocks[NT][NB];

static size_t size_of(int t, int i)
{
    return (size_t)((i * 131 + t * 17) % 2000) + 1 + (i % 64 == 0 ? 200000 : 0);
}

static void *first_allocator(void *arg)
{
    int t = (int)(intptr_t)arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < NB; i++) {
        size_t n = size_of(t, i);
        blocks[t][i] = (i & 1) ? malloc(n) : calloc(n, 1);
        CHECK(blocks[t][i] != NULL, "thread %d: allocation %d failed", t, i);
        if (!(i & 1))
            CHECK(tt_first_nonzero(blocks[t][i], n) == SIZE_MAX, "thread %d: calloc not zeroed", t);
        tt_fill(blocks[t][i], n, (uint64_t)(t * NB + i));
    }
    for (int i = 0; i < NB; i += 2) {
        free(blocks[t][i]);
        blocks[t][i] = NULL;
    }
    return NULL;
}

int main(void)
{
    pthread_t th[NT];
    CHECK(pthread_barrier_init(&start, NULL, NT) == 0);
    for (int t = 0; t < NT; t++)
        CHECK(pthread_create(&th[t], NULL, first_allocator, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < NT; t++)
        CHECK(pthread_join(th[t], NULL) == 0);
    for (int t = 0; t < NT; t++)
        for (int i = 1; i < NB; i += 2) {
            size_t n = size_of(t, i);
            CHECK(malloc_usable_size(blocks[t][i]) >= n);
            CHECK(tt_check(blocks[t][i], n, (uint64_t)(t * NB + i)) == SIZE_MAX,
                  "thread %d block %d changed after the thread exited", t, i);
            free(blocks[t][i]);
        }
    tt_expect_tidalloc();
    printf("api_boot_thread: OK\n");
    return 0;
}
