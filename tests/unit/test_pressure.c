/* The cleaner registry and drain order, with fake cleaners. The cases run in
 * order on the cleaners the first one registers. */
#include "pressure.h"
#include "tidalloc.h"
#include "unit.h"
#include <string.h>

static char order[64];
static int norder;
static size_t give[4] = { 100, 1000, 10000, 0 };
static int a, b, c;

static size_t fake(void *arg, size_t want) {
  int id = (int)(intptr_t)arg;
  order[norder++] = (char)('A' + id);
  (void)want;
  return give[id];
}

TEST(register_cleaners) {
  a = tidal_cleaner_register("A", fake, (void *)0);
  b = tidal_cleaner_register("B", fake, (void *)1);
  c = tidal_cleaner_register("C", fake, (void *)2);
  CHECK(a >= 0 && b >= 0 && c >= 0 && a != b && b != c);
  CHECK_EQ(tidal_cleaner_register("null", NULL, NULL), -1);
}

/* First pressure: only tidalloc's own caches. */
TEST(some_pressure_own_caches_only) {
  norder = 0;
  pressure_drain(1u << 30, PRESSURE_SOME);
  CHECK_EQ(norder, 0);
}

/* Critical: the application's cleaners, in order, until the target is met. */
TEST(critical_calls_cleaners_in_order) {
  norder = 0;
  size_t got = pressure_drain(1050, PRESSURE_CRITICAL);
  CHECK(got >= 1100);
  order[norder] = 0;
  CHECK(strcmp(order, "AB") == 0);             /* C was not needed */
  norder = 0;
  pressure_drain(1u << 30, PRESSURE_CRITICAL);
  order[norder] = 0;
  CHECK(strcmp(order, "ABC") == 0);
}

/* Unregistered cleaners are never called again. */
TEST(unregistered_not_called) {
  CHECK_EQ(tidal_cleaner_unregister(b), 0);
  CHECK_EQ(tidal_cleaner_unregister(b), -1);
  CHECK_EQ(tidal_cleaner_unregister(999), -1);
  norder = 0;
  tidal_release(1u << 30);
  order[norder] = 0;
  CHECK(strcmp(order, "AC") == 0);
}

/* Statistics: own cleaners first, then the application's, with counts. */
TEST(stats) {
  pressure_stats_t st;
  pressure_stats_get(&st);
  CHECK(st.drains >= 4 && st.events_explicit >= 1);
  CHECK(strcmp(st.cleaners[0].name, "tidalloc:thread_caches") == 0);
  int seen_a = 0;
  for (unsigned i = 0; i < st.ncleaners; i++)
    if (strcmp(st.cleaners[i].name, "A") == 0) { seen_a = 1; CHECK_EQ(st.cleaners[i].calls, 3); CHECK_EQ(st.cleaners[i].released, 300); }
  CHECK(seen_a);
  tidal_cleaner_unregister(a);
  tidal_cleaner_unregister(c);
}

int main(int argc, char **argv) {
  free(malloc(1));
  return UNIT_RUN(argc, argv);
}
