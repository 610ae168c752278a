/* The hardened mode (secure.c), with TIDALLOC_CONF="secure:true,
 * background_thread:false" (set by CTest; no background thread, so the
 * module's counters move only with the test's calls). What can be checked
 * without aborting: canaries, zero-on-free, the quarantines delaying reuse,
 * guard pages and the layout of guarded blocks, span kinds, zero-size blocks,
 * randomised slots, guarded metadata. Misuse that aborts is tests/misuse's.
 *
 * Whether a page is accessible is probed without faulting: write(2) from it
 * into a pipe fails with EFAULT when it is not. */
#include "conf.h"
#include "meta.h"
#include "pagemap.h"
#include "secure.h"
#include "sizeclass.h"
#include "unit.h"
#include "os.h"
#include <errno.h>
#include <string.h>

#define CANARY 8                      /* secure.c: CANARY_BYTES */
#define HEADER 16                     /* secure.c: HEADER_BYTES (size word, front canary) */
#define OVERHEAD (HEADER + CANARY)
#define QSLOTS 1024                   /* secure.c: QUARANTINE_SLOTS (holds QSLOTS - 1) */
#define QBYTES ((size_t)1 << 20)      /* secure.c: QUARANTINE_BYTES (per shard; one thread uses one) */
#define GSLOTS 64                     /* secure.c: GUARDED_SLOTS */
#define P      ((uintptr_t)os_page())   /* a slab guard: one OS page */
#define G      ((uintptr_t)1 << 20)   /* secure.c: GUARD_WIDE, the guards of hardened guarded blocks */

static int probe[2];

static bool readable(uintptr_t a) {
  if (write(probe[1], (const void *)a, 1) == 1) {
    char c;
    if (read(probe[0], &c, 1) != 1) FAIL("probe pipe");
    return true;
  }
  if (errno != EFAULT) FAIL("probe write: errno %d", errno);
  return false;
}

static bool all_zero(const void *p, size_t from, size_t to) {
  const unsigned char *c = p;
  for (size_t i = from; i < to; i++) if (c[i]) return false;
  return true;
}
static uint64_t word(const void *p) { uint64_t w; memcpy(&w, p, 8); return w; }
/* secure.c's guarded_data_bytes: whole OS pages, and above 64 KiB one of
 * four steps per power of two (at least an OS page). */
static size_t gdata(size_t n) {
  size_t d = td_align_up(n, os_page());
  if (d <= ((size_t)64 << 10)) return d;
  size_t step = ((size_t)1 << (63 - __builtin_clzll(d))) / 4;
  return td_align_up(d, step > os_page() ? step : os_page());
}

static size_t live_bytes(void) { size_t live, gm; secure_stats(&live, &gm); return live; }
static size_t guarded_bytes(void) { size_t live, gm; secure_stats(&live, &gm); return gm; }

/* Whether block b is on its slab's free list. */
static bool on_free_list(const span_t *s, const void *b) {
  uintptr_t x = s->free;
  for (uint32_t n = 0; x != SPAN_FREE_END && n <= s->capacity; n++) {
    if (x == (uintptr_t)b) return true;
    x = span_link_decode(((const block_t *)x)->next);
  }
  return false;
}

static int kind_of(const void *p) {
  span_t *s = pagemap_lookup(p);
  if (!s) FAIL("%p has no span", p);
  return s->kind;
}

/* The slot of a secure small block (its header 16 bytes before it). */
static uintptr_t slot_of(const void *p, const span_t *s) {
  return s->start + ((uintptr_t)p - s->start) / s->size * s->size;
}

static void sfree(void *p) {
  span_t *s = pagemap_lookup(p);
  if (!s) FAIL("%p has no span", p);
  secure_free(p, s, "free");
}

/* Two blocks of one slab: *keep holds the slab (so it is never given back
 * while the test looks at it) and the returned one is the block under test. */
