/* Two measurements of how an allocator treats the memory of an idle or
 * long-running program (bench/hugepage/run.sh runs them under each allocator).
 *   idle_coverage burst SECONDS   allocate ~1 GiB of small and medium objects,
 *       keep the first 5 %, free the rest, then
 *       sleep, printing "t_ms resident_kb live_kb" every 500 ms, where
 *       resident = Rss - LazyFree (smaps_rollup) and live = bytes still held.
 *   idle_coverage coverage SECONDS  keep ~512 MiB of small objects live and
 *       replace 1 % of them per 100 ms; print "t_ms rss_kb anonhuge_kb" each second.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/smaps.h"

static uint64_t ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nap(long ms) {
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
  nanosleep(&ts, NULL);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: idle_coverage burst|coverage SECONDS\n"); return 2; }
  long secs = atol(argv[2]);
  if (!strcmp(argv[1], "burst")) {
    size_t n = 6u << 20;   /* objects: ~1 GiB at an average of ~170 B */
    void **obj = malloc(n * sizeof *obj);
    size_t *sz = malloc(n * sizeof *sz), live = 0;
    for (size_t i = 0; i < n; i++) {
      sz[i] = (next() & 63) ? 16 + next() % 240 : 1024 + next() % 4096;
      obj[i] = malloc(sz[i]);
      memset(obj[i], 1, sz[i]);
    }
    for (size_t i = n / 20; i < n; i++) { free(obj[i]); obj[i] = NULL; }
    for (size_t i = 0; i < n / 20; i++) live += sz[i];
    live += 2 * n * sizeof(void *);   /* the two arrays */
    uint64_t t0 = ms_now();
    for (long k = 0; k <= secs * 2; k++) {
      printf("%llu %ld %zu\n", (unsigned long long)(ms_now() - t0), rollup_kb("Rss:") - rollup_kb("LazyFree:"), live >> 10);
      fflush(stdout);
      nap(500);
    }
    return 0;
  }
  size_t n = 3u << 20;     /* ~512 MiB of 16..320 B objects */
  void **obj = malloc(n * sizeof *obj);
  for (size_t i = 0; i < n; i++) { size_t s = 16 + next() % 305; obj[i] = malloc(s); memset(obj[i], 2, s); }
  uint64_t t0 = ms_now(), last = 0;
  while (ms_now() - t0 < (uint64_t)secs * 1000) {
    for (size_t k = 0; k < n / 100; k++) {
      size_t i = next() % n, s = 16 + next() % 305;
      free(obj[i]);
      obj[i] = malloc(s);
      memset(obj[i], 3, s);
    }
    nap(100);
    uint64_t t = ms_now() - t0;
    if (t - last >= 1000) {
      last = t;
      printf("%llu %ld %ld\n", (unsigned long long)t, rollup_kb("Rss:"), rollup_kb("AnonHugePages:"));
      fflush(stdout);
    }
  }
  return 0;
}
