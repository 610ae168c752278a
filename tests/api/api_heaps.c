/* Heaps with page sources (tidal_heap_*, docs/heaps.md), black box:
 * - churn: a recording source wrapping the default; rounds of create, mixed
 *   sizes (16 B .. 8 MiB) freed in random order by two threads, destroy:
 *   the source unmapped every byte it mapped, RSS ends near where it began;
 * - memfd: a source on one shared memfd mapping: every visited block lies
 *   inside it, and another process that maps the memfd reads what was written;
 * - metadata_use_source on and off: where the heap's own structures live;
 * - failing map (every third call): NULL with ENOMEM, no leak, works again;
 * - visitor: after random churn the visited set is the test's record;
 * - reset then reuse; destroy while other threads still hold blocks of other
 *   heaps in their caches; plain free/realloc/malloc_usable_size; fork;
 * - a visitor callback that allocates from its heap is reported (abort).
 * Usage: api_heaps [churn|memfd|meta|fail|visit|reset|fork|visitor_misuse] (all when none). */
#include "testutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define MIB ((size_t)1 << 20)
#define UNIT (2 * MIB)

/* ---- a recording source: wraps the default, counts, can fail ---------------- */

typedef struct {
  const tidal_page_source_t *inner;
  size_t mapped, unmapped, live, purged;
  unsigned long maps, unmaps, purges, fail_every, calls;
  uintptr_t lo[4096], hi[4096];   /* ranges handed out (for "is it inside") */
  unsigned nranges;
  pthread_mutex_t mu;
} rec_t;

static void *rec_map(void *ctx, size_t size, size_t align) {
  rec_t *r = ctx;
  CHECK(size % UNIT == 0 && align % UNIT == 0, "map(%zu, %zu): not multiples of 2 MiB", size, align);
  pthread_mutex_lock(&r->mu);
  bool fail = r->fail_every && ++r->calls % r->fail_every == 0;
  pthread_mutex_unlock(&r->mu);
  if (fail) return NULL;
  void *p = r->inner->map(r->inner->ctx, size, align);
  if (!p) return NULL;
  CHECK(((uintptr_t)p & (align - 1)) == 0);
  pthread_mutex_lock(&r->mu);
  r->maps++;
  r->mapped += size;
  r->live += size;
  if (r->nranges < 4096) { r->lo[r->nranges] = (uintptr_t)p; r->hi[r->nranges++] = (uintptr_t)p + size; }
  pthread_mutex_unlock(&r->mu);
  return p;
}

static void rec_unmap(void *ctx, void *addr, size_t size) {
  rec_t *r = ctx;
  pthread_mutex_lock(&r->mu);
  r->unmaps++;
  r->unmapped += size;
  r->live -= size;
  for (unsigned i = 0; i < r->nranges; i++)
    if (r->lo[i] == (uintptr_t)addr) { r->lo[i] = r->lo[--r->nranges]; r->hi[i] = r->hi[r->nranges]; break; }
  pthread_mutex_unlock(&r->mu);
  r->inner->unmap(r->inner->ctx, addr, size);
}

static int rec_purge(void *ctx, void *addr, size_t size, int lazy) {
  rec_t *r = ctx;
  __atomic_fetch_add(&r->purges, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&r->purged, size, __ATOMIC_RELAXED);
  return r->inner->purge(r->inner->ctx, addr, size, lazy);
}

static bool rec_inside(rec_t *r, const void *p, size_t n) {
  pthread_mutex_lock(&r->mu);
  bool in = false;
  for (unsigned i = 0; i < r->nranges && !in; i++) in = (uintptr_t)p >= r->lo[i] && (uintptr_t)p + n <= r->hi[i];
  pthread_mutex_unlock(&r->mu);
  return in;
}

static rec_t *rec_new(void) {
  rec_t *r = calloc(1, sizeof *r);
  r->inner = tidal_page_source_default();
  pthread_mutex_init(&r->mu, NULL);
  return r;
}

