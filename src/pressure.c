#include "pressure.h"
#include "conf.h"
#include "heap.h"
#include "huge.h"
#include "lock.h"
#include "os.h"
#include "page.h"
#include "tidalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLEANERS_MAX      64
#define NAME_MAX_LEN      32
#define LIMIT_CHECK_NS    (1000ull * 1000000ull)   /* read the cgroup limit once a second */
#define NEAR_SOME_PERMILLE     900                 /* usage >= 90 % of the limit */
#define NEAR_CRITICAL_PERMILLE 970                 /* usage >= 97 % */

/* ---- the registry ---------------------------------------------------------- */

typedef struct cleaner_s {
  tidal_cleaner_fn fn;
  void *arg;
  char name[NAME_MAX_LEN];
  bool used;
  uint64_t calls, released;
} cleaner_t;

static td_mutex_t reg_lock = TD_MUTEX_INIT("pressure");
static td_mutex_t drain_lock = TD_MUTEX_INIT("pressure_drain");   /* one drain at a time */
static cleaner_t cleaners[CLEANERS_MAX];

/* Built-in cleaners, cheapest first: what they release costs the program
 * nothing it would notice soon. */
enum { OWN_CACHES, OWN_HUGE, OWN_PAGES, OWN_N };
static const char *const own_names[OWN_N] = { "tidalloc:thread_caches", "tidalloc:huge_cache", "tidalloc:free_pages" };
static uint64_t own_calls[OWN_N], own_released[OWN_N];

static struct {
  uint64_t events_psi, events_cgroup, events_limit, events_explicit, drains, released;
} S;

TD_EXPORT int tidal_cleaner_register(const char *name, tidal_cleaner_fn fn, void *arg) {
  if (!fn) return -1;
  mutex_lock(&reg_lock);
  for (int i = 0; i < CLEANERS_MAX; i++) {
    if (cleaners[i].used) continue;
    cleaners[i] = (cleaner_t){ .fn = fn, .arg = arg, .used = true };
    strncpy(cleaners[i].name, name ? name : "cleaner", NAME_MAX_LEN - 1);
    mutex_unlock(&reg_lock);
    return i;
  }
  mutex_unlock(&reg_lock);
  return -1;
}

TD_EXPORT int tidal_cleaner_unregister(int id) {
  if (id < 0 || id >= CLEANERS_MAX) return -1;
  mutex_lock(&drain_lock);          /* never while a drain may be calling it */
  mutex_lock(&reg_lock);
  int rc = cleaners[id].used ? 0 : -1;
  cleaners[id].used = false;
  mutex_unlock(&reg_lock);
  mutex_unlock(&drain_lock);
  return rc;
}

/* ---- drains ----------------------------------------------------------------- */

static size_t own_cleaner(int which) {
  size_t n = 0;
  switch (which) {
    case OWN_CACHES: heap_thread_flush(); heap_sweep_pool(); break;   /* moves memory to free pages */
    case OWN_HUGE: n = huge_purge_all(); break;
    default: n = page_purge_all(); break;
  }
  own_calls[which]++;
  own_released[which] += n;
  return n;
}

size_t pressure_drain(size_t bytes, enum pressure_level level) {
  size_t got = 0;
  mutex_lock(&drain_lock);
  S.drains++;
  for (int k = 0; k < OWN_N && got < bytes; k++) got += own_cleaner(k);
  if (level >= PRESSURE_CRITICAL) {
    for (int i = 0; i < CLEANERS_MAX && got < bytes; i++) {
      mutex_lock(&reg_lock);
      cleaner_t c = cleaners[i];
      mutex_unlock(&reg_lock);
      if (!c.used) continue;
      size_t n = c.fn(c.arg, bytes - got);   /* no allocator lock held */
      mutex_lock(&reg_lock);
      if (cleaners[i].used && cleaners[i].fn == c.fn) { cleaners[i].calls++; cleaners[i].released += n; }
      mutex_unlock(&reg_lock);
      got += n;
    }
  }
  S.released += got;
  mutex_unlock(&drain_lock);
  return got;
}

TD_EXPORT size_t tidal_release(size_t bytes) {
  __atomic_fetch_add(&S.events_explicit, 1, __ATOMIC_RELAXED);
  return pressure_drain(bytes ? bytes : 1, PRESSURE_CRITICAL);
}

/* ---- sources -------------------------------------------------------------------- */

enum src_kind { SRC_PSI_SOME, SRC_PSI_FULL, SRC_CG1_MEDIUM, SRC_CG1_CRITICAL };

