"""The log-write probe: loads collector/bpf/logwrites.c, feeds open events out, drains counts."""
import ctypes
import platform
import struct
from dataclasses import dataclass
from typing import NamedTuple

from collector.errors import ProbeUnavailable
from collector.probes import fdwalk, fentry, kernel, loader
from collector.probes.abi import BPF_DIR, abi
from collector.probes.btf import BTF, BTFError
from collector.probes.base import Probe
from collector.probes.checks import Check
from collector.probes.libbpf import BatchDrain
from collector.probes.maps import cstr

WRITE_SYSCALLS = ("write", "writev", "pwrite64", "pwritev", "pwritev2")
VECTORED = ("writev", "pwritev", "pwritev2")

# Syscall numbers and the user registers holding arguments 0-2, per architecture, for the
# raw sys_enter hook. An architecture not listed uses the syscalls:* tracepoints instead.
RAW_SYSCALL_ABI = {
    "x86_64": {
        "nr": {"write": 1, "pwrite64": 18, "writev": 20, "pwritev": 296, "pwritev2": 328},
        "regs": ("di", "si", "dx"),
        "cs": ("cs", 0x33),          # __USER_CS: a 64-bit task (ia32 numbers differ)
    },
}
OPEN_SYSCALLS = ("openat", "open", "creat", "openat2")
SEND_SYSCALLS = ("sendto", "sendmsg")       # datagram channels on the tracepoint path
MAPS = ("counts0", "counts1", "verdicts", "ctl", "health", "open_events",   # collector/bpf/logwrites.c
        "lost0", "lost1", "lost_other")
LOST_OTHER = "other"        # lost_writes_by_uid's catch-all: uids the kernel had no slot for

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

# the fentry path (collector/bpf/logwrites.c, SW_FENTRY): where the write syscalls meet (write and
# pwrite64 in vfs_write; writev, pwritev, pwritev2 in vfs_writev) and where every open
# does; all three must be in BTF (vfs_writev is static: a kernel may inline it away)
FENTRY_FUNCS = ("vfs_write", "vfs_writev", "do_filp_open")
FENTRY_FIELDS = (
    ("OPEN_FLAGS_OPEN_FLAG", "open_flags", "open_flag"),
    ("FILENAME_NAME", "filename", "name"),
)


@dataclass(frozen=True)
class OpenEvent:
    tgid: int
    fd: int
    dev: int
    ino: int
    gen: int
    kind: int
    cgroup_id: int
    comm: str
    path: str


# struct sw_write_key / sw_write_val (collector/bpf/common.h) as struct layouts for the raw
# drain, decoded from the header; VAL_COUNTS: the value's head (writes, bytes), then from
# VAL_IDENT_OFFSET the writer's identity (cgroup id, comm), compared whole by the key cache
KEY_LAYOUT, KEY_FIELDS = abi().layout("sw_write_key")
VAL_LAYOUT, VAL_FIELDS = abi().layout("sw_write_val")
VAL_COUNTS = abi().layout("sw_write_val", upto="cgroup_id")[0]
VAL_IDENT_OFFSET = abi().sw_write_val.cgroup_id.offset


class LogWriteDrain(NamedTuple):
    """What one collect() drained: the interval's counts and its writes lost to a full
    counts map, by writer uid (lost_by_uid(): the same epoch, so the sum is exact)."""
    counts: "RawCounts"
    lost_by_uid: dict


class WriteCount(NamedTuple):     # a tuple: one is built per drained key
    tgid: int
    fd: int
    dev: int
    ino: int
    gen: int
    kind: int
    writes: int
    bytes: int
    cgroup_id: int
    comm: str



class RawCounts:
    """One drain's keys and values as the kernel wrote them (KEY_LAYOUT/VAL_LAYOUT records
    back to back). The interval path reads them without building a tuple per field
    (collector/host/keycache.py); iterating yields WriteCount tuples for everyone else."""

    __slots__ = ("keys", "vals", "n")

    def __init__(self, keys, vals):
        self.keys, self.vals = keys, vals
        self.n = len(keys) // KEY_LAYOUT.size

    @classmethod
    def of(cls, counts):
        """WriteCount tuples (test doubles) in the kernel's layout."""
        def val(c, name):
            return c.comm.encode("utf-8", "replace")[:15] if name == "comm" else getattr(c, name)
        return cls(b"".join(KEY_LAYOUT.pack(*(getattr(c, f, 0) for f in KEY_FIELDS))
                            for c in counts),
                   b"".join(VAL_LAYOUT.pack(*(val(c, f) for f in VAL_FIELDS)) for c in counts))

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter([_write_count(k, v) for k, v in zip(KEY_LAYOUT.iter_unpack(self.keys),
                                                        VAL_LAYOUT.iter_unpack(self.vals))])

    def count(self, i):
        """The i-th key as a WriteCount."""
        return _write_count(KEY_LAYOUT.unpack_from(self.keys, i * KEY_LAYOUT.size),
                            VAL_LAYOUT.unpack_from(self.vals, i * VAL_LAYOUT.size))


