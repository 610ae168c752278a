#include "background.h"
#include "conf.h"
#include "heap.h"
#include "huge.h"
#include "lock.h"
#include "os.h"
#include "page.h"
#include "pressure.h"
#include "prof.h"
#include "runcache.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>

/* Even with nothing due, look around this often (pooled heaps' inboxes). */
#define IDLE_CHECK_NS     (30ull * 1000000000ull)
/* While the main thread has left (pthread_exit), or for a while after any
 * thread exits, check this often whether only tidalloc's threads are left. */
#define LIVENESS_CHECK_NS (50ull * 1000000ull)
#define LIVENESS_WATCH_NS (1000ull * 1000000ull)
/* The pressure watcher starts pressure_delay_ms after the worker, or as soon
 * as tidalloc holds this much (pages in runs or free and resident, huge
 * mappings live or cached): a drain could then give back enough to matter.
 * Until then it costs nothing: the kernel closes each PSI trigger at exit
 * after an RCU grace period (10-15 ms measured here, two triggers), which a
 * short program would pay on every run. Until the watcher starts, the
 * worker looks every WATCH_POLL_NS (nothing wakes it when memory grows):
 * at most pressure_delay_ms / 100 ms wake-ups, once. */
#define WATCH_NOW_BYTES   ((size_t)64 << 20)
#define WATCH_POLL_NS     (100ull * 1000000ull)

/* bg_lock guards every member but the futex word `seq` (bumped with
 * __atomic_* to wake the worker). It is a leaf: taken under other allocator
 * locks (the work hooks), it never holds one itself. */
static td_mutex_t bg_lock = TD_MUTEX_INIT("background", RANK_BACKGROUND);
static struct {
  bool enabled;            /* option / ctl */
  bool running;            /* the worker exists */
  bool starting;           /* pthread_create in progress (guards re-entry) */
  bool failed;             /* could not create it: stay inline */
  uint64_t wake_at;        /* when the worker plans to wake */
  uint64_t work_due;       /* when deferred work is next due (notifications bring it forward) */
  uint64_t wakeups;
  uint64_t watch_until;    /* check liveness often until then (a thread exited) */
  int pressure;            /* enum pressure_level the watcher saw, for the worker to drain */
  /* The pressure watcher: its thread id and the read end of its wake-up
   * pipe, both valid while watch_tid != 0 (it clears them under bg_lock
   * before it exits). */
  int watch_tid, watch_fd;
  bool watch_stop;
  bool watch_started;      /* spawned and not yet joined */
  bool watch_alive;        /* spawned and not yet returned */
  pthread_t watcher;
  uint32_t seq;
} bg;

static void *worker_main(void *arg);
static void hooks_install(bool on);

/* A statistics request from the stats signal: 0 none, else
 * STATS_REQUEST_PENDING | the value the sender attached (sigqueue). Written
 * by the signal handler, taken by the worker (__atomic_* only). */
#define STATS_REQUEST_PENDING 0x80000000u
static uint32_t stats_request;
static void (*stats_writer)(uint32_t value);   /* set once by ctl_init */

/* Set when work came due before the thread exists; the API layer starts the
 * thread at its next slow path (background_start_pending), where it holds no
 * allocator lock: creating a thread allocates, so it must never happen inside
 * a hook whose caller may hold one. */
static bool start_pending;   /* accessed with __atomic_* only */

bool background_start_pending(void) { return __atomic_load_n(&start_pending, __ATOMIC_RELAXED); }

/* A thread with every signal blocked: signals are the program's business.
 * detached: the worker; joinable: the watcher (the worker joins it). */
static int thread_spawn(pthread_t *t, void *(*fn)(void *), bool detached) {
  return os_thread_spawn(t, fn, detached);   /* through the hooks: tests make it fail */
}

void background_start(void) {
  if (!__atomic_exchange_n(&start_pending, false, __ATOMIC_ACQ_REL)) return;
  mutex_lock(&bg_lock);
  if (!bg.enabled || bg.failed || bg.running || bg.starting) {
    mutex_unlock(&bg_lock);
    return;
  }
  bg.starting = true;
  bg.wake_at = 0;
  mutex_unlock(&bg_lock);
  pthread_t t;
  int rc = thread_spawn(&t, worker_main, true);
  mutex_lock(&bg_lock);
  bg.starting = false;
  if (rc == 0) {
    bg.running = true;
    bg.work_due = 0;   /* look around at once */
  }
  else bg.failed = true;               /* fall back to inline work */
  mutex_unlock(&bg_lock);
  if (rc != 0) hooks_install(false);
}

/* Wake the worker. A private futex: no descriptor, no signal, not a
 * cancellation point, and nothing another process can see. */
