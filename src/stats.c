#include "stats.h"
#include "background.h"
#include "conf.h"
#include "emitter.h"
#include "lock.h"
#include "meta.h"
#include "runcache.h"
#include "safety.h"
#include "secure.h"
#include "uheap.h"

#include <string.h>

struct merge_arg { stats_t *st; heap_counters_t sum; };

static void merge_heaps(void *p) {
  struct merge_arg *a = p;
  heap_counters_merge(&a->sum, &a->st->heaps_active, &a->st->heaps_pooled);
}

static void heap_row(const tidal_heap_stats_t *h, void *arg) {
  stats_t *st = arg;
  if (st->nheaps == STATS_MAX_HEAPS) return;
  unsigned i = st->nheaps++;
  memcpy(st->heap_names[i], h->name, sizeof st->heap_names[i]);
  st->heaps[i] = (stats_heap_t){ st->heap_names[i], h->allocated, h->active, h->mapped, h->dirty, h->muzzy, h->metadata,
                                 h->maps, h->map_failures, h->unmaps, h->purges };
}

/* One row per mutex name: the shards' locks (run cache, large quarantine)
 * add up. */
static void mutex_rows(stats_t *st) {
  td_mutex_t *mutexes[MUTEX_REGISTRY_MAX];
  unsigned nregistered = mutex_registered(mutexes, MUTEX_REGISTRY_MAX), nrows = 0;
  for (unsigned i = 0; i < nregistered; i++) {
    td_mutex_t *m = mutexes[i];
    unsigned r = 0;
    while (r < nrows && strcmp(st->mutexes[r].name, m->name) != 0) r++;
    if (r == nrows) {
      if (nrows == STATS_MAX_MUTEXES) continue;
      st->mutexes[nrows++] = (stats_mutex_t){ .name = m->name };
    }
    st->mutexes[r].acquisitions += __atomic_load_n(&m->n_lock, __ATOMIC_RELAXED);
    st->mutexes[r].contended += __atomic_load_n(&m->n_contended, __ATOMIC_RELAXED);
    st->mutexes[r].wait_ns += __atomic_load_n(&m->wait_ns, __ATOMIC_RELAXED);
    st->mutexes[r].hold_ns += os_ticks_ns(__atomic_load_n(&m->hold_ticks, __ATOMIC_RELAXED));
    uint64_t longest = os_ticks_ns(__atomic_load_n(&m->hold_max_ticks, __ATOMIC_RELAXED));
    if (longest > st->mutexes[r].hold_max_ns) st->mutexes[r].hold_max_ns = longest;
  }
  st->nmutexes = nrows;
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
  st->resident = st->active + st->pages.dirty + st->huge.cached_bytes + st->metadata;
  runcache_stats_t rc;
  runcache_stats_get(&rc);
  st->caches = (stats_caches_t){ a.sum.span_cache_bytes, a.sum.pooled_slab_bytes, a.sum.outbuf_bytes,
                                 a.sum.hole_passes, a.sum.hole_pages, rc.bytes, rc.hits, rc.misses };
  st->mapped = st->pages.mapped + st->huge.live_bytes + st->huge.cached_bytes + st->metadata_mapped +
               st->pagemap_mapped + st->guarded_mapped;
  size_t used_region = st->pages.active + st->pages.dirty + st->pages.muzzy;
  st->retained = st->pages.mapped > used_region ? st->pages.mapped - used_region : 0;
  /* The ordering every snapshot keeps (stats.h). */
  TD_DASSERT(st->allocated <= st->active && st->active <= st->resident && st->resident <= st->mapped);

  mutex_rows(st);
  uheap_each_stats(heap_row, st);
  pressure_stats_get(&st->pressure);
  st->background_running = background_running();
  st->background_wakeups = background_wakeups();
  prof_stats_get(&st->prof);
}

