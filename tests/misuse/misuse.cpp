// Heap misuse on purpose, one scenario per run: `misuse NAME`. Run under
// LD_PRELOAD=libstrata.so by the ctests of this directory, which check what
// strata says and how the process ends in each mode (docs/hardening.md).
//
// Built without compiler knowledge of malloc (-fno-builtin), so that no
// faulty store or call is optimised away, and with frame pointers and
// exported symbols, so that reports name the scenario functions.
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <new>

namespace {

constexpr size_t kSmall = 48;
constexpr size_t kLarge = 256 * 1024;

// Keeps the compiler from reasoning about a value (volatile round trip).
template <typename T>
T opaque(T value) {
  volatile T copy = value;
  return copy;
}

// Frees enough other blocks that a block freed before them leaves check
// mode's quarantine (default budget 4 MiB) and is verified.
void churn() {
  for (int i = 0; i < 2048; ++i) free(opaque(malloc(4096)));
}

char g_global[64];

}  // namespace

extern "C" {

// Scenario functions and their helpers: extern "C" and exported, so that
// their names appear as they are in the reports' stacks.
#define SCENARIO extern __attribute__((noinline, used, visibility("default")))

SCENARIO void double_free_small() {
  char* p = static_cast<char*>(malloc(kSmall));
  free(p);
  free(opaque(p));
}

SCENARIO void double_free_large() {
  char* p = static_cast<char*>(malloc(kLarge));
  free(p);
  free(opaque(p));
}

SCENARIO void* free_in_thread(void* p) {
  free(p);
  return nullptr;
}

SCENARIO void double_free_cross_thread() {
  char* p = static_cast<char*>(malloc(kSmall));
  pthread_t thread;
  pthread_create(&thread, nullptr, free_in_thread, p);
  pthread_join(thread, nullptr);
  free(opaque(p));
}

SCENARIO void double_free_delayed() {
  char* p = static_cast<char*>(malloc(kSmall));
  free(p);
  churn();
  free(opaque(p));
}

SCENARIO void invalid_free_stack() {
  char buffer[64];
  free(opaque(buffer + 16));
}

SCENARIO void invalid_free_global() { free(opaque(g_global + 16)); }

SCENARIO void invalid_free_interior() {
  char* p = static_cast<char*>(malloc(kSmall));
  free(opaque(p + 16));
}

SCENARIO void invalid_free_mmap() {
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  free(opaque(static_cast<char*>(page) + 64));
}

SCENARIO void invalid_free_misaligned() {
  char* p = static_cast<char*>(malloc(kSmall));
  free(opaque(p + 1));
}

SCENARIO void* allocate_in_thread(void*) { return malloc(kSmall); }

// A pointer on another thread's slab grid, past every block that slab has
// handed out: freed by this thread, it must not enter this thread's cache.
SCENARIO void invalid_free_never_allocated_cross_thread() {
  pthread_t thread;
  void* p = nullptr;
  pthread_create(&thread, nullptr, allocate_in_thread, nullptr);
  pthread_join(thread, &p);
  free(opaque(static_cast<char*>(p) + 600 * kSmall));
}

SCENARIO void* allocate_3000_in_thread(void*) { return malloc(3000); }

// An interior pointer of a block of a class this thread has never
// allocated: its bin here is not open and holds no magic number for free's
// block-grid test, so the block must be tested again against its slab.
SCENARIO void invalid_free_interior_cross_thread() {
  pthread_t thread;
  void* p = nullptr;
  pthread_create(&thread, nullptr, allocate_3000_in_thread, nullptr);
  pthread_join(thread, &p);
  free(opaque(static_cast<char*>(p) + 16));
}

SCENARIO void realloc_freed() {
  char* p = static_cast<char*>(malloc(kSmall));
  free(p);
  void* q = realloc(opaque(p), 100);
  printf("realloc returned %s\n", q == nullptr ? "NULL" : "a block");
}

SCENARIO void realloc_interior() {
  char* p = static_cast<char*>(malloc(kSmall));
  void* q = realloc(opaque(p + 16), 100);
  printf("realloc returned %s\n", q == nullptr ? "NULL" : "a block");
}

SCENARIO void overflow(size_t size, size_t bytes) {
  char* p = static_cast<char*>(malloc(size));
  memset(p, 'x', size);
  memset(opaque(p) + size, 'o', bytes);
  free(p);
}

SCENARIO void underflow(size_t size, size_t bytes) {
  char* p = static_cast<char*>(malloc(size));
  memset(opaque(p) - bytes, 'u', bytes);
  free(p);
}

SCENARIO void overflow_1_small() { overflow(kSmall, 1); }
SCENARIO void overflow_8_small() { overflow(kSmall, 8); }
SCENARIO void underflow_1_small() { underflow(kSmall, 1); }
SCENARIO void underflow_8_small() { underflow(kSmall, 8); }
SCENARIO void overflow_1_large() { overflow(kLarge, 1); }
SCENARIO void overflow_8_large() { overflow(kLarge, 8); }

// An over-aligned block: its user pointer is the alignment past the raw
// block, not the header's size.
SCENARIO void overflow_aligned() {
  char* p = static_cast<char*>(aligned_alloc(256, 100));
  memset(p, 'x', 100);
  opaque(p)[100] = 'o';
  free(p);
}
SCENARIO void underflow_1_large() { underflow(kLarge, 1); }
SCENARIO void underflow_8_large() { underflow(kLarge, 8); }

SCENARIO void write_after_free(size_t size) {
  char* p = static_cast<char*>(malloc(size));
  free(p);
  opaque(p)[size / 2] = 'w';
  churn();
}

SCENARIO void write_after_free_small() { write_after_free(kSmall); }

// A write into the canary bytes of a freed block (check mode poisons them
// with the block and verifies both when it leaves the quarantine).
SCENARIO void write_after_free_tail() {
  char* p = static_cast<char*>(malloc(kSmall));
  free(p);
  opaque(p)[kSmall + 1] = 'w';
  churn();
}
SCENARIO void write_after_free_large() { write_after_free(kLarge); }

SCENARIO void read_after_free_large() {
  char* p = static_cast<char*>(malloc(kLarge));
  memset(p, 'r', kLarge);
  free(p);
  printf("read %d\n", opaque(p)[kLarge / 2]);
}

// Writes into a freed 4 KiB block (a block of a slab) at two depths: within
// the first check_bytes (default 256), which check mode poisons and
// verifies, and past them, which only check_bytes=0 covers.
SCENARIO void write_after_free_4k(size_t offset) {
  char* p = static_cast<char*>(malloc(4096));
  free(p);
  opaque(p)[offset] = 'w';
  churn();
}

SCENARIO void write_after_free_shallow() { write_after_free_4k(200); }
SCENARIO void write_after_free_deep() { write_after_free_4k(3000); }

// A small block freed by a thread that then exits: the freed blocks a
// thread gathers join the quarantine when it exits, so the write is found
// when the block leaves the quarantine.
SCENARIO void write_after_free_exited_thread() {
  char* p = static_cast<char*>(malloc(kSmall));
  pthread_t thread;
  pthread_create(&thread, nullptr, free_in_thread, p);
  pthread_join(thread, nullptr);
  opaque(p)[8] = 'x';
  churn();
}

// strata_check_heap verifies the live blocks of every thread.
SCENARIO void* allocate_and_overflow(void*) {
  char* p = static_cast<char*>(malloc(kSmall));
  opaque(p)[kSmall + 1] = 't';
  return p;
}

SCENARIO void overflow_in_thread_found_by_check_heap() {
  pthread_t thread;
  pthread_create(&thread, nullptr, allocate_and_overflow, nullptr);
  pthread_join(thread, nullptr);
  auto check = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "strata_check_heap"));
  int bad = check != nullptr ? check() : -1;
  printf("strata_check_heap: %d\n", bad);
}

