/* The page layer driven through the OS hooks seam: every map and purge is
 * recorded, so the tests can assert what the layer asked of the kernel. */
#include "os.h"
#include "page.h"
#include "pagemap.h"
#include "unit.h"
#include <string.h>
#include <sys/mman.h>

static struct { int maps, purges_now, purges_lazy; size_t purged_bytes; } rec;

static void *fake_map(size_t size) {
  rec.maps++;
  return os_hooks_default.map(size);
}
static bool fake_purge(void *addr, size_t size, os_purge_t how) {
  if (how == OS_PURGE_NOW) rec.purges_now++; else rec.purges_lazy++;
  rec.purged_bytes += size;
  return os_hooks_default.purge(addr, size, how);
}
static const os_hooks_t hooks = {
  .map = fake_map, .unmap = NULL, .purge = fake_purge, .hugify = NULL, .now_ns = NULL,
};

int main(void) {
  os_hooks_t h = hooks;
  h.unmap = os_hooks_default.unmap;
  h.hugify = os_hooks_default.hugify;
  h.now_ns = os_hooks_default.now_ns;
  /* The test process allocates through tidalloc too (printf, …): make sure it
   * has initialised before the hooks go in, then work with deltas. */
  free(malloc(1));
  os_hooks_set(&h);
  page_validate();
  page_stats_t before, st;
  page_stats_get(&before);

  /* A run is unit-local, aligned as asked, and reported zeroed when fresh. */
  span_t *a = page_alloc(512, 1);
  CHECK(a && a->bytes == 512 * 4096 && a->page_index == 0 && (a->base & (TD_UNIT - 1)) == 0);
  CHECK(a->zeroed);
  memset((void *)a->base, 0xab, a->bytes);
  page_stats_get(&st);
  CHECK_EQ(st.active - before.active, 512 * 4096);

  /* Dense packing: small runs go into the same partly used unit. */
  span_t *runs[64];
  for (int i = 0; i < 64; i++) {
    runs[i] = page_alloc(4, 1);
    CHECK(runs[i]);
    if (i) CHECK(runs[i]->unit == runs[0]->unit);
  }
  page_validate();
  /* Freed pages are dirty (not zeroed) when handed out again. */
  memset((void *)runs[10]->base, 1, runs[10]->bytes);
  uintptr_t where = runs[10]->base;
  page_free(runs[10]);
  span_t *again = page_alloc(4, 1);
  CHECK(again && again->base == where && !again->zeroed);
  runs[10] = again;

  /* Aligned runs honour the alignment. */
  span_t *al = page_alloc(3, 64);
  CHECK(al && al->page_index % 64 == 0);
  page_free(al);

  /* In-place growth and shrink. */
  span_t *g = page_alloc(8, 1);
  CHECK(g);
  size_t idx = g->page_index;
  page_shrink(g, 2);
  CHECK_EQ(g->bytes, 2 * 4096);
  CHECK(page_grow(g, 8));
  CHECK_EQ(g->page_index, idx);
  CHECK_EQ(g->bytes, 8 * 4096);
  page_free(g);
  page_validate();

  /* Whole empty units: up to two stay dirty, the third is purged at once. */
  span_t *u[3];
  for (int i = 0; i < 3; i++) { u[i] = page_alloc(512, 1); CHECK(u[i]); memset((void *)u[i]->base, 7, 4096); }
  rec.purges_now = 0;
  rec.purged_bytes = 0;
  page_free(a);               /* empty unit #1 */
  page_free(u[0]);            /* #2 */
  CHECK_EQ(rec.purges_now, 0);
  page_free(u[1]);            /* #3: purged */
  CHECK_EQ(rec.purges_now, 1);
  CHECK_EQ(rec.purged_bytes, TD_UNIT);
  page_validate();

  /* purge_all purges exactly the dirty bytes, and after it fresh runs are zero. */
  page_stats_get(&st);
  size_t dirty = st.dirty;
  CHECK(dirty >= 2 * TD_UNIT);
  rec.purged_bytes = 0;
  size_t got = page_purge_all();
  CHECK_EQ(got, dirty);
  CHECK_EQ(rec.purged_bytes, dirty);
  page_stats_get(&st);
  CHECK_EQ(st.dirty, 0);
  span_t *z = page_alloc(512, 1);
  CHECK(z && z->zeroed);
  for (size_t i = 0; i < z->bytes; i += 4096) CHECK(((unsigned char *)z->base)[i] == 0);
  page_free(z);
  page_free(u[2]);
  for (int i = 0; i < 64; i++) page_free(runs[i]);
  page_validate();
  page_stats_get(&st);
  CHECK_EQ(st.active, before.active);
  os_hooks_set(NULL);
  UNIT_DONE();
}
