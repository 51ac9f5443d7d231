// The C allocation functions under their glibc names, so that linking
// libstrata.a or preloading libstrata.so replaces malloc for the whole
// process. glibc's internal names (__libc_*) are aliases: no block can reach
// glibc's allocator through a name strata forgot.
#include <stddef.h>

#include "api/allocator.h"

// The aliases carry no copy of glibc's declaration attributes (malloc,
// alloc_size); that is deliberate, they are the same functions.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmissing-attributes"
#endif

#define STRATA_EXPORT extern "C" __attribute__((visibility("default")))
#define STRATA_ALIAS(name) __attribute__((alias(#name), visibility("default")))

STRATA_EXPORT void* malloc(size_t size) noexcept { return strata::api::malloc(size); }
STRATA_EXPORT void free(void* p) noexcept { strata::api::free(p); }
STRATA_EXPORT void* calloc(size_t count, size_t size) noexcept {
  return strata::api::calloc(count, size);
}
STRATA_EXPORT void* realloc(void* p, size_t size) noexcept { return strata::api::realloc(p, size); }
STRATA_EXPORT void* reallocarray(void* p, size_t count, size_t size) noexcept {
  return strata::api::reallocarray(p, count, size);
}
STRATA_EXPORT int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  return strata::api::posix_memalign(out, alignment, size);
}
STRATA_EXPORT void* aligned_alloc(size_t alignment, size_t size) noexcept {
  return strata::api::aligned_alloc(alignment, size);
}
STRATA_EXPORT void* memalign(size_t alignment, size_t size) noexcept {
  return strata::api::memalign(alignment, size);
}
STRATA_EXPORT void* valloc(size_t size) noexcept { return strata::api::valloc(size); }
STRATA_EXPORT void* pvalloc(size_t size) noexcept { return strata::api::pvalloc(size); }
STRATA_EXPORT size_t malloc_usable_size(void* p) noexcept { return strata::api::usable_size(p); }
STRATA_EXPORT void free_sized(void* p, size_t size) noexcept { strata::api::free_sized(p, size); }
STRATA_EXPORT void free_aligned_sized(void* p, size_t alignment, size_t size) noexcept {
  strata::api::free_aligned_sized(p, alignment, size);
}

STRATA_EXPORT void cfree(void* p) noexcept STRATA_ALIAS(free);
STRATA_EXPORT void* __libc_malloc(size_t size) noexcept STRATA_ALIAS(malloc);
STRATA_EXPORT void __libc_free(void* p) noexcept STRATA_ALIAS(free);
STRATA_EXPORT void* __libc_calloc(size_t count, size_t size) noexcept STRATA_ALIAS(calloc);
STRATA_EXPORT void* __libc_realloc(void* p, size_t size) noexcept STRATA_ALIAS(realloc);
STRATA_EXPORT void* __libc_memalign(size_t alignment, size_t size) noexcept STRATA_ALIAS(memalign);
STRATA_EXPORT void* __libc_valloc(size_t size) noexcept STRATA_ALIAS(valloc);
STRATA_EXPORT void* __libc_pvalloc(size_t size) noexcept STRATA_ALIAS(pvalloc);
STRATA_EXPORT int __posix_memalign(void** out, size_t alignment, size_t size) noexcept
    STRATA_ALIAS(posix_memalign);
