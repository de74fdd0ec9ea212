"""The TCP reset probe: loads collector/bpf/resets.c for this kernel, drains counts, delivers events.

Everything kernel-specific is found at load time: struct offsets from BTF, tracepoint
field offsets from the live format files (tcp_send_reset has a sockaddr layout with
`state` and `reason` on 6.10+, a family/saddr/saddr_v6 layout before), the names of
`enum sk_rst_reason` from BTF (absent before 6.10), and the kernel's HZ (idle time is
computed from jiffies stamps in struct tcp_sock).
"""
import ctypes
import gzip
import os
import platform
import re
import socket
import time
from dataclasses import dataclass
from typing import NamedTuple

from collector.errors import ProbeUnavailable
from collector.probes import fdwalk, fentry, kernel, loader
from collector.probes.abi import BPF_DIR, TCP_STATES, abi
from collector.probes.base import Probe
from collector.probes.btf import BTF, BTFError
from collector.probes.checks import Check
from collector.probes.libbpf import BatchDrain
from collector.probes.maps import cstr

# (macro, struct, member path): the kernel struct fields collector/bpf/resets.c reads: the shared fd
# walk's (collector/bpf/fdwalk.h), then the socket's
BTF_FIELDS = fdwalk.FIELDS + (
    ("SOCK_STATE", "sock_common", "skc_state"),
    ("SOCK_PROTOCOL", "sock", "sk_protocol"),
    ("SOCK_TYPE", "sock", "sk_type"),
    ("TCP_LSNDTIME", "tcp_sock", "lsndtime"),
    ("TCP_LRCVTIME", "inet_connection_sock", "icsk_ack.lrcvtime"),
)

# syscalls whose fd argument (enter) names a socket the caller uses: refresh its owner
IO_SYSCALLS = ("sendto", "sendmsg", "recvfrom", "recvmsg")
ACCEPT_SYSCALLS = ("accept", "accept4")
LOAD_MAPS = ("loads0", "loads1")          # per-process TCP load, same epoch as rcounts*
MAPS = ("rcounts0", "rcounts1", "rctl", "rsent", "rhealth", "reset_events") + LOAD_MAPS
# the fentry path's process-context hooks (collector/bpf/resets.c, SW_FENTRY), in place of the
# syscall tracepoints above: all must be in BTF
FENTRY_FUNCS = ("inet_csk_accept", "tcp_sendmsg", "tcp_recvmsg")
FENTRY_FIELDS = (("TASK_FLAGS", "task_struct", "flags"),)
# where the bytes of TCP sends are counted (collector/bpf/resets.c, "Load"): None when nowhere
TCP_BYTES_FENTRY = "fexit tcp_sendmsg"
TCP_BYTES_TRACEPOINT = "sock:sock_send_length"

_A = abi()
DIRECTIONS = {_A.SW_RST_SENT: "sent", _A.SW_RST_RECEIVED: "received"}
KINDS = {0: None, **_A.enum("SW_RST_KIND_")}
OWNER_SOURCES = {**_A.enum("SW_OWNER_"), _A.SW_OWNER_NONE: None}
NO_SOCKET_SERVICE = "kernel (no socket)"
UNKNOWN_OWNER_SERVICE = "unknown (socket predates probe)"


def state_name(n):
    return TCP_STATES.get(n) if n else None


@dataclass(frozen=True)
class ResetCount:
    """Resets of one owner and classification during one interval (exact kernel counts)."""
    tgid: int               # 0: owner unknown (see lport for no-socket resets)
    direction: str          # "sent" / "received"
    kind: str | None        # "abort", "reply", "no_socket"; None for received
    state: str | None       # TCP state when it happened
    reason: str | None      # kernel reason (6.10+), lower case without the prefix
    lport: int              # only when tgid is 0
    family: int             # only when tgid is 0
    count: int
    idle_unknown: int
    idle_hist: tuple        # SW_IDLE_BUCKETS counts
    cgroup_id: int
    comm: str


@dataclass(frozen=True)
class LoadCount:
    """One process's TCP load during one interval (exact kernel counts)."""
    tgid: int
    accepted: int           # connections it accept()ed
    connected: int          # its connect()s that reached ESTABLISHED
    tcp_bytes: int          # bytes its TCP sends returned (0 when tcp_bytes_hook is None)
    cgroup_id: int
    comm: str


