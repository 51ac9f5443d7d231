// The allocation API's semantics: slow paths and every corner case of the
// glibc functions (see allocator.h).
#include "api/allocator.h"

#include <errno.h>
#include <stdint.h>

#include <cstring>

#include "check/report.h"
#include "large/large.h"
#include "options/options.h"
#include "platform/os.h"

namespace strata::api {
namespace {

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

// A block of class `size_class` for a request of `size` bytes.
void* allocate_small(size_t size_class, size_t size, bool zero) {
  ThreadHeap* heap = retry_after_trim([] { return runtime::thread_heap(); });
  if (heap == nullptr) return nullptr;
  runtime::maintenance();
  FreeBlock* block = heap->pop(size_class);
  if (block == nullptr) {
    block = retry_after_trim([&] { return heap->allocate_slow(size_class); });
  }
  if (block == nullptr) return nullptr;
  if (zero) {
    // A block carved from memory the kernel just gave us is zero but for
    // its link word: clearing the whole block would only fault pages in.
    if (heap->current(size_class)->free_is_zero)
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
    // Other threads' slabs are checked against the grid only: their carve
    // pointer belongs to their owner.
    ThreadHeap* owner = slab->owner;
    if (owner == nullptr || !(owner == tls_heap ? slab->is_block_start(p) : slab->is_on_grid(p))) {
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
  auto* block = static_cast<FreeBlock*>(p);
  ThreadHeap* heap = tls_heap;
  if (slab->owner == heap) {
    heap->free_local(slab, block);
  } else {
    ThreadHeap::push_remote(slab, block);
    if (heap != &g_empty_heap) heap->count_remote_free();
  }
}

}  // namespace

void* malloc_slow(size_t size) noexcept { return allocate(size, /*zero=*/false); }

void free_slow(void* p, const char* function) noexcept {
  if (p == nullptr) return;
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

void* calloc_slow(size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  return allocate(total, /*zero=*/true);
}

void* realloc(void* p, size_t size) noexcept {
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

void* reallocarray(void* p, size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  return realloc(p, total);
}

void* aligned(size_t alignment, size_t size) noexcept {
  if (alignment <= kMinAlign) return malloc(size);
  if (too_large(size)) return fail_nomem();
  runtime::ensure_ready();
  // Slabs start on a multiple of 64 KiB (and of their own size), so a class
  // whose block size is a multiple of the alignment yields aligned blocks.
  size_t need = size < alignment ? alignment : size;
  if (need <= kMaxSmallSize) {
    for (size_t cls = size_class_of(need); cls < kNumClasses; ++cls) {
      size_t block_size = kSizeClasses[cls].block_size;
      if (block_size % alignment != 0) continue;
      if (block_size < large::mmap_threshold()) return allocate_small(cls, size, false);
      break;
    }
  }
  size_t page = os::g_caps.page_size;
  return allocate_large(size, alignment < page ? page : alignment, false);
}

int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  os::ErrnoGuard keep_errno;  // posix_memalign reports through its result only
  void* p = aligned(alignment, size);
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
  return aligned(alignment, size);
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
  return find_block(p, "malloc_usable_size").size;
}

void free_sized(void* p, size_t /*size*/) noexcept { free(p); }

void free_aligned_sized(void* p, size_t /*alignment*/, size_t /*size*/) noexcept { free(p); }

int trim(size_t /*pad*/) noexcept { return runtime::trim() != 0 ? 1 : 0; }

}  // namespace strata::api
