/*
 * background.h — the background thread that gives memory back while the
 * program is idle.
 *
 * What it is: one thread, started lazily the first time the page layer or the
 * huge cache has deferred work (never at load time), that sleeps exactly
 * until the earliest due work (decay purge, hugify, huge-cache expiry), runs
 * it, and is woken early when sooner work arrives. It also drains the inboxes
 * of pooled heaps. After fork the child starts its own when it needs one.
 * If the thread cannot be created (or background_thread:false), the same work
 * runs inline in the allocation slow paths.
 * It also watches memory pressure (pressure.h): it sleeps in poll() on an
 * eventfd (its wake-up) and the pressure sources, and runs the periodic
 * limit checks.
 * It may call: pressure, page, huge, heap, conf, lock, os.
 */
#ifndef TIDAL_BACKGROUND_H
#define TIDAL_BACKGROUND_H

#include "util.h"

/* Register with the page layer and huge cache if opt.background_thread. */
void background_init(void);
/* Turn the thread on or off at run time (tidal_ctl "background_thread"). */
void background_enable(bool on);
bool background_enabled(void);
/* Whether the thread is running now. */
bool background_running(void);
/* Work is waiting for a thread that does not exist yet. Cheap; the API
 * layer checks it on its slow paths and then calls background_start() while
 * holding no allocator lock. */
bool background_start_pending(void);
void background_start(void);
/* Number of times the thread woke up (statistics). */
uint64_t background_wakeups(void);

void background_prefork(void);
void background_postfork_parent(void);
void background_postfork_child(void);

#endif
