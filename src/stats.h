/*
 * stats.h — statistics: one snapshot of everything the layers count, one
 * schema that describes it, and what the schema drives.
 *
 * What it is: stats_collect() merges the per-heap counters (kept on the fast
 * paths without locks or atomics) and reads the page layer, huge cache,
 * metadata, syscall, mutex and pressure counters. While it merges it holds
 * the page lock, so no slab or run changes hands meanwhile: the snapshot keeps
 * allocated <= active <= resident <= mapped. One table in stats.c names every
 * field once (JSON key, control name, type, where to read it, unit) and
 * drives the JSON document, the text rendering (stats_print, through the
 * emitter, on the stack and in chunks; it never allocates) and the "stats.*"
 * control names (stats_find). A new counter is one line in that table.
 * What it is not: the control namespace itself (ctl.h: locking, epochs,
 * lengths, error codes) or a policy.
 * It may call: uheap (heaps with page sources), heap, huge, runcache, page, pressure, prof, secure, background, meta, lock,
 * os, conf, safety (assertions), sizeclass (through heap.h), emitter.
 */
#ifndef TIDAL_STATS_H
#define TIDAL_STATS_H

#include "heap.h"
#include "huge.h"
#include "os.h"
#include "page.h"
#include "pressure.h"
#include "prof.h"

#define STATS_MAX_MUTEXES 16

typedef struct stats_class_s {
  uint64_t size, requests, frees, live, slabs, capacity;   /* capacity: blocks in its slabs */
} stats_class_t;

typedef struct stats_mutex_s {
  const char *name;
  uint64_t acquisitions, contended, wait_ns;
  uint64_t hold_ns, hold_max_ns;   /* time held in all, and the longest hold */
} stats_mutex_t;

/* Where free memory waits outside the page layer's free pages (bytes), and
 * the hole passes (heap.h). */
typedef struct stats_caches_s {
  size_t span_cache;           /* empty slabs kept by thread heaps */
  size_t pooled_slabs;         /* slabs of pooled heaps (exited threads): live blocks, free blocks, holes */
  size_t remote_buffers;       /* blocks freed by a thread, waiting in its outgoing buffers for their owner */
  uint64_t hole_passes;        /* hole passes made by heaps */
  uint64_t hole_pages;         /* pages they gave to the page layer */
  size_t run_cache;            /* freed page runs the run cache keeps (runcache.h) */
  uint64_t run_cache_hits, run_cache_misses;   /* large runs it served / could not */
} stats_caches_t;

/* One heap with a page source (tidal_heap_create). */
#define STATS_MAX_HEAPS 32
typedef struct stats_heap_s {
  const char *name;            /* points into stats_t.heap_names */
  uint64_t allocated, active, mapped, dirty, muzzy, metadata;
  uint64_t maps, map_failures, unmaps, purges;   /* calls of its source's hooks */
} stats_heap_t;

typedef struct stats_s {
  /* bytes */
  size_t allocated;            /* in live blocks (block sizes, not requested sizes) */
  size_t active;               /* in active page runs and live huge mappings */
  size_t resident;             /* active + dirty (holes not yet purged included) + cached huge + metadata:
                                * backed memory tidalloc holds, MADV_FREE'd pages excluded (docs/stats.md) */
  size_t mapped;               /* reserved regions + huge mappings + metadata mappings */
  size_t retained;             /* reserved address space that is purged or never used */
  size_t metadata;             /* metadata handed out */
  size_t metadata_mapped;
  size_t pagemap_mapped;       /* pagemap leaves: address space, touched only where pages are in use */
  size_t small_allocated, large_allocated, huge_allocated;
  size_t secure_allocated;     /* hardened-mode and sampled guarded blocks */
  size_t guarded_mapped;       /* their guard-page mappings (outside the page layer) */
  uint64_t large_requests, large_frees;
  page_stats_t pages;
  stats_caches_t caches;
  huge_stats_t huge;
  os_counters_t syscalls;
  stats_class_t classes[SC_NCLASSES];
  stats_mutex_t mutexes[STATS_MAX_MUTEXES];
  unsigned nmutexes;
  stats_heap_t heaps[STATS_MAX_HEAPS];   /* heaps with page sources (uheap.h), the first STATS_MAX_HEAPS */
  char heap_names[STATS_MAX_HEAPS][32];
  unsigned nheaps;
  uint64_t heaps_active, heaps_pooled;
  pressure_stats_t pressure;
  bool background_running;
  uint64_t background_wakeups;
  prof_stats_t prof;           /* heap profiling: totals and the top allocation sites */
} stats_t;

void stats_collect(stats_t *out);

typedef void (*stats_write_cb)(void *arg, const char *text);
/* json: JSON document (schema in docs/stats.md); else text. */
void stats_print(const stats_t *st, stats_write_cb write, void *arg, bool json);

/* One statistic, typed as the control namespace reports it: STAT_U64 as
 * uint64_t (size_t alike), STAT_BOOL as bool, STAT_STR as const char *,
 * STAT_RATIO as double (u / den, 0 when den is 0). */
typedef enum { STAT_U64, STAT_BOOL, STAT_STR, STAT_RATIO } stat_type_t;
typedef struct stat_value_s {
  stat_type_t type;
  uint64_t u, den;
  const char *s;
} stat_value_t;

/* The statistic a control name denotes, given without "stats." ("allocated",
 * "pages.dirty", "classes.3.live", "mutexes.count"); false if none. Indexes
 * are decimal and overflow-checked; one out of range is no statistic. */
bool stats_find(const stats_t *st, const char *name, stat_value_t *out);

#endif
