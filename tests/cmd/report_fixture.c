/* Writes a heap profile (gperftools text format, as tidalloc's profiler
 * will) whose stacks are real return addresses of this program's known
 * functions, for cmd_report.sh to symbolize:
 *   main -> middle -> big_site     4 blocks, 8 MiB in use (8 MiB allocated)
 *   main -> small_site             100 blocks, 3200 B in use (12.8 MB allocated)
 * Each stack starts with an address inside libtidalloc (tidal_version), an
 * allocator frame the report must skip. Usage: report_fixture PROFILE */
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tidalloc.h"

static FILE *out;

/* One record: the caller's stack, innermost first, after an allocator frame. */
static __attribute__((noinline)) void record(const char *counts) {
  void *pcs[32];
  int n = backtrace(pcs, 32);
  fprintf(out, "%s @ 0x%llx", counts, (unsigned long long)(uintptr_t)tidal_version + 1);
  for (int i = 1; i < n; i++) fprintf(out, " 0x%llx", (unsigned long long)(uintptr_t)pcs[i]);
  fputc('\n', out);
}

__attribute__((noinline)) void big_site(void) {
  record("4: 8388608 [ 4: 8388608]");
  __asm__ volatile("");   /* keep the call above from being a tail call */
}

__attribute__((noinline)) void middle(void) {
  big_site();
  __asm__ volatile("");
}

__attribute__((noinline)) void small_site(void) {
  record("100: 3200 [ 400000: 12800000]");
  __asm__ volatile("");
}

int main(int argc, char **argv) {
  if (argc != 2 || !(out = fopen(argv[1], "w"))) return 2;
  fprintf(out, "heap profile: 104: 8391808 [ 400004: 21188608] @ heap_v2/1\n");
  middle();
  small_site();
  fprintf(out, "\nMAPPED_LIBRARIES:\n");
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[4096];
  while (maps && fgets(line, sizeof line, maps)) fputs(line, out);
  if (maps) fclose(maps);
  return fclose(out) == 0 ? 0 : 1;
}
