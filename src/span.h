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

#include "util.h"

struct heap_s;
struct unit_s;

/* A free block. Layout while free (blocks are >= 16 bytes):
 *
 *   +0                      +8                      +16 ...
 *   | next (encoded link)   | key (= free-marker)   | stale user bytes
 *
 * `key` equals the process-wide secret while the block is free and is zeroed
 * when it is handed out, so freeing a block whose key is set is a double free.
 */
typedef struct block_s {
  uintptr_t next;
  uint64_t key;
} block_t;

enum span_kind { SPAN_NONE = 0, SPAN_SLAB = 1, SPAN_LARGE = 2, SPAN_HUGE = 3, SPAN_RELEASED = 4 };

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
  uint32_t limit;             /* 28 capacity * size: offsets >= limit are invalid */
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
} TD_ALIGNED(TD_CACHELINE);

/* The pagemap target of runs and mappings that were given back, so that a
 * second free of them is recognised as a double free. Defined in pagemap.c. */
extern span_t span_released;

#endif
