/* timeline_int.h — private to native/timeline/: the snapshot every reader
 * fills, the notes they leave, and the three readers (procfs, cgroup,
 * NVML). Nothing outside this folder includes it.
 *
 * Threads: a reader's state belongs to whichever thread polls (the poller
 * thread while it runs, the controlling thread before start returns and
 * after stop joined). Only the notes are shared, under the timeline mutex.
 */
#ifndef MFP_TIMELINE_INT_H
#define MFP_TIMELINE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define MFP_TL_MAX_GPU 8
#define MFP_TL_NOTE_MAX 24
#define MFP_TL_NOTE_LEN 240
#define MFP_TL_PATH 512
#define MFP_TL_MAX_PARENTS 32

/* Every series the poller can record. A reader sets ok[i] and v[i]: for
 * counters (cpu, disk, net, throttling) v is cumulative and the poller turns
 * two readings into a rate; for gauges v is the value itself. */
enum {
    MFP_TL_CPU,          /* counter: CPU ns, self + children */
    MFP_TL_RSS,          /* gauge: bytes */
    MFP_TL_RSS_PEAK,     /* gauge: bytes (VmHWM) */
    MFP_TL_THREADS,      /* gauge */
    MFP_TL_CHILDREN,     /* gauge: live descendants found */
    MFP_TL_CHILDREN_RSS, /* gauge: bytes, sum over them */
    MFP_TL_DISK_R,       /* counter: bytes */
    MFP_TL_DISK_W,       /* counter: bytes */
    MFP_TL_NET_R,        /* counter: bytes */
    MFP_TL_NET_S,        /* counter: bytes */
    MFP_TL_SOCK_R,       /* counter: bytes received on this process's TCP sockets */
    MFP_TL_SOCK_S,       /* counter: bytes sent (acknowledged) on them */
    MFP_TL_CG_MEM,       /* gauge: bytes */
    MFP_TL_CG_LIMIT,     /* gauge: bytes, only when finite */
    MFP_TL_CG_OOM,       /* gauge: OOM kills (cumulative as read) */
    MFP_TL_CG_THROTTLE,  /* counter: throttled ns */
    MFP_TL_GPU0,         /* then per GPU: util %, memory used, memory total */
    MFP_TL_NSERIES = MFP_TL_GPU0 + 3 * MFP_TL_MAX_GPU
};

typedef struct {
    uint64_t t_ns; /* CLOCK_MONOTONIC when the reading started */
    uint8_t ok[MFP_TL_NSERIES];
    uint64_t v[MFP_TL_NSERIES];
} mfp_timeline_snap;

/* What could not be read; the card shows these lines. Deduplicated;
 * past MFP_TL_NOTE_MAX further notes are dropped. */
typedef struct {
    pthread_mutex_t *mu; /* NULL while only one thread exists */
    int n;
    char text[MFP_TL_NOTE_MAX][MFP_TL_NOTE_LEN];
} mfp_timeline_notes;

