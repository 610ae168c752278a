/* The page layer's policies driven through the OS hooks seam with a fake
 * clock: every purge, hugify and commit is recorded, and time only moves when
 * the test says so. Runs with TIDALLOC_CONF="background_thread:false,
 * dirty_decay_ms:1000,muzzy_decay_ms:1000,hugify_delay_ms:500,dirty_mult:100"
 * (set by CTest), so deferred work happens inline or when the test calls it.
 * The cases run in order and share the page layer's state: later ones use
 * spans and units the earlier ones left (a, b, u[], dense, sparse). */
#include "conf.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"
#include "unit.h"
#include "fakepage.h"
#include <string.h>

#define MS 1000000ull
#define MAXREC 4096

typedef struct { uintptr_t addr; size_t len; int kind; } rec_t;
static rec_t recs[MAXREC];
static int nrec;
static uint64_t fake_now;
enum { R_LAZY, R_NOW, R_HUGE_ON, R_HUGE_OFF, R_COLLAPSE, R_COMMIT, R_DECOMMIT };

static void record(void *a, size_t len, int kind) {
  if (nrec < MAXREC) recs[nrec++] = (rec_t){ (uintptr_t)a, len, kind };
}
static int count(int kind, uintptr_t unit) {
  int n = 0;
  for (int i = 0; i < nrec; i++)
    if (recs[i].kind == kind && (!unit || (recs[i].addr & ~(TD_UNIT - 1)) == unit)) n++;
  return n;
}
static size_t bytes(int kind) {
  size_t n = 0;
  for (int i = 0; i < nrec; i++) if (recs[i].kind == kind) n += recs[i].len;
  return n;
}
static bool refuse_purge;
static bool fake_purge(void *a, size_t len, os_purge_t how) {
  record(a, len, how == OS_PURGE_LAZY ? R_LAZY : R_NOW);
  if (refuse_purge) return false;          /* as the kernel may (fault injection) */
  return fakepage_base.purge(a, len, how);
}
static bool fake_hugify(void *a, size_t len, os_huge_t how) {
  record(a, len, how == OS_HUGE_ON ? R_HUGE_ON : how == OS_HUGE_OFF ? R_HUGE_OFF : R_COLLAPSE);
  return fakepage_ok("hugify", a, len, true);
}
static bool fake_commit(void *a, size_t len, bool commit) {
  record(a, len, commit ? R_COMMIT : R_DECOMMIT);
  if (!fakepage_ok("commit", a, len, true)) return false;
  return os_hooks_default.commit(a, len, commit);   /* guard_unused: pages must really open */
}
static uint64_t fake_clock(void) { return fake_now; }

/* With OS pages larger than TD_PAGE (qemu -p 16384/65536), free pages that
 * share an OS page with an active one stay dirty (pinned): at most this many
 * bytes around nspans live runs; 0 with 4 KiB pages. */
static size_t pinned_max(int nspans) { return (size_t)nspans * 2 * (os_page() - TD_PAGE); }

static size_t dirty_bytes(void) { page_stats_t st; page_stats_get(&st); return st.dirty; }
static size_t muzzy_bytes(void) { page_stats_t st; page_stats_get(&st); return st.muzzy; }

enum { N = 32 };
static span_t *a, *b, *u[N], *dense, *sparse;
static uintptr_t du, su;

