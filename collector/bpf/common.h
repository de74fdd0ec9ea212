/* Kernel/user ABI of surgewatch's probes: the one place these layouts are declared.
 * collector/probes/abi.py parses the structs below into ctypes, so Python never
 * re-declares them by hand. Keep to fixed-width types and explicit padding. */
#ifndef SURGEWATCH_COMMON_H
#define SURGEWATCH_COMMON_H

#define SW_COMM_LEN 16
#define SW_PATH_LEN 512
#define SW_NAME_MAX 256         /* one path component: NAME_MAX + 1 */
#define SW_PATH_DEPTH 24        /* dentries and mount crossings walked for a path */

/* verdict for an inode (dev, ino), decided by userspace from the log-destination rules */
#define SW_VERDICT_LOG 1
#define SW_VERDICT_NOT_LOG 2
#define SW_VERDICT_PENDING 3    /* its discovery event is on its way: counted, not re-sent */

/* what a written file descriptor points at, as the kernel sees it (i_mode, family) */
#define SW_FILE_REGULAR 1
#define SW_FILE_UNIX_SOCKET 2   /* stream socket (journald's stdout stream): verdict by peer */
#define SW_FILE_PIPE 3          /* pipe or FIFO: a log when a log-copying runtime reads it */
#define SW_FILE_UNIX_DGRAM 4    /* datagram to a configured socket path (syslog, journald's
                                 * native protocol): dev 0, ino = the path's channel id */

/* AF_UNIX datagram destinations: key of the `sockpaths` map (sun_path, zero-padded) */
#define SW_SUN_PATH_LEN 108
#define SW_SOCKPATHS_MAX 64     /* entries of `sockpaths` */
struct sw_sock_path {
    char path[SW_SUN_PATH_LEN];
};

/* lost/health counters: index into the `health` per-CPU array */
#define SW_HEALTH_COUNTS_FULL 0     /* write not counted: counts map full (lost) */
#define SW_HEALTH_EVENTS_LOST 1     /* open event not delivered: ring buffer full */
#define SW_HEALTH_FDWALK_FAILED 2   /* fd -> file walk failed (fd raced with close) */
#define SW_HEALTH_IOV_TRUNCATED 3   /* writev with more iovecs than summed: bytes undercounted */
#define SW_HEALTH_MAX 4

/* writes lost to a full counts map, by the writer's uid (bpf_get_current_uid_gid's low 32
 * bits): the `lost0`/`lost1` hash maps (flipped with the counts by the same epoch) hold
 * this many uids per interval; the writes of further uids are counted in the `lost_other`
 * array (slot = epoch & 1) */
#define SW_LOST_UIDS 64

/* iovecs summed per writev-family call (UIO_MAXIOV is 1024; loggers use a handful, conmon
 * up to 128 per flush of its k8s-file log) */
#define SW_MAX_IOV 128

/* counts key: one process writing one open file through one fd */
struct sw_write_key {
    __u32 tgid;
    __s32 fd;
    __u32 dev;      /* kernel dev_t of the inode's super block (MKDEV: major << 20 | minor) */
    __u32 kind;     /* SW_FILE_* */
    __u64 ino;
    __u32 gen;      /* i_generation: tells a new file from a deleted one with the same ino */
    __u32 pad;
};

struct sw_write_val {
    __u64 writes;   /* write-family calls */
    __u64 bytes;    /* bytes they asked to write */
    __u64 cgroup_id;
    char comm[SW_COMM_LEN];
};

/* inode identity, for the verdict map */
struct sw_inode {
    __u32 dev;
    __u32 gen;
    __u64 ino;
};

/* how sw_open_event.path is written */
#define SW_PATH_AS_PASSED 0     /* the string the process passed to open (fentry): may be relative */
#define SW_PATH_NAMES 1         /* the file's dentry names from the writer's mount namespace
                                 * root, leaf first, each NUL-ended; an empty one ends them */
#define SW_PATH_UNKNOWN 2       /* too deep or unreadable: userspace reads /proc/PID/fd/FD */

/* an inode with no verdict yet: opened for writing (fentry: do_filp_open) or written for
 * the first time (tracepoints: no open hook, so no syscall exit hook at all) */
struct sw_open_event {
    __u32 tgid;
    __s32 fd;
    __u32 dev;
    __u32 kind;
    __u64 ino;
    __u64 cgroup_id;
    __u32 gen;
    __u32 path_form;         /* SW_PATH_* */
    char comm[SW_COMM_LEN];
    char path[SW_PATH_LEN];
};

#endif

/* ======================================================================================
 * TCP reset probe (collector/bpf/resets.c, collector/probes/resets.py). Separate section: only the
 * resets probe uses what follows.
 * ====================================================================================== */
#ifndef SURGEWATCH_RESETS_ABI
#define SURGEWATCH_RESETS_ABI

/* direction of a reset */
#define SW_RST_SENT 1
#define SW_RST_RECEIVED 2

