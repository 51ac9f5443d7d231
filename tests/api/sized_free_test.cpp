// free_sized and free_aligned_sized (C23). glibc 2.36 has neither: on glibc
// these tests are skipped; a run that must test strata fails instead.
#include <cerrno>
#include <cstring>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

#define REQUIRE_FUNCTION(fn)                                                            \
  do {                                                                                  \
    if (api().fn == nullptr) {                                                          \
      if (testing_strata()) FAIL() << "strata does not provide " #fn;                   \
      GTEST_SKIP() << #fn " is not provided by " << allocator_name(allocator_in_use()); \
    }                                                                                   \
  } while (0)

TEST(FreeSized, ReleasesBlocksFromMallocCallocAndRealloc) {
  REQUIRE_FUNCTION(free_sized);
  const AllocApi& a = api();
  for (const std::size_t size : interesting_sizes(8 * kMiB)) {
    void* p = a.malloc(opaque(size));
    ASSERT_NE(p, nullptr);
    fill_pattern(p, size, size);
    a.free_sized(p, size);

    p = a.calloc(1, opaque(size));
    ASSERT_NE(p, nullptr);
    a.free_sized(p, size);

    // realloc(p, 0) would free the block, so resize to size + 1.
    p = a.realloc(nullptr, opaque(size / 2));
    ASSERT_NE(p, nullptr);
    p = a.realloc(p, opaque(size + 1));
    ASSERT_NE(p, nullptr);
    a.free_sized(p, size + 1);
  }
  for (const std::size_t count : {std::size_t{3}, std::size_t{1000}}) {
    void* p = a.calloc(count, 24);
    ASSERT_NE(p, nullptr);
    a.free_sized(p, count * 24);
  }
}

TEST(FreeSized, ReallyReleasesMemory) {
  // A free_sized that leaked would grow resident memory by ~300 MiB here.
  REQUIRE_FUNCTION(free_sized);
  const AllocApi& a = api();
  const std::size_t sizes[] = {24, 4000, 70 * kKiB, 300 * kKiB};
  for (int warm = 0; warm < 2; ++warm) {
    for (const std::size_t size : sizes) {
      void* p = a.malloc(size);
      ASSERT_NE(p, nullptr);
      std::memset(p, 1, size);
      a.free_sized(p, size);
    }
  }
  const std::size_t before = resident_anon_bytes();
  for (int round = 0; round < 800; ++round) {
    for (const std::size_t size : sizes) {
      void* p = a.malloc(opaque(size));
      ASSERT_NE(p, nullptr);
      std::memset(p, round & 0xFF, size);
      a.free_sized(p, size);
    }
  }
  const std::size_t after = resident_anon_bytes();
  EXPECT_LT(after, before + 32 * kMiB)
      << "resident memory grew from " << before << " to " << after << " bytes";
}

TEST(FreeSized, NullIsANoOpAndErrnoIsKept) {
  REQUIRE_FUNCTION(free_sized);
  const AllocApi& a = api();
  errno = EDOM;
  a.free_sized(opaque<void*>(nullptr), 0);
  a.free_sized(opaque<void*>(nullptr), 100);
  EXPECT_EQ(errno, EDOM);
  for (const std::size_t size : {std::size_t{10}, 64 * kMiB}) {
    void* p = a.malloc(size);
    ASSERT_NE(p, nullptr);
    std::memset(p, 2, size);
    errno = EDOM;
    a.free_sized(p, size);
    EXPECT_EQ(errno, EDOM) << "free_sized of a " << size << "-byte block changed errno";
  }
}

TEST(FreeAlignedSized, ReleasesAlignedAllocBlocks) {
  REQUIRE_FUNCTION(free_aligned_sized);
  const AllocApi& a = api();
  for (std::size_t alignment = 1; alignment <= 2 * kMiB; alignment *= 2) {
    for (const std::size_t size :
         {std::size_t{0}, std::size_t{1}, alignment, 3 * alignment + 1, std::size_t{100000}}) {
      void* p = a.aligned_alloc(opaque(alignment), opaque(size));
      EXPECT_NE(p, nullptr) << "aligned_alloc(" << alignment << ", " << size << ")";
      if (p == nullptr) continue;
      std::memset(p, 3, size);
      errno = EDOM;
      a.free_aligned_sized(p, alignment, size);
      EXPECT_EQ(errno, EDOM);
    }
  }
  a.free_aligned_sized(opaque<void*>(nullptr), 64, 0);
}

TEST(FreeAlignedSized, ReallyReleasesMemory) {
  REQUIRE_FUNCTION(free_aligned_sized);
  const AllocApi& a = api();
  for (int warm = 0; warm < 2; ++warm) {
    void* p = a.aligned_alloc(4096, 256 * kKiB);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, 256 * kKiB);
    a.free_aligned_sized(p, 4096, 256 * kKiB);
  }
  const std::size_t before = resident_anon_bytes();
  for (int round = 0; round < 1000; ++round) {
    void* p = a.aligned_alloc(4096, opaque(256 * kKiB));
    ASSERT_NE(p, nullptr);
    std::memset(p, round & 0xFF, 256 * kKiB);
    a.free_aligned_sized(p, 4096, 256 * kKiB);
  }
  const std::size_t after = resident_anon_bytes();
  EXPECT_LT(after, before + 32 * kMiB)
      << "resident memory grew from " << before << " to " << after << " bytes";
}

}  // namespace
}  // namespace strata_test
