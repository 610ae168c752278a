#include "ctl.h"
#include "background.h"
#include "conf.h"
#include "heap.h"
#include "lock.h"
#include "os.h"
#include "pressure.h"
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static td_mutex_t ctl_lock = TD_MUTEX_INIT("ctl", RANK_CTL);
static stats_t snap;            /* the snapshot of the current epoch */
static uint64_t epoch;

void ctl_init(void) { mutex_register(&ctl_lock); }

/* ---- typed copies ------------------------------------------------------------ */

static int read_out(void *oldp, size_t *oldlenp, const void *val, size_t len) {
  if (!oldp && !oldlenp) return 0;
  if (!oldp || !oldlenp || *oldlenp != len) return EINVAL;
  memcpy(oldp, val, len);
  return 0;
}

static int read_u64(void *oldp, size_t *oldlenp, uint64_t v) { return read_out(oldp, oldlenp, &v, sizeof v); }
static int read_bool(void *oldp, size_t *oldlenp, bool v) { return read_out(oldp, oldlenp, &v, sizeof v); }
static int read_str(void *oldp, size_t *oldlenp, const char *v) { return read_out(oldp, oldlenp, &v, sizeof v); }
static int read_double(void *oldp, size_t *oldlenp, double v) { return read_out(oldp, oldlenp, &v, sizeof v); }

static bool prefix(const char **name, const char *p) {
  size_t n = strlen(p);
  if (strncmp(*name, p, n) != 0) return false;
  *name += n;
  return true;
}

/* "12.rest" -> 12, *name = "rest"; false if no number and dot. */
static bool index_of(const char **name, uint64_t *out) {
  const char *s = *name;
  uint64_t v = 0;
  if (*s < '0' || *s > '9') return false;
  while (*s >= '0' && *s <= '9') {
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*s++ - '0'), &v)) return false;
  }
  if (*s != '.') return false;
  *out = v;
  *name = s + 1;
  return true;
}

/* ---- statistics fields ------------------------------------------------------- */

typedef struct field_s { const char *name; size_t offset; } field_t;
#define F(type, f) { #f, offsetof(type, f) }

static const field_t top_fields[] = {
  F(stats_t, allocated), F(stats_t, active), F(stats_t, resident), F(stats_t, mapped),
  F(stats_t, retained), F(stats_t, metadata), F(stats_t, metadata_mapped), F(stats_t, pagemap_mapped),
  F(stats_t, small_allocated), F(stats_t, large_allocated), F(stats_t, huge_allocated),
  F(stats_t, secure_allocated), F(stats_t, guarded_mapped),
  F(stats_t, large_requests), F(stats_t, large_frees), F(stats_t, heaps_active), F(stats_t, heaps_pooled),
  F(stats_t, background_wakeups),
};
static const field_t page_fields[] = {
  F(page_stats_t, mapped), F(page_stats_t, units), F(page_stats_t, active), F(page_stats_t, dirty),
  F(page_stats_t, muzzy), F(page_stats_t, hugified_units), F(page_stats_t, purged_lazy_bytes),
  F(page_stats_t, purged_now_bytes), F(page_stats_t, purge_passes), F(page_stats_t, hugifies),
  F(page_stats_t, dehugifies), F(page_stats_t, collapses), F(page_stats_t, collapse_failures),
  F(page_stats_t, decommits),
};
static const field_t huge_fields[] = {
  F(huge_stats_t, live_bytes), F(huge_stats_t, live_count), F(huge_stats_t, cached_bytes),
  F(huge_stats_t, cached_count), F(huge_stats_t, cache_hits), F(huge_stats_t, cache_misses), F(huge_stats_t, remaps),
};
static const field_t sys_fields[] = {
  F(os_counters_t, maps), F(os_counters_t, unmaps), F(os_counters_t, purges_lazy), F(os_counters_t, purges_now),
  F(os_counters_t, hugifies), F(os_counters_t, dehugifies), F(os_counters_t, collapses), F(os_counters_t, remaps),
  F(os_counters_t, commits),
};
static const field_t class_fields[] = {
  F(stats_class_t, size), F(stats_class_t, requests), F(stats_class_t, frees), F(stats_class_t, live),
  F(stats_class_t, slabs), F(stats_class_t, capacity),
};
static const field_t pressure_fields[] = {
  F(pressure_stats_t, events_psi), F(pressure_stats_t, events_cgroup), F(pressure_stats_t, events_limit),
  F(pressure_stats_t, events_explicit), F(pressure_stats_t, drains), F(pressure_stats_t, released),
};
static const field_t mutex_fields[] = {
  F(stats_mutex_t, acquisitions), F(stats_mutex_t, contended), F(stats_mutex_t, wait_ns),
};

