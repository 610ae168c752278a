/* Under an address-space limit (run by stress_ulimit.sh under `ulimit -v`):
 * allocate until the allocator refuses, in blocks of every size (small
 * slabs, large runs, huge mappings), then free everything and do it again,
 * three times. Every refusal is NULL with errno ENOMEM; every block keeps
 * its contents; calloc reads zero; after freeing everything the next round
 * gets at least half as much as the first (the memory came back); and the
 * program exits normally (the script checks the exit status from outside:
 * no crash, no abort). */
#include "testutil.h"
#include "tidalloc.h"

#include <errno.h>
#include <string.h>

enum { MAXB = 1 << 20 };
static unsigned char *blk[MAXB];
static size_t len[MAXB];

static size_t size_of(tt_rng *r) {
    uint64_t k = tt_below(r, 100);
    if (k < 70) return 1 + tt_below(r, 2048);
    if (k < 95) return 4096 + tt_below(r, 500000);
    return ((size_t)1 << 20) + tt_below(r, (size_t)8 << 20);
}

/* One round: returns the bytes obtained before the first refusal. */
static size_t fill_round(tt_rng *r, int round, long *nblocks) {
    size_t got = 0;
    long n = 0;
    int refusals = 0;
    while (n < MAXB && refusals < 50) {
        size_t sz = size_of(r);
        int zero = tt_below(r, 4) == 0;
        errno = 0;
        unsigned char *p = zero ? calloc(1, sz) : malloc(sz);
        int err = errno;
        if (!p) {
            CHECK(err == ENOMEM, "round %d: %s(%zu) = NULL with errno %d", round, zero ? "calloc" : "malloc", sz, err);
            refusals++;   /* smaller requests may still fit: keep trying a while */
            continue;
        }
        if (zero)
            for (size_t i = 0; i < sz; i += 1021)
                CHECK(p[i] == 0, "round %d: calloc(%zu) byte %zu not zero", round, sz, i);
        p[sz - 1] = (unsigned char)(n >> 8);
        p[0] = (unsigned char)n;   /* the same byte when sz is 1 */
        blk[n] = p;
        len[n] = sz;
        got += sz;
        n++;
    }
    CHECK(refusals > 0, "round %d: the limit was never reached (%zu bytes)", round, got);
    *nblocks = n;
    return got;
}

int main(void) {
    tt_expect_tidalloc();
    tt_init_seed(4242);
    tt_watchdog(240, "stress_ulimit");
    tt_rng r = { tt_seed };
    size_t first = 0;
    for (int round = 0; round < 3; round++) {
        long n;
        size_t got = fill_round(&r, round, &n);
        for (long i = 0; i < n; i++) {
            CHECK(blk[i][0] == (unsigned char)i && (len[i] == 1 || blk[i][len[i] - 1] == (unsigned char)(i >> 8)),
                  "round %d: block %ld corrupt", round, i);
            free(blk[i]);
        }
        tidal_purge();
        printf("stress_ulimit: round %d: %zu MiB in %ld blocks before ENOMEM\n", round, got >> 20, n);
        if (round == 0) first = got;
        else CHECK(got >= first / 2, "round %d got %zu bytes, the first %zu: memory not given back", round, got, first);
    }
    return 0;
}
