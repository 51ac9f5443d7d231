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
  bool arena = false;     // retained in an arena (see below) rather than mapped alone
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

// How many bytes of freed retained blocks may stay resident: the trim
// threshold the program set; or, while glibc's dynamic threshold is in
// charge, at least eight times the small-object dirty budget. Re-faulting a
// large block costs a page fault per 4 KiB on every reuse (malloc-large
// spends most of its time there with half this budget), and the purge delay
// still returns an idle cache to the kernel.
size_t cache_budget() {
  if (!g_options.mmap_threshold_dynamic) return g_trim_threshold;
  size_t floor = 8 * g_options.dirty_max;
  return g_trim_threshold > floor ? g_trim_threshold : floor;
}

// The largest block taken from the arenas within the last purge delay: the
// size of the blocks the program is asking for again.
constinit size_t g_reuse_bytes = 0;
constinit uint64_t g_reuse_ms = 0;

void note_reuse(size_t bytes) {
  uint64_t now = os::now_ms();
  if (bytes >= g_reuse_bytes || now - g_reuse_ms >= g_options.purge_delay_ms) {
    g_reuse_bytes = bytes;
    g_reuse_ms = now;
  }
}

// The arenas keep freed memory in proportion to what is being asked for: at
// most three of the largest recent blocks (the one being freed, the one asked
// for next and room to place it), but never less than six times dirty_max
// (a program churning many blocks of a few hundred KiB, like mstress, faulted
// twice as many pages with only three of them kept, and 30% more with four
// times dirty_max than with six: 52,000 faults against 40,000, 6-16% more CPU
// time; eight times saved no more), within the budget. Above half the dynamic
// budget (the budget itself when the program set the thresholds) they keep it only while few large
// blocks are live: the large footprint, live plus cached, may pass the budget by dirty_max at most.
// A program cycling through a few big buffers keeps all of them; one holding many blocks keeps no
// more than half the budget, and one freeing blocks of a size it no longer asks for little.
size_t arena_keep() {
  size_t budget = cache_budget();
  size_t cap = 3 * g_reuse_bytes;
  size_t floor = 6 * g_options.dirty_max;
  cap = cap > floor ? cap : floor;
  cap = cap < budget ? cap : budget;
  size_t low = g_options.mmap_threshold_dynamic ? budget / 2 : budget;
  low = low < cap ? low : cap;
  size_t live = g_usage.retained_bytes + g_usage.mapped_bytes;
  size_t room = budget + g_options.dirty_max;
  size_t keep = live < room ? room - live : 0;
  keep = keep < low ? low : keep;
  keep = keep > cap ? cap : keep;
  return keep > g_cache_bytes ? keep - g_cache_bytes : 0;
}

// Keeps a freed retained block for reuse, merged with a cached neighbour
// when they touch, evicting the oldest entries to stay within the slot count
// and the budget.
size_t arena_dirty_bytes();

