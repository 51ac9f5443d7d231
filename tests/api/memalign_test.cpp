// posix_memalign, aligned_alloc, memalign, valloc, pvalloc.
//
// glibc 2.36 behaviour encoded here (checked against Debian 12's libc):
//  - posix_memalign: alignment must be a power of two and a multiple of
//    sizeof(void*), else EINVAL; *out is left untouched on any failure;
//    size 0 gives a unique block.
//  - memalign: an alignment that is not a power of two is rounded up to the
//    next power of two; alignments below 16 (also 0) give malloc's 16-byte
//    alignment; an alignment above SIZE_MAX/2+1 fails with EINVAL.
//  - aligned_alloc: glibc before 2.38 is memalign; glibc 2.38 and later
//    reject alignments that are not powers of two (including 0) with EINVAL,
//    as C17 asks. Both are accepted here; anything else is not.
//  - valloc(n) is memalign(page, n); pvalloc(n) also rounds n up to a page.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

using AlignedAllocFn = std::function<void*(std::size_t alignment, std::size_t size)>;

std::vector<std::size_t> sizes_for_alignment(std::size_t alignment) {
  std::vector<std::size_t> sizes = {0, 1, 8, 17, 100000};
  for (const std::size_t n :
       {alignment - 1, alignment, alignment + 1, 3 * alignment, 3 * alignment + 5}) {
    sizes.push_back(n);
  }
  return sizes;
}

std::vector<std::size_t> power_of_two_alignments(std::size_t from, std::size_t to) {
  std::vector<std::size_t> alignments;
  for (std::size_t a = from; a <= to; a *= 2) alignments.push_back(a);
  return alignments;
}

// Allocates every size of sizes_for_alignment() at once for each alignment,
// checks alignment and usable size, then checks that filling each block left
// the others intact.
void expect_aligned_blocks(const char* what, const AlignedAllocFn& allocate,
                           const std::vector<std::size_t>& alignments,
                           std::size_t minimum_alignment = 1) {
  const AllocApi& a = api();
  for (const std::size_t alignment : alignments) {
    const std::size_t expected = std::max(alignment, minimum_alignment);
    std::vector<std::pair<void*, std::size_t>> blocks;
    for (const std::size_t size : sizes_for_alignment(alignment)) {
      void* p = allocate(alignment, size);
      EXPECT_NE(p, nullptr) << what << "(" << alignment << ", " << size << ")";
      if (p == nullptr) continue;
      EXPECT_TRUE(aligned_to(p, expected)) << what << "(" << alignment << ", " << size << ")";
      EXPECT_GE(a.malloc_usable_size(p), size) << what << "(" << alignment << ", " << size << ")";
      fill_pattern(p, size, size ^ alignment);
      blocks.emplace_back(p, size);
    }
    for (const auto& [p, size] : blocks) {
      EXPECT_TRUE(pattern_intact(p, size, size ^ alignment))
          << what << "(" << alignment << ", " << size << ")";
      a.free(p);
    }
  }
}

// ---- posix_memalign -----------------------------------------------------------

TEST(PosixMemalign, ReturnsAlignedBlocksForEveryPowerOfTwoAlignment) {
  const AllocApi& a = api();
  expect_aligned_blocks(
      "posix_memalign",
      [&a](std::size_t alignment, std::size_t size) -> void* {
        void* out = nullptr;
        const int rc = a.posix_memalign(&out, opaque(alignment), opaque(size));
        EXPECT_EQ(rc, 0) << "posix_memalign(" << alignment << ", " << size << ")";
        return rc == 0 ? out : nullptr;
      },
      power_of_two_alignments(sizeof(void*), 4 * kMiB));
}

TEST(PosixMemalign, VeryLargeAlignment) {
  const AllocApi& a = api();
  for (const std::size_t alignment : {16 * kMiB, 64 * kMiB}) {
    void* out = nullptr;
    ASSERT_EQ(a.posix_memalign(&out, opaque(alignment), 1), 0) << "alignment " << alignment;
    EXPECT_TRUE(aligned_to(out, alignment));
    static_cast<char*>(out)[0] = 1;
    a.free(out);
  }
}

