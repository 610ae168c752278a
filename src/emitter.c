#include "emitter.h"
#include "safety.h"

#include <string.h>

#define TOP_LABEL_WIDTH 20    /* text: "key:" padded, then the value */
#define WRAP_COLUMN 100       /* text: a dictionary line wraps before this */
#define TEXT_CELL_WIDTH 24    /* text: a string column */

/* ---- output: a stack buffer written through the callback in chunks ----------- */

static void out_flush(emitter_t *em) {
  if (!em->n) return;
  em->buf[em->n] = 0;
  em->write(em->arg, em->buf);
  em->n = 0;
}

static void out_mem(emitter_t *em, const char *s, size_t len) {
  while (len) {
    if (em->n == sizeof em->buf - 1) out_flush(em);
    size_t k = TD_MIN(len, sizeof em->buf - 1 - em->n);
    memcpy(em->buf + em->n, s, k);
    em->n += k; s += k; len -= k;
  }
}

static void out_str(emitter_t *em, const char *s) { out_mem(em, s, strlen(s)); }

/* Text pieces keep track of the column. */
static void t_put(emitter_t *em, const char *s) {
  size_t len = strlen(s);
  out_mem(em, s, len);
  em->col += len;
}

static void t_spaces(emitter_t *em, size_t n) {
  static const char spaces[] = "                                ";
  while (n) {
    size_t k = TD_MIN(n, sizeof spaces - 1);
    out_mem(em, spaces, k);
    em->col += k;
    n -= k;
  }
}

static void t_newline(emitter_t *em) {
  out_str(em, "\n");
  em->col = 0;
  em->items = 0;
}

static void t_end_line(emitter_t *em) { if (em->col) t_newline(em); }
static size_t t_indent(const emitter_t *em) { return 2 * (size_t)em->depth; }

/* ---- document and containers ------------------------------------------------- */

void em_init(emitter_t *em, bool json, em_write_cb write, void *arg) {
  memset(em, 0, sizeof *em);
  em->json = json;
  em->write = write;
  em->arg = arg;
}

static void j_key(emitter_t *em, const char *key) {
  out_str(em, em->first ? "\"" : ",\"");
  em->first = false;
  out_str(em, key);
  out_str(em, "\":");
}

static void push(emitter_t *em, bool table) {
  TD_DASSERT(em->depth + 1 < EM_MAX_DEPTH);
  em->in_table[++em->depth] = table;
}

void em_begin(emitter_t *em, const char *title) {
  if (em->json) { out_str(em, "{"); em->first = true; return; }
  t_put(em, "___ ");
  t_put(em, title);
  t_put(em, " ___");
  t_newline(em);
}

void em_end(emitter_t *em) {
  if (em->json) out_str(em, "}\n");
  else t_end_line(em);
  out_flush(em);
}

void em_dict_begin(emitter_t *em, const char *key) {
  if (em->json) {
    j_key(em, key);
    out_str(em, "{");
    em->first = true;
  } else {
    t_end_line(em);
    t_spaces(em, t_indent(em));
    t_put(em, key);
    t_put(em, ":");
  }
  push(em, false);
}

void em_dict_end(emitter_t *em) {
  if (em->json) { out_str(em, "}"); em->first = false; }
  else t_end_line(em);
  em->depth--;
}

/* ---- tables -------------------------------------------------------------------- */

static size_t cell_width(const em_column_t *c) {
  return c->text ? TEXT_CELL_WIDTH : TD_MAX(strlen(c->key), 9) + 2;
}

/* Strings left-aligned, numbers right-aligned; cells never touch. */
static void t_cell(emitter_t *em, const em_column_t *c, const char *v) {
  size_t w = cell_width(c), len = strlen(v), pad = w > len ? w - len : 1;
  if (!c->text) t_spaces(em, pad);
  t_put(em, v);
  if (c->text) t_spaces(em, pad);
}

