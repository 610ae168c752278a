/*
 * os.h — the only module that talks to the kernel.
 *
 * What it is: thin wrappers for mapping, purging, hugifying and remapping
 * memory, the clock, futexes, randomness, environment and stderr. Mapping,
 * purging, hugifying and the clock go through a hooks table (os_hooks_t) so
 * unit tests can drive the layers above with fake memory and fake time.
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

/* mremap(MREMAP_MAYMOVE); NULL on failure (old mapping untouched). */
void *os_remap(void *addr, size_t old_size, size_t new_size);
/* Label a mapping in /proc/PID/maps as [anon:NAME] where the kernel allows. */
void os_name(void *addr, size_t size, const char *name);

void os_futex_wait(uint32_t *addr, uint32_t expected);
/* Wait at most timeout_ns (UINT64_MAX: no limit). */
void os_futex_wait_timeout(uint32_t *addr, uint32_t expected, uint64_t timeout_ns);
void os_futex_wake(uint32_t *addr, int count);

/* Event sources for the background thread. */
int os_eventfd(void);                        /* -1 on failure */
void os_eventfd_signal(int fd);
void os_eventfd_drain(int fd);
/* Open a file read-write/non-blocking (PSI triggers, cgroup control files). */
int os_open_rw(const char *path);
bool os_write_str(int fd, const char *s);
/* Read a small text file into buf (NUL-terminated); bytes read or -1. */
long os_read_file(const char *path, char *buf, size_t cap);
void os_close(int fd);
/* poll(2) on the given fds for at most timeout_ms (-1: no limit). */
struct pollfd;
int os_poll(struct pollfd *fds, unsigned n, int timeout_ms);
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
typedef struct os_system_s {
  int thp_enabled;          /* enum: 0 never, 1 madvise, 2 always */
  int max_ptes_none;        /* khugepaged's limit (511 when unknown) */
  bool overcommit_strict;   /* vm.overcommit_memory == 2: reserve PROT_NONE, commit per unit */
  bool lazy_free;           /* MADV_FREE works */
} os_system_t;
extern os_system_t os_system;

/* Reserve address space: MAP_NORESERVE RW normally, PROT_NONE under strict
 * overcommit (then os_commit makes parts usable). NULL on failure. */
void *os_reserve_aligned(size_t size, size_t align);

/* Counters of the syscalls made through the default hooks (for statistics). */
typedef struct {
  uint64_t maps, unmaps, purges_lazy, purges_now, hugifies, dehugifies, collapses, remaps, commits;
} os_counters_t;
void os_counters_get(os_counters_t *out);

#endif
