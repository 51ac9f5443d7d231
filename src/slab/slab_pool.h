// The slab pool: the process-wide source of slabs. It owns every segment,
// hands out runs of units as slabs, takes empty slabs back and decides when
// their memory goes back to the kernel (a byte budget plus an age limit).
// One lock guards it; it is taken once per slab (tens of KiB of blocks), never
// per block.
#ifndef STRATA_SLAB_SLAB_POOL_H
#define STRATA_SLAB_SLAB_POOL_H

#include <cstddef>
#include <cstdint>

#include "slab/segment.h"

namespace strata::slab_pool {

// A new slab of `size_class` owned by `owner`, or nullptr with errno ENOMEM.
// `bin_offset`: where the heaps keep the class's bin (Slab::bin_offset).
Slab* allocate(size_t size_class, ThreadHeap* owner, uint16_t bin_offset);

// Takes back a slab with no blocks in use. Its memory stays resident until
// the dirty budget or age limit sends it back to the kernel.
void release(Slab* slab);

// Purges memory that has been dirty for longer than the purge delay. Cheap to
// call often: it returns at once unless a tick is due.
void tick(uint64_t now_ms);

// Returns all dirty memory to the kernel now (malloc_trim). Returns the bytes
// released.
size_t purge_all();

struct Usage {
  size_t segments = 0;      // segments reserved
  size_t reserved = 0;      // bytes of address space reserved
  size_t slab_bytes = 0;    // bytes in slabs (in use by some heap)
  size_t dirty_bytes = 0;   // free but resident (not yet purged)
  size_t purged_bytes = 0;  // total ever returned to the kernel
  size_t brk_bytes = 0;     // bytes of segments on the data segment
  size_t dirty_runs = 0;    // runs of adjacent dirty units (free chunks, for mallinfo)
  size_t peak_bytes = 0;    // highest slab_bytes + dirty_bytes so far
};
Usage usage();

// Calls visit(slab) for every live slab, under the pool lock. Reads of the
// slab's owner-side fields are racy snapshots unless the owner is quiescent.
void for_each_slab(void (*visit)(const Slab*, void*), void* context);

// fork() support: hold the lock across fork, reset it in the child.
void fork_prepare();
void fork_parent();
void fork_child();

}  // namespace strata::slab_pool

#endif  // STRATA_SLAB_SLAB_POOL_H