static void wake_locked(void) {
  mutex_assert_held(&bg_lock);
  __atomic_fetch_add(&bg.seq, 1, __ATOMIC_RELEASE);
  os_futex_wake(&bg.seq, 1);
}

/* Called by page, huge and pressure without their locks (but maybe under a
 * caller's) when work is due at `due`: wake the worker, or ask for it to be
 * started. */
static void bg_notify(uint64_t due) {
  mutex_lock(&bg_lock);
  if (bg.enabled && !bg.failed) {
    if (!bg.running) {
      __atomic_store_n(&start_pending, true, __ATOMIC_RELEASE);
    } else {
      bg.work_due = TD_MIN(bg.work_due, due);
      if (due < bg.wake_at) {
        bg.wake_at = due;
        wake_locked();
      }
    }
  }
  mutex_unlock(&bg_lock);
}

/* A thread is exiting (heap's thread-exit hook): if it was the last of the
 * program's, the worker must notice and leave, or it would keep the process
 * alive. */
static void bg_thread_exited(void) {
  mutex_lock(&bg_lock);
  if (bg.running) {
    /* Already watching (it checks every LIVENESS_CHECK_NS): just watch
     * longer, so that thread churn costs no wake-up per exit. */
    uint64_t now = os_now_ns();
    bool watching = now < bg.watch_until;
    bg.watch_until = now + LIVENESS_WATCH_NS;
    if (!watching) wake_locked();
  }
  mutex_unlock(&bg_lock);
}

/* The one waker of signal handlers (the stats signal, the heap profiler's
 * prof_signal and prof_gdump): async-signal-safe, it takes no lock: it asks
 * for the worker to be started if it is not running, bumps the futex word
 * and wakes it (a raw syscall that keeps errno). The worker looks at both
 * kinds of request on every round. */
static void bg_wake_async(void) {
  __atomic_store_n(&start_pending, true, __ATOMIC_RELEASE);
  __atomic_fetch_add(&bg.seq, 1, __ATOMIC_RELEASE);
  os_futex_wake(&bg.seq, 1);
}

void background_request_start(void) { __atomic_store_n(&start_pending, true, __ATOMIC_RELEASE); }

static void hooks_install(bool on) {
  page_set_work_hook(on ? bg_notify : NULL);
  huge_set_work_hook(on ? bg_notify : NULL);
  runcache_set_work_hook(on ? bg_notify : NULL);
  pressure_set_work_hook(on ? bg_notify : NULL);
  prof_set_wake_hook(on ? bg_wake_async : NULL);
}

/* ---- the pressure watcher --------------------------------------------------- */

/* It sleeps in poll() on the pressure sources (no wake-ups while idle) and
 * hands what it sees to the worker, which drains: application cleaners run
 * on the worker, whose descriptor table is the program's. Its own table is
 * private, so the program can neither close nor reuse its descriptors and a
 * fork never copies them. The worker stops it through its wake-up pipe,
 * opened by path (/proc/self/task/TID/fd/N). */
static void *watcher_main(void *arg) {
  (void)arg;
  os_thread_name("tidalloc-psi");
  struct pollfd fds[1 + PRESSURE_MAX_FDS];
  int pipefd[2] = { -1, -1 }, n = 0;
  if (os_fd_table_private() && os_pipe_nonblock(pipefd) == 0) {
    fds[0] = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
    n = pressure_open_events(fds + 1, PRESSURE_MAX_FDS);
    /* The write end stays open (a pipe without writers polls as hung up);
     * the worker writes through the read end's path. */
  }
  mutex_lock(&bg_lock);
  bool stop = bg.watch_stop || n == 0;
  if (!stop) { bg.watch_tid = os_gettid(); bg.watch_fd = pipefd[0]; }
  mutex_unlock(&bg_lock);
  while (!stop) {
    if (os_poll(fds, (unsigned)(1 + n), -1) > 0) {
      if (fds[0].revents) os_drain_fd(fds[0].fd);
      enum pressure_level level = pressure_read_events(fds + 1, n);
      mutex_lock(&bg_lock);
      if ((int)level > bg.pressure) { bg.pressure = (int)level; wake_locked(); }
      mutex_unlock(&bg_lock);
    }
    mutex_lock(&bg_lock);
    stop = bg.watch_stop;
    mutex_unlock(&bg_lock);
  }
  mutex_lock(&bg_lock);
  bg.watch_tid = 0;      /* from now on nobody writes to its pipe */
  bg.watch_alive = false;
  mutex_unlock(&bg_lock);
  return NULL;   /* its private table, and the descriptors in it, go with it */
}