TEST(PosixMemalign, InvalidAlignmentIsEinvalAndLeavesOutUntouched) {
  const AllocApi& a = api();
  for (const std::size_t alignment :
       {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{4}, std::size_t{3},
        std::size_t{12}, std::size_t{24}, std::size_t{40}, std::size_t{48}, std::size_t{4097},
        kMiB + 8, SIZE_MAX / 2 + 2, SIZE_MAX}) {
    void* sentinel = &sentinel;
    void* out = sentinel;
    EXPECT_EQ(a.posix_memalign(&out, opaque(alignment), 64), EINVAL) << "alignment " << alignment;
    EXPECT_EQ(out, sentinel) << "posix_memalign wrote *out on failure, alignment " << alignment;
  }
}

TEST(PosixMemalign, ImpossibleSizeIsEnomemAndLeavesOutUntouched) {
  const AllocApi& a = api();
  std::size_t count = 0;
  const std::size_t* impossible = impossible_sizes(&count);
  for (const std::size_t alignment : {std::size_t{8}, std::size_t{64}, std::size_t{4096}, kMiB}) {
    for (std::size_t i = 0; i < count; ++i) {
      void* sentinel = &sentinel;
      void* out = sentinel;
      EXPECT_EQ(a.posix_memalign(&out, opaque(alignment), opaque(impossible[i])), ENOMEM)
          << "posix_memalign(" << alignment << ", " << impossible[i] << ")";
      EXPECT_EQ(out, sentinel);
    }
  }
  // The largest power of two is a valid alignment that no block can meet.
  void* sentinel = &sentinel;
  void* out = sentinel;
  EXPECT_EQ(a.posix_memalign(&out, opaque(SIZE_MAX / 2 + 1), 1), ENOMEM);
  EXPECT_EQ(out, sentinel);
}

TEST(PosixMemalign, ZeroSizeReturnsDistinctBlocks) {
  const AllocApi& a = api();
  std::vector<void*> blocks;
  for (int i = 0; i < 50; ++i) {
    void* out = nullptr;
    ASSERT_EQ(a.posix_memalign(&out, 256, opaque<std::size_t>(0)), 0);
    ASSERT_NE(out, nullptr);
    EXPECT_TRUE(aligned_to(out, 256));
    for (void* other : blocks) EXPECT_NE(out, other);
    blocks.push_back(out);
  }
  for (void* p : blocks) a.free(p);
}

// ---- aligned_alloc ---------------------------------------------------------------

TEST(AlignedAlloc, ReturnsAlignedBlocksForEveryPowerOfTwoAlignment) {
  const AllocApi& a = api();
  // Sizes that are not multiples of the alignment are valid since C17.
  expect_aligned_blocks(
      "aligned_alloc",
      [&a](std::size_t alignment, std::size_t size) {
        return a.aligned_alloc(opaque(alignment), opaque(size));
      },
      power_of_two_alignments(1, 4 * kMiB), kMallocAlignment);
}

TEST(AlignedAlloc, NonPowerOfTwoAlignmentIsRoundedUpOrRejected) {
  const AllocApi& a = api();
  const std::pair<std::size_t, std::size_t> cases[] = {
      // {alignment, next power of two (glibc < 2.38 rounds up to it)}
      {0, kMallocAlignment},
      {3, kMallocAlignment},
      {24, 32},
      {48, 64},
      {96, 128},
      {384, 512},
      {1000, 1024},
      {5000, 8192},
      {100000, 131072},
  };
  for (const auto& [alignment, rounded] : cases) {
    errno = 0;
    void* p = a.aligned_alloc(opaque(alignment), 100);
    if (p == nullptr) {
      EXPECT_EQ(errno, EINVAL) << "aligned_alloc(" << alignment
                               << ", 100) failed without EINVAL (glibc >= 2.38 behaviour)";
    } else {
      EXPECT_TRUE(aligned_to(p, rounded))
          << "aligned_alloc(" << alignment << ", 100) succeeded but is not aligned to the "
          << "next power of two (glibc < 2.38 behaviour)";
      std::memset(p, 0x42, 100);
      a.free(p);
    }
  }
}

