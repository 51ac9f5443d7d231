// Thread heaps: each thread allocates from slabs it owns, one current slab
// per size class, with no lock and no atomic read-modify-write. A block that
// does not fit in the freeing thread's bin (below) goes back on its slab's
// free list if the thread owns the slab; otherwise it is pushed onto the
// slab's remote list (one CAS) and the owner collects it when the slab runs
// dry.
//
// In front of the slabs, each class has a bin: the last few blocks this
// thread freed (its own or other heaps'), handed out again first, newest
// first. A block in a bin still counts as used in its slab. Without bins, a
// block freed into a slab other than the class's current one waited until
// that slab came round again, and the next allocation took a block freed
// long before, out of the cache, where tcmalloc's thread caches reuse the
// block just freed (see docs/design.md: larson-8t about 10% less CPU time
// and 24% less peak RSS with bins).
//
// Slab states seen from the owner (for each size class):
//   current      the slab the fast path allocates from (also listed)
//   listed       may have free blocks; the refill path looks here next
//   set aside    exhausted; remote_free carries kNotifyOwner, and the first
//                remote free pushes it on the heap's `notified` stack
// An empty slab (used == 0) that is neither current nor the class's one spare
// goes back to the slab pool; a class that stops allocating gives back those
// two and its bin's blocks too, the next time the heap needs a new slab.
//
// The shared classes (above 32 KiB) have no slabs here: their bins take from
// and give back to the central heap (heap/central_heap.h), a few blocks at a
// time.
//
// A thread's heap lives until the thread exits; then it is parked in the heap
// pool with its slabs and handed whole to the next new thread.
#ifndef STRATA_HEAP_THREAD_HEAP_H
#define STRATA_HEAP_THREAD_HEAP_H

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "platform/instructions.h"
#include "sizeclass/size_classes.h"
#include "slab/segment.h"
#include "slab/slab.h"

namespace strata {

class ThreadHeap {
 public:
  // The empty heap, constant-initialised: bins off and empty.
  constexpr ThreadHeap() : bins_{} { start_empty(); }
  // A heap placed in memory that reads as zero (fresh from the kernel). Its
  // bins are left as they are, all-zero: a class's bin is first written when
  // the class first allocates (next_period()), so the pages that hold only
  // the bins of classes a thread never uses stay untouched (the bins take 12
  // KiB of the heap's 15).
  struct OnZeroedMemory {};
  explicit ThreadHeap(OnZeroedMemory) { start_empty(); }

  // Fast path: a block of class `size_class`, from its bin, else from the
  // current slab; nullptr when both are empty, when the slab list head's
  // link does not point into its own segment (forged by an overflow or a
  // write after free: the slow path then reports it), or when the class's
  // counting period has run out (see "Sampling" below). Budget: about 20
  // instructions.
  FreeBlock* pop(size_t size_class) { return pop_record(size_class << kClassRecordShift); }
  // pop() of the class that class_record_of() gave as `record`: malloc's
  // form, which reaches the bin from the record with one addition.
  FreeBlock* pop_record(size_t record) {
    Bin& bin = bin_at(bin_offset(0) + record);
    if (uint64_t count = bin.count(); count != 0) {
      if (__builtin_expect(instructions::subtract_in_place(bin.word, Bin::kTakeFromBin), 0)) {
        bin.word += Bin::kOneBlock;  // the block stays; the countdown has run out
        return nullptr;
      }
      FreeBlock* block = bin.slots[count - 1];
      block->tag = 0;
      return block;
    }
    Slab* slab = current_[record >> kClassRecordShift];
    FreeBlock* block = slab->free;
    if (__builtin_expect(block == slab->list_end(), 0)) return nullptr;
    auto* next = reinterpret_cast<FreeBlock*>(block->next_encoded ^ keys_.list_key);
    if (__builtin_expect(
            ((reinterpret_cast<uintptr_t>(next) ^ reinterpret_cast<uintptr_t>(block)) >>
             kSegmentShift) != 0,
            0)) {
      return nullptr;
    }
    if (__builtin_expect(instructions::subtract_in_place(bin.word, Bin::kOneAllocation), 0))
      return nullptr;
    slab->free = next;
    block->tag = 0;
    ++slab->used;
    return block;
  }

