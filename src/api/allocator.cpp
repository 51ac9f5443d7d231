// The allocation API's semantics: slow paths and every corner case of the
// glibc functions (see allocator.h). Once check mode or guarded blocks are
// on, the slow paths leave for allocator_debug.cpp.
#include "api/allocator.h"

#include <errno.h>
#include <stdint.h>

#include <cstring>

#include "api/allocator_internal.h"
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

// M_PERTURB: new blocks (not calloc) are filled with the complement of the
// byte, freed blocks with the byte itself, as glibc does.
void perturb_allocated(void* p, size_t size) {
  if (g_options.perturb != 0) std::memset(p, ~g_options.perturb & 0xff, size);
}
void perturb_freed(void* p, size_t size) {
  if (g_options.perturb != 0) std::memset(p, g_options.perturb & 0xff, size);
}

void* allocate_large(size_t size, size_t alignment, bool zero) {
  void* p = retry_after_trim([&] { return large::allocate(size, alignment, zero); });
  if (p != nullptr && !zero) perturb_allocated(p, size);
  return p;
}

// A block of class `size_class` (or a larger one, as `fit` allows) for a
// request of `size` bytes.
void* allocate_small(size_t size_class, ThreadHeap::Fit fit, size_t size, bool zero) {
  bool known_zero;
  FreeBlock* block = take_small(size_class, fit, &known_zero);
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

}  // namespace

void* allocate(size_t size, bool zero) {
  if (too_large(size)) return fail_nomem();
  runtime::ensure_ready();
  if (size <= kMaxSmallSize && size < large::mmap_threshold()) {
    return allocate_small(size_class_of(size), ThreadHeap::Fit::kOrLarger, size, zero);
  }
  return allocate_large(size, 0, zero);
}

namespace {

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

// p lies in a segment: its slab if p is a live block of it, else nullptr
// (reported).
Slab* find_small(const void* p, const char* function) {
  Slab* slab = slab_of(segment_of(p), p);
  if (slab->owner == nullptr || !slab->is_block_start(p)) {
    report::invalid_pointer(function, p);
    return nullptr;
  }
  if (static_cast<const FreeBlock*>(p)->tag == free_tag()) {
    report::double_free(function, p, slab->block_size);
    return nullptr;
  }
  return slab;
}

BlockRef find_block(const void* p, const char* function) {
  if (g_segment_map.contains(p)) {
    Slab* slab = find_small(p, function);
    return {slab, slab != nullptr ? slab->block_size : 0};
  }
  size_t size = large::usable_size(p);
  if (size == 0) report_unknown_large(function, p);
  return {nullptr, size};
}

}  // namespace

void release_small(Slab* slab, void* p) {
  perturb_freed(p, slab->block_size);
  free_live(tls_heap, p, slab);
}

namespace {

// Check mode without guards: the exported functions' slow paths go straight
// to the check-mode functions (allocator_debug.cpp). The modes are latched
// at start-up, so they are read after it (a thread's first call may race
// with another thread's start-up).
inline bool checking_only() {
  runtime::ensure_ready();
  return check::enabled() && !guard::enabled();
}

// Check mode and guards are decided at start-up: the first call of the
// process must not be served before that.
bool debugging() {
  runtime::ensure_ready();
  return check::enabled() || guard::enabled();
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
  // Without the slab map (RLIMIT_AS), every free comes here: with no
  // debugging feature on (the fast paths are open), a live block found
  // through the segment map goes into the bin as on the fast path.
  // Without the slab map, glibc-simple took 2.5 times as long as with it
  // when these frees went through the whole slow path; now about as long
  // (bench/fastpath: 87 instructions per pair against 52).
  if (__atomic_load_n(&g_fast.small_limit, __ATOMIC_RELAXED) != 0 && g_segment_map.contains(p)) {
    ThreadHeap* heap = tls_heap;
    Slab* slab = slab_of(segment_of(p), p);
    if (is_live_block(slab, p, heap)) return free_live(heap, p, slab);
  }
  if (debugging()) {
    if (checking_only()) return checked_free(p, function, check::Release::kFree, 0, STRATA_SITE);
    return free_from_any(p, function, check::Release::kFree, 0, STRATA_SITE);
  }
  free_plain(p, function);
}

void free_plain(void* p, const char* function) {
  os::ErrnoGuard keep_errno;  // free never changes errno, even when unmapping
  runtime::ensure_ready();
  if (g_segment_map.contains(p)) {
    if (Slab* slab = find_small(p, function)) release_small(slab, p);
    runtime::maintenance();
    return;
  }
  if (g_options.perturb != 0) {
    size_t size = large::usable_size(p);
    if (size != 0) perturb_freed(p, size);
  }
  if (large::deallocate(p) == 0) report_unknown_large(function, p);
}

void* calloc_slow(size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  if (debugging()) return allocate_from(total, 0, true, check::Origin::kMalloc, STRATA_SITE);
  return allocate(total, /*zero=*/true);
}

void* realloc_move(void* p, size_t size, Slab* slab) noexcept {
  size_t have = slab->block_size;
  void* moved = malloc(size);
  if (moved == nullptr) return nullptr;  // the old block is untouched
  std::memcpy(moved, p, size < have ? size : have);
  // tls_heap again: malloc may just have given this thread its heap.
  free_live(tls_heap, p, slab);
  return moved;
}

void* realloc_slow(void* p, size_t size) noexcept {
  if (debugging()) return realloc_any(p, size, STRATA_SITE);
  return realloc_plain(p, size);
}

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
    if (realloc_keeps(size, ref.size)) return p;
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

void* aligned_plain(size_t alignment, size_t size) {
  if (alignment <= kMinAlign) return allocate(size, false);
  if (too_large(size)) return fail_nomem();
  runtime::ensure_ready();
  size_t need = size < alignment ? alignment : size;
  if (need <= kMaxSmallSize) {
    size_t cls = size_class_aligned(need, alignment);
    if (kSizeClasses[cls].block_size < large::mmap_threshold())
      return allocate_small(cls, ThreadHeap::Fit::kExact, size, false);
  }
  size_t page = os::g_caps.page_size;
  return allocate_large(size, alignment < page ? page : alignment, false);
}

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

size_t usable_size_slow(const void* p) noexcept {
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
