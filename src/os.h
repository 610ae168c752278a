/*
 * os.h — the only module that talks to the kernel.
 *
 * What it is: thin wrappers for mapping, purging, hugifying, remapping and
 * moving memory, the clock, futexes, randomness, environment and stderr.
 * Mapping, purging, hugifying, remapping, moving and the clock go through a
 * hooks table (os_hooks_t) so unit tests can drive the layers above with
 * fake memory and fake time.
 * Two rules hold for every call here, because malloc and free reach them:
 * - none is a thread-cancellation point: calls that libc makes cancellable
 *   (read, write, open, close, getrandom) are issued as raw system calls;
 * - a descriptor in the program's table never outlives the function that
 *   opened it (opened, used and closed within one call, with O_CLOEXEC). The
 *   only long-lived descriptors are the pressure watcher's, in a table of
 *   its own (os_fd_table_private) that the program can neither see, close
 *   nor reuse, and that fork does not copy. So a program that closes
 *   descriptors it does not know (closefrom, daemons, shells) or forks can
 *   never have tidalloc read, write or poll one of its own files.
 * What it is not: a policy. It never decides what to purge or when.
 * It may call: libc syscall wrappers only (never malloc) — but for
 * os_thread_spawn's pthread_create, which allocates, and so is called only
 * where no allocator lock is held.
 */
#ifndef TIDAL_OS_H
#define TIDAL_OS_H

#include "util.h"

typedef enum {
  OS_PURGE_LAZY,   /* MADV_FREE: the kernel may reclaim it; contents undefined */
  OS_PURGE_NOW,    /* MADV_DONTNEED: dropped now; reads back as zero */
} os_purge_t;

typedef enum {
  OS_HUGE_ON,        /* MADV_HUGEPAGE: let the kernel back the range with huge pages */
  OS_HUGE_OFF,       /* MADV_NOHUGEPAGE: before purging part of a hugified range */
  OS_HUGE_COLLAPSE,  /* MADV_COLLAPSE: make it huge now (synchronous, costly) */
} os_huge_t;

/* The seam. Every function returns true on success. */
typedef struct os_hooks_s {
  void *(*map)(size_t size);                             /* fresh zeroed memory, or NULL */
  bool (*unmap)(void *addr, size_t size);
  bool (*purge)(void *addr, size_t size, os_purge_t how);
  bool (*hugify)(void *addr, size_t size, os_huge_t how);
  uint64_t (*now_ns)(void);                              /* monotonic */
  /* Strict overcommit only: make a reserved range usable / give its commit
   * charge back (contents become zero). */
  bool (*commit)(void *addr, size_t size, bool commit);
  /* Resize a mapping. dest NULL: in place only. Otherwise move it to dest,
   * a mapping of new_size bytes the caller reserved, which it replaces
   * (MREMAP_FIXED). The old range is released only on success. */
  bool (*remap)(void *addr, size_t old_size, size_t new_size, void *dest);
  /* Move the pages of [addr, addr + size), a range whose contents the
   * caller can lose (a cached mapping), onto dest, inside a mapping the
   * caller holds, replacing what is there; the range may span several
   * mappings. On success the source range is released. On failure both
   * stay mapped, and what either holds is undefined. */
  bool (*move)(void *addr, size_t size, void *dest);
  /* Start a thread with every signal blocked (the background worker and the
   * pressure watcher); 0 or an errno value, like pthread_create. */
  int (*thread_create)(void *thread, void *(*fn)(void *), void *arg);
  /* The OS page size the hooks emulate (unit tests with fake memory); 0: the
   * system's (os_system.page_size). */
  size_t page_size;
} os_hooks_t;

/* Install hooks (NULL restores the defaults); returns the previous table. */
const os_hooks_t *os_hooks_set(const os_hooks_t *hooks);
extern const os_hooks_t *os_hooks;
extern const os_hooks_t os_hooks_default;

void os_init(void);

/* Map `size` bytes (rounded up to whole OS pages) aligned to `align` (a power
 * of two >= TD_PAGE). NULL on failure. */
