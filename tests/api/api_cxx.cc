// The C++ operator new/delete family is tidalloc's: plain, array, nothrow,
// aligned (std::align_val_t 32..4096), sized and aligned sized delete;
// impossible sizes throw std::bad_alloc (nothrow: nullptr); a new_handler is
// called on failure and its freeing a reserve is honoured.
#include "testutil.h"

#include <cstddef>
#include <cstdint>
#include <new>

namespace {

// Mangled names of every replaceable operator (x86-64, size_t = unsigned long).
const char *const new_delete_syms[] = {
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t", "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t", nullptr,
};

const size_t sizes[] = {1, 7, 8, 16, 24, 100, 1000, 4096, 10000, 70000, 1 << 20, (3 << 20) + 1};

void check_block(void *p, size_t n, size_t align, uint64_t tag)
{
    CHECK_BLOCK(p, n, align, tag);
    // Blocks from new are tidalloc's blocks.
    CHECK(tidal_usable_size(p) >= n, "operator new block unknown to tidalloc");
}

struct alignas(64) Cache {
    unsigned char b[64];
};
struct alignas(4096) Page {
    unsigned char b[4096];
};

void test_plain_and_array()
{
    for (size_t n : sizes) {
        TT_CTX("size %zu", n);
        void *p = ::operator new(n);
        check_block(p, n, 16, n);
        ::operator delete(p);
        p = ::operator new[](n);
        check_block(p, n, 16, n + 1);
        ::operator delete[](p);
        p = ::operator new(n);
        check_block(p, n, 16, n + 2);
        ::operator delete(p, n); // sized
        p = ::operator new[](n);
        check_block(p, n, 16, n + 3);
        ::operator delete[](p, n);
        p = ::operator new(n, std::nothrow);
        check_block(p, n, 16, n + 4);
        ::operator delete(p, std::nothrow);
        p = ::operator new[](n, std::nothrow);
        check_block(p, n, 16, n + 5);
        ::operator delete[](p, std::nothrow);
    }
    tt_ctx[0] = 0;
    // new-expressions (the compiler's choice of operator, sized delete)
    for (int i = 0; i < 1000; i++) {
        int *volatile x = new int(i);
        tt_escape(x);
        CHECK(*x == i);
        delete x;
        long *volatile a = new long[(size_t)i + 1]();
        tt_escape(a);
        for (int k = 0; k <= i; k++)
            CHECK(a[k] == 0, "new long[]() not value-initialised");
        delete[] a;
    }
    void *z1 = ::operator new(0), *z2 = ::operator new(0);
    CHECK(z1 && z2 && z1 != z2, "operator new(0) must return distinct non-null pointers");
    ::operator delete(z1);
    ::operator delete(z2, (size_t)0);
    ::operator delete(nullptr);
    ::operator delete[](nullptr);
    ::operator delete(nullptr, std::align_val_t(64));
}

void test_aligned()
{
    for (size_t a = 32; a <= 4096; a <<= 1) {
        std::align_val_t al{a};
        for (size_t n : sizes) {
            TT_CTX("align %zu size %zu", a, n);
            void *p = ::operator new(n, al);
            check_block(p, n, a, a + n);
            ::operator delete(p, al);
            p = ::operator new[](n, al);
            check_block(p, n, a, a + n + 1);
            ::operator delete[](p, al);
            p = ::operator new(n, al);
            check_block(p, n, a, a + n + 2);
            ::operator delete(p, n, al); // aligned sized
            p = ::operator new[](n, al);
            check_block(p, n, a, a + n + 3);
            ::operator delete[](p, n, al);
            p = ::operator new(n, al, std::nothrow);
            check_block(p, n, a, a + n + 4);
            ::operator delete(p, al, std::nothrow);
            p = ::operator new[](n, al, std::nothrow);
            check_block(p, n, a, a + n + 5);
            ::operator delete[](p, al, std::nothrow);
        }
    }
    tt_ctx[0] = 0;
    // new-expressions of over-aligned types use the aligned operators
    for (int i = 0; i < 200; i++) {
        Cache *volatile c = new Cache();
        tt_escape(c);
        CHECK(((uintptr_t)c & 63) == 0, "new Cache: %p not 64-aligned", (void *)c);
        delete c;
        Page *volatile pg = new Page[3];
        tt_escape(pg);
        CHECK(((uintptr_t)pg & 4095) == 0, "new Page[3]: %p not 4096-aligned", (void *)pg);
        pg[2].b[4095] = 1;
        delete[] pg;
    }
}

template <typename F> bool throws_bad_alloc(F f)
{
    try {
        f();
    } catch (const std::bad_alloc &) {
        return true;
    }
    return false;
}

const size_t impossible[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX,
                             (size_t)1 << 62};

void test_failure()
{
    for (size_t n0 : impossible) {
        size_t n = tt_hide(n0);
        TT_CTX("size %#zx", n);
        CHECK(throws_bad_alloc([n] { tt_escape(::operator new(n)); }), "operator new did not throw bad_alloc");
        CHECK(throws_bad_alloc([n] { tt_escape(::operator new[](n)); }), "operator new[] did not throw");
        CHECK(::operator new(n, std::nothrow) == nullptr, "nothrow new did not return nullptr");
        CHECK(::operator new[](n, std::nothrow) == nullptr, "nothrow new[] did not return nullptr");
#ifdef TIDAL_TEST_SYSTEM_MALLOC
        // libstdc++ 12's aligned new rounds the size up to the alignment
        // without an overflow check: SIZE_MAX wraps to 0 and "succeeds".
        if (n > SIZE_MAX - 4096)
            continue;
#endif
        CHECK(throws_bad_alloc([n] { tt_escape(::operator new(n, std::align_val_t(64))); }),
              "aligned operator new did not throw");
        CHECK(throws_bad_alloc([n] { tt_escape(::operator new[](n, std::align_val_t(4096))); }),
              "aligned operator new[] did not throw");
        CHECK(::operator new(n, std::align_val_t(256), std::nothrow) == nullptr,
              "aligned nothrow new did not return nullptr");
        CHECK(::operator new[](n, std::align_val_t(256), std::nothrow) == nullptr,
              "aligned nothrow new[] did not return nullptr");
    }
    tt_ctx[0] = 0;
    // a new-expression whose byte count (2^62) does not overflow but cannot
    // be allocated
    size_t count = tt_hide((size_t)1 << 59);
    CHECK(throws_bad_alloc([count] {
              long *volatile x = new long[count];
              tt_escape(x);
          }),
          "new long[2^59] did not throw");
}

void *reserve;
int handler_calls;

void release_reserve()
{
    handler_calls++;
    free(reserve); // frees memory so that a retry could succeed
    reserve = nullptr;
    std::set_new_handler(nullptr); // next failure throws (or nothrow: nullptr)
}

void test_new_handler()
{
    reserve = malloc(1 << 20);
    handler_calls = 0;
    std::set_new_handler(release_reserve);
    // successful allocations do not call the handler
    for (int i = 0; i < 1000; i++)
        ::operator delete(::operator new((size_t)i * 13 + 1));
    CHECK(handler_calls == 0, "new_handler called %d times for allocations that succeed", handler_calls);
    size_t n = tt_hide(SIZE_MAX / 2);
    CHECK(throws_bad_alloc([n] { tt_escape(::operator new(n)); }),
          "operator new did not throw after the handler uninstalled itself");
    CHECK(handler_calls == 1, "new_handler called %d times, want exactly once", handler_calls);
    CHECK(reserve == nullptr);
    CHECK(std::get_new_handler() == nullptr);

    reserve = malloc(1 << 20);
    handler_calls = 0;
    std::set_new_handler(release_reserve);
    CHECK(::operator new(n, std::nothrow) == nullptr);
    CHECK(handler_calls == 1, "nothrow new: new_handler called %d times, want once", handler_calls);

    reserve = malloc(1 << 20);
    handler_calls = 0;
    std::set_new_handler(release_reserve);
    CHECK(throws_bad_alloc([n] { tt_escape(::operator new[](n, std::align_val_t(128))); }));
    CHECK(handler_calls == 1, "aligned new[]: new_handler called %d times, want once", handler_calls);

    std::set_new_handler(nullptr);
}

void test_mixed_with_malloc()
{
    // operator new and malloc share one heap: interleave, free in any order
    void *a[512];
    for (int i = 0; i < 512; i++) {
        size_t n = (size_t)(i % 40) * 24 + 1;
        a[i] = (i & 1) ? ::operator new(n) : malloc(n);
        CHECK(a[i] != nullptr);
        tt_fill(a[i], n, (uint64_t)i);
    }
    for (int i = 0; i < 512; i++) {
        size_t n = (size_t)(i % 40) * 24 + 1;
        CHECK(tt_check(a[i], n, (uint64_t)i) == SIZE_MAX, "block %d overwritten", i);
        if (i & 1)
            ::operator delete(a[i], n);
        else
            free(a[i]);
    }
}

} // namespace

int main()
{
    tt_expect_tidalloc();
    tt_expect_syms_from_tidalloc(new_delete_syms);
    test_plain_and_array();
    test_aligned();
    if (TT_GLIBC_SEMANTICS) { // the sanitizers' operator new aborts instead of throwing
        test_failure();
        test_new_handler();
    }
    test_mixed_with_malloc();
    printf("api_cxx: OK\n");
    return 0;
}
