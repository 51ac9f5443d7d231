// Slabs: a run of units inside a segment, carved into blocks of one size
// class. This header holds the slab descriptor and the encoded free lists
// that both the owning thread and remote freeing threads use.
//
// Invariants (per slab, from the owner's point of view):
//   capacity == used + length(free) + (end - carve) / block_size
//   blocks in remote_free are counted in `used` until the owner collects them
//   a free block's second word equals free_tag(); a handed-out block's
//   second word is anything else (malloc clears it), which is how a double
//   free is recognised without a header.
#ifndef STRATA_SLAB_SLAB_H
#define STRATA_SLAB_SLAB_H

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "platform/shared_value.h"
#include "sizeclass/size_classes.h"

namespace strata {

class ThreadHeap;

// Per-process secrets: free-list links are XORed with list_key so that an
// overflow writing plain pointers cannot forge them, and tag_key is the free
// tag, a value a program's data cannot be expected to hold.
struct Secrets {
  uintptr_t list_key;
  uintptr_t tag_key;
};
extern constinit Secrets g_secrets;

struct FreeBlock {
  uintptr_t next_encoded;
  uintptr_t tag;
};

// The second word of every free block. The same for every block: free's
// fast path then tests it without mixing in the block's address (one
// instruction fewer), and a double free is no likelier to go unseen, since
// a block a program holds finds the tag only where the program copied it
// from a freed block.
inline uintptr_t free_tag() { return g_secrets.tag_key; }
inline uintptr_t encode_next(const FreeBlock* next) {
  return reinterpret_cast<uintptr_t>(next) ^ g_secrets.list_key;
}
inline FreeBlock* decode_next(uintptr_t encoded) {
  return reinterpret_cast<FreeBlock*>(encoded ^ g_secrets.list_key);
}

// Bit 0 of Slab::remote_free: the owner has set the slab aside as exhausted
// and wants to hear of the next remote free (see ThreadHeap::notify_slab).
inline constexpr uintptr_t kNotifyOwner = 1;

// Block-start test without a division, one comparison for "the start of one
// of the slab's first n blocks". With m = floor(2^40 / size) + 1 and
// e = m * size - 2^40 (0 < e <= size), an offset = q * size + r gives
// offset * m = q * 2^40 + (q * e + r * m). For offsets below 4 MiB and sizes
// up to 128 KiB, q * e is below 2^22 and m at least 2^23, so the low 40 bits
// L = q * e + r * m never carry into bit 40, and q (below 2^18) is the block
// index. Rotating the product left by 24 gives the code (L << 24) | q:
//   r == 0: (q * e << 24) | q, which lies in [q * step, (q + 1) * step) for
//           step = e << 24, so below n * step exactly when q < n;
//   r != 0: L >= m >= 2^23, so the code is at least 2^47, above every bound
//           (n * e <= 4 MiB, so n * step <= 2^46).
inline uint64_t block_grid_magic(uint32_t block_size) {
  return ((uint64_t{1} << 40) / block_size) + 1;
}
inline uint64_t block_grid_step(uint32_t block_size) {
  return (block_grid_magic(block_size) * block_size - (uint64_t{1} << 40)) << 24;
}
inline uint64_t block_grid_code(uint64_t offset, uint64_t magic) {
  return std::rotl(offset * magic, 24);
}
// The bound block_grid_code() stays below for the first `blocks` blocks.
inline uint64_t block_grid_bound(uint64_t blocks, uint64_t step) { return blocks * step; }

struct Slab {
  // Three cache lines: what the owner writes on every call, what every
  // thread reads to free a block (written while the slab is empty, but for
  // `carve`), and the remote free list. A remote free then reads a line that
  // stays shared instead of one the owner keeps modifying, and the owner's
  // own free reads only that line of the descriptor.

  // --- Owner thread only: the fast paths write these. ---
  // Never a block: its address ends the free list. First, so that the end
  // of the list is the descriptor's own address.
  FreeBlock end_marker_ = {0, 0};
  // Blocks ready to hand out. The list ends at list_end(), inside this
  // descriptor: that lies in the same segment as every block, so one test
  // checks every link, the last included.
  FreeBlock* free = &end_marker_;
  uint32_t used = 0;          // blocks handed out or waiting in remote_free
  bool free_is_zero = false;  // every block in `free` is zero but for its link word
  bool fresh = false;         // [carve, end) is known to be zero
  bool listed = false;        // on the owner's list for its class
  Slab* next = nullptr;
  Slab* prev = nullptr;
  char* carve = nullptr;  // first block never handed out: the carving cursor

  // --- Read by every thread; written only while no block is in use. ---
  // nullptr: not a live slab (a sentinel or retired), so a valid free never
  // races with the write.
  alignas(64) ThreadHeap* owner = nullptr;
  char* start = nullptr;    // first block
  char* end = nullptr;      // start + capacity * block_size
  uint64_t grid_magic = 0;  // block_grid_magic(block_size)
  uint64_t grid_step = 0;   // block_grid_step(block_size)
  // block_grid_bound() of the blocks carved so far: every free checks that
  // its block is one of them. Only the owner raises it (when it carves, a
  // few times in a slab's life), before handing out the blocks it adds; a
  // thread freeing such a block got it through the program's own
  // synchronisation, so it reads this value or a later one: a relaxed
  // atomic, written with __atomic_store_n and read by shared_value::below(),
  // which compares it in one instruction. On this line rather than the
  // owner's, the owner's free reads one line of the descriptor instead of
  // two (glibc-thread-1t: 13% fewer first-level cache misses in callgrind,
  // 4% less CPU time).
  uint64_t carved_bound = 0;
  uint32_t block_size = 0;
  uint32_t capacity = 0;
  // Where the thread heaps keep the bin of the slab's class
  // (ThreadHeap::bin_offset), copied into the slab map, where free reads it.
  uint16_t bin_offset = 0;
  uint8_t size_class = 0;
  uint8_t units = 0;
  uint8_t first_unit = 0;

  // --- Shared with other threads. ---
  alignas(64) std::atomic<uintptr_t> remote_free{0};  // FreeBlock* | kNotifyOwner
  Slab* next_notified = nullptr;                      // link in the owner's notify stack

  // True if p is the start of a block of this slab (see block_grid_magic).
  bool is_on_grid(const void* p) const {
    return grid_code(p) < block_grid_bound(capacity, grid_step);
  }

  // True if p is the start of a block that was handed out at some point (it
  // may be free now; the tag tells). False for every p once the slab is
  // retired (carved_bound == 0).
  bool is_block_start(const void* p) const {
    return shared_value::below(grid_code(p), &carved_bound);
  }
  uint64_t grid_code(const void* p) const {
    return block_grid_code(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(start),
                           grid_magic);
  }

  FreeBlock* list_end() { return &end_marker_; }
  const FreeBlock* list_end() const { return &end_marker_; }
  bool has_free_blocks() const { return free != list_end(); }

  bool has_remote_blocks() const {
    return (remote_free.load(std::memory_order_relaxed) & ~kNotifyOwner) != 0;
  }
};

// The descriptor every unit that belongs to no slab points to: its owner is
// nullptr, so a free landing there fails the owner check and is diagnosed.
extern Slab g_no_slab __attribute__((visibility("hidden")));

}  // namespace strata

#endif  // STRATA_SLAB_SLAB_H
