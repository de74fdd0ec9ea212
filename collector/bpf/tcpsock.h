/* What the TCP reset probe reads from a socket and a tracepoint record, with no map:
 * TCP states, the current task's fd -> TCP socket (tracepoint path), whether the task is
 * a kernel thread, a reset's addresses in either tracepoint layout, and how long the
 * socket was idle. Included by collector/bpf/resets.c after common.h, fdwalk.h and
 * kdefs.h; what touches a map (ownership, load, counts) stays there (bcc rewrites map
 * calls in the main file only). */
#ifndef SURGEWATCH_TCPSOCK_H
#define SURGEWATCH_TCPSOCK_H

/* TCP states (include/net/tcp_states.h, stable uapi-like numbers) */
#define TCP_ESTABLISHED_ 1
#define TCP_SYN_SENT_ 2
#define TCP_SYN_RECV_ 3
#define TCP_FIN_WAIT1_ 4
#define TCP_FIN_WAIT2_ 5
#define TCP_TIME_WAIT_ 6
#define TCP_CLOSE_ 7
#define TCP_CLOSE_WAIT_ 8
#define TCP_LAST_ACK_ 9
#define TCP_LISTEN_ 10
#define TCP_CLOSING_ 11
#define TCP_NEW_SYN_RECV_ 12

#ifdef OFF_TASK_FLAGS
static __always_inline int in_kthread(void)
{
#ifdef SW_FENTRY
    char *task = (char *)bpf_get_current_task_btf();
    return (*(u32 *)(task + OFF_TASK_FLAGS)) & PF_KTHREAD_;
#else
    u32 flags = 0;
    bpf_probe_read_kernel(&flags, sizeof(flags), (char *)bpf_get_current_task() + OFF_TASK_FLAGS);
    return flags & PF_KTHREAD_;
#endif
}
#endif

#ifndef SW_FENTRY
/* fd of the current task -> struct sock *, when it is a TCP socket; else 0
 * (the walk: collector/bpf/fdwalk.h). */
static __always_inline u64 tcp_sock_of_fd(s64 fd)
{
    char *inode = 0, *sock = 0;
    u16 mode = 0, family = 0;

    u64 file = sw_fd_file(fd);
    if (!file || sw_file_fields(file, &inode, &sock) || !inode)
        return 0;
    if (bpf_probe_read_kernel(&mode, sizeof(mode), inode + OFF_INODE_I_MODE))
        return 0;
    if ((mode & S_IFMT_) != S_IFSOCK_)
        return 0;
    u64 sk = sw_socket_sk(sock, &family);
    if (!sk || (family != AF_INET_ && family != AF_INET6_))
        return 0;
#ifdef SW_SOCK_PT_LO
    u16 pt[2] = {};        /* sk_protocol and sk_type side by side: one read */
    if (bpf_probe_read_kernel(pt, sizeof(pt), (char *)sk + SW_SOCK_PT_LO))
        return 0;
    u16 proto = pt[(OFF_SOCK_PROTOCOL - SW_SOCK_PT_LO) / 2];
    u16 type = pt[(OFF_SOCK_TYPE - SW_SOCK_PT_LO) / 2];
#else
    u16 proto = 0, type = 0;
    bpf_probe_read_kernel(&proto, sizeof(proto), (char *)sk + OFF_SOCK_PROTOCOL);
    bpf_probe_read_kernel(&type, sizeof(type), (char *)sk + OFF_SOCK_TYPE);
#endif
    if (proto != IPPROTO_TCP_ || type != SOCK_STREAM_)
        return 0;
    return sk;
}

#endif

static __always_inline u32 log2_u32(u32 v)
{
    u32 r = 0;
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8) { v >>= 8; r += 8; }
    if (v >> 4) { v >>= 4; r += 4; }
    if (v >> 2) { v >>= 2; r += 2; }
    if (v >> 1) { r += 1; }
    return r;
}

static __always_inline int synchronized(u32 state)
{
    return state == TCP_ESTABLISHED_ || state == TCP_FIN_WAIT1_ || state == TCP_FIN_WAIT2_ ||
           state == TCP_CLOSE_WAIT_ || state == TCP_LAST_ACK_ || state == TCP_CLOSING_;
}

/* Addresses of a tracepoint in the "family" layout (sport, dport, family, saddr[4],
 * daddr[4], saddr_v6[16], daddr_v6[16]; ports in host order). */
static __always_inline void addrs_family(void *ctx, struct sw_reset_event *ev, int fam_off,
                                         int sport_off, int dport_off, int s4, int d4,
                                         int s6, int d6)
{
    ev->family = CTX_U16(ctx, fam_off);
    ev->lport = CTX_U16(ctx, sport_off);
    ev->rport = CTX_U16(ctx, dport_off);
    if (ev->family == AF_INET_) {
        bpf_probe_read_kernel(ev->laddr, 4, (char *)ctx + s4);
        bpf_probe_read_kernel(ev->raddr, 4, (char *)ctx + d4);
    } else {
        bpf_probe_read_kernel(ev->laddr, 16, (char *)ctx + s6);
        bpf_probe_read_kernel(ev->raddr, 16, (char *)ctx + d6);
    }
}

/* Addresses of a tracepoint in the "sockaddr" layout (saddr[28], daddr[28] holding a
 * sockaddr_in or sockaddr_in6; ports in network order). */
static __always_inline void addrs_sockaddr(void *ctx, struct sw_reset_event *ev, int s, int d)
{
    u16 sp = 0, dp = 0;
    ev->family = CTX_U16(ctx, s);
    sp = CTX_U16(ctx, s + 2);
    dp = CTX_U16(ctx, d + 2);
    ev->lport = (sp >> 8) | ((sp & 0xff) << 8);
    ev->rport = (dp >> 8) | ((dp & 0xff) << 8);
    if (ev->family == AF_INET_) {
        bpf_probe_read_kernel(ev->laddr, 4, (char *)ctx + s + 4);
        bpf_probe_read_kernel(ev->raddr, 4, (char *)ctx + d + 4);
    } else {
        bpf_probe_read_kernel(ev->laddr, 16, (char *)ctx + s + 8);
        bpf_probe_read_kernel(ev->raddr, 16, (char *)ctx + d + 8);
    }
}

/* How long a full TCP socket was idle: now - max(lsndtime, lrcvtime), the jiffies of
 * its last data sent and received (both stamped at connection set-up). 0 on success. */
static __always_inline int socket_idle_ms(u64 sk, u32 *ms)
{
    u32 lsnd = 0, lrcv = 0;
    if (bpf_probe_read_kernel(&lsnd, 4, (char *)sk + OFF_TCP_LSNDTIME) ||
        bpf_probe_read_kernel(&lrcv, 4, (char *)sk + OFF_TCP_LRCVTIME))
        return -1;
    u32 last = ((s32)(lsnd - lrcv) > 0) ? lsnd : lrcv;
    s32 idle_j = (s32)((u32)bpf_jiffies64() - last);
    if (idle_j < 0)
        idle_j = 0;
    *ms = (u32)(((u64)idle_j * 1000) / SK_HZ);
    return 0;
}

#endif
