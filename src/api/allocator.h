// The allocation API's semantics, once: glibc's rules for every entry point
// (errno, overflow, alignment, realloc corner cases), on top of the thread
// heaps and the large-object path. The exported C names (override/, and the
// strata_* API in c_api.cpp) are one-line forwards to these functions.
//
// malloc and free have inline fast paths here so that each exported symbol
// compiles to the complete fast path with no call in between.
#ifndef STRATA_API_ALLOCATOR_H
#define STRATA_API_ALLOCATOR_H

#include <cstddef>
#include <cstring>

#include "heap/runtime.h"
#include "heap/thread_heap.h"
#include "platform/shared_value.h"
#include "slab/segment.h"

namespace strata::api {

void* malloc_slow(size_t size) noexcept;
void free_slow(void* p, const char* function) noexcept;

// Past the fast path of a small request: refill this thread's heap without
// going through the API's slow path, which is left for the first call of a
// thread, debugging features (a sampled allocation) and running out of
// memory. Out of line, so that the fast paths keep no registers for it:
// `class_of()` gives the class again (malloc's recomputes it from the size),
// and `slow` is the caller's slow path. What these capture (malloc's size)
// is then passed in the register it arrived in, with no move on the fast path.
template <ThreadHeap::Fit kFit, typename Slow, typename ClassOf>
[[gnu::noinline]] void* refill_or(Slow slow, ClassOf class_of, ThreadHeap* heap) noexcept {
  size_t size_class = class_of();
  if (heap != &g_empty_heap && !heap->sample_pending(size_class)) {
    if (FreeBlock* block = heap->allocate_slow(size_class, kFit)) return block;
  }
  return slow();
}

// A block of the class `record` stands for (class_record_of(); or, past the
// class's slabs, of a larger class if kFit allows): the class's bin, else
// the current slab's free list (ThreadHeap::pop_record), else the refill;
// `slow()` past that. `class_of()` is the class, for the refill.
template <ThreadHeap::Fit kFit, typename Slow, typename ClassOf>
[[gnu::always_inline]] inline void* take_or(size_t record, Slow slow, ClassOf class_of) noexcept {
  ThreadHeap* heap = tls_heap;
  if (FreeBlock* block = heap->pop_record(record)) return block;
  return refill_or<kFit>(slow, class_of, heap);
}

// The fast path of every small allocation (malloc, operator new). `slow()`
// is what the caller does past it.
template <typename Slow>
[[gnu::always_inline]] inline void* malloc_with(size_t size, Slow slow) noexcept {
  if (__builtin_expect(shared_value::below(size, &g_fast.small_limit), 1)) {
    return take_or<ThreadHeap::Fit::kOrLarger>(class_record_of(size), slow,
                                               [size] { return size_class_of(size); });
  }
  return slow();
}

// The fast path of aligned allocation (posix_memalign, aligned_alloc,
// memalign, aligned operator new), for a power-of-two alignment: the class
// size_class_aligned() picks, then as malloc. `slow()` is what the caller
// does past it.
template <typename Slow>
[[gnu::always_inline]] inline void* aligned_with(size_t alignment, size_t size,
                                                 Slow slow) noexcept {
  if (alignment < kMinAlign) alignment = kMinAlign;
  size_t need = size < alignment ? alignment : size;
  size_t limit = __atomic_load_n(&g_fast.small_limit, __ATOMIC_RELAXED);
  if (__builtin_expect(need < limit, 1)) {
    size_t size_class = size_class_aligned(need, alignment);
    if (__builtin_expect(kSizeClasses[size_class].block_size < limit, 1)) {
      return take_or<ThreadHeap::Fit::kExact>(size_class << kClassRecordShift, slow,
                                              [size_class] { return size_class; });
    }
  }
  return slow();
}

// True if p is a block of `slab` (&g_no_slab: of none) that is not free.
[[gnu::always_inline]] inline bool is_live_block(const Slab* slab, const void* p,
                                                 const ThreadHeap* heap) noexcept {
  return slab->is_block_start(p) && static_cast<const FreeBlock*>(p)->tag != heap->free_tag();
}

// The slab of p if p is a live block of some thread's slab, found without
// a lock; nullptr for everything else (then the caller's slow path sorts it
// out: large blocks, foreign pointers, double frees, check mode, no slab
// map). For realloc and malloc_usable_size, which need the descriptor.
[[gnu::always_inline]] inline Slab* live_block_slab(const void* p,
                                                    const ThreadHeap* heap) noexcept {
  uintptr_t index = SlabMap::index_of(p);
  if (__builtin_expect(shared_value::below_acquire(index, &g_fast.free_index_limit), 1)) {
    const SlabMap::Entry& entry = g_slab_map.entry_at(index);
    if (__builtin_expect(entry.holds_blocks(), 1)) {
      Slab* slab = entry.slab_of(p);
      if (is_live_block(slab, p, heap)) return slab;
    }
  }
  return nullptr;
}

// A live block freed by this thread (`heap` is tls_heap): into this
// thread's bin of its class, which lies at `bin_offset` in every heap
// (Slab::bin_offset), or, when the bin is full or not open, into its slab,
// which `slab_of()` gives.
template <typename SlabOf>
[[gnu::always_inline]] inline void free_live(ThreadHeap* heap, void* p, size_t bin_offset,
                                             SlabOf slab_of) noexcept {
  auto* block = static_cast<FreeBlock*>(p);
  if (__builtin_expect(heap->push_bin(bin_offset, block), 1)) return;
  heap->free_past_bin(bin_offset, block, slab_of());
}
[[gnu::always_inline]] inline void free_live(ThreadHeap* heap, void* p, Slab* slab) noexcept {
  free_live(heap, p, slab->bin_offset, [slab] { return slab; });
}

// The fast path of every free (free, operator delete): a valid, live block
// of any thread's slab goes into this thread's class bin, without a branch
// on whose slab it is (a program that frees others' blocks half the time,
// as larson does, mispredicted that branch on almost every other free).
// The block grid is tested with the slab map's entry and the magic number
// in the bin it goes into, without reading the slab descriptor (see
// SlabMap). `slow()` handles everything else.
template <typename Slow>
[[gnu::always_inline]] inline void free_with(void* p, Slow slow) noexcept {
  ThreadHeap* heap = tls_heap;
  uintptr_t index = SlabMap::index_of(p);
  if (__builtin_expect(shared_value::below_acquire(index, &g_fast.free_index_limit), 1)) {
    const SlabMap::Entry& entry = g_slab_map.entry_at(index);
    size_t bin_offset = entry.bin_offset();
    if (entry.is_block_start(p, heap->grid_magic(bin_offset)) &&
        static_cast<const FreeBlock*>(p)->tag != heap->free_tag()) {
      return free_live(heap, p, bin_offset, [&entry, p] { return entry.slab_of(p); });
    }
  }
  return slow();
}

[[gnu::always_inline]] inline void* malloc(size_t size) noexcept {
  return malloc_with(size, [size] { return malloc_slow(size); });
}

[[gnu::always_inline]] inline void free(void* p) noexcept {
  free_with(p, [p] { free_slow(p, "free"); });
}

void* calloc_slow(size_t count, size_t size) noexcept;

// As malloc, then clear the block unless it is known zero.
inline void* calloc(size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_expect(!__builtin_mul_overflow(count, size, &total) &&
                           shared_value::below(total, &g_fast.small_limit),
                       1)) {
    ThreadHeap* heap = tls_heap;
    size_t size_class = size_class_of(total);
    // Whether the block is known zero is read as it is taken: a refill runs
    // upkeep that may allocate (and change the class's current slab).
    bool known_zero = heap->next_is_zero(size_class);
    FreeBlock* block = heap->pop(size_class);
    if (block == nullptr && heap != &g_empty_heap && !heap->sample_pending(size_class)) {
      block = heap->allocate_slow(size_class, ThreadHeap::Fit::kOrLarger, &known_zero);
    }
    if (block != nullptr) {
      if (known_zero)
        block->next_encoded = 0;
      else
        __builtin_memset(block, 0, total);
      return block;
    }
  }
  return calloc_slow(count, size);
}

