#include "sizeclass.h"
#include "unit.h"

/* Classes increase, are 16-byte multiples, and end at SC_SMALL_MAX. */
TEST(class_table) {
  for (unsigned c = 1; c < SC_NCLASSES; c++) {
    CHECK(sc_info[c].size % 16 == 0);
    if (c > 1) CHECK(sc_info[c].size > sc_info[c - 1].size);
    CHECK(sc_info[c].capacity >= 8);
    CHECK((size_t)sc_info[c].capacity * sc_info[c].size <= (size_t)sc_info[c].pages * 4096);
    /* the slab's tail loses at most 1/8 of it */
    size_t bytes = (size_t)sc_info[c].pages * 4096;
    CHECK((bytes - (size_t)sc_info[c].capacity * sc_info[c].size) * 8 <= bytes);
    CHECK(sc_info[c].divc == UINT64_MAX / sc_info[c].size + 1);
  }
  CHECK_EQ(sc_info[SC_NCLASSES - 1].size, SC_SMALL_MAX);
}

/* Every size maps to the smallest class that holds it, and the internal
 * fragmentation is bounded: < 16 bytes below 128, <= 12.5 % from 128 on. */
TEST(size_to_class) {
  for (size_t size = 0; size <= SC_SMALL_MAX; size++) {
    unsigned c = sizeclass_of(size);
    CHECK(c >= 1 && c < SC_NCLASSES);
    size_t need = size ? size : 1;
    CHECK(sc_info[c].size >= need);
    if (c > 1) CHECK(sc_info[c - 1].size < need);
    if (size >= 128) CHECK((sc_info[c].size - size) * 8 <= size);
    else CHECK(sc_info[c].size - need < 16);
  }
}

/* Aligned classes: a multiple of the alignment, and the smallest such. */
TEST(aligned_classes) {
  for (size_t align = 32; align <= 4096; align <<= 1)
    for (size_t size = 1; size <= SC_SMALL_MAX; size += 97) {
      unsigned c = sizeclass_of_aligned(size, align);
      if (!c) continue;
      CHECK(sc_info[c].size >= size && sc_info[c].size % align == 0);
    }
  CHECK(sizeclass_of_aligned(SC_SMALL_MAX + 1, 64) == 0);
}

int main(int argc, char **argv) {
  sizeclass_init();
  return UNIT_RUN(argc, argv);
}
