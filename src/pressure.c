#include "pressure.h"
#include "conf.h"
#include "heap.h"
#include "huge.h"
#include "lock.h"
#include "os.h"
#include "page.h"
#include "runcache.h"
#include "secure.h"
#include "tidalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLEANERS_MAX      64
#define NAME_MAX_LEN      32
#define LIMIT_CHECK_NS    (1000ull * 1000000ull)   /* read the cgroup limit once a second */
#define LIMIT_NEAR_CHECK_NS (50ull * 1000000ull)   /* ...every 50 ms while usage is near it and no event watches it */
#define NEAR_WATCH_PERMILLE    750                 /* usage >= 75 %: "near" */
#define NEAR_SOME_PERMILLE     900                 /* usage >= 90 % of the limit */
#define NEAR_CRITICAL_PERMILLE 970                 /* usage >= 97 % */
#define RECLAIM_WORTH_BYTES    ((size_t)1 << 20)   /* periodic checks only while a drain could free this */

/* ---- the registry ---------------------------------------------------------- */

typedef struct cleaner_s {
  tidal_cleaner_fn fn;
  void *arg;
  char name[NAME_MAX_LEN];
  bool used;
  int running;                /* thread id of a drain calling it now, or 0 */
  uint64_t calls, released;
} cleaner_t;

/* reg_lock guards cleaners[], app_cleaners, own_calls/own_released and
 * counts (but counts.events_*, only ever updated and read atomically); it is a leaf (taken under
 * no other lock's protection of a callback) and never held while a cleaner
 * runs. drain_lock makes drains take turns; unregistering never takes it, so
 * a cleaner may unregister itself or others. */
static td_mutex_t reg_lock = TD_MUTEX_INIT("pressure", RANK_PRESSURE);
static td_mutex_t drain_lock = TD_MUTEX_INIT("pressure_drain", RANK_DRAIN);
static cleaner_t cleaners[CLEANERS_MAX];
static unsigned app_cleaners;            /* registered application cleaners */
static uint32_t calls_done;              /* futex word: bumped when a cleaner call returns */
static __thread bool tls_draining __attribute__((tls_model("initial-exec")));
static void (*work_hook)(uint64_t);

/* Built-in cleaners, cheapest first: what they release costs the program
 * nothing it would notice soon. */
enum { OWN_CACHES, OWN_HUGE, OWN_PAGES, OWN_N };
static const char *const own_names[OWN_N] = { "tidalloc:thread_caches", "tidalloc:huge_cache", "tidalloc:free_pages" };
static uint64_t own_calls[OWN_N], own_released[OWN_N];

static struct {
  uint64_t events_psi, events_cgroup, events_limit, events_explicit, drains, released;
} counts;

void pressure_set_work_hook(void (*hook)(uint64_t)) { __atomic_store_n(&work_hook, hook, __ATOMIC_RELEASE); }

int pressure_cleaner_register(const char *name, tidal_cleaner_fn fn, void *arg) {
  if (!fn) return -1;
  int id = -1;
  mutex_lock(&reg_lock);
  for (int i = 0; i < CLEANERS_MAX && id < 0; i++) {
    if (cleaners[i].used || cleaners[i].running) continue;
    cleaners[i] = (cleaner_t){ .fn = fn, .arg = arg, .used = true };
    strncpy(cleaners[i].name, name ? name : "cleaner", NAME_MAX_LEN - 1);
    app_cleaners++;
    id = i;
  }
  mutex_unlock(&reg_lock);
  /* Periodic checks are worth making now that a drain could release more. */
  void (*hook)(uint64_t) = __atomic_load_n(&work_hook, __ATOMIC_ACQUIRE);
  if (id >= 0 && hook) hook(0);
  return id;
}

int pressure_cleaner_unregister(int id) {
  if (id < 0 || id >= CLEANERS_MAX) return -1;
  int self = os_gettid();
  mutex_lock(&reg_lock);
  int rc = cleaners[id].used ? 0 : -1;
  if (rc == 0) { cleaners[id].used = false; app_cleaners--; }
  /* Once it returns, the cleaner is never called again: wait for a call in
   * progress on another thread (not for our own: a cleaner may unregister
   * itself). */
  while (cleaners[id].running && cleaners[id].running != self) {
    uint32_t seen = __atomic_load_n(&calls_done, __ATOMIC_ACQUIRE);
    mutex_unlock(&reg_lock);
    os_futex_wait(&calls_done, seen);
    mutex_lock(&reg_lock);
  }
  mutex_unlock(&reg_lock);
  return rc;
}

