/*
 * page.h — the page layer: runs of 4 KiB pages carved from 2 MiB units, and
 * the hugepage-aware policies that decide when memory goes back to the system.
 *
 * What it is: the source of all slab and large memory. Address space is
 * reserved in regions (1 GiB when the OS allows) cut into 2 MiB-aligned units;
 * the default pager carves its regions from one arena (up to 64 GiB, aligned
 * to its size, the pagemap's window) before it asks the OS for more.
 * Each unit tracks, per page: active (in a run), dirty (free, still resident),
 * muzzy (free, MADV_FREE'd: the kernel may take it) or purged (neither; reads
 * as zero). Units are binned by their longest free range and, within a bin,
 * ordered by age, so an allocation goes to the oldest of the units that fit it
 * most tightly: memory packs densely and whole units empty out.
 *
 * Policies (driven by page_deferred_work, which the background thread calls
 * when due, or the allocation slow paths call inline):
 * - decay: dirty pages decay to muzzy over dirty_decay_ms, muzzy ones to
 *   purged over muzzy_decay_ms; dirty memory above dirty_mult × active is
 *   purged at once. Emptier, non-hugified units are purged first, each unit
 *   whole (one madvise per free range), outside the lock.
 * - hugify: a unit whose active share stays >= hugify_threshold for
 *   hugify_delay_ms gets MADV_HUGEPAGE (and MADV_COLLAPSE from the background
 *   thread); a hugified unit is dehugified before any of it is purged.
 * - guard_unused (default): regions are reserved PROT_NONE, their first unit
 *   stays so (a guard below the region's units), and each unit is opened
 *   (made read-write) from its start in OPEN_STEP steps as runs are carved,
 *   whole when it is or will be backed by a huge page; so a wild access far
 *   past or before a block lands on inaccessible pages more often than not.
 * - strict overcommit: regions are reserved PROT_NONE and units committed
 *   (opened whole) when first used; a purged empty unit is decommitted.
 * Pagers: the state above (units, bins, decay, counters, lock) is one
 * pager_t. The default pager reserves regions from the OS and serves every
 * thread heap; a heap with a page source (tidal_heap_create, uheap.h) has a
 * pager of its own whose units are 2 MiB each from the source's map, given
 * back through its unmap when the heap is destroyed and purged through its
 * purge (never, without one); no hugify, guard or commit policy applies to
 * a source's memory, and its runs are never taken to be zero. A unit knows
 * its pager, so freeing, growing, shrinking and holes need no pager
 * argument. Deferred work, purges, validation and fork cover every pager.
 * What it is not: a per-thread cache (heap.h) or the home of allocations
 * larger than 1 MiB (huge.h).
 * It may call: span, bitmap, os, lock, meta, pagemap, decay, conf, safety.
 */
#ifndef TIDAL_PAGE_H
#define TIDAL_PAGE_H

#include "bitmap.h"
#include "span.h"
#include "tidalloc.h"

/* Invariant of a unit u (unit_check, asserted in debug builds after every
 * change under the page lock):
 *   nactive = |active|,  ndirty = |dirty|,  nmuzzy = |muzzy|,  nheld = |held|
 *   active, dirty and muzzy are disjoint;  held and active are disjoint
 *   nactive + ndirty + nmuzzy + npurged = TD_UNIT_PAGES   (npurged: in no map; reads as zero)
 *   lfr = the longest run of pages in neither active nor held
 *   every held page < open_pages   (a hole may be taken back and written at any time)
 *   on the purge list  <=>  ndirty + nmuzzy > 0
 *   every active page < open_pages   (pages at and past it are PROT_NONE)
 *   in bin lfr         <=>  not busy
 *   page muzzy or purged  =>  no page of its OS page (os_page() / TD_PAGE
 *                             pages, aligned) was active when it was purged
 *                             (the kernel purges whole OS pages: 4-64 KiB)
 * And over all units: P.nactive = sum nactive (likewise dirty, muzzy, held).
 * held: holes (span.h) — pages inside a slab run that the slab gave back
 * while it keeps its live blocks. A held page is free for purging (dirty,
 * then muzzy, then purged, on the same decay as any free page, and it counts
 * toward the dirty ceiling) but never free for a new run: it still belongs to
 * its slab, which takes it back (page_hole_take) or frees the run. */
typedef struct pager_s pager_t;
typedef struct unit_s unit_t;
struct unit_s {
  uintptr_t base;
  pager_t *pager;             /* the pager it belongs to */
  bm512_t active;             /* page belongs to a run */
  bm512_t dirty;              /* free, possibly resident */
  bm512_t muzzy;              /* free, MADV_FREE'd */
  bm512_t held;               /* a hole of a slab run: free for purging, not for runs */
  uint16_t nactive, ndirty, nmuzzy, nheld;
  uint16_t lfr;               /* longest free range, in pages */
  uint16_t bin;               /* bin index, or UNIT_UNLISTED */
  uint8_t hugified;           /* MADV_HUGEPAGE applied */
  uint8_t busy;               /* taken out of the bins while being purged */
  uint8_t collapsing;         /* MADV_COLLAPSE in progress: not to be purged */
  uint8_t on_purge_list, on_dense_list;
  uint16_t open_pages;        /* pages [0, open_pages) are accessible (all of them
                               * unless guard_unused or strict overcommit) */
  uint64_t serial;            /* age: lower is older */
  unit_t *all_next;           /* every unit ever carved */
  uint64_t dense_since_ns;    /* when it last became dense (0: not dense) */
  unit_t *ph_child, *ph_next, *ph_prev;      /* pairing heap of its bin */
  unit_t *purge_next, *purge_prev;           /* units with dirty or muzzy pages */
  unit_t *dense_next, *dense_prev;           /* dense units not yet hugified */
};

