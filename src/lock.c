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
