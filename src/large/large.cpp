// The large-object path: registry, cache and mmap threshold (see large.h).
#include "large/large.h"

#include <errno.h>

#include <cstring>

#include "options/options.h"
#include "platform/lock.h"
#include "platform/os.h"
#include "sizeclass/size_classes.h"

namespace strata::large {
namespace {

// glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the dynamic threshold never
// rises above it.
constexpr size_t kDynamicThresholdMax = size_t{32} << 20;

struct Block {
  uintptr_t address = 0;  // 0: empty slot
  size_t size = 0;        // bytes mapped at address (a multiple of the page size)
  bool mapped = false;    // mapped (unmapped on free) or retained (cached on free)
};

// Open-addressing hash table keyed by address, linear probing with
// backward-shift deletion (no tombstones, so lookups stay short).
class Registry {
 public:
  Block* find(uintptr_t address) {
    if (capacity_ == 0) return nullptr;
    for (size_t i = slot_of(address);; i = (i + 1) & (capacity_ - 1)) {
      if (slots_[i].address == address) return &slots_[i];
      if (slots_[i].address == 0) return nullptr;
    }
  }

  bool insert(const Block& block) {
    if ((count_ + 1) * 2 > capacity_ && !grow()) return false;
    size_t i = slot_of(block.address);
    while (slots_[i].address != 0) i = (i + 1) & (capacity_ - 1);
    slots_[i] = block;
    ++count_;
    return true;
  }

  void erase(Block* slot) {
    size_t hole = static_cast<size_t>(slot - slots_);
    size_t mask = capacity_ - 1;
    for (size_t i = (hole + 1) & mask; slots_[i].address != 0; i = (i + 1) & mask) {
      size_t home = slot_of(slots_[i].address);
      // Move entry i into the hole if its home slot does not lie in (hole, i].
      bool between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
      if (!between) {
        slots_[hole] = slots_[i];
        hole = i;
      }
    }
    slots_[hole] = Block{};
    --count_;
  }

  template <typename F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < capacity_; ++i) {
      if (slots_[i].address != 0) f(slots_[i]);
    }
  }

 private:
  size_t slot_of(uintptr_t address) const {
    return static_cast<size_t>(((address >> 12) * 0x9E3779B97F4A7C15ULL) >> 32) & (capacity_ - 1);
  }

  bool grow() {
    size_t new_capacity = capacity_ == 0 ? 1024 : capacity_ * 2;
    Block* old = slots_;
    size_t old_capacity = capacity_;
    auto* fresh = static_cast<Block*>(os::map(new_capacity * sizeof(Block)));
    if (fresh == nullptr) return false;
    slots_ = fresh;
    capacity_ = new_capacity;
    count_ = 0;
    for (size_t i = 0; i < old_capacity; ++i) {
      if (old[i].address != 0) insert(old[i]);
    }
    if (old != nullptr) os::release(old, old_capacity * sizeof(Block));
    return true;
  }

  Block* slots_ = nullptr;
  size_t capacity_ = 0;
  size_t count_ = 0;
};

// Freed retained blocks kept for reuse, newest last.
struct CachedBlock {
  uintptr_t address;
  size_t size;
  uint64_t freed_ms;
};
constexpr size_t kCacheSlots = 16;

// The last few freed large blocks, to name a double free as such.
struct FreedBlock {
  uintptr_t address;
  size_t size;
};
constexpr size_t kFreedHistory = 64;

constinit SpinLock g_lock;
constinit FreedBlock g_freed[kFreedHistory] = {};
constinit size_t g_freed_next = 0;
constinit Registry g_registry;
constinit CachedBlock g_cache[kCacheSlots] = {};
constinit size_t g_cache_count = 0;
constinit size_t g_cache_bytes = 0;
constinit size_t g_threshold = 128 * 1024;
constinit size_t g_trim_threshold = 128 * 1024;
constinit Usage g_usage;

