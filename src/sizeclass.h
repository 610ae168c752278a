/*
 * sizeclass.h — the small size classes and the slab geometry of each.
 *
 * Classes are 16 bytes apart up to 128, then eight per doubling, so a request
 * of 128 bytes or more wastes under 12.5 % of its size (below 128 the waste is
 * under 16 bytes). Class 0 is "not small". Each class has a slab size (pages)
 * chosen so the slab holds at least 8 blocks and loses little to its tail.
 *
 *   class:  1   2   3  ...  8  | 9   10  ... 16 | 17  ...  24 | ... | 72
 *   size:   16  32  48 ... 128 | 144 160 ... 256| 288 ... 512 | ... | 32768
 *
 * What it is not: a policy for large sizes (page layer) or huge ones (huge).
 * It may call: nothing.
 */
#ifndef TIDAL_SIZECLASS_H
#define TIDAL_SIZECLASS_H

#include "util.h"

#define SC_SMALL_MAX    32768u               /* largest slab block */
#define SC_LOOKUP_MAX   1024u                /* sizes resolved by one table load */
#define SC_NCLASSES     73                   /* 72 classes + class 0 */

typedef struct sc_info_s {
  uint32_t size;        /* block size */
  uint32_t pages;       /* slab pages */
  uint32_t capacity;    /* blocks per slab */
  uint32_t batch;       /* blocks carved from the bump region at a time */
} sc_info_t;

/* Class of every request size 0..SC_LOOKUP_MAX, indexed by the size itself
 * (one load on the malloc fast path, no arithmetic). */
extern uint8_t sc_lookup[SC_LOOKUP_MAX + 1];
extern sc_info_t sc_info[SC_NCLASSES];

void sizeclass_init(void);

/* Class of a request of `size` bytes (1 <= size <= SC_SMALL_MAX; 0 maps to 1). */
TD_INLINE unsigned sizeclass_of(size_t size) {
  if (TD_LIKELY(size <= SC_LOOKUP_MAX)) return sc_lookup[size];
  unsigned k = td_log2_floor(size - 1);               /* 2^k < size <= 2^(k+1) */
  size_t step = (size_t)1 << (k - 3);
  return 8u + (k - 7u) * 8u + (unsigned)((size - ((size_t)1 << k) + step - 1) >> (k - 3));
}

/* Smallest class whose block size is >= size and a multiple of align
 * (align a power of two <= page); 0 if none. */
unsigned sizeclass_of_aligned(size_t size, size_t align);

#endif
