"""What this kernel offers the log-write probe, as cflags: struct offsets from BTF (the fd
walk's, the inode identity, the datagram channels' socket fields), the live syscall
tracepoint formats, the raw sys_enter hook's registers per architecture, and the
doctor's view of the same (which fd walk, whether the channels can be counted)."""
import platform

from collector.errors import ProbeUnavailable
from collector.probes import fdwalk, kernel
from collector.probes.btf import BTFError
from collector.probes.checks import Check

WRITE_SYSCALLS = ("write", "writev", "pwrite64", "pwritev", "pwritev2")

# Syscall numbers and the user registers holding arguments 0-2, per architecture, for the
# raw sys_enter hook. An architecture not listed uses the syscalls:* tracepoints instead.
RAW_SYSCALL_ABI = {
    "x86_64": {
        "nr": {"write": 1, "pwrite64": 18, "writev": 20, "pwritev": 296, "pwritev2": 328},
        "regs": ("di", "si", "dx"),
        "cs": ("cs", 0x33),          # __USER_CS: a 64-bit task (ia32 numbers differ)
    },
}
SEND_SYSCALLS = ("sendto", "sendmsg")       # datagram channels on the tracepoint path

# (macro, struct, member path): the kernel struct fields the C code reads: the shared fd
# walk's (collector/bpf/fdwalk.h), then the inode identity this probe keys on
BTF_FIELDS = fdwalk.FIELDS + (
    ("INODE_I_INO", "inode", "i_ino"),
    ("INODE_I_SB", "inode", "i_sb"),
    ("INODE_I_GENERATION", "inode", "i_generation"),
    ("SB_S_DEV", "super_block", "s_dev"),
    ("SOCKET_TYPE", "socket", "type"),
)

# the datagram channels (syslog, journald's native protocol): a connected socket's peer
# and the path it is bound to. unix_sock is in vmlinux's BTF when AF_UNIX is built in; a
# kernel without these fields runs without the channels, and says so in `meta`.
DGRAM_FIELDS = (
    ("UNIX_SOCK_PEER", "unix_sock", "peer"),
    ("UNIX_SOCK_ADDR", "unix_sock", "addr"),
    ("UNIX_ADDRESS_NAME", "unix_address", "name"),
)
DGRAM_FENTRY_FUNC = "unix_dgram_sendmsg"
DGRAM_FENTRY_FIELDS = (
    ("MSGHDR_MSG_NAME", "msghdr", "msg_name"),
    ("MSGHDR_MSG_NAMELEN", "msghdr", "msg_namelen"),
)

# the path of a file first written with no verdict (collector/bpf/logwrites.c path_names,
# tracepoint path): its dentries up to its mount's root, then on from where the mount sits.
# A kernel whose BTF lacks them sends no path: userspace reads /proc/PID/fd instead.
PATH_FIELDS = (
    ("FILE_F_PATH_MNT", "file", "f_path.mnt"),
    ("FILE_F_PATH_DENTRY", "file", "f_path.dentry"),
    ("DENTRY_D_PARENT", "dentry", "d_parent"),
    ("DENTRY_D_NAME_NAME", "dentry", "d_name.name"),
    ("VFSMOUNT_MNT_ROOT", "vfsmount", "mnt_root"),
    ("MOUNT_MNT", "mount", "mnt"),
    ("MOUNT_MNT_PARENT", "mount", "mnt_parent"),
    ("MOUNT_MNT_MOUNTPOINT", "mount", "mnt_mountpoint"),
)

# the fentry path (collector/bpf/logwrites.c, SW_FENTRY): where the write syscalls meet (write and
# pwrite64 in vfs_write; writev, pwritev, pwritev2 in vfs_writev) and where every open
# does; all three must be in BTF (vfs_writev is static: a kernel may inline it away)
FENTRY_FUNCS = ("vfs_write", "vfs_writev", "do_filp_open")
FENTRY_FIELDS = (
    ("OPEN_FLAGS_OPEN_FLAG", "open_flags", "open_flag"),
    ("FILENAME_NAME", "filename", "name"),
)



def raw_syscall_macros(btf, machine=None):
    """Macros for the raw sys_enter hook, or {} when this arch/kernel is not supported."""
    abi_ = RAW_SYSCALL_ABI.get(machine or platform.machine())
    if abi_ is None:
        return {}
    try:
        macros = {f"OFF_PT_REGS_ARG{i}": btf.member("pt_regs", reg)[0]
                  for i, reg in enumerate(abi_["regs"])}
        if abi_.get("cs"):
            macros["OFF_PT_REGS_CS"] = btf.member("pt_regs", abi_["cs"][0])[0]
            macros["USER64_CS"] = abi_["cs"][1]
    except BTFError:
        return {}
    macros.update({f"NR_{name}": nr for name, nr in abi_["nr"].items()})
    macros["SW_RAW_SYSCALLS"] = 1
    return macros


def btf_macros(btf):
    macros = fdwalk.btf_macros(btf, BTF_FIELDS, "log-write probe")
    if macros["SZ_INODE_I_INO"] not in (4, 8):
        raise ProbeUnavailable("log-write probe: inode.i_ino has an unexpected size")
    return macros


