#include "alloc_api.hpp"

#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

#if defined(STRATA_TEST_VARIANT_PREFIXED)
#include <strata/strata.h>
#endif

namespace strata_test {

void* find_symbol(const char* name) { return dlsym(RTLD_DEFAULT, name); }

namespace {

#if defined(STRATA_TEST_VARIANT_PREFIXED)

std::size_t prefixed_usable_size(void* p) { return strata_malloc_usable_size(p); }

AllocApi make_api() {
  return AllocApi{"strata_",
                  &strata_malloc,
                  &strata_calloc,
                  &strata_realloc,
                  &strata_reallocarray,
                  &strata_free,
                  &strata_posix_memalign,
                  &strata_aligned_alloc,
                  &strata_memalign,
                  &strata_valloc,
                  &strata_pvalloc,
                  &prefixed_usable_size,
                  &strata_free_sized,
                  &strata_free_aligned_sized};
}

#else

AllocApi make_api() {
  // free_sized and free_aligned_sized are looked up at run time: glibc 2.36
  // has neither, so the binary must link and run without them.
  return AllocApi{"",
                  &::malloc,
                  &::calloc,
                  &::realloc,
                  &::reallocarray,
                  &::free,
                  &::posix_memalign,
                  &::aligned_alloc,
                  &::memalign,
                  &::valloc,
                  &::pvalloc,
                  &::malloc_usable_size,
                  reinterpret_cast<void (*)(void*, std::size_t)>(find_symbol("free_sized")),
                  reinterpret_cast<void (*)(void*, std::size_t, std::size_t)>(
                      find_symbol("free_aligned_sized"))};
}

#endif

#if defined(STRATA_TEST_VARIANT_STATIC)
// Any function of this executable: its load base identifies the executable.
void executable_marker() {}
#endif

}  // namespace

const AllocApi& api() {
  static const AllocApi table = make_api();
  return table;
}

const char* allocator_name(AllocatorKind kind) {
  switch (kind) {
    case AllocatorKind::kGlibc:
      return "glibc";
    case AllocatorKind::kStrata:
      return "strata";
    case AllocatorKind::kOther:
      break;
  }
  return "another allocator";
}

std::string symbol_origin(const char* name) {
  void* address = find_symbol(name);
  Dl_info info;
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

bool symbol_is_strata(const char* name) {
  void* address = find_symbol(name);
  Dl_info info;
  if (address == nullptr || dladdr(address, &info) == 0) return false;
#if defined(STRATA_TEST_VARIANT_STATIC)
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&executable_marker), &self) == 0) return false;
  return info.dli_fbase == self.dli_fbase;
#else
  return info.dli_fname != nullptr && std::strstr(info.dli_fname, "libstrata") != nullptr;
#endif
}

AllocatorKind allocator_in_use() {
  if constexpr (kVariant == Variant::kPrefixed) {
    return AllocatorKind::kStrata;
  } else {
    if (symbol_is_strata("malloc")) return AllocatorKind::kStrata;
    const std::string origin = symbol_origin("malloc");
    if (origin.find("/libc.so") != std::string::npos) return AllocatorKind::kGlibc;
    return AllocatorKind::kOther;
  }
}

AllocatorKind allocator_expected() {
  if constexpr (kVariant != Variant::kSystem) {
    return AllocatorKind::kStrata;
  } else {
    const char* wanted = std::getenv("STRATA_TEST_ALLOCATOR");
    if (wanted != nullptr && std::strcmp(wanted, "strata") == 0) return AllocatorKind::kStrata;
    if (wanted != nullptr && std::strcmp(wanted, "glibc") == 0) return AllocatorKind::kGlibc;
    return allocator_in_use();
  }
}

}  // namespace strata_test
