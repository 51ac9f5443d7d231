// Check mode: block headers, canaries, quarantine, heap verification and the
// leak report at exit (see checked.h).
#include "check/checked.h"

#include <pthread.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <atomic>
#include <cstddef>
#include <cstring>

#include "check/report.h"
#include "check/stack.h"
#include "options/options.h"
#include "platform/code_layout.h"
#include "platform/lock.h"
#include "platform/os.h"

namespace strata::check {

constinit bool g_enabled = false;

namespace {

enum State : uint8_t { kLiveState = 0x4c, kQuarantinedState = 0x51 };

constexpr uint8_t kTailByte = 0xcb;
constexpr uint8_t kDefaultFillByte = 0xbe;
constexpr uint8_t kDefaultPoisonByte = 0xf5;
constexpr size_t kDefaultQuarantine = 4 * 1024 * 1024;
constexpr uint32_t kNoIndex = UINT32_MAX;
// Longest tail canary of a block not checked whole: an overflow that runs on
// from the end of the user bytes hits its first byte; only a write that skips
// more than this past the end lands in unchecked slack.
constexpr size_t kTailMax = 64;
static_assert(kTailMax >= kTailMin);
// At most this many bytes of a quarantined block are prefetched before it
// is verified.
constexpr size_t kFetchMax = 320;

struct Header {
  Header* next;  // quarantine FIFO
  // Bytes of the raw block (the quarantine's accounting), UINT32_MAX for
  // 4 GiB and more: such a block leaves the quarantine at once unless its
  // budget is above 4 GiB, and then counts as 4 GiB in it.
  uint32_t raw;
  uint32_t alloc_stack;
  uint32_t free_stack;
  uint8_t state;        // read and changed atomically
  uint8_t poison;       // the byte the block was filled with when freed
  uint8_t tail_poison;  // freed: the tail holds the poison too (see on_free)
  uint8_t unused;
  union {
    uint32_t live;  // live: slot in the live table, or kNoIndex
    // Quarantined: the block kAhead places later in its thread's order of
    // frees (nullptr if none yet), a hint for evict() to prefetch.
    Header* ahead;
  };
  // The fields the canary covers, read by it as three words.
  uint64_t size;
  uint32_t offset;  // user pointer - raw block
  uint32_t tail;    // canary bytes after the user bytes
  uint8_t origin;
  uint8_t whole;  // filled and poisoned whole, whatever check_bytes says
  uint8_t zero[6];
  uint64_t canary;  // last: the first word an underflow reaches
};
static_assert(sizeof(Header) == kHeaderSize);
static_assert(offsetof(Header, tail) == offsetof(Header, offset) + 4);
static_assert(offsetof(Header, origin) == offsetof(Header, offset) + 8);
static_assert(offsetof(Header, canary) == kHeaderSize - 8);

constinit bool g_latched = false;
constinit uint64_t g_secret = 0;
// check_bytes, latched: how many bytes at the start of a block are filled,
// poisoned and verified, and at most how long the tail canary is.
constinit size_t g_limit = SIZE_MAX;

// --- Thread exit ------------------------------------------------------------
//
// A thread that allocated or freed in check mode holds table slots and a
// quarantine batch; on_thread_exit (below) hands both back.
constinit pthread_key_t g_exit_key;
constinit std::atomic<bool> g_setup_done{false};  // g_exit_key exists
thread_local bool tls_exit_registered = false;

// Makes on_thread_exit run when this thread exits. Not under a lock:
// pthread_setspecific may allocate (which then finds the flag set).
[[gnu::always_inline]] inline void register_exit() {
  if (!tls_exit_registered && g_setup_done.load(std::memory_order_acquire)) {
    tls_exit_registered = true;
    pthread_setspecific(g_exit_key, &tls_exit_registered);
  }
}

// --- The live table -------------------------------------------------------
//
// One slot per live block, holding its header's address, so that
// strata_check_heap and the leak report can find every live block without
// lists to link and unlink (which touched two other blocks' headers per
// call, under a lock). A free slot holds (next free slot << 1) | 1. Each
// thread keeps a chain of free slots of its own; chains of kIndexBatch
// slots move to and from a global chain under a lock, and fresh slots are
// handed out kIndexBatch at a time. The table is made of chunks mapped as
// it grows; slots are never unmapped.
constexpr size_t kChunkBits = 16;
constexpr size_t kChunkSlots = size_t{1} << kChunkBits;
constexpr size_t kMaxChunks = 4096;  // 2^28 live blocks
constexpr uint32_t kIndexBatch = 64;

constinit std::atomic<std::atomic<uintptr_t>*> g_chunks[kMaxChunks] = {};
constinit SpinLock g_index_lock;
constinit uint32_t g_free_head = kNoIndex;        // the global chain (under the lock)
constinit uint32_t g_fresh = 0;                   // first slot never handed out (under the lock)
constinit std::atomic<uint32_t> g_slots_used{0};  // slots below this may be in use

thread_local uint32_t tls_free_head = kNoIndex;
thread_local uint32_t tls_free_count = 0;
thread_local uint32_t tls_fresh_next = 0;  // a run of fresh slots
thread_local uint32_t tls_fresh_end = 0;

std::atomic<uintptr_t>& slot(uint32_t index) {
  return g_chunks[index >> kChunkBits].load(std::memory_order_relaxed)[index & (kChunkSlots - 1)];
}
uint32_t next_free(uint32_t index) {
  return static_cast<uint32_t>(slot(index).load(std::memory_order_relaxed) >> 1);
}
void set_free(uint32_t index, uint32_t next) {
  slot(index).store(uintptr_t{next} << 1 | 1, std::memory_order_relaxed);
}

// Refills this thread's free slots (from the global chain, else fresh ones).
bool refill_slots() {
  LockGuard guard(g_index_lock);
  if (g_free_head != kNoIndex) {
    uint32_t head = g_free_head, last = head, count = 1;
    while (count < kIndexBatch && next_free(last) != kNoIndex) {
      last = next_free(last);
      ++count;
    }
    g_free_head = next_free(last);
    set_free(last, kNoIndex);
    tls_free_head = head;
    tls_free_count = count;
    return true;
  }
  if (g_fresh > kMaxChunks * kChunkSlots - kIndexBatch) return false;
  size_t chunk = g_fresh >> kChunkBits;
  if (g_chunks[chunk].load(std::memory_order_relaxed) == nullptr) {
    void* fresh = os::map(kChunkSlots * sizeof(std::atomic<uintptr_t>));
    if (fresh == nullptr) return false;
    g_chunks[chunk].store(static_cast<std::atomic<uintptr_t>*>(fresh), std::memory_order_release);
  }
  tls_fresh_next = g_fresh;
  tls_fresh_end = g_fresh + kIndexBatch;  // kChunkSlots is a multiple of kIndexBatch
  g_fresh += kIndexBatch;
  g_slots_used.store(g_fresh, std::memory_order_release);
  return true;
}

[[gnu::always_inline]] inline uint32_t take_slot() {
  if (tls_free_head == kNoIndex && tls_fresh_next == tls_fresh_end) {
    if (!refill_slots()) return kNoIndex;
    register_exit();
  }
  if (tls_free_head != kNoIndex) {
    uint32_t index = tls_free_head;
    tls_free_head = next_free(index);
    --tls_free_count;
    return index;
  }
  return tls_fresh_next++;
}

// Frees a slot (its block is no longer live); a thread with too many free
// slots gives kIndexBatch of them to the global chain.
[[gnu::always_inline]] inline void give_slot(uint32_t index) {
  set_free(index, tls_free_head);
  tls_free_head = index;
  if (++tls_free_count < 2 * kIndexBatch) return;
  uint32_t last = tls_free_head;
  for (uint32_t i = 1; i < kIndexBatch; ++i) last = next_free(last);
  uint32_t head = tls_free_head;
  tls_free_head = next_free(last);
  tls_free_count -= kIndexBatch;
  LockGuard guard(g_index_lock);
  set_free(last, g_free_head);
  g_free_head = head;
}

// A thread's free slots, and what is left of its fresh run, go to the global
// chain when the thread exits; otherwise every thread that ever allocated in
// check mode would keep up to 2 * kIndexBatch slots out of use for good.
void return_slots() {
  while (tls_fresh_next != tls_fresh_end) {
    set_free(tls_fresh_next, tls_free_head);
    tls_free_head = tls_fresh_next++;
  }
  if (tls_free_head == kNoIndex) return;
  uint32_t last = tls_free_head;
  while (next_free(last) != kNoIndex) last = next_free(last);
  LockGuard guard(g_index_lock);
  set_free(last, g_free_head);
  g_free_head = tls_free_head;
  tls_free_head = kNoIndex;
  tls_free_count = 0;
}

// Calls visit(header) for every live block of the table.
template <typename Visit>
void for_each_live(Visit visit) {
  uint32_t used = g_slots_used.load(std::memory_order_acquire);
  for (uint32_t index = 0; index < used; ++index) {
    if (index % kChunkSlots == 0 &&
        g_chunks[index >> kChunkBits].load(std::memory_order_acquire) == nullptr) {
      break;
    }
    uintptr_t value = slot(index).load(std::memory_order_acquire);
    if (value != 0 && (value & 1) == 0) visit(reinterpret_cast<const Header*>(value));
  }
}

// --- The quarantine -------------------------------------------------------
//
// A FIFO under a lock. Freed blocks gather in a per-thread batch that joins
// it in one step when it reaches g_batch_bytes (a thirty-second of the
// budget), so that threads freeing at once rarely take the lock. A thread's
// batch joins the quarantine when the thread exits.
constinit SpinLock g_quarantine_lock;
constinit Header* g_quarantine_head = nullptr;
constinit Header* g_quarantine_tail = nullptr;
constinit std::atomic<size_t> g_quarantine_bytes{0};
constinit size_t g_budget = kDefaultQuarantine;
constinit size_t g_batch_bytes = kDefaultQuarantine / 32;

// The thread's last kAhead quarantined blocks still in its batch, by their
// order of free (Header::ahead).
constexpr uint32_t kAhead = 8;
thread_local Header* tls_behind[kAhead] = {};
thread_local uint32_t tls_behind_at = 0;
thread_local Header* tls_batch_head = nullptr;
thread_local Header* tls_batch_tail = nullptr;
thread_local size_t tls_batch_bytes = 0;

void flush_batch() {
  if (tls_batch_head == nullptr) return;
  LockGuard guard(g_quarantine_lock);
  if (g_quarantine_tail != nullptr)
    g_quarantine_tail->next = tls_batch_head;
  else
    g_quarantine_head = tls_batch_head;
  g_quarantine_tail = tls_batch_tail;
  g_quarantine_bytes.store(g_quarantine_bytes.load(std::memory_order_relaxed) + tls_batch_bytes,
                           std::memory_order_relaxed);
  tls_batch_head = tls_batch_tail = nullptr;
  tls_batch_bytes = 0;
  // Blocks that left this thread may leave the quarantine and be handed out
  // again: no later free may write to their headers.
  for (Header*& behind : tls_behind) behind = nullptr;
}

void on_thread_exit(void*) {
  flush_batch();
  return_slots();
  // A later destructor may still allocate or free: that registers the
  // thread again, and the key's destructor runs once more.
  tls_exit_registered = false;
}

constinit std::atomic<bool> g_atfork_registered{false};

Header* header_of(const void* p) {
  return reinterpret_cast<Header*>(reinterpret_cast<uintptr_t>(p) - kHeaderSize);
}
void* user_of(Header* h) { return reinterpret_cast<char*>(h) + kHeaderSize; }

// The header's canary: its address, the secret, the size, the offset and
// tail (one word), the origin and `whole` (one word, the rest of it zero).
// Every byte has its high bit set, so an underflow that writes ASCII text,
// zeros or small numbers changes every canary byte it reaches (a random byte
// would equal the written one one time in 256: the underflow then went
// unseen, or was reported one byte short).
[[gnu::always_inline]] inline uint64_t canary_of(const Header* h) {
  const char* at = reinterpret_cast<const char*>(h);
  uint64_t layout, kind;
  std::memcpy(&layout, at + offsetof(Header, offset), sizeof layout);
  std::memcpy(&kind, at + offsetof(Header, origin), sizeof kind);
  uint64_t x = reinterpret_cast<uintptr_t>(h) ^ g_secret;
  x ^= h->size * 0x9e3779b97f4a7c15ull;
  x ^= layout * 0xc2b2ae3d27d4eb4full;
  x ^= kind << 48;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 32;
  return x | 0x8080808080808080ull;
}

report::BlockDescription describe(const Header* h) {
  report::BlockDescription d;
  d.address = reinterpret_cast<const char*>(h) + kHeaderSize;
  d.size = h->size;
  d.allocated_by = origin_name(static_cast<Origin>(h->origin));
  d.alloc_stack = h->alloc_stack;
  d.free_stack = h->free_stack;
  return d;
}

// User bytes filled when allocated and poisoned when freed.
size_t checked_span(const Header* h) { return h->whole || h->size <= g_limit ? h->size : g_limit; }

// Whether the processor and the kernel support AVX2 (latched).
constinit bool g_avx2 = false;

#if defined(__x86_64__)
bool detect_avx2() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX)) return false;
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6) != 6) return false;  // the kernel saves the YMM registers
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return (b & bit_AVX2) != 0;
}

