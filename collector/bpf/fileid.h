/* What the log-write probe reads about a written file, with no map: the current task's
 * fd -> file -> inode identity and kind (tracepoint path, through fdwalk.h), a typed
 * struct file's (fentry path), and a file's path from its dentries. Included by
 * collector/bpf/logwrites.c after common.h, fdwalk.h and kdefs.h; what touches a map
 * (verdicts, counts, channels) stays there (bcc rewrites map calls in the main file only). */
#ifndef SURGEWATCH_FILEID_H
#define SURGEWATCH_FILEID_H

/* systemd names the child it forks for a unit "(<name>)" until exec; that child writes
 * the journald stdout stream's header (unit, priority, ...: one write, not a log line),
 * so stream writes of a task whose comm starts with '(' are not counted. */
static __always_inline int systemd_prexec(void)
{
    char comm[SW_COMM_LEN] = {};
    bpf_get_current_comm(&comm, sizeof(comm));
    return comm[0] == '(';
}

#ifndef SW_FENTRY
/* fd -> struct file -> inode, through the current task's fd table (collector/bpf/fdwalk.h). Fills
 * dev, ino, gen, kind, and *filep (the struct file). Returns 0 for a possible log
 * destination, 1 for anything else, -1 on a failed walk, 2 for an AF_UNIX socket that is
 * not a stream (*skp = its struct sock *: the caller finds the datagram's destination). */
static __always_inline int inode_of_fd(s32 fd, struct sw_write_key *k, char **skp, u64 *filep)
{
    char *inode = 0, *priv = 0, *sb = 0;
    u16 mode = 0;

    if (fd < 0)
        return 1;
    u64 file = sw_fd_file(fd);
    if (!file || sw_file_fields(file, &inode, &priv) || !inode)
        return -1;
    *filep = file;
    /* the mode alone first: most writes on a host (pipes, devices, TCP) stop here, and
     * a 2-byte read is cheaper than the inode chunk (measured: -6 ns per such write,
     * +5 ns per log write) */
    if (bpf_probe_read_kernel(&mode, sizeof(mode), inode + OFF_INODE_I_MODE))
        return -1;
    if ((mode & S_IFMT_) == S_IFREG_) {
        k->kind = SW_FILE_REGULAR;
    } else if ((mode & S_IFMT_) == S_IFIFO_) {
        k->kind = SW_FILE_PIPE;
    } else if ((mode & S_IFMT_) == S_IFSOCK_) {
        u16 family = 0;          /* before the inode chunk: TCP writes stop here */
        char *sk = (char *)sw_socket_sk(priv, &family);
        if (!sk || family != AF_UNIX_)
            return 1;
        short type = 0;
        if (bpf_probe_read_kernel(&type, sizeof(type), priv + OFF_SOCKET_TYPE))
            return -1;
        if (type != SOCK_STREAM_) {
            *skp = sk;
            return 2;
        }
        if (systemd_prexec())
            return 1;
        k->kind = SW_FILE_UNIX_SOCKET;
    } else {
        return 1;
    }
#ifdef SW_INODE_CHUNK
    u64 ic[SW_INODE_CHUNK / 8];
    if (bpf_probe_read_kernel(ic, sizeof(ic), inode))
        return -1;
#endif
    u64 ino = 0;
    u32 dev = 0, gen = 0;
#ifdef SW_INODE_CHUNK
    __builtin_memcpy(&ino, (char *)ic + OFF_INODE_I_INO, SZ_INODE_I_INO);
    __builtin_memcpy(&sb, (char *)ic + OFF_INODE_I_SB, sizeof(sb));
    __builtin_memcpy(&gen, (char *)ic + OFF_INODE_I_GENERATION, sizeof(gen));
#else
    if (bpf_probe_read_kernel(&ino, SZ_INODE_I_INO, inode + OFF_INODE_I_INO))
        return -1;
    if (bpf_probe_read_kernel(&sb, sizeof(sb), inode + OFF_INODE_I_SB))
        return -1;
    if (bpf_probe_read_kernel(&gen, sizeof(gen), inode + OFF_INODE_I_GENERATION))
        return -1;
#endif
    if (!sb || bpf_probe_read_kernel(&dev, sizeof(dev), sb + OFF_SB_S_DEV))
        return -1;
    k->ino = ino;
    k->dev = dev;
    k->gen = gen;
    return 0;
}

#endif

#if !defined(SW_FENTRY) && defined(SW_PATH_WALK)
/* The names of file's path from its mount namespace's root into buf, leaf first, each
 * NUL-ended, an empty one last (as d_path walks: up the dentries to the mount's root,
 * then on from where that mount sits in its parent). SW_PATH_UNKNOWN when it is deeper
 * than SW_PATH_DEPTH steps, longer than the buffer, or outside its namespace's tree. */
