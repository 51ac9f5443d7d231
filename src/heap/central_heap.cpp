// The central heap of the shared size classes (see central_heap.h).
#include "heap/central_heap.h"

#include <atomic>
#include <new>

#include "platform/lock.h"
#include "platform/os.h"

namespace strata::central {
namespace {

// One heap for every shared class, and one lock per class: the heap touches
// only the class it is asked for, so threads working on different classes do
// not wait for each other. It is mapped when a shared class is first used.
constinit std::atomic<ThreadHeap*> g_heap{nullptr};
constinit SpinLock g_heap_creation;

struct alignas(64) Shelf {
  SpinLock lock;
  uint64_t frees = 0;  // blocks given back (each a remote free: no thread owns them)
};
constinit Shelf g_shelves[kNumClasses - kFirstSharedClass];

Shelf& shelf_of(size_t size_class) { return g_shelves[size_class - kFirstSharedClass]; }

// nullptr when out of memory.
ThreadHeap* central_heap() {
  ThreadHeap* heap = g_heap.load(std::memory_order_acquire);
  if (heap != nullptr) return heap;
  LockGuard guard(g_heap_creation);
  heap = g_heap.load(std::memory_order_relaxed);
  if (heap == nullptr) {
    void* memory = os::map(sizeof(ThreadHeap));
    if (memory == nullptr) return nullptr;
    heap = new (memory) ThreadHeap(ThreadHeap::OnZeroedMemory{});
    heap->adopt_secrets();
    g_heap.store(heap, std::memory_order_release);
  }
  return heap;
}

}  // namespace

size_t take(size_t size_class, FreeBlock** out, size_t want, bool* last_zero) noexcept {
  Shelf& shelf = shelf_of(size_class);
  ThreadHeap* heap = central_heap();
  if (heap == nullptr) return 0;
  LockGuard guard(shelf.lock);
  size_t taken = 0;
  while (taken < want) {
    FreeBlock* block = heap->take_block(size_class);
    if (block == nullptr) break;
    *last_zero = heap->next_is_zero(size_class);
    block->tag = heap->free_tag();
    out[taken++] = block;
  }
  return taken;
}

void give(size_t size_class, FreeBlock* const* blocks, size_t count) noexcept {
  // The blocks came from the central heap, so it exists.
  ThreadHeap* heap = g_heap.load(std::memory_order_acquire);
  Shelf& shelf = shelf_of(size_class);
  LockGuard guard(shelf.lock);
  shelf.frees += count;
  for (size_t i = 0; i < count; ++i) {
    FreeBlock* block = blocks[i];
    heap->free_local(slab_of(segment_of(block), block), block);
  }
}

// Read while other threads free: a slightly stale value is fine.
__attribute__((no_sanitize("thread"))) uint64_t remote_frees() {
  uint64_t sum = 0;
  for (const Shelf& shelf : g_shelves) sum += shelf.frees;
  return sum;
}

namespace {

// visit(heap, size_class) for every shared class, under its lock (none if
// no shared class was ever used).
template <typename Visit>
void for_each_class(Visit visit) {
  ThreadHeap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return;
  for (size_t size_class = kFirstSharedClass; size_class < kNumClasses; ++size_class) {
    LockGuard guard(shelf_of(size_class).lock);
    visit(heap, size_class);
  }
}

}  // namespace

void release_unused() {
  for_each_class([](ThreadHeap* heap, size_t size_class) { heap->release_class(size_class); });
}

void release_idle() {
  for_each_class([](ThreadHeap* heap, size_t size_class) { heap->release_if_idle(size_class); });
}

void fork_prepare() {
  g_heap_creation.fork_prepare();
  for (Shelf& shelf : g_shelves) shelf.lock.fork_prepare();
}

void fork_parent() {
  for (Shelf& shelf : g_shelves) shelf.lock.fork_parent();
  g_heap_creation.fork_parent();
}

void fork_child() {
  for (Shelf& shelf : g_shelves) shelf.lock.reset_after_fork();
  g_heap_creation.reset_after_fork();
}

}  // namespace strata::central
