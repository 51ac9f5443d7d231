// Linux implementation of the platform layer: mmap, mprotect, madvise,
// mremap, brk, getrandom. Nothing here allocates.
#include "platform/os.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

namespace strata::os {

constinit Capabilities g_caps{};

namespace {

int read_overcommit_mode() {
  int fd = ::open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char c = '0';
  ssize_t n = ::read(fd, &c, 1);
  ::close(fd);
  return (n == 1 && c >= '0' && c <= '2') ? c - '0' : 0;
}

const char* find_env(char** envp, const char* name) {
  if (envp == nullptr) return nullptr;
  size_t len = std::strlen(name);
  for (char** e = envp; *e != nullptr; ++e) {
    if (std::strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
  }
  return nullptr;
}

void* mmap_anonymous(size_t size, int prot, int extra_flags) {
  void* p = ::mmap(nullptr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
  if (p == MAP_FAILED) {
    errno = ENOMEM;
    return nullptr;
  }
  return p;
}

// Maps size bytes aligned to `alignment` by over-mapping and cutting off the
// misaligned head and the unused tail.
void* mmap_aligned(size_t size, size_t alignment, int prot, int extra_flags) {
  if (alignment <= g_caps.page_size) return mmap_anonymous(size, prot, extra_flags);
  size_t span = size + alignment - g_caps.page_size;
  if (span < size) {
    errno = ENOMEM;
    return nullptr;
  }
  char* raw = static_cast<char*>(mmap_anonymous(span, prot, extra_flags));
  if (raw == nullptr) return nullptr;
  uintptr_t aligned = (reinterpret_cast<uintptr_t>(raw) + alignment - 1) & ~(alignment - 1);
  char* start = reinterpret_cast<char*>(aligned);
  if (start > raw) ::munmap(raw, static_cast<size_t>(start - raw));
  char* end = start + size;
  char* raw_end = raw + span;
  if (raw_end > end) ::munmap(end, static_cast<size_t>(raw_end - end));
  return start;
}

}  // namespace

void init(char** envp) {
  long page = ::sysconf(_SC_PAGESIZE);
  g_caps.page_size = page > 0 ? static_cast<size_t>(page) : 4096;
  g_caps.overcommit_mode = read_overcommit_mode();
  if (const char* forced = find_env(envp, "STRATA_OVERCOMMIT")) {
    if (std::strcmp(forced, "strict") == 0) g_caps.overcommit_mode = 2;
    if (std::strcmp(forced, "lazy") == 0) g_caps.overcommit_mode = 0;
  }
  g_caps.explicit_commit = g_caps.overcommit_mode == 2;
}

void* reserve_aligned(size_t size, size_t alignment) {
  int prot = g_caps.explicit_commit ? PROT_NONE : PROT_READ | PROT_WRITE;
  return mmap_aligned(size, alignment, prot, MAP_NORESERVE);
}

bool commit(void* p, size_t size) {
  if (!g_caps.explicit_commit) return true;
  if (::mprotect(p, size, PROT_READ | PROT_WRITE) != 0) {
    errno = ENOMEM;
    return false;
  }
  return true;
}

void purge(void* p, size_t size) {
  if (g_caps.explicit_commit) {
    make_inaccessible(p, size);
    return;
  }
  // MADV_DONTNEED (not MADV_FREE) so RSS drops now and the range reads as
  // zero on next touch, which calloc relies on.
  ::madvise(p, size, MADV_DONTNEED);
}

void release(void* p, size_t size) { ::munmap(p, size); }

void* reserve_inaccessible(size_t size) { return mmap_anonymous(size, PROT_NONE, MAP_NORESERVE); }

void make_inaccessible(void* p, size_t size) {
  // A fresh PROT_NONE mapping both frees the memory and drops the commit
  // charge (mprotect alone would keep the charge).
  ::mmap(p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

void* map(size_t size) { return mmap_anonymous(size, PROT_READ | PROT_WRITE, 0); }

void* map_readonly(size_t size) {
  void* p = mmap_anonymous(size, PROT_READ, MAP_NORESERVE);
  // Left out of core dumps: the slab map is 32 GiB, and a dump piped to a
  // handler (systemd-coredump) carries every page of it, zeros included.
  if (p != nullptr) ::madvise(p, size, MADV_DONTDUMP);
  return p;
}

bool make_writable(void* p, size_t size) {
  if (::mprotect(p, size, PROT_READ | PROT_WRITE) != 0) {
    errno = ENOMEM;
    return false;
  }
  return true;
}

void make_inaccessible_keeping_memory(void* p, size_t size) { ::mprotect(p, size, PROT_NONE); }

void* map_aligned(size_t size, size_t alignment) {
  return mmap_aligned(size, alignment, PROT_READ | PROT_WRITE, 0);
}

void* remap(void* p, size_t old_size, size_t new_size) {
  void* q = ::mremap(p, old_size, new_size, MREMAP_MAYMOVE);
  if (q == MAP_FAILED) {
    errno = ENOMEM;
    return nullptr;
  }
  return q;
}

bool move_pages(void* from, void* to, size_t size) {
  return ::mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to) != MAP_FAILED;
}

void shrink(void* p, size_t old_size, size_t new_size) {
  if (new_size < old_size) ::munmap(static_cast<char*>(p) + new_size, old_size - new_size);
}

void* sbrk(intptr_t increment) {
  void* old = ::sbrk(increment);
  if (old == reinterpret_cast<void*>(-1)) {
    errno = ENOMEM;
    return nullptr;
  }
  return old;
}

uint64_t now_ms() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

void random_bytes(void* out, size_t size) {
  char* dst = static_cast<char*>(out);
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::getrandom(dst + got, size - got, GRND_NONBLOCK);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == size) return;
  // No entropy from the kernel yet (very early boot): mix the loader's
  // AT_RANDOM bytes with the clock and an address.
  const unsigned char* at_random = reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM));
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t mix = static_cast<uint64_t>(ts.tv_nsec) ^ reinterpret_cast<uintptr_t>(&ts);
  for (size_t i = got; i < size; ++i) {
    mix = mix * 6364136223846793005ULL + 1442695040888963407ULL;
    unsigned char extra = at_random != nullptr ? at_random[i % 16] : 0;
    dst[i] = static_cast<char>((mix >> 33) ^ extra);
  }
}

void write_all(int fd, const char* buf, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, buf, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    buf += n;
    size -= static_cast<size_t>(n);
  }
}

// pthread_atfork is a static stub in libc_nonshared.a that forwards to this
// libc function with the library's handle (so that dlclose removes the
// handlers); the link would place the stub after all of libstrata.so's code
// (see "Code layout" in src/CMakeLists.txt), so strata calls libc directly.
extern "C" int __register_atfork(void (*prepare)(), void (*parent)(), void (*child)(),
                                 void* dso_handle);
extern "C" void* __dso_handle;

void at_fork(void (*prepare)(), void (*parent)(), void (*child)()) {
  __register_atfork(prepare, parent, child, &__dso_handle);
}

}  // namespace strata::os
