/* got.h — redirecting calls between shared objects by rewriting GOT slots.
 *
 * A call from a shared object to malloc (or any function of another
 * object) goes through a slot of that object's global offset table. This
 * module finds, in every loaded object, the JUMP_SLOT and GLOB_DAT
 * relocations that name one of the given symbols and points their slots
 * at a hook; it remembers each slot's previous value to put it back.
 *
 * Skipped objects: the C library, the dynamic loader, the vDSO, sanitizer
 * runtimes and malloc replacements (their calls are the allocator's own
 * business), and the object that contains `self` (the hooks must reach the
 * real functions).
 *
 * Memory: the record of patched slots is malloc'd by this module and freed
 * by mfp_got_unpatch_all.
 *
 * Threads: any thread may call these; a mutex serialises them.
 * mfp_got_patch_all may be called again (e.g. after dlopen): slots that
 * already hold a hook are left alone, so only new objects are patched.
 * Calling it from inside dlopen must not wait for another patcher, so the
 * `nonblocking` form gives up when another thread is patching (that thread
 * walks the loaded objects after taking the loader lock, so it sees the new
 * object anyway). Neither function allocates through a hooked slot.
 */
#ifndef MFP_GOT_H
#define MFP_GOT_H

#include <stddef.h>

typedef struct {
    const char *symbol;
    void *hook;
} mfp_got_hook;

/* Patch every loaded object (see above). Returns the number of slots
 * patched by this call, or -1 when out of memory (slots patched so far stay
 * patched and recorded). With nonblocking, returns 0 at once when another
 * thread is patching. hooks must stay valid until mfp_got_unpatch_all. */
long mfp_got_patch_all(const mfp_got_hook *hooks, size_t n, const void *self, int nonblocking);

/* Put back every recorded slot that still holds its hook, in objects that
 * are still loaded (an unloaded object's slots are forgotten, not written).
 * Forgets the record. */
void mfp_got_unpatch_all(void);

/* The function a call to `name` from a shared object binds to: the first
 * definition in load order, for the hooks to call. Usually what
 * dlsym(RTLD_DEFAULT, name) says; but where a non-PIE executable takes the
 * function's address (Debian's python3.14 does for malloc and free), dlsym
 * gives the executable's PLT stub, which jumps through a slot that
 * mfp_got_patch_all rewrites: a hook calling it would call itself. NULL
 * when nothing defines name. */
void *mfp_got_real(const char *name);

/* Slots currently patched and objects they belong to. */
size_t mfp_got_patched_slots(size_t *objects);

/* After fork, in the child: the mutex may have been held by a thread that
 * does not exist there. */
void mfp_got_atfork_prepare(void);
void mfp_got_atfork_parent(void);
void mfp_got_atfork_child(void);

#endif