void cache_put(uintptr_t address, size_t size, UnmapList* unmap) {
  // The arenas' dirty units count against the same budget.
  size_t budget = cache_budget();
  budget = budget > arena_dirty_bytes() ? budget - arena_dirty_bytes() : 0;
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

// ---- Arenas -----------------------------------------------------------------
//
// Retained blocks up to kArenaMaxBlock live in arenas: 256 MiB reservations
// cut into 64 KiB units. A freed block's units stay resident (*dirty*) within
// the cache budget and are handed out again in place, so a program cycling
// through multi-MiB buffers of varying sizes reuses the pages it already
// faulted in without any system call. Placement picks, among all free windows
// large enough, the one with the fewest clean (never used or purged) units:
// those are the page faults the block will cost. Pages are never moved
// between addresses, so an arena stays one kernel mapping however long the
// program runs (moving pages between separately mapped ranges with mremap
// leaves one mapping per piece, and each later move pays for every piece).

constexpr size_t kUnitShift = 16;
constexpr size_t kUnit = size_t{1} << kUnitShift;
constexpr size_t kArenaBytes = size_t{256} << 20;
constexpr size_t kArenaUnits = kArenaBytes / kUnit;
constexpr size_t kArenaWords = kArenaUnits / 64;
constexpr size_t kMaxArenas = 8;
// Larger retained blocks (possible only with a threshold the program raised
// beyond glibc's dynamic maximum) are mapped alone and use the range cache.
constexpr size_t kArenaMaxBlock = kDynamicThresholdMax;

struct Arena {
  uintptr_t base;
  uint64_t live[kArenaWords];      // unit belongs to a live block
  uint64_t dirty[kArenaWords];     // free unit that may hold resident pages
  uint32_t freed_ms[kArenaUnits];  // when a dirty unit was freed (low 32 bits)
  size_t dirty_units;
};

constinit Arena* g_arenas[kMaxArenas] = {};
constinit size_t g_arena_count = 0;
constinit size_t g_arena_dirty_units = 0;
// After the kernel refused an arena, do not ask again on every allocation.
constinit uint64_t g_arena_refused_ms = 0;
constinit bool g_arena_refused = false;

bool bit(const uint64_t* bits, size_t i) { return (bits[i >> 6] >> (i & 63)) & 1; }

// Calls visit(word, mask) for each word holding bits of [from, to), with
// the mask of those bits.
template <typename Visit>
[[gnu::always_inline]] inline void for_each_word(size_t from, size_t to, Visit visit) {
  for (size_t i = from; i < to;) {
    size_t word = i >> 6;
    size_t lo = i & 63;
    size_t hi = (to - (word << 6)) < 64 ? to - (word << 6) : 64;
    uint64_t mask =
        (hi == 64 ? ~uint64_t{0} : ((uint64_t{1} << hi) - 1)) & ~((uint64_t{1} << lo) - 1);
    visit(word, mask);
    i = (word << 6) + hi;
  }
}

void set_bits(uint64_t* bits, size_t from, size_t to, bool value) {
  for_each_word(from, to, [&](size_t word, uint64_t mask) {
    bits[word] = value ? bits[word] | mask : bits[word] & ~mask;
  });
}

size_t count_bits(const uint64_t* bits, size_t from, size_t to) {
  size_t n = 0;
  for_each_word(from, to, [&](size_t word, uint64_t mask) {
    n += static_cast<size_t>(os::bit_count(bits[word] & mask));
  });
  return n;
}

// First unit at or after `from` (below `to`) whose bit is `value`; `to` if none.
size_t find_bit(const uint64_t* bits, size_t from, size_t to, bool value) {
  for (size_t i = from; i < to;) {
    size_t word = i >> 6;
    uint64_t w = value ? bits[word] : ~bits[word];
    w &= ~uint64_t{0} << (i & 63);
    if (w != 0) {
      size_t found = (word << 6) + static_cast<size_t>(__builtin_ctzll(w));
      return found < to ? found : to;
    }
    i = (word + 1) << 6;
  }
  return to;
}

// One past the last set bit below `to`; 0 if none.
size_t find_last_bit(const uint64_t* bits, size_t to) {
  while (to > 0) {
    size_t word = (to - 1) >> 6;
    size_t hi = to - (word << 6);
    uint64_t w = bits[word] & (hi == 64 ? ~uint64_t{0} : ((uint64_t{1} << hi) - 1));
    if (w != 0) return (word << 6) + 64 - static_cast<size_t>(__builtin_clzll(w));
    to = word << 6;
  }
  return 0;
}

size_t units_of(size_t bytes) { return (bytes + kUnit - 1) >> kUnitShift; }

struct Placement {
  Arena* arena = nullptr;
  size_t unit = 0;
  size_t faults = 0;  // clean units in the window
  size_t room = 0;    // length of the free run holding it
};

// Considers the window of `units` at `unit` in a free run of `room` units.
void consider(Arena* arena, size_t unit, size_t units, size_t room, Placement* best) {
  size_t faults = units - count_bits(arena->dirty, unit, unit + units);
  if (best->arena == nullptr || faults < best->faults ||
      (faults == best->faults && room < best->room)) {
    *best = Placement{arena, unit, faults, room};
  }
}

// The free window of `units` units costing the fewest page faults; among
// equals, the one in the tightest free run, then the lowest. The cost of a
// window changes only where a dirty run starts or ends, so windows aligned
// with those ends (and with the ends of the free run) are the only
// candidates.
Placement arena_find(size_t units) {
  Placement best;
  for (size_t a = 0; a < g_arena_count; ++a) {
    Arena* arena = g_arenas[a];
    for (size_t start = find_bit(arena->live, 0, kArenaUnits, false); start < kArenaUnits;) {
      size_t end = find_bit(arena->live, start, kArenaUnits, true);
      size_t room = end - start;
      if (room >= units) {
        consider(arena, start, units, room, &best);
        consider(arena, end - units, units, room, &best);
        for (size_t d = find_bit(arena->dirty, start, end, true); d < end;) {
          size_t d_end = find_bit(arena->dirty, d, end, false);
          if (d + units <= end) consider(arena, d, units, room, &best);
          if (d_end >= start + units) consider(arena, d_end - units, units, room, &best);
          d = find_bit(arena->dirty, d_end, end, true);
        }
        if (best.faults == 0 && best.room == units) return best;
      }
      start = find_bit(arena->live, end, kArenaUnits, false);
    }
  }
  return best;
}

bool arena_add() {
  if (g_arena_count == kMaxArenas) return false;
  uint64_t now = os::now_ms();
  if (g_arena_refused && now - g_arena_refused_ms < 1000) return false;
  void* base = os::reserve_aligned(kArenaBytes, kUnit);
  auto* arena = base == nullptr ? nullptr : static_cast<Arena*>(os::map(sizeof(Arena)));
  if (arena == nullptr) {
    if (base != nullptr) os::release(base, kArenaBytes);
    g_arena_refused = true;
    g_arena_refused_ms = now;
    return false;
  }
  arena->base = reinterpret_cast<uintptr_t>(base);
  g_arenas[g_arena_count++] = arena;
  g_arena_refused = false;
  return true;
}

Arena* arena_of(uintptr_t address) {
  for (size_t a = 0; a < g_arena_count; ++a) {
    if (address - g_arenas[a]->base < kArenaBytes) return g_arenas[a];
  }
  return nullptr;
}

void* unit_address(const Arena* arena, size_t unit) {
  return reinterpret_cast<void*>(arena->base + (unit << kUnitShift));
}

// Under explicit commit, before units [from, to) are handed out: dirty units
// are committed, clean ones were never committed or were decommitted by the
// purge, so those are committed now. On failure what this call committed is
// given back (those units are clean again) and it returns false.
bool commit_clean_units(Arena* arena, size_t from, size_t to) {
  for (size_t c = find_bit(arena->dirty, from, to, false); c < to;) {
    size_t c_end = find_bit(arena->dirty, c, to, true);
    if (!os::commit(unit_address(arena, c), (c_end - c) << kUnitShift)) {
      for (size_t u = find_bit(arena->dirty, from, c, false); u < c;) {
        size_t u_end = find_bit(arena->dirty, u, c, true);
        os::purge(unit_address(arena, u), (u_end - u) << kUnitShift);
        u = find_bit(arena->dirty, u_end, c, false);
      }
      return false;
    }
    c = find_bit(arena->dirty, c_end, to, false);
  }
  return true;
}

void arena_set_dirty(Arena* arena, size_t from, size_t to, bool dirty) {
  size_t was = count_bits(arena->dirty, from, to);
  set_bits(arena->dirty, from, to, dirty);
  size_t now = dirty ? to - from : 0;
  arena->dirty_units += now - was;
  g_arena_dirty_units += now - was;
}

// The last ranges freed into the arenas, newest first. A program that frees
// a block and asks for one of the same size again (a buffer reused in a
// loop) gets the same units back without arena_find's walk over every free
// run: a malloc+free pair of 256 KiB cost about 4,000 instructions with the
// walk, most of them scanning bitmaps. An entry is only a hint: it is used
// when its units are still free and all dirty (no page fault), which is the
// best arena_find could offer bar a tighter free run.
struct RecentFree {
  Arena* arena;
  size_t unit;
  size_t units;
};
constexpr size_t kRecentFrees = 8;
constinit RecentFree g_recent_frees[kRecentFrees] = {};
constinit size_t g_recent_count = 0;

void remember_free(Arena* arena, size_t from, size_t to) {
  size_t keep = g_recent_count < kRecentFrees ? g_recent_count : kRecentFrees - 1;
  for (size_t i = keep; i > 0; --i) g_recent_frees[i] = g_recent_frees[i - 1];
  g_recent_frees[0] = RecentFree{arena, from, to - from};
  g_recent_count = keep + 1;
}

// A recently freed range of exactly `units` that is still free and dirty.
Placement recent_find(size_t units) {
  for (size_t i = 0; i < g_recent_count; ++i) {
    RecentFree r = g_recent_frees[i];
    if (r.units != units) continue;
    bool usable = find_bit(r.arena->live, r.unit, r.unit + units, true) == r.unit + units &&
                  count_bits(r.arena->dirty, r.unit, r.unit + units) == units;
    // Taken or purged since, or about to be taken: the hint goes.
    for (size_t j = i + 1; j < g_recent_count; ++j) g_recent_frees[j - 1] = g_recent_frees[j];
    --g_recent_count;
    if (usable) return Placement{r.arena, r.unit, 0, units};
    --i;
  }
  return Placement{};
}

// Takes `bytes` (a multiple of the page size, at most kArenaMaxBlock) from an
// arena. *zero_from/*zero_to get the span that may hold old data. nullptr
// when no arena has room or the kernel refuses the commit charge.
void* arena_take(size_t bytes, size_t* zero_from, size_t* zero_to) {
  size_t units = units_of(bytes);
  Placement place = recent_find(units);
  if (place.arena == nullptr) place = arena_find(units);
  if (place.arena == nullptr) {
    if (!arena_add()) return nullptr;
    place = arena_find(units);
    if (place.arena == nullptr) return nullptr;
  }
  Arena* arena = place.arena;
  size_t from = place.unit;
  size_t to = from + units;
  if (os::g_caps.explicit_commit && !commit_clean_units(arena, from, to)) return nullptr;
  size_t first_dirty = find_bit(arena->dirty, from, to, true);
  if (first_dirty < to) {
    size_t last_dirty = to;
    while (!bit(arena->dirty, last_dirty - 1)) --last_dirty;
    *zero_from = (first_dirty - from) << kUnitShift;
    *zero_to = (last_dirty - from) << kUnitShift;
  }
  note_reuse(units << kUnitShift);
  arena_set_dirty(arena, from, to, false);
  set_bits(arena->live, from, to, true);
  return unit_address(arena, from);
}

// Ranges to purge once the lock is dropped. Their units are marked live while
// the purge runs, so no allocation takes them half-purged.
struct PurgeList {
  struct Range {
    Arena* arena;
    size_t from;
    size_t to;
  };
  static constexpr size_t kMax = 32;
  Range ranges[kMax];
  size_t count = 0;
  size_t bytes = 0;
  bool full() const { return count == kMax; }
  void add(Arena* arena, size_t from, size_t to) {
    arena_set_dirty(arena, from, to, false);
    set_bits(arena->live, from, to, true);
    ranges[count++] = Range{arena, from, to};
    bytes += (to - from) << kUnitShift;
  }
  void run();
};

void PurgeList::run() {
  if (count == 0) return;
  for (size_t i = 0; i < count; ++i) {
    const Range& r = ranges[i];
    os::purge(unit_address(r.arena, r.from), (r.to - r.from) << kUnitShift);
  }
  LockGuard guard(g_lock);
  for (size_t i = 0; i < count; ++i)
    set_bits(ranges[i].arena->live, ranges[i].from, ranges[i].to, false);
}

// Purges dirty units, highest first, until at most `budget` bytes remain.
void arena_trim_to(size_t budget, PurgeList* purge) {
  size_t keep = budget >> kUnitShift;
  for (size_t a = g_arena_count; a-- > 0 && g_arena_dirty_units > keep && !purge->full();) {
    Arena* arena = g_arenas[a];
    size_t end = kArenaUnits;
    while (arena->dirty_units != 0 && g_arena_dirty_units > keep && !purge->full()) {
      size_t last = find_last_bit(arena->dirty, end);
      if (last == 0) break;
      size_t first = last - 1;
      while (first > 0 && bit(arena->dirty, first - 1)) --first;
      size_t excess = g_arena_dirty_units - keep;
      if (last - first > excess) first = last - excess;
      end = first;
      purge->add(arena, first, last);
    }
  }
}

// Trims the arenas to what arena_keep() allows now; nothing to compute when
// no unit is dirty (a block just took the last of them).
void arena_trim(PurgeList* purge) {
  if (g_arena_dirty_units != 0) arena_trim_to(arena_keep(), purge);
}

// Purges the dirty units freed at least `delay_ms` ago (all when only_aged
// is false).
void arena_release(bool only_aged, uint64_t now_ms, PurgeList* purge) {
  uint32_t now = static_cast<uint32_t>(now_ms);
  for (size_t a = 0; a < g_arena_count && !purge->full(); ++a) {
    Arena* arena = g_arenas[a];
    if (arena->dirty_units == 0) continue;
    for (size_t d = find_bit(arena->dirty, 0, kArenaUnits, true);
         d < kArenaUnits && !purge->full();) {
      size_t d_end = find_bit(arena->dirty, d, kArenaUnits, false);
      // Within a dirty run, purge the stretches old enough.
      for (size_t u = d; u < d_end;) {
        bool aged = !only_aged || now - arena->freed_ms[u] >= g_options.purge_delay_ms;
        size_t v = u + 1;
        while (v < d_end &&
               (!only_aged || now - arena->freed_ms[v] >= g_options.purge_delay_ms) == aged) {
          ++v;
        }
        if (aged && !purge->full()) purge->add(arena, u, v);
        u = v;
      }
      d = find_bit(arena->dirty, d_end, kArenaUnits, true);
    }
  }
}

// A block's units are free again: they stay resident within the budget.
void arena_free(Arena* arena, size_t from, size_t to, PurgeList* purge) {
  uint32_t now = static_cast<uint32_t>(os::now_ms());
  set_bits(arena->live, from, to, false);
  arena_set_dirty(arena, from, to, true);
  for (size_t u = from; u < to; ++u) arena->freed_ms[u] = now;
  remember_free(arena, from, to);
  arena_trim(purge);
}

// A mapped block whose free just raised the dynamic threshold is now of a
// size the program keeps reusing: its pages move into an arena (one mremap,
// no copy) instead of going back to the kernel, so the next blocks of that
// size do not fault them in again. Only into a window of clean units, and
// not under explicit commit (the window's tail would stay uncommitted).
bool arena_adopt(uintptr_t address, size_t size, PurgeList* purge) {
  if (os::g_caps.explicit_commit || size > kArenaMaxBlock) return false;
  size_t budget = cache_budget();
  if (size + g_cache_bytes > budget) return false;
  size_t units = units_of(size);
  Placement place;
  for (size_t a = 0; a < g_arena_count && place.arena == nullptr; ++a) {
    Arena* arena = g_arenas[a];
    for (size_t start = find_bit(arena->live, 0, kArenaUnits, false); start < kArenaUnits;) {
      size_t end = find_bit(arena->live, start, kArenaUnits, true);
      // The lowest window of clean units.
      for (size_t c = find_bit(arena->dirty, start, end, false); c < end;) {
        size_t c_end = find_bit(arena->dirty, c, end, true);
        if (c_end - c >= units) {
          place = Placement{arena, c, units, c_end - c};
          break;
        }
        c = find_bit(arena->dirty, c_end, end, false);
      }
      if (place.arena != nullptr) break;
      start = find_bit(arena->live, end, kArenaUnits, false);
    }
  }
  if (place.arena == nullptr) {
    if (!arena_add()) return false;
    place = Placement{g_arenas[g_arena_count - 1], 0, units, kArenaUnits};
  }
  if (!os::move_pages(reinterpret_cast<void*>(address), unit_address(place.arena, place.unit),
                      size))
    return false;
  note_reuse(units << kUnitShift);  // the size the program asks for again
  arena_free(place.arena, place.unit, place.unit + units, purge);
  return true;
}

size_t arena_dirty_bytes() { return g_arena_dirty_units << kUnitShift; }

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

// Enters a block just taken into the registry and the accounting, under the
// lock; on failure (the registry cannot grow) gives it back and returns false.
bool register_block(void* p, size_t bytes, bool in_arena, PurgeList* purge) {
  Block block{reinterpret_cast<uintptr_t>(p), bytes, !in_arena && use_mapping(bytes), in_arena};
  if (!g_registry.insert(block)) {
    if (in_arena) {
      Arena* arena = arena_of(block.address);
      size_t from = (block.address - arena->base) >> kUnitShift;
      arena_free(arena, from, from + (bytes >> kUnitShift), purge);
    } else {
      os::release(p, bytes);
    }
    return false;
  }
  account(block, true);
  ++g_usage.allocations;
  // More live now: the arenas may keep less.
  if (in_arena || block.mapped) arena_trim(purge);
  return true;
}

void* allocate(size_t size, size_t alignment, bool zero) {
  size_t bytes = page_round(size);
  if (bytes < size) {
    errno = ENOMEM;
    return nullptr;
  }
  if (bytes == 0) bytes = os::g_caps.page_size;  // memalign(huge, 0)
  void* p = nullptr;
  size_t zero_from = 0;
  size_t zero_to = 0;
  bool registered = false;
  PurgeList purge;
  if (alignment <= os::g_caps.page_size) {
    // Taken from an arena or the cache, a block is registered under the same
    // lock: one lock round trip for the blocks a program keeps reusing.
    LockGuard guard(g_lock);
    bool in_arena = false;
    if (!use_mapping(bytes) && bytes <= kArenaMaxBlock) {
      p = arena_take(bytes, &zero_from, &zero_to);
      if (p != nullptr) {
        in_arena = true;
        bytes = units_of(bytes) << kUnitShift;
      }
    }
    if (p == nullptr && g_cache_count != 0) p = cache_take(bytes, &zero_to);
    if (p != nullptr) {
      if (!register_block(p, bytes, in_arena, &purge)) p = nullptr;
      registered = true;
    }
  }
  if (!registered) {
    p = os::map_aligned(bytes, alignment < os::g_caps.page_size ? 0 : alignment);
    if (p != nullptr) {
      LockGuard guard(g_lock);
      if (!register_block(p, bytes, false, &purge)) p = nullptr;
    }
  }
  purge.run();
  if (p == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  // Memory new from the kernel is zero already: calloc clears only what a
  // cached range or dirty arena units brought along.
  if (zero && zero_to > zero_from && zero_from < size) {
    std::memset(static_cast<char*>(p) + zero_from, 0,
                (zero_to < size ? zero_to : size) - zero_from);
  }
  return p;
}

size_t deallocate(void* p) {
  UnmapList unmap;
  PurgeList purge;
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
    if (block.arena) {
      Arena* arena = arena_of(block.address);
      size_t from = (block.address - arena->base) >> kUnitShift;
      arena_free(arena, from, from + (block.size >> kUnitShift), &purge);
    } else if (block.mapped) {
      bool raised = false;
      if (g_options.mmap_threshold_dynamic && block.size > g_threshold &&
          block.size <= kDynamicThresholdMax) {
        // glibc sets the threshold to the chunk size, header included, so a
        // request of the size just freed falls below it: + 1 does the same.
        __atomic_store_n(&g_threshold, block.size + 1, __ATOMIC_RELAXED);
        g_trim_threshold = 2 * block.size;
        raised = true;
      }
      // A block that raised the threshold is of a size now retained: its
      // pages stay for the next one (within the budget) instead of being
      // faulted in again.
      if (!raised || !arena_adopt(block.address, block.size, &purge))
        unmap.add(block.address, block.size);
    } else {
      cache_put(block.address, block.size, &unmap);
    }
  }
  unmap.run();
  purge.run();
  return size;
}

size_t recently_freed_size(const void* p) {
  LockGuard guard(g_lock);
  // Newest first: an address mapped again after a free may have been freed
  // again since, with another size.
  size_t recorded = g_freed_next < kFreedHistory ? g_freed_next : kFreedHistory;
  for (size_t back = 1; back <= recorded; ++back) {
    const FreedBlock& freed = g_freed[(g_freed_next - back) % kFreedHistory];
    if (freed.address == reinterpret_cast<uintptr_t>(p)) return freed.size;
  }
  return 0;
}

size_t usable_size(const void* p) {
  LockGuard guard(g_lock);
  Block* slot = g_registry.find(reinterpret_cast<uintptr_t>(p));
  return slot == nullptr ? 0 : slot->size;
}

namespace {

// Resizes a block mapped alone, with the lock held.
void* reallocate_mapping(Block* slot, void* p, size_t bytes) {
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

enum class ArenaResize { kDone, kCopy, kFailed };

// Resizes an arena block in place: a shrink frees its tail units, a growth
// takes the free units after it. kCopy when they are not free.
ArenaResize arena_resize(Block* slot, size_t bytes, PurgeList* purge) {
  Arena* arena = arena_of(slot->address);
  size_t from = (slot->address - arena->base) >> kUnitShift;
  size_t old_end = from + (slot->size >> kUnitShift);
  size_t new_end = from + units_of(bytes);
  if (new_end == old_end) return ArenaResize::kDone;
  if (new_end < old_end) {
    arena_free(arena, new_end, old_end, purge);
  } else {
    if (new_end > kArenaUnits || find_bit(arena->live, old_end, new_end, true) != new_end)
      return ArenaResize::kCopy;
    if (os::g_caps.explicit_commit && !commit_clean_units(arena, old_end, new_end))
      return ArenaResize::kFailed;
    arena_set_dirty(arena, old_end, new_end, false);
    set_bits(arena->live, old_end, new_end, true);
  }
  Block block = *slot;
  account(block, false);
  slot->size = (new_end - from) << kUnitShift;
  account(*slot, true);
  return ArenaResize::kDone;
}

}  // namespace

void* reallocate(void* p, size_t new_size) {
  size_t bytes = page_round(new_size);
  if (bytes < new_size) {
    errno = ENOMEM;
    return nullptr;
  }
  size_t old_size = 0;
  {
    PurgeList purge;
    ArenaResize resized = ArenaResize::kCopy;
    {
      LockGuard guard(g_lock);
      Block* slot = g_registry.find(reinterpret_cast<uintptr_t>(p));
      if (slot == nullptr) return nullptr;
      if (!slot->arena) return reallocate_mapping(slot, p, bytes);
      old_size = slot->size;
      resized = arena_resize(slot, bytes, &purge);
    }
    purge.run();
    if (resized == ArenaResize::kDone) return p;
    if (resized == ArenaResize::kFailed) {
      errno = ENOMEM;
      return nullptr;
    }
  }
  // The units after an arena block are taken: a new block, and a copy.
  void* q = allocate(new_size, 0, false);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, old_size < new_size ? old_size : new_size);
  deallocate(p);
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
  for (;;) {
    PurgeList purge;
    {
      LockGuard guard(g_lock);
      if (g_arena_dirty_units == 0) break;
      arena_release(only_aged, now_ms, &purge);
    }
    purge.run();
    released += purge.bytes;
    if (!purge.full()) break;
  }
  return released;
}

Usage usage() {
  LockGuard guard(g_lock);
  Usage u = g_usage;
  // Dirty arena units are cached memory too, one block per dirty run.
  u.cached_bytes += arena_dirty_bytes();
  for (size_t a = 0; a < g_arena_count; ++a) {
    const Arena* arena = g_arenas[a];
    if (arena->dirty_units == 0) continue;
    for (size_t d = find_bit(arena->dirty, 0, kArenaUnits, true); d < kArenaUnits;) {
      ++u.cached_blocks;
      d = find_bit(arena->dirty, find_bit(arena->dirty, d, kArenaUnits, false), kArenaUnits, true);
    }
  }
  return u;
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
