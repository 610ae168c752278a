/* Statistics and the control namespace (issue 4):
 *   api_stats            exact single-thread counters, tidal_ctl errors,
 *                        invariants during multi-threaded stress
 *   api_stats json       print the JSON statistics to stdout (checked by
 *                        check_stats_json.py)
 *   api_stats options N… print opt.N for each name as N:value (round trip) */
#include "testutil.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>

static uint64_t u64(const char *name) {
  uint64_t v = 0;
  size_t sz = sizeof v;
  int rc = tidal_ctl(name, &v, &sz, NULL, 0);
  CHECK(rc == 0, "tidal_ctl(%s) = %d", name, rc);
  return v;
}

static void new_epoch(void) {
  uint64_t e = 1;
  CHECK(tidal_ctl("epoch", NULL, NULL, &e, sizeof e) == 0, "epoch");
}

/* The class index whose block size is `size`. */
static unsigned class_of_size(uint64_t size) {
  uint64_t n = u64("stats.classes.count");
  char name[64];
  for (unsigned i = 1; i <= n; i++) {
    snprintf(name, sizeof name, "stats.classes.%u.size", i);
    if (u64(name) >= size) return i;
  }
  return 0;
}

static uint64_t class_field(unsigned c, const char *field) {
  char name[64];
  snprintf(name, sizeof name, "stats.classes.%u.%s", c, field);
  return u64(name);
}

static void exact_counters(void) {
  enum { N = 1000 };
  /* The first slow path may start the background thread, whose creation
   * allocates: let that happen before counting. */
  free(malloc(100000));
  usleep(20000);
  static void *p[N];
  unsigned c = class_of_size(200);
  uint64_t csize = class_field(c, "size");
  CHECK(c > 0 && csize >= 200 && csize < 240, "class of 200 bytes: %u (size %llu)", c, (unsigned long long)csize);
  new_epoch();
  uint64_t req0 = class_field(c, "requests"), fr0 = class_field(c, "frees"), live0 = class_field(c, "live");
  uint64_t alloc0 = u64("stats.allocated"), small0 = u64("stats.small_allocated");
  uint64_t ta0 = u64("thread.allocated"), tf0 = u64("thread.freed");
  for (int i = 0; i < N; i++) p[i] = malloc(200);
  new_epoch();
  CHECK(class_field(c, "requests") - req0 == N, "requests +%llu", (unsigned long long)(class_field(c, "requests") - req0));
  CHECK(class_field(c, "live") - live0 == N, "live");
  CHECK(u64("stats.small_allocated") - small0 == N * csize, "small_allocated");
  CHECK(u64("stats.allocated") - alloc0 == N * csize, "allocated");
  CHECK(u64("thread.allocated") - ta0 == N * csize, "thread.allocated +%llu", (unsigned long long)(u64("thread.allocated") - ta0));
  for (int i = 0; i < N; i++) free(p[i]);
  new_epoch();
  CHECK(class_field(c, "frees") - fr0 == N, "frees");
  CHECK(class_field(c, "live") == live0, "live back");
  CHECK(u64("thread.freed") - tf0 == N * csize, "thread.freed");
  CHECK(u64("stats.allocated") == alloc0, "allocated back");

  /* large and huge requests */
  uint64_t lr0 = u64("stats.large_requests"), lf0 = u64("stats.large_frees"), hl0 = u64("stats.huge.live_count");
  void *l = malloc(100000), *h = malloc(5u << 20);
  new_epoch();
  CHECK(u64("stats.large_requests") - lr0 == 2, "large requests");
  CHECK(u64("stats.huge.live_count") - hl0 == 1, "huge live count");
  CHECK(u64("stats.large_allocated") >= 100000 && u64("stats.huge_allocated") >= (5u << 20), "large/huge bytes");
  free(l);
  free(h);
  new_epoch();
  CHECK(u64("stats.large_frees") - lf0 == 2, "large frees");
  CHECK(u64("stats.huge.live_count") == hl0, "huge live back");
}

