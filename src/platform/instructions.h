// Single instructions the fast paths need and the compilers do not choose by
// themselves (x86-64; elsewhere, and under ThreadSanitizer, the plain C++
// they stand for).
//
// Each saves one instruction per call on malloc's or free's fast path,
// measured with bench/fastpath (callgrind) on g++ 12 and clang 14.
#ifndef STRATA_PLATFORM_INSTRUCTIONS_H
#define STRATA_PLATFORM_INSTRUCTIONS_H

#include <cstdint>

// Whether the helpers here and in platform/shared_value.h are inline asm.
// ThreadSanitizer does not see inside asm: its builds use the C++ the asm
// stands for, so that it checks those accesses like any other.
#if defined(__SANITIZE_THREAD__)
#define STRATA_INLINE_ASM 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRATA_INLINE_ASM 0
#endif
#endif
#if !defined(STRATA_INLINE_ASM)
#if defined(__x86_64__)
#define STRATA_INLINE_ASM 1
#else
#define STRATA_INLINE_ASM 0
#endif
#endif

namespace strata::instructions {

// ++value as one read-modify-write of memory. When the code has
// just loaded `value` into a register (to test or index with it), the
// compilers compute the new value there and store it: two instructions.
inline void increment_in_place(int64_t& value) {
#if STRATA_INLINE_ASM
  asm("incq %0" : "+m"(value));
#else
  ++value;
#endif
}
// value -= amount as one read-modify-write of memory; true if the result is
// negative (the flag the subtraction sets, tested by the branch after it).
inline bool subtract_in_place(int64_t& value, int64_t amount) {
#if STRATA_INLINE_ASM
  bool negative;
  asm("subq %2, %0" : "+m"(value), "=@ccs"(negative) : "er"(amount));
  return negative;
#else
  value -= amount;
  return value < 0;
#endif
}

// Hides where `pointer` came from (the compiler can no longer fold the
// arithmetic that made it into the addresses computed from it), and on
// x86-64 keeps it out of the return register: a function that returns a
// value loaded through it then loads that value straight into the return
// register, instead of into another and moving it.
template <typename T>
inline T* opaque_base(T* pointer) {
#if defined(__x86_64__)
  asm("" : "+d"(pointer));
#else
  asm("" : "+r"(pointer));
#endif
  return pointer;
}

}  // namespace strata::instructions

#endif  // STRATA_PLATFORM_INSTRUCTIONS_H
