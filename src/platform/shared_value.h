// Reads of shared values that other threads may change, as atomics, in the
// instruction that uses them (x86-64).
//
// The fast paths test the limits in g_fast and a carved bound, and take a
// bin offset out of a slab map entry, on every call. Written with
// __atomic_load_n, g++ and clang load the value into a register first (they
// never fold an atomic load into another instruction): one instruction more
// each. On x86-64 an aligned load of 8 bytes or fewer is atomic, and has
// acquire ordering, whether or not it is part of another instruction, so
// the reads below have the same guarantees.
#ifndef STRATA_PLATFORM_SHARED_VALUE_H
#define STRATA_PLATFORM_SHARED_VALUE_H

#include <cstdint>

#include "platform/instructions.h"  // STRATA_INLINE_ASM

namespace strata::shared_value {

// value < *limit, *limit read once (relaxed).
inline bool below(uintptr_t value, const uintptr_t* limit) {
#if STRATA_INLINE_ASM
  bool result;
  asm("cmpq %[limit], %[value]" : "=@ccb"(result) : [value] "r"(value), [limit] "m"(*limit));
  return result;
#else
  return value < __atomic_load_n(limit, __ATOMIC_RELAXED);
#endif
}

// value < *limit, *limit read once with acquire ordering: what was written
// before the release store of *limit that this read sees is visible to the
// reads after it. The memory clobber keeps the compiler from moving those
// reads above it (the processor does not).
inline bool below_acquire(uintptr_t value, const uintptr_t* limit) {
#if STRATA_INLINE_ASM
  bool result;
  asm volatile("cmpq %[limit], %[value]"
               : "=@ccb"(result)
               : [value] "r"(value), [limit] "m"(*limit)
               : "memory");
  return result;
#else
  return value < __atomic_load_n(limit, __ATOMIC_ACQUIRE);
#endif
}

// The low 16 bits of *value, read once (relaxed), in one load.
inline uint64_t low_16_bits(const uint64_t* value) {
#if STRATA_INLINE_ASM
  uint64_t result;
  asm("movzwl %[value], %k[result]" : [result] "=r"(result) : [value] "m"(*value));
  return result;
#else
  return __atomic_load_n(value, __ATOMIC_RELAXED) & 0xffff;
#endif
}

}  // namespace strata::shared_value

#endif  // STRATA_PLATFORM_SHARED_VALUE_H
