// strata's statistics and their C API (see stats.h and strata.h).
#include "api/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "check/checked.h"
#include "check/guard.h"
#include "heap/central_heap.h"
#include "heap/runtime.h"
#include "heap/thread_heap.h"
#include "options/options.h"
#include "platform/code_layout.h"
#include "platform/os.h"
#include "slab/segment.h"
#include "slab/slab.h"

namespace strata::stats {
namespace {

// The heaps' counters and the slabs' `used` belong to their owner threads,
// which update them without atomics; statistics read them while those
// threads run and accept a slightly stale value.
__attribute__((no_sanitize("thread"))) void add_heap(const ThreadHeap* heap, void* context) {
  auto* s = static_cast<Snapshot*>(context);
  const ThreadHeap::Counters& counters = heap->counters();
  for (size_t i = 0; i < kNumClasses; ++i) {
    s->classes[i].allocations += heap->allocations(i);
    s->classes[i].binned += heap->binned(i);
  }
  s->remote_frees += counters.remote_frees;
  s->refills += counters.refills;
  ++s->heaps;
  if (heap->in_use) ++s->heaps_in_use;
}

__attribute__((no_sanitize("thread"))) void add_slab(const Slab* slab, void* context) {
  auto* s = static_cast<Snapshot*>(context);
  ClassUsage& usage = s->classes[slab->size_class];
  uint64_t bytes = uint64_t{slab->units} * kUnitSize;
  uint32_t used = slab->used;
  usage.in_use += used;
  usage.capacity += slab->capacity;
  ++usage.slabs;
  usage.slab_bytes += bytes;
  const ThreadHeap* owner = slab->owner;
  if (used == 0 && owner != nullptr && (owner == tls_heap || !owner->in_use)) {
    s->releasable_slab_bytes += bytes;
  }
}

// Reads a small /proc file into buf (NUL-terminated); false if unreadable.
bool read_proc(const char* path, char* buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n;
  do {
    n = read(fd, buf, size - 1);
  } while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}

struct Process {
  uint64_t resident = 0;
  uint64_t peak_resident = 0;
  uint64_t minor_faults = 0;
  uint64_t major_faults = 0;
};

Process read_process() {
  os::ErrnoGuard keep_errno;
  Process p;
  // statm: size resident shared text lib data dt, in pages.
  char buf[128];
  if (read_proc("/proc/self/statm", buf, sizeof buf)) {
    const char* c = buf;
    while (*c != '\0' && *c != ' ') ++c;
    uint64_t pages = 0;
    for (++c; *c >= '0' && *c <= '9'; ++c) pages = pages * 10 + static_cast<uint64_t>(*c - '0');
    p.resident = pages * os::g_caps.page_size;
  }
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    // The kernel updates its high-water mark lazily: it may lag behind.
    p.peak_resident = static_cast<uint64_t>(usage.ru_maxrss) * 1024;
    if (p.peak_resident < p.resident) p.peak_resident = p.resident;
    p.minor_faults = static_cast<uint64_t>(usage.ru_minflt);
    p.major_faults = static_cast<uint64_t>(usage.ru_majflt);
  }
  return p;
}

size_t round_to_page(size_t bytes) {
  size_t page = os::g_caps.page_size;
  return (bytes + page - 1) & ~(page - 1);
}

}  // namespace

uint64_t Snapshot::slab_bytes() const {
  uint64_t total = 0;
  for (const ClassUsage& c : classes) total += c.slab_bytes;
  return total;
}

uint64_t Snapshot::small_in_use_bytes() const {
  uint64_t total = 0;
  for (size_t i = 0; i < kNumClasses; ++i) total += classes[i].in_use * kSizeClasses[i].block_size;
  return total;
}

uint64_t Snapshot::small_free_blocks() const {
  uint64_t total = 0;
  for (const ClassUsage& c : classes) total += c.capacity > c.in_use ? c.capacity - c.in_use : 0;
  return total;
}

uint64_t Snapshot::small_free_bytes() const {
  uint64_t total = 0;
  for (size_t i = 0; i < kNumClasses; ++i) {
    const ClassUsage& c = classes[i];
    if (c.capacity > c.in_use) total += (c.capacity - c.in_use) * kSizeClasses[i].block_size;
  }
  return total;
}

uint64_t Snapshot::metadata_bytes() const {
  return pool.segments * round_to_page(sizeof(Segment)) + heaps * sizeof(ThreadHeap);
}

