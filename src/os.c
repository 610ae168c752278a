#include "os.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef MADV_FREE
#define MADV_FREE 8
#endif

static _Atomic uint64_t cnt_maps, cnt_unmaps, cnt_lazy, cnt_now, cnt_huge, cnt_remaps;
#define COUNT(c) __atomic_fetch_add(&(c), 1, __ATOMIC_RELAXED)

static void *default_map(size_t size) {
  COUNT(cnt_maps);
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static bool default_unmap(void *addr, size_t size) {
  COUNT(cnt_unmaps);
  return munmap(addr, size) == 0;
}

static bool lazy_free_works = true;

static bool default_purge(void *addr, size_t size, os_purge_t how) {
  if (how == OS_PURGE_LAZY && lazy_free_works) {
    COUNT(cnt_lazy);
    if (madvise(addr, size, MADV_FREE) == 0) return true;
    if (errno == EINVAL) lazy_free_works = false;   /* old kernel: fall through */
  }
  COUNT(cnt_now);
  return madvise(addr, size, MADV_DONTNEED) == 0;
}

static bool default_hugify(void *addr, size_t size) {
  COUNT(cnt_huge);
  return madvise(addr, size, MADV_HUGEPAGE) == 0;
}

static uint64_t default_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const os_hooks_t os_hooks_default = {
  .map = default_map, .unmap = default_unmap, .purge = default_purge,
  .hugify = default_hugify, .now_ns = default_now_ns,
};
const os_hooks_t *os_hooks = &os_hooks_default;

const os_hooks_t *os_hooks_set(const os_hooks_t *hooks) {
  const os_hooks_t *old = os_hooks;
  os_hooks = hooks ? hooks : &os_hooks_default;
  return old;
}

void os_init(void) {
  if (sysconf(_SC_PAGESIZE) != (long)TD_PAGE) {
    static const char msg[] = "tidalloc: unsupported page size (need 4 KiB)\n";
    os_write_stderr(msg, sizeof msg - 1);
    abort();
  }
}

void *os_map_aligned(size_t size, size_t align) {
  if (align <= TD_PAGE) return os_hooks->map(size);
  if (size + align < size) return NULL;
  /* Over-map, then trim both ends to the alignment. */
  uint8_t *raw = os_hooks->map(size + align);
  if (!raw) return NULL;
  uintptr_t start = td_align_up((uintptr_t)raw, align);
  size_t lead = start - (uintptr_t)raw, trail = align - lead;
  if (lead) os_hooks->unmap(raw, lead);
  if (trail) os_hooks->unmap((void *)(start + size), trail);
  return (void *)start;
}

void *os_remap(void *addr, size_t old_size, size_t new_size) {
  COUNT(cnt_remaps);
  void *p = mremap(addr, old_size, new_size, MREMAP_MAYMOVE);
  return p == MAP_FAILED ? NULL : p;
}

void os_name(void *addr, size_t size, const char *name) {
  int saved = errno;
  (void)prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)addr, size, (unsigned long)name);
  errno = saved;
}

void os_futex_wait(_Atomic uint32_t *addr, uint32_t expected) {
  int saved = errno;
  syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
  errno = saved;
}

void os_futex_wake(_Atomic uint32_t *addr, int count) {
  int saved = errno;
  syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
  errno = saved;
}

void os_yield(void) { sched_yield(); }

uint64_t os_random64(void) {
  uint64_t v = 0;
  int saved = errno;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&v ^ (uint64_t)getpid();
  }
  errno = saved;
  v ^= v >> 31; v *= 0x9e3779b97f4a7c15ull; v ^= v >> 29;
  return v;
}

const char *os_getenv(const char *name) { return secure_getenv(name); }

void os_write_stderr(const char *buf, size_t len) {
  int saved = errno;
  while (len > 0) {
    ssize_t n = write(STDERR_FILENO, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf += n; len -= (size_t)n;
  }
  errno = saved;
}

void os_counters_get(os_counters_t *out) {
  out->maps = cnt_maps; out->unmaps = cnt_unmaps; out->purges_lazy = cnt_lazy;
  out->purges_now = cnt_now; out->hugifies = cnt_huge; out->remaps = cnt_remaps;
}
