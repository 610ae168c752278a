/* A per-request pool: N small allocations (16..256 B), then everything is
 * freed, three ways, timed (median of REPS rounds each, interleaved):
 *   heap-destroy  tidal_heap_create, N tidal_heap_malloc, tidal_heap_destroy
 *   heap-free     tidal_heap_create, N tidal_heap_malloc, N free, destroy
 *   heap-reset    one heap for every round: N tidal_heap_malloc, tidal_heap_reset
 *                 (the pool keeps its memory: no page faults after the first round)
 *   malloc-free   N malloc, N free (the default heap's thread cache)
 * A fresh heap maps fresh memory, so heap-destroy and heap-free pay the page
 * faults of N blocks every round; heap-reset and malloc-free reuse theirs.
 * Usage: pool [N [REPS]]   (default 1000000, 7). Prints ns per allocation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <tidalloc.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static size_t size_of(long i) { return 16 + (size_t)((i * 2654435761u) >> 7) % 241; }

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000, reps = argc > 2 ? atol(argv[2]) : 7;
  void **p = malloc((size_t)n * sizeof *p);
  double t[4][64];
  tidal_heap_t *pool = tidal_heap_create(NULL);
  if (reps > 64) reps = 64;
  for (long r = 0; r < reps; r++) {
    for (int mode = 0; mode < 4; mode++) {
      double t0 = now();
      tidal_heap_t *h = mode < 2 ? tidal_heap_create(NULL) : mode == 2 ? pool : NULL;
      for (long i = 0; i < n; i++) p[i] = h ? tidal_heap_malloc(h, size_of(i)) : malloc(size_of(i));
      for (long i = 0; i < n; i++) ((char *)p[i])[0] = 1;
      if (mode == 1 || mode == 3)
        for (long i = 0; i < n; i++) free(p[i]);
      if (mode == 2) tidal_heap_reset(h);
      else if (h) tidal_heap_destroy(h);
      t[mode][r] = now() - t0;
    }
  }
  const char *name[4] = { "heap-destroy", "heap-free", "heap-reset", "malloc-free" };
  printf("pool: %ld small allocations, median of %ld\n", n, reps);
  double base = 0;
  for (int mode = 0; mode < 4; mode++) {
    qsort(t[mode], (size_t)reps, sizeof t[mode][0], cmp);
    double med = t[mode][reps / 2];
    if (mode == 0) base = med;
    printf("  %-13s %8.1f ms  %6.1f ns/alloc  %.2fx heap-destroy\n", name[mode], med * 1e3, med * 1e9 / (double)n, med / base);
  }
  free(p);
  return 0;
}
