/* Defect: tidal_release (and the drain under it) ran before the allocator
 * was initialised, in a constructor that runs before tidalloc's (a program
 * linked with libtidalloc.a whose constructor has a priority), and
 * dereferenced NULL. Every exported function must initialise first. */
#include "testutil.h"

static size_t early_released = 1;
static int early_ok;

__attribute__((constructor(101))) static void early(void) {
  early_released = tidal_release(1);
  int id = tidal_cleaner_register("early", NULL, NULL);   /* refused, but no crash */
  early_ok = id == -1;
}

int main(void) {
  tt_expect_tidalloc();
  CHECK(early_ok);
  CHECK(early_released == 0 || early_released < ((size_t)1 << 40));
  printf("regress_release_before_init: OK\n");
  return 0;
}