/* ---- the schema ----------------------------------------------------------------
 * Every statistic is described once, here: its JSON key (also its label in the
 * text), its control name under "stats." (the node's prefix, then the key or
 * `ctl` where the two differ), its type, where it is read (an offset in the
 * node's struct, checked at compile time against the type's size, or a
 * getter) and its unit. Nodes nest as the JSON document does; their order is
 * the document's order. Adding a counter: one line in its node (and one row
 * in docs/stats.md or docs/ctl.md). */

enum { IN_DOC = 1, IN_CTL = 2, IN_ALL = 3 };   /* IN_DOC: the JSON and the text */

typedef struct stat_field_s {
  const char *key;
  const char *ctl;      /* control name when it is not key */
  uint8_t type;         /* stat_type_t */
  uint8_t in;           /* IN_DOC, IN_CTL */
  const char *unit;     /* text: after the number */
  size_t offset;        /* in the node's struct (or the array's element) */
  void (*get)(const void *base, uint64_t index, stat_value_t *out);   /* computed instead */
} stat_field_t;

typedef enum { NODE_GROUP, NODE_ARRAY, NODE_OPTIONS } node_kind_t;

typedef struct stat_node_s stat_node_t;
struct stat_node_s {
  node_kind_t kind;
  const char *key;                  /* JSON key and text heading; NULL: the document */
  const char *ctl;                  /* control-name prefix; a child's extends its parent's */
  size_t offset;                    /* in stats_t: the group's struct or the array's element 0 */
  const stat_field_t *fields;
  size_t nfields;
  const stat_node_t *children;      /* groups: after the fields */
  size_t nchildren;
  size_t stride;                    /* arrays: element size, first index, end, shown in the document */
  uint64_t first;
  uint64_t (*end)(const stats_t *st);
  bool (*shown)(const void *elem);
};

/* Every number is read as 8 bytes: size_t and uint64_t alike on 64-bit Linux. */
_Static_assert(sizeof(size_t) == sizeof(uint64_t), "64-bit only");

#define OFF(T, m, size) (offsetof(T, m) + 0 * sizeof(char[sizeof(((T *)0)->m) == (size) ? 1 : -1]))
#define NUM_AS(key, ctl, in, T, m, unit) { key, ctl, STAT_U64, in, unit, OFF(T, m, 8), NULL }
#define NUM(T, m, unit) NUM_AS(#m, NULL, IN_ALL, T, m, unit)
#define BOOL(T, m) { #m, NULL, STAT_BOOL, IN_ALL, NULL, OFF(T, m, sizeof(bool)), NULL }
#define STR(T, m) { #m, NULL, STAT_STR, IN_ALL, NULL, OFF(T, m, sizeof(char *)), NULL }
#define GET(key, type, in, unit, fn) { key, NULL, type, in, unit, 0, fn }
#define BYTES "B"

static void get_version(const void *base, uint64_t i, stat_value_t *v) { v->s = TIDAL_VERSION_STRING; }
static void get_index(const void *base, uint64_t i, stat_value_t *v) { v->u = i; }
static void get_utilization(const void *base, uint64_t i, stat_value_t *v) {
  const stats_class_t *k = base;
  v->u = k->live;
  v->den = k->capacity;
}
/* The document's large.allocated counts huge blocks too; stats.large_allocated does not. */
static void get_large_total(const void *base, uint64_t i, stat_value_t *v) {
  const stats_t *st = base;
  v->u = st->large_allocated + st->huge_allocated;
}

static void get_site(const void *base, uint64_t i, stat_value_t *v) { v->s = ((const prof_site_stats_t *)base)->site; }

static uint64_t classes_end(const stats_t *st) { return SC_NCLASSES; }
static uint64_t prof_sites_end(const stats_t *st) { return st->prof.ntop; }
static uint64_t mutexes_end(const stats_t *st) { return st->nmutexes; }
static uint64_t heaps_end(const stats_t *st) { return st->nheaps; }
static uint64_t cleaners_end(const stats_t *st) { return st->pressure.ncleaners; }
static bool class_used(const void *elem) {
  const stats_class_t *k = elem;
  return k->requests || k->slabs;
}

