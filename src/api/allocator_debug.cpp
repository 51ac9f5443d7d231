// The allocation API's paths once check mode (check/checked.h) or guarded
// blocks (check/guard.h) are on: allocator.cpp's slow paths leave for these.
// Apart from the everyday paths so that their code stays out of the pages
// every program has resident (see "Code layout" in src/CMakeLists.txt).
#include <errno.h>
#include <stdint.h>

#include <cstring>

#include "api/allocator_internal.h"
#include "check/checked.h"
#include "check/guard.h"
#include "check/report.h"
#include "large/large.h"
#include "platform/os.h"

namespace strata::api {

void* checked_allocate(size_t size, size_t alignment, bool zero, check::Origin origin,
                       check::Site site) {
  size_t need;
  if (alignment > check::kMaxAlignment || !check::raw_size(size, alignment, &need) ||
      too_large(need)) {
    return fail_nomem();
  }
  runtime::ensure_ready();
  if (alignment <= kMinAlign && need <= kMaxSmallSize && need < large::mmap_threshold()) {
    // A raw block of a slab, neither perturbed nor cleared: on_allocate
    // fills what the program sees.
    size_t size_class = size_class_of(need);
    bool known_zero;
    FreeBlock* block = take_small(size_class, ThreadHeap::Fit::kExact, &known_zero);
    if (block == nullptr) return nullptr;
    // A block known zero is zero but for its link word, which the header
    // covers.
    return check::on_allocate_small(block, kSizeClasses[size_class].block_size, size, origin, zero,
                                    zero && known_zero, site);
  }
  // calloc's raw block comes zeroed: fresh pages of a large block are then
  // left untouched.
  bool zeroed = zero && alignment <= kMinAlign;
  void* raw = alignment <= kMinAlign ? allocate(need, zeroed) : aligned_plain(alignment, need);
  if (raw == nullptr) return nullptr;
  size_t usable;
  bool large_block = !g_segment_map.contains(raw);
  if (large_block)
    usable = large::usable_size(raw);
  else
    usable = slab_of(segment_of(raw), raw)->block_size;
  return check::on_allocate(raw, usable, alignment, size, origin, zero, zeroed, large_block, site);
}

void* allocate_from(size_t size, size_t alignment, bool zero, check::Origin origin,
                    check::Site site) {
  if (guard::enabled() && !too_large(size) &&
      (guard::guards_everything() || tls_heap->take_sample())) {
    if (void* p = guard::allocate(size, alignment, zero, origin, site)) return p;
  }
  if (check::enabled()) return checked_allocate(size, alignment, zero, origin, site);
  return alignment <= kMinAlign ? allocate(size, zero) : aligned_plain(alignment, size);
}

namespace {

// The raw block that would hold p as its user pointer, or nullptr (a
// pointer into no block, or into a block free in the allocator: reported).
// Whether it is a live block is for check::inspect to say.
[[gnu::always_inline]] inline void* find_raw(const void* p, const char* function) {
  void* raw = nullptr;
  if (g_segment_map.contains(p)) {
    Slab* slab = slab_of(segment_of(p), p);
    const char* at = static_cast<const char*>(p);
    if (slab->owner == nullptr || at < slab->start || at >= slab->end) {
      report::invalid_pointer(function, p);
      return nullptr;
    }
    // Most user pointers are kHeaderSize past their raw block (alignments
    // up to 64): the grid test finds it without a division.
    if (at - slab->start >= static_cast<ptrdiff_t>(check::kHeaderSize) &&
        slab->is_on_grid(at - check::kHeaderSize)) {
      raw = const_cast<char*>(at - check::kHeaderSize);
    } else {
      size_t index = static_cast<size_t>(at - slab->start) / slab->block_size;
      raw = slab->start + index * slab->block_size;
    }
    if (static_cast<const FreeBlock*>(raw)->tag == free_tag()) {
      // The block left the quarantine and is free again.
      if (at - static_cast<const char*>(raw) == static_cast<ptrdiff_t>(check::kHeaderSize))
        report::double_free(function, p, slab->block_size);
      else
        report::invalid_pointer(function, p);
      return nullptr;
    }
  } else {
    // A large block's user pointer is kHeaderSize past its start, or its
    // alignment past it (then p is aligned to that much).
    auto address = reinterpret_cast<uintptr_t>(p);
    size_t limit = address == 0 ? 0 : size_t{1} << __builtin_ctzll(address);
    if (limit > check::kMaxAlignment) limit = check::kMaxAlignment;
    for (size_t offset = check::kHeaderSize; offset <= limit || offset == check::kHeaderSize;
         offset *= 2) {
      if (address > offset && large::usable_size(reinterpret_cast<void*>(address - offset))) {
        raw = reinterpret_cast<void*>(address - offset);
        break;
      }
    }
    if (raw == nullptr) {
      if (size_t freed = large::recently_freed_size(
              reinterpret_cast<const void*>(address - check::kHeaderSize))) {
        report::double_free(function, p, freed);
      } else {
        report::invalid_pointer(function, p);
      }
      return nullptr;
    }
  }
  return raw;
}

}  // namespace

void* checked_find(const void* p, const char* function) {
  void* raw = find_raw(p, function);
  if (raw == nullptr) return nullptr;
  switch (check::inspect(raw, p)) {
    case check::Found::kLive:
      return raw;
    case check::Found::kFreed:
      check::report_double_free(function, p);
      return nullptr;
    case check::Found::kCorrupt:
      check::report_corrupt(function, p);
      return nullptr;
    case check::Found::kNotABlock:
      break;
  }
  report::invalid_pointer(function, p);
  return nullptr;
}

namespace {

// Gives a raw block back to the allocator.
void release_raw(void* raw) {
  if (g_segment_map.contains(raw))
    release_small(slab_of(segment_of(raw), raw), raw);
  else
    large::deallocate(raw);
}

// Gives back the blocks leaving the quarantine.
void release_evicted() {
  void* raws[16];
  while (size_t count = check::evict(raws, 16)) {
    for (size_t i = 0; i < count; ++i) {
      if (raws[i] != nullptr) release_raw(raws[i]);
    }
  }
}

// What a check-mode free led to, carried out: the raw block back to its slab
// or mapping, or the quarantine's oldest blocks evicted. False on an error
// (the block stays allocated).
bool finish_free(check::Freed result, void* raw) {
  switch (result) {
    case check::Freed::kError:
      return false;
    case check::Freed::kRelease:
      release_raw(raw);
      break;
    case check::Freed::kQuarantined:
      break;
    case check::Freed::kEvict:
      release_evicted();
      break;
  }
  return true;
}

// Frees a live block whose raw block is `raw`; false if it stays allocated.
bool checked_release(void* p, void* raw, const char* function, check::Release kind, size_t size,
                     check::Site site) {
  return finish_free(check::on_free(p, function, kind, size, site), raw);
}

}  // namespace

void checked_free(void* p, const char* function, check::Release kind, size_t size,
                  check::Site site) {
  if (p == nullptr) return;
  os::ErrnoGuard keep_errno;
  runtime::ensure_ready();
  void* raw = find_raw(p, function);
  if (raw == nullptr) return;
  if (!finish_free(check::free_found(raw, p, function, kind, size, site), raw)) return;
  runtime::maintenance();
}

namespace {

// Always moves the block, so that stale pointers to the old one are caught.
void* checked_realloc(void* p, size_t size, check::Site site) {
  if (p == nullptr) return checked_allocate(size, 0, false, check::Origin::kMalloc, site);
  if (size == 0) {
    checked_free(p, "realloc", check::Release::kFree, 0, site);
    return nullptr;
  }
  if (too_large(size)) return fail_nomem();
  runtime::ensure_ready();
  void* raw = checked_find(p, "realloc");
  if (raw == nullptr) return nullptr;
  size_t old_size = check::size_of(p);
  void* q = allocate_from(size, 0, false, check::Origin::kMalloc, site);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, size < old_size ? size : old_size);
  os::ErrnoGuard keep_errno;
  if (!checked_release(p, raw, "realloc", check::Release::kFree, 0, site)) {
    // Reported, and the old block is left as it was.
    checked_free(q, "realloc", check::Release::kFree, 0, site);
    return nullptr;
  }
  return q;
}

}  // namespace

