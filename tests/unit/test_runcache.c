/* The run cache (runcache.c) on the default pager's real runs, with a fake
 * clock. Runs with TIDALLOC_CONF="background_thread:false,run_cache:1m"
 * (set by CTest): no work hook unless a case installs one, and a shard holds
 * at most 1 MiB. The thread is pinned to one CPU, so every put and take of
 * a case meets the same shard. Runs of the test's own large blocks never
 * reach the cache: the test makes none. */
#include "conf.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"
#include "runcache.h"
#include "unit.h"
#include <sched.h>

#define MS 1000000ull
static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

/* A released run of n pages, as large_free leaves one. */
static span_t *run(size_t n) {
  span_t *s = page_alloc(n, 1);
  CHECK(s != NULL);
  s->kind = SPAN_RELEASED;
  return s;
}

static runcache_stats_t rs(void) { runcache_stats_t st; runcache_stats_get(&st); return st; }

static void empty(void) {
  runcache_flush();
  CHECK_EQ(rs().bytes, 0);
}

/* Best fit within n .. n + n/4 pages; an exact fit first; nothing outside. */
TEST(best_fit_within_a_quarter) {
  empty();
  runcache_stats_t st0 = rs();
  span_t *a = run(10), *b = run(12), *c = run(16);
  CHECK(runcache_put(a) && runcache_put(b) && runcache_put(c));
  CHECK_EQ(rs().bytes, 38 * TD_PAGE);
  VALIDATE(runcache_validate());
  CHECK(runcache_take(10) == a);        /* exact */
  CHECK(runcache_take(11) == b);        /* 11..13 */
  CHECK(runcache_take(9) == NULL);      /* 9..11: only c (16) is left */
  CHECK(runcache_take(13) == c);        /* 13..16 */
  CHECK(runcache_take(10) == NULL);
  CHECK_EQ(rs().hits, st0.hits + 3);
  CHECK_EQ(rs().misses, st0.misses + 2);
  CHECK(runcache_take(RC_MAX_PAGES + 1) == NULL);
  CHECK(!a->zeroed && a->kind == SPAN_RELEASED);   /* the caller makes it a block */
  page_free(a); page_free(b); page_free(c);
}

/* Among runs that fit as well, the newest (the warmest) goes first. */
TEST(newest_first) {
  empty();
  span_t *a = run(8), *b = run(8);
  CHECK(runcache_put(a) && runcache_put(b));
  CHECK(runcache_take(8) == b);
  CHECK(runcache_take(8) == a);
  page_free(a); page_free(b);
}

/* Bounds: run_cache bytes per shard (the oldest leave, to the page layer),
 * RC_ENTRIES runs, RC_MAX_PAGES per run. */
TEST(bounds) {
  empty();
  CHECK_EQ(opt.run_cache, 1 << 20);
  size_t per = RC_MAX_PAGES * TD_PAGE, fit = (size_t)opt.run_cache / per;
  span_t *r[8];
  CHECK(fit + 1 <= 8);
  for (size_t i = 0; i <= fit; i++) CHECK(runcache_put(r[i] = run(RC_MAX_PAGES)));
  CHECK_EQ(rs().bytes, fit * per);                  /* r[0] went back */
  VALIDATE(runcache_validate());
  for (size_t i = fit; i >= 1; i--) {
    CHECK(runcache_take(RC_MAX_PAGES) == r[i]);
    page_free(r[i]);
  }
  CHECK(runcache_take(RC_MAX_PAGES) == NULL);

  span_t *big = run(RC_MAX_PAGES + 1);
  CHECK(!runcache_put(big));                        /* the caller frees it */
  page_free(big);

  span_t *m[RC_ENTRIES + 8];
  for (int i = 0; i < RC_ENTRIES + 8; i++) CHECK(runcache_put(m[i] = run(7)));
  CHECK_EQ(rs().bytes, RC_ENTRIES * 7 * TD_PAGE);  /* 32 runs of 28 KiB: under the byte cap */
  VALIDATE(runcache_validate());
  for (int i = RC_ENTRIES + 7; i >= 8; i--) {
    CHECK(runcache_take(7) == m[i]);
    page_free(m[i]);
  }
  CHECK(runcache_take(7) == NULL);
}

