#include "runcache.h"
#include "conf.h"
#include "lock.h"
#include "os.h"
#include "page.h"

#include <string.h>

typedef struct rc_shard_s {
  td_mutex_t lock;
  uint32_t n;                      /* runs cached, oldest first */
  uint16_t pages[RC_ENTRIES];      /* runs[i]->bytes in pages: the fit is scanned here */
  span_t *runs[RC_ENTRIES];
  size_t bytes;
  uint64_t hits, misses;
} TD_ALIGNED(TD_CACHELINE) rc_shard_t;

static rc_shard_t shards[RC_SHARDS];
static unsigned nshards;           /* 0: the cache is off (run_cache:0) */
static size_t shard_cap;           /* opt.run_cache, read once */
static void (*work_hook)(uint64_t);

/* Pages cached, for the page layer's ceiling: a snapshot without locks. */
static size_t cached_pages(void) {
  size_t b = 0;
  for (unsigned k = 0; k < nshards; k++) b += __atomic_load_n(&shards[k].bytes, __ATOMIC_RELAXED);
  return b >> TD_PAGE_SHIFT;
}

void runcache_init(void) {
  shard_cap = (size_t)opt.run_cache;
  nshards = shard_cap >= TD_PAGE ? TD_MIN(os_ncpus(), (unsigned)RC_SHARDS) : 0;
  for (unsigned i = 0; i < RC_SHARDS; i++) {
    shards[i].lock = (td_mutex_t)TD_MUTEX_INIT("run_cache", RANK_RUNCACHE);
    if (i < nshards) mutex_register(&shards[i].lock);
  }
  if (nshards) page_set_cached_source(cached_pages);
}

static rc_shard_t *shard_here(void) { return &shards[os_cpu() % nshards]; }

/* Remove entry i of shard c (under its lock), keeping the age order. */
static span_t *shard_remove(rc_shard_t *c, uint32_t i) {
  span_t *s = c->runs[i];
  uint32_t rest = c->n - i - 1;
  memmove(&c->runs[i], &c->runs[i + 1], rest * sizeof c->runs[0]);
  memmove(&c->pages[i], &c->pages[i + 1], rest * sizeof c->pages[0]);
  c->n--;
  __atomic_store_n(&c->bytes, c->bytes - s->bytes, __ATOMIC_RELAXED);   /* read without the lock: cached_pages */
  return s;
}

span_t *runcache_take(size_t npages) {
  if (nshards == 0 || npages > RC_MAX_PAGES) return NULL;
  size_t most = npages + npages / RC_FIT_DIV;
  rc_shard_t *c = shard_here();
  mutex_lock(&c->lock);
  uint32_t best = UINT32_MAX;
  for (uint32_t i = c->n; i-- > 0;) {   /* newest first: its pages are the warmest */
    size_t p = c->pages[i];
    if (p >= npages && p <= most && (best == UINT32_MAX || p < c->pages[best])) {
      best = i;
      if (p == npages) break;
    }
  }
  span_t *s = NULL;
  if (best != UINT32_MAX) {
    s = shard_remove(c, best);
    c->hits++;
  } else {
    c->misses++;
  }
  mutex_unlock(&c->lock);
  return s;
}

/* Give a list of runs (linked through next) to the page layer. */
static size_t give_back(span_t *s) {
  size_t n = 0;
  while (s) {
    span_t *next = s->next;
    n += s->bytes;
    page_free(s);
    s = next;
  }
  return n;
}