size_t page_round(size_t size) {
  size_t page = os::g_caps.page_size;
  return (size + page - 1) & ~(page - 1);
}

void cache_remove(size_t index) {
  g_cache_bytes -= g_cache[index].size;
  --g_cache_count;
  for (size_t i = index; i < g_cache_count; ++i) g_cache[i] = g_cache[i + 1];
  g_usage.cached_blocks = g_cache_count;
  g_usage.cached_bytes = g_cache_bytes;
}

// Takes `size` bytes from the cache. The best-fitting cached range serves,
// split when larger (the rest stays cached). When no range is large enough,
// a fresh mapping is assembled from cached ranges, largest first, by moving
// their pages into it (mremap: page tables move, data is not copied); only
// what they do not cover is new memory. Either way the pages the program
// already faulted in are used again, as they would be in glibc's coalescing
// heap. *dirty_bytes gets the length of the prefix that may hold old data.
// nullptr when the cache is empty or the kernel refuses.
void* cache_take(size_t size, size_t* dirty_bytes) {
  size_t best = kCacheSlots;
  for (size_t i = 0; i < g_cache_count; ++i) {
    size_t have = g_cache[i].size;
    if (have >= size && (best == kCacheSlots || have < g_cache[best].size)) best = i;
  }
  if (best != kCacheSlots) {
    auto* p = reinterpret_cast<void*>(g_cache[best].address);
    if (g_cache[best].size == size) {
      cache_remove(best);
    } else {
      g_cache[best].address += size;
      g_cache[best].size -= size;
      g_cache_bytes -= size;
      g_usage.cached_bytes = g_cache_bytes;
    }
    *dirty_bytes = size;
    return p;
  }
  if (g_cache_count == 0) return nullptr;
  auto* p = static_cast<char*>(os::map(size));
  if (p == nullptr) return nullptr;
  size_t filled = 0;
  while (filled < size && g_cache_count != 0) {
    size_t largest = 0;
    for (size_t i = 1; i < g_cache_count; ++i) {
      if (g_cache[i].size > g_cache[largest].size) largest = i;
    }
    CachedBlock& from = g_cache[largest];
    size_t part = from.size < size - filled ? from.size : size - filled;
    if (!os::move_pages(reinterpret_cast<void*>(from.address), p + filled, part)) break;
    filled += part;
    if (part == from.size) {
      cache_remove(largest);
    } else {
      from.address += part;
      from.size -= part;
      g_cache_bytes -= part;
      g_usage.cached_bytes = g_cache_bytes;
    }
  }
  *dirty_bytes = filled;
  return p;
}

// Unmapping happens outside the lock: whoever edits the cache under the lock
// collects here what to unmap afterwards.
struct UnmapList {
  struct Range {
    uintptr_t address;
    size_t size;
  };
  Range ranges[kCacheSlots + 1];
  size_t count = 0;
  void add(uintptr_t address, size_t size) { ranges[count++] = Range{address, size}; }
  void run() {
    for (size_t i = 0; i < count; ++i) {
      os::release(reinterpret_cast<void*>(ranges[i].address), ranges[i].size);
    }
  }
};

// Keeps a freed retained block for reuse, merged with a cached neighbour
// when they touch, evicting the oldest entries to stay within the slot count
// and the trim threshold.
// How many bytes of freed retained blocks the cache may keep: the trim
// threshold the program set; or, while glibc's dynamic threshold is in
// charge, at least four times the small-object dirty budget. Re-faulting a
// large block costs a page fault per 4 KiB on every reuse (mstress spends
// half its time there with an 8 MiB cache), and the purge delay still returns
// an idle cache to the kernel.
size_t cache_budget() {
  if (!g_options.mmap_threshold_dynamic) return g_trim_threshold;
  size_t floor = 4 * g_options.dirty_max;
  return g_trim_threshold > floor ? g_trim_threshold : floor;
}

