/* Huge allocations (huge.c) driven through the OS hooks seam with fake memory
 * and a fake clock. Runs with TIDALLOC_CONF="background_thread:false,
 * dirty_decay_ms:1000" (set by CTest): nothing but the test calls
 * huge_deferred_work, and cached mappings expire after one second of fake
 * time.
 *
 * The fake memory is an arena of address space reserved once (PROT_NONE)
 * with a page map of what is "mapped": map hands out its pages (first fit,
 * from 2 MiB-aligned starts, or at an address a case asks for), unmap gives
 * them back (inaccessible and zero again), remap resizes in place when the
 * following pages are free and moves onto the destination the caller
 * reserved. Every call is recorded, and unmapping pages that are not mapped,
 * or moving onto a destination that is not, fails the case. Each case works
 * in its own 128 MiB slice of the arena and ends with the cache purged and
 * the arena empty, so no mapping may leak. */
#include "conf.h"
#include "huge.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"
#include "unit.h"
#include "fakepage.h"
#include <string.h>
#include <sys/mman.h>

#define MS      1000000ull
#define MiB     ((size_t)1 << 20)
#define ARENA   ((size_t)4 << 30)
#define SLICE   ((size_t)128 << 20)
#define NPAGES  (ARENA / TD_PAGE)
#define MAXREC  256

enum { R_MAP, R_UNMAP, R_REMAP, R_PURGE };
typedef struct {
  int kind;
  uintptr_t addr;
  size_t len, new_len;
  uintptr_t dest;
  bool ok;
  span_t *entry;        /* R_REMAP: the pagemap entry of addr during the call */
  bool dest_leaf;       /* R_REMAP: dest's pagemap leaf existed during the call */
} rec_t;

static rec_t recs[MAXREC];
static int nrec;
static uint64_t fake_now;
static uintptr_t arena, hint;
static uint8_t vm[NPAGES];          /* 1: page mapped */
static bool armed, fail_map, fail_move, fail_inplace;
static uintptr_t place[32];          /* addresses for the next maps, in order */
static int nplace, iplace;
static size_t live0;                 /* huge bytes live outside the test */

static bool in_arena(uintptr_t a, size_t len) { return a >= arena && a + len <= arena + ARENA && a + len >= a; }
static size_t pg(uintptr_t a) { return (a - arena) / TD_PAGE; }

static rec_t *record(int kind, uintptr_t addr, size_t len) {
  if (nrec >= MAXREC) FAIL("too many OS calls recorded");
  recs[nrec] = (rec_t){ .kind = kind, .addr = addr, .len = len };
  return &recs[nrec++];
}

/* Whether every page of [a, a+len) is mapped (want 1) or free (want 0). */
static bool vm_is(uintptr_t a, size_t len, int want) {
  if (!in_arena(a, len)) return false;
  for (size_t i = pg(a), n = len / TD_PAGE; n--; i++)
    if (vm[i] != want) return false;
  return true;
}
static void vm_map(uintptr_t a, size_t len) {
  if (mprotect((void *)a, len, PROT_READ | PROT_WRITE)) FAIL("mprotect failed");
  memset(vm + pg(a), 1, len / TD_PAGE);
}
static void vm_unmap(uintptr_t a, size_t len) {
  if (madvise((void *)a, len, MADV_DONTNEED) || mprotect((void *)a, len, PROT_NONE)) FAIL("madvise/mprotect failed");
  memset(vm + pg(a), 0, len / TD_PAGE);
}
static size_t vm_mapped_bytes(void) {
  size_t n = 0;
  for (size_t i = 0; i < NPAGES; i++) n += vm[i];
  return n * TD_PAGE;
}

static void *fake_map(size_t size) {
  if (!armed) return fakepage_base.map(size);
  size = td_align_up(size, os_page());
  rec_t *r = record(R_MAP, 0, size);
  if (fail_map) return NULL;
  uintptr_t a = 0;
  if (iplace < nplace) {
    a = place[iplace++];
    if (!vm_is(a, size, 0)) FAIL("placed map at %#lx: pages in use", (unsigned long)a);
  } else {
    for (uintptr_t c = hint; c + size <= arena + ARENA; c += TD_UNIT)
      if (vm_is(c, size, 0)) { a = c; break; }
    if (!a) FAIL("fake arena full");
  }
  vm_map(a, size);
  r->addr = a;
  r->ok = true;
  return (void *)a;
}

static bool fake_unmap(void *p, size_t size) {
  uintptr_t a = (uintptr_t)p;
  if (!in_arena(a, size)) {
    if (armed) FAIL("unmap outside the arena: %#lx", (unsigned long)a);
    return fakepage_base.unmap(p, size);
  }
  rec_t *r = record(R_UNMAP, a, size);
  if (a % os_page() || size % os_page() || !vm_is(a, size, 1))
    FAIL("unmap of %#lx (+%zu) that is not wholly mapped", (unsigned long)a, size);
  vm_unmap(a, size);
  r->ok = true;
  return true;
}

static bool fake_remap(void *p, size_t old_size, size_t new_size, void *d) {
  uintptr_t a = (uintptr_t)p, dest = (uintptr_t)d;
  if (!in_arena(a, old_size)) FAIL("remap outside the arena: %#lx", (unsigned long)a);
  rec_t *r = record(R_REMAP, a, old_size);
  r->new_len = new_size;
  r->dest = dest;
  r->entry = pagemap_lookup(p);
  r->dest_leaf = dest && pagemap_root[(dest >> PAGEMAP_LEAF_SHIFT) & (PAGEMAP_ROOT_LEN - 1)] != NULL;
  if (!vm_is(a, old_size, 1)) FAIL("remap of %#lx (+%zu) that is not wholly mapped", (unsigned long)a, old_size);
  if (a % os_page() || dest % os_page() || old_size % os_page() || new_size % os_page())
    FAIL("remap addresses or sizes not whole OS pages");
  if (!dest) {
    if (fail_inplace) return false;
    if (new_size <= old_size) {
      if (new_size < old_size) vm_unmap(a + new_size, old_size - new_size);
    } else {
      if (!vm_is(a + old_size, new_size - old_size, 0)) return false;   /* something follows */
      vm_map(a + old_size, new_size - old_size);
    }
  } else {
    if (fail_move) return false;
    if (!vm_is(dest, new_size, 1)) FAIL("remap onto %#lx that the caller did not reserve", (unsigned long)dest);
    memcpy((void *)dest, p, TD_MIN(old_size, new_size));
    vm_unmap(a, old_size);
  }
  r->ok = true;
  return true;
}

