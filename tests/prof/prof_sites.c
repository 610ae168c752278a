/* Two allocation sites with known live totals, for the heap profiler's
 * accuracy tests: keep_big() keeps BIG bytes live and keep_small() SMALL
 * bytes, in blocks of LO..HI bytes (sizes from a fixed generator). Built
 * like a Debian package (gcc -O2 -g, no frame pointers) and run with
 * libtidalloc.so preloaded, so the stacks come from the .eh_frame unwinder.
 *
 * Usage: prof_sites LO HI [TOL_PERCENT RATIO_LO RATIO_HI]
 * Nothing is freed: a prof_final dump at exit shows both sites. With the
 * tolerance arguments, the program also reads its own profile through
 * tidal_prof_visit (looked up with dlsym: the program is not linked to
 * tidalloc) and exits 1 unless each site's total is within TOL_PERCENT of
 * the truth and big/small is within [RATIO_LO, RATIO_HI]. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG   ((size_t)100 << 20)
#define SMALL ((size_t)10 << 20)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static size_t lo_size, hi_size;
static void *volatile sink;

static size_t next_size(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return lo_size + (size_t)(rng % (hi_size - lo_size + 1));
}

static void *list_big[1 << 16], *list_small[1 << 16];
static size_t n_big, n_small;

__attribute__((noinline)) void keep_big(void) {
  size_t done = 0;
  while (done < BIG) {
    size_t s = next_size();
    if (s > BIG - done) s = BIG - done;
    void *p = malloc(s);
    if (!p) { perror("malloc"); exit(2); }
    memset(p, 1, s < 64 ? s : 64);
    list_big[n_big++] = p;
    done += s;
  }
  sink = list_big;
}

__attribute__((noinline)) void keep_small(void) {
  size_t done = 0;
  while (done < SMALL) {
    size_t s = next_size();
    if (s > SMALL - done) s = SMALL - done;
    void *p = malloc(s);
    if (!p) { perror("malloc"); exit(2); }
    memset(p, 2, s < 64 ? s : 64);
    list_small[n_small++] = p;
    done += s;
  }
  sink = list_small;
}

static double got_big, got_small, got_other;

static void visit(void *arg, void *const *pcs, unsigned depth, size_t bytes, size_t count) {
  (void)arg; (void)count;
  for (unsigned i = 0; i < depth; i++) {
    Dl_info info;
    if (dladdr((char *)pcs[i] - 1, &info) && info.dli_sname) {
      if (strcmp(info.dli_sname, "keep_big") == 0) { got_big += (double)bytes; return; }
      if (strcmp(info.dli_sname, "keep_small") == 0) { got_small += (double)bytes; return; }
    }
  }
  got_other += (double)bytes;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s LO HI [TOL RATIO_LO RATIO_HI]\n", argv[0]); return 2; }
  lo_size = strtoull(argv[1], NULL, 0);
  hi_size = strtoull(argv[2], NULL, 0);
  keep_big();
  keep_small();
  if (argc < 6) return 0;
  double tol = atof(argv[3]) / 100, rlo = atof(argv[4]), rhi = atof(argv[5]);
  long (*visit_fn)(void (*)(void *, void *const *, unsigned, size_t, size_t), void *) =
      (long (*)(void (*)(void *, void *const *, unsigned, size_t, size_t), void *))dlsym(RTLD_DEFAULT, "tidal_prof_visit");
  if (!visit_fn) { fprintf(stderr, "tidal_prof_visit not found: preload libtidalloc.so\n"); return 2; }
  long sites = visit_fn(visit, NULL);
  double ratio = got_small > 0 ? got_big / got_small : 0;
  printf("sites=%ld big=%.0f (%.2f%%) small=%.0f (%.2f%%) other=%.0f ratio=%.3f\n", sites, got_big,
         100 * (got_big / BIG - 1), got_small, 100 * (got_small / SMALL - 1), got_other, ratio);
  int bad = sites < 2 || got_big < BIG * (1 - tol) || got_big > BIG * (1 + tol) || got_small < SMALL * (1 - tol) ||
            got_small > SMALL * (1 + tol) || ratio < rlo || ratio > rhi;
  if (bad) printf("FAIL: expected big=%zu small=%zu within %.1f%%, ratio in [%g, %g]\n", BIG, SMALL, tol * 100, rlo, rhi);
  return bad;
}
