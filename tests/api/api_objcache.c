/* Object caches: alignment, distinct objects, thread safety, retain floor, and
 * a drain that gives back whole 2 MiB hugepages (seen in smaps_rollup). */
#include "testutil.h"

#include <pthread.h>

static long rollup_kb(const char *field) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0) v = atol(line + n);
  if (f) fclose(f);
  return v;
}

static int thp_available(void) {
  /* qemu-user ignores MADV_HUGEPAGE and reports its own process's memory. */
  if (getenv("TIDAL_TEST_EMULATED")) return 0;
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  char buf[128] = "";
  if (f) { if (!fgets(buf, sizeof buf, f)) buf[0] = 0; fclose(f); }
  return strstr(buf, "[never]") == NULL && buf[0];
}

enum { OBJ = 512, N = 20000 };   /* 20000 x 512 B = ~10 MiB: 5 slabs */
static tidal_objcache_t *cache;
static void *objs[N];

static void *worker(void *arg) {
  int base = (int)(intptr_t)arg;
  for (int round = 0; round < 50; round++) {
    void *mine[200];
    for (int i = 0; i < 200; i++) { mine[i] = tidal_objcache_alloc(cache); CHECK(mine[i] != NULL); memset(mine[i], base, OBJ); }
    for (int i = 0; i < 200; i++) { CHECK(((unsigned char *)mine[i])[OBJ - 1] == (unsigned char)base); tidal_objcache_free(cache, mine[i]); }
  }
  return NULL;
}

int main(void) {
  tt_expect_tidalloc();
  cache = tidal_objcache_create("test", OBJ, 64, 1000);
  CHECK(cache != NULL);
  long rss0 = rollup_kb("Rss:"), huge0 = rollup_kb("AnonHugePages:");
  for (int i = 0; i < N; i++) {
    objs[i] = tidal_objcache_alloc(cache);
    CHECK(objs[i] != NULL && (uintptr_t)objs[i] % 64 == 0, "object %d misaligned", i);
    memset(objs[i], i & 0xff, OBJ);
  }
  for (int i = 0; i < N; i++) CHECK(((unsigned char *)objs[i])[0] == (unsigned char)(i & 0xff), "object %d overwritten", i);
  long rss1 = rollup_kb("Rss:"), huge1 = rollup_kb("AnonHugePages:");
  CHECK(rss1 - rss0 >= 9000, "10 MiB of objects: Rss grew by only %ld kB", rss1 - rss0);
  if (thp_available()) CHECK(huge1 - huge0 >= 4096, "slabs should be backed by huge pages: AnonHugePages grew by %ld kB", huge1 - huge0);

  /* concurrent use */
  pthread_t t[3];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(i + 1));
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);

  for (int i = 0; i < N; i++) tidal_objcache_free(cache, objs[i]);
  /* A drain frees whole 2 MiB slabs, but keeps 1000 objects available. */
  size_t got = tidal_objcache_drain(cache, SIZE_MAX);
  long rss2 = rollup_kb("Rss:"), huge2 = rollup_kb("AnonHugePages:");
  CHECK(got >= (size_t)4 << 21 && got % ((size_t)2 << 20) == 0, "drained %zu bytes: not whole 2 MiB slabs", got);
  CHECK(rss1 - rss2 >= (long)(got >> 10) - 3072, "Rss fell by %ld kB for %zu drained bytes", rss1 - rss2, got);   /* the last slab is partly used */
  if (thp_available()) CHECK(huge1 - huge2 >= (long)(got >> 10) - 3072, "AnonHugePages fell by %ld kB for %zu drained", huge1 - huge2, got);
  /* the retain floor: 1000 objects come without new memory */
  for (int i = 0; i < 1000; i++) objs[i] = tidal_objcache_alloc(cache);
  CHECK(rollup_kb("Rss:") - rss2 < 1024, "retained objects needed new memory");
  for (int i = 0; i < 1000; i++) tidal_objcache_free(cache, objs[i]);
  CHECK(tidal_objcache_drain(cache, SIZE_MAX) == 0, "a drain went below the retain floor");
  tidal_objcache_destroy(cache);
  printf("api_objcache: OK (drained %zu bytes, Rss %ld -> %ld kB, AnonHugePages %ld -> %ld kB)\n",
         got, rss1, rss2, huge1, huge2);
  return 0;
}
