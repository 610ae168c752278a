/* A fake OS page size for the unit tests: TIDAL_TEST_OS_PAGE=16384 or 65536
 * runs the layers above os.c as if the kernel's pages were that large, on
 * a 4 KiB machine (CTest runs unit_page and unit_huge so, see CMakeLists.txt).
 *
 * fakepage_hooks(&h) fills h with the default hooks, and when a fake size is
 * asked: h.page_size (os_page() returns it), a map that returns memory
 * aligned to it, and purge, commit, hugify, unmap and remap that behave as
 * the kernel would with such pages: an address or (for purge and commit) a
 * length that is not a whole number of OS pages is refused and counted in
 * fakepage_violations — a real kernel would refuse it too, or round the
 * length up and purge a neighbour's data. The test's own recording hooks
 * call fakepage_base.X underneath instead of os_hooks_default.X. */
#ifndef TIDAL_FAKEPAGE_H
#define TIDAL_FAKEPAGE_H
#include "os.h"
#include <stdio.h>
#include <stdlib.h>

static size_t fakepage_size;          /* 0: the real page size */
static int fakepage_violations;
static os_hooks_t fakepage_base;

static bool fakepage_ok(const char *what, const void *addr, size_t len, bool whole) {
  if (!fakepage_size) return true;
  if ((uintptr_t)addr % fakepage_size == 0 && (!whole || len % fakepage_size == 0)) return true;
  fakepage_violations++;
  fprintf(stderr, "fakepage: %s(%p, %#zx) not in whole %zu-byte OS pages\n", what, addr, len, fakepage_size);
  return false;
}

static void *fakepage_map(size_t size) {
  size = td_align_up(size, fakepage_size);
  uint8_t *raw = os_hooks_default.map(size + fakepage_size);
  if (!raw) return NULL;
  uintptr_t start = td_align_up((uintptr_t)raw, fakepage_size);
  size_t lead = start - (uintptr_t)raw, trail = fakepage_size - lead;
  if (lead) os_hooks_default.unmap(raw, lead);
  if (trail) os_hooks_default.unmap((void *)(start + size), trail);
  return (void *)start;
}
static bool fakepage_unmap(void *a, size_t len) {
  return fakepage_ok("unmap", a, len, false) && os_hooks_default.unmap(a, td_align_up(len, fakepage_size));
}
static bool fakepage_purge(void *a, size_t len, os_purge_t how) {
  return fakepage_ok("purge", a, len, true) && os_hooks_default.purge(a, len, how);
}
static bool fakepage_hugify(void *a, size_t len, os_huge_t how) {
  return fakepage_ok("hugify", a, len, false) && os_hooks_default.hugify(a, len, how);
}
static bool fakepage_commit(void *a, size_t len, bool commit) {
  return fakepage_ok("commit", a, len, true) && os_hooks_default.commit(a, len, commit);
}
static bool fakepage_remap(void *a, size_t old_size, size_t new_size, void *dest) {
  if (!fakepage_ok("remap", a, old_size, false) || (dest && !fakepage_ok("remap dest", dest, new_size, false))) return false;
  return os_hooks_default.remap(a, td_align_up(old_size, fakepage_size), td_align_up(new_size, fakepage_size), dest);
}

static bool fakepage_move(void *a, size_t size, void *dest) {
  if (!fakepage_ok("move", a, size, false) || !fakepage_ok("move dest", dest, size, false)) return false;
  return os_hooks_default.move(a, td_align_up(size, fakepage_size), dest);
}

static void fakepage_hooks(os_hooks_t *h) {
  const char *e = getenv("TIDAL_TEST_OS_PAGE");
  fakepage_size = e ? (size_t)strtoul(e, NULL, 0) : 0;
  /* Not below the real page (qemu -p 65536): the kernel would round up. */
  if (fakepage_size <= os_system.page_size) fakepage_size = 0;
  *h = os_hooks_default;
  if (fakepage_size) {
    if (!td_is_pow2(fakepage_size) || fakepage_size < TD_PAGE || fakepage_size > OS_PAGE_MAX) {
      fprintf(stderr, "TIDAL_TEST_OS_PAGE=%s: not a power of two in 4..64 KiB\n", e);
      exit(2);
    }
    h->page_size = fakepage_size;
    h->map = fakepage_map; h->unmap = fakepage_unmap; h->purge = fakepage_purge;
    h->hugify = fakepage_hugify; h->commit = fakepage_commit; h->remap = fakepage_remap;
    h->move = fakepage_move;
  }
  fakepage_base = *h;
}
#endif