static tidal_page_source_t rec_source(rec_t *r) { return (tidal_page_source_t){ rec_map, rec_unmap, rec_purge, r }; }

/* A size: mostly small, some large runs, a few huge blocks up to 8 MiB. */
static size_t mixed_size(tt_rng *g) {
  uint64_t k = tt_below(g, 1000);
  if (k < 900) return 1 + tt_below(g, 512);
  if (k < 980) return 513 + tt_below(g, 32768);
  if (k < 998) return 32769 + tt_below(g, MIB);
  return MIB + tt_below(g, 7 * MIB);
}

/* ---- churn ------------------------------------------------------------------------ */

typedef struct { void **blocks; size_t from, to; } span_arg_t;

static void *free_range(void *arg) {
  span_arg_t *a = arg;
  for (size_t i = a->from; i < a->to; i++) free(a->blocks[i]);
  return NULL;
}

static void test_churn(void) {
  rec_t *r = rec_new();
  tidal_page_source_t src = rec_source(r);
  tidal_heap_config_t cfg = { .source = &src, .name = "churn" };
  long rounds = tt_scaled(1000, 20), per = 10000;
  void **blocks = malloc(per * sizeof *blocks);
  tt_rng g = { tt_seed };
  long rss0 = 0;
  for (long round = 0; round < rounds; round++) {
    if (round == 1) rss0 = tt_rss_kb();   /* after the first round: the program's own caches are warm */
    tidal_heap_t *h = tidal_heap_create(&cfg);
    CHECK(h != NULL);
    for (long i = 0; i < per; i++) {
      size_t n = mixed_size(&g);
      blocks[i] = tidal_heap_malloc(h, n);
      CHECK(blocks[i] != NULL, "round %ld: malloc(%zu)", round, n);
      CHECK(malloc_usable_size(blocks[i]) >= n);
      memset(blocks[i], (int)(i & 0xff), n < 64 ? n : 64);
    }
    for (long i = per - 1; i > 0; i--) {   /* random order */
      long j = (long)tt_below(&g, (uint64_t)i + 1);
      void *t = blocks[i]; blocks[i] = blocks[j]; blocks[j] = t;
    }
    pthread_t t;
    span_arg_t a = { blocks, 0, (size_t)per / 2 }, b = { blocks, (size_t)per / 2, (size_t)per };
    CHECK(pthread_create(&t, NULL, free_range, &a) == 0);
    free_range(&b);
    CHECK(pthread_join(t, NULL) == 0);
    tidal_heap_stats_t st;
    CHECK(tidal_heap_stats(h, &st) == 0);
    CHECK(st.allocated == 0, "round %ld: %zu bytes allocated after every block was freed", round, st.allocated);
    CHECK(!strcmp(st.name, "churn"));
    tidal_heap_destroy(h);
    CHECK(r->live == 0, "round %ld: %zu bytes still mapped after destroy", round, r->live);
  }
  long rss1 = tt_rss_kb();
  printf("churn: %ld rounds, source mapped %zu MiB in %lu maps, unmapped %zu MiB; RSS %ld -> %ld KiB\n", rounds,
         r->mapped >> 20, r->maps, r->unmapped >> 20, rss0, rss1);
  CHECK(r->mapped == r->unmapped && r->mapped > 0);
  CHECK(rss1 - rss0 <= 2048, "RSS grew by %ld KiB over the rounds", rss1 - rss0);
  free(blocks);
}

/* ---- memfd ----------------------------------------------------------------------- */

typedef struct { char *base; size_t size, next; int fd; unsigned long maps, unmaps; } memfd_src_t;

/* Hands out the memfd mapping in order; never reuses (the test is short). */
static void *memfd_map(void *ctx, size_t size, size_t align) {
  memfd_src_t *m = ctx;
  size_t at = (m->next + align - 1) / align * align;
  if (at + size > m->size) return NULL;
  m->next = at + size;
  m->maps++;
  return m->base + at;
}
static void memfd_unmap(void *ctx, void *addr, size_t size) { (void)addr; (void)size; ((memfd_src_t *)ctx)->unmaps++; }