void em_table_begin(emitter_t *em, const char *key, const em_column_t *cols, unsigned ncols) {
  if (em->json) {
    j_key(em, key);
    out_str(em, "[");
    em->first = true;
    push(em, true);
    return;
  }
  t_end_line(em);
  t_spaces(em, t_indent(em));
  t_put(em, key);
  t_put(em, ":");
  t_newline(em);
  push(em, true);
  em->cols = cols;
  em->ncols = ncols;
  t_spaces(em, t_indent(em));
  for (unsigned i = 0; i < ncols; i++) t_cell(em, &cols[i], cols[i].key);
  t_newline(em);
}

void em_row_begin(emitter_t *em) {
  if (em->json) {
    out_str(em, em->first ? "{" : ",{");
    em->first = true;
    return;
  }
  t_spaces(em, t_indent(em));
  em->cell = 0;
}

void em_row_end(emitter_t *em) {
  if (em->json) { out_str(em, "}"); em->first = false; }
  else t_newline(em);
}

void em_table_end(emitter_t *em) {
  if (em->json) { out_str(em, "]"); em->first = false; }
  else { t_end_line(em); em->cols = NULL; em->ncols = 0; }
  em->depth--;
}

/* ---- values -------------------------------------------------------------------- */

/* Text, top level: "key:" padded, the value, one per line. */
static void t_top(emitter_t *em, const char *key, const char *val, const char *unit) {
  t_end_line(em);
  t_put(em, key);
  t_put(em, ":");
  t_spaces(em, em->col < TOP_LABEL_WIDTH ? TOP_LABEL_WIDTH - em->col : 1);
  t_put(em, val);
  if (unit) { t_put(em, " "); t_put(em, unit); }
  t_newline(em);
}

/* Text, in a dictionary: "k v" items separated by commas, wrapped. */
static void t_item(emitter_t *em, const char *key, const char *val, const char *unit) {
  size_t len = strlen(key) + 1 + strlen(val) + (unit ? 1 + strlen(unit) : 0);
  if (!em->col) {
    t_spaces(em, t_indent(em) + 2);    /* the line was ended by a nested table */
  } else if (!em->items) {
    t_put(em, " ");
  } else if (em->col + 2 + len > WRAP_COLUMN) {
    t_put(em, ",");
    t_newline(em);
    t_spaces(em, t_indent(em) + 2);
  } else {
    t_put(em, ", ");
  }
  t_put(em, key);
  t_put(em, " ");
  t_put(em, val);
  if (unit) { t_put(em, " "); t_put(em, unit); }
  em->items++;
}

static void kv(emitter_t *em, const char *key, const char *val, bool quote, const char *unit) {
  if (em->json) {
    j_key(em, key);
    if (quote) out_str(em, "\"");
    out_str(em, val);
    if (quote) out_str(em, "\"");
  } else if (em->in_table[em->depth]) {
    TD_DASSERT(em->cell < em->ncols);
    if (em->cell < em->ncols) t_cell(em, &em->cols[em->cell++], val);
  } else if (em->depth == 0) {
    t_top(em, key, val, unit);
  } else {
    t_item(em, key, val, unit);
  }
}

void em_kv_u64(emitter_t *em, const char *key, uint64_t v, const char *unit) {
  char tmp[24];
  tmp[fmt_u64(tmp, v)] = 0;
  kv(em, key, tmp, false, unit);
}

void em_kv_bool(emitter_t *em, const char *key, bool v) { kv(em, key, v ? "true" : "false", false, NULL); }
void em_kv_str(emitter_t *em, const char *key, const char *v) { kv(em, key, v, true, NULL); }
void em_kv_raw(emitter_t *em, const char *key, const char *literal) { kv(em, key, literal, false, NULL); }

void em_kv_ratio(emitter_t *em, const char *key, uint64_t num, uint64_t den) {
  uint64_t milli = den ? num * 1000 / den : 0;
  char tmp[32];
  size_t n = fmt_u64(tmp, milli / 1000);
  tmp[n++] = '.';
  tmp[n++] = (char)('0' + milli / 100 % 10);
  tmp[n++] = (char)('0' + milli / 10 % 10);
  tmp[n++] = (char)('0' + milli % 10);
  tmp[n] = 0;
  kv(em, key, tmp, false, NULL);
}
