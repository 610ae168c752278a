/* Defect: the option parser overflowed a signed integer on long numbers
 * (undefined behaviour: UBSan aborts this test, built with
 * -fsanitize=undefined), and the documented maximum of memory_limit
 * (9223372036854775807) was rejected. Built from conf.c, os.c and safety.c. */
#include "conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
#define EXPECT(cond) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); fails++; } } while (0)

static int64_t get(const char *name) { return conf_get(conf_find(name, strlen(name))); }

int main(void) {
  conf_init();
  EXPECT(conf_parse("memory_limit:9223372036854775807", "test") == 0);
  EXPECT(get("memory_limit") == INT64_MAX);
  EXPECT(conf_parse("memory_limit:9223372036854775808", "test") == 1);       /* one past: refused */
  EXPECT(conf_parse("memory_limit:99999999999999999999999", "test") == 1);
  EXPECT(conf_parse("memory_limit:-9223372036854775808", "test") == 1);
  EXPECT(conf_parse("memory_limit:8589934591g", "test") == 0);             /* 2^63 - 2^30: fits */
  EXPECT(get("memory_limit") == (int64_t)8589934591 << 30);
  EXPECT(conf_parse("memory_limit:8589934592g", "test") == 1);             /* 2^63: does not */
  EXPECT(conf_parse("dirty_mult:9223372036854775.807", "test") == 1);      /* scaled by 1000: overflow */
  EXPECT(conf_parse("dirty_mult:922337203685477.5807", "test") == 1);      /* fits, but out of range */
  EXPECT(conf_parse("dirty_mult:0.25", "test") == 0 && get("dirty_mult") == 250);
  EXPECT(conf_parse("dirty_mult:1.0005", "test") == 0 && get("dirty_mult") == 1000);
  EXPECT(conf_parse("dirty_decay_ms:-1", "test") == 0 && get("dirty_decay_ms") == -1);
  EXPECT(conf_parse("dirty_decay_ms:--1", "test") == 1);
  EXPECT(conf_parse("guard_sample:1000000000", "test") == 0);
  printf(fails ? "regress_conf: %d failures\n" : "regress_conf: OK\n", fails);
  return fails != 0;
}
