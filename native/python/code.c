/* code.c — code object + instruction -> profile frame; see python.h.
 *
 * Why it is built this way. A stack repeats the same few code objects, and
 * a program runs the same few (code, instruction) pairs, so a decode makes
 * one vectored copy of the headers of the stack's distinct code objects
 * (to validate the cache) and reads names and line tables only for pairs
 * the cache does not hold. The cache is checked against the header's
 * fields, so a freed and reused code address is caught.
 */
#include "python.h"

#include "layout.h"

#include <stdlib.h>
#include <string.h>

#if !MFP_LAYOUT_KNOWN

mfp_python_decoder *mfp_python_decoder_new(mfp_profile *store, const mfp_python_mem *mem,
                                           int max_depth, unsigned cache_bits) {
    (void)store; (void)mem; (void)max_depth; (void)cache_bits;
    return NULL;
}
void mfp_python_decoder_free(mfp_python_decoder *d) { (void)d; }
int mfp_python_decode(mfp_python_decoder *d, mfp_python_frame *frames, int depth, uint32_t *ids,
                      int *error) {
    (void)d; (void)frames; (void)depth; (void)ids;
    *error = MFP_PYTHON_INVALID;
    return -1;
}

#else

#define NAME_MAX_CHARS 1024
#define LINETABLE_MAX (1u << 16)

typedef struct {
    const void *code;            /* code object; NULL = empty slot */
    int32_t lasti;               /* instruction index in code units */
    const void *name, *file, *linetable; /* header fields when cached */
    int firstline;
    uint32_t frame;              /* index in the profile */
} cache_entry;

struct mfp_python_decoder {
    mfp_profile *profile;
    mfp_python_mem mem;
    int max_depth;
    size_t cache_mask, cache_used;
    unsigned cache_shift; /* slots come from the top bits of a hash */
    cache_entry *cache;
    /* Scratch space for one decode. */
    const void **codes;      /* distinct code objects of the stack */
    char *code_hdrs;         /* their copied headers */
    struct iovec *local_iov, *remote_iov;
    uint8_t *linetable;      /* LINETABLE_MAX bytes */
    uint8_t raw[NAME_MAX_CHARS * 4];
    char utf8[NAME_MAX_CHARS * 4];
};

void mfp_python_decoder_free(mfp_python_decoder *d) {
    if (!d) return;
    free(d->cache);
    free(d->codes);
    free(d->code_hdrs);
    free(d->local_iov);
    free(d->remote_iov);
    free(d->linetable);
    free(d);
}

mfp_python_decoder *mfp_python_decoder_new(mfp_profile *store, const mfp_python_mem *mem,
                                           int max_depth, unsigned cache_bits) {
    mfp_python_decoder *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->profile = store;
    d->mem = *mem;
    d->max_depth = max_depth;
    d->cache_mask = ((size_t)1 << cache_bits) - 1;
    d->cache_shift = 64 - cache_bits;
    d->cache = calloc(d->cache_mask + 1, sizeof *d->cache);
    d->codes = malloc((size_t)max_depth * sizeof *d->codes);
    d->code_hdrs = malloc((size_t)max_depth * MFP_CODE_HEADER_SIZE);
    d->local_iov = malloc((size_t)max_depth * sizeof *d->local_iov);
    d->remote_iov = malloc((size_t)max_depth * sizeof *d->remote_iov);
    d->linetable = malloc(LINETABLE_MAX);
    if (!d->cache || !d->codes || !d->code_hdrs || !d->local_iov || !d->remote_iov || !d->linetable) {
        mfp_python_decoder_free(d);
        return NULL;
    }
    return d;
}

/* ---- strings and line tables --------------------------------------------- */

static size_t put_utf8(char *out, uint32_t c) {
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) { out[0] = (char)(0xC0 | (c >> 6)); out[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12)); out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F)); return 3;
    }
    if (c > 0x10FFFF) c = 0xFFFD;
    out[0] = (char)(0xF0 | (c >> 18)); out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F)); out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Copy a str object into the profile's string table. MFP_NONE on a bad
 * read or an object that is not a compact str. */
