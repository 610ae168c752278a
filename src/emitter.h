/*
 * emitter.h — one document written as JSON or as text from one sequence of
 * calls (the idea of jemalloc's emitter: the caller says what, the emitter
 * decides how).
 *
 * What it is: a writer for nested dictionaries of typed values and tables of
 * rows. JSON: one line, objects and arrays. Text: top-level values one per
 * line ("key: value"), a dictionary as one wrapped line ("key: k v, k v"), a
 * table as a heading, a header row of column keys and one aligned row per
 * element. Everything is formatted on the stack (the emitter_t, a 512-byte
 * buffer) and written through the caller's callback in chunks; it never
 * allocates and holds no lock, so the callback may do anything.
 * What it is not: a parser, or a general JSON library: keys and strings are
 * written as given, without escaping, so callers pass plain names.
 * It may call: safety (number formatting).
 */
#ifndef TIDAL_EMITTER_H
#define TIDAL_EMITTER_H

#include "util.h"

typedef void (*em_write_cb)(void *arg, const char *text);

/* A table column: its key, and whether it holds strings (left-aligned in text). */
typedef struct em_column_s {
  const char *key;
  bool text;
} em_column_t;

#define EM_MAX_DEPTH 8

typedef struct emitter_s {
  em_write_cb write;
  void *arg;
  bool json;
  bool first;                     /* JSON: no member written yet in this container */
  unsigned depth;                 /* open dictionaries and tables */
  bool in_table[EM_MAX_DEPTH];    /* text: what each open level is */
  const em_column_t *cols;        /* text: the innermost table's columns */
  unsigned ncols, cell;           /* text: the next cell of the current row */
  size_t col;                     /* text: characters on the current line */
  unsigned items;                 /* text: values on the current dictionary line */
  size_t n;
  char buf[512];
} emitter_t;

void em_init(emitter_t *em, bool json, em_write_cb write, void *arg);
/* Open the document (text: a title line) / close it and flush. */
void em_begin(emitter_t *em, const char *title);
void em_end(emitter_t *em);

void em_dict_begin(emitter_t *em, const char *key);
void em_dict_end(emitter_t *em);
/* A table of rows: JSON, an array of objects; text, aligned columns. The
 * columns must stay valid until em_table_end; each row gives its values in
 * column order. */
void em_table_begin(emitter_t *em, const char *key, const em_column_t *cols, unsigned ncols);
void em_row_begin(emitter_t *em);
void em_row_end(emitter_t *em);
void em_table_end(emitter_t *em);

/* Values. unit (text only, may be NULL) follows the number, as in "12 B". */
void em_kv_u64(emitter_t *em, const char *key, uint64_t v, const char *unit);
void em_kv_bool(emitter_t *em, const char *key, bool v);
void em_kv_str(emitter_t *em, const char *key, const char *v);
/* num / den with three decimals (0 when den is 0), without floating point. */
void em_kv_ratio(emitter_t *em, const char *key, uint64_t num, uint64_t den);
/* A value already formatted as a JSON literal (number or true/false). */
void em_kv_raw(emitter_t *em, const char *key, const char *literal);

#endif