static size_t own_cleaner(int which) {
  size_t n = 0;
  switch (which) {
    case OWN_CACHES:   /* moves memory to free pages */
      heap_thread_flush(); heap_sweep_pool(true); heap_holes_request(); runcache_flush();
      break;
    case OWN_HUGE: n = huge_purge_all() + secure_purge_kept(); break;   /* cached mappings: huge and guarded */
    default: n = page_purge_all(); break;
  }
  mutex_lock(&reg_lock);
  own_calls[which]++;
  own_released[which] += n;
  mutex_unlock(&reg_lock);
  return n;
}

/* Call application cleaner i for up to `want` bytes, with no lock held. */
static size_t app_cleaner(int i, size_t want, int self) {
  mutex_lock(&reg_lock);
  cleaner_t c = cleaners[i];
  if (c.used) cleaners[i].running = self;
  mutex_unlock(&reg_lock);
  if (!c.used) return 0;
  size_t n = c.fn(c.arg, want);
  mutex_lock(&reg_lock);
  cleaners[i].running = 0;
  if (cleaners[i].used && cleaners[i].fn == c.fn) { cleaners[i].calls++; cleaners[i].released += n; }
  __atomic_fetch_add(&calls_done, 1, __ATOMIC_RELEASE);
  mutex_unlock(&reg_lock);
  os_futex_wake(&calls_done, INT32_MAX);
  return n;
}

size_t pressure_drain(size_t bytes, enum pressure_level level) {
  if (tls_draining) return 0;   /* a cleaner asked for a drain: it is one */
  tls_draining = true;
  size_t got = 0;
  int self = os_gettid();
  mutex_lock(&drain_lock);
  for (int k = 0; k < OWN_N && got < bytes; k++) got += own_cleaner(k);
  for (int i = 0; i < CLEANERS_MAX && got < bytes && level >= PRESSURE_CRITICAL; i++)
    got += app_cleaner(i, bytes - got, self);
  mutex_lock(&reg_lock);
  counts.drains++;
  counts.released += got;
  mutex_unlock(&reg_lock);
  mutex_unlock(&drain_lock);
  tls_draining = false;
  return got;
}

size_t pressure_purge_all(void) {
  size_t n = 0;
  for (int k = 0; k < OWN_N; k++) n += own_cleaner(k);
  return n;
}

size_t pressure_release(size_t bytes) {
  __atomic_fetch_add(&counts.events_explicit, 1, __ATOMIC_RELAXED);
  return pressure_drain(bytes ? bytes : 1, PRESSURE_CRITICAL);
}

/* ---- sources -------------------------------------------------------------------- */

/* Kinds from SRC_CG1_MEDIUM on are cgroup v1 eventfds (read to reset). The
 * usage thresholds fire on crossing either way; only upward crossings count. */
enum src_kind { SRC_PSI_SOME, SRC_PSI_FULL, SRC_CG1_MEDIUM, SRC_CG1_CRITICAL, SRC_CG1_USAGE_SOME, SRC_CG1_USAGE_CRITICAL };

/* Where the sources are (found once at init; no descriptor is kept here). */
static struct {
  char psi[2][200];                                  /* PSI files: cgroup v2, system */
  char cg1_dir[200];                                 /* cgroup v1 memory directory, "" if none */
  char cg_usage[256], cg_limit[256], cg_high[256];   /* files to read for the limit, "" if none */
  int kind[PRESSURE_MAX_FDS];                        /* of each descriptor pressure_open_events gave */
  uint64_t threshold[PRESSURE_MAX_FDS];              /* usage thresholds: their bytes */
  int nfds;
  bool usage_watched;                                /* usage thresholds registered (atomic) */
  uint64_t next_check;
} sources;

/* PSI trigger: a stall of 100 ms within 2 s (windows of 2 s suit unprivileged use). */
static int open_psi(const char *path, struct pollfd *fds, int at, int max) {
  static const char *const triggers[2] = { "some 100000 2000000", "full 100000 2000000" };
  for (int k = 0; k < 2 && at < max; k++) {
    int fd = os_open_rw(path);
    if (fd < 0) break;
    if (!os_write_str(fd, triggers[k])) { os_close(fd); break; }
    fds[at] = (struct pollfd){ .fd = fd, .events = POLLPRI };
    sources.kind[at++] = k == 0 ? SRC_PSI_SOME : SRC_PSI_FULL;
  }
  return at;
}