SCENARIO void new_array_delete() {
  int* p = new int[8];
  operator delete(opaque(p));
}

SCENARIO void new_array_free() {
  int* p = new int[8];
  free(opaque(p));
}

SCENARIO void new_free() {
  int* p = new int;
  free(opaque(p));
}

SCENARIO void malloc_delete() {
  void* p = malloc(kSmall);
  operator delete(opaque(p));
}

SCENARIO void sized_delete_wrong_size() {
  void* p = operator new(kSmall);
  operator delete(opaque(p), kSmall / 2);
}

SCENARIO void overflow_found_by_check_heap() {
  char* p = static_cast<char*>(malloc(kSmall));
  opaque(p)[kSmall + 2] = 'c';
  auto check = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "strata_check_heap"));
  int bad = check != nullptr ? check() : -1;
  printf("strata_check_heap: %d\n", bad);
}

// Sampling (guard_sample_rate=N) guards one allocation in N, fast path
// included, and at the latest the (2N-1)th of a size class: of these 100000
// reads one byte past a 48-byte block (harmless in an ordinary block, whose
// neighbour is read), one hits a guard page.
SCENARIO void overread_in_loop() {
  for (int i = 0; i < 100000; ++i) {
    char* p = static_cast<char*>(malloc(kSmall));
    *static_cast<volatile char*>(opaque(p) + kSmall);
    free(p);
  }
}

SCENARIO void sampled_overflow() { overread_in_loop(); }

SCENARIO void write_after_free_found_by_check_heap() {
  char* p = static_cast<char*>(malloc(kSmall));
  free(p);
  opaque(p)[8] = 'c';
  auto check = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "strata_check_heap"));
  int bad = check != nullptr ? check() : -1;
  printf("strata_check_heap: %d\n", bad);
}

SCENARIO void leak() {
  for (int i = 0; i < 3; ++i) opaque(malloc(1000));
}

}  // extern "C"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: misuse SCENARIO\n");
    return 2;
  }
  auto scenario = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, argv[1]));
  if (scenario == nullptr) {
    fprintf(stderr, "misuse: no scenario %s\n", argv[1]);
    return 2;
  }
  scenario();
  printf("misuse: %s returned\n", argv[1]);
  return 0;
}
