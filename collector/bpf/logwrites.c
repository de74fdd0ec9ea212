/* surgewatch log-write probe.
 *
 * Counts write-family syscalls and the bytes they ask to write, per process, fd and
 * file, in kernel maps that userspace drains once per interval. No per-write event leaves
 * the kernel. A write is looked up by walking the task's real fd table (offsets from BTF,
 * passed as OFF_* macros), so fd reuse, dup, fork and exec can never point a count at the
 * wrong file. Only regular files, AF_UNIX stream sockets (journald's stdout stream),
 * pipes and FIFOs (a container's stdout, read by its runtime) and AF_UNIX datagrams to a
 * configured socket path (syslog, journald's native protocol) can be log destinations;
 * every other write returns after the walk. Inodes userspace has judged not to be logs
 * are skipped in the kernel through the `verdicts` map; a datagram's destination path is
 * matched in the kernel (`sockpaths`), so every message is judged while it is sent. The
 * first write to a regular file with no verdict sends userspace its path, read from the
 * dentries (no open hook: a syscall exit hook would slow every syscall on the host).
 *
 * Macros supplied by collector/probes/logwrites.py (and fdwalk.py):
 *   OFF_* / SZ_*         struct member offsets and sizes from the running kernel's BTF
 *   SW_FD_WALK_BTF, SW_FD_SLOT_READ  which fd walk (collector/bpf/fdwalk.h)
 *   SW_FDT_CHUNK, SW_INODE_CHUNK, SW_FILE_LO/LEN  fields read in one go
 *   TP_*_OFF             syscall tracepoint field offsets (live format)
 *   HAVE_<syscall>       for each tracepoint that exists on this kernel
 *   SW_RAW_SYSCALLS, NR_*, OFF_PT_REGS_*   the raw sys_enter hook, where the arch is known
 *   SW_UNIX_DGRAM, OFF_UNIX_*, OFF_MSGHDR_*   datagram channels, where BTF has the fields
 *   SW_PATH_WALK, OFF_DENTRY_*, OFF_MOUNT_*, OFF_VFSMOUNT_*, OFF_FILE_F_PATH_*  names
 *                        of a newly written file, where BTF has the fields
 *   SW_MAX_KEYS, SW_MAX_INODES, SW_RINGBUF_PAGES
 */
#include <uapi/linux/ptrace.h>
#include "common.h"
#include "fdwalk.h"
#include "fentry.h"
#include "kdefs.h"
#include "fileid.h"


/* Two count maps: userspace flips `ctl[0]` and drains the idle one, so no increment can
 * land in an entry that is being copied out and deleted. */
BPF_HASH(counts0, struct sw_write_key, struct sw_write_val, SW_MAX_KEYS);
BPF_HASH(counts1, struct sw_write_key, struct sw_write_val, SW_MAX_KEYS);
BPF_TABLE("lru_hash", struct sw_inode, u8, verdicts, SW_MAX_INODES);
BPF_ARRAY(ctl, u32, 1);
/* Loss by owner: a write whose new key did not fit (counts map full) is counted once more
 * here, by the writer's uid, in the map of the same epoch as the counts; a uid that finds
 * no slot either is counted in lost_other[epoch & 1]. Touched only on that failure path. */
BPF_HASH(lost0, u32, u64, SW_LOST_UIDS);
BPF_HASH(lost1, u32, u64, SW_LOST_UIDS);
BPF_ARRAY(lost_other, u64, 2);
BPF_PERCPU_ARRAY(health, u64, SW_HEALTH_MAX);
BPF_RINGBUF_OUTPUT(open_events, SW_RINGBUF_PAGES);
#ifdef SW_UNIX_DGRAM
BPF_HASH(sockpaths, struct sw_sock_path, u32, SW_SOCKPATHS_MAX);   /* socket path -> channel id (userspace) */
#endif

static __always_inline void health_inc(u32 idx)
{
    u64 *v = health.lookup(&idx);
    if (v)
        (*v)++;
}

#ifdef SW_UNIX_DGRAM
/* A datagram's channel: the path it is addressed to (`name`, a struct sockaddr_un in user
 * or kernel memory), else the path the socket it is connected to is bound to. Fills k as
 * a SW_FILE_UNIX_DGRAM key and returns 0 when that path is a configured channel, else 1.
 * Abstract and unnamed addresses never match. */
