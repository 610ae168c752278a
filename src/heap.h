/*
 * heap.h — thread-local heaps of size-class slabs: the small-object fast path.
 *
 * What it is: every thread owns one heap. A heap owns slab spans; for each
 * size class it allocates from one current span (pop of the span's free list)
 * and keeps the others that have free blocks on a partial list, a queue:
 * the span that has waited longest is taken next (heap_validate checks
 *   partial_tail[c] = the last span of the list partial[c], NULL when empty).
 * Only the owner
 * touches a span's free list, so a small malloc or free on its own thread
 * takes no lock and no atomic read-modify-write.
 * A free from another thread does not touch the span: the block is queued in
 * the freeing thread's outgoing buffer for the owner heap and the buffer is
 * pushed onto the owner's inbox (a lock-free multi-producer stack) with one
 * CAS per batch. The owner drains its inbox whenever it needs memory.
 * When a thread exits, its heap flushes, returns empty slabs, and goes to a
 * pool with the slabs still in use; the next new thread adopts it whole, so
 * thread churn neither leaks nor grows.
 * Holes (span.h): the owner gives the pages of its partial slabs whose blocks
 * are all free to the page layer, which decays and purges them like other
 * free pages; it takes them back (before carving fresh blocks) when it needs
 * blocks there. A hole pass runs on the owner only: in its slow paths, at
 * most once per hole period (dirty_decay_ms / HEAP_HOLE_PERIOD_DIV) and
 * looking at the clock once per HEAP_HOLE_TICK slow paths; on
 * tidal_thread_flush; forced (hugified units too) when another thread asks
 * (tidal_purge, pressure: a request flag the owner serves at its next slow
 * path — the free fast path writes spans without atomics, so no other thread
 * may, and an owner that never comes back keeps its holes until it exits).
 * Pooled heaps have no owner: whoever takes the pool (the background
 * thread's sweep, tidal_purge) makes their passes.
 * Caches and their bounds: the empty-slab cache of a heap holds at most
 * HEAP_SPAN_CACHE slabs and HEAP_SPAN_CACHE_BYTES, and a slab that stays
 * cached over two hole periods goes back to the page layer; outgoing
 * remote-free buffers hold at most HEAP_OUT_BATCH blocks each (HEAP_OUT_SLOTS
 * buffers) and are pushed when the owner refills a class past its current
 * slab, on tidal_thread_flush and at thread exit; pooled heaps keep only
 * slabs with live blocks (their inboxes drained, empty slabs and holes given
 * back at every sweep of the pool).
 * What it is not: the large or huge path (page.h, huge.h), or initialisation.
 * It may call: span, secure (guarded samples), page, pagemap, meta, sizeclass,
 * conf, lock, safety, os.
 */
#ifndef TIDAL_HEAP_H
#define TIDAL_HEAP_H

#include "sizeclass.h"
#include "span.h"

#define HEAP_OUT_SLOTS   8      /* outgoing remote-free buffers per heap */
#define HEAP_OUT_BATCH   32     /* blocks per buffer before it is pushed */
#define HEAP_SPAN_CACHE  4      /* empty slabs a heap keeps for reuse */
#define HEAP_SPAN_CACHE_BYTES ((size_t)512 << 10)   /* ... and at most these bytes */
#define HEAP_HOLE_TICK   64     /* slow paths between looks at the clock for a hole pass */
#define HEAP_HOLE_PERIOD_DIV 8  /* hole passes at most every dirty_decay_ms / this ... */
#define HEAP_HOLE_PERIOD_MIN_NS (10ull * 1000000ull)     /* ... but not more often */
#define HEAP_HOLE_PERIOD_MAX_NS (1000ull * 1000000ull)   /* ... nor less often */
/* Up to this block size a block stays put for any smaller size (realloc)
 * and a sized free may name any smaller size: classes are 16 bytes apart
 * there, so a much smaller request lands in the same class. */
#define HEAP_TIGHT_CLASS_MAX 64

typedef struct outbuf_s {
  struct heap_s *dest;
  block_t *head, *tail;
  uint32_t n;
  uint32_t bytes;             /* block bytes buffered (statistics) */
} outbuf_t;

enum heap_state { HEAP_ACTIVE = 1, HEAP_POOLED, HEAP_DEAD, HEAP_GLOBAL, HEAP_USER };

/* Counters of one heap, merged on read (statistics). Small blocks are counted
 * on the fast paths (one increment each); large and huge ones on their paths.
 * TIDAL_STATS=0 (cmake -DTIDAL_STATS=OFF) compiles the fast-path increments
 * out, only to measure what they cost. */
