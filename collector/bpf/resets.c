/* surgewatch TCP reset probe.
 *
 * Counts TCP resets sent and received per socket owner, with the TCP state, the kernel's
 * reason (6.10+), and how long the connection was idle before the reset, in kernel maps
 * userspace drains once per interval; each reset is also sent as an event (ring buffer,
 * losses counted) for addresses and ports.
 *
 * Attribution is by socket ownership, never by the current task: resets are handled in
 * softirq (or, on loopback, in the task of the peer that sent the RST). The owner of each
 * socket is recorded in process context only:
 *   - sock:inet_sock_set_state  CLOSE -> SYN_SENT (inside connect()), * -> LISTEN (listen())
 *   - syscalls accept/accept4 exit, sendto/sendmsg/recvfrom/recvmsg enter (fd -> socket);
 *     on kernels that allow fentry instead: fexit inet_csk_accept, fentry tcp_sendmsg and
 *     tcp_recvmsg (the socket typed from BTF: no fd walk, no syscall tracepoint)
 * A passive socket not yet accept()ed gets the owner of the listener on its port (its
 * SYN_RECV -> ESTABLISHED transition runs in softirq: the current task is not read there).
 * The entry is kept after TCP_CLOSE (an abort moves the socket to CLOSE *before* the RST is
 * sent) and deleted at tcp:tcp_destroy_sock; the map is an LRU in any case.
 *
 * Load (the denominators of load-normalised rates), per process and interval, in `loads*`:
 *   accepted   accept exit (tracepoints) / fexit inet_csk_accept (fentry): process context
 *   connected  SYN_SENT -> ESTABLISHED (softirq): counted for the socket's recorded owner
 *   tcp_bytes  what each send on a TCP socket returned: sock:sock_send_length (6.4+; every
 *              send path, sendfile and io_uring included) on the tracepoint path, fexit
 *              tcp_sendmsg (+ tcp_sendpage where it exists) on the fentry path; absent
 *              on a tracepoint-path kernel without sock_send_length (HAVE_TCP_BYTES unset)
 *
 * Idle before reset = now - max(tcp_sock.lsndtime, icsk_ack.lrcvtime): jiffies of the last
 * data sent and received (both stamped at connection set-up), read at the reset through
 * BTF offsets, so there is no per-packet hook.
 *
 * The socket-side and reset hooks are raw tracepoints (their TP_PROTO arguments in ctx,
 * RAW_ARG): no perf record per event, no RCU wait at detach, and a program skipped only
 * when it is itself already running on the CPU.
 *
 * Macros supplied by collector/probes/resets.py:
 *   OFF_* / SZ_*                 kernel struct member offsets from BTF
 *   SW_FD_WALK_BTF, SW_FD_SLOT_READ, SW_FDT_CHUNK, SW_FILE_LO/LEN  the fd walk (fdwalk.h)
 *   SW_SOCK_PT_LO                where sk_protocol and sk_type are adjacent
 *   SK_HZ                        the kernel's CONFIG_HZ
 *   SW_SKC_LO, SW_SKC_LEN        the sock_common chunk a reset's addresses come from
 *   SEND_HAS_REASON              tcp_send_reset passes a reason (6.10+)
 *   HAVE_DESTROY                 tcp:tcp_destroy_sock exists
 *   TP_FD_OFF, TP_RET_OFF        syscall tracepoint fields (accept exits, send/recv enters)
 *   HAVE_SEND_LENGTH             sock:sock_send_length and sock_recv_length exist
 *   SENDMSG_NARGS, SENDPAGE_NARGS  fentry path: where fexit finds the return value
 *   SW_MAX_OWNERS, SW_MAX_RKEYS, SW_MAX_LOADS, SW_RINGBUF_PAGES
 */
#include <uapi/linux/ptrace.h>
#include "common.h"
#include "fdwalk.h"
#include "fentry.h"
#include "kdefs.h"
#include "tcpsock.h"