static uint32_t read_string(mfp_python_decoder *d, const void *obj) {
    PyASCIIObject hdr;
    if (!obj || d->mem.read(&hdr, obj, sizeof hdr) != 0) return MFP_NONE;
    if (hdr.ob_base.ob_type != &PyUnicode_Type || !hdr.state.compact) return MFP_NONE;
    size_t n = (size_t)hdr.length, kind = hdr.state.kind;
    if (n > NAME_MAX_CHARS) n = NAME_MAX_CHARS;
    if (kind != 1 && kind != 2 && kind != 4) return MFP_NONE;
    const char *data = hdr.state.ascii ? (const char *)obj + sizeof(PyASCIIObject)
                                       : (const char *)obj + sizeof(PyCompactUnicodeObject);
    uint8_t *raw = d->raw;
    if (d->mem.read(raw, data, n * kind) != 0) return MFP_NONE;
    if (hdr.state.ascii) return mfp_profile_string(d->profile, (const char *)raw, n);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c;
        if (kind == 1) {
            c = raw[i];
        } else if (kind == 2) {
            uint16_t u;
            memcpy(&u, raw + 2 * i, 2);
            c = u;
        } else {
            memcpy(&c, raw + 4 * i, 4);
        }
        len += put_utf8(d->utf8 + len, c);
    }
    return mfp_profile_string(d->profile, d->utf8, len);
}

/* The location table of 3.11+ (Objects/locations.md): entries of a header
 * byte 1cccclll (code c, covering l+1 code units) and code-specific data
 * in 6-bit varints. We only need the start line of the entry covering
 * lasti. */
static unsigned lt_varint(const uint8_t *p, size_t n, size_t *i) {
    unsigned v = 0, shift = 0;
    while (*i < n) {
        uint8_t b = p[(*i)++];
        v |= (unsigned)(b & 63) << shift;
        if (!(b & 64) || shift > 24) break;
        shift += 6;
    }
    return v;
}

static int lt_svarint(const uint8_t *p, size_t n, size_t *i) {
    unsigned u = lt_varint(p, n, i);
    return (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
}

static int line_for(const uint8_t *t, size_t n, int firstline, int32_t lasti) {
    int line = firstline;
    int32_t addr = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t h = t[i++];
        if (!(h & 0x80)) return 0; /* not an entry start: corrupt */
        int code = (h >> 3) & 15, len = (h & 7) + 1, entry_line = -1;
        if (code == 15) {
            entry_line = -1;
        } else if (code == 14) {
            line += lt_svarint(t, n, &i);
            entry_line = line;
            lt_varint(t, n, &i); lt_varint(t, n, &i); lt_varint(t, n, &i);
        } else if (code == 13) {
            line += lt_svarint(t, n, &i);
            entry_line = line;
        } else if (code >= 10) {
            line += code - 10;
            entry_line = line;
            i += 2;
        } else {
            entry_line = line;
            i += 1;
        }
        if (lasti < addr + len) return entry_line > 0 ? entry_line : 0;
        addr += len;
    }
    return 0;
}

static int read_line(mfp_python_decoder *d, const void *linetable, int firstline, int32_t lasti) {
    PyBytesObject hdr;
    uint8_t *buf = d->linetable;
    if (!linetable || lasti < 0) return 0;
    if (d->mem.read(&hdr, linetable, offsetof(PyBytesObject, ob_sval)) != 0) return 0;
    if (hdr.ob_base.ob_base.ob_type != &PyBytes_Type) return 0;
    size_t n = (size_t)hdr.ob_base.ob_size;
    if (n > LINETABLE_MAX) n = LINETABLE_MAX;
    if (d->mem.read(buf, (const char *)linetable + offsetof(PyBytesObject, ob_sval), n) != 0)
        return 0;
    return line_for(buf, n, firstline, lasti);
}

/* ---- the cache ------------------------------------------------------------ */

static size_t cache_slot(const mfp_python_decoder *d, const void *code, int32_t lasti) {
    uint64_t h = (uint64_t)(uintptr_t)code * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)lasti * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h >> d->cache_shift);
}

/* The profile's frame index for (code, lasti), given the code's copied
 * header. MFP_NONE when the header does not validate or the store is full. */