def fentry_macros(btf):
    """Macros of the fentry path: SW_FENTRY, its struct fields, which functions exist."""
    macros = fdwalk.btf_macros(btf, FENTRY_FIELDS, "log-write probe (fentry)")
    macros["SW_FENTRY"] = 1
    return macros


def dgram_macros(btf, fentry_path):
    """(macros, None) for the datagram channels, or ({}, why not) on a kernel whose BTF
    lacks what they read (or, on the fentry path, unix_dgram_sendmsg)."""
    fields = DGRAM_FIELDS + (DGRAM_FENTRY_FIELDS if fentry_path else ())
    try:
        macros = fdwalk.btf_macros(btf, fields, "log-write probe (datagram channels)")
        if fentry_path:
            btf.func_id(DGRAM_FENTRY_FUNC)
            macros["HAVE_FENTRY_UNIX_DGRAM"] = 1
    except (ProbeUnavailable, BTFError) as e:
        return {}, f"syslog and journald-native channels off: {e}"
    macros["SW_UNIX_DGRAM"] = 1
    return macros, None


def path_macros(btf):
    """SW_PATH_WALK and the fields path_names() reads, or {} when BTF lacks one."""
    try:
        return fdwalk.btf_macros(btf, PATH_FIELDS, "log-write probe (file names)") | \
            {"SW_PATH_WALK": 1}
    except ProbeUnavailable:
        return {}


def tracepoint_macros(root=None):
    """Offsets of the syscall tracepoint fields we read, from the live format files."""
    fmt = kernel.tracepoint_format("syscalls", "sys_enter_write", root)
    if not fmt:
        raise ProbeUnavailable("log-write probe: tracepoint syscalls:sys_enter_write is missing; "
                               "the kernel needs CONFIG_FTRACE_SYSCALLS")
    macros = {"TP_FD_OFF": fmt["fd"].offset, "TP_WRITE_COUNT_OFF": fmt["count"].offset}
    available = {}
    for sc in WRITE_SYSCALLS + SEND_SYSCALLS:
        f = kernel.tracepoint_format("syscalls", f"sys_enter_{sc}", root)
        available[sc] = f is not None
        if f is None:
            continue
        macros[f"HAVE_{sc}"] = 1
        if sc in WRITE_SYSCALLS + SEND_SYSCALLS and f["fd"].offset != macros["TP_FD_OFF"]:
            raise ProbeUnavailable(f"log-write probe: unexpected sys_enter_{sc} format")
        for field in ("count", "vec", "vlen", "addr", "addr_len", "len", "msg"):
            if field in f:
                macros[f"TP_{sc.upper()}_{field.upper()}_OFF"] = f[field].offset
    return macros, available


# a write syscall whose tracepoint has the fields its program reads at the same offsets
# as another's runs that one's program (the programs differ in those offsets only):
# syscall -> (the program's syscall, the fields compared besides fd, checked for all)
SHARED_PROGRAMS = {"pwrite64": ("write", ("count",)),
                   "pwritev": ("writev", ("vec", "vlen")),
                   "pwritev2": ("writev", ("vec", "vlen"))}


def shared_programs(macros):
    """{syscall: the syscall whose program it runs} for this kernel's formats (macros of
    tracepoint_macros(): HAVE_*, TP_*_OFF), and SW_SHARE_<syscall> for each, which keeps
    collector/bpf/logwrites.c from compiling its own. Each program is ~120 ms of the
    kernel's verifier at start-up here (docs/performance.md)."""
    shared, flags = {}, {}
    for sc, (other, fields) in SHARED_PROGRAMS.items():
        if f"HAVE_{sc}" not in macros or f"HAVE_{other}" not in macros:
            continue
        offs = [(macros.get(f"TP_{sc.upper()}_{f.upper()}_OFF"),
                 macros.get(f"TP_{other.upper()}_{f.upper()}_OFF")) for f in fields]
        if all(a is not None and a == b for a, b in offs):
            shared[sc] = other
            flags[f"SW_SHARE_{sc}"] = 1
    return shared, flags


def fd_walk_check(btf):
    try:
        macros = btf_macros(btf)
        fd_off = kernel.tracepoint_format("syscalls", "sys_enter_write")["fd"].offset
        walk, _, state = fdwalk.choose(macros, fd_off, "log-write probe")
        detail = walk if walk == "probe_read" else f"btf (fd slot {state.get('fd_slot')})"
        if state.get("fd_walk_reason"):
            detail += f": {state['fd_walk_reason']}"
        return Check("fd walk", True, detail, blocking=False)
    except (ProbeUnavailable, KeyError, TypeError) as e:
        return Check("fd walk", False, str(e), "report this kernel version", blocking=False)


def channels_check(btf, fentry_refused):
    _, off = dgram_macros(btf, fentry_refused is None)
    return Check("log channels", off is None,
                 "files, journald stdout, syslog and journald-native datagrams, container "
                 "stdout (docs/probe-logwrites.md)" if off is None else
                 f"files, journald stdout, container stdout; {off}", blocking=False)
