#include "bitmap.h"
#include "unit.h"
#include <string.h>

/* Reference implementations on a bool array. */
static bool ref[BM_BITS];
static size_t ref_run(size_t n, size_t align) {
  for (size_t i = 0; i + n <= BM_BITS; i += align) {
    size_t k = 0;
    while (k < n && !ref[i + k]) k++;
    if (k == n) return i;
  }
  return BM_BITS;
}
static size_t ref_longest(void) {
  size_t best = 0, cur = 0;
  for (size_t i = 0; i < BM_BITS; i++) { cur = ref[i] ? 0 : cur + 1; if (cur > best) best = cur; }
  return best;
}

int main(void) {
  unsigned long long seed = 42;
  bm512_t m;
  for (int round = 0; round < 2000; round++) {
    memset(&m, 0, sizeof m);
    memset(ref, 0, sizeof ref);
    int ops = (int)(unit_rand(&seed) % 40);
    for (int k = 0; k < ops; k++) {
      size_t lo = unit_rand(&seed) % BM_BITS, n = 1 + unit_rand(&seed) % 70;
      if (lo + n > BM_BITS) n = BM_BITS - lo;
      bool set = unit_rand(&seed) & 1;
      if (set) bm_set_range(&m, lo, n); else bm_clear_range(&m, lo, n);
      for (size_t i = lo; i < lo + n; i++) ref[i] = set;
    }
    size_t count = 0;
    for (size_t i = 0; i < BM_BITS; i++) { CHECK(bm_get(&m, i) == ref[i]); count += ref[i]; }
    CHECK_EQ(bm_count(&m), count);
    CHECK_EQ(bm_longest_clear_run(&m), ref_longest());
    size_t lo = unit_rand(&seed) % BM_BITS, n = 1 + unit_rand(&seed) % (BM_BITS - lo);
    size_t c = 0;
    for (size_t i = lo; i < lo + n; i++) c += ref[i];
    CHECK_EQ(bm_count_range(&m, lo, n), c);
    size_t want = 1 + unit_rand(&seed) % 100, align = (size_t)1 << (unit_rand(&seed) % 5);
    CHECK_EQ(bm_find_clear_run(&m, want, align), ref_run(want, align));
    size_t from = unit_rand(&seed) % BM_BITS, nxt = from;
    while (nxt < BM_BITS && !ref[nxt]) nxt++;
    CHECK_EQ(bm_next(&m, from, true), nxt);
  }
  UNIT_DONE();
}
