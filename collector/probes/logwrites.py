"""The log-write probe: loads collector/bpf/logwrites.c, feeds open events out, drains counts."""
import ctypes
import platform

from collector.errors import ProbeUnavailable
from collector.probes import fdwalk, fentry, kernel, loader
from collector.probes.abi import BPF_DIR, abi
from collector.probes.base import Probe
from collector.probes.btf import BTF
from collector.probes.checks import Check
from collector.probes.libbpf import BatchDrain
from collector.probes.logwrite_counts import (LogWriteDrain, OpenEvent, RawCounts,
                                              event_path, lost_by_uid, path_bytes)
from collector.probes.logwrite_kernel import (DGRAM_FENTRY_FUNC, SEND_SYSCALLS, WRITE_SYSCALLS,
                                              btf_macros, channels_check, dgram_macros,
                                              fd_walk_check, fentry_macros, path_macros,
                                              raw_syscall_macros, shared_programs,
                                              tracepoint_macros)
from collector.probes.maps import cstr

MAPS = ("counts0", "counts1", "verdicts", "ctl", "health", "open_events",   # collector/bpf/logwrites.c
        "lost0", "lost1", "lost_other")
# the fentry path (collector/bpf/logwrites.c, SW_FENTRY): where the write syscalls meet (write and
# pwrite64 in vfs_write; writev, pwritev, pwritev2 in vfs_writev) and where every open
# does; all three must be in BTF (vfs_writev is static: a kernel may inline it away)
FENTRY_FUNCS = ("vfs_write", "vfs_writev", "do_filp_open")

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
        self.shared = {}            # syscall -> the syscall whose program it runs

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
        self.shared, share = shared_programs(tp)
        tp |= share
        dgram, self.channels = dgram_macros(btf, False)
        if dgram and not all(self.available.get(sc) for sc in SEND_SYSCALLS):
            dgram, self.channels = {}, ("syslog and journald-native channels off: no "
                                        "syscalls:sys_enter_sendto/sendmsg tracepoints")
        macros = macros | tp | dgram | path_macros(btf)
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
        writes = [{"kind": "tracepoint", "tp": f"syscalls:sys_enter_{sc}",
                   "fn": f"enter_{self.shared.get(sc, sc)}"}
                  for sc in WRITE_SYSCALLS if self.available.get(sc)]
        steps = [{"kind": "raw", "tp": "sys_enter", "fn": "raw_sys_enter", "else": writes}] \
            if self.uses_raw else writes
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
            out += [fd_walk_check(host.btf), channels_check(host.btf, host.fentry_refused)]
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
                               cstr(ev.comm), event_path(ev.path_form, path_bytes(ev))))

    def set_verdict(self, dev, gen, ino, is_log):
        a = abi()
        self.maps["verdicts"].update(a.sw_inode(dev, gen, ino), ctypes.c_uint8(
            a.SW_VERDICT_LOG if is_log else a.SW_VERDICT_NOT_LOG))

    def forget_pending(self, dev, gen, ino):
        """Take back the kernel's pending mark (SW_VERDICT_PENDING) of an inode userspace
        could not judge: its next first write in an interval sends its path again."""
        self.maps["verdicts"].delete(abi().sw_inode(dev, gen, ino))

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
