#include "safety.h"
#include "os.h"

#include <stdlib.h>
#include <string.h>

size_t fmt_u64(char *buf, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
  return n;
}

size_t fmt_hex(char *buf, uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  char tmp[16];
  size_t n = 0;
  do { tmp[n++] = digits[v & 15]; v >>= 4; } while (v);
  buf[0] = '0'; buf[1] = 'x';
  for (size_t i = 0; i < n; i++) buf[2 + i] = tmp[n - 1 - i];
  return n + 2;
}

static size_t put(char *buf, size_t at, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (at + n > cap) n = cap - at;
  memcpy(buf + at, s, n);
  return at + n;
}

void safety_report(const char *what, const void *ptr, const char *detail, long num, const char *func) {
  char line[256];
  char num_buf[32];
  size_t at = 0, cap = sizeof line - 1;
  at = put(line, at, cap, "tidalloc: ");
  at = put(line, at, cap, what);
  at = put(line, at, cap, " of ");
  num_buf[fmt_hex(num_buf, (uint64_t)(uintptr_t)ptr)] = 0;
  at = put(line, at, cap, num_buf);
  if (detail) {
    at = put(line, at, cap, " (");
    at = put(line, at, cap, detail);
    if (num >= 0) {
      num_buf[fmt_u64(num_buf, (uint64_t)num)] = 0;
      at = put(line, at, cap, " ");
      at = put(line, at, cap, num_buf);
    }
    at = put(line, at, cap, ")");
  }
  if (func) {
    at = put(line, at, cap, " in ");
    at = put(line, at, cap, func);
    at = put(line, at, cap, "()");
  }
  line[at++] = '\n';
  os_write_stderr(line, at);
  abort();
}

void safety_assert_fail(const char *file, int line_no, const char *expr) {
  char line[256], num[24];
  size_t at = 0, cap = sizeof line - 1;
  at = put(line, at, cap, "tidalloc: internal assertion failed: ");
  at = put(line, at, cap, expr);
  at = put(line, at, cap, " at ");
  at = put(line, at, cap, file);
  at = put(line, at, cap, ":");
  num[fmt_u64(num, (uint64_t)line_no)] = 0;
  at = put(line, at, cap, num);
  line[at++] = '\n';
  os_write_stderr(line, at);
  abort();
}

void safety_misuse_words(const char *fn, const char **invalid, const char **twice) {
  bool is_free = strncmp(fn, "free", 4) == 0 || strncmp(fn, "operator delete", 15) == 0;
  *invalid = is_free ? "invalid free" : "invalid pointer";
  *twice = is_free ? "double free" : "use of a freed block";
}

void safety_warn(const char *msg1, const char *msg2) {
  char line[512];
  size_t at = 0, cap = sizeof line - 1;
  at = put(line, at, cap, "tidalloc: ");
  at = put(line, at, cap, msg1);
  if (msg2) at = put(line, at, cap, msg2);
  line[at++] = '\n';
  os_write_stderr(line, at);
}