void mfp_timeline_note(mfp_timeline_notes *ns, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Whole small file into buf (NUL-terminated). Returns its length, or -1
 * (errno set) when it cannot be opened or read. *truncated (may be NULL)
 * is set when the file did not fit. */
long mfp_timeline_read_file(const char *path, char *buf, size_t cap, int *truncated);
/* First unsigned integer after "key" at the start of a line; 0 or -1. */
int mfp_timeline_find_u64(const char *text, const char *key, uint64_t *out);

/* ---- sockets.c: TCP bytes of this process's own sockets */
typedef struct {
    uint64_t inode, rx, tx;
} mfp_timeline_sock;

typedef struct {
    mfp_timeline_sock *known, *now; /* last poll's sockets (by inode), this poll's */
    size_t nknown, known_cap, cap;
    uint64_t rx, tx;                /* bytes since the first poll */
    uint64_t polls;
} mfp_timeline_sockets;

/* Cumulative bytes received / sent on this process's TCP sockets since the
 * first call; 0, or -1 when /proc/self/fd cannot be listed. */
int mfp_timeline_sockets_read(mfp_timeline_sockets *sk, int loopback, uint64_t *rx, uint64_t *tx);
void mfp_timeline_sockets_close(mfp_timeline_sockets *sk);

/* ---- procfs: this process, its live descendants, the namespace's net */
typedef struct {
    char root[MFP_TL_PATH];
    int real;         /* root is the kernel's /proc: use syscalls for CPU */
    int loopback;     /* count "lo" */
    double ns_per_tick;
    uint64_t page;
    char *buf;        /* scratch for file contents */
    size_t bufcap;
    /* what worked when opened; what failed is never retried */
    int stat_ok, status_ok, io_ok, net_ok, children_ok, child_io_ok, sock_ok;
    mfp_timeline_sockets sk;
    int warned_read; /* a once-working file failed later: noted once */
    uint64_t memtotal; /* MemTotal, 0 when unknown */
    /* our threads that had children at the last full scan of them */
    int full_every;  /* polls between full scans (>= 1) */
    int since_full;  /* polls since the last full scan; 0 = scan now */
    int nparents;
    char parents[MFP_TL_MAX_PARENTS][16];
} mfp_timeline_procfs;

/* Probe what can be read, note what cannot. -1 only when out of memory. */
int mfp_timeline_procfs_open(mfp_timeline_procfs *pf, const char *root, int loopback,
                             mfp_timeline_notes *ns);
void mfp_timeline_procfs_read(mfp_timeline_procfs *pf, mfp_timeline_snap *s,
                              mfp_timeline_notes *ns);
void mfp_timeline_procfs_close(mfp_timeline_procfs *pf);

/* ---- cgroup v2 (else v1): memory and CPU of the cgroup of this process */
typedef struct {
    int mem_v, cpu_v;            /* 0 = not found, 1, 2 */
    char mem_dir[MFP_TL_PATH];   /* the cgroup directory used for memory */
    char cpu_dir[MFP_TL_PATH];
    uint64_t mem_limit_above;    /* smallest limit of the ancestors, or UINT64_MAX */
    double quota_cores;          /* smallest CPU quota up the path; 0 = none */
    int mem_ok, limit_ok, oom_ok, thr_ok, peak_ok;
    int warned_read;
} mfp_timeline_cgroup;

void mfp_timeline_cgroup_open(mfp_timeline_cgroup *cg, const char *proc_root,
                              const char *cgroup_root, mfp_timeline_notes *ns);
void mfp_timeline_cgroup_read(mfp_timeline_cgroup *cg, mfp_timeline_snap *s,
                              mfp_timeline_notes *ns);
/* The cgroup's memory high-water mark (memory.peak, v1
 * memory.max_usage_in_bytes); 0 or -1. */
int mfp_timeline_cgroup_peak(const mfp_timeline_cgroup *cg, uint64_t *out);

/* How many processes in the memory cgroup are neither this process nor
 * its descendants (other tasks, the container's other programs); -1 when
 * unknown. 0 means the cgroup's figures are the step's own. */
int mfp_timeline_cgroup_others(const mfp_timeline_cgroup *cg, const char *proc_root);

/* ---- NVML, loaded with dlopen when asked for */
typedef struct {
    void *lib;
    int n;                 /* devices polled */
    void *dev[MFP_TL_MAX_GPU];
    char name[MFP_TL_MAX_GPU][96];
    uint64_t mem_total[MFP_TL_MAX_GPU];
    int (*get_util)(void *dev, void *util);
    int (*get_mem)(void *dev, void *mem);
    int (*shutdown)(void);
    int warned_read;
} mfp_timeline_gpu;

/* path NULL or "" = no GPU polling. Never fails: no library, no device or
 * any NVML error leaves n == 0 and a note. */
void mfp_timeline_gpu_open(mfp_timeline_gpu *g, const char *path, mfp_timeline_notes *ns);
void mfp_timeline_gpu_read(mfp_timeline_gpu *g, mfp_timeline_snap *s, mfp_timeline_notes *ns);
/* Shut NVML down and unload it. */
void mfp_timeline_gpu_close(mfp_timeline_gpu *g);

#endif
