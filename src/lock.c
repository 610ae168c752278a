#include "lock.h"
#include "os.h"

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

void mutex_lock_slow(td_mutex_t *m) {
  uint64_t t0 = os_now_ns();
  /* Spin while the holder is likely to be running. */
  for (uint32_t i = 0; i < m->spin_limit; i++) {
    cpu_relax();
    uint32_t s = __atomic_load_n(&m->state, __ATOMIC_RELAXED);
    if (s == 0) {
      uint32_t expected = 0;
      if (__atomic_compare_exchange_n(&m->state, &expected, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        goto acquired;
    } else if (s == 2) {
      break;   /* others already sleep: join them */
    }
  }
  /* Sleep: mark contended, wait until the holder's unlock wakes us. */
  while (__atomic_exchange_n(&m->state, 2, __ATOMIC_ACQUIRE) != 0)
    os_futex_wait(&m->state, 2);
acquired:
  m->n_contended++;
  m->wait_ns += os_now_ns() - t0;
}

void mutex_unlock_slow(td_mutex_t *m) { os_futex_wake(&m->state, 1); }

#ifdef TIDAL_DEBUG
#include "safety.h"
/* What the calling thread holds, by rank. */
static __thread uint16_t tls_held[RANK_COUNT] __attribute__((tls_model("initial-exec")));
static __thread uint32_t tls_held_mask __attribute__((tls_model("initial-exec")));

void lock_witness_acquire(td_mutex_t *m) {
  uint32_t bit = 1u << m->rank;
  /* Nothing of a higher rank, and the same rank only where several may be held. */
  if (TD_UNLIKELY(tls_held_mask & ~((bit << 1) - 1)) || ((tls_held_mask & bit) && !(bit & LOCK_RANK_MULTI)))
    safety_report("lock order violated", m, m->name, m->rank, "mutex_lock");
  tls_held[m->rank]++;
  tls_held_mask |= bit;
  m->holder = &tls_held_mask;
}

void lock_witness_release(td_mutex_t *m) {
  TD_DASSERT(m->holder == &tls_held_mask && tls_held[m->rank] > 0);
  if (--tls_held[m->rank] == 0) tls_held_mask &= ~(1u << m->rank);
  m->holder = NULL;
}

void lock_witness_reset(void) {
  for (unsigned r = 0; r < RANK_COUNT; r++) tls_held[r] = 0;
  tls_held_mask = 0;
}

bool mutex_held(const td_mutex_t *m) { return m->holder == &tls_held_mask; }
#endif

static td_mutex_t *registry[MUTEX_REGISTRY_MAX];
static unsigned nregistered;

/* Called during initialisation only (single-threaded by then: td_init). */
void mutex_register(td_mutex_t *m) {
  for (unsigned i = 0; i < nregistered; i++) if (registry[i] == m) return;
  if (nregistered < MUTEX_REGISTRY_MAX) registry[nregistered++] = m;
}

unsigned mutex_registered(td_mutex_t **out, unsigned max) {
  unsigned n = TD_MIN(max, nregistered);
  for (unsigned i = 0; i < n; i++) out[i] = registry[i];
  return n;
}
