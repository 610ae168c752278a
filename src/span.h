/*
 * span.h — the span descriptor and the free-block protocol every slab kind
 * shares (thread-heap slabs, hardened-mode slabs, object-cache slabs).
 *
 * What it is: one contiguous run of pages handed out by the page layer (a
 * slab of same-size blocks, a large allocation) or one huge mapping, and the
 * one implementation of a slab's free list: a block's layout while free, its
 * marker, the link encoding, push beside pop, and the `used` count with its
 * current-span bias and full flag. The first cache line holds what malloc
 * and free touch on their fast paths. Only the owning heap writes a
 * thread-heap slab's first line.
 * What it is not: a policy (heap.c decides which span to use, page.c where
 * memory comes from).
 * It may call: safety, os (random secrets).
 */
#ifndef TIDAL_SPAN_H
#define TIDAL_SPAN_H

#include "safety.h"
#include "util.h"

struct heap_s;
struct unit_s;

/* A free block. Layout while free (blocks are >= 16 bytes):
 *
 *   +0                      +8                      +16 ...
 *   | next (encoded link)   | key (= free-marker)   | stale user bytes
 *
 * `key` equals the block's marker (a process-wide secret XOR the block's own
 * address) while the block is free, and is zeroed when it is handed out, so
 * freeing a block whose key is its marker is a double free. Tying the marker
 * to the address means stale bytes copied from elsewhere (a realloc or memcpy
 * of uninitialised memory that once held another free block's header) can
 * never make a live block look free.
 * `next` is the next free block XOR a second random secret whose low bit is
 * set: a link overwritten by a stray write (zeros, a pointer, text) decodes
 * to an address that is not 16-byte aligned, which is caught when the link is
 * used (span_link_bad) instead of handing out arbitrary memory.
 */
typedef struct block_s {
  uintptr_t next;
  uint64_t key;
} block_t;

enum span_kind {
  SPAN_NONE = 0, SPAN_SLAB = 1, SPAN_LARGE = 2, SPAN_HUGE = 3, SPAN_RELEASED = 4,
  SPAN_SECURE = 5,    /* hardened-mode slab (secure.c) */
  SPAN_GUARDED = 6,   /* a block alone in a mapping between guard pages (secure.c) */
  SPAN_ZERO = 7,      /* hardened-mode zero-size blocks: inaccessible addresses */
  SPAN_OBJCACHE = 8,  /* a 2 MiB slab of an application object cache (objcache.c) */
  SPAN_SAMPLED = 9,   /* a heap-profile sample alone in a run or mapping (prof.c); its
                         large/huge kind waits in prof_kind */
};

/* `used` counts blocks handed out (including blocks freed by other threads
 * that the owner has not collected yet), plus SPAN_CUR_BIAS while the span is
 * its heap's current span for the class, so the free fast path never sees a
 * current span drop to zero. Bit 30 marks a full span on no list of its heap
 * (thread-heap slabs only; other slab kinds count without bias or flags).
 * Bit 31 sends every free of the span down the slow path: it is set while the
 * span is full or has holes (SPAN_SLOW_FLAG = full || nholes > 0), so the
 * fast path keeps its one decrement and signed test (span_used_drop).
 *
 * Holes: a page of the slab (SPAN_HOLE_PAGE bytes) every block overlapping
 * which is free may be given to the page layer (page_hole_give), which then
 * decays and purges it like any free page while the slab keeps its live
 * blocks. The blocks overlapping a hole page are free but on no list: a purged
 * page reads as zero, so no link or marker may live there. `holes` has bit i
 * set for page i of the slab (offset i * SPAN_HOLE_PAGE from base).
 *
 * Invariant of a slab span s (span_check):
 *   length(free list) + live(s) + inhole(s) = carved(s)
 *   live(s)    = (used & SPAN_COUNT_MASK) - (current ? SPAN_CUR_BIAS : 0)
 *   carved(s)  = (bump - start) / size           (blocks ever carved)
 *   inhole(s)  = |{ carved blocks overlapping a page of holes }|
 *   no block on the free list overlaps a page of holes
 *   every block overlapping a page of holes is carved
 *   nholes     = popcount(holes)
 *   (used & SPAN_SLOW_FLAG) != 0  <=>  (used & SPAN_FULL_FLAG) != 0 || nholes > 0
 *   start <= bump <= bump_end = start + capacity * size
 *   carved = (bump - start) / size             (blocks at index >= carved were never handed out)
 *   size = d << shift, d odd,  d * inv = 1 (mod 2^64)
 * and every block on the free list carries its marker. */
