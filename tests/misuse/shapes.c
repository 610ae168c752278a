/* The misuse shapes: the case shapes a new user tries when comparing
 * allocators (overflows and underflows, double frees, use after free, reuse,
 * zero on malloc, executable heap, invalid frees, wrong C++ deletes), each at
 * three block sizes, run as `misuse_shapes CASE` in a child process with
 * tidalloc preloaded (default or secure mode) or without (glibc). The
 * program is plain C with no tidalloc calls, so every allocator runs the
 * very same code. How a case ends:
 *   SIGABRT / SIGSEGV (or SIGBUS)  the misuse was caught;
 *   exit 4                          caught by the program's own look: the
 *                                   memory read as zero, or a fresh block
 *                                   came at a new address;
 *   exit 3                          not caught (it reached the end).
 * tests/misuse/shapes.py runs them all in every mode and keeps the table
 * tests/misuse/shapes.md (the expected outcome of each case per mode).
 *
 * Case names: SHAPE@SIZE, SIZE one of 8, 4096, 262144 where the shape takes
 * a size (list: `misuse_shapes --list`). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NOT_CAUGHT 3
#define CAUGHT_BY_LOOK 4
#define MIB ((size_t)1 << 20)

int run_cxx(const char *shape);   /* shapes_cxx.cc */

/* Keep the compiler from reasoning about our pointers. */
static void *volatile sink;
static char *hide(void *p) { sink = p; return sink; }
static void *(*volatile memcpy_v)(void *, const void *, size_t) = memcpy;
static void *(*volatile memset_v)(void *, int, size_t) = memset;

static char src[3 * MIB];   /* memcpy source, 'S' bytes */

static const size_t sizes[] = {8, 4096, 262144};
static const char *const sized_shapes[] = {
  "overflow_1_write", "overflow_1_memcpy", "overflow_32_write", "overflow_32_memcpy",
  "overflow_1m_write", "overflow_1m_memcpy",
  "underflow_1_write", "underflow_1_memcpy", "underflow_32_write", "underflow_32_memcpy",
  "underflow_1m_write", "underflow_1m_memcpy",
  "double_free_immediate", "double_free_delayed", "double_free_interleaved",
  "double_free_after_reuse", "double_free_single_reuse",
  "write_after_free", "write_after_free_reuse", "zero_after_free", "zero_after_free_reuse",
  "reuse_same_size", "reuse_smaller_size", "zero_on_malloc", "exec_heap",
  "invalid_free_interior", "invalid_free_unaligned",
};
static const char *const plain_shapes[] = {
  "invalid_free_stack", "invalid_free_static", "invalid_free_far",
  "delete_wrong_type", "delete_wrong_size", "delete_array_as_scalar", "delete_scalar_as_array",
};
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Ordinary use after a misuse: free the block, allocate and free one more of
 * the same size (where most allocators look at their metadata again). */
static int settle(char *p, size_t n) {
  free(p);
  free(hide(malloc(n)));
  return NOT_CAUGHT;
}

static int overflow(size_t n, size_t by, int use_memcpy) {
  char *p = hide(malloc(n));
  if (use_memcpy) memcpy_v(p, src, n + by);
  else p[n + by - 1] = 'A';
  return settle(p, n);
}

static int underflow(size_t n, size_t by, int use_memcpy) {
  char *p = hide(malloc(n));
  if (use_memcpy) memcpy_v(p - by, src, by);
  else p[-(ptrdiff_t)by] = 'A';
  return settle(p, n);
}

static int double_free(size_t n, const char *how) {
  char *p = hide(malloc(n));
  if (!strcmp(how, "immediate")) {
    free(p);
    free(p);
  } else if (!strcmp(how, "delayed")) {
    free(p);
    for (int i = 0; i < 10; i++) hide(malloc(n / 2 + 1 + (size_t)i));
    free(p);
  } else if (!strcmp(how, "interleaved")) {
    char *q = hide(malloc(n));
    free(p);
    free(q);
    free(p);
  } else if (!strcmp(how, "after_reuse")) {
    free(p);
    hide(malloc(n));   /* often p again: then the stale free releases a live block */
    free(p);
  } else {             /* single_reuse: the reused block is freed, then the stale pointer */
    free(p);
    char *q = hide(malloc(n));
    free(q);
    free(p);
  }
  return NOT_CAUGHT;
}

/* A write to a freed block (some bytes, or the whole block zeroed), then
 * more allocation: of other sizes (no reuse) or of the same size (reuse). */
static int after_free(size_t n, int zero, int reuse) {
  char *p = hide(malloc(n));
  memset_v(p, 'P', n);
  free(p);
  if (zero) memset_v(p, 0, n);
  else memset_v(p, 'W', n < 16 ? n : 16);
  for (int i = 0; i < 8; i++) {
    char *q = hide(malloc(reuse ? n : n * 2 + 24));
    memset_v(q, 'Q', reuse ? n : n * 2 + 24);
    free(q);
  }
  return NOT_CAUGHT;
}

