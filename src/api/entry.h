// Entry points that carry what the caller knows into the slow paths: the
// family that allocates a block (malloc, operator new, operator new[]), how
// it is released, with what size, and the return address into the program.
// Check mode (check/checked.h) uses them to report new/delete mismatches
// and to record allocation sites. The fast paths are those of allocator.h,
// unchanged: everything extra happens only once they fall through.
#ifndef STRATA_API_ENTRY_H
#define STRATA_API_ENTRY_H

#include <cstddef>

#include "api/allocator.h"
#include "check/checked.h"

namespace strata::api {

void* malloc_slow_from(size_t size, check::Origin origin, const void* caller) noexcept;
void* aligned_slow_from(size_t alignment, size_t size, check::Origin origin,
                        const void* caller) noexcept;
void free_slow_from(void* p, const char* function, check::Release kind, size_t size,
                    const void* caller) noexcept;

// api::malloc with the allocating family.
inline void* malloc_from(size_t size, check::Origin origin, const void* caller) noexcept {
  return malloc_with(size, [=] { return malloc_slow_from(size, origin, caller); });
}

// Aligned allocation (a power-of-two alignment) with the allocating family.
inline void* aligned_from(size_t alignment, size_t size, check::Origin origin,
                          const void* caller) noexcept {
  return aligned_with(alignment, size,
                      [=] { return aligned_slow_from(alignment, size, origin, caller); });
}

// api::free with the releasing family and the size the caller believes the
// block has (0: not given).
inline void free_from(void* p, const char* function, check::Release kind, size_t size,
                      const void* caller) noexcept {
  free_with(p, [=] { free_slow_from(p, function, kind, size, caller); });
}

}  // namespace strata::api

#endif  // STRATA_API_ENTRY_H
