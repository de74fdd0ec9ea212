/* Kernel/user ABI of surgewatch's probes: the one place these layouts are declared.
 * collector/probes/abi.py parses the structs below into ctypes, so Python never
 * re-declares them by hand. Keep to fixed-width types and explicit padding. */
#ifndef SURGEWATCH_COMMON_H
#define SURGEWATCH_COMMON_H

#define SW_COMM_LEN 16
#define SW_PATH_LEN 256

/* verdict for an inode (dev, ino), decided by userspace from the log-destination rules */
#define SW_VERDICT_LOG 1
#define SW_VERDICT_NOT_LOG 2

/* what a written file descriptor points at, as the kernel sees it (i_mode, family) */
#define SW_FILE_REGULAR 1
#define SW_FILE_UNIX_SOCKET 2

/* lost/health counters: index into the `health` per-CPU array */
#define SW_HEALTH_COUNTS_FULL 0     /* write not counted: counts map full (lost) */
#define SW_HEALTH_EVENTS_LOST 1     /* open event not delivered: ring buffer full */
#define SW_HEALTH_FDWALK_FAILED 2   /* fd -> file walk failed (fd raced with close) */
#define SW_HEALTH_STASH_FULL 3      /* write entered but could not be stashed for exit */
#define SW_HEALTH_MAX 4

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
    __u64 writes;   /* successful write-family calls */
    __u64 bytes;    /* bytes they returned as written */
    __u64 cgroup_id;
    char comm[SW_COMM_LEN];
};

/* inode identity, for the verdict map */
struct sw_inode {
    __u32 dev;
    __u32 gen;
    __u64 ino;
};

/* sent when a process opens a file for writing whose inode has no verdict yet */
struct sw_open_event {
    __u32 tgid;
    __s32 fd;
    __u32 dev;
    __u32 kind;
    __u64 ino;
    __u64 cgroup_id;
    __u32 gen;
    __u32 pad;
    char comm[SW_COMM_LEN];
    char path[SW_PATH_LEN];  /* as the process passed it: may be relative */
};

#endif
