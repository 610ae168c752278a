/*
 * pagemap.h — address → span descriptor, in O(1), with no header in front of
 * user blocks.
 *
 * What it is: two maps at page granularity. The window is one range of
 * address space, aligned to its power-of-two size (the page layer's arena,
 * where the default pager's regions are carved), whose pages resolve through
 * one flat table of 8-byte entries (size / TD_PAGE of them, a metadata
 * mapping touched only where pages are in use). Every other address goes
 * through a two-level radix tree over the 48-bit user address space: the
 * root (2^18 entries, in .bss) points to leaves that each cover 1 GiB
 * (2^18 pages × 8 bytes = a 2 MiB metadata mapping). A slab registers every
 * page it spans (interior pointers resolve); a large or huge allocation
 * registers its first page only, so an interior pointer to it resolves to
 * NULL (an invalid free). Readers take no lock; the window is opened once,
 * leaves are created once, and neither is ever removed.
 *
 * The free fast path reads the flat table with the address's page bits
 * masked, not compared: pagemap_lookup_fast(p) is the entry of p when p is in
 * the window, and otherwise the entry of the window's page at the same offset
 * (an alias). A caller of it accepts the span only after checking p against
 * the span's own bounds (span_block_bad), and sends every other address to
 * pagemap_lookup, which is exact.
 *
 *   address p:  | high bits (window base) | page index in window | page offset |
 *                                          \_ (p & pagemap_flat_mask) >> TD_PAGE_SHIFT
 *
 * A flat entry holds its span's address relative to a span that sits just
 * before the table, the table's own "none" (zero: no owner, nothing carved),
 * so an empty entry decodes to it and the fast lookup has no NULL to test:
 *
 *   table mapping:  | none (a span_t, all zero) | entry 0 | entry 1 | ...
 *                   ^ pagemap_flat - sizeof(span_t)
 *   entry = span - (pagemap_flat - sizeof(span_t)),  0 for no span
 *
 * What it is not: an owner of spans; it stores what the layers above give it.
 * It may call: span, meta, lock.
 */
#ifndef TIDAL_PAGEMAP_H
#define TIDAL_PAGEMAP_H

#include "span.h"

#define PAGEMAP_LEAF_SHIFT 30
#define PAGEMAP_ROOT_LEN   ((size_t)1 << (48 - PAGEMAP_LEAF_SHIFT))
#define PAGEMAP_LEAF_LEN   ((size_t)1 << (PAGEMAP_LEAF_SHIFT - TD_PAGE_SHIFT))

extern span_t **pagemap_root[PAGEMAP_ROOT_LEN];

/* The window (all zero until pagemap_window_open; then fixed):
 *   pagemap_window_size = 2^k >= TD_PAGE,  pagemap_window_base % pagemap_window_size = 0
 *   pagemap_flat_mask   = pagemap_window_size - TD_PAGE   (the bits of a page index, in place)
 *   pagemap_flat        has pagemap_window_size / TD_PAGE entries (one, empty, before the window)
 *   the table's none   = (span_t *)pagemap_flat - 1, zero: its owner is NULL, carved 0
 *   a lookup of an address of the window never reads the radix tree
 * Published table and base first, then the size and the mask (release);
 * readers load the size or the mask first (acquire), then the rest. */
extern uintptr_t *pagemap_flat TD_HIDDEN;
extern uintptr_t pagemap_flat_mask TD_HIDDEN;
extern uintptr_t pagemap_window_base TD_HIDDEN;
extern size_t pagemap_window_size TD_HIDDEN;

/* A flat entry of table t, decoded: a span, or t's none (see above). */
TD_INLINE span_t *pagemap_flat_decode(const uintptr_t *t, uintptr_t e) {
#if defined(__x86_64__)
  /* One lea: left to itself the compiler adds, then subtracts. */
  span_t *s;
  __asm__("lea %c3(%1,%2), %0" : "=r"(s) : "r"(t), "r"(e), "i"(-(long)sizeof(span_t)));
  return s;
#else
  return (span_t *)((uintptr_t)t - sizeof(span_t) + e);
#endif
}

/* The free fast path's lookup: p's entry if p is in the window, else an
 * alias's (see above); never NULL: no span is the table's none, which no
 * heap owns. Callers check the span's owner and bounds. */
TD_INLINE span_t *pagemap_lookup_fast(const void *p) {
#if defined(__x86_64__)
  /* Loads are not reordered with loads here: the compiler's order is enough. */
  uintptr_t i = ((uintptr_t)p & __atomic_load_n(&pagemap_flat_mask, __ATOMIC_RELAXED)) >> TD_PAGE_SHIFT;
  __atomic_signal_fence(__ATOMIC_ACQUIRE);
#else
  uintptr_t i = ((uintptr_t)p & __atomic_load_n(&pagemap_flat_mask, __ATOMIC_ACQUIRE)) >> TD_PAGE_SHIFT;
#endif
  const uintptr_t *t = __atomic_load_n(&pagemap_flat, __ATOMIC_RELAXED);
  return pagemap_flat_decode(t, __atomic_load_n(&t[i], __ATOMIC_ACQUIRE));
}

/* The exact lookup. Addresses at or above 2^48 are not user addresses: they
 * alias in the radix tree (the index is masked, not bounds-checked) and the
 * caller's checks against the span's own bounds reject them. */
TD_INLINE span_t *pagemap_lookup(const void *p) {
  uintptr_t a = (uintptr_t)p;
  size_t window = __atomic_load_n(&pagemap_window_size, __ATOMIC_ACQUIRE);
  uintptr_t off = a - __atomic_load_n(&pagemap_window_base, __ATOMIC_RELAXED);
  if (off < window) {
    uintptr_t e = __atomic_load_n(&pagemap_flat[off >> TD_PAGE_SHIFT], __ATOMIC_ACQUIRE);
    return e ? pagemap_flat_decode(pagemap_flat, e) : NULL;
  }
  uintptr_t r = (a >> PAGEMAP_LEAF_SHIFT) & (PAGEMAP_ROOT_LEN - 1);
  span_t **leaf = __atomic_load_n(&pagemap_root[r], __ATOMIC_RELAXED);
  if (TD_UNLIKELY(leaf == NULL)) return NULL;
  return __atomic_load_n(&leaf[(a >> TD_PAGE_SHIFT) & (PAGEMAP_LEAF_LEN - 1)], __ATOMIC_ACQUIRE);
}

/* Open the window on [base, base + size) (size a power of two, base aligned
 * to it), once per process: maps its table. False (nothing changed) when a
 * window is open already, the range is malformed or the table cannot be
 * mapped. */
bool pagemap_window_open(uintptr_t base, size_t size);

/* Make sure leaves exist for [addr, addr+size) (none are needed inside the
 * window). Returns true on success. */
bool pagemap_reserve(uintptr_t addr, size_t size);
/* Point `npages` pages from addr at s (leaves must exist; a run lies wholly
 * inside the window or wholly outside it). */
void pagemap_set(uintptr_t addr, size_t npages, span_t *s);

void pagemap_init(void);
void pagemap_prefork(void);
void pagemap_postfork_parent(void);
void pagemap_postfork_child(void);

#endif
