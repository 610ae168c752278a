/*
 * pagemap.h — address → span descriptor, in O(1), with no header in front of
 * user blocks.
 *
 * What it is: a two-level radix tree over the 48-bit user address space at
 * page granularity. The root (2^18 entries, in .bss) points to leaves that each
 * cover 1 GiB (2^18 pages × 8 bytes = a 2 MiB metadata mapping, touched only
 * where pages are in use). A slab registers every page it spans (interior
 * pointers resolve); a large or huge allocation registers its first page only,
 * so an interior pointer to it resolves to NULL (an invalid free).
 * Readers take no lock; leaves are created once and never removed.
 * What it is not: an owner of spans; it stores what the layers above give it.
 * It may call: span, meta, lock.
 */
#ifndef TIDAL_PAGEMAP_H
#define TIDAL_PAGEMAP_H

#include "span.h"

#define PAGEMAP_LEAF_SHIFT 30
#define PAGEMAP_ROOT_LEN   ((size_t)1 << (48 - PAGEMAP_LEAF_SHIFT))
#define PAGEMAP_LEAF_LEN   ((size_t)1 << (PAGEMAP_LEAF_SHIFT - TD_PAGE_SHIFT))

extern span_t **pagemap_root[PAGEMAP_ROOT_LEN];

/* Addresses at or above 2^48 are not user addresses: they alias (the index is
 * masked, not bounds-checked) and the caller's checks against the span's own
 * bounds reject them. */
TD_INLINE span_t *pagemap_lookup(const void *p) {
  uintptr_t a = (uintptr_t)p;
  uintptr_t r = (a >> PAGEMAP_LEAF_SHIFT) & (PAGEMAP_ROOT_LEN - 1);
  span_t **leaf = __atomic_load_n(&pagemap_root[r], __ATOMIC_RELAXED);
  if (TD_UNLIKELY(leaf == NULL)) return NULL;
  return __atomic_load_n(&leaf[(a >> TD_PAGE_SHIFT) & (PAGEMAP_LEAF_LEN - 1)], __ATOMIC_ACQUIRE);
}

/* Make sure leaves exist for [addr, addr+size). Returns true on success. */
bool pagemap_reserve(uintptr_t addr, size_t size);
/* Point `npages` pages from addr at s (leaves must exist). */
void pagemap_set(uintptr_t addr, size_t npages, span_t *s);

void pagemap_init(void);
void pagemap_prefork(void);
void pagemap_postfork_parent(void);
void pagemap_postfork_child(void);

#endif