  // A validated block of this heap's slab (slab->owner == this) back on the
  // slab's free list, when the bin has no room. The follow-up runs only when
  // the slab was exhausted, or has just become empty and is not the current
  // slab (then it goes back to the pool). Budget: about 15 instructions.
  void free_local(Slab* slab, FreeBlock* block) {
    FreeBlock* head = slab->free;
    block->next_encoded = reinterpret_cast<uintptr_t>(head) ^ keys_.list_key;
    block->tag = free_tag();
    slab->free = block;
    slab->free_is_zero = false;
    uint32_t used = --slab->used;
    if (__builtin_expect(head == slab->list_end(), 0) ||
        (__builtin_expect(used == 0, 0) && current_[slab->size_class] != slab)) {
      after_local_free(slab);
    }
  }

  // Fast path of a free by this thread, of a validated block (this heap's
  // or another's) whose class's bin lies at `offset` (Slab::bin_offset):
  // into that bin, tagged free. False when the bin is full (the caller frees
  // it to its slab). Budget: about 7 instructions.
  bool push_bin(size_t offset, FreeBlock* block) {
    Bin& bin = bin_at(offset);
    uint64_t count = bin.count();
    if (__builtin_expect(count >= bin.limit, 0)) return false;
    // Read before the bin's stores: free has just read it (its double free
    // test), and a 64-bit store may alias keys_ for the compiler, which would
    // then read it again.
    uintptr_t tag = free_tag();
    bin.slots[count] = block;
    instructions::increment_in_place(bin.word);
    block->tag = tag;
    return true;
  }

  // True if the next block pop() hands out is zero but for its link word
  // (calloc need not clear it): it comes from the current slab, whose free
  // list is known zero.
  bool next_is_zero(size_t size_class) const {
    return bins_[size_class].count() == 0 && current_[size_class]->free_is_zero;
  }

  // block_grid_magic() of the class whose bin lies at `offset`
  // (Slab::bin_offset); 0 if the heap has not opened that bin.
  uint64_t grid_magic(size_t offset) { return bin_at(offset).grid_magic; }

  // strata::free_tag(), from the heap's copy of the secrets (one load fewer
  // on the fast paths than the global).
  uintptr_t free_tag() const { return keys_.tag_key; }

  // Takes a copy of the process secrets (once they exist).
  void adopt_secrets() { keys_ = g_secrets; }

  // Sampling (guard_sample_rate=N): pop() counts each class's allocations
  // down from a random period of mean N. When a count runs out, the
  // allocation misses the fast path; the caller asks sample_pending(),
  // which starts the next period, and if it says yes hands the allocation
  // to the API's slow path, which claims it with take_sample() and guards
  // it. So one small allocation in N is sampled, wherever it is served from,
  // for one decrement on the fast path (which also counts allocations for
  // the statistics). Without sampling, periods are too long to run out.
  bool sample_pending(size_t size_class) {
    renew_period(size_class);
    return sample_pending_;
  }
  bool take_sample() {
    if (!sample_pending_) return false;
    sample_pending_ = false;
    return true;
  }
  // Starts counting for a heap taken into use: one allocation in `rate` of
  // the classes up to `max_size` bytes is sampled (rate 0: none).
  void start_sampling(uint32_t rate, size_t max_size);
  // Sizes the bins of a heap taken into use; `enabled` false (glibc's
  // tcache_count=0 or tcache_max=0) turns them off. The empty heap's stay off.
  void start_bins(bool enabled) {
    bins_on_ = enabled;
    for (size_t cls = 0; cls < kNumClasses; ++cls)
      if (class_started(cls)) bins_[cls].limit = enabled ? bin_limit(cls) : 0;
  }