def _write_count(key, val):
    """A WriteCount of one key's and value's unpacked fields, by the header's names."""
    fields = dict(zip(KEY_FIELDS, key))
    fields.update(zip(VAL_FIELDS, val))
    fields["comm"] = fields["comm"].split(b"\0", 1)[0].decode("utf-8", "replace")
    return WriteCount(*(fields[f] for f in WriteCount._fields))


def lost_by_uid(keys, vals, other, limit):
    """{uid as text: writes lost} of one drain of `lost0`/`lost1` (u32 uid keys, u64
    counts, back to back) plus `lost_other`'s slot, under "other": at most `limit` uids
    (the map's size; a key-by-key drain could see more if the map churned), the rest
    added to "other". Zero entries are left out; the values sum to the writes lost."""
    pairs = sorted((uid, n) for (uid,), (n,) in zip(struct.iter_unpack("=I", keys),
                                                    struct.iter_unpack("=Q", vals)) if n)
    out = {str(uid): n for uid, n in pairs[:limit]}
    other += sum(n for _, n in pairs[limit:])
    if other:
        out[LOST_OTHER] = other
    return out


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


def _fd_walk_check(btf):
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


def _channels_check(btf, fentry_refused):
    _, off = dgram_macros(btf, fentry_refused is None)
    return Check("log channels", off is None,
                 "files, journald stdout, syslog and journald-native datagrams, container "
                 "stdout (docs/probe-logwrites.md)" if off is None else
                 f"files, journald stdout, container stdout; {off}", blocking=False)


def tracepoint_macros(root=None):
    """Offsets of the syscall tracepoint fields we read, from the live format files."""
    fmt = kernel.tracepoint_format("syscalls", "sys_enter_write", root)
    ret = kernel.tracepoint_format("syscalls", "sys_exit_write", root)
    if not fmt or not ret:
        raise ProbeUnavailable("log-write probe: tracepoint syscalls:sys_enter_write is missing; "
                               "the kernel needs CONFIG_FTRACE_SYSCALLS")
    macros = {"TP_FD_OFF": fmt["fd"].offset, "TP_RET_OFF": ret["ret"].offset,
              "TP_WRITE_COUNT_OFF": fmt["count"].offset}
    available = {}
    for sc in WRITE_SYSCALLS + OPEN_SYSCALLS + SEND_SYSCALLS:
        f = kernel.tracepoint_format("syscalls", f"sys_enter_{sc}", root)
        available[sc] = f is not None
        if f is None:
            continue
        macros[f"HAVE_{sc}"] = 1
        if sc in WRITE_SYSCALLS + SEND_SYSCALLS and f["fd"].offset != macros["TP_FD_OFF"]:
            raise ProbeUnavailable(f"log-write probe: unexpected sys_enter_{sc} format")
        for field in ("filename", "pathname", "flags", "how", "count", "vec", "vlen",
                      "addr", "addr_len", "len", "msg"):
            if field in f:
                macros[f"TP_{sc.upper()}_{field.upper()}_OFF"] = f[field].offset
    if not available["openat"]:
        raise ProbeUnavailable("log-write probe: tracepoint syscalls:sys_enter_openat is missing")
    return macros, available


