/*
 * Error behaviour, as glibc: impossible sizes give NULL with errno ENOMEM
 * (posix_memalign returns ENOMEM) and leave realloc's block untouched; bad
 * alignments give EINVAL; memalign rounds a non-power-of-two alignment up;
 * free preserves errno; malloc(0) gives unique freeable pointers.
 */
#include "testutil.h"

#include <stdint.h>

/* Sizes no allocator can satisfy. */
static const size_t huge[] = {
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, SIZE_MAX - (64u << 20), (size_t)PTRDIFF_MAX + 1,
    (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX - 4096, (size_t)1 << 62, ((size_t)1 << 62) + 1,
};
#define NHUGE (sizeof huge / sizeof huge[0])

#define EXPECT_ENOMEM(call, what, arg)                                                                     \
    do {                                                                                                   \
        errno = 0;                                                                                         \
        void *r_ = (call);                                                                                 \
        int e_ = errno;                                                                                    \
        CHECK(r_ == NULL, "%s(%#zx) returned %p, want NULL", what, (size_t)(arg), r_);                     \
        CHECK(e_ == ENOMEM, "%s(%#zx): errno %d (%s), want ENOMEM", what, (size_t)(arg), e_, strerror(e_)); \
    } while (0)

static void test_huge(void)
{
    for (size_t i = 0; i < NHUGE; i++) {
        size_t n = tt_hide(huge[i]);
        EXPECT_ENOMEM(malloc(n), "malloc", n);
        EXPECT_ENOMEM(calloc(1, n), "calloc(1, n)", n);
        EXPECT_ENOMEM(calloc(n, 1), "calloc(n, 1)", n);
        EXPECT_ENOMEM(realloc(NULL, n), "realloc(NULL, n)", n);
        EXPECT_ENOMEM(valloc(n), "valloc", n);
        EXPECT_ENOMEM(pvalloc(n), "pvalloc", n);
        for (size_t a = 1; a <= ((size_t)1 << 26); a <<= 5) {
            TT_CTX("alignment %zu", a);
            if (TT_GLIBC_SEMANTICS) /* sanitizers: EINVAL, n is not a multiple of a */
                EXPECT_ENOMEM(aligned_alloc(a, n), "aligned_alloc", n);
            EXPECT_ENOMEM(memalign(a, n), "memalign", n);
            if (a >= sizeof(void *)) {
                void *p = (void *)&p;
                int r = posix_memalign(&p, a, n);
                CHECK(r == ENOMEM, "posix_memalign(&p, %zu, %#zx) returned %d, want ENOMEM", a, n, r);
            }
        }
        tt_ctx[0] = 0;
    }
    /* a huge alignment with a small size cannot be satisfied either */
    size_t a = tt_hide((size_t)1 << 62);
    if (TT_GLIBC_SEMANTICS)
        EXPECT_ENOMEM(aligned_alloc(a, 16), "aligned_alloc(2^62, 16)", a);
    EXPECT_ENOMEM(memalign(a, 16), "memalign(2^62, 16)", a);
    void *p;
    int r = posix_memalign(&p, a, 16);
    CHECK(r == ENOMEM, "posix_memalign(&p, 2^62, 16) returned %d, want ENOMEM", r);
}

static void test_overflow(void)
{
    static const size_t pairs[][2] = {
        {SIZE_MAX, SIZE_MAX}, {SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
        {((size_t)1 << 32) + 1, ((size_t)1 << 32) - 1}, {SIZE_MAX / 3 + 1, 3}, {(size_t)PTRDIFF_MAX / 2 + 1, 2},
        {SIZE_MAX / 16 + 1, 16}, {65537, SIZE_MAX / 65536},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        size_t a = tt_hide(pairs[i][0]), b = tt_hide(pairs[i][1]);
        TT_CTX("calloc(%#zx, %#zx)", a, b);
        EXPECT_ENOMEM(calloc(a, b), "calloc", a);
        TT_CTX("reallocarray(NULL, %#zx, %#zx)", a, b);
        EXPECT_ENOMEM(reallocarray(NULL, a, b), "reallocarray", a);

        /* reallocarray overflow leaves the block alone */
        TT_CTX("reallocarray(p, %#zx, %#zx)", a, b);
        unsigned char *q = malloc(100);
        CHECK(q != NULL);
        tt_fill(q, 100, 3);
        EXPECT_ENOMEM(reallocarray(q, a, b), "reallocarray", a);
        CHECK(tt_check(q, 100, 3) == SIZE_MAX, "block changed by a failed reallocarray");
        q = realloc(q, 200);
        CHECK(q != NULL && tt_check(q, 100, 3) == SIZE_MAX, "block unusable after a failed reallocarray");
        free(q);
    }
    tt_ctx[0] = 0;
}

/* A failed realloc leaves the block valid, with its contents. */
static void test_realloc_fail(void)
{
    static const size_t from[] = {1, 100, 4096, 70000, 3 << 20};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++)
        for (size_t k = 0; k < NHUGE; k++) {
            size_t n = from[i], m = tt_hide(huge[k]);
            TT_CTX("realloc(%zu-byte block, %#zx)", n, m);
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            tt_fill(p, n, n);
            EXPECT_ENOMEM(realloc(p, m), "realloc", m);
            CHECK(tt_check(p, n, n) == SIZE_MAX, "contents changed by a failed realloc");
            CHECK(malloc_usable_size(p) >= n);
            p = realloc(p, 2 * n);
            CHECK(p != NULL && tt_check(p, n, n) == SIZE_MAX, "block unusable after a failed realloc");
            free(p);
        }
    tt_ctx[0] = 0;
}

static void test_bad_alignment(void)
{
    /* posix_memalign: not a power of two, or not a multiple of sizeof(void *) */
    static const size_t bad_pm[] = {0, 1, 2, 3, 4, 5, 7, 12, 24, 48, 100, 4095, 4097, 12288, (1 << 20) + 8,
                                    SIZE_MAX, SIZE_MAX / 2, (SIZE_MAX / 2) + 2};
    for (size_t i = 0; i < sizeof bad_pm / sizeof bad_pm[0]; i++) {
        void *p = (void *)&p;
        int r = posix_memalign(&p, tt_hide(bad_pm[i]), 64);
        CHECK(r == EINVAL, "posix_memalign(&p, %zu, 64) returned %d, want EINVAL", bad_pm[i], r);
        /* POSIX: *memptr is left alone or set to NULL */
        CHECK(p == (void *)&p || p == NULL, "posix_memalign set *memptr to %p on failure", p);
    }
    /* aligned_alloc: not a power of two -> NULL, EINVAL (glibc >= 2.38 and
     * C17; glibc 2.36 itself still rounds such alignments up). */
    static const size_t bad_aa[] = {3, 5, 6, 12, 24, 48, 100, 4095, 4097, 12288, (1 << 20) + 8, SIZE_MAX,
                                    (SIZE_MAX / 2) + 2};
    int check_aa = TT_GLIBC_SEMANTICS;
#if defined(TIDAL_TEST_SYSTEM_MALLOC) && defined(__GLIBC__) && (__GLIBC__ == 2 && __GLIBC_MINOR__ < 38)
    check_aa = 0;
#endif
    if (check_aa)
        for (size_t i = 0; i < sizeof bad_aa / sizeof bad_aa[0]; i++) {
            errno = 0;
            void *p = aligned_alloc(tt_hide(bad_aa[i]), 64);
            int e = errno;
            CHECK(p == NULL, "aligned_alloc(%zu, 64) returned %p, want NULL", bad_aa[i], p);
            CHECK(e == EINVAL, "aligned_alloc(%zu, 64): errno %d, want EINVAL", bad_aa[i], e);
        }
    /* memalign: an alignment above SIZE_MAX/2+1 cannot be a power of two ->
     * EINVAL; other non-powers of two are rounded up (see api_alignment). */
    if (TT_GLIBC_SEMANTICS) {
        static const size_t bad_ma[] = {SIZE_MAX, (SIZE_MAX / 2) + 2};
        for (size_t i = 0; i < 2; i++) {
            errno = 0;
            void *p = memalign(tt_hide(bad_ma[i]), 64);
            int e = errno;
            CHECK(p == NULL && e == EINVAL, "memalign(%#zx, 64) = %p errno %d, want NULL/EINVAL", bad_ma[i], p, e);
        }
        void *p = memalign(tt_hide(24), 100);
        CHECK(p != NULL && ((uintptr_t)p & 31) == 0, "memalign(24, 100) = %p: want a 32-aligned block", p);
        free(p);
        p = memalign(tt_hide(0), 100);
        CHECK(p != NULL, "memalign(0, 100) failed; glibc treats it like malloc");
        free(p);
    }
}

/* free (and the other releasing calls) must not change errno. */
static void test_free_keeps_errno(void)
{
    static const size_t fs[] = {0, 1, 16, 100, 1000, 4096, 70000, 300000, 1 << 20, 4 << 20, 32 << 20, 64 << 20};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
            size_t n = fs[i];
            TT_CTX("round %d size %zu", round, n);
            void *p = malloc(n), *q = malloc(n), *s = malloc(n), *t = tt_aligned_alloc(4096, n), *u = malloc(n);
            CHECK(p && q && s && t && u);
            memset(p, 1, n < 65536 ? n : 65536);
            memset(q, 1, n < 65536 ? n : 65536);
            errno = 12345;
            free(p);
            CHECK(errno == 12345, "free of a %zu-byte block set errno to %d", n, errno);
            errno = EINTR;
            free_sized(q, n);
            CHECK(errno == EINTR, "free_sized of a %zu-byte block set errno to %d", n, errno);
            errno = ENOMEM;
            free(s);
            CHECK(errno == ENOMEM, "free of a %zu-byte block set errno to %d", n, errno);
            errno = 777;
            free_aligned_sized(t, 4096, n);
            CHECK(errno == 777, "free_aligned_sized of a %zu-byte block set errno to %d", n, errno);
            errno = 4321;
            void *r = realloc(u, 0);
            CHECK(r == NULL || TT_SANITIZED_MALLOC);
            CHECK(errno == 4321, "realloc(p, 0) of a %zu-byte block set errno to %d", n, errno);
            if (round == 1)
                malloc_trim(0); /* next round frees into a trimmed heap */
        }
    tt_ctx[0] = 0;
    errno = 99;
    free(NULL);
    CHECK(errno == 99, "free(NULL) set errno to %d", errno);
    /* errno kept while many frees empty whole pages/spans */
    enum { N = 20000 };
    static void *b[N];
    for (int i = 0; i < N; i++)
        CHECK((b[i] = malloc((size_t)(i % 97) * 8 + 8)) != NULL);
    errno = 31337;
    for (int i = 0; i < N; i++)
        free(b[i]);
    CHECK(errno == 31337, "freeing %d blocks set errno to %d", N, errno);
    /* no library function sets errno to 0 */
    errno = 5;
    void *p = malloc(10);
    CHECK(p != NULL && errno != 0, "successful malloc set errno to 0");
    free(p);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static void test_malloc_zero(void)
{
    enum { N = 10000 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = (i % 4 == 0) ? malloc(0) : (i % 4 == 1) ? calloc(0, 1) : (i % 4 == 2) ? realloc(NULL, 0) : calloc(1, 0);
        CHECK(p[i] != NULL, "allocation %d of size 0 returned NULL (glibc returns a unique pointer)", i);
        CHECK(((uintptr_t)p[i] & 15) == 0, "%p not 16-aligned", p[i]);
    }
    static void *s[N];
    memcpy(s, p, sizeof s);
    qsort(s, N, sizeof s[0], cmp_ptr);
    for (int i = 1; i < N; i++)
        CHECK(s[i] != s[i - 1], "size-0 allocations returned the same pointer %p twice", s[i]);
    for (int i = 0; i < N; i++)
        free(p[i]);
    /* usable size of a 0-byte block, and it can be grown */
    void *q = malloc(0);
    CHECK(q != NULL);
    q = realloc(q, 100);
    CHECK(q != NULL && malloc_usable_size(q) >= 100);
    free(q);
}

int main(void)
{
    tt_expect_tidalloc();
    test_huge();
    test_overflow();
    test_realloc_fail();
    test_bad_alignment();
    test_free_keeps_errno();
    test_malloc_zero();
    printf("api_errors: OK\n");
    return 0;
}