/* A move of pages the caller can lose (os_move): recorded as a remap of
 * equal sizes; the destination must be mapped, the source is released. */
static bool fake_move(void *p, size_t size, void *d) {
  uintptr_t a = (uintptr_t)p, dest = (uintptr_t)d;
  if (!in_arena(a, size)) FAIL("move outside the arena: %#lx", (unsigned long)a);
  rec_t *r = record(R_REMAP, a, size);
  r->new_len = size;
  r->dest = dest;
  if (!vm_is(a, size, 1)) FAIL("move of %#lx (+%zu) that is not wholly mapped", (unsigned long)a, size);
  if (!vm_is(dest, size, 1)) FAIL("move onto %#lx that the caller does not hold", (unsigned long)dest);
  if (fail_move) return false;
  memcpy(d, p, size);
  vm_unmap(a, size);
  r->ok = true;
  return true;
}

/* Hugify requests, counted apart from recs (which list what the cache does). */
static int nhuge_on, nhuge_off;
static size_t huge_on_len;
static bool fake_hugify(void *p, size_t size, os_huge_t how) {
  (void)p;
  if (how == OS_HUGE_ON) { nhuge_on++; huge_on_len = size; }
  if (how == OS_HUGE_OFF) nhuge_off++;
  return true;
}

static bool fake_purge(void *p, size_t size, os_purge_t how) {
  if (armed && in_arena((uintptr_t)p, size)) record(R_PURGE, (uintptr_t)p, size);
  return fakepage_base.purge(p, size, how);
}

static uint64_t fake_clock(void) { return fake_now; }

static huge_stats_t hs(void) { huge_stats_t st; huge_stats_get(&st); return st; }

#define REC(i, k, a, l) do { CHECK(nrec > (i)); CHECK_EQ(recs[i].kind, k); \
  CHECK_EQX(recs[i].addr, a); CHECK_EQX(recs[i].len, l); } while (0)
#define REMAP_REC(i, a, ol, nl, d, good) do { REC(i, R_REMAP, a, ol); CHECK_EQX(recs[i].new_len, nl); \
  CHECK_EQX(recs[i].dest, d); CHECK_EQ(recs[i].ok, good); } while (0)

/* Mapped arena bytes are exactly the live and cached huge bytes. */
#define CHECK_ACCOUNTED() do { huge_stats_t _st = hs(); \
  CHECK_EQ(vm_mapped_bytes(), _st.live_bytes - live0 + _st.cached_bytes); } while (0)

/* Start a case in slice k: an empty cache, a forgotten peak, fresh records. */
static uintptr_t begin(int k) {
  fake_now += 5000 * MS;
  huge_deferred_work(fake_now);          /* expires what is cached; peak := live */
  huge_purge_all();
  fail_map = fail_move = fail_inplace = false;
  nplace = iplace = 0;
  hint = arena + (size_t)k * SLICE;
  nrec = 0;
  armed = true;
  CHECK_EQ(hs().cached_bytes, 0);
  CHECK_EQ(vm_mapped_bytes(), 0);
  return hint;
}

/* End a case: everything it allocated is freed; the arena must empty. */
static void end(void) {
  huge_purge_all();
  CHECK_EQ(hs().live_bytes, live0);
  CHECK_EQ(vm_mapped_bytes(), 0);
  armed = false;
}

static span_t *span_of(void *p) {
  span_t *s = pagemap_lookup(p);
  if (!s || s->kind != SPAN_HUGE || s->base != (uintptr_t)p) FAIL("%p is not a live huge block", p);
  return s;
}
static void hfree(void *p) { huge_free(span_of(p)); }

/* Raise the recent peak so that the cache budget is not what a case tests. */
static void raise_peak(size_t bytes) {
  void *big = huge_alloc(bytes, 0, false);
  CHECK(big);
  hfree(big);
  huge_purge_all();
  nrec = 0;
}

/* ------------------------------------------------------------------------ */

/* A fresh huge block: one map (over-sized by 2 MiB to align, the excess
 * unmapped), 2 MiB aligned, zeroed, its first page alone in the pagemap. */
TEST(alloc_registers_first_page) {
  uintptr_t S = begin(0);
  huge_stats_t st0 = hs();
  size_t size = 3 * MiB + 100, ms = td_align_up(size, os_page());
  char *p = huge_alloc(size, 0, false);
  CHECK_EQX(p, S);
  CHECK_EQ(nrec, 2);
  REC(0, R_MAP, S, ms + TD_UNIT);
  REC(1, R_UNMAP, S + ms, TD_UNIT);
  span_t *s = pagemap_lookup(p);
  CHECK(s != NULL);
  CHECK_EQ(s->kind, SPAN_HUGE);
  CHECK_EQX(s->base, S);
  CHECK_EQX(s->start, S);
  CHECK_EQ(s->bytes, ms);
  CHECK(s->zeroed && s->owner == NULL);
  CHECK(pagemap_lookup(p + TD_PAGE) == NULL);        /* interior pointers resolve to nothing */
  CHECK(pagemap_lookup(p + ms - 1) == NULL);
  CHECK(p[0] == 0 && p[size - 1] == 0);
  p[size - 1] = 1;
  huge_stats_t st = hs();
  CHECK_EQ(st.live_bytes, st0.live_bytes + ms);
  CHECK_EQ(st.live_count, st0.live_count + 1);
  CHECK_EQ(st.cache_misses, st0.cache_misses + 1);
  CHECK_EQ(st.cache_hits, st0.cache_hits);

  /* Below 2 MiB: page alignment is enough, so no over-mapping. */
  nrec = 0;
  char *q = huge_alloc(MiB + MiB / 2, 0, false);
  CHECK(q != NULL);
  CHECK_EQ(nrec, 1);
  REC(0, R_MAP, (uintptr_t)q, MiB + MiB / 2);
  CHECK_EQ(span_of(q)->bytes, MiB + MiB / 2);

  /* A larger alignment: over-mapped by it, both ends trimmed. */
  nrec = 0;
  char *r = huge_alloc(3 * MiB, 16 * MiB, false);
  CHECK(r != NULL && (uintptr_t)r % (16 * MiB) == 0);
  CHECK_EQ(recs[0].kind, R_MAP);
  CHECK_EQ(recs[0].len, 19 * MiB);
  size_t trimmed = 0;
  for (int i = 1; i < nrec; i++) { CHECK_EQ(recs[i].kind, R_UNMAP); trimmed += recs[i].len; }
  CHECK_EQ(trimmed, 16 * MiB);
  CHECK_EQ(span_of(r)->bytes, 3 * MiB);
  CHECK_ACCOUNTED();
  hfree(p); hfree(q); hfree(r);
  end();
}