static void *pair(size_t size, void **keep) {
  for (int i = 0; i < 16; i++) {
    void *k = secure_alloc(size, 0, false), *p = secure_alloc(size, 0, false);
    if (!k || !p) FAIL("secure_alloc(%zu) failed", size);
    if (pagemap_lookup(k) == pagemap_lookup(p)) { *keep = k; return p; }
    sfree(k);
    sfree(p);
  }
  FAIL("no two consecutive blocks of one slab");
}

/* Each free of a fresh block of `size`: pushes the quarantine along. */
static void churn(size_t size, int n) {
  for (int i = 0; i < n; i++) {
    void *b = secure_alloc(size, 0, false);
    if (!b) FAIL("secure_alloc failed");
    span_t *s = pagemap_lookup(b);
    if (!all_zero(b, 0, secure_usable(b, s))) FAIL("block %p handed out dirty", b);
    sfree(b);
  }
}

/* ------------------------------------------------------------------------ */

/* The API routes to the hardened allocator: spans of its own kinds. */
TEST(api_uses_secure_kinds) {
  CHECK(opt.secure);
  void *a = malloc(40), *b = malloc(100000), *c = malloc(0);
  CHECK(a && b && c);
  CHECK_EQ(kind_of(a), SPAN_SECURE);
  CHECK_EQ(kind_of(b), SPAN_GUARDED);
  CHECK_EQ(kind_of(c), SPAN_ZERO);
  free(a); free(b); free(c);
}

/* A small block: handed out zeroed, 16 bytes into a slot of a secure slab
 * of the class that holds header + size + canary. The header is the size
 * word (offset << 48 | size) and the front canary (secret ^ slot ^ size
 * word); the canary right after the block's last byte is the secret XOR
 * its address (one secret for all blocks); the usable size is the size
 * asked for. */
TEST(small_block_canary) {
  size_t size0 = live_bytes();
  unsigned char *p = secure_alloc(40, 0, false), *q = secure_alloc(40, 0, false);
  unsigned char *r = secure_alloc(100, 64, false), *t = secure_alloc(3000, 0, false);
  CHECK(p && q && r && t);
  span_t *s = pagemap_lookup(p);
  CHECK_EQ(s->kind, SPAN_SECURE);
  CHECK_EQ(s->size, sc_info[sizeclass_of(40 + OVERHEAD)].size);
  CHECK_EQ(((uintptr_t)p - s->start) % s->size, HEADER);
  CHECK((uintptr_t)p - s->start < span_limit(s));
  CHECK_EQ((uintptr_t)p % 16, 0);
  size_t up = secure_usable(p, s);
  CHECK_EQ(up, 40);
  CHECK(all_zero(p, 0, up));
  CHECK_EQ((uintptr_t)r % 64, 0);
  CHECK_EQ(((uintptr_t)r - pagemap_lookup(r)->start) % pagemap_lookup(r)->size, 64);
  CHECK_EQ(secure_usable(r, pagemap_lookup(r)), 100);
  CHECK_EQ(secure_usable(t, pagemap_lookup(t)), 3000);
  CHECK_EQ(live_bytes() - size0, 40 + 40 + 100 + 3000);
  uintptr_t cp = (uintptr_t)p + up;
  uint64_t key = word((void *)cp) ^ cp;
  CHECK(key != 0);
  uintptr_t slot = slot_of(p, s);
  CHECK_EQX(word((void *)slot), (uint64_t)HEADER << 48 | 40);
  CHECK_EQX(word((void *)(slot + 8)), key ^ slot ^ word((void *)slot));
  unsigned char *blocks[] = { q, r, t };
  for (int i = 0; i < 3; i++) {
    uintptr_t c = (uintptr_t)blocks[i] + secure_usable(blocks[i], pagemap_lookup(blocks[i]));
    CHECK_EQX(word((void *)c) ^ c, key);
  }
  /* Where header and canary no longer fit a class, the block is guarded. */
  void *big = secure_alloc(SC_SMALL_MAX - OVERHEAD, 0, false), *over = secure_alloc(SC_SMALL_MAX - OVERHEAD + 1, 0, false);
  CHECK_EQ(kind_of(big), SPAN_SECURE);
  CHECK_EQ(pagemap_lookup(big)->size, SC_SMALL_MAX);
  CHECK_EQ(kind_of(over), SPAN_GUARDED);
  sfree(p); sfree(q); sfree(r); sfree(t); sfree(big); sfree(over);
}