// all_bytes for n >= 32 with 32-byte loads: 128 bytes per test while that
// many remain, then 64, and the last 1-63 with two loads that may overlap
// bytes already seen.
[[gnu::target("avx2"), gnu::noinline]] bool all_bytes_avx2(const uint8_t* p, size_t n,
                                                           uint8_t byte) {
  __m256i pattern = _mm256_set1_epi8(static_cast<char>(byte));
  __m256i diff = _mm256_setzero_si256();
#define STRATA_AT(offset) \
  _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + (offset))), pattern)
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    diff = _mm256_or_si256(diff,
                           _mm256_or_si256(_mm256_or_si256(STRATA_AT(i), STRATA_AT(i + 32)),
                                           _mm256_or_si256(STRATA_AT(i + 64), STRATA_AT(i + 96))));
    if (!_mm256_testz_si256(diff, diff)) return false;
  }
  if (i + 64 <= n) {
    diff = _mm256_or_si256(diff, _mm256_or_si256(STRATA_AT(i), STRATA_AT(i + 32)));
    i += 64;
  }
  if (i < n) {
    size_t last = n - 32;
    diff = _mm256_or_si256(diff, _mm256_or_si256(STRATA_AT(i < last ? i : last),
                                                 STRATA_AT(i + 32 < last ? i + 32 : last)));
  }
