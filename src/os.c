#include "os.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
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

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

static uint64_t cnt_maps, cnt_unmaps, cnt_lazy, cnt_now, cnt_huge, cnt_dehuge, cnt_collapse, cnt_remaps, cnt_commits;
os_system_t os_system = { .thp = OS_THP_MADVISE, .max_ptes_none = 511, .lazy_free = true, .page_size = TD_PAGE,
                          .purge_zeroes = true };
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

/* mremap grows only a range within one VMA, and a huge mapping whose front
 * was advised for huge pages is two (EFAULT, in place or moved). Such a
 * range grows in place by a mapping of the extension right after it; a
 * move of it fails as a whole, with nothing moved (the kernel checks the
 * range before it moves a page), and the caller copies instead. */
static bool remap_extend(uintptr_t end, size_t size) {
  void *want = (void *)end;
  void *p = mmap(want, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == want) return true;
  if (p != MAP_FAILED) munmap(p, size);   /* a kernel before 4.17 took the address as a hint */
  return false;
}

static bool default_remap(void *addr, size_t old_size, size_t new_size, void *dest) {
  COUNT(cnt_remaps);
  int saved = errno;
  bool ok;
  if (!dest) {
    ok = mremap(addr, old_size, new_size, 0) != MAP_FAILED;
    if (!ok && errno == EFAULT && new_size > old_size) ok = remap_extend((uintptr_t)addr + old_size, new_size - old_size);
  } else {
    ok = mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dest) != MAP_FAILED;
  }
  errno = saved;
  return ok;
}

/* A move of pages the caller can lose, over any number of VMAs: piece by
 * piece, each as long as one mremap takes (found by halving from what is
 * left; kernels from 6.17 take several VMAs at once, and may then stop
 * halfway). MREMAP_DONTUNMAP leaves the source mapped (and empty), so no
 * other thread can map anything there while the move is under way or after
 * it fails; on success the source is unmapped here. Kernels before 5.7
 * refuse the flag: nothing moves. */
static bool default_move(void *addr, size_t size, void *dest) {
  COUNT(cnt_remaps);
  int saved = errno;
  uintptr_t from = (uintptr_t)addr, to = (uintptr_t)dest;
  size_t done = 0, page = os_page();
  bool ok = true;
  while (ok && done < size) {
    size_t n = size - done;
    while (mremap((void *)(from + done), n, n, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
                  (void *)(to + done)) == MAP_FAILED) {
      if (errno != EFAULT || n <= page) { ok = false; break; }
      n = td_align_down(n / 2, page);
    }
    if (ok) done += n;
  }
  if (ok) munmap(addr, size);
  errno = saved;
  return ok;
}

/* The thread attribute carries no stack size: glibc's default (RLIMIT_STACK)
 * is the program's choice. */
static int default_thread_create(void *thread, void *(*fn)(void *), void *arg) {
  return pthread_create((pthread_t *)thread, NULL, fn, arg);
}

static uint64_t default_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The x86-64 tick rate is measured against the monotonic clock from here. */
static uint64_t ticks_t0, ticks_ns0;

uint64_t os_ticks_ns(uint64_t ticks) {
#if defined(__x86_64__)
  uint64_t dt = os_ticks() - ticks_t0, dn = default_now_ns() - ticks_ns0;
  return dt ? (uint64_t)((unsigned __int128)ticks * dn / dt) : ticks;
#elif defined(__aarch64__)
  uint64_t hz;
  __asm__ __volatile__("mrs %0, cntfrq_el0" : "=r"(hz));
  return hz ? (uint64_t)((unsigned __int128)ticks * 1000000000u / hz) : ticks;
#else
  return ticks;
#endif
}

const os_hooks_t os_hooks_default = {
  .map = default_map, .unmap = default_unmap, .purge = default_purge,
  .hugify = default_hugify, .now_ns = default_now_ns, .commit = default_commit,
  .remap = default_remap, .move = default_move, .thread_create = default_thread_create,
};
const os_hooks_t *os_hooks = &os_hooks_default;

const os_hooks_t *os_hooks_set(const os_hooks_t *hooks) {
  const os_hooks_t *old = os_hooks;
  os_hooks = hooks ? hooks : &os_hooks_default;
  return old;
}