/* Every secure slab lies between two inaccessible pages, which are its own. */
TEST(slab_guard_page) {
  unsigned classes[] = { sizeclass_of(48), sizeclass_of(1000), sizeclass_of(SC_SMALL_MAX) };
  for (unsigned i = 0; i < 3; i++) {
    void *b = secure_alloc(sc_info[classes[i]].size - OVERHEAD, 0, false);
    span_t *s = pagemap_lookup(b);
    CHECK_EQ(s->kind, SPAN_SECURE);
    size_t data = td_align_up((size_t)sc_info[s->cls].pages * TD_PAGE, P);   /* whole OS pages */
    CHECK_EQ(s->bytes, data + 2 * P);
    CHECK_EQ(s->start, s->base + P);
    CHECK(!readable(s->base));
    CHECK(!readable(s->start - 1));
    CHECK(readable(s->start));
    CHECK(readable(s->start + data - 1));
    CHECK(!readable(s->start + data));
    CHECK(!readable(s->start + data + P - 1));
    CHECK(pagemap_lookup((void *)s->base) == s);
    CHECK(pagemap_lookup((void *)(s->start + data)) == s);
    CHECK((uintptr_t)s->start + span_limit(s) <= s->start + data);
    sfree(b);
  }
}

/* Freeing zeroes the whole block, canary included, but for the free marker
 * in its second word (so that a second free is recognised). */
TEST(zero_on_free) {
  void *keep;
  unsigned char *p = pair(100, &keep);
  span_t *s = pagemap_lookup(p);
  size_t up = secure_usable(p, s);
  memset(p, 0xab, up);
  size_t live0 = live_bytes();
  uintptr_t slot = slot_of(p, s);
  secure_free(p, s, "free");
  CHECK_EQ(live0 - live_bytes(), up);
  CHECK_EQ(word((void *)slot), 0);
  CHECK(word((void *)(slot + 8)) != 0);
  CHECK(all_zero((void *)slot, 16, s->size));
  CHECK(!on_free_list(s, (void *)slot));         /* quarantined, not free */
  sfree(keep);
}

/* A freed block waits in the quarantine until QSLOTS - 1 other frees have
 * followed it; meanwhile it is not on its slab's free list and no
 * allocation returns it. Blocks handed out are zero. */
TEST(quarantine_delays_reuse) {
  churn(40, QSLOTS + 100);                       /* the quarantine: full of 48-byte blocks */
  void *keep;
  unsigned char *p = pair(40, &keep);
  span_t *s = pagemap_lookup(p);
  void *slot = (void *)slot_of(p, s);
  secure_free(p, s, "free");
  for (int i = 0; i < QSLOTS - 2; i++) {
    void *b = secure_alloc(40, 0, false);
    CHECK(b != p);
    CHECK(all_zero(b, 0, 40));
    sfree(b);
  }
  CHECK(!on_free_list(s, slot));                 /* after QSLOTS - 2 frees: still waiting */
  churn(40, 1);
  CHECK(on_free_list(s, slot));                  /* the next one releases it */
  CHECK(all_zero(slot, 16, s->size));            /* still zero behind link and marker */
  sfree(keep);
}

/* The quarantine also holds at most QBYTES: with the largest class it keeps
 * QBYTES / SC_SMALL_MAX blocks. */
