// Segments: 4 MiB-aligned regions of reserved address space, each split into
// 64 units of 64 KiB. Unit 0 holds the segment header (only its first pages
// are ever committed); units 1..63 are handed out as slabs.
//
//   segment (4 MiB, aligned)
//   +---------------+--------+--------+-----------------+--- ... ---+
//   | header unit 0 | slab (1 unit)   | slab (4 units, aligned)     |
//   | descriptors   |        |        |                 |           |
//   +---------------+--------+--------+-----------------+--- ... ---+
//
// From any block pointer: segment = p & ~(4 MiB - 1), unit = bits 16..21 of
// p, slab = segment->unit_slab[unit]. The segment map (one byte per 4 MiB of
// address space) says whether an address lies in a strata segment at all, so
// the slow paths can tell strata's blocks from foreign pointers before
// reading them. free's fast path goes through the slab map instead (below).
#ifndef STRATA_SLAB_SEGMENT_H
#define STRATA_SLAB_SEGMENT_H

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "platform/shared_value.h"
#include "sizeclass/size_classes.h"
#include "slab/slab.h"

namespace strata {

inline constexpr size_t kSegmentShift = 22;
inline constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;
inline constexpr size_t kUnitsPerSegment = kSegmentSize / kUnitSize;  // 64
static_assert(kUnitsPerSegment == 64, "unit masks are 64-bit words");

struct Segment {
  // The pool's fields (under its lock) take the first line: every address
  // the kernel or the slabs align to a page shares that line's cache set
  // (the blocks of 4, 8, 16 and 32 KiB, every slab's first block), so it is
  // kept for cold data. The unit table, which every free reads, in the first
  // line had 60% more first-level misses there in callgrind (glibc-thread-1t:
  // 347,000 against 218,000, 2% of all; CPU time 1.4% more).
  uint64_t free_units = 0;        // units in no slab (bit 0, the header, never)
  uint64_t dirty_units = 0;       // free units that may still hold resident memory
  uint64_t aged_dirty_units = 0;  // dirty already at the last purge tick
  uint64_t committed_units = 0;   // explicit-commit mode: units now committed
  Segment* next = nullptr;        // in the pool's segment list
  Segment* prev = nullptr;
  bool from_brk = false;  // carved from the data segment rather than mmap
  uint32_t slabs_in_use = 0;
  alignas(64) Slab* unit_slab[kUnitsPerSegment];  // the slab covering each unit, or &g_no_slab

  char* unit_address(size_t unit) { return reinterpret_cast<char*>(this) + unit * kUnitSize; }

  // The descriptor of a slab starting at `unit`, built where it lives each
  // time a slab starts there (slab_pool::allocate). Creating the segment
  // writes none of them, and the fields above come first: a program with a
  // few slabs keeps one or two pages of the header resident instead of four
  // (the 64 descriptors take 12 KiB).
  Slab* new_slab_at(size_t unit) { return new (&descriptors_[unit]) Slab(); }

 private:
  union Descriptor {
    Descriptor() {}
    Slab slab;
  };
  Descriptor descriptors_[kUnitsPerSegment];
};

inline Segment* segment_of(const void* p) {
  return reinterpret_cast<Segment*>(reinterpret_cast<uintptr_t>(p) & ~(kSegmentSize - 1));
}

inline size_t unit_of(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) >> kUnitShift) & (kUnitsPerSegment - 1);
}
inline Slab* slab_of(const Segment* segment, const void* p) {
  return segment->unit_slab[unit_of(p)];
}

// One byte per possible segment of the 47-bit user address space: 32 MiB of
// address space mapped read-only, so every byte reads as zero without
// costing memory or (under strict overcommit) commit charge. A page of it
// becomes writable (4 KiB, covering 16 GiB of address space) when the first
// segment it describes is created. Reading is one byte load, no bit
// arithmetic: the map is consulted on every free.
class SegmentMap {
 public:
  static constexpr size_t kAddressBits = 47;
  static constexpr uintptr_t kIndexLimit = uintptr_t{1} << (kAddressBits - kSegmentShift);

  static uintptr_t index_of(const void* p) {
    return reinterpret_cast<uintptr_t>(p) >> kSegmentShift;
  }
  bool contains(const void* p) const {
    uintptr_t index = index_of(p);
    return index < kIndexLimit && bytes_ != nullptr &&
           __atomic_load_n(&bytes_[index], __ATOMIC_RELAXED) != 0;
  }
  // Maps the table, at start-up.
  bool prepare();
  bool ready() const { return bytes_ != nullptr; }
  // Under the slab pool's lock; maps the table if prepare() could not.
  // False if the map cannot be made (ENOMEM).
  bool insert(const Segment* segment);
  void erase(const Segment* segment);