class ResetDrain(NamedTuple):
    """What one collect() drained: the interval's reset counts and, from the same epoch,
    its per-process TCP load."""
    counts: list            # [ResetCount]
    loads: list             # [LoadCount]


def sock_length_macros(send_fmt, recv_fmt):
    """sock:sock_send_length and sock_recv_length field offsets (both came in 6.4), or {}
    when the kernel lacks either."""
    want = {"sk", "protocol", "ret"}
    if not send_fmt or not recv_fmt or not want <= set(send_fmt) or not want <= set(recv_fmt):
        return {}
    return {"HAVE_SEND_LENGTH": 1, "SL_SK_OFF": send_fmt["sk"].offset,
            "SL_PROTO_OFF": send_fmt["protocol"].offset, "SL_RET_OFF": send_fmt["ret"].offset,
            "RL_SK_OFF": recv_fmt["sk"].offset, "RL_PROTO_OFF": recv_fmt["protocol"].offset}


@dataclass(frozen=True)
class ResetEvent:
    ts_ns: int
    skaddr: int
    tgid: int
    comm: str
    cgroup_id: int
    direction: str
    kind: str | None
    state: str | None
    reason: str | None
    family: int
    laddr: str
    lport: int
    raddr: str
    rport: int
    idle_ms: int | None
    owner_source: str | None


