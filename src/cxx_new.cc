// The C++ operator new/delete family, routed to the same paths as malloc/free.
// This is the project's only C++ file: new must throw std::bad_alloc and call
// the installed new_handler, which C cannot express.
#include <cstddef>
#include <new>

#include "api.h"

#define TD_CXX_EXPORT __attribute__((visibility("default")))

namespace {

[[gnu::noinline, gnu::cold]] void *new_slow(std::size_t size, std::size_t align, bool nothrow) {
  for (;;) {
    void *p = align ? td_aligned(align, size) : td_malloc(size);
    if (p) return p;
    std::new_handler handler = std::get_new_handler();
    if (!handler) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (nothrow) {
      try { handler(); } catch (...) { return nullptr; }
    } else {
      handler();
    }
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
TD_CXX_EXPORT void operator delete(void *p, std::size_t n, std::align_val_t) noexcept { td_free_sized(p, n); }
TD_CXX_EXPORT void operator delete[](void *p, std::size_t n, std::align_val_t) noexcept { td_free_sized(p, n); }
