/*
 * runcache.h — a sharded cache of recently freed page runs, in front of the
 * page layer, for large blocks of up to 256 KiB.
 *
 * What it is: up to RC_SHARDS shards, one per CPU (the CPU a thread runs on
 * picks the shard, so two threads meet on a shard's lock only when one was
 * preempted holding it), each with its own lock and at most RC_ENTRIES runs
 * and run_cache bytes. A large block's run, freed (after the large
 * quarantine), waits here whole: its descriptor kept, its pages active in
 * the page layer's books. The next large block of n pages on that CPU takes
 * the smallest cached run of n to n + n/RC_FIT_DIV pages without touching
 * the page lock; the block's usable size is then the run's. A put into a
 * full shard gives the shard's oldest runs to the page layer.
 * Its memory counts as dirty memory: the page layer's ceiling counts the
 * cached pages as dirty and not as active (it reads the shards' byte counts
 * without their locks, page_set_cached_source); runs cached
 * longer than RC_AGE_NS go to the page layer (where their pages decay like
 * any free page) from the background thread's rounds, or from the next put
 * without one; pressure drains, tidal_purge and malloc_trim give every run
 * back first (runcache_flush).
 *
 *   shard s:  lock | n | pages[0..n) | runs[0..n)   oldest first
 *   Invariant: n <= RC_ENTRIES;  bytes = sum runs[i]->bytes <= cap;
 *              pages[i] = runs[i]->bytes / TD_PAGE in [1, RC_MAX_PAGES];
 *              every runs[i] is SPAN_RELEASED, of the default pager, not zeroed;
 *              runs[i]->stamp_ns <= runs[i+1]->stamp_ns  (when it was cached)
 *
 * What it is not: a cache of huge mappings (huge.c) or of slabs (heap.c's
 * span cache); not for runs of heaps with page sources, nor for aligned
 * requests; not a quarantine (large.c's comes first).
 * It may call: span, page, lock, os, conf.
 */
#ifndef TIDAL_RUNCACHE_H
#define TIDAL_RUNCACHE_H

#include "span.h"

#define RC_SHARDS     8                          /* at most; one per CPU below that */
#define RC_ENTRIES    32                         /* runs per shard */
#define RC_MAX_PAGES  ((size_t)(256 << 10) >> TD_PAGE_SHIFT)   /* runs of up to 256 KiB */
#define RC_FIT_DIV    4                          /* a request of n pages takes up to n + n/4 */
#define RC_AGE_NS     1000000000ull              /* cached runs older than 1 s go back */

/* A cached run of npages..npages + npages/RC_FIT_DIV pages (its descriptor,
 * released, its contents stale), or NULL. npages > RC_MAX_PAGES: NULL. */
span_t *runcache_take(size_t npages);
/* Keep freed run s (released, of the default pager); false when it does not
 * fit (too big, the cache is off): the caller gives it to the page layer. */
bool runcache_put(span_t *s);
/* Give every cached run to the page layer; returns bytes. */
size_t runcache_flush(void);
/* Give runs cached longer than RC_AGE_NS back; returns when the next one
 * will be (UINT64_MAX: none cached). */
uint64_t runcache_deferred_work(uint64_t now);
/* Called (without locks) with the time work becomes due, when a run is
 * cached into an empty shard; the background thread registers it. */
void runcache_set_work_hook(void (*hook)(uint64_t due_ns));

typedef struct runcache_stats_s {
  size_t bytes;
  uint64_t hits, misses;
} runcache_stats_t;
void runcache_stats_get(runcache_stats_t *out);

/* Every shard, by the whole-structure invariant above (tests). */
void runcache_validate(void);

void runcache_init(void);
void runcache_prefork(void);
void runcache_postfork_parent(void);
void runcache_postfork_child(void);

#endif
