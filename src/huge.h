/*
 * huge.h — allocations larger than 1 MiB, each in a mapping of its own.
 *
 * What it is: mappings aligned to 2 MiB when they are at least that long (so
 * the kernel can back them with huge pages), registered in the pagemap by
 * their first page. Freed mappings wait in a cache, where neighbours merge
 * and a request takes the best fit (splitting off the rest at a 2 MiB
 * boundary), so a program that repeatedly allocates big buffers reuses
 * resident memory instead of faulting it in again. When no entry is big
 * enough, the largest grows and the others give it their pages, moved by
 * mremap (resident, not copied), largest first, as far as the growth needs
 * them. For the same reason a
 * realloc that grows copies the block into a cached mapping that fits rather
 * than fault new pages in; when none fits, a block below HUGE_REMAP_MIN
 * moves to a new mapping (grow_by_move) and a bigger one grows by mremap,
 * which moves page tables instead of copying (and moves when the kernel
 * refuses). A realloc that shrinks caches the pages it cuts off. Fresh
 * mappings ask for transparent huge pages (see mapping_thp for when), and
 * so does a cached mapping grown for a new block; a realloc that moves a
 * block asks for them on the whole new mapping below HUGE_REMAP_MIN and on
 * the extents its copy fills from there, and one that grows by mremap
 * keeps the block's setting. The cache holds
 * at most what it takes to get back to the recent peak of huge memory in
 * use (never less than 8 MiB), and entries older than dirty_decay_ms are
 * unmapped (by the background thread while the program is idle).
 * What it is not: the page layer; huge mappings never hold small objects.
 * It may call: span, os, lock, pagemap, page (descriptor recycling), conf,
 * safety.
 */
#ifndef TIDAL_HUGE_H
#define TIDAL_HUGE_H

#include "span.h"

#define HUGE_CACHE_MIN_BYTES ((size_t)8 << 20)
#define HUGE_CACHE_ENTRIES   16
/* The size from which a realloc that grows a block, and finds no cached
 * mapping to copy it into, grows it by mremap rather than moving it. Below
 * it the move is the cheaper here: mremap faults the new pages in one by
 * one, and a mapping it moves has every page remapped, which on this VM
 * costs more than copying (bench/workloads/realloc_growth, buffers of
 * 1-8 MiB: 25k page faults before, 15k since). Above it mremap spares the
 * copy of a big block and the moment of holding it twice. */
#define HUGE_REMAP_MIN       ((size_t)16 << 20)
extern size_t huge_remap_min;   /* HUGE_REMAP_MIN; unit tests lower it */

/* size > 0; align a power of two. NULL when the OS refuses. */
void *huge_alloc(size_t size, size_t align, bool zero);
void huge_free(span_t *s);
/* Resize: a shrink caches the pages cut off; a growth copies into a cached
 * mapping that fits, or else moves the block (below HUGE_REMAP_MIN, or when
 * mremap fails) or grows it by mremap. Returns the (possibly moved) block,
 * whose span is still s, or NULL when the OS refused (s unchanged). */
void *huge_realloc(span_t *s, size_t new_size);
/* Whether a block of 2 MiB or more asks for transparent huge pages (the
 * thp option and the system's mode; in madvise mode, not a zeroed request:
 * see mapping_thp in huge.c). Secure mode's guarded blocks follow it too. */
bool huge_thp_wanted(bool zero);
/* Unmap every cached mapping; returns bytes released. */
size_t huge_purge_all(void);
/* Unmap cached mappings that aged out; returns when the next one will. */
uint64_t huge_deferred_work(uint64_t now);
/* Called without locks when a newly cached mapping will age out at due_ns. */
void huge_set_work_hook(void (*hook)(uint64_t due_ns));

typedef struct huge_stats_s {
  size_t live_bytes, live_count, cached_bytes, cached_count;
  uint64_t cache_hits, cache_misses, remaps;
  uint64_t donated_bytes;   /* cached pages moved into another entry grown for a request */
} huge_stats_t;
void huge_stats_get(huge_stats_t *out);

void huge_init(void);
void huge_prefork(void);
void huge_postfork_parent(void);
void huge_postfork_child(void);

#endif