void take(Snapshot* out) {
  runtime::ensure_ready();
  *out = Snapshot{};
  runtime::for_each_heap(add_heap, out);
  out->remote_frees += central::remote_frees();
  slab_pool::for_each_slab(add_slab, out);
  // Counters summed first, blocks in use counted after: allocations made in
  // between would show as more blocks in use than ever handed out.
  for (ClassUsage& c : out->classes) {
    c.in_use -= c.binned < c.in_use ? c.binned : c.in_use;
    if (c.in_use > c.allocations) c.allocations = c.in_use;
  }
  out->pool = slab_pool::usage();
  out->large = large::usage();
  out->mmap_threshold = large::mmap_threshold();
  out->guarded = guard::allocations();
  out->check_slots = check::table_slots();
}

void fill(const Snapshot& s, strata_stats* out) {
  strata_stats all;
  std::memset(&all, 0, sizeof all);
  all.version = STRATA_STATS_VERSION;
  all.num_classes = kNumClasses;
  uint64_t large_live = s.large_live_bytes();
  all.allocated = s.small_in_use_bytes() + large_live;
  all.active = s.slab_bytes() + large_live;
  all.dirty = s.pool.dirty_bytes;
  all.cached = s.large.cached_bytes;
  all.metadata = s.metadata_bytes();
  all.mapped = all.active + all.dirty + all.cached + all.metadata;
  all.reserved = s.pool.reserved + large_live + s.large.cached_bytes;
  all.purged = s.pool.purged_bytes;
  all.peak = s.pool.peak_bytes;

  uint64_t small_allocations = 0;
  uint64_t small_frees = 0;
  uint64_t slabs = 0;
  for (size_t i = 0; i < kNumClasses; ++i) {
    const ClassUsage& c = s.classes[i];
    strata_class_stats& row = all.classes[i];
    row.block_size = kSizeClasses[i].block_size;
    row.allocations = c.allocations;
    row.frees = c.frees();
    row.in_use = c.in_use;
    row.slabs = c.slabs;
    row.slab_bytes = c.slab_bytes;
    small_allocations += c.allocations;
    small_frees += c.frees();
    slabs += c.slabs;
  }
  all.mallocs = small_allocations + s.large.allocations;
  all.frees = small_frees + s.large.frees;
  all.remote_frees = s.remote_frees;
  all.refills = s.refills;

  all.large_allocations = s.large.allocations;
  all.large_frees = s.large.frees;
  all.large_in_use = s.large.mapped_blocks + s.large.retained_blocks;
  all.large_bytes = large_live;
  all.large_mapped = s.large.mapped_blocks;
  all.large_mapped_bytes = s.large.mapped_bytes;
  all.large_max_mapped = s.large.max_mapped_blocks;
  all.large_max_mapped_bytes = s.large.max_mapped_bytes;
  all.large_cached = s.large.cached_blocks;
  all.mmap_threshold = s.mmap_threshold;

  all.heaps = s.heaps;
  all.heaps_in_use = s.heaps_in_use;
  all.segments = s.pool.segments;
  all.slabs = slabs;
  all.guarded = s.guarded;
  all.check_slots = s.check_slots;

  Process p = read_process();
  all.resident = p.resident;
  all.peak_resident = p.peak_resident;
  all.minor_faults = p.minor_faults;
  all.major_faults = p.major_faults;

  size_t size = out->size < sizeof all ? out->size : sizeof all;
  all.size = size;
  std::memcpy(out, &all, size);
}

// --- Out ---------------------------------------------------------------------------

Out::Out(char* buffer, size_t capacity) : sink_(Sink::kBuffer), dest_(buffer), capacity_(capacity) {
  if (capacity_ != 0) dest_[0] = '\0';
}
Out::Out(int fd) : sink_(Sink::kFd), fd_(fd) {}
Out::Out(FILE* stream) : sink_(Sink::kStream), stream_(stream) {}

Out& Out::put(char c) {
  if (sink_ == Sink::kBuffer) {
    if (total_ + 1 < capacity_) dest_[total_] = c;
  } else {
    if (used_ == sizeof local_) flush();
    local_[used_++] = c;
  }
  ++total_;
  column_ = c == '\n' ? 0 : column_ + 1;
  return *this;
}

Out& Out::text(const char* s) {
  while (*s != '\0') put(*s++);
  return *this;
}

