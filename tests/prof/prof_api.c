/* The heap profiler's public behaviour: hooks, controls, dumps, usable sizes
 * and realloc of sampled blocks, prof off, leak exit status, prof_signal.
 * Usage: prof_api MODE [DIR]   (the test script sets TIDALLOC_CONF)
 *   hook DIR   prof:true,prof_sample:1 — fixed backtrace hook, sample hooks,
 *              dump hook, prof.active, prof.reset, sampled-block semantics
 *   off        prof off: reads give defaults, writes fail with EPERM
 *   leak | noleak   blocks still live at exit, or none (prof_leak tests)
 *   signal PREFIX   prof_signal:12 — raise it, wait for the dump file
 *   gdump      prof_gdump:true — dumps at new high-water marks, at most
 *              one per doubling, none when the heap regrows to its peak */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tidalloc.h"

void free_sized(void *p, size_t size);   /* C23; not declared by glibc 2.36 */

#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); \
                                       printf("\n"); exit(1); } } while (0)

static void *const fixed[3] = { (void *)0x1111, (void *)0x2222, (void *)0x3333 };
static unsigned fixed_bt(void **pcs, unsigned max) {
  unsigned n = max < 3 ? max : 3;
  memcpy(pcs, fixed, n * sizeof *pcs);
  return n;
}

static volatile int nsample, nfree_hook;   /* volatile: the compiler assumes malloc writes no global */
static volatile size_t sampled_bytes;
static char dumped[512];
static void on_sample(const void *p, size_t size, double w, void *const *pcs, unsigned depth) {
  (void)p; (void)w;
  if (gettid() != getpid()) return;   /* the background thread may have sampled before the hooks were set */
  nsample++;
  sampled_bytes += size;
  CHECK(depth == 3 && pcs[0] == fixed[0] && pcs[2] == fixed[2], "sample hook got another stack");
  free(malloc(100));   /* a hook may allocate: served, not sampled */
}
static void on_sample_free(const void *p, size_t size, double w, void *const *pcs, unsigned depth) {
  (void)p; (void)size; (void)w; (void)pcs; (void)depth;
  nfree_hook++;
}
static void on_dump(const char *path) { snprintf(dumped, sizeof dumped, "%s", path); }

static long nsites;
static size_t site_bytes;
static bool site_fixed;
static void visit(void *arg, void *const *pcs, unsigned depth, size_t bytes, size_t count) {
  (void)arg; (void)count;
  nsites++;
  site_bytes += bytes;
  site_fixed = depth == 3 && memcmp(pcs, fixed, sizeof fixed) == 0;
}

static void set_hook(const char *name, void *fn) {
  int rc = tidal_ctl(name, NULL, NULL, &fn, sizeof fn);
  CHECK(rc == 0, "tidal_ctl(%s) = %d", name, rc);
}

static void sampled_semantics(void) {
  /* prof_sample:1 samples (almost) every block: a 100-byte one is usable as
   * its class's 112 bytes; a 100000-byte one as its page run. */
  char *p = malloc(100);
  CHECK(malloc_usable_size(p) == 112, "usable size of a sampled small block: %zu", malloc_usable_size(p));
  memset(p, 7, 100);
  char *q = realloc(p, 110);
  CHECK(q == p, "realloc within the class moves a sampled block");
  q = realloc(q, 5000);
  CHECK(q && q[0] == 7 && q[99] == 7, "realloc lost the contents");
  free(q);
  void *r = malloc(100000);
  CHECK(malloc_usable_size(r) == 102400, "usable size of a sampled large block: %zu", malloc_usable_size(r));
  free_sized(r, 100000);
  void *c = calloc(1, 3000);
  for (int i = 0; i < 3000; i++) CHECK(((char *)c)[i] == 0, "calloc of a sampled block not zeroed");
  free(c);
  void *a = aligned_alloc(4096, 200);
  CHECK(((uintptr_t)a & 4095) == 0, "aligned sampled block");
  free(a);
}