/* --- bins: best fit first, then the oldest unit ------------------------ */
TEST(bins_best_fit_then_oldest) {
  a = page_alloc(512, 1), b = page_alloc(512, 1);
  CHECK(a && b && a->unit != b->unit);
  CHECK((a->zeroed && b->zeroed) || !os_system.purge_zeroes);
  page_shrink(a, 500);                   /* a: 12 free pages at the end */
  page_shrink(b, 504);                   /* b: 8 free pages: the tighter fit */
  span_t *c = page_alloc(8, 1);
  CHECK(c && c->unit == b->unit);        /* tightest fit wins over age */
  page_shrink(b, 500);                   /* b: 4 free pages before c */
  span_t *d4 = page_alloc(4, 1);
  CHECK(d4 && d4->unit == b->unit);      /* 4-page hole in b is the tightest */
  page_free(d4);
  page_shrink(a, 496);                   /* a now has a 16-page hole, b a 4-page one */
  span_t *e = page_alloc(4, 1);
  CHECK(e && e->unit == b->unit);
  page_free(e);
  page_grow(a, 500);                     /* a: 12 free, b: 4 free */
  page_free(c);                          /* b: 12 free too: same bin, a is older */
  span_t *f = page_alloc(12, 1);
  CHECK(f && f->unit == a->unit);        /* same longest free range: the older unit */
  page_free(f);
  VALIDATE(page_validate());
}

/* --- freed pages are dirty, not zeroed, and stay while young ----------- */
TEST(freed_pages_stay_dirty) {
  memset((void *)b->base, 1, 4096);
  uintptr_t where = b->base;
  page_free(b);
  span_t *again = page_alloc(500, 1);
  CHECK(again && again->base == where && !again->zeroed);
  page_free(again);
}

/* --- decay: a burst of freed memory goes lazily, then for good ---------- */
TEST(decay_lazy_then_now) {
  for (int i = 0; i < N; i++) { u[i] = page_alloc(512, 1); CHECK(u[i]); memset((void *)u[i]->base, 7, 4096); }
  nrec = 0;
  size_t before = dirty_bytes();
  for (int i = 0; i < N; i++) page_free(u[i]);
  CHECK_EQ(dirty_bytes() - before, (size_t)N * TD_UNIT);
  CHECK_EQ(count(R_LAZY, 0) + count(R_NOW, 0), 0);   /* nothing purged at once */
  size_t prev = dirty_bytes(), max_muzzy = 0, at_200ms = 0;
  for (uint64_t t = 50; t <= 1100; t += 50) {
    fake_now += 50 * MS;
    page_deferred_work(fake_now, false);
    size_t dnow = dirty_bytes();
    CHECK(dnow <= prev);                  /* monotonic */
    if (t == 200) at_200ms = dnow;
    if (muzzy_bytes() > max_muzzy) max_muzzy = muzzy_bytes();
    prev = dnow;
  }
  CHECK(at_200ms > before + (size_t)N * TD_UNIT / 2);   /* smoothstep: slow at first */
  CHECK(dirty_bytes() <= pinned_max(1));  /* all dirty pages decayed within ~1 s (but those pinned by a) */
  CHECK(count(R_LAZY, 0) > 0 && recs[0].kind == R_LAZY);  /* the first stage is MADV_FREE */
  CHECK(max_muzzy > 0);
  for (int k = 0; k < 30; k++) { fake_now += 50 * MS; page_deferred_work(fake_now, false); }
  CHECK_EQ(muzzy_bytes(), 0);             /* then MADV_DONTNEED within muzzy_decay_ms */
  CHECK(bytes(R_NOW) >= (size_t)N * TD_UNIT);
  CHECK(page_deferred_work(fake_now, false) == UINT64_MAX);   /* nothing left to do */
  VALIDATE(page_validate());
  span_t *z = page_alloc(512, 1);
  CHECK(z && (z->zeroed || !os_system.purge_zeroes));   /* purged pages are known zero */
  page_free(z);
}

/* --- the dirty ceiling purges at once, regardless of age ---------------- */
TEST(dirty_ceiling) {
  opt.dirty_mult_milli = 0;               /* ceiling = the 32 MiB floor */
  for (int i = 0; i < N; i++) { u[i] = page_alloc(512, 1); CHECK(u[i]); }
  nrec = 0;
  for (int i = 0; i < N; i++) page_free(u[i]);   /* 64 MiB freed */
  CHECK(dirty_bytes() <= ((size_t)32 << 20));
  CHECK(count(R_LAZY, 0) > 0);
  opt.dirty_mult_milli = 100000;
  page_purge_all();
}