/* Raw system calls: libc's read, write, openat, close and getrandom are
 * cancellation points, and nothing reachable from malloc or free may be one.
 * glibc's syscall() is not. */
static long sys_read(int fd, void *buf, size_t n) { return syscall(SYS_read, fd, buf, n); }
static long sys_write(int fd, const void *buf, size_t n) { return syscall(SYS_write, fd, buf, n); }
static int sys_open(const char *path, int flags) { return (int)syscall(SYS_openat, AT_FDCWD, path, flags | O_CLOEXEC, 0); }
static void sys_close(int fd) { syscall(SYS_close, fd); }

unsigned os_ncpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? (unsigned)n : 1;
}

unsigned os_cpu(void) {
  int c = sched_getcpu();   /* glibc: rseq's cpu_id or the vDSO; no system call */
  return c > 0 ? (unsigned)c : 0;
}

int os_thread_spawn(void *thread, void *(*fn)(void *), bool detached) {
  sigset_t old;
  os_block_signals(&old);
  int rc = os_hooks->thread_create(thread, fn, NULL);
  os_restore_signals(&old);
  if (rc == 0 && detached) pthread_detach(*(pthread_t *)thread);
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

bool os_catch_signal(int signo, void (*handler)(int, void *, void *)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  int saved = errno;
  bool ok = sigaction(signo, &sa, NULL) == 0;
  errno = saved;
  return ok;
}

int os_siginfo_value(const void *info) {
  const siginfo_t *si = info;
  return si && si->si_code == SI_QUEUE ? si->si_value.sival_int : 0;
}

bool os_publish_file(const char *tmp, const char *path, const char *buf, size_t len) {
  int saved = errno;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  for (size_t done = 0; ok && done < len;) {
    long n = sys_write(fd, buf + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += (size_t)n;
  }
  if (fd >= 0) sys_close(fd);
  if (ok) ok = syscall(SYS_renameat, AT_FDCWD, tmp, AT_FDCWD, path) == 0;
  if (!ok && fd >= 0) syscall(SYS_unlinkat, AT_FDCWD, tmp, 0);
  errno = saved;
  return ok;
}

int os_getpid(void) { return (int)syscall(SYS_getpid); }

/* Read a small sysfs/procfs file into buf (NUL-terminated); length or -1. */
long os_read_file(const char *path, char *buf, size_t cap) {
  int saved = errno;
  int fd = sys_open(path, O_RDONLY);
  long n = -1;
  if (fd >= 0) {
    n = sys_read(fd, buf, cap - 1);
    sys_close(fd);
  }
  buf[n > 0 ? n : 0] = 0;
  errno = saved;
  return n;
}

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

bool os_fd_table_private(void) {
  int saved = errno;
  /* A new, empty table in one step: at no moment does this thread hold
   * references to the program's files (it would keep pipes and sockets the
   * program closes open). */
  bool ok = syscall(SYS_close_range, 0u, ~0u, CLOSE_RANGE_UNSHARE) == 0;
  errno = saved;
  return ok;
}

int os_pipe_nonblock(int fds[2]) {
  int saved = errno;
  int rc = (int)syscall(SYS_pipe2, fds, O_CLOEXEC | O_NONBLOCK);
  errno = saved;
  return rc == 0 ? 0 : -1;
}

int os_eventfd(void) {
  int saved = errno;
  int fd = (int)syscall(SYS_eventfd2, 0, O_CLOEXEC | O_NONBLOCK);
  errno = saved;
  return fd;
}

int os_open_rw(const char *path) {
  int saved = errno;
  int fd = sys_open(path, O_RDWR | O_NONBLOCK);
  errno = saved;
  return fd;
}

bool os_write_str(int fd, const char *s) {
  int saved = errno;
  size_t len = strlen(s);
  bool ok = sys_write(fd, s, len + 1) >= (long)len;
  errno = saved;
  return ok;
}

void os_drain_fd(int fd) {
  int saved = errno;
  char buf[64];
  while (sys_read(fd, buf, sizeof buf) > 0) {}
  errno = saved;
}

void os_close(int fd) {
  int saved = errno;
  sys_close(fd);
  errno = saved;
}

int os_poll(struct pollfd *fds, unsigned n, int timeout_ms) {
  int saved = errno;
  struct timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000 };
  int rc = (int)syscall(SYS_ppoll, fds, (unsigned long)n, timeout_ms < 0 ? NULL : &ts, NULL, (size_t)8);
  errno = saved;
  return rc;
}

/* Decimal digits of v at buf; returns the count. */
static size_t put_decimal(char *buf, unsigned v) {
  char tmp[12];
  size_t n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
  return n;
}

void os_thread_fd_poke(int tid, int fd) {
  char path[64] = "/proc/self/task/";
  size_t n = strlen(path);
  n += put_decimal(path + n, (unsigned)tid);
  memcpy(path + n, "/fd/", 4);
  n += 4;
  path[n + put_decimal(path + n, (unsigned)fd)] = 0;
  int saved = errno;
  int w = sys_open(path, O_WRONLY | O_NONBLOCK);
  if (w >= 0) {
    char one = 1;
    sys_write(w, &one, 1);
    sys_close(w);
  }
  errno = saved;
}

int os_gettid(void) { return (int)syscall(SYS_gettid); }

long os_thread_census(bool *main_gone) {
  char buf[512];
  *main_gone = false;
  if (os_read_file("/proc/self/stat", buf, sizeof buf) <= 0) return -1;
  /* pid (comm) state ppid ... num_threads (the 20th field); comm may hold
   * spaces and parentheses, so fields count from the last ')'. */
  const char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ') return -1;
  *main_gone = p[2] == 'Z' || p[2] == 'X';
  unsigned field = 3;
  for (p += 2; *p; p++)
    if (*p == ' ' && ++field == 20) return strtol(p + 1, NULL, 10);
  return -1;
}

/* Whether MADV_DONTNEED really drops private anonymous pages, so that they
 * read back as zero. Linux always does; an emulator may not (qemu-user 7.2
 * with -p larger than the host's page returns success and keeps the data),
 * and calloc must not trust purged pages there. */
static bool probe_purge_zeroes(size_t page) {
  int saved = errno;
  bool ok = false;
  volatile unsigned char *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) {
    p[0] = 1;
    ok = madvise((void *)p, page, MADV_DONTNEED) == 0 && p[0] == 0;
    munmap((void *)p, page);
  }
  errno = saved;
  return ok;
}