static void watcher_start(void) {
  if (!pressure_has_events()) return;
  mutex_lock(&bg_lock);
  bool start = !bg.watch_started;
  bg.watch_started = bg.watch_alive = true;
  bg.watch_stop = false;
  mutex_unlock(&bg_lock);
  if (start && thread_spawn(&bg.watcher, watcher_main, false) != 0) {
    mutex_lock(&bg_lock);
    bg.watch_started = bg.watch_alive = false;
    mutex_unlock(&bg_lock);
  }
}

/* Stop the watcher and wait until it is gone (worker only). */
static void watcher_stop(void) {
  mutex_lock(&bg_lock);
  bool started = bg.watch_started;
  bg.watch_stop = true;
  if (bg.watch_tid) os_thread_fd_poke(bg.watch_tid, bg.watch_fd);   /* under the lock: tid still names it */
  mutex_unlock(&bg_lock);
  if (!started) return;
  pthread_join(bg.watcher, NULL);
  mutex_lock(&bg_lock);
  bg.watch_started = false;
  mutex_unlock(&bg_lock);
}

/* ---- the worker --------------------------------------------------------------- */

/* One round of deferred work; returns when the next is due. */
static uint64_t worker_round(int pressure) {
  if (pressure) pressure_drain(SIZE_MAX, (enum pressure_level)pressure);
  uint64_t now = os_now_ns();
  uint64_t next = page_deferred_work(now, true);
  next = TD_MIN(next, huge_deferred_work(now));
  next = TD_MIN(next, runcache_deferred_work(now));
  next = TD_MIN(next, pressure_periodic(now));
  heap_sweep_pool(false);
  return next;
}

/* Whether the worker must leave: switched off, or the program's threads are
 * all gone (a main thread that left with pthread_exit keeps the process
 * running until every other thread has: ours must never be what keeps it
 * alive, or, with every signal blocked here, what makes it deaf to SIGTERM).
 * *main_gone: poll liveness often. */
static bool worker_must_leave(bool *main_gone) {
  mutex_lock(&bg_lock);
  bool on = bg.enabled;
  long ours = 1 + bg.watch_alive;
  mutex_unlock(&bg_lock);
  if (!on) return true;
  long n = os_thread_census(main_gone);
  /* Left: the zombie main thread and tidalloc's own. */
  return *main_gone && n >= 0 && n <= 1 + ours;
}

/* Run the deferred work if it is due (or the watcher saw pressure); returns
 * when it is next due. A wake-up only to check liveness does no work: the
 * pool sweep would keep pooled heaps from new threads meanwhile. */
static uint64_t worker_work(uint64_t now) {
  uint32_t req = __atomic_exchange_n(&stats_request, 0, __ATOMIC_ACQ_REL);
  void (*writer)(uint32_t) = __atomic_load_n(&stats_writer, __ATOMIC_ACQUIRE);
  if (req && writer) writer(req & ~STATS_REQUEST_PENDING);
  else if (req) __atomic_store_n(&stats_request, req, __ATOMIC_RELEASE);   /* not yet: keep it */
  mutex_lock(&bg_lock);
  int pressure = bg.pressure;
  bg.pressure = PRESSURE_NONE;
  uint64_t due = bg.work_due;
  if (pressure || now >= due) bg.work_due = TD_NEVER;   /* notifications during the round bring it back */
  mutex_unlock(&bg_lock);
  if (!pressure && now < due) return due;
  /* Even with nothing due, look around every IDLE_CHECK_NS (pooled heaps' inboxes). */
  uint64_t next = TD_MIN(worker_round(pressure), now + IDLE_CHECK_NS);
  mutex_lock(&bg_lock);
  bg.work_due = TD_MIN(bg.work_due, next);
  next = bg.work_due;
  mutex_unlock(&bg_lock);
  return next;
}

/* Whether the watcher should start now (see WATCH_NOW_BYTES). */
static bool watch_wanted(uint64_t now, uint64_t watch_at) {
  if (now >= watch_at) return true;
  page_stats_t ps;
  huge_stats_t hs;
  page_stats_get(&ps);
  huge_stats_get(&hs);
  return ps.active + ps.dirty + hs.live_bytes + hs.cached_bytes >= WATCH_NOW_BYTES;
}