static void ctl_errors(void) {
  uint64_t v;
  size_t sz = sizeof v;
  CHECK(tidal_ctl("no.such.name", &v, &sz, NULL, 0) == ENOENT, "unknown name");
  CHECK(tidal_ctl("stats.classes.999.size", &v, &sz, NULL, 0) == ENOENT, "class out of range");
  size_t bad = 3;
  CHECK(tidal_ctl("stats.allocated", &v, &bad, NULL, 0) == EINVAL, "bad length");
  CHECK(tidal_ctl("stats.allocated", NULL, NULL, &v, sizeof v) == EPERM, "write read-only stat");
  CHECK(tidal_ctl("opt.dirty_decay_ms", NULL, NULL, &v, sizeof v) == EPERM, "write option");
  CHECK(tidal_ctl("thread.allocated", NULL, NULL, &v, sizeof v) == EPERM, "write thread.allocated");
  CHECK(tidal_ctl("epoch", NULL, NULL, &v, 3) == EINVAL, "epoch bad length");
  const char *ver;
  sz = sizeof ver;
  CHECK(tidal_ctl("version", &ver, &sz, NULL, 0) == 0 && strcmp(ver, tidal_version()) == 0, "version");
  bool on, was;
  sz = sizeof on;
  CHECK(tidal_ctl("background_thread", &was, &sz, NULL, 0) == 0, "read background_thread");
  on = !was;
  CHECK(tidal_ctl("background_thread", NULL, NULL, &on, sizeof on) == 0, "write background_thread");
  CHECK(tidal_ctl("background_thread", &on, &sz, NULL, 0) == 0 && on == !was, "background_thread toggled");
  CHECK(tidal_ctl("background_thread", NULL, NULL, &was, sizeof was) == 0, "restore background_thread");
  CHECK(tidal_ctl("thread.flush", NULL, NULL, NULL, 0) == 0, "thread.flush");
  uint64_t released;
  sz = sizeof released;
  CHECK(tidal_ctl("purge", &released, &sz, NULL, 0) == 0, "purge");
  const char *mname;
  sz = sizeof mname;
  CHECK(u64("stats.mutexes.count") >= 5, "mutexes registered");
  CHECK(tidal_ctl("stats.mutexes.0.name", &mname, &sz, NULL, 0) == 0 && mname && *mname, "mutex name");
  double util;
  sz = sizeof util;
  CHECK(tidal_ctl("stats.classes.1.utilization", &util, &sz, NULL, 0) == 0 && util >= 0 && util <= 1, "utilization");
}

/* Invariants hold in every snapshot while other threads allocate and free. */
static volatile int stop;
static void *churn(void *arg) {
  tt_rng r = { (uint64_t)(uintptr_t)arg };
  enum { SLOTS = 4096 };
  void **slot = calloc(SLOTS, sizeof *slot);
  while (!stop) {
    for (int k = 0; k < 1000; k++) {
      size_t i = tt_below(&r, SLOTS);
      free(slot[i]);
      uint64_t x = tt_below(&r, 100);
      slot[i] = malloc(x < 90 ? 1 + tt_below(&r, 512) : x < 99 ? 1 + tt_below(&r, 200000) : 1 + tt_below(&r, 3u << 20));
    }
  }
  for (int i = 0; i < SLOTS; i++) free(slot[i]);
  free(slot);
  return NULL;
}

static void invariants_under_stress(void) {
  enum { T = 3 };
  pthread_t t[T];
  for (int i = 0; i < T; i++) pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 11));
  int rounds = (int)tt_scaled(300, 30);
  for (int i = 0; i < rounds; i++) {
    new_epoch();
    uint64_t a = u64("stats.allocated"), b = u64("stats.active"), c = u64("stats.resident"), d = u64("stats.mapped");
    CHECK(a <= b && b <= c && c <= d, "allocated %llu <= active %llu <= resident %llu <= mapped %llu",
          (unsigned long long)a, (unsigned long long)b, (unsigned long long)c, (unsigned long long)d);
    usleep(2000);
  }
  stop = 1;
  for (int i = 0; i < T; i++) pthread_join(t[i], NULL);
}

