/*
 * aligned_alloc, posix_memalign, memalign, valloc, pvalloc: every power-of-two
 * alignment from 1 (where the function allows it) to 64 MiB, times a spread
 * of sizes from 0 to 8 MiB. Each block must be aligned, have a usable size of
 * at least the request, be writable over its whole usable size without
 * disturbing the other live blocks, and be freeable (free, and for
 * aligned_alloc also free_aligned_sized). Blocks from posix_memalign and
 * memalign can be realloc'ed with their contents.
 */
#include "testutil.h"

static const size_t sizes[] = {
    0, 1, 7, 8, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 96, 127, 128, 129, 200, 255, 256, 257, 500,
    1000, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193, 16385, 32767, 65536,
    65537, 100000, 131088, 262144, 500000, 1 << 20, (1 << 20) + 1, (2 << 20) - 1, 2 << 20, (2 << 20) + 1,
    (4 << 20) + 4096, 8 << 20,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define NBIG 5 /* sizes above 1 MiB + 1, at the end of sizes[] */
/* 64 MiB; 1 MiB in sanitizer builds (they run on the sanitizer's malloc,
 * where huge alignments are very slow). */
#define MAX_ALIGN ((size_t)(TT_SANITIZED_MALLOC ? 1 : 64) << 20)

static unsigned align_log2(size_t a)
{
    unsigned l = 0;
    while (a > 1)
        a >>= 1, l++;
    return l;
}

enum api { API_ALIGNED_ALLOC, API_POSIX_MEMALIGN, API_MEMALIGN, API_N };
static const char *const api_name[] = {"aligned_alloc", "posix_memalign", "memalign"};

static void *alloc_with(enum api api, size_t align, size_t size)
{
    void *p = NULL;
    switch (api) {
    case API_ALIGNED_ALLOC:
        return tt_aligned_alloc(align, size);
    case API_POSIX_MEMALIGN: {
        int r = posix_memalign(&p, align, size);
        CHECK(r == 0, "posix_memalign(%zu, %zu) returned %d", align, size, r);
        return p;
    }
    case API_MEMALIGN:
        return memalign(align, size);
    default:
        return NULL;
    }
}

/* All sizes for one (api, alignment), live at the same time. */
static void one_alignment(enum api api, size_t align)
{
    static void *blocks[NSIZES];
    static size_t usable[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        /* Sizes above 1 MiB + 1: one per (api, alignment), rotating, so each
         * API sees every big size and each alignment a big size, while the
         * test touches a moderate number of fresh pages (page faults are
         * the cost here). */
        if (n > (1u << 20) + 1 && i != NSIZES - NBIG + (align_log2(align) + api) % NBIG) {
            blocks[i] = NULL;
            continue;
        }
        TT_CTX("%s(align=%zu, size=%zu)", api_name[api], align, n);
        errno = 0;
        void *p = alloc_with(api, align, n);
        CHECK(p != NULL, "failed, errno=%d", errno);
        FILL_BLOCK(p, n, align, (uint64_t)align * 977 + i);
        blocks[i] = p;
        usable[i] = TT_SANITIZED_MALLOC ? n : malloc_usable_size(p); /* what FILL_BLOCK filled */
    }
    for (size_t i = 0; i < NSIZES; i++) {
        if (!blocks[i])
            continue;
        TT_CTX("%s(align=%zu, size=%zu)", api_name[api], align, sizes[i]);
        for (size_t j = 0; j < i; j++)
            CHECK(blocks[j] != blocks[i] || !blocks[j], "same pointer returned twice: %p", blocks[i]);
        size_t bad = tt_check(blocks[i], usable[i], (uint64_t)align * 977 + i);
        CHECK(bad == SIZE_MAX, "block %p overwritten at offset %zu (by another block?)", blocks[i], bad);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        if (!blocks[i])
            continue;
        size_t n = sizes[i];
        TT_CTX("%s(align=%zu, size=%zu) then free", api_name[api], align, n);
        if (api == API_ALIGNED_ALLOC && (i & 1))
            free_aligned_sized(blocks[i], align, n);
        else if (api != API_ALIGNED_ALLOC && (i % 4) == 1 && n <= (1u << 20)) {
            /* realloc of an aligned block keeps the contents */
            size_t keep = n < 4096 ? n : 4096; /* the requested size is what realloc keeps */
            void *q = realloc(blocks[i], 2 * n + 100);
            CHECK(q != NULL && malloc_usable_size(q) >= 2 * n + 100);
            CHECK(tt_check(q, keep, (uint64_t)align * 977 + i) == SIZE_MAX, "realloc lost contents");
            free(q);
        } else
            free(blocks[i]);
    }
    tt_ctx[0] = 0;
}

static void test_all_alignments(void)
{
    for (int api = 0; api < API_N; api++) {
        size_t first = api == API_POSIX_MEMALIGN ? sizeof(void *) : 1;
        for (size_t align = first; align <= MAX_ALIGN; align <<= 1)
            one_alignment((enum api)api, align);
    }
    /* posix_memalign: alignments below sizeof(void *) are invalid */
    for (size_t align = 0; align < sizeof(void *); align++) {
        void *p = (void *)&p;
        int r = posix_memalign(&p, align, 64);
        CHECK(r == EINVAL, "posix_memalign(align=%zu) returned %d, want EINVAL", align, r);
    }
}

/* Many small aligned blocks in a row: alignment must hold for every block of
 * a size class, not just the first. */
static void test_runs(void)
{
    enum { N = 3000 };
    static void *p[N];
    for (size_t align = 16; align <= 8192; align <<= 1) {
        for (int i = 0; i < N; i++) {
            size_t n = (size_t)(i % 5) * 24 + 1;
            TT_CTX("run %d: memalign(%zu, %zu)", i, align, n);
            p[i] = (i & 1) ? memalign(align, n) : tt_aligned_alloc(align, n);
            CHECK_BLOCK(p[i], n, align, (uint64_t)i);
        }
        for (int i = 0; i < N; i++) {
            TT_CTX("run %d align %zu", i, align);
            CHECK(tt_check(p[i], (size_t)(i % 5) * 24 + 1, (uint64_t)i) == SIZE_MAX, "block overwritten");
            free(p[i]);
        }
    }
    tt_ctx[0] = 0;
}

static void test_valloc_pvalloc(void)
{
    size_t pg = tt_page_size();
    static const size_t vs[] = {0, 1, 100, 4095, 4096, 4097, 10000, 65536, 65537, 1 << 20, (3 << 20) + 5};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        size_t n = vs[i];
        TT_CTX("valloc(%zu)", n);
        void *p = valloc(n);
        CHECK_BLOCK(p, n, pg, n);
        void *q = valloc(n);
        CHECK_BLOCK(q, n, pg, n + 1);
        CHECK(p != q);
        CHECK(tt_check(p, n, n) == SIZE_MAX);
        free(p);
        free(q);

        /* pvalloc rounds the size up to a whole number of pages */
        size_t rounded = n ? (n + pg - 1) / pg * pg : 0;
        TT_CTX("pvalloc(%zu)", n);
        p = pvalloc(n);
        CHECK(p != NULL);
        CHECK_BLOCK(p, rounded, pg, n + 2);
        free(p);
    }
    tt_ctx[0] = 0;
}

/* glibc's memalign with an alignment that is not a power of two rounds it up
 * to the next power of two; an alignment <= 16 gives malloc's alignment. */
static void test_memalign_odd(void)
{
    if (!TT_GLIBC_SEMANTICS)
        return;
    static const size_t odd[] = {0, 3, 5, 12, 24, 48, 100, 1000, 3000, 4097, 65535, 100000, (1 << 20) + 1};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        size_t a = odd[i], want = 16;
        while (want < a)
            want <<= 1;
        for (size_t n = 1; n < 200000; n = n * 7 + 3) {
            TT_CTX("memalign(%zu, %zu)", a, n);
            errno = 0;
            void *p = memalign(a, n);
            CHECK(p != NULL, "memalign with a non-power-of-two alignment failed (errno %d); glibc rounds the "
                             "alignment up",
                  errno);
            CHECK_BLOCK(p, n, want, n);
            free(p);
        }
    }
    tt_ctx[0] = 0;
}

int main(void)
{
    tt_expect_tidalloc();
    test_all_alignments();
    test_runs();
    test_valloc_pvalloc();
    test_memalign_odd();
    printf("api_alignment: OK\n");
    return 0;
}
