// Guarded blocks and the fault handler (see guard.h).
#include "check/guard.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstring>

#include "check/report.h"
#include "check/stack.h"
#include "options/options.h"
#include "platform/code_layout.h"
#include "platform/lock.h"
#include "platform/os.h"

namespace strata::guard {

constinit Region g_region;
constinit uint32_t g_rate = 0;

namespace {

enum SlotState : uint8_t { kUnused = 0, kLive, kFreed };

struct SlotMeta {
  uintptr_t user;
  size_t size;
  uint32_t alloc_stack;
  uint32_t free_stack;
  uint8_t state;
  uint8_t origin;
};

constexpr uint8_t kSlackByte = 0xcb;
// Slots: enough for a sample to stay guarded a long time after its free;
// with every allocation guarded, as many as the kernel's limit on mappings
// comfortably allows (each slot in use splits the region's mapping twice).
constexpr size_t kSampledSlots = 1024;
constexpr size_t kAllSlots = 16384;

constinit size_t g_page = 4096;
constinit size_t g_stride = 0;  // data (kMaxSize) + one guard page
constinit bool g_left = false;  // guard_left: blocks at the start of their slot
constinit size_t g_slots = 0;
constinit SlotMeta* g_meta = nullptr;
constinit uint32_t* g_freed = nullptr;  // FIFO ring of freed slots
constinit size_t g_freed_head = 0;
constinit size_t g_freed_count = 0;
constinit size_t g_next_unused = 0;
constinit uint64_t g_allocations = 0;  // under g_lock
constinit SpinLock g_lock;
constinit std::atomic<bool> g_atfork_registered{false};
struct sigaction g_previous;

uintptr_t data_of(size_t slot) { return g_region.begin + g_page + slot * g_stride; }

// Where a block of `size` bytes goes in its slot: against the guard page
// after the slot, as close as the alignment allows (an overflow faults), or
// with guard_left=1 at the start, right after the guard page before it (an
// underflow faults).
uintptr_t place(size_t slot, size_t size, size_t align) {
  uintptr_t data = data_of(slot);
  if (g_left) return data;
  return (data + kMaxSize - (size == 0 ? 1 : size)) & ~(align - 1);
}

// The pages of a slot a block opens: those it covers, so that an access
// beyond them faults. The bytes between the block's end and the end of the
// last page (a few when right-aligned) are filled and checked on free.
struct Span {
  uintptr_t begin;
  uintptr_t end;
};
Span opened(size_t slot, uintptr_t user, size_t size) {
  uintptr_t data = data_of(slot);
  if (!g_left) return {user & ~(g_page - 1), data + kMaxSize};
  uintptr_t end = (user + (size == 0 ? 1 : size) + g_page - 1) & ~(g_page - 1);
  return {data, end};
}

// The slot whose data area holds address, or g_slots.
size_t slot_of(uintptr_t address) {
  if (!owns(reinterpret_cast<const void*>(address)) || address < g_region.begin + g_page)
    return g_slots;
  uintptr_t rel = address - g_region.begin - g_page;
  size_t slot = rel / g_stride;
  return rel % g_stride < kMaxSize ? slot : g_slots;
}

report::BlockDescription describe(const SlotMeta& meta) {
  report::BlockDescription d;
  d.address = reinterpret_cast<const void*>(meta.user);
  d.size = meta.size;
  d.allocated_by = check::origin_name(static_cast<check::Origin>(meta.origin));
  d.alloc_stack = meta.alloc_stack;
  d.free_stack = meta.free_stack;
  return d;
}

void fork_prepare() { g_lock.lock(); }
void fork_parent() { g_lock.unlock(); }
void fork_child() { g_lock.reset_after_fork(); }

// Names a fault inside the region: which slot, and how it was hit.
void report_fault(uintptr_t address) {
  uintptr_t first = g_region.begin + g_page;
  size_t slot;
  bool after_guard = false;  // the fault is in the guard page after `slot`
  if (address < first) {
    slot = 0;  // the leading guard page: before slot 0
  } else {
    uintptr_t rel = address - first;
    slot = rel / g_stride;
    if (rel % g_stride >= kMaxSize) {
      // A guard page: an overflow of the slot before it if near its start,
      // else an underflow of the slot after it.
      if (rel % g_stride - kMaxSize < g_page / 2)
        after_guard = true;
      else
        ++slot;
    }
  }
  if (slot >= g_slots || g_meta[slot].state == kUnused) {
    char buffer[160];
    report::Writer w(buffer, sizeof buffer);
    w.text("strata: invalid access at ").hex(reinterpret_cast<const void*>(address));
    w.text(" in the guarded region, outside any block\n");
    w.flush(2);
    return;
  }
  const SlotMeta& meta = g_meta[slot];
  long long offset = static_cast<long long>(address) - static_cast<long long>(meta.user);
  const char* what;
  if (meta.state == kFreed)
    what = "use after free";
  else if (after_guard || offset >= 0)
    what = "heap buffer overflow";
  else
    what = "heap buffer underflow";
  report::guard_fault(what, describe(meta), offset, reinterpret_cast<const void*>(address),
                      meta.state == kFreed);
}

void on_fault(int signal, siginfo_t* info, void* context) {
  auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  if (owns(info->si_addr)) {
    report_fault(address);
  } else if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    return g_previous.sa_sigaction(signal, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(signal);
  }
  // Ours, or nobody else's: the default action, when the access runs again.
  struct sigaction fallback;
  std::memset(&fallback, 0, sizeof fallback);
  fallback.sa_handler = SIG_DFL;
  sigaction(SIGSEGV, &fallback, nullptr);
}

}  // namespace

STRATA_STARTUP_CODE void latch() {
  static constinit bool latched = false;
  if (latched) return;
  latched = true;
  if (g_options.guard_sample_rate == 0) return;
  g_page = os::g_caps.page_size;
  if (g_page > kMaxSize) return;
  g_slots = g_options.guard_sample_rate == 1 ? kAllSlots : kSampledSlots;
  g_stride = kMaxSize + g_page;
  size_t bytes = g_page + g_slots * g_stride;
  void* region = os::reserve_inaccessible(bytes);
  g_meta = static_cast<SlotMeta*>(os::map(g_slots * sizeof(SlotMeta)));
  g_freed = static_cast<uint32_t*>(os::map(g_slots * sizeof(uint32_t)));
  if (region == nullptr || g_meta == nullptr || g_freed == nullptr) return;
  g_left = g_options.guard_left;
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_sigaction = on_fault;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  sigaction(SIGSEGV, &action, &g_previous);
  g_rate = g_options.guard_sample_rate;
  g_region.end = reinterpret_cast<uintptr_t>(region) + bytes;
  g_region.begin = reinterpret_cast<uintptr_t>(region);
}

uint64_t allocations() {
  LockGuard guard(g_lock);
  return g_allocations;
}

void* allocate(size_t size, size_t alignment, bool zero, check::Origin origin, check::Site site) {
  if (size > kMaxSize || alignment > g_page) return nullptr;
  if (!g_atfork_registered.load(std::memory_order_relaxed) && !g_atfork_registered.exchange(true)) {
    os::at_fork(fork_prepare, fork_parent, fork_child);
  }
  size_t slot;
  {
    LockGuard guard(g_lock);
    if (g_next_unused < g_slots) {
      slot = g_next_unused++;
    } else if (g_freed_count > 0) {
      slot = g_freed[g_freed_head];
      g_freed_head = (g_freed_head + 1) % g_slots;
      --g_freed_count;
    } else {
      return nullptr;
    }
    g_meta[slot].state = kLive;
    ++g_allocations;
  }
  uintptr_t user = place(slot, size, alignment < 16 ? 16 : alignment);
  Span open = opened(slot, user, size);
  if (!os::make_writable(reinterpret_cast<void*>(open.begin), open.end - open.begin)) {
    LockGuard guard(g_lock);
    g_meta[slot].state = kUnused;
    g_freed[(g_freed_head + g_freed_count++) % g_slots] = static_cast<uint32_t>(slot);
    return nullptr;
  }
  auto* bytes = reinterpret_cast<uint8_t*>(user);
  // A reused page keeps what its last block left there.
  if (zero)
    std::memset(bytes, 0, size);
  else if (g_options.perturb != 0)
    std::memset(bytes, ~g_options.perturb & 0xff, size);
  std::memset(bytes + size, kSlackByte, open.end - user - size);
  SlotMeta& meta = g_meta[slot];
  meta.user = user;
  meta.size = size;
  meta.alloc_stack = stack::capture(site.caller, site.frame);
  meta.free_stack = 0;
  meta.origin = static_cast<uint8_t>(origin);
  return bytes;
}

// The slot of the live block p, or g_slots (reported).
size_t live_slot(const void* p, const char* function) {
  size_t slot = slot_of(reinterpret_cast<uintptr_t>(p));
  if (slot < g_slots && g_meta[slot].user == reinterpret_cast<uintptr_t>(p)) {
    if (g_meta[slot].state == kLive) return slot;
    if (g_meta[slot].state == kFreed) {
      report::double_free(function, describe(g_meta[slot]));
      return g_slots;
    }
  }
  report::invalid_pointer(function, p);
  return g_slots;
}

bool find(const void* p, const char* function, size_t* size) {
  size_t slot = live_slot(p, function);
  if (slot >= g_slots) return false;
  *size = g_meta[slot].size;
  return true;
}

bool release(void* p, const char* function, check::Release kind, size_t sized, check::Site site) {
  size_t slot = live_slot(p, function);
  if (slot >= g_slots) return false;
  SlotMeta& meta = g_meta[slot];
  if (!check::family_matches(static_cast<check::Origin>(meta.origin), kind)) {
    report::mismatched_free(function, describe(meta), check::release_name(kind));
    return false;
  }
  if (sized != 0 && sized != meta.size) {
    report::wrong_size(function, describe(meta), sized);
    return false;
  }
  const auto* slack = static_cast<const uint8_t*>(p) + meta.size;
  size_t slack_size = opened(slot, meta.user, meta.size).end - meta.user - meta.size;
  for (size_t i = 0; i < slack_size; ++i) {
    if (slack[i] != kSlackByte) {
      report::buffer_overflow(function, describe(meta), meta.size + i);
      return false;
    }
  }
  uint32_t free_stack = stack::capture(site.caller, site.frame);
  {
    LockGuard guard(g_lock);
    if (meta.state != kLive) return false;  // freed meanwhile by another thread
    meta.state = kFreed;
    meta.free_stack = free_stack;
  }
  // Replace the pages: their memory goes back to the kernel, and any access
  // faults until the slot is reused.
  Span open = opened(slot, meta.user, meta.size);
  // When sampling, a single page keeps its memory (one mprotect, and no page
  // fault when the slot is reused): at most one page per slot (4 MiB) stays
  // resident.
  void* pages = reinterpret_cast<void*>(open.begin);
  if (g_rate > 1 && open.end - open.begin <= g_page)
    os::make_inaccessible_keeping_memory(pages, g_page);
  else
    os::make_inaccessible(pages, open.end - open.begin);
  LockGuard guard(g_lock);
  g_freed[(g_freed_head + g_freed_count++) % g_slots] = static_cast<uint32_t>(slot);
  return true;
}

}  // namespace strata::guard
