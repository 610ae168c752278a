/* The 512-bit maps against reference implementations on a bool array. Every
 * case replays the same 2000 random rounds (same seed, same draws) and checks
 * one operation on each. */
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

#define ROUNDS 2000

/* One round: random set/clear ranges applied to m and ref, then the queries'
 * parameters, drawn in a fixed order. */
typedef struct { size_t lo, n, want, align, from; } query_t;
static query_t round_state(unsigned long long *seed, bm512_t *m) {
  memset(m, 0, sizeof *m);
  memset(ref, 0, sizeof ref);
  int ops = (int)(unit_rand(seed) % 40);
  for (int k = 0; k < ops; k++) {
    size_t lo = unit_rand(seed) % BM_BITS, n = 1 + unit_rand(seed) % 70;
    if (lo + n > BM_BITS) n = BM_BITS - lo;
    bool set = unit_rand(seed) & 1;
    if (set) bm_set_range(m, lo, n); else bm_clear_range(m, lo, n);
    for (size_t i = lo; i < lo + n; i++) ref[i] = set;
  }
  query_t q;
  q.lo = unit_rand(seed) % BM_BITS;
  q.n = 1 + unit_rand(seed) % (BM_BITS - q.lo);
  q.want = 1 + unit_rand(seed) % 100;
  q.align = (size_t)1 << (unit_rand(seed) % 5);
  q.from = unit_rand(seed) % BM_BITS;
  return q;
}

TEST(get_and_count) {
  unsigned long long seed = 42;
  bm512_t m;
  for (int round = 0; round < ROUNDS; round++) {
    round_state(&seed, &m);
    size_t count = 0;
    for (size_t i = 0; i < BM_BITS; i++) { CHECK(bm_get(&m, i) == ref[i]); count += ref[i]; }
    CHECK_EQ(bm_count(&m), count);
  }
}

TEST(longest_clear_run) {
  unsigned long long seed = 42;
  bm512_t m;
  for (int round = 0; round < ROUNDS; round++) {
    round_state(&seed, &m);
    CHECK_EQ(bm_longest_clear_run(&m), ref_longest());
  }
}

TEST(count_range) {
  unsigned long long seed = 42;
  bm512_t m;
  for (int round = 0; round < ROUNDS; round++) {
    query_t q = round_state(&seed, &m);
    size_t c = 0;
    for (size_t i = q.lo; i < q.lo + q.n; i++) c += ref[i];
    CHECK_EQ(bm_count_range(&m, q.lo, q.n), c);
  }
}

TEST(find_clear_run) {
  unsigned long long seed = 42;
  bm512_t m;
  for (int round = 0; round < ROUNDS; round++) {
    query_t q = round_state(&seed, &m);
    CHECK_EQ(bm_find_clear_run(&m, q.want, q.align), ref_run(q.want, q.align));
  }
}

TEST(next_set) {
  unsigned long long seed = 42;
  bm512_t m;
  for (int round = 0; round < ROUNDS; round++) {
    query_t q = round_state(&seed, &m);
    size_t nxt = q.from;
    while (nxt < BM_BITS && !ref[nxt]) nxt++;
    CHECK_EQ(bm_next(&m, q.from, true), nxt);
  }
}

UNIT_MAIN()
