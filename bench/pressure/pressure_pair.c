/* The two processes of the memory-pressure scenario (bench/pressure/two_process.sh,
 * tests/stress/pressure_cgroup.sh).
 *   pressure_pair hold MIB KEEP_PERCENT  allocate MIB of 1 KiB objects, free all
 *       but the first KEEP_PERCENT, print "ready", then idle (a 20 ms poll of its own
 *       Rss - LazyFree) until SIGTERM; then print
 *       "hold: released_at_ns=<CLOCK_MONOTONIC when Rss - LazyFree first fell
 *       below half of what it was after the frees, 0 if never> resident_kb=<last>"
 *   pressure_pair take MIB   allocate MIB in 256 KiB blocks, touching them, 64 MiB
 *       every 100 ms (printing "take: start_ns=<...>" first), hold 1 s, exit 0.
 * The allocator under test is whatever LD_PRELOAD provides. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/smaps.h"
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long resident_kb(void) { return rollup_kb("Rss:") - rollup_kb("LazyFree:"); }

int main(int argc, char **argv) {
  if (argc >= 3 && !strcmp(argv[1], "hold")) {
    size_t mib = strtoul(argv[2], NULL, 10), keep = argc > 3 ? strtoul(argv[3], NULL, 10) : 10;
    size_t n = mib << 10;
    char **obj = malloc(n * sizeof *obj);
    for (size_t i = 0; i < n; i++) { obj[i] = malloc(1024); memset(obj[i], (int)i, 1024); }
    /* The long-lived KEEP % were allocated first; the rest (a structure the
     * program is done with) goes. */
    for (size_t i = n * keep / 100; i < n; i++) { free(obj[i]); obj[i] = NULL; }
    signal(SIGTERM, on_term);
    long after = resident_kb();
    uint64_t released = 0;
    printf("ready resident_kb=%ld\n", after);
    fflush(stdout);
    while (!stop) {
      struct timespec ts = { 0, 20 * 1000000 };
      nanosleep(&ts, NULL);
      if (!released && resident_kb() < after / 2) released = now_ns();
    }
    printf("hold: released_at_ns=%llu resident_kb=%ld\n", (unsigned long long)released, resident_kb());
    return 0;
  }
  if (argc >= 3 && !strcmp(argv[1], "take")) {
    size_t mib = strtoul(argv[2], NULL, 10), blocks = mib * 4;
    printf("take: start_ns=%llu\n", (unsigned long long)now_ns());
    fflush(stdout);
    char **b = malloc(blocks * sizeof *b);
    for (size_t i = 0; i < blocks; i++) {
      b[i] = malloc(256 << 10);
      if (!b[i]) { printf("take: malloc failed\n"); return 2; }
      memset(b[i], 1, 256 << 10);
      if (i % 256 == 255) { struct timespec ts = { 0, 100 * 1000000 }; nanosleep(&ts, NULL); }
    }
    sleep(1);
    printf("take: done\n");
    return 0;
  }
  fprintf(stderr, "usage: pressure_pair hold MIB [KEEP%%] | take MIB\n");
  return 2;
}