static const stat_field_t top_fields[] = {
  GET("version", STAT_STR, IN_DOC, NULL, get_version),
  NUM(stats_t, allocated, BYTES), NUM(stats_t, active, BYTES), NUM(stats_t, resident, BYTES), NUM(stats_t, mapped, BYTES),
  NUM(stats_t, retained, BYTES), NUM(stats_t, metadata, BYTES),
  NUM_AS("metadata_mapped", NULL, IN_CTL, stats_t, metadata_mapped, BYTES),
  NUM(stats_t, pagemap_mapped, BYTES), NUM(stats_t, secure_allocated, BYTES), NUM(stats_t, guarded_mapped, BYTES),
};
static const stat_field_t small_fields[] = {
  NUM_AS("allocated", "small_allocated", IN_ALL, stats_t, small_allocated, BYTES),
};
static const stat_field_t class_fields[] = {
  GET("class", STAT_U64, IN_DOC, NULL, get_index),
  NUM(stats_class_t, size, BYTES), NUM(stats_class_t, requests, NULL), NUM(stats_class_t, frees, NULL),
  NUM(stats_class_t, live, NULL), NUM(stats_class_t, slabs, NULL),
  NUM_AS("capacity", NULL, IN_CTL, stats_class_t, capacity, NULL),
  GET("utilization", STAT_RATIO, IN_ALL, NULL, get_utilization),
};
static const stat_field_t large_fields[] = {
  GET("allocated", STAT_U64, IN_DOC, BYTES, get_large_total),
  NUM_AS("large_allocated", NULL, IN_CTL, stats_t, large_allocated, BYTES),
  NUM_AS("huge_allocated", NULL, IN_CTL, stats_t, huge_allocated, BYTES),
  NUM_AS("requests", "large_requests", IN_ALL, stats_t, large_requests, NULL),
  NUM_AS("frees", "large_frees", IN_ALL, stats_t, large_frees, NULL),
};
static const stat_field_t huge_fields[] = {
  NUM(huge_stats_t, live_bytes, BYTES), NUM(huge_stats_t, live_count, NULL), NUM(huge_stats_t, cached_bytes, BYTES),
  NUM(huge_stats_t, cached_count, NULL), NUM(huge_stats_t, cache_hits, NULL),
  NUM(huge_stats_t, cache_misses, NULL), NUM(huge_stats_t, remaps, NULL), NUM(huge_stats_t, donated_bytes, BYTES),
};
static const stat_field_t page_fields[] = {
  NUM(page_stats_t, mapped, BYTES), NUM(page_stats_t, arena_reserved, BYTES), NUM(page_stats_t, units, NULL), NUM(page_stats_t, hugified_units, NULL),
  NUM(page_stats_t, active, BYTES), NUM(page_stats_t, dirty, BYTES), NUM(page_stats_t, muzzy, BYTES),
  NUM(page_stats_t, purged_lazy_bytes, BYTES), NUM(page_stats_t, purged_now_bytes, BYTES),
  NUM(page_stats_t, purge_passes, NULL), NUM(page_stats_t, hugifies, NULL), NUM(page_stats_t, dehugifies, NULL),
  NUM(page_stats_t, collapses, NULL), NUM(page_stats_t, collapse_failures, NULL),
  NUM(page_stats_t, decommits, NULL), NUM(page_stats_t, holes, BYTES), NUM(page_stats_t, holes_resident, BYTES),
  NUM(page_stats_t, holes_given, NULL), NUM(page_stats_t, holes_taken, NULL),
};
static const stat_field_t cache_fields[] = {
  NUM(stats_caches_t, span_cache, BYTES), NUM(stats_caches_t, pooled_slabs, BYTES),
  NUM(stats_caches_t, remote_buffers, BYTES), NUM(stats_caches_t, hole_passes, NULL),
  NUM(stats_caches_t, hole_pages, NULL), NUM(stats_caches_t, run_cache, BYTES),
  NUM(stats_caches_t, run_cache_hits, NULL), NUM(stats_caches_t, run_cache_misses, NULL),
};
#define SYS(key, m) NUM_AS(key, #m, IN_ALL, os_counters_t, m, NULL)
static const stat_field_t syscall_fields[] = {
  SYS("mmap", maps), SYS("munmap", unmaps), SYS("madvise_free", purges_lazy),
  SYS("madvise_dontneed", purges_now), SYS("madvise_hugepage", hugifies),
  SYS("madvise_nohugepage", dehugifies), SYS("madvise_collapse", collapses), SYS("mremap", remaps),
  SYS("commit", commits),
};
static const stat_field_t mutex_fields[] = {
  STR(stats_mutex_t, name), NUM(stats_mutex_t, acquisitions, NULL), NUM(stats_mutex_t, contended, NULL),
  NUM(stats_mutex_t, wait_ns, "ns"), NUM(stats_mutex_t, hold_ns, "ns"), NUM(stats_mutex_t, hold_max_ns, "ns"),
};
/* Eight columns in the document (MAX_COLUMNS); dirty, muzzy and metadata by name only. */
static const stat_field_t heap_fields[] = {
  STR(stats_heap_t, name), NUM(stats_heap_t, allocated, BYTES), NUM(stats_heap_t, active, BYTES),
  NUM(stats_heap_t, mapped, BYTES), NUM_AS("dirty", NULL, IN_CTL, stats_heap_t, dirty, BYTES),
  NUM_AS("muzzy", NULL, IN_CTL, stats_heap_t, muzzy, BYTES), NUM_AS("metadata", NULL, IN_CTL, stats_heap_t, metadata, BYTES),
  NUM(stats_heap_t, maps, NULL), NUM(stats_heap_t, map_failures, NULL), NUM(stats_heap_t, unmaps, NULL),
  NUM(stats_heap_t, purges, NULL),
};
static const stat_field_t pressure_fields[] = {
  NUM(pressure_stats_t, events_psi, NULL), NUM(pressure_stats_t, events_cgroup, NULL),
  NUM(pressure_stats_t, events_limit, NULL), NUM(pressure_stats_t, events_explicit, NULL),
  NUM(pressure_stats_t, drains, NULL), NUM(pressure_stats_t, released, BYTES),
};
static const stat_field_t cleaner_fields[] = {
  STR(pressure_cleaner_stats_t, name), NUM(pressure_cleaner_stats_t, calls, NULL),
  NUM(pressure_cleaner_stats_t, released, BYTES),
};
static const stat_field_t thread_fields[] = {
  NUM(stats_t, heaps_active, NULL), NUM(stats_t, heaps_pooled, NULL), BOOL(stats_t, background_running),
  NUM(stats_t, background_wakeups, NULL),
};

