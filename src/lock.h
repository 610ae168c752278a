/*
 * lock.h — the allocator's mutex: a futex lock with adaptive spinning and
 * contention statistics.
 *
 * What it is: a three-state (unlocked / locked / locked-with-waiters) futex
 * mutex. The uncontended path is one CAS to lock and one exchange to unlock.
 * Contended callers spin briefly (the holder usually finishes within a few
 * hundred cycles) before sleeping in the kernel. Every critical section is
 * timed with os_ticks (two counter reads, no system call), so the
 * statistics show how long each lock is held as well as how long its
 * takers wait.
 * Every mutex has a rank (enum lock_rank); debug builds check that a thread
 * takes them in increasing rank (a witness in the spirit of jemalloc's).
 * What it is not: recursive, fair, or usable before os_init (it needs none).
 * It may call: os (futex, clock), safety (the witness's report).
 */
#ifndef TIDAL_LOCK_H
#define TIDAL_LOCK_H

#include "os.h"
#include "util.h"

/* Lock ranks: a thread takes locks in increasing rank only (a lock of a
 * "multi" rank may be held several times at once, e.g. every object cache's
 * lock during fork). Debug builds check this at every acquisition; the fork
 * handlers (api.c) take every lock in this order and release in reverse.
 * pressure_drain and the background/pressure locks are leaves of their kind:
 * taken under others, never holding a lower one. */
enum lock_rank {
  RANK_INIT,                 /* api: initialisation */
  RANK_CTL,                  /* ctl: the statistics snapshot */
  RANK_UHEAP_REGISTRY,       /* uheap: the list of heaps with page sources */
  RANK_UHEAP,                /* uheap: one heap (multi); a source's map and unmap run under it */
  RANK_DRAIN,                /* pressure: one drain at a time (not taken at fork: a cleaner may fork) */
  RANK_HEAP_GLOBAL,          /* heap: the shared heap of threads past their destructor */
  RANK_SECURE_CLASS,         /* secure: per-class slabs (multi) */
  RANK_SECURE_QUARANTINE,
  RANK_SECURE_GUARDED,
  RANK_SECURE_ZERO,
  RANK_LARGE_QUARANTINE,     /* large: freed runs waiting inaccessible (multi: its rings; a leaf) */
  RANK_RUNCACHE,             /* runcache: one shard (multi; a leaf) */
  RANK_HUGE,                 /* huge: the mapping cache */
  RANK_OBJCACHE_REGISTRY,    /* objcache: the list of caches */
  RANK_OBJCACHE,             /* objcache: one cache (multi) */
  RANK_PAGE_LIST,            /* page: the list of sourced pagers */
  RANK_PAGE,                 /* page: units, bins, decay (multi: one per pager) */
  RANK_HEAP_REGISTRY,        /* heap: all heaps, the pool */
  RANK_HEAP_ORPHANS,         /* heap: counters of threads without a heap */
  RANK_PROF,                 /* prof: the sample table (takes meta under it) */
  RANK_PAGEMAP,
  RANK_META,
  RANK_PRESSURE,             /* pressure: the cleaner registry */
  RANK_BACKGROUND,           /* background: thread state (a leaf: under work hooks) */
  RANK_COUNT
};
#define LOCK_RANK_MULTI ((1u << RANK_SECURE_CLASS) | (1u << RANK_SECURE_QUARANTINE) | (1u << RANK_OBJCACHE) | (1u << RANK_UHEAP) | (1u << RANK_PAGE) | (1u << RANK_RUNCACHE) | (1u << RANK_LARGE_QUARANTINE))

typedef struct td_mutex_s {
  uint32_t state;              /* 0 unlocked, 1 locked, 2 contended; __atomic_* only */
  uint16_t spin_limit;
  uint16_t rank;               /* enum lock_rank */
  /* Statistics, written only by the holder. */
  uint64_t n_lock;             /* acquisitions */
  uint64_t n_contended;        /* acquisitions that had to wait */
  uint64_t wait_ns;            /* time spent waiting */
  uint64_t hold_ticks;         /* time held, in os_ticks: sum over acquisitions */
  uint64_t hold_max_ticks;     /* the longest single hold */
  uint64_t acquired_at;        /* os_ticks when the current holder took it */
  const char *name;
#ifdef TIDAL_DEBUG
  const void *holder;          /* the holding thread's witness, NULL when free */
#endif
} td_mutex_t;

#define TD_MUTEX_INIT(nm, rk) { .state = 0, .spin_limit = 100, .rank = (rk), .name = (nm) }

void mutex_lock_slow(td_mutex_t *m);
void mutex_unlock_slow(td_mutex_t *m);

#ifdef TIDAL_DEBUG
/* The lock-order witness (debug builds): on each acquisition it checks that
 * the thread holds nothing of a higher rank and records the holder, which
 * mutex_assert_held checks. */
void lock_witness_acquire(td_mutex_t *m);
void lock_witness_release(td_mutex_t *m);
void lock_witness_reset(void);   /* after fork, in the child */
bool mutex_held(const td_mutex_t *m);
#define mutex_assert_held(m) TD_DASSERT(mutex_held(m))
#else
TD_INLINE void lock_witness_acquire(td_mutex_t *m) { (void)m; }
TD_INLINE void lock_witness_release(td_mutex_t *m) { (void)m; }
TD_INLINE void lock_witness_reset(void) {}
#define mutex_assert_held(m) do { (void)(m); } while (0)
#endif

TD_INLINE void mutex_lock(td_mutex_t *m) {
  uint32_t expected = 0;
  if (TD_UNLIKELY(!__atomic_compare_exchange_n(&m->state, &expected, 1, false,
                                               __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
    mutex_lock_slow(m);
  lock_witness_acquire(m);   /* after: it records the holder */
  m->n_lock++;
  m->acquired_at = os_ticks();
}

/* Returns true when the lock was taken. */
TD_INLINE bool mutex_trylock(td_mutex_t *m) {
  uint32_t expected = 0;
  if (__atomic_compare_exchange_n(&m->state, &expected, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
    lock_witness_acquire(m);
    m->n_lock++;
    m->acquired_at = os_ticks();
    return true;
  }
  return false;
}

TD_INLINE void mutex_unlock(td_mutex_t *m) {
  uint64_t held = os_ticks() - m->acquired_at;   /* the holder's own fields: before the release */
  m->hold_ticks += held;
  if (held > m->hold_max_ticks) m->hold_max_ticks = held;
  lock_witness_release(m);
  if (TD_UNLIKELY(__atomic_exchange_n(&m->state, 0, __ATOMIC_RELEASE) == 2))
    mutex_unlock_slow(m);
}

/* A registry of the allocator's long-lived mutexes, so statistics can report
 * their contention without knowing the modules. */
#define MUTEX_REGISTRY_MAX 32
void mutex_register(td_mutex_t *m);
/* Copies up to max registered mutex pointers into out; returns how many. */
unsigned mutex_registered(td_mutex_t **out, unsigned max);

/* After fork, in the child: the lock is free again (the parent's holder was
 * the forking thread, which held it on purpose; lock_witness_reset then
 * forgets what it held). */
TD_INLINE void mutex_postfork_child(td_mutex_t *m) {
  m->state = 0;
#ifdef TIDAL_DEBUG
  m->holder = NULL;
#endif
}

#endif
