/* Defects: (a) frees by a thread that never allocated were counted on no
 * heap: stats.allocated kept the freed blocks, allocated > active broke the
 * documented ordering and mallinfo2's fordblks wrapped; (b) a
 * tidal_stats_print callback that read a value with tidal_ctl deadlocked;
 * (c) a class index too large for 64 bits wrapped in stats.classes.N. */
#include "regress.h"

#include <errno.h>
#include <pthread.h>

enum { N = 100000 };
static void *blocks[N];

static void *consumer(void *arg) {   /* frees only: never calls malloc */
  (void)arg;
  for (int i = 0; i < N; i++) free(blocks[i]);
  return NULL;
}

static int reentered;
static void cb(void *arg, const char *text) {
  (void)arg; (void)text;
  if (reentered++) return;
  size_t v, len = sizeof v;
  CHECK(tidal_ctl("stats.allocated", &v, &len, NULL, 0) == 0);
  uint64_t e = 1;
  CHECK(tidal_ctl("epoch", NULL, NULL, &e, sizeof e) == 0);
}

int main(void) {
  tt_expect_tidalloc();
  tt_watchdog(60, "statistics (a deadlock)");
  size_t base = (size_t)rg_stat("stats.allocated");
  for (int i = 0; i < N; i++) blocks[i] = malloc(512);
  CHECK((size_t)rg_stat("stats.allocated") >= base + (size_t)N * 512);
  pthread_t t;
  pthread_create(&t, NULL, consumer, NULL);
  pthread_join(t, NULL);
  tidal_purge();
  size_t a = (size_t)rg_stat("stats.allocated"), act = (size_t)rg_stat("stats.active");
  CHECK(a <= act, "allocated %zu > active %zu after every block was freed", a, act);
  CHECK(a < base + (1u << 20), "allocated %zu still counts the %d freed blocks (was %zu)", a, N, base);
  struct mallinfo2 mi = mallinfo2();
  CHECK(mi.fordblks < ((size_t)1 << 40), "mallinfo2 fordblks wrapped: %zu", mi.fordblks);

  tidal_stats_print(cb, NULL, NULL);
  tidal_stats_print(cb, NULL, "json");
  CHECK(reentered > 0);

  uint64_t u;
  size_t len = sizeof u;
  CHECK(tidal_ctl("stats.classes.18446744073709551617.size", &u, &len, NULL, 0) == ENOENT, "a wrapped class index was accepted");
  CHECK(tidal_ctl("stats.classes.99999999999999999999999.size", &u, &len, NULL, 0) == ENOENT);
  CHECK(tidal_ctl("stats.classes.1.size", &u, &len, NULL, 0) == 0 && u == 16);
  printf("regress_stats: OK\n");
  return 0;
}
