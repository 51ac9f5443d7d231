// The slab pool: segments, unit allocation, purging (see slab_pool.h).
#include "slab/slab_pool.h"

#include <errno.h>

#include <new>

#include "options/options.h"
#include "platform/lock.h"
#include "platform/os.h"

namespace strata {

constinit SegmentMap g_segment_map;
constinit SlabMap g_slab_map;
constinit Slab g_no_slab;

bool SegmentMap::prepare() {
  if (bytes_ == nullptr) bytes_ = static_cast<uint8_t*>(os::map_readonly(kIndexLimit));
  return bytes_ != nullptr;
}

bool SegmentMap::insert(const Segment* segment) {
  if (!prepare()) return false;
  uintptr_t index = index_of(segment);
  size_t page = index / 4096;
  uint64_t bit = uint64_t{1} << (page % 64);
  if ((writable_pages_[page / 64] & bit) == 0) {
    if (!os::make_writable(bytes_ + page * 4096, 4096)) return false;
    writable_pages_[page / 64] |= bit;
  }
  __atomic_store_n(&bytes_[index], 1, __ATOMIC_RELEASE);
  return true;
}

void SegmentMap::erase(const Segment* segment) {
  __atomic_store_n(&bytes_[index_of(segment)], 0, __ATOMIC_RELEASE);
}

bool SlabMap::prepare() {
  if (entries_ == nullptr)
    entries_ = static_cast<Entry*>(os::map_readonly(kIndexLimit * sizeof(Entry)));
  return entries_ != nullptr;
}

bool SlabMap::open(const Segment* segment) {
  if (!ready()) return true;
  // A segment's 64 entries are 1 KiB, aligned: within one page.
  uintptr_t entries = reinterpret_cast<uintptr_t>(&entries_[index_of(segment)]);
  uintptr_t page = entries & ~(uintptr_t{os::g_caps.page_size} - 1);
  return os::make_writable(reinterpret_cast<void*>(page), os::g_caps.page_size);
}

void SlabMap::set(const Segment* segment, size_t first, size_t count, const Slab* slab) {
  if (!ready()) return;
  Entry* entry = &entries_[index_of(segment) + first];
  for (size_t unit = 0; unit < count; ++unit, ++entry) {
    // A new slab has carved no block yet and a released one holds none: the
    // units hold blocks once raise_carved_bound() says so, and the other
    // fields are read only then. The bound is atomic because the owner
    // raises it while other threads free.
    __atomic_store_n(&entry->grid_bound, 0, __ATOMIC_RELAXED);
    entry->start = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(slab->start));
    entry->slab_offset = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(slab) -
                                               reinterpret_cast<uintptr_t>(segment));
  }
}

void SlabMap::raise_carved_bound(const Slab* slab) {
  if (!ready()) return;
  Entry* entry = &entries_[index_of(segment_of(slab)) + slab->first_unit];
  uint64_t bound = grid_bound_of(slab->carved_bound, slab->bin_offset);
  for (size_t unit = 0; unit < slab->units; ++unit, ++entry)
    __atomic_store_n(&entry->grid_bound, bound, __ATOMIC_RELAXED);
}