void os_init(void) {
  ticks_ns0 = default_now_ns();
  ticks_t0 = os_ticks();
  /* From the auxiliary vector: no system call, no libc state. */
  size_t page = (size_t)getauxval(AT_PAGESZ);
  if (page == 0) page = (size_t)sysconf(_SC_PAGESIZE);
  if (!td_is_pow2(page) || page < TD_PAGE || page > OS_PAGE_MAX) {
    static const char msg[] = "tidalloc: unsupported page size (need 4, 16 or 64 KiB)\n";
    os_write_stderr(msg, sizeof msg - 1);
    abort();
  }
  os_system.page_size = page;
  os_system.purge_zeroes = probe_purge_zeroes(page);
  char buf[128];
  if (os_read_file("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof buf) > 0) {
    if (strstr(buf, "[never]")) os_system.thp = OS_THP_NEVER;
    else if (strstr(buf, "[always]")) os_system.thp = OS_THP_ALWAYS;
    else os_system.thp = OS_THP_MADVISE;
  } else {
    os_system.thp = OS_THP_NEVER;
  }
  if (os_read_file("/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", buf, sizeof buf) > 0)
    os_system.max_ptes_none = atoi(buf);
  if (os_read_file("/proc/sys/vm/overcommit_memory", buf, sizeof buf) > 0)
    os_system.overcommit_strict = buf[0] == '2';
}

void *os_reserve_aligned(size_t size, size_t align, bool inaccessible) {
  if (!os_system.overcommit_strict) {
    /* Through the map hook (fault injection and accounting see it), then
     * closed: one mprotect per region. */
    void *p = os_map_aligned(size, align);
    if (p && inaccessible && !os_protect(p, size, false)) {
      os_unmap(p, size);
      return NULL;
    }
    return p;
  }
  /* Strict overcommit: PROT_NONE private mappings carry no commit charge. */
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

size_t os_address_limit(void) {
  struct rlimit r;
  int saved = errno;
  bool ok = getrlimit(RLIMIT_AS, &r) == 0;
  errno = saved;
  if (!ok || r.rlim_cur == RLIM_INFINITY || r.rlim_cur > SIZE_MAX) return SIZE_MAX;
  return (size_t)r.rlim_cur;
}

void *os_map_aligned(size_t size, size_t align) {
  size_t page = os_page();
  /* Whole OS pages, so that the trimmed ends below are page-aligned too. */
  if (size + page < size) return NULL;
  size = td_align_up(size, page);
  if (align <= page) return os_hooks->map(size);
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
  if (syscall(SYS_getrandom, &v, sizeof v, GRND_NONBLOCK) != (long)sizeof v) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&v ^ (uint64_t)getpid();
  }
  errno = saved;
  v ^= v >> 31; v *= 0x9e3779b97f4a7c15ull; v ^= v >> 29;
  return v;
}

const char *os_getenv(const char *name) { return secure_getenv(name); }

void os_write_stderr(const char *buf, size_t len) { os_file_write(STDERR_FILENO, buf, len); }

#define LOAD(c) __atomic_load_n(&(c), __ATOMIC_RELAXED)
void os_counters_get(os_counters_t *out) {
  out->maps = LOAD(cnt_maps); out->unmaps = LOAD(cnt_unmaps); out->purges_lazy = LOAD(cnt_lazy);
  out->purges_now = LOAD(cnt_now); out->hugifies = LOAD(cnt_huge); out->dehugifies = LOAD(cnt_dehuge);
  out->collapses = LOAD(cnt_collapse); out->remaps = LOAD(cnt_remaps); out->commits = LOAD(cnt_commits);
}
#undef LOAD

/* ---- for the heap profiler ------------------------------------------------------ */

int os_file_create(const char *path) {
  int saved = errno;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  errno = saved;
  return fd;
}

bool os_file_write(int fd, const char *buf, size_t len) {
  int saved = errno;
  while (len > 0) {
    long n = sys_write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf += n; len -= (size_t)n;
  }
  errno = saved;
  return len == 0;
}

bool os_file_copy(const char *src, int fd) {
  int saved = errno;
  int in = sys_open(src, O_RDONLY);
  bool ok = in >= 0;
  char buf[2048];
  while (ok) {
    long n = sys_read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { ok = n == 0; break; }
    ok = os_file_write(fd, buf, (size_t)n);
  }
  if (in >= 0) sys_close(in);
  errno = saved;
  return ok;
}

int os_backtrace(void **pcs, int max) { return backtrace(pcs, max); }

struct text_query { uintptr_t addr, lo, hi; bool found, main_program; };

static int text_range_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  struct text_query *q = arg;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    if (q->addr >= lo && q->addr < hi) {
      q->lo = lo; q->hi = hi; q->found = true;
      q->main_program = info->dlpi_name == NULL || info->dlpi_name[0] == 0;
      return 1;
    }
  }
  return 0;
}

bool os_text_range(const void *addr, uintptr_t *lo, uintptr_t *hi, bool *main_program) {
  struct text_query q = { .addr = (uintptr_t)addr };
  dl_iterate_phdr(text_range_cb, &q);
  *lo = q.lo; *hi = q.hi; *main_program = q.main_program;
  return q.found;
}

bool os_symbolize(const void *pc, char *buf, size_t cap, uintptr_t *off) {
  Dl_info info;
  if (cap == 0 || !dladdr(pc, &info)) return false;
  const char *name = info.dli_sname;
  uintptr_t base = (uintptr_t)info.dli_saddr;
  if (!name) {   /* no symbol: the object's name, the offset within it */
    name = info.dli_fname ? strrchr(info.dli_fname, '/') : NULL;
    name = name ? name + 1 : info.dli_fname;
    base = (uintptr_t)info.dli_fbase;
  }
  if (!name) return false;
  size_t n = strlen(name);
  if (n >= cap) n = cap - 1;
  memcpy(buf, name, n);
  buf[n] = 0;
  *off = (uintptr_t)pc - base;
  return true;
}

void os_exit_now(int status) {
  fflush(NULL);
  _exit(status);
}
