/* cgroup.c — the limits the step runs under: cgroup memory and CPU.
 *
 * Why this way: containers differ. A host may run cgroup v2 only, v1 only,
 * or both (v2 mounted at <root>/unified with the controllers still on v1,
 * as on our CI machines), and the path in /proc/self/cgroup may or may not
 * exist under the mount (without a cgroup namespace, Docker shows the host
 * path but mounts only the container's own cgroup). So for each controller
 * we take v2 when its files are there, else v1, and try "<mount><path>"
 * then "<mount>" itself. Limits set higher up also bind, so the limit is
 * the smallest found walking up to the mount: walked once at start for the
 * ancestors, while the cgroup's own limit file is re-read every poll. A
 * controller we cannot find is a note, not an error.
 *
 * Runs off the GIL (poller thread) after open: touches only the cgroup
 * state and the snapshot it is given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "timeline_int.h"

/* v1 writes "no limit" as a huge page-rounded number */
#define UNLIMITED_FLOOR (1ull << 62)

static int exists(const char *dir, const char *file) {
    char path[MFP_TL_PATH + 64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, R_OK) == 0;
}

/* Reads a one-value file: a number, or "max" (then *v = UINT64_MAX). */
static int read_value(const char *dir, const char *file, uint64_t *v) {
    char path[MFP_TL_PATH + 64], buf[128];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (mfp_timeline_read_file(path, buf, sizeof buf, NULL) <= 0) return -1;
    if (strncmp(buf, "max", 3) == 0 && (buf[3] == '\n' || buf[3] == '\0' || buf[3] == ' ')) {
        *v = UINT64_MAX;
        return 0;
    }
    return mfp_timeline_find_u64(buf, "", v);
}

static int read_key(const char *dir, const char *file, const char *key, uint64_t *v) {
    char path[MFP_TL_PATH + 64], buf[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (mfp_timeline_read_file(path, buf, sizeof buf, NULL) < 0) return -1;
    return mfp_timeline_find_u64(buf, key, v);
}

/* The directory of our cgroup under mount, holding `marker`. */
static int resolve(const char *mount, const char *cgpath, const char *marker, char *out) {
    if (cgpath[0] && strcmp(cgpath, "/") != 0) {
        snprintf(out, MFP_TL_PATH, "%s%s", mount, cgpath);
        if (exists(out, marker)) return 0;
    }
    snprintf(out, MFP_TL_PATH, "%s", mount);
    return exists(out, marker) ? 0 : -1;
}

/* Cuts the last path component; -1 when that would leave the mount. */
static int go_up(char *dir, const char *mount) {
    size_t ml = strlen(mount);
    char *slash = strrchr(dir, '/');
    if (!slash || (size_t)(slash - dir) < ml || strcmp(dir, mount) == 0) return -1;
    *slash = '\0';
    return 0;
}

static uint64_t mem_limit_file(const mfp_timeline_cgroup *cg, const char *dir) {
    uint64_t v;
    if (read_value(dir, cg->mem_v == 2 ? "memory.max" : "memory.limit_in_bytes", &v) != 0)
        return UINT64_MAX;
    return v >= UNLIMITED_FLOOR ? UINT64_MAX : v;
}

/* CPU quota of one directory in cores; 0 = none or unreadable. */
static double quota_file(int v, const char *dir) {
    char path[MFP_TL_PATH + 64], buf[128];
    if (v == 2) {
        snprintf(path, sizeof path, "%s/cpu.max", dir);
        if (mfp_timeline_read_file(path, buf, sizeof buf, NULL) <= 0) return 0;
        unsigned long long q, per;
        if (sscanf(buf, "%llu %llu", &q, &per) == 2 && per > 0) return (double)q / (double)per;
        return 0;
    }
    long long q;
    uint64_t per;
    snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
    if (mfp_timeline_read_file(path, buf, sizeof buf, NULL) <= 0) return 0;
    if (sscanf(buf, "%lld", &q) != 1 || q <= 0) return 0;
    if (read_value(dir, "cpu.cfs_period_us", &per) != 0 || per == 0 || per == UINT64_MAX)
        return 0;
    return (double)q / (double)per;
}

typedef struct {
    char v2[MFP_TL_PATH], mem[MFP_TL_PATH], cpu[MFP_TL_PATH];
    int has_v2, has_mem, has_cpu;
} cg_paths;

/* "id:controllers:path" lines of /proc/self/cgroup. */
static int parse_self_cgroup(const char *text, cg_paths *ps) {
    memset(ps, 0, sizeof *ps);
    int lines = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char l[MFP_TL_PATH + 128];
        if (len >= sizeof l) len = sizeof l - 1;
        memcpy(l, line, len);
        l[len] = '\0';
        line = nl ? nl + 1 : NULL;
        char *c1 = strchr(l, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c1 || !c2 || c2[1] != '/') continue;
        *c1 = *c2 = '\0';
        const char *ctl = c1 + 1, *path = c2 + 1;
        lines++;
        if (strcmp(l, "0") == 0 && ctl[0] == '\0') {
            snprintf(ps->v2, sizeof ps->v2, "%s", path);
            ps->has_v2 = 1;
            continue;
        }
        char list[256];
        snprintf(list, sizeof list, "%s", ctl);
        char *save = NULL;
        for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (strcmp(tok, "memory") == 0) {
                snprintf(ps->mem, sizeof ps->mem, "%s", path);
                ps->has_mem = 1;
            } else if (strcmp(tok, "cpu") == 0) {
                snprintf(ps->cpu, sizeof ps->cpu, "%s", path);
                ps->has_cpu = 1;
            }
        }
    }
    return lines > 0 ? 0 : -1;
}

