// The replaceable C++ allocation functions: every operator new/delete form,
// std::bad_alloc, nothrow forms, std::new_handler, alignment.
// Not part of the prefixed variant: strata_* has no operator new.
#include <cstring>
#include <new>
#include <set>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

constexpr std::size_t kNewAlignment = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

// Installs a handler for one test and restores the previous one.
class ScopedNewHandler {
 public:
  explicit ScopedNewHandler(std::new_handler handler) : saved_(std::set_new_handler(handler)) {}
  ~ScopedNewHandler() { std::set_new_handler(saved_); }
  ScopedNewHandler(const ScopedNewHandler&) = delete;
  ScopedNewHandler& operator=(const ScopedNewHandler&) = delete;

 private:
  std::new_handler saved_;
};

TEST(OperatorNew, ScalarAndArrayFormsWithPlainAndSizedDelete) {
  for (const std::size_t size : interesting_sizes(8 * kMiB)) {
    void* p = ::operator new(opaque(size));
    EXPECT_TRUE(aligned_to(p, kNewAlignment)) << "operator new(" << size << ")";
    fill_pattern(p, size, 1);
    EXPECT_TRUE(pattern_intact(p, size, 1));
    ::operator delete(p);

    p = ::operator new[](opaque(size));
    EXPECT_TRUE(aligned_to(p, kNewAlignment)) << "operator new[](" << size << ")";
    fill_pattern(p, size, 2);
    ::operator delete[](p);

    p = ::operator new(opaque(size));
    fill_pattern(p, size, 3);
    ::operator delete(p, size);

    p = ::operator new[](opaque(size));
    fill_pattern(p, size, 4);
    ::operator delete[](p, size);
  }
}

TEST(OperatorNew, ZeroSizeReturnsDistinctPointers) {
  std::vector<void*> blocks;
  for (int i = 0; i < 200; ++i) {
    blocks.push_back(::operator new(opaque<std::size_t>(0)));
    blocks.push_back(::operator new[](opaque<std::size_t>(0)));
  }
  const std::set<void*> distinct(blocks.begin(), blocks.end());
  EXPECT_EQ(distinct.size(), blocks.size());
  for (std::size_t i = 0; i < blocks.size(); i += 2) {
    ::operator delete(blocks[i]);
    ::operator delete[](blocks[i + 1]);
  }
}

// libstdc++ 12 rounds the size of an aligned operator new up to a multiple
// of the alignment without an overflow check: for sizes within `alignment`
// of SIZE_MAX the sum wraps to a tiny request that succeeds. Those sizes are
// tested separately, against strata's own operator new only.
bool rounding_wraps(std::size_t size, std::size_t alignment) {
  return size > SIZE_MAX - (alignment - 1);
}

TEST(OperatorNew, ImpossibleSizesThrowBadAlloc) {
  std::size_t count = 0;
  const std::size_t* impossible = impossible_sizes(&count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t size = impossible[i];
    EXPECT_THROW(escape(::operator new(opaque(size))), std::bad_alloc) << size;
    EXPECT_THROW(escape(::operator new[](opaque(size))), std::bad_alloc) << size;
    if (!rounding_wraps(size, 64)) {
      EXPECT_THROW(escape(::operator new (opaque(size), std::align_val_t{64})), std::bad_alloc)
          << size;
    }
    if (!rounding_wraps(size, 4096)) {
      EXPECT_THROW(escape(::operator new[](opaque(size), std::align_val_t{4096})), std::bad_alloc)
          << size;
    }
  }
}

TEST(OperatorNew, NothrowFormsReturnNullOnFailure) {
  std::size_t count = 0;
  const std::size_t* impossible = impossible_sizes(&count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t size = impossible[i];
    EXPECT_EQ(::operator new(opaque(size), std::nothrow), nullptr) << size;
    EXPECT_EQ(::operator new[](opaque(size), std::nothrow), nullptr) << size;
    if (!rounding_wraps(size, 32)) {
      EXPECT_EQ(::operator new (opaque(size), std::align_val_t{32}, std::nothrow), nullptr) << size;
    }
    if (!rounding_wraps(size, 8192)) {
      EXPECT_EQ(::operator new[](opaque(size), std::align_val_t{8192}, std::nothrow), nullptr)
          << size;
    }
  }
}