TEST(quarantine_byte_bound) {
  size_t size = SC_SMALL_MAX - OVERHEAD;
  churn(size, 400);                              /* steady state: 32 KiB blocks only */
  void *keep;
  unsigned char *p = pair(size, &keep);
  span_t *s = pagemap_lookup(p);
  CHECK_EQ(s->size, SC_SMALL_MAX);
  void *slot = (void *)slot_of(p, s);
  secure_free(p, s, "free");
  churn(size, (int)(QBYTES / SC_SMALL_MAX) - 1);
  CHECK(!on_free_list(s, slot));
  churn(size, 1);
  CHECK(on_free_list(s, slot));
  sfree(keep);
}

/* secure.c's rounding of a guarded mapping's data pages: four steps per
 * power of two above 64 KiB. */
static size_t guarded_data(size_t data) {
  if (data <= ((size_t)64 << 10)) return data;
  size_t step = ((size_t)1 << (63 - __builtin_clzll(data))) / 4;
  return td_align_up(data, step > P ? step : P);
}

/* A guarded block: alone in its mapping, a 1 MiB guard (hardened mode) before and after, the
 * block right-aligned against the trailing guard; every page of the mapping
 * (guards too) resolves to its span, of kind SPAN_GUARDED. */
TEST(guarded_layout) {
  size_t gm0 = guarded_bytes(), live0 = live_bytes();
  unsigned char *p = secure_alloc(100000, 0, false);
  CHECK(p != NULL);
  CHECK_EQ(kind_of(p), SPAN_GUARDED);
  span_t *s = pagemap_lookup(p);
  CHECK_EQ(s->req_size, 100000);
  CHECK_EQ(s->used, 1);
  CHECK_EQX(s->start, p);
  CHECK_EQ(s->base % P, 0);
  CHECK_EQ(s->bytes, guarded_data(td_align_up(100000, P)) + 2 * G);
  uintptr_t trail = s->base + s->bytes - G;
  CHECK_EQX((uintptr_t)p + 100000, trail);       /* ends right at the guard */
  CHECK_EQ(secure_usable(p, s), 100000);
  CHECK(!readable(s->base) && !readable(s->base + G - 1));
  CHECK(readable(s->base + G));
  CHECK(readable((uintptr_t)p) && readable((uintptr_t)p + 99999));
  CHECK(!readable(trail) && !readable(trail + G - 1));
  CHECK(pagemap_lookup((void *)s->base) == s);
  CHECK(pagemap_lookup(p + 50000) == s);
  CHECK(pagemap_lookup((void *)trail) == s);
  CHECK(all_zero(p, 0, 100000));
  CHECK_EQ(guarded_bytes() - gm0, s->bytes);
  CHECK_EQ(live_bytes() - live0, 100000);

  /* A size that is not a multiple of 16 ends less than 16 bytes short. */
  unsigned char *q = secure_alloc(100001, 0, false);
  span_t *t = pagemap_lookup(q);
  CHECK_EQ((uintptr_t)q % 16, 0);
  CHECK_EQ(secure_usable(q, t), 100016);
  CHECK_EQX((uintptr_t)q + 100016, t->base + t->bytes - G);
  CHECK(!readable(t->base + t->bytes - G));

  /* Alignment above a page: a small block becomes guarded, aligned. */
  unsigned char *r = secure_alloc(64, 8192, false);
  CHECK_EQ(kind_of(r), SPAN_GUARDED);
  span_t *u = pagemap_lookup(r);
  CHECK_EQ((uintptr_t)r % 8192, 0);
  CHECK((uintptr_t)r + 64 <= u->base + u->bytes - G);
  CHECK(!readable(u->base + u->bytes - G) && !readable(u->base));
  CHECK(readable((uintptr_t)r + 63));
  sfree(p); sfree(q); sfree(r);
}

/* A freed guarded block stays mapped but inaccessible (a use after free
 * faults), still registered, for GSLOTS further guarded frees; then its
 * entry says released and the mapping, still inaccessible, waits for a
 * block of the same mapping size, which gets it zeroed (its pages were kept,
 * with what the program wrote). */
