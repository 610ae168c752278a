/* The metadata allocator: alignment and zeroing, chunk growth, separate
 * mappings, descriptor pools and the statistics. Runs with
 * TIDALLOC_CONF="background_thread:false" (set by CTest), so between two
 * calls of the test nothing else takes metadata and the chunk arithmetic is
 * exact. Mappings are counted through a recording map hook. */
#include "conf.h"
#include "meta.h"
#include "os.h"
#include "pagemap.h"
#include "unit.h"
#include <string.h>

#define KiB ((size_t)1 << 10)
#define META_CHUNK (256 * KiB)     /* meta.c */

static int nmaps;
static size_t mapped_len[64];
static void *mapped_at[64];
static void *fake_map(size_t size) {
  void *p = os_hooks_default.map(size);
  if (nmaps < 64) { mapped_len[nmaps] = size; mapped_at[nmaps] = p; }
  nmaps++;
  return p;
}
/* Mappings are whole OS pages (4 KiB here; 16 or 64 KiB under qemu -p). */
#define PG os_page()

typedef struct { size_t mapped, allocated, separate; } ms_t;
static ms_t ms(void) { ms_t m; meta_stats(&m.mapped, &m.allocated, &m.separate); return m; }

static bool all_zero(const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) if (c[i]) return false;
  return true;
}

/* Every block is aligned as asked (at least 16), zeroed, and apart from the
 * others; sizes are rounded up to 16 bytes. */
TEST(alloc_alignment_and_zero) {
  static const size_t aligns[] = { 0, 1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 };
  static const size_t sizes[] = { 1, 15, 16, 17, 40, 100, 192, 1000, 4096, 5000 };
  enum { NB = sizeof aligns / sizeof aligns[0] * (sizeof sizes / sizeof sizes[0]) };
  unsigned char *blk[NB];
  size_t len[NB];
  int n = 0;
  for (unsigned a = 0; a < sizeof aligns / sizeof aligns[0]; a++)
    for (unsigned z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
      size_t want = aligns[a] < 16 ? 16 : aligns[a];
      ms_t m0 = ms();
      unsigned char *p = meta_alloc(sizes[z], aligns[a]);
      CHECK(p != NULL);
      CHECK_EQ((uintptr_t)p % want, 0);
      CHECK_EQ(ms().allocated - m0.allocated, td_align_up(sizes[z], 16));
      CHECK(all_zero(p, sizes[z]));
      CHECK(pagemap_lookup(p) == NULL);          /* never inside user memory */
      memset(p, n + 1, sizes[z]);
      blk[n] = p;
      len[n++] = sizes[z];
    }
  /* No block overlaps another: each still holds its own byte. */
  for (int i = 0; i < n; i++) {
    size_t bad = 0;
    for (size_t k = 0; k < len[i]; k++) bad += blk[i][k] != (unsigned char)(i + 1);
    CHECK_EQ(bad, 0);
  }
  /* Consecutive small blocks are carved back to back (16-byte rounding);
   * tried again if the first try straddled a new chunk. */
  bool done = false;
  for (int attempt = 0; attempt < 2 && !done; attempt++) {
    int n0 = nmaps;
    unsigned char *x = meta_alloc(17, 16), *y = meta_alloc(1, 16), *z = meta_alloc(16, 16);
    if (nmaps != n0) continue;
    CHECK_EQ(y - x, 32);
    CHECK_EQ(z - y, 16);
    done = true;
  }
  CHECK(done);
}

/* A request that does not fit the current chunk maps a new one: 256 KiB, or
 * what the request needs rounded up to a page; the rest of the old chunk is
 * abandoned and the counters say exactly that. */
