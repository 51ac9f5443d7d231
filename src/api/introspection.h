// glibc's tuning and introspection interface over strata's heap (mallopt,
// mallinfo/mallinfo2, malloc_stats, malloc_info) and strata's option setters.
// The numbers come from one statistics snapshot (stats.h), so they agree with
// each other and with what the process really holds.
#ifndef STRATA_API_INTROSPECTION_H
#define STRATA_API_INTROSPECTION_H

#include <malloc.h>
#include <stdio.h>

#include "api/allocator.h"

namespace strata::api {

int mallopt(int param, int value);

// glibc's fields for strata, the whole process being one arena:
//   arena     slabs, freed but resident units, and large blocks below the
//             mmap threshold (held or cached): memory not mapped per block
//   uordblks  small blocks in use and large blocks held below the threshold
//   fordblks  arena - uordblks
//   smblks    free blocks inside slabs (glibc: fastbin chunks); fsmblks bytes
//   ordblks   other free chunks: runs of freed units, cached large blocks
//   hblks     large blocks at or above the mmap threshold; hblkhd their bytes
//   usmblks   0, as in glibc
//   keepcost  what malloc_trim(0) would release now: freed units, cached
//             large blocks, empty slabs of this thread and of exited threads
struct mallinfo2 mallinfo2();
// The legacy int fields saturate at INT_MAX instead of wrapping.
struct mallinfo mallinfo();
// On stderr, with write(2): allocates nothing, so it cannot deadlock.
void malloc_stats();
// -1 with errno EINVAL for options != 0, as documented (glibc 2.36 itself
// returns EINVAL without setting errno: both are nonzero).
int malloc_info(int options, FILE* stream);

// strata_option_set / strata_option_get: 0, or -1 with errno EINVAL.
int option_set(const char* name, const char* value);
int option_get(const char* name, char* buf, size_t len);

}  // namespace strata::api

#endif  // STRATA_API_INTROSPECTION_H