/* When the OS refuses, huge_alloc fails without leaving anything behind. */
TEST(alloc_fails_cleanly) {
  begin(1);
  huge_stats_t st0 = hs();
  fail_map = true;
  CHECK(huge_alloc(4 * MiB, 0, false) == NULL);
  CHECK_EQ(nrec, 1);
  CHECK_EQ(recs[0].kind, R_MAP);
  CHECK_EQ(hs().live_bytes, st0.live_bytes);
  CHECK_EQ(hs().live_count, st0.live_count);
  CHECK_ACCOUNTED();
  end();
}

/* A freed mapping is cached, not unmapped: its entry becomes the released
 * sentinel, and the next request of its size gets it back without a system
 * call, zeroed only when asked. */
TEST(free_caches_mapping) {
  uintptr_t S = begin(2);
  char *p = huge_alloc(4 * MiB, 0, false);
  CHECK_EQX(p, S);
  memset(p, 0xab, TD_PAGE);
  p[4 * MiB - 1] = 0x5a;
  span_t *s = span_of(p);
  huge_stats_t st0 = hs();
  nrec = 0;
  huge_free(s);
  CHECK_EQ(nrec, 0);                                 /* no unmap, no purge */
  CHECK(pagemap_lookup(p) == &span_released);
  CHECK(vm_is(S, 4 * MiB, 1));
  huge_stats_t st = hs();
  CHECK_EQ(st.live_bytes, st0.live_bytes - 4 * MiB);
  CHECK_EQ(st.live_count, st0.live_count - 1);
  CHECK_EQ(st.cached_bytes, 4 * MiB);
  CHECK_EQ(st.cached_count, 1);
  CHECK_ACCOUNTED();

  char *q = huge_alloc(4 * MiB, 0, false);
  CHECK_EQX(q, p);
  CHECK_EQ(nrec, 0);
  s = span_of(q);
  CHECK(!s->zeroed);
  CHECK(q[0] == (char)0xab && q[4 * MiB - 1] == 0x5a);   /* the same resident memory */
  st = hs();
  CHECK_EQ(st.cache_hits, st0.cache_hits + 1);
  CHECK_EQ(st.cached_bytes, 0);
  CHECK_EQ(st.cached_count, 0);

  hfree(q);
  size_t size = 4 * MiB - 10000;
  char *z = huge_alloc(size, 0, true);
  CHECK_EQX(z, p);
  CHECK_EQ(nrec, 0);
  size_t nonzero = 0;
  for (size_t i = 0; i < size; i++) nonzero += z[i] != 0;
  CHECK_EQ(nonzero, 0);
  CHECK_ACCOUNTED();
  hfree(z);
  end();
}

/* Reuse by best fit: the smallest cached mapping that holds the request;
 * a mapping with 2 MiB or more to spare is split at the 2 MiB boundary
 * after the request, and the rest stays cached. */
TEST(best_fit_and_split) {
  uintptr_t S = begin(3);
  raise_peak(64 * MiB);
  /* A 4, B 6, C 10 MiB, kept apart by live 2 MiB separators. */
  char *A = huge_alloc(4 * MiB, 0, false), *x1 = huge_alloc(2 * MiB, 0, false);
  char *B = huge_alloc(6 * MiB, 0, false), *x2 = huge_alloc(2 * MiB, 0, false);
  char *C = huge_alloc(10 * MiB, 0, false), *x3 = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(A, S);
  CHECK_EQX(B, S + 6 * MiB);
  CHECK_EQX(C, S + 14 * MiB);
  huge_stats_t st0 = hs();
  nrec = 0;
  hfree(A); hfree(B); hfree(C);
  CHECK_EQ(nrec, 0);
  CHECK_EQ(hs().cached_count, 3);
  CHECK_EQ(hs().cached_bytes, 20 * MiB);

  char *r1 = huge_alloc(5 * MiB, 0, false);
  CHECK_EQX(r1, B);                                  /* 6 fits tighter than 10 */
  CHECK_EQ(span_of(r1)->bytes, 6 * MiB);
  char *r2 = huge_alloc(3 * MiB, 0, false);
  CHECK_EQX(r2, A);
  CHECK_EQ(span_of(r2)->bytes, 4 * MiB);             /* 1 MiB spare: not split */
  char *r3 = huge_alloc(5 * MiB, 0, false);
  CHECK_EQX(r3, C);
  CHECK_EQ(span_of(r3)->bytes, 6 * MiB);             /* split after 6 MiB */
  CHECK_EQ(hs().cached_count, 1);
  CHECK_EQ(hs().cached_bytes, 4 * MiB);
  char *r4 = huge_alloc(4 * MiB, 0, false);
  CHECK_EQX(r4, C + 6 * MiB);                        /* the rest, 2 MiB aligned */
  CHECK_EQ((uintptr_t)r4 % TD_UNIT, 0);
  CHECK_EQ(span_of(r4)->bytes, 4 * MiB);
  CHECK_EQ(nrec, 0);                                 /* all without a system call */
  CHECK_EQ(hs().cache_hits, st0.cache_hits + 4);
  CHECK_EQ(hs().cached_count, 0);

  /* The two halves merge again when freed; less than 2 MiB to spare is
   * not split off. */
  hfree(r3); hfree(r4);
  CHECK_EQ(hs().cached_count, 1);
  CHECK_EQ(hs().cached_bytes, 10 * MiB);
  char *r5 = huge_alloc(9 * MiB, 0, false);
  CHECK_EQX(r5, C);
  CHECK_EQ(span_of(r5)->bytes, 10 * MiB);
  CHECK_EQ(nrec, 0);
  CHECK_ACCOUNTED();
  hfree(r1); hfree(r2); hfree(r5); hfree(x1); hfree(x2); hfree(x3);
  end();
}

/* A cached mapping whose address does not have the requested alignment is
 * not handed out, nor grown: the request maps afresh. */
TEST(alignment_respected) {
  uintptr_t S = begin(4);
  place[nplace++] = S + 2 * MiB;                     /* 2 MiB aligned, not 4 */
  char *a = huge_alloc(8 * MiB, 0, false);
  CHECK_EQX(a, S + 2 * MiB);
  hfree(a);
  nrec = 0;
  char *b = huge_alloc(4 * MiB, 4 * MiB, false);
  CHECK(b != NULL && (uintptr_t)b % (4 * MiB) == 0);
  CHECK(b != a);
  CHECK(span_of(b)->zeroed);                         /* fresh */
  CHECK_EQ(recs[0].kind, R_MAP);
  CHECK_EQ(hs().cached_count, 1);                    /* a stays cached, whole */
  CHECK_EQ(hs().cached_bytes, 8 * MiB);
  CHECK_ACCOUNTED();
  hfree(b);
  end();
}