static uint32_t resolve_frame(mfp_python_decoder *d, const void *code, const PyCodeObject *hdr,
                              int32_t lasti, int *error) {
    const size_t mask = d->cache_mask;
    size_t i = cache_slot(d, code, lasti);
    for (;; i = (i + 1) & mask) {
        cache_entry *e = &d->cache[i];
        if (!e->code) break;
        if (e->code == code && e->lasti == lasti) {
            if (e->name == hdr->co_qualname && e->file == hdr->co_filename &&
                e->linetable == hdr->co_linetable && e->firstline == hdr->co_firstlineno)
                return e->frame;
            break; /* stale: the address now holds another code object */
        }
    }
    uint32_t name = read_string(d, hdr->co_qualname);
    uint32_t file = read_string(d, hdr->co_filename);
    if (name == MFP_NONE || file == MFP_NONE) {
        *error = MFP_PYTHON_INVALID;
        return MFP_NONE;
    }
    int line = read_line(d, hdr->co_linetable, hdr->co_firstlineno, lasti);
    uint32_t func = mfp_profile_func(d->profile, name, file, (uint32_t)hdr->co_firstlineno,
                                     MFP_FUNC_PYTHON);
    uint32_t frame = func == MFP_NONE ? MFP_NONE : mfp_profile_frame(d->profile, func, (uint32_t)line);
    if (frame == MFP_NONE) {
        *error = MFP_PYTHON_NO_MEMORY;
        return MFP_NONE;
    }
    if (d->cache_used * 2 > mask) { /* keep probing short: start over */
        memset(d->cache, 0, sizeof(cache_entry) * (mask + 1));
        d->cache_used = 0;
    }
    for (i = cache_slot(d, code, lasti);; i = (i + 1) & mask) {
        cache_entry *e = &d->cache[i];
        if (!e->code) { d->cache_used++; break; }
        if (e->code == code && e->lasti == lasti) break;
    }
    d->cache[i] = (cache_entry){code, lasti, hdr->co_qualname, hdr->co_filename,
                                hdr->co_linetable, hdr->co_firstlineno, frame};
    return frame;
}

int mfp_python_decode(mfp_python_decoder *d, mfp_python_frame *frames, int depth, uint32_t *ids,
                      int *error) {
    if (depth > d->max_depth) {
        *error = MFP_PYTHON_TOO_DEEP;
        return -1;
    }
    size_t ncodes = 0;
    for (int i = 0; i < depth; i++) {
        const void *c = frames[i].code;
        /* Stacks repeat the same code (recursion) next to each other. */
        size_t j = ncodes;
        size_t lo = ncodes > 8 ? ncodes - 8 : 0;
        for (j = lo; j < ncodes; j++)
            if (d->codes[j] == c) break;
        frames[i].hdr = (uint32_t)j;
        if (j == ncodes) {
            d->codes[ncodes] = c;
            d->local_iov[ncodes] = (struct iovec){d->code_hdrs + ncodes * MFP_CODE_HEADER_SIZE, MFP_CODE_HEADER_SIZE};
            d->remote_iov[ncodes] = (struct iovec){(void *)c, MFP_CODE_HEADER_SIZE};
            ncodes++;
        }
    }
    if (d->mem.readv(d->local_iov, d->remote_iov, ncodes) != ncodes) {
        *error = MFP_PYTHON_READ_FAULT;
        return -1;
    }
    for (size_t j = 0; j < ncodes; j++) {
        const PyCodeObject *h = (const PyCodeObject *)(d->code_hdrs + j * MFP_CODE_HEADER_SIZE);
        if (h->ob_base.ob_base.ob_type != &PyCode_Type || h->co_firstlineno < 0) {
            *error = MFP_PYTHON_INVALID;
            return -1;
        }
    }
    for (int i = 0; i < depth; i++) {
        const mfp_python_frame *f = &frames[i];
        const PyCodeObject *h = (const PyCodeObject *)(d->code_hdrs + f->hdr * MFP_CODE_HEADER_SIZE);
        uint32_t id = resolve_frame(d, f->code, h, f->lasti, error);
        if (id == MFP_NONE) return -1;
        ids[i] = id;
    }
    return 0;
}

#endif /* MFP_LAYOUT_KNOWN */
