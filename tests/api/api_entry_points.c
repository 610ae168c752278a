/*
 * Every allocation entry point tidalloc replaces resolves to tidalloc and
 * behaves like glibc's: malloc/free/calloc/realloc/reallocarray,
 * malloc_usable_size, free_sized, free_aligned_sized, cfree, malloc_trim,
 * mallinfo2, the __libc_* names, and tidalloc's own tidal_* functions.
 */
#include "testutil.h"

#include <pthread.h>

void *__libc_malloc(size_t);
void __libc_free(void *);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void *__libc_valloc(size_t);
void *__libc_pvalloc(size_t);

static const char *const all_syms[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "aligned_alloc", "posix_memalign", "memalign",
    "valloc", "pvalloc", "malloc_usable_size", "free_sized", "free_aligned_sized", "cfree", "malloc_trim",
    "mallinfo2", "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign",
    "__libc_valloc", "__libc_pvalloc", "tidal_version", "tidal_usable_size", "tidal_purge",
    "tidal_thread_flush", NULL,
};

static const size_t sizes[] = {
    1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257,
    511, 512, 513, 1000, 1024, 1025, 2048, 3000, 4095, 4096, 4097, 8192, 10000, 16384, 32767, 32768,
    32769, 65536, 100000, 131072, 262145, 524288, 1 << 20, (1 << 20) + 1, 2 << 20, (2 << 20) + 7,
    4 << 20, 8 << 20, 9 << 20,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void test_malloc_free(void)
{
    void *p[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        TT_CTX("malloc(%zu)", sizes[i]);
        p[i] = malloc(sizes[i]);
        /* malloc: aligned for any fundamental type (16 on x86-64 glibc) */
        CHECK_BLOCK(p[i], sizes[i], sizes[i] >= 16 ? 16 : 8, 1000 + i);
        CHECK(tidal_usable_size(p[i]) == malloc_usable_size(p[i]));
    }
    /* All live blocks keep their contents (no overlap). */
    for (size_t i = 0; i < NSIZES; i++) {
        TT_CTX("malloc(%zu)", sizes[i]);
        CHECK(tt_check(p[i], malloc_usable_size(p[i]), 1000 + i) == SIZE_MAX, "block overwritten");
    }
    for (size_t i = 0; i < NSIZES; i++)
        free(p[i]);
    tt_ctx[0] = 0;
    free(NULL);
    CHECK(malloc_usable_size(NULL) == 0);
    CHECK(tidal_usable_size(NULL) == 0);
}

static void test_calloc(void)
{
    for (size_t i = 0; i < NSIZES; i++) {
        TT_CTX("calloc(1, %zu)", sizes[i]);
        unsigned char *p = calloc(1, sizes[i]);
        CHECK(p != NULL);
        CHECK(tt_first_nonzero(p, sizes[i]) == SIZE_MAX, "not zeroed");
        CHECK_BLOCK(p, sizes[i], 16, i);
        free(p);
        TT_CTX("calloc(%zu, 3)", sizes[i]);
        p = calloc(sizes[i], 3);
        CHECK(p != NULL && malloc_usable_size(p) >= 3 * sizes[i]);
        CHECK(tt_first_nonzero(p, 3 * sizes[i]) == SIZE_MAX, "not zeroed");
        free(p);
    }
    tt_ctx[0] = 0;
    void *z = calloc(0, 0);
    CHECK(z != NULL, "calloc(0, 0) returned NULL (glibc returns a unique pointer)");
    free(z);
    z = calloc(0, 100);
    CHECK(z != NULL);
    free(z);
}

static void test_realloc_basic(void)
{
    /* realloc(NULL, n) acts as malloc */
    for (size_t i = 0; i < NSIZES; i++) {
        TT_CTX("realloc(NULL, %zu)", sizes[i]);
        void *p = realloc(NULL, sizes[i]);
        CHECK_BLOCK(p, sizes[i], 16, i);
        free(p);
    }
    tt_ctx[0] = 0;
    void *p = realloc(NULL, 0);
    CHECK(p != NULL, "realloc(NULL, 0) must act as malloc(0), which returns a unique pointer");
    free(p);

    /* realloc(p, 0) frees p and returns NULL (glibc). Repeat often enough
     * that a leak would show in RSS. */
    if (TT_GLIBC_SEMANTICS) {
        long before = tt_rss_kb();
        for (int i = 0; i < 40000; i++) {
            void *q = malloc(tt_hide(4000 + (i & 3) * 1024)); /* ~220 MB if never freed */
            CHECK(q != NULL);
            memset(q, 0x5a, 4000);
            errno = 0;
            void *r = realloc(q, tt_hide(0));
            CHECK(r == NULL, "realloc(p, 0) returned %p; glibc frees p and returns NULL", r);
        }
        long after = tt_rss_kb();
        CHECK(after - before < 64 * 1024, "RSS grew by %ld kB over 40000 realloc(p, 0): blocks are not freed",
              after - before);
    }

    /* grow and shrink keep the contents, across size classes */
    for (size_t i = 0; i + 1 < NSIZES; i++) {
        size_t a = sizes[i], b = sizes[i + 1];
        TT_CTX("realloc %zu -> %zu -> %zu", a, b, a);
        unsigned char *q = malloc(a);
        CHECK(q != NULL);
        tt_fill(q, a, a * 31 + 7);
        q = realloc(q, b);
        CHECK(q != NULL);
        CHECK(malloc_usable_size(q) >= b);
        CHECK(tt_check(q, a, a * 31 + 7) == SIZE_MAX, "contents lost on growth");
        tt_fill(q, b, b);
        q = realloc(q, a);
        CHECK(q != NULL);
        CHECK(malloc_usable_size(q) >= a);
        CHECK(tt_check(q, a, b) == SIZE_MAX, "contents lost on shrink");
        free(q);
    }
    tt_ctx[0] = 0;
}

static void test_reallocarray(void)
{
    int *a = reallocarray(NULL, 100, sizeof(int));
    CHECK(a != NULL && malloc_usable_size(a) >= 100 * sizeof(int));
    for (int i = 0; i < 100; i++)
        a[i] = i * 7;
    a = reallocarray(a, 100000, sizeof(int));
    CHECK(a != NULL && malloc_usable_size(a) >= 100000 * sizeof(int));
    for (int i = 0; i < 100; i++)
        CHECK(a[i] == i * 7, "reallocarray lost element %d", i);
    a = reallocarray(a, 10, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; i < 10; i++)
        CHECK(a[i] == i * 7, "reallocarray shrink lost element %d", i);
    free(a);
}

static void test_sized_free(void)
{
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        TT_CTX("free_sized size %zu", n);
        void *p = malloc(n);
        CHECK_BLOCK(p, n, 16, n);
        free_sized(p, n);
        p = calloc(n, 1);
        CHECK(p != NULL);
        free_sized(p, n);
        p = realloc(NULL, n);
        CHECK(p != NULL);
        p = realloc(p, n + 1);
        CHECK(p != NULL);
        free_sized(p, n + 1);
    }
    tt_ctx[0] = 0;
    free_sized(NULL, 0);
    free_sized(NULL, 100);
    for (size_t al = 1; al <= (1u << 16); al <<= 1)
        for (size_t i = 0; i < NSIZES && sizes[i] <= (1u << 20); i += 3) {
            size_t n = (sizes[i] + al - 1) & ~(al - 1); /* C17 aligned_alloc: multiple of al */
            TT_CTX("free_aligned_sized align %zu size %zu", al, n);
            void *p = tt_aligned_alloc(al, n);
            CHECK_BLOCK(p, n, al, al ^ n);
            free_aligned_sized(p, al, n);
        }
    tt_ctx[0] = 0;
    free_aligned_sized(NULL, 64, 0);

    void *p = malloc(100);
    CHECK(p != NULL);
    cfree(p);
    cfree(NULL);
}

