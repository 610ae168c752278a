/* Test shim, preloaded before tidalloc by regress_huge_realloc: mremap works
 * as usual, but the calling thread sleeps 200 us after a moving mremap
 * returns, as a preemption at that point would. It widens a race window
 * that exists anyway and changes nothing else. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...) {
  static void *(*real)(void *, size_t, size_t, int, ...);
  if (!real) real = (void *(*)(void *, size_t, size_t, int, ...))dlsym(RTLD_NEXT, "mremap");
  void *dest = NULL;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    dest = va_arg(ap, void *);
    va_end(ap);
  }
  void *p = real(old, old_size, new_size, flags, dest);
  if (p != MAP_FAILED && p != old) usleep(200);
  return p;
}
