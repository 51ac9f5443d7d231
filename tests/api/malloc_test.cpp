// malloc, free and malloc_usable_size: glibc semantics.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

TEST(Malloc, ZeroSizeReturnsDistinctNonNullBlocks) {
  const AllocApi& a = api();
  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) {
    void* p = a.malloc(opaque<std::size_t>(0));
    ASSERT_NE(p, nullptr) << "malloc(0) must return a unique pointer, as glibc does";
    EXPECT_TRUE(aligned_to(p, kMallocAlignment));
    std::memset(p, 0xEE, a.malloc_usable_size(p));
    blocks.push_back(p);
  }
  const std::set<void*> distinct(blocks.begin(), blocks.end());
  EXPECT_EQ(distinct.size(), blocks.size()) << "malloc(0) returned the same pointer twice";
  for (void* p : blocks) a.free(p);
}

TEST(Malloc, EveryBlockIs16ByteAligned) {
  const AllocApi& a = api();
  for (const std::size_t size : interesting_sizes(64 * kMiB)) {
    void* live[4];
    const int count = size > kMiB ? 2 : 4;
    for (int i = 0; i < count; ++i) {
      live[i] = a.malloc(opaque(size));
      ASSERT_NE(live[i], nullptr) << "malloc(" << size << ")";
      EXPECT_TRUE(aligned_to(live[i], kMallocAlignment)) << "malloc(" << size << ")";
      if (size > 0) {
        static_cast<char*>(live[i])[0] = 1;
        static_cast<char*>(live[i])[size - 1] = 2;
      }
    }
    for (int i = 0; i < count; ++i) a.free(live[i]);
  }
}

TEST(Malloc, LiveBlocksNeverOverlap) {
  const AllocApi& a = api();
  Rng rng(1);
  struct Block {
    char* p;
    std::size_t size;
    std::uint64_t seed;
  };
  std::vector<Block> blocks;
  for (int i = 0; i < 3000; ++i) {
    const std::size_t size = rng.chance(90)   ? rng.between(0, 2048)
                             : rng.chance(90) ? rng.between(2049, 128 * kKiB)
                                              : rng.between(128 * kKiB, 3 * kMiB);
    auto* p = static_cast<char*>(a.malloc(size));
    ASSERT_NE(p, nullptr) << "malloc(" << size << ")";
    fill_pattern(p, size, i);
    blocks.push_back({p, size, static_cast<std::uint64_t>(i)});
    // Free some along the way so that later blocks reuse freed memory.
    if (rng.chance(30)) {
      const std::size_t victim = rng.between(0, blocks.size() - 1);
      ASSERT_TRUE(pattern_intact(blocks[victim].p, blocks[victim].size, blocks[victim].seed));
      a.free(blocks[victim].p);
      blocks[victim] = blocks.back();
      blocks.pop_back();
    }
  }
  std::sort(blocks.begin(), blocks.end(), [](const Block& x, const Block& y) { return x.p < y.p; });
  for (std::size_t i = 0; i + 1 < blocks.size(); ++i) {
    const std::size_t usable = a.malloc_usable_size(blocks[i].p);
    EXPECT_LE(blocks[i].p + usable, blocks[i + 1].p)
        << "the usable range of the " << blocks[i].size << "-byte block at "
        << static_cast<void*>(blocks[i].p) << " overlaps the block at "
        << static_cast<void*>(blocks[i + 1].p);
  }
  for (const Block& b : blocks) {
    EXPECT_TRUE(pattern_intact(b.p, b.size, b.seed));
    a.free(b.p);
  }
}

TEST(Malloc, ImpossibleSizesFailWithEnomem) {
  const AllocApi& a = api();
  std::size_t count = 0;
  const std::size_t* sizes = impossible_sizes(&count);
  for (std::size_t i = 0; i < count; ++i) {
    errno = 0;
    void* p = a.malloc(opaque(sizes[i]));
    EXPECT_EQ(p, nullptr) << "malloc(" << sizes[i] << ") succeeded";
    EXPECT_EQ(errno, ENOMEM) << "malloc(" << sizes[i] << ") set errno " << errno;
    if (p != nullptr) a.free(p);
  }
  // The allocator still works after refusing.
  void* p = a.malloc(opaque<std::size_t>(100));
  ASSERT_NE(p, nullptr);
  a.free(p);
}

TEST(Free, NullIsANoOpAndKeepsErrno) {
  const AllocApi& a = api();
  errno = EDOM;
  a.free(opaque<void*>(nullptr));
  EXPECT_EQ(errno, EDOM);
}

TEST(Free, PreservesErrno) {
  // glibc >= 2.33 guarantees that free() leaves errno alone, also when it
  // returns memory to the kernel.
  const AllocApi& a = api();
  for (const std::size_t size :
       {std::size_t{1}, std::size_t{100}, 5 * kKiB, 200 * kKiB, 4 * kMiB, 64 * kMiB}) {
    void* p = a.malloc(opaque(size));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x11, size);
    errno = EDOM;
    a.free(p);
    EXPECT_EQ(errno, EDOM) << "free() of a " << size << "-byte block changed errno";
  }
}

TEST(MallocUsableSize, NullIsZero) {
  EXPECT_EQ(api().malloc_usable_size(opaque<void*>(nullptr)), 0u);
}

TEST(MallocUsableSize, CoversTheRequestAndEveryUsableByteIsWritable) {
  // Three blocks of one size side by side: writing all usable bytes of the
  // middle one must leave its neighbours intact.
  const AllocApi& a = api();
  for (const std::size_t size : interesting_sizes(4 * kMiB)) {
    void* blocks[3];
    std::size_t usable[3];
    for (int i = 0; i < 3; ++i) {
      blocks[i] = a.malloc(opaque(size));
      ASSERT_NE(blocks[i], nullptr) << "malloc(" << size << ")";
      usable[i] = a.malloc_usable_size(blocks[i]);
      ASSERT_GE(usable[i], size) << "malloc_usable_size of a malloc(" << size << ") block";
    }
    fill_pattern(blocks[0], usable[0], size);
    fill_pattern(blocks[2], usable[2], size + 2);
    std::memset(blocks[1], 0x5A, usable[1]);
    EXPECT_TRUE(pattern_intact(blocks[0], usable[0], size)) << "size " << size;
    EXPECT_TRUE(pattern_intact(blocks[2], usable[2], size + 2)) << "size " << size;
    EXPECT_EQ(a.malloc_usable_size(blocks[1]), usable[1]) << "usable size changed, size " << size;
    for (void* p : blocks) a.free(p);
  }
}

}  // namespace
}  // namespace strata_test
