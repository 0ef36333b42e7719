/* nvml.c — GPU utilisation and memory through NVML, loaded at run time.
 *
 * Why this way: the package must build and import where there is no CUDA,
 * so nothing links against NVML. We dlopen the library (the driver ships
 * libnvidia-ml.so.1; MFP_NVML_LIBRARY names another, which is how the tests
 * load a fake one), look up the handful of entry points we use, and treat
 * every failure — no library, no symbol, no device, an NVML error — as "no
 * GPU series" plus a note. The ABI we rely on is NVML's stable C ABI: int
 * return codes (0 = success), opaque device handles, and two small structs
 * copied below. Opening happens in start(), in the controlling thread, so
 * the dynamic loader never runs on the poller thread.
 *
 * gpu_read runs off the GIL (poller thread): it calls only the two NVML
 * query functions and writes the snapshot it is given.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "timeline_int.h"

typedef struct {
    unsigned int gpu, memory; /* percent of the last sample period */
} nvml_utilization;
typedef struct {
    unsigned long long total, free, used; /* bytes */
} nvml_memory;

typedef int (*fn_void)(void);
typedef int (*fn_count)(unsigned int *);
typedef int (*fn_handle)(unsigned int, void **);
typedef int (*fn_name)(void *, char *, unsigned int);
typedef int (*fn_query)(void *, void *);

/* The _v2 entry points first, the old names as a fallback. */
static void *sym2(void *lib, const char *a, const char *b) {
    void *p = dlsym(lib, a);
    return p ? p : (b ? dlsym(lib, b) : NULL);
}

void mfp_timeline_gpu_open(mfp_timeline_gpu *g, const char *path, mfp_timeline_notes *ns) {
    memset(g, 0, sizeof *g);
    if (!path || !path[0]) return;
    g->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!g->lib) {
        const char *why = dlerror();
        if (!why || strstr(why, "No such file"))
            mfp_timeline_note(ns, "GPU: no NVML library (%s): no GPU series", path);
        else
            mfp_timeline_note(ns, "GPU: NVML not loaded (%s): no GPU series", why);
        return;
    }
    fn_void init = (fn_void)sym2(g->lib, "nvmlInit_v2", "nvmlInit");
    fn_count count = (fn_count)sym2(g->lib, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    fn_handle handle = (fn_handle)sym2(g->lib, "nvmlDeviceGetHandleByIndex_v2",
                                       "nvmlDeviceGetHandleByIndex");
    fn_name name = (fn_name)sym2(g->lib, "nvmlDeviceGetName", NULL);
    g->get_util = (int (*)(void *, void *))sym2(g->lib, "nvmlDeviceGetUtilizationRates", NULL);
    g->get_mem = (int (*)(void *, void *))sym2(g->lib, "nvmlDeviceGetMemoryInfo", NULL);
    g->shutdown = (fn_void)sym2(g->lib, "nvmlShutdown", NULL);
    if (!init || !count || !handle || !g->get_util || !g->get_mem || !g->shutdown) {
        mfp_timeline_note(ns, "GPU: %s lacks NVML functions we need: no GPU series", path);
        dlclose(g->lib);
        memset(g, 0, sizeof *g);
        return;
    }
    int rc = init();
    if (rc != 0) {
        mfp_timeline_note(ns, "GPU: nvmlInit failed (NVML error %d): no GPU series", rc);
        dlclose(g->lib);
        memset(g, 0, sizeof *g);
        return;
    }
    unsigned int n = 0;
    rc = count(&n);
    if (rc != 0 || n == 0) {
        if (rc != 0)
            mfp_timeline_note(ns, "GPU: nvmlDeviceGetCount failed (NVML error %d)", rc);
        else
            mfp_timeline_note(ns, "GPU: NVML found no device: no GPU series");
        mfp_timeline_gpu_close(g);
        return;
    }
    if (n > MFP_TL_MAX_GPU) {
        mfp_timeline_note(ns, "GPU: %u devices, only the first %d are polled", n,
                          MFP_TL_MAX_GPU);
        n = MFP_TL_MAX_GPU;
    }
    for (unsigned int i = 0; i < n; i++) {
        void *dev = NULL;
        nvml_memory mem;
        if (handle(i, &dev) != 0 || g->get_mem(dev, &mem) != 0) {
            mfp_timeline_note(ns, "GPU %u: NVML cannot query it: not polled", i);
            continue;
        }
        int k = g->n++;
        g->dev[k] = dev;
        g->mem_total[k] = mem.total;
        if (!name || name(dev, g->name[k], sizeof g->name[k]) != 0)
            snprintf(g->name[k], sizeof g->name[k], "GPU %u", i);
        g->name[k][sizeof g->name[k] - 1] = '\0';
    }
    if (g->n == 0) mfp_timeline_gpu_close(g);
}

void mfp_timeline_gpu_read(mfp_timeline_gpu *g, mfp_timeline_snap *s, mfp_timeline_notes *ns) {
    for (int i = 0; i < g->n; i++) {
        nvml_utilization u;
        nvml_memory m;
        int base = MFP_TL_GPU0 + 3 * i;
        if (g->get_util(g->dev[i], &u) == 0) {
            s->ok[base] = 1;
            s->v[base] = u.gpu;
        } else if (!g->warned_read) {
            g->warned_read = 1;
            mfp_timeline_note(ns, "GPU: an NVML query failed during the run; some points are "
                                  "missing");
        }
        if (g->get_mem(g->dev[i], &m) == 0) {
            s->ok[base + 1] = s->ok[base + 2] = 1;
            s->v[base + 1] = m.used;
            s->v[base + 2] = m.total;
        }
    }
}

void mfp_timeline_gpu_close(mfp_timeline_gpu *g) {
    if (g->lib) {
        if (g->shutdown) g->shutdown();
        dlclose(g->lib);
    }
    memset(g, 0, sizeof *g);
}
