// The C++ shapes of the misuse table (see shapes.c): a delete that does not
// match its new — through a base pointer without a virtual destructor (the
// sized delete passes the base's size), with the wrong explicit size, and in
// the wrong form (delete of new[] and delete[] of new).
#include <cstddef>
#include <cstring>
#include <new>

namespace {
struct Base {
  long a = 1;
  ~Base() {}
};
struct Derived : Base {
  long more[30] = {};
};
long destroyed;   // what the destructors read: they touch their objects
struct Counted {   // a destructor, so new[] stores the element count before the elements
  long v = 2;
  ~Counted() { destroyed += v; }
};
template <typename T> T *hide(T *p) {
  static T *volatile sink;
  sink = p;
  return sink;
}
}  // namespace

extern "C" int run_cxx(const char *shape) {
  if (!std::strcmp(shape, "delete_wrong_type")) {
    Base *b = hide(static_cast<Base *>(new Derived));
    delete b;                                   // sized delete of sizeof(Base), block holds Derived
  } else if (!std::strcmp(shape, "delete_wrong_size")) {
    void *p = hide(::operator new(64));
    ::operator delete(p, std::size_t{4096});
  } else if (!std::strcmp(shape, "delete_array_as_scalar")) {
    Counted *a = hide(new Counted[10]);
    delete a;                                   // NOLINT: the misuse under test
  } else if (!std::strcmp(shape, "delete_scalar_as_array")) {
    Counted *a = hide(new Counted);
    delete[] a;                                 // NOLINT: the misuse under test
  } else {
    return -1;
  }
  return 3;
}
