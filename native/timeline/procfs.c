/* procfs.c — what this process and its children use, read from /proc.
 *
 * Why this way: the kernel keeps no "process tree" totals, so we add them
 * up ourselves, cheaply. CPU of this process comes from
 * CLOCK_PROCESS_CPUTIME_ID (ns, all threads, also exited ones) and of its
 * waited-for children from getrusage(RUSAGE_CHILDREN): both are syscalls
 * with better than tick resolution, which matters at 10 ms intervals. Live
 * descendants are found through /proc/<pid>/task/<tid>/children (one small
 * file per thread, no scan of every pid on the machine), bounded to 256
 * processes and 8 levels, and each costs two reads (stat, io); a process
 * with no child at all (waitid says so in one syscall) skips the walk.
 * When a live child is reaped its whole CPU moves into our RUSAGE_CHILDREN
 * at once, so the sum stays continuous. With a test root (not the kernel's /proc)
 * everything comes from files, CPU in clock ticks.
 *
 * Files are opened and closed each poll rather than kept open: a program
 * that closes "all" descriptors or reuses their numbers cannot make us
 * read the wrong file, and the cost is measured in bench/.
 *
 * Runs off the GIL (poller thread): touches only the procfs state and the
 * snapshot it is given; notes go through mfp_timeline_note.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "timeline_int.h"

#define MAX_DESCENDANTS 256
#define MAX_DEPTH 8

long mfp_timeline_read_file(const char *path, char *buf, size_t cap, int *truncated) {
    if (truncated) *truncated = 0;
    if (cap == 0) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = 0;
    for (;;) {
        if (len + 1 >= cap) {
            if (truncated) *truncated = 1;
            break;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return (long)len;
}

/* Strict unsigned decimal: digits, then a space, newline or NUL. */
static int parse_u64(const char *p, const char **end, uint64_t *out) {
    while (*p == ' ' || *p == '\t') p++;
    if (!isdigit((unsigned char)*p)) return -1;
    uint64_t v = 0;
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
        p++;
    }
    if (*p && *p != ' ' && *p != '\t' && *p != '\n') return -1;
    *out = v;
    if (end) *end = p;
    return 0;
}

