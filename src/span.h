/*
 * span.h — the span descriptor: one contiguous run of pages handed out by the
 * page layer (a slab of same-size blocks, a large allocation) or one huge
 * mapping. Data only.
 *
 * Contract: descriptors live in metadata memory (meta.h), never beside user
 * memory. The first cache line holds what malloc and free touch on their fast
 * paths. Only the owning heap writes a slab span's first line.
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
};

/* `used` counts blocks handed out (including blocks freed by other threads
 * that the owner has not collected yet), plus SPAN_CUR_BIAS while the span is
 * its heap's current span for the class, so the free fast path never sees a
 * current span drop to zero. Bit 31 marks a full span on no list of its heap. */
#define SPAN_FULL_FLAG 0x80000000u
#define SPAN_CUR_BIAS  1u

typedef struct span_s span_t;
struct span_s {
  /* ---- hot: first cache line ---- */
  uintptr_t free;             /*  0 encoded head of the free list (owner only) */
  struct heap_s *owner;       /*  8 owning heap (slabs); NULL for large/huge */
  uintptr_t start;            /* 16 address of block 0 / of the allocation */
  uint32_t used;              /* 24 blocks out (+ CUR_BIAS) | FULL_FLAG: see below */
  uint32_t limit;             /* 28 bytes carved so far: offsets >= limit were never handed out */
  uint64_t divc;              /* 32 ceil(2^64 / size): off*divc < divc <=> size | off */
  uint32_t size;              /* 40 block size (slab) */
  uint16_t cls;               /* 44 size class (slab) */
  uint8_t kind;               /* 46 enum span_kind */
  uint8_t zeroed;             /* 47 pages known to be zero when handed out */
  uintptr_t bump;             /* 48 next never-carved block (slab) */
  uintptr_t bump_end;         /* 56 start + limit */
  /* ---- cold ---- */
  span_t *next, *prev;        /* heap partial list / heap span cache / huge cache */
  uintptr_t base;             /* first byte of the run or mapping */
  size_t bytes;               /* length of the run or mapping */
  struct unit_s *unit;        /* page-layer unit (slab, large) */
  uint32_t capacity;          /* blocks in a slab */
  uint32_t page_index;        /* first page within the unit */
  uint64_t stamp_ns;          /* when it was cached (huge) */
  size_t req_size;            /* requested size (guarded blocks) */
  void *cache;                /* owning object cache (objcache slabs) */
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

extern uintptr_t span_link_key;   /* defined in pagemap.c; random, odd */

#if TIDAL_CHECKS
TD_INLINE uintptr_t span_link_encode(uintptr_t p) { return p ^ span_link_key; }
TD_INLINE uintptr_t span_link_decode(uintptr_t v) { return v ^ span_link_key; }
TD_INLINE bool span_link_bad(uintptr_t p) { return (p & 15) != 0; }
#else
TD_INLINE uintptr_t span_link_encode(uintptr_t p) { return p; }
TD_INLINE uintptr_t span_link_decode(uintptr_t v) { return v; }
TD_INLINE bool span_link_bad(uintptr_t p) { (void)p; return false; }
#endif

/* The pagemap target of runs and mappings that were given back, so that a
 * second free of them is recognised as a double free. Defined in pagemap.c. */
extern span_t span_released;

#endif
