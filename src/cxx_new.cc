// The C++ operator new/delete family, routed to the same paths as malloc/free.
// This is the project's only C++ file.
//
// The library does not link libstdc++ (that would cost every C program that
// preloads tidalloc about 1.3 MB of RSS). On the rare failure path, new looks
// up the C++ runtime it needs with dlsym: std::get_new_handler, and what
// `throw std::bad_alloc()` compiles to (__cxa_allocate_exception, __cxa_throw,
// bad_alloc's typeinfo, vtable and destructor, Itanium C++ ABI). A program
// that calls operator new has libstdc++ loaded, so they are found.
// Built with -fno-exceptions: nothing here catches, but the unwind tables
// (on by default) let the exception pass through these frames.
// Limitation: nothrow new whose new_handler throws terminates (libstdc++
// would catch and return nullptr).
#include <cstddef>
#include <cstdlib>
#include <dlfcn.h>
#include <new>

#include "api.h"

#define TD_CXX_EXPORT __attribute__((visibility("default")))

namespace {

std::new_handler current_new_handler() {
  using get_fn = std::new_handler (*)();
  get_fn get = reinterpret_cast<get_fn>(dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv"));
  return get ? get() : nullptr;
}

[[noreturn, gnu::cold]] void throw_bad_alloc() {
  using alloc_fn = void *(*)(std::size_t);
  using throw_fn = void (*)(void *, void *, void (*)(void *));
  auto alloc = reinterpret_cast<alloc_fn>(dlsym(RTLD_DEFAULT, "__cxa_allocate_exception"));
  auto raise = reinterpret_cast<throw_fn>(dlsym(RTLD_DEFAULT, "__cxa_throw"));
  void *type_info = dlsym(RTLD_DEFAULT, "_ZTISt9bad_alloc");
  void *vtable = dlsym(RTLD_DEFAULT, "_ZTVSt9bad_alloc");
  auto dtor = reinterpret_cast<void (*)(void *)>(dlsym(RTLD_DEFAULT, "_ZNSt9bad_allocD1Ev"));
  if (!alloc || !raise || !type_info || !vtable) std::abort();
  // A std::bad_alloc is one vtable pointer: the vtable's address point is
  // past its offset-to-top and typeinfo slots.
  void *obj = alloc(sizeof(void *));
  *static_cast<void **>(obj) = static_cast<char *>(vtable) + 2 * sizeof(void *);
  raise(obj, type_info, dtor);
  std::abort();
}

[[gnu::noinline, gnu::cold]] void *new_slow(std::size_t size, std::size_t align, bool nothrow) {
  for (;;) {
    void *p = align ? td_aligned(align, size) : td_malloc(size);
    if (p) return p;
    std::new_handler handler = current_new_handler();
    if (!handler) {
      if (nothrow) return nullptr;
      throw_bad_alloc();
    }
    handler();
  }
}

inline void *do_new(std::size_t size) {
  void *p = td_malloc(size);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return new_slow(size, 0, false);
}

inline void *do_new_nothrow(std::size_t size) noexcept {
  void *p = td_malloc(size);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return new_slow(size, 0, true);
}

inline void *do_new_aligned(std::size_t size, std::align_val_t al) {
  void *p = td_aligned(static_cast<std::size_t>(al), size);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return new_slow(size, static_cast<std::size_t>(al), false);
}

inline void *do_new_aligned_nothrow(std::size_t size, std::align_val_t al) noexcept {
  void *p = td_aligned(static_cast<std::size_t>(al), size);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return new_slow(size, static_cast<std::size_t>(al), true);
}

}  // namespace

TD_CXX_EXPORT void *operator new(std::size_t n) { return do_new(n); }
TD_CXX_EXPORT void *operator new[](std::size_t n) { return do_new(n); }
TD_CXX_EXPORT void *operator new(std::size_t n, const std::nothrow_t &) noexcept { return do_new_nothrow(n); }
TD_CXX_EXPORT void *operator new[](std::size_t n, const std::nothrow_t &) noexcept { return do_new_nothrow(n); }
TD_CXX_EXPORT void *operator new(std::size_t n, std::align_val_t al) { return do_new_aligned(n, al); }
TD_CXX_EXPORT void *operator new[](std::size_t n, std::align_val_t al) { return do_new_aligned(n, al); }
TD_CXX_EXPORT void *operator new(std::size_t n, std::align_val_t al, const std::nothrow_t &) noexcept {
  return do_new_aligned_nothrow(n, al);
}
TD_CXX_EXPORT void *operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t &) noexcept {
  return do_new_aligned_nothrow(n, al);
}

TD_CXX_EXPORT void operator delete(void *p) noexcept { td_free(p); }
TD_CXX_EXPORT void operator delete[](void *p) noexcept { td_free(p); }
TD_CXX_EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { td_free(p); }
TD_CXX_EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { td_free(p); }
TD_CXX_EXPORT void operator delete(void *p, std::size_t n) noexcept { td_free_sized(p, n); }
TD_CXX_EXPORT void operator delete[](void *p, std::size_t n) noexcept { td_free_sized(p, n); }
TD_CXX_EXPORT void operator delete(void *p, std::align_val_t) noexcept { td_free(p); }
TD_CXX_EXPORT void operator delete[](void *p, std::align_val_t) noexcept { td_free(p); }
TD_CXX_EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { td_free(p); }
TD_CXX_EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { td_free(p); }
TD_CXX_EXPORT void operator delete(void *p, std::size_t n, std::align_val_t) noexcept { td_free_aligned_sized(p, n); }
TD_CXX_EXPORT void operator delete[](void *p, std::size_t n, std::align_val_t) noexcept { td_free_aligned_sized(p, n); }
