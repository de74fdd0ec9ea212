/* The datagram-channel and pipe benchmark's loop (tests/bench/channels.py): like
 * pairloop.c, one long-lived pinned process that measures on request, so every figure of
 * a run comes from the same process (KERNEL-NOTES "Measuring on this VM").
 * usage: chanloop SYSLOG_PATH RECEIVER_FD
 * It owns every peer it writes to: a pipe (which it drains itself: no runtime reads it), a
 * UDP and a TCP (TCP_NODELAY) receiver on 127.0.0.1, and an AF_UNIX datagram socket
 * connected to SYSLOG_PATH, where the driver has bound the receiver (RECEIVER_FD,
 * inherited: the loop drains it between chunks, so no second process runs on its CPU).
 * stdin, one request per line: "CASE N" with CASE one of
 *   null       1-byte write(2) to /dev/null
 *   pipe       1-byte write(2) to the pipe
 *   udp        1-byte sendto(2) to the UDP receiver (addressed)
 *   udpmsg     1-byte sendmsg(2) to the UDP receiver (addressed)
 *   tcp        1-byte send(2) on the TCP connection
 *   syslog     send(2) of a 32-byte syslog line on the connected datagram socket
 *   syslogmsg  the same line by sendmsg(2), no address (logger(1)'s way)
 * stdout: nanoseconds per call. "count 0": datagrams sent to SYSLOG_PATH so far.
 * Calls run in chunks (8 on sockets: AF_UNIX queues at most net.unix.max_dgram_qlen = 10
 * datagrams; 4096 on the pipe); the receivers are drained between chunks, untimed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char LINE[] = "<13>Dec  2 03:00:00 bench: hi\n";   /* 31 bytes + NUL */
#define LINE_LEN 32

static int null_fd, pipe_r, pipe_w, udp_tx, udp_rx, tcp_tx, tcp_rx, dg_tx, dg_rx;
static struct sockaddr_in udp_dst;
static long syslog_sent;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void drain(int fd)
{
    char buf[65536];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

static int setup(const char *syslog_path, int receiver)
{
    int fds[2];
    dg_rx = receiver;
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd < 0 || pipe2(fds, O_CLOEXEC))
        return -1;
    pipe_r = fds[0];
    fcntl(pipe_r, F_SETFL, O_NONBLOCK);   /* the read end only: its own file */
    pipe_w = fds[1];

    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    udp_rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    udp_tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (bind(udp_rx, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(udp_rx, (struct sockaddr *)&udp_dst, &len))
        return -1;

    int lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in t = a;
    len = sizeof(t);
    if (bind(lst, (struct sockaddr *)&t, sizeof(t)) || listen(lst, 1) ||
        getsockname(lst, (struct sockaddr *)&t, &len))
        return -1;
    tcp_tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(tcp_tx, (struct sockaddr *)&t, sizeof(t)))
        return -1;
    tcp_rx = accept(lst, NULL, NULL);
    close(lst);
    if (tcp_rx < 0 || setsockopt(tcp_tx, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
        return -1;

    struct sockaddr_un u = {.sun_family = AF_UNIX};
    if (strlen(syslog_path) >= sizeof(u.sun_path))
        return -1;
    strcpy(u.sun_path, syslog_path);
    dg_tx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (connect(dg_tx, (struct sockaddr *)&u, sizeof(u)))
        return -1;
    return 0;
}

/* one call of `what`; 0 on success */
static int call(int what)
{
    struct iovec iov = {.iov_base = (void *)LINE, .iov_len = LINE_LEN};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    switch (what) {
    case 0: return write(null_fd, "x", 1) != 1;
    case 1: return write(pipe_w, "x", 1) != 1;
    case 2: return sendto(udp_tx, "x", 1, 0, (struct sockaddr *)&udp_dst, sizeof(udp_dst)) != 1;
    case 3:
        iov.iov_len = 1;
        m.msg_name = &udp_dst;
        m.msg_namelen = sizeof(udp_dst);
        return sendmsg(udp_tx, &m, 0) != 1;
    case 4: return send(tcp_tx, "x", 1, 0) != 1;
    case 5: return send(dg_tx, LINE, LINE_LEN, 0) != LINE_LEN || !++syslog_sent;
    case 6: return sendmsg(dg_tx, &m, 0) != LINE_LEN || !++syslog_sent;
    }
    return 1;
}

static void drain_for(int what)
{
    char buf[4096];
    switch (what) {
    case 1: while (read(pipe_r, buf, sizeof(buf)) > 0) ; break;
    case 2: case 3: drain(udp_rx); break;
    case 4: drain(tcp_rx); break;
    case 5: case 6: drain(dg_rx); break;
    }
}

/* ns per call over n calls, timing only the calls (chunks), or -1 on a failed call */
static double run(int what, long n)
{
    long chunk = what == 0 ? n : what == 1 ? 4096 : 8;
    double spent = 0;
    for (long done = 0; done < n; done += chunk) {
        long k = n - done < chunk ? n - done : chunk;
        double t0 = now_ns();
        for (long i = 0; i < k; i++)
            if (call(what))
                return -1;
        spent += now_ns() - t0;
        drain_for(what);
    }
    return spent / n;
}

int main(int argc, char **argv)
{
    static const char *names[] = {"null", "pipe", "udp", "udpmsg", "tcp", "syslog", "syslogmsg"};
    if (argc != 3)
        return 2;
    if (setup(argv[1], atoi(argv[2]))) {
        perror("chanloop: setup");
        return 1;
    }
    char what[16];
    long n;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (scanf("%15s %ld", what, &n) == 2) {
        if (strcmp(what, "count") == 0) {
            printf("%ld\n", syslog_sent);
            continue;
        }
        int w = -1;
        for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
            if (strcmp(what, names[i]) == 0)
                w = i;
        if (w < 0)
            return 2;
        if (run(w, 2000) < 0)       /* warm the path */
            return 1;
        double ns = run(w, n);
        if (ns < 0) {
            perror("chanloop: call");
            return 1;
        }
        printf("%.2f\n", ns);
    }
    return 0;
}
