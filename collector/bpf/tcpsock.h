/* What the TCP reset probe reads from a socket, with no map: TCP states, the current
 * task's fd -> TCP socket (tracepoint path), whether the task is a kernel thread, a
 * socket's protocol and local port, a reset's addresses (from its socket, or from the
 * packet it answers) and how long the socket was idle. Included by collector/bpf/resets.c
 * after common.h, fdwalk.h and kdefs.h; what touches a map (ownership, load, counts)
 * stays there (bcc rewrites map calls in the main file only). */
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

static __always_inline u16 bswap16(u16 v)
{
    return (v >> 8) | ((v & 0xff) << 8);
}

/* A socket's protocol (sk_protocol, u16 since 5.6). */
static __always_inline u16 sock_protocol(u64 sk)
{
    u16 p = 0;
    bpf_probe_read_kernel(&p, sizeof(p), (char *)sk + OFF_SOCK_PROTOCOL);
    return p;
}

/* The fields of struct sock_common a reset's addresses come from, read in one probe read
 * (SW_SKC_LO .. +SW_SKC_LEN, from BTF): valid in full, time-wait and request sockets
 * alike, since all three begin with it. */
struct sw_skc {
    u8 b[SW_SKC_LEN];
};
#define SKC_AT(c, type, off) (*(type *)&(c).b[(off) - SW_SKC_LO])

/* A full socket's local port (host order). inet_sport, not skc_num: a socket moved to
 * CLOSE has released its port (skc_num 0) before its abort's RST is sent. */
static __always_inline u16 sock_lport(u64 sk)
{
    u16 port = 0;
    bpf_probe_read_kernel(&port, sizeof(port), (char *)sk + OFF_INET_SPORT);
    return bswap16(port);
}

/* A reset's addresses from its socket (ports in host order); returns the socket's state.
 * Time-wait and request sockets have no inet_sock part: their port is skc_num. */
static __always_inline u8 addrs_sock(u64 sk, struct sw_reset_event *ev)
{
    struct sw_skc c = {};
    if (bpf_probe_read_kernel(&c, sizeof(c), (char *)sk + SW_SKC_LO))
        return 0;
    u8 state = SKC_AT(c, u8, OFF_SOCK_STATE);
    ev->family = (u8)SKC_AT(c, u16, OFF_SKC_FAMILY);
    ev->rport = bswap16(SKC_AT(c, u16, OFF_SKC_DPORT));
    if (state == TCP_TIME_WAIT_ || state == TCP_NEW_SYN_RECV_)
        ev->lport = SKC_AT(c, u16, OFF_SKC_NUM);
    else
        ev->lport = sock_lport(sk);
    if (ev->family == AF_INET_) {
        __builtin_memcpy(ev->laddr, &c.b[OFF_SKC_RCV_SADDR - SW_SKC_LO], 4);
        __builtin_memcpy(ev->raddr, &c.b[OFF_SKC_DADDR - SW_SKC_LO], 4);
    } else {
        bpf_probe_read_kernel(ev->laddr, 16, (char *)sk + OFF_SKC_V6_RCV_SADDR);
        bpf_probe_read_kernel(ev->raddr, 16, (char *)sk + OFF_SKC_V6_DADDR);
    }
    return state;
}

/* A reset the kernel sends with no socket (6.10+): the addresses of the packet it answers,
 * reversed (its destination is the local end). The TCP header is at skb->data there. */
static __always_inline void addrs_skb(u64 skb, struct sw_reset_event *ev)
{
    u64 head = 0, data = 0;
    u16 nh = 0, ports[2] = {};
    u8 ver = 0;
    if (PTR_AT(skb, OFF_SKB_HEAD, head) || PTR_AT(skb, OFF_SKB_DATA, data) ||
        PTR_AT(skb, OFF_SKB_NETWORK_HEADER, nh))
        return;
    char *ip = (char *)head + nh;
    if (bpf_probe_read_kernel(&ver, 1, ip) || bpf_probe_read_kernel(ports, 4, (char *)data))
        return;
    ev->lport = bswap16(ports[1]);    /* the packet's destination port */
    ev->rport = bswap16(ports[0]);
    if ((ver >> 4) == 4) {
        ev->family = AF_INET_;
        bpf_probe_read_kernel(ev->laddr, 4, ip + 16);     /* iphdr.daddr */
        bpf_probe_read_kernel(ev->raddr, 4, ip + 12);     /* iphdr.saddr */
    } else if ((ver >> 4) == 6) {
        ev->family = AF_INET6_;
        bpf_probe_read_kernel(ev->laddr, 16, ip + 24);    /* ipv6hdr.daddr */
        bpf_probe_read_kernel(ev->raddr, 16, ip + 8);     /* ipv6hdr.saddr */
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