Out& Out::padded(const char* s, size_t len, size_t width) {
  for (size_t i = len; i < width; ++i) put(' ');
  for (size_t i = 0; i < len; ++i) put(s[i]);
  return *this;
}

Out& Out::number(uint64_t value) { return number(value, 0); }

Out& Out::number(uint64_t value, size_t width) {
  char digits[24];
  size_t n = sizeof digits;
  do {
    digits[--n] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  return padded(digits + n, sizeof digits - n, width);
}

Out& Out::grouped(uint64_t value, size_t width) {
  char digits[32];
  size_t n = sizeof digits;
  size_t count = 0;
  do {
    if (count != 0 && count % 3 == 0) digits[--n] = ',';
    digits[--n] = static_cast<char>('0' + value % 10);
    value /= 10;
    ++count;
  } while (value != 0);
  return padded(digits + n, sizeof digits - n, width);
}

Out& Out::bytes(uint64_t value, size_t width) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  char buf[32];
  Out local(buf, sizeof buf);
  if (value < 1024) {
    local.number(value).text(" B");
  } else {
    size_t unit = 0;
    uint64_t scale = 1024;
    while (unit + 1 < sizeof kUnits / sizeof kUnits[0] && value / scale >= 1024) {
      scale *= 1024;
      ++unit;
    }
    uint64_t whole = value / scale;
    uint64_t tenth = (value % scale) / (scale / 10);
    local.number(whole).put('.').number(tenth).put(' ').text(kUnits[unit]);
  }
  local.finish();
  return padded(buf, local.length(), width);
}

Out& Out::pad_to(size_t column) {
  do put(' ');
  while (column_ < column);
  return *this;
}

void Out::flush() {
  if (used_ == 0) return;
  if (sink_ == Sink::kFd)
    os::write_all(fd_, local_, used_);
  else if (sink_ == Sink::kStream)
    fwrite(local_, 1, used_, stream_);
  used_ = 0;
}

void Out::finish() {
  if (sink_ == Sink::kBuffer) {
    if (capacity_ != 0) dest_[total_ < capacity_ ? total_ : capacity_ - 1] = '\0';
  } else {
    flush();
  }
}

// --- JSON and the table ------------------------------------------------------------

namespace {

struct Field {
  const char* name;
  unsigned long long strata_stats::*member;
};

void write_object(Out& out, const char* name, const strata_stats& stats, const Field* fields,
                  size_t count) {
  out.put('"').text(name).text("\":{");
  for (size_t i = 0; i < count; ++i) {
    if (i != 0) out.put(',');
    out.put('"').text(fields[i].name).text("\":").number(stats.*fields[i].member);
  }
  out.put('}');
}

const Field kMemory[] = {
    {"allocated", &strata_stats::allocated}, {"active", &strata_stats::active},
    {"dirty", &strata_stats::dirty},         {"cached", &strata_stats::cached},
    {"metadata", &strata_stats::metadata},   {"mapped", &strata_stats::mapped},
    {"reserved", &strata_stats::reserved},   {"purged", &strata_stats::purged},
    {"peak", &strata_stats::peak},
};
const Field kCalls[] = {
    {"mallocs", &strata_stats::mallocs},           {"frees", &strata_stats::frees},
    {"remote_frees", &strata_stats::remote_frees}, {"refills", &strata_stats::refills},
    {"guarded", &strata_stats::guarded},
};
const Field kLarge[] = {
    {"allocations", &strata_stats::large_allocations},
    {"frees", &strata_stats::large_frees},
    {"in_use", &strata_stats::large_in_use},
    {"bytes", &strata_stats::large_bytes},
    {"mapped", &strata_stats::large_mapped},
    {"mapped_bytes", &strata_stats::large_mapped_bytes},
    {"max_mapped", &strata_stats::large_max_mapped},
    {"max_mapped_bytes", &strata_stats::large_max_mapped_bytes},
    {"cached", &strata_stats::large_cached},
    {"cached_bytes", &strata_stats::cached},
    {"mmap_threshold", &strata_stats::mmap_threshold},
};
const Field kStructure[] = {
    {"heaps", &strata_stats::heaps},
    {"heaps_in_use", &strata_stats::heaps_in_use},
    {"segments", &strata_stats::segments},
    {"slabs", &strata_stats::slabs},
    {"check_slots", &strata_stats::check_slots},
};
const Field kProcess[] = {
    {"resident", &strata_stats::resident},
    {"peak_resident", &strata_stats::peak_resident},
    {"minor_faults", &strata_stats::minor_faults},
    {"major_faults", &strata_stats::major_faults},
};

template <size_t N>
void write_object(Out& out, const char* name, const strata_stats& stats, const Field (&fields)[N]) {
  out.put(',');
  write_object(out, name, stats, fields, N);
}

bool class_was_used(const strata_class_stats& c) { return c.allocations != 0 || c.slabs != 0; }

// The program's name, for the table's title (/proc/self/comm, at most 15
// characters, without its newline).
void write_program_name(Out& out) {
  char name[32];
  if (!read_proc("/proc/self/comm", name, sizeof name)) return;
  out.text(" (");
  for (const char* c = name; *c != '\0' && *c != '\n'; ++c)
    out.put(*c >= ' ' && *c < 127 ? *c : '?');
  out.put(')');
}

// A line of the summary: its label, then the value right-aligned.
constexpr size_t kValueWidth = 11;
Out& value(Out& out, const char* label) { return out.text("  ").text(label).pad_to(14); }

Out& count(Out& out, uint64_t n, const char* one, const char* many) {
  return out.grouped(n, 0).put(' ').text(n == 1 ? one : many);
}

}  // namespace