static int mode_hook(const char *dir) {
  CHECK(tidal_ctl("prof.reset", NULL, NULL, NULL, 0) == 0, "prof.reset");
  set_hook("prof.hooks.backtrace", (void *)fixed_bt);
  set_hook("prof.hooks.sample", (void *)on_sample);
  set_hook("prof.hooks.sample_free", (void *)on_sample_free);
  set_hook("prof.hooks.dump", (void *)on_dump);
  void *cur = NULL;
  size_t sz = sizeof cur;
  CHECK(tidal_ctl("prof.hooks.backtrace", &cur, &sz, NULL, 0) == 0 && cur == (void *)fixed_bt, "hook reads back");
  sampled_semantics();
  tidal_ctl("prof.reset", NULL, NULL, NULL, 0);
  nsample = 0;
  sampled_bytes = 0;
  void *blocks[10];
  for (int i = 0; i < 10; i++) blocks[i] = malloc(100000);
  CHECK(nsample >= 10 && sampled_bytes >= 1000000, "sample hook: %d calls, %zu bytes", nsample, sampled_bytes);
  CHECK(tidal_prof_visit(visit, NULL) == 1 && nsites == 1 && site_fixed, "visit: %ld sites, fixed %d", nsites, site_fixed);
  CHECK(site_bytes >= 1000000 && site_bytes <= sampled_bytes + 1000, "visit bytes %zu (sampled %zu)", site_bytes, sampled_bytes);
  char path[512];
  snprintf(path, sizeof path, "%s/hook.heap", dir);
  const char *pp = path;
  CHECK(tidal_ctl("prof.dump", NULL, NULL, &pp, sizeof pp) == 0, "prof.dump");
  CHECK(strcmp(dumped, path) == 0, "dump hook got '%s'", dumped);
  FILE *f = fopen(path, "r");
  CHECK(f, "no dump file %s", path);
  char line[4096];
  int stacks = 0, fixed_lines = 0;
  CHECK(fgets(line, sizeof line, f) && strncmp(line, "heap profile: ", 14) == 0 && strstr(line, "@ heapprofile"),
        "header: %s", line);
  while (fgets(line, sizeof line, f) && strncmp(line, "MAPPED_LIBRARIES:", 17) != 0) {
    if (!strchr(line, '@')) continue;
    stacks++;
    fixed_lines += strstr(line, " @ 0x1111 0x2222 0x3333\n") != NULL;
  }
  bool maps = !feof(f) && fgets(line, sizeof line, f) && strchr(line, '-');
  fclose(f);
  CHECK(stacks == 1 && fixed_lines == 1 && maps, "dump: %d stacks, %d fixed, maps %d", stacks, fixed_lines, maps);
  /* paused: no samples */
  bool off = false, on = true;
  CHECK(tidal_ctl("prof.active", NULL, NULL, &off, sizeof off) == 0, "prof.active=false");
  int before = nsample;
  for (int i = 0; i < 100; i++) free(malloc(5000));
  CHECK(nsample == before, "samples while paused: %d", nsample - before);
  CHECK(tidal_ctl("prof.active", NULL, NULL, &on, sizeof on) == 0, "prof.active=true");
  int freed_before = nfree_hook;
  for (int i = 0; i < 10; i++) free(blocks[i]);
  CHECK(nfree_hook - freed_before >= 10, "sample_free hook: %d calls", nfree_hook - freed_before);
  nsites = 0; site_bytes = 0;
  tidal_prof_visit(visit, NULL);
  CHECK(site_bytes < 1000000, "freed samples still in the profile: %zu bytes", site_bytes);
  set_hook("prof.hooks.sample", NULL);
  set_hook("prof.hooks.backtrace", NULL);
  printf("prof_api hook: OK\n");
  return 0;
}

