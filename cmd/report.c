/* tidalloc report PROFILE: the top allocation sites of a heap profile and a
 * flame graph.
 *
 * The profile is the gperftools heap-profile text format (what the library's
 * profiler writes with prof:true; pprof and jeprof read it too):
 *
 *   heap profile: INUSE_COUNT: INUSE_BYTES [ ALLOC_COUNT: ALLOC_BYTES] @ heapprofile
 *   (tidalloc writes "heapprofile": its figures are already unbiased, alloc 0: 0;
 *   other writers use heap_v2/RATE)
 *   INUSE_COUNT: INUSE_BYTES [ ALLOC_COUNT: ALLOC_BYTES] @ 0xPC 0xPC ...   (one per stack)
 *   ...
 *   MAPPED_LIBRARIES:
 *   START-END PERMS OFFSET DEV INODE PATH                               (/proc/PID/maps)
 *
 * Stacks list return addresses, innermost first. heap_v2/RATE means one
 * sample every RATE bytes on average: counts are unsampled as pprof does
 * (scale 1 / (1 - exp(-AVG / RATE)), AVG the stack's mean block size);
 * RATE 0 or 1 means every allocation was recorded. Addresses are symbolized
 * by mapping each to its object (MAPPED_LIBRARIES), then to the object's
 * link-time address (its PT_LOAD headers) and asking addr2line(1) for
 * function and line, with the object's own symbol table as the fallback. */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ADDR2LINE_BATCH 256
#define SVG_WIDTH 1200
#define SVG_ROW 16
#define TD_CMD_MIN(a, b) ((a) < (b) ? (a) : (b))

typedef struct map_s { uint64_t start, end, offset; char *path; } map_t;
typedef struct rec_s { double inuse_n, inuse_b, alloc_n, alloc_b; uint64_t *pcs; size_t npcs; } rec_t;
typedef struct sym_s { uint64_t pc; int map; char *func, *loc; } sym_t;

typedef struct profile_s {
  double rate;
  map_t *maps; size_t nmaps;
  rec_t *recs; size_t nrecs;
  sym_t *syms; size_t nsyms;
} profile_t;

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) { fputs("tidalloc: out of memory\n", stderr); exit(EXIT_FAIL); }
  return q;
}

static char *xstrdup(const char *s) { return strcpy(xrealloc(NULL, strlen(s) + 1), s); }

static void report_help(void) {
  printf("Usage: tidalloc report PROFILE [--top N] [--alloc] [--svg FILE]\n"
         "Read a heap profile written by tidalloc's profiler (run the program with\n"
         "'tidalloc run --prof -- PROGRAM', or TIDALLOC_CONF=prof:true), symbolize it and print\n"
         "the top allocation sites. PROFILE is the gperftools heap profile text format\n"
         "('heap profile: C: B [ C: B] @ heapprofile' or '@ heap_v2/RATE', one 'C: B [ C: B] @ 0xPC...' line per\n"
         "stack, then MAPPED_LIBRARIES: and the process's /proc/PID/maps).\n\n"
         "  --top N      show the N largest sites (default 10)\n"
         "  --alloc      rank by bytes allocated since the start, not bytes in use\n"
         "  --svg FILE   also draw a flame graph of the stacks into FILE (SVG)\n"
         "  -h, --help   this help\n"
         "Symbols come from addr2line(1) (binutils) and the objects' symbol tables; the objects\n"
         "must still be at the paths the profile names. Exit status: 0, 1 failure, 2 usage.\n");
}

/* ---- parsing ------------------------------------------------------------------ */

static void unsample(double rate, double *n, double *b) {
  if (rate <= 1 || *n <= 0) return;
  double scale = 1.0 / (1.0 - exp(-(*b / *n) / rate));
  *n *= scale;
  *b *= scale;
}

static bool parse_record(profile_t *p, const char *line) {
  rec_t r = { 0 };
  int at = 0;
  if (sscanf(line, " %lf: %lf [ %lf: %lf] @%n", &r.inuse_n, &r.inuse_b, &r.alloc_n, &r.alloc_b, &at) < 4 || !at)
    return false;
  for (const char *s = line + at;;) {
    char *end;
    errno = 0;
    unsigned long long pc = strtoull(s, &end, 16);
    if (end == s || errno) break;
    r.pcs = xrealloc(r.pcs, (r.npcs + 1) * sizeof *r.pcs);
    r.pcs[r.npcs++] = pc;
    s = end;
  }
  unsample(p->rate, &r.inuse_n, &r.inuse_b);
  unsample(p->rate, &r.alloc_n, &r.alloc_b);
  p->recs = xrealloc(p->recs, (p->nrecs + 1) * sizeof *p->recs);
  p->recs[p->nrecs++] = r;
  return true;
}