/* Age: the deferred work gives back what was cached RC_AGE_NS ago and says
 * when the next run will be due; without a work hook, a put does it. */
TEST(ageing) {
  empty();
  uint64_t t0 = fake_now;
  span_t *a = run(20);
  CHECK(runcache_put(a));
  fake_now = t0 + 500 * MS;
  span_t *b = run(21);
  CHECK(runcache_put(b));
  CHECK_EQ(runcache_deferred_work(t0 + RC_AGE_NS - 1), t0 + RC_AGE_NS);
  CHECK_EQ(rs().bytes, 41 * TD_PAGE);
  CHECK_EQ(runcache_deferred_work(t0 + RC_AGE_NS), t0 + 500 * MS + RC_AGE_NS);
  CHECK_EQ(rs().bytes, 21 * TD_PAGE);               /* a went back */
  CHECK_EQ(runcache_deferred_work(t0 + 500 * MS + RC_AGE_NS), UINT64_MAX);
  CHECK_EQ(rs().bytes, 0);

  fake_now = t0 + 10 * RC_AGE_NS;
  span_t *c = run(22);
  CHECK(runcache_put(c));
  fake_now += RC_AGE_NS;
  span_t *d = run(23);
  CHECK(runcache_put(d));                           /* no hook: c leaves now */
  CHECK_EQ(rs().bytes, 23 * TD_PAGE);
  CHECK(runcache_take(22) == d);                    /* 22..27 */
  page_free(d);
}

/* The work hook hears of a run cached into an empty shard, with its due time. */
static int nhook;
static uint64_t hook_due;
static void hook(uint64_t due) { nhook++; hook_due = due; }
TEST(work_hook) {
  empty();
  runcache_set_work_hook(hook);
  nhook = 0;
  span_t *a = run(30), *b = run(31);
  CHECK(runcache_put(a));
  CHECK_EQ(nhook, 1);
  CHECK_EQ(hook_due, fake_now + RC_AGE_NS);
  fake_now += 2 * RC_AGE_NS;
  CHECK(runcache_put(b));                           /* not empty: no call, and a stays (the hook's work) */
  CHECK_EQ(nhook, 1);
  CHECK_EQ(rs().bytes, 61 * TD_PAGE);
  runcache_set_work_hook(NULL);
  CHECK_EQ(runcache_flush(), 61 * TD_PAGE);
  CHECK_EQ(rs().bytes, 0);
}

/* Cached pages count as dirty for the page layer's ceiling, not as active. */
TEST(ceiling_counts_cached) {
  empty();
  size_t c0 = page_dirty_ceiling();
  span_t *a = run(40);
  size_t c1 = page_dirty_ceiling();                 /* a active: the ceiling may only rise */
  CHECK(c1 >= c0);
  CHECK(runcache_put(a));
  CHECK_EQ(page_dirty_ceiling(), c0 - 40);          /* the 32 MiB floor, less the cached pages */
  CHECK_EQ(runcache_flush(), 40 * TD_PAGE);
  CHECK_EQ(page_dirty_ceiling(), c0);
}

int main(int argc, char **argv) {
  free(malloc(1));                       /* initialise with the real hooks */
  CHECK(!opt.background_thread);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET((int)os_cpu(), &one);
  CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
  static os_hooks_t h;
  h = os_hooks_default;
  h.now_ns = fake_clock;
  fake_now = os_hooks_default.now_ns() + 1000 * MS;
  os_hooks_set(&h);
  int rc = UNIT_RUN(argc, argv);
  os_hooks_set(NULL);
  return rc;
}
