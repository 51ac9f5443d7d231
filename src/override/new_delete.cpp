// Every C++ operator new and delete, replaced. new retries through the
// installed new_handler and throws std::bad_alloc where malloc would return
// NULL; the nothrow forms return nullptr instead. Deletes take the fast path
// of free; on its slow path they say which family releases the block and
// with what size, so that check mode can report a block from new[] released
// with delete or free, or a sized delete with the wrong size.
#include <dlfcn.h>

#include <cstdlib>
#include <new>

#include "api/entry.h"

// Weak: resolved only when the C++ runtime is in the process (see below).
namespace std {
new_handler get_new_handler() noexcept __attribute__((weak));
void __throw_bad_alloc() __attribute__((weak, noreturn));
}  // namespace std

#define STRATA_EXPORT __attribute__((visibility("default")))
// The return address into the program, recorded as the allocation site.
#define STRATA_CALLER __builtin_return_address(0)

namespace {

using strata::check::Origin;
using strata::check::Release;

// What operator new needs from the C++ runtime (libstdc++) when memory runs
// out, it looks up then, so that libstrata.so does not depend on the runtime
// and a C program does not pay for loading it. Every program that calls
// operator new has the runtime; the weak references resolve to it.
using Handler = std::new_handler;
// Our own tag object: std::nothrow lives in the runtime.
constexpr std::nothrow_t kNothrow{};
Handler current_handler() {
  Handler (*get)() noexcept = &std::get_new_handler;
  return get != nullptr ? get() : nullptr;
}

[[noreturn]] void throw_bad_alloc() {
  void (*raise)() = &std::__throw_bad_alloc;
  if (raise != nullptr) raise();
  abort();  // unreachable: a program calling operator new has the runtime
}

// One policy for every throwing form: allocate, else call the new_handler
// and retry, else throw std::bad_alloc.
template <typename Allocate>
void* new_or_throw(Allocate allocate) {
  for (;;) {
    if (void* p = allocate()) return p;
    Handler handler = current_handler();
    if (handler == nullptr) throw_bad_alloc();
    handler();
  }
}

// The nothrow forms: a new_handler may throw, and only the runtime can catch
// for us. Its own nothrow operator new (`runtime_nothrow`, the next
// definition after ours) runs the throwing form — ours — inside a try block.
template <typename Allocate, typename RuntimeNothrow>
void* new_or_null(Allocate allocate, const char* runtime_nothrow, RuntimeNothrow call) noexcept {
  if (void* p = allocate()) return p;
  if (current_handler() == nullptr) return nullptr;
  if (void* next = dlsym(RTLD_NEXT, runtime_nothrow)) return call(next);
  // No runtime to catch with (a static program): the handler must not throw.
  for (;;) {
    Handler handler = current_handler();
    if (handler == nullptr) return nullptr;
    handler();
    if (void* p = allocate()) return p;
  }
}

inline void* plain(std::size_t size, Origin origin, const void* caller) {
  if (void* p = strata::api::malloc_from(size, origin, caller)) return p;
  return new_or_throw([=] { return strata::api::malloc_from(size, origin, caller); });
}
void* plain_nothrow(std::size_t size, Origin origin, const void* caller) noexcept {
  const char* runtime = origin == Origin::kNewArray ? "_ZnamRKSt9nothrow_t" : "_ZnwmRKSt9nothrow_t";
  return new_or_null([=] { return strata::api::malloc_from(size, origin, caller); }, runtime,
                     [size](void* next) {
                       return reinterpret_cast<void* (*)(std::size_t, const std::nothrow_t&)>(next)(
                           size, kNothrow);
                     });
}
void* aligned(std::size_t size, std::align_val_t alignment, Origin origin, const void* caller) {
  return new_or_throw([=] {
    return strata::api::aligned_from(static_cast<std::size_t>(alignment), size, origin, caller);
  });
}
void* aligned_nothrow(std::size_t size, std::align_val_t alignment, Origin origin,
                      const void* caller) noexcept {
  const char* runtime = origin == Origin::kNewArray ? "_ZnamSt11align_val_tRKSt9nothrow_t"
                                                    : "_ZnwmSt11align_val_tRKSt9nothrow_t";
  return new_or_null(
      [=] {
        return strata::api::aligned_from(static_cast<std::size_t>(alignment), size, origin, caller);
      },
      runtime,
      [=](void* next) {
        return reinterpret_cast<void* (*)(std::size_t, std::align_val_t, const std::nothrow_t&)>(
            next)(size, alignment, kNothrow);
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
