// strata for C++: a std::pmr::memory_resource and an STL allocator that draw
// from strata's heap beside the process's own malloc.
#ifndef STRATA_STRATA_HPP
#define STRATA_STRATA_HPP

#include <strata/strata.h>

#include <cstddef>
#include <limits>
#include <memory_resource>
#include <new>

namespace strata {

// A memory resource backed by strata. Stateless: all instances compare equal.
class MemoryResource final : public std::pmr::memory_resource {
 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    void* p = alignment <= alignof(std::max_align_t) ? strata_malloc(bytes)
                                                     : strata_aligned_alloc(alignment, bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    strata_free_aligned_sized(p, alignment, bytes);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return dynamic_cast<const MemoryResource*>(&other) != nullptr;
  }
};

// The process-wide strata memory resource.
inline MemoryResource* memory_resource() noexcept {
  static MemoryResource resource;
  return &resource;
}

// An allocator for standard containers: std::vector<int, strata::Allocator<int>>.
template <typename T>
struct Allocator {
  using value_type = T;
  Allocator() noexcept = default;
  template <typename U>
  Allocator(const Allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    void* p = alignof(T) <= alignof(std::max_align_t)
                  ? strata_malloc(n * sizeof(T))
                  : strata_aligned_alloc(alignof(T), n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    strata_free_aligned_sized(p, alignof(T), n * sizeof(T));
  }
  template <typename U>
  bool operator==(const Allocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace strata

#endif  // STRATA_STRATA_HPP
