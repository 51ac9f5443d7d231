// Thread heaps: the slow paths (see thread_heap.h for the slab states).
#include "heap/thread_heap.h"

#include "check/report.h"
#include "heap/central_heap.h"
#include "heap/runtime.h"
#include "slab/slab_pool.h"

namespace strata {

constinit ThreadHeap g_empty_heap;

// Slab::bin_offset holds a bin's offset in a heap in 16 bits.
static_assert(sizeof(ThreadHeap) <= UINT16_MAX);

namespace {

// Carving links a page's worth of fresh blocks at a time, and blocks of a
// page or more one at a time. Linking writes into every carved block, so each
// block of a page or more carved ahead is one more resident page that may
// never be used: with 16, a program that uses one block of each large class
// (most C++ programs, small scripts) carried about 0.5 MiB more resident
// memory (python3 -c pass: 15.0 MiB, 14.7 with 4); with 4, the C++ runtime's
// emergency buffer alone (one 80 KiB block, in every C++ program) kept 12 KiB
// resident that nothing uses (xmalloc-1t: 2.4% less peak RSS with 1). One
// trip through the slow path per fresh block of a page or more costs little
// next to the page faults that block brings.
constexpr size_t kCarveBytes = 4096;

// Borrowing (see refill()): from at most this many next classes, at most
// 1.5 times the class's block size (two classes up, from 160 B on), and at
// most this many times in a row before the class takes a slab again.
constexpr size_t kBorrowClasses = 2;
constexpr uint8_t kMaxBorrowStreak = 32;

bool same_segment(const void* a, const void* b) {
  return ((reinterpret_cast<uintptr_t>(a) ^ reinterpret_cast<uintptr_t>(b)) >> kSegmentShift) == 0;
}

}  // namespace

void ThreadHeap::drop_forged_list(Slab* slab) {
  report::corrupted_free_list("malloc", slab->free, slab->block_size);
  // Continuing (MALLOC_CHECK_=1): the rest of the list cannot be trusted, so
  // it is dropped; those blocks are lost, the heap stays sound.
  slab->free = slab->list_end();
  slab->free_is_zero = false;
}

void ThreadHeap::link(Slab* slab, bool at_back) {
  SlabList& list = lists_[slab->size_class];
  if (at_back) {
    slab->next = nullptr;
    slab->prev = list.tail;
    if (list.tail != nullptr)
      list.tail->next = slab;
    else
      list.head = slab;
    list.tail = slab;
  } else {
    slab->prev = nullptr;
    slab->next = list.head;
    if (list.head != nullptr)
      list.head->prev = slab;
    else
      list.tail = slab;
    list.head = slab;
  }
  slab->listed = true;
}

void ThreadHeap::unlink(Slab* slab) {
  SlabList& list = lists_[slab->size_class];
  if (slab->prev != nullptr)
    slab->prev->next = slab->next;
  else
    list.head = slab->next;
  if (slab->next != nullptr)
    slab->next->prev = slab->prev;
  else
    list.tail = slab->prev;
  slab->next = slab->prev = nullptr;
  slab->listed = false;
}

bool ThreadHeap::collect_remote(Slab* slab) {
  if (!slab->has_remote_blocks()) return false;
  uintptr_t taken = slab->remote_free.exchange(0, std::memory_order_acquire);
  auto* head = reinterpret_cast<FreeBlock*>(taken & ~kNotifyOwner);
  if (head == nullptr) return false;
  uint32_t count = 1;
  FreeBlock* tail = head;
  for (FreeBlock* next = decode_next(tail->next_encoded); next != nullptr;
       next = decode_next(tail->next_encoded)) {
    if (!same_segment(next, tail)) {
      report::corrupted_free_list("free", tail, slab->block_size);
      break;  // keep what was verified; the rest is lost
    }
    tail = next;
    ++count;
  }
  tail->next_encoded = encode_next(slab->free);
  slab->free = head;
  slab->free_is_zero = false;
  slab->used -= count;
  counters_.remote_frees += count;
  return true;
}

bool ThreadHeap::carve(Slab* slab) {
  char* from = slab->carve;
  if (from >= slab->end) return false;
  size_t size = slab->block_size;
  size_t count = size < kCarveBytes ? kCarveBytes / size : 1;
  size_t left = static_cast<size_t>(slab->end - from) / size;
  if (count > left) count = left;
  // Link in address order; every carved block carries its free tag, so
  // freeing one that was never handed out is caught as a double free.
  FreeBlock* next = slab->free;
  for (size_t i = count; i-- > 0;) {
    auto* block = reinterpret_cast<FreeBlock*>(from + i * size);
    block->next_encoded = encode_next(next);
    block->tag = free_tag();
    next = block;
  }
  if (!slab->has_free_blocks()) slab->free_is_zero = slab->fresh;
  slab->free = next;
  slab->carve = from + count * size;
  // Only the owner writes it: no read-modify-write needed.
  uint64_t bound = slab->carved_bound;
  __atomic_store_n(&slab->carved_bound, bound + block_grid_bound(count, slab->grid_step),
                   __ATOMIC_RELAXED);
  g_slab_map.raise_carved_bound(slab);
  return true;
}

bool ThreadHeap::set_aside(Slab* slab) {
  uintptr_t expected = 0;
  if (!slab->remote_free.compare_exchange_strong(expected, kNotifyOwner,
                                                 std::memory_order_acq_rel)) {
    return false;  // remote frees arrived meanwhile: collect them instead
  }
  if (slab->listed) unlink(slab);
  return true;
}

void ThreadHeap::retire(Slab* slab) {
  if (slab->listed) unlink(slab);
  slab->remote_free.store(0, std::memory_order_relaxed);
  slab_pool::release(slab);
}

void ThreadHeap::drain_notified() {
  if (notified_.load(std::memory_order_relaxed) == nullptr) return;
  Slab* slab = notified_.exchange(nullptr, std::memory_order_acquire);
  while (slab != nullptr) {
    Slab* next = slab->next_notified;
    if (!slab->listed) link(slab, /*at_back=*/true);
    slab = next;
  }
}

void ThreadHeap::notify_slab(Slab* slab) {
  Slab* head = notified_.load(std::memory_order_relaxed);
  do {
    slab->next_notified = head;
  } while (!notified_.compare_exchange_weak(head, slab, std::memory_order_release,
                                            std::memory_order_relaxed));
}

void ThreadHeap::start_sampling(uint32_t rate, size_t max_size) {
  sample_rate_ = rate;
  sample_classes_ = 0;
  while (rate != 0 && sample_classes_ < kNumClasses &&
         kSizeClasses[sample_classes_].block_size <= max_size) {
    ++sample_classes_;
  }
  sample_random_ = (reinterpret_cast<uintptr_t>(this) ^ keys_.tag_key) | 1;
  sample_pending_ = false;
  for (size_t cls = 0; cls < kNumClasses; ++cls) {
    if (!class_started(cls)) continue;  // next_period() starts it
    counted_[cls] = allocations(cls);
    period_[cls] = cls < sample_classes_ ? draw_period() : kEndlessPeriod;
    bins_[cls].set_countdown(period_[cls]);
  }
}

int64_t ThreadHeap::draw_period() {
  // Uniform in [1, 2N - 1] (mean N), from a xorshift generator: random
  // enough that a periodic program does not always sample the same call.
  sample_random_ ^= sample_random_ << 13;
  sample_random_ ^= sample_random_ >> 7;
  sample_random_ ^= sample_random_ << 17;
  return 1 + static_cast<int64_t>(sample_random_ % (2 * uint64_t{sample_rate_} - 1));
}

void ThreadHeap::next_period(size_t size_class) {
  // The class's first allocation in this heap opens its bin.
  if (!class_started(size_class)) {
    bins_[size_class].limit = bins_on_ ? bin_limit(size_class) : 0;
    bins_[size_class].grid_magic = block_grid_magic(kSizeClasses[size_class].block_size);
  }
  // A count of -1 is an allocation pop() did not serve: it is counted where
  // it is served (by pop() again, unless it is guarded).
  int64_t left = bins_[size_class].countdown() < 0 ? 0 : bins_[size_class].countdown();
  counted_[size_class] += static_cast<uint64_t>(period_[size_class] - left);
  bool sampled = size_class < sample_classes_;
  if (sampled) sample_pending_ = true;
  period_[size_class] = sampled ? draw_period() : kEndlessPeriod;
  bins_[size_class].set_countdown(period_[size_class]);
}

FreeBlock* ThreadHeap::allocate_slow(size_t size_class, Fit fit, bool* known_zero) noexcept {
  // If this call did not ask sample_pending() (the API's slow path), a
  // sample its period's end raises goes to the next allocation that asks.
  renew_period(size_class);
  FreeBlock* block;
  bool zero = false;
  if (bins_[size_class].count() != 0) {
    // pop() failed with blocks in the bin only because the period ran out.
    block = pop(size_class);
  } else {
    ++counters_.refills;
    if (is_shared_class(size_class)) {
      block = refill_shared(size_class, &zero);
    } else {
      block = refill(size_class, fit, &zero);
    }
  }
  if (known_zero != nullptr) *known_zero = zero;
  // Upkeep last: it may start the purge thread, and pthread_create calls
  // malloc, which must find this heap in a consistent state and must not
  // change it under a refill in progress.
  runtime::maintenance();
  return block;
}

bool ThreadHeap::refill_listed(size_t size_class, FreeBlock** block) noexcept {
  drain_notified();
  Slab* slab = current_[size_class];
  // pop() leaves a non-empty list only when its head's link was forged.
  if (slab->has_free_blocks()) {
    if ((*block = pop(size_class)) != nullptr) return true;
    drop_forged_list(slab);
  }
  for (;;) {
    if (slab != &g_no_slab) {
      if (slab->has_free_blocks() || collect_remote(slab) || carve(slab)) {
        if (!slab->listed) link(slab, /*at_back=*/false);
        if (spare_[size_class] == slab) spare_[size_class] = nullptr;
        current_[size_class] = slab;
        *block = pop(size_class);
        return true;
      }
      if (!set_aside(slab)) continue;  // collect what just arrived
    }
    slab = lists_[size_class].head;
    if (slab == nullptr) return false;
  }
}

FreeBlock* ThreadHeap::refill_new(size_t size_class) noexcept {
  Slab* slab = slab_pool::allocate(size_class, this, static_cast<uint16_t>(bin_offset(size_class)));
  if (slab == nullptr) {
    current_[size_class] = &g_no_slab;
    return nullptr;
  }
  link(slab, /*at_back=*/false);
  current_[size_class] = slab;
  carve(slab);
  return pop(size_class);
}

FreeBlock* ThreadHeap::refill(size_t size_class, Fit fit, bool* zero) noexcept {
  FreeBlock* block;
  if (refill_listed(size_class, &block)) {
    borrow_streak_[size_class] = 0;
  } else {
    // refill_listed() set aside every slab of the class, the current one too.
    current_[size_class] = &g_no_slab;
    if (fit == Fit::kOrLarger && borrow_streak_[size_class] < kMaxBorrowStreak) {
      if ((block = borrow(size_class)) != nullptr) {
        ++borrow_streak_[size_class];
        *zero = false;
        return block;
      }
    }
    borrow_streak_[size_class] = 0;
    release_idle_classes(size_class);
    block = refill_new(size_class);
  }
  *zero = block != nullptr && current_[size_class]->free_is_zero;
  return block;
}

FreeBlock* ThreadHeap::borrow(size_t size_class) noexcept {
  uint64_t size = kSizeClasses[size_class].block_size;
  for (size_t up = size_class + 1; up <= size_class + kBorrowClasses && up < kNumClasses; ++up) {
    if (kSizeClasses[up].block_size * 2 > size * 3) break;
    // A period that has run out ends at an allocation of the class's own.
    if (bins_[up].countdown() <= 0) continue;
    // Counted as the larger class's allocation: the block is its slab's.
    if (FreeBlock* block = pop(up)) return block;
  }
  return nullptr;
}

FreeBlock* ThreadHeap::refill_shared(size_t size_class, bool* zero) noexcept {
  // Half a bin's worth in one trip to the central heap (one block with the
  // bins off: it passes through the bin). A full bin would overflow on the
  // next free and send half of it straight back (alloc-test-1t: 4-6% more
  // CPU time than with half).
  Bin& bin = bins_[size_class];
  size_t want = bin.limit > 1 ? bin.limit / 2 : 1;
  size_t taken = central::take(size_class, bin.slots, want, zero);
  if (taken == 0) return nullptr;
  bin.set_count(taken);
  return pop(size_class);
}

void ThreadHeap::free_shared(size_t size_class, FreeBlock* block) noexcept {
  // The block and the older half of its full bin go back in one trip. With
  // the bins off (the empty heap's always are) the bin is not touched: the
  // empty heap is every heapless thread's.
  Bin& bin = bins_[size_class];
  FreeBlock* out[kBinSlots + 1];
  size_t count = bin.count();
  size_t moved = count - count / 2;
  if (moved != 0) {
    for (size_t i = 0; i < moved; ++i) out[i] = bin.slots[i];
    for (size_t i = moved; i < count; ++i) bin.slots[i - moved] = bin.slots[i];
    bin.set_count(count - moved);
  }
  out[moved] = block;
  central::give(size_class, out, moved + 1);
}

void ThreadHeap::after_local_free(Slab* slab) noexcept {
  size_t cls = slab->size_class;
  if (slab->used == 0 && slab != current_[cls]) {
    // Keep one empty slab per class: a class whose few live blocks come and
    // go would otherwise hand a slab back to the pool and fetch a new one
    // every few calls.
    if (spare_[cls] == nullptr) {
      spare_[cls] = slab;
      if (!slab->listed) {
        uintptr_t expected = kNotifyOwner;
        slab->remote_free.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
        link(slab, /*at_back=*/true);
      }
      return;
    }
    retire(slab);
    return;
  }
  if (!slab->listed) {
    // The slab was set aside as exhausted. Take the notification back; if a
    // remote free got there first, the slab is on notified_ and is linked
    // when that is drained.
    uintptr_t expected = kNotifyOwner;
    if (slab->remote_free.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
      // At the back: by the time the refill path reaches it, more of its
      // blocks will have come back, instead of one at a time.
      link(slab, /*at_back=*/true);
    }
  }
}

void ThreadHeap::push_remote(Slab* slab, FreeBlock* block) noexcept {
  block->tag = strata::free_tag();
  uintptr_t old = slab->remote_free.load(std::memory_order_relaxed);
  do {
    block->next_encoded = encode_next(reinterpret_cast<FreeBlock*>(old & ~kNotifyOwner));
  } while (!slab->remote_free.compare_exchange_weak(old, reinterpret_cast<uintptr_t>(block),
                                                    std::memory_order_release,
                                                    std::memory_order_relaxed));
  // The owner set this slab aside and cannot see it until told. Our block
  // keeps the slab alive (used > 0), so reading its owner here is safe.
  if (old & kNotifyOwner) slab->owner->notify_slab(slab);
}

void ThreadHeap::free_to_slab(Slab* slab, FreeBlock* block) noexcept {
  if (slab->owner == this)
    free_local(slab, block);
  else if (is_shared_class(slab->size_class))
    free_shared(slab->size_class, block);
  else
    push_remote(slab, block);
}

void ThreadHeap::free_past_bin(size_t bin_offset, FreeBlock* block, Slab* slab) noexcept {
  // The block passed free's grid test with its bin's magic number, which a
  // bin not opened yet (all zero, no room) does not hold: test it again.
  if (bin_at(bin_offset).grid_magic == 0 && !slab->is_block_start(block))
    return report::invalid_pointer("free", block);
  free_to_slab(slab, block);
}

void ThreadHeap::flush_bin(size_t size_class) noexcept {
  Bin& bin = bins_[size_class];
  if (is_shared_class(size_class)) {
    if (bin.count() == 0) return;  // not written: it may never have been
    central::give(size_class, bin.slots, bin.count());
    bin.set_count(0);
    return;
  }
  while (size_t count = bin.count()) {
    FreeBlock* block = bin.slots[count - 1];
    bin.set_count(count - 1);
    free_to_slab(slab_of(segment_of(block), block), block);
  }
}

template <typename Visit>
void ThreadHeap::sweep_class(size_t size_class, Visit visit) {
  for (Slab* slab = lists_[size_class].head; slab != nullptr;) {
    Slab* next = slab->next;  // visit may retire the slab
    collect_remote(slab);
    if (slab->used == 0) visit(size_class, slab);
    slab = next;
  }
}

template <typename Visit>
void ThreadHeap::sweep(Visit visit) {
  for (size_t cls = 0; cls < kNumClasses; ++cls) flush_bin(cls);
  drain_notified();
  for (size_t cls = 0; cls < kNumClasses; ++cls) sweep_class(cls, visit);
}

void ThreadHeap::release_empty(size_t size_class, Slab* slab) {
  if (current_[size_class] == slab) current_[size_class] = &g_no_slab;
  if (spare_[size_class] == slab) spare_[size_class] = nullptr;
  retire(slab);
}

void ThreadHeap::release_unused() {
  sweep([this](size_t cls, Slab* slab) { release_empty(cls, slab); });
}

void ThreadHeap::release_class(size_t size_class) {
  sweep_class(size_class, [this](size_t cls, Slab* slab) { release_empty(cls, slab); });
}

void ThreadHeap::release_if_idle(size_t size_class) {
  // pop() counts every allocation down, whichever path serves it.
  int64_t countdown = bins_[size_class].countdown();
  bool idle = countdown == countdown_seen_[size_class];
  countdown_seen_[size_class] = countdown;
  if (!idle) return;
  Slab* current = current_[size_class];
  bool holds_idle_memory = bins_[size_class].count() != 0 || spare_[size_class] != nullptr ||
                           (current != &g_no_slab && current->used == 0);
  if (!holds_idle_memory) return;
  flush_bin(size_class);
  release_class(size_class);
}

void ThreadHeap::release_idle_classes(size_t busy_class) {
  // A window of at least kIdleWindowRefills: a class idle over a shorter
  // one may just be between uses, and each release costs its class a trip
  // to the pool when it allocates again. With checks that close together, a
  // program cycling through a few dozen classes (the fast-path benchmark's
  // `classes` mode) went to the pool on almost every call.
  if (counters_.refills - idle_window_start_ < kIdleWindowRefills) return;
  idle_window_start_ = counters_.refills;
  for (size_t cls = 0; cls < kNumClasses; ++cls) {
    if (cls == busy_class) {
      countdown_seen_[cls] = bins_[cls].countdown();
      continue;
    }
    release_if_idle(cls);
  }
  // The shared classes' slabs too: this thread's idle bins of them have
  // just gone back there.
  central::release_idle();
}

void ThreadHeap::release_for_park() {
  sweep([this](size_t cls, Slab* slab) {
    if (current_[cls] == slab || spare_[cls] == slab) return;
    if (spare_[cls] == nullptr)
      spare_[cls] = slab;
    else
      retire(slab);
  });
}

}  // namespace strata
