/* got.c — see got.h.
 *
 * Why GOT slots and not LD_PRELOAD or code patching: the profiler is
 * loaded into a running interpreter, long after the loader bound symbols,
 * so interposition at link time is not available; rewriting the first
 * bytes of malloc itself would need an instruction decoder per
 * architecture. A GOT slot is one aligned pointer per (object, symbol):
 * writing it is atomic for callers, and writing the old value back removes
 * the hook completely. The slots of full-RELRO objects live on read-only
 * pages, so those pages are made writable for the write and read-only
 * again; the page range is computed exactly as the loader does, so a page
 * the loader left writable is never made read-only.
 *
 * Relocation tables are read through the object's PT_DYNAMIC. glibc stores
 * absolute addresses in the in-memory dynamic section of most objects but
 * not of all (the vDSO, some architectures), hence the "below the load
 * base means relative" rule in dyn_ptr().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "got.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT R_AARCH64_GLOB_DAT
#else
#error "GOT patching knows x86_64 and aarch64 only"
#endif

#if __ELF_NATIVE_CLASS == 64
#define R_SYM ELF64_R_SYM
#define R_TYPE ELF64_R_TYPE
#else
#define R_SYM ELF32_R_SYM
#define R_TYPE ELF32_R_TYPE
#endif

typedef struct {
    uintptr_t base;  /* load address of the object, to find it again */
    void **slot;
    void *old, *hook;
} patch;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static patch *patches;
static size_t npatches, cap;

typedef struct {
    const mfp_got_hook *hooks;
    size_t n;
    uintptr_t self_base;
    long patched;
    int oom;
} walk_arg;

static int skipped(const char *path) {
    static const char *const prefixes[] = {
        "libc.so",     "libc-",       "ld-linux",   "ld64.so",   "ld-musl", "linux-vdso",
        "linux-gate",  "libasan",     "libubsan",   "liblsan",   "libtsan", "libhwasan",
        "libjemalloc", "libtcmalloc", "libmimalloc", "libdl.so", "libpthread.so"};
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(base, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

static uintptr_t dyn_ptr(uintptr_t v, uintptr_t base) {
    return v < base ? v + base : v;
}

static int prot_of(ElfW(Word) flags) {
    return ((flags & PF_R) ? PROT_READ : 0) | ((flags & PF_W) ? PROT_WRITE : 0) |
           ((flags & PF_X) ? PROT_EXEC : 0);
}

/* The protection the loader left on the page holding addr. */
static int page_prot(const struct dl_phdr_info *info, uintptr_t addr) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_GNU_RELRO) continue;
        uintptr_t start = (info->dlpi_addr + ph->p_vaddr) & ~(pg - 1);
        uintptr_t end = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz) & ~(pg - 1);
        if (addr >= start && addr < end) return PROT_READ;
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && addr >= start && addr < start + ph->p_memsz)
            return prot_of(ph->p_flags);
    }
    return -1;
}

/* Write one slot, lifting a read-only protection for the write. */
static int write_slot(const struct dl_phdr_info *info, void **slot, void *value) {
    int prot = page_prot(info, (uintptr_t)slot);
    if (prot < 0) return -1;
    if (prot & PROT_WRITE) {
        __atomic_store_n(slot, value, __ATOMIC_SEQ_CST);
        return 0;
    }
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    void *page = (void *)((uintptr_t)slot & ~(pg - 1));
    if (mprotect(page, pg, prot | PROT_WRITE) != 0) return -1;
    __atomic_store_n(slot, value, __ATOMIC_SEQ_CST);
    mprotect(page, pg, prot);
    return 0;
}

static int record(uintptr_t base, void **slot, void *old, void *hook) {
    if (npatches == cap) {
        size_t ncap = cap ? cap * 2 : 64;
        patch *np = realloc(patches, ncap * sizeof *np);
        if (!np) return -1;
        patches = np;
        cap = ncap;
    }
    patches[npatches++] = (patch){base, slot, old, hook};
    return 0;
}