TEST(chunk_growth) {
  ms_t m0 = ms();
  nmaps = 0;
  size_t big = 300 * KiB;
  unsigned char *p = meta_alloc(big, 16);
  CHECK(p != NULL);
  size_t chunk = td_align_up(big + 16, PG);
  CHECK_EQ(nmaps, 1);
  CHECK_EQ(mapped_len[0], chunk);
  CHECK_EQ(ms().mapped - m0.mapped, chunk);
  CHECK_EQ(ms().allocated - m0.allocated, big);
  CHECK_EQ((uintptr_t)p % TD_PAGE, 0);           /* at the start of the new chunk */
  CHECK(all_zero(p, big));
  memset(p, 0xee, big);
  /* The page left at its end serves the next small requests. */
  unsigned char *q = meta_alloc(64, 16);
  CHECK(q == p + big);
  CHECK_EQ(nmaps, 1);
  unsigned char *r = meta_alloc(chunk - big - 64, 16);
  CHECK(r == q + 64);
  CHECK_EQ(nmaps, 1);
  /* Full: the next one maps a standard chunk. */
  unsigned char *s = meta_alloc(16, 16);
  CHECK(s != NULL && s == (unsigned char *)mapped_at[1]);   /* the start of a new chunk */
  CHECK_EQ(nmaps, 2);
  CHECK_EQ(mapped_len[1], META_CHUNK);
  CHECK_EQ(ms().mapped - m0.mapped, chunk + META_CHUNK);
  CHECK_EQ(ms().allocated - m0.allocated, chunk + 16);
  CHECK_EQ(ms().separate, m0.separate);
  /* An alignment that does not fit what is left maps too, aligned. */
  unsigned char *t = meta_alloc(META_CHUNK - 32, 4096);
  CHECK(t != NULL && (uintptr_t)t % 4096 == 0);
  CHECK(all_zero(t, META_CHUNK - 32));
  CHECK_EQ(nmaps, 3);
  CHECK_EQ(mapped_len[2], td_align_up(META_CHUNK - 32 + 4096, PG));
}

/* meta_alloc_mapping: a zeroed mapping of its own, page rounded, counted as
 * separate (not chunk) bytes. */
TEST(separate_mapping) {
  ms_t m0 = ms();
  nmaps = 0;
  unsigned char *p = meta_alloc_mapping(5000);
  CHECK(p != NULL && (uintptr_t)p % TD_PAGE == 0);
  CHECK_EQ(nmaps, 1);
  CHECK_EQ(mapped_len[0], td_align_up(2 * TD_PAGE, PG));
  CHECK_EQ(ms().separate - m0.separate, td_align_up(2 * TD_PAGE, PG));
  CHECK_EQ(ms().mapped, m0.mapped);
  CHECK_EQ(ms().allocated, m0.allocated);
  CHECK(all_zero(p, 2 * TD_PAGE));
  memset(p, 1, 2 * TD_PAGE);
  unsigned char *q = meta_alloc_mapping(TD_PAGE);
  CHECK(q != NULL && (q + TD_PAGE <= p || q >= p + 2 * TD_PAGE));
  CHECK_EQ(ms().separate - m0.separate, td_align_up(2 * TD_PAGE, PG) + td_align_up(TD_PAGE, PG));
}

/* Pools: fresh objects come from meta_alloc (cache-line aligned, counted);
 * freed ones are reused last in, first out, zeroed again, without new
 * allocation. */
TEST(pool_recycling) {
  meta_pool_t pool = { .size = 200 };
  ms_t m0 = ms();
  unsigned char *a = meta_pool_get(&pool), *b = meta_pool_get(&pool);
  CHECK(a && b && a != b);
  CHECK_EQ((uintptr_t)a % TD_CACHELINE, 0);
  CHECK_EQ((uintptr_t)b % TD_CACHELINE, 0);
  CHECK(all_zero(a, 200) && all_zero(b, 200));
  CHECK_EQ(ms().allocated - m0.allocated, 2 * td_align_up(200, 16));
  memset(a, 0xa5, 200);
  memset(b, 0x5a, 200);
  meta_pool_put(&pool, a);
  meta_pool_put(&pool, b);
  CHECK(pool.free == b);
  ms_t m1 = ms();
  unsigned char *c = meta_pool_get(&pool);
  CHECK(c == b);                                 /* last in, first out */
  CHECK(all_zero(c, 200));                       /* link and old contents gone */
  unsigned char *d = meta_pool_get(&pool);
  CHECK(d == a);
  CHECK(all_zero(d, 200));
  CHECK(pool.free == NULL);
  CHECK_EQ(ms().allocated, m1.allocated);        /* reuse allocates nothing */
  unsigned char *e = meta_pool_get(&pool);
  CHECK(e && e != a && e != b);
  CHECK_EQ(ms().allocated - m1.allocated, td_align_up(200, 16));
  /* A second pool of another size does not share the first's free list. */
  meta_pool_t other = { .size = 48 };
  meta_pool_put(&pool, e);
  unsigned char *f = meta_pool_get(&other);
  CHECK(f != e);
  CHECK(meta_pool_get(&pool) == e);
}

int main(int argc, char **argv) {
  free(malloc(1));
  CHECK(!opt.background_thread);
  static os_hooks_t h;
  h = os_hooks_default;
  h.map = fake_map;
  os_hooks_set(&h);
  int rc = UNIT_RUN(argc, argv);
  os_hooks_set(NULL);
  return rc;
}