void* realloc_slow(void* p, size_t size) noexcept;

// Whether realloc leaves a small block of `have` bytes where it is for `size`:
// while it fits and uses at least half of the block.
inline bool realloc_keeps(size_t size, size_t have) { return size <= have && size >= have / 2; }

// A live block of `slab` moved by malloc, copy and free, each on its fast
// path. Out of line: a block that stays where it is, and the slow path,
// save no registers for it.
void* realloc_move(void* p, size_t size, Slab* slab) noexcept;

// realloc of a live block of a slab: it stays where it is if realloc_keeps(),
// else it moves (realloc_move). Everything else, size 0 included, takes the
// slow path. (python calls realloc once for every 13 mallocs; through the
// slow path, each moved block's old block went to its slab, never the bin.)
[[gnu::always_inline]] inline void* realloc(void* p, size_t size) noexcept {
  Slab* slab = live_block_slab(p, tls_heap);
  if (slab == nullptr || size == 0) return realloc_slow(p, size);
  if (realloc_keeps(size, slab->block_size)) return p;
  return realloc_move(p, size, slab);
}
void* reallocarray(void* p, size_t count, size_t size) noexcept;
int posix_memalign(void** out, size_t alignment, size_t size) noexcept;
void* aligned_alloc(size_t alignment, size_t size) noexcept;
void* memalign(size_t alignment, size_t size) noexcept;
void* valloc(size_t size) noexcept;
void* pvalloc(size_t size) noexcept;
size_t usable_size_slow(const void* p) noexcept;
// malloc_usable_size: programs that count their memory (redis) call it on
// every allocation and free.
inline size_t usable_size(const void* p) noexcept {
  if (Slab* slab = live_block_slab(p, tls_heap)) return slab->block_size;
  return usable_size_slow(p);
}
// free with the size (and alignment) the caller believes the block has.
void free_sized(void* p, size_t size) noexcept;
void free_aligned_sized(void* p, size_t alignment, size_t size) noexcept;
// Aligned allocation for operator new (alignment is a power of two).
void* aligned(size_t alignment, size_t size) noexcept;

// malloc_trim: returns 1 if memory was released.
int trim(size_t pad) noexcept;

}  // namespace strata::api

#endif  // STRATA_API_ALLOCATOR_H