static __always_inline int unix_dgram_dest(char *sk, char *name, int namelen, int user,
                                           struct sw_write_key *k)
{
    struct sw_sock_path p = {};
    if (name && namelen > 2) {
        long n = user ? bpf_probe_read_user_str(p.path, sizeof(p.path), name + 2)
                      : bpf_probe_read_kernel_str(p.path, sizeof(p.path), name + 2);
        if (n <= 1)
            return 1;
    } else {
        char *peer = 0, *addr = 0;
        if (bpf_probe_read_kernel(&peer, sizeof(peer), sk + OFF_UNIX_SOCK_PEER) || !peer)
            return 1;
        if (bpf_probe_read_kernel(&addr, sizeof(addr), peer + OFF_UNIX_SOCK_ADDR) || !addr)
            return 1;
        if (bpf_probe_read_kernel_str(p.path, sizeof(p.path),
                                      addr + OFF_UNIX_ADDRESS_NAME + 2) <= 1)
            return 1;
    }
    u32 *id = sockpaths.lookup(&p);
    if (!id)
        return 1;
    k->kind = SW_FILE_UNIX_DGRAM;
    k->dev = 0;
    k->gen = 0;
    k->ino = *id;
    return 0;
}
#endif

/* Sum of iov_len over a writev-family call's iovecs (user memory). */
static __always_inline u64 iov_bytes(u64 vec, u64 vlen)
{
    u64 total = 0;
    if (vlen > SW_MAX_IOV)
        health_inc(SW_HEALTH_IOV_TRUNCATED);
    for (int i = 0; i < SW_MAX_IOV; i++) {
        if (i >= vlen)
            break;
        struct { u64 base; u64 len; } iov = {};
        if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(vec + i * sizeof(iov))))
            break;
        total += iov.len;
    }
    return total;
}

/* One write lost to a full counts map: count it for the writer's uid (the interval of
 * epoch parity `odd`). Exact: every call adds 1 to exactly one uid slot or to lost_other. */
static __always_inline void count_lost(int odd)
{
    u32 uid = (u32)bpf_get_current_uid_gid();
    u64 one = 1;
    u64 *n = odd ? lost1.lookup(&uid) : lost0.lookup(&uid);
    if (!n) {
        /* BPF_NOEXIST: 0 when this call made the slot (already counting it) */
        if ((odd ? lost1.insert(&uid, &one) : lost0.insert(&uid, &one)) == 0)
            return;
        /* another CPU made it meanwhile, else the map is full */
        n = odd ? lost1.lookup(&uid) : lost0.lookup(&uid);
        if (!n) {
            u32 slot = odd ? 1 : 0;
            n = lost_other.lookup(&slot);
        }
    }
    if (n)
        __sync_fetch_and_add(n, 1);
}

/* The count map of epoch parity `odd`, looked up at one call site per map: clang merges
 * `odd ? counts1.lookup(k) : counts0.lookup(k)` into one call, and a lookup whose call
 * site sees two maps is not inlined by the verifier (the generic helper's indirect call
 * instead: ~35 ns per counted write here). The two asm statements differ, so they and
 * the lookups above them cannot be merged. */
static __always_inline struct sw_write_val *counts_lookup(int odd, struct sw_write_key *k)
{
    struct sw_write_val *val;
    if (odd) {
        val = counts1.lookup(k);
        asm volatile(" " : "+r"(val));
    } else {
        val = counts0.lookup(k);
        asm volatile("" : "+r"(val));
    }
    return val;
}

/* An open event for inode k as fd (-1: unknown), reserved with everything but the path
 * filled in; NULL when the ring buffer is full. The caller writes the path and submits. */
static __always_inline struct sw_open_event *open_event(struct sw_write_key *k, s32 fd)
{
    struct sw_open_event *ev = open_events.ringbuf_reserve(sizeof(struct sw_open_event));
    if (!ev) {
        health_inc(SW_HEALTH_EVENTS_LOST);
        return 0;
    }
    ev->tgid = bpf_get_current_pid_tgid() >> 32;
    ev->fd = fd;
    ev->dev = k->dev;
    ev->kind = k->kind;
    ev->ino = k->ino;
    ev->gen = k->gen;
    ev->cgroup_id = bpf_get_current_cgroup_id();
    sw_process_comm(ev->comm);
    return ev;
}

