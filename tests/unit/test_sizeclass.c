#include "sizeclass.h"
#include "span.h"
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

/* span_block_index, the free path's one-compare block check: for every
 * class size and for object-cache sizes (any size from 16 on, odd ones
 * too), an offset that is a whole number of blocks gives that number, and
 * every other offset (inside a block, or below the span's start) gives a
 * number no span has that many blocks of. */
static void index_exact(uint32_t size) {
  span_t s = { 0 };
  span_set_size(&s, size);
  CHECK_EQ(s.size, size);
  CHECK(((uint64_t)(size >> s.shift) & 1) && (uint64_t)(size >> s.shift) * s.inv == 1);
  const uint64_t never = (uint64_t)1 << 32;   /* more blocks than any span holds */
  for (uint64_t j = 0; j < 9000; j += 1 + j / 64) {
    uint64_t off = j * size;
    CHECK_EQ(span_block_index(&s, off), j);
    CHECK(span_block_index(&s, off + 1) >= never);
    CHECK(span_block_index(&s, off + size / 2) >= never || size / 2 == 0);
    CHECK(span_block_index(&s, off + size - 1) >= never || size == 1);
    if (size % 16 == 0) CHECK(span_block_index(&s, off + 16) >= never || size == 16);
    CHECK(span_block_index(&s, (uint64_t)0 - size * (j + 1)) >= never);   /* below start */
    CHECK(span_block_index(&s, (uint64_t)0 - 1 - off) >= never);
  }
}

TEST(block_index) {
  for (unsigned c = 1; c < SC_NCLASSES; c++) index_exact(sc_info[c].size);
  uint32_t odd[] = { 16, 17, 24, 40, 48, 100, 129, 4095, 4096, 12288, 65536 + 8, (1u << 20) + 16, 2097151 };
  for (unsigned i = 0; i < sizeof odd / sizeof odd[0]; i++) index_exact(odd[i]);
}

int main(int argc, char **argv) {
  sizeclass_init();
  return UNIT_RUN(argc, argv);
}
