// Every C++ operator new and delete, replaced. new retries through the
// installed new_handler and throws std::bad_alloc where malloc would return
// NULL; the nothrow forms return nullptr instead. Deletes take the fast path
// of free; on its slow path they say which family releases the block and
// with what size, so that check mode can report a block from new[] released
// with delete or free, or a sized delete with the wrong size.
#include <new>

#include "api/entry.h"

#define STRATA_EXPORT __attribute__((visibility("default")))
// The return address into the program, recorded as the allocation site.
#define STRATA_CALLER __builtin_return_address(0)

namespace {

using strata::check::Origin;
using strata::check::Release;

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

inline void* plain(std::size_t size, Origin origin, const void* caller) {
  if (void* p = strata::api::malloc_from(size, origin, caller)) return p;
  return new_or_throw([=] { return strata::api::malloc_from(size, origin, caller); });
}
void* plain_nothrow(std::size_t size, Origin origin, const void* caller) noexcept {
  return new_or_null([=] { return strata::api::malloc_from(size, origin, caller); });
}
void* aligned(std::size_t size, std::align_val_t alignment, Origin origin, const void* caller) {
  return new_or_throw([=] {
    return strata::api::aligned_from(static_cast<std::size_t>(alignment), size, origin, caller);
  });
}
void* aligned_nothrow(std::size_t size, std::align_val_t alignment, Origin origin,
                      const void* caller) noexcept {
  return new_or_null([=] {
    return strata::api::aligned_from(static_cast<std::size_t>(alignment), size, origin, caller);
  });
}

constexpr const char* kDelete = "operator delete";
constexpr const char* kDeleteArray = "operator delete[]";

inline void release(void* p, Release kind, std::size_t size, const void* caller) noexcept {
  strata::api::free_from(p, kind == Release::kDelete ? kDelete : kDeleteArray, kind, size, caller);
}

}  // namespace

STRATA_EXPORT void* operator new(std::size_t size) {
  return plain(size, Origin::kNew, STRATA_CALLER);
}
STRATA_EXPORT void* operator new[](std::size_t size) {
  return plain(size, Origin::kNewArray, STRATA_CALLER);
}
STRATA_EXPORT void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return plain_nothrow(size, Origin::kNew, STRATA_CALLER);
}
STRATA_EXPORT void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return plain_nothrow(size, Origin::kNewArray, STRATA_CALLER);
}
STRATA_EXPORT void* operator new(std::size_t size, std::align_val_t alignment) {
  return aligned(size, alignment, Origin::kNew, STRATA_CALLER);
}
STRATA_EXPORT void* operator new[](std::size_t size, std::align_val_t alignment) {
  return aligned(size, alignment, Origin::kNewArray, STRATA_CALLER);
}
STRATA_EXPORT void* operator new(std::size_t size, std::align_val_t alignment,
                                 const std::nothrow_t&) noexcept {
  return aligned_nothrow(size, alignment, Origin::kNew, STRATA_CALLER);
}
STRATA_EXPORT void* operator new[](std::size_t size, std::align_val_t alignment,
                                   const std::nothrow_t&) noexcept {
  return aligned_nothrow(size, alignment, Origin::kNewArray, STRATA_CALLER);
}

STRATA_EXPORT void operator delete(void* p) noexcept {
  release(p, Release::kDelete, 0, STRATA_CALLER);
}
STRATA_EXPORT void operator delete[](void* p) noexcept {
  release(p, Release::kDeleteArray, 0, STRATA_CALLER);
}
STRATA_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept {
  release(p, Release::kDelete, 0, STRATA_CALLER);
}
STRATA_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  release(p, Release::kDeleteArray, 0, STRATA_CALLER);
}
STRATA_EXPORT void operator delete(void* p, std::size_t size) noexcept {
  release(p, Release::kDelete, size, STRATA_CALLER);
}
STRATA_EXPORT void operator delete[](void* p, std::size_t size) noexcept {
  release(p, Release::kDeleteArray, size, STRATA_CALLER);
}
STRATA_EXPORT void operator delete(void* p, std::align_val_t) noexcept {
  release(p, Release::kDelete, 0, STRATA_CALLER);
}
STRATA_EXPORT void operator delete[](void* p, std::align_val_t) noexcept {
  release(p, Release::kDeleteArray, 0, STRATA_CALLER);
}
STRATA_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  release(p, Release::kDelete, 0, STRATA_CALLER);
}
STRATA_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  release(p, Release::kDeleteArray, 0, STRATA_CALLER);
}
STRATA_EXPORT void operator delete(void* p, std::size_t size, std::align_val_t) noexcept {
  release(p, Release::kDelete, size, STRATA_CALLER);
}
STRATA_EXPORT void operator delete[](void* p, std::size_t size, std::align_val_t) noexcept {
  release(p, Release::kDeleteArray, size, STRATA_CALLER);
}
