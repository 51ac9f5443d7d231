// glibc's tuning and introspection interface, and strata_option_set/get (see
// introspection.h).
#include "api/introspection.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include <strata/strata.h>

#include "api/stats.h"
#include "large/large.h"
#include "options/options.h"
#include "platform/lock.h"

namespace strata::api {
namespace {

// Serialises option changes (options.h leaves that to its callers). The
// allocator reads the fields without it and tolerates either value.
constinit SpinLock g_options_lock;

// mallinfo2's fields (see introspection.h) and the extra figures
// malloc_info and malloc_stats print, from one snapshot.
struct Figures {
  struct mallinfo2 info = {};
  size_t system_max = 0;         // highest arena so far (approximate for large blocks)
  size_t address_space = 0;      // reserved for the arena
  size_t max_mapped_blocks = 0;  // most large blocks mapped at once
  size_t max_mapped_bytes = 0;
};

Figures figures(const stats::Snapshot& s) {
  Figures f;
  size_t held_large = s.large.retained_bytes + s.large.cached_bytes;
  struct mallinfo2& info = f.info;
  info.arena = s.slab_bytes() + s.pool.dirty_bytes + held_large;
  info.ordblks = s.pool.dirty_runs + s.large.cached_blocks;
  info.smblks = s.small_free_blocks();
  info.hblks = s.large.mapped_blocks;
  info.hblkhd = s.large.mapped_bytes;
  info.usmblks = 0;
  info.fsmblks = s.small_free_bytes();
  info.uordblks = s.small_in_use_bytes() + s.large.retained_bytes;
  if (info.uordblks > info.arena) info.uordblks = info.arena;  // a racy snapshot
  info.fordblks = info.arena - info.uordblks;
  if (info.fsmblks > info.fordblks) info.fsmblks = info.fordblks;
  info.keepcost = s.pool.dirty_bytes + s.large.cached_bytes + s.releasable_slab_bytes;
  if (info.keepcost > info.fordblks) info.keepcost = info.fordblks;
  f.system_max = s.pool.peak_bytes + held_large;
  if (f.system_max < info.arena) f.system_max = info.arena;
  f.address_space = s.pool.reserved + held_large;
  if (f.address_space < info.arena) f.address_space = info.arena;
  f.max_mapped_blocks = s.large.max_mapped_blocks;
  f.max_mapped_bytes = s.large.max_mapped_bytes;
  return f;
}

Figures current_figures() {
  stats::Snapshot snapshot;
  stats::take(&snapshot);
  return figures(snapshot);
}

// glibc's summary after <sizes>: in each <heap>, and again for the whole
// process, where it adds the mapped blocks.
void write_totals(stats::Out& out, const Figures& f, bool process) {
  const struct mallinfo2& info = f.info;
  out.text("<total type=\"fast\" count=\"").number(info.smblks);
  out.text("\" size=\"").number(info.fsmblks).text("\"/>\n");
  out.text("<total type=\"rest\" count=\"").number(info.ordblks);
  out.text("\" size=\"").number(info.fordblks - info.fsmblks).text("\"/>\n");
  if (process) {
    out.text("<total type=\"mmap\" count=\"").number(info.hblks);
    out.text("\" size=\"").number(info.hblkhd).text("\"/>\n");
  }
  out.text("<system type=\"current\" size=\"").number(info.arena).text("\"/>\n");
  out.text("<system type=\"max\" size=\"").number(f.system_max).text("\"/>\n");
  out.text("<aspace type=\"total\" size=\"").number(f.address_space).text("\"/>\n");
  out.text("<aspace type=\"mprotect\" size=\"").number(info.arena).text("\"/>\n");
}

}  // namespace

int mallopt(int param, int value) {
  runtime::ensure_ready();
  LockGuard guard(g_options_lock);
  int result = options_mallopt(param, value);
  // A threshold set explicitly replaces one glibc's dynamic rule raised,
  // even when the value is the one the option already had.
  if (result == 1 && (param == kM_MMAP_THRESHOLD || param == kM_TRIM_THRESHOLD)) {
    large::take_thresholds(param == kM_MMAP_THRESHOLD, param == kM_TRIM_THRESHOLD);
  }
  runtime::options_changed();
  return result;
}

struct mallinfo2 mallinfo2() {
  return current_figures().info;
}

struct mallinfo mallinfo() {
  struct mallinfo2 wide = mallinfo2();
  auto narrow = [](size_t v) { return v > INT_MAX ? INT_MAX : static_cast<int>(v); };
  struct mallinfo info = {};
  info.arena = narrow(wide.arena);
  info.ordblks = narrow(wide.ordblks);
  info.smblks = narrow(wide.smblks);
  info.hblks = narrow(wide.hblks);
  info.hblkhd = narrow(wide.hblkhd);
  info.usmblks = narrow(wide.usmblks);
  info.fsmblks = narrow(wide.fsmblks);
  info.uordblks = narrow(wide.uordblks);
  info.fordblks = narrow(wide.fordblks);
  info.keepcost = narrow(wide.keepcost);
  return info;
}

void malloc_stats() {
  Figures f = current_figures();
  const struct mallinfo2& info = f.info;
  // glibc's layout and its %10u columns; one arena.
  stats::Out out(STDERR_FILENO);
  out.text("Arena 0:\nsystem bytes     = ").number(info.arena, 10);
  out.text("\nin use bytes     = ").number(info.uordblks, 10);
  out.text("\nTotal (incl. mmap):\nsystem bytes     = ").number(info.arena + info.hblkhd, 10);
  out.text("\nin use bytes     = ").number(info.uordblks + info.hblkhd, 10);
  out.text("\nmax mmap regions = ").number(f.max_mapped_blocks, 10);
  out.text("\nmax mmap bytes   = ").number(f.max_mapped_bytes, 10).put('\n');
}

int malloc_info(int options, FILE* stream) {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  // Everything is gathered first: writing to the stream may allocate.
  stats::Snapshot snapshot;
  stats::take(&snapshot);
  Figures f = figures(snapshot);
  stats::Out out(stream);
  out.text("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n");
  // glibc lists its bins of free chunks; strata's are the size classes'
  // free blocks.
  uint64_t from = 1;
  for (size_t i = 0; i < kNumClasses; ++i) {
    const stats::ClassUsage& c = snapshot.classes[i];
    uint64_t block = kSizeClasses[i].block_size;
    if (c.capacity > c.in_use) {
      uint64_t count = c.capacity - c.in_use;
      out.text("  <size from=\"").number(from).text("\" to=\"").number(block);
      out.text("\" total=\"").number(count * block).text("\" count=\"").number(count);
      out.text("\"/>\n");
    }
    from = block + 1;
  }
  out.text("</sizes>\n");
  write_totals(out, f, /*process=*/false);
  out.text("</heap>\n");
  write_totals(out, f, /*process=*/true);
  out.text("</malloc>\n");
  return 0;
}

int option_set(const char* name, const char* value) {
  if (name == nullptr || value == nullptr) {
    errno = EINVAL;
    return -1;
  }
  // Started first: start-up reads the options afresh from the environment.
  runtime::ensure_ready();
  LockGuard guard(g_options_lock);
  if (!strata::option_set(name, value)) {
    errno = EINVAL;
    return -1;
  }
  bool mmap = strcmp(name, "mmap_threshold") == 0;
  bool trim = strcmp(name, "trim_threshold") == 0;
  if (mmap || trim) large::take_thresholds(mmap, trim);
  runtime::options_changed();
  return 0;
}

int option_get(const char* name, char* buf, size_t len) {
  if (name == nullptr || buf == nullptr) {
    errno = EINVAL;
    return -1;
  }
  runtime::ensure_ready();
  LockGuard guard(g_options_lock);
  if (!strata::option_get(name, buf, len)) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

}  // namespace strata::api

extern "C" {

int strata_option_set(const char* name, const char* value) {
  return strata::api::option_set(name, value);
}
int strata_option_get(const char* name, char* buf, size_t len) {
  return strata::api::option_get(name, buf, len);
}

}  // extern "C"