class LogWriteProbe(Probe):
    name, label = "logwrites", "log-write probe"
    ring_map, count_maps, epoch = "open_events", ("counts0", "counts1"), ("ctl", 0)
    health_map, max_health = "health", "SW_HEALTH_MAX"
    fentry_funcs = FENTRY_FUNCS
    health_fields = {"counts_full": "SW_HEALTH_COUNTS_FULL",
                     "events_lost": "SW_HEALTH_EVENTS_LOST",
                     "fdwalk_failed": "SW_HEALTH_FDWALK_FAILED",
                     "iov_truncated": "SW_HEALTH_IOV_TRUNCATED"}

    def __init__(self, max_keys=65536, max_inodes=131072, ringbuf_pages=64, on_open=None,
                 hook="auto"):
        """hook (config probes.write_hook): "auto" (fentry where the kernel allows it, else
        the syscall tracepoints), "fentry" (insist), "tracepoints" (one syscalls:sys_enter_*
        per write syscall) or "raw" (raw_syscalls:sys_enter with an id filter). Measured
        (docs/performance.md): the raw hook runs a program on every syscall of the host,
        which costs other syscalls twice what the syscall tracepoints' shared entry path
        does, and saves little on writes."""
        fentry.check_hook(hook, "log-write probe")
        self.hook = hook
        self.max_keys, self.max_inodes, self.ringbuf_pages = max_keys, max_inodes, ringbuf_pages
        self.on_open = on_open or (lambda ev: None)
        super().__init__()
        self.fentry = None          # "loads" or "refused: why" (this kernel, any function)
        self.channels = None        # None: datagram channels on; else why they are off
        self.available = {}

    @classmethod
    def from_config(cls, probes, on_open=None, **overrides):
        """The probe as the config's ProbesConfig sets it; overrides win (tests)."""
        kwargs = dict(hook=probes.write_hook, max_keys=probes.max_keys,
                      max_inodes=probes.max_inodes)
        return cls(on_open=on_open, **{**kwargs, **overrides})

    @property
    def uses_raw(self):
        return self.hook_path == "raw"

    def cflags(self):
        btf = BTF.load()
        macros = btf_macros(btf)
        refused = kernel.fentry_refusal(btf)
        self.fentry = "loads" if refused is None else f"refused: {refused}"
        use, self.hook_path_reason = fentry.choose(self.hook, btf, FENTRY_FUNCS,
                                                    "log-write probe")
        if use:
            dgram, self.channels = dgram_macros(btf, True)
            return self._flags(macros | fentry_macros(btf) | dgram, "fentry")
        return self._tracepoint_flags(btf, macros)

    def _tracepoint_flags(self, btf, macros):
        tp, self.available = tracepoint_macros()
        dgram, self.channels = dgram_macros(btf, False)
        if dgram and not all(self.available.get(sc) for sc in SEND_SYSCALLS):
            dgram, self.channels = {}, ("syslog and journald-native channels off: no "
                                        "syscalls:sys_enter_sendto/sendmsg tracepoints")
        macros = macros | tp | dgram
        self.fd_walk, walk, self.fd_walk_state = fdwalk.choose(macros, macros["TP_FD_OFF"],
                                                                "log-write probe")
        macros.update(walk)
        raw = raw_syscall_macros(btf) if self.hook == "raw" else {}
        if self.hook == "raw" and not raw:
            raise ProbeUnavailable("log-write probe: no raw sys_enter support for "
                                   f"{platform.machine()}; use the tracepoint hook")
        return self._flags(macros | raw, "raw" if raw else "tracepoints")

    def _flags(self, macros, path):
        self.hook_path = path
        macros.update(SW_MAX_KEYS=self.max_keys, SW_MAX_INODES=self.max_inodes,
                      SW_RINGBUF_PAGES=self.ringbuf_pages)
        self.macros = macros
        return [f"-I{BPF_DIR}"] + [f"-D{k}={v}" for k, v in sorted(macros.items())]

    def plan(self):
        """What the loader child compiles and attaches (collector/probes/loader.py)."""
        flags = self.cflags()
        if self.hook_path == "fentry":
            steps = [{"kind": "fentry", "fn": "kfunc__vfs_write"},
                     {"kind": "fentry", "fn": "kfunc__vfs_writev"},
                     {"kind": "fexit", "fn": "kretfunc__do_filp_open"}]
            if self.channels is None:
                steps.append({"kind": "fentry", "fn": f"kfunc__{DGRAM_FENTRY_FUNC}"})
            fallback = self._fallback_plan if self.hook == "auto" else None
            return loader.Plan(str(BPF_DIR / "logwrites.c"), flags, steps, self._maps(),
                               fallback)
        return self._tracepoint_plan(flags)

    def _maps(self):
        return list(MAPS) + (["sockpaths"] if self.channels is None else [])

    def _fallback_plan(self, why):
        """The fentry programs passed the feature probe but did not load: the tracepoints."""
        self.hook_path_reason = f"fentry failed to load: {why}"
        btf = BTF.load()
        return self._tracepoint_plan(self._tracepoint_flags(btf, btf_macros(btf)))

    def _tracepoint_plan(self, flags):
        writes = [{"kind": "tracepoint", "tp": f"syscalls:sys_enter_{sc}", "fn": f"enter_{sc}"}
                  for sc in WRITE_SYSCALLS if self.available.get(sc)]
        steps = [{"kind": "raw", "tp": "sys_enter", "fn": "raw_sys_enter", "else": writes}] \
            if self.uses_raw else writes
        for sc in OPEN_SYSCALLS:
            if self.available.get(sc):
                steps.append({"kind": "tracepoint", "tp": f"syscalls:sys_enter_{sc}",
                              "fn": f"enter_{sc}"})
                steps.append({"kind": "tracepoint", "tp": f"syscalls:sys_exit_{sc}",
                              "fn": "exit_open_any"})
        if self.channels is None:
            steps += [{"kind": "tracepoint", "tp": f"syscalls:sys_enter_{sc}", "fn": f"enter_{sc}"}
                      for sc in SEND_SYSCALLS]
        return loader.Plan(str(BPF_DIR / "logwrites.c"), flags, steps, self._maps())

    def load_kwargs(self):
        return {"max_keys": self.max_keys, "max_inodes": self.max_inodes,
                "ringbuf_pages": self.ringbuf_pages, "hook": self.hook}

    def plan_state(self):
        """What plan() found about the kernel, for the daemon's copy of the probe."""
        return {"available": self.available, "hook_path": self.hook_path,
                "hook_path_reason": self.hook_path_reason,
                "fd_walk": self.fd_walk, "fd_walk_state": self.fd_walk_state,
                "fentry": self.fentry, "channels": self.channels}

    def _meta_aliases(self):
        return {"write_hook": self.hook_path}       # the hook's older name, docs/stream.md

    def _meta(self):
        return {"fentry": self.fentry, "channels_off": self.channels or None}

    @classmethod
    def checks(cls, host):
        """The struct offsets it reads; as root, which fd walk loads and whether the
        datagram channels can be counted (information only: each has a working path)."""
        if host.btf is None:
            return []
        try:
            n = len(btf_macros(host.btf)) // 2
            out = [Check("struct offsets", True, f"{n} kernel struct fields found in BTF")]
        except ProbeUnavailable as e:
            out = [Check("struct offsets", False, str(e), "report this kernel version")]
        if host.tracefs_root and host.privileged:
            out += [_fd_walk_check(host.btf), _channels_check(host.btf, host.fentry_refused)]
        return out

    def _adopt_state(self, state):
        self.available, self.hook_path = state["available"], state["hook_path"]
        self.hook_path_reason = state["hook_path_reason"]
        self.fd_walk, self.fd_walk_state = state["fd_walk"], state["fd_walk_state"]
        self.fentry = state["fentry"]
        self.channels = state.get("channels")
        if "sys_enter" in self.handover.info.get("fallbacks", ()):
            self.hook_path = "tracepoints"     # raw tracepoint refused: per-syscall ones
        self.attached = ["raw_syscalls:sys_enter" if tp == "raw:sys_enter"
                         else tp.removeprefix("syscalls:") for tp in self.attached]
        self._event_t = abi().sw_open_event
        self._lost_drains = [BatchDrain(self.maps[m]) for m in ("lost0", "lost1")]

    def _on_event(self, data, _size):
        ev = ctypes.cast(data, ctypes.POINTER(self._event_t)).contents
        self.on_open(OpenEvent(ev.tgid, ev.fd, ev.dev, ev.ino, ev.gen, ev.kind, ev.cgroup_id,
                               cstr(ev.comm), cstr(ev.path)))

    def set_verdict(self, dev, gen, ino, is_log):
        a = abi()
        self.maps["verdicts"].update(a.sw_inode(dev, gen, ino), ctypes.c_uint8(
            a.SW_VERDICT_LOG if is_log else a.SW_VERDICT_NOT_LOG))

    def set_socket_paths(self, paths):
        """{socket path: channel id}: the datagram destinations the kernel counts (the
        table is replaced). No-op when the channels are off on this kernel."""
        if self.channels is not None:
            return
        table = self.maps["sockpaths"]
        for key in table.keys():
            table.delete(ctypes.create_string_buffer(key, len(key)))
        key_t = abi().sw_sock_path
        for path, channel in list(paths.items())[:abi().SW_SOCKPATHS_MAX]:
            raw = path.encode()
            if not raw or len(raw) >= abi().SW_SUN_PATH_LEN:
                continue              # cannot be a bound sun_path: never matches
            key = key_t()
            key.path = raw            # zero-padded: the kernel compares all 108 bytes
            table.update(key, ctypes.c_uint32(channel))

    def clear_verdicts(self):
        """Forget every verdict: writes count as pending until judged again."""
        verdicts = self.maps["verdicts"]
        for key in verdicts.keys():
            verdicts.delete(ctypes.create_string_buffer(key, len(key)))

    def _collect(self, idle):
        return LogWriteDrain(RawCounts(*self._drained_bytes(idle)), self._drain_lost(idle))

    def _drain_lost(self, idle):
        """The retired interval's writes lost to a full counts map, by uid, emptied (the
        programs count into the other epoch's map and slot now)."""
        keys, vals = self._drained_bytes(idle, self._lost_drains)
        table, slot = self.maps["lost_other"], ctypes.c_uint32(idle)
        raw = table.lookup(slot)
        other = int.from_bytes(raw[:8], "little") if raw else 0
        if other:
            table.update(slot, ctypes.c_uint64(0))
        return lost_by_uid(keys, vals, other, abi().SW_LOST_UIDS)


