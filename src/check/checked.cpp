// Check mode: block headers, canaries, quarantine, heap verification and the
// leak report at exit (see checked.h).
#include "check/checked.h"

#include <pthread.h>

#include <atomic>

#include <cstring>

#include "check/report.h"
#include "check/stack.h"
#include "options/options.h"
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

struct Header {
  Header* prev;  // live list of its shard, or quarantine FIFO (next only)
  Header* next;
  uint64_t size;
  uint32_t offset;  // user pointer - raw block
  uint32_t tail;    // canary bytes after the user bytes
  uint32_t alloc_stack;
  uint32_t free_stack;
  uint8_t origin;
  uint8_t state;
  uint8_t poison;  // the byte the block was filled with when freed
  uint8_t shard;
  uint32_t reserved;
  uint64_t reserved2;
  uint64_t canary;  // last: the first word an underflow reaches
};
static_assert(sizeof(Header) == kHeaderSize);

constinit bool g_latched = false;
constinit uint64_t g_secret = 0;

constexpr size_t kShards = 64;
struct alignas(64) Shard {
  SpinLock lock;
  Header* head = nullptr;
};
constinit Shard g_shards[kShards];

constinit SpinLock g_quarantine_lock;
constinit Header* g_quarantine_head = nullptr;
constinit Header* g_quarantine_tail = nullptr;
constinit size_t g_quarantine_bytes = 0;

// Small freed blocks gather in a per-thread batch that joins the quarantine
// in one step, so that threads freeing at once do not take turns on its
// lock for every block. (At most kBatchBlocks small blocks of an exiting
// thread stay poisoned for good.)
constexpr uint32_t kBatchBlocks = 32;
constexpr size_t kBatchBlockMax = 1024;
thread_local Header* tls_batch_head = nullptr;
thread_local Header* tls_batch_tail = nullptr;
thread_local uint32_t tls_batch_count = 0;
thread_local size_t tls_batch_bytes = 0;

constinit std::atomic<bool> g_atfork_registered{false};

Header* header_of(const void* p) {
  return reinterpret_cast<Header*>(reinterpret_cast<uintptr_t>(p) - kHeaderSize);
}
void* user_of(Header* h) { return reinterpret_cast<char*>(h) + kHeaderSize; }

uint64_t canary_of(const Header* h) {
  uint64_t x = reinterpret_cast<uintptr_t>(h) ^ g_secret;
  x ^= h->size * 0x9e3779b97f4a7c15ull;
  x ^= (uint64_t{h->offset} << 32 | h->tail) * 0xc2b2ae3d27d4eb4full;
  x ^= uint64_t{h->origin} << 56;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 32;
  return x;
}

size_t raw_bytes(const Header* h) { return h->offset + h->size + h->tail; }

report::BlockDescription describe(const Header* h) {
  report::BlockDescription d;
  d.address = reinterpret_cast<const char*>(h) + kHeaderSize;
  d.size = h->size;
  d.allocated_by = origin_name(static_cast<Origin>(h->origin));
  d.alloc_stack = h->alloc_stack;
  d.free_stack = h->free_stack;
  return d;
}

Shard& shard_of(const Header* h) {
  return g_shards[(reinterpret_cast<uintptr_t>(h) >> 6) * 0x9e3779b97f4a7c15ull >> 58];
}

// Offset (from the user pointer) of the first tail byte that is not the
// canary, or 0 if the tail is intact.
size_t bad_tail(const Header* h) {
  const auto* tail = reinterpret_cast<const uint8_t*>(h) + kHeaderSize + h->size;
  constexpr uint64_t kTailWord = 0x0101010101010101ull * kTailByte;
  uint32_t i = 0;
  for (; i + 8 <= h->tail; i += 8) {
    uint64_t got;
    std::memcpy(&got, tail + i, sizeof got);
    if (got != kTailWord) break;
  }
  for (; i < h->tail; ++i) {
    if (tail[i] != kTailByte) return h->size + i;
  }
  return 0;
}

