/*
 * calloc returns zeroed memory, in particular memory that was just dirtied
 * and freed: fill blocks with 0xAA, free them, calloc the same and other
 * sizes (small, large, multi-MiB) and check every requested byte is zero.
 * Also the same after malloc_trim/tidal_purge, across threads, and with
 * calloc'ed blocks that are themselves dirtied and reused.
 */
#include "testutil.h"

#include <pthread.h>

static const size_t sizes[] = {
    1, 8, 15, 16, 24, 32, 48, 64, 80, 100, 128, 200, 256, 500, 512, 1000, 1024, 2000, 4096, 5000, 8192,
    12000, 16384, 32768, 50000, 65536, 100000, 131072, 200000, 262144, 500000, 1 << 20, (1 << 20) + 16,
    (2 << 20) - 64, 2 << 20, 3 << 20, (4 << 20) + 100, 8 << 20, 16 << 20,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void expect_zero(const void *p, size_t n, const char *what, size_t a, size_t b)
{
    CHECK(p != NULL, "%s(%zu, %zu) failed", what, a, b);
    size_t bad = tt_first_nonzero(p, n);
    CHECK(bad == SIZE_MAX, "%s(%zu, %zu) = %p: byte %zu is 0x%02x, not zero", what, a, b, p, bad,
          ((const unsigned char *)p)[bad]);
}

/* Dirty `count` blocks of size n, free them, calloc them back as
 * (n / elem) x elem and check zero; then the same with the other sizes. */
static void dirty_then_calloc(size_t n, int count)
{
    void *p[64];
    for (int i = 0; i < count; i++) {
        p[i] = malloc(n);
        CHECK(p[i] != NULL);
        memset(p[i], 0xAA, malloc_usable_size(p[i]));
    }
    for (int i = 0; i < count; i++)
        free(p[i]);
    for (int i = 0; i < count; i++) {
        size_t elem = (i % 3 == 0) ? 1 : (i % 3 == 1) ? (n % 8 ? 1 : 8) : n;
        p[i] = calloc(n / elem, elem);
        expect_zero(p[i], n, "calloc", n / elem, elem);
        memset(p[i], 0xAA, malloc_usable_size(p[i])); /* dirty again for the next size */
    }
    for (int i = 0; i < count; i++)
        free(p[i]);
}

static void test_same_and_other_sizes(void)
{
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        int count = n <= 65536 ? 64 : n <= (1 << 20) ? 8 : 2;
        dirty_then_calloc(n, count);
    }
    /* a descending pass, so big dirty blocks are split into smaller ones */
    for (size_t i = NSIZES; i-- > 0;) {
        size_t n = sizes[i];
        dirty_then_calloc(n, n <= 65536 ? 16 : 2);
    }
    /* all sizes dirty at once, freed, then calloc'ed in a different order */
    void *p[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        p[i] = malloc(sizes[i]);
        CHECK(p[i] != NULL);
        memset(p[i], 0xAA, malloc_usable_size(p[i]));
    }
    for (size_t i = 0; i < NSIZES; i++)
        free(p[i]);
    for (size_t k = 0; k < NSIZES; k++) {
        size_t i = (k * 7) % NSIZES;
        p[i] = calloc(1, sizes[i]);
        expect_zero(p[i], sizes[i], "calloc", 1, sizes[i]);
    }
    for (size_t i = 0; i < NSIZES; i++)
        free(p[i]);
}

/* Dirty memory given back with malloc_trim / tidal_purge must come back
 * zeroed too (a purged-but-not-zeroed page must not leak through calloc). */
static void test_after_trim(void)
{
    for (int round = 0; round < 3; round++) {
        void *p[32];
        for (int i = 0; i < 32; i++) {
            p[i] = malloc((size_t)(i + 1) * 40000);
            CHECK(p[i] != NULL);
            memset(p[i], 0xAA, malloc_usable_size(p[i]));
        }
        for (int i = 0; i < 32; i++)
            free(p[i]);
        if (round == 0)
            malloc_trim(0);
        else if (round == 1)
            tidal_purge();
        for (int i = 0; i < 32; i++) {
            p[i] = calloc((size_t)(32 - i) * 40000, 1);
            expect_zero(p[i], (size_t)(32 - i) * 40000, "calloc after trim", (size_t)(32 - i) * 40000, 1);
        }
        for (int i = 0; i < 32; i++)
            free(p[i]);
    }
}

/* Dirty in one thread, free in another, calloc in a third. */
static void *dirty_thread(void *arg)
{
    void **p = arg;
    for (int i = 0; i < 256; i++) {
        p[i] = malloc((size_t)(i % 16 + 1) * 64 + (i % 5 == 0 ? 70000 : 0));
        CHECK(p[i] != NULL);
        memset(p[i], 0xAA, malloc_usable_size(p[i]));
    }
    return NULL;
}
static void *calloc_thread(void *arg)
{
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < 256; i++) {
            size_t n = (size_t)(i % 16 + 1) * 64 + (i % 5 == 0 ? 70000 : 0);
            void *q = calloc(1, n);
            expect_zero(q, n, "calloc in thread", 1, n);
            memset(q, 0xAA, n);
            free(q);
        }
    return NULL;
}

static void test_threads(void)
{
    static void *p[256];
    pthread_t t;
    CHECK(pthread_create(&t, NULL, dirty_thread, p) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    for (int i = 0; i < 256; i++)
        free(p[i]); /* remote frees */
    CHECK(pthread_create(&t, NULL, calloc_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    calloc_thread(NULL);
}

/* Many small callocs of the same class, interleaved with dirty frees. */
static void test_churn(void)
{
    enum { N = 4096 };
    static void *p[N];
    tt_rng r = {42};
    for (int i = 0; i < N; i++) {
        p[i] = malloc(1 + tt_below(&r, 512));
        CHECK(p[i] != NULL);
        memset(p[i], 0xAA, malloc_usable_size(p[i]));
    }
    for (int k = 0; k < 200000; k++) {
        int i = (int)tt_below(&r, N);
        free(p[i]);
        size_t cnt = 1 + tt_below(&r, 64), sz = 1 + tt_below(&r, 8);
        p[i] = calloc(cnt, sz);
        expect_zero(p[i], cnt * sz, "calloc churn", cnt, sz);
        memset(p[i], 0xAA, malloc_usable_size(p[i]));
    }
    for (int i = 0; i < N; i++)
        free(p[i]);
}

int main(void)
{
    tt_expect_tidalloc();
    test_same_and_other_sizes();
    test_after_trim();
    test_threads();
    test_churn();
    printf("api_calloc: OK\n");
    return 0;
}
