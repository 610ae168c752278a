/* fragmentation: allocate a large wave of mixed-size objects, free a random
 * 85 % of everything live, then allocate a new wave with a *different* size
 * mix, and repeat.  Survivors pin partially used pages/spans; an allocator
 * that cannot reuse that memory for the new sizes (or return it) grows.  The
 * interesting number is peak RSS; the program also prints its final RSS
 * next to the bytes actually live (informational, not part of the checksum).
 *
 * Each wave requests the same number of bytes (so a wave of small objects has
 * many more objects than a wave of medium ones).
 *
 * usage: bench_fragmentation [mib_per_wave=192] [waves=5] [free_percent=85]
 */
#include "common.h"
#include <math.h>

#define USAGE "bench_fragmentation [mib_per_wave=192] [waves=5] [free_percent=85]"

struct slot { void *p; uint32_t n; uint64_t tag; };

static uint32_t wave_size(rng_t *r, long wave)
{
    if (rng_below(r, 500) == 0)                       /* 0.2 %: 8-64 KiB */
        return (uint32_t)(8192 + rng_below(r, 57345));
    switch (wave % 3) {
    case 0: {                                         /* 16-512, skewed small */
        uint64_t a = rng_below(r, 497), b = rng_below(r, 497);
        return (uint32_t)(16 + a * b / 496);
    }
    case 1:                                           /* 520-4096, uniform */
        return (uint32_t)(520 + rng_below(r, 3577));
    default:                                          /* 24-2048 log-uniform, odd */
        return (uint32_t)(24.0 * exp2(rng_unit(r) * 6.415)) | 1u;
    }
}

int main(int argc, char **argv)
{
    long mib = bench_arg(argc, argv, 1, 192, 1, 1L << 20, USAGE);
    long waves = bench_arg(argc, argv, 2, 5, 1, 1000, USAGE);
    long pct = bench_arg(argc, argv, 3, 85, 0, 100, USAGE);
    rng_t r;
    rng_seed(&r, 17);
    size_t cap = 1 << 16, live = 0;
    struct slot *s = bench_xmalloc(cap * sizeof *s);
    uint64_t sum = 0, seq = 0, wave_bytes = (uint64_t)mib << 20;
    for (long w = 0; w < waves; w++) {
        for (uint64_t got = 0; got < wave_bytes;) {
            if (live == cap) {
                cap *= 2;
                s = realloc(s, cap * sizeof *s);
                if (!s)
                    return 3;
            }
            struct slot *x = &s[live++];
            x->n = wave_size(&r, w);
            x->tag = bench_mix64(++seq);
            x->p = bench_xmalloc(x->n);
            obj_fill(x->p, x->n, x->tag);
            got += x->n;
        }
        if (w == waves - 1)
            break;
        /* free a random pct % of everything live, keep the rest in place order */
        size_t kept = 0;
        for (size_t i = 0; i < live; i++) {
            if (rng_below(&r, 100) < (uint64_t)pct) {
                sum += obj_check(s[i].p, s[i].n, s[i].tag);
                free(s[i].p);
            } else {
                s[kept++] = s[i];
            }
        }
        live = kept;
    }
    uint64_t live_bytes = 0;
    for (size_t i = 0; i < live; i++)
        live_bytes += s[i].n;
    printf("waves %ld mib_per_wave %ld free_percent %ld live_objects %zu live_kb %llu "
           "rss_kb %ld\n", waves, mib, pct, live, (unsigned long long)(live_bytes >> 10),
           bench_rss_kb());
    for (size_t i = 0; i < live; i++) {
        sum += obj_check(s[i].p, s[i].n, s[i].tag);
        free(s[i].p);
    }
    free(s);
    bench_print_checksum(sum);
    return 0;
}
