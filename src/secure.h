/*
 * secure.h — the hardened mode (secure:true) and guarded blocks.
 *
 * What it is: a separate, slower allocator used instead of the heaps when the
 * `secure` option is on, and the guard-page machinery that sampled guarded
 * allocations (guard_sample) share with it:
 * - small blocks come from secure slabs, each followed by a PROT_NONE guard
 *   page; every block ends with a canary (secret ^ address), checked on free;
 *   freed blocks are zeroed, wait in a bounded FIFO quarantine, and are
 *   checked to still be zero when reused (write after free); the slot handed
 *   out is chosen at random among the first free ones; slabs and quarantines
 *   are split into shards (two per processor, at most 8): a thread allocates
 *   from its own, and a slab's frees and quarantined blocks stay in its shard;
 * - larger blocks are guarded: alone in a mapping between two guard pages,
 *   right-aligned against the trailing one (on a 2 MiB boundary, with huge
 *   pages, for blocks of 2 MiB or more), and kept inaccessible in a
 *   quarantine for a while after free, then kept (still inaccessible, and
 *   resident up to dirty_mult x the guarded bytes live) for a later block
 *   whose mapping is at least half as long; zeroed when reused;
 * - zero-size requests get unique addresses in an inaccessible region;
 * - a SIGSEGV handler reports faults on guard pages and quarantined guarded
 *   blocks with the block's address and size, then lets the signal kill.
 * The default mode never calls here except for guard_sample; secure spans
 * have their own kinds, so frees reach secure_free from the free slow path.
 * It may call: span, huge (the THP rule), page, pagemap, meta, sizeclass, conf, lock, os,
 * safety.
 */
#ifndef TIDAL_SECURE_H
#define TIDAL_SECURE_H

#include "span.h"

void secure_init(void);
/* A hardened-mode block; align a power of two (or 0). NULL when out of memory. */
void *secure_alloc(size_t size, size_t align, bool zero);
/* A block alone between guard pages (hardened large blocks, sampled blocks). */
void *secure_guarded_alloc(size_t size, size_t align, bool zero);
/* Free a block whose span is SPAN_SECURE, SPAN_GUARDED or SPAN_ZERO;
 * reports misuse in the name of fn. */
void secure_free(void *p, span_t *s, const char *fn);
size_t secure_usable(const void *p, const span_t *s);
/* Bytes in live secure and guarded blocks, and bytes of guarded mappings
 * (live or quarantined; they are outside the page layer). */
void secure_stats(size_t *live, size_t *guarded_mapped);
/* Purge the pages freed guarded blocks keep (pressure drains, tidal_purge);
 * returns bytes released. */
size_t secure_purge_kept(void);

/* Its locks come after the global heap's and before huge/page in the fork order. */
void secure_prefork(void);
void secure_postfork_parent(void);
void secure_postfork_child(void);
/* Checks of a secure/guarded/zero block handed to realloc etc.; aborts on misuse. */
void secure_check(const void *p, span_t *s, const char *fn);

#endif
