// Size classes: the block sizes small requests are rounded up to, and the
// shape of the slab each class is carved from.
//
//   16 .. 128 bytes       every 16 bytes           (8 classes)
//   129 B .. 128 KiB      4 classes per doubling   (40 classes)
//
// With four classes per doubling a request wastes at most 20% of its block
// (e.g. 129 B in 160 B); `strata size-classes` prints the table with each
// class's worst-case and slab-tail waste. Everything here is constexpr so the
// fast path's lookup is a table read or a few bit operations.
#ifndef STRATA_SIZECLASS_SIZE_CLASSES_H
#define STRATA_SIZECLASS_SIZE_CLASSES_H

#include <array>
#include <cstddef>
#include <cstdint>

namespace strata {

// The allocator's unit of address space inside a segment. Slabs are made of
// 1, 2, 4, 8 or 16 consecutive units.
inline constexpr size_t kUnitShift = 16;
inline constexpr size_t kUnitSize = size_t{1} << kUnitShift;  // 64 KiB
inline constexpr size_t kMaxSlabUnits = 16;

inline constexpr size_t kMinAlign = 16;
inline constexpr size_t kNumClasses = 48;
inline constexpr size_t kMaxSmallSize = 128 * 1024;
// Every small request finds its class with one load from a 16 KiB table.
inline constexpr size_t kLookupMax = kMaxSmallSize;
// The table holds each class shifted left by kClassRecordShift: the thread
// heap keeps a 256-byte record per class (its bin), which malloc's fast path
// then addresses from the table's entry without a shift. Two instructions
// fewer per malloc than a table of plain classes.
inline constexpr size_t kClassRecordShift = 8;

struct SizeClassInfo {
  uint32_t block_size;
  uint32_t slab_units;  // slab size = slab_units * kUnitSize
  uint32_t capacity;    // blocks per slab
};

// Blocks a slab should hold, so that a class whose live blocks number a few
// dozen lives in one or two slabs instead of switching between several on
// every refill (glibc-thread-1t: 12-24% less CPU time with 16 blocks than
// with 8, and up to 29% less peak RSS); slabs beyond kCompactSlabUnits
// settle for kMinSlabBlocks, since larger slabs of the largest classes cost
// resident memory when many threads each keep them part full (alloc-test-8t:
// 19% more peak RSS with 16 blocks everywhere).
inline constexpr size_t kSlabBlocks = 16;
inline constexpr size_t kMinSlabBlocks = 8;
inline constexpr uint32_t kCompactSlabUnits = 4;

// Classes from this one up live in shared slabs (heap/central_heap.h), not
// in each thread's own.
inline constexpr size_t kFirstSharedClass = 40;
inline constexpr bool is_shared_class(size_t size_class) { return size_class >= kFirstSharedClass; }

namespace detail {

constexpr uint32_t class_block_size(size_t cls) {
  if (cls < 8) return static_cast<uint32_t>((cls + 1) * 16);
  size_t group = (cls - 8) / 4;  // 0 => (128, 256], 1 => (256, 512], ...
  size_t step = size_t{32} << group;
  size_t base = size_t{128} << group;
  return static_cast<uint32_t>(base + ((cls - 8) % 4 + 1) * step);
}

// The smallest slab (in units) holding enough blocks (above) with at most
// 1/8 of it left over at the tail; the largest classes settle for 16 units.
constexpr uint32_t class_slab_units(uint32_t block_size) {
  for (uint32_t units = 1; units < kMaxSlabUnits; units *= 2) {
    size_t bytes = units * kUnitSize;
    size_t blocks = bytes / block_size;
    size_t tail = bytes - blocks * block_size;
    size_t wanted = units < kCompactSlabUnits ? kSlabBlocks : kMinSlabBlocks;
    if (blocks >= wanted && tail * 8 <= bytes) return units;
  }
  return kMaxSlabUnits;
}

constexpr std::array<SizeClassInfo, kNumClasses> make_class_table() {
  std::array<SizeClassInfo, kNumClasses> table{};
  for (size_t cls = 0; cls < kNumClasses; ++cls) {
    uint32_t size = class_block_size(cls);
    uint32_t units = class_slab_units(size);
    table[cls] = {size, units, static_cast<uint32_t>(units * kUnitSize / size)};
  }
  return table;
}

constexpr std::array<uint16_t, kLookupMax / 16 + 1> make_lookup_table();

}  // namespace detail

inline constexpr std::array<SizeClassInfo, kNumClasses> kSizeClasses = detail::make_class_table();

// Class of a request of 129 .. kMaxSmallSize bytes, by arithmetic: the
// position of the highest bit picks the doubling, the next two bits the
// quarter within it.
constexpr size_t size_class_computed(size_t size) {
  size_t s = size - 1;
  size_t log2 = 63 - static_cast<size_t>(__builtin_clzll(s));  // >= 7
  return 8 + (log2 - 7) * 4 + ((s >> (log2 - 2)) & 3);
}

namespace detail {
constexpr std::array<uint16_t, kLookupMax / 16 + 1> make_lookup_table() {
  std::array<uint16_t, kLookupMax / 16 + 1> table{};
  for (size_t i = 0; i < table.size(); ++i) {
    size_t size = i * 16;
    size_t size_class = size <= 128 ? (size == 0 ? 0 : size / 16 - 1) : size_class_computed(size);
    table[i] = static_cast<uint16_t>(size_class << kClassRecordShift);
  }
  return table;
}
}  // namespace detail

inline constexpr std::array<uint16_t, kLookupMax / 16 + 1> kClassLookup =
    detail::make_lookup_table();
static_assert((kNumClasses - 1) << kClassRecordShift <= UINT16_MAX);

// The class of any size <= kMaxSmallSize, shifted left by kClassRecordShift.
inline size_t class_record_of(size_t size) { return kClassLookup[(size + 15) >> 4]; }
// The class of any size <= kMaxSmallSize.
inline size_t size_class_of(size_t size) { return class_record_of(size) >> kClassRecordShift; }

// The first class holding `size` (<= kMaxSmallSize) whose block size is a
// multiple of `alignment` (a power of two, at most kMaxSmallSize): slabs
// start on multiples of their own size, so its blocks are that aligned. The
// last class, kMaxSmallSize, is a multiple of every such alignment.
inline size_t size_class_aligned(size_t size, size_t alignment) {
  size_t size_class = size_class_of(size);
  while ((kSizeClasses[size_class].block_size & (alignment - 1)) != 0) ++size_class;
  return size_class;
}

static_assert(kSizeClasses[kNumClasses - 1].block_size == kMaxSmallSize);
static_assert(kSizeClasses[8].block_size == 160 && kSizeClasses[11].block_size == 256);
static_assert(size_class_computed(129) == 8 && size_class_computed(256) == 11 &&
              size_class_computed(257) == 12 && size_class_computed(kMaxSmallSize) == 47);

}  // namespace strata

#endif  // STRATA_SIZECLASS_SIZE_CLASSES_H
