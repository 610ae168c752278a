/* The emitter alone: one call sequence, written as JSON and as text. */
#include "emitter.h"
#include "unit.h"

#include <string.h>

typedef struct sink_s { char text[8192]; size_t n; int chunks; size_t longest; } sink_t;

static void sink(void *arg, const char *s) {
  sink_t *k = arg;
  size_t len = strlen(s);
  CHECK(k->n + len < sizeof k->text);
  memcpy(k->text + k->n, s, len + 1);
  k->n += len;
  k->chunks++;
  if (len > k->longest) k->longest = len;
}

static const em_column_t cols[] = { { "name", true }, { "count", false } };

static void sequence(emitter_t *em) {
  em_begin(em, "demo");
  em_kv_str(em, "version", "1.2");
  em_kv_u64(em, "bytes", 4096, "B");
  em_dict_begin(em, "group");
  em_kv_bool(em, "on", true);
  em_kv_ratio(em, "ratio", 1, 3);
  em_kv_raw(em, "literal", "0.25");
  em_table_begin(em, "rows", cols, 2);
  for (unsigned i = 0; i < 2; i++) {
    em_row_begin(em);
    em_kv_str(em, "name", i ? "b" : "a");
    em_kv_u64(em, "count", i * 10, NULL);
    em_row_end(em);
  }
  em_table_end(em);
  em_dict_end(em);
  em_table_begin(em, "empty", cols, 2);
  em_table_end(em);
  em_end(em);
}

TEST(json_document) {
  sink_t k = { .n = 0 };
  emitter_t em;
  em_init(&em, true, sink, &k);
  sequence(&em);
  CHECK(strcmp(k.text, "{\"version\":\"1.2\",\"bytes\":4096,\"group\":{\"on\":true,\"ratio\":0.333,"
                       "\"literal\":0.25,\"rows\":[{\"name\":\"a\",\"count\":0},{\"name\":\"b\",\"count\":10}]},"
                       "\"empty\":[]}\n") == 0);
}

TEST(text_rendering) {
  sink_t k = { .n = 0 };
  emitter_t em;
  em_init(&em, false, sink, &k);
  sequence(&em);
  CHECK(strcmp(k.text, "___ demo ___\n"
                       "version:            1.2\n"
                       "bytes:              4096 B\n"
                       "group: on true, ratio 0.333, literal 0.25\n"
                       "  rows:\n"
                       "    name                          count\n"
                       "    a                                 0\n"
                       "    b                                10\n"
                       "empty:\n"
                       "  name                          count\n") == 0);

}

/* Long dictionary lines wrap; output comes in chunks that fit the buffer. */
TEST(long_lines_wrap_in_chunks) {
  sink_t k = { .n = 0 };
  emitter_t em;
  em_init(&em, false, sink, &k);
  em_begin(&em, "wrap");
  em_dict_begin(&em, "d");
  for (unsigned i = 0; i < 200; i++) em_kv_u64(&em, "key", i, NULL);
  em_dict_end(&em);
  em_end(&em);
  CHECK(k.chunks > 1 && k.longest < sizeof em.buf);
  for (const char *line = k.text; *line;) {
    const char *nl = strchr(line, '\n');
    CHECK(nl && nl - line <= 100);
    line = nl + 1;
  }
  CHECK(strstr(k.text, "key 199\n") != NULL);
}

UNIT_MAIN()
