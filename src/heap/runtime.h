// The runtime: start-up, the calling thread's heap, thread exit, fork, and
// the periodic upkeep that returns memory to the kernel. Everything that is
// process-wide state of the allocator (rather than a data structure) is here.
#ifndef STRATA_HEAP_RUNTIME_H
#define STRATA_HEAP_RUNTIME_H

#include <atomic>
#include <cstddef>

#include "heap/thread_heap.h"

namespace strata {

// What the inline fast paths need to know, in one cache line. Written with
// release stores at start-up and when options change, read by every thread
// as atomics (platform/shared_value.h; free's limit with acquire ordering:
// free then reads the slab map that start-up set up). Before start-up
// small_limit is 0, so the first allocation takes the slow path and starts
// the allocator; it is also 0 while a debugging feature (perturb, checks)
// needs every call to go through the slow path.
struct alignas(64) FastPathState {
  size_t small_limit = 0;  // requests below this may use the fast path
  // free's fast path considers pointers whose unit index is below this:
  // SlabMap::kIndexLimit normally, 0 when every free must go slow.
  uintptr_t free_index_limit = 0;
};
// Hidden: read on every call. A plain extern declaration may be defined in
// another module, so the compiler would load its address from the GOT
// first, one more instruction per access (the same holds for the other
// globals the fast paths read: g_slab_map, g_no_slab, g_empty_heap).
extern constinit FastPathState g_fast __attribute__((visibility("hidden")));

// The calling thread's heap: &g_empty_heap until it first allocates.
extern constinit thread_local ThreadHeap* tls_heap;

namespace runtime {

// Starts the allocator if needed. Safe to call from any thread, any time.
void ensure_ready();

// The calling thread's heap, creating it if needed; nullptr if out of memory.
ThreadHeap* thread_heap();

// Re-reads options into the layers after mallopt or strata_option_set.
void options_changed();

// Periodic upkeep (purging aged memory); called from slow paths.
void maintenance();

// Returns every unused byte it can to the kernel (malloc_trim). Returns the
// number of bytes released.
size_t trim();

// Calls visit(heap) for every heap ever created, in use or parked, under the
// heap-pool lock (statistics: visit must not allocate; the heaps' counters
// belong to their owners and are read as racy snapshots).
void for_each_heap(void (*visit)(const ThreadHeap*, void*), void* context);

}  // namespace runtime
}  // namespace strata

#endif  // STRATA_HEAP_RUNTIME_H
