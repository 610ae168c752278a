/*
 * pressure.h — draining caches when memory runs short.
 *
 * What it is: the cleaner registry (tidalloc's own caches and the
 * application's), drains that ask cleaners for memory cheapest first until a
 * target is met, and the pressure sources:
 * - events: PSI triggers (/proc/pressure/memory and the cgroup v2
 *   memory.pressure), cgroup v1 memory.pressure_level notifications and
 *   cgroup v1 usage thresholds (90 % and 97 % of the limit). Their
 *   descriptors are opened by the pressure watcher thread (background.c) in a
 *   descriptor table of its own, so the program can never close or reuse
 *   them, and they cost nothing while idle;
 * - periodic checks: nearness to the cgroup's limit (v1 usage/limit, v2
 *   memory.current against memory.max/high) and the memory_limit option,
 *   read once a second (every 50 ms while usage is above 75 % of a limit no
 *   threshold event watches), and only while a drain could release something.
 * Escalation: level 1 (first pressure) drains tidalloc's own caches (thread
 * caches and the run cache, cached huge mappings and the pages freed guarded blocks keep,
 * dirty and muzzy pages); level 2 (critical)
 * calls the application's cleaners too.
 * Cleaners are called with no allocator lock held; a cleaner may allocate,
 * free, unregister itself or any cleaner, and create or destroy object
 * caches. tidal_release from inside a cleaner returns 0.
 * It may call: heap, huge, secure, runcache, page, conf, lock, os.
 */
#ifndef TIDAL_PRESSURE_H
#define TIDAL_PRESSURE_H

#include "util.h"

#include <poll.h>

#define PRESSURE_MAX_FDS 8
#define PRESSURE_STATS_CLEANERS 16   /* cleaners statistics report */

enum pressure_level { PRESSURE_NONE = 0, PRESSURE_SOME = 1, PRESSURE_CRITICAL = 2 };

/* Find the sources (reads a few files; keeps no descriptor). */
void pressure_init(void);
/* Whether there are event sources for a watcher to poll. */
bool pressure_has_events(void);
/* In the watcher thread, after it took a private descriptor table: open the
 * event sources into fds; returns how many. */
int pressure_open_events(struct pollfd *fds, int max);
/* After poll(): the level the sources that fired ask for (counts them). */
enum pressure_level pressure_read_events(struct pollfd *fds, int n);
/* Periodic checks (cgroup limit, memory_limit) due at `now`, draining when
 * needed; returns when the next check is due (UINT64_MAX: none). */
uint64_t pressure_periodic(uint64_t now);
/* Drain up to `bytes` at `level`; returns bytes released. */
size_t pressure_drain(size_t bytes, enum pressure_level level);
/* tidalloc's own caches, all of them, now (tidal_purge, malloc_trim, the
 * "purge" control): thread caches, pooled heaps, cached huge mappings, kept
 * guarded pages, free pages. Returns bytes given back to the system. */
size_t pressure_purge_all(void);
/* tidal_release, tidal_cleaner_register and tidal_cleaner_unregister (api.c
 * exports them after initialising). */
size_t pressure_release(size_t bytes);
int pressure_cleaner_register(const char *name, size_t (*fn)(void *, size_t), void *arg);
int pressure_cleaner_unregister(int id);
/* The background thread registers this: called (without pressure's locks)
 * when periodic checks become worthwhile sooner than it was told. */
void pressure_set_work_hook(void (*hook)(uint64_t due_ns));

typedef struct pressure_cleaner_stats_s {
  const char *name;
  uint64_t calls, released;
} pressure_cleaner_stats_t;

typedef struct pressure_stats_s {
  uint64_t events_psi, events_cgroup, events_limit, events_explicit;
  uint64_t drains, released;
  pressure_cleaner_stats_t cleaners[PRESSURE_STATS_CLEANERS];   /* tidalloc's own first */
  unsigned ncleaners;
} pressure_stats_t;
void pressure_stats_get(pressure_stats_t *out);

void pressure_prefork(void);
void pressure_postfork_parent(void);
void pressure_postfork_child(void);

#endif
