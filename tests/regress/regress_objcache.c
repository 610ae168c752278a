/* Defects: (a) concurrent tidal_objcache_create near the registry's limit
 * wrote past its array; (b) destroyed caches' slots were never reused, so
 * creation failed for good after 256 create/destroy cycles; (c) from the 65th
 * live cache on, caches were silently never drained (the cleaner registry was
 * full); (d) a retain near SIZE_MAX wrapped and let drains go below it;
 * (e) an alignment that is not a power of two was accepted.
 * Now: caches live on an unbounded list, destroyed descriptors are reused,
 * and one cleaner drains every cache. */
#include "testutil.h"

#include <pthread.h>

enum { THREADS = 8, PER_THREAD = 64, LIVE = 300 };
static volatile int go;
static tidal_objcache_t *made[THREADS][PER_THREAD];

static void *creator(void *arg) {
  int t = (int)(intptr_t)arg;
  while (!go) {}
  for (int i = 0; i < PER_THREAD; i++) {
    made[t][i] = tidal_objcache_create("race", 64, 16, 0);
    CHECK(made[t][i] != NULL, "thread %d: creation %d failed", t, i);
    void *o = tidal_objcache_alloc(made[t][i]);
    memset(o, t, 64);
    tidal_objcache_free(made[t][i], o);
  }
  return NULL;
}

int main(void) {
  tt_expect_tidalloc();
  /* (a) many threads creating at once: every creation succeeds, each cache
   * is distinct and works, and the allocator's own state is intact (a purge
   * through the control namespace, which the overflow used to corrupt). */
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, creator, (void *)(intptr_t)i);
  go = 1;
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < THREADS; i++)
    for (int j = 0; j < PER_THREAD; j++)
      for (int k = 0; k < j; k++) CHECK(made[i][j] != made[i][k], "one cache handed out twice");
  CHECK(tidal_ctl("purge", NULL, NULL, NULL, 0) == 0);
  for (int i = 0; i < THREADS; i++)
    for (int j = 0; j < PER_THREAD; j++) tidal_objcache_destroy(made[i][j]);

  /* (c) 300 live caches, each with one empty 2 MiB slab: one release drains all. */
  static tidal_objcache_t *c[LIVE];
  for (int i = 0; i < LIVE; i++) {
    c[i] = tidal_objcache_create("live", 64, 16, 0);
    CHECK(c[i] != NULL, "live cache %d could not be created", i);
    tidal_objcache_free(c[i], tidal_objcache_alloc(c[i]));
  }
  size_t got = tidal_release(SIZE_MAX);
  size_t left = 0;
  for (int i = 0; i < LIVE; i++) left += tidal_objcache_drain(c[i], SIZE_MAX);
  CHECK(left == 0, "tidal_release left %zu bytes of empty slabs in caches (released %zu)", left, got);
  CHECK(got >= (size_t)LIVE << 21, "tidal_release freed only %zu bytes", got);
  for (int i = 0; i < LIVE; i++) tidal_objcache_destroy(c[i]);

  /* (b) create/destroy cycles never run out. */
  for (int cycle = 0; cycle < 2000; cycle++) {
    tidal_objcache_t *x = tidal_objcache_create("tmp", 64, 16, 0);
    CHECK(x != NULL, "creation failed after %d create/destroy cycles", cycle);
    tidal_objcache_destroy(x);
  }

  /* (d) a retain near SIZE_MAX keeps everything. */
  tidal_objcache_t *r = tidal_objcache_create("retain", 64, 16, SIZE_MAX);
  CHECK(r != NULL);
  tidal_objcache_free(r, tidal_objcache_alloc(r));
  CHECK(tidal_objcache_drain(r, SIZE_MAX) == 0, "a drain went below a retain of SIZE_MAX");
  tidal_objcache_destroy(r);

  /* (e) bad arguments. */
  CHECK(tidal_objcache_create("x", 64, 3, 0) == NULL, "alignment 3 accepted");
  CHECK(tidal_objcache_create("x", 64, 24, 0) == NULL, "alignment 24 accepted");
  CHECK(tidal_objcache_create("x", 0, 16, 0) == NULL, "size 0 accepted");
  CHECK(tidal_objcache_create("x", SIZE_MAX, 16, 0) == NULL, "size SIZE_MAX accepted");
  tidal_objcache_t *d = tidal_objcache_create(NULL, 1, 0, 0);   /* 0: the default alignment */
  CHECK(d != NULL);
  tidal_objcache_destroy(d);
  printf("regress_objcache: OK\n");
  return 0;
}