int mfp_timeline_find_u64(const char *text, const char *key, uint64_t *out) {
    size_t kl = strlen(key);
    const char *p = text;
    while (p && *p) {
        if (strncmp(p, key, kl) == 0) return parse_u64(p + kl, NULL, out);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

/* Fields of /proc/<pid>/stat after the command name; f[0] is field 3
 * (state). The name may hold spaces and ')' so we start after the last ')'. */
#define STAT_FIELDS 22
static int parse_stat(char *text, uint64_t f[STAT_FIELDS]) {
    char *p = strrchr(text, ')');
    if (!p) return -1;
    p++;
    while (*p == ' ') p++;
    if (!*p || *p == '\n') return -1;
    f[0] = (uint64_t)(unsigned char)*p; /* state letter */
    p++;
    for (int i = 1; i < STAT_FIELDS; i++) {
        while (*p == ' ') p++;
        /* some fields are signed (tpgid is -1 without a terminal, nice may
         * be negative); none we use is ever negative, so they read as 0 */
        int neg = *p == '-';
        const char *end;
        if (parse_u64(p + neg, &end, &f[i]) != 0) return -1;
        if (neg) f[i] = 0;
        p = (char *)end;
    }
    return 0;
}
#define F_UTIME 11   /* field 14 */
#define F_STIME 12
#define F_CUTIME 13
#define F_CSTIME 14
#define F_THREADS 17 /* field 20 */
#define F_RSS 21     /* field 24, pages */

/* A path into MFP_TL_PATH bytes; -1 (and an empty path, which no open
 * finds) when it does not fit. */
static int pathf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pathf(char *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, MFP_TL_PATH, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= MFP_TL_PATH) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

static void path2(char *out, const mfp_timeline_procfs *pf, const char *a, const char *b) {
    pathf(out, "%s/%s/%s", pf->root, a, b);
}

typedef struct {
    uint64_t cpu_ticks, rss_pages, read_b, write_b, n;
    int io_ok;
} tree_acc;

static int read_io(mfp_timeline_procfs *pf, const char *pid, uint64_t *rb, uint64_t *wb) {
    char path[MFP_TL_PATH];
    path2(path, pf, pid, "io");
    if (mfp_timeline_read_file(path, pf->buf, pf->bufcap, NULL) < 0) return -1;
    if (mfp_timeline_find_u64(pf->buf, "read_bytes:", rb) != 0) return -1;
    if (mfp_timeline_find_u64(pf->buf, "write_bytes:", wb) != 0) return -1;
    return 0;
}

/* One live descendant: its CPU (including its own reaped children), RSS
 * and I/O. A process that exited between listing and reading is skipped. */
static void add_process(mfp_timeline_procfs *pf, const char *pid, tree_acc *acc) {
    char path[MFP_TL_PATH];
    uint64_t f[STAT_FIELDS];
    path2(path, pf, pid, "stat");
    if (mfp_timeline_read_file(path, pf->buf, pf->bufcap, NULL) < 0) return;
    if (parse_stat(pf->buf, f) != 0) return;
    acc->n++;
    acc->cpu_ticks += f[F_UTIME] + f[F_STIME] + f[F_CUTIME] + f[F_CSTIME];
    acc->rss_pages += f[F_RSS];
    uint64_t rb, wb;
    if (read_io(pf, pid, &rb, &wb) == 0) {
        acc->read_b += rb;
        acc->write_b += wb;
    } else {
        acc->io_ok = 0;
    }
}

static void walk(mfp_timeline_procfs *pf, const char *pid, int depth, tree_acc *acc);

/* The children of one thread and theirs; 1 when it has any. The pid list
 * is copied out of the scratch buffer, which add_process reuses. */
static int walk_thread(mfp_timeline_procfs *pf, const char *pid, const char *tid, int depth,
                       tree_acc *acc) {
    char path[MFP_TL_PATH], kids[1024];
    pathf(path, "%s/%s/task/%s/children", pf->root, pid, tid);
    int trunc;
    if (mfp_timeline_read_file(path, kids, sizeof kids, &trunc) <= 0) return 0;
    int any = 0;
    char *save = NULL;
    for (char *tok = strtok_r(kids, " \n", &save); tok && acc->n < MAX_DESCENDANTS;
         tok = strtok_r(NULL, " \n", &save)) {
        uint64_t child;
        /* a pid cut off by truncation would be wrong: stop at the end */
        if (trunc && save && *save == '\0') break;
        if (parse_u64(tok, NULL, &child) != 0) continue;
        char cs[24];
        snprintf(cs, sizeof cs, "%llu", (unsigned long long)child);
        any = 1;
        add_process(pf, cs, acc);
        if (depth + 1 < MAX_DEPTH) walk(pf, cs, depth + 1, acc);
    }
    return any;
}

/* Our own threads: a process may have hundreds, and a file each per poll
 * adds up at short intervals. So between full scans (every full_every
 * polls, about 100 ms) only the threads that had children at the last
 * full scan are read; a child forked by another thread in between is found
 * at the next full scan, and the CPU it used by then is counted then. */
static void walk_self(mfp_timeline_procfs *pf, tree_acc *acc) {
    if (pf->since_full > 0 && pf->since_full < pf->full_every) {
        pf->since_full++;
        for (int i = 0; i < pf->nparents && acc->n < MAX_DESCENDANTS; i++)
            walk_thread(pf, "self", pf->parents[i], 0, acc);
        return;
    }
    char path[MFP_TL_PATH];
    path2(path, pf, "self", "task");
    DIR *d = opendir(path);
    if (!d) return;
    int n = 0, overflow = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && acc->n < MAX_DESCENDANTS) {
        if (!isdigit((unsigned char)e->d_name[0]) || strlen(e->d_name) >= 16) continue;
        if (!walk_thread(pf, "self", e->d_name, 0, acc)) continue;
        if (n < MFP_TL_MAX_PARENTS) memcpy(pf->parents[n++], e->d_name, strlen(e->d_name) + 1);
        else overflow = 1;
    }
    closedir(d);
    pf->nparents = n;
    pf->since_full = overflow ? 0 : 1; /* too many parents: scan fully each time */
}

/* Children of every thread of `pid`, then theirs. */
static void walk(mfp_timeline_procfs *pf, const char *pid, int depth, tree_acc *acc) {
    char path[MFP_TL_PATH];
    path2(path, pf, pid, "task");
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && acc->n < MAX_DESCENDANTS) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        walk_thread(pf, pid, e->d_name, depth, acc);
    }
    closedir(d);
}

