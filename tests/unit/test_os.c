/* The OS layer's default hooks on real memory, where the kernel's rules
 * matter: mremap grows only a range within one VMA (EFAULT when it spans
 * several, as a huge mapping does once its front is advised for huge
 * pages). os_remap must still grow such a range in place, and refuse to
 * move it with nothing moved; os_move (pages a cache can lose) must move
 * it, releasing the source only on success. The ranges here are
 * split into two VMAs by making their front read-only (qemu-user ignores
 * madvise, but not mprotect); /proc/self/maps confirms the split, so no
 * case passes on a range the kernel would have taken whole anyway. */
#include "os.h"
#include "unit.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page;

/* VMAs overlapping [a, a + len), from /proc/self/maps. */
static int vmas_in(uintptr_t a, size_t len) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) FAIL("cannot read /proc/self/maps");
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo < a + len && hi > a) n++;
  }
  fclose(f);
  return n;
}

static bool mapped(uintptr_t a, size_t len) {
  unsigned char v[64];
  for (size_t off = 0; off < len; off += page)
    if (mincore((void *)(a + off), page, v) != 0) return false;
  return true;
}

static bool unmapped(uintptr_t a, size_t len) {
  unsigned char v[64];
  for (size_t off = 0; off < len; off += page)
    if (mincore((void *)(a + off), page, v) == 0) return false;
  return true;
}

/* n pages at the start of a free stretch of 2n, each marked with its
 * index, the front half read-only: a VMA of its own. */
static char *split_mapping(size_t n) {
  char *p = mmap(NULL, 2 * n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED);
  CHECK_EQ(munmap(p + n * page, n * page), 0);
  for (size_t i = 0; i < n; i++) p[i * page] = (char)(0x40 + i);
  CHECK_EQ(mprotect(p, n / 2 * page, PROT_READ), 0);
  CHECK_EQ(vmas_in((uintptr_t)p, n * page), 2);
  return p;
}

static void check_marks(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) CHECK_EQ(p[i * page], (char)(0x40 + i));
}

/* In place: the kernel refuses the two-VMA range; the extension is mapped
 * right after it, zeroed and writable, and nothing moves. */
TEST(grow_in_place_over_two_vmas) {
  size_t n = 8;
  char *p = split_mapping(n);
  errno = 1234;
  CHECK(os_remap(p, n * page, 2 * n * page, NULL));
  CHECK_EQ(errno, 1234);
  check_marks(p, n);
  for (size_t i = n; i < 2 * n; i++) {
    CHECK_EQ(p[i * page], 0);
    p[i * page] = 1;
  }
  CHECK(mapped((uintptr_t)p, 2 * n * page));
  CHECK_EQ(munmap(p, 2 * n * page), 0);
}

/* ... and refused, range unchanged, when something follows it. */
TEST(grow_in_place_blocked) {
  size_t n = 8;
  char *p = split_mapping(n);
  char *q = mmap(p + n * page, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  CHECK(q == p + n * page);
  CHECK(!os_remap(p, n * page, 2 * n * page, NULL));
  check_marks(p, n);
  CHECK_EQ(munmap(p, n * page + page), 0);
}

/* A move with growth of such a range: refused whole, nothing moved (the
 * caller copies a live block instead). */
TEST(remap_move_over_two_vmas_refused) {
  size_t n = 8;
  char *p = split_mapping(n);
  char *d = mmap(NULL, 2 * n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(d != MAP_FAILED);
  CHECK(!os_remap(p, n * page, 2 * n * page, d));
  check_marks(p, n);
  CHECK(mapped((uintptr_t)d, 2 * n * page));
  CHECK_EQ(munmap(p, n * page), 0);
  CHECK_EQ(munmap(d, 2 * n * page), 0);
}

/* os_move takes it (a cached mapping's pages): onto the caller's mapping,
 * the pages with it; the source is released, the rest of the destination
 * kept. */
TEST(move_over_two_vmas) {
  size_t n = 8;
  char *p = split_mapping(n);
  char *d = mmap(NULL, 3 * n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(d != MAP_FAILED);
  errno = 1234;
  CHECK(os_move(p, n * page, d + n * page));
  CHECK_EQ(errno, 1234);
  check_marks(d + n * page, n);
  CHECK(unmapped((uintptr_t)p, n * page));
  CHECK(mapped((uintptr_t)d, 3 * n * page));
  for (size_t i = 0; i < n; i++) CHECK_EQ(d[i * page], 0);
  CHECK_EQ(munmap(d, 3 * n * page), 0);
}

int main(int argc, char **argv) {
  page = (size_t)sysconf(_SC_PAGESIZE);
  os_init();
  return UNIT_RUN(argc, argv);
}