TEST(AlignedAlloc, AlignmentAboveHalfTheAddressSpaceIsEinval) {
  const AllocApi& a = api();
  for (const std::size_t alignment : {SIZE_MAX / 2 + 2, SIZE_MAX / 2 + 4096, SIZE_MAX}) {
    errno = 0;
    void* p = a.aligned_alloc(opaque(alignment), 16);
    EXPECT_EQ(p, nullptr) << "aligned_alloc(" << alignment << ", 16)";
    EXPECT_EQ(errno, EINVAL) << "aligned_alloc(" << alignment << ", 16)";
  }
  errno = 0;
  EXPECT_EQ(a.aligned_alloc(opaque(SIZE_MAX / 2 + 1), 16), nullptr);
  EXPECT_EQ(errno, ENOMEM) << "aligned_alloc(2^63, 16): a valid alignment no block can meet";
}

TEST(AlignedAlloc, ImpossibleSizeFailsWithEnomem) {
  const AllocApi& a = api();
  std::size_t count = 0;
  const std::size_t* impossible = impossible_sizes(&count);
  for (const std::size_t alignment : {std::size_t{16}, std::size_t{4096}, 2 * kMiB}) {
    for (std::size_t i = 0; i < count; ++i) {
      errno = 0;
      void* p = a.aligned_alloc(opaque(alignment), opaque(impossible[i]));
      EXPECT_EQ(p, nullptr) << "aligned_alloc(" << alignment << ", " << impossible[i] << ")";
      EXPECT_EQ(errno, ENOMEM) << "aligned_alloc(" << alignment << ", " << impossible[i] << ")";
      if (p != nullptr) a.free(p);
    }
  }
}

// ---- memalign ----------------------------------------------------------------------

TEST(Memalign, ReturnsAlignedBlocksForEveryPowerOfTwoAlignment) {
  const AllocApi& a = api();
  expect_aligned_blocks(
      "memalign",
      [&a](std::size_t alignment, std::size_t size) {
        return a.memalign(opaque(alignment), opaque(size));
      },
      power_of_two_alignments(1, 4 * kMiB), kMallocAlignment);
}

TEST(Memalign, SmallOrZeroAlignmentGivesMallocAlignment) {
  const AllocApi& a = api();
  for (const std::size_t alignment :
       {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{4}, std::size_t{8}}) {
    void* p = a.memalign(opaque(alignment), 40);
    ASSERT_NE(p, nullptr) << "memalign(" << alignment << ", 40)";
    EXPECT_TRUE(aligned_to(p, kMallocAlignment)) << "memalign(" << alignment << ", 40)";
    a.free(p);
  }
}

TEST(Memalign, NonPowerOfTwoAlignmentIsRoundedUp) {
  const AllocApi& a = api();
  const std::pair<std::size_t, std::size_t> cases[] = {
      {3, kMallocAlignment},
      {24, 32},
      {48, 64},
      {96, 128},
      {384, 512},
      {1000, 1024},
      {5000, 8192},
      {100000, 131072},
      {kMiB + 1, 2 * kMiB},
  };
  for (const auto& [alignment, rounded] : cases) {
    errno = 0;
    void* p = a.memalign(opaque(alignment), 100);
    ASSERT_NE(p, nullptr) << "memalign(" << alignment << ", 100): glibc rounds the alignment up";
    EXPECT_TRUE(aligned_to(p, rounded)) << "memalign(" << alignment << ", 100)";
    std::memset(p, 0x24, 100);
    a.free(p);
  }
}

