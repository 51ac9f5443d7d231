// The allocation API's semantics: slow paths and every corner case of the
// glibc functions (see allocator.h).
#include "api/allocator.h"

#include <errno.h>
#include <stdint.h>

#include <cstring>

#include "api/entry.h"
#include "check/checked.h"
#include "check/guard.h"
#include "check/report.h"
#include "large/large.h"
#include "options/options.h"
#include "platform/os.h"

// Where the program called from, for check mode's records. Only the slow
// paths use it (it gives the function a frame pointer).
#define STRATA_SITE \
  check::Site { __builtin_return_address(0), caller_frame(__builtin_frame_address(0)) }

namespace strata::api {
namespace {

// The frame pointer of the code that called the function whose frame record
// is `frame` (read at once: a tail call reuses the record).
inline const void* caller_frame(const void* frame) { return *static_cast<void* const*>(frame); }

bool too_large(size_t size) { return size > static_cast<size_t>(PTRDIFF_MAX); }

void* fail_nomem() {
  errno = ENOMEM;
  return nullptr;
}

// M_PERTURB: new blocks (not calloc) are filled with the complement of the
// byte, freed blocks with the byte itself, as glibc does.
void perturb_allocated(void* p, size_t size) {
  if (g_options.perturb != 0) std::memset(p, ~g_options.perturb & 0xff, size);
}
void perturb_freed(void* p, size_t size) {
  if (g_options.perturb != 0) std::memset(p, g_options.perturb & 0xff, size);
}

// When the kernel refuses memory (RLIMIT_AS, strict overcommit), what strata
// keeps for reuse (empty segments, cached large blocks, the slabs of exited
// threads) may be exactly what is missing: give it back and try once more.
template <typename Allocate>
auto retry_after_trim(Allocate allocate) {
  auto result = allocate();
  if (result == nullptr && runtime::trim() != 0) result = allocate();
  if (result == nullptr) errno = ENOMEM;
  return result;
}

void* allocate_large(size_t size, size_t alignment, bool zero) {
  void* p = retry_after_trim([&] { return large::allocate(size, alignment, zero); });
  if (p != nullptr && !zero) perturb_allocated(p, size);
  return p;
}

// A block of class `size_class` from the calling thread's heap, as it is
// (neither cleared nor perturbed); *known_zero: it is zero but for its link
// word. nullptr when out of memory.
[[gnu::always_inline]] inline FreeBlock* take_small(size_t size_class, bool* known_zero) {
  ThreadHeap* heap = tls_heap;
  if (heap == &g_empty_heap) {
    heap = retry_after_trim([] { return runtime::thread_heap(); });
    if (heap == nullptr) return nullptr;
  }
  *known_zero = heap->next_is_zero(size_class);
  FreeBlock* block = heap->pop(size_class);
  if (block == nullptr) {
    block = retry_after_trim([&] { return heap->allocate_slow(size_class, known_zero); });
  }
  return block;
}

// A block of class `size_class` for a request of `size` bytes.
void* allocate_small(size_t size_class, size_t size, bool zero) {
  bool known_zero;
  FreeBlock* block = take_small(size_class, &known_zero);
  if (block == nullptr) return nullptr;
  if (zero) {
    // A block carved from memory the kernel just gave us is zero but for
    // its link word: clearing the whole block would only fault pages in.
    if (known_zero)
      block->next_encoded = 0;
    else
      std::memset(block, 0, size);
  } else {
    perturb_allocated(block, size);
  }
  return block;
}

void* allocate(size_t size, bool zero) {
  if (too_large(size)) return fail_nomem();
  runtime::ensure_ready();
  if (size <= kMaxSmallSize && size < large::mmap_threshold()) {
    return allocate_small(size_class_of(size), size, zero);
  }
  return allocate_large(size, 0, zero);
}

// p is in no segment and not a live large block.
void report_unknown_large(const char* function, const void* p) {
  if (size_t freed = large::recently_freed_size(p))
    report::double_free(function, p, freed);
  else
    report::invalid_pointer(function, p);
}

// What a pointer handed to free/realloc/malloc_usable_size refers to.
struct BlockRef {
  Slab* slab = nullptr;  // the block's slab, or nullptr for a large block
  size_t size = 0;       // usable size; 0 when p is not a live block (reported)
};

BlockRef find_block(const void* p, const char* function) {
  if (g_segment_map.contains(p)) {
    Slab* slab = slab_of(segment_of(p), p);
    if (slab->owner == nullptr || !slab->is_block_start(p)) {
      report::invalid_pointer(function, p);
      return {};
    }
    if (static_cast<const FreeBlock*>(p)->tag == free_tag(p)) {
      report::double_free(function, p, slab->block_size);
      return {};
    }
    return {slab, slab->block_size};
  }
  size_t size = large::usable_size(p);
  if (size == 0) report_unknown_large(function, p);
  return {nullptr, size};
}

void release_small(Slab* slab, void* p) {
  perturb_freed(p, slab->block_size);
  tls_heap->free_to_slab(slab, static_cast<FreeBlock*>(p));
}

void* aligned_plain(size_t alignment, size_t size);

// --- Check mode (check/checked.h): every block has a header and canaries;
// these functions find the raw block behind a pointer and hand raw blocks
// out and back.

// Check mode without guards: the exported functions' slow paths go straight
// to the check-mode functions below. The modes are latched at start-up, so
// they are read after it (a thread's first call may race with another
// thread's start-up).
inline bool checking_only() {
  runtime::ensure_ready();
  return check::enabled() && !guard::enabled();
}

[[gnu::always_inline]] inline void* checked_allocate(size_t size, size_t alignment, bool zero,
                                                     check::Origin origin, check::Site site) {
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
    FreeBlock* block = take_small(size_class, &known_zero);
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

// --- Debugging features: check mode and guarded blocks.

// Check mode and guards are decided at start-up: the first call of the
// process must not be served before that.
bool debugging() {
  runtime::ensure_ready();
  return check::enabled() || guard::enabled();
}

void free_plain(void* p, const char* function);
void* realloc_plain(void* p, size_t size);

// A block of the family `origin`: guarded if sampling picks it, else with
// check mode's layout if that is on.
void* allocate_from(size_t size, size_t alignment, bool zero, check::Origin origin,
                    check::Site site) {
  if (guard::enabled() && !too_large(size) &&
      (guard::guards_everything() || tls_heap->take_sample())) {
    if (void* p = guard::allocate(size, alignment, zero, origin, site)) return p;
  }
  if (check::enabled()) return checked_allocate(size, alignment, zero, origin, site);
  return alignment <= kMinAlign ? allocate(size, zero) : aligned_plain(alignment, size);
}

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
    if (static_cast<const FreeBlock*>(raw)->tag == free_tag(raw)) {
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

// The raw block whose user pointer is p, or nullptr (reported).
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

[[gnu::always_inline]] inline void checked_free(void* p, const char* function, check::Release kind,
                                                size_t size, check::Site site) {
  if (p == nullptr) return;
  os::ErrnoGuard keep_errno;
  runtime::ensure_ready();
  void* raw = find_raw(p, function);
  if (raw == nullptr) return;
  if (!finish_free(check::free_found(raw, p, function, kind, size, site), raw)) return;
  runtime::maintenance();
}

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

}  // namespace

void* malloc_slow(size_t size) noexcept {
  if (checking_only()) return checked_allocate(size, 0, false, check::Origin::kMalloc, STRATA_SITE);
  if (debugging()) return allocate_from(size, 0, false, check::Origin::kMalloc, STRATA_SITE);
  return allocate(size, /*zero=*/false);
}

void* malloc_slow_from(size_t size, check::Origin origin, const void* caller) noexcept {
  if (checking_only()) {
    return checked_allocate(size, 0, false, origin,
                            {caller, caller_frame(__builtin_frame_address(0))});
  }
  if (debugging()) {
    return allocate_from(size, 0, false, origin,
                         {caller, caller_frame(__builtin_frame_address(0))});
  }
  return allocate(size, /*zero=*/false);
}

void* aligned_slow_from(size_t alignment, size_t size, check::Origin origin,
                        const void* caller) noexcept {
  if (debugging()) {
    return allocate_from(size, alignment, false, origin,
                         {caller, caller_frame(__builtin_frame_address(0))});
  }
  return aligned(alignment, size);
}

void free_slow_from(void* p, const char* function, check::Release kind, size_t size,
                    const void* caller) noexcept {
  if (checking_only()) {
    return checked_free(p, function, kind, size,
                        {caller, caller_frame(__builtin_frame_address(0))});
  }
  if (debugging()) {
    return free_from_any(p, function, kind, size,
                         {caller, caller_frame(__builtin_frame_address(0))});
  }
  free_slow(p, function);
}

void free_slow(void* p, const char* function) noexcept {
  if (p == nullptr) return;
  if (checking_only()) return checked_free(p, function, check::Release::kFree, 0, STRATA_SITE);
  if (debugging()) return free_from_any(p, function, check::Release::kFree, 0, STRATA_SITE);
  free_plain(p, function);
}

namespace {

void free_plain(void* p, const char* function) {
  os::ErrnoGuard keep_errno;  // free never changes errno, even when unmapping
  runtime::ensure_ready();
  if (g_segment_map.contains(p)) {
    BlockRef ref = find_block(p, function);
    if (ref.size != 0) release_small(ref.slab, p);
    runtime::maintenance();
    return;
  }
  if (g_options.perturb != 0) {
    size_t size = large::usable_size(p);
    if (size != 0) perturb_freed(p, size);
  }
  if (large::deallocate(p) == 0) report_unknown_large(function, p);
}

}  // namespace

void* calloc_slow(size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  if (debugging()) return allocate_from(total, 0, true, check::Origin::kMalloc, STRATA_SITE);
  return allocate(total, /*zero=*/true);
}

void* realloc(void* p, size_t size) noexcept {
  if (debugging()) return realloc_any(p, size, STRATA_SITE);
  return realloc_plain(p, size);
}

namespace {

void* realloc_plain(void* p, size_t size) {
  if (p == nullptr) return malloc(size);
  if (size == 0) {  // glibc frees and returns NULL
    free_slow(p, "realloc");
    return nullptr;
  }
  if (too_large(size)) return fail_nomem();
  runtime::ensure_ready();
  BlockRef ref = find_block(p, "realloc");
  if (ref.size == 0) return nullptr;
  if (ref.slab != nullptr) {
    // Stay in place while the new size still fits and does not waste more
    // than half of the block.
    if (size <= ref.size && size >= ref.size / 2) return p;
  } else if (size > kMaxSmallSize || size >= large::mmap_threshold()) {
    // In place or moved by the kernel.
    return retry_after_trim([&] { return large::reallocate(p, size); });
  }
  void* q = malloc(size);
  if (q == nullptr) return nullptr;  // the old block is untouched
  std::memcpy(q, p, size < ref.size ? size : ref.size);
  if (ref.slab != nullptr)
    release_small(ref.slab, p);
  else
    free_slow(p, "realloc");
  return q;
}

}  // namespace

void* reallocarray(void* p, size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  return realloc(p, total);
}

void* aligned(size_t alignment, size_t size) noexcept {
  if (debugging()) {
    return allocate_from(size, alignment, false, check::Origin::kMalloc, STRATA_SITE);
  }
  return aligned_plain(alignment, size);
}

namespace {

void* aligned_plain(size_t alignment, size_t size) {
  if (alignment <= kMinAlign) return allocate(size, false);
  if (too_large(size)) return fail_nomem();
  runtime::ensure_ready();
  size_t need = size < alignment ? alignment : size;
  if (need <= kMaxSmallSize) {
    size_t cls = size_class_aligned(need, alignment);
    if (kSizeClasses[cls].block_size < large::mmap_threshold())
      return allocate_small(cls, size, false);
  }
  size_t page = os::g_caps.page_size;
  return allocate_large(size, alignment < page ? page : alignment, false);
}

}  // namespace

int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = aligned_with(alignment, size, [=] {
    os::ErrnoGuard keep_errno;  // posix_memalign reports through its result only
    return aligned(alignment, size);
  });
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void* memalign(size_t alignment, size_t size) noexcept {
  // glibc: alignments above half the address space are invalid; others that
  // are not a power of two are rounded up to the next one.
  if (alignment > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if ((alignment & (alignment - 1)) != 0)
    alignment = size_t{1} << (64 - __builtin_clzll(alignment));
  return aligned_with(alignment, size, [=] { return aligned(alignment, size); });
}

void* aligned_alloc(size_t alignment, size_t size) noexcept { return memalign(alignment, size); }

void* valloc(size_t size) noexcept {
  runtime::ensure_ready();
  return aligned(os::g_caps.page_size, size);
}

void* pvalloc(size_t size) noexcept {
  runtime::ensure_ready();
  size_t page = os::g_caps.page_size;
  size_t rounded;
  if (__builtin_add_overflow(size, page - 1, &rounded)) return fail_nomem();
  rounded &= ~(page - 1);
  return aligned(page, rounded == 0 ? page : rounded);
}

size_t usable_size(const void* p) noexcept {
  if (p == nullptr) return 0;
  runtime::ensure_ready();
  if (guard::owns(p)) {
    size_t size;
    return guard::find(p, "malloc_usable_size", &size) ? size : 0;
  }
  if (check::enabled()) {
    return checked_find(p, "malloc_usable_size") != nullptr ? check::size_of(p) : 0;
  }
  return find_block(p, "malloc_usable_size").size;
}

void free_sized(void* p, size_t size) noexcept {
  free_from(p, "free_sized", check::Release::kFree, size, __builtin_return_address(0));
}

void free_aligned_sized(void* p, size_t /*alignment*/, size_t size) noexcept {
  free_from(p, "free_aligned_sized", check::Release::kFree, size, __builtin_return_address(0));
}

int trim(size_t /*pad*/) noexcept { return runtime::trim() != 0 ? 1 : 0; }

}  // namespace strata::api