/* First write to a regular file with no verdict: mark it pending (one CPU wins, and it
 * is not sent again) and send userspace its path, read from the kernel's dentries: the
 * writer may be gone by the time userspace looks at /proc. A full ring buffer leaves no
 * mark, so a later write tries again. (fentry: do_filp_open tells opens instead.) */
static __always_inline void discover(struct sw_write_key *k, struct sw_inode *id, u64 file)
{
#ifndef SW_FENTRY
    if (k->kind != SW_FILE_REGULAR || !file)
        return;
    u8 pending = SW_VERDICT_PENDING;
    if (verdicts.insert(id, &pending))
        return;
    struct sw_open_event *ev = open_event(k, k->fd);
    if (!ev) {
        verdicts.delete(id);
        return;
    }
#ifdef SW_PATH_WALK
    ev->path_form = path_names(file, ev->path);
#else
    ev->path_form = SW_PATH_UNKNOWN;
#endif
    open_events.ringbuf_submit(ev, 0);
#endif
}

/* Add one write-family call of `bytes` to key k (a possible log destination) written
 * through file (0: unknown). */
static __always_inline int count_key(struct sw_write_key *k, u64 bytes, u64 file)
{
    u32 zero = 0;
    u32 *epoch = ctl.lookup(&zero);
    int odd = epoch && (*epoch & 1);
    /* counted already this interval: go straight to the add (the verdict was looked up
     * when the key was inserted; a key judged "not a log" since then stops at the next
     * swap and its counts are dropped in userspace) */
    struct sw_write_val *val = counts_lookup(odd, k);
    if (!val) {
        struct sw_inode id = {.dev = k->dev, .gen = k->gen, .ino = k->ino};
        u8 *verdict = verdicts.lookup(&id);
        if (verdict && *verdict == SW_VERDICT_NOT_LOG)
            return 0;
        if (!verdict)
            discover(k, &id, file);
        struct sw_write_val init = {};
        init.cgroup_id = bpf_get_current_cgroup_id();
        sw_process_comm(init.comm);
        /* insert zeroed, then add below: a racing insert from another CPU is not lost */
        if (odd)
            counts1.insert(k, &init);
        else
            counts0.insert(k, &init);
        val = counts_lookup(odd, k);
        if (!val) {
            health_inc(SW_HEALTH_COUNTS_FULL);
            count_lost(odd);
            return 0;
        }
    }
    __sync_fetch_and_add(&val->writes, 1);
    __sync_fetch_and_add(&val->bytes, bytes);
    return 0;
}

#ifndef SW_FENTRY
/* Count one write-family call to fd, if its file may be a log. Counted at entry: no exit
 * hook (each hook costs every write on the host), so `writes` are calls and `bytes` the
 * bytes they asked to write. */
static __always_inline int count_write(s32 fd, u64 a1, u64 a2, int vectored)
{
    struct sw_write_key k = {};
    char *sk = 0;
    u64 file = 0;
    int rc = inode_of_fd(fd, &k, &sk, &file);
#ifdef SW_UNIX_DGRAM
    if (rc == 2)                 /* write(2) on a connected datagram socket */
        rc = unix_dgram_dest(sk, 0, 0, 1, &k);
#endif
    if (rc != 0) {
        if (rc < 0)
            health_inc(SW_HEALTH_FDWALK_FAILED);
        return 0;
    }
    k.tgid = bpf_get_current_pid_tgid() >> 32;
    k.fd = fd;
    return count_key(&k, vectored ? iov_bytes(a1, a2) : a2, file);
}

#ifdef SW_UNIX_DGRAM
/* send(2), sendto(2) (glibc's syslog(3), Python's SysLogHandler): one call is one
 * datagram; a stream socket's send counts like a write. */
int enter_sendto(void *ctx)
{
    s32 fd = (s32)CTX_U64(ctx, TP_FD_OFF);
    struct sw_write_key k = {};
    char *sk = 0;
    u64 file = 0;
    int rc = inode_of_fd(fd, &k, &sk, &file);
    if (rc == 2)
        rc = unix_dgram_dest(sk, (char *)CTX_U64(ctx, TP_SENDTO_ADDR_OFF),
                             (int)CTX_U64(ctx, TP_SENDTO_ADDR_LEN_OFF), 1, &k);
    if (rc != 0) {
        if (rc < 0)
            health_inc(SW_HEALTH_FDWALK_FAILED);
        return 0;
    }
    k.tgid = bpf_get_current_pid_tgid() >> 32;
    k.fd = fd;
    return count_key(&k, CTX_U64(ctx, TP_SENDTO_LEN_OFF), file);
}