TEST(guarded_quarantine) {
  unsigned char *p = secure_alloc(50000, 0, false);
  span_t *s = pagemap_lookup(p);
  size_t bytes = s->bytes, up = secure_usable(p, s);
  uintptr_t base = s->base;
  memset(p, 0x5a, up);
  size_t gm0 = guarded_bytes(), live0 = live_bytes();
  secure_free(p, s, "free");
  CHECK_EQ(s->used, 0);
  CHECK(!readable((uintptr_t)p) && !readable(s->base + G) && !readable((uintptr_t)p + up - 1));
  CHECK(pagemap_lookup(p) == s);
  CHECK_EQ(guarded_bytes(), gm0);
  CHECK_EQ(live0 - live_bytes(), up);
  for (int i = 0; i < GSLOTS - 1; i++) sfree(secure_alloc(40000, 0, false));
  CHECK(pagemap_lookup(p) == s);                 /* after GSLOTS - 1 frees: still kept */
  CHECK_EQ(s->kind, SPAN_GUARDED);
  void *last = secure_alloc(40000, 0, false);
  size_t gm1 = guarded_bytes();
  sfree(last);
  CHECK(pagemap_lookup(p) == &span_released);    /* the next one evicts it */
  CHECK(!readable((uintptr_t)p));
  CHECK_EQ(gm1, guarded_bytes());                /* kept mapped, for reuse */
  unsigned char *q = secure_alloc(50000, 0, false);
  span_t *t = pagemap_lookup(q);
  CHECK_EQX(t->base, base);                      /* the same mapping again */
  CHECK_EQ(t->bytes, bytes);
  CHECK(readable((uintptr_t)q) && all_zero(q, 0, 50000));
  CHECK(!readable(t->base) && !readable(t->base + t->bytes - G));
  sfree(q);
}

/* A kept mapping serves a smaller block whose mapping is at least half as
 * long: the best fit is taken, only the pages the block needs at the end are
 * opened (the rest of the old data stays inaccessible), and they read zero. */
TEST(guarded_reuse_fits) {
  /* Sizes no earlier case uses, whose data sizes differ at every OS page
   * size (4 KiB: 320, 224 and 640 KiB). */
  size_t data_a = gdata(300000), data_b = gdata(200000);
  CHECK(data_b < data_a && data_a < gdata(600000));
  unsigned char *a = secure_alloc(300000, 0, false);
  span_t *s = pagemap_lookup(a);
  CHECK_EQ(s->bytes, data_a + 2 * G);
  memset(a, 0x5a, secure_usable(a, s));
  sfree(a);
  /* Push it out of the quarantine ring with blocks whose mappings are
   * longer: kept too, but a worse fit for what follows. */
  for (int i = 0; i < GSLOTS; i++) sfree(secure_alloc(600000, 0, false));
  CHECK(pagemap_lookup(a) == &span_released);
  unsigned char *b = secure_alloc(200000, 0, false);
  span_t *t = pagemap_lookup(b);
  CHECK_EQX(t->base, s->base);                           /* the best fit: a's mapping */
  uintptr_t end = t->base + t->bytes - G;
  CHECK_EQX((uintptr_t)b + secure_usable(b, t), end);    /* right-aligned against the guard */
  CHECK(readable((uintptr_t)b) && all_zero(b, 0, 200000));
  CHECK(!readable(end - data_a));                        /* the old block's first pages: closed */
  CHECK(!readable(end - data_b - 1));
  CHECK(readable(end - data_b));
  sfree(b);
  /* Pressure and tidal_purge take the kept pages back (b's among them);
   * the mappings stay for reuse and read zero. */
  CHECK(secure_purge_kept() >= data_b);
  CHECK_EQ(secure_purge_kept(), 0);
  unsigned char *c = secure_alloc(200000, 0, false);
  CHECK(all_zero(c, 0, 200000));
  sfree(c);
}

/* A guarded block of 2 MiB or more asks for huge pages when the system is
 * in madvise mode: its data ends on a 2 MiB boundary (and its mapping starts
 * on one), so every whole 2 MiB of it can be one huge page. calloc's do not. */