// Offset of the first user byte that is not the poison, or SIZE_MAX.
size_t bad_poison(const Header* h) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(h) + kHeaderSize;
  uint64_t word;
  std::memset(&word, h->poison, sizeof word);
  size_t i = 0;
  for (; i + 8 <= h->size; i += 8) {
    uint64_t got;
    std::memcpy(&got, bytes + i, sizeof got);
    if (got != word) break;
  }
  for (; i < h->size; ++i) {
    if (bytes[i] != h->poison) return i;
  }
  return SIZE_MAX;
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
  g_quarantine_lock.lock();
  for (Shard& shard : g_shards) shard.lock.lock();
}
void fork_parent() {
  for (Shard& shard : g_shards) shard.lock.unlock();
  g_quarantine_lock.unlock();
}
void fork_child() {
  for (Shard& shard : g_shards) shard.lock.reset_after_fork();
  g_quarantine_lock.reset_after_fork();
}

}  // namespace

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

void latch() {
  if (g_latched) return;
  g_latched = true;
  g_enabled = g_options.check != 0 || g_options.leaks || g_options.quarantine_bytes != 0;
  os::random_bytes(&g_secret, sizeof g_secret);
}

void* on_allocate(void* raw, size_t raw_usable, size_t alignment, size_t size, Origin origin,
                  bool zero, Site site) {
  // The shard locks must be held across fork; pthread_atfork may allocate,
  // so it is registered on the first allocation, outside every lock.
  if (!g_atfork_registered.load(std::memory_order_relaxed) && !g_atfork_registered.exchange(true)) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
  }
  size_t offset = user_offset(alignment);
  char* p = static_cast<char*>(raw) + offset;
  Header* h = header_of(p);
  size_t tail = raw_usable - offset - size;
  if (tail > UINT32_MAX) tail = UINT32_MAX;
  h->size = size;
  h->offset = static_cast<uint32_t>(offset);
  h->tail = static_cast<uint32_t>(tail);
  h->alloc_stack = stack::capture(site.caller, site.frame);
  h->free_stack = 0;
  h->origin = static_cast<uint8_t>(origin);
  h->state = kLiveState;
  h->poison = 0;
  h->reserved = 0;
  h->reserved2 = 0;
  h->canary = canary_of(h);
  if (zero) {
    std::memset(p, 0, size);
  } else {
    int perturb = g_options.perturb;
    std::memset(p, perturb != 0 ? (~perturb & 0xff) : kDefaultFillByte, size);
  }
  std::memset(p + size, kTailByte, tail);
  Shard& shard = shard_of(h);
  LockGuard guard(shard.lock);
  h->prev = nullptr;
  h->next = shard.head;
  if (shard.head != nullptr) shard.head->prev = h;
  shard.head = h;
  return p;
}

Found inspect(const void* raw, const void* p) {
  uintptr_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(raw);
  if (reinterpret_cast<uintptr_t>(p) < reinterpret_cast<uintptr_t>(raw) + kHeaderSize ||
      p == nullptr) {
    return Found::kNotABlock;
  }
  const Header* h = header_of(p);
  if (h->offset == offset && h->canary == canary_of(h)) {
    if (h->state == kLiveState) return Found::kLive;
    if (h->state == kQuarantinedState) return Found::kFreed;
  }
  // The only place a plain block's header can be: its canary was overwritten.
  return offset == kHeaderSize ? Found::kCorrupt : Found::kNotABlock;
}

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

