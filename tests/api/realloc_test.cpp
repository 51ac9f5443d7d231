// realloc and reallocarray: contents across size transitions, NULL and zero
// arguments, failures that keep the old block.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

// Resizes `p` (holding `old_size` bytes of pattern `seed`) through the given
// sizes, checking after each step that the common prefix survived.
void walk_sizes(void* p, std::size_t old_size, std::uint64_t seed,
                const std::vector<std::size_t>& sizes) {
  const AllocApi& a = api();
  for (const std::size_t size : sizes) {
    void* q = a.realloc(p, opaque(size));
    ASSERT_NE(q, nullptr) << "realloc from " << old_size << " to " << size << " bytes";
    EXPECT_TRUE(aligned_to(q, kMallocAlignment)) << "realloc to " << size;
    EXPECT_GE(a.malloc_usable_size(q), size);
    EXPECT_TRUE(pattern_intact(q, std::min(old_size, size), seed))
        << "after realloc from " << old_size << " to " << size << " bytes";
    fill_pattern(q, size, seed);
    p = q;
    old_size = size;
  }
  a.free(p);
}

TEST(Realloc, NullPointerActsAsMalloc) {
  const AllocApi& a = api();
  for (const std::size_t size : interesting_sizes(8 * kMiB)) {
    void* p = a.realloc(nullptr, opaque(size));
    ASSERT_NE(p, nullptr) << "realloc(NULL, " << size << ")";
    EXPECT_TRUE(aligned_to(p, kMallocAlignment));
    EXPECT_GE(a.malloc_usable_size(p), size);
    std::memset(p, 0x3C, size);
    a.free(p);
  }
}

TEST(Realloc, ZeroSizeFreesTheBlockAndReturnsNull) {
  // glibc frees the block and returns NULL for realloc(p, 0) with p != NULL
  // (REALLOC_ZERO_BYTES_FREES); realloc(NULL, 0) is malloc(0).
  const AllocApi& a = api();
  for (const std::size_t size : {std::size_t{1}, std::size_t{100}, 64 * kKiB, 2 * kMiB}) {
    void* p = a.malloc(size);
    ASSERT_NE(p, nullptr);
    void* q = a.realloc(p, opaque<std::size_t>(0));
    EXPECT_EQ(q, nullptr) << "realloc of a " << size << "-byte block to 0 bytes";
    if (q != nullptr) a.free(q);
  }
  void* p = a.realloc(nullptr, opaque<std::size_t>(0));
  EXPECT_NE(p, nullptr) << "realloc(NULL, 0) must act as malloc(0)";
  a.free(p);
}

TEST(Realloc, PreservesContentsFromSmallToLargeAndBack) {
  const std::vector<std::size_t> sizes = {
      8,          24,        100,       1000,      4 * kKiB, 20 * kKiB,  64 * kKiB,
      300 * kKiB, 2 * kMiB,  16 * kMiB, 40 * kMiB, 2 * kMiB, 300 * kKiB, 64 * kKiB,
      5000,       100,       7,         1,         3 * kMiB, 1,          48 * kKiB,
      17,         12 * kMiB, 33,        64 * kMiB, 8};
  void* p = api().malloc(1);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 1, 42);
  walk_sizes(p, 1, 42, sizes);
}

TEST(Realloc, PreservesContentsOverRandomWalks) {
  Rng rng(3);
  for (int walk = 0; walk < 40; ++walk) {
    std::vector<std::size_t> sizes;
    for (int step = 0; step < 30; ++step) {
      const unsigned kind = static_cast<unsigned>(rng.between(0, 99));
      sizes.push_back(kind < 60   ? rng.between(1, 1024)
                      : kind < 90 ? rng.between(1025, 256 * kKiB)
                                  : rng.between(256 * kKiB, 6 * kMiB));
    }
    const std::size_t first = rng.between(1, 512);
    void* p = api().malloc(first);
    ASSERT_NE(p, nullptr);
    fill_pattern(p, first, walk);
    walk_sizes(p, first, walk, sizes);
  }
}

TEST(Realloc, StepwiseGrowthAndShrinkByOneByte) {
  // Every size class boundary below 4 KiB is crossed in both directions.
  const AllocApi& a = api();
  std::size_t size = 1;
  void* p = a.malloc(size);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, size, 9);
  for (; size < 4096; ++size) {
    p = a.realloc(p, size + 1);
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(pattern_intact(p, size, 9)) << "growing to " << size + 1;
    fill_pattern(p, size + 1, 9);
  }
  for (; size > 1; --size) {
    p = a.realloc(p, size - 1);
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(pattern_intact(p, size - 1, 9)) << "shrinking to " << size - 1;
  }
  a.free(p);
}

