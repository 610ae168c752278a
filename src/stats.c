#include "stats.h"
#include "background.h"
#include "conf.h"
#include "lock.h"
#include "meta.h"
#include "safety.h"
#include "secure.h"

#include <string.h>

struct merge_arg { stats_t *st; heap_counters_t sum; };

static void merge_heaps(void *p) {
  struct merge_arg *a = p;
  heap_counters_merge(&a->sum, &a->st->heaps_active, &a->st->heaps_pooled);
}

void stats_collect(stats_t *st) {
  memset(st, 0, sizeof *st);
  struct merge_arg a;
  memset(&a, 0, sizeof a);
  a.st = st;
  page_stats_locked(&st->pages, merge_heaps, &a);
  huge_stats_get(&st->huge);
  os_counters_get(&st->syscalls);
  meta_stats(&st->metadata_mapped, &st->metadata, &st->pagemap_mapped);

  for (unsigned c = 1; c < SC_NCLASSES; c++) {
    stats_class_t *k = &st->classes[c];
    k->size = sc_info[c].size;
    k->requests = a.sum.nmalloc[c];
    k->frees = a.sum.nfree[c];
    k->live = k->requests > k->frees ? k->requests - k->frees : 0;
    k->slabs = a.sum.nslabs[c];
    k->capacity = k->slabs * sc_info[c].capacity;
    st->small_allocated += k->live * k->size;
  }
  st->large_requests = a.sum.large_nmalloc;
  st->large_frees = a.sum.large_nfree;
  /* Large bytes come from counters merged under the page lock; huge bytes
   * from the huge cache's own snapshot, which also gives their share of active. */
  st->large_allocated = a.sum.large_bytes_alloc > a.sum.large_bytes_free ? a.sum.large_bytes_alloc - a.sum.large_bytes_free : 0;
  st->huge_allocated = st->huge.live_bytes;
  secure_stats(&st->secure_allocated, &st->guarded_mapped);
  st->allocated = st->small_allocated + st->large_allocated + st->huge_allocated + st->secure_allocated;
  st->active = st->pages.active + st->huge.live_bytes + st->guarded_mapped;
  st->resident = st->active + st->pages.dirty + st->pages.muzzy + st->huge.cached_bytes + st->metadata;
  st->mapped = st->pages.mapped + st->huge.live_bytes + st->huge.cached_bytes + st->metadata_mapped +
               st->pagemap_mapped + st->guarded_mapped;
  size_t used_region = st->pages.active + st->pages.dirty + st->pages.muzzy;
  st->retained = st->pages.mapped > used_region ? st->pages.mapped - used_region : 0;

  td_mutex_t *mutexes[STATS_MAX_MUTEXES];
  unsigned nmutexes = mutex_registered(mutexes, STATS_MAX_MUTEXES);
  for (unsigned i = 0; i < nmutexes; i++) {
    td_mutex_t *m = mutexes[i];
    st->mutexes[i] = (stats_mutex_t){ m->name, __atomic_load_n(&m->n_lock, __ATOMIC_RELAXED),
                                      __atomic_load_n(&m->n_contended, __ATOMIC_RELAXED),
                                      __atomic_load_n(&m->wait_ns, __ATOMIC_RELAXED) };
  }
  st->nmutexes = nmutexes;
  pressure_stats_get(&st->pressure);
  st->background_running = background_running();
  st->background_wakeups = background_wakeups();
}

/* ---- printing ------------------------------------------------------------- */

typedef struct out_s {
  stats_write_cb write;
  void *arg;
  char buf[512];
  size_t n;
} out_t;

static void out_flush(out_t *o) {
  if (!o->n) return;
  o->buf[o->n] = 0;
  o->write(o->arg, o->buf);
  o->n = 0;
}

static void out_str(out_t *o, const char *s) {
  size_t len = strlen(s);
  while (len) {
    if (o->n == sizeof o->buf - 1) out_flush(o);
    size_t k = TD_MIN(len, sizeof o->buf - 1 - o->n);
    memcpy(o->buf + o->n, s, k);
    o->n += k; s += k; len -= k;
  }
}

static void out_u64(out_t *o, uint64_t v) {
  char tmp[24];
  tmp[fmt_u64(tmp, v)] = 0;
  out_str(o, tmp);
}

