/* The misuse table: each case is one misuse (or one legitimate use that looks
 * like one) run as `misuse CASE` in a child process by run_case.sh, which
 * checks how it ends: SIGABRT with the expected message on stderr, SIGSEGV
 * for guard-page cases, or exit 0 for self-check cases. The table itself
 * (case, mode, expected outcome, message) is in CMakeLists.txt. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void free_sized(void *p, size_t size);
void tidal_thread_flush(void);
size_t tidal_purge(void);
typedef struct tidal_objcache tidal_objcache_t;
tidal_objcache_t *tidal_objcache_create(const char *name, size_t size, size_t align, size_t retain);
void *tidal_objcache_alloc(tidal_objcache_t *cache);
void tidal_objcache_free(tidal_objcache_t *cache, void *obj);
void _ZdlPvm(void *p, size_t size);   /* operator delete(void *, size_t) */

/* Keep the compiler from reasoning about our pointers. */
static void *volatile sink;
static void *hide(void *p) { sink = p; return sink; }

static void *free_in_thread(void *p) { free(p); return NULL; }

static long vm_size_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmSize:", 7) == 0) v = atol(line + 7);
  if (f) fclose(f);
  return v;
}

#define EXPECT(cond) do { if (!(cond)) { fprintf(stderr, "self-check failed: %s\n", #cond); return 1; } } while (0)

/* Two slabs of 2 KiB blocks; the first gets all its blocks but the first
 * freed and goes back as holes (tidal_purge: its pages are purged, their
 * markers gone). Returns a block of a purged page. */
static void *block_in_purged_hole(void) {
  enum { N = 64 };   /* 32 blocks per slab of 2 KiB blocks */
  static void *p[N];
  for (int i = 0; i < N; i++) p[i] = hide(malloc(2048));
  for (int i = 1; i < N / 2; i++) free(p[i]);
  tidal_purge();
  return p[N / 4];
}

