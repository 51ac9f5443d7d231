// Tests of shared values that other threads may change, as relaxed atomic
// reads folded into the test itself: one instruction each on x86-64.
//
// The fast paths test the limits in g_fast and a byte of the segment map on
// every call. Written as __atomic_load_n, g++ and clang load the value into a
// register and then compare it (they never fold an atomic load into another
// instruction): one instruction more per test, three per malloc+free pair.
// An aligned load of 8 bytes or fewer is atomic on x86-64 whether or not it
// is part of a compare, so the asm below reads with the same guarantee.
#ifndef STRATA_PLATFORM_RELAXED_H
#define STRATA_PLATFORM_RELAXED_H

#include <cstdint>

namespace strata::relaxed {

// value < *limit, *limit read once (relaxed).
inline bool below(uintptr_t value, const uintptr_t* limit) {
#if defined(__x86_64__)
  bool result;
  asm("cmpq %[limit], %[value]" : "=@ccb"(result) : [value] "r"(value), [limit] "m"(*limit));
  return result;
#else
  return value < __atomic_load_n(limit, __ATOMIC_RELAXED);
#endif
}

// *byte != 0, read once (relaxed).
inline bool nonzero(const uint8_t* byte) {
#if defined(__x86_64__)
  bool result;
  asm("cmpb $0, %[byte]" : "=@ccne"(result) : [byte] "m"(*byte));
  return result;
#else
  return __atomic_load_n(byte, __ATOMIC_RELAXED) != 0;
#endif
}

}  // namespace strata::relaxed

#endif  // STRATA_PLATFORM_RELAXED_H