static __always_inline u32 path_names(u64 file, char *buf)
{
    char *dentry = 0, *vfsmnt = 0, *root = 0, *parent = 0, *up = 0, *name = 0;
    if (PTR_AT(file, OFF_FILE_F_PATH_DENTRY, dentry) || PTR_AT(file, OFF_FILE_F_PATH_MNT, vfsmnt) ||
        !dentry || !vfsmnt || PTR_AT(vfsmnt, OFF_VFSMOUNT_MNT_ROOT, root))
        return SW_PATH_UNKNOWN;
    char *mnt = vfsmnt - OFF_MOUNT_MNT;
    u32 off = 0;
    /* unrolled: a loop counter the verifier must track would keep it from pruning the
     * two kinds of step, 2^depth paths to check */
#pragma unroll
    for (int i = 0; i < SW_PATH_DEPTH; i++) {
        if (dentry == root) {
            if (PTR_AT(mnt, OFF_MOUNT_MNT_PARENT, parent))
                return SW_PATH_UNKNOWN;
            if (parent == mnt) {                    /* the namespace's root mount */
                u32 end = off;
                asm volatile("" : "+r"(end));
                buf[end & (SW_PATH_LEN - 1)] = 0;
                return SW_PATH_NAMES;
            }
            if (PTR_AT(mnt, OFF_MOUNT_MNT_MOUNTPOINT, dentry) ||
                PTR_AT(parent, OFF_MOUNT_MNT + OFF_VFSMOUNT_MNT_ROOT, root))
                return SW_PATH_UNKNOWN;
            mnt = parent;
            continue;
        }
        /* a dentry that is its own parent but no mount's root: not in this tree */
        if (PTR_AT(dentry, OFF_DENTRY_D_PARENT, up) || up == dentry ||
            PTR_AT(dentry, OFF_DENTRY_D_NAME_NAME, name) || off >= SW_PATH_LEN - SW_NAME_MAX)
            return SW_PATH_UNKNOWN;
        /* the same value, masked where the verifier sees it: 6.1's loses the bound
         * checked above through a stack spill; the asm keeps clang from dropping the mask
         * (SW_PATH_LEN - SW_NAME_MAX is a power of two) */
        u32 at = off;
        asm volatile("" : "+r"(at));
        at &= SW_PATH_LEN - SW_NAME_MAX - 1;
        long n = bpf_probe_read_kernel_str(buf + at, SW_NAME_MAX, name);
        if (n <= 1)
            return SW_PATH_UNKNOWN;
        off += n;
        dentry = up;
    }
    return SW_PATH_UNKNOWN;
}
#endif

#ifdef SW_FENTRY
/* struct file * -> dev, ino, gen, kind. 0 for a possible log destination, 1 otherwise. */
static __always_inline int inode_of_file(char *file, struct sw_write_key *k)
{
    char *inode = LOAD(char *, file, OFF_FILE_F_INODE);
    if (!inode)
        return 1;
    u16 mode = LOAD(u16, inode, OFF_INODE_I_MODE);
    if ((mode & S_IFMT_) == S_IFREG_) {
        k->kind = SW_FILE_REGULAR;
    } else if ((mode & S_IFMT_) == S_IFIFO_) {
        k->kind = SW_FILE_PIPE;
    } else if ((mode & S_IFMT_) == S_IFSOCK_) {
        u16 family = 0;     /* private_data is a void *: probe reads from here on */
        char *sock = LOAD(char *, file, OFF_FILE_PRIVATE_DATA);
        if (!sw_socket_sk(sock, &family) || family != AF_UNIX_)
            return 1;
        short type = 0;     /* datagrams are counted in unix_dgram_sendmsg, below */
        if (bpf_probe_read_kernel(&type, sizeof(type), sock + OFF_SOCKET_TYPE) ||
            type != SOCK_STREAM_ || systemd_prexec())
            return 1;
        k->kind = SW_FILE_UNIX_SOCKET;
    } else {
        return 1;
    }
    char *sb = LOAD(char *, inode, OFF_INODE_I_SB);
    if (!sb)
        return 1;
#if SZ_INODE_I_INO == 8
    k->ino = LOAD(u64, inode, OFF_INODE_I_INO);
#else
    k->ino = LOAD(u32, inode, OFF_INODE_I_INO);
#endif
    k->gen = LOAD(u32, inode, OFF_INODE_I_GENERATION);
    k->dev = LOAD(u32, sb, OFF_SB_S_DEV);
    return 0;
}

#endif

#endif
