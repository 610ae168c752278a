#include "os.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
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

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

static uint64_t cnt_maps, cnt_unmaps, cnt_lazy, cnt_now, cnt_huge, cnt_dehuge, cnt_collapse, cnt_remaps, cnt_commits;
os_system_t os_system = { .thp_enabled = 1, .max_ptes_none = 511, .lazy_free = true };
#define COUNT(c) __atomic_fetch_add(&(c), 1, __ATOMIC_RELAXED)

static void *default_map(size_t size) {
  COUNT(cnt_maps);
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

static bool default_unmap(void *addr, size_t size) {
  COUNT(cnt_unmaps);
  int saved = errno;
  bool ok = munmap(addr, size) == 0;
  errno = saved;
  return ok;
}

static bool default_purge(void *addr, size_t size, os_purge_t how) {
  int saved = errno;
  bool ok;
  if (how == OS_PURGE_LAZY && os_system.lazy_free) {
    COUNT(cnt_lazy);
    if (madvise(addr, size, MADV_FREE) == 0) { errno = saved; return true; }
    if (errno == EINVAL) os_system.lazy_free = false;   /* old kernel: fall through */
  }
  COUNT(cnt_now);
  ok = madvise(addr, size, MADV_DONTNEED) == 0;
  errno = saved;
  return ok;
}

static bool default_hugify(void *addr, size_t size, os_huge_t how) {
  int saved = errno, advice;
  switch (how) {
    case OS_HUGE_ON: COUNT(cnt_huge); advice = MADV_HUGEPAGE; break;
    case OS_HUGE_OFF: COUNT(cnt_dehuge); advice = MADV_NOHUGEPAGE; break;
    default: COUNT(cnt_collapse); advice = MADV_COLLAPSE; break;
  }
  bool ok = madvise(addr, size, advice) == 0;
  errno = saved;
  return ok;
}

static bool default_commit(void *addr, size_t size, bool commit) {
  int saved = errno;
  COUNT(cnt_commits);
  bool ok;
  if (commit) {
    ok = mprotect(addr, size, PROT_READ | PROT_WRITE) == 0;
  } else {
    /* Replacing the pages drops both contents and commit charge. */
    ok = mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) != MAP_FAILED;
  }
  errno = saved;
  return ok;
}

static uint64_t default_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const os_hooks_t os_hooks_default = {
  .map = default_map, .unmap = default_unmap, .purge = default_purge,
  .hugify = default_hugify, .now_ns = default_now_ns, .commit = default_commit,
};
const os_hooks_t *os_hooks = &os_hooks_default;

const os_hooks_t *os_hooks_set(const os_hooks_t *hooks) {
  const os_hooks_t *old = os_hooks;
  os_hooks = hooks ? hooks : &os_hooks_default;
  return old;
}

long os_read_file(const char *path, char *buf, size_t cap);
#define read_small_file os_read_file

int os_eventfd(void) {
  int saved = errno;
  int fd = (int)syscall(SYS_eventfd2, 0, O_CLOEXEC | O_NONBLOCK);
  errno = saved;
  return fd;
}

void os_eventfd_signal(int fd) {
  int saved = errno;
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof one);
  (void)n;
  errno = saved;
}

void os_eventfd_drain(int fd) {
  int saved = errno;
  uint64_t v;
  ssize_t n = read(fd, &v, sizeof v);
  (void)n;
  errno = saved;
}

int os_open_rw(const char *path) {
  int saved = errno;
  int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  errno = saved;
  return fd;
}

bool os_write_str(int fd, const char *s) {
  int saved = errno;
  size_t len = strlen(s);
  bool ok = write(fd, s, len + 1) >= (ssize_t)len;   /* PSI wants the NUL */
  errno = saved;
  return ok;
}

void os_close(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

int os_poll(struct pollfd *fds, unsigned n, int timeout_ms) {
  int saved = errno;
  int rc = poll(fds, (nfds_t)n, timeout_ms);
  errno = saved;
  return rc;
}

void os_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

void os_block_signals(void *old) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, (sigset_t *)old);
}

