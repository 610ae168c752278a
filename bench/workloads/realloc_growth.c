/* realloc_growth: several buffers grown concurrently (round-robin, so they
 * are interleaved in memory) the way string builders, vectors and read
 * buffers grow: first in small steps of 1-64 bytes up to 4 KiB, then by
 * doubling up to a per-buffer target (most small, some up to `max_size`).
 * Each buffer is then shrunk to half and freed.  Contents are written as the
 * buffer grows and verified at the end, so a realloc that loses data fails.
 *
 * usage: bench_realloc_growth [rounds=120] [buffers=48] [max_size=8388608]
 */
#include "common.h"

#define USAGE "bench_realloc_growth [rounds=120] [buffers=48] [max_size=8388608]"
#define SMALL_LIMIT 4096u

struct buf { unsigned char *p; size_t len, target; uint8_t id; };

static inline unsigned char pat(size_t pos, uint8_t id)
{
    return (unsigned char)((pos * 0x9du) ^ (pos >> 9) ^ id);
}

static void grow_to(struct buf *b, size_t n)
{
    unsigned char *q = realloc(b->p, n);
    if (!q) {
        fprintf(stderr, "realloc(%zu) failed\n", n);
        exit(3);
    }
    b->p = q;
    size_t old = b->len;
    size_t full = n < SMALL_LIMIT ? n : SMALL_LIMIT;
    for (size_t i = old; i < full; i++)            /* appended bytes, all written */
        q[i] = pat(i, b->id);
    size_t start = old > SMALL_LIMIT ? (old + 63) & ~(size_t)63 : SMALL_LIMIT;
    for (size_t i = start; i < n; i += 64)         /* beyond 4 KiB: one per cache line */
        q[i] = pat(i, b->id);
    q[n - 1] = pat(n - 1, b->id);
    b->len = n;
}

static uint64_t verify(const struct buf *b)
{
    size_t lim = b->len < SMALL_LIMIT ? b->len : SMALL_LIMIT;
    for (size_t i = 0; i < lim; i++)
        if (b->p[i] != pat(i, b->id))
            bench_corrupt(b->p, b->len, i);
    for (size_t i = SMALL_LIMIT; i < b->len; i += 64)
        if (b->p[i] != pat(i, b->id))
            bench_corrupt(b->p, b->len, i);
    return bench_mix64(b->len ^ ((uint64_t)b->id << 40));
}

int main(int argc, char **argv)
{
    long rounds = bench_arg(argc, argv, 1, 120, 1, 1L << 30, USAGE);
    long nbuf = bench_arg(argc, argv, 2, 48, 1, 1L << 20, USAGE);
    long maxsz = bench_arg(argc, argv, 3, 8 << 20, 512 * 1024, 1L << 32, USAGE);
    rng_t r;
    rng_seed(&r, 11);
    struct buf *b = bench_xmalloc((size_t)nbuf * sizeof *b);
    uint64_t sum = 0, reallocs = 0;
    for (long round = 0; round < rounds; round++) {
        for (long i = 0; i < nbuf; i++) {
            uint64_t x = rng_below(&r, 100);
            size_t t;
            if (x < 75)
                t = 64 + rng_below(&r, SMALL_LIMIT - 64);                      /* small */
            else if (x < 95)
                t = SMALL_LIMIT + rng_below(&r, 256 * 1024 - SMALL_LIMIT);     /* medium */
            else
                t = 256 * 1024 + rng_below(&r, (uint64_t)maxsz - 256 * 1024);  /* large */
            b[i] = (struct buf){ .p = NULL, .len = 0, .target = t, .id = (uint8_t)(round * 7 + i) };
        }
        for (int active = 1; active;) {
            active = 0;
            for (long i = 0; i < nbuf; i++) {
                struct buf *x = &b[i];
                if (x->len >= x->target)
                    continue;
                active = 1;
                size_t n = x->len < SMALL_LIMIT ? x->len + 1 + rng_below(&r, 64) : x->len * 2;
                if (n > x->target)
                    n = x->target;
                grow_to(x, n);
                reallocs++;
            }
        }
        for (long i = 0; i < nbuf; i++) {
            sum += verify(&b[i]);
            size_t half = b[i].len / 2;
            unsigned char *q = realloc(b[i].p, half);  /* shrink must keep the prefix */
            if (!q) {
                fprintf(stderr, "shrinking realloc failed\n");
                return 3;
            }
            b[i].p = q;
            b[i].len = half;
            sum += verify(&b[i]);
            free(b[i].p);
            reallocs++;
        }
    }
    free(b);
    printf("rounds %ld buffers %ld reallocs %llu\n", rounds, nbuf, (unsigned long long)reallocs);
    bench_print_checksum(sum);
    return 0;
}