void write_json(Out& out, const strata_stats& stats) {
  out.text("{\"version\":").number(stats.version);
  write_object(out, "memory", stats, kMemory);
  write_object(out, "calls", stats, kCalls);
  write_object(out, "large", stats, kLarge);
  write_object(out, "structure", stats, kStructure);
  write_object(out, "process", stats, kProcess);
  out.text(",\"classes\":[");
  bool first = true;
  for (size_t i = 0; i < stats.num_classes && i < STRATA_STATS_MAX_CLASSES; ++i) {
    const strata_class_stats& c = stats.classes[i];
    if (!class_was_used(c)) continue;
    if (!first) out.put(',');
    first = false;
    out.text("{\"class\":").number(i);
    out.text(",\"block_size\":").number(c.block_size);
    out.text(",\"allocations\":").number(c.allocations);
    out.text(",\"frees\":").number(c.frees);
    out.text(",\"in_use\":").number(c.in_use);
    out.text(",\"in_use_bytes\":").number(c.in_use * c.block_size);
    out.text(",\"slabs\":").number(c.slabs);
    out.text(",\"slab_bytes\":").number(c.slab_bytes).put('}');
  }
  out.text("]}");
}

void write_table(Out& out, const strata_stats& s) {
  out.text("strata statistics for pid ").number(static_cast<uint64_t>(getpid()));
  write_program_name(out);
  out.put('\n');
  uint64_t small_bytes = s.allocated > s.large_bytes ? s.allocated - s.large_bytes : 0;
  uint64_t small_blocks = 0;
  for (size_t i = 0; i < s.num_classes && i < STRATA_STATS_MAX_CLASSES; ++i)
    small_blocks += s.classes[i].in_use;

  value(out, "allocated").bytes(s.allocated, kValueWidth);
  out.text("   held by the program: ").bytes(small_bytes, 0).text(" small (");
  count(out, small_blocks, "block", "blocks").text("), ").bytes(s.large_bytes, 0);
  out.text(" large (");
  count(out, s.large_in_use, "block", "blocks").text(")\n");
  value(out, "active").bytes(s.active, kValueWidth);
  out.text("   slabs in use and large blocks held\n");
  value(out, "dirty").bytes(s.dirty, kValueWidth);
  out.text("   freed small-block memory still resident, kept for reuse\n");
  value(out, "cached").bytes(s.cached, kValueWidth);
  out.text("   freed large blocks kept for reuse (");
  count(out, s.large_cached, "block", "blocks").text(")\n");
  value(out, "metadata").bytes(s.metadata, kValueWidth);
  out.text("   segment headers and thread heaps\n");
  value(out, "mapped").bytes(s.mapped, kValueWidth);
  out.text("   all strata holds: active + dirty + cached + metadata\n");
  value(out, "reserved").bytes(s.reserved, kValueWidth);
  out.text("   address space (");
  count(out, s.segments, "segment", "segments").text(" of 4 MiB, and the large blocks)\n");
  value(out, "purged").bytes(s.purged, kValueWidth);
  out.text("   small-block memory returned to the kernel so far\n");
  value(out, "resident").bytes(s.resident, kValueWidth);
  out.text("   the whole process now; peak ").bytes(s.peak_resident, 0).put('\n');
  value(out, "page faults").grouped(s.minor_faults, kValueWidth);
  out.text("   minor; major ").grouped(s.major_faults, 0).put('\n');
  value(out, "mallocs").grouped(s.mallocs, kValueWidth);
  out.text("   blocks handed out; frees ").grouped(s.frees, 0).text(", of which remote ");
  out.grouped(s.remote_frees, 0).text("; refills ").grouped(s.refills, 0).put('\n');
  if (s.guarded != 0) {
    value(out, "guarded").grouped(s.guarded, kValueWidth);
    out.text("   blocks placed against a guard page (sampling)\n");
  }
  if (s.check_slots != 0) {
    value(out, "check slots").grouped(s.check_slots, kValueWidth);
    out.text("   the live-block table of check mode, 8 bytes each\n");
  }
  value(out, "heaps").grouped(s.heaps, kValueWidth);
  out.text("   thread heaps, in use ").grouped(s.heaps_in_use, 0).text("; slabs ");
  out.grouped(s.slabs, 0).put('\n');

  out.text("\n  class     block   allocations         frees        in use  bytes in use");
  out.text("   slabs  slab bytes\n");
  for (size_t i = 0; i < s.num_classes && i < STRATA_STATS_MAX_CLASSES; ++i) {
    const strata_class_stats& c = s.classes[i];
    if (!class_was_used(c)) continue;
    out.text("  ").number(i, 5).number(c.block_size, 10).grouped(c.allocations, 14);
    out.grouped(c.frees, 14).grouped(c.in_use, 14).bytes(c.in_use * c.block_size, 14);
    out.grouped(c.slabs, 8).bytes(c.slab_bytes, 12).put('\n');
  }
  out.text("  large          ").grouped(s.large_allocations, 14).grouped(s.large_frees, 14);
  out.grouped(s.large_in_use, 14).bytes(s.large_bytes, 14).put('\n');
  out.text("  large blocks at or above the mmap threshold (now ").bytes(s.mmap_threshold, 0);
  out.text(") have a mapping of their own: ").grouped(s.large_mapped, 0).text(" now, at most ");
  out.grouped(s.large_max_mapped, 0).text(" (").bytes(s.large_max_mapped_bytes, 0);
  out.text(") at once\n");
}

}  // namespace strata::stats