/* kind of a sent reset (received resets have kind 0) */
#define SW_RST_KIND_ABORT 1        /* socket, no incoming segment: close/abort by the socket's side */
#define SW_RST_KIND_REPLY 2        /* socket + incoming segment it could not accept */
#define SW_RST_KIND_NO_SOCKET 3    /* no socket for the segment: the kernel answered it */

/* how the owner of a socket was learned (all in process context but LISTENER) */
#define SW_OWNER_NONE 0
#define SW_OWNER_CONNECT 1         /* the task that called connect() (state -> SYN_SENT) */
#define SW_OWNER_LISTEN 2          /* the task that called listen() */
#define SW_OWNER_ACCEPT 3          /* the task that accept()ed it */
#define SW_OWNER_IO 4              /* the last task that sent/received on it (send*, recv*) */
#define SW_OWNER_LISTENER 5        /* not accepted yet: the owner of the listener on its port */

/* reason unknown: the kernel's tracepoint has no `reason` field (before 6.10) */
#define SW_RST_REASON_NONE 255

/* idle-before-reset histogram: bucket 0 is < 1 ms, bucket i (1..22) is [2^(i-1), 2^i) ms,
 * the last bucket is >= 2^22 ms (about 70 min) */
#define SW_IDLE_BUCKETS 24

/* health counters of the resets probe: index into its `rhealth` per-CPU array */
#define SW_RHEALTH_COUNTS_FULL 0   /* reset not counted: counts map full (lost) */
#define SW_RHEALTH_EVENTS_LOST 1   /* reset counted but its event not delivered: ring buffer full */
#define SW_RHEALTH_OWNERS_FULL 2   /* owner not recorded: owners map update failed */
#define SW_RHEALTH_NO_OWNER 3      /* reset on a socket whose owner was never seen */
#define SW_RHEALTH_EVENTS_OVER_BUDGET 4  /* reset counted, no event: interval's budget spent */
#define SW_RHEALTH_LOADS_FULL 5    /* a process's load not counted: loads map full (lost) */
#define SW_RHEALTH_MAX 6

/* the resets probe's `rctl` array: the epoch (which count map is live), and how many
 * reset events an interval may send (the rest are only counted: a storm costs userspace
 * nothing per reset) */
#define SW_RCTL_EPOCH 0
#define SW_RCTL_EVENT_BUDGET 1

/* owner of a socket, keyed by the struct sock pointer */
struct sw_sock_owner {
    __u32 tgid;
    __u32 source;      /* SW_OWNER_* */
    __u32 closed;      /* 1 once the socket reached TCP_CLOSE (kept until destroyed) */
    __u32 prev_state;  /* the state it left for TCP_CLOSE */
    __u64 cgroup_id;
    char comm[SW_COMM_LEN];
};

/* kernel-side reset counts: exact even when events are lost */
struct sw_reset_key {
    __u32 tgid;        /* owner; 0 when none is known */
    __u8 dir;          /* SW_RST_SENT / SW_RST_RECEIVED */
    __u8 kind;         /* SW_RST_KIND_* (sent only) */
    __u8 state;        /* TCP state when it happened (TCP_* numbers; 0 unknown) */
    __u8 reason;       /* enum sk_rst_reason, or SW_RST_REASON_NONE */
    __u16 lport;       /* local port, only when tgid is 0 (for the listener lookup) */
    __u16 family;      /* only when tgid is 0 */
    __u32 pad;
};

struct sw_reset_val {
    __u64 count;
    __u64 idle_unknown;            /* resets whose idle time is not defined (no socket, SYN_SENT...) */
    __u64 cgroup_id;
    char comm[SW_COMM_LEN];
    __u64 idle_hist[SW_IDLE_BUCKETS];
};

/* a process's TCP load during one interval (the denominators of load-normalised rates):
 * the resets probe's `loads0`/`loads1` maps, flipped with the reset counts' epoch */
struct sw_load_key {
    __u32 tgid;
    __u32 pad;
};

struct sw_load_val {
    __u64 accepted;    /* TCP connections it accept()ed */
    __u64 connected;   /* its connect()s that reached ESTABLISHED */
    __u64 tcp_bytes;   /* bytes its sends put into TCP sockets (what the send returned) */
    __u64 cgroup_id;
    char comm[SW_COMM_LEN];
};

/* one reset, to userspace through a ring buffer (losses counted in rhealth) */
struct sw_reset_event {
    __u64 ts_ns;       /* bpf_ktime_get_ns */
    __u64 skaddr;
    __u64 cgroup_id;
    __u32 tgid;
    __u32 idle_ms;     /* valid when idle_valid */
    __u8 dir;
    __u8 kind;
    __u8 state;
    __u8 reason;
    __u8 family;       /* AF_INET 2 / AF_INET6 10 */
    __u8 idle_valid;
    __u8 source;       /* SW_OWNER_* */
    __u8 pad;
    __u16 lport;
    __u16 rport;
    __u32 pad2;
    __u8 laddr[16];    /* AF_INET: first 4 bytes */
    __u8 raddr[16];
    char comm[SW_COMM_LEN];
};

#endif
