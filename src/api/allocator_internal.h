// What the two halves of the allocation API share: the everyday paths
// (allocator.cpp) and the paths of check mode and guarded blocks
// (allocator_debug.cpp). They live apart so that the code every program runs
// stays together (see "Code layout" in src/CMakeLists.txt).
#ifndef STRATA_API_ALLOCATOR_INTERNAL_H
#define STRATA_API_ALLOCATOR_INTERNAL_H

#include <errno.h>
#include <stdint.h>

#include <cstddef>

#include "api/allocator.h"
#include "check/checked.h"
#include "heap/runtime.h"

namespace strata::api {

inline bool too_large(size_t size) { return size > static_cast<size_t>(PTRDIFF_MAX); }

inline void* fail_nomem() {
  errno = ENOMEM;
  return nullptr;
}

// When the kernel refuses memory (RLIMIT_AS, strict overcommit), what strata
// keeps for reuse (empty segments, cached large blocks, the slabs of exited
// threads) may be exactly what is missing: give it back and try once more.
template <typename Allocate>
inline auto retry_after_trim(Allocate allocate) {
  auto result = allocate();
  if (result == nullptr && runtime::trim() != 0) result = allocate();
  if (result == nullptr) errno = ENOMEM;
  return result;
}

// A block of class `size_class` (or a larger one, as `fit` allows) from the
// calling thread's heap, as it is (neither cleared nor perturbed);
// *known_zero: it is zero but for its link word. nullptr when out of memory.
[[gnu::always_inline]] inline FreeBlock* take_small(size_t size_class, ThreadHeap::Fit fit,
                                                    bool* known_zero) {
  ThreadHeap* heap = tls_heap;
  if (heap == &g_empty_heap) {
    heap = retry_after_trim([] { return runtime::thread_heap(); });
    if (heap == nullptr) return nullptr;
  }
  *known_zero = heap->next_is_zero(size_class);
  FreeBlock* block = heap->pop(size_class);
  if (block == nullptr) {
    block = retry_after_trim([&] { return heap->allocate_slow(size_class, fit, known_zero); });
  }
  return block;
}

// --- allocator.cpp: the everyday paths.

// A block of `size` bytes (cleared if `zero`), small or large; nullptr with
// errno ENOMEM when out of memory.
void* allocate(size_t size, bool zero);
// The same at an alignment (a power of two).
void* aligned_plain(size_t alignment, size_t size);
// A small block of `slab` into the thread's bin, or back to its slab.
void release_small(Slab* slab, void* p);
void free_plain(void* p, const char* function);
void* realloc_plain(void* p, size_t size);

// --- allocator_debug.cpp: check mode (check/checked.h) and guarded blocks
// (check/guard.h), decided at start-up. Sites are where the program called.

// A block with check mode's layout; `origin` is the allocating family.
void* checked_allocate(size_t size, size_t alignment, bool zero, check::Origin origin,
                       check::Site site);
// A block of the family `origin`: guarded if sampling picks it, else with
// check mode's layout if that is on.
void* allocate_from(size_t size, size_t alignment, bool zero, check::Origin origin,
                    check::Site site);
// free in check mode (no guards), and with guards or check mode.
void checked_free(void* p, const char* function, check::Release kind, size_t size,
                  check::Site site);
void free_from_any(void* p, const char* function, check::Release kind, size_t size,
                   check::Site site);
void* realloc_any(void* p, size_t size, check::Site site);
// The raw block whose user pointer is p in check mode, or nullptr (reported).
void* checked_find(const void* p, const char* function);

}  // namespace strata::api

#endif  // STRATA_API_ALLOCATOR_INTERNAL_H