static void patch_relocs(struct dl_phdr_info *info, walk_arg *w, const ElfW(Rela) *rel,
                         size_t count, const ElfW(Sym) *symtab, const char *strtab) {
    for (size_t i = 0; i < count && !w->oom; i++) {
        unsigned long type = R_TYPE(rel[i].r_info);
        if (type != R_JUMP_SLOT && type != R_GLOB_DAT) continue;
        const char *name = strtab + symtab[R_SYM(rel[i].r_info)].st_name;
        for (size_t h = 0; h < w->n; h++) {
            if (strcmp(name, w->hooks[h].symbol) != 0) continue;
            void **slot = (void **)(info->dlpi_addr + rel[i].r_offset);
            void *old = __atomic_load_n(slot, __ATOMIC_SEQ_CST);
            if (old == w->hooks[h].hook) break; /* patched before */
            if (record(info->dlpi_addr, slot, old, w->hooks[h].hook) != 0) {
                w->oom = 1;
                break;
            }
            if (write_slot(info, slot, w->hooks[h].hook) == 0)
                w->patched++;
            else
                npatches--;
            break;
        }
    }
}

/* dl_iterate_phdr callback: runs with the loader lock held. */
static int patch_object(struct dl_phdr_info *info, size_t size, void *arg) {
    walk_arg *w = arg;
    (void)size;
    /* A non-PIE executable loads at bias 0: self_base 0 means "no self". */
    if ((w->self_base && info->dlpi_addr == w->self_base) || skipped(info->dlpi_name ? info->dlpi_name : ""))
        return 0;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn) return 0;
    uintptr_t base = info->dlpi_addr, symtab = 0, strtab = 0, jmprel = 0, rela = 0;
    size_t pltrelsz = 0, relasz = 0;
    long pltrel = DT_RELA;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = dyn_ptr(dyn->d_un.d_ptr, base); break;
        case DT_STRTAB: strtab = dyn_ptr(dyn->d_un.d_ptr, base); break;
        case DT_JMPREL: jmprel = dyn_ptr(dyn->d_un.d_ptr, base); break;
        case DT_PLTRELSZ: pltrelsz = dyn->d_un.d_val; break;
        case DT_PLTREL: pltrel = (long)dyn->d_un.d_val; break;
        case DT_RELA: rela = dyn_ptr(dyn->d_un.d_ptr, base); break;
        case DT_RELASZ: relasz = dyn->d_un.d_val; break;
        default: break;
        }
    }
    if (!symtab || !strtab) return 0;
    const ElfW(Sym) *sym = (const ElfW(Sym) *)symtab;
    const char *str = (const char *)strtab;
    /* Both architectures we build for use RELA only. */
    if (jmprel && pltrel == DT_RELA)
        patch_relocs(info, w, (const ElfW(Rela) *)jmprel, pltrelsz / sizeof(ElfW(Rela)), sym, str);
    if (rela) patch_relocs(info, w, (const ElfW(Rela) *)rela, relasz / sizeof(ElfW(Rela)), sym, str);
    return w->oom;
}

long mfp_got_patch_all(const mfp_got_hook *hooks, size_t n, const void *self, int nonblocking) {
    walk_arg w = {hooks, n, 0, 0, 0};
    Dl_info di;
    if (self && dladdr(self, &di) != 0) {
        /* dladdr gives the address of the ELF header; dl_iterate_phdr the
         * load bias. They agree for the shared objects we are built as. */
        w.self_base = (uintptr_t)di.dli_fbase;
    }
    if (nonblocking) {
        if (pthread_mutex_trylock(&lock) != 0) return 0;
    } else {
        pthread_mutex_lock(&lock);
    }
    dl_iterate_phdr(patch_object, &w);
    pthread_mutex_unlock(&lock);
    return w.oom ? -1 : w.patched;
}

/* ---- what a call binds to ------------------------------------------------ */

#define MAX_OBJECTS 512

typedef struct {
    const char *name;  /* symbol looked up */
    const void *addr;  /* dlsym's answer */
    size_t n, holder;  /* objects seen; the one holding addr (SIZE_MAX: none) */
    int holder_imports; /* that object imports name: addr is its PLT stub */
    struct { const char *path; uintptr_t lo[8], hi[8]; int nload; } obj[MAX_OBJECTS];
} bind_arg;

static int holds(const bind_arg *b, size_t k, const void *addr) {
    for (int i = 0; i < b->obj[k].nload; i++)
        if ((uintptr_t)addr >= b->obj[k].lo[i] && (uintptr_t)addr < b->obj[k].hi[i]) return 1;
    return 0;
}