TEST(guarded_huge_layout) {
  size_t n = ((size_t)5 << 20) + 12345;
  unsigned char *a = secure_alloc(n, 0, false), *z = secure_alloc(n, 0, true);
  span_t *s = pagemap_lookup(a), *sz = pagemap_lookup(z);
  uintptr_t end = s->base + s->bytes - G;
  CHECK_EQX((uintptr_t)a + secure_usable(a, s), end);
  if (os_system.thp == OS_THP_MADVISE && opt.thp == THP_DEFAULT) {
    CHECK_EQ(end % TD_UNIT, 0);
    CHECK_EQ(s->base % TD_UNIT, 0);
  }
  a[0] = 1; a[n - 1] = 2;
  CHECK(all_zero(z, 0, n));
  CHECK_EQX((uintptr_t)z + secure_usable(z, sz), sz->base + sz->bytes - G);
  sfree(a);
  sfree(z);
}

/* Zero-size requests: distinct 16-byte slots of an inaccessible region, of
 * kind SPAN_ZERO, usable size 0; a free marks the slot. An aligned zero-size
 * request is a real block. */
TEST(zero_size_blocks) {
  unsigned char *a = secure_alloc(0, 0, false), *b = secure_alloc(0, 0, false);
  CHECK(a && b && a != b);
  CHECK_EQ(kind_of(a), SPAN_ZERO);
  span_t *s = pagemap_lookup(a);
  CHECK_EQ(secure_usable(a, s), 0);
  CHECK(!readable((uintptr_t)a));
  if (pagemap_lookup(b) == s) CHECK_EQ(b - a, 16);
  const uint64_t *bits = (const uint64_t *)s->free;
  size_t slot = ((uintptr_t)a - s->start) / 16;
  CHECK(!((bits[slot / 64] >> (slot % 64)) & 1));
  secure_free(a, s, "free");
  CHECK((bits[slot / 64] >> (slot % 64)) & 1);
  if (pagemap_lookup(b) == s) {
    size_t sb = ((uintptr_t)b - s->start) / 16;
    CHECK(!((bits[sb / 64] >> (sb % 64)) & 1));
  }
  sfree(b);
  unsigned char *c = secure_alloc(0, 64, false);
  CHECK_EQ(kind_of(c), SPAN_SECURE);
  CHECK_EQ((uintptr_t)c % 64, 0);
  CHECK(readable((uintptr_t)c));
  sfree(c);
}

/* The slot handed out is chosen at random among the first free ones: a
 * fresh slab is not handed out in address order. */
TEST(random_slots) {
  enum { N = 64 };
  unsigned char *b[N];
  size_t size = 256 - OVERHEAD;                  /* a class no other case uses */
  for (int i = 0; i < N; i++) { b[i] = secure_alloc(size, 0, false); CHECK(b[i]); }
  span_t *s = pagemap_lookup(b[0]);
  int in_order = 0, same_slab = 0;
  for (int i = 1; i < N; i++) {
    if (pagemap_lookup(b[i]) != s) continue;
    same_slab++;
    in_order += b[i] == b[i - 1] + s->size;
    for (int j = 0; j < i; j++) CHECK(b[i] != b[j]);
  }
  CHECK(same_slab >= 16);
  CHECK(in_order * 2 < same_slab);              /* in order would be all of them */
  for (int i = 0; i < N; i++) sfree(b[i]);
}

/* Metadata in the hardened mode has an inaccessible page on each side. */
TEST(metadata_guard_pages) {
  uintptr_t m = (uintptr_t)meta_alloc_mapping(2 * P);
  CHECK(m != 0);
  CHECK(readable(m) && readable(m + 2 * P - 1));
  CHECK(!readable(m - 1) && !readable(m - P));
  CHECK(!readable(m + 2 * P));
}

int main(int argc, char **argv) {
  free(malloc(1));
  CHECK(opt.secure && !opt.background_thread);
  CHECK(pipe(probe) == 0);
  return UNIT_RUN(argc, argv);
}
