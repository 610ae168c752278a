/* Defect: a cleaner that unregistered itself, or destroyed an object cache
 * (which unregisters its cleaner), deadlocked: the drain held a lock while it
 * called cleaners, and unregistering took it. Now cleaners run with no lock
 * held: a cleaner may unregister itself or others and create or destroy
 * object caches; tidal_release from inside a cleaner returns 0 instead of
 * deadlocking; and once tidal_cleaner_unregister returns, the cleaner is not
 * running and never runs again, even when a drain was calling it from
 * another thread. */
#include "testutil.h"

#include <pthread.h>

static int self_id = -1, other_id = -1, calls_self, calls_other, calls_nested;
static tidal_objcache_t *cache;
static size_t nested_result = 12345;

static size_t one_shot(void *arg, size_t want) {
  (void)arg; (void)want;
  calls_self++;
  CHECK(tidal_cleaner_unregister(self_id) == 0);
  return 0;
}
static size_t other(void *arg, size_t want) { (void)arg; (void)want; calls_other++; return 0; }
static size_t drops_cache(void *arg, size_t want) {
  (void)arg; (void)want;
  if (cache) { tidal_objcache_destroy(cache); cache = NULL; }
  tidal_objcache_t *x = tidal_objcache_create("made-in-cleaner", 32, 16, 0);
  tidal_objcache_destroy(x);
  if (other_id >= 0) { CHECK(tidal_cleaner_unregister(other_id) == 0); other_id = -1; }   /* another cleaner */
  return 0;
}
static size_t nested(void *arg, size_t want) {
  (void)arg; (void)want;
  calls_nested++;
  nested_result = tidal_release(1 << 20);
  return 0;
}

/* A slow cleaner, and a thread unregistering it while a drain runs it. */
static volatile int in_slow, slow_done;
static int slow_id;
static size_t slow(void *arg, size_t want) {
  (void)arg; (void)want;
  in_slow = 1;
  usleep(300000);
  slow_done = 1;
  return 0;
}
static void *drainer(void *arg) { (void)arg; tidal_release(SIZE_MAX); return NULL; }

int main(void) {
  tt_expect_tidalloc();
  tt_watchdog(60, "cleaners (a deadlock)");
  self_id = tidal_cleaner_register("one-shot", one_shot, NULL);
  other_id = tidal_cleaner_register("other", other, NULL);
  cache = tidal_objcache_create("objs", 64, 16, 0);
  int drop_id = tidal_cleaner_register("drops-cache", drops_cache, NULL);
  int nested_id = tidal_cleaner_register("nested", nested, NULL);
  CHECK(self_id >= 0 && other_id >= 0 && drop_id >= 0 && nested_id >= 0);
  tidal_release(SIZE_MAX);
  tidal_release(SIZE_MAX);
  CHECK(calls_self == 1, "the one-shot cleaner ran %d times", calls_self);
  CHECK(calls_other <= 1, "an unregistered cleaner ran again");
  CHECK(cache == NULL);
  CHECK(calls_nested == 2 && nested_result == 0, "tidal_release inside a cleaner returned %zu", nested_result);
  tidal_cleaner_unregister(drop_id);
  tidal_cleaner_unregister(nested_id);

  slow_id = tidal_cleaner_register("slow", slow, NULL);
  pthread_t t;
  pthread_create(&t, NULL, drainer, NULL);
  while (!in_slow) usleep(1000);
  CHECK(tidal_cleaner_unregister(slow_id) == 0);
  CHECK(slow_done, "tidal_cleaner_unregister returned while the cleaner was still running");
  pthread_join(t, NULL);
  printf("regress_cleaners: OK\n");
  return 0;
}