void *os_map_aligned(size_t size, size_t align);
TD_INLINE bool os_unmap(void *addr, size_t size) { return os_hooks->unmap(addr, size); }
TD_INLINE bool os_purge(void *addr, size_t size, os_purge_t how) { return os_hooks->purge(addr, size, how); }
TD_INLINE bool os_hugify(void *addr, size_t size, os_huge_t how) { return os_hooks->hugify(addr, size, how); }
TD_INLINE bool os_commit(void *addr, size_t size, bool commit) { return os_hooks->commit(addr, size, commit); }
TD_INLINE uint64_t os_now_ns(void) { return os_hooks->now_ns(); }
/* A cheap tick count for timing short intervals (how long a lock is held):
 * the time-stamp counter on x86-64, the virtual counter on arm64, the
 * monotonic clock (ns) elsewhere. Not hooked: statistics only, never a
 * policy's clock. os_ticks_ns converts a number of ticks to nanoseconds (on
 * x86-64 by the ratio of ticks to the monotonic clock since os_init, which
 * assumes an invariant TSC, as every x86-64 CPU of the last 15 years has). */
TD_INLINE uint64_t os_ticks(void) {
#if defined(__x86_64__)
  return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
  uint64_t v;
  __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
  return v;
#else
  return os_hooks_default.now_ns();   /* the real monotonic clock, not a test's hook */
#endif
}
uint64_t os_ticks_ns(uint64_t ticks);
/* Start a thread (thread: a pthread_t *) with every signal blocked; detached
 * or joinable. 0 or an errno value. */
int os_thread_spawn(void *thread, void *(*fn)(void *), bool detached);

/* Make a range inaccessible (guard) or accessible again. */
bool os_protect(void *addr, size_t size, bool accessible);
/* Reserve address space that faults on any access (PROT_NONE). */
void *os_reserve_none(size_t size);

TD_INLINE bool os_remap(void *addr, size_t old_size, size_t new_size, void *dest) {
  return os_hooks->remap(addr, old_size, new_size, dest);
}
TD_INLINE bool os_move(void *addr, size_t size, void *dest) { return os_hooks->move(addr, size, dest); }
/* Label a mapping in /proc/PID/maps as [anon:NAME] where the kernel allows. */
void os_name(void *addr, size_t size, const char *name);

void os_futex_wait(uint32_t *addr, uint32_t expected);
/* Wait at most timeout_ns (UINT64_MAX: no limit). */
void os_futex_wait_timeout(uint32_t *addr, uint32_t expected, uint64_t timeout_ns);
void os_futex_wake(uint32_t *addr, int count);

/* Read a small text file into buf (NUL-terminated); bytes read or -1. The
 * descriptor is closed before it returns. */
long os_read_file(const char *path, char *buf, size_t cap);
/* Give the calling thread a file-descriptor table of its own, empty: what it
 * opens afterwards is invisible to the program's other threads, which can
 * neither close nor reuse those numbers, and it holds no reference to the
 * program's files. Returns false when the kernel cannot (Linux < 5.9). */
bool os_fd_table_private(void);
/* For a thread with a private table only (the pressure watcher): */
int os_pipe_nonblock(int fds[2]);              /* 0 or -1 */
int os_eventfd(void);                          /* -1 on failure */
int os_open_rw(const char *path);              /* read-write, non-blocking */
bool os_write_str(int fd, const char *s);      /* with its NUL (PSI wants it) */
void os_drain_fd(int fd);                      /* read what is pending (pipe, eventfd) */
void os_close(int fd);
struct pollfd;
int os_poll(struct pollfd *fds, unsigned n, int timeout_ms);   /* -1: no limit */
/* Make descriptor fd of thread tid (a pipe's read end in that thread's
 * private table) readable, by writing one byte to it through
 * /proc/self/task/TID/fd/FD. The caller guarantees tid still names that
 * thread (it holds the lock the thread takes to announce its exit). */
void os_thread_fd_poke(int tid, int fd);

/* The calling thread's id. */
int os_gettid(void);
/* Processors this thread may run on (sched_getaffinity; 1 when unknown). */
unsigned os_ncpus(void);
/* The CPU the calling thread runs on (0 when the system cannot say). */
unsigned os_cpu(void);
/* The process's thread count, and whether its main thread has left with
 * pthread_exit (it then stays a zombie that still counts until the process
 * ends). -1 when unknown. */
long os_thread_census(bool *main_gone);
/* Name the calling thread (shown by ps/top). */
void os_thread_name(const char *name);
/* Block every signal in the calling thread; the old mask goes to *old
 * (a sigset_t, passed as void* to keep <signal.h> out of this header). */
void os_block_signals(void *old);
void os_restore_signals(const void *old);
/* Install a SA_SIGINFO handler for SIGSEGV, saving the old action in *old
 * (a struct sigaction); os_restore_segv puts it back. */
