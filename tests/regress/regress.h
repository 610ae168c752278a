/* Helpers shared by the regression tests (on top of tests/api/testutil.h). */
#ifndef TIDAL_REGRESS_H
#define TIDAL_REGRESS_H
#include "testutil.h"

#include <stdbool.h>

/* A statistic read from a fresh snapshot. */
TT_UNUSED static uint64_t rg_stat(const char *name) {
  uint64_t e = 1, v = 0;
  size_t len = sizeof v;
  tidal_ctl("epoch", NULL, NULL, &e, sizeof e);
  CHECK(tidal_ctl(name, &v, &len, NULL, 0) == 0, "tidal_ctl(%s)", name);
  return v;
}

/* Whether the background worker is running now. */
TT_UNUSED static bool rg_background_running(void) {
  uint64_t e = 1;
  bool on = false;
  size_t len = sizeof on;
  tidal_ctl("epoch", NULL, NULL, &e, sizeof e);
  tidal_ctl("stats.background_running", &on, &len, NULL, 0);
  return on;
}
#endif
