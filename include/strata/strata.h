/* strata: the prefixed C API.
 *
 * These functions use strata's heap beside whatever allocator the process
 * uses for malloc: link libstrata_prefixed.a (or libstrata.so) and call them.
 * Their semantics are exactly those of the glibc functions of the same name
 * without the prefix (errno, alignment rules, overflow checks). A block must
 * be released by the family that allocated it: strata_free for strata_malloc.
 */
#ifndef STRATA_STRATA_H
#define STRATA_STRATA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STRATA_API __attribute__((visibility("default")))

/* Allocation. */
STRATA_API void* strata_malloc(size_t size);
STRATA_API void* strata_calloc(size_t count, size_t size);
STRATA_API void* strata_realloc(void* ptr, size_t size);
STRATA_API void* strata_reallocarray(void* ptr, size_t count, size_t size);
STRATA_API void strata_free(void* ptr);
STRATA_API void strata_free_sized(void* ptr, size_t size);
STRATA_API void strata_free_aligned_sized(void* ptr, size_t alignment, size_t size);
STRATA_API int strata_posix_memalign(void** out, size_t alignment, size_t size);
STRATA_API void* strata_aligned_alloc(size_t alignment, size_t size);
STRATA_API void* strata_memalign(size_t alignment, size_t size);
STRATA_API void* strata_valloc(size_t size);
STRATA_API void* strata_pvalloc(size_t size);
STRATA_API size_t strata_malloc_usable_size(const void* ptr);

/* Give free memory back to the kernel now; keep at most `pad` bytes of slack
 * at the top of the data-segment heap. Returns 1 if anything was released. */
STRATA_API int strata_trim(size_t pad);

/* --- Heap checking ----------------------------------------------------- */

/* Verifies every block when check mode is on (MALLOC_CHECK_=1..3,
 * STRATA_OPTIONS=check=N, leaks=1 or quarantine_bytes=N, decided at
 * start-up): the canaries before and after each live block, and the poison
 * of each freed block still held in the quarantine. Each bad block is
 * reported on stderr as free() would report it (and, at check levels 2 and
 * 3, the process aborts at the first). Returns the number of bad blocks;
 * 0 also when check mode is off. */
STRATA_API int strata_check_heap(void);

/* --- Options and statistics ------------------------------------------- */

/* Sets one option by its strata name (`strata options` lists them), the value
 * written as in STRATA_OPTIONS ("64k", "true", "90"). Takes effect at once,
 * as mallopt does. Returns 0, or -1 with errno EINVAL for an unknown name or
 * a bad value (nothing changes then). */
STRATA_API int strata_option_set(const char* name, const char* value);

/* Writes an option's current value (in a form strata_option_set takes back)
 * as a NUL-terminated string. Returns 0, or -1 with errno EINVAL for an
 * unknown name or a buffer too small. */
STRATA_API int strata_option_get(const char* name, char* buf, size_t len);

#define STRATA_STATS_VERSION 1
#define STRATA_STATS_MAX_CLASSES 64 /* room for every size class (strata has 48) */

/* One size class. Counts are of blocks of this class's size, whatever size
 * was asked for: a class that has run out may hand out a free block of one
 * of the next classes, which counts there. */
struct strata_class_stats {
  unsigned long long block_size;  /* bytes per block; 0 in entries past num_classes */
  unsigned long long allocations; /* blocks handed out so far */
  unsigned long long frees;       /* blocks given back so far (allocations - in_use) */
  unsigned long long in_use;      /* blocks the program holds now */
  unsigned long long slabs;       /* slabs of this class */
  unsigned long long slab_bytes;  /* bytes of those slabs */
};

/* A snapshot of the allocator. Bytes unless the name says otherwise. Fields
 * are only ever added at the end: set `size` to sizeof(struct strata_stats)
 * before the call; strata fills what both sides know and sets `size` to the
 * bytes it filled. Other threads' counters are read while they run, so the
 * snapshot is consistent to within their last few calls. */