/* Freed neighbours merge, before and after, into one mapping. */
TEST(merge_neighbours) {
  uintptr_t S = begin(5);
  char *A = huge_alloc(2 * MiB, 0, false), *B = huge_alloc(2 * MiB, 0, false), *C = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(A, S);
  CHECK_EQX(B, S + 2 * MiB);
  CHECK_EQX(C, S + 4 * MiB);
  nrec = 0;
  hfree(A);
  hfree(C);
  CHECK_EQ(hs().cached_count, 2);                    /* not neighbours */
  hfree(B);                                          /* joins both */
  CHECK_EQ(hs().cached_count, 1);
  CHECK_EQ(hs().cached_bytes, 6 * MiB);
  char *m = huge_alloc(6 * MiB, 0, false);
  CHECK_EQX(m, A);
  CHECK_EQ(span_of(m)->bytes, 6 * MiB);
  CHECK_EQ(nrec, 0);
  CHECK_ACCOUNTED();
  hfree(m);
  end();
}

/* When no cached mapping is big enough, the largest grows by remap: in
 * place when the pages after it are free (only the difference is new), and
 * the other entries give it their resident pages, moved (not copied, not
 * faulted) into the new range. */
TEST(grow_largest_in_place) {
  uintptr_t S = begin(6);
  place[nplace++] = S;
  place[nplace++] = S + 32 * MiB;
  char *A = huge_alloc(4 * MiB, 0, false), *B = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(A, S);
  CHECK_EQX(B, S + 32 * MiB);
  A[0] = 0x11;
  B[0] = 0x44;
  hfree(A); hfree(B);
  huge_stats_t st0 = hs();
  nrec = 0;
  char *r = huge_alloc(8 * MiB, 0, false);
  CHECK_EQX(r, A);
  CHECK_EQ(nrec, 2);
  REMAP_REC(0, S, 4 * MiB, 8 * MiB, 0, true);
  REMAP_REC(1, S + 32 * MiB, 2 * MiB, 2 * MiB, S + 4 * MiB, true);   /* B's pages, after A's */
  span_t *s = span_of(r);
  CHECK_EQ(s->bytes, 8 * MiB);
  CHECK(!s->zeroed);
  CHECK(r[0] == 0x11);
  CHECK(r[4 * MiB] == 0x44);                         /* moved, not faulted anew */
  CHECK_EQ(hs().cache_hits, st0.cache_hits + 1);
  CHECK_EQ(hs().cached_count, 0);
  CHECK_EQ(hs().cached_bytes, 0);
  CHECK_EQ(hs().donated_bytes, st0.donated_bytes + 2 * MiB);
  CHECK_ACCOUNTED();
  hfree(r);
  end();
}

/* Donors are taken largest first, and only as many as the growth needs; a
 * donor bigger than what is left gives its front and keeps its rest cached. */
TEST(grow_largest_donors) {
  uintptr_t S = begin(20);
  place[nplace++] = S;
  place[nplace++] = S + 32 * MiB;
  place[nplace++] = S + 64 * MiB;
  place[nplace++] = S + 96 * MiB;
  char *A = huge_alloc(6 * MiB, 0, false), *B = huge_alloc(4 * MiB, 0, false);
  char *C = huge_alloc(5 * MiB, 0, false), *D = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(D, S + 96 * MiB);
  B[0] = 0x55;
  hfree(A); hfree(B); hfree(C); hfree(D);
  huge_stats_t st0 = hs();
  nrec = 0;
  char *r = huge_alloc(14 * MiB, 0, false);          /* A (6) grows by 8: C's 5, then 3 of B's 4 */
  CHECK_EQX(r, S);
  CHECK_EQ(nrec, 3);
  REMAP_REC(0, S, 6 * MiB, 14 * MiB, 0, true);
  REMAP_REC(1, S + 64 * MiB, 5 * MiB, 5 * MiB, S + 6 * MiB, true);
  REMAP_REC(2, S + 32 * MiB, 3 * MiB, 3 * MiB, S + 11 * MiB, true);
  CHECK(r[11 * MiB] == 0x55);
  CHECK_EQ(hs().donated_bytes, st0.donated_bytes + 8 * MiB);
  CHECK_EQ(hs().cached_count, 2);                    /* B's last MiB and D, untouched */
  CHECK_EQ(hs().cached_bytes, 3 * MiB);
  CHECK_ACCOUNTED();
  /* B's rest is an entry of its own: a 2 MiB request takes D, the best
   * fit, and leaves it. */
  char *d = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(d, D);
  CHECK_EQ(hs().cached_bytes, 1 * MiB);
  CHECK_ACCOUNTED();
  hfree(r); hfree(d);
  end();
}

/* A donor the kernel will not move stays cached whole; the growth is
 * faulted in as before. */
TEST(grow_largest_donor_refused) {
  uintptr_t S = begin(21);
  place[nplace++] = S;
  place[nplace++] = S + 32 * MiB;
  char *A = huge_alloc(4 * MiB, 0, false), *B = huge_alloc(2 * MiB, 0, false);
  (void)B;
  hfree(A); hfree(B);
  huge_stats_t st0 = hs();
  nrec = 0;
  fail_move = true;
  char *r = huge_alloc(8 * MiB, 0, false);
  fail_move = false;
  CHECK_EQX(r, S);
  CHECK_EQ(nrec, 2);
  REMAP_REC(0, S, 4 * MiB, 8 * MiB, 0, true);
  REMAP_REC(1, S + 32 * MiB, 2 * MiB, 2 * MiB, S + 4 * MiB, false);
  CHECK_EQ(hs().donated_bytes, st0.donated_bytes);
  CHECK_EQ(hs().cached_count, 1);
  CHECK_EQ(hs().cached_bytes, 2 * MiB);
  CHECK_ACCOUNTED();
  hfree(r);
  end();
}