TEST(Realloc, LeavesNeighbouringBlocksIntact) {
  const AllocApi& a = api();
  for (const std::size_t size : {std::size_t{24}, std::size_t{512}, 8 * kKiB, 200 * kKiB}) {
    void* before = a.malloc(size);
    void* middle = a.malloc(size);
    void* after = a.malloc(size);
    ASSERT_TRUE(before != nullptr && middle != nullptr && after != nullptr);
    fill_pattern(before, size, 1);
    fill_pattern(middle, size, 2);
    fill_pattern(after, size, 3);
    for (const std::size_t grown : {size + 1, size * 2, size * 5, size / 2 + 1, size * 40}) {
      middle = a.realloc(middle, grown);
      ASSERT_NE(middle, nullptr);
      fill_pattern(middle, grown, 2);
      EXPECT_TRUE(pattern_intact(before, size, 1)) << "realloc to " << grown;
      EXPECT_TRUE(pattern_intact(after, size, 3)) << "realloc to " << grown;
    }
    a.free(before);
    a.free(middle);
    a.free(after);
  }
}

TEST(Realloc, PreservesContentsOfAlignedBlocks) {
  const AllocApi& a = api();
  for (const std::size_t alignment : {std::size_t{64}, std::size_t{4096}, 64 * kKiB}) {
    void* p = nullptr;
    ASSERT_EQ(a.posix_memalign(&p, alignment, 1000), 0);
    fill_pattern(p, 1000, alignment);
    void* q = a.realloc(p, 5000);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(pattern_intact(q, 1000, alignment)) << "alignment " << alignment;
    q = a.realloc(q, 10);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(pattern_intact(q, 10, alignment)) << "alignment " << alignment;
    a.free(q);
  }
}

TEST(Realloc, FailureReturnsNullWithEnomemAndKeepsTheBlock) {
  const AllocApi& a = api();
  std::size_t count = 0;
  const std::size_t* impossible = impossible_sizes(&count);
  for (const std::size_t size : {std::size_t{16}, std::size_t{100}, 100 * kKiB, 8 * kMiB}) {
    void* p = a.malloc(size);
    ASSERT_NE(p, nullptr);
    fill_pattern(p, size, size);
    const std::size_t usable = a.malloc_usable_size(p);
    for (std::size_t i = 0; i < count; ++i) {
      errno = 0;
      void* q = a.realloc(p, opaque(impossible[i]));
      EXPECT_EQ(q, nullptr) << "realloc(p, " << impossible[i] << ") succeeded";
      EXPECT_EQ(errno, ENOMEM) << "realloc(p, " << impossible[i] << ")";
      if (q != nullptr) {
        p = q;
        break;
      }
      EXPECT_TRUE(pattern_intact(p, size, size)) << "after a failed realloc to " << impossible[i];
      EXPECT_EQ(a.malloc_usable_size(p), usable);
    }
    // The old block is still a live block that can be resized and freed.
    void* q = a.realloc(p, size + 10);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(pattern_intact(q, size, size));
    a.free(q);
  }
}

TEST(Realloc, NullPointerWithImpossibleSizeFailsWithEnomem) {
  const AllocApi& a = api();
  std::size_t count = 0;
  const std::size_t* impossible = impossible_sizes(&count);
  for (std::size_t i = 0; i < count; ++i) {
    errno = 0;
    void* p = a.realloc(nullptr, opaque(impossible[i]));
    EXPECT_EQ(p, nullptr) << "realloc(NULL, " << impossible[i] << ")";
    EXPECT_EQ(errno, ENOMEM);
    if (p != nullptr) a.free(p);
  }
}

TEST(Reallocarray, ResizesLikeReallocWithTheProduct) {
  const AllocApi& a = api();
  void* p = a.reallocarray(nullptr, opaque<std::size_t>(10), 10);
  ASSERT_NE(p, nullptr) << "reallocarray(NULL, 10, 10) must act as malloc(100)";
  EXPECT_GE(a.malloc_usable_size(p), 100u);
  fill_pattern(p, 100, 5);
  p = a.reallocarray(p, opaque<std::size_t>(1000), 300);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(a.malloc_usable_size(p), 300000u);
  EXPECT_TRUE(pattern_intact(p, 100, 5));
  fill_pattern(p, 300000, 5);
  p = a.reallocarray(p, opaque<std::size_t>(3), 7);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(pattern_intact(p, 21, 5));
  a.free(p);
}

TEST(Reallocarray, OverflowFailsWithEnomemAndKeepsTheBlock) {
  const AllocApi& a = api();
  void* p = a.malloc(64);
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 64, 11);
  const std::pair<std::size_t, std::size_t> cases[] = {
      {SIZE_MAX / 2 + 1, 2},
      {std::size_t{1} << 32, std::size_t{1} << 32},
      {3, SIZE_MAX / 3 + 1},
      {2, static_cast<std::size_t>(PTRDIFF_MAX) / 2 + 1},
  };
  for (const auto& [count, size] : cases) {
    errno = 0;
    void* q = a.reallocarray(p, opaque(count), opaque(size));
    EXPECT_EQ(q, nullptr) << "reallocarray(p, " << count << ", " << size << ")";
    EXPECT_EQ(errno, ENOMEM);
    if (q != nullptr) {
      p = q;
      continue;
    }
    EXPECT_TRUE(pattern_intact(p, 64, 11));
    errno = 0;
    q = a.reallocarray(nullptr, opaque(count), opaque(size));
    EXPECT_EQ(q, nullptr) << "reallocarray(NULL, " << count << ", " << size << ")";
    EXPECT_EQ(errno, ENOMEM);
    if (q != nullptr) a.free(q);
  }
  a.free(p);
}

}  // namespace
}  // namespace strata_test
