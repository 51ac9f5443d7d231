// The large-object path: requests above the small size classes get their own
// anonymous mapping. A registry (address -> mapping) recognises them on free,
// so a pointer strata never returned is diagnosed instead of unmapped.
//
// Like glibc, a block is either *mapped* (size >= the mmap threshold: unmapped
// at once on free) or *retained* (below the threshold, possible only when the
// threshold has been raised: placed in an arena whose freed units stay
// resident for reuse, within a budget and the purge delay). Freeing a mapped block raises the
// threshold to its size while the dynamic threshold is on, as glibc does, so
// programs that cycle through multi-MiB buffers stop paying a page fault per
// page on every cycle.
#ifndef STRATA_LARGE_LARGE_H
#define STRATA_LARGE_LARGE_H

#include <cstddef>
#include <cstdint>

namespace strata::large {

// Takes the thresholds from the options: both at start-up; afterwards (any
// option changed) only a threshold whose option value changed, so that one
// glibc's dynamic rule raised stays raised, as in glibc.
void init();

// mallopt or option_set has just set the mmap (and/or trim) threshold: it
// takes the option's value even when that value did not change.
void take_thresholds(bool mmap, bool trim);

// A block of at least `size` bytes aligned to `alignment` (a power of two),
// zero-filled if `zero`. nullptr with errno ENOMEM on failure.
void* allocate(size_t size, size_t alignment, bool zero);

// Frees p if it is a live large block and returns its usable size, else 0
// (the caller reports the invalid free).
size_t deallocate(void* p);

// If p was a large block freed recently (it is not live now), its size; else
// 0. Lets a second free be reported as a double free rather than as a
// pointer strata never returned.
size_t recently_freed_size(const void* p);

// Usable size of a live large block, 0 if p is not one.
size_t usable_size(const void* p);

// Resizes a live large block to new_size (> the small-object limit) without
// copying where the kernel can: in place, or by moving the pages (mremap).
// Returns nullptr with errno ENOMEM on failure (the block is untouched).
void* reallocate(void* p, size_t new_size);

// The current mmap threshold (requests at or above it are mapped).
size_t mmap_threshold();

// Gives cached blocks back to the kernel; returns the bytes released.
size_t release_cached(bool only_aged, uint64_t now_ms);

struct Usage {
  size_t mapped_blocks = 0;    // glibc's hblks
  size_t mapped_bytes = 0;     // glibc's hblkhd
  size_t retained_blocks = 0;  // live blocks below the threshold
  size_t retained_bytes = 0;
  size_t cached_blocks = 0;  // freed, kept for reuse
  size_t cached_bytes = 0;
  size_t max_mapped_bytes = 0;
  size_t max_mapped_blocks = 0;  // malloc_stats' "max mmap regions"
  uint64_t allocations = 0;      // large blocks handed out so far
  uint64_t frees = 0;            // large blocks freed so far
};
Usage usage();

// Calls visit(address, usable_size) for every live large block, under the lock.
void for_each_block(void (*visit)(const void*, size_t, void*), void* context);

void fork_prepare();
void fork_parent();
void fork_child();

}  // namespace strata::large

#endif  // STRATA_LARGE_LARGE_H
