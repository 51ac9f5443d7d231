// glibc's tuning and introspection functions under their glibc names:
// mallopt, mallinfo, mallinfo2, malloc_trim, malloc_stats, malloc_info. They
// act on strata's heap; left to glibc they would report on, or tune, a heap
// that nobody uses.
#include <errno.h>
#include <malloc.h>
#include <stdio.h>

#include "api/introspection.h"

#define STRATA_EXPORT extern "C" __attribute__((visibility("default")))

STRATA_EXPORT int mallopt(int param, int value) noexcept {
  return strata::api::mallopt(param, value);
}
STRATA_EXPORT struct mallinfo2 mallinfo2() noexcept { return strata::api::mallinfo2(); }
STRATA_EXPORT struct mallinfo mallinfo() noexcept { return strata::api::mallinfo(); }
STRATA_EXPORT int malloc_trim(size_t pad) noexcept { return strata::api::trim(pad); }
STRATA_EXPORT void malloc_stats() noexcept { strata::api::malloc_stats(); }
STRATA_EXPORT int malloc_info(int options, FILE* stream) noexcept {
  return strata::api::malloc_info(options, stream);
}
