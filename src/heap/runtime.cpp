// The runtime: start-up, heap pool, thread exit, fork, upkeep (see runtime.h).
#include "heap/runtime.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

#include <new>

#include "check/checked.h"
#include "check/guard.h"
#include "heap/central_heap.h"
#include "large/large.h"
#include "options/options.h"
#include "platform/lock.h"
#include "platform/os.h"
#include "slab/slab_pool.h"

namespace strata {

constinit FastPathState g_fast;
constinit Secrets g_secrets = {0, 0};
constinit thread_local ThreadHeap* tls_heap = &g_empty_heap;

namespace runtime {
namespace {

enum State : int { kUninitialized, kInitializing, kReady };
constinit std::atomic<int> g_state{kUninitialized};
constinit pthread_key_t g_thread_key = 0;

// Heaps are never unmapped: a parked heap keeps its slabs for the next thread.
constinit SpinLock g_heaps_lock;
constinit ThreadHeap* g_all_heaps = nullptr;
constinit ThreadHeap* g_parked_heaps = nullptr;
constinit char* g_heap_arena = nullptr;  // bump region for new heaps
constinit size_t g_heap_arena_left = 0;
// Some parked heap may still hold idle slabs (see park()).
constinit std::atomic<bool> g_parked_idle{false};

// Upkeep runs at most once per this many slow-path calls of a thread.
constexpr unsigned kMaintenanceInterval = 256;
thread_local unsigned tls_slow_calls = 0;

ThreadHeap* new_heap_locked() {
  constexpr size_t kArenaChunk = 256 * 1024;
  size_t need = (sizeof(ThreadHeap) + 63) & ~size_t{63};
  if (g_heap_arena_left < need) {
    auto* chunk = static_cast<char*>(os::map(kArenaChunk));
    if (chunk == nullptr) return nullptr;
    g_heap_arena = chunk;
    g_heap_arena_left = kArenaChunk;
  }
  auto* heap = new (g_heap_arena) ThreadHeap(ThreadHeap::OnZeroedMemory{});
  heap->adopt_secrets();
  g_heap_arena += need;
  g_heap_arena_left -= need;
  heap->next_all = g_all_heaps;
  g_all_heaps = heap;
  return heap;
}

// A parked heap keeps its empty current and spare slabs: the next thread
// that takes it usually allocates the same classes, and a slab that stays
// with its class keeps its resident pages to what that class touched. Handed
// to the pool instead, it came back for another class with every page its
// previous classes had touched (thread-churn-2t peak RSS: 8.2 MiB, 6.5
// after). Heaps left parked for a purge delay give those slabs back.
void park(ThreadHeap* heap) {
  heap->release_for_park();
  uint64_t now = os::now_ms();
  LockGuard guard(g_heaps_lock);
  heap->in_use = false;
  heap->parked_ms = now;
  heap->holds_idle_slabs = true;
  heap->next_parked = g_parked_heaps;
  g_parked_heaps = heap;
  g_parked_idle.store(true, std::memory_order_relaxed);
}

// Gives the idle slabs of heaps parked for at least a purge delay back to
// the pool (which purges them in turn once they age there).
void release_parked_idle(uint64_t now) {
  if (!g_parked_idle.load(std::memory_order_relaxed)) return;
  LockGuard guard(g_heaps_lock);
  bool left = false;
  for (ThreadHeap* heap = g_parked_heaps; heap != nullptr; heap = heap->next_parked) {
    if (!heap->holds_idle_slabs) continue;
    if (now - heap->parked_ms < g_options.purge_delay_ms) {
      left = true;
      continue;
    }
    heap->release_unused();
    heap->holds_idle_slabs = false;
  }
  g_parked_idle.store(left, std::memory_order_relaxed);
}

// pthread key destructor: the thread is exiting. Later destructors of other
// keys may still allocate; they get a fresh heap and register again.
void on_thread_exit(void* value) {
  auto* heap = static_cast<ThreadHeap*>(value);
  if (heap == nullptr) return;
  tls_heap = &g_empty_heap;
  park(heap);
}

// The purge thread: without it, memory freed just before a process goes idle
// stays resident (within the dirty budget) until the next allocator call.
// It is started only in processes that already run several threads: a
// single-threaded program keeps the guarantees it may rely on (unshare,
// seccomp filters, a lone thread after fork), and keeps at most the budget.
constinit std::atomic<bool> g_purge_thread_started{false};

void upkeep(uint64_t now) {
  release_parked_idle(now);
  slab_pool::tick(now);
  large::release_cached(/*only_aged=*/true, now);
}

void* purge_thread_main(void*) {
  for (;;) {
    // Options may change under us (strata_option_set); any value read is fine.
    uint32_t delay = __atomic_load_n(&g_options.purge_delay_ms, __ATOMIC_RELAXED);
    if (delay == 0) delay = 1000;
    struct timespec pause = {static_cast<time_t>(delay / 1000),
                             static_cast<long>(delay % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0) {
    }
    upkeep(os::now_ms());
  }
  return nullptr;
}

void maybe_start_purge_thread() {
  if (!g_options.purge_thread || __libc_single_threaded) return;
  if (g_purge_thread_started.load(std::memory_order_relaxed) ||
      g_purge_thread_started.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  // The thread must never run a signal handler of the program's.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pthread_t thread;
  if (pthread_create(&thread, &attr, purge_thread_main, nullptr) == 0) {
    pthread_setname_np(thread, "strata-purge");
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  pthread_attr_destroy(&attr);
}

void update_fast_path() {
  // Check mode and the guarded region are decided once, at start-up.
  check::latch();
  guard::latch();
  bool features = g_options.perturb != 0 || check::enabled() || guard::guards_everything();
  size_t limit = kMaxSmallSize + 1;
  size_t threshold = large::mmap_threshold();
  if (threshold < limit) limit = threshold;
  __atomic_store_n(&g_fast.free_index_limit,
                   features || !g_slab_map.ready() ? 0 : SlabMap::kIndexLimit, __ATOMIC_RELEASE);
  __atomic_store_n(&g_fast.small_limit, features ? 0 : limit, __ATOMIC_RELEASE);
}

// fork: hold every lock across the fork so the child sees consistent state;
// in the child, the heaps of threads that did not survive are parked.
void fork_prepare() {
  g_heaps_lock.fork_prepare();
  central::fork_prepare();
  slab_pool::fork_prepare();
  large::fork_prepare();
}

void fork_parent() {
  large::fork_parent();
  slab_pool::fork_parent();
  central::fork_parent();
  g_heaps_lock.fork_parent();
}

void fork_child() {
  g_purge_thread_started.store(false, std::memory_order_relaxed);  // not in the child
  large::fork_child();
  slab_pool::fork_child();
  central::fork_child();
  g_heaps_lock.reset_after_fork();
  for (ThreadHeap* heap = g_all_heaps; heap != nullptr; heap = heap->next_all) {
    if (heap->in_use && heap != tls_heap) {
      heap->in_use = false;
      heap->next_parked = g_parked_heaps;
      g_parked_heaps = heap;
    }
  }
}

void initialize() {
  int expected = kUninitialized;
  if (!g_state.compare_exchange_strong(expected, kInitializing, std::memory_order_acquire)) {
    while (g_state.load(std::memory_order_acquire) != kReady) sched_yield();
    return;
  }
  os::init(environ);
  options_init(environ);
  os::random_bytes(&g_secrets, sizeof g_secrets);
  g_secrets.list_key |= 1;  // an encoded nullptr is never zero
  // Frees by threads without a heap check free tags with this heap's copy.
  g_empty_heap.adopt_secrets();
  large::init();
  g_segment_map.prepare();  // if this fails, the first segment tries again
  g_slab_map.prepare();     // if this fails, free always takes the slow path
  pthread_key_create(&g_thread_key, on_thread_exit);
  update_fast_path();
  g_state.store(kReady, std::memory_order_release);
  // at_fork may allocate, so it comes after the allocator is ready.
  os::at_fork(fork_prepare, fork_parent, fork_child);
}

}  // namespace

void ensure_ready() {
  if (__builtin_expect(g_state.load(std::memory_order_acquire) != kReady, 0)) initialize();
}

ThreadHeap* thread_heap() {
  ThreadHeap* heap = tls_heap;
  if (heap != &g_empty_heap) return heap;
  ensure_ready();
  {
    LockGuard guard(g_heaps_lock);
    heap = g_parked_heaps;
    if (heap != nullptr) {
      g_parked_heaps = heap->next_parked;
      heap->holds_idle_slabs = false;
    } else {
      heap = new_heap_locked();
    }
    if (heap == nullptr) return nullptr;
    heap->in_use = true;
  }
  heap->start_sampling(guard::sample_rate(), guard::kMaxSize);
  heap->start_bins(g_options.tcache_count != 0 && g_options.tcache_max != 0);
  tls_heap = heap;
  pthread_setspecific(g_thread_key, heap);
  return heap;
}

void options_changed() {
  large::init();
  update_fast_path();
}

void maintenance() {
  if (++tls_slow_calls % kMaintenanceInterval != 0) return;
  upkeep(os::now_ms());
  maybe_start_purge_thread();
}

size_t trim() {
  ensure_ready();
  ThreadHeap* self = tls_heap;
  if (self != &g_empty_heap) self->release_unused();
  central::release_unused();
  // Parked heaps have no thread to do this for them.
  {
    LockGuard guard(g_heaps_lock);
    for (ThreadHeap* heap = g_parked_heaps; heap != nullptr; heap = heap->next_parked) {
      heap->release_unused();
      heap->holds_idle_slabs = false;
    }
  }
  size_t released = slab_pool::purge_all();
  released += large::release_cached(/*only_aged=*/false, 0);
  return released;
}

void for_each_heap(void (*visit)(const ThreadHeap*, void*), void* context) {
  LockGuard guard(g_heaps_lock);
  for (ThreadHeap* heap = g_all_heaps; heap != nullptr; heap = heap->next_all) visit(heap, context);
}

}  // namespace runtime
}  // namespace strata

// DT_FINI of libstrata.so (see "Code layout" in src/CMakeLists.txt). The C
// runtime's _fini does nothing, but it lies after all of the code, so calling
// it at exit would map the last 64 KiB window of the code in every process.
// Destructors run from .fini_array either way.
extern "C" __attribute__((visibility("hidden"))) void strata_fini() {}
