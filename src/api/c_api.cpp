// The prefixed C API (include/strata/strata.h): strata's heap beside the
// process's own malloc. Each function is a one-line forward.
#include <strata/strata.h>

#include "api/allocator.h"

extern "C" {

void* strata_malloc(size_t size) { return strata::api::malloc(size); }
void* strata_calloc(size_t count, size_t size) { return strata::api::calloc(count, size); }
void* strata_realloc(void* p, size_t size) { return strata::api::realloc(p, size); }
void* strata_reallocarray(void* p, size_t count, size_t size) {
  return strata::api::reallocarray(p, count, size);
}
void strata_free(void* p) { strata::api::free(p); }
void strata_free_sized(void* p, size_t size) { strata::api::free_sized(p, size); }
void strata_free_aligned_sized(void* p, size_t alignment, size_t size) {
  strata::api::free_aligned_sized(p, alignment, size);
}
int strata_posix_memalign(void** out, size_t alignment, size_t size) {
  return strata::api::posix_memalign(out, alignment, size);
}
void* strata_aligned_alloc(size_t alignment, size_t size) {
  return strata::api::aligned_alloc(alignment, size);
}
void* strata_memalign(size_t alignment, size_t size) {
  return strata::api::memalign(alignment, size);
}
void* strata_valloc(size_t size) { return strata::api::valloc(size); }
void* strata_pvalloc(size_t size) { return strata::api::pvalloc(size); }
size_t strata_malloc_usable_size(const void* p) { return strata::api::usable_size(p); }
int strata_trim(size_t pad) { return strata::api::trim(pad); }

}  // extern "C"
