/*
 * cmd.h — the tidalloc command (not part of the library): shared helpers of
 * its subcommands.
 *
 * run      (run.c)     runs a program on the library (LD_PRELOAD, TIDALLOC_CONF)
 * stats    (stats.c)   statistics of a live process, through its stats signal
 * options  (main.c)    the options table, generated from src/conf.c at build time
 * report   (report.c)  a heap profile (gperftools text format), symbolized
 * version  (main.c)
 *
 * Exit codes: 0 success, 1 failure, 2 usage; `run` ends with the program's
 * own status (127: program not found, 126: not executable).
 */
#ifndef TIDALLOC_CMD_H
#define TIDALLOC_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* One option, from the options table (generated options_table.c). */
typedef struct cmd_option_s {
  const char *name, *type, *def, *accepts, *doc;
} cmd_option_t;
extern const cmd_option_t cmd_options[];
extern const size_t cmd_options_len;
const cmd_option_t *cmd_option_find(const char *name, size_t len);

/* Print "tidalloc: MESSAGE" to stderr; return `code`. */
int cmd_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage error of subcommand `sub`: the message and a pointer to --help. */
int cmd_usage(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The library the command runs programs on: $TIDALLOC_LIB, else
 * PREFIX/LIBDIR/libtidalloc.so.0 where PREFIX is the command's own install
 * prefix, else libtidalloc.so.0 beside the command (a build tree). NULL (and
 * a message in why) when none exists. */
const char *cmd_library(char *why, size_t cap);
/* Ask the library in a child process (dlopen): does it know option `name`?
 * 1 yes, 0 no, -1 could not tell. *version (may be NULL) receives its version. */
int cmd_library_probe(const char *lib, const char *name, char *version, size_t cap);

/* ELF facts (elf.c). */
typedef enum { ELF_DYNAMIC, ELF_STATIC, ELF_NOT_ELF, ELF_UNREADABLE } elf_kind_t;
elf_kind_t elf_kind(const char *path);
/* The link-time address of file offset `off` in ELF object `path` (through
 * its PT_LOAD headers); false when no segment holds it. */
bool elf_offset_to_vaddr(const char *path, uint64_t off, uint64_t *vaddr);
/* The name of the function symbol (.symtab, else .dynsym) holding link-time
 * address vaddr, or false. */
bool elf_symbol(const char *path, uint64_t vaddr, char *name, size_t cap);

int cmd_run(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_report(int argc, char **argv);

#endif
