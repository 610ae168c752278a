/*
 * objcache.h — application object caches (the tidal_objcache_* API).
 *
 * What it is: fixed-size objects carved from slabs of exactly one 2 MiB,
 * 2 MiB-aligned mapping each (MADV_HUGEPAGE where THP allows), so that a
 * drain gives whole hugepages back rather than scattered pages. A cache keeps
 * its empty slabs for reuse until drained; a drain never takes the number of
 * free objects below the cache's `retain`. Live caches are on one list, with
 * no limit on their number; one cleaner (pressure.h), registered with the
 * first cache, drains them all at the application's level. One mutex per
 * cache, under the registry's.
 * What it is not: the exported symbols (api.c initialises, then calls here).
 * It may call: span, pressure (registry), pagemap, page (descriptors), meta,
 * conf, lock, safety, os.
 */
#ifndef TIDAL_OBJCACHE_H
#define TIDAL_OBJCACHE_H
#include "tidalloc.h"

tidal_objcache_t *objcache_create(const char *name, size_t size, size_t align, size_t retain);
void *objcache_alloc(tidal_objcache_t *c);
void objcache_free(tidal_objcache_t *c, void *p);
size_t objcache_drain(tidal_objcache_t *c, size_t want);
void objcache_destroy(tidal_objcache_t *c);
/* Every cache's lock: after huge, before page in the fork order. */
void objcache_prefork(void);
void objcache_postfork_parent(void);
void objcache_postfork_child(void);
#endif