using strata::stats::Out;

namespace {

void print_stats(int fd) {
  strata::stats::Snapshot snapshot;
  strata::stats::take(&snapshot);
  strata_stats stats;
  stats.size = sizeof stats;
  strata::stats::fill(snapshot, &stats);
  Out out(fd);
  strata::stats::write_table(out, stats);
}

// The process this image was loaded into. A child forked without exec
// inherits a copy of its parent's heap and counters: it stays silent at
// exit, or every subshell of a shell script would print its parent's table.
constinit pid_t g_loaded_by = 0;
STRATA_STARTUP_CODE __attribute__((constructor)) void remember_pid() { g_loaded_by = getpid(); }

// STRATA_OPTIONS=stats=1: the table on stderr when the process exits. A
// destructor runs on exit() as on a return from main, after the program's
// atexit handlers (and, for libstrata.so, after the libraries loaded after
// it), so the numbers are the program's last. stats is only ever true once
// the options were read, that is once the allocator was started.
STRATA_STARTUP_CODE __attribute__((destructor)) void print_at_exit() {
  if (!strata::g_options.stats || getpid() != g_loaded_by) return;
  strata::os::ErrnoGuard keep_errno;
  print_stats(STDERR_FILENO);
}

}  // namespace

extern "C" {

int strata_stats_get(struct strata_stats* stats) {
  if (stats == nullptr || stats->size < offsetof(strata_stats, allocated)) {
    errno = EINVAL;
    return -1;
  }
  strata::stats::Snapshot snapshot;
  strata::stats::take(&snapshot);
  strata::stats::fill(snapshot, stats);
  return 0;
}

size_t strata_stats_json(char* buf, size_t len) {
  strata::stats::Snapshot snapshot;
  strata::stats::take(&snapshot);
  strata_stats stats;
  stats.size = sizeof stats;
  strata::stats::fill(snapshot, &stats);
  Out out(buf, buf == nullptr ? 0 : len);
  strata::stats::write_json(out, stats);
  out.finish();
  return out.length();
}

void strata_stats_print(int fd) { print_stats(fd); }

}  // extern "C"
