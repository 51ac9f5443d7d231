// Every C++ operator new and delete, replaced. new retries through the
// installed new_handler and throws std::bad_alloc where malloc would return
// NULL; the nothrow forms return nullptr instead. Deletes forward to free
// (sizes and alignments are not needed to find a block).
#include <new>

#include "api/allocator.h"

#define STRATA_EXPORT __attribute__((visibility("default")))

namespace {

// One policy for every throwing form: allocate, else call the new_handler
// and retry, else throw.
template <typename Allocate>
void* new_or_throw(Allocate allocate) {
  for (;;) {
    if (void* p = allocate()) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

template <typename Allocate>
void* new_or_null(Allocate allocate) noexcept {
  try {
    return new_or_throw(allocate);
  } catch (...) {
    return nullptr;
  }
}

void* plain(std::size_t size) {
  return new_or_throw([size] { return strata::api::malloc(size); });
}
void* plain_nothrow(std::size_t size) noexcept {
  return new_or_null([size] { return strata::api::malloc(size); });
}
void* aligned(std::size_t size, std::align_val_t alignment) {
  return new_or_throw(
      [=] { return strata::api::aligned(static_cast<std::size_t>(alignment), size); });
}
void* aligned_nothrow(std::size_t size, std::align_val_t alignment) noexcept {
  return new_or_null(
      [=] { return strata::api::aligned(static_cast<std::size_t>(alignment), size); });
}

}  // namespace

STRATA_EXPORT void* operator new(std::size_t size) { return plain(size); }
STRATA_EXPORT void* operator new[](std::size_t size) { return plain(size); }
STRATA_EXPORT void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return plain_nothrow(size);
}
STRATA_EXPORT void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return plain_nothrow(size);
}
STRATA_EXPORT void* operator new(std::size_t size, std::align_val_t alignment) {
  return aligned(size, alignment);
}
STRATA_EXPORT void* operator new[](std::size_t size, std::align_val_t alignment) {
  return aligned(size, alignment);
}
STRATA_EXPORT void* operator new(std::size_t size, std::align_val_t alignment,
                                 const std::nothrow_t&) noexcept {
  return aligned_nothrow(size, alignment);
}
STRATA_EXPORT void* operator new[](std::size_t size, std::align_val_t alignment,
                                   const std::nothrow_t&) noexcept {
  return aligned_nothrow(size, alignment);
}

STRATA_EXPORT void operator delete(void* p) noexcept { strata::api::free(p); }
STRATA_EXPORT void operator delete[](void* p) noexcept { strata::api::free(p); }
STRATA_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept {
  strata::api::free(p);
}
STRATA_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  strata::api::free(p);
}
STRATA_EXPORT void operator delete(void* p, std::size_t size) noexcept {
  strata::api::free_sized(p, size);
}
STRATA_EXPORT void operator delete[](void* p, std::size_t size) noexcept {
  strata::api::free_sized(p, size);
}
STRATA_EXPORT void operator delete(void* p, std::align_val_t alignment) noexcept {
  strata::api::free_aligned_sized(p, static_cast<std::size_t>(alignment), 0);
}
STRATA_EXPORT void operator delete[](void* p, std::align_val_t alignment) noexcept {
  strata::api::free_aligned_sized(p, static_cast<std::size_t>(alignment), 0);
}
STRATA_EXPORT void operator delete(void* p, std::align_val_t alignment,
                                   const std::nothrow_t&) noexcept {
  strata::api::free_aligned_sized(p, static_cast<std::size_t>(alignment), 0);
}
STRATA_EXPORT void operator delete[](void* p, std::align_val_t alignment,
                                     const std::nothrow_t&) noexcept {
  strata::api::free_aligned_sized(p, static_cast<std::size_t>(alignment), 0);
}
STRATA_EXPORT void operator delete(void* p, std::size_t size, std::align_val_t alignment) noexcept {
  strata::api::free_aligned_sized(p, static_cast<std::size_t>(alignment), size);
}
STRATA_EXPORT void operator delete[](void* p, std::size_t size,
                                     std::align_val_t alignment) noexcept {
  strata::api::free_aligned_sized(p, static_cast<std::size_t>(alignment), size);
}
