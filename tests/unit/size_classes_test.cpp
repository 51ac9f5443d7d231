// Size classes: every request maps to the smallest class that holds it, the
// waste bound holds, and the slab shapes respect the pool's constraints.
#include <gtest/gtest.h>

#include "sizeclass/size_classes.h"
#include "slab/segment.h"
#include "slab/slab.h"

namespace strata {
namespace {

TEST(SizeClasses, EveryRequestGetsTheSmallestClassThatFits) {
  for (size_t size = 0; size <= kMaxSmallSize; ++size) {
    size_t cls = size_class_of(size);
    ASSERT_LT(cls, kNumClasses) << size;
    // malloc's form of it: the class scaled to a bin's size.
    ASSERT_EQ(class_record_of(size), cls << kClassRecordShift) << size;
    ASSERT_GE(kSizeClasses[cls].block_size, size) << size;
    if (cls > 0) {
      ASSERT_LT(kSizeClasses[cls - 1].block_size, size == 0 ? 1 : size) << size;
    }
    if (size > 128) {
      ASSERT_EQ(size_class_computed(size), cls) << size;
    }
  }
}

TEST(SizeClasses, BlocksAreSixteenByteMultiplesAndIncreasing) {
  for (size_t cls = 0; cls < kNumClasses; ++cls) {
    EXPECT_EQ(kSizeClasses[cls].block_size % kMinAlign, 0u);
    if (cls > 0) {
      EXPECT_GT(kSizeClasses[cls].block_size, kSizeClasses[cls - 1].block_size);
    }
  }
}

TEST(SizeClasses, WasteAbove128BytesIsAtMostTwentyPercent) {
  for (size_t cls = 8; cls < kNumClasses; ++cls) {
    size_t worst_request = kSizeClasses[cls - 1].block_size + 1;
    double waste = 1.0 - static_cast<double>(worst_request) / kSizeClasses[cls].block_size;
    EXPECT_LE(waste, 0.20) << kSizeClasses[cls].block_size;
  }
}

TEST(SizeClasses, SlabsArePowerOfTwoUnitsHoldingEnoughBlocks) {
  for (size_t cls = 0; cls < kNumClasses; ++cls) {
    const SizeClassInfo& info = kSizeClasses[cls];
    EXPECT_TRUE(info.slab_units >= 1 && info.slab_units <= kMaxSlabUnits);
    EXPECT_EQ(info.slab_units & (info.slab_units - 1), 0u);
    EXPECT_GE(info.capacity, info.slab_units < kCompactSlabUnits ? kSlabBlocks : kMinSlabBlocks);
    EXPECT_LE(static_cast<size_t>(info.capacity) * info.block_size, info.slab_units * kUnitSize);
  }
}

// The fixed-point test used to validate block starts must be exact for every
// offset a slab can have and every number of blocks carved: its code is
// below the bound for n blocks exactly at the starts of blocks 0 to n - 1;
// and so with the slab map's bound, which holds a bin offset in its low
// bits (the largest here).
TEST(SizeClasses, BlockGridTestIsExactForEveryOffset) {
  constexpr size_t kBinOffset = UINT16_MAX;
  for (size_t cls = 0; cls < kNumClasses; ++cls) {
    uint32_t size = kSizeClasses[cls].block_size;
    uint64_t magic = block_grid_magic(size);
    uint64_t step = block_grid_step(size);
    uint64_t capacity = kSizeClasses[cls].capacity;
    const uint64_t carved[] = {0, 1, capacity / 2, capacity - 1, capacity};
    size_t limit = kSizeClasses[cls].slab_units * kUnitSize;
    for (uint64_t offset = 0; offset < limit; ++offset) {
      uint64_t code = block_grid_code(offset, magic);
      for (uint64_t blocks : carved) {
        bool start = offset % size == 0 && offset / size < blocks;
        ASSERT_EQ(code < block_grid_bound(blocks, step), start)
            << "size " << size << " offset " << offset << " blocks " << blocks;
        ASSERT_EQ(code < SlabMap::grid_bound_of(block_grid_bound(blocks, step), kBinOffset), start)
            << "slab map: size " << size << " offset " << offset << " blocks " << blocks;
      }
    }
  }
}

}  // namespace
}  // namespace strata