/* Fixed-point with 3 decimals (ratios), without floating-point printing. */
static void out_ratio(out_t *o, uint64_t num, uint64_t den) {
  uint64_t milli = den ? num * 1000 / den : 0;
  out_u64(o, milli / 1000);
  char tmp[8] = { '.', (char)('0' + milli / 100 % 10), (char)('0' + milli / 10 % 10), (char)('0' + milli % 10), 0 };
  out_str(o, tmp);
}

/* JSON helpers: every member is written as "key": value, with commas managed. */
typedef struct json_s { out_t *o; bool first; } json_t;

static void j_key(json_t *j, const char *key) {
  out_str(j->o, j->first ? "\"" : ",\"");
  j->first = false;
  out_str(j->o, key);
  out_str(j->o, "\":");
}
static void j_u64(json_t *j, const char *key, uint64_t v) { j_key(j, key); out_u64(j->o, v); }
static void j_bool(json_t *j, const char *key, bool v) { j_key(j, key); out_str(j->o, v ? "true" : "false"); }
static void j_str(json_t *j, const char *key, const char *v) { j_key(j, key); out_str(j->o, "\""); out_str(j->o, v); out_str(j->o, "\""); }
static void j_open(json_t *j, const char *key) { j_key(j, key); out_str(j->o, "{"); j->first = true; }
static void j_close(json_t *j) { out_str(j->o, "}"); j->first = false; }