TEST(OperatorNew, AlignedFormsRejectSizesNearSizeMax) {
  if (!testing_strata()) {
    GTEST_SKIP() << "libstdc++ 12's aligned operator new wraps these sizes around to small ones";
  }
  for (const std::size_t size : {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 4095}) {
    for (const std::size_t alignment : {std::size_t{32}, std::size_t{64}, std::size_t{8192}}) {
      const std::align_val_t al{alignment};
      EXPECT_THROW(escape(::operator new(opaque(size), al)), std::bad_alloc)
          << "operator new(" << size << ", align " << alignment << ")";
      EXPECT_THROW(escape(::operator new[](opaque(size), al)), std::bad_alloc)
          << "operator new[](" << size << ", align " << alignment << ")";
      EXPECT_EQ(::operator new(opaque(size), al, std::nothrow), nullptr)
          << "operator new(" << size << ", align " << alignment << ", nothrow)";
      EXPECT_EQ(::operator new[](opaque(size), al, std::nothrow), nullptr)
          << "operator new[](" << size << ", align " << alignment << ", nothrow)";
    }
  }
}

TEST(OperatorNew, NothrowFormsSucceedForOrdinarySizes) {
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{1}, std::size_t{100}, 70 * kKiB, 3 * kMiB}) {
    void* p = ::operator new(opaque(size), std::nothrow);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, size);
    ::operator delete(p, std::nothrow);
    p = ::operator new[](opaque(size), std::nothrow);
    ASSERT_NE(p, nullptr);
    std::memset(p, 2, size);
    ::operator delete[](p, std::nothrow);
  }
}

TEST(OperatorNew, AlignedFormsHonourTheAlignment) {
  for (std::size_t alignment = 16; alignment <= 2 * kMiB; alignment *= 2) {
    const std::align_val_t al{alignment};
    for (const std::size_t size : {std::size_t{1}, alignment - 1, alignment, 3 * alignment + 1}) {
      void* p = ::operator new(opaque(size), al);
      EXPECT_TRUE(aligned_to(p, alignment)) << "operator new(" << size << ", " << alignment << ")";
      fill_pattern(p, size, alignment);
      EXPECT_TRUE(pattern_intact(p, size, alignment));
      ::operator delete(p, al);

      p = ::operator new(opaque(size), al);
      EXPECT_TRUE(aligned_to(p, alignment));
      std::memset(p, 1, size);
      ::operator delete(p, size, al);

      p = ::operator new[](opaque(size), al);
      EXPECT_TRUE(aligned_to(p, alignment));
      std::memset(p, 2, size);
      ::operator delete[](p, al);

      p = ::operator new[](opaque(size), al);
      EXPECT_TRUE(aligned_to(p, alignment));
      std::memset(p, 3, size);
      ::operator delete[](p, size, al);

      p = ::operator new(opaque(size), al, std::nothrow);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(aligned_to(p, alignment));
      ::operator delete(p, al, std::nothrow);

      p = ::operator new[](opaque(size), al, std::nothrow);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(aligned_to(p, alignment));
      ::operator delete[](p, al, std::nothrow);
    }
  }
}

struct alignas(64) CacheLine {
  unsigned char bytes[64];
};
struct alignas(4096) Page {
  unsigned char bytes[4096];
};

TEST(OperatorNew, OveralignedTypesGetTheirAlignment) {
  std::vector<CacheLine*> lines;
  std::vector<Page*> pages;
  for (int i = 0; i < 64; ++i) {
    lines.push_back(new CacheLine{});
    pages.push_back(new Page{});
    EXPECT_TRUE(aligned_to(lines.back(), 64));
    EXPECT_TRUE(aligned_to(pages.back(), 4096));
  }
  auto* line_array = new CacheLine[17];
  auto* page_array = new Page[5];
  EXPECT_TRUE(aligned_to(line_array, 64));
  EXPECT_TRUE(aligned_to(page_array, 4096));
  delete[] line_array;
  delete[] page_array;
  for (CacheLine* line : lines) delete line;
  for (Page* page : pages) delete page;
}

TEST(OperatorDelete, NullPointerIsANoOpForEveryForm) {
  // A fresh opaque null for each call: the compiler cannot prove it is null.
  const auto null = [] { return opaque<void*>(nullptr); };
  const std::align_val_t al{64};
  ::operator delete(null());
  ::operator delete[](null());
  ::operator delete (null(), std::size_t{16});
  ::operator delete[](null(), std::size_t{16});
  ::operator delete(null(), al);
  ::operator delete[](null(), al);
  ::operator delete (null(), std::size_t{16}, al);
  ::operator delete[](null(), std::size_t{16}, al);
  ::operator delete(null(), std::nothrow);
  ::operator delete[](null(), std::nothrow);
  ::operator delete(null(), al, std::nothrow);
  ::operator delete[](null(), al, std::nothrow);
  void* p = ::operator new(opaque<std::size_t>(32));  // still usable afterwards
  ::operator delete(p);
  SUCCEED();
}