typedef struct { memfd_src_t *m; size_t n, bytes; int outside; } in_t;
static int inside_memfd(void *block, size_t usable, void *arg) {
  in_t *a = arg;
  a->n++;
  a->bytes += usable;
  if ((char *)block < a->m->base || (char *)block + usable > a->m->base + a->m->size) a->outside++;
  return 0;
}

static void test_memfd(void) {
  memfd_src_t m = { .size = 64 * MIB };
  m.fd = memfd_create("tidalloc-heap", 0);
  CHECK(m.fd >= 0);
  CHECK(ftruncate(m.fd, (off_t)m.size) == 0);
  /* 2 MiB-aligned view of the memfd */
  char *v = mmap(NULL, m.size + UNIT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(v != MAP_FAILED);
  char *base = (char *)(((uintptr_t)v + UNIT - 1) & ~(UNIT - 1));
  CHECK(mmap(base, m.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m.fd, 0) == base);
  m.base = base;
  tidal_page_source_t src = { memfd_map, memfd_unmap, NULL, &m };
  tidal_heap_config_t cfg = { .source = &src, .name = "memfd" };
  tidal_heap_t *h = tidal_heap_create(&cfg);
  CHECK(h != NULL);
  enum { N = 2000 };
  static char *p[N];
  static size_t sz[N];
  tt_rng g = { tt_seed + 1 };
  for (int i = 0; i < N; i++) {
    sz[i] = i % 100 == 0 ? 3 * MIB / 2 : 1 + tt_below(&g, i % 10 == 0 ? 100000 : 300);
    p[i] = tidal_heap_malloc(h, sz[i]);
    CHECK(p[i] != NULL, "malloc(%zu) on the memfd", sz[i]);
    tt_fill(p[i], sz[i], (uint64_t)i);
  }
  in_t a = { &m, 0, 0, 0 };
  CHECK(tidal_heap_visit(h, inside_memfd, &a) == 0);
  CHECK(a.n == N && a.outside == 0, "visited %zu blocks, %d outside the memfd", a.n, a.outside);
  /* Another process maps the same memfd on its own and reads the blocks. */
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    char *w = mmap(NULL, m.size, PROT_READ, MAP_SHARED, m.fd, 0);
    if (w == MAP_FAILED) _exit(2);
    for (int i = 0; i < N; i++)
      if (tt_check(w + (p[i] - base), sz[i], (uint64_t)i) != (size_t)-1) _exit(3);
    _exit(0);
  }
  int status;
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the second mapping of the memfd did not read what was written (status %d)", status);
  for (int i = 0; i < N; i += 2) free(p[i]);
  a = (in_t){ &m, 0, 0, 0 };
  CHECK(tidal_heap_visit(h, inside_memfd, &a) == 0 && a.n == N / 2);
  tidal_heap_destroy(h);
  CHECK(m.unmaps == m.maps, "%lu maps, %lu unmaps", m.maps, m.unmaps);
  printf("memfd: %d blocks inside a %zu MiB memfd, read back by another process; %lu maps\n", N, m.size >> 20, m.maps);
}

/* ---- metadata_use_source ---------------------------------------------------------- */

static size_t global_metadata(void) {
  uint64_t e = 1, v = 0;
  size_t len = sizeof v;
  tidal_ctl("epoch", NULL, NULL, &e, sizeof e);
  CHECK(tidal_ctl("stats.metadata", &v, &len, NULL, 0) == 0);
  return (size_t)v;
}

