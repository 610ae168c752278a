/*
 * lock.h — the allocator's mutex: a futex lock with adaptive spinning and
 * contention statistics.
 *
 * What it is: a three-state (unlocked / locked / locked-with-waiters) futex
 * mutex. The uncontended path is one CAS to lock and one exchange to unlock.
 * Contended callers spin briefly (the holder usually finishes within a few
 * hundred cycles) before sleeping in the kernel.
 * What it is not: recursive, fair, or usable before os_init (it needs none).
 * It may call: os (futex, clock).
 */
#ifndef TIDAL_LOCK_H
#define TIDAL_LOCK_H

#include "util.h"

typedef struct td_mutex_s {
  uint32_t state;              /* 0 unlocked, 1 locked, 2 contended; __atomic_* only */
  uint32_t spin_limit;
  /* Statistics, written only by the holder. */
  uint64_t n_lock;             /* acquisitions */
  uint64_t n_contended;        /* acquisitions that had to wait */
  uint64_t wait_ns;            /* time spent waiting */
  const char *name;
} td_mutex_t;

#define TD_MUTEX_INIT(nm) { .state = 0, .spin_limit = 100, .name = (nm) }

void mutex_lock_slow(td_mutex_t *m);
void mutex_unlock_slow(td_mutex_t *m);

TD_INLINE void mutex_lock(td_mutex_t *m) {
  uint32_t expected = 0;
  if (TD_UNLIKELY(!__atomic_compare_exchange_n(&m->state, &expected, 1, false,
                                               __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
    mutex_lock_slow(m);
  m->n_lock++;
}

/* Returns true when the lock was taken. */
TD_INLINE bool mutex_trylock(td_mutex_t *m) {
  uint32_t expected = 0;
  if (__atomic_compare_exchange_n(&m->state, &expected, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
    m->n_lock++;
    return true;
  }
  return false;
}

TD_INLINE void mutex_unlock(td_mutex_t *m) {
  if (TD_UNLIKELY(__atomic_exchange_n(&m->state, 0, __ATOMIC_RELEASE) == 2))
    mutex_unlock_slow(m);
}

/* A registry of the allocator's long-lived mutexes, so statistics can report
 * their contention without knowing the modules. */
#define MUTEX_REGISTRY_MAX 16
void mutex_register(td_mutex_t *m);
/* Copies up to max registered mutex pointers into out; returns how many. */
unsigned mutex_registered(td_mutex_t **out, unsigned max);

/* After fork, in the child: the lock is free again (the parent's holder was
 * the forking thread, which held it on purpose). */
TD_INLINE void mutex_postfork_child(td_mutex_t *m) { m->state = 0; }

#endif