static int run(const char *c) {
  if (!strcmp(c, "double_free_immediate")) {
    void *p = hide(malloc(40));
    free(p);
    free(p);
  } else if (!strcmp(c, "double_free_delayed")) {
    void *p = hide(malloc(32));
    free(p);
    for (int i = 0; i < 100; i++) hide(malloc((size_t)(i % 7) * 50 + 64));
    free(p);
  } else if (!strcmp(c, "double_free_interleaved")) {
    void *a = hide(malloc(24)), *b = hide(malloc(24));
    free(a);
    free(b);
    free(a);
  } else if (!strcmp(c, "double_free_large")) {
    void *p = hide(malloc(100000));
    free(p);
    free(p);
  } else if (!strcmp(c, "double_free_huge")) {
    void *p = hide(malloc(8u << 20));
    free(p);
    free(p);
  } else if (!strcmp(c, "double_free_cross_thread")) {
    void *p = hide(malloc(64));
    pthread_t t;
    pthread_create(&t, NULL, free_in_thread, p);
    pthread_join(t, NULL);
    free(p);
  } else if (!strcmp(c, "double_free_hole")) {
    free(block_in_purged_hole());
  } else if (!strcmp(c, "double_free_hole_remote")) {
    pthread_t t;
    pthread_create(&t, NULL, free_in_thread, block_in_purged_hole());
    pthread_join(t, NULL);
    tidal_thread_flush();   /* the owner collects the remote free */
  } else if (!strcmp(c, "double_free_calloc")) {
    void *p = hide(calloc(10, 10));
    free(p);
    free(p);
  } else if (!strcmp(c, "invalid_free_stack")) {
    char buf[64];
    free(hide(buf));
  } else if (!strcmp(c, "invalid_free_static")) {
    static char buf[64];
    free(hide(buf));
  } else if (!strcmp(c, "invalid_free_far")) {
    free(hide((void *)(uintptr_t)0x12345678));
  } else if (!strcmp(c, "invalid_free_kernel_address")) {
    free(hide((void *)(uintptr_t)0xffffffffdead0000ull));
  } else if (!strcmp(c, "invalid_free_interior")) {
    char *p = hide(malloc(100));
    free(p + 16);
  } else if (!strcmp(c, "invalid_free_unaligned")) {
    char *p = hide(malloc(100));
    free(p + 1);
  } else if (!strcmp(c, "invalid_free_past_end_large")) {
    char *p = hide(malloc(100000));
    free(p + malloc_usable_size(p));
  } else if (!strcmp(c, "invalid_free_interior_large")) {
    char *p = hide(malloc(200000));
    free(p + 8192);
  } else if (!strcmp(c, "invalid_free_never_allocated")) {
    /* The block right after a fresh class's first block was never handed out. */
    char *p = hide(malloc(3000));
    free(p + 3072);
  } else if (!strcmp(c, "mismatched_free_sized")) {
    void *p = hide(malloc(100));
    free_sized(p, 1000);
  } else if (!strcmp(c, "mismatched_free_sized_small")) {
    void *p = hide(malloc(1000));
    free_sized(p, 16);
  } else if (!strcmp(c, "mismatched_sized_delete")) {
    void *p = hide(malloc(48));
    _ZdlPvm(p, 4096);
  } else if (!strcmp(c, "usable_size_bad_pointer")) {
    char buf[16];
    return (int)malloc_usable_size(hide(buf));
  } else if (!strcmp(c, "realloc_freed")) {
    void *p = hide(malloc(64));
    free(p);
    hide(realloc(p, 128));
  } else if (!strcmp(c, "realloc_invalid")) {
    char buf[16];
    hide(realloc(hide(buf), 128));
  } else if (!strcmp(c, "free_list_overwrite")) {
    char *p = hide(malloc(64));
    hide(malloc(64));
    free(p);
    memset(p, 0, 16);          /* use after free clobbers the link */
    hide(malloc(64));
  } else if (!strcmp(c, "free_list_pointer_write")) {
    char *p = hide(malloc(80)), *q = hide(malloc(80));
    free(p);
    *(void **)p = q + 8;       /* an attacker's fake link */
    hide(malloc(80));
    hide(malloc(80));
  } else if (!strcmp(c, "objcache_double_free")) {
    tidal_objcache_t *oc = tidal_objcache_create("misuse", 64, 16, 0);
    void *a = tidal_objcache_alloc(oc), *b = tidal_objcache_alloc(oc);
    tidal_objcache_free(oc, a);
    tidal_objcache_free(oc, b);
    tidal_objcache_free(oc, a);
  /* ---- hardened mode and sampling ---- */
  } else if (!strcmp(c, "overflow_into_canary")) {
    char *p = hide(malloc(40));
    memset(p, 'A', 48);          /* 8 bytes past the block */
    free(p);
  } else if (!strcmp(c, "write_after_free_reuse")) {
    /* A write to a freed block, found when the block is handed out again. */
    enum { N = 3000 };
    static void *blk[N], *more[N];
    for (int i = 0; i < N; i++) blk[i] = hide(malloc(64));
    char *p = hide(malloc(64));
    free(p);
    p[32] = 1;
    for (int i = 0; i < N; i++) free(blk[i]);                 /* past any quarantine */
    for (int i = 0; i < N; i++) more[i] = hide(malloc(64));  /* reuses the freed slots */
    for (int i = 0; i < N; i++) free(more[i]);
  } else if (!strcmp(c, "double_free_after_reuse")) {
    void *p = hide(malloc(48));
    free(p);
    hide(malloc(48));            /* usually the same block again, unless quarantined */
    free(p);
  } else if (!strcmp(c, "overflow_large_guard")) {
    char *p = hide(malloc(100000));
    p[100000 + 64] = 1;
  } else if (!strcmp(c, "use_after_free_large")) {
    char *p = hide(malloc(100000));
    free(p);
    p[10] = 1;
  } else if (!strcmp(c, "zero_size_access")) {
    char *p = hide(malloc(0));
    p[0] = 1;
  } else if (!strcmp(c, "overflow_small_sampled")) {
    char *p = hide(malloc(100));
    p[120] = 1;
  } else if (!strcmp(c, "use_after_free_sampled")) {
    char *p = hide(malloc(100));
    free(p);
    p[0] = 1;
  /* ---- self-checks: must exit 0 ---- */
  } else if (!strcmp(c, "ok_overflow_calloc")) {
    errno = 0;
    EXPECT(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
  } else if (!strcmp(c, "ok_overflow_reallocarray")) {
    void *p = malloc(16);
    errno = 0;
    EXPECT(reallocarray(p, SIZE_MAX / 4, 8) == NULL && errno == ENOMEM);
    free(p);
  } else if (!strcmp(c, "ok_impossible_sizes")) {
    /* Let the background threads start first: their stacks are address space too. */
    free(malloc(1 << 20));
    usleep(200000);
    long before = vm_size_kb();
    errno = 0;
    EXPECT(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    EXPECT(malloc((size_t)PTRDIFF_MAX + 1) == NULL && errno == ENOMEM);
    errno = 0;
    EXPECT(aligned_alloc(64, SIZE_MAX - 100) == NULL && errno == ENOMEM);
    void *p = malloc(32);
    errno = 0;
    EXPECT(realloc(p, SIZE_MAX - 4096) == NULL && errno == ENOMEM);
    free(p);
    void *q = NULL;
    EXPECT(posix_memalign(&q, 4096, SIZE_MAX / 2) == ENOMEM);
    EXPECT(vm_size_kb() - before < 1024);   /* nothing was mapped for them */
  } else if (!strcmp(c, "ok_reuse_then_free")) {
    void *p = malloc(48);
    free(p);
    void *q = malloc(48);
    free(q);
  } else if (!strcmp(c, "ok_realloc_then_free")) {
    void *p = malloc(10), *q = realloc(p, 100000);
    q = realloc(q, 10 << 20);
    q = realloc(q, 20);
    free(q);
  } else if (!strcmp(c, "ok_sized_frees")) {
    free_sized(malloc(100), 100);
    free_sized(malloc(100), 97);
    void *p = malloc(200);
    p = realloc(p, 150);       /* stays in place: its class is 208 */
    free_sized(p, 150);
    free_sized(calloc(3, 33), 99);
    free_sized(malloc(5 << 20), 5 << 20);
    _ZdlPvm(malloc(24), 24);
    free_sized(NULL, 10);
  } else if (!strcmp(c, "ok_cross_thread")) {
    for (int i = 0; i < 100; i++) {
      pthread_t t;
      pthread_create(&t, NULL, free_in_thread, malloc((size_t)i * 37 + 1));
      pthread_join(t, NULL);
    }
  } else if (!strcmp(c, "ok_copy_uninitialised")) {
    /* Pages that held free small blocks (with their free markers) become a
     * large block; copying its uninitialised bytes into small blocks must
     * not make those look free. */
    enum { N = 4096 };
    static void *blk[N];
    for (int i = 0; i < N; i++) blk[i] = hide(malloc(64));
    for (int i = 0; i < N; i++) free(blk[i]);
    tidal_thread_flush();
    for (int k = 0; k < 8; k++) {
      char *big = hide(malloc(200000));
      for (size_t off = 0; off < 200000 - 64; off += 64) {
        void *q = hide(malloc(64));
        memcpy(q, big + off, 64);
        free(q);
      }
      free(big);
    }
  } else if (!strcmp(c, "ok_free_null")) {
    free(NULL);
    free_sized(NULL, 0);
  } else {
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
  }
  /* a misuse case that gets here was not caught */
  return strncmp(c, "ok_", 3) == 0 ? 0 : 3;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: misuse CASE\n");
    return 2;
  }
  /* Start the background thread now (its creation allocates), so that it
   * cannot take a block a case has just freed. */
  free(hide(malloc(200000)));
  return run(argv[1]);
}