static void test_meta(void) {
  for (int own = 0; own <= 1; own++) {
    rec_t *r = rec_new();
    tidal_page_source_t src = rec_source(r);
    tidal_heap_config_t cfg = { .source = &src, .metadata_use_source = own, .name = own ? "meta-on" : "meta-off" };
    /* Warm the global metadata up so that its growth is this heap's. */
    tidal_heap_t *warm = tidal_heap_create(&cfg);
    for (int i = 0; i < 3000; i++) free(tidal_heap_malloc(warm, (i % 7 == 0 ? 3 * MIB : (size_t)(16 + i))));
    tidal_heap_destroy(warm);
    size_t meta0 = global_metadata();
    tidal_heap_t *h = tidal_heap_create(&cfg);
    CHECK(h != NULL);
    CHECK(rec_inside(r, h, 64) == (own != 0), "the heap structure is %s the source", own ? "outside" : "inside");
    static void *p[4000];
    for (int i = 0; i < 4000; i++) {
      p[i] = tidal_heap_malloc(h, (i % 97 == 0 ? 3 * MIB : i % 5 == 0 ? (size_t)40000 : (size_t)(16 + i % 2000)));
      CHECK(p[i] && rec_inside(r, p[i], 1));
    }
    tidal_heap_stats_t st;
    tidal_heap_stats(h, &st);
    size_t meta1 = global_metadata();
    if (own) {
      CHECK(st.metadata >= UNIT, "metadata from the source: %zu", st.metadata);
      CHECK(meta1 == meta0, "global metadata grew by %zu bytes with metadata_use_source", meta1 - meta0);
    } else {
      CHECK(st.metadata == 0);
      /* The source's memory holds only blocks: what it mapped is the heap's
       * units and huge blocks, all counted as the heap's mapped memory. */
      CHECK(st.mapped == r->live, "heap mapped %zu, source live %zu", st.mapped, r->live);
    }
    CHECK(st.mapped == r->live, "heap mapped %zu, source live %zu", st.mapped, r->live);
    for (int i = 0; i < 4000; i++) free(p[i]);
    tidal_heap_destroy(h);
    CHECK(r->live == 0 && r->mapped == r->unmapped);
    printf("meta %s: heap metadata from the source %zu KiB; global metadata %zu -> %zu\n", own ? "on" : "off",
           st.metadata >> 10, meta0, meta1);
  }
}

/* ---- failing map ------------------------------------------------------------------- */

static void test_fail(void) {
  for (int own = 0; own <= 1; own++) {
    rec_t *r = rec_new();
    r->fail_every = 3;
    tidal_page_source_t src = rec_source(r);
    tidal_heap_config_t cfg = { .source = &src, .metadata_use_source = own };
    tidal_heap_t *h = NULL;
    for (int i = 0; i < 3 && !h; i++) h = tidal_heap_create(&cfg);
    CHECK(h != NULL);
    static void *p[3000];
    int nulls = 0;
    tt_rng g = { tt_seed + 2 };
    for (int i = 0; i < 3000; i++) {
      size_t n = i % 3 == 0 ? MIB + tt_below(&g, 4 * MIB) : 1 + tt_below(&g, 200000);
      errno = 0;
      p[i] = tidal_heap_malloc(h, n);
      if (!p[i]) { CHECK(errno == ENOMEM, "errno %d", errno); nulls++; continue; }
      tt_fill(p[i], n < 256 ? n : 256, (uint64_t)i);
    }
    CHECK(nulls > 0, "no allocation failed");
    for (int i = 0; i < 3000; i++) free(p[i]);
    tidal_heap_stats_t st;
    tidal_heap_stats(h, &st);
    CHECK(st.allocated == 0 && st.map_failures > 0);
    r->fail_every = 0;   /* the source works again: so does the heap */
    for (int i = 0; i < 300; i++) { p[i] = tidal_heap_malloc(h, (i % 10 == 0 ? 3 * MIB : (size_t)(100 + i * 300))); CHECK(p[i]); }
    for (int i = 0; i < 300; i++) free(p[i]);
    tidal_heap_destroy(h);
    CHECK(r->live == 0, "%zu bytes leaked in the source", r->live);
    printf("fail (metadata_use_source %d): %d of 3000 allocations failed cleanly\n", own, nulls);
  }
}

/* ---- visitor ------------------------------------------------------------------------ */

typedef struct { void **p; size_t *sz; int n, seen, wrong; } rec_set_t;

