/* Resident memory as the kernel counts it, for the tests that compare
 * tidalloc's own figures with it: Rss - LazyFree (MADV_FREE'd pages count as
 * LazyFree until the kernel takes them), in bytes, of the whole process
 * (smaps_rollup) or of the mappings that overlap an address range (smaps). */
#ifndef TIDAL_SMAPS_RANGE_H
#define TIDAL_SMAPS_RANGE_H
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sum of Rss - LazyFree over the smaps entries whose range overlaps
 * [lo, hi) (lo = 0, hi = UINTPTR_MAX: every entry of the file). */
static inline long long smaps_resident(const char *file, uintptr_t lo, uintptr_t hi) {
  FILE *f = fopen(file, "r");
  char line[512];
  long long rss = 0, lazy = 0;
  int in = 1;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long a, b;
    if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = a < hi && b > lo;
      continue;
    }
    if (!in) continue;
    if (!strncmp(line, "Rss:", 4)) rss += atoll(line + 4);
    else if (!strncmp(line, "LazyFree:", 9)) lazy += atoll(line + 9);
  }
  if (f) fclose(f);
  return (rss - lazy) * 1024;
}
#endif
