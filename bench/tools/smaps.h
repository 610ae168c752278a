/* One field of /proc/self/smaps_rollup, in kB (0 if missing): shared by the
 * bench programs that watch their own memory (hugepage/, pressure/). */
#ifndef TIDAL_BENCH_SMAPS_H
#define TIDAL_BENCH_SMAPS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline long rollup_kb(const char *field) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  char line[256];
  long v = 0;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, field, n)) v = atol(line + n);
  if (f) fclose(f);
  return v;
}
#endif