static void *worker_main(void *arg) {
  (void)arg;
  os_thread_name("tidalloc-bg");
  uint64_t watch_at = os_now_ns() + (uint64_t)opt.pressure_delay_ms * 1000000u;
  bool watching = !pressure_has_events();
  for (;;) {
    if (!watching && watch_wanted(os_now_ns(), watch_at)) {
      watcher_start();
      watching = true;
    }
    bool main_gone = false;
    if (worker_must_leave(&main_gone)) break;
    mutex_lock(&bg_lock);
    bg.wakeups++;
    bg.wake_at = 0;   /* working: any notification may be skipped */
    bool watch = os_now_ns() < bg.watch_until || main_gone;
    mutex_unlock(&bg_lock);

    uint64_t next = worker_work(os_now_ns());
    prof_deferred_work();   /* a dump asked for by prof_signal or prof_gdump */
    uint64_t now = os_now_ns();
    if (watch) next = TD_MIN(next, now + LIVENESS_CHECK_NS);
    if (!watching) next = TD_MIN(next, TD_MIN(watch_at, now + WATCH_POLL_NS));
    mutex_lock(&bg_lock);
    uint32_t seq = __atomic_load_n(&bg.seq, __ATOMIC_ACQUIRE);
    bg.wake_at = next;
    bool more = bg.pressure != PRESSURE_NONE || bg.work_due <= now ||
                __atomic_load_n(&stats_request, __ATOMIC_ACQUIRE) != 0 || prof_work_pending();
    mutex_unlock(&bg_lock);
    if (next > now && !more) os_futex_wait_timeout(&bg.seq, seq, next - now);
  }
  watcher_stop();
  mutex_lock(&bg_lock);
  bg.running = false;
  mutex_unlock(&bg_lock);
  return NULL;
}

/* ---- the statistics signal ---------------------------------------------------------- */

/* The handler does only what is async-signal-safe: record the request, bump
 * the worker's futex word and wake it (a raw syscall that keeps errno), and
 * ask for the worker to be started if it is not running yet. The worker
 * writes the file (ctl's writer). */
static void stats_signal_handler(int sig, void *info, void *ctx) {
  (void)sig; (void)ctx;
  uint32_t v = ((uint32_t)os_siginfo_value(info) & ~STATS_REQUEST_PENDING) | STATS_REQUEST_PENDING;
  __atomic_store_n(&stats_request, v, __ATOMIC_RELEASE);
  bg_wake_async();
}

/* Install the handler for opt.stats_signal (background_init). */
static void stats_signal_init(void) {
  if (!opt.stats_signal) return;
  /* Without the background thread (background_thread:false) requests wait
   * unanswered until it is switched on (tidal_ctl "background_thread"). */
  static const char msg[] = "tidalloc: stats_signal ignored: that signal cannot be caught\n";
  if (!os_catch_signal((int)opt.stats_signal, stats_signal_handler)) os_write_stderr(msg, sizeof msg - 1);
}

void background_set_stats_writer(void (*writer)(uint32_t value)) {
  __atomic_store_n(&stats_writer, writer, __ATOMIC_RELEASE);
}

/* ---- control ---------------------------------------------------------------------- */

void background_init(void) {
  mutex_register(&bg_lock);
  heap_set_exit_hook(bg_thread_exited);
  bg.enabled = opt.background_thread;
  stats_signal_init();
  if (!bg.enabled) return;
  pressure_init();
  hooks_install(true);
  /* Pressure events need the watcher even before there is other work. */
  if (pressure_has_events()) __atomic_store_n(&start_pending, true, __ATOMIC_RELEASE);
}

void background_enable(bool on) {
  mutex_lock(&bg_lock);
  bool was = bg.enabled;
  bg.enabled = on;
  if (on) bg.failed = false;
  if (!on && was) wake_locked();   /* it sees !enabled and exits */
  mutex_unlock(&bg_lock);
  if (on != was) hooks_install(on);
}

bool background_enabled(void) {
  mutex_lock(&bg_lock);
  bool on = bg.enabled;
  mutex_unlock(&bg_lock);
  return on;
}

bool background_running(void) {
  mutex_lock(&bg_lock);
  bool r = bg.running;
  mutex_unlock(&bg_lock);
  return r;
}

uint64_t background_wakeups(void) {
  mutex_lock(&bg_lock);
  uint64_t w = bg.wakeups;
  mutex_unlock(&bg_lock);
  return w;
}

void background_prefork(void) { mutex_lock(&bg_lock); }
void background_postfork_parent(void) { mutex_unlock(&bg_lock); }
void background_postfork_child(void) {
  mutex_postfork_child(&bg_lock);
  start_pending = false;
  stats_request = 0;
  /* Neither thread survived, and the watcher's descriptors stayed with it:
   * the child starts its own when work comes. */
  bg.running = false;
  bg.starting = false;
  bg.wake_at = 0;
  bg.watch_until = 0;
  bg.work_due = TD_NEVER;
  bg.pressure = PRESSURE_NONE;
  bg.watch_tid = 0;
  bg.watch_fd = -1;
  bg.watch_stop = false;
  bg.watch_started = false;
  bg.watch_alive = false;
  bg.seq = 0;
}
