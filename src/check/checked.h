// Check mode (MALLOC_CHECK_=1..3, STRATA_OPTIONS=check=N, leaks=1 or
// quarantine_bytes=N): every block carries a header before the pointer the
// program holds and canary bytes after its requested size. Decided once at
// start-up, because it changes the layout of every block; while it is on,
// the fast paths are off and every call goes through the slow paths, which
// call the functions here around the ordinary allocator.
//
//   raw block:  [ padding | Header (64 bytes) | user bytes (size) | tail canary | slack ]
//                          ^ p - 64             ^ p (what malloc returns)
//
// The header's last word is a canary computed from its fields, the block's
// address and a secret, so an underflow (or a pointer that is not a block)
// is recognised; the tail canary is kTailByte, from the end of the user
// bytes for at least kTailMin bytes. Freed blocks are filled with a poison
// byte and held in a FIFO quarantine (quarantine_bytes); the poison is
// verified when a block leaves it. The fill of new blocks, the poison and
// the tail cover at most check_bytes bytes each (whole blocks for large
// blocks, or when check_bytes is 0), so that their cost does
// not grow with the block. Live blocks are registered in a table (one slot
// each, no list to unlink), so the whole heap can be verified
// (strata_check_heap) and leaks listed at exit.
//
// This layer knows nothing of slabs or mappings: the API layer finds the raw
// block of a pointer and hands raw blocks out and back.
#ifndef STRATA_CHECK_CHECKED_H
#define STRATA_CHECK_CHECKED_H

#include <cstddef>
#include <cstdint>

namespace strata::check {

// Which family allocated a block (what may free it).
enum class Origin : uint8_t { kMalloc = 1, kNew = 2, kNewArray = 3 };
// How the program releases it.
enum class Release : uint8_t { kFree, kDelete, kDeleteArray };

// Where a call came from: the return address into the program, and the
// program's frame pointer when it called (its frame record leads to the
// program's callers), or nullptr.
struct Site {
  const void* caller;
  const void* frame;
};

// Names for reports: "malloc", "operator new", "operator new[]"; "free",
// "operator delete", "operator delete[]". Whether a family may release a block.
const char* origin_name(Origin origin);
const char* release_name(Release kind);
bool family_matches(Origin origin, Release kind);

// Whether blocks have the check-mode layout. Fixed by latch().
extern constinit bool g_enabled;
inline bool enabled() { return g_enabled; }

// Decides the mode from the options, once (at start-up); later calls (after
// mallopt) change nothing.
void latch();

inline constexpr size_t kHeaderSize = 64;
inline constexpr size_t kTailMin = 16;
// Largest alignment check mode serves (the header offset is 32 bits).
inline constexpr size_t kMaxAlignment = size_t{1} << 30;

// Offset of the user pointer from the raw block's start for an alignment.
inline size_t user_offset(size_t alignment) {
  return alignment <= kHeaderSize ? kHeaderSize : alignment;
}

// Raw bytes needed for `size` user bytes at `alignment`; false on overflow.
inline bool raw_size(size_t size, size_t alignment, size_t* out) {
  return !__builtin_add_overflow(size, user_offset(alignment) + kTailMin, out);
}

// Lays out a fresh raw block of `raw_usable` bytes (>= raw_size) and returns
// the user pointer. `zero`: the user bytes must read as zero (calloc);
// `raw_zeroed`: they do already (the raw block was allocated zeroed).
// `large_block`: the raw block is not a block of a slab
// (poisoned whole when freed, whatever check_bytes says).
void* on_allocate(void* raw, size_t raw_usable, size_t alignment, size_t size, Origin origin,
                  bool zero, bool raw_zeroed, bool large_block, Site site);

// on_allocate for a block of a slab at the default alignment.
void* on_allocate_small(void* raw, size_t raw_usable, size_t size, Origin origin, bool zero,
                        bool raw_zeroed, Site site);

// What a pointer is, given the raw block that contains it.
enum class Found { kLive, kFreed, kNotABlock, kCorrupt };
Found inspect(const void* raw, const void* p);

// Requested size of a live block (inspect() said kLive).
size_t size_of(const void* p);

// Frees a live block: verifies its canaries and the release family (and the
// size, if `sized` is non-zero), poisons it and puts it in the quarantine.
// kError: reported (the block stays allocated), or a double free of a block
// already in the quarantine. kEvict: quarantined, and the quarantine is over
// its budget (the caller calls evict()). kRelease: a block larger than the
// quarantine's budget, which would leave it at once: not poisoned, the
// caller gives the raw block straight back.
enum class Freed { kError, kQuarantined, kEvict, kRelease };
Freed on_free(void* p, const char* function, Release kind, size_t sized, Site site);

// free's inspect() and on_free() in one call: what is not a live block is
// reported as checked_find in the API layer reports it (kError).
Freed free_found(const void* raw, void* p, const char* function, Release kind, size_t sized,
                 Site site);

// Reports a second free of a block held in the quarantine (kFreed).
void report_double_free(const char* function, const void* p);

// Reports a corrupt header (inspect() said kCorrupt) as an underflow.
void report_corrupt(const char* function, const void* p);

// Takes up to `max` of the oldest quarantined blocks while the quarantine
// is over its budget (no lock is taken while it is not), verifies them and
// returns how many it took; out[i] is
// the raw block to give back, or nullptr for a block written to after its
// free (reported, and kept out of circulation).
size_t evict(void** out, size_t max);

// Slots the live-block table has made so far (for the statistics).
size_t table_slots();

// Verifies every live and quarantined block; returns the number of bad ones
// (each reported).
int check_all();

}  // namespace strata::check

#endif  // STRATA_CHECK_CHECKED_H