// ---- std::new_handler -------------------------------------------------------------

int handler_calls = 0;

TEST(NewHandler, IsCalledRepeatedlyUntilItRemovesItself) {
  handler_calls = 0;
  ScopedNewHandler scoped([] {
    if (++handler_calls == 3) std::set_new_handler(nullptr);
  });
  EXPECT_THROW(escape(::operator new(opaque(SIZE_MAX / 2))), std::bad_alloc);
  EXPECT_EQ(handler_calls, 3) << "operator new must retry after each handler call";

  handler_calls = 0;
  std::set_new_handler([] {
    if (++handler_calls == 2) std::set_new_handler(nullptr);
  });
  EXPECT_THROW(escape(::operator new[](opaque(SIZE_MAX / 2), std::align_val_t{256})),
               std::bad_alloc);
  EXPECT_EQ(handler_calls, 2) << "aligned operator new[] must call the handler";
}

struct ReserveExhausted : std::bad_alloc {
  const char* what() const noexcept override { return "reserve exhausted"; }
};

TEST(NewHandler, ExceptionFromTheHandlerPropagates) {
  handler_calls = 0;
  ScopedNewHandler scoped([] {
    ++handler_calls;
    throw ReserveExhausted();
  });
  EXPECT_THROW(escape(::operator new(opaque(SIZE_MAX / 2))), ReserveExhausted);
  EXPECT_THROW(escape(::operator new[](opaque(SIZE_MAX / 2))), ReserveExhausted);
  EXPECT_THROW(escape(::operator new (opaque(SIZE_MAX / 2), std::align_val_t{64})),
               ReserveExhausted);
  EXPECT_EQ(handler_calls, 3);
}

TEST(NewHandler, NothrowFormsCallTheHandlerAndReturnNull) {
  handler_calls = 0;
  ScopedNewHandler scoped([] {
    if (++handler_calls % 2 == 0) throw std::bad_alloc();
  });
  EXPECT_EQ(::operator new(opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(handler_calls, 2);
  EXPECT_EQ(::operator new[](opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(handler_calls, 4);
  EXPECT_EQ(::operator new (opaque(SIZE_MAX / 2), std::align_val_t{128}, std::nothrow), nullptr);
  EXPECT_EQ(handler_calls, 6);
}

TEST(NewHandler, IsNotCalledWhenAllocationSucceeds) {
  handler_calls = 0;
  ScopedNewHandler scoped([] {
    ++handler_calls;
    throw std::bad_alloc();
  });
  for (const std::size_t size : interesting_sizes(4 * kMiB)) {
    ::operator delete(::operator new(opaque(size)));
    ::operator delete (::operator new (opaque(size), std::align_val_t{512}), std::align_val_t{512});
  }
  EXPECT_EQ(handler_calls, 0);
}

// A handler that frees a reserve lets the retried allocation succeed. Memory
// is made scarce with RLIMIT_AS in a child process.
void* reserve_block = nullptr;

TEST(NewHandler, FreeingAReserveLetsTheRetrySucceed) {
  const ChildStatus status = run_in_child(
      [] {
        std::vector<void*> filler;
        filler.reserve(8192);
        CHILD_CHECK(limit_address_space(512 * kMiB));
        reserve_block = ::operator new(256 * kMiB, std::nothrow);
        CHILD_CHECK_MSG(reserve_block != nullptr, "256 MiB reserve within a 512 MiB limit");
        // Take all remaining address space in 1 MiB blocks.
        while (filler.size() < filler.capacity()) {
          void* p = ::operator new(kMiB, std::nothrow);
          if (p == nullptr) break;
          filler.push_back(p);
        }
        CHILD_CHECK_MSG(filler.size() < filler.capacity(), "the address-space limit never hit");
        handler_calls = 0;
        std::set_new_handler([] {
          ++handler_calls;
          if (reserve_block == nullptr) throw std::bad_alloc();
          ::operator delete(reserve_block);
          reserve_block = nullptr;
        });
        void* big = nullptr;
        try {
          big = ::operator new(opaque(128 * kMiB));
        } catch (const std::bad_alloc&) {
          CHILD_CHECK_MSG(false, "operator new threw although the handler freed 256 MiB");
        }
        CHILD_CHECK_MSG(handler_calls == 1, "the handler must run exactly once");
        std::memset(big, 0x77, 128 * kMiB);
        ::operator delete(big);
        std::set_new_handler(nullptr);
        for (void* p : filler) ::operator delete(p);
        return 0;
      },
      60);
  EXPECT_CHILD_OK(status);
}

}  // namespace
}  // namespace strata_test