static void print_json(const stats_t *st, out_t *o) {
  json_t j = { o, true };
  out_str(o, "{");
  j_str(&j, "version", TIDAL_VERSION_STRING);
  j_u64(&j, "allocated", st->allocated);
  j_u64(&j, "active", st->active);
  j_u64(&j, "resident", st->resident);
  j_u64(&j, "mapped", st->mapped);
  j_u64(&j, "retained", st->retained);
  j_u64(&j, "metadata", st->metadata);
  j_u64(&j, "pagemap_mapped", st->pagemap_mapped);
  j_u64(&j, "secure_allocated", st->secure_allocated);
  j_u64(&j, "guarded_mapped", st->guarded_mapped);
  j_open(&j, "options");
  for (size_t i = 0; i < conf_table_len; i++) {
    const opt_desc_t *d = &conf_table[i];
    char v[40];
    conf_format(d, conf_get(d), v);
    if (d->type == OPT_ENUM) j_str(&j, d->name, v);
    else { j_key(&j, d->name); out_str(o, v); }
  }
  j_close(&j);
  j_open(&j, "small");
  j_u64(&j, "allocated", st->small_allocated);
  j_key(&j, "classes");
  out_str(o, "[");
  bool first_class = true;
  for (unsigned c = 1; c < SC_NCLASSES; c++) {
    const stats_class_t *k = &st->classes[c];
    if (!k->requests && !k->slabs) continue;
    out_str(o, first_class ? "{" : ",{");
    first_class = false;
    j.first = true;
    j_u64(&j, "class", c);
    j_u64(&j, "size", k->size);
    j_u64(&j, "requests", k->requests);
    j_u64(&j, "frees", k->frees);
    j_u64(&j, "live", k->live);
    j_u64(&j, "slabs", k->slabs);
    j_key(&j, "utilization");
    out_ratio(o, k->live, k->capacity);
    j_close(&j);
  }
  out_str(o, "]");
  j_close(&j);
  j_open(&j, "large");
  j_u64(&j, "allocated", st->large_allocated + st->huge_allocated);
  j_u64(&j, "requests", st->large_requests);
  j_u64(&j, "frees", st->large_frees);
  j_close(&j);
  j_open(&j, "huge");
  j_u64(&j, "live_bytes", st->huge.live_bytes);
  j_u64(&j, "live_count", st->huge.live_count);
  j_u64(&j, "cached_bytes", st->huge.cached_bytes);
  j_u64(&j, "cached_count", st->huge.cached_count);
  j_u64(&j, "cache_hits", st->huge.cache_hits);
  j_u64(&j, "cache_misses", st->huge.cache_misses);
  j_u64(&j, "remaps", st->huge.remaps);
  j_close(&j);
  j_open(&j, "pages");
  j_u64(&j, "mapped", st->pages.mapped);
  j_u64(&j, "units", st->pages.units);
  j_u64(&j, "hugified_units", st->pages.hugified_units);
  j_u64(&j, "active", st->pages.active);
  j_u64(&j, "dirty", st->pages.dirty);
  j_u64(&j, "muzzy", st->pages.muzzy);
  j_u64(&j, "purged_lazy_bytes", st->pages.purged_lazy_bytes);
  j_u64(&j, "purged_now_bytes", st->pages.purged_now_bytes);
  j_u64(&j, "purge_passes", st->pages.purge_passes);
  j_u64(&j, "hugifies", st->pages.hugifies);
  j_u64(&j, "dehugifies", st->pages.dehugifies);
  j_u64(&j, "collapses", st->pages.collapses);
  j_u64(&j, "collapse_failures", st->pages.collapse_failures);
  j_u64(&j, "decommits", st->pages.decommits);
  j_close(&j);
  j_open(&j, "syscalls");
  j_u64(&j, "mmap", st->syscalls.maps);
  j_u64(&j, "munmap", st->syscalls.unmaps);
  j_u64(&j, "madvise_free", st->syscalls.purges_lazy);
  j_u64(&j, "madvise_dontneed", st->syscalls.purges_now);
  j_u64(&j, "madvise_hugepage", st->syscalls.hugifies);
  j_u64(&j, "madvise_nohugepage", st->syscalls.dehugifies);
  j_u64(&j, "madvise_collapse", st->syscalls.collapses);
  j_u64(&j, "mremap", st->syscalls.remaps);
  j_u64(&j, "commit", st->syscalls.commits);
  j_close(&j);
  j_key(&j, "mutexes");
  out_str(o, "[");
  for (unsigned i = 0; i < st->nmutexes; i++) {
    out_str(o, i ? ",{" : "{");
    j.first = true;
    j_str(&j, "name", st->mutexes[i].name);
    j_u64(&j, "acquisitions", st->mutexes[i].acquisitions);
    j_u64(&j, "contended", st->mutexes[i].contended);
    j_u64(&j, "wait_ns", st->mutexes[i].wait_ns);
    j_close(&j);
  }
  out_str(o, "]");
  j_open(&j, "pressure");
  j_u64(&j, "events_psi", st->pressure.events_psi);
  j_u64(&j, "events_cgroup", st->pressure.events_cgroup);
  j_u64(&j, "events_limit", st->pressure.events_limit);
  j_u64(&j, "events_explicit", st->pressure.events_explicit);
  j_u64(&j, "drains", st->pressure.drains);
  j_u64(&j, "released", st->pressure.released);
  j_key(&j, "cleaners");
  out_str(o, "[");
  for (unsigned i = 0; i < st->pressure.ncleaners; i++) {
    out_str(o, i ? ",{" : "{");
    j.first = true;
    j_str(&j, "name", st->pressure.cleaners[i].name);
    j_u64(&j, "calls", st->pressure.cleaners[i].calls);
    j_u64(&j, "released", st->pressure.cleaners[i].released);
    j_close(&j);
  }
  out_str(o, "]");
  j_close(&j);
  j_open(&j, "threads");
  j_u64(&j, "heaps_active", st->heaps_active);
  j_u64(&j, "heaps_pooled", st->heaps_pooled);
  j_bool(&j, "background_running", st->background_running);
  j_u64(&j, "background_wakeups", st->background_wakeups);
  j_close(&j);
  out_str(o, "}\n");
}

static void t_line(out_t *o, const char *label, uint64_t v) {
  out_str(o, label);
  out_u64(o, v);
  out_str(o, "\n");
}