static int mode_off(void) {
  bool active = true;
  size_t sz = sizeof active;
  CHECK(tidal_ctl("prof.active", &active, &sz, NULL, 0) == 0 && !active, "prof.active reads false when off");
  void *hook = (void *)1;
  sz = sizeof hook;
  CHECK(tidal_ctl("prof.hooks.sample", &hook, &sz, NULL, 0) == 0 && hook == NULL, "hooks read NULL when off");
  CHECK(tidal_ctl("prof.active", NULL, NULL, &active, sizeof active) == EPERM, "prof.active write when off");
  CHECK(tidal_ctl("prof.dump", NULL, NULL, NULL, 0) == EPERM, "prof.dump when off");
  CHECK(tidal_ctl("prof.reset", NULL, NULL, NULL, 0) == EPERM, "prof.reset when off");
  void *fn = (void *)fixed_bt;
  CHECK(tidal_ctl("prof.hooks.backtrace", NULL, NULL, &fn, sizeof fn) == EPERM, "hook write when off");
  CHECK(tidal_ctl("prof.nonesuch", NULL, NULL, NULL, 0) == ENOENT, "unknown prof name");
  CHECK(tidal_prof_visit(visit, NULL) == -1, "tidal_prof_visit when off");
  printf("prof_api off: OK\n");
  return 0;
}

static void *volatile keep[3];
__attribute__((noinline)) void leak_site(void) {
  for (int i = 0; i < 3; i++) keep[i] = malloc((size_t)4 << 20);
}

static int mode_signal(const char *prefix) {
  raise(SIGUSR2);   /* prof_signal:12 */
  char path[512];
  snprintf(path, sizeof path, "%s.%d.0.heap", prefix, (int)getpid());
  for (int i = 0; i < 1000; i++) {   /* up to 10 s */
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size > 0) {
      printf("prof_api signal: dump %s written while running\n", path);
      return 0;
    }
    usleep(10000);
  }
  printf("FAIL: no dump %s after the signal\n", path);
  return 1;
}

static uint64_t dumps_now(void) {
  uint64_t e = 1, d = 0;
  size_t sz = sizeof d;
  tidal_ctl("epoch", NULL, NULL, &e, sizeof e);
  tidal_ctl("stats.prof.dumps", &d, &sz, NULL, 0);
  return d;
}

/* The background thread writes gdumps: wait until the count stays put. */
static uint64_t dumps_settled(void) {
  uint64_t d = dumps_now();
  for (int stable = 0, i = 0; stable < 3 && i < 200; i++) {
    usleep(50000);
    uint64_t n = dumps_now();
    stable = n == d ? stable + 1 : 0;
    d = n;
  }
  return d;
}

/* Growth by doublings, waiting for the background thread after each (it
 * coalesces requests that come while it writes): about one dump per
 * doubling, none when the heap regrows to its old peak. */
static int mode_gdump(void) {
  enum { N = 64 };
  static void *blocks[N];
  uint64_t d0 = dumps_settled();
  for (int have = 0, want = 1; want <= N; want *= 2) {   /* 1, 2, 4 ... 64 MiB live */
    for (; have < want; have++) blocks[have] = malloc((size_t)1 << 20);
    dumps_settled();
  }
  uint64_t d1 = dumps_settled() - d0;
  CHECK(d1 >= 4 && d1 <= 8, "%llu dumps while growing by 7 doublings", (unsigned long long)d1);
  for (int i = 0; i < N; i++) free(blocks[i]);
  for (int i = 0; i < N; i++) blocks[i] = malloc((size_t)1 << 20);   /* back to the peak, not above */
  uint64_t d2 = dumps_settled() - d0;
  CHECK(d2 == d1, "%llu more dumps without a new high-water mark", (unsigned long long)(d2 - d1));
  printf("prof_api gdump: OK (%llu dumps)\n", (unsigned long long)d1);
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "hook") == 0 && argc > 2) return mode_hook(argv[2]);
  if (strcmp(mode, "off") == 0) return mode_off();
  if (strcmp(mode, "leak") == 0) { leak_site(); return 0; }
  if (strcmp(mode, "noleak") == 0) { leak_site(); for (int i = 0; i < 3; i++) free(keep[i]); return 0; }
  if (strcmp(mode, "signal") == 0 && argc > 2) return mode_signal(argv[2]);
  if (strcmp(mode, "gdump") == 0) return mode_gdump();
  fprintf(stderr, "usage: prof_api hook DIR | off | leak | noleak | signal PREFIX\n");
  return 2;
}