BPF_TABLE("lru_hash", u64, struct sw_sock_owner, owners, SW_MAX_OWNERS);
BPF_TABLE("lru_hash", u16, struct sw_sock_owner, listeners, 4096);   /* local port -> owner */
BPF_HASH(rcounts0, struct sw_reset_key, struct sw_reset_val, SW_MAX_RKEYS);
BPF_HASH(rcounts1, struct sw_reset_key, struct sw_reset_val, SW_MAX_RKEYS);
BPF_HASH(loads0, struct sw_load_key, struct sw_load_val, SW_MAX_LOADS);
BPF_HASH(loads1, struct sw_load_key, struct sw_load_val, SW_MAX_LOADS);
BPF_ARRAY(rctl, u32, 2);                  /* SW_RCTL_* */
BPF_ARRAY(rsent, u64, 2);                 /* events sent, per epoch parity */
BPF_PERCPU_ARRAY(rhealth, u64, SW_RHEALTH_MAX);
BPF_RINGBUF_OUTPUT(reset_events, SW_RINGBUF_PAGES);

static __always_inline void rhealth_inc(u32 idx)
{
    u64 *v = rhealth.lookup(&idx);
    if (v)
        (*v)++;
}

static __always_inline void owner_from_current(struct sw_sock_owner *o, u32 source)
{
    o->tgid = bpf_get_current_pid_tgid() >> 32;
    o->source = source;
    o->cgroup_id = bpf_get_current_cgroup_id();
    sw_process_comm(o->comm);
}

/* Record the current task as owner of sk (process context only). */
static __always_inline void own(u64 sk, u32 source)
{
    struct sw_sock_owner o = {};
    owner_from_current(&o, source);
    if (owners.update(&sk, &o))
        rhealth_inc(SW_RHEALTH_OWNERS_FULL);
}

static __always_inline int load_odd(void)
{
    u32 zero = SW_RCTL_EPOCH;
    u32 *epoch = rctl.lookup(&zero);
    return epoch && (*epoch & 1);
}

static __always_inline struct sw_load_val *load_find(u32 tgid, int odd)
{
    struct sw_load_key k = {};
    k.tgid = tgid;
    struct sw_load_val *v;          /* one call site per map: see counts_lookup */
    if (odd) {                      /* in logwrites.c */
        v = loads1.lookup(&k);
        asm volatile(" " : "+r"(v));
    } else {
        v = loads0.lookup(&k);
        asm volatile("" : "+r"(v));
    }
    return v;
}

static __always_inline struct sw_load_val *load_new(u32 tgid, int odd, u64 cgroup_id,
                                                    const char *comm)
{
    struct sw_load_key k = {};
    k.tgid = tgid;
    struct sw_load_val init = {};
    init.cgroup_id = cgroup_id;
    __builtin_memcpy(init.comm, comm, SW_COMM_LEN);
    if (odd)
        loads1.insert(&k, &init);
    else
        loads0.insert(&k, &init);
    struct sw_load_val *v = load_find(tgid, odd);
    if (!v)
        rhealth_inc(SW_RHEALTH_LOADS_FULL);
    return v;
}

/* this interval's load entry of process tgid (made with its cgroup and comm) */
static __always_inline struct sw_load_val *load_of(u32 tgid, u64 cgroup_id, const char *comm)
{
    int odd = load_odd();
    struct sw_load_val *v = load_find(tgid, odd);
    return v ? v : load_new(tgid, odd, cgroup_id, comm);
}

/* the current process's entry (process context only). A known process costs one lookup:
 * comm, cgroup and (no_kthreads) the kernel-thread test only when its entry is made, so a
 * kernel thread never gets one. */
static __always_inline struct sw_load_val *my_load(int no_kthreads)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    int odd = load_odd();
    struct sw_load_val *v = load_find(tgid, odd);
    if (v)
        return v;
#ifdef OFF_TASK_FLAGS
    if (no_kthreads && in_kthread())
        return 0;
#endif
    char comm[SW_COMM_LEN] = {};
    sw_process_comm(comm);
    return load_new(tgid, odd, bpf_get_current_cgroup_id(), comm);
}

static __always_inline void count_accept(void)
{
    struct sw_load_val *v = my_load(0);
    if (v)
        __sync_fetch_and_add(&v->accepted, 1);
}

static __always_inline void count_tcp_bytes(s64 ret, int no_kthreads)
{
    if (ret <= 0)
        return;
    struct sw_load_val *v = my_load(no_kthreads);
    if (v)
        __sync_fetch_and_add(&v->tcp_bytes, (u64)ret);
}

/* ---- ownership, process context ------------------------------------------------------ */