/* --- hugify: only units that stay dense for the delay -------------------- */
TEST(hugify_dense_units) {
  nrec = 0;
  dense = page_alloc(500, 1);            /* 500/512 >= 95 % */
  sparse = page_alloc(100, 1);
  CHECK(dense && sparse && dense->unit != sparse->unit);
  du = dense->unit->base, su = sparse->unit->base;
  fake_now += 100 * MS;
  page_deferred_work(fake_now, true);
  CHECK_EQ(count(R_HUGE_ON, du), 0);      /* not dense for long enough yet */
  fake_now += 500 * MS;
  page_deferred_work(fake_now, true);
  CHECK_EQ(count(R_HUGE_ON, du), 1);
  CHECK_EQ(count(R_COLLAPSE, du), 1);     /* collapsed when the caller may */
  CHECK_EQ(count(R_HUGE_ON, su), 0);      /* a sparse unit is never hugified */
  page_stats_t st;
  page_stats_get(&st);
  CHECK(st.hugified_units >= 1);
  /* A dense unit that empties is not hugified: density must last. */
  span_t *blip = page_alloc(500, 1);
  uintptr_t bu = blip->unit->base;
  fake_now += 100 * MS;
  page_free(blip);
  fake_now += 1000 * MS;
  page_deferred_work(fake_now, true);
  CHECK_EQ(count(R_HUGE_ON, bu), 0);
}

/* --- purge order: non-hugified first; a hugified unit is dehugified
 *     before any of it is purged (on hugify_dense_units' dense and sparse) -- */
TEST(purge_order) {
  nrec = 0;
  page_shrink(dense, 400);                /* 112 dirty pages in the hugified unit */
  page_shrink(sparse, 50);                /* 50 dirty pages in the plain unit */
  page_purge_all();
  int first_dense = -1, first_sparse = -1, off_dense = -1;
  for (int i = 0; i < nrec; i++) {
    uintptr_t unit = recs[i].addr & ~(TD_UNIT - 1);
    if (recs[i].kind == R_NOW && unit == du && first_dense < 0) first_dense = i;
    if (recs[i].kind == R_NOW && unit == su && first_sparse < 0) first_sparse = i;
    if (recs[i].kind == R_HUGE_OFF && unit == du && off_dense < 0) off_dense = i;
  }
  CHECK(first_sparse >= 0 && first_dense >= 0 && first_sparse < first_dense);
  CHECK(off_dense >= 0 && off_dense < first_dense);
  page_free(dense);
  page_free(sparse);
}

/* --- strict overcommit: an empty unit that is purged gives its commit
 *     charge back, and is committed again when reused -------------------- */
TEST(strict_overcommit_decommit) {
  os_system.overcommit_strict = true;
  span_t *sc = page_alloc(512, 1);
  uintptr_t scu = sc->unit->base;
  nrec = 0;
  page_free(sc);
  page_purge_all();
  CHECK(count(R_DECOMMIT, scu) == 1);
  span_t *again2 = NULL;
  for (int i = 0; i < 64 && !again2; i++) {   /* find that unit again */
    span_t *t = page_alloc(512, 1);
    if (t->unit->base == scu) again2 = t; else u[i % N] = t;
  }
  CHECK(again2 && count(R_COMMIT, scu) == 1);
  os_system.overcommit_strict = false;
  VALIDATE(page_validate());
}

/* --- OS pages: whatever their size (TIDAL_TEST_OS_PAGE), random runs keep
 *     their data through purges, a run said to be zeroed reads as zero, and
 *     every purge is of whole OS pages -------------------------------------- */