/* The glibc-internal names (used by old programs and by libc-internal
 * callers) are tidalloc's, and interchangeable with the public ones. */
static void test_libc_names(void)
{
    if (TT_SANITIZED_MALLOC) /* the sanitizers do not replace these: glibc's */
        return;
    size_t pg = tt_page_size();
    void *p = __libc_malloc(1000);
    CHECK_BLOCK(p, 1000, 16, 1);
    CHECK(tidal_usable_size(p) >= 1000, "__libc_malloc block unknown to tidalloc");
    free(p);
    p = malloc(5000);
    CHECK(p != NULL);
    __libc_free(p);
    __libc_free(NULL);

    unsigned char *c = __libc_calloc(300, 7);
    CHECK(c != NULL && tt_first_nonzero(c, 2100) == SIZE_MAX, "__libc_calloc not zeroed");
    CHECK(tidal_usable_size(c) >= 2100);
    tt_fill(c, 2100, 9);
    c = __libc_realloc(c, 70000);
    CHECK(c != NULL && tt_check(c, 2100, 9) == SIZE_MAX, "__libc_realloc lost contents");
    CHECK(tidal_usable_size(c) >= 70000);
    free(c);

    p = __libc_memalign(256, 3000);
    CHECK_BLOCK(p, 3000, 256, 2);
    CHECK(tidal_usable_size(p) >= 3000);
    free(p);
    p = __libc_valloc(100);
    CHECK_BLOCK(p, 100, pg, 3);
    free(p);
    p = __libc_pvalloc(pg + 1);
    CHECK_BLOCK(p, 2 * pg, pg, 4);
    free(p);
    p = __libc_malloc(tt_hide(SIZE_MAX));
    CHECK(p == NULL, "__libc_malloc(SIZE_MAX) succeeded");
}