/* sendmsg(2) (logger(1), sd_journal_send: journald's native protocol, addressed to its
 * socket): the msghdr is read only for AF_UNIX sockets. struct user_msghdr is uapi:
 * name, namelen, iov, iovlen at 0, 8, 16, 24. */
int enter_sendmsg(void *ctx)
{
    s32 fd = (s32)CTX_U64(ctx, TP_FD_OFF);
    struct sw_write_key k = {};
    char *sk = 0;
    u64 file = 0;
    int rc = inode_of_fd(fd, &k, &sk, &file);
    if (rc != 0 && rc != 2) {
        if (rc < 0)
            health_inc(SW_HEALTH_FDWALK_FAILED);
        return 0;
    }
    struct { u64 name; s32 namelen; s32 pad; u64 iov; u64 iovlen; } m = {};
    if (bpf_probe_read_user(&m, sizeof(m), (void *)CTX_U64(ctx, TP_SENDMSG_MSG_OFF)))
        return 0;
    if (rc == 2 && unix_dgram_dest(sk, (char *)m.name, m.namelen, 1, &k))
        return 0;
    k.tgid = bpf_get_current_pid_tgid() >> 32;
    k.fd = fd;
    return count_key(&k, iov_bytes(m.iov, m.iovlen), file);
}
#endif

#ifdef SW_RAW_SYSCALLS
/* raw_syscalls:sys_enter: every syscall passes here, so the id test comes first and is
 * all most syscalls pay. Arguments are read from the saved user registers. */
int raw_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
    long id = (long)ctx->args[1];
    int vectored;
    if (id == NR_write || id == NR_pwrite64)
        vectored = 0;
    else if (id == NR_writev || id == NR_pwritev || id == NR_pwritev2)
        vectored = 1;
    else
        return 0;
    char *regs = (char *)ctx->args[0];
#ifdef OFF_PT_REGS_CS
    u64 cs = 0;   /* a 32-bit task's syscall numbers mean other syscalls */
    if (bpf_probe_read_kernel(&cs, sizeof(cs), regs + OFF_PT_REGS_CS) || cs != USER64_CS)
        return 0;
#endif
    u64 a0 = 0, a1 = 0, a2 = 0;
    bpf_probe_read_kernel(&a0, sizeof(a0), regs + OFF_PT_REGS_ARG0);
    bpf_probe_read_kernel(&a1, sizeof(a1), regs + OFF_PT_REGS_ARG1);
    bpf_probe_read_kernel(&a2, sizeof(a2), regs + OFF_PT_REGS_ARG2);
    return count_write((s32)a0, a1, a2, vectored);
}
#endif

/* Fallback: one syscalls:sys_enter_* tracepoint per write syscall (dearer per call). */
int enter_write(void *ctx)
{
    return count_write((s32)CTX_U64(ctx, TP_FD_OFF), 0, CTX_U64(ctx, TP_WRITE_COUNT_OFF), 0);
}

/* SW_SHARE_<syscall>: its tracepoint has the fields this reads where another's has them,
 * so it runs that one's program (collector/probes/logwrite_kernel.py, shared_programs):
 * one program less to compile and verify at start-up. */
#ifndef SW_SHARE_pwrite64
int enter_pwrite64(void *ctx)
{
    return count_write((s32)CTX_U64(ctx, TP_FD_OFF), 0, CTX_U64(ctx, TP_PWRITE64_COUNT_OFF), 0);
}
#endif

