#include "ctl.h"
#include "background.h"
#include "conf.h"
#include "heap.h"
#include "lock.h"
#include "os.h"
#include "pressure.h"
#include "safety.h"
#include "prof.h"
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static td_mutex_t ctl_lock = TD_MUTEX_INIT("ctl", RANK_CTL);
static stats_t snap;            /* the snapshot of the current epoch */
static uint64_t epoch;

static void stats_signal_write(uint32_t value);

void ctl_init(void) {
  mutex_register(&ctl_lock);
  if (opt.stats_signal) background_set_stats_writer(stats_signal_write);
}

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

static int read_value(const stat_value_t *v, void *oldp, size_t *oldlenp) {
  switch (v->type) {
    case STAT_U64: return read_u64(oldp, oldlenp, v->u);
    case STAT_BOOL: return read_bool(oldp, oldlenp, v->u != 0);
    case STAT_STR: return read_str(oldp, oldlenp, v->s);
    case STAT_RATIO: return read_double(oldp, oldlenp, v->den ? (double)v->u / (double)v->den : 0.0);
  }
  return ENOENT;
}

/* ---- handlers: each gets the name after its entry in ctl_names ---------------- */

typedef int (*ctl_fn)(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen);

static void snapshot_if_none(void) {
  if (epoch == 0) {
    stats_collect(&snap);
    epoch = 1;
  }
}

/* "stats.*": every name and type comes from the statistics schema (stats.h). */
static int ctl_stats(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (newp) return EPERM;
  stat_value_t v;
  mutex_lock(&ctl_lock);
  snapshot_if_none();
  int rc = stats_find(&snap, rest, &v) ? read_value(&v, oldp, oldlenp) : ENOENT;
  mutex_unlock(&ctl_lock);
  return rc;
}

static int ctl_epoch(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (newp && newlen != sizeof(uint64_t)) return EINVAL;
  mutex_lock(&ctl_lock);
  if (newp) {
    stats_collect(&snap);
    epoch++;
  }
  int rc = read_u64(oldp, oldlenp, epoch);
  mutex_unlock(&ctl_lock);
  return rc;
}

static int ctl_opt(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  const opt_desc_t *d = conf_find(rest, strlen(rest));
  if (!d) return ENOENT;
  if (newp) return EPERM;
  int64_t v = conf_get(d);
  switch (d->type) {
    case OPT_BOOL: return read_bool(oldp, oldlenp, v != 0);
    case OPT_INT: return read_out(oldp, oldlenp, &v, sizeof v);
    case OPT_MILLI: return read_double(oldp, oldlenp, (double)v / 1000.0);
    case OPT_ENUM: return read_str(oldp, oldlenp, d->choices[v]);
    case OPT_STR: return read_str(oldp, oldlenp, conf_str(d));
  }
  return ENOENT;
}

static int ctl_version(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (newp) return EPERM;
  return read_str(oldp, oldlenp, TIDAL_VERSION_STRING);
}

static int thread_bytes(bool freed, void *oldp, size_t *oldlenp, const void *newp) {
  if (newp) return EPERM;
  uint64_t a, f;
  heap_thread_bytes(&a, &f);
  return read_u64(oldp, oldlenp, freed ? f : a);
}

static int ctl_thread_allocated(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  return thread_bytes(false, oldp, oldlenp, newp);
}

static int ctl_thread_freed(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  return thread_bytes(true, oldp, oldlenp, newp);
}

static int ctl_thread_flush(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (oldp || oldlenp) return EINVAL;
  heap_thread_flush();
  return 0;
}

static int ctl_purge(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (oldp && oldlenp && *oldlenp != sizeof(uint64_t)) return EINVAL;
  uint64_t released = pressure_purge_all();
  return oldp || oldlenp ? read_u64(oldp, oldlenp, released) : 0;
}

static int ctl_background_thread(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  bool cur = background_enabled();
  if (newp && newlen != sizeof(bool)) return EINVAL;
  int rc = read_bool(oldp, oldlenp, cur);
  if (rc == 0 && newp) background_enable(*(const bool *)newp);
  return rc;
}

/* "prof.*": the heap profiler's controls and hooks (prof.h). */
static int ctl_prof(const char *rest, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  return prof_ctl(rest, oldp, oldlenp, newp, newlen);
}

/* The namespace. A name ending in '.' is a prefix: its handler gets the rest. */
static const struct { const char *name; ctl_fn fn; } ctl_names[] = {
  { "version", ctl_version },
  { "epoch", ctl_epoch },
  { "opt.", ctl_opt },
  { "stats.", ctl_stats },
  { "thread.allocated", ctl_thread_allocated },
  { "thread.freed", ctl_thread_freed },
  { "thread.flush", ctl_thread_flush },
  { "purge", ctl_purge },
  { "background_thread", ctl_background_thread },
  { "prof.", ctl_prof },
};

int ctl_call(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (!name) return EINVAL;
  for (size_t i = 0; i < TD_ARRAY_LEN(ctl_names); i++) {
    const char *n = ctl_names[i].name;
    size_t len = strlen(n);
    if (n[len - 1] == '.' ? strncmp(name, n, len) == 0 : strcmp(name, n) == 0)
      return ctl_names[i].fn(name + len, oldp, oldlenp, newp, newlen);
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

/* ---- the statistics signal's file ------------------------------------------- */

/* Rendering into a buffer: a first pass only counts (buf NULL). */
typedef struct render_s {
  char *buf;
  size_t len, cap;
} render_t;

static void render_write(void *arg, const char *text) {
  render_t *r = arg;
  size_t n = strlen(text);
  if (r->buf && r->len + n <= r->cap) memcpy(r->buf + r->len, text, n);
  r->len += n;
}

/* Called by the background worker when the stats signal came with `value`
 * (bit 0: JSON; the whole value names the file, so a reader that chose it
 * finds only its own answer): one snapshot, rendered into a scratch mapping
 * and published as STATS_FILE_PREFIX<pid>.<value>, mode 0600. */
#define STATS_FILE_PREFIX "/tmp/tidalloc-stats."
static void stats_signal_write(uint32_t value) {
  char path[64], tmp[68];
  size_t n = sizeof STATS_FILE_PREFIX - 1;
  memcpy(path, STATS_FILE_PREFIX, n);
  n += fmt_u64(path + n, (uint64_t)os_getpid());
  path[n++] = '.';
  n += fmt_u64(path + n, value);
  path[n] = 0;
  memcpy(tmp, path, n);
  memcpy(tmp + n, ".tmp", 5);

  bool json = value & 1;
  stats_t st;
  stats_collect(&st);
  render_t r = { NULL, 0, 0 };
  stats_print(&st, render_write, &r, json);
  size_t cap = td_align_up(r.len + 1, TD_PAGE);
  r.buf = os_map_aligned(cap, TD_PAGE);
  if (!r.buf) return;
  r.cap = cap;
  r.len = 0;
  stats_print(&st, render_write, &r, json);
  os_publish_file(tmp, path, r.buf, TD_MIN(r.len, r.cap));
  os_unmap(r.buf, cap);
}

void ctl_prefork(void) { mutex_lock(&ctl_lock); }
void ctl_postfork_parent(void) { mutex_unlock(&ctl_lock); }
void ctl_postfork_child(void) { mutex_postfork_child(&ctl_lock); }