int sw_set_state(void *ctx)
{
    u64 sk = RAW_ARG(ctx, 0);
    s32 oldstate = (s32)RAW_ARG(ctx, 1);
    s32 newstate = (s32)RAW_ARG(ctx, 2);
    if (sock_protocol(sk) != IPPROTO_TCP_)
        return 0;

    if (newstate == TCP_SYN_SENT_) {            /* connect(): process context */
        own(sk, SW_OWNER_CONNECT);
    } else if (oldstate == TCP_SYN_SENT_ && newstate == TCP_ESTABLISHED_) {
        /* softirq: the connection is the owner's that connect() recorded */
        struct sw_sock_owner *o = owners.lookup(&sk);
        if (o) {
            struct sw_load_val *v = load_of(o->tgid, o->cgroup_id, o->comm);
            if (v)
                __sync_fetch_and_add(&v->connected, 1);
        }
    } else if (newstate == TCP_LISTEN_) {       /* listen(): process context */
        u16 port = sock_lport(sk);
        struct sw_sock_owner o = {};
        owner_from_current(&o, SW_OWNER_LISTEN);
        owners.update(&sk, &o);
        listeners.update(&port, &o);
    } else if (oldstate == TCP_SYN_RECV_ && newstate == TCP_ESTABLISHED_) {
        /* softirq: never the current task. A passive child socket: provisional owner is
         * the listener's, until accept() names the real one. */
        struct sw_sock_owner *cur = owners.lookup(&sk);
        if (!cur || cur->closed) {
            u16 port = sock_lport(sk);
            struct sw_sock_owner *l = listeners.lookup(&port);
            if (l) {
                struct sw_sock_owner o = *l;
                o.source = SW_OWNER_LISTENER;
                o.closed = 0;
                o.prev_state = 0;
                owners.update(&sk, &o);
            } else if (cur) {
                owners.delete(&sk);              /* a dead socket's owner, pointer reused */
            }
        }
    } else if (newstate == TCP_CLOSE_) {
        if (oldstate == TCP_LISTEN_) {
            u16 port = sock_lport(sk);
            struct sw_sock_owner *l = listeners.lookup(&port);
            struct sw_sock_owner *me = owners.lookup(&sk);
            if (l && me && l->tgid == me->tgid)
                listeners.delete(&port);
        }
        /* keep the owner: an abort sends its RST after this transition */
        struct sw_sock_owner *cur = owners.lookup(&sk);
        if (cur) {
            cur->closed = 1;
            cur->prev_state = oldstate;
        }
    }
    return 0;
}

#ifdef HAVE_DESTROY
int sw_destroy(void *ctx)
{
    u64 sk = RAW_ARG(ctx, 0);
    owners.delete(&sk);
    return 0;
}
#endif

/* send/recv on a socket: the owner may have changed (fd passed, fork); refresh it only
 * when the owning process differs, so the common case is one lookup. */
static __always_inline void refresh_owner(u64 sk, int no_kthreads)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct sw_sock_owner *cur = owners.lookup(&sk);
    if (cur && cur->tgid == tgid && !cur->closed)
        return;
#ifdef OFF_TASK_FLAGS
    if (no_kthreads && in_kthread())
        return;
#endif
    own(sk, SW_OWNER_IO);
}

#ifndef SW_FENTRY
int sw_exit_accept(void *ctx)
{
    s64 fd = (s64)CTX_U64(ctx, TP_RET_OFF);
    u64 sk = tcp_sock_of_fd(fd);
    if (sk) {
        own(sk, SW_OWNER_ACCEPT);
        count_accept();
    }
    return 0;
}

int sw_enter_io(void *ctx)
{
    u64 sk = tcp_sock_of_fd((s64)CTX_U64(ctx, TP_FD_OFF));
    if (sk)
        refresh_owner(sk, 0);
    return 0;
}

#ifdef HAVE_SEND_LENGTH
/* sock:sock_send_length / sock_recv_length (6.4+): every send and receive on any socket
 * (sock_sendmsg_nosec, sock_recvmsg_nosec: send*, recv*, read, write, sendfile, io_uring),
 * in process context with the socket at hand. Where they exist they replace the syscall
 * hooks above for owner refreshes (no fd walk, nothing on unrelated syscalls) and count
 * TCP bytes sent. Kernel threads' in-kernel sockets are neither owned nor load. */
