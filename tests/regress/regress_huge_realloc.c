/* Defect: a moving huge realloc cleared the old address's pagemap entry
 * after mremap had released it; another thread that mapped a new block at
 * that address in between lost its entry, and its free aborted with "invalid
 * pointer". Threads resize huge blocks (forcing moves) while others map and
 * free fresh ones; CTest preloads a shim that pauses after every moving
 * mremap (tests/regress/mremap_delay.c) to widen the window. Moved blocks
 * must keep their contents. */
#include "testutil.h"

#include <pthread.h>

static volatile int stop;

static void *resizer(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  while (!stop) {
    size_t sz = (1u << 20) + 4096 + (rand_r(&seed) % 4) * 4096;
    unsigned char *p = malloc(sz);
    CHECK(p != NULL);
    p[0] = 1;
    for (int i = 0; i < 16 && !stop; i++) {
      sz = (1u << 20) + 4096 + (size_t)(rand_r(&seed) % 24) * (1u << 20) / 2;
      p = realloc(p, sz);
      CHECK(p != NULL && p[0] == 1, "realloc lost the block's contents");
      p[sz - 1] = 2;
    }
    free(p);
  }
  return NULL;
}

static void *mapper(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  while (!stop) {
    size_t sz = (1u << 20) + 4096 + (rand_r(&seed) % 256) * 4096;
    char *p = malloc(sz);
    CHECK(p != NULL);
    p[0] = 3;
    free(p);   /* aborted with "invalid pointer" when its entry was wiped */
  }
  return NULL;
}

int main(void) {
  tt_expect_tidalloc();
  tt_watchdog(120, "huge realloc race");
  pthread_t t[6];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, resizer, (void *)(uintptr_t)(i + 1));
  for (int i = 3; i < 6; i++) pthread_create(&t[i], NULL, mapper, (void *)(uintptr_t)(i + 1));
  usleep((useconds_t)tt_scaled(8000, 1000) * 1000);
  stop = 1;
  for (int i = 0; i < 6; i++) pthread_join(t[i], NULL);
  printf("regress_huge_realloc: OK\n");
  return 0;
}