struct strata_stats {
  size_t size;              /* in: sizeof(struct strata_stats); out: bytes filled */
  unsigned int version;     /* STRATA_STATS_VERSION of the library */
  unsigned int num_classes; /* entries of classes[] in use */

  /* Memory. */
  unsigned long long allocated; /* in blocks the program holds, small and large */
  unsigned long long active;    /* in slabs in use, and large blocks held */
  unsigned long long dirty;     /* freed small-block memory still resident, for reuse */
  unsigned long long cached;    /* freed large blocks kept for reuse */
  unsigned long long metadata;  /* segment headers and thread heaps */
  unsigned long long mapped;    /* what strata holds: active + dirty + cached + metadata */
  unsigned long long reserved;  /* address space: segments, large blocks held or cached */
  unsigned long long purged;    /* small-block memory returned to the kernel so far */
  unsigned long long peak;      /* highest slab + dirty bytes so far */

  /* Calls. */
  unsigned long long mallocs;      /* blocks handed out (by malloc, calloc, new, ...) */
  unsigned long long frees;        /* blocks given back */
  unsigned long long remote_frees; /* small blocks freed by a thread not their owner and
                                      given back to it (counted as the owner takes them
                                      back); blocks of the shared classes (above 32 KiB),
                                      which no thread owns, given back to the central heap */
  unsigned long long refills;      /* trips of a thread heap to its slow path */

  /* Large blocks (above the small classes or the mmap threshold). */
  unsigned long long large_allocations;
  unsigned long long large_frees;
  unsigned long long large_in_use;           /* blocks held */
  unsigned long long large_bytes;            /* bytes held */
  unsigned long long large_mapped;           /* held at or above the threshold (hblks) */
  unsigned long long large_mapped_bytes;     /* their bytes (mallinfo2's hblkhd) */
  unsigned long long large_max_mapped;       /* most mapped at once */
  unsigned long long large_max_mapped_bytes; /* most bytes mapped at once */
  unsigned long long large_cached;           /* freed blocks kept for reuse */
  unsigned long long mmap_threshold;         /* now (glibc's dynamic rule may raise it) */

  /* Structure. */
  unsigned long long heaps;        /* thread heaps created (parked ones included) */
  unsigned long long heaps_in_use; /* heaps owned by a live thread */
  unsigned long long segments;
  unsigned long long slabs;

  /* The process (from the kernel). */
  unsigned long long resident;      /* resident set size now (/proc/self/statm) */
  unsigned long long peak_resident; /* highest resident set size (getrusage) */
  unsigned long long minor_faults;
  unsigned long long major_faults;

  struct strata_class_stats classes[STRATA_STATS_MAX_CLASSES];

  /* Debugging (fields added after classes[]). */
  unsigned long long guarded;     /* blocks placed against a guard page so far (guard_sample_rate);
                                     not counted in mallocs */
  unsigned long long check_slots; /* check mode: slots of the live-block table made so far, 8
                                     bytes each (the most blocks live at once, plus the free
                                     slots each running thread keeps, up to 128) */
};

/* Fills *stats (see struct strata_stats). Returns 0, or -1 with errno
 * EINVAL when stats is NULL or stats->size is below offsetof(..., allocated). */
STRATA_API int strata_stats_get(struct strata_stats* stats);

/* Writes the statistics as one JSON object into buf (at most len bytes, NUL
 * included; buf may be NULL when len is 0). Returns the length of the whole
 * text without its NUL, as snprintf does: the text was cut if that is >= len. */
STRATA_API size_t strata_stats_json(char* buf, size_t len);

/* Writes the statistics as a table a person reads to fd (what
 * STRATA_OPTIONS=stats=1 prints on stderr at exit). Allocates nothing. */
STRATA_API void strata_stats_print(int fd);

#ifdef __cplusplus
}
#endif

#endif /* STRATA_STRATA_H */