#define SPAN_SLOW_FLAG  0x80000000u
#define SPAN_FULL_FLAG  0x40000000u
#define SPAN_COUNT_MASK 0x3fffffffu
#define SPAN_CUR_BIAS   1u

/* The unit of hole purging. ASSUMPTION (one place, for the run-time page
 * size work to unify): the page layer's page, TD_PAGE, is a whole number of
 * OS pages. With larger OS pages a hole must cover whole OS pages; this is
 * the constant to derive from the OS page size. */
#define SPAN_HOLE_PAGE       TD_PAGE
#define SPAN_HOLE_PAGE_SHIFT TD_PAGE_SHIFT
#define SPAN_HOLE_WORDS      2                 /* slabs of up to 128 pages */
#define SPAN_HOLE_MAX_PAGES  (SPAN_HOLE_WORDS * 64)
#define SPAN_HOLE_MAX_BLOCKS 8192              /* scan bitmap: blocks per slab */

typedef struct span_s span_t;
struct span_s {
  /* ---- hot: first cache line ---- */
  uintptr_t free;             /*  0 encoded head of the free list (owner only) */
  struct heap_s *owner;       /*  8 owning heap (slabs); NULL for large/huge */
  uintptr_t start;            /* 16 address of block 0 / of the allocation */
  uint32_t used;              /* 24 blocks out (+ CUR_BIAS) | FULL_FLAG: see below */
  uint32_t size;              /* 28 block size (slab) */
  uint64_t inv;               /* 32 the inverse of size's odd part, mod 2^64 (span_set_size) */
  uint64_t carved;            /* 40 blocks carved so far: those at index >= carved were never handed
                                 *    out; written by the owner, read by any thread: __atomic_*
                                 *    (the owner's own reads may be plain) */
  uintptr_t bump;             /* 48 next never-carved block (slab) */
  uint16_t cls;               /* 56 size class (slab) */
  uint8_t kind;               /* 58 enum span_kind */
  uint8_t zeroed;             /* 59 pages known to be zero when handed out */
  uint8_t shift;              /* 60 trailing zero bits of size: size = (odd part) << shift */
  /* ---- cold ---- */
  uintptr_t bump_end;         /* start + capacity * size: the end of carvable blocks */
  span_t *next, *prev;        /* heap partial list / heap span cache / huge cache */
  uintptr_t base;             /* first byte of the run or mapping */
  size_t bytes;               /* length of the run or mapping */
  struct unit_s *unit;        /* page-layer unit (slab, large) */
  uint32_t capacity;          /* blocks in a slab */
  uint32_t page_index;        /* first page within the unit */
  uint64_t stamp_ns;          /* when it was cached (huge) */
  size_t req_size;            /* requested size (guarded blocks) */
  void *cache;                /* owning object cache (objcache slabs) */
  uint64_t holes[SPAN_HOLE_WORDS]; /* pages given to the page layer as holes (slab) */
  uint32_t nholes;            /* popcount(holes) */
  uint32_t hole_used;         /* `used` when the span was last scanned for holes */
  void *prof;                 /* its sample record (SPAN_SAMPLED) */
  uint8_t prof_kind;          /* SPAN_SAMPLED: SPAN_LARGE or SPAN_HUGE, restored on free */
  uint8_t secure_shard;       /* SPAN_SECURE: the shard of secure.c it belongs to */
} TD_ALIGNED(TD_CACHELINE);

/* Doubly linked lists of spans through next/prev (heap partial lists and
 * span caches, secure slab lists, object cache slab lists). */
