// calloc: zeroed memory, also when it reuses freed dirty blocks; overflow.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

TEST(Calloc, ReturnsZeroedAlignedMemory) {
  const AllocApi& a = api();
  for (const std::size_t size : interesting_sizes(16 * kMiB)) {
    for (const std::size_t count : {std::size_t{1}, std::size_t{3}}) {
      if (size > 4 * kMiB && count > 1) continue;
      void* p = a.calloc(opaque(count), opaque(size));
      ASSERT_NE(p, nullptr) << "calloc(" << count << ", " << size << ")";
      EXPECT_TRUE(aligned_to(p, kMallocAlignment));
      EXPECT_TRUE(all_zero(p, count * size)) << "calloc(" << count << ", " << size << ")";
      std::memset(p, 0xC3, count * size);
      a.free(p);
    }
  }
}

// Dirty blocks are freed, then calloc requests of the same size (which an
// allocator serves from the blocks just freed) must still come back zeroed.
void expect_calloc_zeroes_recycled_blocks(std::size_t size, int count) {
  const AllocApi& a = api();
  std::vector<void*> blocks;
  for (int i = 0; i < count; ++i) {
    void* p = a.malloc(opaque(size));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xA5, a.malloc_usable_size(p));
    blocks.push_back(p);
  }
  for (void* p : blocks) a.free(p);
  blocks.clear();
  for (int i = 0; i < count; ++i) {
    void* p = a.calloc(1, opaque(size));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(all_zero(p, size)) << "calloc(1, " << size << ") after freeing dirty blocks";
    blocks.push_back(p);
  }
  for (void* p : blocks) a.free(p);
  // The same with the size split into count * element size.
  if (size >= 16 && size % 8 == 0) {
    void* dirty = a.malloc(opaque(size));
    ASSERT_NE(dirty, nullptr);
    std::memset(dirty, 0xFF, size);
    a.free(dirty);
    void* p = a.calloc(opaque(size / 8), 8);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(all_zero(p, size)) << "calloc(" << size / 8 << ", 8) after freeing a dirty block";
    a.free(p);
  }
}

TEST(Calloc, ZeroesRecycledSmallBlocks) {
  for (std::size_t size = 1; size <= 1024; size += (size < 128 ? 1 : 24)) {
    expect_calloc_zeroes_recycled_blocks(size, 64);
  }
}

TEST(Calloc, ZeroesRecycledLargeBlocks) {
  for (const std::size_t size : {4 * kKiB, 32 * kKiB + 16, 100 * kKiB, 256 * kKiB, kMiB,
                                 3 * kMiB + 8, 8 * kMiB, 40 * kMiB}) {
    expect_calloc_zeroes_recycled_blocks(size, size > kMiB ? 2 : 8);
  }
}

TEST(Calloc, ZeroesBlocksRecycledFromAnotherSizeMix) {
  // Free a large dirty block, then carve many small calloc blocks.
  const AllocApi& a = api();
  Rng rng(7);
  for (int round = 0; round < 20; ++round) {
    std::vector<void*> dirty;
    for (int i = 0; i < 200; ++i) {
      const std::size_t size = rng.between(1, 8 * kKiB);
      void* p = a.malloc(size);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0x7F, a.malloc_usable_size(p));
      dirty.push_back(p);
    }
    for (void* p : dirty) a.free(p);
    std::vector<void*> clean;
    for (int i = 0; i < 200; ++i) {
      const std::size_t count = rng.between(1, 64);
      const std::size_t elem = rng.between(1, 128);
      void* p = a.calloc(count, elem);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(all_zero(p, count * elem)) << "calloc(" << count << ", " << elem << ")";
      clean.push_back(p);
    }
    for (void* p : clean) a.free(p);
  }
}

TEST(Calloc, ZeroCountOrSizeReturnsDistinctBlocks) {
  const AllocApi& a = api();
  std::set<void*> seen;
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) {
    for (const auto& [count, size] :
         {std::pair<std::size_t, std::size_t>{0, 16}, std::pair<std::size_t, std::size_t>{16, 0},
          std::pair<std::size_t, std::size_t>{0, 0},
          std::pair<std::size_t, std::size_t>{0, SIZE_MAX},
          std::pair<std::size_t, std::size_t>{SIZE_MAX, 0}}) {
      void* p = a.calloc(opaque(count), opaque(size));
      ASSERT_NE(p, nullptr) << "calloc(" << count << ", " << size << ") must act as malloc(0)";
      EXPECT_TRUE(seen.insert(p).second) << "calloc returned a live pointer again";
      blocks.push_back(p);
    }
  }
  for (void* p : blocks) a.free(p);
}

TEST(Calloc, OverflowAndImpossibleSizesFailWithEnomem) {
  const AllocApi& a = api();
  const std::size_t ptrdiff_max = PTRDIFF_MAX;
  const std::pair<std::size_t, std::size_t> cases[] = {
      {SIZE_MAX / 2 + 1, 2},                         // product wraps to 0
      {std::size_t{1} << 32, std::size_t{1} << 32},  // product wraps to 0
      {SIZE_MAX, SIZE_MAX},                          // wraps to 1
      {3, SIZE_MAX / 3 + 1},                         // wraps to a small number
      {SIZE_MAX / 16 + 1, 17},                       // wraps to a small number
      {2, ptrdiff_max / 2 + 1},                      // no wrap, but above PTRDIFF_MAX
      {1, ptrdiff_max + 1},
      {ptrdiff_max + 1, 1},
      {std::size_t{1} << 31, std::size_t{1} << 31},  // 2^62: beyond the address space
  };
  for (const auto& [count, size] : cases) {
    errno = 0;
    void* p = a.calloc(opaque(count), opaque(size));
    EXPECT_EQ(p, nullptr) << "calloc(" << count << ", " << size << ") succeeded";
    EXPECT_EQ(errno, ENOMEM) << "calloc(" << count << ", " << size << ") set errno " << errno;
    if (p != nullptr) a.free(p);
  }
}

}  // namespace
}  // namespace strata_test
