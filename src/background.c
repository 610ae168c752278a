#include "background.h"
#include "conf.h"
#include "heap.h"
#include "huge.h"
#include "lock.h"
#include "os.h"
#include "page.h"
#include "pressure.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>

#define NEVER UINT64_MAX
/* Even with nothing due, look around this often (pooled heaps' inboxes). */
#define IDLE_CHECK_NS (30ull * 1000000000ull)

static td_mutex_t bg_lock = TD_MUTEX_INIT("background");
static struct {
  bool enabled;            /* option / ctl */
  bool running;            /* the thread exists */
  bool starting;           /* pthread_create in progress (guards re-entry) */
  bool failed;             /* could not create it: stay inline */
  uint64_t wake_at;        /* when the thread plans to wake */
  uint64_t wakeups;
  uint32_t seq;            /* futex word: bumped to wake the thread (__atomic_*) */
  int efd;                 /* eventfd the thread polls (with the pressure sources); -1: use the futex */
  pthread_t thread;
} B;

static void *bg_main(void *arg);

static void hooks_install(bool on);

/* Set when work came due before the thread exists; the API layer starts the
 * thread at its next slow path (background_start_pending), where it holds no
 * allocator lock: creating a thread allocates, so it must never happen inside
 * a hook whose caller may hold one. */
static bool start_pending;   /* accessed with __atomic_* only */

bool background_start_pending(void) { return __atomic_load_n(&start_pending, __ATOMIC_RELAXED); }

void background_start(void) {
  if (!__atomic_exchange_n(&start_pending, false, __ATOMIC_ACQ_REL)) return;
  mutex_lock(&bg_lock);
  if (!B.enabled || B.failed || B.running || B.starting) {
    mutex_unlock(&bg_lock);
    return;
  }
  B.starting = true;
  B.wake_at = 0;
  mutex_unlock(&bg_lock);
  sigset_t old;
  os_block_signals(&old);   /* the thread starts with every signal blocked */
  pthread_t t;
  int rc = pthread_create(&t, NULL, bg_main, NULL);
  os_restore_signals(&old);
  mutex_lock(&bg_lock);
  B.starting = false;
  if (rc == 0) {
    pthread_detach(t);
    B.thread = t;
    B.running = true;
  } else {
    B.failed = true;               /* fall back to inline work */
  }
  mutex_unlock(&bg_lock);
  if (rc != 0) hooks_install(false);
}

/* Called by page and huge without their locks (but maybe under a caller's)
 * when work is due at `due`: wake the thread, or ask for it to be started. */
static void bg_notify(uint64_t due) {
  mutex_lock(&bg_lock);
  if (!B.enabled || B.failed) {
    mutex_unlock(&bg_lock);
    return;
  }
  if (!B.running) {
    mutex_unlock(&bg_lock);
    __atomic_store_n(&start_pending, true, __ATOMIC_RELEASE);
    return;
  }
  bool wake = due < B.wake_at;
  int efd = B.efd;
  if (wake) {
    B.wake_at = due;
    __atomic_fetch_add(&B.seq, 1, __ATOMIC_RELEASE);
  }
  mutex_unlock(&bg_lock);
  if (wake) {
    if (efd >= 0) os_eventfd_signal(efd);
    else os_futex_wake(&B.seq, 1);
  }
}

static void hooks_install(bool on) {
  page_set_work_hook(on ? bg_notify : NULL);
  huge_set_work_hook(on ? bg_notify : NULL);
}

static void *bg_main(void *arg) {
  (void)arg;
  os_thread_name("tidalloc-bg");
  struct pollfd fds[1 + PRESSURE_MAX_FDS];
  int nfds = 0;
  mutex_lock(&bg_lock);
  int efd = B.efd;
  mutex_unlock(&bg_lock);
  if (efd >= 0) {
    fds[0] = (struct pollfd){ .fd = efd, .events = POLLIN };
    nfds = 1 + pressure_pollfds(fds + 1, PRESSURE_MAX_FDS);
  }
  for (;;) {
    mutex_lock(&bg_lock);
    if (!B.enabled) {
      B.running = false;
      mutex_unlock(&bg_lock);
      return NULL;
    }
    B.wakeups++;
    B.wake_at = 0;   /* working: any notification may be skipped */
    mutex_unlock(&bg_lock);

    uint64_t now = os_now_ns();
    uint64_t next = page_deferred_work(now, true);
    uint64_t hnext = huge_deferred_work(now);
    if (hnext < next) next = hnext;
    uint64_t pnext = pressure_periodic(now);
    if (pnext < next) next = pnext;
    heap_sweep_pool();

    now = os_now_ns();
    if (next == NEVER || next > now + IDLE_CHECK_NS) next = now + IDLE_CHECK_NS;
    mutex_lock(&bg_lock);
    uint32_t seq = __atomic_load_n(&B.seq, __ATOMIC_ACQUIRE);
    B.wake_at = next;
    mutex_unlock(&bg_lock);
    if (next <= now) continue;
    if (nfds) {
      /* Sleep until the deadline, a wake-up, or a pressure event. */
      uint64_t ms = (next - now + 999999) / 1000000;
      int rc = os_poll(fds, (unsigned)nfds, (int)TD_MIN(ms, (uint64_t)INT32_MAX));
      if (rc > 0) {
        if (fds[0].revents) os_eventfd_drain(efd);
        pressure_handle_events(fds + 1, nfds - 1);
      }
    } else {
      os_futex_wait_timeout(&B.seq, seq, next - now);
    }
  }
}

void background_init(void) {
  mutex_register(&bg_lock);
  B.enabled = opt.background_thread;
  B.efd = -1;
  if (!B.enabled) return;
  hooks_install(true);
  pressure_init();
  B.efd = os_eventfd();
  /* Watching for pressure needs the thread even before there is other work. */
  if (pressure_watching()) __atomic_store_n(&start_pending, true, __ATOMIC_RELEASE);
}

void background_enable(bool on) {
  mutex_lock(&bg_lock);
  bool was = B.enabled;
  B.enabled = on;
  if (on) B.failed = false;
  mutex_unlock(&bg_lock);
  if (on && !was) {
    hooks_install(true);
  } else if (!on && was) {
    hooks_install(false);
    __atomic_fetch_add(&B.seq, 1, __ATOMIC_RELEASE);
    if (B.efd >= 0) os_eventfd_signal(B.efd);   /* it sees !enabled and exits */
    else os_futex_wake(&B.seq, 1);
  }
}

bool background_enabled(void) {
  mutex_lock(&bg_lock);
  bool on = B.enabled;
  mutex_unlock(&bg_lock);
  return on;
}

bool background_running(void) {
  mutex_lock(&bg_lock);
  bool r = B.running;
  mutex_unlock(&bg_lock);
  return r;
}

uint64_t background_wakeups(void) {
  mutex_lock(&bg_lock);
  uint64_t w = B.wakeups;
  mutex_unlock(&bg_lock);
  return w;
}

void background_prefork(void) { mutex_lock(&bg_lock); }
void background_postfork_parent(void) { mutex_unlock(&bg_lock); }
void background_postfork_child(void) {
  mutex_postfork_child(&bg_lock);
  start_pending = false;
  /* The thread did not survive: start a new one when work comes. */
  B.running = false;
  B.starting = false;
  B.wake_at = 0;
  B.seq = 0;
}
