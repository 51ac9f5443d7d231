// Guarded blocks (Electric Fence / GWP-ASan style), with
// STRATA_OPTIONS=guard_sample_rate=N: one allocation in N (every one for
// N = 1) of at most kMaxSize bytes is placed in a slot of a dedicated
// reserved region, right-aligned against an inaccessible guard page, so an
// overflow faults at the faulting instruction. A freed slot is made
// inaccessible and reused as late as possible, so a use after free faults
// too. A SIGSEGV handler recognises faults inside the region, reports what
// was hit (overflow, underflow, use after free), the block, the offset and
// where it was allocated and freed, then lets the signal take its course.
//
// free, realloc and malloc_usable_size test guard::owns(p) (one range
// check) before anything else. With N = 1 every call takes the slow path;
// with N > 1 the fast paths stay on and count small allocations (see
// ThreadHeap::sample_pending and docs/hardening.md).
#ifndef STRATA_CHECK_GUARD_H
#define STRATA_CHECK_GUARD_H

#include <cstddef>
#include <cstdint>

#include "check/checked.h"

namespace strata::guard {

struct Region {
  uintptr_t begin = 0;
  uintptr_t end = 0;
};
extern constinit Region g_region;
// guard_sample_rate once the region exists, else 0.
extern constinit uint32_t g_rate;

// True while the region exists (decided once at start-up, by latch()).
inline bool enabled() { return g_region.begin != 0; }
// True if p lies in the region (a guarded block, or a bad pointer into it).
inline bool owns(const void* p) {
  auto address = reinterpret_cast<uintptr_t>(p);
  return address - g_region.begin < g_region.end - g_region.begin;
}

// Every allocation is guarded (guard_sample_rate=1): the fast paths are off.
inline bool guards_everything() { return g_rate == 1; }

// Reserves the region and installs the signal handler if the options ask
// for it. Once, at start-up.
void latch();

// Largest block a slot takes.
inline constexpr size_t kMaxSize = 16 * 1024;

// N of guard_sample_rate=N when one allocation in N is sampled, else 0. The
// thread heaps count allocations and pick the samples (ThreadHeap::
// sample_pending); the API's slow path guards them.
inline uint32_t sample_rate() { return g_rate > 1 ? g_rate : 0; }

// Guarded blocks handed out so far.
uint64_t allocations();

// A guarded block, or nullptr (too large, over-aligned, no free slot): the
// caller allocates normally.
void* allocate(size_t size, size_t alignment, bool zero, check::Origin origin, check::Site site);

// True, with its size, if p is a live guarded block; false (reported:
// invalid pointer or double free) otherwise.
bool find(const void* p, const char* function, size_t* size);

// Frees a guarded block (p owned by the region): verifies it is a live
// block, its family and size, and the bytes between its end and the guard
// page. Reports and returns false on any error.
bool release(void* p, const char* function, check::Release kind, size_t sized, check::Site site);

}  // namespace strata::guard

#endif  // STRATA_CHECK_GUARD_H
