/*
 * realloc keeps the contents: growth through every size from 1 to 70 000 in
 * small steps, shrinking back, then big jumps up to 64 MiB and back down;
 * once with nothing else going on, and once with other allocations between
 * the reallocs (so blocks must move), and on several blocks at once.
 */
#include "testutil.h"

#define SMALL_MAX 70000
/* Sanitizer builds (sanitizer's malloc; checks the test itself) take bigger
 * steps and stop at 16 MiB: every access is instrumented there. */
#define BIG_MAX ((size_t)(TT_SANITIZED_MALLOC ? 16 : 64) << 20)
#define STEP(small) (TT_SANITIZED_MALLOC ? 7 * (small) + 6 : (small))

static unsigned long moves;

/* realloc p (holding the pattern of tag over `have` bytes) to n bytes, check
 * the first min(have, n) bytes survived, and fill the rest. A block that did
 * not move is checked on a window at the old end (where an in-place resize
 * would go wrong); one that moved is checked in full. */
static unsigned char *resize(unsigned char *p, size_t have, size_t n, uint64_t tag)
{
    TT_CTX("realloc(%p, %zu -> %zu)", (void *)p, have, n);
    unsigned char *q = realloc(p, n);
    CHECK(q != NULL, "realloc failed, errno=%d", errno);
    CHECK(malloc_usable_size(q) >= n, "usable size %zu", malloc_usable_size(q));
    size_t keep = have < n ? have : n;
    if (q != p) {
        moves++;
        size_t bad = tt_check(q, keep, tag);
        CHECK(bad == SIZE_MAX, "contents lost when the block moved, first bad byte at %zu", bad);
    } else {
        size_t from = keep > 256 ? keep - 256 : 0;
        size_t bad = tt_check_range(q, from, keep, tag);
        CHECK(bad == SIZE_MAX, "contents lost in place, first bad byte at %zu", bad);
        bad = tt_check_range(q, 0, keep < 64 ? keep : 64, tag);
        CHECK(bad == SIZE_MAX, "contents lost in place, first bad byte at %zu", bad);
    }
    if (n > have)
        tt_fill_range(q, have, n, tag);
    return q;
}

static void full_check(const unsigned char *p, size_t n, uint64_t tag)
{
    size_t bad = tt_check(p, n, tag);
    CHECK(bad == SIZE_MAX, "block of %zu bytes lost contents at offset %zu", n, bad);
}

static const size_t big_steps[] = {
    70000, 100000, 131072, 131073, 262144, 500000, 1 << 20, (1 << 20) + 1, 2 << 20, (2 << 20) + 4095,
    4 << 20, 8 << 20, (8 << 20) + 1, 16 << 20, 32 << 20, (32 << 20) + 12345, 64 << 20,
};
#define NBIG (sizeof big_steps / sizeof big_steps[0] - (TT_SANITIZED_MALLOC ? 3 : 0))

/* One block walks 1 -> 70 000 -> 1 -> big jumps -> 64 MiB -> 1. With
 * `interfere`, other allocations are made between reallocs (kept until the
 * end), so the block cannot always grow in place. */
static void walk(uint64_t tag, int interfere)
{
    enum { NJUNK = 4096 };
    static void *junk[NJUNK];
    int nj = 0;
    size_t have = 1;
    unsigned char *p = malloc(1);
    CHECK(p != NULL);
    tt_fill(p, 1, tag);
    for (size_t n = 2; n <= SMALL_MAX; n += STEP(n < 4096 ? 1 : n < 20000 ? 3 : 7)) {
        p = resize(p, have, n, tag);
        have = n;
        if (interfere && nj < NJUNK && n % 17 == 0) {
            junk[nj] = malloc(n % 300 + 1);
            CHECK(junk[nj] != NULL);
            nj++;
        }
        if (n % 4096 < 7)
            full_check(p, have, tag);
    }
    full_check(p, have, tag);
    for (size_t n = have - 1; n >= 1 && n < SMALL_MAX; n -= STEP(n > 4096 ? 5 : 1)) {
        p = resize(p, have, n, tag);
        have = n;
        if (n % 4096 < 5)
            full_check(p, have, tag);
    }
    full_check(p, have, tag);
    for (size_t i = 0; i < NBIG; i++) {
        p = resize(p, have, big_steps[i], tag);
        have = big_steps[i];
        if (interfere && nj < NJUNK) {
            junk[nj] = malloc(big_steps[i] / 8);
            CHECK(junk[nj] != NULL);
            nj++;
        }
    }
    full_check(p, have, tag);
    for (size_t i = NBIG; i-- > 0;) {
        p = resize(p, have, big_steps[i], tag);
        have = big_steps[i];
    }
    full_check(p, have, tag);
    static const size_t down[] = {65536, 40000, 4097, 4096, 1000, 100, 17, 16, 1};
    for (size_t i = 0; i < sizeof down / sizeof down[0]; i++) {
        p = resize(p, have, down[i], tag);
        have = down[i];
    }
    full_check(p, have, tag);
    /* and straight back up and down in one step */
    p = resize(p, have, BIG_MAX, tag);
    have = BIG_MAX;
    full_check(p, have, tag);
    p = resize(p, have, 3, tag);
    have = 3;
    full_check(p, have, tag);
    free(p);
    for (int i = 0; i < nj; i++)
        free(junk[i]);
    tt_ctx[0] = 0;
}

/* Many blocks resized in turn, each checked in full at the end. */
static void many_blocks(uint64_t seed)
{
    enum { N = 200 };
    static unsigned char *b[N];
    static size_t have[N];
    tt_rng r = {seed};
    for (int i = 0; i < N; i++) {
        have[i] = 1 + tt_below(&r, 100);
        b[i] = malloc(have[i]);
        CHECK(b[i] != NULL);
        tt_fill(b[i], have[i], seed + (uint64_t)i);
    }
    for (int round = 0; round < 20000; round++) {
        int i = (int)tt_below(&r, N);
        uint64_t k = tt_below(&r, 100);
        size_t n = k < 70 ? 1 + tt_below(&r, 1024) : k < 97 ? 1 + tt_below(&r, 70000) : 1 + tt_below(&r, 3 << 20);
        b[i] = resize(b[i], have[i], n, seed + (uint64_t)i);
        have[i] = n;
    }
    for (int i = 0; i < N; i++) {
        full_check(b[i], have[i], seed + (uint64_t)i);
        free(b[i]);
    }
    tt_ctx[0] = 0;
}

int main(void)
{
    tt_expect_tidalloc();
    tt_init_seed(0x7e57ea11);
    walk(0x1234, 0);
    walk(0x5678, 1);
    many_blocks(tt_seed);
    printf("api_realloc: OK (%lu moves)\n", moves);
    return 0;
}