void os_restore_signals(const void *old) { pthread_sigmask(SIG_SETMASK, (const sigset_t *)old, NULL); }

void os_catch_segv(void (*handler)(int, void *, void *), void *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, (struct sigaction *)old);
}

void os_restore_segv(const void *old) { sigaction(SIGSEGV, (const struct sigaction *)old, NULL); }

/* Read a small sysfs/procfs file into buf (NUL-terminated); length or -1. */
long os_read_file(const char *path, char *buf, size_t cap) {
  int saved = errno;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  long n = -1;
  if (fd >= 0) {
    n = read(fd, buf, cap - 1);
    close(fd);
  }
  buf[n > 0 ? n : 0] = 0;
  errno = saved;
  return n;
}

void os_init(void) {
  if (sysconf(_SC_PAGESIZE) != (long)TD_PAGE) {
    static const char msg[] = "tidalloc: unsupported page size (need 4 KiB)\n";
    os_write_stderr(msg, sizeof msg - 1);
    abort();
  }
  char buf[128];
  if (read_small_file("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof buf) > 0) {
    if (strstr(buf, "[never]")) os_system.thp_enabled = 0;
    else if (strstr(buf, "[always]")) os_system.thp_enabled = 2;
    else os_system.thp_enabled = 1;
  } else {
    os_system.thp_enabled = 0;
  }
  if (read_small_file("/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", buf, sizeof buf) > 0)
    os_system.max_ptes_none = atoi(buf);
  if (read_small_file("/proc/sys/vm/overcommit_memory", buf, sizeof buf) > 0)
    os_system.overcommit_strict = buf[0] == '2';
}

void *os_reserve_aligned(size_t size, size_t align) {
  if (!os_system.overcommit_strict) return os_map_aligned(size, align);
  /* PROT_NONE private mappings carry no commit charge. */
  int saved = errno;
  COUNT(cnt_maps);
  uint8_t *raw = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  errno = saved;
  if (raw == MAP_FAILED) return NULL;
  uintptr_t start = td_align_up((uintptr_t)raw, align);
  size_t lead = start - (uintptr_t)raw, trail = align - lead;
  if (lead) munmap(raw, lead);
  if (trail) munmap((void *)(start + size), trail);
  return (void *)start;
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

bool os_protect(void *addr, size_t size, bool accessible) {
  int saved = errno;
  bool ok = mprotect(addr, size, accessible ? PROT_READ | PROT_WRITE : PROT_NONE) == 0;
  errno = saved;
  return ok;
}

void *os_reserve_none(size_t size) {
  int saved = errno;
  COUNT(cnt_maps);
  void *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

void *os_remap(void *addr, size_t old_size, size_t new_size) {
  COUNT(cnt_remaps);
  int saved = errno;
  void *p = mremap(addr, old_size, new_size, MREMAP_MAYMOVE);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

void os_name(void *addr, size_t size, const char *name) {
  int saved = errno;
  (void)prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)addr, size, (unsigned long)name);
  errno = saved;
}

void os_futex_wait(uint32_t *addr, uint32_t expected) {
  int saved = errno;
  syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
  errno = saved;
}

void os_futex_wait_timeout(uint32_t *addr, uint32_t expected, uint64_t timeout_ns) {
  if (timeout_ns == UINT64_MAX) {
    os_futex_wait(addr, expected);
    return;
  }
  int saved = errno;
  struct timespec ts = { .tv_sec = (time_t)(timeout_ns / 1000000000u), .tv_nsec = (long)(timeout_ns % 1000000000u) };
  syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
  errno = saved;
}

void os_futex_wake(uint32_t *addr, int count) {
  int saved = errno;
  syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
  errno = saved;
}

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
  out->purges_now = cnt_now; out->hugifies = cnt_huge; out->dehugifies = cnt_dehuge;
  out->collapses = cnt_collapse; out->remaps = cnt_remaps; out->commits = cnt_commits;
}