static uint64_t ns_of(const struct timespec *ts) {
    return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}
static uint64_t ns_of_tv(const struct timeval *tv) {
    return (uint64_t)tv->tv_sec * 1000000000ull + (uint64_t)tv->tv_usec * 1000ull;
}

static void read_self(mfp_timeline_procfs *pf, mfp_timeline_snap *s, int *bad) {
    char path[MFP_TL_PATH];
    uint64_t f[STAT_FIELDS];
    if (pf->stat_ok) {
        path2(path, pf, "self", "stat");
        if (mfp_timeline_read_file(path, pf->buf, pf->bufcap, NULL) >= 0 &&
            parse_stat(pf->buf, f) == 0) {
            s->ok[MFP_TL_RSS] = s->ok[MFP_TL_THREADS] = 1;
            s->v[MFP_TL_RSS] = f[F_RSS] * pf->page;
            s->v[MFP_TL_THREADS] = f[F_THREADS];
            if (!pf->real) {
                s->ok[MFP_TL_CPU] = 1;
                s->v[MFP_TL_CPU] = (uint64_t)((double)(f[F_UTIME] + f[F_STIME] + f[F_CUTIME] +
                                                       f[F_CSTIME]) *
                                              pf->ns_per_tick);
            }
        } else {
            *bad = 1;
        }
    }
    if (pf->real) {
        struct timespec ts;
        if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0) {
            s->ok[MFP_TL_CPU] = 1;
            s->v[MFP_TL_CPU] = ns_of(&ts);
        }
    }
    if (pf->status_ok) {
        uint64_t kb;
        path2(path, pf, "self", "status");
        if (mfp_timeline_read_file(path, pf->buf, pf->bufcap, NULL) >= 0 &&
            mfp_timeline_find_u64(pf->buf, "VmHWM:", &kb) == 0) {
            s->ok[MFP_TL_RSS_PEAK] = 1;
            s->v[MFP_TL_RSS_PEAK] = kb * 1024;
        } else {
            *bad = 1;
        }
    }
    if (pf->io_ok) {
        if (read_io(pf, "self", &s->v[MFP_TL_DISK_R], &s->v[MFP_TL_DISK_W]) == 0)
            s->ok[MFP_TL_DISK_R] = s->ok[MFP_TL_DISK_W] = 1;
        else
            *bad = 1;
    }
}

/* Sum of receive and transmit bytes over the interfaces of net/dev:
 * "  name: rx_bytes rx_packets ... (8 receive columns) tx_bytes ...". */
static int read_net(mfp_timeline_procfs *pf, uint64_t *rx, uint64_t *tx) {
    char path[MFP_TL_PATH];
    path2(path, pf, "self", "net/dev");
    if (mfp_timeline_read_file(path, pf->buf, pf->bufcap, NULL) < 0) return -1;
    uint64_t r = 0, t = 0;
    int lines = 0;
    for (char *line = pf->buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char *colon = strchr(line, ':');
        if (colon && !strchr(line, '|')) {
            *colon = '\0';
            char *name = line;
            while (*name == ' ') name++;
            const char *p = colon + 1;
            uint64_t col[9];
            int okc = 1;
            for (int i = 0; i < 9 && okc; i++) {
                const char *end;
                if (parse_u64(p, &end, &col[i]) != 0) okc = 0;
                else p = end;
            }
            if (!okc) return -1;
            lines++;
            if (pf->loopback || strcmp(name, "lo") != 0) {
                r += col[0];
                t += col[8];
            }
        }
        line = next;
    }
    if (lines == 0) return -1;
    *rx = r;
    *tx = t;
    return 0;
}

