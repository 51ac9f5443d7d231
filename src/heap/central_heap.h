// The central heap: the slabs of the shared size classes (the largest small
// blocks), which belong to no thread. Threads reach them through their
// bins: a bin that runs dry takes a batch of blocks here, and one that
// overflows gives half of its blocks back, in one trip under the class's
// lock.
//
// Why: a heap of its own per thread keeps, for each class, slabs sized for
// the most blocks of that class it ever had live, part full in every
// thread. For blocks of 40-128 KiB that slack was most of a many-threaded
// program's resident memory (alloc-test-8t: 300 MiB where glibc takes 160).
// Shared slabs hold the peak of all threads' live blocks of a class instead
// of the sum of each thread's peak.
#ifndef STRATA_HEAP_CENTRAL_HEAP_H
#define STRATA_HEAP_CENTRAL_HEAP_H

#include <cstddef>
#include <cstdint>

#include "heap/thread_heap.h"

namespace strata::central {

// Up to `want` (>= 1) blocks of the shared class into out[]; returns how
// many, 0 when out of memory. The blocks come tagged free, as a bin holds
// them; *last_zero: out[count - 1] is zero but for its link word.
size_t take(size_t size_class, FreeBlock** out, size_t want, bool* last_zero) noexcept;

// Validated blocks of the shared class (taken from here) back to their slabs,
// each counted as a remote free.
void give(size_t size_class, FreeBlock* const* blocks, size_t count) noexcept;

// Blocks given back here so far (statistics: each is a remote free, since
// no thread owns the shared classes' blocks; a block freed into a thread's
// bin and allocated from it again is not counted).
uint64_t remote_frees();

// malloc_trim: every empty slab back to the pool.
void release_unused();

// The empty slabs of the classes that have not been taken from since the
// last call back to the pool (called with a thread heap's own idle-class
// release; see ThreadHeap::release_idle_classes).
void release_idle();

// fork(): the locks are held across it.
void fork_prepare();
void fork_parent();
void fork_child();

}  // namespace strata::central

#endif  // STRATA_HEAP_CENTRAL_HEAP_H