#undef STRATA_AT
  return _mm256_testz_si256(diff, diff) != 0;
}
#else
bool detect_avx2() { return false; }
bool all_bytes_avx2(const uint8_t*, size_t, uint8_t) { return false; }
#endif

// Whether the `n` bytes at `p` are all `byte`: 128 bytes per test while
// that many remain, then 64, and the last 1-63 with four 16-byte loads
// that may overlap bytes already seen.
[[gnu::always_inline]] inline bool all_bytes(const uint8_t* p, size_t n, uint8_t byte) {
  typedef uint64_t Vec __attribute__((vector_size(16)));
  uint64_t word = 0x0101010101010101ull * byte;
  if (n < 16) {
    if (n >= 8) {
      uint64_t first, last;
      std::memcpy(&first, p, sizeof first);
      std::memcpy(&last, p + n - 8, sizeof last);
      return ((first ^ word) | (last ^ word)) == 0;
    }
    for (size_t i = 0; i < n; ++i) {
      if (p[i] != byte) return false;
    }
    return true;
  }
  // Below 128 bytes the call costs what the wider loads save.
  if (n >= 128 && g_avx2) return all_bytes_avx2(p, n, byte);
  Vec pattern = {word, word};
  Vec diff = {0, 0};
  size_t i = 0;
  auto at = [p](size_t offset) {
    Vec v;
    std::memcpy(&v, p + offset, sizeof v);
    return v;
  };
  for (; i + 128 <= n; i += 128) {
    diff |= ((at(i) ^ pattern) | (at(i + 16) ^ pattern)) |
            ((at(i + 32) ^ pattern) | (at(i + 48) ^ pattern));
    diff |= ((at(i + 64) ^ pattern) | (at(i + 80) ^ pattern)) |
            ((at(i + 96) ^ pattern) | (at(i + 112) ^ pattern));
    if ((diff[0] | diff[1]) != 0) return false;
  }
  if (i + 64 <= n) {
    diff |= ((at(i) ^ pattern) | (at(i + 16) ^ pattern)) |
            ((at(i + 32) ^ pattern) | (at(i + 48) ^ pattern));
    i += 64;
  }
  if (i < n) {
    size_t last = n - 16;
    size_t second = i + 16 < last ? i + 16 : last;
    size_t third = i + 32 < last ? i + 32 : last;
    diff |= ((at(i < last ? i : last) ^ pattern) | (at(second) ^ pattern)) |
            ((at(third) ^ pattern) | (at(last) ^ pattern));
  }
  return (diff[0] | diff[1]) == 0;
}