static void print_text(const stats_t *st, out_t *o) {
  out_str(o, "___ tidalloc " TIDAL_VERSION_STRING " statistics ___\n");
  t_line(o, "allocated:          ", st->allocated);
  t_line(o, "active:             ", st->active);
  t_line(o, "resident (bound):   ", st->resident);
  t_line(o, "mapped:             ", st->mapped);
  t_line(o, "retained:           ", st->retained);
  t_line(o, "metadata:           ", st->metadata);
  out_str(o, "options:           ");
  for (size_t i = 0; i < conf_table_len; i++) {
    char v[40];
    conf_format(&conf_table[i], conf_get(&conf_table[i]), v);
    out_str(o, " ");
    out_str(o, conf_table[i].name);
    out_str(o, ":");
    out_str(o, v);
  }
  out_str(o, "\npages: units ");
  out_u64(o, st->pages.units);
  out_str(o, ", hugified ");
  out_u64(o, st->pages.hugified_units);
  out_str(o, ", dirty ");
  out_u64(o, st->pages.dirty);
  out_str(o, " B, muzzy ");
  out_u64(o, st->pages.muzzy);
  out_str(o, " B, purged lazily ");
  out_u64(o, st->pages.purged_lazy_bytes);
  out_str(o, " B / now ");
  out_u64(o, st->pages.purged_now_bytes);
  out_str(o, " B, hugifies ");
  out_u64(o, st->pages.hugifies);
  out_str(o, ", collapses ");
  out_u64(o, st->pages.collapses);
  out_str(o, "\nhuge: live ");
  out_u64(o, st->huge.live_bytes);
  out_str(o, " B in ");
  out_u64(o, st->huge.live_count);
  out_str(o, ", cached ");
  out_u64(o, st->huge.cached_bytes);
  out_str(o, " B, cache hits ");
  out_u64(o, st->huge.cache_hits);
  out_str(o, " / misses ");
  out_u64(o, st->huge.cache_misses);
  out_str(o, "\nsyscalls: mmap ");
  out_u64(o, st->syscalls.maps);
  out_str(o, ", munmap ");
  out_u64(o, st->syscalls.unmaps);
  out_str(o, ", MADV_FREE ");
  out_u64(o, st->syscalls.purges_lazy);
  out_str(o, ", MADV_DONTNEED ");
  out_u64(o, st->syscalls.purges_now);
  out_str(o, ", MADV_HUGEPAGE ");
  out_u64(o, st->syscalls.hugifies);
  out_str(o, ", mremap ");
  out_u64(o, st->syscalls.remaps);
  out_str(o, "\npressure: events psi ");
  out_u64(o, st->pressure.events_psi);
  out_str(o, ", cgroup ");
  out_u64(o, st->pressure.events_cgroup);
  out_str(o, ", limit ");
  out_u64(o, st->pressure.events_limit);
  out_str(o, ", explicit ");
  out_u64(o, st->pressure.events_explicit);
  out_str(o, "; drains ");
  out_u64(o, st->pressure.drains);
  out_str(o, ", released ");
  out_u64(o, st->pressure.released);
  out_str(o, " B");
  out_str(o, "\nthreads: heaps active ");
  out_u64(o, st->heaps_active);
  out_str(o, ", pooled ");
  out_u64(o, st->heaps_pooled);
  out_str(o, ", background thread ");
  out_str(o, st->background_running ? "running" : "not running");
  out_str(o, "\nclass       size    requests       frees        live   slabs  util\n");
  for (unsigned c = 1; c < SC_NCLASSES; c++) {
    const stats_class_t *k = &st->classes[c];
    if (!k->requests && !k->slabs) continue;
    char line[96];
    size_t n = 0;
    uint64_t cols[] = { c, k->size, k->requests, k->frees, k->live, k->slabs };
    static const unsigned width[] = { 5, 10, 12, 12, 12, 8 };
    for (unsigned i = 0; i < 6; i++) {
      char tmp[24];
      size_t l = fmt_u64(tmp, cols[i]);
      for (size_t pad = l; pad < width[i]; pad++) line[n++] = ' ';
      memcpy(line + n, tmp, l);
      n += l;
    }
    line[n++] = ' ';
    line[n++] = ' ';
    line[n] = 0;
    out_str(o, line);
    out_ratio(o, k->live, k->capacity);
    out_str(o, "\n");
  }
  out_str(o, "mutex                  acquisitions   contended     wait_ns\n");
  for (unsigned i = 0; i < st->nmutexes; i++) {
    char line[96];
    size_t n = strlen(st->mutexes[i].name);
    memcpy(line, st->mutexes[i].name, n);
    uint64_t cols[] = { st->mutexes[i].acquisitions, st->mutexes[i].contended, st->mutexes[i].wait_ns };
    static const unsigned width[] = { 35, 12, 12 };
    size_t target = 0;
    for (unsigned k = 0; k < 3; k++) {
      char tmp[24];
      size_t l = fmt_u64(tmp, cols[k]);
      target += width[k];
      while (n + l < target) line[n++] = ' ';
      memcpy(line + n, tmp, l);
      n += l;
    }
    line[n++] = '\n';
    line[n] = 0;
    out_str(o, line);
  }
}

void stats_print(const stats_t *st, stats_write_cb write, void *arg, bool json) {
  out_t o;
  o.write = write;
  o.arg = arg;
  o.n = 0;
  if (json) print_json(st, &o); else print_text(st, &o);
  out_flush(&o);
}