bool on_free(void* p, const char* function, Release kind, size_t sized, Site site) {
  Header* h = header_of(p);
  if (size_t offset = bad_tail(h)) {
    report::buffer_overflow(function, describe(h), offset);
    return false;
  }
  if (!family_matches(static_cast<Origin>(h->origin), kind)) {
    report::mismatched_free(function, describe(h), release_name(kind));
    return false;
  }
  if (sized != 0 && sized != h->size) {
    report::wrong_size(function, describe(h), sized);
    return false;
  }
  uint32_t free_stack = stack::capture(site.caller, site.frame);
  bool was_live;
  {
    Shard& shard = shard_of(h);
    LockGuard guard(shard.lock);
    was_live = h->state == kLiveState;
    if (was_live) {
      if (h->prev != nullptr)
        h->prev->next = h->next;
      else
        shard.head = h->next;
      if (h->next != nullptr) h->next->prev = h->prev;
      h->state = kQuarantinedState;
    }
  }
  if (!was_live) {  // freed by another thread since inspect() looked
    report::double_free(function, describe(h));
    return false;
  }
  h->free_stack = free_stack;
  int perturb = g_options.perturb;
  h->poison = perturb != 0 ? static_cast<uint8_t>(perturb & 0xff) : kDefaultPoisonByte;
  std::memset(p, h->poison, h->size);
  h->next = nullptr;
  if (tls_batch_tail != nullptr)
    tls_batch_tail->next = h;
  else
    tls_batch_head = h;
  tls_batch_tail = h;
  tls_batch_bytes += raw_bytes(h);
  if (++tls_batch_count < kBatchBlocks && raw_bytes(h) <= kBatchBlockMax) return true;
  LockGuard guard(g_quarantine_lock);
  if (g_quarantine_tail != nullptr)
    g_quarantine_tail->next = tls_batch_head;
  else
    g_quarantine_head = tls_batch_head;
  g_quarantine_tail = tls_batch_tail;
  g_quarantine_bytes += tls_batch_bytes;
  tls_batch_head = tls_batch_tail = nullptr;
  tls_batch_count = 0;
  tls_batch_bytes = 0;
  return true;
}

void report_double_free(const char* function, const void* p) {
  report::double_free(function, describe(header_of(p)));
}

size_t evict(void** out, size_t max) {
  size_t budget = g_options.quarantine_bytes != 0 ? g_options.quarantine_bytes : kDefaultQuarantine;
  size_t count = 0;
  {
    LockGuard guard(g_quarantine_lock);
    while (count < max && g_quarantine_head != nullptr && g_quarantine_bytes > budget) {
      Header* h = g_quarantine_head;
      g_quarantine_head = h->next;
      if (g_quarantine_head == nullptr) g_quarantine_tail = nullptr;
      g_quarantine_bytes -= raw_bytes(h);
      out[count++] = h;
    }
  }
  for (size_t i = 0; i < count; ++i) {
    auto* h = static_cast<Header*>(out[i]);
    // A bad block stays out of circulation (the report may only print).
    out[i] = nullptr;
    size_t offset;
    if (h->canary != canary_of(h)) {
      report_corrupt("malloc", user_of(h));
    } else if ((offset = bad_poison(h)) != SIZE_MAX) {
      report::write_after_free("malloc", describe(h), offset);
    } else if ((offset = bad_tail(h)) != 0) {
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
  for (Shard& shard : g_shards) {
    LockGuard guard(shard.lock);
    for (const Header* h = shard.head; h != nullptr; h = h->next) {
      if (h->canary != canary_of(h)) {
        note(h, underflow_depth(h), 0);
      } else if (size_t offset = bad_tail(h)) {
        note(h, offset, 1);
      }
    }
  }
  auto verify_freed = [&](const Header* h) {
    size_t offset;
    if (h->canary != canary_of(h)) {
      note(h, underflow_depth(h), 0);
    } else if ((offset = bad_poison(h)) != SIZE_MAX) {
      note(h, offset, 2);
    } else if ((offset = bad_tail(h)) != 0) {
      note(h, offset, 2);
    }
  };
  {
    LockGuard guard(g_quarantine_lock);
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

__attribute__((destructor)) void report_leaks() {
  if (!g_enabled || !g_options.leaks) return;
  size_t sites = 0, blocks = 0, bytes = 0;
  for (Shard& shard : g_shards) {
    LockGuard guard(shard.lock);
    for (const Header* h = shard.head; h != nullptr; h = h->next) {
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
    }
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