/* ... and by moving it onto a fresh reservation when something follows it. */
TEST(grow_largest_by_move) {
  uintptr_t S = begin(7);
  char *A = huge_alloc(4 * MiB, 0, false), *o = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(o, S + 4 * MiB);                         /* right after A */
  A[0] = 0x22;
  A[4 * MiB - 1] = 0x33;
  hfree(A);
  nrec = 0;
  char *r = huge_alloc(8 * MiB, 0, false);
  CHECK_EQ(nrec, 4);
  REMAP_REC(0, S, 4 * MiB, 8 * MiB, 0, false);       /* in place: refused */
  REC(1, R_MAP, S + 6 * MiB, 10 * MiB);              /* the destination, aligned */
  REC(2, R_UNMAP, S + 14 * MiB, 2 * MiB);
  REMAP_REC(3, S, 4 * MiB, 8 * MiB, S + 6 * MiB, true);
  CHECK(recs[3].dest_leaf);
  CHECK_EQX(r, S + 6 * MiB);
  span_t *s = span_of(r);
  CHECK_EQ(s->bytes, 8 * MiB);
  CHECK(r[0] == 0x22 && r[4 * MiB - 1] == 0x33);
  CHECK(vm_is(S, 4 * MiB, 0));
  CHECK(pagemap_lookup(A) != s);
  CHECK_ACCOUNTED();
  hfree(r); hfree(o);
  end();
}

/* ... and when the OS refuses both (and the move of its pages that a cached
 * mapping may have, os_move), the cached mapping is unmapped and the
 * request maps afresh, leaking nothing. */
TEST(grow_largest_fails_maps_fresh) {
  uintptr_t S = begin(8);
  char *A = huge_alloc(4 * MiB, 0, false), *o = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(o, S + 4 * MiB);
  hfree(A);
  fail_move = true;
  nrec = 0;
  char *r = huge_alloc(8 * MiB, 0, false);
  CHECK(r != NULL);
  CHECK(span_of(r)->zeroed);
  int kinds[] = { R_REMAP, R_MAP, R_UNMAP, R_REMAP, R_REMAP, R_UNMAP, R_UNMAP, R_MAP, R_UNMAP };
  CHECK_EQ(nrec, 9);
  for (int i = 0; i < 9; i++) CHECK_EQ(recs[i].kind, kinds[i]);
  CHECK(!recs[0].ok && !recs[3].ok && !recs[4].ok);
  REMAP_REC(4, S, 4 * MiB, 4 * MiB, recs[1].addr, false);   /* os_move: the pages alone */
  CHECK_EQX(recs[5].addr, recs[1].addr);             /* the reservation goes */
  CHECK_EQ(recs[5].len, 8 * MiB);
  REC(6, R_UNMAP, S, 4 * MiB);                       /* then the cached mapping */
  CHECK(vm_is(S, 4 * MiB, 0));
  CHECK_EQ(hs().cached_count, 0);
  CHECK_ACCOUNTED();
  hfree(r); hfree(o);
  end();
}

/* The cache holds what it takes to get back to the recent peak of live huge
 * memory: more than the 8 MiB floor while the peak allows, and the oldest
 * entries go when live memory rises towards the peak again. */
TEST(budget_recent_peak) {
  uintptr_t S = begin(9);
  char *b[5];
  for (int i = 0; i < 5; i++) place[nplace++] = S + (size_t)i * 8 * MiB;
  for (int i = 0; i < 5; i++) { b[i] = huge_alloc(4 * MiB, 0, false); CHECK_EQX(b[i], S + (size_t)i * 8 * MiB); }
  fake_now += 100 * MS;
  nrec = 0;
  for (int i = 0; i < 4; i++) hfree(b[i]);          /* peak 20 MiB, live 4 */
  CHECK_EQ(nrec, 0);
  CHECK_EQ(hs().cached_bytes, 16 * MiB);
  CHECK(hs().cached_bytes > HUGE_CACHE_MIN_BYTES);
  char *f = huge_alloc(8 * MiB, 64 * MiB, false);    /* fresh (no cached fit): live 12 */
  CHECK(f != NULL && span_of(f)->zeroed);
  nrec = 0;
  uint64_t next = huge_deferred_work(fake_now);      /* budget: 20 - 12 = 8 MiB */
  CHECK_EQ(nrec, 2);
  CHECK(recs[0].kind == R_UNMAP && recs[1].kind == R_UNMAP);
  CHECK((recs[0].addr == (uintptr_t)b[0] && recs[1].addr == (uintptr_t)b[1]) ||
        (recs[0].addr == (uintptr_t)b[1] && recs[1].addr == (uintptr_t)b[0]));   /* the oldest two */
  CHECK(recs[0].len == 4 * MiB && recs[1].len == 4 * MiB);
  CHECK_EQ(hs().cached_bytes, 8 * MiB);
  CHECK(vm_is((uintptr_t)b[2], 4 * MiB, 1) && vm_is((uintptr_t)b[3], 4 * MiB, 1));
  CHECK_EQ(next, fake_now + 1000 * MS);
  CHECK_ACCOUNTED();
  hfree(f); hfree(b[4]);
  end();
}

/* Once the peak is forgotten (older than dirty_decay_ms) the cache still
 * keeps HUGE_CACHE_MIN_BYTES. */
TEST(budget_floor) {
  uintptr_t S = begin(10);
  char *b[4];
  for (int i = 0; i < 4; i++) place[nplace++] = S + (size_t)i * 8 * MiB;
  for (int i = 0; i < 4; i++) { b[i] = huge_alloc(4 * MiB, 0, false); CHECK(b[i]); }
  uint64_t t1 = fake_now;
  hfree(b[0]);                                       /* the peak (16 MiB) is noted now */
  fake_now = t1 + 300 * MS;
  for (int i = 1; i < 4; i++) hfree(b[i]);
  CHECK_EQ(hs().cached_bytes, 16 * MiB);
  nrec = 0;
  uint64_t next = huge_deferred_work(t1 + 1000 * MS + 1);
  /* b[0] expired; the peak is forgotten and live is 0, so the budget is the
   * floor: b[1], the oldest of the rest, goes too. */
  CHECK_EQ(nrec, 2);
  CHECK(recs[0].kind == R_UNMAP && recs[1].kind == R_UNMAP);
  CHECK((recs[0].addr == (uintptr_t)b[0] && recs[1].addr == (uintptr_t)b[1]) ||
        (recs[0].addr == (uintptr_t)b[1] && recs[1].addr == (uintptr_t)b[0]));
  CHECK_EQ(hs().cached_bytes, HUGE_CACHE_MIN_BYTES);
  CHECK_EQ(hs().cached_count, 2);
  CHECK_EQ(next, t1 + 1300 * MS);
  CHECK_ACCOUNTED();
  end();
}

