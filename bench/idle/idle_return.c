/* Idle return after a burst with scattered survivors (issue 13): what a
 * server leaves behind when most of a burst is freed but a few objects of it
 * stay, scattered through the memory the burst used.
 *   idle_return SECONDS [MIB] [SAMPLE_MS] [trim]
 * allocates about MIB MiB (default 1024) of objects of 16 B to 64 KiB (sizes
 * log-uniform: as many objects of 16-32 B as of 32-64 KiB), touching every
 * byte; keeps 1 in 64 of them, chosen at random; frees the others in random
 * order; then idles for SECONDS, printing "t_ms resident_kb live_kb" every
 * SAMPLE_MS (default 250) from the end of the frees, where resident = Rss -
 * LazyFree of /proc/self/smaps_rollup (MADV_FREE'd pages the kernel may take
 * count as given back) and live = bytes of the kept objects plus the
 * program's own arrays. The samples are read without allocating, so the
 * idle program makes no allocator call at all. With "trim" it calls
 * malloc_trim(0) once after the frees (what a program that knows it is about
 * to idle can do; glibc and tidalloc act on it, the others may not).
 * bench/idle/run.sh runs it under each allocator. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEEP_ONE_IN 64
#define MIN_SHIFT   4    /* 16 B */
#define MAX_SHIFT   16   /* 64 KiB */

static uint64_t ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nap_until(uint64_t t_ms) {
  uint64_t now = ms_now();
  if (t_ms <= now) return;
  struct timespec ts = { (time_t)((t_ms - now) / 1000), (long)((t_ms - now) % 1000) * 1000000 };
  nanosleep(&ts, NULL);
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* One field of smaps_rollup in kB, read with open/read into a static
 * buffer: no allocator call. */
static long rollup_field_kb(const char *text, const char *field) {
  const char *p = strstr(text, field);
  return p ? atol(p + strlen(field)) : 0;
}

static long resident_kb(void) {
  static char buf[8192];
  int fd = open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  return rollup_field_kb(buf, "\nRss:") - rollup_field_kb(buf, "\nLazyFree:");
}

static size_t object_size(void) {
  unsigned k = MIN_SHIFT + (unsigned)(next() % (MAX_SHIFT - MIN_SHIFT));   /* [2^k, 2^(k+1)) */
  return ((size_t)1 << k) + (size_t)(next() % ((size_t)1 << k));
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: idle_return SECONDS [MIB] [SAMPLE_MS]\n"); return 2; }
  long secs = atol(argv[1]), sample_ms = argc > 3 ? atol(argv[3]) : 250;
  size_t budget = (size_t)(argc > 2 ? atol(argv[2]) : 1024) << 20, n = 0, total = 0;
  size_t cap = budget / 4096 + 1024;   /* the mean size is about 8 KiB */
  void **obj = malloc(cap * sizeof *obj);
  uint32_t *sz = malloc(cap * sizeof *sz), *order = malloc(cap * sizeof *order);
  if (!obj || !sz || !order) return 1;
  while (total < budget && n < cap) {
    size_t s = object_size();
    obj[n] = malloc(s);
    if (!obj[n]) return 1;
    memset(obj[n], (int)(n | 1), s);
    sz[n] = (uint32_t)s;
    total += s;
    n++;
  }
  for (size_t i = 0; i < n; i++) order[i] = (uint32_t)i;
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = next() % (i + 1);
    uint32_t t = order[i]; order[i] = order[j]; order[j] = t;
  }
  size_t live = 0, kept = 0;
  for (size_t k = 0; k < n; k++) {
    size_t i = order[k];
    if (next() % KEEP_ONE_IN == 0) { live += sz[i]; kept++; continue; }
    free(obj[i]);
    obj[i] = NULL;
  }
  if (argc > 4 && !strcmp(argv[4], "trim")) malloc_trim(0);
  live += cap * (sizeof *obj + 2 * sizeof *sz);   /* the program's own arrays */
  fprintf(stderr, "idle_return: %zu objects, %zu MiB allocated, %zu kept (%zu KiB live)\n",
          n, total >> 20, kept, live >> 10);
  uint64_t t0 = ms_now();
  for (long k = 0; k * sample_ms <= secs * 1000; k++) {
    nap_until(t0 + (uint64_t)(k * sample_ms));
    printf("%llu %ld %zu\n", (unsigned long long)(ms_now() - t0), resident_kb(), live >> 10);
    fflush(stdout);
  }
  size_t check = 0;   /* the kept objects are intact */
  for (size_t i = 0; i < n; i++)
    if (obj[i]) check += ((unsigned char *)obj[i])[sz[i] - 1] == (unsigned char)(i | 1);
  return check == kept ? 0 : 3;
}
