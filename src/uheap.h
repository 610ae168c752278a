/*
 * uheap.h — heaps with page sources: tidal_heap_t (docs/heaps.md).
 *
 * What it is: a heap the program creates on memory a page source supplies
 * (tidal_page_source_t: map, unmap, purge), freed whole by reset or destroy.
 * Each has its own pager (page.h: units of 2 MiB from the source's map) for
 * slabs and large runs, a HEAP_USER heap_t (heap.h) for its size-class
 * slabs, and its huge blocks (above LARGE_RUN_MAX) as mappings of their own
 * from the source. One lock per heap serialises everything: allocation,
 * every free of its blocks (from any thread: the lock stands in for the
 * owning thread, so no block of it ever waits in another thread's buffers,
 * which is what makes destroy safe while threads hold cached frees of
 * other heaps), reset, destroy, the visitor and its statistics.
 * metadata_use_source: the heap's descriptors (this structure, its pager,
 * units, spans) come from 2 MiB metadata chunks mapped from the source; the
 * pagemap, an index shared by every heap, does not. Without it they come
 * from metadata memory and go to the spare lists (meta.h) at destroy.
 * Invariant of a heap H (uheap_validate, under H's lock):
 *   H.huge_live = sum of bytes of the spans on H.huge, each SPAN_HUGE with
 *                 owner = &H.heap, and its first page maps to it
 *   every run of H's pager is a slab or large span with owner = &H.heap
 *   meta_bump <= meta_end, meta_end - meta_bump >= UHEAP_META_RESERVE
 *                 after uheap_meta_reserve succeeded (own metadata only)
 * What it is not: a thread cache: allocations take the heap's lock; nor a
 * place for the hardened mode's checks or the profiler's samples.
 * It may call: heap, page, pagemap, span, sizeclass, large (the run limit, page runs),
 * meta, lock, safety, os.
 */
#ifndef TIDAL_UHEAP_H
#define TIDAL_UHEAP_H

#include "heap.h"
#include "tidalloc.h"

/* Metadata chunks (metadata_use_source): one 2 MiB map each; a new one is
 * mapped, with no page lock held, when fewer than UHEAP_META_RESERVE bytes
 * are left, so descriptors taken under the page lock never need a map. */
#define UHEAP_META_RESERVE ((size_t)16 << 10)

const tidal_page_source_t *uheap_source_default(void);
tidal_heap_t *uheap_create(const tidal_heap_config_t *config);
/* size > 0; align 0 or a power of two. NULL (no errno set) on failure. */
void *uheap_alloc(tidal_heap_t *h, size_t size, size_t align, bool zero);
/* Whether s (from the pagemap) is a block of a heap with a page source. */
/* (Only a HEAP_USER heap has a pager, set once: a thread heap's state
 * changes as its thread exits, its pager never does.) */
TD_INLINE bool uheap_owns(const span_t *s) { return s->owner && s->owner->pager != NULL; }
/* Free p, a checked block of span s of a heap (uheap_owns). fn names the caller. */
void uheap_free(span_t *s, void *p, const char *fn);
/* realloc of p (span s, uheap_owns) into heap h (NULL: p's own heap). */
void *uheap_realloc(tidal_heap_t *h, span_t *s, void *p, size_t size);
void uheap_reset(tidal_heap_t *h);
void uheap_destroy(tidal_heap_t *h);
int uheap_visit(tidal_heap_t *h, int (*fn)(void *block, size_t usable, void *arg), void *arg);
int uheap_stats(tidal_heap_t *h, tidal_heap_stats_t *out);
/* fn for each heap's statistics (statistics documents). */
void uheap_each_stats(void (*fn)(const tidal_heap_stats_t *st, void *arg), void *arg);
/* Tier-3 validator of h (debug builds run it at reset and destroy). */
void uheap_validate(tidal_heap_t *h);

void uheap_init(void);
void uheap_prefork(void);
void uheap_postfork_parent(void);
void uheap_postfork_child(void);

#endif
