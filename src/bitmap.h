/*
 * bitmap.h — fixed 512-bit maps (one bit per page of a 2 MiB unit).
 * Header-only; no state; calls nothing.
 */
#ifndef TIDAL_BITMAP_H
#define TIDAL_BITMAP_H

#include "util.h"

#define BM_BITS  TD_UNIT_PAGES
#define BM_WORDS (BM_BITS / 64)

typedef struct { uint64_t w[BM_WORDS]; } bm512_t;

TD_INLINE bool bm_get(const bm512_t *m, size_t i) { return (m->w[i >> 6] >> (i & 63)) & 1; }

/* Mask of bits [lo, hi) within word w (lo, hi are absolute bit indices). */
TD_INLINE uint64_t bm_word_mask(size_t w, size_t lo, size_t hi) {
  size_t wlo = w * 64, a = lo > wlo ? lo - wlo : 0, b = hi < wlo + 64 ? hi - wlo : 64;
  if (b <= a) return 0;
  uint64_t m = (b == 64) ? ~0ull : ((1ull << b) - 1);
  return m & ~((1ull << a) - 1);
}

TD_INLINE void bm_set_range(bm512_t *m, size_t lo, size_t n) {
  for (size_t w = lo >> 6; w < BM_WORDS && w * 64 < lo + n; w++) m->w[w] |= bm_word_mask(w, lo, lo + n);
}
TD_INLINE void bm_clear_range(bm512_t *m, size_t lo, size_t n) {
  for (size_t w = lo >> 6; w < BM_WORDS && w * 64 < lo + n; w++) m->w[w] &= ~bm_word_mask(w, lo, lo + n);
}
TD_INLINE size_t bm_count_range(const bm512_t *m, size_t lo, size_t n) {
  size_t c = 0;
  for (size_t w = lo >> 6; w < BM_WORDS && w * 64 < lo + n; w++)
    c += (size_t)__builtin_popcountll(m->w[w] & bm_word_mask(w, lo, lo + n));
  return c;
}
TD_INLINE size_t bm_count(const bm512_t *m) { return bm_count_range(m, 0, BM_BITS); }

/* First index >= i whose bit equals `bit`, or BM_BITS. */
TD_INLINE size_t bm_next(const bm512_t *m, size_t i, bool bit) {
  while (i < BM_BITS) {
    size_t w = i >> 6;
    uint64_t word = bit ? m->w[w] : ~m->w[w];
    word &= ~0ull << (i & 63);
    if (word) return w * 64 + (size_t)__builtin_ctzll(word);
    i = (w + 1) * 64;
  }
  return BM_BITS;
}

/* First run of n clear bits starting at a multiple of `align`; BM_BITS if none. */
TD_INLINE size_t bm_find_clear_run(const bm512_t *m, size_t n, size_t align) {
  size_t i = 0;
  while (i + n <= BM_BITS) {
    size_t f = bm_next(m, i, false);
    if (f >= BM_BITS) return BM_BITS;
    f = td_align_up(f, align);
    if (f + n > BM_BITS) return BM_BITS;
    size_t o = bm_next(m, f, true);
    if (o >= f + n) return f;
    i = o + 1;
  }
  return BM_BITS;
}

/* Whole aligned groups of g bits (g a power of two, g <= 64): out holds every
 * bit of each group in which no bit of `none` is set and some bit of `any` is.
 * (The page layer purges whole OS pages, g of its pages each.) */
TD_INLINE void bm_select_groups(bm512_t *out, const bm512_t *none, const bm512_t *any, size_t g) {
  uint64_t starts = 0;
  for (size_t i = 0; i < 64; i += g) starts |= 1ull << i;
  for (size_t w = 0; w < BM_WORDS; w++) {
    uint64_t clear = ~none->w[w], some = any->w[w];
    for (size_t s = 1; s < g; s <<= 1) { clear &= clear >> s; some |= some >> s; }
    uint64_t sel = clear & some & starts;          /* at each group's first bit */
    for (size_t s = 1; s < g; s <<= 1) sel |= sel << s;
    out->w[w] = sel;
  }
}

/* Length of the longest run of clear bits. */
TD_INLINE size_t bm_longest_clear_run(const bm512_t *m) {
  size_t best = 0, i = 0;
  while (i < BM_BITS) {
    size_t f = bm_next(m, i, false);
    if (f >= BM_BITS) break;
    size_t o = bm_next(m, f, true);
    if (o - f > best) best = o - f;
    i = o;
  }
  return best;
}

#endif
