/*
 * prof.h — the heap profiler: sampled allocations with their stacks, and
 * what is made of them (dumps that jeprof, google-pprof and go tool pprof
 * read, the leak report at exit, tidal_prof_visit, the statistics' top sites).
 *
 * What it is:
 * - Sampling. Every thread heap counts down a random number of bytes
 *   (heap_t.prof_left, exponential with mean opt.prof_sample, drawn from the
 *   heap's own generator). The API layer subtracts each request's size after
 *   a successful pop and calls prof_sample when the count crosses zero; with
 *   profiling off the count starts at INT64_MAX and never does. A sampled
 *   block is served alone from a page run (or a huge mapping) whose span kind
 *   is SPAN_SAMPLED, so free reaches the profile only through its slow path
 *   (free_generic), never through the fast path of unsampled blocks.
 * - Weights. A block of s bytes is sampled with probability
 *   q = 1 - exp(-s / R); each sample stands for w = 1/q blocks and s*w bytes,
 *   so the per-stack sums are unbiased and every output already carries them.
 * - Stacks: glibc's backtrace (libgcc's .eh_frame unwinder; no frame
 *   pointers needed), warmed up once at start-up (prof_warm), called with no
 *   allocator lock held; the frames inside tidalloc are dropped. While a
 *   thread unwinds or runs a hook its allocations are served but never
 *   sampled (a per-thread guard).
 * - The table: stacks are deduplicated in a hash table and never freed;
 *   a live sample record hangs off its block's span (span_t.prof): the
 *   pagemap is the map from pointer to sample. Records and stacks come from
 *   the metadata allocator, under prof_lock (RANK_PROF).
 *   Invariant (prof_validate; exact: records carry w in fixed point and
 *   s*w rounded, so sums add and subtract without drift):
 *     stack.count = sum of rec.count, stack.bytes = sum of rec.bytes over
 *     the live records that point at it (prof.reset detaches them all);
 *     tot = sum over stacks = sum over the live list; samples likewise.
 * - Dumps are written with raw system calls from a snapshot taken under the
 *   lock (the stacks are immutable, so the snapshot copies only pointers and
 *   sums), never from inside malloc: on prof.dump, by the background thread
 *   (prof_signal, prof_gdump), or by the exit handler (prof_final, prof_leak).
 * What it is not: a CPU profiler, or a tracer of every allocation.
 * It may call: large, heap, span, pagemap, sizeclass, meta, conf, lock, os,
 * safety.
 */
#ifndef TIDAL_PROF_H
#define TIDAL_PROF_H

#include "heap.h"

#define PROF_MAX_DEPTH 64        /* frames kept per stack */
#define PROF_TOP_SITES 8         /* top sites in the statistics */

/* Start-up, after the allocator works: the exit handler, the signal
 * handler. prof_warm (from the library's constructor) runs the unwinder
 * once, so its first-call set-up (dlopen of libgcc_s, allocations) is not
 * paid inside a sampled malloc. */
void prof_init(void);
void prof_warm(void);
/* Whether profiling is on (opt.prof, and not the hardened mode). */
bool prof_enabled(void);

/* The calling thread's countdown crossed zero on an allocation of `size`
 * bytes (cls: its small class, 0 for large): returns a sampled block (kind
 * SPAN_SAMPLED) or NULL when this allocation is not sampled (first draw of
 * the thread, paused, the thread is unwinding or in a hook, out of memory).
 * ra: the return address into the API entry (skips tidalloc's frames in a
 * static link). Never holds a lock while unwinding. */
void *prof_sample(heap_t *h, size_t size, size_t align, bool zero, unsigned cls, const void *ra);
/* A sampled block is being freed (s->kind == SPAN_SAMPLED): it leaves the
 * profile and its span gets its large/huge kind back for large_free. */
void prof_free(span_t *s);
/* What malloc_usable_size says of a sampled block: its class's block size
 * for small requests, the run or mapping for large ones (as unsampled). */
TD_INLINE size_t prof_usable(const span_t *s) { return s->req_size; }

/* The background thread: a dump was asked for (signal, gdump). */
bool prof_work_pending(void);
void prof_deferred_work(void);
/* Called (async-signal-safe) to wake the background thread. */
void prof_set_wake_hook(void (*hook)(void));

/* Controls (tidal_ctl "prof.*"): 0 or an errno value. */
int prof_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen);
/* tidal_prof_visit: fn per live allocation site; returns the number of
 * sites, or -1 when profiling is off. */
typedef void (*prof_visit_fn)(void *arg, void *const *pcs, unsigned depth, size_t bytes, size_t count);
long prof_visit(prof_visit_fn fn, void *arg);

typedef struct prof_site_stats_s {
  uint64_t bytes, count;
  char site[96];                 /* first frames, as hex return addresses */
} prof_site_stats_t;
typedef struct prof_stats_s {
  bool enabled;
  uint64_t live_bytes, live_count;   /* unbiased estimates */
  uint64_t samples;                  /* live sampled blocks */
  uint64_t stacks;                   /* distinct stacks ever seen */
  uint64_t metadata;                 /* bytes of stacks and records */
  uint64_t dumps;
  unsigned ntop;
  prof_site_stats_t top[PROF_TOP_SITES];
} prof_stats_t;
void prof_stats_get(prof_stats_t *out);

/* Tier-3 validator (tests): the invariant above. NULL when it holds. */
const char *prof_validate(void);

void prof_prefork(void);
void prof_postfork_parent(void);
void prof_postfork_child(void);

#endif