static bool all_zero(uintptr_t p, size_t n) {
  for (size_t i = 0; i < n; i++) if (((const unsigned char *)p)[i]) return false;
  return true;
}
static bool all_tag(uintptr_t p, size_t n, unsigned char tag) {
  for (size_t i = 0; i < n; i += 512) if (((const unsigned char *)p)[i] != tag) return false;
  return ((const unsigned char *)p)[n - 1] == tag;
}
enum { RN = 48 };
TEST(os_pages_random_runs) {
  static span_t *runs[RN];
  static unsigned char tag[RN];
  uint64_t x = 0x9e3779b97f4a7c15ull;
  int zeroed = 0;
  for (int it = 0; it < 4000; it++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    unsigned i = (unsigned)(x >> 33) % RN, op = (unsigned)(x >> 40) % 10;
    span_t *s = runs[i];
    if (!s) {
      s = page_alloc(1 + (x >> 45) % 24, 1);
      CHECK(s != NULL);
      if (s->zeroed) { CHECK(all_zero(s->base, s->bytes)); zeroed++; }
      tag[i] = (unsigned char)(1 + (x >> 20) % 250);
      memset((void *)s->base, tag[i], s->bytes);
      runs[i] = s;
      continue;
    }
    CHECK(all_tag(s->base, s->bytes, tag[i]));   /* no purge took a live page */
    size_t np = s->bytes / TD_PAGE;
    if (op < 4) { page_free(s); runs[i] = NULL; }
    else if (op == 4 && np > 1) page_shrink(s, np / 2);
    else if (op == 5 && page_grow(s, np + 1 + (x >> 50) % 4)) memset((void *)s->base, tag[i], s->bytes);
    else if (op == 6) { fake_now += 300 * MS; page_deferred_work(fake_now, false); }
    else if (op == 7) page_purge_all();
  }
  for (unsigned i = 0; i < RN; i++)
    if (runs[i]) { CHECK(all_tag(runs[i]->base, runs[i]->bytes, tag[i])); page_free(runs[i]); runs[i] = NULL; }
  CHECK(zeroed > 0 || !os_system.purge_zeroes);
  CHECK_EQ(fakepage_violations, 0);
  for (int i = 0; i < nrec; i++)
    if (recs[i].kind == R_LAZY || recs[i].kind == R_NOW) CHECK(recs[i].addr % os_page() == 0 && recs[i].len % os_page() == 0);
  VALIDATE(page_validate());
}

/* --- a purge the kernel refuses leaves the pages dirty (not known zero),
 *     and the work is retried later, not in a loop --------------------------- */
TEST(refused_purge_keeps_pages) {
  page_purge_all();
  span_t *r = page_alloc(64, 1);
  CHECK(r != NULL);
  memset((void *)r->base, 0x77, r->bytes);
  uintptr_t where = r->base;
  size_t d0 = dirty_bytes();
  page_free(r);
  refuse_purge = true;
  page_purge_all();
  CHECK(dirty_bytes() >= d0 + 64 * TD_PAGE - pinned_max(2));   /* nothing counted as purged */
  fake_now += 5000 * MS;
  uint64_t next = page_deferred_work(fake_now, false);
  CHECK(next > fake_now && next != UINT64_MAX);   /* due again later, not at once */
  span_t *again = page_alloc(64, 1);
  CHECK(again != NULL);
  if (again->base == where) CHECK(!again->zeroed && all_tag(again->base, again->bytes, 0x77));
  if (again->zeroed) CHECK(all_zero(again->base, again->bytes));
  refuse_purge = false;
  page_free(again);
  page_purge_all();
  CHECK(dirty_bytes() <= pinned_max(2));
  VALIDATE(page_validate());
}

int main(int argc, char **argv) {
  free(malloc(1));                       /* initialise with the real hooks */
  CHECK(!opt.background_thread && opt.dirty_decay_ms == 1000 && opt.hugify_delay_ms == 500);
  static os_hooks_t h;
  fakepage_hooks(&h);
  h.purge = fake_purge;
  h.hugify = fake_hugify;
  h.commit = fake_commit;
  h.now_ns = fake_clock;
  fake_now = os_hooks_default.now_ns() + 1000 * MS;
  os_hooks_set(&h);
  page_validate();
  int rc = UNIT_RUN(argc, argv);
  os_hooks_set(NULL);
  return rc;
}