// Offset of the first of the `n` bytes at `p` that is not `byte`, or n.
[[gnu::always_inline]] inline size_t first_other(const uint8_t* p, size_t n, uint8_t byte) {
  if (all_bytes(p, n, byte)) return n;
  size_t i = 0;
  while (i < n && p[i] == byte) ++i;
  return i;
}

// Offset (from the user pointer) of the first tail byte that is not the
// canary, or 0 if the tail is intact.
[[gnu::always_inline]] inline size_t bad_tail(const Header* h) {
  const auto* tail = reinterpret_cast<const uint8_t*>(h) + kHeaderSize + h->size;
  size_t n = h->tail;
  if (n >= 16 && n <= 64) {
    // The usual tail: four 16-byte loads, overlapping when it is shorter.
    typedef uint64_t Vec __attribute__((vector_size(16)));
    uint64_t word = 0x0101010101010101ull * kTailByte;
    Vec pattern = {word, word};
    auto at = [tail](size_t offset) {
      Vec v;
      std::memcpy(&v, tail + offset, sizeof v);
      return v;
    };
    size_t last = n - 16;
    Vec diff = ((at(0) ^ pattern) | (at(16 < last ? 16 : last) ^ pattern)) |
               ((at(32 < last ? 32 : last) ^ pattern) | (at(last) ^ pattern));
    if ((diff[0] | diff[1]) == 0) return 0;
  }
  size_t i = first_other(tail, h->tail, kTailByte);
  return i == h->tail ? 0 : h->size + i;
}