  // Slow paths.
  // Which blocks allocate_slow() may hand out for a class: its own only
  // (aligned requests, whose class was picked for its blocks' alignment, and
  // check mode, which lays a block out by its class's size), or, when the
  // class has run out, a free block of one of the next classes (refill()).
  enum class Fit : bool { kExact, kOrLarger };
  // Refills the current slab of the class and takes a block from it (or,
  // with kOrLarger, a borrowed one: borrow()); nullptr when out of memory.
  // *known_zero (if given): the block is zero but for its link word (calloc
  // need not clear it).
  FreeBlock* allocate_slow(size_t size_class, Fit fit,
                           bool* known_zero = nullptr) noexcept;  // nullptr: out of memory
  static void push_remote(Slab* slab, FreeBlock* block) noexcept;
  // A block from this heap's slabs, past the bins, without the idle-class
  // release: how the central heap (heap/central_heap.h) allocates, one class
  // at a time under that class's lock, its bins off.
  FreeBlock* take_block(size_t size_class) noexcept {
    renew_period(size_class);  // on the class's first block, its first period
    if (FreeBlock* block = pop(size_class)) return block;
    FreeBlock* block;
    return refill_listed(size_class, &block) ? block : refill_new(size_class);
  }
  // A validated block that does not go into a bin (it is full, or this is
  // the empty heap): back on its slab's free list if the slab is this
  // heap's; a shared class's to the central heap, with half the bin; else
  // onto the slab's remote list, where the owner counts it as a remote free
  // when it collects it. Out of line, so that the fast paths keep no
  // registers for it.
  void free_to_slab(Slab* slab, FreeBlock* block) noexcept;
  // free_to_slab() of a block of `slab` that passed free's fast tests:
  // free's fast path when the bin at `bin_offset` is full or not open.
  void free_past_bin(size_t bin_offset, FreeBlock* block, Slab* slab) noexcept;

  // Collects remote frees and gives every empty slab back to the pool,
  // including current ones (trim, a heap parked for a while).
  void release_unused();
  // The same for one class, whose bin is empty (the central heap's are).
  void release_class(size_t size_class);
  // If the class has not allocated since the last call: empties its bin and
  // gives back its empty slabs, current and spare included.
  void release_if_idle(size_t size_class);

  // Thread exit: collects remote frees and gives back the empty slabs that
  // are neither current nor the class's spare. The rest stays with the
  // parked heap for the next thread (see park() in runtime.cpp).
  void release_for_park();

  // Called by a remote thread whose free hit a set-aside slab.
  void notify_slab(Slab* slab);

  // Statistics, written only by the owning thread and read without a lock
  // by the statistics code (a slightly stale value is fine). Frees need no
  // counter: frees = allocations - blocks in use (the slabs' `used`).
  struct Counters {
    // Blocks of this heap's slabs that another thread freed and that came
    // back through a slab's remote list, counted as this heap collects
    // them. A block another thread frees into its bin and allocates again
    // never crosses, and is not counted.
    uint64_t remote_frees = 0;
    uint64_t refills = 0;  // trips through allocate_slow past the bin
  };
  const Counters& counters() const { return counters_; }
  // Small blocks of the class handed out by this heap. Read by the
  // statistics while the owner allocates: a slightly stale value is fine.
  __attribute__((no_sanitize("thread"))) uint64_t allocations(size_t size_class) const {
    int64_t left = bins_[size_class].countdown() < 0 ? 0 : bins_[size_class].countdown();
    return counted_[size_class] + static_cast<uint64_t>(period_[size_class] - left);
  }
  // Blocks of the class waiting in this heap's bin (counted as used by
  // their slabs): read by the statistics while the owner runs.
  __attribute__((no_sanitize("thread"))) uint32_t binned(size_t size_class) const {
    return static_cast<uint32_t>(bins_[size_class].count());
  }

  // Links for the heap pool (runtime.cpp).
  ThreadHeap* next_all = nullptr;     // every heap ever created
  ThreadHeap* next_parked = nullptr;  // parked heaps
  uint64_t parked_ms = 0;             // when it was parked
  bool in_use = false;
  bool holds_idle_slabs = false;  // parked with its empty current and spare slabs

