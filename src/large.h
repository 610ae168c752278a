/*
 * large.h — blocks too big for a slab: page runs up to 1 MiB, and huge
 * mappings above (or with alignment beyond a unit) through huge.h.
 *
 * What it is: the owner of every block that is not a small block:
 * allocation and free with their accounting on the calling thread's heap
 * counters, in-place growth and shrinking of page runs (the pages after the
 * run must be free), resizing of huge mappings by mremap, usable sizes, and
 * the misuse check of a pointer into such a block (an interior pointer).
 * A large block's first page is in the pagemap; its span's kind is
 * SPAN_LARGE (a page run) or SPAN_HUGE (a mapping of its own); once freed,
 * the pagemap points at span_released.
 * Freed page runs wait in a short FIFO quarantine (rings, one per CPU,
 * sharing large_quarantine runs, 4 by default; a thread always frees into
 * the same ring) before their pages are reused: a double free is seen, a
 * new block of the size lands elsewhere, and a write over the canary the
 * free left in the run's first 64 bytes is reported when the run leaves
 * (with large_quarantine_protect the run is inaccessible instead: a write
 * faults).
 * A run that leaves the quarantine goes to the run cache (runcache.h), and
 * a run of up to 256 KiB is first sought there.
 * What it is not: a cache of runs (runcache.c and the page layer's bins
 * are that) or of mappings (huge.c's).
 * It may call: span, huge, runcache, page, pagemap, heap (counters), sizeclass, conf, lock, os, safety (reports).
 */
#ifndef TIDAL_LARGE_H
#define TIDAL_LARGE_H

#include "span.h"

struct pager_s;   /* page.h */

/* Requests above this are served by a mapping of their own (huge.h). */
#define LARGE_RUN_MAX ((size_t)1 << 20)

/* size > SC_SMALL_MAX (or a small size with an alignment no class has);
 * align a power of two. NULL when out of memory (errno untouched). */
void *large_alloc(size_t size, size_t align, bool zero);
/* A page run of pager (NULL: the default) for a block of size at align
 * (<= TD_UNIT), registered in the pagemap as SPAN_LARGE with owner (NULL
 * for the thread heaps; a heap with a page source for its own), zeroed
 * when asked and not known to be zero. Not counted anywhere. */
span_t *large_run_alloc(struct pager_s *pager, struct heap_s *owner, size_t size, size_t align, bool zero);
/* s: the span of a live large or huge block, p == its start. */
void large_free(span_t *s);
/* Resize in place (page runs) or by mremap (huge); returns the block's
 * (possibly moved) address, or NULL when it must be copied elsewhere. */
void *large_resize(span_t *s, size_t size);
TD_INLINE size_t large_usable(const span_t *s) { return s->bytes; }

/* Give every run waiting in the quarantine back now (tidal_purge); returns bytes. */
size_t large_quarantine_flush(void);

void large_init(void);
void large_prefork(void);
void large_postfork_parent(void);
void large_postfork_child(void);

#endif