void cache_put(uintptr_t address, size_t size, UnmapList* unmap) {
  size_t budget = cache_budget();
  if (size > budget) {
    unmap->add(address, size);
    return;
  }
  for (size_t i = 0; i < g_cache_count; ++i) {
    CachedBlock& neighbour = g_cache[i];
    if (neighbour.address + neighbour.size == address || address + size == neighbour.address) {
      address = address < neighbour.address ? address : neighbour.address;
      size += neighbour.size;
      cache_remove(i);
      break;
    }
  }
  while (g_cache_count != 0 && (g_cache_count == kCacheSlots || g_cache_bytes + size > budget)) {
    unmap->add(g_cache[0].address, g_cache[0].size);
    cache_remove(0);
  }
  if (size > budget) {
    unmap->add(address, size);
    return;
  }
  g_cache[g_cache_count++] = CachedBlock{address, size, os::now_ms()};
  g_cache_bytes += size;
  g_usage.cached_blocks = g_cache_count;
  g_usage.cached_bytes = g_cache_bytes;
}

void account(const Block& block, bool add) {
  size_t& blocks = block.mapped ? g_usage.mapped_blocks : g_usage.retained_blocks;
  size_t& bytes = block.mapped ? g_usage.mapped_bytes : g_usage.retained_bytes;
  if (add) {
    ++blocks;
    bytes += block.size;
    if (g_usage.mapped_bytes > g_usage.max_mapped_bytes)
      g_usage.max_mapped_bytes = g_usage.mapped_bytes;
    if (g_usage.mapped_blocks > g_usage.max_mapped_blocks)
      g_usage.max_mapped_blocks = g_usage.mapped_blocks;
  } else {
    --blocks;
    bytes -= block.size;
  }
}

bool use_mapping(size_t size) {
  // mmap_max <= 0 never maps, as in glibc.
  return size >= g_threshold && g_options.mmap_max > 0 &&
         g_usage.mapped_blocks < static_cast<size_t>(g_options.mmap_max);
}

// The option values the thresholds were last taken from.
constinit bool g_thresholds_taken = false;
constinit size_t g_threshold_option = 0;
constinit size_t g_trim_option = 0;

}  // namespace

void take_thresholds(bool mmap, bool trim) {
  if (mmap) {
    g_threshold_option = g_options.mmap_threshold;
    __atomic_store_n(&g_threshold, g_threshold_option, __ATOMIC_RELAXED);
  }
  if (trim) {
    g_trim_option = g_options.trim_threshold;
    g_trim_threshold = g_trim_option;
  }
  g_thresholds_taken = true;
}

void init() {
  take_thresholds(!g_thresholds_taken || g_options.mmap_threshold != g_threshold_option,
                  !g_thresholds_taken || g_options.trim_threshold != g_trim_option);
}

size_t mmap_threshold() { return __atomic_load_n(&g_threshold, __ATOMIC_RELAXED); }

void* allocate(size_t size, size_t alignment, bool zero) {
  size_t bytes = page_round(size);
  if (bytes < size) {
    errno = ENOMEM;
    return nullptr;
  }
  if (bytes == 0) bytes = os::g_caps.page_size;  // memalign(huge, 0)
  void* p = nullptr;
  size_t dirty = 0;
  if (alignment <= os::g_caps.page_size) {
    LockGuard guard(g_lock);
    if (g_cache_count != 0) p = cache_take(bytes, &dirty);
  }
  if (p == nullptr) p = os::map_aligned(bytes, alignment < os::g_caps.page_size ? 0 : alignment);
  if (p == nullptr) return nullptr;
  // Memory new from the kernel is zero already: calloc clears only what a
  // cached range brought along.
  if (zero && dirty != 0) std::memset(p, 0, dirty < size ? dirty : size);
  LockGuard guard(g_lock);
  Block block{reinterpret_cast<uintptr_t>(p), bytes, use_mapping(bytes)};
  if (!g_registry.insert(block)) {
    os::release(p, bytes);
    errno = ENOMEM;
    return nullptr;
  }
  account(block, true);
  ++g_usage.allocations;
  return p;
}

