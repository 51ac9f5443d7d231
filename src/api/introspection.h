// glibc's tuning and introspection interface over strata's heap: mallopt,
// mallinfo/mallinfo2, malloc_stats, malloc_info. The numbers come from the
// layers' own accounting (slab pool, large-object registry), so they agree
// with what the process really holds.
#ifndef STRATA_API_INTROSPECTION_H
#define STRATA_API_INTROSPECTION_H

#include <malloc.h>
#include <stdio.h>

#include "api/allocator.h"

namespace strata::api {

int mallopt(int param, int value);
struct mallinfo2 mallinfo2();
// The legacy int fields saturate at INT_MAX instead of wrapping.
struct mallinfo mallinfo();
void malloc_stats();
int malloc_info(int options, FILE* stream);

}  // namespace strata::api

#endif  // STRATA_API_INTROSPECTION_H
