// The platform layer: every request strata makes of the Linux kernel for
// memory goes through these functions, and only through them.
//
// Vocabulary: a *page* is the kernel's page. Address space is *reserved*
// (mapped PROT_NONE: no memory, no commit charge), *committed* (made
// accessible; under strict overcommit this is where the kernel charges it),
// *purged* (contents dropped, physical memory returned, still committed) and
// *decommitted* (back to reserved). See
// Documentation/mm/overcommit-accounting.rst in the kernel tree: private
// writable mappings are charged when vm.overcommit_memory=2, PROT_NONE ones
// are not.
#ifndef STRATA_PLATFORM_OS_H
#define STRATA_PLATFORM_OS_H

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace strata::os {

// What the kernel told us at start-up. Read-only after os::init().
struct Capabilities {
  size_t page_size = 4096;
  // vm.overcommit_memory: 0 heuristic, 1 always, 2 strict (never overcommit).
  int overcommit_mode = 0;
  // True when committing must be explicit (strict mode): reserved space is
  // PROT_NONE and mprotect'ed on demand. Otherwise reservations are made
  // writable at once and the kernel commits lazily on first touch.
  bool explicit_commit = false;
};

extern Capabilities g_caps;

// Reads page size and overcommit mode. STRATA_OVERCOMMIT=strict|lazy in the
// environment overrides the kernel's mode (for testing the strict path).
void init(char** envp);

// Reserves `size` bytes aligned to `alignment` (a power of two >= page size).
// The range is committed too unless g_caps.explicit_commit. nullptr on failure.
void* reserve_aligned(size_t size, size_t alignment);
// Makes [p, p+size) usable. Returns false (and changes nothing) when the
// kernel refuses the commit charge.
bool commit(void* p, size_t size);
// Returns the physical memory of [p, p+size) to the kernel; the range reads
// as zero afterwards. Under explicit commit the range is also decommitted.
void purge(void* p, size_t size);
// Unmaps a range obtained from reserve_aligned or map.
void release(void* p, size_t size);

// Maps `size` committed, zero-filled bytes (for large blocks and metadata).
void* map(size_t size);
// Maps `size` bytes that read as zero and cannot be written (not charged
// under strict overcommit), left out of core dumps; make_writable opens
// parts of it.
void* map_readonly(size_t size);
bool make_writable(void* p, size_t size);

// Reserves `size` bytes of inaccessible address space (no memory, no commit
// charge): guard pages, and room that make_writable opens. nullptr on failure.
void* reserve_inaccessible(size_t size);
// Replaces [p, p+size) with fresh inaccessible pages: the memory and its
// commit charge go back to the kernel, and any access faults.
void make_inaccessible(void* p, size_t size);
// Makes [p, p+size) inaccessible but keeps its memory and contents (cheaper,
// and make_writable brings them back without page faults).
void make_inaccessible_keeping_memory(void* p, size_t size);

// Maps `size` committed bytes starting at a multiple of `alignment` (a power
// of two); the mapping is exactly [result, result+size).
void* map_aligned(size_t size, size_t alignment);
// Grows or shrinks a mapping, moving it if needed (mremap MAYMOVE).
void* remap(void* p, size_t old_size, size_t new_size);
// Moves the pages of [from, from+size) to [to, to+size), replacing whatever
// was mapped there; no data is copied. False if the kernel refuses.
bool move_pages(void* from, void* to, size_t size);
// Shrinks a mapping in place (the tail is unmapped). Never fails.
void shrink(void* p, size_t old_size, size_t new_size);

// Data segment (brk). Returns the old break, or nullptr when the kernel says
// no (RLIMIT_DATA, a mapping in the way).
void* sbrk(intptr_t increment);

// Save/restore errno around calls that must not change it (free). Inline,
// with errno's address looked up once: check mode's free uses it per call.
class ErrnoGuard {
 public:
  ErrnoGuard() : at_(&errno), saved_(*at_) {}
  ~ErrnoGuard() { *at_ = saved_; }
  ErrnoGuard(const ErrnoGuard&) = delete;
  ErrnoGuard& operator=(const ErrnoGuard&) = delete;

 private:
  int* at_;
  int saved_;
};

// Monotonic milliseconds, cheap (vDSO coarse clock).
uint64_t now_ms();

// Bytes of fresh randomness (getrandom, falling back to AT_RANDOM and time).
void random_bytes(void* out, size_t size);

// Writes all of buf to fd, retrying on EINTR; no allocation.
void write_all(int fd, const char* buf, size_t size);

// pthread_atfork: handlers run around fork() (may allocate).
void at_fork(void (*prepare)(), void (*parent)(), void (*child)());

// The number of bits set in x. Without -mpopcnt (x86-64's baseline has no
// POPCNT) __builtin_popcountll is a call into libgcc, which the link places
// after all of libstrata.so's code, away from the code every program runs
// (see "Code layout" in src/CMakeLists.txt).
inline unsigned bit_count(uint64_t x) {
  x -= (x >> 1) & 0x5555555555555555;
  x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f;
  return static_cast<unsigned>((x * 0x0101010101010101) >> 56);
}

}  // namespace strata::os

#endif  // STRATA_PLATFORM_OS_H