size_t deallocate(void* p) {
  UnmapList unmap;
  size_t size = 0;
  {
    LockGuard guard(g_lock);
    Block* slot = g_registry.find(reinterpret_cast<uintptr_t>(p));
    if (slot == nullptr) return 0;
    Block block = *slot;
    g_registry.erase(slot);
    account(block, false);
    ++g_usage.frees;
    size = block.size;
    g_freed[g_freed_next++ % kFreedHistory] = FreedBlock{block.address, block.size};
    if (block.mapped) {
      unmap.add(block.address, block.size);
      if (g_options.mmap_threshold_dynamic && block.size > g_threshold &&
          block.size <= kDynamicThresholdMax) {
        // glibc sets the threshold to the chunk size, header included, so a
        // request of the size just freed falls below it: + 1 does the same.
        __atomic_store_n(&g_threshold, block.size + 1, __ATOMIC_RELAXED);
        g_trim_threshold = 2 * block.size;
      }
    } else {
      cache_put(block.address, block.size, &unmap);
    }
  }
  unmap.run();
  return size;
}

size_t recently_freed_size(const void* p) {
  LockGuard guard(g_lock);
  for (const FreedBlock& freed : g_freed) {
    if (freed.address == reinterpret_cast<uintptr_t>(p)) return freed.size;
  }
  return 0;
}

size_t usable_size(const void* p) {
  LockGuard guard(g_lock);
  Block* slot = g_registry.find(reinterpret_cast<uintptr_t>(p));
  return slot == nullptr ? 0 : slot->size;
}

void* reallocate(void* p, size_t new_size) {
  size_t bytes = page_round(new_size);
  if (bytes < new_size) {
    errno = ENOMEM;
    return nullptr;
  }
  LockGuard guard(g_lock);
  Block* slot = g_registry.find(reinterpret_cast<uintptr_t>(p));
  if (slot == nullptr) return nullptr;
  Block block = *slot;
  if (bytes == block.size) return p;
  // The block must not be seen half-moved, so the registry entry is updated
  // under the lock.
  void* q = nullptr;
  if (bytes < block.size) {
    os::shrink(p, block.size, bytes);
    q = p;
  } else {
    q = os::remap(p, block.size, bytes);
    // A block assembled from cached ranges may span several kernel mappings,
    // which mremap refuses to grow: copy instead.
    if (q == nullptr && (q = os::map(bytes)) != nullptr) {
      std::memcpy(q, p, block.size);
      os::release(p, block.size);
    }
  }
  if (q == nullptr) return nullptr;
  g_registry.erase(slot);
  account(block, false);
  block.address = reinterpret_cast<uintptr_t>(q);
  block.size = bytes;
  g_registry.insert(block);  // cannot fail: the table has the slot just freed
  account(block, true);
  return q;
}

size_t release_cached(bool only_aged, uint64_t now_ms) {
  UnmapList unmap;
  size_t released = 0;
  {
    LockGuard guard(g_lock);
    for (size_t i = 0; i < g_cache_count;) {
      if (only_aged && now_ms - g_cache[i].freed_ms < g_options.purge_delay_ms) {
        ++i;
        continue;
      }
      unmap.add(g_cache[i].address, g_cache[i].size);
      released += g_cache[i].size;
      cache_remove(i);
    }
  }
  unmap.run();
  return released;
}

Usage usage() {
  LockGuard guard(g_lock);
  return g_usage;
}

void for_each_block(void (*visit)(const void*, size_t, void*), void* context) {
  LockGuard guard(g_lock);
  g_registry.for_each([&](const Block& block) {
    visit(reinterpret_cast<void*>(block.address), block.size, context);
  });
}

void fork_prepare() { g_lock.fork_prepare(); }
void fork_parent() { g_lock.fork_parent(); }
void fork_child() { g_lock.reset_after_fork(); }

}  // namespace strata::large