#ifndef TIDAL_STATS
#define TIDAL_STATS 1
#endif
#if TIDAL_STATS
#define HEAP_COUNT(x) ((x)++)
#else
#define HEAP_COUNT(x) ((void)0)
#endif
typedef struct heap_counters_s {
  uint64_t nmalloc[SC_NCLASSES];              /* blocks handed out, per class */
  uint64_t nfree[SC_NCLASSES];                /* blocks freed by this heap's thread */
  uint64_t nslabs[SC_NCLASSES];               /* slabs owned now, per class */
  uint64_t large_nmalloc, large_nfree;        /* large and huge requests */
  uint64_t large_bytes_alloc, large_bytes_free; /* page runs (large) */
  uint64_t huge_bytes_alloc, huge_bytes_free;   /* own mappings (huge) */
  /* gauges of the caches (statistics; merged like the counters) */
  uint64_t span_cache_bytes;                  /* empty slabs kept for reuse */
  uint64_t pooled_slab_bytes;                 /* slabs of pooled heaps (filled in by the merge) */
  uint64_t outbuf_bytes;                      /* blocks waiting in outgoing remote-free buffers (filled in by the merge) */
  uint64_t hole_passes, hole_pages;           /* hole passes made, pages given as holes */
} heap_counters_t;

typedef struct heap_s heap_t;
struct heap_s {
  span_t *cur[SC_NCLASSES];                   /* fast path: span to allocate from */
  /* Heap profiling (prof.h): bytes to allocate before the next sample; the
   * malloc fast path subtracts each request after a pop. INT64_MAX while
   * profiling is off; 0 until the thread's first draw. */
  int64_t prof_left;
  uint64_t prof_rng;                          /* the sampling generator's state (0: unseeded) */
  heap_counters_t cnt;
  span_t *partial[SC_NCLASSES];               /* spans with free blocks (not cur), newest first */
  span_t *partial_tail[SC_NCLASSES];          /* the oldest of each: the next one taken */
  outbuf_t out[HEAP_OUT_SLOTS];
  uint32_t out_pending;                       /* some outbuf holds blocks */
  uint32_t id;
  uint32_t state;
  uint32_t span_cache_n;
  span_t *span_cache;                         /* empty slabs kept for reuse */
  span_t *parked[SC_NCLASSES];                /* guard_sample mode: the current spans, kept off cur[] */
  int64_t sample_left;                        /* guard_sample mode: allocations before the next sample */
  uint32_t hole_tick;                         /* slow paths since the clock was last read */
  uint32_t hole_request;                      /* a forced hole pass is asked for (__atomic_*) */
  uint64_t hole_next_ns;                      /* when a hole pass is next due */
  heap_t *all_next, *pool_next;
  struct pager_s *pager;                      /* where its slabs come from (NULL: the default pager) */
  block_t *inbox TD_ALIGNED(TD_CACHELINE);   /* remote frees (accessed with __atomic_* only) */
};

extern __thread heap_t *tls_heap __attribute__((tls_model("initial-exec")));
extern heap_t heap_empty;        /* a thread's heap before it has one: every cur is empty */
extern span_t span_empty;        /* empty sentinel span for heap_empty and idle classes */

void heap_init(void);

/* A heap of a heap with a page source (uheap.h), HEAP_USER: in no registry,
 * used only under its owner's lock, which stands in for the owning thread
 * (every free of its blocks is a local free under that lock; nothing of it
 * waits in inboxes or outgoing buffers). Its slabs come from pager. */
void heap_user_init(heap_t *h, struct pager_s *pager);
/* Forget every slab (the caller has freed or will free them all). */
void heap_user_forget(heap_t *h);

/* Pop a block of class cls on the owning thread. */
TD_INLINE void *heap_alloc_small(heap_t *h, unsigned cls);
void *heap_alloc_slow(heap_t *h, unsigned cls);

/* A local free that empties or un-fills its span (heap_free_local's slow
 * part, called once the fast path has dropped the count): moves the span.
 * Keeps errno. */
void heap_free_local_edge(heap_t *h, span_t *s);
/* A block of a slab of heap h fits a request of `size` bytes where it is
 * (realloc keeps it): it fits, and a much smaller class would not do. */
