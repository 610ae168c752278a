#include "lock.h"
#include "unit.h"
#include <pthread.h>

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

TEST(trylock) {
  CHECK(mutex_trylock(&m));
  CHECK(!mutex_trylock(&m));
  mutex_unlock(&m);
}

UNIT_MAIN()
