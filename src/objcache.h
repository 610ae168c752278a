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
#endif
