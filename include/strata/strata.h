/* strata: the prefixed C API.
 *
 * These functions use strata's heap beside whatever allocator the process
 * uses for malloc: link libstrata_prefixed.a (or libstrata.so) and call them.
 * Their semantics are exactly those of the glibc functions of the same name
 * without the prefix (errno, alignment rules, overflow checks). A block must
 * be released by the family that allocated it: strata_free for strata_malloc.
 */
#ifndef STRATA_STRATA_H
#define STRATA_STRATA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STRATA_API __attribute__((visibility("default")))

/* Allocation. */
STRATA_API void *strata_malloc(size_t size);
STRATA_API void *strata_calloc(size_t count, size_t size);
STRATA_API void *strata_realloc(void *ptr, size_t size);
STRATA_API void *strata_reallocarray(void *ptr, size_t count, size_t size);
STRATA_API void strata_free(void *ptr);
STRATA_API void strata_free_sized(void *ptr, size_t size);
STRATA_API void strata_free_aligned_sized(void *ptr, size_t alignment, size_t size);
STRATA_API int strata_posix_memalign(void **out, size_t alignment, size_t size);
STRATA_API void *strata_aligned_alloc(size_t alignment, size_t size);
STRATA_API void *strata_memalign(size_t alignment, size_t size);
STRATA_API void *strata_valloc(size_t size);
STRATA_API void *strata_pvalloc(size_t size);
STRATA_API size_t strata_malloc_usable_size(const void *ptr);

/* Give free memory back to the kernel now; keep at most `pad` bytes of slack
 * at the top of the data-segment heap. Returns 1 if anything was released. */
STRATA_API int strata_trim(size_t pad);

/* --- Options and statistics ------------------------------------------- */

#ifdef __cplusplus
}
#endif

#endif /* STRATA_STRATA_H */