static void test_trim_and_mallinfo(void)
{
    enum { N = 1024 };
    static void *blocks[N];
    struct mallinfo2 m0 = mallinfo2();
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t n = 16 + (size_t)(i % 64) * 16; /* small blocks, ~530 KiB in all */
        blocks[i] = malloc(n);
        CHECK(blocks[i] != NULL);
        tt_fill(blocks[i], n, (uint64_t)i);
        total += n;
    }
    void *big = malloc(8 << 20);
    CHECK(big != NULL);
    memset(big, 1, 8 << 20);
    struct mallinfo2 m1 = mallinfo2();
    printf("mallinfo2: arena=%zu ordblks=%zu hblks=%zu hblkhd=%zu uordblks=%zu fordblks=%zu keepcost=%zu\n",
           m1.arena, m1.ordblks, m1.hblks, m1.hblkhd, m1.uordblks, m1.fordblks, m1.keepcost);
    if (TT_GLIBC_SEMANTICS) {
        CHECK(m1.arena > 0, "mallinfo2().arena is 0 with %zu bytes of small blocks live", total);
        CHECK(m1.uordblks > 0, "mallinfo2().uordblks is 0 with %zu bytes of small blocks live", total);
        size_t in_use0 = m0.uordblks + m0.hblkhd, in_use1 = m1.uordblks + m1.hblkhd;
        CHECK(in_use1 >= in_use0 + total / 2 + (4 << 20),
              "in-use bytes (uordblks+hblkhd) went from %zu to %zu after allocating %zu bytes", in_use0, in_use1,
              total + (8 << 20));
    }
    free(big);
    for (int i = 0; i < N; i += 2)
        free(blocks[i]);
    int r = malloc_trim(0);
    CHECK(r == 0 || r == 1, "malloc_trim(0) returned %d", r);
    r = malloc_trim(1 << 20);
    CHECK(r == 0 || r == 1, "malloc_trim(1 MiB) returned %d", r);
    for (int i = 1; i < N; i += 2) {
        size_t n = 16 + (size_t)(i % 64) * 16;
        CHECK(tt_check(blocks[i], n, (uint64_t)i) == SIZE_MAX, "block %d changed by malloc_trim", i);
        free(blocks[i]);
    }
    struct mallinfo2 m2 = mallinfo2();
    if (TT_GLIBC_SEMANTICS)
        CHECK(m2.uordblks + m2.hblkhd < m1.uordblks + m1.hblkhd,
              "in-use bytes did not go down after freeing everything (%zu -> %zu)", m1.uordblks + m1.hblkhd,
              m2.uordblks + m2.hblkhd);
}

/* tidal_purge gives free pages back: RSS drops after freeing and purging. */
static void test_purge(void)
{
    enum { N = 512, SZ = 64 << 10 }; /* 32 MiB */
    static void *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = malloc(SZ);
        CHECK(b[i] != NULL);
        memset(b[i], 0x77, SZ);
    }
    long full = tt_rss_kb();
    for (int i = 0; i < N; i++)
        free(b[i]);
    size_t released = tidal_purge();
    long after = tt_rss_kb();
    printf("purge: RSS %ld kB with 32 MiB live, %ld kB after free + tidal_purge (released %zu bytes)\n", full,
           after, released);
    if (TT_GLIBC_SEMANTICS) {
        CHECK(full - after >= 16 * 1024, "RSS only dropped from %ld to %ld kB after freeing 32 MiB and purging",
              full, after);
        CHECK(released < ((size_t)1 << 40), "tidal_purge returned %zu", released);
    }
    /* memory is usable after purging */
    for (int i = 0; i < N; i++) {
        b[i] = calloc(1, SZ);
        CHECK(b[i] != NULL && tt_first_nonzero(b[i], SZ) == SIZE_MAX, "calloc after purge not zeroed");
    }
    for (int i = 0; i < N; i++)
        free(b[i]);
}

static void *flush_thread(void *arg)
{
    void **out = arg;
    for (int round = 0; round < 3; round++) {
        void *p[200];
        for (int i = 0; i < 200; i++) {
            p[i] = malloc((size_t)(i * 37 % 3000 + 1));
            CHECK(p[i] != NULL);
            tt_fill(p[i], (size_t)(i * 37 % 3000 + 1), (uint64_t)i);
        }
        tidal_thread_flush();
        for (int i = 0; i < 200; i++) {
            CHECK(tt_check(p[i], (size_t)(i * 37 % 3000 + 1), (uint64_t)i) == SIZE_MAX,
                  "block changed by tidal_thread_flush");
            if (i % 2)
                free(p[i]);
        }
        tidal_thread_flush();
        for (int i = 0; i < 200; i += 2)
            free(p[i]);
    }
    *out = malloc(777);
    tt_fill(*out, 777, 777);
    tidal_thread_flush();
    return NULL;
}

static void test_thread_flush(void)
{
    tidal_thread_flush();
    void *from_thread = NULL;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, flush_thread, &from_thread) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(from_thread && tt_check(from_thread, 777, 777) == SIZE_MAX);
    free(from_thread);
    tidal_thread_flush();
    tidal_thread_flush();
}

int main(void)
{
    tt_expect_tidalloc();
    tt_expect_syms_from_tidalloc(all_syms);
    test_malloc_free();
    test_calloc();
    test_realloc_basic();
    test_reallocarray();
    test_sized_free();
    test_libc_names();
    test_trim_and_mallinfo();
    test_purge();
    test_thread_flush();
    printf("api_entry_points: OK\n");
    return 0;
}
