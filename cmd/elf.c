/* ELF facts the command needs: whether a program is dynamically linked (so
 * that LD_PRELOAD can work), and, for `report`, file offsets to link-time
 * addresses and function symbols. Reads the file through a read-only
 * mapping; 64-bit objects for symbols, both classes for the kind. */
#include "cmd.h"

#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct mapped_s {
  const unsigned char *p;
  size_t size;
} mapped_t;

static bool map_file(const char *path, mapped_t *m) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
  void *p = ok ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  close(fd);
  if (p == MAP_FAILED) return false;
  m->p = p;
  m->size = (size_t)st.st_size;
  return true;
}

static void unmap_file(mapped_t *m) { munmap((void *)m->p, m->size); }

static bool in_file(const mapped_t *m, uint64_t off, uint64_t len) {
  return off <= m->size && len <= m->size - off;
}

/* A 64-bit ELF header whose program and section tables fit in the file. */
static const Elf64_Ehdr *elf64(const mapped_t *m) {
  if (m->size < sizeof(Elf64_Ehdr) || memcmp(m->p, ELFMAG, SELFMAG) || m->p[EI_CLASS] != ELFCLASS64) return NULL;
  const Elf64_Ehdr *e = (const Elf64_Ehdr *)m->p;
  if (!in_file(m, e->e_phoff, (uint64_t)e->e_phnum * sizeof(Elf64_Phdr)) ||
      !in_file(m, e->e_shoff, (uint64_t)e->e_shnum * sizeof(Elf64_Shdr))) return NULL;
  return e;
}

elf_kind_t elf_kind(const char *path) {
  mapped_t m;
  if (!map_file(path, &m)) return ELF_UNREADABLE;
  elf_kind_t kind = ELF_NOT_ELF;
  if (m.size >= sizeof(Elf32_Ehdr) && !memcmp(m.p, ELFMAG, SELFMAG)) {
    kind = ELF_STATIC;   /* until a PT_INTERP shows the dynamic loader runs it */
    if (m.p[EI_CLASS] == ELFCLASS64 && elf64(&m)) {
      const Elf64_Ehdr *e = (const Elf64_Ehdr *)m.p;
      const Elf64_Phdr *ph = (const Elf64_Phdr *)(m.p + e->e_phoff);
      for (unsigned i = 0; i < e->e_phnum; i++) if (ph[i].p_type == PT_INTERP) kind = ELF_DYNAMIC;
    } else if (m.p[EI_CLASS] == ELFCLASS32) {
      const Elf32_Ehdr *e = (const Elf32_Ehdr *)m.p;
      if (in_file(&m, e->e_phoff, (uint64_t)e->e_phnum * sizeof(Elf32_Phdr))) {
        const Elf32_Phdr *ph = (const Elf32_Phdr *)(m.p + e->e_phoff);
        for (unsigned i = 0; i < e->e_phnum; i++) if (ph[i].p_type == PT_INTERP) kind = ELF_DYNAMIC;
      }
    }
  }
  unmap_file(&m);
  return kind;
}

bool elf_offset_to_vaddr(const char *path, uint64_t off, uint64_t *vaddr) {
  mapped_t m;
  if (!map_file(path, &m)) return false;
  bool found = false;
  const Elf64_Ehdr *e = elf64(&m);
  if (e) {
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(m.p + e->e_phoff);
    for (unsigned i = 0; i < e->e_phnum && !found; i++) {
      if (ph[i].p_type != PT_LOAD || off < ph[i].p_offset || off - ph[i].p_offset >= ph[i].p_filesz) continue;
      *vaddr = ph[i].p_vaddr + (off - ph[i].p_offset);
      found = true;
    }
  }
  unmap_file(&m);
  return found;
}

/* The function symbol of table `sh` holding vaddr (best: the closest start). */
static bool symbol_in(const mapped_t *m, const Elf64_Shdr *shdrs, unsigned shnum, const Elf64_Shdr *sh,
                      uint64_t vaddr, char *name, size_t cap) {
  if (sh->sh_link >= shnum || !in_file(m, sh->sh_offset, sh->sh_size)) return false;
  const Elf64_Shdr *strs = &shdrs[sh->sh_link];
  if (!in_file(m, strs->sh_offset, strs->sh_size)) return false;
  const Elf64_Sym *syms = (const Elf64_Sym *)(m->p + sh->sh_offset);
  size_t n = sh->sh_size / sizeof(Elf64_Sym);
  const Elf64_Sym *best = NULL;
  for (size_t i = 0; i < n; i++) {
    const Elf64_Sym *s = &syms[i];
    if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_value > vaddr || s->st_name >= strs->sh_size) continue;
    if (s->st_size ? vaddr - s->st_value >= s->st_size : vaddr != s->st_value) continue;
    if (!best || s->st_value > best->st_value) best = s;
  }
  if (!best) return false;
  snprintf(name, cap, "%s", (const char *)(m->p + strs->sh_offset + best->st_name));
  return true;
}

bool elf_symbol(const char *path, uint64_t vaddr, char *name, size_t cap) {
  mapped_t m;
  if (!map_file(path, &m)) return false;
  bool found = false;
  const Elf64_Ehdr *e = elf64(&m);
  if (e && e->e_shentsize == sizeof(Elf64_Shdr)) {
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(m.p + e->e_shoff);
    for (int pass = 0; pass < 2 && !found; pass++)   /* .symtab first, then .dynsym */
      for (unsigned i = 0; i < e->e_shnum && !found; i++)
        if (sh[i].sh_type == (pass ? SHT_DYNSYM : SHT_SYMTAB))
          found = symbol_in(&m, sh, e->e_shnum, &sh[i], vaddr, name, cap);
  }
  unmap_file(&m);
  return found;
}
