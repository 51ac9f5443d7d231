// Stack capture and the stack depot (see stack.h).
#include "check/stack.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "platform/os.h"

extern "C" void* __libc_stack_end;  // the main thread's stack top (glibc)

namespace strata::stack {
namespace {

// The depot: open addressing on the stack's hash. A slot's key goes
// 0 -> kBusy (claimed) -> hash (published); nothing is ever removed, so
// readers need no lock and fork needs no handler.
constexpr size_t kSlots = 16384;
constexpr size_t kProbes = 32;
constexpr uint64_t kBusy = 1;

struct Slot {
  std::atomic<uint64_t> key;
  Trace trace;
};

constinit std::atomic<Slot*> g_depot{nullptr};

Slot* depot() {
  Slot* slots = g_depot.load(std::memory_order_acquire);
  if (slots != nullptr) return slots;
  auto* fresh = static_cast<Slot*>(os::map(kSlots * sizeof(Slot)));
  if (fresh == nullptr) return nullptr;
  if (!g_depot.compare_exchange_strong(slots, fresh, std::memory_order_acq_rel)) {
    os::release(fresh, kSlots * sizeof(Slot));
    return slots;
  }
  return fresh;
}

// The hash of a stack, one frame at a time (capture hashes as it walks, and
// builds the trace itself only for a stack its cache does not know).
constexpr uint64_t kHashSeed = 0x9e3779b97f4a7c15ull;
inline uint64_t hash_step(uint64_t h, uintptr_t frame) {
  h ^= frame;
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 33);
}
inline uint64_t hash_end(uint64_t h, uint32_t depth) {
  h ^= depth;
  return h < 2 ? h + 2 : h;  // 0 and kBusy are not keys
}

bool same(const Trace& a, const Trace& b) {
  if (a.depth != b.depth) return false;
  for (uint32_t i = 0; i < a.depth; ++i) {
    if (a.frames[i] != b.frames[i]) return false;
  }
  return true;
}

// Upper end of the calling thread's stack, 0 when unknown. The main thread's
// is __libc_stack_end; a glibc thread's descriptor sits just above its stack.
thread_local uintptr_t tls_stack_top = 0;

uintptr_t stack_top(uintptr_t fp) {
  if (tls_stack_top != 0 && fp < tls_stack_top) return tls_stack_top;
  uintptr_t top = 0;
  if (syscall(SYS_gettid) == getpid()) {
    top = reinterpret_cast<uintptr_t>(__libc_stack_end);
  } else {
    top = reinterpret_cast<uintptr_t>(pthread_self());
  }
  constexpr uintptr_t kMaxStack = uintptr_t{1} << 30;
  if (top <= fp || top - fp > kMaxStack) return 0;
  tls_stack_top = top;
  return top;
}

// Each thread remembers the ids of the stacks it captured last, by hash, so
// that a stack seen again (the common case: a few call sites allocate most
// blocks) costs no probe of the depot, whose slots are cold. The 64-bit hash
// stands for the stack here; the depot compares the frames themselves.
constexpr size_t kCacheEntries = 16;  // 256 bytes of static TLS
struct CacheEntry {
  uint64_t hash;
  uint32_t id;
};
thread_local CacheEntry tls_cache[kCacheEntries];

}  // namespace

namespace {

// Follows the frame records from `fp` (this function's or the program's
// frame; `from` is the frame it was found in) below `top`, calling
// visit(return address) for each, at most kMaxFrames - 1 of them. Each
// record is [saved frame pointer, return address]; records lie above the
// walker's frame and above one another, below the stack top.
template <typename Visit>
inline void walk(uintptr_t from, uintptr_t fp, uintptr_t top, Visit visit) {
  uintptr_t prev = from;
  for (size_t depth = 1; depth < kMaxFrames && fp > prev && fp % sizeof(uintptr_t) == 0 &&
                         fp < top && top - fp >= 2 * sizeof(uintptr_t);
       ++depth) {
    auto* record = reinterpret_cast<const uintptr_t*>(fp);
    uintptr_t ret = record[1];
    if (ret < 4096) break;
    visit(ret);
    prev = fp;
    fp = record[0];
  }
}

// A stack the thread's cache does not know: the depot's id for it, storing
// it if it is new. `trace` holds its frames, `hash` their hash.
[[gnu::noinline]] uint32_t store(const Trace& trace, uint64_t hash) {
  CacheEntry& cached = tls_cache[hash % kCacheEntries];
  Slot* slots = depot();
  if (slots == nullptr) return 0;
  for (size_t probe = 0; probe < kProbes; ++probe) {
    size_t index = (hash + probe) % kSlots;
    Slot& slot = slots[index];
    uint64_t key = slot.key.load(std::memory_order_acquire);
    if (key == hash && same(slot.trace, trace)) {
      cached = {hash, static_cast<uint32_t>(index + 1)};
      return cached.id;
    }
    if (key == 0 && slot.key.compare_exchange_strong(key, kBusy, std::memory_order_acquire)) {
      slot.trace = trace;
      slot.key.store(hash, std::memory_order_release);
      cached = {hash, static_cast<uint32_t>(index + 1)};
      return cached.id;
    }
  }
  return 0;
}

// capture's second walk, for a stack the cache does not know: the frames
// themselves, then the depot.
[[gnu::noinline]] uint32_t record(const void* caller, uintptr_t self, uintptr_t start,
                                  uintptr_t top, uint64_t hash) {
  Trace trace;
  trace.depth = 1;
  trace.frames[0] = reinterpret_cast<uintptr_t>(caller);
  walk(self, start, top, [&](uintptr_t ret) { trace.frames[trace.depth++] = ret; });
  return store(trace, hash);
}

}  // namespace

// The walk is done twice for a stack the cache does not know (once to hash
// it, once to record it), so that a known one costs no stores.
__attribute__((noinline)) uint32_t capture(const void* caller, const void* frame) {
  auto self = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  uintptr_t top = stack_top(self);
  uintptr_t start = 0;
  if (top != 0) {
    start = frame != nullptr ? reinterpret_cast<uintptr_t>(frame)
                             : *reinterpret_cast<const uintptr_t*>(self);
  }
  uint64_t hash = hash_step(kHashSeed, reinterpret_cast<uintptr_t>(caller));
  uint32_t depth = 1;
  walk(self, start, top, [&](uintptr_t ret) {
    hash = hash_step(hash, ret);
    ++depth;
  });
  hash = hash_end(hash, depth);
  const CacheEntry& cached = tls_cache[hash % kCacheEntries];
  if (cached.hash == hash) return cached.id;
  return record(caller, self, start, top, hash);
}

bool lookup(uint32_t id, Trace* out) {
  *out = Trace{};
  Slot* slots = g_depot.load(std::memory_order_acquire);
  if (id == 0 || id > kSlots || slots == nullptr) return false;
  Slot& slot = slots[id - 1];
  if (slot.key.load(std::memory_order_acquire) <= kBusy) return false;
  *out = slot.trace;
  return true;
}

}  // namespace strata::stack
