#include "lock.h"
#include "unit.h"
#include <pthread.h>
#include <time.h>

static td_mutex_t m = TD_MUTEX_INIT("test", RANK_INIT);
static long counter;

static void *worker(void *arg) {
  (void)arg;
  for (int i = 0; i < 200000; i++) {
    mutex_lock(&m);
    counter++;
    mutex_unlock(&m);
  }
  return NULL;
}

/* Four threads increment under the lock: no update is lost, and the
 * contention counters add up. */
TEST(mutual_exclusion) {
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  CHECK_EQ(counter, 800000);
  CHECK_EQ(m.n_lock, 800000);
  CHECK(m.n_contended <= m.n_lock);
}

/* Hold times: a critical section of 20 ms shows in the sum and as the
 * longest hold, converted to nanoseconds within the time it really took. */
TEST(hold_time) {
  td_mutex_t h = TD_MUTEX_INIT("hold", RANK_INIT);
  struct timespec a, b, nap = { 0, 20 * 1000 * 1000 };
  mutex_lock(&h);
  mutex_unlock(&h);
  uint64_t short_hold = os_ticks_ns(h.hold_ticks);
  clock_gettime(CLOCK_MONOTONIC, &a);
  mutex_lock(&h);
  nanosleep(&nap, NULL);
  mutex_unlock(&h);
  clock_gettime(CLOCK_MONOTONIC, &b);
  uint64_t took = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec - (uint64_t)a.tv_nsec;
  uint64_t held = os_ticks_ns(h.hold_ticks), longest = os_ticks_ns(h.hold_max_ticks);
  CHECK_EQ(h.n_lock, 2);
  CHECK(held >= 19 * 1000 * 1000 && held <= took + short_hold + 1000000);
  CHECK(longest >= 19 * 1000 * 1000 && longest <= held);
  CHECK(short_hold < longest);
}

TEST(trylock) {
  CHECK(mutex_trylock(&m));
  CHECK(!mutex_trylock(&m));
  mutex_unlock(&m);
}

int main(int argc, char **argv) {
  os_init();   /* the tick rate is measured from here (os_ticks_ns) */
  return UNIT_RUN(argc, argv);
}