int sw_send_length(void *ctx)          /* (struct sock *sk, int ret, int flags) */
{
    u64 sk = RAW_ARG(ctx, 0);
    if (sock_protocol(sk) != IPPROTO_TCP_)
        return 0;
    refresh_owner(sk, 1);
    count_tcp_bytes((s32)RAW_ARG(ctx, 1), 1);
    return 0;
}

int sw_recv_length(void *ctx)          /* (struct sock *sk, int ret, int flags) */
{
    u64 sk = RAW_ARG(ctx, 0);
    if (sock_protocol(sk) == IPPROTO_TCP_)
        refresh_owner(sk, 1);
    return 0;
}
#endif
#else
/* The fentry path (kernels that allow function tracing): the socket is at hand and typed
 * where these run, so no fd is walked and no syscall tracepoint is attached.
 *   fexit inet_csk_accept   the accepted socket (accept, accept4, io_uring's accept)
 *   fexit tcp_sendmsg, fentry tcp_recvmsg  any send/recv on a TCP socket, write/read included
 * Kernel threads' sends (in-kernel sockets) are not process ownership: skipped, as no
 * syscall hook ever saw them. */
/* struct sock *inet_csk_accept(struct sock *, ...): the return value follows the
 * ACCEPT_NARGS arguments (their number differs between kernels; from BTF) */
SW_KRETFUNC(inet_csk_accept)
{
    u64 sk = ctx[ACCEPT_NARGS];
    if (sk && !in_kthread()) {
        own(sk, SW_OWNER_ACCEPT);
        count_accept();
    }
    return 0;
}

/* int tcp_sendmsg(struct sock *, struct msghdr *, size_t): bytes queued */
SW_KRETFUNC(tcp_sendmsg)
{
    if (in_kthread())
        return 0;
    refresh_owner(ctx[0], 0);
    count_tcp_bytes((s64)(int)ctx[SENDMSG_NARGS], 0);
    return 0;
}

#ifdef SENDPAGE_NARGS
/* sendfile/splice into a TCP socket before 6.5 (later kernels send pages via tcp_sendmsg) */
SW_KRETFUNC(tcp_sendpage)
{
    if (!in_kthread())
        count_tcp_bytes((s64)(int)ctx[SENDPAGE_NARGS], 0);
    return 0;
}
#endif

SW_KFUNC(tcp_recvmsg)
{
    if (!in_kthread())
        refresh_owner(ctx[0], 0);
    return 0;
}
#endif

/* ---- resets, any context -------------------------------------------------------------- */

static __always_inline struct sw_reset_val *rcounts_lookup(int odd, struct sw_reset_key *k)
{
    struct sw_reset_val *val;       /* one call site per map: see load_find */
    if (odd) {
        val = rcounts1.lookup(k);
        asm volatile(" " : "+r"(val));
    } else {
        val = rcounts0.lookup(k);
        asm volatile("" : "+r"(val));
    }
    return val;
}

static __always_inline void count_reset(struct sw_reset_event *ev)
{
    struct sw_reset_key k = {};
    k.tgid = ev->tgid;
    k.dir = ev->dir;
    k.kind = ev->kind;
    k.state = ev->state;
    k.reason = ev->reason;
    if (!ev->tgid) {
        k.lport = ev->lport;
        k.family = ev->family;
    }
    u32 zero = 0;
    u32 *epoch = rctl.lookup(&zero);
    int odd = epoch && (*epoch & 1);
    struct sw_reset_val *val = rcounts_lookup(odd, &k);
    if (!val) {
        struct sw_reset_val init = {};
        init.cgroup_id = ev->cgroup_id;
        __builtin_memcpy(init.comm, ev->comm, SW_COMM_LEN);
        if (odd)
            rcounts1.insert(&k, &init);
        else
            rcounts0.insert(&k, &init);
        val = rcounts_lookup(odd, &k);
        if (!val) {
            rhealth_inc(SW_RHEALTH_COUNTS_FULL);
            return;
        }
    }
    __sync_fetch_and_add(&val->count, 1);
    if (ev->idle_valid) {
        u32 b = ev->idle_ms ? 1 + log2_u32(ev->idle_ms) : 0;
        if (b > SW_IDLE_BUCKETS - 1)
            b = SW_IDLE_BUCKETS - 1;
        if (b < SW_IDLE_BUCKETS)
            __sync_fetch_and_add(&val->idle_hist[b], 1);
    } else {
        __sync_fetch_and_add(&val->idle_unknown, 1);
    }
}