void os_catch_segv(void (*handler)(int, void *, void *), void *old);
void os_restore_segv(const void *old);
/* Install a SA_SIGINFO | SA_RESTART handler for signal signo (the program's
 * interrupted system calls restart). False when the kernel refuses it. */
bool os_catch_signal(int signo, void (*handler)(int, void *, void *));
/* The int a sigqueue() sender attached to siginfo `info`, or 0 for a plain
 * kill() (async-signal-safe). */
int os_siginfo_value(const void *info);
/* Publish len bytes as a new file `path` that only this user can read: write
 * them to `tmp` (created O_EXCL | O_NOFOLLOW, mode 0600: never an existing
 * file or a symlink), then rename it to `path`, so a reader never sees a
 * partial file. Opened, written and closed within this call. */
bool os_publish_file(const char *tmp, const char *path, const char *buf, size_t len);
int os_getpid(void);

/* ---- for the heap profiler (prof.c) ----
 * Files are created, written and closed within one call of the caller (a
 * dump): never kept open. */
int os_file_create(const char *path);                 /* O_WRONLY|O_CREAT|O_TRUNC, 0644; -1 on failure */
bool os_file_write(int fd, const char *buf, size_t len);
/* Append the contents of file src (e.g. /proc/self/maps) to fd. */
bool os_file_copy(const char *src, int fd);
/* The return addresses of the calling thread's stack (glibc's backtrace, on
 * libgcc's .eh_frame unwinder: no frame pointers needed). The first call
 * loads libgcc_s and allocates: the profiler makes it once at start-up. */
int os_backtrace(void **pcs, int max);
/* The executable segment of the loaded object that contains addr:
 * [*lo, *hi), and whether that object is the main program. */
bool os_text_range(const void *addr, uintptr_t *lo, uintptr_t *hi, bool *main_program);
/* The name of the function (or, failing that, the object) containing pc,
 * copied into buf; *off its offset from the symbol. dladdr: never from
 * inside malloc. Returns false when nothing is known. */
bool os_symbolize(const void *pc, char *buf, size_t cap, uintptr_t *off);

/* End the process now with status (stdio flushed first): the leak report's
 * prof_leak_error, from an exit handler. */
TD_NORETURN void os_exit_now(int status);

uint64_t os_random64(void);
const char *os_getenv(const char *name);   /* secure_getenv: NULL for setuid programs */
void os_write_stderr(const char *buf, size_t len);
/* What the system allows, read once by os_init. */
enum os_thp { OS_THP_NEVER, OS_THP_MADVISE, OS_THP_ALWAYS };
typedef struct os_system_s {
  enum os_thp thp;          /* the system's transparent hugepage mode */
  int max_ptes_none;        /* khugepaged's limit (511 when unknown) */
  bool overcommit_strict;   /* vm.overcommit_memory == 2: reserve PROT_NONE, commit per unit */
  bool lazy_free;           /* MADV_FREE works */
  size_t page_size;         /* the OS page (4, 16 or 64 KiB): getauxval(AT_PAGESZ) */
  bool purge_zeroes;        /* OS_PURGE_NOW pages read back as zero (false under some emulators) */
} os_system_t;
extern os_system_t os_system;

/* The OS page size: the kernel maps, purges, protects and commits whole OS
 * pages. The page layer's own page (TD_PAGE, 4 KiB) is its unit of runs and
 * pagemap entries whatever the OS page is; one OS page holds
 * os_page() / TD_PAGE of them.
 *   TD_PAGE <= os_page() <= OS_PAGE_MAX,  os_page() a power of two */
#define OS_PAGE_MAX ((size_t)64 << 10)
TD_INLINE size_t os_page(void) {
  size_t fake = os_hooks->page_size;
  return fake ? fake : os_system.page_size;
}

/* Reserve address space: MAP_NORESERVE RW normally, PROT_NONE when asked
 * (inaccessible) or under strict overcommit (then os_commit makes parts
 * usable). NULL on failure. */
void *os_reserve_aligned(size_t size, size_t align, bool inaccessible);

/* The address-space limit (RLIMIT_AS, ulimit -v) in bytes now; SIZE_MAX when
 * there is none. */
size_t os_address_limit(void);

/* Counters of the syscalls made through the default hooks (for statistics). */
typedef struct {
  uint64_t maps, unmaps, purges_lazy, purges_now, hugifies, dehugifies, collapses, remaps, commits;
} os_counters_t;
void os_counters_get(os_counters_t *out);

#endif