// Offset (from the user pointer) of the first byte of a freed block that
// is not what on_free left there (the poison, then the tail canary unless
// it was poisoned too), or SIZE_MAX if the block is intact.
[[gnu::always_inline]] inline size_t bad_freed(const Header* h) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(h) + kHeaderSize;
  if (h->tail_poison) {
    size_t span = h->size + h->tail;
    if (all_bytes(bytes, span, h->poison)) return SIZE_MAX;
    size_t i = 0;
    while (bytes[i] == h->poison) ++i;
    return i;
  }
  size_t span = checked_span(h);
  size_t i = first_other(bytes, span, h->poison);
  if (i != span) return i;
  size_t offset = bad_tail(h);
  return offset != 0 ? offset : SIZE_MAX;
}

// How far before the user pointer the farthest changed header byte is,
// when only the canary word was hit (else the canary's size).
size_t underflow_depth(const Header* h) {
  uint64_t expected = canary_of(h);
  uint64_t got = h->canary;
  for (size_t byte = 0; byte < 8; ++byte) {
    if (((expected ^ got) >> (8 * byte)) & 0xff) return 8 - byte;
  }
  return 8;
}

void fork_prepare() {
  g_quarantine_lock.fork_prepare();
  g_index_lock.fork_prepare();
}
void fork_parent() {
  g_index_lock.fork_parent();
  g_quarantine_lock.fork_parent();
}
void fork_child() {
  g_index_lock.reset_after_fork();
  g_quarantine_lock.reset_after_fork();
}

// What may allocate (at_fork, pthread_key_create) is done on the
// first allocation, outside every lock.
void setup() {
  if (g_atfork_registered.load(std::memory_order_relaxed) || g_atfork_registered.exchange(true)) {
    return;
  }
  os::at_fork(fork_prepare, fork_parent, fork_child);
  if (pthread_key_create(&g_exit_key, on_thread_exit) == 0) {
    g_setup_done.store(true, std::memory_order_release);
  }
}

}  // namespace

size_t table_slots() { return g_slots_used.load(std::memory_order_relaxed); }

const char* origin_name(Origin origin) {
  switch (origin) {
    case Origin::kNew:
      return "operator new";
    case Origin::kNewArray:
      return "operator new[]";
    case Origin::kMalloc:
      break;
  }
  return "malloc";
}

const char* release_name(Release kind) {
  switch (kind) {
    case Release::kDelete:
      return "operator delete";
    case Release::kDeleteArray:
      return "operator delete[]";
    case Release::kFree:
      break;
  }
  return "free";
}

bool family_matches(Origin origin, Release kind) {
  switch (origin) {
    case Origin::kNew:
      return kind == Release::kDelete;
    case Origin::kNewArray:
      return kind == Release::kDeleteArray;
    case Origin::kMalloc:
      break;
  }
  return kind == Release::kFree;
}

STRATA_STARTUP_CODE void latch() {
  if (g_latched) return;
  g_latched = true;
  g_enabled = g_options.check != 0 || g_options.leaks || g_options.quarantine_bytes != 0;
  // Only check mode's headers use it: a process without it makes one
  // system call fewer at start-up.
  if (g_enabled) os::random_bytes(&g_secret, sizeof g_secret);
  g_avx2 = detect_avx2();
  g_limit = g_options.check_bytes != 0 ? g_options.check_bytes : SIZE_MAX;
  g_budget = g_options.quarantine_bytes != 0 ? g_options.quarantine_bytes : kDefaultQuarantine;
  g_batch_bytes = g_budget / 32;
}