static void find_memory(mfp_timeline_cgroup *cg, const cg_paths *ps, const char *v2mnt,
                        const char *root, char *mnt) {
    if (ps->has_v2 && v2mnt[0] && resolve(v2mnt, ps->v2, "memory.current", cg->mem_dir) == 0) {
        cg->mem_v = 2;
        snprintf(mnt, MFP_TL_PATH, "%s", v2mnt);
        return;
    }
    if (!ps->has_mem) return;
    snprintf(mnt, MFP_TL_PATH, "%s/memory", root);
    if (resolve(mnt, ps->mem, "memory.usage_in_bytes", cg->mem_dir) == 0) cg->mem_v = 1;
}

static void find_cpu(mfp_timeline_cgroup *cg, const cg_paths *ps, const char *v2mnt,
                     const char *root, char *mnt) {
    if (ps->has_v2 && v2mnt[0] && resolve(v2mnt, ps->v2, "cpu.max", cg->cpu_dir) == 0) {
        cg->cpu_v = 2;
        snprintf(mnt, MFP_TL_PATH, "%s", v2mnt);
        return;
    }
    if (!ps->has_cpu) return;
    static const char *const names[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(mnt, MFP_TL_PATH, "%s/%s", root, names[i]);
        if (resolve(mnt, ps->cpu, "cpu.cfs_period_us", cg->cpu_dir) == 0) {
            cg->cpu_v = 1;
            return;
        }
    }
}

static void open_memory(mfp_timeline_cgroup *cg, const char *mnt) {
    uint64_t v;
    const int v2 = cg->mem_v == 2;
    cg->mem_ok = read_value(cg->mem_dir, v2 ? "memory.current" : "memory.usage_in_bytes",
                            &v) == 0 && v != UINT64_MAX;
    cg->limit_ok = read_value(cg->mem_dir, v2 ? "memory.max" : "memory.limit_in_bytes",
                              &v) == 0;
    cg->oom_ok = read_key(cg->mem_dir, v2 ? "memory.events" : "memory.oom_control",
                          "oom_kill ", &v) == 0;
    cg->peak_ok = mfp_timeline_cgroup_peak(cg, &v) == 0;
    char dir[MFP_TL_PATH];
    snprintf(dir, sizeof dir, "%s", cg->mem_dir);
    cg->mem_limit_above = UINT64_MAX;
    while (go_up(dir, mnt) == 0) {
        uint64_t l = mem_limit_file(cg, dir);
        if (l < cg->mem_limit_above) cg->mem_limit_above = l;
    }
}

static void open_cpu(mfp_timeline_cgroup *cg, const char *mnt) {
    uint64_t v;
    cg->thr_ok = read_key(cg->cpu_dir, "cpu.stat",
                          cg->cpu_v == 2 ? "throttled_usec " : "throttled_time ", &v) == 0;
    char dir[MFP_TL_PATH];
    snprintf(dir, sizeof dir, "%s", cg->cpu_dir);
    cg->quota_cores = 0;
    do {
        double q = quota_file(cg->cpu_v, dir);
        if (q > 0 && (cg->quota_cores == 0 || q < cg->quota_cores)) cg->quota_cores = q;
    } while (go_up(dir, mnt) == 0);
}

