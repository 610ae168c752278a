/*
 * huge.h — allocations larger than the page layer's large limit, each in a
 * mapping of its own.
 *
 * What it is: mappings aligned to 2 MiB when they are at least that long (so
 * the kernel can back them with huge pages), registered in the pagemap by
 * their first page. realloc grows and shrinks them with mremap, which moves
 * page tables instead of copying. Freed mappings are kept in a small cache
 * (bounded in bytes and age) so a program that repeatedly allocates big
 * buffers reuses resident memory instead of faulting it in again.
 * What it is not: the page layer; huge mappings never hold small objects.
 * It may call: os, lock, pagemap, page (descriptor recycling), safety.
 */
#ifndef TIDAL_HUGE_H
#define TIDAL_HUGE_H

#include "span.h"

#define HUGE_CACHE_BYTES    ((size_t)64 << 20)          /* at most this much cached */
#define HUGE_CACHE_ENTRIES  8
#define HUGE_CACHE_AGE_NS   (10ull * 1000000000ull)     /* drop entries idle this long */

/* size > 0; align a power of two. NULL when the OS refuses. */
void *huge_alloc(size_t size, size_t align, bool zero);
void huge_free(span_t *s);
/* Resize in place or by mremap; returns the (possibly moved) pointer or NULL. */
void *huge_realloc(span_t *s, size_t new_size);
/* Unmap every cached mapping; returns bytes released. */
size_t huge_purge_all(void);

typedef struct huge_stats_s {
  size_t live_bytes, live_count, cached_bytes;
} huge_stats_t;
void huge_stats_get(huge_stats_t *out);

void huge_prefork(void);
void huge_postfork_parent(void);
void huge_postfork_child(void);

#endif