namespace {

// on_allocate, inlined into on_allocate_small.
[[gnu::always_inline]] inline void* allocate_body(void* raw, size_t raw_usable, size_t alignment,
                                                  size_t size, Origin origin, bool zero,
                                                  bool raw_zeroed, bool large_block, Site site) {
  setup();
  size_t offset = user_offset(alignment);
  char* p = static_cast<char*>(raw) + offset;
  Header* h = header_of(p);
  bool whole = large_block || g_limit == SIZE_MAX;
  size_t tail = raw_usable - offset - size;
  size_t tail_max = whole ? UINT32_MAX : kTailMax;
  if (tail > tail_max) tail = tail_max;
  if (tail > UINT32_MAX) tail = UINT32_MAX;
  h->raw = raw_usable < UINT32_MAX ? static_cast<uint32_t>(raw_usable) : UINT32_MAX;
  h->size = size;
  h->offset = static_cast<uint32_t>(offset);
  h->tail = static_cast<uint32_t>(tail);
  h->alloc_stack = stack::capture(site.caller, site.frame);
  h->free_stack = 0;
  h->origin = static_cast<uint8_t>(origin);
  h->state = kLiveState;
  h->poison = 0;
  h->tail_poison = 0;
  h->unused = 0;
  h->whole = whole;
  std::memset(h->zero, 0, sizeof h->zero);
  h->canary = canary_of(h);
  if (zero) {
    if (!raw_zeroed) std::memset(p, 0, size);
  } else {
    int perturb = g_options.perturb;
    std::memset(p, perturb != 0 ? (~perturb & 0xff) : kDefaultFillByte,
                size <= g_limit ? size : g_limit);
  }
  std::memset(p + size, kTailByte, tail);
  h->live = take_slot();
  if (h->live != kNoIndex) {
    slot(h->live).store(reinterpret_cast<uintptr_t>(h), std::memory_order_release);
  }
  return p;
}

}  // namespace

void* on_allocate(void* raw, size_t raw_usable, size_t alignment, size_t size, Origin origin,
                  bool zero, bool raw_zeroed, bool large_block, Site site) {
  return allocate_body(raw, raw_usable, alignment, size, origin, zero, raw_zeroed, large_block,
                       site);
}

void* on_allocate_small(void* raw, size_t raw_usable, size_t size, Origin origin, bool zero,
                        bool raw_zeroed, Site site) {
  return allocate_body(raw, raw_usable, 0, size, origin, zero, raw_zeroed, false, site);
}

namespace {

[[gnu::always_inline]] inline Found look(const void* raw, const void* p) {
  uintptr_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(raw);
  if (reinterpret_cast<uintptr_t>(p) < reinterpret_cast<uintptr_t>(raw) + kHeaderSize ||
      p == nullptr) {
    return Found::kNotABlock;
  }
  const Header* h = header_of(p);
  if (h->offset == offset && h->canary == canary_of(h)) {
    uint8_t state = __atomic_load_n(&h->state, __ATOMIC_RELAXED);
    if (state == kLiveState) return Found::kLive;
    if (state == kQuarantinedState) return Found::kFreed;
  }
  // The only place a plain block's header can be: its canary was overwritten.
  return offset == kHeaderSize ? Found::kCorrupt : Found::kNotABlock;
}

}  // namespace

Found inspect(const void* raw, const void* p) { return look(raw, p); }

size_t size_of(const void* p) { return header_of(p)->size; }

void report_corrupt(const char* function, const void* p) {
  const Header* h = header_of(p);
  report::BlockDescription d;
  d.address = p;
  d.size = h->size;
  d.allocated_by = origin_name(static_cast<Origin>(h->origin));
  // The fields may be overwritten too: name no stacks, trust no size that
  // the header cannot vouch for.
  report::buffer_underflow(function, d, underflow_depth(h));
}

