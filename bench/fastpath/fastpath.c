/* fastpath: N malloc+free pairs in one measured function, for counting the
 * instructions of an allocator's fast paths under callgrind.
 *
 *   fastpath MODE N
 *
 * MODE is one of
 *   fixed32  malloc(32) then free, N times;
 *   ring     a ring of 256 live blocks of 16-512 bytes: each step frees the
 *            oldest block and allocates a new one;
 *   classes  malloc then free, cycling through 24 size classes (8 B - 2 KiB).
 *
 * Only fastpath_measured() is meant to be counted (callgrind
 * --toggle-collect=fastpath_measured); setup happens outside it. Running two
 * values of N and dividing the difference by the difference of N gives the
 * steady-state cost of one pair, free of warm-up. The loop itself adds a few
 * instructions per pair (see bench/README.md).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 256
#define SIZES 1024

static const size_t kClasses[24] = {8,   16,  32,  48,  64,  80,  96,  112, 128,  160,  192,  224,
                                    256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 2048};

static void* ring[RING];
static uint32_t ring_sizes[SIZES];

/* Keeps the compiler from pairing up and deleting malloc/free calls. */
static inline void escape(void* p) { __asm__ volatile("" : : "r"(p) : "memory"); }

__attribute__((noinline)) void fastpath_measured(int mode, long n) {
  if (mode == 0) {
    for (long i = 0; i < n; ++i) {
      void* p = malloc(32);
      escape(p);
      free(p);
    }
  } else if (mode == 1) {
    for (long i = 0; i < n; ++i) {
      const unsigned slot = (unsigned)i & (RING - 1);
      free(ring[slot]);
      ring[slot] = malloc(ring_sizes[(unsigned)i & (SIZES - 1)]);
      escape(ring[slot]);
    }
  } else {
    unsigned k = 0;
    for (long i = 0; i < n; ++i) {
      void* p = malloc(kClasses[k]);
      escape(p);
      free(p);
      k = k == 23 ? 0 : k + 1;
    }
  }
}

int main(int argc, char** argv) {
  static const char* const kModes[] = {"fixed32", "ring", "classes"};
  int mode = -1;
  if (argc == 3)
    for (int m = 0; m < 3; ++m)
      if (strcmp(argv[1], kModes[m]) == 0) mode = m;
  const long n = argc == 3 ? atol(argv[2]) : 0;
  if (mode < 0 || n < 0) {
    fprintf(stderr, "usage: %s fixed32|ring|classes N\n", argv[0]);
    return 2;
  }
  /* Setup: sizes of the ring (fixed seed), and the ring filled once. */
  uint64_t x = 12345;
  for (int i = 0; i < SIZES; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    ring_sizes[i] = 16 + (uint32_t)((x >> 33) % 497);
  }
  for (int i = 0; i < RING; ++i) ring[i] = malloc(ring_sizes[(i * 7) & (SIZES - 1)]);
  /* A few unmeasured pairs, so one-time initialisation happens here. */
  for (int i = 0; i < 1000; ++i) {
    void* p = malloc(kClasses[i % 24]);
    escape(p);
    free(p);
  }

  fastpath_measured(mode, n);

  for (int i = 0; i < RING; ++i) free(ring[i]);
  printf("fastpath %s %ld\n", kModes[mode], n);
  return 0;
}