static const stat_field_t prof_fields[] = {
  BOOL(prof_stats_t, enabled), NUM(prof_stats_t, live_bytes, BYTES), NUM(prof_stats_t, live_count, NULL),
  NUM(prof_stats_t, samples, NULL), NUM(prof_stats_t, stacks, NULL), NUM(prof_stats_t, metadata, BYTES),
  NUM(prof_stats_t, dumps, NULL),
};
static const stat_field_t prof_site_fields[] = {   /* the text column first: tables left-align it */
  GET("site", STAT_STR, IN_ALL, NULL, get_site),
  NUM(prof_site_stats_t, bytes, BYTES), NUM(prof_site_stats_t, count, NULL),
};

/* Node offsets are in stats_t; 0 is stats_t itself. */
#define GROUP(k, c, off, f) { .kind = NODE_GROUP, .key = k, .ctl = c, .offset = off, .fields = f, \
                              .nfields = TD_ARRAY_LEN(f) }
#define PARENT(k, c, off, f, ch) { .kind = NODE_GROUP, .key = k, .ctl = c, .offset = off, .fields = f, \
                                   .nfields = TD_ARRAY_LEN(f), .children = ch, .nchildren = TD_ARRAY_LEN(ch) }
#define ARRAY(k, c, member, f, first_, end_, shown_) \
  { .kind = NODE_ARRAY, .key = k, .ctl = c, .offset = offsetof(stats_t, member), .fields = f, \
    .nfields = TD_ARRAY_LEN(f), .stride = sizeof(((stats_t *)0)->member[0]), .first = first_, \
    .end = end_, .shown = shown_ }