 private:
  void drop_forged_list(Slab* slab);
  void flush_bin(size_t size_class) noexcept;
  // Collects the remote frees of the class's listed slabs and calls
  // visit(class, slab) for each one left empty.
  template <typename Visit>
  void sweep_class(size_t size_class, Visit visit);
  // Empties every bin, then sweeps every class (the two release paths).
  template <typename Visit>
  void sweep(Visit visit);
  // Gives an empty slab back to the pool, current or spare as it may be.
  void release_empty(size_t size_class, Slab* slab);
  // Called before the heap takes a new slab from the pool, and acting at
  // most once per kIdleWindowRefills refills: every class but `busy_class`
  // that has not allocated since it last acted empties its bin and gives
  // back its empty slabs, so that a program done with one size reuses that
  // memory for the next instead of growing (glibc-simple: 12% less peak RSS).
  void release_idle_classes(size_t busy_class);
  static constexpr uint64_t kIdleWindowRefills = 256;
  // The current slab ran dry: the next block from the current or a listed
  // slab (true; *block is nullptr only if a free list was forged), else
  // false; then refill_new() takes a new slab from the pool. refill() is
  // both, with borrow() and the idle-class release before the new slab;
  // *zero as allocate_slow()'s *known_zero.
  bool refill_listed(size_t size_class, FreeBlock** block) noexcept;
  FreeBlock* refill_new(size_t size_class) noexcept;
  FreeBlock* refill(size_t size_class, Fit fit, bool* zero) noexcept;
  // A free block of one of the next classes, from its bin or current slab,
  // for a class that has run out. A class's slabs hold its own peak of live
  // blocks for as long as one of their blocks lives, so a short peak that
  // took a new slab kept it resident long after; borrowing rides it out on
  // the free blocks next door (peak RSS: larson-1t 2-4%, thread-churn 5-9%,
  // glibc-thread 4-8% less), at the cost of a larger block and of one trip
  // through the slow path per block, which is why a class that keeps running
  // out takes a slab after kMaxBorrowStreak borrowed blocks in a row (with
  // no limit, glibc-thread-1t took 12% more CPU time).
  FreeBlock* borrow(size_t size_class) noexcept;
  // The shared classes' slow paths: through the central heap.
  FreeBlock* refill_shared(size_t size_class, bool* zero) noexcept;
  void free_shared(size_t size_class, FreeBlock* block) noexcept;
  void after_local_free(Slab* slab) noexcept;
  bool collect_remote(Slab* slab);
  bool carve(Slab* slab);
  void link(Slab* slab, bool at_back);
  void unlink(Slab* slab);
  bool set_aside(Slab* slab);
  void retire(Slab* slab);
  void drain_notified();
  void next_period(size_t size_class);
  // A period that ran out, or the class's first (see class_started()), is
  // followed by the next; pop() then counts it down without failing on it.
  void renew_period(size_t size_class) {
    if (bins_[size_class].countdown() <= 0) next_period(size_class);
  }
  int64_t draw_period();

  // A period no program reaches: counting without sampling (2^46
  // allocations of one class by one thread: a day at 800 million a second;
  // then the next period starts).
  static constexpr int64_t kEndlessPeriod = int64_t{1} << 46;

  // A bin holds at most kBinSlots blocks and kBinBytes of them: a thread
  // that stops allocating keeps at most 5.2 MiB of freed blocks in its bins
  // (all 48 full), until it exits or calls malloc_trim.
  static constexpr uint32_t kBinSlots = 29;  // a Bin is four cache lines
  static constexpr size_t kBinBytes = 256 * 1024;
  // A class's bin, and its allocation count, which pop() decrements on
  // either path: one line for both.
  // No member initialisers: a heap on zeroed memory leaves its bins unwritten.
  struct alignas(64) Bin {
    // The blocks in `slots` (the low kCountBits) and, above them, the
    // class's allocations left in the counting period (signed): malloc
    // steps both with one subtraction, whose sign says whether the period
    // has run out (one instruction fewer than two counters).
    int64_t word;
    uint64_t limit;
    // block_grid_magic() of the class (0 until the class starts): free's
    // block-grid test reads it here, in the line it reads the count from,
    // rather than from the slab descriptor (SlabMap).
    uint64_t grid_magic;
    FreeBlock* slots[kBinSlots];

