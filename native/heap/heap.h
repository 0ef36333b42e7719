/* heap.h — sampled allocation profiling: where the memory went.
 *
 * Hooks the Python allocator domains (PyMem_SetAllocator) and the native
 * malloc family used by C extensions (malloc, calloc, realloc, free,
 * posix_memalign, aligned_alloc, mmap/munmap), samples allocations by bytes
 * with randomised intervals (mean `rate` bytes, so estimates are unbiased),
 * records the allocating thread's Python stack for each sampled allocation,
 * keeps the live sampled set, and snapshots it at the peak of the live heap.
 *
 * Memory: the tracker owns its bookkeeping (bounded by the number of live
 * sampled allocations). mfp_heap_export copies the result into a profile.
 *
 * Threads: start/stop/export/free are called by one controlling thread with
 * the GIL held. The hooks run on any thread, with or without the GIL, and
 * are reentrancy-safe, thread-safe and fork-safe; after stop they are
 * removed and memory allocated while profiling may be freed at any time.
 */
#ifndef MFP_HEAP_H
#define MFP_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "../profile/profile.h"

typedef struct mfp_heap mfp_heap;

/* Install the hooks; mean sampling interval rate_bytes (e.g. 512 KiB).
 * NULL on failure with a message in err. Must hold the GIL. */
mfp_heap *mfp_heap_start(uint64_t rate_bytes, char *err, size_t errlen);

/* Remove the hooks (GIL held). Idempotent. */
void mfp_heap_stop(mfp_heap *h);

/* Add MEMORY rows (estimated live bytes at peak, total allocated, count per
 * stack) to p. 0 or -1. */
int mfp_heap_export(const mfp_heap *h, mfp_profile *p);

/* A JSON object for META, e.g. {"peak_bytes": ..., "sampled": ..., "notes": [...]}.
 * Writes at most cap bytes (NUL-terminated); returns the length it needed. */
size_t mfp_heap_info_json(const mfp_heap *h, char *buf, size_t cap);

void mfp_heap_free(mfp_heap *h);

#endif
