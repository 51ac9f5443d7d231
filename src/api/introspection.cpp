// glibc's tuning and introspection interface (see introspection.h).
#include "api/introspection.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

#include "check/report.h"
#include "large/large.h"
#include "options/options.h"
#include "platform/lock.h"
#include "slab/slab_pool.h"

namespace strata::api {
namespace {

// mallopt may race with other mallopt calls; the fields it writes are read
// without a lock by the allocator, which tolerates either value.
constinit SpinLock g_options_lock;

struct SlabTotals {
  size_t slabs = 0;
  size_t in_use_bytes = 0;  // blocks handed out
  size_t free_bytes = 0;    // free blocks inside slabs
};

void add_slab(const Slab* slab, void* context) {
  auto* totals = static_cast<SlabTotals*>(context);
  size_t bytes = static_cast<size_t>(slab->units) * kUnitSize;
  size_t used = static_cast<size_t>(slab->used) * slab->block_size;
  ++totals->slabs;
  totals->in_use_bytes += used;
  totals->free_bytes += bytes - used;
}

}  // namespace

int mallopt(int param, int value) {
  runtime::ensure_ready();
  LockGuard guard(g_options_lock);
  int result = options_mallopt(param, value);
  runtime::options_changed();
  return result;
}

struct mallinfo2 mallinfo2() {
  runtime::ensure_ready();
  SlabTotals totals;
  slab_pool::for_each_slab(add_slab, &totals);
  slab_pool::Usage pool = slab_pool::usage();
  large::Usage big = large::usage();
  struct mallinfo2 info = {};
  // arena: bytes of the non-mapped heap: slabs, free units still resident,
  // and retained large blocks (live or cached).
  info.arena = pool.slab_bytes + pool.dirty_bytes + big.retained_bytes + big.cached_bytes;
  info.ordblks = totals.slabs + big.cached_blocks;
  info.smblks = 0;
  info.hblks = big.mapped_blocks;
  info.hblkhd = big.mapped_bytes;
  info.usmblks = 0;
  info.fsmblks = 0;
  info.uordblks = totals.in_use_bytes + big.retained_bytes;
  info.fordblks = info.arena - info.uordblks;
  info.keepcost = pool.dirty_bytes + big.cached_bytes;
  return info;
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
  struct mallinfo2 info = mallinfo2();
  large::Usage big = large::usage();
  char buffer[512];
  report::Writer w(buffer, sizeof buffer);
  // glibc's layout: one block per arena, then the totals.
  w.text("Arena 0:\nsystem bytes     = ").number(info.arena);
  w.text("\nin use bytes     = ").number(info.uordblks);
  w.text("\nTotal (incl. mmap):\nsystem bytes     = ").number(info.arena + info.hblkhd);
  w.text("\nin use bytes     = ").number(info.uordblks + info.hblkhd);
  w.text("\nmax mmap regions = ").number(big.mapped_blocks);
  w.text("\nmax mmap bytes   = ").number(big.max_mapped_bytes).text("\n");
  w.flush(STDERR_FILENO);
}

int malloc_info(int options, FILE* stream) {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  struct mallinfo2 info = mallinfo2();
  fprintf(stream, "<malloc version=\"1\">\n");
  fprintf(stream, "<heap nr=\"0\">\n<sizes>\n</sizes>\n");
  fprintf(stream, "<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(stream, "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n", info.ordblks,
          info.fordblks);
  fprintf(stream, "<system type=\"current\" size=\"%zu\"/>\n", info.arena);
  fprintf(stream, "<system type=\"max\" size=\"%zu\"/>\n", info.arena);
  fprintf(stream, "<aspace type=\"total\" size=\"%zu\"/>\n", info.arena);
  fprintf(stream, "<aspace type=\"mprotect\" size=\"%zu\"/>\n", info.arena);
  fprintf(stream, "</heap>\n");
  fprintf(stream, "<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(stream, "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n", info.ordblks,
          info.fordblks);
  fprintf(stream, "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n", info.hblks, info.hblkhd);
  fprintf(stream, "<system type=\"current\" size=\"%zu\"/>\n", info.arena);
  fprintf(stream, "<system type=\"max\" size=\"%zu\"/>\n", info.arena);
  fprintf(stream, "<aspace type=\"total\" size=\"%zu\"/>\n", info.arena);
  fprintf(stream, "<aspace type=\"mprotect\" size=\"%zu\"/>\n", info.arena);
  fprintf(stream, "</malloc>\n");
  return 0;
}

}  // namespace strata::api