bool runcache_put(span_t *s) {
  size_t npages = s->bytes >> TD_PAGE_SHIFT;
  if (nshards == 0 || npages > RC_MAX_PAGES || s->bytes > shard_cap) return false;
  TD_DASSERT(s->kind == SPAN_RELEASED && page_of_default(s));
  s->zeroed = false;
  rc_shard_t *c = shard_here();
  span_t *out = NULL;
  mutex_lock(&c->lock);
  uint64_t now = os_now_ns();      /* under the lock: the shard stays in age order */
  s->stamp_ns = now;
  bool was_empty = c->n == 0;
  /* Room: the oldest leave, and so do runs past their age when no
   * background thread comes for them. */
  while (c->n > 0 && (c->n == RC_ENTRIES || c->bytes + s->bytes > shard_cap ||
                      (!work_hook && c->runs[0]->stamp_ns + RC_AGE_NS <= now))) {
    span_t *o = shard_remove(c, 0);
    o->next = out;
    out = o;
  }
  c->runs[c->n] = s;
  c->pages[c->n] = (uint16_t)npages;
  c->n++;
  __atomic_store_n(&c->bytes, c->bytes + s->bytes, __ATOMIC_RELAXED);
  TD_DASSERT(c->n <= RC_ENTRIES && c->bytes <= shard_cap);
  mutex_unlock(&c->lock);
  give_back(out);
  void (*hook)(uint64_t) = __atomic_load_n(&work_hook, __ATOMIC_ACQUIRE);
  if (was_empty && hook) hook(now + RC_AGE_NS);
  return true;
}

/* Take out of every shard the runs cached at or before `before` (all of
 * them: UINT64_MAX); *next: the oldest stamp left plus the age. */
static span_t *collect(uint64_t before, uint64_t *next) {
  span_t *out = NULL;
  uint64_t nx = TD_NEVER;
  for (unsigned k = 0; k < nshards; k++) {
    rc_shard_t *c = &shards[k];
    mutex_lock(&c->lock);
    while (c->n > 0 && c->runs[0]->stamp_ns <= before) {
      span_t *o = shard_remove(c, 0);
      o->next = out;
      out = o;
    }
    if (c->n > 0) nx = TD_MIN(nx, c->runs[0]->stamp_ns + RC_AGE_NS);
    mutex_unlock(&c->lock);
  }
  if (next) *next = nx;
  return out;
}

size_t runcache_flush(void) { return give_back(collect(TD_NEVER, NULL)); }

uint64_t runcache_deferred_work(uint64_t now) {
  uint64_t next;
  give_back(collect(now >= RC_AGE_NS ? now - RC_AGE_NS : 0, &next));
  return next;
}

void runcache_set_work_hook(void (*hook)(uint64_t)) { __atomic_store_n(&work_hook, hook, __ATOMIC_RELEASE); }

void runcache_stats_get(runcache_stats_t *out) {
  *out = (runcache_stats_t){ 0, 0, 0 };
  for (unsigned k = 0; k < nshards; k++) {
    rc_shard_t *c = &shards[k];
    mutex_lock(&c->lock);
    out->bytes += c->bytes;
    out->hits += c->hits;
    out->misses += c->misses;
    mutex_unlock(&c->lock);
  }
}

void runcache_validate(void) {
  for (unsigned k = 0; k < nshards; k++) {
    rc_shard_t *c = &shards[k];
    mutex_lock(&c->lock);
    size_t bytes = 0;
    TD_CHECK(c->n <= RC_ENTRIES, "run cache: too many runs", c, "runcache_validate");
    for (uint32_t i = 0; i < c->n; i++) {
      span_t *s = c->runs[i];
      TD_CHECK(s->kind == SPAN_RELEASED && !s->zeroed && page_of_default(s), "run cache: a run's state", (void *)s->base,
               "runcache_validate");
      TD_CHECK(c->pages[i] == s->bytes >> TD_PAGE_SHIFT && c->pages[i] >= 1 && c->pages[i] <= RC_MAX_PAGES,
               "run cache: a run's pages", (void *)s->base, "runcache_validate");
      TD_CHECK(i == 0 || c->runs[i - 1]->stamp_ns <= s->stamp_ns, "run cache: age order", (void *)s->base, "runcache_validate");
      bytes += s->bytes;
    }
    TD_CHECK(bytes == c->bytes && bytes <= shard_cap, "run cache: bytes", c, "runcache_validate");
    mutex_unlock(&c->lock);
  }
}

void runcache_prefork(void) {
  for (unsigned k = 0; k < nshards; k++) mutex_lock(&shards[k].lock);
}
void runcache_postfork_parent(void) {
  for (unsigned k = nshards; k-- > 0;) mutex_unlock(&shards[k].lock);
}
void runcache_postfork_child(void) {
  for (unsigned k = 0; k < nshards; k++) mutex_postfork_child(&shards[k].lock);
}