def kernel_hz(release=None, root="/"):
    """The kernel's CONFIG_HZ: from its config when published, else measured."""
    release = release or platform.release()
    for path, opener in ((os.path.join(root, "proc/config.gz"), gzip.open),
                         (os.path.join(root, f"boot/config-{release}"), open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except OSError:
            continue
    return _measure_hz(os.path.join(root, "proc/timer_list"))


def _measure_hz(timer_list):
    def sample():
        with open(timer_list) as f:
            text = f.read()
        m = re.search(r"^jiffies: (\d+)", text, re.M)
        if not m:
            raise ProbeUnavailable("resets probe: cannot find the kernel's HZ "
                                   "(no /proc/config.gz, /boot/config-*, /proc/timer_list)")
        return int(m.group(1)), time.monotonic()
    try:
        j0, t0 = sample()
        time.sleep(0.2)
        j1, t1 = sample()
    except OSError as e:
        raise ProbeUnavailable(f"resets probe: cannot find the kernel's HZ: {e}") from e
    measured = (j1 - j0) / (t1 - t0)
    return min((100, 250, 300, 1000), key=lambda hz: abs(hz - measured))


def btf_macros(btf):
    macros = fdwalk.btf_macros(btf, BTF_FIELDS, "resets probe")
    for m, want in (("SOCK_PROTOCOL", 2), ("SOCK_TYPE", 2), ("SOCK_STATE", 1),
                    ("TCP_LSNDTIME", 4), ("TCP_LRCVTIME", 4)):
        if macros[f"SZ_{m}"] != want:
            raise ProbeUnavailable(f"resets probe: {m.lower()} has size {macros[f'SZ_{m}']}, "
                                   f"expected {want}")
    lo = min(macros["OFF_SOCK_PROTOCOL"], macros["OFF_SOCK_TYPE"])
    if max(macros["OFF_SOCK_PROTOCOL"], macros["OFF_SOCK_TYPE"]) == lo + 2 and lo % 2 == 0:
        macros["SW_SOCK_PT_LO"] = lo          # adjacent: one read for both
    return macros


def reason_names(btf):
    """{value: name} of enum sk_rst_reason, or {} when this kernel has none (< 6.10)."""
    try:
        enum = btf.enum("sk_rst_reason")
    except BTFError:
        return {}
    return {v: k.removeprefix("SK_RST_REASON_").lower() for k, v in enum.items()}


def _family_layout(prefix, fmt):
    m = {f"{prefix}_FAMILY_OFF": fmt["family"].offset, f"{prefix}_SPORT_OFF": fmt["sport"].offset,
         f"{prefix}_DPORT_OFF": fmt["dport"].offset, f"{prefix}_SADDR_OFF": fmt["saddr"].offset,
         f"{prefix}_DADDR_OFF": fmt["daddr"].offset,
         f"{prefix}_SADDR6_OFF": fmt["saddr_v6"].offset,
         f"{prefix}_DADDR6_OFF": fmt["daddr_v6"].offset}
    return m


def tracepoint_layout(send_fmt, recv_fmt, state_fmt, destroy_fmt=None):
    """Macros describing the live tracepoint formats (pure: formats in, macros out).

    Raises ProbeUnavailable when a format is one this probe does not know.
    """
    if send_fmt is None or recv_fmt is None:
        raise ProbeUnavailable("resets probe: tracepoints tcp:tcp_send_reset / "
                               "tcp:tcp_receive_reset are missing (kernel < 4.15?)")
    if state_fmt is None:
        raise ProbeUnavailable("resets probe: tracepoint sock:inet_sock_set_state is missing "
                               "(kernel < 4.16?); socket owners cannot be recorded")
    m = {}
    try:
        m["SEND_SKADDR_OFF"] = send_fmt["skaddr"].offset
        m["SEND_SKBADDR_OFF"] = send_fmt["skbaddr"].offset
        if "saddr" in send_fmt and send_fmt["saddr"].size >= 28 and "family" not in send_fmt:
            m["SEND_SOCKADDR"] = 1
            m["SEND_SADDR_OFF"] = send_fmt["saddr"].offset
            m["SEND_DADDR_OFF"] = send_fmt["daddr"].offset
        else:
            m.update(_family_layout("SEND", send_fmt))
        if "state" in send_fmt:
            m["SEND_STATE_OFF"] = send_fmt["state"].offset
        if "reason" in send_fmt:
            m["SEND_REASON_OFF"] = send_fmt["reason"].offset
        m["RECV_SKADDR_OFF"] = recv_fmt["skaddr"].offset
        if "family" in recv_fmt:
            m.update(_family_layout("RECV", recv_fmt))
        else:
            raise KeyError("family")
        for macro, field in (("SS_SKADDR_OFF", "skaddr"), ("SS_OLD_OFF", "oldstate"),
                             ("SS_NEW_OFF", "newstate"), ("SS_PROTO_OFF", "protocol"),
                             ("SS_SPORT_OFF", "sport")):
            m[macro] = state_fmt[field].offset
        if destroy_fmt is not None and "skaddr" in destroy_fmt:
            m["HAVE_DESTROY"] = 1
            m["DESTROY_SKADDR_OFF"] = destroy_fmt["skaddr"].offset
    except KeyError as e:
        raise ProbeUnavailable(f"resets probe: unknown tracepoint format (no field {e}); "
                               "run `surgewatch doctor` and report the kernel version") from e
    return m


def syscall_macros(root=None):
    enter = kernel.tracepoint_format("syscalls", "sys_enter_sendto", root)
    exit_ = kernel.tracepoint_format("syscalls", "sys_exit_accept4", root)
    if enter is None or exit_ is None:
        raise ProbeUnavailable("resets probe: syscall tracepoints are missing; "
                               "the kernel needs CONFIG_FTRACE_SYSCALLS")
    macros = {"TP_FD_OFF": enter["fd"].offset, "TP_RET_OFF": exit_["ret"].offset}
    available = {}
    for sc in IO_SYSCALLS:
        f = kernel.tracepoint_format("syscalls", f"sys_enter_{sc}", root)
        available[sc] = f is not None and f["fd"].offset == macros["TP_FD_OFF"]
    for sc in ACCEPT_SYSCALLS:
        f = kernel.tracepoint_format("syscalls", f"sys_exit_{sc}", root)
        available[sc] = f is not None and f["ret"].offset == macros["TP_RET_OFF"]
    return macros, available


class ResetProbe(Probe):
    name, label = "resets", "resets probe"
    ring_map, count_maps = "reset_events", ("rcounts0", "rcounts1")
    epoch = ("rctl", abi().SW_RCTL_EPOCH)
    health_map, max_health = "rhealth", "SW_RHEALTH_MAX"
    health_fields = {"counts_full": "SW_RHEALTH_COUNTS_FULL",
                     "events_lost": "SW_RHEALTH_EVENTS_LOST",
                     "owners_full": "SW_RHEALTH_OWNERS_FULL",
                     "no_owner": "SW_RHEALTH_NO_OWNER",
                     "events_over_budget": "SW_RHEALTH_EVENTS_OVER_BUDGET",
                     "loads_full": "SW_RHEALTH_LOADS_FULL"}
    fentry_funcs = FENTRY_FUNCS

    def __init__(self, max_owners=65536, max_keys=4096, ringbuf_pages=16, on_event=None,
                 event_budget=1000, hook="auto", max_loads=8192):
        """event_budget: reset events (for `reset` records and peers) sent to userspace per
        interval; every reset is counted in the kernel whatever the budget. hook: "auto"
        (fentry where the kernel allows it), "fentry" (insist) or "tracepoints" (syscall
        tracepoints for accept and send/recv), from probes.write_hook."""
        fentry.check_hook(hook, "resets probe", fentry.SOCKET_HOOKS)
        self.hook = hook
        self.max_owners, self.max_keys, self.ringbuf_pages = max_owners, max_keys, ringbuf_pages
        self.max_loads = max_loads
        self.tcp_bytes_hook, self.tcp_bytes_reason = None, None
        self.event_budget = event_budget
        self.on_event = on_event or (lambda ev: None)
        super().__init__()
        self.available = {}
        self.reasons = {}
        self.has_reason = False
        self.traces_no_socket = False
        self.hz = None

    @classmethod
    def from_config(cls, probes):
        """The probe as the config's ProbesConfig sets it: the write hook decides its
        process-context hooks too (fentry.socket_hook)."""
        return cls(max_owners=probes.max_owners, max_loads=probes.max_loads,
                   hook=fentry.socket_hook(probes.write_hook))

    def cflags(self, hook=None):
        root = kernel.tracefs_root()
        tp = lambda c, e: kernel.tracepoint_format(c, e, root)  # noqa: E731
        macros = tracepoint_layout(tp("tcp", "tcp_send_reset"), tp("tcp", "tcp_receive_reset"),
                                   tp("sock", "inet_sock_set_state"),
                                   tp("tcp", "tcp_destroy_sock"))
        self.has_reason = "SEND_REASON_OFF" in macros
        # before 6.10 tcp_send_reset needs a socket: kernel replies with none are not traced
        self.traces_no_socket = "SEND_SOCKADDR" in macros
        btf = BTF.load()
        macros.update(btf_macros(btf))
        use, self.hook_path_reason = fentry.choose(hook or self.hook, btf, FENTRY_FUNCS,
                                                   "resets probe")
        if use:
            macros.update(fdwalk.btf_macros(btf, FENTRY_FIELDS, "resets probe (fentry)"),
                          SW_FENTRY=1, ACCEPT_NARGS=btf.func_params("inet_csk_accept"),
                          SENDMSG_NARGS=btf.func_params("tcp_sendmsg"))
            try:                  # gone in 6.5 (splice sends pages through tcp_sendmsg)
                macros["SENDPAGE_NARGS"] = btf.func_params("tcp_sendpage")
            except BTFError:
                pass
            self.available, self.fd_walk, self.fd_walk_state = {}, None, {}
            self.tcp_bytes_hook, self.tcp_bytes_reason = TCP_BYTES_FENTRY, None
        else:
            sc, self.available = syscall_macros(root)
            macros.update(sc)
            self.fd_walk, walk, self.fd_walk_state = fdwalk.choose(
                macros, macros["TP_FD_OFF"], "resets probe")
            macros.update(walk)
            sl = sock_length_macros(tp("sock", "sock_send_length"), tp("sock", "sock_recv_length"))
            if sl:
                macros.update(sl, **fdwalk.btf_macros(btf, FENTRY_FIELDS, "resets probe"))
                self.tcp_bytes_hook, self.tcp_bytes_reason = TCP_BYTES_TRACEPOINT, None
            else:
                self.tcp_bytes_hook = None
                self.tcp_bytes_reason = ("no sock:sock_send_length tracepoint (Linux 6.4+) "
                                         "and no fentry: TCP bytes are not counted")
        self.hook_path = "fentry" if use else "tracepoints"
        self.reasons = reason_names(btf) if self.has_reason else {}
        self.hz = kernel_hz()
        macros.update(SK_HZ=self.hz, SW_MAX_OWNERS=self.max_owners, SW_MAX_RKEYS=self.max_keys,
                      SW_MAX_LOADS=self.max_loads, SW_RINGBUF_PAGES=self.ringbuf_pages)
        self.macros = macros
        return [f"-I{BPF_DIR}"] + [f"-D{k}={v}" for k, v in sorted(macros.items())]

    def plan(self, hook=None):
        """What the loader child compiles and attaches (collector/probes/loader.py)."""
        flags = self.cflags(hook)
        tps = [("sock:inet_sock_set_state", "sw_set_state")]
        if "HAVE_DESTROY" in self.macros:
            tps.append(("tcp:tcp_destroy_sock", "sw_destroy"))
        tps += [(f"syscalls:sys_exit_{sc}", "sw_exit_accept")
                for sc in ACCEPT_SYSCALLS if self.available.get(sc)]
        if "HAVE_SEND_LENGTH" in self.macros:      # the socket at hand: no syscall hook
            tps += [("sock:sock_send_length", "sw_send_length"),
                    ("sock:sock_recv_length", "sw_recv_length")]
        else:
            tps += [(f"syscalls:sys_enter_{sc}", "sw_enter_io")
                    for sc in IO_SYSCALLS if self.available.get(sc)]
        tps += [("tcp:tcp_send_reset", "sw_send_reset"),
                ("tcp:tcp_receive_reset", "sw_receive_reset")]
        steps = [{"kind": "tracepoint", "tp": tp, "fn": fn} for tp, fn in tps]
        fallback = None
        if self.hook_path == "fentry":
            steps = [{"kind": "fexit", "fn": "kretfunc__inet_csk_accept"},
                     {"kind": "fexit", "fn": "kretfunc__tcp_sendmsg"},
                     {"kind": "fentry", "fn": "kfunc__tcp_recvmsg"}] + \
                ([{"kind": "fexit", "fn": "kretfunc__tcp_sendpage"}]
                 if "SENDPAGE_NARGS" in self.macros else []) + steps
            fallback = self._fallback_plan if self.hook == "auto" else None
        return loader.Plan(str(BPF_DIR / "resets.c"), flags, steps, list(MAPS), fallback)

    def _fallback_plan(self, why):
        """The fentry programs passed the feature probe but did not load: the tracepoints."""
        plan = self.plan("tracepoints")
        self.hook_path_reason = f"fentry failed to load: {why}"
        return plan

    def load_kwargs(self):
        return {"max_owners": self.max_owners, "max_keys": self.max_keys,
                "ringbuf_pages": self.ringbuf_pages, "event_budget": self.event_budget,
                "hook": self.hook, "max_loads": self.max_loads}

    def plan_state(self):
        """What plan() found about the kernel, for the daemon's copy of the probe."""
        return {"available": self.available, "has_reason": self.has_reason,
                "hook_path": self.hook_path, "hook_path_reason": self.hook_path_reason,
                "traces_no_socket": self.traces_no_socket, "hz": self.hz,
                "reasons": sorted(self.reasons.items()), "macros": self.macros,
                "fd_walk": self.fd_walk, "fd_walk_state": self.fd_walk_state,
                "tcp_bytes_hook": self.tcp_bytes_hook, "tcp_bytes_reason": self.tcp_bytes_reason}

    def adopt(self, handover):
        super().adopt(handover)
        self._load_drains = [BatchDrain(self.maps[m]) for m in LOAD_MAPS]
        self.set_event_budget(self.event_budget)

    def _meta(self):
        return {"tcp_bytes": self.tcp_bytes_hook, "tcp_bytes_off": self.tcp_bytes_reason}

    @classmethod
    def checks(cls, host):
        """As root, where TCP bytes are counted; whether this kernel's reset tracepoints
        and socket fields are ones it knows (information only: without it TCP resets are
        not watched, log writes are)."""
        if host.btf is None or not host.tracefs_root:
            return []
        out = [_load_check(host.fentry_refused)] if host.privileged else []
        try:
            tp = lambda c, e: kernel.tracepoint_format(c, e, host.tracefs_root)  # noqa: E731
            layout = tracepoint_layout(tp("tcp", "tcp_send_reset"), tp("tcp", "tcp_receive_reset"),
                                       tp("sock", "inet_sock_set_state"),
                                       tp("tcp", "tcp_destroy_sock"))
            btf_macros(host.btf)
            detail = ("reasons from BTF" if "SEND_REASON_OFF" in layout else
                      "no reset reasons; socketless resets not traced (kernel < 6.10)")
            out.append(Check("resets probe", True, f"layout known, {detail}", blocking=False))
        except ProbeUnavailable as e:
            out.append(Check("resets probe", False, str(e),
                             "TCP resets are not watched on this kernel", blocking=False))
        return out

    def _adopt_state(self, st):
        self.available, self.hz, self.macros = st["available"], st["hz"], st["macros"]
        self.has_reason, self.traces_no_socket = st["has_reason"], st["traces_no_socket"]
        self.reasons = {int(k): v for k, v in st["reasons"]}
        self.fd_walk, self.fd_walk_state = st["fd_walk"], st["fd_walk_state"]
        self.hook_path, self.hook_path_reason = st["hook_path"], st["hook_path_reason"]
        self.tcp_bytes_hook = st.get("tcp_bytes_hook")
        self.tcp_bytes_reason = st.get("tcp_bytes_reason")
        self._event_t = abi().sw_reset_event
        self._lkey_t, self._lval_t = abi().sw_load_key, abi().sw_load_val
        self._key_t, self._val_t = abi().sw_reset_key, abi().sw_reset_val

    def _reason(self, n):
        if not self.has_reason or n == abi().SW_RST_REASON_NONE:
            return None
        return self.reasons.get(n, str(n))

    def _on_event(self, data, _size):
        ev = ctypes.cast(data, ctypes.POINTER(self._event_t)).contents
        self.on_event(self.decode_event(ev))

    def decode_event(self, ev):
        return ResetEvent(
            ts_ns=ev.ts_ns, skaddr=ev.skaddr, tgid=ev.tgid, comm=cstr(ev.comm),
            cgroup_id=ev.cgroup_id, direction=DIRECTIONS.get(ev.dir, str(ev.dir)),
            kind=KINDS.get(ev.kind), state=state_name(ev.state), reason=self._reason(ev.reason),
            family=ev.family, laddr=format_addr(ev.family, bytes(ev.laddr)), lport=ev.lport,
            raddr=format_addr(ev.family, bytes(ev.raddr)), rport=ev.rport,
            idle_ms=ev.idle_ms if ev.idle_valid else None,
            owner_source=OWNER_SOURCES.get(ev.source))

    def set_event_budget(self, n):
        self.event_budget = n
        self.maps["rctl"].update(ctypes.c_uint32(abi().SW_RCTL_EVENT_BUDGET),
                                 ctypes.c_uint32(min(int(n), 0xFFFFFFFF)))

    def _collect(self, idle):
        self.maps["rsent"].update(ctypes.c_uint32(idle), ctypes.c_uint64(0))  # budget refills
        counts = []
        for k, v in self._drained(idle):
            counts.append(ResetCount(
                tgid=k.tgid, direction=DIRECTIONS.get(k.dir, str(k.dir)), kind=KINDS.get(k.kind),
                state=state_name(k.state), reason=self._reason(k.reason), lport=k.lport,
                family=k.family, count=v.count, idle_unknown=v.idle_unknown,
                idle_hist=tuple(v.idle_hist), cgroup_id=v.cgroup_id, comm=cstr(v.comm)))
        loads = [LoadCount(tgid=k.tgid, accepted=v.accepted, connected=v.connected,
                           tcp_bytes=v.tcp_bytes, cgroup_id=v.cgroup_id, comm=cstr(v.comm))
                 for k, v in self._drained(idle, self._load_drains, self._lkey_t, self._lval_t)]
        return ResetDrain(counts, loads)

    def _drained(self, idle, drains=None, key_t=None, val_t=None):
        """(key, value) structs of a retired map (default the reset counts'), emptied."""
        key_t, val_t = key_t or self._key_t, val_t or self._val_t
        keys, vals = self._drained_bytes(idle, drains)
        ks, vs = ctypes.sizeof(key_t), ctypes.sizeof(val_t)
        return [(key_t.from_buffer_copy(keys, i * ks),
                 val_t.from_buffer_copy(vals, i * vs)) for i in range(len(keys) // ks)]


def _load_check(fentry_refused):
    if fentry_refused is None:
        load = f"{TCP_BYTES_FENTRY} counts TCP bytes sent"
    elif kernel.tracepoint_exists("sock", "sock_send_length"):
        load = f"{TCP_BYTES_TRACEPOINT} counts TCP bytes sent"
    else:
        load = None
    return Check("load", load is not None,
                 f"connections accepted and connected; {load} (docs/probe-resets.md)"
                 if load else "connections accepted and connected; TCP bytes not counted "
                 "(needs fentry or Linux 6.4's sock:sock_send_length): per-KiB ratios "
                 "unavailable", blocking=False)


def format_addr(family, raw):
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return ""
