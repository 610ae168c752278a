/*
 * objcache.h — application object caches (tidal_objcache_*, public API).
 *
 * What it is: fixed-size objects carved from slabs of exactly one 2 MiB,
 * 2 MiB-aligned mapping each (MADV_HUGEPAGE where THP allows), so that a
 * drain gives whole hugepages back rather than scattered pages. A cache keeps
 * its empty slabs for reuse until drained; a drain never takes the number of
 * free objects below the cache's `retain`. Every cache is registered as a
 * cleaner (pressure.h) for its lifetime. One mutex per cache.
 * It may call: pressure (registry), pagemap, page (descriptors), lock, os, meta.
 */
#ifndef TIDAL_OBJCACHE_H
#define TIDAL_OBJCACHE_H
#include "tidalloc.h"

/* tidal_objcache_create without initialising the allocator (api.c does that). */
tidal_objcache_t *objcache_create(const char *name, size_t size, size_t align, size_t retain);
/* Every cache's lock: after huge, before page in the fork order. */
void objcache_prefork(void);
void objcache_postfork_parent(void);
void objcache_postfork_child(void);
#endif
