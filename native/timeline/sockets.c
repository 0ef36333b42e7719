/* sockets.c — bytes this process moved over TCP, from its own sockets.
 *
 * Why this way: the interface counters of /proc/self/net/dev belong to the
 * whole network namespace (on a host network: the machine), so they are not
 * the step's. The kernel keeps per-socket byte counters for TCP (tcp_info's
 * bytes_received and bytes_acked, Linux 4.1+), and the sockets are our own
 * descriptors: we list them in /proc/self/fd and ask each one with
 * getsockopt(TCP_INFO), which only reads. No netlink dump of every socket in
 * the namespace (sock_diag), whose cost grows with the machine's
 * connections, not ours. A descriptor is checked again with fstat after the
 * query, so one closed and reused in between is not counted as another
 * socket.
 *
 * What is not counted: UDP and other protocols (the kernel keeps no byte
 * count for them), sockets of child processes, and sockets opened and
 * closed between two polls. Loopback peers are left out unless loopback is
 * asked for, as for the namespace figures.
 *
 * Runs off the GIL (poller thread): touches only its own state.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "timeline_int.h"

#define MAX_FDS 65536

static int is_loopback(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return 1;
        /* ::ffff:127.x.y.z */
        return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

/* Counters of one descriptor when it is a TCP socket of ours: 0, else -1. */
static int tcp_bytes(int fd, uint64_t inode, int loopback, uint64_t *rx, uint64_t *tx) {
    int v;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) != 0 || v != IPPROTO_TCP) return -1;
    if (!loopback) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0 && is_loopback(&peer)) return -1;
    }
    struct tcp_info ti;
    memset(&ti, 0, sizeof ti);
    len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return -1;
    if (len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
        return -1; /* a kernel older than the counters */
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_ino != inode) return -1; /* reused meanwhile */
    *rx = ti.tcpi_bytes_received;
    *tx = ti.tcpi_bytes_acked;
    return 0;
}

static int by_inode(const void *a, const void *b) {
    uint64_t x = ((const mfp_timeline_sock *)a)->inode, y = ((const mfp_timeline_sock *)b)->inode;
    return x < y ? -1 : x > y;
}

static const mfp_timeline_sock *find(const mfp_timeline_sockets *sk, uint64_t inode) {
    mfp_timeline_sock key = {inode, 0, 0};
    if (!sk->nknown) return NULL;
    return bsearch(&key, sk->known, sk->nknown, sizeof key, by_inode);
}

int mfp_timeline_sockets_read(mfp_timeline_sockets *sk, int loopback, uint64_t *rx, uint64_t *tx) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    size_t n = 0;
    struct dirent *e;
    int dfd = dirfd(d);
    while ((e = readdir(d)) != NULL && n < MAX_FDS) {
        char link[64];
        ssize_t l = readlinkat(dfd, e->d_name, link, sizeof link - 1);
        if (l <= 8 || strncmp(link, "socket:[", 8) != 0) continue;
        link[l] = '\0';
        uint64_t inode = strtoull(link + 8, NULL, 10);
        int fd = atoi(e->d_name);
        if (fd == dfd) continue;
        uint64_t r, t;
        if (tcp_bytes(fd, inode, loopback, &r, &t) != 0) continue;
        if (n == sk->cap) {
            size_t cap = sk->cap ? sk->cap * 2 : 64;
            mfp_timeline_sock *grown = realloc(sk->now, cap * sizeof *grown);
            if (!grown) break;
            sk->now = grown;
            sk->cap = cap;
        }
        sk->now[n++] = (mfp_timeline_sock){inode, r, t};
    }
    closedir(d);
    /* A socket seen before adds what it moved since; a new one what it
     * moved since it opened, except at the first poll (the baseline): bytes
     * from before the start are not the step's. */
    for (size_t i = 0; i < n; i++) {
        const mfp_timeline_sock *was = find(sk, sk->now[i].inode);
        uint64_t r0 = was ? was->rx : (sk->polls ? 0 : sk->now[i].rx);
        uint64_t t0 = was ? was->tx : (sk->polls ? 0 : sk->now[i].tx);
        if (sk->now[i].rx > r0) sk->rx += sk->now[i].rx - r0;
        if (sk->now[i].tx > t0) sk->tx += sk->now[i].tx - t0;
    }
    if (n > 1) qsort(sk->now, n, sizeof *sk->now, by_inode); /* NULL when empty: UB for qsort */
    mfp_timeline_sock *swap = sk->known;
    size_t swap_cap = sk->known_cap;
    sk->known = sk->now;
    sk->known_cap = sk->cap;
    sk->nknown = n;
    sk->now = swap;
    sk->cap = swap_cap;
    sk->polls++;
    *rx = sk->rx;
    *tx = sk->tx;
    return 0;
}

void mfp_timeline_sockets_close(mfp_timeline_sockets *sk) {
    free(sk->now);
    free(sk->known);
    memset(sk, 0, sizeof *sk);
}