namespace slab_pool {
namespace {

constinit SpinLock g_lock;
constinit Segment* g_segments = nullptr;  // every segment, most recently created first
constinit size_t g_segment_count = 0;
constinit size_t g_brk_segment_count = 0;
constinit size_t g_dirty_bytes = 0;
constinit size_t g_slab_bytes = 0;
constinit size_t g_purged_total = 0;
constinit size_t g_peak_bytes = 0;
constinit std::atomic<uint64_t> g_next_tick_ms{0};

constexpr uint64_t kAllUnits = ~uint64_t{0};
constexpr uint64_t kSlabUnitsMask = kAllUnits & ~uint64_t{1};  // unit 0 is the header

// Bits at the multiples of count (a power of two below 64): 0x5555... for 2,
// 0x1111... for 4, and so on.
uint64_t group_starts(size_t count) { return ~uint64_t{0} / ((uint64_t{1} << count) - 1); }

uint64_t unit_mask(size_t first, size_t count) {
  uint64_t ones = count == 64 ? kAllUnits : (uint64_t{1} << count) - 1;
  return ones << first;
}

size_t header_bytes() {
  size_t page = os::g_caps.page_size;
  return (sizeof(Segment) + page - 1) & ~(page - 1);
}

void link_segment(Segment* segment) {
  segment->prev = nullptr;
  segment->next = g_segments;
  if (g_segments != nullptr) g_segments->prev = segment;
  g_segments = segment;
}

void unlink_segment(Segment* segment) {
  if (segment->prev != nullptr)
    segment->prev->next = segment->next;
  else
    g_segments = segment->next;
  if (segment->next != nullptr) segment->next->prev = segment->prev;
}

// The data-segment heap: extend the break to the next 4 MiB boundary plus one
// segment. Fails (nullptr) if the break moved under us or the kernel refuses.
void* reserve_from_brk() {
  void* current = os::sbrk(0);
  if (current == nullptr) return nullptr;
  uintptr_t cur = reinterpret_cast<uintptr_t>(current);
  uintptr_t aligned = (cur + kSegmentSize - 1) & ~(kSegmentSize - 1);
  intptr_t increment = static_cast<intptr_t>(aligned - cur + kSegmentSize);
  void* old = os::sbrk(increment);
  if (old == nullptr) return nullptr;
  if (old != current) {  // someone else moved the break: give ours back
    os::sbrk(-increment);
    return nullptr;
  }
  return reinterpret_cast<void*>(aligned);
}

Segment* create_segment() {
  void* memory = nullptr;
  bool from_brk = false;
  if (g_options.brk) {
    memory = reserve_from_brk();
    from_brk = memory != nullptr;
  }
  if (memory == nullptr) memory = os::reserve_aligned(kSegmentSize, kSegmentSize);
  if (memory == nullptr) return nullptr;
  if (!from_brk && !os::commit(memory, header_bytes())) {
    os::release(memory, kSegmentSize);
    return nullptr;
  }
  // Default-initialised, not value-initialised: "()" would zero the whole
  // header, descriptors included, first.
  Segment* segment = new (memory) Segment;
  for (auto& slab : segment->unit_slab) slab = &g_no_slab;
  segment->free_units = kSlabUnitsMask;
  segment->from_brk = from_brk;
  // brk memory is committed by the kernel as it is handed to us; so is a
  // lazily committed reservation.
  segment->committed_units = (from_brk || !os::g_caps.explicit_commit) ? kAllUnits : 1;
  if (!g_slab_map.open(segment) || !g_segment_map.insert(segment)) {
    if (from_brk)
      os::sbrk(-static_cast<intptr_t>(kSegmentSize));
    else
      os::release(memory, kSegmentSize);
    return nullptr;
  }
  link_segment(segment);
  ++g_segment_count;
  if (from_brk) ++g_brk_segment_count;
  return segment;
}

// Gives an entirely free segment back. Segments on the data segment can only
// go when they are at the top of the break (a live segment above pins them);
// otherwise their memory is purged and the address space kept.
void destroy_segment(Segment* segment) {
  size_t dirty = static_cast<size_t>(os::bit_count(segment->dirty_units)) * kUnitSize;
  if (segment->from_brk) {
    char* top = static_cast<char*>(os::sbrk(0));
    if (top != reinterpret_cast<char*>(segment) + kSegmentSize) return;
  }
  g_dirty_bytes -= dirty;
  g_purged_total += dirty;
  unlink_segment(segment);
  g_segment_map.erase(segment);
  --g_segment_count;
  if (segment->from_brk) {
    --g_brk_segment_count;
    os::sbrk(-static_cast<intptr_t>(kSegmentSize));
  } else {
    os::release(segment, kSegmentSize);
  }
}

// Purges the dirty units of `segment` selected by `mask`, coalescing runs.
void purge_units(Segment* segment, uint64_t mask) {
  mask &= segment->dirty_units;
  while (mask != 0) {
    size_t first = static_cast<size_t>(__builtin_ctzll(mask));
    size_t count = 0;
    while (first + count < 64 && ((mask >> (first + count)) & 1)) ++count;
    os::purge(segment->unit_address(first), count * kUnitSize);
    uint64_t run = unit_mask(first, count);
    mask &= ~run;
    segment->dirty_units &= ~run;
    segment->aged_dirty_units &= ~run;
    if (os::g_caps.explicit_commit && !segment->from_brk) segment->committed_units &= ~run;
    g_dirty_bytes -= count * kUnitSize;
    g_purged_total += count * kUnitSize;
  }
}

// The `count` units from `first` now belong to `slab` (&g_no_slab: none).
void assign_units(Segment* segment, size_t first, size_t count, Slab* slab) {
  for (size_t unit = first; unit < first + count; ++unit) segment->unit_slab[unit] = slab;
  g_slab_map.set(segment, first, count, slab);
}

// Unmaps segments with nothing in them and no resident memory left, keeping
// one in reserve so that a program hovering around a segment boundary does
// not map and unmap. With `even_dirty`, dirty empty segments go too.
void release_empty_segments(bool keep_one, bool even_dirty) {
  bool kept = !keep_one;
  for (Segment* segment = g_segments; segment != nullptr;) {
    Segment* next = segment->next;
    if (segment->free_units == kSlabUnitsMask && (even_dirty || segment->dirty_units == 0)) {
      if (kept)
        destroy_segment(segment);
      else
        kept = true;
    }
    segment = next;
  }
}

size_t purge_all_locked() {
  size_t before = g_purged_total;
  for (Segment* segment = g_segments; segment != nullptr; segment = segment->next) {
    purge_units(segment, kAllUnits);
  }
  release_empty_segments(/*keep_one=*/false, /*even_dirty=*/true);
  return g_purged_total - before;
}

// Bit i (a multiple of count) is set when units i .. i+count-1 all have a
// bit set in `units`; count is a power of two up to 64.
uint64_t aligned_groups_all(uint64_t units, size_t count) {
  for (size_t shift = 1; shift < count; shift <<= 1) units &= units >> shift;
  return units & group_starts(count);
}
// The same when any of them has its bit set.
uint64_t aligned_groups_any(uint64_t units, size_t count) {
  for (size_t shift = 1; shift < count; shift <<= 1) units |= units >> shift;
  return units & group_starts(count);
}

// Finds `count` free units aligned to `count` in some segment, preferring
// dirty units (their memory is already resident) over purged ones. A few
// bit operations per segment.
bool find_units(size_t count, Segment** out_segment, size_t* out_first) {
  Segment* clean_segment = nullptr;
  size_t clean_first = 0;
  for (Segment* segment = g_segments; segment != nullptr; segment = segment->next) {
    if (segment->free_units == 0) continue;
    uint64_t free_groups = aligned_groups_all(segment->free_units, count);
    if (free_groups == 0) continue;
    uint64_t dirty_groups = free_groups & aligned_groups_any(segment->dirty_units, count);
    if (dirty_groups != 0) {
      *out_segment = segment;
      *out_first = static_cast<size_t>(__builtin_ctzll(dirty_groups));
      return true;
    }
    if (clean_segment == nullptr) {
      clean_segment = segment;
      clean_first = static_cast<size_t>(__builtin_ctzll(free_groups));
    }
  }
  if (clean_segment == nullptr) return false;
  *out_segment = clean_segment;
  *out_first = clean_first;
  return true;
}

}  // namespace

Slab* allocate(size_t size_class, ThreadHeap* owner, uint16_t bin_offset) {
  const SizeClassInfo& info = kSizeClasses[size_class];
  LockGuard guard(g_lock);
  Segment* segment = nullptr;
  size_t first = 0;
  if (!find_units(info.slab_units, &segment, &first)) {
    segment = create_segment();
    if (segment == nullptr) return nullptr;
    first = info.slab_units;  // the first aligned run after the header
  }
  uint64_t run = unit_mask(first, info.slab_units);
  char* start = segment->unit_address(first);
  size_t bytes = info.slab_units * kUnitSize;
  if ((segment->committed_units & run) != run) {
    if (!os::commit(start, bytes)) {
      errno = ENOMEM;
      return nullptr;
    }
    segment->committed_units |= run;
  }
  size_t dirty = static_cast<size_t>(os::bit_count(segment->dirty_units & run));
  g_dirty_bytes -= dirty * kUnitSize;
  g_slab_bytes += bytes;
  if (g_slab_bytes + g_dirty_bytes > g_peak_bytes) g_peak_bytes = g_slab_bytes + g_dirty_bytes;
  bool fresh = dirty == 0;  // purged or never touched: reads as zero
  segment->free_units &= ~run;
  segment->dirty_units &= ~run;
  segment->aged_dirty_units &= ~run;
  ++segment->slabs_in_use;

  Slab* slab = segment->new_slab_at(first);
  slab->block_size = info.block_size;
  slab->owner = owner;
  slab->start = start;
  slab->carve = start;
  slab->end = start + static_cast<size_t>(info.capacity) * info.block_size;
  slab->grid_magic = block_grid_magic(info.block_size);
  slab->grid_step = block_grid_step(info.block_size);
  slab->free_is_zero = fresh;
  slab->fresh = fresh;
  slab->size_class = static_cast<uint8_t>(size_class);
  slab->units = static_cast<uint8_t>(info.slab_units);
  slab->first_unit = static_cast<uint8_t>(first);
  slab->capacity = info.capacity;
  slab->bin_offset = bin_offset;
  assign_units(segment, first, info.slab_units, slab);
  return slab;
}

void release(Slab* slab) {
  Segment* segment = segment_of(slab);
  size_t first = slab->first_unit;
  size_t count = slab->units;
  uint64_t run = unit_mask(first, count);
  LockGuard guard(g_lock);
  assign_units(segment, first, count, &g_no_slab);
  slab->owner = nullptr;
  __atomic_store_n(&slab->carved_bound, 0, __ATOMIC_RELAXED);  // no block start any more
  segment->free_units |= run;
  segment->dirty_units |= run;
  --segment->slabs_in_use;
  g_slab_bytes -= count * kUnitSize;
  g_dirty_bytes += count * kUnitSize;
  if (g_dirty_bytes > g_options.dirty_max) {
    for (Segment* s = g_segments; s != nullptr && g_dirty_bytes > g_options.dirty_max / 2;
         s = s->next) {
      purge_units(s, s->aged_dirty_units);
    }
    for (Segment* s = g_segments; s != nullptr && g_dirty_bytes > g_options.dirty_max / 2;
         s = s->next) {
      purge_units(s, kAllUnits);
    }
  }
  // An empty segment stays: its units are dirty memory like any other, kept
  // for reuse within the budget, and the segment is unmapped by tick() once
  // they are purged.
}

void tick(uint64_t now_ms) {
  uint64_t due = g_next_tick_ms.load(std::memory_order_relaxed);
  if (now_ms < due) return;
  if (!g_next_tick_ms.compare_exchange_strong(due, now_ms + g_options.purge_delay_ms,
                                              std::memory_order_relaxed)) {
    return;  // another thread runs this tick
  }
  LockGuard guard(g_lock);
  // Units dirty at the previous tick have now been unused for at least one
  // full delay: purge them, and age the rest.
  for (Segment* segment = g_segments; segment != nullptr; segment = segment->next) {
    purge_units(segment, segment->aged_dirty_units);
    segment->aged_dirty_units = segment->dirty_units;
  }
  release_empty_segments(/*keep_one=*/true, /*even_dirty=*/false);
}

size_t purge_all() {
  LockGuard guard(g_lock);
  return purge_all_locked();
}

Usage usage() {
  LockGuard guard(g_lock);
  Usage u;
  u.segments = g_segment_count;
  u.reserved = g_segment_count * kSegmentSize;
  u.slab_bytes = g_slab_bytes;
  u.dirty_bytes = g_dirty_bytes;
  u.purged_bytes = g_purged_total;
  u.brk_bytes = g_brk_segment_count * kSegmentSize;
  u.peak_bytes = g_peak_bytes;
  for (Segment* segment = g_segments; segment != nullptr; segment = segment->next) {
    uint64_t dirty = segment->dirty_units;
    u.dirty_runs += static_cast<size_t>(os::bit_count(dirty & ~(dirty << 1)));
  }
  return u;
}

void for_each_slab(void (*visit)(const Slab*, void*), void* context) {
  LockGuard guard(g_lock);
  for (Segment* segment = g_segments; segment != nullptr; segment = segment->next) {
    for (size_t unit = 1; unit < kUnitsPerSegment; ++unit) {
      Slab* slab = segment->unit_slab[unit];
      if (slab != &g_no_slab && slab->first_unit == unit) visit(slab, context);
    }
  }
}

void fork_prepare() { g_lock.fork_prepare(); }
void fork_parent() { g_lock.fork_parent(); }
void fork_child() { g_lock.reset_after_fork(); }

}  // namespace slab_pool
}  // namespace strata
