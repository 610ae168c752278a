/* The decay curve alone, on fake time. */
#include "decay.h"
#include "unit.h"

#define MS 1000000ull

static const uint64_t t0 = 1000 * MS;

/* 1000 pages freed at t0: all may stay at first, then the allowance falls
 * monotonically to zero within the decay time. */
TEST(burst_decays_to_zero) {
  decay_t d;
  decay_init(&d, 10000, t0);
  CHECK_EQ(decay_limit(&d, t0, 1000), 1000);
  CHECK(decay_deadline(&d, 1000) > t0);
  size_t npages = 1000, prev = 1000;
  for (uint64_t t = t0 + 100 * MS; t <= t0 + 10100 * MS; t += 100 * MS) {
    size_t lim = decay_limit(&d, t, npages);
    CHECK(lim <= prev);
    if (npages > lim) { npages = lim; decay_purged(&d, npages); }
    prev = lim;
    if (t < t0 + 2000 * MS) CHECK(lim > 800);          /* smoothstep: slow start */
  }
  CHECK_EQ(npages, 0);
  CHECK_EQ(decay_deadline(&d, 0), DECAY_NEVER);
}

/* The deadline is exact: no purge is due before it, one is at it. */
TEST(deadline_exact) {
  decay_t d;
  decay_init(&d, 10000, t0);
  decay_limit(&d, t0, 500);
  decay_limit(&d, t0 + 3000 * MS, 500);
  uint64_t dl = decay_deadline(&d, 500);
  CHECK(dl > t0 + 3000 * MS && dl <= t0 + 10100 * MS);
  decay_t copy = d;
  CHECK(decay_limit(&copy, dl - 1, 500) >= 500);
  copy = d;
  CHECK(decay_limit(&copy, dl, 500) < 500);
}

/* Pages reused before they decay are never purged: the count drops and
 * the limit follows. */
TEST(reused_pages) {
  decay_t d;
  decay_init(&d, 1000, t0);
  decay_limit(&d, t0, 100);
  CHECK(decay_limit(&d, t0 + 500 * MS, 10) >= 10);
}

/* 0 means at once, -1 never. */
TEST(zero_and_never) {
  decay_t d;
  decay_init(&d, 0, t0);
  CHECK_EQ(decay_limit(&d, t0, 77), 0);
  CHECK_EQ(decay_deadline(&d, 77), 0);
  decay_init(&d, -1, t0);
  CHECK_EQ(decay_limit(&d, t0 + 1000000 * MS, 77), (long long)SIZE_MAX);
  CHECK_EQ(decay_deadline(&d, 77), DECAY_NEVER);
}

UNIT_MAIN()