/* cgroup v1: memory.pressure_level notifications on eventfds. */
static int open_cg1(struct pollfd *fds, int at, int max) {
  static const char *const levels[2] = { "medium", "critical" };
  char file[256], cmd[64];
  for (int k = 0; k < 2 && at < max; k++) {
    snprintf(file, sizeof file, "%s/memory.pressure_level", sources.cg1_dir);
    int lfd = os_open_rw(file), efd = lfd >= 0 ? os_eventfd() : -1;
    snprintf(file, sizeof file, "%s/cgroup.event_control", sources.cg1_dir);
    int cfd = efd >= 0 ? os_open_rw(file) : -1;
    snprintf(cmd, sizeof cmd, "%d %d %s", efd, lfd, levels[k]);
    if (cfd >= 0 && os_write_str(cfd, cmd)) {
      fds[at] = (struct pollfd){ .fd = efd, .events = POLLIN };
      sources.kind[at++] = k == 0 ? SRC_CG1_MEDIUM : SRC_CG1_CRITICAL;
    } else if (efd >= 0) {
      os_close(efd);
    }
    if (cfd >= 0) os_close(cfd);
    if (lfd >= 0) os_close(lfd);   /* the registration holds its own reference */
  }
  return at;
}

static uint64_t read_u64_file(const char *path, bool *ok);

/* cgroup v1: eventfds on memory.usage_in_bytes crossing 90 % and 97 % of the
 * limit. Unlike the pressure levels (vmpressure, which counts page scans and
 * may stay silent while anonymous memory without swap fills the group), they
 * fire as the charge crosses, whatever the memory is. */
static int open_cg1_usage(struct pollfd *fds, int at, int max) {
  static const unsigned permille[2] = { NEAR_SOME_PERMILLE, NEAR_CRITICAL_PERMILLE };
  bool ok;
  uint64_t limit = read_u64_file(sources.cg_limit, &ok);
  if (!ok || !sources.cg_usage[0]) return at;
  int added = 0;
  char file[256], cmd[96];
  for (int k = 0; k < 2 && at < max; k++) {
    uint64_t bytes = limit / 1000 * permille[k];
    int ufd = os_open_rw(sources.cg_usage), efd = ufd >= 0 ? os_eventfd() : -1;
    snprintf(file, sizeof file, "%s/cgroup.event_control", sources.cg1_dir);
    int cfd = efd >= 0 ? os_open_rw(file) : -1;
    snprintf(cmd, sizeof cmd, "%d %d %llu", efd, ufd, (unsigned long long)bytes);
    if (cfd >= 0 && os_write_str(cfd, cmd)) {
      fds[at] = (struct pollfd){ .fd = efd, .events = POLLIN };
      sources.threshold[at] = bytes;
      sources.kind[at++] = k == 0 ? SRC_CG1_USAGE_SOME : SRC_CG1_USAGE_CRITICAL;
      added++;
    } else if (efd >= 0) {
      os_close(efd);
    }
    if (cfd >= 0) os_close(cfd);
    if (ufd >= 0) os_close(ufd);
  }
  if (added) __atomic_store_n(&sources.usage_watched, true, __ATOMIC_RELEASE);
  return at;
}

int pressure_open_events(struct pollfd *fds, int max) {
  int n = 0;
  if (max > PRESSURE_MAX_FDS) max = PRESSURE_MAX_FDS;
  for (int i = 0; i < 2; i++)
    if (sources.psi[i][0]) n = open_psi(sources.psi[i], fds, n, max);
  if (sources.cg1_dir[0]) n = open_cg1(fds, n, max);
  if (sources.cg1_dir[0]) n = open_cg1_usage(fds, n, max);
  sources.nfds = n;
  return n;
}

bool pressure_has_events(void) { return opt.pressure && (sources.psi[0][0] || sources.psi[1][0] || sources.cg1_dir[0]); }

/* The process's cgroup path for the v1 memory controller ("memory") or v2 (""). */
static bool cgroup_path(const char *controller, char *out, size_t cap) {
  char buf[2048], *save = NULL;
  if (os_read_file("/proc/self/cgroup", buf, sizeof buf) <= 0) return false;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    size_t clen = (size_t)(c2 - c1 - 1);
    bool match = controller[0] ? (clen >= strlen(controller) && strstr(c1 + 1, controller) && strstr(c1 + 1, controller) < c2)
                               : clen == 0;
    if (match) { snprintf(out, cap, "%s", c2 + 1); return true; }
  }
  return false;
}