static int visit_check(void *block, size_t usable, void *arg) {
  rec_set_t *s = arg;
  int lo = 0, hi = s->n - 1;   /* p sorted */
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (s->p[mid] == block) { s->seen++; if (usable < s->sz[mid]) s->wrong++; return 0; }
    if ((char *)s->p[mid] < (char *)block) lo = mid + 1; else hi = mid - 1;
  }
  s->wrong++;
  return 0;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

static int stop_at_3(void *block, size_t usable, void *arg) { (void)block; (void)usable; return ++*(int *)arg == 3 ? 42 : 0; }

static void test_visit(void) {
  tidal_heap_t *h = tidal_heap_create(NULL);
  CHECK(h != NULL);
  enum { N = 20000 };
  static void *p[N];
  static size_t sz[N];
  tt_rng g = { tt_seed + 3 };
  for (int k = 0; k < 100000; k++) {
    int i = (int)tt_below(&g, N);
    if (p[i]) { free(p[i]); p[i] = NULL; continue; }
    sz[i] = mixed_size(&g) / (tt_below(&g, 4) ? 1 : 4) + 1;
    p[i] = tt_below(&g, 8) ? tidal_heap_malloc(h, sz[i]) : tidal_heap_calloc(h, 1, sz[i]);
    CHECK(p[i]);
    if (tt_below(&g, 16) == 0) { p[i] = realloc(p[i], sz[i] * 2); sz[i] *= 2; CHECK(p[i]); }
  }
  /* sorted record of live blocks with their sizes */
  static uintptr_t pairs[N][2];
  int n = 0;
  for (int i = 0; i < N; i++) if (p[i]) { pairs[n][0] = (uintptr_t)p[i]; pairs[n][1] = sz[i]; n++; }
  qsort(pairs, (size_t)n, sizeof pairs[0], cmp_ptr);
  static void *sp[N];
  static size_t ssz[N];
  for (int i = 0; i < n; i++) { sp[i] = (void *)pairs[i][0]; ssz[i] = pairs[i][1]; }
  rec_set_t s = { sp, ssz, n, 0, 0 };
  CHECK(tidal_heap_visit(h, visit_check, &s) == 0);
  CHECK(s.seen == n && s.wrong == 0, "visited %d of %d live blocks, %d not live or too small", s.seen, n, s.wrong);
  int count = 0;
  CHECK(tidal_heap_visit(h, stop_at_3, &count) == 42 && count == 3);
  printf("visit: %d live blocks after 100000 random operations, all visited once\n", n);
  tidal_heap_destroy(h);
}

/* ---- reset, destroy with other threads' caches, plain API ------------------------ */

typedef struct { tidal_heap_t *h; void **mine; int n; } worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  for (int i = 0; i < w->n; i++) {
    w->mine[i] = tidal_heap_malloc(w->h, (size_t)(16 + i % 3000));
    void *q = malloc(64);   /* this thread's own heap: its caches hold frees of other heaps */
    free(w->mine[i / 2]);   /* frees of the heap's blocks from this thread */
    w->mine[i / 2] = NULL;
    free(q);
  }
  return NULL;
}