static struct {
  int fd[PRESSURE_MAX_FDS];
  int kind[PRESSURE_MAX_FDS];
  int nfds;
  char cg_usage[256], cg_limit[256], cg_high[256];   /* files to read for the limit, "" if none */
  uint64_t next_check;
  bool inited;
} W;

static void add_fd(int fd, int kind) {
  if (fd >= 0 && W.nfds < PRESSURE_MAX_FDS) { W.fd[W.nfds] = fd; W.kind[W.nfds] = kind; W.nfds++; }
}

/* PSI trigger: a stall of 100 ms within 2 s (windows of 2 s suit unprivileged use). */
static void add_psi(const char *path) {
  static const char *const triggers[2] = { "some 100000 2000000", "full 100000 2000000" };
  for (int k = 0; k < 2; k++) {
    int fd = os_open_rw(path);
    if (fd < 0) return;
    if (!os_write_str(fd, triggers[k])) { os_close(fd); return; }
    add_fd(fd, k == 0 ? SRC_PSI_SOME : SRC_PSI_FULL);
  }
}

/* The process's cgroup path for the v1 memory controller ("memory") or v2 (""). */
static bool cgroup_path(const char *controller, char *out, size_t cap) {
  char buf[2048];
  if (os_read_file("/proc/self/cgroup", buf, sizeof buf) <= 0) return false;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
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

void pressure_init(void) {
  W.inited = true;
  if (!opt.pressure) return;
  char path[128], file[200];
  /* cgroup v2: memory.pressure and the limit files */
  if (cgroup_path("", path, sizeof path) && os_read_file("/sys/fs/cgroup/cgroup.controllers", file, sizeof file) > 0) {
    snprintf(file, sizeof file, "/sys/fs/cgroup%s/memory.pressure", path);
    add_psi(file);
    snprintf(W.cg_usage, sizeof W.cg_usage, "/sys/fs/cgroup%s/memory.current", path);
    snprintf(W.cg_limit, sizeof W.cg_limit, "/sys/fs/cgroup%s/memory.max", path);
    snprintf(W.cg_high, sizeof W.cg_high, "/sys/fs/cgroup%s/memory.high", path);
  } else if (cgroup_path("memory", path, sizeof path)) {
    /* cgroup v1: pressure_level events through cgroup.event_control */
    static const char *const levels[2] = { "medium", "critical" };
    for (int k = 0; k < 2; k++) {
      snprintf(file, sizeof file, "/sys/fs/cgroup/memory%s/memory.pressure_level", path);
      int lfd = os_open_rw(file), efd = lfd >= 0 ? os_eventfd() : -1;
      snprintf(file, sizeof file, "/sys/fs/cgroup/memory%s/cgroup.event_control", path);
      int cfd = efd >= 0 ? os_open_rw(file) : -1;
      char cmd[64];
      snprintf(cmd, sizeof cmd, "%d %d %s", efd, lfd, levels[k]);
      if (cfd >= 0 && os_write_str(cfd, cmd)) add_fd(efd, k == 0 ? SRC_CG1_MEDIUM : SRC_CG1_CRITICAL);
      else if (efd >= 0) os_close(efd);
      if (cfd >= 0) os_close(cfd);
      if (lfd >= 0) os_close(lfd);   /* the registration holds its own reference */
    }
    snprintf(W.cg_usage, sizeof W.cg_usage, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", path);
    snprintf(W.cg_limit, sizeof W.cg_limit, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", path);
    W.cg_high[0] = 0;
  }
  add_psi("/proc/pressure/memory");
  /* Only a real limit is worth polling: below the machine's memory. */
  bool ok;
  uint64_t limit = read_u64_file(W.cg_limit, &ok);
  char mi[256];
  uint64_t total = 0;
  if (os_read_file("/proc/meminfo", mi, sizeof mi) > 0) total = strtoull(mi + strcspn(mi, "0123456789"), NULL, 10) * 1024;
  if (!ok || !limit || (total && limit >= total)) {
    uint64_t high = read_u64_file(W.cg_high, &ok);
    if (!ok || !high || (total && high >= total)) W.cg_usage[0] = W.cg_limit[0] = 0;
  }
  W.cg_high[0] = W.cg_high[0] && W.cg_usage[0] ? W.cg_high[0] : 0;
}

bool pressure_watching(void) { return W.nfds > 0 || W.cg_usage[0] || opt.memory_limit > 0; }

int pressure_pollfds(struct pollfd *fds, int max) {
  int n = 0;
  for (int i = 0; i < W.nfds && n < max; i++, n++) {
    fds[n].fd = W.fd[i];
    fds[n].events = W.kind[i] <= SRC_PSI_FULL ? POLLPRI : POLLIN;
    fds[n].revents = 0;
  }
  return n;
}

void pressure_handle_events(struct pollfd *fds, int n) {
  enum pressure_level level = PRESSURE_NONE;
  for (int i = 0; i < n && i < W.nfds; i++) {
    if (fds[i].revents & (POLLERR | POLLNVAL | POLLHUP)) {
      fds[i].fd = -1;   /* a broken source: poll ignores it from now on */
      continue;
    }
    if (!(fds[i].revents & (POLLPRI | POLLIN))) continue;
    int kind = W.kind[i];
    if (kind >= SRC_CG1_MEDIUM) { os_eventfd_drain(fds[i].fd); __atomic_fetch_add(&S.events_cgroup, 1, __ATOMIC_RELAXED); }
    else __atomic_fetch_add(&S.events_psi, 1, __ATOMIC_RELAXED);
    enum pressure_level l = (kind == SRC_PSI_FULL || kind == SRC_CG1_CRITICAL) ? PRESSURE_CRITICAL : PRESSURE_SOME;
    if (l > level) level = l;
  }
  if (level) pressure_drain(SIZE_MAX, level);
}

/* Resident memory tidalloc holds, as far as its own counters know. */
static uint64_t own_resident(void) {
  page_stats_t ps;
  huge_stats_t hs;
  page_stats_get(&ps);
  huge_stats_get(&hs);
  return ps.active + ps.dirty + ps.muzzy + hs.live_bytes + hs.cached_bytes;
}

uint64_t pressure_periodic(uint64_t now) {
  if (!W.cg_usage[0] && opt.memory_limit <= 0) return UINT64_MAX;
  if (now < W.next_check) return W.next_check;
  W.next_check = now + LIMIT_CHECK_NS;
  enum pressure_level level = PRESSURE_NONE;
  if (W.cg_usage[0]) {
    bool ok1, ok2, ok3;
    uint64_t usage = read_u64_file(W.cg_usage, &ok1), limit = read_u64_file(W.cg_limit, &ok2);
    uint64_t high = read_u64_file(W.cg_high, &ok3);
    if (ok3 && high && (!ok2 || high < limit)) limit = high;
    if (ok1 && ok2 && limit) {
      if (usage >= limit / 1000 * NEAR_CRITICAL_PERMILLE) level = PRESSURE_CRITICAL;   /* no overflow */
      else if (usage >= limit / 1000 * NEAR_SOME_PERMILLE) level = PRESSURE_SOME;
    }
  }
  if (opt.memory_limit > 0 && own_resident() > (uint64_t)opt.memory_limit) {
    if (level < PRESSURE_SOME) level = PRESSURE_SOME;
  }
  if (level) {
    __atomic_fetch_add(&S.events_limit, 1, __ATOMIC_RELAXED);
    pressure_drain(SIZE_MAX, level);
    /* Still over the soft limit after our own caches: ask the application. */
    if (opt.memory_limit > 0 && level < PRESSURE_CRITICAL && own_resident() > (uint64_t)opt.memory_limit)
      pressure_drain(own_resident() - (uint64_t)opt.memory_limit, PRESSURE_CRITICAL);
  }
  return W.next_check;
}

void pressure_stats_get(pressure_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->events_psi = S.events_psi;
  out->events_cgroup = S.events_cgroup;
  out->events_limit = S.events_limit;
  out->events_explicit = S.events_explicit;
  out->drains = S.drains;
  out->released = S.released;
  unsigned n = 0;
  for (int k = 0; k < OWN_N; k++) out->cleaners[n++] = (pressure_cleaner_stats_t){ own_names[k], own_calls[k], own_released[k] };
  mutex_lock(&reg_lock);
  for (int i = 0; i < CLEANERS_MAX && n < TD_ARRAY_LEN(out->cleaners); i++)
    if (cleaners[i].used) out->cleaners[n++] = (pressure_cleaner_stats_t){ cleaners[i].name, cleaners[i].calls, cleaners[i].released };
  mutex_unlock(&reg_lock);
  out->ncleaners = n;
}

void pressure_prefork(void) { mutex_lock(&reg_lock); }
void pressure_postfork_parent(void) { mutex_unlock(&reg_lock); }
void pressure_postfork_child(void) { mutex_postfork_child(&reg_lock); mutex_postfork_child(&drain_lock); }
