// Allocation and free stacks for the misuse reports: captured without
// allocating by walking frame pointers (with bounds checks: a frame must lie
// above the previous one, on the calling thread's stack), kept once each in
// a fixed-size depot and named by a 32-bit id (0: none recorded).
//
// Frames are found only through code built with frame pointers
// (-fno-omit-frame-pointer); the first frame, the caller of the allocation
// function, is recorded whatever the caller was built with.
#ifndef STRATA_CHECK_STACK_H
#define STRATA_CHECK_STACK_H

#include <cstddef>
#include <cstdint>

namespace strata::stack {

inline constexpr size_t kMaxFrames = 14;

// frames[depth] and beyond are unspecified (not cleared: capture runs on
// every allocation and free in check mode).
struct Trace {
  uint32_t depth;
  uintptr_t frames[kMaxFrames];
};

// Captures the calling thread's stack and stores it: `caller` (the return
// address into the code that called the allocator), then the return
// addresses of the frame records chained from `frame` (the caller's frame
// pointer; nullptr: start from this function's own frame). Returns the
// stack's id, or 0 if the depot is full or could not be mapped.
uint32_t capture(const void* caller, const void* frame);

// The stack stored under `id`; false (and an empty trace) for 0 or unknown.
bool lookup(uint32_t id, Trace* out);

}  // namespace strata::stack

#endif  // STRATA_CHECK_STACK_H
