/*
 * os.h — the only module that talks to the kernel.
 *
 * What it is: thin wrappers for mapping, purging, hugifying and remapping
 * memory, the clock, futexes, randomness, environment and stderr. Mapping,
 * purging, hugifying, remapping and the clock go through a hooks table
 * (os_hooks_t) so unit tests can drive the layers above with fake memory and
 * fake time.
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
 * It may call: libc syscall wrappers only (never malloc).
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
} os_hooks_t;

/* Install hooks (NULL restores the defaults); returns the previous table. */
const os_hooks_t *os_hooks_set(const os_hooks_t *hooks);
extern const os_hooks_t *os_hooks;
extern const os_hooks_t os_hooks_default;

void os_init(void);

/* Map `size` bytes aligned to `align` (a power of two >= page). NULL on failure. */
void *os_map_aligned(size_t size, size_t align);
TD_INLINE bool os_unmap(void *addr, size_t size) { return os_hooks->unmap(addr, size); }
TD_INLINE bool os_purge(void *addr, size_t size, os_purge_t how) { return os_hooks->purge(addr, size, how); }
TD_INLINE bool os_hugify(void *addr, size_t size, os_huge_t how) { return os_hooks->hugify(addr, size, how); }
TD_INLINE bool os_commit(void *addr, size_t size, bool commit) { return os_hooks->commit(addr, size, commit); }
TD_INLINE uint64_t os_now_ns(void) { return os_hooks->now_ns(); }

/* Make a range inaccessible (guard) or accessible again. */
bool os_protect(void *addr, size_t size, bool accessible);
/* Reserve address space that faults on any access (PROT_NONE). */
void *os_reserve_none(size_t size);

TD_INLINE bool os_remap(void *addr, size_t old_size, size_t new_size, void *dest) {
  return os_hooks->remap(addr, old_size, new_size, dest);
}
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
} os_system_t;
extern os_system_t os_system;

/* Reserve address space: MAP_NORESERVE RW normally, PROT_NONE when asked
 * (inaccessible) or under strict overcommit (then os_commit makes parts
 * usable). NULL on failure. */
void *os_reserve_aligned(size_t size, size_t align, bool inaccessible);

/* Counters of the syscalls made through the default hooks (for statistics). */
typedef struct {
  uint64_t maps, unmaps, purges_lazy, purges_now, hugifies, dehugifies, collapses, remaps, commits;
} os_counters_t;
void os_counters_get(os_counters_t *out);

#endif
