/*
 * pressure.h — draining caches when memory runs short.
 *
 * What it is: the cleaner registry (tidalloc's own caches and the
 * application's), drains that ask cleaners for memory cheapest first until a
 * target is met, and the pressure sources the background thread watches:
 * PSI triggers (/proc/pressure/memory and the cgroup v2 memory.pressure),
 * cgroup v1 memory.pressure_level events, nearness to the cgroup's limit
 * (v1 usage/limit, v2 memory.current against memory.max/high), and the
 * memory_limit option. Escalation: level 1 (first pressure) drains
 * tidalloc's own caches (thread caches, cached huge mappings, dirty and muzzy
 * pages); level 2 (critical) calls the application's cleaners too.
 * Event sources cost nothing while idle; the limit is read once a second
 * only when the process has one.
 * It may call: heap, huge, page, conf, lock, os, meta.
 */
#ifndef TIDAL_PRESSURE_H
#define TIDAL_PRESSURE_H

#include "util.h"

#include <poll.h>

#define PRESSURE_MAX_FDS 6

enum pressure_level { PRESSURE_NONE = 0, PRESSURE_SOME = 1, PRESSURE_CRITICAL = 2 };

void pressure_init(void);
/* Whether any source is watched (the background thread must then run). */
bool pressure_watching(void);
/* The event fds to poll, with what each means; returns how many. */
int pressure_pollfds(struct pollfd *fds, int max);
/* After poll(): handle the sources that fired. */
void pressure_handle_events(struct pollfd *fds, int n);
/* Periodic checks (cgroup limit, memory_limit) due at `now`; returns when
 * the next check is due (UINT64_MAX: none). */
uint64_t pressure_periodic(uint64_t now);
/* Drain up to `bytes` at `level`; returns bytes released. */
size_t pressure_drain(size_t bytes, enum pressure_level level);

typedef struct pressure_cleaner_stats_s {
  const char *name;
  uint64_t calls, released;
} pressure_cleaner_stats_t;

typedef struct pressure_stats_s {
  uint64_t events_psi, events_cgroup, events_limit, events_explicit;
  uint64_t drains, released;
  pressure_cleaner_stats_t cleaners[16];
  unsigned ncleaners;
} pressure_stats_t;
void pressure_stats_get(pressure_stats_t *out);

void pressure_prefork(void);
void pressure_postfork_parent(void);
void pressure_postfork_child(void);

#endif
