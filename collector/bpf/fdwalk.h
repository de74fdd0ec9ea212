/* The fd walk both probes share: an fd of the current task -> its struct file's inode and
 * private data (a socket file's struct socket *), and a socket -> its struct sock.
 *
 * Offsets are the running kernel's, from BTF (OFF_* macros, collector/probes/fdwalk.py);
 * no layout is taken from the installed headers. Two variants, chosen by feature probing:
 *   SW_FD_WALK_BTF   bpf_get_current_task_btf() and direct loads down to fdt->fd[fd]: the
 *                    verifier types each pointer from BTF (5.11+). With SW_FD_SLOT_READ the
 *                    array slot is one probe read (verifiers that do not type fdt->fd's
 *                    target as readable memory).
 *   otherwise        a bpf_probe_read_kernel chain from bpf_get_current_task().
 * The struct file * from the array is a plain scalar to the verifier either way, so from
 * there on every field is a probe read; fields that sit together are read in one go
 * (SW_FDT_CHUNK, SW_FILE_LO/SW_FILE_LEN). */
#ifndef SURGEWATCH_FDWALK_H
#define SURGEWATCH_FDWALK_H

/* fd -> struct file * of the current task; 0 when the fd is not open (or the walk fails) */
static __always_inline u64 sw_fd_file(s64 fd)
{
    if (fd < 0)
        return 0;
#ifdef SW_FD_WALK_BTF
    char *task = (char *)bpf_get_current_task_btf();
    char *files = *(char **)(task + OFF_TASK_FILES);
    if (!files)
        return 0;
    char *fdt = *(char **)(files + OFF_FILES_FDT);
    if (!fdt)
        return 0;
    unsigned int max_fds = *(unsigned int *)(fdt + OFF_FDT_MAX_FDS);
    u64 *fdarr = *(u64 **)(fdt + OFF_FDT_FD);
    if ((u64)fd >= max_fds || !fdarr)
        return 0;
#ifdef SW_FD_SLOT_READ
    u64 file = 0;
    if (bpf_probe_read_kernel(&file, sizeof(file), fdarr + fd))
        return 0;
    return file;
#else
    return fdarr[fd];
#endif
#else
    char *task = (char *)bpf_get_current_task();
    char *files = 0, *fdt = 0, *fdarr = 0;
    unsigned int max_fds = 0;
    u64 file = 0;
    if (bpf_probe_read_kernel(&files, sizeof(files), task + OFF_TASK_FILES) || !files)
        return 0;
    if (bpf_probe_read_kernel(&fdt, sizeof(fdt), files + OFF_FILES_FDT) || !fdt)
        return 0;
#ifdef SW_FDT_CHUNK
    u64 fdtc[SW_FDT_CHUNK / 8];
    if (bpf_probe_read_kernel(fdtc, sizeof(fdtc), fdt))
        return 0;
    __builtin_memcpy(&max_fds, (char *)fdtc + OFF_FDT_MAX_FDS, sizeof(max_fds));
    __builtin_memcpy(&fdarr, (char *)fdtc + OFF_FDT_FD, sizeof(fdarr));
#else
    if (bpf_probe_read_kernel(&max_fds, sizeof(max_fds), fdt + OFF_FDT_MAX_FDS) ||
        bpf_probe_read_kernel(&fdarr, sizeof(fdarr), fdt + OFF_FDT_FD))
        return 0;
#endif
    if ((u64)fd >= max_fds || !fdarr)
        return 0;
    if (bpf_probe_read_kernel(&file, sizeof(file), fdarr + fd * sizeof(void *)))
        return 0;
    return file;
#endif
}

/* file->f_inode and file->private_data; 0 on success */
static __always_inline int sw_file_fields(u64 file, char **inode, char **priv)
{
#ifdef SW_FILE_LEN
    u64 c[SW_FILE_LEN / 8];
    if (bpf_probe_read_kernel(c, sizeof(c), (char *)file + SW_FILE_LO))
        return -1;
    __builtin_memcpy(inode, (char *)c + (OFF_FILE_F_INODE - SW_FILE_LO), sizeof(*inode));
    __builtin_memcpy(priv, (char *)c + (OFF_FILE_PRIVATE_DATA - SW_FILE_LO), sizeof(*priv));
#else
    if (bpf_probe_read_kernel(inode, sizeof(*inode), (char *)file + OFF_FILE_F_INODE) ||
        bpf_probe_read_kernel(priv, sizeof(*priv), (char *)file + OFF_FILE_PRIVATE_DATA))
        return -1;
#endif
    return 0;
}

/* struct sock * and its family of a socket file's struct socket *; 0 when there is none */
static __always_inline u64 sw_socket_sk(char *sock, u16 *family)
{
    char *sk = 0;
    if (!sock || bpf_probe_read_kernel(&sk, sizeof(sk), sock + OFF_SOCKET_SK) || !sk)
        return 0;
    if (bpf_probe_read_kernel(family, sizeof(*family), sk + OFF_SOCK_FAMILY))
        return 0;
    return (u64)sk;
}

/* The current process's name as ps and top show it: its main thread's comm, not a worker
 * thread's own name ("rs:main Q:Reg" is rsyslogd; a Java pool thread is its JVM), so a
 * process that is no unit or container is one service. Else the current thread's. */
static __always_inline void sw_process_comm(char *comm)
{
    char *leader = 0;
#ifdef SW_FD_WALK_BTF
    leader = *(char **)((char *)bpf_get_current_task_btf() + OFF_TASK_GROUP_LEADER);
#else
    bpf_probe_read_kernel(&leader, sizeof(leader),
                          (char *)bpf_get_current_task() + OFF_TASK_GROUP_LEADER);
#endif
    if (leader && !bpf_probe_read_kernel(comm, SW_COMM_LEN, leader + OFF_TASK_COMM))
        return;
    bpf_get_current_comm(comm, SW_COMM_LEN);
}

#endif