static void test_reset(void) {
  tidal_heap_t *h = tidal_heap_create(&(tidal_heap_config_t){ .name = "reset" });
  CHECK(h);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 5000; i++) CHECK(tidal_heap_malloc(h, (size_t)(1 + i * 37 % 70000)));
    CHECK(tidal_heap_malloc(h, 5 * MIB));
    tidal_heap_stats_t st;
    tidal_heap_stats(h, &st);
    CHECK(st.allocated > 0);
    size_t mapped = st.mapped;
    tidal_heap_reset(h);
    tidal_heap_stats(h, &st);
    CHECK(st.allocated == 0 && st.active == 0, "after reset: %zu allocated, %zu active", st.allocated, st.active);
    CHECK(st.mapped + 6 * MIB >= mapped, "reset gave back the pages (%zu -> %zu)", mapped, st.mapped);
  }
  /* the statistics document lists it */
  uint64_t e = 1, count = 0;
  size_t len = sizeof count;
  tidal_ctl("epoch", NULL, NULL, &e, sizeof e);
  CHECK(tidal_ctl("stats.heaps.count", &count, &len, NULL, 0) == 0 && count == 1, "stats.heaps.count %llu", (unsigned long long)count);
  const char *nm = NULL;
  len = sizeof nm;
  CHECK(tidal_ctl("stats.heaps.0.name", &nm, &len, NULL, 0) == 0 && nm && !strcmp(nm, "reset"));
  /* plain API on its blocks */
  char *a = tidal_heap_malloc(h, 100);
  CHECK(a && malloc_usable_size(a) >= 100);
  memset(a, 7, 100);
  a = realloc(a, 100000);
  CHECK(a && a[99] == 7 && malloc_usable_size(a) >= 100000);
  char *b = tidal_heap_realloc(h, malloc(10), 5000);   /* from the thread heap into h */
  CHECK(b);
  void *al = tidal_heap_aligned_alloc(h, 4096, 100);
  CHECK(al && ((uintptr_t)al & 4095) == 0);
  void *al2 = tidal_heap_aligned_alloc(h, 4 * MIB, 100);
  CHECK(al2 && ((uintptr_t)al2 & (4 * MIB - 1)) == 0);
  CHECK(tidal_heap_aligned_alloc(h, 3, 100) == NULL && errno == EINVAL);
  free(a); free(b); free(al); free(al2);
  /* threads allocate and free across; destroy while they still own blocks of h */
  enum { T = 2, PER = 20000 };
  pthread_t t[T];
  worker_t w[T];
  for (int i = 0; i < T; i++) {
    w[i] = (worker_t){ h, calloc(PER, sizeof(void *)), PER };
    CHECK(pthread_create(&t[i], NULL, worker, &w[i]) == 0);
  }
  for (int i = 0; i < T; i++) pthread_join(t[i], NULL);
  tidal_heap_destroy(h);   /* live blocks of h in w[].mine are gone with it */
  for (int i = 0; i < T; i++) free(w[i].mine);
  tidal_thread_flush();
  (void)tidal_purge();
  printf("reset: 3 rounds of fill and reset; destroy with live blocks after 2 threads\n");
}

static void test_fork(void) {
  tidal_heap_t *h = tidal_heap_create(NULL);
  void *keep = tidal_heap_malloc(h, 1000);
  memset(keep, 3, 1000);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    for (int i = 0; i < 1000; i++) free(tidal_heap_malloc(h, (size_t)(i * 1000 + 1)));
    if (((char *)keep)[999] != 3) _exit(3);
    free(keep);
    tidal_heap_destroy(h);
    _exit(0);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
  free(keep);
  tidal_heap_destroy(h);
  printf("fork: the heap works in the child\n");
}

static int alloc_inside(void *block, size_t usable, void *arg) {
  (void)block; (void)usable;
  tidal_heap_malloc(arg, 10);
  return 0;
}

static void test_visitor_misuse(void) {
  pid_t pid = fork();
  if (pid == 0) {
    tidal_heap_t *h = tidal_heap_create(NULL);
    tidal_heap_malloc(h, 10);
    tidal_heap_visit(h, alloc_inside, h);
    _exit(0);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
        "an allocation inside the visitor was not reported (status %d)", st);
  printf("visitor_misuse: reported\n");
}

int main(int argc, char **argv) {
  tt_expect_tidalloc();
  tt_init_seed(12);
  tt_watchdog(600, "api_heaps");
  const char *only = argc > 1 ? argv[1] : NULL;
  struct { const char *name; void (*fn)(void); } tests[] = {
    { "reset", test_reset }, { "visit", test_visit }, { "memfd", test_memfd }, { "meta", test_meta },
    { "fail", test_fail }, { "fork", test_fork }, { "visitor_misuse", test_visitor_misuse }, { "churn", test_churn },
  };
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
    if (!only || !strcmp(only, tests[i].name)) tests[i].fn();
  return 0;
}