/* At most HUGE_CACHE_ENTRIES mappings are cached: the oldest goes. */
TEST(budget_entries) {
  uintptr_t S = begin(11);
  raise_peak(64 * MiB);
  enum { K = HUGE_CACHE_ENTRIES + 1 };
  char *b[K];
  for (int i = 0; i < K; i++) place[nplace++] = S + (size_t)i * 4 * MiB;
  for (int i = 0; i < K; i++) { b[i] = huge_alloc(2 * MiB, 0, false); CHECK_EQX(b[i], S + (size_t)i * 4 * MiB); }
  nrec = 0;
  for (int i = 0; i < K - 1; i++) hfree(b[i]);
  CHECK_EQ(nrec, 0);
  CHECK_EQ(hs().cached_count, HUGE_CACHE_ENTRIES);
  hfree(b[K - 1]);
  CHECK_EQ(nrec, 1);
  REC(0, R_UNMAP, (uintptr_t)b[0], 2 * MiB);
  CHECK_EQ(hs().cached_count, HUGE_CACHE_ENTRIES);
  CHECK_EQ(hs().cached_bytes, (size_t)HUGE_CACHE_ENTRIES * 2 * MiB);
  CHECK_ACCOUNTED();
  end();
}

static uint64_t hook_due[8];
static int nhook;
static void work_hook(uint64_t due) { if (nhook < 8) hook_due[nhook++] = due; }

/* Cached mappings are unmapped once dirty_decay_ms old; the work hook is told
 * when, and huge_deferred_work returns the next expiry. */
TEST(expiry_after_decay) {
  uintptr_t S = begin(12);
  place[nplace++] = S;
  place[nplace++] = S + 16 * MiB;
  char *A = huge_alloc(4 * MiB, 0, false), *B = huge_alloc(4 * MiB, 0, false);
  CHECK(A && B);
  huge_set_work_hook(work_hook);
  nhook = 0;
  uint64_t t1 = fake_now;
  hfree(A);
  fake_now = t1 + 300 * MS;
  hfree(B);
  huge_set_work_hook(NULL);
  CHECK_EQ(nhook, 2);
  CHECK_EQ(hook_due[0], t1 + 1000 * MS);
  CHECK_EQ(hook_due[1], t1 + 1300 * MS);
  nrec = 0;
  CHECK_EQ(huge_deferred_work(t1 + 500 * MS), t1 + 1000 * MS);
  CHECK_EQ(huge_deferred_work(t1 + 1000 * MS - 1), t1 + 1000 * MS);
  CHECK_EQ(nrec, 0);
  CHECK_EQ(huge_deferred_work(t1 + 1000 * MS), t1 + 1300 * MS);
  CHECK_EQ(nrec, 1);
  REC(0, R_UNMAP, (uintptr_t)A, 4 * MiB);
  CHECK_EQ(hs().cached_bytes, 4 * MiB);
  CHECK_EQ(huge_deferred_work(t1 + 1300 * MS), UINT64_MAX);
  CHECK_EQ(nrec, 2);
  REC(1, R_UNMAP, (uintptr_t)B, 4 * MiB);
  CHECK_EQ(hs().cached_count, 0);
  CHECK_ACCOUNTED();
  end();
}

/* realloc in place: one remap without a destination; the entry stays. */
TEST(realloc_in_place) {
  uintptr_t S = begin(13);
  char *p = huge_alloc(4 * MiB, 0, false);
  CHECK_EQX(p, S);
  memset(p, 0x44, 4 * MiB);
  span_t *s = span_of(p);
  huge_stats_t st0 = hs();
  nrec = 0;
  CHECK(huge_realloc(s, 8 * MiB) == p);
  CHECK_EQ(nrec, 1);
  REMAP_REC(0, S, 4 * MiB, 8 * MiB, 0, true);
  CHECK(recs[0].entry == s);
  CHECK_EQ(s->bytes, 8 * MiB);
  CHECK(pagemap_lookup(p) == s);
  CHECK(p[4 * MiB - 1] == 0x44 && p[4 * MiB] == 0 && p[8 * MiB - 1] == 0);
  p[8 * MiB - 1] = 1;
  CHECK_EQ(hs().live_bytes, st0.live_bytes + 4 * MiB);
  CHECK_EQ(hs().remaps, st0.remaps + 1);
  CHECK_ACCOUNTED();

  nrec = 0;
  CHECK(huge_realloc(s, 3 * MiB - 1000) == p);      /* shrink: the cut-off pages stay resident, cached */
  CHECK_EQ(nrec, 0);
  CHECK_EQ(s->bytes, 3 * MiB);
  CHECK_EQ(hs().cached_bytes, st0.cached_bytes + 5 * MiB);
  CHECK_EQ(hs().live_bytes, st0.live_bytes - MiB);
  CHECK_EQ(hs().remaps, st0.remaps + 2);

  nrec = 0;
  CHECK(huge_realloc(s, 3 * MiB - 4000) == p);      /* same pages: nothing to do */
  CHECK_EQ(nrec, 0);
  CHECK_EQ(hs().remaps, st0.remaps + 2);
  CHECK_ACCOUNTED();
  hfree(p);
  end();
}

/* Growth when a cached mapping fits: the block is copied into it (resident:
 * nothing to fault in) and its old mapping is cached instead; no system call. */
TEST(realloc_grow_into_cache) {
  uintptr_t S = begin(17);
  char *p = huge_alloc(2 * MiB, 0, false), *q = huge_alloc(8 * MiB, 0, false);
  CHECK_EQX(p, S);
  memset(p, 0x77, 2 * MiB);
  hfree(q);                                          /* cached: 8 MiB */
  span_t *s = span_of(p);
  huge_stats_t st0 = hs();
  CHECK_EQ(st0.cached_bytes, 8 * MiB);
  nrec = 0;
  char *r = huge_realloc(s, 6 * MiB);
  CHECK_EQ(nrec, 0);
  CHECK(r == q);                                     /* the cached mapping, best fit */
  CHECK_EQX(s->base, q);
  CHECK_EQ(s->bytes, 6 * MiB);                       /* split at 2 MiB: the rest stays cached */
  CHECK(r[0] == 0x77 && r[2 * MiB - 1] == 0x77);
  CHECK(pagemap_lookup(r) == s);
  CHECK(pagemap_lookup(p) == &span_released);        /* a free of the old pointer is a double free */
  CHECK_EQ(hs().cached_bytes, 2 * MiB + 2 * MiB);    /* p's old mapping and q's tail */
  CHECK_EQ(hs().live_bytes, st0.live_bytes + 4 * MiB);
  CHECK_ACCOUNTED();
  hfree(r);
  end();
}

/* Fresh mappings of 2 MiB or more ask for huge pages over their whole 2 MiB
 * extents in the system's madvise mode, except zeroed ones (calloc: sparse
 * tables); thp:never asks for none, thp:always for zeroed ones too. */
