/*
 * page.h — the page layer: runs of 4 KiB pages carved from 2 MiB units.
 *
 * What it is: the source of all slab and large memory. Address space is
 * reserved in large regions (1 GiB when the OS allows), cut into 2 MiB-aligned
 * units. Each unit tracks, per page, whether it is active (in a run) or dirty
 * (free but possibly holding data / resident). Units are binned by their
 * longest free range; an allocation takes the unit with the smallest longest
 * free range that fits, so memory packs densely into few hugepages and wholly
 * free units can be given back whole. Runs never cross a unit, so the largest
 * run is one unit (2 MiB).
 * Purging: free pages are dirty until purged; wholly empty units beyond a
 * small reserve are purged at once, and page_purge_all() purges everything.
 * What it is not: a per-thread cache (heap.h caches spans) or the home of
 * allocations larger than a unit (huge.h).
 * It may call: os, lock, meta, pagemap, safety.
 */
#ifndef TIDAL_PAGE_H
#define TIDAL_PAGE_H

#include "bitmap.h"
#include "span.h"

typedef struct unit_s {
  uintptr_t base;
  bm512_t active;             /* page belongs to a run */
  bm512_t dirty;              /* free page that may hold data (not known zero) */
  uint16_t nactive;
  uint16_t ndirty;
  uint16_t lfr;               /* longest free range, in pages */
  uint16_t bin;               /* psset bin, or UNIT_UNLISTED */
  struct unit_s *next, *prev; /* psset bin list */
} unit_t;

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
/* Descriptor recycling for span users outside the page layer (huge). */
span_t *page_span_get(void);
void page_span_put(span_t *s);

/* Purge every dirty page now; returns bytes purged. */
size_t page_purge_all(void);

typedef struct page_stats_s {
  size_t mapped;              /* address space reserved for units */
  size_t units;               /* units carved from regions */
  size_t active;              /* bytes in runs */
  size_t dirty;               /* free bytes not yet purged */
  uint64_t purged_bytes;      /* total purged */
} page_stats_t;
void page_stats_get(page_stats_t *out);

/* Tier-3 validator: recompute every unit's counters and bins; aborts on error. */
void page_validate(void);

void page_prefork(void);
void page_postfork_parent(void);
void page_postfork_child(void);

#endif