static uint64_t read_u64_file(const char *path, bool *ok) {
  char buf[64];
  *ok = path[0] && os_read_file(path, buf, sizeof buf) > 0 && buf[0] >= '0' && buf[0] <= '9';
  return *ok ? strtoull(buf, NULL, 10) : 0;
}

static bool file_exists(const char *path) {
  char buf[8];
  return os_read_file(path, buf, sizeof buf) >= 0;
}

void pressure_init(void) {
  if (!opt.pressure) return;
  char path[128], file[200];
  /* cgroup v2: memory.pressure and the limit files */
  if (cgroup_path("", path, sizeof path) && os_read_file("/sys/fs/cgroup/cgroup.controllers", file, sizeof file) > 0) {
    snprintf(sources.psi[0], sizeof sources.psi[0], "/sys/fs/cgroup%s/memory.pressure", path);
    snprintf(sources.cg_usage, sizeof sources.cg_usage, "/sys/fs/cgroup%s/memory.current", path);
    snprintf(sources.cg_limit, sizeof sources.cg_limit, "/sys/fs/cgroup%s/memory.max", path);
    snprintf(sources.cg_high, sizeof sources.cg_high, "/sys/fs/cgroup%s/memory.high", path);
  } else if (cgroup_path("memory", path, sizeof path)) {
    snprintf(sources.cg1_dir, sizeof sources.cg1_dir, "/sys/fs/cgroup/memory%s", path);
    snprintf(sources.cg_usage, sizeof sources.cg_usage, "%s/memory.usage_in_bytes", sources.cg1_dir);
    snprintf(sources.cg_limit, sizeof sources.cg_limit, "%s/memory.limit_in_bytes", sources.cg1_dir);
    sources.cg_high[0] = 0;
  }
  snprintf(sources.psi[1], sizeof sources.psi[1], "/proc/pressure/memory");
  for (int i = 0; i < 2; i++)
    if (sources.psi[i][0] && !file_exists(sources.psi[i])) sources.psi[i][0] = 0;
  /* Only a real limit is worth polling: below the machine's memory. */
  bool ok;
  uint64_t limit = read_u64_file(sources.cg_limit, &ok);
  char mi[256];
  uint64_t total = 0;
  if (os_read_file("/proc/meminfo", mi, sizeof mi) > 0) total = strtoull(mi + strcspn(mi, "0123456789"), NULL, 10) * 1024;
  if (!ok || !limit || (total && limit >= total)) {
    uint64_t high = read_u64_file(sources.cg_high, &ok);
    if (!ok || !high || (total && high >= total)) sources.cg_usage[0] = sources.cg_limit[0] = 0;
  }
  sources.cg_high[0] = sources.cg_high[0] && sources.cg_usage[0] ? sources.cg_high[0] : 0;
}

enum pressure_level pressure_read_events(struct pollfd *fds, int n) {
  enum pressure_level level = PRESSURE_NONE;
  for (int i = 0; i < n && i < sources.nfds; i++) {
    if (fds[i].revents & (POLLERR | POLLNVAL | POLLHUP)) {
      fds[i].fd = -1;   /* a broken source: poll ignores it from now on */
      continue;
    }
    if (!(fds[i].revents & (POLLPRI | POLLIN))) continue;
    int kind = sources.kind[i];
    if (kind >= SRC_CG1_MEDIUM) os_drain_fd(fds[i].fd);
    if (kind >= SRC_CG1_USAGE_SOME) {   /* a crossing: upward? */
      bool ok;
      uint64_t usage = read_u64_file(sources.cg_usage, &ok);
      if (ok && usage < sources.threshold[i]) continue;
    }
    __atomic_fetch_add(kind >= SRC_CG1_MEDIUM ? &counts.events_cgroup : &counts.events_psi, 1, __ATOMIC_RELAXED);
    enum pressure_level l = (kind == SRC_PSI_FULL || kind == SRC_CG1_CRITICAL || kind == SRC_CG1_USAGE_CRITICAL)
                                ? PRESSURE_CRITICAL : PRESSURE_SOME;
    if (l > level) level = l;
  }
  return level;
}

