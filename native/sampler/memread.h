/* memread.h — checked copies of our own process's memory.
 *
 * The sampler reads interpreter structures that other threads are changing
 * and freeing under it. A plain load from a dangling pointer can fault and
 * kill the user's process; these copies cannot: an unmapped address makes
 * the copy fail (EFAULT/EIO) and the caller drops the sample.
 *
 * Mechanism: process_vm_readv on our own pid (one syscall can copy many
 * disjoint regions, which is what makes sampling cheap); where a seccomp
 * filter forbids it, pread on /proc/self/mem.
 *
 * Threads: any thread, no GIL needed; mfp_mem_init/mfp_mem_fini are called
 * by the controlling thread before/after any reader runs.
 */
#ifndef MFP_MEMREAD_H
#define MFP_MEMREAD_H

#include <stddef.h>
#include <sys/uio.h>

/* Pick the mechanism. 0 on success, -1 (errno set) when neither works. */
int mfp_mem_init(void);
void mfp_mem_fini(void);
/* "process_vm_readv", "/proc/self/mem" or "none". */
const char *mfp_mem_mechanism(void);

/* Copy n bytes from src (an address in this process) to dst.
 * 0 on a complete copy, -1 otherwise. */
int mfp_mem_read(void *dst, const void *src, size_t n);

/* Copy cnt regions at once: local[i] receives remote[i]. Returns how many
 * leading regions were copied completely (cnt when all were). */
size_t mfp_mem_readv(const struct iovec *local, const struct iovec *remote, size_t cnt);

#endif
