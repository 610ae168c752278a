/* stranded: how many bytes sit in per-thread caches while threads are alive
 * but idle — the figure that decides whether per-CPU caches (rseq) would pay
 * (issue 14: prototype them only if these bytes exceed 20 % of RSS).
 *
 * T threads each run a server-like churn (a ring of `live` objects of
 * 16 B-1 KiB, replaced one by one, plus short bursts), then all stop and wait
 * on a barrier while the main thread reads tidalloc's statistics:
 *   free_capacity = free blocks in the slabs the heaps own
 *                 = sum over classes (capacity - live) x size
 * which counts slab space never touched too, so it overstates what is
 * resident; and the resident overhead
 *   overhead = RSS - RSS before the threads started - live bytes
 * which bounds from above what the thread caches keep resident (it also holds
 * thread stacks, metadata and partly used pages). Both are printed with RSS.
 * Any allocator can be preloaded: live bytes are counted by the program, and
 * free_capacity is read through tidal_ctl only when it is found (dlsym).
 *
 * usage: stranded [threads=2] [live=2000] [iters=200000]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>

typedef int ctl_fn(const char *, void *, size_t *, const void *, size_t);
static ctl_fn *ctl;
static uint64_t live_sum[1024];

static long live_per_thread = 2000, iters = 200000;
static pthread_barrier_t done, leave;

static size_t obj_size(uint64_t *s) {
  *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
  uint64_t a = *s % 1009, b = (*s >> 20) % 1009;
  return (size_t)(16 + a * b / 1008);
}

static void *worker(void *arg) {
  uint64_t seed = 0x9e3779b97f4a7c15ULL * ((uintptr_t)arg + 1);
  void **ring = calloc((size_t)live_per_thread, sizeof *ring);
  size_t *sizes = calloc((size_t)live_per_thread, sizeof *sizes);
  void *burst[32];
  for (long i = 0; i < iters; i++) {
    long k = i % live_per_thread;
    free(ring[k]);
    size_t n = obj_size(&seed);
    ring[k] = malloc(n);
    sizes[k] = n;
    memset(ring[k], 1, 16);
    if (i % 64 == 0) {
      for (int j = 0; j < 32; j++) burst[j] = malloc(obj_size(&seed));
      for (int j = 0; j < 32; j++) free(burst[j]);
    }
  }
  uint64_t sum = 0;
  for (long k = 0; k < live_per_thread; k++) sum += sizes[k];
  live_sum[(uintptr_t)arg] = sum;
  pthread_barrier_wait(&done);   /* idle, with the ring still live */
  pthread_barrier_wait(&leave);
  for (long k = 0; k < live_per_thread; k++) free(ring[k]);
  free(ring);
  free(sizes);
  return NULL;
}

static uint64_t ctl_u64(const char *name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  if (ctl(name, &v, &len, NULL, 0) != 0) {
    fprintf(stderr, "stranded: cannot read %s\n", name);
    exit(1);
  }
  return v;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) v = atol(line + 6);
  if (f) fclose(f);
  return v;
}

int main(int argc, char **argv) {
  long threads = argc > 1 ? atol(argv[1]) : 2;
  if (argc > 2) live_per_thread = atol(argv[2]);
  if (argc > 3) iters = atol(argv[3]);
  if (threads < 1 || threads > 1024 || live_per_thread < 1 || iters < 1) {
    fprintf(stderr, "usage: stranded [threads=2] [live=2000] [iters=200000]\n");
    return 2;
  }
  long rss0 = rss_kb();
  pthread_barrier_init(&done, NULL, (unsigned)threads + 1);
  pthread_barrier_init(&leave, NULL, (unsigned)threads + 1);
  pthread_t *t = calloc((size_t)threads, sizeof *t);
  for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
  pthread_barrier_wait(&done);

  uint64_t stranded = 0, live_bytes = 0;
  for (long i = 0; i < threads; i++) live_bytes += live_sum[i];
  ctl = (ctl_fn *)dlsym(RTLD_DEFAULT, "tidal_ctl");
  uint64_t e = 1, n = 0;
  if (ctl) {
    ctl("epoch", NULL, NULL, &e, sizeof e);
    n = ctl_u64("stats.classes.count");
  }
  char name[64];
  for (uint64_t c = 1; c <= n; c++) {
    snprintf(name, sizeof name, "stats.classes.%llu.size", (unsigned long long)c);
    uint64_t size = ctl_u64(name);
    snprintf(name, sizeof name, "stats.classes.%llu.capacity", (unsigned long long)c);
    uint64_t cap = ctl_u64(name);
    snprintf(name, sizeof name, "stats.classes.%llu.live", (unsigned long long)c);
    uint64_t live = ctl_u64(name);
    if (cap > live) stranded += (cap - live) * size;
  }
  long rss = rss_kb();
  double over = (double)(rss - rss0) * 1024.0 - (double)live_bytes;
  printf("threads %ld  live %.1f MiB  free_capacity %.1f MiB  rss %.1f MiB (%.1f before threads)"
         "  overhead %.1f MiB = %.1f %% of rss\n",
         threads, live_bytes / 1048576.0, stranded / 1048576.0, rss / 1024.0, rss0 / 1024.0,
         over / 1048576.0, rss > 0 ? 100.0 * over / ((double)rss * 1024.0) : 0.0);
  pthread_barrier_wait(&leave);
  for (long i = 0; i < threads; i++) pthread_join(t[i], NULL);
  return 0;
}