/* CPU of the children we waited for; changes exactly when one is reaped. */
static uint64_t reaped_cpu_ns(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_CHILDREN, &ru) != 0) return 0;
    return ns_of_tv(&ru.ru_utime) + ns_of_tv(&ru.ru_stime);
}

/* Whether this process has any child at all, live or zombie, from any
 * thread: waitid without reaping (WNOWAIT) says ECHILD when there is none.
 * One syscall instead of a file per thread, for the common case. */
static int may_have_children(const mfp_timeline_procfs *pf) {
    if (!pf->real) return 1;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return !(waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) != 0 &&
             errno == ECHILD);
}

/* This process and its live descendants. A child reaped while we read
 * would be missed (gone from the tree, not yet in our totals) or counted
 * twice, and the next poll would count the difference again; so when the
 * reaped total moved during the reading, we read again (at most twice). */
static void read_tree(mfp_timeline_procfs *pf, mfp_timeline_snap *out, int *bad,
                      mfp_timeline_notes *ns) {
    for (int attempt = 0;; attempt++) {
        mfp_timeline_snap s = *out;
        uint64_t r1 = pf->real ? reaped_cpu_ns() : 0;
        read_self(pf, &s, bad);
        tree_acc acc = {0, 0, 0, 0, 0, 1};
        if (pf->children_ok && may_have_children(pf)) walk_self(pf, &acc);
        else pf->since_full = 0; /* no child: the next walk scans fully */
        uint64_t r2 = pf->real ? reaped_cpu_ns() : 0;
        if (r1 != r2 && attempt < 2) continue;
        if (pf->children_ok) {
            s.ok[MFP_TL_CHILDREN] = s.ok[MFP_TL_CHILDREN_RSS] = 1;
            s.v[MFP_TL_CHILDREN] = acc.n;
            s.v[MFP_TL_CHILDREN_RSS] = acc.rss_pages * pf->page;
            if (s.ok[MFP_TL_CPU])
                s.v[MFP_TL_CPU] += r2 + (uint64_t)((double)acc.cpu_ticks * pf->ns_per_tick);
            if (s.ok[MFP_TL_DISK_R]) {
                s.v[MFP_TL_DISK_R] += acc.read_b;
                s.v[MFP_TL_DISK_W] += acc.write_b;
            }
            if (!acc.io_ok && pf->child_io_ok) {
                pf->child_io_ok = 0;
                mfp_timeline_note(ns, "disk: /proc/<pid>/io of a child process is not "
                                      "readable; its disk I/O is not counted");
            }
        } else if (s.ok[MFP_TL_CPU]) {
            s.v[MFP_TL_CPU] += r2;
        }
        *out = s;
        return;
    }
}

void mfp_timeline_procfs_read(mfp_timeline_procfs *pf, mfp_timeline_snap *s,
                              mfp_timeline_notes *ns) {
    int bad = 0;
    read_tree(pf, s, &bad, ns);
    if (pf->net_ok) {
        if (read_net(pf, &s->v[MFP_TL_NET_R], &s->v[MFP_TL_NET_S]) == 0)
            s->ok[MFP_TL_NET_R] = s->ok[MFP_TL_NET_S] = 1;
        else
            bad = 1;
    }
    if (pf->sock_ok &&
        mfp_timeline_sockets_read(&pf->sk, pf->loopback, &s->v[MFP_TL_SOCK_R], &s->v[MFP_TL_SOCK_S]) == 0)
        s->ok[MFP_TL_SOCK_R] = s->ok[MFP_TL_SOCK_S] = 1;
    if (bad && !pf->warned_read) {
        pf->warned_read = 1;
        mfp_timeline_note(ns, "process: a file under %s/self stopped being readable during "
                              "the run; some points are missing", pf->root);
    }
}