bool heap_resize_in_place(const span_t *s, size_t size);
/* The block size of a slab. */
TD_INLINE size_t heap_block_size(const span_t *s) { return s->size; }
/* Free a valid block (checked: span_block_bad) of a slab owned by another
 * heap than h, the calling thread's. Marks it free and counts the free: on
 * h, or, for a thread without a heap (h is heap_empty), on the orphan
 * counters, pushing the block to its owner at once. */
void heap_free_remote(heap_t *h, span_t *s, block_t *b);
/* The shared heap (the global heap, under its lock) behind the per-CPU
 * lists of the TIDAL_PERCPU experiment (percpu.h): take up to n blocks of
 * class cls (returns how many: fewer when memory is short), and give blocks
 * of its slabs back (marked or not). */
const heap_t *heap_shared(void);
size_t heap_shared_take(unsigned cls, void **out, size_t n);
void heap_shared_give(void *const *blocks, size_t n);
/* Called (with no lock held) when a thread's heap has been pooled at its exit. */
void heap_set_exit_hook(void (*hook)(void));

void heap_flush_out(heap_t *h);
void heap_collect(heap_t *h);
/* Give the calling thread its heap now (so its exit is noticed even if it
 * never allocates). */
void heap_thread_bind(void);
/* Flush the calling thread's outgoing frees, drain its inbox, return its
 * empty slabs. */
void heap_thread_flush(void);
/* Drain pooled heaps' inboxes and give their empty slabs and holes back
 * (force: in hugified units too). */
void heap_sweep_pool(bool force);
/* Memory is short or a purge was asked for: a forced hole pass of the
 * calling thread's heap now and of every other active heap at its next slow
 * path. */
void heap_holes_request(void);
/* One hole pass of h (its owner, or whoever holds a pooled heap): give the
 * all-free pages of its partial slabs to the page layer; age its span cache.
 * HOLES_FORCE: in hugified units too, every slab looked at again, the span
 * cache emptied; HOLES_CURRENT: the current slabs too (an explicit flush or
 * purge: the thread says it is about to idle). Returns pages given. */
#define HOLES_FORCE   1u
#define HOLES_CURRENT 2u
size_t heap_holes_pass(heap_t *h, unsigned flags);

/* Sum every heap's counters (racy reads of other threads' counters: a
 * snapshot, not a transaction) and count heaps by state. */
void heap_counters_merge(heap_counters_t *sum, uint64_t *active_heaps, uint64_t *pooled_heaps);
/* Counters for large/huge traffic of threads without a heap. */
void heap_count_large(heap_t *h, size_t bytes, bool alloc, bool huge);
/* This thread's bytes allocated and freed since it got its heap. */
void heap_thread_bytes(uint64_t *allocated, uint64_t *freed);

/* Tier-3 validator of one heap's lists and counts (owner thread only). */
void heap_validate(heap_t *h);

/* Fork, in two steps of the lock order: the global heap's lock, then the
 * registry and orphan counters. */
void heap_prefork_global(void);
void heap_postfork_parent_global(void);
void heap_postfork_child_global(void);
void heap_prefork(void);
void heap_postfork_parent(void);
void heap_postfork_child(void);

/* ---- inline fast paths ---------------------------------------------------- */

/* The pop of a block from span s of class cls of heap h (s may be the empty
 * sentinel): NULL when its list is empty. Every allocation fast path is this. */
TD_INLINE void *heap_pop(heap_t *h, span_t *s, unsigned cls) {
  block_t *b = span_pop(s);
  if (TD_LIKELY(b != NULL)) HEAP_COUNT(h->cnt.nmalloc[cls]);
  return b;
}

TD_INLINE void *heap_alloc_small(heap_t *h, unsigned cls) {
  void *p = heap_pop(h, h->cur[cls], cls);
  return TD_LIKELY(p != NULL) ? p : heap_alloc_slow(h, cls);
}

/* Whether s is a slab of heap h: its blocks take the local free. */
TD_INLINE bool heap_owns(const heap_t *h, const span_t *s) { return TD_LIKELY(s != NULL) && s->owner == h; }

/* The local free of block p of span s, owned by h, after the caller's checks
 * (span_block_bad). Out of line only when the span empties or was full. */
TD_INLINE void heap_free_local(heap_t *h, span_t *s, void *p) {
  span_push(s, p);
  HEAP_COUNT(h->cnt.nfree[s->cls]);
  /* One decrement and its flags: the edge (empty, full or holed) goes out
   * of line with the count already dropped. */
  if (TD_UNLIKELY(span_used_drop(s))) heap_free_local_edge(h, s);   /* out of line: keeps this path free of spills */
}

#endif