    static constexpr int kCountBits = 16;
    static constexpr int64_t kOneBlock = 1;
    static constexpr int64_t kOneAllocation = int64_t{1} << kCountBits;
    static constexpr int64_t kTakeFromBin = kOneAllocation + kOneBlock;
    uint64_t count() const { return static_cast<uint16_t>(word); }
    int64_t countdown() const { return word >> kCountBits; }
    void set_count(uint64_t count) {
      word = (word & -kOneAllocation) | static_cast<int64_t>(count);
    }
    void set_countdown(int64_t countdown) {
      word = countdown * kOneAllocation + static_cast<int64_t>(count());
    }
  };
  static_assert(kBinSlots < (1 << Bin::kCountBits));
  static_assert(sizeof(Bin) == size_t{1} << kClassRecordShift, "see class_record_of()");
  static constexpr uint32_t bin_limit(size_t size_class) {
    size_t blocks = kBinBytes / kSizeClasses[size_class].block_size;
    return blocks < kBinSlots ? static_cast<uint32_t>(blocks) : kBinSlots;
  }

  // Where the class's bin lies in every heap (they all have this layout).
  size_t bin_offset(size_t size_class) const {
    return static_cast<size_t>(reinterpret_cast<const char*>(&bins_[size_class]) -
                               reinterpret_cast<const char*>(this));
  }
  // The bin at `offset`. Its address is opaque to the compiler, so that it
  // addresses the slots from it (one instruction) instead of folding the
  // bin's offset into every slot index (three): 5 fewer instructions per
  // malloc+free pair, and the fast paths read one register.
  Bin& bin_at(size_t offset) {
    return *instructions::opaque_base(
        reinterpret_cast<Bin*>(reinterpret_cast<char*>(this) + offset));
  }
  constexpr void start_empty() {
    for (auto& slab : current_) slab = &g_no_slab;
  }
  // A class is started by its first allocation in this heap (next_period());
  // before that its bin is all zero: no limit, no count, a countdown of 0.
  bool class_started(size_t size_class) const { return period_[size_class] != 0; }

  Secrets keys_ = {0, 0};  // copy of g_secrets
  Counters counters_;
  Slab* current_[kNumClasses] = {};
  // Between the other fields, as they always were: with the bins at the end
  // of the heap and heaps page-aligned (two more pages left clean per heap),
  // glibc-thread-1t took 3.5% more CPU time (callgrind: 4% more first-level
  // misses, in push_bin and pop).
  Bin bins_[kNumClasses];
  struct SlabList {
    Slab* head = nullptr;
    Slab* tail = nullptr;
  };
  SlabList lists_[kNumClasses] = {};
  Slab* spare_[kNumClasses] = {};  // an empty listed slab kept for reuse, per class
  std::atomic<Slab*> notified_{nullptr};
  // Sampling and allocation counts (see sample_pending()).
  int64_t period_[kNumClasses] = {};    // length of the current period
  uint64_t counted_[kNumClasses] = {};  // allocations in the periods before it
  uint32_t sample_rate_ = 0;            // mean period when sampling, else 0
  uint32_t sample_classes_ = 0;         // classes [0, sample_classes_) are sampled
  uint64_t sample_random_ = 0;          // state of the period generator
  bool sample_pending_ = false;
  // Idle classes (see release_idle_classes()).
  int64_t countdown_seen_[kNumClasses] = {};  // each class's countdown at the last check
  uint64_t idle_window_start_ = 0;            // counters_.refills at the last check
  bool bins_on_ = false;                      // bins open with their limit (start_bins())
  uint8_t borrow_streak_[kNumClasses] = {};   // refills in a row served by borrow()
};

// The heap of threads that have not allocated yet: every current slab is the
// sentinel, so its fast path always falls through to the slow path, which
// gives the thread a real heap.
extern constinit ThreadHeap g_empty_heap __attribute__((visibility("hidden")));

}  // namespace strata

#endif  // STRATA_HEAP_THREAD_HEAP_H
