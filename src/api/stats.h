// strata's statistics: one snapshot of every layer's own accounting (thread
// heaps' counters, the slab pool, the large-object registry) plus what the
// kernel says about the process, and the text forms of it (JSON, the table
// printed at exit). glibc's mallinfo2/malloc_stats/malloc_info are computed
// from the same snapshot (introspection.cpp), so all of them agree.
//
// Nothing here allocates: the snapshot takes each layer's lock in turn (never
// two at once) and output goes through a fixed buffer.
#ifndef STRATA_API_STATS_H
#define STRATA_API_STATS_H

#include <stdio.h>
#include <strata/strata.h>

#include <cstddef>
#include <cstdint>

#include "large/large.h"
#include "sizeclass/size_classes.h"
#include "slab/slab_pool.h"

namespace strata::stats {

static_assert(kNumClasses <= STRATA_STATS_MAX_CLASSES);

struct ClassUsage {
  uint64_t allocations = 0;  // summed over every heap's counters
  uint64_t in_use = 0;       // blocks handed out and not yet back (the slabs' `used`,
                             // less the blocks waiting in the heaps' bins)
  uint64_t binned = 0;       // blocks freed into a heap's bin (used in their slab)
  uint64_t capacity = 0;     // blocks the class's slabs hold
  uint64_t slabs = 0;
  uint64_t slab_bytes = 0;
  // Frees need no counter of their own: what was handed out and is no
  // longer in use came back. (take() keeps allocations >= in_use.)
  uint64_t frees() const { return allocations - in_use; }
};

struct Snapshot {
  ClassUsage classes[kNumClasses];
  uint64_t remote_frees = 0;
  uint64_t refills = 0;
  size_t heaps = 0;
  size_t heaps_in_use = 0;
  // Empty slabs that malloc_trim gives back (the calling thread's and
  // parked heaps'); those of other live threads stay with their owner.
  size_t releasable_slab_bytes = 0;
  slab_pool::Usage pool;
  large::Usage large;
  size_t mmap_threshold = 0;
  uint64_t guarded = 0;
  uint64_t check_slots = 0;

  // Bytes of the slabs counted above (the pool's own total may have moved
  // on since: the figures are all taken from the same walk).
  uint64_t slab_bytes() const;
  uint64_t small_in_use_bytes() const;
  uint64_t small_free_blocks() const;
  uint64_t small_free_bytes() const;
  uint64_t large_live_bytes() const { return large.mapped_bytes + large.retained_bytes; }
  uint64_t metadata_bytes() const;
};

// Takes a snapshot of the allocator (starting it if needed).
void take(Snapshot* out);

// Fills the C API's struct from a snapshot plus the kernel's view of the
// process. `out->size` bounds what is written.
void fill(const Snapshot& snapshot, strata_stats* out);

// Text output without allocation: into a caller's buffer with snprintf's
// contract, to a file descriptor (write(2)), or to a stdio stream (fwrite,
// which may allocate its buffer: only ever called with no lock held).
class Out {
 public:
  Out(char* buffer, size_t capacity);
  explicit Out(int fd);
  explicit Out(FILE* stream);
  ~Out() { finish(); }
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;

  Out& put(char c);
  Out& text(const char* s);
  Out& number(uint64_t value);
  // Right-aligned in `width` columns (glibc's %10u and table columns).
  Out& number(uint64_t value, size_t width);
  // With thousands separators: 1,234,567.
  Out& grouped(uint64_t value, size_t width);
  // A byte count for people: 0 B, 512 B, 1.5 KiB, 12.0 MiB.
  Out& bytes(uint64_t value, size_t width);
  // Spaces up to `column` (at least one).
  Out& pad_to(size_t column);
  // Characters produced so far (for the buffer: including what did not fit).
  size_t length() const { return total_; }
  // Writes out what is buffered; for a caller's buffer, NUL-terminates it.
  void finish();

 private:
  enum class Sink { kBuffer, kFd, kStream };
  void flush();
  Out& padded(const char* s, size_t len, size_t width);

  Sink sink_;
  char* dest_ = nullptr;  // kBuffer
  size_t capacity_ = 0;
  int fd_ = -1;             // kFd
  FILE* stream_ = nullptr;  // kStream
  char local_[512];
  size_t used_ = 0;
  size_t total_ = 0;
  size_t column_ = 0;
};

void write_json(Out& out, const strata_stats& stats);
// The readable table (strata_stats_print, STRATA_OPTIONS=stats=1).
void write_table(Out& out, const strata_stats& stats);

}  // namespace strata::stats

#endif  // STRATA_API_STATS_H