/* Resident memory tidalloc holds, as far as its own counters know. */
static uint64_t own_resident(void) {
  page_stats_t ps;
  huge_stats_t hs;
  page_stats_get(&ps);
  huge_stats_get(&hs);
  return ps.active + ps.dirty + ps.muzzy + hs.live_bytes + hs.cached_bytes;
}

/* Whether a drain could release something worth a periodic check: free
 * memory tidalloc holds, or the application's cleaners. */
static bool drain_worthwhile(void) {
  page_stats_t ps;
  huge_stats_t hs;
  page_stats_get(&ps);
  huge_stats_get(&hs);
  return ps.dirty + ps.muzzy + hs.cached_bytes >= RECLAIM_WORTH_BYTES ||
         __atomic_load_n(&app_cleaners, __ATOMIC_RELAXED) > 0;
}

uint64_t pressure_periodic(uint64_t now) {
  if (!opt.pressure || (!sources.cg_usage[0] && opt.memory_limit <= 0)) return TD_NEVER;
  /* Nothing to give back: no need to look (the page layer's work, or a new
   * cleaner, wakes the background thread when that changes). */
  if (!drain_worthwhile()) return TD_NEVER;
  if (now < sources.next_check) return sources.next_check;
  sources.next_check = now + LIMIT_CHECK_NS;
  enum pressure_level level = PRESSURE_NONE;
  if (sources.cg_usage[0]) {
    bool ok1, ok2, ok3;
    uint64_t usage = read_u64_file(sources.cg_usage, &ok1), limit = read_u64_file(sources.cg_limit, &ok2);
    uint64_t high = read_u64_file(sources.cg_high, &ok3);
    if (ok3 && high && (!ok2 || high < limit)) limit = high;
    if (ok1 && ok2 && limit) {
      if (usage >= limit / 1000 * NEAR_CRITICAL_PERMILLE) level = PRESSURE_CRITICAL;   /* no overflow */
      else if (usage >= limit / 1000 * NEAR_SOME_PERMILLE) level = PRESSURE_SOME;
      /* Near the limit with no event watching the usage (cgroup v2, whose
       * PSI needs a 100 ms stall first): a process filling the group can
       * reach the limit within a second, so look more often. */
      if (usage >= limit / 1000 * NEAR_WATCH_PERMILLE && !__atomic_load_n(&sources.usage_watched, __ATOMIC_ACQUIRE))
        sources.next_check = now + LIMIT_NEAR_CHECK_NS;
    }
  }
  if (opt.memory_limit > 0 && own_resident() > (uint64_t)opt.memory_limit) {
    if (level < PRESSURE_SOME) level = PRESSURE_SOME;
  }
  if (level) {
    __atomic_fetch_add(&counts.events_limit, 1, __ATOMIC_RELAXED);
    pressure_drain(SIZE_MAX, level);
    /* Still over the soft limit after our own caches: ask the application. */
    if (opt.memory_limit > 0 && level < PRESSURE_CRITICAL && own_resident() > (uint64_t)opt.memory_limit)
      pressure_drain(own_resident() - (uint64_t)opt.memory_limit, PRESSURE_CRITICAL);
  }
  return sources.next_check;
}

void pressure_stats_get(pressure_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->events_psi = __atomic_load_n(&counts.events_psi, __ATOMIC_RELAXED);
  out->events_cgroup = __atomic_load_n(&counts.events_cgroup, __ATOMIC_RELAXED);
  out->events_limit = __atomic_load_n(&counts.events_limit, __ATOMIC_RELAXED);
  out->events_explicit = __atomic_load_n(&counts.events_explicit, __ATOMIC_RELAXED);
  unsigned n = 0;
  mutex_lock(&reg_lock);
  out->drains = counts.drains;
  out->released = counts.released;
  for (int k = 0; k < OWN_N; k++) out->cleaners[n++] = (pressure_cleaner_stats_t){ own_names[k], own_calls[k], own_released[k] };
  for (int i = 0; i < CLEANERS_MAX && n < TD_ARRAY_LEN(out->cleaners); i++)
    if (cleaners[i].used) out->cleaners[n++] = (pressure_cleaner_stats_t){ cleaners[i].name, cleaners[i].calls, cleaners[i].released };
  mutex_unlock(&reg_lock);
  out->ncleaners = n;
}

void pressure_prefork(void) { mutex_lock(&reg_lock); }
void pressure_postfork_parent(void) { mutex_unlock(&reg_lock); }
void pressure_postfork_child(void) { mutex_postfork_child(&reg_lock); mutex_postfork_child(&drain_lock); }