/* Whether the object names `name` as an undefined symbol in a relocation. */
static int imports(const struct dl_phdr_info *info, const char *name) {
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn) return 0;
    uintptr_t base = info->dlpi_addr, symtab = 0, strtab = 0, jmprel = 0, rela = 0;
    size_t pltrelsz = 0, relasz = 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = dyn_ptr(dyn->d_un.d_ptr, base); break;
        case DT_STRTAB: strtab = dyn_ptr(dyn->d_un.d_ptr, base); break;
        case DT_JMPREL: jmprel = dyn_ptr(dyn->d_un.d_ptr, base); break;
        case DT_PLTRELSZ: pltrelsz = dyn->d_un.d_val; break;
        case DT_RELA: rela = dyn_ptr(dyn->d_un.d_ptr, base); break;
        case DT_RELASZ: relasz = dyn->d_un.d_val; break;
        default: break;
        }
    }
    if (!symtab || !strtab) return 0;
    const ElfW(Sym) *sym = (const ElfW(Sym) *)symtab;
    const struct { const ElfW(Rela) *r; size_t n; } tabs[2] = {
        {(const ElfW(Rela) *)jmprel, pltrelsz / sizeof(ElfW(Rela))},
        {(const ElfW(Rela) *)rela, relasz / sizeof(ElfW(Rela))}};
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; tabs[t].r && i < tabs[t].n; i++) {
            const ElfW(Sym) *s = &sym[R_SYM(tabs[t].r[i].r_info)];
            if (s->st_shndx == SHN_UNDEF && strcmp((const char *)strtab + s->st_name, name) == 0)
                return 1;
        }
    }
    return 0;
}

static int bind_object(struct dl_phdr_info *info, size_t size, void *arg) {
    bind_arg *b = arg;
    (void)size;
    if (b->n == MAX_OBJECTS) return 1;
    size_t k = b->n++;
    b->obj[k].path = info->dlpi_name ? info->dlpi_name : "";
    b->obj[k].nload = 0;
    for (int i = 0; i < info->dlpi_phnum && b->obj[k].nload < 8; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        b->obj[k].lo[b->obj[k].nload] = info->dlpi_addr + ph->p_vaddr;
        b->obj[k].hi[b->obj[k].nload++] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
    }
    if (b->holder == SIZE_MAX && holds(b, k, b->addr)) {
        b->holder = k;
        b->holder_imports = imports(info, b->name);
    }
    return 0;
}

void *mfp_got_real(const char *name) {
    void *p = dlsym(RTLD_DEFAULT, name);
    if (!p) return NULL;
    static bind_arg b; /* large; called with the heap's start serialised */
    b.name = name;
    b.addr = p;
    b.n = 0;
    b.holder = SIZE_MAX;
    b.holder_imports = 0;
    dl_iterate_phdr(bind_object, &b);
    if (b.holder == SIZE_MAX || !b.holder_imports) return p;
    /* A PLT stub: the definition is in an object loaded later. */
    for (size_t k = b.holder + 1; k < b.n; k++) {
        if (!b.obj[k].path[0]) continue;
        void *h = dlopen(b.obj[k].path, RTLD_LAZY | RTLD_NOLOAD);
        if (!h) continue;
        void *q = dlsym(h, name);
        dlclose(h);
        if (q && holds(&b, k, q)) return q;
    }
    return NULL;
}

static int unpatch_object(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    for (size_t i = 0; i < npatches; i++) {
        patch *p = &patches[i];
        if (p->base != info->dlpi_addr || !p->slot) continue;
        /* Only a slot that still holds our hook is ours to write. */
        if (page_prot(info, (uintptr_t)p->slot) >= 0 &&
            __atomic_load_n(p->slot, __ATOMIC_SEQ_CST) == p->hook)
            write_slot(info, p->slot, p->old);
        p->slot = NULL;
    }
    return 0;
}

void mfp_got_unpatch_all(void) {
    pthread_mutex_lock(&lock);
    /* Newest first is not needed: each slot is patched at most once. */
    dl_iterate_phdr(unpatch_object, NULL);
    free(patches);
    patches = NULL;
    npatches = cap = 0;
    pthread_mutex_unlock(&lock);
}

size_t mfp_got_patched_slots(size_t *objects) {
    pthread_mutex_lock(&lock);
    size_t n = npatches, objs = 0;
    for (size_t i = 0; i < npatches; i++) {
        size_t j = 0;
        while (j < i && patches[j].base != patches[i].base) j++;
        if (j == i) objs++;
    }
    pthread_mutex_unlock(&lock);
    if (objects) *objects = objs;
    return n;
}

void mfp_got_atfork_prepare(void) { pthread_mutex_lock(&lock); }
void mfp_got_atfork_parent(void) { pthread_mutex_unlock(&lock); }
void mfp_got_atfork_child(void) { pthread_mutex_init(&lock, NULL); }