namespace {

// on_free, inlined into free_found.
[[gnu::always_inline]] inline Freed free_live(void* p, const char* function, Release kind,
                                              size_t sized, Site site) {
  Header* h = header_of(p);
  if (size_t offset = bad_tail(h)) {
    report::buffer_overflow(function, describe(h), offset);
    return Freed::kError;
  }
  if (!family_matches(static_cast<Origin>(h->origin), kind)) {
    report::mismatched_free(function, describe(h), release_name(kind));
    return Freed::kError;
  }
  if (sized != 0 && sized != h->size) {
    report::wrong_size(function, describe(h), sized);
    return Freed::kError;
  }
  uint8_t live = kLiveState;
  if (!__atomic_compare_exchange_n(&h->state, &live, uint8_t{kQuarantinedState}, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
    // Freed by another thread since inspect() looked.
    report::double_free(function, describe(h));
    return Freed::kError;
  }
  if (h->live != kNoIndex) give_slot(h->live);
  // Poisoned, it would leave the quarantine in this very call: all cost and
  // no check. (A second free is still caught by the layers below.)
  if (h->raw > g_budget) return Freed::kRelease;
  h->free_stack = stack::capture(site.caller, site.frame);
  int perturb = g_options.perturb;
  h->poison = perturb != 0 ? static_cast<uint8_t>(perturb & 0xff) : kDefaultPoisonByte;
  // The tail, just verified, is poisoned too when it follows the poisoned
  // bytes: the block is then verified in one pass when it leaves.
  size_t span = checked_span(h);
  h->tail_poison = span == h->size;
  std::memset(p, h->poison, h->tail_poison ? span + h->tail : span);
  register_exit();
  h->next = nullptr;
  h->ahead = nullptr;
  Header*& behind = tls_behind[tls_behind_at++ % kAhead];
  if (behind != nullptr) behind->ahead = h;
  behind = h;
  if (tls_batch_tail != nullptr)
    tls_batch_tail->next = h;
  else
    tls_batch_head = h;
  tls_batch_tail = h;
  tls_batch_bytes += h->raw;
  if (tls_batch_bytes >= g_batch_bytes) flush_batch();
  return g_quarantine_bytes.load(std::memory_order_relaxed) > g_budget ? Freed::kEvict
                                                                       : Freed::kQuarantined;
}

}  // namespace

Freed on_free(void* p, const char* function, Release kind, size_t sized, Site site) {
  return free_live(p, function, kind, sized, site);
}

Freed free_found(const void* raw, void* p, const char* function, Release kind, size_t sized,
                 Site site) {
  switch (look(raw, p)) {
    case Found::kLive:
      return free_live(p, function, kind, sized, site);
    case Found::kFreed:
      report_double_free(function, p);
      return Freed::kError;
    case Found::kCorrupt:
      report_corrupt(function, p);
      return Freed::kError;
    case Found::kNotABlock:
      break;
  }
  report::invalid_pointer(function, p);
  return Freed::kError;
}

void report_double_free(const char* function, const void* p) {
  report::double_free(function, describe(header_of(p)));
}

size_t evict(void** out, size_t max) {
  if (g_quarantine_bytes.load(std::memory_order_relaxed) <= g_budget) return 0;
  size_t count = 0;
  {
    LockGuard guard(g_quarantine_lock);
    size_t bytes = g_quarantine_bytes.load(std::memory_order_relaxed);
    while (count < max && g_quarantine_head != nullptr && bytes > g_budget) {
      Header* h = g_quarantine_head;
      // The walk reads one header after another: fetch those ahead.
      __builtin_prefetch(h->ahead);
      g_quarantine_head = h->next;
      if (g_quarantine_head == nullptr) g_quarantine_tail = nullptr;
      bytes -= h->raw;
      out[count++] = h;
    }
    g_quarantine_bytes.store(bytes, std::memory_order_relaxed);
  }
  // The blocks were last touched a quarantine ago: their headers are in the
  // cache now (the walk above read them), their bytes are fetched two
  // blocks ahead of their verification.
  auto fetch = [](const Header* h) {
    const char* bytes = reinterpret_cast<const char*>(h) + kHeaderSize;
    size_t span = h->tail_poison ? h->size + h->tail : checked_span(h);
    if (span > kFetchMax) span = kFetchMax;
    for (size_t line = 0; line < span; line += 64) __builtin_prefetch(bytes + line);
  };
  for (size_t i = 0; i < count && i < 2; ++i) fetch(static_cast<Header*>(out[i]));
  for (size_t i = 0; i < count; ++i) {
    auto* h = static_cast<Header*>(out[i]);
    if (i + 2 < count) fetch(static_cast<Header*>(out[i + 2]));
    // A bad block stays out of circulation (the report may only print).
    out[i] = nullptr;
    size_t offset;
    if (h->canary != canary_of(h)) {
      report_corrupt("malloc", user_of(h));
    } else if ((offset = bad_freed(h)) != SIZE_MAX) {
      report::write_after_free("malloc", describe(h), offset);
    } else {
      out[i] = reinterpret_cast<char*>(h) + kHeaderSize - h->offset;
    }
  }
  return count;
}

int check_all() {
  if (!g_enabled) return 0;
  // Problems are collected under a lock and reported after it is released
  // (a report may symbolise stacks, which takes the loader's lock).
  constexpr size_t kMaxFound = 16;
  struct Problem {
    report::BlockDescription block;
    size_t offset;
    int kind;  // 0 underflow, 1 overflow, 2 write after free
  };
  Problem found[kMaxFound];
  size_t count = 0;
  int total = 0;
  auto note = [&](const Header* h, size_t offset, int kind) {
    ++total;
    if (count < kMaxFound) found[count++] = {describe(h), offset, kind};
  };
  auto verify_freed = [&](const Header* h) {
    size_t offset;
    if (h->canary != canary_of(h)) {
      note(h, underflow_depth(h), 0);
    } else if ((offset = bad_freed(h)) != SIZE_MAX) {
      note(h, offset, 2);
    }
  };
  {
    // While the quarantine is locked no block can leave it, so every block
    // the live table names stays a block (live or quarantined) to the end.
    LockGuard guard(g_quarantine_lock);
    for_each_live([&](const Header* h) {
      if (h->canary != canary_of(h)) {
        note(h, underflow_depth(h), 0);
      } else if (size_t offset = bad_tail(h)) {
        note(h, offset, 1);
      }
    });
    for (const Header* h = g_quarantine_head; h != nullptr; h = h->next) verify_freed(h);
  }
  // This thread's batch (other threads' batches are theirs alone).
  for (const Header* h = tls_batch_head; h != nullptr; h = h->next) verify_freed(h);
  for (size_t i = 0; i < count; ++i) {
    const Problem& problem = found[i];
    if (problem.kind == 0) {
      report::BlockDescription d = problem.block;
      d.alloc_stack = d.free_stack = 0;
      report::buffer_underflow("strata_check_heap", d, problem.offset);
    } else if (problem.kind == 1) {
      report::buffer_overflow("strata_check_heap", problem.block, problem.offset);
    } else {
      report::write_after_free("strata_check_heap", problem.block, problem.offset);
    }
  }
  return total;
}

// --- Leaks at exit ----------------------------------------------------------

namespace {

struct LeakSite {
  uint32_t stack;
  size_t blocks;
  size_t bytes;
};
constexpr size_t kMaxSites = 1024;
constexpr size_t kSitesShown = 32;
constinit LeakSite g_sites[kMaxSites] = {};

STRATA_STARTUP_CODE __attribute__((destructor)) void report_leaks() {
  if (!g_enabled || !g_options.leaks) return;
  size_t sites = 0, blocks = 0, bytes = 0;
  {
    LockGuard guard(g_quarantine_lock);  // see check_all
    for_each_live([&](const Header* h) {
      ++blocks;
      bytes += h->size;
      size_t i = 0;
      while (i < sites && g_sites[i].stack != h->alloc_stack) ++i;
      if (i == sites) {
        if (sites == kMaxSites)
          i = 0;  // out of room: count it with the first site
        else
          g_sites[sites++] = {h->alloc_stack, 0, 0};
      }
      ++g_sites[i].blocks;
      g_sites[i].bytes += h->size;
    });
  }
  if (blocks == 0) return;
  // Largest first (insertion sort: sites are few).
  for (size_t i = 1; i < sites; ++i) {
    LeakSite site = g_sites[i];
    size_t j = i;
    while (j > 0 && g_sites[j - 1].bytes < site.bytes) {
      g_sites[j] = g_sites[j - 1];
      --j;
    }
    g_sites[j] = site;
  }
  report::leak_summary(blocks, bytes, sites);
  for (size_t i = 0; i < sites && i < kSitesShown; ++i) {
    report::leak_site(g_sites[i].blocks, g_sites[i].bytes, g_sites[i].stack);
  }
}

}  // namespace
}  // namespace strata::check

// --- The C API ----------------------------------------------------------------

extern "C" __attribute__((visibility("default"))) int strata_check_heap(void) {
  return strata::check::check_all();
}
