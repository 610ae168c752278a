/* A module that prof_stress dlopens and dlcloses while other threads are
 * sampled: the unwinder must cope with objects coming and going. */
#include <stdlib.h>
#include <string.h>

__attribute__((visibility("default"))) void *prof_stress_module_alloc(size_t n) {
  void *p = malloc(n);
  if (p) memset(p, 0, n);
  return p;
}
