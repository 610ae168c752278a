/*
 * meta.h — the metadata allocator.
 *
 * What it is: a bump allocator for the allocator's own descriptors (spans,
 * units, heaps, pagemap leaves), on mappings of its own that never hold user
 * memory, so metadata never sits inside a user hugepage and is counted
 * separately. Memory from meta_alloc is zeroed and never returned to the OS;
 * fixed-size descriptors are recycled through meta_pool_t free lists.
 * What it is not: a general allocator; it cannot free.
 * It may call: os, lock, conf (guard pages in the hardened mode).
 */
#ifndef TIDAL_META_H
#define TIDAL_META_H

#include "util.h"

/* Zeroed memory aligned to `align` (<= page), or NULL when the OS refuses. */
void *meta_alloc(size_t size, size_t align);
/* A large zeroed region mapped on its own (e.g. a pagemap leaf). */
void *meta_alloc_mapping(size_t size);

/* A free list of same-size descriptors. Not locked: the owner serializes.
 * When the list is empty a descriptor comes from refill(arg, size) if set
 * (a heap whose metadata comes from its page source), else from the spare
 * lists, else from meta_alloc. */
typedef struct meta_pool_s {
  void *free;
  size_t size;
  void *(*refill)(void *arg, size_t size);   /* zeroed memory or NULL */
  void *arg;
} meta_pool_t;

void *meta_pool_get(meta_pool_t *pool);          /* zeroed, or NULL */
void meta_pool_put(meta_pool_t *pool, void *obj);

/* Spare descriptors: metadata of heaps that were destroyed, kept by size
 * (at most META_SPARE_SIZES distinct sizes) for the next heap, since
 * metadata memory is never unmapped. meta_spare_get returns zeroed memory
 * (a spare one, else meta_alloc's, cache-line aligned) or NULL. */
#define META_SPARE_SIZES 8
void *meta_spare_get(size_t size);
void meta_spare_put(void *obj, size_t size);
/* Every descriptor on pool's free list goes to the spares (pools whose
 * descriptors are metadata memory, not a heap's source). */
void meta_pool_spill(meta_pool_t *pool);

/* Bytes mapped for metadata chunks, bytes handed out from them, and bytes of
 * separate mappings (meta_alloc_mapping: address space, touched sparsely). */
void meta_stats(size_t *mapped, size_t *allocated, size_t *separate);

void meta_init(void);
void meta_prefork(void);
void meta_postfork_parent(void);
void meta_postfork_child(void);

#endif
