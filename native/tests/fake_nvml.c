/* fake_nvml.c — a stand-in for libnvidia-ml.so.1 so the GPU path of the
 * timeline runs on machines without a GPU (CI). Built by native/Makefile
 * into build/libfake_nvml.so; the tests point MFP_NVML_LIBRARY at it.
 *
 * It implements only the entry points the timeline uses, with NVML's C ABI
 * (int return codes, 0 = success; opaque device handles). Behaviour is set
 * by the environment when nvmlInit_v2 runs:
 *   FAKE_NVML_DEVICES     number of devices (default 2, at most 4)
 *   FAKE_NVML_INIT_ERROR  a non-zero code nvmlInit_v2 returns
 *   FAKE_NVML_QUERY_US    how long a utilisation query takes (default 0)
 * Like a real library it holds a lock of its own through each call, so a
 * child forked in the middle of one finds it taken.
 * Device i reports utilisation 30 + 40*i % and (i+1) GiB used of
 * (16 + 8*i) GiB. fake_nvml_calls() lets a test check init/shutdown pairs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define GiB (1024ull * 1024ull * 1024ull)

typedef struct {
    unsigned int gpu, memory;
} fake_utilization;
typedef struct {
    unsigned long long total, free, used;
} fake_memory;
typedef struct {
    int index;
} fake_device;

static fake_device devices[4] = {{0}, {1}, {2}, {3}};
static int ndevices, inits, shutdowns, queries;
static long query_us;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int nvmlInit_v2(void) {
    const char *err = getenv("FAKE_NVML_INIT_ERROR");
    if (err && atoi(err) != 0) return atoi(err);
    const char *n = getenv("FAKE_NVML_DEVICES");
    const char *us = getenv("FAKE_NVML_QUERY_US");
    pthread_mutex_lock(&lock);
    ndevices = n ? atoi(n) : 2;
    if (ndevices < 0) ndevices = 0;
    if (ndevices > 4) ndevices = 4;
    query_us = us ? atol(us) : 0;
    inits++;
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

int nvmlShutdown(void) {
    if (inits <= shutdowns) return NVML_ERROR_UNINITIALIZED;
    shutdowns++;
    return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (inits <= shutdowns) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = (unsigned int)ndevices;
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, fake_device **dev) {
    if (inits <= shutdowns) return NVML_ERROR_UNINITIALIZED;
    if (!dev || i >= (unsigned int)ndevices) return NVML_ERROR_INVALID_ARGUMENT;
    *dev = &devices[i];
    return NVML_SUCCESS;
}

int nvmlDeviceGetName(fake_device *dev, char *name, unsigned int len) {
    if (!dev || !name || len == 0) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, len, "Fake GPU %d", dev->index);
    return NVML_SUCCESS;
}

int nvmlDeviceGetUtilizationRates(fake_device *dev, fake_utilization *u) {
    if (inits <= shutdowns) return NVML_ERROR_UNINITIALIZED;
    if (!dev || !u) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    if (query_us > 0) {
        struct timespec ts = {query_us / 1000000, (query_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    u->gpu = 30u + 40u * (unsigned int)dev->index;
    u->memory = 10u;
    queries++;
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

int nvmlDeviceGetMemoryInfo(fake_device *dev, fake_memory *m) {
    if (inits <= shutdowns) return NVML_ERROR_UNINITIALIZED;
    if (!dev || !m) return NVML_ERROR_INVALID_ARGUMENT;
    m->total = (16ull + 8ull * (unsigned long long)dev->index) * GiB;
    m->used = (1ull + (unsigned long long)dev->index) * GiB;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

/* Not NVML: how often init, shutdown and utilisation queries ran. */
void fake_nvml_calls(int *init, int *shutdown, int *util_queries) {
    *init = inits;
    *shutdown = shutdowns;
    *util_queries = queries;
}