/* The run cache (runcache.h): on one CPU, a large block freed comes back
 * (once it has left the large quarantine) to the next request of about its
 * size, contents stale, so calloc still zeroes; tidal_purge and malloc_trim
 * empty it. Runs last: it pins the thread, and leaves the pin. */
static void run_cache(void) {
  cpu_set_t one, all;
  CHECK(sched_getaffinity(0, sizeof all, &all) == 0, "affinity");
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  CHECK(sched_setaffinity(0, sizeof one, &one) == 0, "pin");
  enum { Q = 64, N = 100000 };           /* more frees than any quarantine holds */
  new_epoch();
  uint64_t h0 = u64("stats.caches.run_cache_hits");
  for (int i = 0; i < Q; i++) {
    unsigned char *p = malloc(N);
    CHECK(p != NULL, "malloc");
    memset(p, 0xab, N);
    free(p);
  }
  new_epoch();
  uint64_t hits = u64("stats.caches.run_cache_hits") - h0;
  CHECK(hits >= Q / 2, "run cache hits: %llu of %d", (unsigned long long)hits, Q);
  CHECK(u64("stats.caches.run_cache") >= N, "run cache bytes");
  for (int i = 0; i < Q; i++) {           /* reused runs hold 0xab: calloc zeroes them */
    unsigned char *p = calloc(1, N);
    CHECK(p != NULL, "calloc");
    for (size_t k = 0; k < N; k += 97) CHECK(p[k] == 0, "calloc byte %zu of a reused run: %#x", k, p[k]);
    CHECK(p[N - 1] == 0, "calloc's last byte");
    free(p);
  }
  tidal_purge();
  new_epoch();
  CHECK(u64("stats.caches.run_cache") == 0, "run cache after tidal_purge: %llu", (unsigned long long)u64("stats.caches.run_cache"));
  for (int i = 0; i < Q; i++) free(malloc(N));
  new_epoch();
  CHECK(u64("stats.caches.run_cache") > 0, "run cache refilled");
  malloc_trim(0);
  new_epoch();
  CHECK(u64("stats.caches.run_cache") == 0, "run cache after malloc_trim");
  CHECK(sched_setaffinity(0, sizeof all, &all) == 0, "unpin");
}

static void print_json(void *arg, const char *text) { fputs(text, (FILE *)arg); }

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "json") == 0) {
    void *keep[100];
    for (int i = 0; i < 100; i++) keep[i] = malloc((size_t)i * 100 + 1);
    tidal_stats_print(print_json, stdout, "json");
    for (int i = 0; i < 100; i++) free(keep[i]);
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "options") == 0) {
    /* arguments: name=type, type one of bool, integer, ratio, enum */
    for (int i = 2; i < argc; i++) {
      char name[128], *eq = strchr(argv[i], '=');
      CHECK(eq != NULL, "argument %s: expected name=type", argv[i]);
      snprintf(name, sizeof name, "opt.%.*s", (int)(eq - argv[i]), argv[i]);
      const char *type = eq + 1;
      union { bool b; int64_t i; double d; const char *s; } v;
      size_t sz = strcmp(type, "bool") == 0 ? sizeof v.b : 8;
      int rc = tidal_ctl(name, &v, &sz, NULL, 0);
      CHECK(rc == 0, "tidal_ctl(%s) = %d", name, rc);
      printf("%s:", name + 4);
      if (strcmp(type, "bool") == 0) printf("%s\n", v.b ? "true" : "false");
      else if (strcmp(type, "integer") == 0) printf("%lld\n", (long long)v.i);
      else if (strcmp(type, "ratio") == 0) printf("%g\n", v.d);
      else printf("%s\n", v.s);
    }
    return 0;
  }
  exact_counters();
  ctl_errors();
  invariants_under_stress();
  run_cache();
  printf("api_stats: OK\n");
  return 0;
}