TEST(Memalign, AlignmentAboveHalfTheAddressSpaceIsEinval) {
  const AllocApi& a = api();
  for (const std::size_t alignment : {SIZE_MAX / 2 + 2, SIZE_MAX}) {
    errno = 0;
    EXPECT_EQ(a.memalign(opaque(alignment), 16), nullptr) << "memalign(" << alignment << ", 16)";
    EXPECT_EQ(errno, EINVAL) << "memalign(" << alignment << ", 16)";
  }
  errno = 0;
  EXPECT_EQ(a.memalign(opaque(SIZE_MAX / 2 + 1), 16), nullptr);
  EXPECT_EQ(errno, ENOMEM) << "memalign(2^63, 16)";
}

TEST(Memalign, ImpossibleSizeFailsWithEnomem) {
  const AllocApi& a = api();
  std::size_t count = 0;
  const std::size_t* impossible = impossible_sizes(&count);
  for (std::size_t i = 0; i < count; ++i) {
    errno = 0;
    void* p = a.memalign(64, opaque(impossible[i]));
    EXPECT_EQ(p, nullptr) << "memalign(64, " << impossible[i] << ")";
    EXPECT_EQ(errno, ENOMEM) << "memalign(64, " << impossible[i] << ")";
    if (p != nullptr) a.free(p);
  }
}

// ---- valloc and pvalloc ----------------------------------------------------------

TEST(Valloc, ReturnsPageAlignedBlocks) {
  const AllocApi& a = api();
  const std::size_t page = page_size();
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{1}, page - 1, page, page + 1, 5 * page + 3, kMiB}) {
    void* p = a.valloc(opaque(size));
    ASSERT_NE(p, nullptr) << "valloc(" << size << ")";
    EXPECT_TRUE(aligned_to(p, page)) << "valloc(" << size << ")";
    EXPECT_GE(a.malloc_usable_size(p), size);
    std::memset(p, 0x61, size);
    a.free(p);
  }
}

TEST(Pvalloc, ReturnsPageAlignedBlocksRoundedUpToWholePages) {
  const AllocApi& a = api();
  const std::size_t page = page_size();
  for (const std::size_t size :
       {std::size_t{1}, std::size_t{100}, page - 1, page, page + 1, 3 * page + 5, kMiB + 1}) {
    void* p = a.pvalloc(opaque(size));
    ASSERT_NE(p, nullptr) << "pvalloc(" << size << ")";
    EXPECT_TRUE(aligned_to(p, page)) << "pvalloc(" << size << ")";
    const std::size_t rounded = round_up(size, page);
    ASSERT_GE(a.malloc_usable_size(p), rounded) << "pvalloc(" << size << ") must round up";
    std::memset(p, 0x62, rounded);
    a.free(p);
  }
  void* p = a.pvalloc(opaque<std::size_t>(0));
  ASSERT_NE(p, nullptr) << "pvalloc(0)";
  EXPECT_TRUE(aligned_to(p, page));
  a.free(p);
}

TEST(VallocAndPvalloc, ImpossibleSizeFailsWithEnomem) {
  const AllocApi& a = api();
  std::size_t count = 0;
  const std::size_t* impossible = impossible_sizes(&count);
  for (std::size_t i = 0; i < count; ++i) {
    errno = 0;
    void* p = a.valloc(opaque(impossible[i]));
    EXPECT_EQ(p, nullptr) << "valloc(" << impossible[i] << ")";
    EXPECT_EQ(errno, ENOMEM) << "valloc(" << impossible[i] << ")";
    if (p != nullptr) a.free(p);
    errno = 0;
    p = a.pvalloc(opaque(impossible[i]));
    EXPECT_EQ(p, nullptr) << "pvalloc(" << impossible[i] << ")";
    EXPECT_EQ(errno, ENOMEM) << "pvalloc(" << impossible[i] << "): rounding up must not wrap";
    if (p != nullptr) a.free(p);
  }
}

}  // namespace
}  // namespace strata_test