/* Every statistic is 8 bytes: size_t and uint64_t alike on 64-bit Linux. */
_Static_assert(sizeof(size_t) == sizeof(uint64_t), "64-bit only");

static int read_field(const field_t *fields, size_t n, const void *base, const char *name, void *oldp, size_t *oldlenp) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(fields[i].name, name) == 0) {
      uint64_t v;
      memcpy(&v, (const char *)base + fields[i].offset, sizeof v);
      return read_u64(oldp, oldlenp, v);
    }
  return ENOENT;
}

static void snapshot_if_none(void) {
  if (epoch == 0) {
    stats_collect(&snap);
    epoch = 1;
  }
}

/* Read a "stats.*" name (rest is after "stats."). ctl_lock held. */
static int ctl_stats(const char *rest, void *oldp, size_t *oldlenp) {
  snapshot_if_none();
  uint64_t i;
  if (prefix(&rest, "pages.")) return read_field(page_fields, TD_ARRAY_LEN(page_fields), &snap.pages, rest, oldp, oldlenp);
  if (prefix(&rest, "huge.")) return read_field(huge_fields, TD_ARRAY_LEN(huge_fields), &snap.huge, rest, oldp, oldlenp);
  if (prefix(&rest, "syscalls.")) return read_field(sys_fields, TD_ARRAY_LEN(sys_fields), &snap.syscalls, rest, oldp, oldlenp);
  if (prefix(&rest, "classes.")) {
    if (strcmp(rest, "count") == 0) return read_u64(oldp, oldlenp, SC_NCLASSES - 1);
    if (!index_of(&rest, &i) || i < 1 || i >= SC_NCLASSES) return ENOENT;
    const stats_class_t *k = &snap.classes[i];
    if (strcmp(rest, "utilization") == 0) return read_double(oldp, oldlenp, k->capacity ? (double)k->live / (double)k->capacity : 0.0);
    return read_field(class_fields, TD_ARRAY_LEN(class_fields), k, rest, oldp, oldlenp);
  }
  if (prefix(&rest, "mutexes.")) {
    if (strcmp(rest, "count") == 0) return read_u64(oldp, oldlenp, snap.nmutexes);
    if (!index_of(&rest, &i) || i >= snap.nmutexes) return ENOENT;
    if (strcmp(rest, "name") == 0) return read_str(oldp, oldlenp, snap.mutexes[i].name);
    return read_field(mutex_fields, TD_ARRAY_LEN(mutex_fields), &snap.mutexes[i], rest, oldp, oldlenp);
  }
  if (strcmp(rest, "background_running") == 0) return read_bool(oldp, oldlenp, snap.background_running);
  if (prefix(&rest, "pressure.")) {
    if (prefix(&rest, "cleaners.")) {
      if (strcmp(rest, "count") == 0) return read_u64(oldp, oldlenp, snap.pressure.ncleaners);
      if (!index_of(&rest, &i) || i >= snap.pressure.ncleaners) return ENOENT;
      if (strcmp(rest, "name") == 0) return read_str(oldp, oldlenp, snap.pressure.cleaners[i].name);
      if (strcmp(rest, "calls") == 0) return read_u64(oldp, oldlenp, snap.pressure.cleaners[i].calls);
      if (strcmp(rest, "released") == 0) return read_u64(oldp, oldlenp, snap.pressure.cleaners[i].released);
      return ENOENT;
    }
    return read_field(pressure_fields, TD_ARRAY_LEN(pressure_fields), &snap.pressure, rest, oldp, oldlenp);
  }
  return read_field(top_fields, TD_ARRAY_LEN(top_fields), &snap, rest, oldp, oldlenp);
}

