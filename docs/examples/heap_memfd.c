/* A heap on a memfd: every block lives in memory another process can map. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <tidalloc.h>

#define UNIT ((size_t)2 << 20)

typedef struct {
  char *base;        /* the memfd, mapped shared, 2 MiB aligned */
  size_t size, next; /* handed out [0, next) */
} arena_t;

/* map: the next aligned piece of the memfd (size and align: multiples of 2 MiB). */
static void *arena_map(void *ctx, size_t size, size_t align) {
  arena_t *a = ctx;
  size_t at = (a->next + align - 1) / align * align;
  if (at + size > a->size) return NULL; /* the heap returns NULL with ENOMEM */
  a->next = at + size;
  return a->base + at;
}

/* purge: pages the heap no longer needs; punching a hole gives them back. */
static int arena_purge(void *ctx, void *addr, size_t size, int lazy) {
  (void)ctx; (void)lazy;
  return madvise(addr, size, MADV_REMOVE);
}

int main(void) {
  arena_t a = { .size = (size_t)64 << 20 };
  int fd = memfd_create("my-heap", 0);
  if (fd < 0 || ftruncate(fd, (off_t)a.size) != 0) return 1;
  /* Reserve twice the alignment, then map the memfd at an aligned address in it. */
  char *r = mmap(NULL, a.size + UNIT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) return 1;
  a.base = (char *)(((uintptr_t)r + UNIT - 1) & ~(UNIT - 1));
  if (mmap(a.base, a.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) return 1;

  /* No unmap: the memfd is ours and goes with the process. */
  tidal_page_source_t src = { .map = arena_map, .purge = arena_purge, .ctx = &a };
  tidal_heap_config_t cfg = { .source = &src, .name = "memfd" };
  tidal_heap_t *h = tidal_heap_create(&cfg);
  if (!h) return 1;

  char *msg = tidal_heap_malloc(h, 64);
  strcpy(msg, "hello from the memfd");
  printf("%s at offset %td of the memfd\n", msg, msg - a.base);
  free(msg); /* plain free works on any heap's block */

  for (int i = 0; i < 1000; i++) tidal_heap_malloc(h, 100); /* a request's worth of garbage */
  tidal_heap_stats_t st;
  tidal_heap_stats(h, &st);
  printf("%zu bytes allocated, %zu mapped from the memfd\n", st.allocated, st.mapped);
  tidal_heap_destroy(h); /* every block at once */
  return 0;
}