static void parse_map(profile_t *p, const char *line) {
  unsigned long long start, end, off;
  int path_at = 0;
  if (sscanf(line, "%llx-%llx %*s %llx %*s %*s %n", &start, &end, &off, &path_at) < 3 || !path_at) return;
  char *path = xstrdup(line + path_at);
  path[strcspn(path, "\n")] = 0;
  if (path[0] != '/') { free(path); return; }
  p->maps = xrealloc(p->maps, (p->nmaps + 1) * sizeof *p->maps);
  p->maps[p->nmaps++] = (map_t){ start, end, off, path };
}

static int profile_read(const char *file, profile_t *p) {
  FILE *f = fopen(file, "r");
  if (!f) return cmd_error(EXIT_FAIL, "%s: %s", file, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  double h[4];
  char kind[64] = "";
  bool ok = getline(&line, &cap, f) > 0 &&
            sscanf(line, "heap profile: %lf: %lf [ %lf: %lf] @ %63s", &h[0], &h[1], &h[2], &h[3], kind) == 5 &&
            !strncmp(kind, "heap", 4);
  if (ok) {
    const char *slash = strchr(kind, '/');
    p->rate = slash ? atof(slash + 1) : 0;
    bool maps = false;
    while (getline(&line, &cap, f) > 0) {
      if (!strncmp(line, "MAPPED_LIBRARIES:", 17)) maps = true;
      else if (maps) parse_map(p, line);
      else if (!parse_record(p, line) && line[strspn(line, " \t\n")])
        fprintf(stderr, "tidalloc: %s: ignoring line: %s", file, line);
    }
  }
  free(line);
  fclose(f);
  if (!ok)
    return cmd_error(EXIT_FAIL, "%s is not a heap profile: expected the gperftools heap profile text format "
                     "('heap profile: C: B [ C: B] @ heapprofile' ...), as tidalloc's profiler writes it "
                     "(tidalloc run --prof)", file);
  return EXIT_OK;
}

/* ---- symbols ------------------------------------------------------------------- */

static int map_of(const profile_t *p, uint64_t pc) {
  for (size_t i = 0; i < p->nmaps; i++)
    if (pc >= p->maps[i].start && pc < p->maps[i].end) return (int)i;
  return -1;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static sym_t *sym_find(const profile_t *p, uint64_t pc) {
  size_t lo = 0, hi = p->nsyms;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (p->syms[mid].pc < pc) lo = mid + 1;
    else hi = mid;
  }
  return lo < p->nsyms && p->syms[lo].pc == pc ? &p->syms[lo] : NULL;
}

/* addr2line -f -C -e OBJ ADDR...: two lines (function, file:line) per address. */
static void addr2line(const char *obj, sym_t **syms, const uint64_t *vaddrs, size_t n) {
  int fds[2];
  if (pipe(fds) != 0) return;
  char **argv = xrealloc(NULL, (n + 6) * sizeof *argv);
  char (*hex)[24] = xrealloc(NULL, n * sizeof *hex);
  argv[0] = "addr2line"; argv[1] = "-f"; argv[2] = "-C"; argv[3] = "-e"; argv[4] = (char *)obj;
  for (size_t i = 0; i < n; i++) {
    snprintf(hex[i], sizeof hex[i], "0x%llx", (unsigned long long)vaddrs[i]);
    argv[5 + i] = hex[i];
  }
  argv[5 + n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    int null = open("/dev/null", 1);
    if (null >= 0) dup2(null, 2);
    execvp("addr2line", argv);
    _exit(127);
  }
  close(fds[1]);
  FILE *out = fdopen(fds[0], "r");
  char func[1024], loc[1024];
  for (size_t i = 0; out && pid > 0 && i < n && fgets(func, sizeof func, out) && fgets(loc, sizeof loc, out); i++) {
    func[strcspn(func, "\n")] = loc[strcspn(loc, " \n")] = 0;
    if (strcmp(func, "??")) syms[i]->func = xstrdup(func);
    if (strncmp(loc, "??", 2)) {
      const char *base = strrchr(loc, '/');
      syms[i]->loc = xstrdup(base ? base + 1 : loc);
    }
  }
  if (out) fclose(out);
  else close(fds[0]);
  if (pid > 0) waitpid(pid, NULL, 0);
  free(argv);
  free(hex);
}

/* Symbolize every address of object m (in batches). */
static void symbolize_object(profile_t *p, int m) {
  sym_t **batch = xrealloc(NULL, ADDR2LINE_BATCH * sizeof *batch);
  uint64_t *vaddrs = xrealloc(NULL, ADDR2LINE_BATCH * sizeof *vaddrs);
  size_t n = 0;
  for (size_t i = 0; i <= p->nsyms; i++) {
    if (i < p->nsyms && p->syms[i].map == m) {
      const map_t *mp = &p->maps[m];
      uint64_t off = p->syms[i].pc - 1 - mp->start + mp->offset;   /* pc - 1: inside the call */
      if (elf_offset_to_vaddr(mp->path, off, &vaddrs[n])) batch[n++] = &p->syms[i];
    }
    if (n && (n == ADDR2LINE_BATCH || i == p->nsyms)) {
      addr2line(p->maps[m].path, batch, vaddrs, n);
      for (size_t k = 0; k < n; k++) {
        char name[512];
        if (!batch[k]->func && elf_symbol(p->maps[m].path, vaddrs[k], name, sizeof name))
          batch[k]->func = xstrdup(name);
      }
      n = 0;
    }
  }
  free(batch);
  free(vaddrs);
}

static void symbolize(profile_t *p) {
  uint64_t *pcs = NULL;
  size_t n = 0;
  for (size_t i = 0; i < p->nrecs; i++) {
    pcs = xrealloc(pcs, (n + p->recs[i].npcs) * sizeof *pcs);
    memcpy(pcs + n, p->recs[i].pcs, p->recs[i].npcs * sizeof *pcs);
    n += p->recs[i].npcs;
  }
  qsort(pcs, n, sizeof *pcs, cmp_u64);
  p->syms = xrealloc(NULL, n * sizeof *p->syms);
  for (size_t i = 0; i < n; i++)
    if (!i || pcs[i] != pcs[i - 1]) p->syms[p->nsyms++] = (sym_t){ pcs[i], map_of(p, pcs[i]), NULL, NULL };
  free(pcs);
  if (isatty(2)) fprintf(stderr, "tidalloc: symbolizing %zu addresses...\n", p->nsyms);
  for (size_t m = 0; m < p->nmaps; m++) {
    bool first = true;   /* one pass per object path, on its first mapping */
    for (size_t k = 0; k < m && first; k++) first = strcmp(p->maps[k].path, p->maps[m].path) != 0;
    if (!first) continue;
    for (size_t i = 0; i < p->nsyms; i++)   /* the object's other mappings count as this one */
      if (p->syms[i].map >= 0 && !strcmp(p->maps[p->syms[i].map].path, p->maps[m].path)) p->syms[i].map = (int)m;
    symbolize_object(p, (int)m);
  }
  for (size_t i = 0; i < p->nsyms; i++) {   /* what nothing named: object+offset, or the address */
    sym_t *s = &p->syms[i];
    char name[600];
    if (s->func) continue;
    if (s->map < 0) snprintf(name, sizeof name, "0x%llx", (unsigned long long)s->pc);
    else {
      const char *base = strrchr(p->maps[s->map].path, '/');
      snprintf(name, sizeof name, "%s+0x%llx", base + 1,
               (unsigned long long)(s->pc - p->maps[s->map].start + p->maps[s->map].offset));
    }
    s->func = xstrdup(name);
  }
}

/* Whether a frame is the allocator's own (skipped: sites are its callers). */
static bool frame_is_allocator(const profile_t *p, const sym_t *s) {
  if (s->map < 0) return false;
  const char *base = strrchr(p->maps[s->map].path, '/');
  return !strncmp(base + 1, "libtidalloc", 11);
}

/* Index of the first frame of r that is not the allocator's. */
static size_t first_user_frame(const profile_t *p, const rec_t *r) {
  size_t i = 0;
  while (i + 1 < r->npcs && frame_is_allocator(p, sym_find(p, r->pcs[i]))) i++;
  return i;
}

/* ---- top sites ---------------------------------------------------------------- */

typedef struct site_s { const sym_t *sym; double n, b, alloc_n, alloc_b; } site_t;

static int cmp_site(const void *a, const void *b) {
  const site_t *x = a, *y = b;
  return x->b < y->b ? 1 : x->b > y->b ? -1 : strcmp(x->sym->func, y->sym->func);
}

static const char *human(double b, char *buf) {
  const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  int u = 0;
  while (b >= 1024 && u < 4) { b /= 1024; u++; }
  sprintf(buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

static bool same_site(const sym_t *a, const sym_t *b) {
  return !strcmp(a->func, b->func) && (a->loc && b->loc ? !strcmp(a->loc, b->loc) : a->loc == b->loc);
}

static void print_top(const profile_t *p, const char *file, size_t top, bool by_alloc) {
  site_t *sites = NULL;
  size_t n = 0;
  double tot_n = 0, tot_b = 0, all_n = 0, all_b = 0;
  for (size_t i = 0; i < p->nrecs; i++) {
    const rec_t *r = &p->recs[i];
    tot_n += r->inuse_n; tot_b += r->inuse_b; all_n += r->alloc_n; all_b += r->alloc_b;
    if (!r->npcs) continue;
    const sym_t *s = sym_find(p, r->pcs[first_user_frame(p, r)]);
    size_t k = 0;
    while (k < n && !same_site(sites[k].sym, s)) k++;
    if (k == n) { sites = xrealloc(sites, (n + 1) * sizeof *sites); sites[n++] = (site_t){ s, 0, 0, 0, 0 }; }
    sites[k].n += by_alloc ? r->alloc_n : r->inuse_n;
    sites[k].b += by_alloc ? r->alloc_b : r->inuse_b;
    sites[k].alloc_n += r->alloc_n;
    sites[k].alloc_b += r->alloc_b;
  }
  qsort(sites, n, sizeof *sites, cmp_site);
  char h1[32], h2[32];
  printf("%s: %zu stacks, %s", file, p->nrecs, p->rate > 1 ? "" : "every allocation recorded\n");
  if (p->rate > 1) printf("sampled every %.0f B on average (figures unsampled)\n", p->rate);
  printf("in use: %s in %.0f blocks; allocated since the start: %s in %.0f blocks\n", human(tot_b, h1), tot_n,
         human(all_b, h2), all_n);
  double total = by_alloc ? all_b : tot_b;
  printf("\ntop %zu allocation sites by bytes %s:\n", TD_CMD_MIN(top, n), by_alloc ? "allocated" : "in use");
  printf("%12s %7s %10s  %12s  %s\n", by_alloc ? "allocated" : "in use", "share", "blocks", "allocated", "site");
  for (size_t i = 0; i < n && i < top; i++) {
    const site_t *s = &sites[i];
    printf("%12s %6.1f%% %10.0f  %12s  %s", human(s->b, h1), total > 0 ? 100.0 * s->b / total : 0.0, s->n,
           human(s->alloc_b, h2), s->sym->func);
    if (s->sym->loc) printf(" (%s)", s->sym->loc);
    putchar('\n');
  }
  free(sites);
}

/* ---- flame graph ----------------------------------------------------------------- */

typedef struct node_s {
  const char *name;
  double value;
  struct node_s *kids;
  size_t nkids;
} node_t;

static node_t *child(node_t *n, const char *name) {
  for (size_t i = 0; i < n->nkids; i++) if (!strcmp(n->kids[i].name, name)) return &n->kids[i];
  n->kids = xrealloc(n->kids, (n->nkids + 1) * sizeof *n->kids);
  n->kids[n->nkids] = (node_t){ name, 0, NULL, 0 };
  return &n->kids[n->nkids++];
}

static size_t depth_of(const node_t *n) {
  size_t d = 0;
  for (size_t i = 0; i < n->nkids; i++) {
    size_t k = depth_of(&n->kids[i]);
    if (k > d) d = k;
  }
  return d + 1;
}

static void xml_text(FILE *f, const char *s, size_t max) {
  for (size_t i = 0; s[i] && i < max; i++) {
    if (s[i] == '<') fputs("&lt;", f);
    else if (s[i] == '>') fputs("&gt;", f);
    else if (s[i] == '&') fputs("&amp;", f);
    else if (s[i] == '"') fputs("&quot;", f);
    else fputc(s[i], f);
  }
}

static void svg_node(FILE *f, const node_t *n, double x, size_t depth, double scale, double total, int height) {
  double w = n->value * scale;
  if (w < 0.5) return;
  int y = height - (int)(depth + 2) * SVG_ROW;
  unsigned h = 0;
  for (const char *c = n->name; *c; c++) h = h * 31 + (unsigned char)*c;
  char size[32];
  fprintf(f, "<g><title>");
  xml_text(f, n->name, SIZE_MAX);
  fprintf(f, " (%s, %.1f%%)</title><rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"rgb(%u,%u,%u)\"/>",
          human(n->value, size), 100.0 * n->value / total, x, y, w, SVG_ROW - 1, 205 + h % 50, 80 + h / 50 % 120,
          40 + h / 6000 % 40);
  size_t chars = (size_t)(w / 7);
  if (chars >= 3) {
    fprintf(f, "<text x=\"%.1f\" y=\"%d\">", x + 3, y + SVG_ROW - 4);
    xml_text(f, n->name, strlen(n->name) > chars ? chars - 2 : chars);
    if (strlen(n->name) > chars) fputs("..", f);
    fputs("</text>", f);
  }
  fputs("</g>\n", f);
  for (size_t i = 0; i < n->nkids; i++) {
    svg_node(f, &n->kids[i], x, depth + 1, scale, total, height);
    x += n->kids[i].value * scale;
  }
}

static int write_svg(const profile_t *p, const char *file, bool by_alloc) {
  node_t root = { "all", 0, NULL, 0 };
  for (size_t i = 0; i < p->nrecs; i++) {
    const rec_t *r = &p->recs[i];
    double v = by_alloc ? r->alloc_b : r->inuse_b;
    if (!r->npcs || v <= 0) continue;
    node_t *n = &root;
    n->value += v;
    size_t leaf = first_user_frame(p, r);
    for (size_t k = r->npcs; k-- > leaf;) {   /* outermost caller first */
      n = child(n, sym_find(p, r->pcs[k])->func);
      n->value += v;
    }
  }
  FILE *f = fopen(file, "w");
  if (!f) return cmd_error(EXIT_FAIL, "%s: %s", file, strerror(errno));
  int height = (int)(depth_of(&root) + 2) * SVG_ROW + 8;
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
          "height=\"%d\" font-family=\"monospace\" font-size=\"11\">\n", SVG_WIDTH, height);
  fprintf(f, "<text x=\"10\" y=\"14\" font-size=\"13\">tidalloc heap profile: bytes %s by stack</text>\n",
          by_alloc ? "allocated" : "in use");
  if (root.value > 0) svg_node(f, &root, 10, 0, (SVG_WIDTH - 20) / root.value, root.value, height);
  fputs("</svg>\n", f);
  return fclose(f) == 0 ? EXIT_OK : cmd_error(EXIT_FAIL, "%s: %s", file, strerror(errno));
}

/* ---- the subcommand ------------------------------------------------------------------ */

int cmd_report(int argc, char **argv) {
  const char *file = NULL, *svg = NULL;
  size_t top = 10;
  bool by_alloc = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    char *end;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { report_help(); return EXIT_OK; }
    if (!strcmp(a, "--alloc")) by_alloc = true;
    else if (!strcmp(a, "--top") && i + 1 < argc) {
      long v = strtol(argv[++i], &end, 10);
      if (*end || v <= 0) return cmd_usage("report", "bad --top '%s'", argv[i]);
      top = (size_t)v;
    } else if (!strcmp(a, "--svg") && i + 1 < argc) svg = argv[++i];
    else if (a[0] != '-' && !file) file = a;
    else return cmd_usage("report", "unknown argument '%s'", a);
  }
  if (!file)
    return cmd_usage("report", "needs a PROFILE: a heap profile in the gperftools text format, as the "
                     "profiler writes with 'tidalloc run --prof -- PROGRAM'");
  profile_t p = { 0 };
  int rc = profile_read(file, &p);
  if (rc != EXIT_OK) return rc;
  symbolize(&p);
  print_top(&p, file, top, by_alloc);
  if (svg && (rc = write_svg(&p, svg, by_alloc)) == EXIT_OK) printf("\nflame graph: %s\n", svg);
  return rc;
}