void free_from_any(void* p, const char* function, check::Release kind, size_t size,
                   check::Site site) {
  if (p == nullptr) return;
  if (guard::owns(p)) {
    os::ErrnoGuard keep_errno;
    guard::release(p, function, kind, size, site);
    return;
  }
  if (check::enabled()) return checked_free(p, function, kind, size, site);
  free_plain(p, function);
}

void* realloc_any(void* p, size_t size, check::Site site) {
  if (p == nullptr) return allocate_from(size, 0, false, check::Origin::kMalloc, site);
  if (!guard::owns(p))
    return check::enabled() ? checked_realloc(p, size, site) : realloc_plain(p, size);
  if (size == 0) {
    free_from_any(p, "realloc", check::Release::kFree, 0, site);
    return nullptr;
  }
  if (too_large(size)) return fail_nomem();
  size_t old_size;
  if (!guard::find(p, "realloc", &old_size)) return nullptr;
  void* q = allocate_from(size, 0, false, check::Origin::kMalloc, site);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, size < old_size ? size : old_size);
  os::ErrnoGuard keep_errno;
  if (!guard::release(p, "realloc", check::Release::kFree, 0, site)) {
    free_from_any(q, "realloc", check::Release::kFree, 0, site);  // reported; p is left as it was
    return nullptr;
  }
  return q;
}

}  // namespace strata::api