static int reuse(size_t n, int smaller) {
  char *p = hide(malloc(n));
  free(p);
  char *q = hide(malloc(smaller ? n - n / 4 : n));
  free(q);
  return q == p ? NOT_CAUGHT : CAUGHT_BY_LOOK;
}

static int zero_on_malloc(size_t n) {
  enum { N = 16 };
  char *b[N];
  for (int i = 0; i < N; i++) memset_v(b[i] = hide(malloc(n)), 0xAA, n);
  for (int i = 0; i < N; i++) free(b[i]);
  char *p = hide(malloc(n));
  for (size_t i = 0; i < n; i++)
    if (p[i]) return NOT_CAUGHT;
  return CAUGHT_BY_LOOK;
}

static int exec_heap(size_t n) {
  unsigned char *p = (unsigned char *)hide(malloc(n));
#if defined(__x86_64__) || defined(__i386__)
  p[0] = 0xc3;                                     /* ret */
#elif defined(__aarch64__)
  static const unsigned char ret[4] = {0xc0, 0x03, 0x5f, 0xd6};
  memcpy(p, ret, 4);
  __builtin___clear_cache((char *)p, (char *)p + 4);
#else
  return NOT_CAUGHT;
#endif
  void (*fn)(void);
  memcpy(&fn, &p, sizeof fn);
  fn();
  return NOT_CAUGHT;
}

static int run_sized(const char *shape, size_t n) {
  size_t by = 0;
  if (!strncmp(shape, "overflow_", 9) || !strncmp(shape, "underflow_", 10)) {
    const char *a = strchr(shape, '_') + 1;
    by = a[0] == '1' && a[1] == 'm' ? MIB : (size_t)atoi(a);
    int mc = strstr(shape, "memcpy") != NULL;
    return shape[0] == 'o' ? overflow(n, by, mc) : underflow(n, by, mc);
  }
  if (!strncmp(shape, "double_free_", 12)) return double_free(n, shape + 12);
  if (!strcmp(shape, "write_after_free")) return after_free(n, 0, 0);
  if (!strcmp(shape, "write_after_free_reuse")) return after_free(n, 0, 1);
  if (!strcmp(shape, "zero_after_free")) return after_free(n, 1, 0);
  if (!strcmp(shape, "zero_after_free_reuse")) return after_free(n, 1, 1);
  if (!strcmp(shape, "reuse_same_size")) return reuse(n, 0);
  if (!strcmp(shape, "reuse_smaller_size")) return reuse(n, 1);
  if (!strcmp(shape, "zero_on_malloc")) return zero_on_malloc(n);
  if (!strcmp(shape, "exec_heap")) return exec_heap(n);
  if (!strcmp(shape, "invalid_free_interior")) {
    char *p = hide(malloc(n));
    free(p + n / 2);
    return NOT_CAUGHT;
  }
  if (!strcmp(shape, "invalid_free_unaligned")) {
    char *p = hide(malloc(n));
    free(p + 1);
    return NOT_CAUGHT;
  }
  return -1;
}

static int run_plain(const char *shape) {
  if (!strcmp(shape, "invalid_free_stack")) {
    char buf[64];
    free(hide(buf));
  } else if (!strcmp(shape, "invalid_free_static")) {
    static char buf[64];
    free(hide(buf));
  } else if (!strcmp(shape, "invalid_free_far")) {
    /* Far from any heap: a page of address space nobody mapped. */
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(m, 4096);
    free(hide(m + 64));
  } else {
    return run_cxx(shape);
  }
  return NOT_CAUGHT;
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--list")) {
    for (size_t i = 0; i < COUNT_OF(sized_shapes); i++)
      for (size_t j = 0; j < COUNT_OF(sizes); j++) printf("%s@%zu\n", sized_shapes[i], sizes[j]);
    for (size_t i = 0; i < COUNT_OF(plain_shapes); i++) printf("%s\n", plain_shapes[i]);
    return 0;
  }
  if (argc != 2) {
    fprintf(stderr, "usage: misuse_shapes CASE | --list\n");
    return 2;
  }
  memset(src, 'S', sizeof src);
  char shape[64];
  snprintf(shape, sizeof shape, "%s", argv[1]);
  char *at = strchr(shape, '@');
  int rc;
  if (at) {
    *at = 0;
    rc = run_sized(shape, (size_t)atol(at + 1));
  } else {
    rc = run_plain(shape);
  }
  if (rc < 0) {
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
  }
  if (rc == NOT_CAUGHT) fputs("NOT_CAUGHT\n", stdout);
  return rc;
}