 private:
  uint8_t* bytes_ = nullptr;
  uint64_t writable_pages_[(kIndexLimit / 4096 + 63) / 64] = {};  // bit per page of bytes_
};

extern SegmentMap g_segment_map __attribute__((visibility("hidden")));

// free's way from an address to its slab's block grid and its class's bin,
// in one load from the address alone: one 16-byte entry per unit of the
// 47-bit user address space, 32 GiB of address space mapped read-only like
// the segment map (a page becomes writable, 4 KiB covering 16 MiB, when a
// segment it describes is created).
//
// An entry holds what the grid test needs of the unit's slab but the
// class's magic number, which the thread heap keeps in the bin's first
// line, read with the bin's count (ThreadHeap::grid_magic): the low 32 bits
// of the slab's start, and its carved bound with the bin's offset folded
// into its low bits (grid_bound_of()); and where the slab's descriptor
// lies, for a free past a full bin, realloc and malloc_usable_size. A unit
// of no slab, written or never, reads as all zero, and the grid test then
// fails for every address.
//
// free used to find the slab through the segment map's byte, the
// segment's address, the unit's index and the segment's unit table, then
// read the grid from the descriptor: 13 instructions and three more cache
// lines, on two pages; the map takes four instructions and one line, and
// free no longer reads the descriptor. The entries mirror the segments'
// unit tables and the descriptors, which stay the slow paths' authority:
// where the address space is too scarce for the map (RLIMIT_AS), it is not
// made, and every free takes the slow path.
class SlabMap {
 public:
  struct Entry {
    uint32_t start;        // the slab's start, low 32 bits
    uint32_t slab_offset;  // the slab descriptor's offset in its segment
    uint64_t grid_bound;   // grid_bound_of() the slab's carved bound and bin

    // The offset in every thread heap of the bin of the slab's class.
    size_t bin_offset() const { return shared_value::low_16_bits(&grid_bound); }
    // The descriptor of the slab of p, a block of one.
    Slab* slab_of(const void* p) const {
      return reinterpret_cast<Slab*>(reinterpret_cast<char*>(segment_of(p)) + slab_offset);
    }
    // False for a unit of no slab (or whose slab has carved no block yet).
    bool holds_blocks() const { return __atomic_load_n(&grid_bound, __ATOMIC_RELAXED) != 0; }
    // Slab::is_block_start() of the unit's slab, with the class's magic
    // number; false for a unit of none. A block lies within 1 MiB of its
    // slab's start, so 32 bits of each give the offset.
    bool is_block_start(const void* p, uint64_t grid_magic) const {
      uint32_t offset = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p)) - start;
      return shared_value::below(block_grid_code(offset, grid_magic), &grid_bound);
    }
  };
  static_assert(sizeof(Entry) == 16);

  // A slab's carved bound (block_grid_bound(), a multiple of 2^24 when
  // blocks are carved, else 0) less 2^23, with its bin offset in the low 23
  // bits: the codes block_grid_code() gives the carved blocks' starts stay
  // below it, every other code stays at or above it (see Slab::carved_bound).
  static uint64_t grid_bound_of(uint64_t carved_bound, size_t bin_offset) {
    return carved_bound == 0 ? 0 : carved_bound - (uint64_t{1} << 23) + bin_offset;
  }

  static constexpr uintptr_t kIndexLimit = uintptr_t{1} << (SegmentMap::kAddressBits - kUnitShift);

  static uintptr_t index_of(const void* p) { return reinterpret_cast<uintptr_t>(p) >> kUnitShift; }
  // The entry of the unit at `index` (< kIndexLimit, and the map ready()).
  const Entry& entry_at(uintptr_t index) const { return entries_[index]; }
  // Maps the table, at start-up, before any segment exists: a map made
  // later would miss their entries. False if the address space is short.
  bool prepare();
  bool ready() const { return entries_ != nullptr; }
  // Under the slab pool's lock. Makes the segment's entries writable; false
  // if that fails (ENOMEM).
  bool open(const Segment* segment);
  // Under the slab pool's lock: the `count` units from `first` now belong to
  // `slab`, which has carved no block (&g_no_slab: to none).
  void set(const Segment* segment, size_t first, size_t count, const Slab* slab);
  // By the slab's owner, once it has raised slab->carved_bound.
  void raise_carved_bound(const Slab* slab);

 private:
  Entry* entries_ = nullptr;
};

extern SlabMap g_slab_map __attribute__((visibility("hidden")));

}  // namespace strata

#endif  // STRATA_SLAB_SEGMENT_H