TD_INLINE void span_list_push(span_t **head, span_t *s) {
  s->prev = NULL;
  s->next = *head;
  if (*head) (*head)->prev = s;
  *head = s;
}

TD_INLINE void span_list_remove(span_t **head, span_t *s) {
  if (s->prev) s->prev->next = s->next; else *head = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

/* Secrets of the protocol, random from span_init: the link key is odd, the
 * free key non-zero. */
extern uintptr_t span_link_key TD_HIDDEN;
extern uint64_t span_free_key TD_HIDDEN;
void span_init(void);

#if TIDAL_CHECKS
TD_INLINE uintptr_t span_link_encode(uintptr_t p) { return p ^ span_link_key; }
TD_INLINE uintptr_t span_link_decode(uintptr_t v) { return v ^ span_link_key; }
TD_INLINE bool span_link_bad(uintptr_t p) { return (p & (sizeof(block_t) - 1)) != 0; }
#else
TD_INLINE uintptr_t span_link_encode(uintptr_t p) { return p; }
TD_INLINE uintptr_t span_link_decode(uintptr_t v) { return v; }
TD_INLINE bool span_link_bad(uintptr_t p) { (void)p; return false; }
#endif

/* The end of every slab free list: s->free == SPAN_FREE_END when s has no
 * free block. With the checks on it is a block of zeros in read-only memory:
 * its link decodes to the odd link key, which span_link_bad rejects, so the
 * pop's one test on the link finds a corrupt link and the list's end alike
 * (span_pop). Without them it is 0.
 *   free list of s:  s->free -> b1 -> b2 -> ... -> bn -> SPAN_FREE_END
 *                                                    (next = encode(SPAN_FREE_END)) */
#if TIDAL_CHECKS
extern const block_t span_free_end TD_HIDDEN;
#define SPAN_FREE_END ((uintptr_t)&span_free_end)
#else
#define SPAN_FREE_END ((uintptr_t)0)
#endif
TD_INLINE void span_free_clear(span_t *s) { s->free = SPAN_FREE_END; }
TD_INLINE bool span_has_free(const span_t *s) { return s->free != SPAN_FREE_END; }

/* The marker a free block at address b carries in its key word. */
TD_INLINE uint64_t span_marker(const void *b) { return span_free_key ^ (uint64_t)(uintptr_t)b; }
TD_INLINE bool span_block_marked(const void *b) { return ((const block_t *)b)->key == span_marker(b); }

/* A free-list link that does not decode to an aligned address: reported as
 * a write after free (of a block of s, in the name of fn). */
TD_COLD TD_NORETURN void span_corrupt(const void *block, const span_t *s, const char *fn);

/* Mark b free and push it onto s's free list. */
TD_INLINE void span_push(span_t *s, block_t *b) {
  b->key = span_marker(b);
  b->next = span_link_encode(s->free);
  s->free = (uintptr_t)b;
}

/* Unlink block b, whose link decodes to next (checked), after prev (the
 * head when prev is NULL) and hand it out: its marker is cleared and used
 * counts it. */
TD_INLINE block_t *span_unlink(span_t *s, block_t *prev, block_t *b, uintptr_t next) {
  TD_DASSERT(span_block_marked(b));   /* every free block carries its marker */
  if (prev) prev->next = span_link_encode(next);
  else s->free = next;
  b->key = 0;
  s->used++;
  return b;
}

/* Take block b (not the end) after prev: its link is checked first. */
TD_INLINE block_t *span_take(span_t *s, block_t *prev, block_t *b) {
  uintptr_t next = span_link_decode(b->next);
  if (TD_UNLIKELY(span_link_bad(next))) span_corrupt(b, s, "malloc");
  return span_unlink(s, prev, b, next);
}

/* The one pop of a block from s's free list: NULL when it is empty. With the
 * checks on, the head's link is read before the head is known to be a
 * block: the end's link fails the same test a corrupt one does, and only
 * then is the head compared with the end.
 * The new head is prefetched for writing: the next pop of this class reads
 * its link and clears its marker, and where blocks were freed in random
 * order that line is cold (bench/workloads/fragmentation: 7 % faster, for
 * one instruction). A prefetch never faults, whatever the link held. */
TD_INLINE block_t *span_pop(span_t *s) {
  block_t *b = (block_t *)s->free;
#if TIDAL_CHECKS
  uintptr_t next = span_link_decode(b->next);
  if (TD_UNLIKELY(span_link_bad(next))) {
    if ((uintptr_t)b == SPAN_FREE_END) return NULL;
    span_corrupt(b, s, "malloc");
  }
  __builtin_prefetch((const void *)next, 1, 3);   /* the next pop's block (see above) */
  return span_unlink(s, NULL, b, next);
#else
  if (TD_UNLIKELY(b == NULL)) return NULL;
  uintptr_t next = span_link_decode(b->next);
  if (TD_UNLIKELY(span_link_bad(next))) span_corrupt(b, s, "malloc");
  __builtin_prefetch((const void *)next, 1, 3);
  return span_unlink(s, NULL, b, next);
#endif
}

/* The block size of s, with the inverse and shift span_block_index needs. */
TD_INLINE void span_set_size(span_t *s, uint32_t size) {
  unsigned k = (unsigned)__builtin_ctz(size);
  uint64_t d = size >> k, x = d;   /* d * x = 1 mod 2^3 for odd d; each step doubles the bits */
  for (int i = 0; i < 5; i++) x *= 2 - d * x;
  s->size = size;
  s->shift = (uint8_t)k;
  s->inv = x;
}

/* The index of the block at offset off of s when off is a whole number of
 * blocks, and a number >= 2^64 / size (more blocks than any span has)
 * otherwise; off is taken mod 2^64, so addresses below start are covered:
 *   off = j * size  =>  off * inv = j << shift  =>  ror(off * inv, shift) = j
 * and conversely a result q < 2^64 / size gives back off = q * size (no
 * wrap), so `index < carved` is exact. One multiply, one rotate; the range
 * check is one compare. */
TD_INLINE uint64_t span_block_index(const span_t *s, uintptr_t off) {
  uint64_t x = off * s->inv;
  unsigned k = s->shift;
  return (x >> k) | (x << ((64 - k) & 63));
}

/* A block being freed that cannot be one of s's live blocks: not at the
 * start of a carved block (span_block_index, one compare), or already
 * marked free. */
TD_INLINE bool span_block_bad(const span_t *s, const void *p) {
#if TIDAL_CHECKS
  return span_block_index(s, (uintptr_t)p - s->start) >= __atomic_load_n(&s->carved, __ATOMIC_RELAXED) ||
         span_block_marked(p);
#else
  (void)s; (void)p;
  return false;
#endif
}

/* span_block_bad for the thread that owns s (s->owner is its heap, just
 * read): only that thread writes `carved`, so a plain read suffices, and it
 * folds into the compare (one instruction less on every local free). */
TD_INLINE bool span_block_bad_local(const span_t *s, const void *p) {
#if TIDAL_CHECKS
  return span_block_index(s, (uintptr_t)p - s->start) >= s->carved || span_block_marked(p);
#else
  (void)s; (void)p;
  return false;
#endif
}

/* Bytes carved: offsets at or past it were never handed out. */
TD_INLINE size_t span_limit(const span_t *s) { return (size_t)__atomic_load_n(&s->carved, __ATOMIC_RELAXED) * s->size; }

/* ---- `used`, with the current-span bias and the full flag ---------------- */

/* Decrement (the free fast path); true when the span became empty or is
 * full or holed (slow work). */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SPAN_SANITIZED 1            /* clang: sanitizers see no access inside asm */
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SPAN_SANITIZED 1            /* gcc */
#endif
TD_INLINE bool span_used_drop(span_t *s) {
#if defined(__x86_64__) && !defined(SPAN_SANITIZED)
  /* One read-modify-write and a branch on its flags (the compiler's own
   * rendering loads, subtracts, stores and tests: 3 instructions more on
   * every local free). */
  __asm__ goto("subl $1, %0\n\tjle %l[edge]" : "+m"(s->used) : : "cc" : edge);
  return false;
edge:
  return true;
#else
  return (int32_t)--s->used <= 0;
#endif
}
TD_INLINE uint32_t span_count(const span_t *s) { return s->used & SPAN_COUNT_MASK; }
TD_INLINE bool span_is_full(const span_t *s) { return (s->used & SPAN_FULL_FLAG) != 0; }
TD_INLINE bool span_has_holes(const span_t *s) { return s->nholes != 0; }
/* A full span gets a free block: it loses the flag; true if now empty. */
TD_INLINE bool span_unfull(span_t *s) {
  s->used &= ~SPAN_FULL_FLAG;
  if (!s->nholes) s->used &= ~SPAN_SLOW_FLAG;
  return span_count(s) == 0;
}
/* The span becomes its heap's current span, or leaves it with every block
 * out (full, on no list) or every free block in a hole. */
TD_INLINE void span_cur_enter(span_t *s) { s->used += SPAN_CUR_BIAS; }
TD_INLINE void span_cur_leave_full(span_t *s) {
  TD_DASSERT(span_count(s) > SPAN_CUR_BIAS || s->nholes);
  s->used = (s->used - SPAN_CUR_BIAS) | SPAN_FULL_FLAG | SPAN_SLOW_FLAG;
}
/* A current span none of whose blocks is out. */
TD_INLINE bool span_cur_unused(const span_t *s) { return span_count(s) == SPAN_CUR_BIAS; }
TD_INLINE uint32_t span_live(const span_t *s, bool current) {
  return span_count(s) - (current ? SPAN_CUR_BIAS : 0);
}

/* ---- holes ------------------------------------------------------------------ */

/* Whether block p of s overlaps a hole page: a free of it is a double free. */
bool span_in_hole(const span_t *s, const void *p);
/* The pages of s every block overlapping which is free (on the free list or
 * in a hole) and carved, and that are not holes yet: into out (cleared
 * first). Returns how many. Owner only; walks the free list. */
size_t span_hole_scan(const span_t *s, uint64_t out[SPAN_HOLE_WORDS]);
/* Make the pages of `pages` holes: the blocks overlapping them leave the free
 * list (the list keeps its order otherwise); sets the slow flag. Before the
 * pages go to the page layer, which may purge them at once. */
void span_hole_cut(span_t *s, const uint64_t pages[SPAN_HOLE_WORDS]);
/* The pages of `pages` (holes of s, taken back from the page layer, maybe
 * zero) are no longer holes: their blocks that overlap no other hole get
 * their markers and go onto the free list, lowest address first out. */
void span_hole_fill(span_t *s, const uint64_t pages[SPAN_HOLE_WORDS]);
/* Blocks that overlap a page of holes (for span_check and statistics). */
size_t span_hole_blocks(const span_t *s);

/* Report what is wrong with p, a pointer that failed the checks of fn
 * (s: its pagemap entry, maybe NULL): not ours, not a block's start, never
 * handed out, or already free. Words: "invalid free" / "double free" for
 * free and its kin, "invalid pointer" / "use of a freed block" otherwise. */
TD_COLD TD_NORETURN void span_misuse(const void *p, const span_t *s, const char *fn);

/* Consistency of a slab span (the invariant above; walks the free list).
 * Returns NULL when it holds, else what is wrong. */
const char *span_check(const span_t *s, bool current);
#ifdef TIDAL_DEBUG
#define SPAN_DASSERT_CONSISTENT(s, current) do { \
    const char *why_ = span_check((s), (current)); \
    if (why_) safety_assert_fail(__FILE__, __LINE__, why_); } while (0)
#else
#define SPAN_DASSERT_CONSISTENT(s, current) do { (void)(s); (void)(current); } while (0)
#endif

/* The pagemap target of runs and mappings that were given back, so that a
 * second free of them is recognised as a double free. */
extern span_t span_released;

#endif