static const stat_node_t small_children[] = {
  ARRAY("classes", "classes.", classes, class_fields, 1, classes_end, class_used),
};
static const stat_node_t pressure_children[] = {
  ARRAY("cleaners", "pressure.cleaners.", pressure.cleaners, cleaner_fields, 0, cleaners_end, NULL),
};
static const stat_node_t prof_children[] = {
  ARRAY("sites", "prof.sites.", prof.top, prof_site_fields, 0, prof_sites_end, NULL),
};
static const stat_node_t top_children[] = {
  { .kind = NODE_OPTIONS, .key = "options" },   /* every option (conf.h); opt.* names belong to ctl */
  PARENT("small", "", 0, small_fields, small_children),
  GROUP("large", "", 0, large_fields),
  GROUP("huge", "huge.", offsetof(stats_t, huge), huge_fields),
  GROUP("pages", "pages.", offsetof(stats_t, pages), page_fields),
  GROUP("caches", "caches.", offsetof(stats_t, caches), cache_fields),
  GROUP("syscalls", "syscalls.", offsetof(stats_t, syscalls), syscall_fields),
  ARRAY("mutexes", "mutexes.", mutexes, mutex_fields, 0, mutexes_end, NULL),
  ARRAY("heaps", "heaps.", heaps, heap_fields, 0, heaps_end, NULL),
  PARENT("pressure", "pressure.", offsetof(stats_t, pressure), pressure_fields, pressure_children),
  GROUP("threads", "", 0, thread_fields),
  PARENT("prof", "prof.", offsetof(stats_t, prof), prof_fields, prof_children),
};
static const stat_node_t schema = PARENT(NULL, "", 0, top_fields, top_children);

/* ---- reading a field ------------------------------------------------------------ */

static void field_value(const stat_field_t *f, const void *base, uint64_t index, stat_value_t *v) {
  memset(v, 0, sizeof *v);
  v->type = (stat_type_t)f->type;
  if (f->get) {
    f->get(base, index, v);
    return;
  }
  const char *p = (const char *)base + f->offset;
  if (f->type == STAT_U64) memcpy(&v->u, p, sizeof v->u);
  else if (f->type == STAT_BOOL) v->u = *(const bool *)p;
  else if (f->type == STAT_STR) memcpy(&v->s, p, sizeof v->s);
}

static const void *element(const stats_t *st, const stat_node_t *n, uint64_t i) {
  return (const char *)st + n->offset + i * n->stride;
}

/* ---- the document: JSON or text from one walk ----------------------------------- */

static void emit_field(emitter_t *em, const stat_field_t *f, const void *base, uint64_t index) {
  stat_value_t v;
  field_value(f, base, index, &v);
  switch (v.type) {
    case STAT_U64: em_kv_u64(em, f->key, v.u, f->unit); break;
    case STAT_BOOL: em_kv_bool(em, f->key, v.u != 0); break;
    case STAT_STR: em_kv_str(em, f->key, v.s); break;
    case STAT_RATIO: em_kv_ratio(em, f->key, v.u, v.den); break;
  }
}

static void emit_fields(emitter_t *em, const stat_node_t *n, const void *base, uint64_t index) {
  for (size_t i = 0; i < n->nfields; i++)
    if (n->fields[i].in & IN_DOC) emit_field(em, &n->fields[i], base, index);
}