static void probe(mfp_timeline_procfs *pf, mfp_timeline_notes *ns) {
    mfp_timeline_snap s;
    memset(&s, 0, sizeof s);
    pf->stat_ok = pf->status_ok = pf->io_ok = pf->net_ok = 1;
    int bad = 0;
    read_self(pf, &s, &bad);
    if (!s.ok[MFP_TL_RSS]) {
        pf->stat_ok = 0;
        mfp_timeline_note(ns, "process: %s/self/stat missing or unreadable: no RSS, thread "
                              "count%s", pf->root, pf->real ? "" : " or CPU");
    }
    if (!s.ok[MFP_TL_RSS_PEAK]) {
        pf->status_ok = 0;
        mfp_timeline_note(ns, "process: no VmHWM in %s/self/status: no peak RSS", pf->root);
    }
    if (!s.ok[MFP_TL_DISK_R]) {
        pf->io_ok = 0;
        mfp_timeline_note(ns, "disk: %s/self/io missing or unreadable: no disk series",
                          pf->root);
    }
    uint64_t rx, tx;
    if (read_net(pf, &rx, &tx) != 0) {
        pf->net_ok = 0;
        mfp_timeline_note(ns, "network: %s/self/net/dev missing or unreadable: no network "
                              "series", pf->root);
    }
    /* our own TCP sockets: only with the kernel's /proc (a test root has no
     * descriptors of ours) */
    pf->sock_ok = pf->real;
    if (!pf->real)
        mfp_timeline_note(ns, "network: not reading this process's own sockets (proc root %s)",
                          pf->root);
    /* the children file of our own thread proves the kernel has them */
    char path[MFP_TL_PATH];
    pathf(path, "%s/self/task", pf->root);
    pf->children_ok = 0;
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!isdigit((unsigned char)e->d_name[0])) continue;
            pathf(path, "%s/self/task/%s/children", pf->root, e->d_name);
            if (access(path, R_OK) == 0) pf->children_ok = 1;
            break;
        }
        closedir(d);
    }
    pf->child_io_ok = 1;
    if (!pf->children_ok)
        mfp_timeline_note(ns, "child processes: %s/self/task/*/children not available; only "
                              "children already waited for are counted", pf->root);
    uint64_t kb;
    pathf(path, "%s/meminfo", pf->root);
    if (mfp_timeline_read_file(path, pf->buf, pf->bufcap, NULL) >= 0 &&
        mfp_timeline_find_u64(pf->buf, "MemTotal:", &kb) == 0)
        pf->memtotal = kb * 1024;
}

int mfp_timeline_procfs_open(mfp_timeline_procfs *pf, const char *root, int loopback,
                             mfp_timeline_notes *ns) {
    memset(pf, 0, sizeof *pf);
    snprintf(pf->root, sizeof pf->root, "%s", root);
    pf->real = strcmp(root, "/proc") == 0;
    pf->loopback = loopback;
    long tck = sysconf(_SC_CLK_TCK);
    pf->ns_per_tick = 1e9 / (double)(tck > 0 ? tck : 100);
    long pg = sysconf(_SC_PAGESIZE);
    pf->page = (uint64_t)(pg > 0 ? pg : 4096);
    pf->bufcap = 128 * 1024; /* net/dev of a host with hundreds of interfaces */
    pf->buf = malloc(pf->bufcap);
    if (!pf->buf) return -1;
    probe(pf, ns);
    return 0;
}

void mfp_timeline_procfs_close(mfp_timeline_procfs *pf) {
    mfp_timeline_sockets_close(&pf->sk);
    free(pf->buf);
    pf->buf = NULL;
}
