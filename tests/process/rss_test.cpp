// Resident memory: huge blocks cost only the pages that are touched (calloc
// must not write zeros over fresh pages), and freed memory goes back to the
// kernel. These bounds are memory properties, measured with RssAnon from
// /proc/self/status, not timings.
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

constexpr std::size_t kHuge = kGiB;
constexpr int kTouches = 16;

// Allowed growth of resident memory when touching kTouches spots: generous
// slack plus, when the kernel may use transparent huge pages, one huge page
// per touched spot.
std::size_t sparse_touch_bound() { return 8 * kMiB + kTouches * transparent_huge_page_size(); }

std::string mib(std::size_t bytes) {
  return std::to_string(static_cast<double>(bytes) / static_cast<double>(kMiB)) + " MiB";
}

TEST(Rss, OneGibMallocTouchedSparselyStaysSmall) {
  free(malloc(opaque<std::size_t>(100)));  // the allocator is initialised
  const std::size_t before = resident_anon_bytes();
  auto* p = static_cast<unsigned char*>(malloc(opaque(kHuge)));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < kTouches; ++i) p[kHuge / kTouches * i + 123] = 1;
  const std::size_t after = resident_anon_bytes();
  free(p);
  EXPECT_LT(after, before + sparse_touch_bound())
      << "RssAnon grew by " << mib(after - before) << " for a 1 GiB malloc touched in " << kTouches
      << " places";
}

TEST(Rss, OneGibCallocTouchedSparselyStaysSmallAndIsZero) {
  // Dirty some memory first so that a calloc reusing it would have to clear.
  void* dirty = malloc(opaque(64 * kMiB));
  ASSERT_NE(dirty, nullptr);
  std::memset(dirty, 0xFF, 64 * kMiB);
  free(dirty);
  const std::size_t before = resident_anon_bytes();
  auto* p = static_cast<unsigned char*>(calloc(opaque(kHuge / 4096), 4096));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < kTouches; ++i) {
    unsigned char& spot = p[kHuge / kTouches * i + 4095];
    EXPECT_EQ(spot, 0) << "calloc memory not zero at offset " << kHuge / kTouches * i + 4095;
    spot = 1;
  }
  EXPECT_EQ(p[kHuge - 1], 0);
  const std::size_t after = resident_anon_bytes();
  free(p);
  EXPECT_LT(after, before + sparse_touch_bound())
      << "RssAnon grew by " << mib(after - before) << " for a 1 GiB calloc touched in " << kTouches
      << " places: calloc wrote to fresh pages";
}

TEST(Rss, FreedLargeBlocksGoBackToTheKernel) {
  for (const std::size_t size : {64 * kMiB, 256 * kMiB}) {
    const std::size_t before = resident_anon_bytes();
    void* p = malloc(opaque(size));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5A, size);
    // The measurement itself works: the touched block is resident. (Growth
    // from `before` can be smaller if the allocator reused resident memory.)
    ASSERT_GE(resident_anon_bytes(), size * 3 / 4)
        << "RssAnon does not include a touched " << mib(size) << " block";
    free(p);
    const std::size_t after = resident_anon_bytes();
    EXPECT_LT(after, before + 16 * kMiB)
        << "after freeing a touched " << mib(size) << " block RssAnon is still "
        << mib(after - before) << " above where it started";
  }
}

TEST(Rss, MallocTrimReturnsFreedSmallBlocks) {
  const std::size_t before = resident_anon_bytes();
  std::vector<void*> blocks;
  for (int i = 0; i < 8192; ++i) {  // 128 MiB of 16 KiB blocks
    void* p = malloc(opaque(16 * kKiB));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x33, 16 * kKiB);
    blocks.push_back(p);
  }
  ASSERT_GE(resident_anon_bytes(), 96 * kMiB) << "RssAnon does not include 128 MiB of blocks";
  for (void* p : blocks) free(p);
  malloc_trim(0);
  const std::size_t after = resident_anon_bytes();
  EXPECT_LT(after, before + 32 * kMiB)
      << "after freeing 128 MiB of 16 KiB blocks and malloc_trim(0), RssAnon is still "
      << mib(after - before) << " above where it started";
}

}  // namespace
}  // namespace strata_test