#define VECTORED_PROBE(name, NAME)                                                  \
    int enter_##name(void *ctx)                                                     \
    {                                                                               \
        return count_write((s32)CTX_U64(ctx, TP_FD_OFF), CTX_U64(ctx, TP_##NAME##_VEC_OFF), \
                           CTX_U64(ctx, TP_##NAME##_VLEN_OFF), 1);                   \
    }

#ifdef HAVE_writev
VECTORED_PROBE(writev, WRITEV)
#endif
#if defined(HAVE_pwritev) && !defined(SW_SHARE_pwritev)
VECTORED_PROBE(pwritev, PWRITEV)
#endif
#if defined(HAVE_pwritev2) && !defined(SW_SHARE_pwritev2)
VECTORED_PROBE(pwritev2, PWRITEV2)
#endif

#endif  /* !SW_FENTRY */

#ifdef SW_FENTRY
/* The fentry path, on kernels that allow function tracing (feature-probed in the loader
 * child): the five write syscalls meet in vfs_write (write, pwrite64) and vfs_writev
 * (writev, pwritev, pwritev2), and opens of every kind in do_filp_open. Their struct
 * file * is typed by the verifier from BTF, so file -> inode -> super block are direct
 * loads and no fd table is walked; no syscall tracepoint is attached, so unrelated
 * syscalls pay nothing. Keys carry fd -1 (userspace finds the path by inode). */
static __always_inline int count_file(char *file, u64 bytes_or_vec, u64 vlen, int vectored)
{
    struct sw_write_key k = {};
    if (!file || inode_of_file(file, &k))
        return 0;
    k.tgid = bpf_get_current_pid_tgid() >> 32;
    k.fd = -1;
    return count_key(&k, vectored ? iov_bytes(bytes_or_vec, vlen) : bytes_or_vec, 0);
}

/* ssize_t vfs_write(struct file *, const char __user *, size_t count, loff_t *) */
SW_KFUNC(vfs_write)
{
    return count_file((char *)ctx[0], ctx[2], 0, 0);
}

/* ssize_t vfs_writev(struct file *, const struct iovec __user *, unsigned long vlen, ...) */
SW_KFUNC(vfs_writev)
{
    return count_file((char *)ctx[0], ctx[1], ctx[2], 1);
}

/* struct file *do_filp_open(int dfd, struct filename *, const struct open_flags *): every
 * open(2) family call, io_uring's openat and exec's; the file is typed and the path is
 * the kernel's copy of what the process passed. */
SW_KRETFUNC(do_filp_open)
{
    char *file = (char *)ctx[3];
    if ((s64)file < 0 && (s64)file >= -4095)          /* IS_ERR */
        return 0;
    int flags = LOAD(int, (char *)ctx[2], OFF_OPEN_FLAGS_OPEN_FLAG);
    if ((flags & O_ACCMODE_) == 0)
        return 0;
    struct sw_write_key k = {};
    if (!file || inode_of_file(file, &k) || k.kind == SW_FILE_PIPE)
        return 0;
    struct sw_inode id = {.dev = k.dev, .gen = k.gen, .ino = k.ino};
    if (verdicts.lookup(&id))
        return 0;
    struct sw_open_event *ev = open_event(&k, -1);
    if (!ev)
        return 0;
    char *name = LOAD(char *, (char *)ctx[1], OFF_FILENAME_NAME);
    if (bpf_probe_read_kernel_str(&ev->path, sizeof(ev->path), name) < 0)
        ev->path[0] = 0;
    ev->path_form = SW_PATH_AS_PASSED;
    open_events.ringbuf_submit(ev, 0);
    return 0;
}

#if defined(SW_UNIX_DGRAM) && defined(HAVE_FENTRY_UNIX_DGRAM)
/* int unix_dgram_sendmsg(struct socket *, struct msghdr *, size_t len): every datagram
 * an AF_UNIX socket sends, whatever the syscall (write, send, sendto, sendmsg, sendmmsg,
 * io_uring); msg_name is the kernel's copy of the address, if one was given. */
SW_KFUNC(unix_dgram_sendmsg)
{
    char *sk = LOAD(char *, (char *)ctx[0], OFF_SOCKET_SK);
    char *msg = (char *)ctx[1];
    struct sw_write_key k = {};
    if (!sk || unix_dgram_dest(sk, LOAD(char *, msg, OFF_MSGHDR_MSG_NAME),
                               LOAD(int, msg, OFF_MSGHDR_MSG_NAMELEN), 0, &k))
        return 0;
    k.tgid = bpf_get_current_pid_tgid() >> 32;
    k.fd = -1;
    return count_key(&k, ctx[2], 0);
}
#endif
#endif  /* SW_FENTRY */
