/*
 * background.h — the threads that give memory back while the program is idle.
 *
 * What it is: two threads, started lazily from an API slow path that holds
 * no allocator lock (never at load time), both with every signal blocked.
 * - The worker sleeps on a private futex exactly until the earliest due
 *   work (decay purge, hugify, huge-cache expiry, pressure limit checks),
 *   runs it, drains the inboxes of pooled heaps, and is woken early (futex)
 *   by the work hooks of page, huge and pressure. It runs the drains the
 *   watcher asks for, so application cleaners see the program's descriptors.
 * - The pressure watcher, where there are event sources, takes a descriptor
 *   table of its own, opens the PSI / cgroup event files there and sleeps in
 *   poll(): the program can never close, reuse or inherit its descriptors.
 *   The worker starts it pressure_delay_ms after its own start, or sooner
 *   once tidalloc holds WATCH_NOW_BYTES: closing a PSI trigger at exit
 *   costs the process an RCU grace period, which a short, small program
 *   must not pay.
 * A process whose main thread left with pthread_exit ends when its last
 * thread does: after any thread exits (heap's exit hook) and while the main
 * thread is a zombie, the worker checks /proc/self/stat every 50 ms, and
 * when only tidalloc's threads are left it stops the watcher and leaves.
 * With stats_signal set, a signal handler asks the worker to write the
 * statistics (through a writer ctl registers: no upward call).
 * After fork the child starts its own threads when it needs them. If the
 * worker cannot be created (or background_thread:false), the same work runs
 * inline in the allocation slow paths.
 * The worker also writes the heap profiler's dumps that a signal or a new
 * high-water mark asked for (prof_deferred_work; the profiler wakes it
 * without a lock, from a signal handler too).
 * It may call: pressure, prof, page, huge, runcache, heap, conf, lock, os.
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
/* The statistics signal (opt.stats_signal): its handler records the request
 * and wakes the worker, which calls `writer` with the value the sender
 * attached (sigqueue; 0 for kill). ctl registers the writer, which is above
 * this layer. */
void background_set_stats_writer(void (*writer)(uint32_t value));
/* Ask for the thread to be started at the next background_start. */
void background_request_start(void);
/* Number of times the worker woke up (statistics). */
uint64_t background_wakeups(void);

void background_prefork(void);
void background_postfork_parent(void);
void background_postfork_child(void);

#endif