void mfp_timeline_cgroup_open(mfp_timeline_cgroup *cg, const char *proc_root,
                              const char *cgroup_root, mfp_timeline_notes *ns) {
    memset(cg, 0, sizeof *cg);
    cg->mem_limit_above = UINT64_MAX;
    char path[MFP_TL_PATH + 32], text[4096];
    cg_paths ps;
    snprintf(path, sizeof path, "%s/self/cgroup", proc_root);
    if (mfp_timeline_read_file(path, text, sizeof text, NULL) < 0 ||
        parse_self_cgroup(text, &ps) != 0) {
        mfp_timeline_note(ns, "cgroup: %s missing or unreadable: no cgroup series or limits",
                          path);
        return;
    }
    char v2mnt[MFP_TL_PATH] = "", mnt[MFP_TL_PATH];
    if (exists(cgroup_root, "cgroup.controllers")) {
        snprintf(v2mnt, sizeof v2mnt, "%s", cgroup_root);
    } else {
        snprintf(mnt, sizeof mnt, "%s/unified", cgroup_root);
        if (exists(mnt, "cgroup.controllers")) snprintf(v2mnt, sizeof v2mnt, "%s", mnt);
    }
    find_memory(cg, &ps, v2mnt, cgroup_root, mnt);
    if (cg->mem_v) open_memory(cg, mnt);
    if (!cg->mem_v || !cg->mem_ok)
        mfp_timeline_note(ns, "cgroup: no readable memory controller for this process under "
                              "%s: no cgroup memory series or limit", cgroup_root);
    else if (!cg->oom_ok)
        mfp_timeline_note(ns, "cgroup: no oom_kill count in %s: OOM kills not tracked",
                          cg->mem_dir);
    find_cpu(cg, &ps, v2mnt, cgroup_root, mnt);
    if (cg->cpu_v) open_cpu(cg, mnt);
    if (!cg->cpu_v)
        mfp_timeline_note(ns, "cgroup: no CPU controller for this process under %s: no CPU "
                              "quota or throttling", cgroup_root);
    else if (!cg->thr_ok)
        mfp_timeline_note(ns, "cgroup: no throttling figure in %s/cpu.stat: CPU throttling "
                              "not tracked", cg->cpu_dir);
}

void mfp_timeline_cgroup_read(mfp_timeline_cgroup *cg, mfp_timeline_snap *s,
                              mfp_timeline_notes *ns) {
    int bad = 0;
    uint64_t v;
    const int v2m = cg->mem_v == 2;
    if (cg->mem_ok) {
        if (read_value(cg->mem_dir, v2m ? "memory.current" : "memory.usage_in_bytes", &v) ==
                0 && v != UINT64_MAX) {
            s->ok[MFP_TL_CG_MEM] = 1;
            s->v[MFP_TL_CG_MEM] = v;
        } else {
            bad = 1;
        }
    }
    if (cg->mem_ok) {
        uint64_t lim = cg->mem_limit_above;
        if (cg->limit_ok) {
            uint64_t own = mem_limit_file(cg, cg->mem_dir);
            if (own < lim) lim = own;
        }
        if (lim != UINT64_MAX) {
            s->ok[MFP_TL_CG_LIMIT] = 1;
            s->v[MFP_TL_CG_LIMIT] = lim;
        }
    }
    if (cg->oom_ok) {
        if (read_key(cg->mem_dir, v2m ? "memory.events" : "memory.oom_control", "oom_kill ",
                     &v) == 0) {
            s->ok[MFP_TL_CG_OOM] = 1;
            s->v[MFP_TL_CG_OOM] = v;
        } else {
            bad = 1;
        }
    }
    if (cg->thr_ok) {
        const int v2c = cg->cpu_v == 2;
        if (read_key(cg->cpu_dir, "cpu.stat", v2c ? "throttled_usec " : "throttled_time ",
                     &v) == 0) {
            s->ok[MFP_TL_CG_THROTTLE] = 1;
            s->v[MFP_TL_CG_THROTTLE] = v2c ? v * 1000 : v;
        } else {
            bad = 1;
        }
    }
    if (bad && !cg->warned_read) {
        cg->warned_read = 1;
        mfp_timeline_note(ns, "cgroup: a cgroup file stopped being readable during the run; "
                              "some points are missing");
    }
}

int mfp_timeline_cgroup_peak(const mfp_timeline_cgroup *cg, uint64_t *out) {
    if (!cg->mem_v) return -1;
    uint64_t v;
    if (read_value(cg->mem_dir, cg->mem_v == 2 ? "memory.peak" : "memory.max_usage_in_bytes",
                   &v) != 0 || v == UINT64_MAX)
        return -1;
    *out = v;
    return 0;
}

/* Whether pid is this process or one of its descendants: its parent chain
 * (at most 32 links) reaches us. */
static int ours(const char *proc_root, unsigned long pid, unsigned long self) {
    for (int depth = 0; depth < 32 && pid > 1; depth++) {
        if (pid == self) return 1;
        char path[MFP_TL_PATH + 32], buf[512];
        snprintf(path, sizeof path, "%s/%lu/stat", proc_root, pid);
        if (mfp_timeline_read_file(path, buf, sizeof buf, NULL) <= 0) return 0;
        const char *p = strrchr(buf, ')'); /* the name may hold spaces and ')' */
        unsigned long ppid;
        char state;
        if (!p || sscanf(p + 1, " %c %lu", &state, &ppid) != 2) return 0;
        pid = ppid;
    }
    return pid == self;
}

int mfp_timeline_cgroup_others(const mfp_timeline_cgroup *cg, const char *proc_root) {
    if (!cg->mem_v) return -1;
    char path[MFP_TL_PATH + 64];
    snprintf(path, sizeof path, "%s/cgroup.procs", cg->mem_dir);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    unsigned long self = (unsigned long)getpid(), pid;
    int others = 0, seen = 0;
    while (seen < 4096 && fscanf(f, "%lu", &pid) == 1) {
        seen++;
        if (!ours(proc_root, pid, self)) others++;
    }
    fclose(f);
    return seen ? others : -1;
}