/* Owner, state and idle of a reset on socket sk (not 0) in state `state`. */
static __always_inline void fill_socket(struct sw_reset_event *ev, u64 sk, u8 state)
{
    ev->state = state;

    struct sw_sock_owner *o = owners.lookup(&sk);
    if (o) {
        ev->tgid = o->tgid;
        ev->cgroup_id = o->cgroup_id;
        ev->source = o->source;
        __builtin_memcpy(ev->comm, o->comm, SW_COMM_LEN);
        /* aborted: the socket went to CLOSE just before the RST; report where it was */
        if (state == TCP_CLOSE_ && o->closed && o->prev_state)
            ev->state = o->prev_state;
    } else {
        rhealth_inc(SW_RHEALTH_NO_OWNER);
    }

    /* time-wait and request sockets are not full sockets: no tcp_sock fields */
    if (state == TCP_TIME_WAIT_ || state == TCP_NEW_SYN_RECV_ || !synchronized(ev->state))
        return;
    ev->idle_valid = !socket_idle_ms(sk, &ev->idle_ms);
}

/* Room for one more event in this interval? Counted per epoch parity and zeroed by
 * userspace when it drains that parity; racing CPUs may overshoot by a few. */
static __always_inline int event_budget_left(void)
{
    u32 e = SW_RCTL_EPOCH, b = SW_RCTL_EVENT_BUDGET;
    u32 *epoch = rctl.lookup(&e), *budget = rctl.lookup(&b);
    if (!epoch || !budget)
        return 1;
    u32 parity = *epoch & 1;
    u64 *sent = rsent.lookup(&parity);
    if (!sent)
        return 1;
    if (*sent >= *budget) {
        rhealth_inc(SW_RHEALTH_EVENTS_OVER_BUDGET);
        return 0;
    }
    __sync_fetch_and_add(sent, 1);
    return 1;
}

static __always_inline void emit(struct sw_reset_event *ev)
{
    count_reset(ev);
    if (!event_budget_left())
        return;
    struct sw_reset_event *out = reset_events.ringbuf_reserve(sizeof(struct sw_reset_event));
    if (!out) {
        rhealth_inc(SW_RHEALTH_EVENTS_LOST);
        return;
    }
    __builtin_memcpy(out, ev, sizeof(*ev));
    reset_events.ringbuf_submit(out, 0);
}

int sw_send_reset(void *ctx)           /* (sk, skb[, enum sk_rst_reason]) */
{
    struct sw_reset_event ev = {};
    u64 sk = RAW_ARG(ctx, 0);
    u64 skb = RAW_ARG(ctx, 1);
    ev.ts_ns = bpf_ktime_get_ns();
    ev.skaddr = sk;
    ev.dir = SW_RST_SENT;
#ifdef SEND_HAS_REASON
    ev.reason = (u8)RAW_ARG(ctx, 2);
#else
    ev.reason = SW_RST_REASON_NONE;
#endif
    if (!sk) {
        addrs_skb(skb, &ev);
        ev.kind = SW_RST_KIND_NO_SOCKET;
        /* the listener of the local port, if any (kernel-side; userspace looks further) */
        struct sw_sock_owner *l = listeners.lookup(&ev.lport);
        if (l) {
            ev.tgid = l->tgid;
            ev.cgroup_id = l->cgroup_id;
            ev.source = SW_OWNER_LISTENER;
            __builtin_memcpy(ev.comm, l->comm, SW_COMM_LEN);
        }
    } else {
        ev.kind = skb ? SW_RST_KIND_REPLY : SW_RST_KIND_ABORT;
        fill_socket(&ev, sk, addrs_sock(sk, &ev));
    }
    emit(&ev);
    return 0;
}

int sw_receive_reset(void *ctx)        /* (sk) */
{
    struct sw_reset_event ev = {};
    u64 sk = RAW_ARG(ctx, 0);
    ev.ts_ns = bpf_ktime_get_ns();
    ev.skaddr = sk;
    ev.dir = SW_RST_RECEIVED;
    ev.reason = SW_RST_REASON_NONE;
    fill_socket(&ev, sk, addrs_sock(sk, &ev));
    emit(&ev);
    return 0;
}