TEST(thp_for_fresh_mappings) {
  begin(18);
  enum os_thp sys = os_system.thp;
  int64_t thp = opt.thp;
  os_system.thp = OS_THP_MADVISE;
  opt.thp = THP_DEFAULT;
  nhuge_on = nhuge_off = 0;
  void *a = huge_alloc(5 * MiB, 0, false);
  CHECK_EQ(nhuge_on, 1);
  CHECK_EQ(huge_on_len, 4 * MiB);                   /* the whole 2 MiB extents */
  void *b = huge_alloc(5 * MiB, 0, true);            /* calloc */
  CHECK_EQ(nhuge_on, 1);
  void *c = huge_alloc(MiB + MiB / 2, 0, false);     /* no whole extent */
  CHECK_EQ(nhuge_on, 1);
  opt.thp = THP_ALWAYS;
  void *d = huge_alloc(5 * MiB, 0, true);
  CHECK_EQ(nhuge_on, 2);
  opt.thp = THP_NEVER;
  void *e = huge_alloc(5 * MiB, 0, false);
  CHECK_EQ(nhuge_on, 2);
  CHECK_EQ(nhuge_off, 1);
  os_system.thp = OS_THP_NEVER;
  opt.thp = THP_DEFAULT;
  void *f = huge_alloc(9 * MiB, 0, false);
  CHECK_EQ(nhuge_on + nhuge_off, 3);
  os_system.thp = sys;
  opt.thp = thp;
  hfree(a); hfree(b); hfree(c); hfree(d); hfree(e); hfree(f);
  end();
}

/* Below HUGE_REMAP_MIN, a growth that no cached mapping fits moves: a new
 * mapping, the block copied, the old mapping cached. Huge pages are asked
 * for the whole new mapping while it is below HUGE_REMAP_MIN, and from
 * there for the extents the copy fills only, never for the tail. From the
 * threshold on, the block grows by remap, and a live block's mapping asks
 * for no huge pages when it grows. */
TEST(realloc_small_moves) {
  uintptr_t S = begin(19);
  enum os_thp sys = os_system.thp;
  int64_t thp = opt.thp;
  os_system.thp = OS_THP_MADVISE;
  opt.thp = THP_DEFAULT;
  huge_remap_min = HUGE_REMAP_MIN;
  char *p = huge_alloc(3 * MiB, 0, false);
  CHECK_EQX(p, S);
  memset(p, 0x5a, 3 * MiB);
  span_t *s = span_of(p);
  huge_stats_t st0 = hs();
  nrec = 0;
  nhuge_on = nhuge_off = 0;
  char *q = huge_realloc(s, 7 * MiB);               /* no cached mapping: it moves */
  CHECK(q != NULL && q != p);
  CHECK(nrec >= 1);
  CHECK_EQ(recs[0].kind, R_MAP);                     /* a fresh mapping (its alignment trimmed); no remap */
  for (int i = 0; i < nrec; i++) CHECK(recs[i].kind != R_REMAP);
  CHECK_EQX(s->base, q);
  CHECK_EQX(s->start, q);
  CHECK_EQ(s->bytes, 7 * MiB);
  CHECK(pagemap_lookup(q) == s);
  CHECK(pagemap_lookup(p) == &span_released);        /* a free of the old pointer is a double free */
  CHECK(q[0] == 0x5a && q[3 * MiB - 1] == 0x5a && q[3 * MiB] == 0);
  CHECK_EQ(nhuge_on, 1);
  CHECK_EQ(huge_on_len, 7 * MiB);                    /* below the threshold: the whole mapping */
  CHECK_EQ(hs().live_bytes, st0.live_bytes + 4 * MiB);
  CHECK_EQ(hs().cached_bytes, st0.cached_bytes + 3 * MiB);   /* the old mapping, resident */
  CHECK_EQ(hs().remaps, st0.remaps + 1);
  CHECK_ACCOUNTED();

  huge_remap_min = 8 * MiB;                          /* 7 MiB still moves; 9 MiB is past the threshold */
  char *r = huge_realloc(s, 9 * MiB);
  CHECK(r != NULL && r != q);
  CHECK_EQ(nhuge_on, 2);
  CHECK_EQ(huge_on_len, 6 * MiB);                    /* the extents the copy fills only */
  CHECK(r[0] == 0x5a && r[3 * MiB - 1] == 0x5a);
  CHECK_ACCOUNTED();

  huge_remap_min = MiB;                              /* now it grows by remap: in place */
  nrec = 0;
  CHECK(huge_realloc(s, 11 * MiB) == r);
  CHECK_EQ(nrec, 1);
  REMAP_REC(0, (uintptr_t)r, 9 * MiB, 11 * MiB, 0, true);
  CHECK_EQ(nhuge_on, 2);                             /* a live block's tail: none asked */
  CHECK(r[0] == 0x5a && r[3 * MiB - 1] == 0x5a);
  huge_remap_min = 0;
  os_system.thp = sys;
  opt.thp = thp;
  CHECK_ACCOUNTED();
  hfree(r);
  end();
}

/* realloc that cannot grow in place moves onto an aligned mapping reserved
 * first (its leaf ready); the old address's entry is withdrawn before the
 * move and never points at the span again. */
TEST(realloc_move) {
  uintptr_t S = begin(14);
  char *p = huge_alloc(4 * MiB, 0, false), *o = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(p, S);
  CHECK_EQX(o, S + 4 * MiB);
  memset(p, 0x55, 4 * MiB);
  span_t *s = span_of(p);
  huge_stats_t st0 = hs();
  nrec = 0;
  char *q = huge_realloc(s, 8 * MiB);
  CHECK_EQ(nrec, 4);
  REMAP_REC(0, S, 4 * MiB, 8 * MiB, 0, false);
  CHECK(recs[0].entry == s);                         /* still registered while in place was tried */
  REC(1, R_MAP, S + 6 * MiB, 10 * MiB);
  REC(2, R_UNMAP, S + 14 * MiB, 2 * MiB);
  REMAP_REC(3, S, 4 * MiB, 8 * MiB, S + 6 * MiB, true);
  CHECK(recs[3].entry == &span_released);            /* withdrawn before the move */
  CHECK(recs[3].dest_leaf);
  CHECK_EQX(q, S + 6 * MiB);
  CHECK_EQ((uintptr_t)q % TD_UNIT, 0);
  CHECK_EQX(s->base, q);
  CHECK_EQX(s->start, q);
  CHECK_EQ(s->bytes, 8 * MiB);
  CHECK_EQ(s->kind, SPAN_HUGE);
  CHECK(pagemap_lookup(q) == s);
  CHECK(pagemap_lookup(p) != s);
  CHECK(pagemap_lookup(p) == &span_released);
  CHECK(q[0] == 0x55 && q[4 * MiB - 1] == 0x55 && q[8 * MiB - 1] == 0);
  CHECK(vm_is(S, 4 * MiB, 0));
  CHECK_EQ(hs().live_bytes, st0.live_bytes + 4 * MiB);
  CHECK_EQ(hs().remaps, st0.remaps + 1);
  CHECK_ACCOUNTED();
  hfree(q); hfree(o);
  end();
}