static void emit_options(emitter_t *em, const char *key) {
  em_dict_begin(em, key);
  for (size_t i = 0; i < conf_table_len; i++) {
    const opt_desc_t *d = &conf_table[i];
    char v[40];
    conf_format(d, conf_get(d), v);
    if (d->type == OPT_STR) em_kv_str(em, d->name, conf_str(d));
    else if (d->type == OPT_ENUM) em_kv_str(em, d->name, v);
    else em_kv_raw(em, d->name, v);
  }
  em_dict_end(em);
}

#define MAX_COLUMNS 8

static void emit_array(emitter_t *em, const stats_t *st, const stat_node_t *n) {
  em_column_t cols[MAX_COLUMNS];
  unsigned ncols = 0;
  for (size_t i = 0; i < n->nfields; i++) {
    if (!(n->fields[i].in & IN_DOC)) continue;
    TD_DASSERT(ncols < MAX_COLUMNS);
    cols[ncols++] = (em_column_t){ n->fields[i].key, n->fields[i].type == STAT_STR };
  }
  em_table_begin(em, n->key, cols, ncols);
  for (uint64_t i = n->first, end = n->end(st); i < end; i++) {
    const void *elem = element(st, n, i);
    if (n->shown && !n->shown(elem)) continue;
    em_row_begin(em);
    emit_fields(em, n, elem, i);
    em_row_end(em);
  }
  em_table_end(em);
}

static void emit_node(emitter_t *em, const stats_t *st, const stat_node_t *n) {
  if (n->kind == NODE_OPTIONS) { emit_options(em, n->key); return; }
  if (n->kind == NODE_ARRAY) { emit_array(em, st, n); return; }
  if (n->key) em_dict_begin(em, n->key);
  emit_fields(em, n, (const char *)st + n->offset, 0);
  for (size_t i = 0; i < n->nchildren; i++) emit_node(em, st, &n->children[i]);
  if (n->key) em_dict_end(em);
}

void stats_print(const stats_t *st, stats_write_cb write, void *arg, bool json) {
  emitter_t em;
  em_init(&em, json, write, arg);
  em_begin(&em, "tidalloc statistics");
  emit_node(&em, st, &schema);
  em_end(&em);
}

/* ---- control names: "stats." then the node's prefix, then the field ------------- */

/* "12.rest" -> 12, *name = "rest"; false without digits and a dot, or on overflow. */
static bool parse_index(const char **name, uint64_t *out) {
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

static bool find_field(const stat_node_t *n, const void *base, uint64_t index, const char *rest, stat_value_t *out) {
  for (size_t i = 0; i < n->nfields; i++) {
    const stat_field_t *f = &n->fields[i];
    if ((f->in & IN_CTL) && strcmp(rest, f->ctl ? f->ctl : f->key) == 0) {
      field_value(f, base, index, out);
      return true;
    }
  }
  return false;
}

/* "count", or "<index>.<field>" with first <= index < end. */
static bool find_in_array(const stats_t *st, const stat_node_t *n, const char *rest, stat_value_t *out) {
  uint64_t end = n->end(st), i;
  if (strcmp(rest, "count") == 0) {
    *out = (stat_value_t){ .type = STAT_U64, .u = end - n->first };
    return true;
  }
  if (!parse_index(&rest, &i) || i < n->first || i >= end) return false;
  return find_field(n, element(st, n, i), i, rest, out);
}

static bool find_in(const stats_t *st, const stat_node_t *n, const char *name, stat_value_t *out) {
  if (n->kind == NODE_OPTIONS) return false;
  size_t plen = strlen(n->ctl);
  if (strncmp(name, n->ctl, plen) != 0) return false;
  if (n->kind == NODE_ARRAY) return find_in_array(st, n, name + plen, out);
  if (find_field(n, (const char *)st + n->offset, 0, name + plen, out)) return true;
  for (size_t i = 0; i < n->nchildren; i++)
    if (find_in(st, &n->children[i], name, out)) return true;
  return false;
}

bool stats_find(const stats_t *st, const char *name, stat_value_t *out) {
  return find_in(st, &schema, name, out);
}
