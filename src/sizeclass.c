#include "sizeclass.h"

uint8_t sc_lookup[SC_LOOKUP_MAX + 1];
sc_info_t sc_info[SC_NCLASSES];

#define SLAB_MIN_BYTES   ((size_t)64 << 10)
#define SLAB_MIN_BLOCKS  8
#define CARVE_BYTES      4096   /* carve about a page of blocks at a time */

static uint32_t class_size(unsigned c) {
  if (c <= 8) return 16u * c;
  unsigned group = (c - 9) / 8, i = (c - 9) % 8 + 1;   /* group 0 = 128..256 */
  uint32_t base = 128u << group;
  return base + (base / 8) * i;
}

static void choose_slab(sc_info_t *ci) {
  size_t size = ci->size;
  size_t min_pages = td_pages_of(TD_MAX(SLAB_MIN_BYTES, SLAB_MIN_BLOCKS * size));
  size_t best = min_pages, best_waste = (size_t)-1;
  /* Among min..1.5*min pages take the one that wastes the smallest share. */
  for (size_t p = min_pages; p <= min_pages + min_pages / 2; p++) {
    size_t bytes = p * TD_PAGE, waste = bytes % size;
    if (best_waste == (size_t)-1 || waste * best * TD_PAGE < best_waste * bytes) { best = p; best_waste = waste; }
    if (waste == 0) break;
  }
  ci->pages = (uint32_t)best;
  ci->capacity = (uint32_t)(best * TD_PAGE / size);
  ci->batch = (uint32_t)TD_MAX(1, TD_MIN(ci->capacity, CARVE_BYTES / size));
}

void sizeclass_init(void) {
  for (unsigned c = 1; c < SC_NCLASSES; c++) {
    sc_info[c].size = class_size(c);
    choose_slab(&sc_info[c]);
  }
  unsigned c = 1;
  for (size_t sz = 0; sz <= SC_LOOKUP_MAX; sz++) {
    while (sc_info[c].size < sz) c++;
    sc_lookup[sz] = (uint8_t)c;
  }
}

unsigned sizeclass_of_aligned(size_t size, size_t align) {
  if (size > SC_SMALL_MAX) return 0;
  for (unsigned c = sizeclass_of(size ? size : 1); c < SC_NCLASSES; c++)
    if ((sc_info[c].size & (align - 1)) == 0) return c;
  return 0;
}