/* When every way fails the block, its contents and its entry stay as they
 * were, and reservations are given back; when only the remap fails (here
 * onto the reservation), the block moves instead. */
TEST(realloc_failure_keeps_block) {
  uintptr_t S = begin(15);
  char *p = huge_alloc(4 * MiB, 0, false), *o = huge_alloc(2 * MiB, 0, false);
  CHECK_EQX(o, S + 4 * MiB);
  memset(p, 0x66, 4 * MiB);
  span_t *s = span_of(p);
  huge_stats_t st0 = hs();
  fail_map = true;
  nrec = 0;
  CHECK(huge_realloc(s, 8 * MiB) == NULL);
  CHECK(nrec >= 2);
  REMAP_REC(0, S, 4 * MiB, 8 * MiB, 0, false);       /* in place: o is in the way */
  for (int i = 1; i < nrec; i++) CHECK_EQ(recs[i].kind, R_MAP);   /* the reservation, the move's mapping: refused */
  CHECK_EQX(s->base, p);
  CHECK_EQX(s->start, p);
  CHECK_EQ(s->bytes, 4 * MiB);
  CHECK(pagemap_lookup(p) == s);
  CHECK(p[0] == 0x66 && p[4 * MiB - 1] == 0x66);
  CHECK_EQ(hs().live_bytes, st0.live_bytes);
  CHECK_EQ(hs().live_count, st0.live_count);
  CHECK_EQ(hs().remaps, st0.remaps);
  CHECK_ACCOUNTED();

  fail_map = false;
  fail_move = true;
  nrec = 0;
  char *q = huge_realloc(s, 8 * MiB);
  CHECK(q != NULL && q != p);
  CHECK(nrec >= 6);
  REMAP_REC(0, S, 4 * MiB, 8 * MiB, 0, false);
  REC(1, R_MAP, S + 6 * MiB, 10 * MiB);
  REC(2, R_UNMAP, S + 14 * MiB, 2 * MiB);
  REMAP_REC(3, S, 4 * MiB, 8 * MiB, S + 6 * MiB, false);
  REC(4, R_UNMAP, S + 6 * MiB, 8 * MiB);             /* the reservation given back */
  CHECK_EQ(recs[5].kind, R_MAP);                      /* then the move's own mapping */
  CHECK_EQX(s->base, q);
  CHECK_EQ(s->bytes, 8 * MiB);
  CHECK(pagemap_lookup(q) == s);
  CHECK(pagemap_lookup(p) == &span_released);
  CHECK(q[0] == 0x66 && q[4 * MiB - 1] == 0x66);
  CHECK_EQ(hs().live_bytes, st0.live_bytes + 4 * MiB);
  CHECK_EQ(hs().live_count, st0.live_count);
  CHECK_EQ(hs().remaps, st0.remaps + 1);
  fail_move = false;
  CHECK_ACCOUNTED();
  hfree(q); hfree(o);
  end();
}

/* huge_purge_all unmaps every cached mapping, and only those. */
TEST(purge_all) {
  uintptr_t S = begin(16);
  for (int i = 0; i < 4; i++) place[nplace++] = S + (size_t)i * 8 * MiB;
  char *a = huge_alloc(2 * MiB, 0, false), *b = huge_alloc(4 * MiB, 0, false);
  char *c = huge_alloc(6 * MiB, 0, false), *live = huge_alloc(2 * MiB, 0, false);
  hfree(a); hfree(b); hfree(c);
  nrec = 0;
  CHECK_EQ(huge_purge_all(), 12 * MiB);
  CHECK_EQ(nrec, 3);
  bool seen[3] = { false, false, false };
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(recs[i].kind, R_UNMAP);
    if (recs[i].addr == (uintptr_t)a && recs[i].len == 2 * MiB) seen[0] = true;
    if (recs[i].addr == (uintptr_t)b && recs[i].len == 4 * MiB) seen[1] = true;
    if (recs[i].addr == (uintptr_t)c && recs[i].len == 6 * MiB) seen[2] = true;
  }
  CHECK(seen[0] && seen[1] && seen[2]);
  CHECK_EQ(hs().cached_bytes, 0);
  CHECK_EQ(hs().cached_count, 0);
  CHECK(span_of(live) && vm_is((uintptr_t)live, 2 * MiB, 1));
  nrec = 0;
  CHECK_EQ(huge_purge_all(), 0);
  CHECK_EQ(nrec, 0);
  CHECK_ACCOUNTED();
  hfree(live);
  end();
}

int main(int argc, char **argv) {
  free(malloc(1));                       /* initialise with the real hooks */
  CHECK(!opt.background_thread && opt.dirty_decay_ms == 1000);
  printf("%s\n", __FILE__);              /* stdout's buffer, before the fakes */
  fflush(stdout);
  /* The arena, 1 GiB aligned, with its pagemap leaves made now. */
  uint8_t *raw = mmap(NULL, ARENA + ((size_t)1 << 30), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(raw != MAP_FAILED);
  arena = td_align_up((uintptr_t)raw, (size_t)1 << 30);
  CHECK(pagemap_reserve(arena, ARENA));
  /* Descriptors for the cases, so that no metadata chunk is mapped while
   * the fakes are armed. */
  span_t *warm[256];
  for (int i = 0; i < 256; i++) CHECK((warm[i] = page_span_get()) != NULL);
  for (int i = 255; i >= 0; i--) page_span_put(warm[i]);
  huge_purge_all();
  live0 = hs().live_bytes;
  static os_hooks_t h;
  fakepage_hooks(&h);
  h.map = fake_map;
  h.unmap = fake_unmap;
  h.remap = fake_remap;
  h.move = fake_move;
  h.purge = fake_purge;
  h.hugify = fake_hugify;
  h.now_ns = fake_clock;
  fake_now = os_hooks_default.now_ns() + 1000 * MS;
  os_hooks_set(&h);
  huge_remap_min = 0;                    /* the realloc cases grow by remap; realloc_small_moves restores it */
  int rc = UNIT_RUN(argc, argv);
  os_hooks_set(NULL);
  return rc;
}
