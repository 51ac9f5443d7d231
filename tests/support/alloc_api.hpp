// The allocation API under test, behind one function table, so that a single
// test source checks the process's malloc (system, preloaded or statically
// linked strata) or strata's prefixed API depending on how it is compiled:
//   STRATA_TEST_VARIANT_PREFIXED  -> strata_malloc, strata_free, ...
//   STRATA_TEST_VARIANT_STATIC    -> malloc, free, ... with libstrata.a linked in
//   (neither)                     -> malloc, free, ... as the process resolves them
#ifndef STRATA_TESTS_SUPPORT_ALLOC_API_HPP
#define STRATA_TESTS_SUPPORT_ALLOC_API_HPP

#include <cstddef>
#include <string>

namespace strata_test {

enum class Variant { kSystem, kStatic, kPrefixed };

#if defined(STRATA_TEST_VARIANT_PREFIXED)
inline constexpr Variant kVariant = Variant::kPrefixed;
#elif defined(STRATA_TEST_VARIANT_STATIC)
inline constexpr Variant kVariant = Variant::kStatic;
#else
inline constexpr Variant kVariant = Variant::kSystem;
#endif

struct AllocApi {
  const char* prefix;  // "" or "strata_", for messages
  void* (*malloc)(std::size_t);
  void* (*calloc)(std::size_t, std::size_t);
  void* (*realloc)(void*, std::size_t);
  void* (*reallocarray)(void*, std::size_t, std::size_t);
  void (*free)(void*);
  int (*posix_memalign)(void**, std::size_t, std::size_t);
  void* (*aligned_alloc)(std::size_t, std::size_t);
  void* (*memalign)(std::size_t, std::size_t);
  void* (*valloc)(std::size_t);
  void* (*pvalloc)(std::size_t);
  std::size_t (*malloc_usable_size)(void*);
  // C23 functions that glibc 2.36 lacks: null when the allocator has none.
  void (*free_sized)(void*, std::size_t);
  void (*free_aligned_sized)(void*, std::size_t, std::size_t);
};

const AllocApi& api();

enum class AllocatorKind { kGlibc, kStrata, kOther };
const char* allocator_name(AllocatorKind kind);

// The allocator that `malloc` resolves to in this process (strata for the
// prefixed variant, whose API is strata by construction).
AllocatorKind allocator_in_use();
// The allocator this run must be testing: strata for the static and prefixed
// variants; for the plain binary, STRATA_TEST_ALLOCATOR=glibc|strata (set by
// ctest), or whatever is in use when the variable is unset (manual runs,
// e.g. under another allocator's LD_PRELOAD).
AllocatorKind allocator_expected();
inline bool testing_strata() { return allocator_expected() == AllocatorKind::kStrata; }

// The address of a symbol as the global scope resolves it, or nullptr.
void* find_symbol(const char* name);
// The file of the object that defines `name` in the global scope ("" if none).
std::string symbol_origin(const char* name);
// Whether `name` resolves to strata's definition (libstrata.so when preloaded,
// the executable itself when libstrata.a is linked in).
bool symbol_is_strata(const char* name);

}  // namespace strata_test

#endif  // STRATA_TESTS_SUPPORT_ALLOC_API_HPP