static int ctl_opt(const char *rest, void *oldp, size_t *oldlenp, const void *newp) {
  const opt_desc_t *d = conf_find(rest, strlen(rest));
  if (!d) return ENOENT;
  if (newp) return EPERM;
  int64_t v = conf_get(d);
  switch (d->type) {
    case OPT_BOOL: return read_bool(oldp, oldlenp, v != 0);
    case OPT_INT: return read_out(oldp, oldlenp, &v, sizeof v);
    case OPT_MILLI: return read_double(oldp, oldlenp, (double)v / 1000.0);
    case OPT_ENUM: return read_str(oldp, oldlenp, d->choices[v]);
  }
  return ENOENT;
}

int ctl_call(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (!name) return EINVAL;
  const char *rest = name;
  int rc;
  if (strcmp(name, "version") == 0) {
    if (newp) return EPERM;
    return read_str(oldp, oldlenp, TIDAL_VERSION_STRING);
  }
  if (prefix(&rest, "opt.")) return ctl_opt(rest, oldp, oldlenp, newp);
  if (strcmp(name, "epoch") == 0) {
    if (newp && newlen != sizeof(uint64_t)) return EINVAL;
    mutex_lock(&ctl_lock);
    if (newp) {
      stats_collect(&snap);
      epoch++;
    }
    rc = read_u64(oldp, oldlenp, epoch);
    mutex_unlock(&ctl_lock);
    return rc;
  }
  if (prefix(&rest, "stats.")) {
    if (newp) return EPERM;
    mutex_lock(&ctl_lock);
    rc = ctl_stats(rest, oldp, oldlenp);
    mutex_unlock(&ctl_lock);
    return rc;
  }
  if (prefix(&rest, "thread.")) {
    uint64_t a, f;
    if (strcmp(rest, "flush") == 0) {
      if (oldp || oldlenp) return EINVAL;
      heap_thread_flush();
      return 0;
    }
    if (newp) return strcmp(rest, "allocated") == 0 || strcmp(rest, "freed") == 0 ? EPERM : ENOENT;
    heap_thread_bytes(&a, &f);
    if (strcmp(rest, "allocated") == 0) return read_u64(oldp, oldlenp, a);
    if (strcmp(rest, "freed") == 0) return read_u64(oldp, oldlenp, f);
    return ENOENT;
  }
  if (strcmp(name, "purge") == 0) {
    if (oldp && oldlenp && *oldlenp != sizeof(uint64_t)) return EINVAL;
    uint64_t released = pressure_purge_all();
    return oldp || oldlenp ? read_u64(oldp, oldlenp, released) : 0;
  }
  if (strcmp(name, "background_thread") == 0) {
    bool cur = background_enabled();
    if (newp && newlen != sizeof(bool)) return EINVAL;
    rc = read_bool(oldp, oldlenp, cur);
    if (rc == 0 && newp) background_enable(*(const bool *)newp);
    return rc;
  }
  return ENOENT;
}

/* ---- printing ------------------------------------------------------------------ */

static void write_stderr(void *arg, const char *text) {
  (void)arg;
  os_write_stderr(text, strlen(text));
}

void ctl_stats_print(void (*write)(void *, const char *), void *arg, const char *opts) {
  bool json = opts && (strstr(opts, "json") || strchr(opts, 'J'));
  stats_t st;   /* a private copy: the callback runs with no lock held, so it may call tidal_ctl */
  stats_collect(&st);
  mutex_lock(&ctl_lock);
  snap = st;
  epoch++;
  mutex_unlock(&ctl_lock);
  stats_print(&st, write ? (stats_write_cb)write : write_stderr, arg, json);
}

static void print_at_exit(void) {
  ctl_stats_print(NULL, NULL, opt.stats_print == STATS_PRINT_JSON ? "json" : NULL);
}

void ctl_print_at_exit(void) {
  if (opt.stats_print != STATS_PRINT_OFF) atexit(print_at_exit);
}

void ctl_prefork(void) { mutex_lock(&ctl_lock); }
void ctl_postfork_parent(void) { mutex_unlock(&ctl_lock); }
void ctl_postfork_child(void) { mutex_postfork_child(&ctl_lock); }