#define UNIT_UNLISTED 0xffff

void page_init(void);

/* A run of npages (1..512) whose first page is a multiple of align_pages
 * (a power of two <= 512) within its unit. Returns a fresh descriptor with
 * base, bytes, unit, page_index and zeroed set, or NULL when out of memory. */
span_t *page_alloc(size_t npages, size_t align_pages);
/* Give a run back. The descriptor is recycled. */
void page_free(span_t *s);
/* Grow a run in place to new_npages if the following pages are free. */
bool page_grow(span_t *s, size_t new_npages);
/* Shrink a run in place to new_npages (>= 1). */
void page_shrink(span_t *s, size_t new_npages);
/* Whether run s is of the default pager (the OS's memory). */
bool page_of_default(const span_t *s);
/* The run cache (runcache.h) registers how many pages of the default
 * pager's runs it holds (a lock-free read): active in the page layer's
 * books, they count as dirty for the ceiling. */
void page_set_cached_source(size_t (*pages)(void));
/* The default pager's dirty ceiling now, in pages (tests). */
size_t page_dirty_ceiling(void);
/* Descriptor recycling for span users outside the page layer (huge). */
span_t *page_span_get(void);
void page_span_put(span_t *s);

/* Holes (span.h). Whether slab s may give pages back as holes now: its
 * unit is not hugified (a hugified unit stays whole unless force, memory
 * being short). */
bool page_hole_allowed(const span_t *s, bool force);
/* Pages `pages` of slab s (bit i: page i of the run), active until now and
 * none of whose blocks is on a list any more, become holes: free (dirty)
 * for the decay and the ceiling, still the slab's. Returns true when
 * deferred work may be due: the caller, done giving, calls page_work_kick. */
bool page_hole_give(span_t *s, const uint64_t pages[SPAN_HOLE_WORDS]);
void page_work_kick(pager_t *P);   /* P: the slab's pager (NULL: the default) */
/* Take holes `pages` of s back (active again; their contents are stale or
 * zero). False, changing nothing, while the unit is being purged. */
bool page_hole_take(span_t *s, const uint64_t pages[SPAN_HOLE_WORDS]);

/* Do the purging and hugifying that is due at `now`; returns when the next
 * work is due (UINT64_MAX: none pending). may_collapse: the caller (the
 * background thread) may spend time in MADV_COLLAPSE. */
uint64_t page_deferred_work(uint64_t now, bool may_collapse);
/* The background thread registers this: called without locks when work is
 * due sooner than the time it was told (UINT64_MAX means "nothing"). */
void page_set_work_hook(void (*hook)(uint64_t due_ns));
/* Purge every free page now (MADV_DONTNEED); returns bytes purged. */
size_t page_purge_all(void);

typedef struct page_stats_s {
  size_t mapped;              /* address space reserved for units */
  size_t arena_reserved;      /* address space of the arena not carved into regions yet (not in mapped) */
  size_t units;               /* units carved from regions */
  size_t active;              /* bytes in runs */
  size_t dirty;               /* free bytes, resident */
  size_t muzzy;               /* free bytes, MADV_FREE'd */
  size_t holes;               /* bytes of slab pages given back as holes (their state is in dirty/muzzy or purged) */
  size_t holes_resident;      /* of which not yet purged at all (in dirty) */
  uint64_t holes_given, holes_taken;  /* hole pages given and taken back, ever */
  size_t hugified_units;
  uint64_t purged_lazy_bytes, purged_now_bytes;
  uint64_t purge_passes, hugifies, dehugifies, collapses, collapse_failures, decommits;
  uint64_t opens;             /* steps of address space made accessible (guard_unused) */
} page_stats_t;
void page_stats_get(page_stats_t *out);
/* Fill *out and call fn(arg) while the page lock is held, so that no run or
 * slab changes hands meanwhile (statistics snapshots). */
void page_stats_locked(page_stats_t *out, void (*fn)(void *), void *arg);

/* ---- pagers of heaps with page sources ---- */
/* A pager on src (copied; map must be set). meta: where its descriptors
 * (the pager itself, units, spans) come from, zeroed (NULL: metadata memory,
 * recycled through the spare lists when it is destroyed). */
pager_t *pager_create(const tidal_page_source_t *src, void *(*meta)(void *arg, size_t size), void *meta_arg);
/* Every run must have been freed: gives every unit back (unmap), and its
 * descriptors to the spares. Waits for a deferred-work pass on it to end. */
void pager_destroy(pager_t *P);
span_t *page_alloc_in(pager_t *P, size_t npages, size_t align_pages);   /* P NULL: the default pager */
span_t *page_span_get_in(pager_t *P);
void page_span_put_in(pager_t *P, span_t *s);
/* fn for each run (slab or large) of P, found through the pagemap; the
 * caller keeps runs from changing hands meanwhile; fn may free the run. */
void pager_each_run(pager_t *P, void (*fn)(span_t *s, void *arg), void *arg);
typedef struct pager_stats_s {
  page_stats_t pages;
  uint64_t maps, map_failures, unmaps, purges;   /* calls of the source's hooks */
} pager_stats_t;
void pager_stats(pager_t *P, pager_stats_t *out);

/* Tier-3 validator: recompute every unit's counters and bins; aborts on error. */
void page_validate(void);

void page_prefork(void);
void page_postfork_parent(void);
void page_postfork_child(void);

#endif
