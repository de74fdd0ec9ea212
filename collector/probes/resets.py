"""The TCP reset probe: loads collector/bpf/resets.c for this kernel, drains counts and TCP
load, delivers events.

Everything kernel-specific is found at load time (collector/probes/reset_kernel.py: struct
offsets, which tracepoints exist and their raw arguments, syscalls, reason names; collector/probes/hz.py: the kernel's
HZ, as idle time is computed from jiffies stamps in struct tcp_sock); what it drains is
decoded in collector/probes/reset_counts.py.
"""
import ctypes

from collector.errors import ProbeUnavailable
from collector.probes import fdwalk, fentry, kernel, loader
from collector.probes.abi import BPF_DIR, abi
from collector.probes.base import Probe
from collector.probes.btf import BTF, BTFError
from collector.probes.checks import Check
from collector.probes.hz import kernel_hz
from collector.probes.libbpf import BatchDrain
from collector.probes.reset_counts import (ResetDrain, decode_count, decode_event, decode_load,
                                           drained_structs)
from collector.probes.reset_kernel import (ACCEPT_SYSCALLS, FENTRY_FIELDS, IO_SYSCALLS,
                                           btf_macros, has_send_length, raw_macros,
                                           reason_names, reset_tracepoints, syscall_macros)

LOAD_MAPS = ("loads0", "loads1")          # per-process TCP load, same epoch as rcounts*
MAPS = ("rcounts0", "rcounts1", "rctl", "rsent", "rhealth", "reset_events") + LOAD_MAPS
# the fentry path's process-context hooks (collector/bpf/resets.c, SW_FENTRY), in place of the
# syscall tracepoints (reset_kernel.IO_SYSCALLS, ACCEPT_SYSCALLS): all must be in BTF
FENTRY_FUNCS = ("inet_csk_accept", "tcp_sendmsg", "tcp_recvmsg")
# where the bytes of TCP sends are counted (collector/bpf/resets.c, "Load"): None when nowhere
TCP_BYTES_FENTRY = "fexit tcp_sendmsg"
TCP_BYTES_TRACEPOINT = "sock:sock_send_length"
# the socket-side hooks, raw tracepoints on either path: (tracepoint, program)
SOCKET_HOOKS = (("inet_sock_set_state", "sw_set_state"), ("tcp_destroy_sock", "sw_destroy"))
SEND_LENGTH_HOOKS = (("sock_send_length", "sw_send_length"), ("sock_recv_length", "sw_recv_length"))
RESET_HOOKS = (("tcp_send_reset", "sw_send_reset"), ("tcp_receive_reset", "sw_receive_reset"))


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
        return cls(max_owners=probes.max_owners, max_loads=probes.max_tcp_processes,
                   hook=fentry.socket_hook(probes.write_hook))

    def cflags(self, hook=None):
        root = kernel.tracefs_root()
        tp = lambda c, e: kernel.tracepoint_format(c, e, root)  # noqa: E731
        macros, self.traces_no_socket = reset_tracepoints(
            tp("tcp", "tcp_send_reset"), tp("tcp", "tcp_receive_reset"),
            tp("sock", "inet_sock_set_state"), tp("tcp", "tcp_destroy_sock"))
        btf = BTF.load()
        macros.update(btf_macros(btf))
        macros.update(raw_macros(btf, self._raw_names(macros)))
        self.has_reason = "SEND_HAS_REASON" in macros
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
            if has_send_length(tp("sock", "sock_send_length"), tp("sock", "sock_recv_length")):
                macros.update(raw_macros(btf, [n for n, _ in SEND_LENGTH_HOOKS]),
                              HAVE_SEND_LENGTH=1,
                              **fdwalk.btf_macros(btf, FENTRY_FIELDS, "resets probe"))
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
        raw = [h for h in SOCKET_HOOKS if h[0] in self._raw_names(self.macros)]
        tps = [(f"syscalls:sys_exit_{sc}", "sw_exit_accept")
               for sc in ACCEPT_SYSCALLS if self.available.get(sc)]
        if "HAVE_SEND_LENGTH" in self.macros:      # the socket at hand: no syscall hook
            raw += SEND_LENGTH_HOOKS
        else:
            tps += [(f"syscalls:sys_enter_{sc}", "sw_enter_io")
                    for sc in IO_SYSCALLS if self.available.get(sc)]
        raw += RESET_HOOKS
        steps = ([{"kind": "raw", "tp": tp, "fn": fn} for tp, fn in raw]
                 + [{"kind": "tracepoint", "tp": tp, "fn": fn} for tp, fn in tps])
        fallback = None
        if self.hook_path == "fentry":
            steps = [{"kind": "fexit", "fn": "kretfunc__inet_csk_accept"},
                     {"kind": "fexit", "fn": "kretfunc__tcp_sendmsg"},
                     {"kind": "fentry", "fn": "kfunc__tcp_recvmsg"}] + \
                ([{"kind": "fexit", "fn": "kretfunc__tcp_sendpage"}]
                 if "SENDPAGE_NARGS" in self.macros else []) + steps
            fallback = self._fallback_plan if self.hook == "auto" else None
        return loader.Plan(str(BPF_DIR / "resets.c"), flags, steps, list(MAPS), fallback)

    @staticmethod
    def _raw_names(macros):
        """The socket-side and reset tracepoints this kernel has (tcp_destroy_sock: 4.16+)."""
        return [n for n, _ in SOCKET_HOOKS + RESET_HOOKS
                if n != "tcp_destroy_sock" or "HAVE_DESTROY" in macros]

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
            hooks, no_socket = reset_tracepoints(
                tp("tcp", "tcp_send_reset"), tp("tcp", "tcp_receive_reset"),
                tp("sock", "inet_sock_set_state"), tp("tcp", "tcp_destroy_sock"))
            btf_macros(host.btf)
            layout = raw_macros(host.btf, cls._raw_names(hooks))
            detail = ("reasons from BTF" if "SEND_HAS_REASON" in layout else "no reset reasons")
            if not no_socket:
                detail += "; socketless resets not traced (kernel < 6.10)"
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
        return decode_event(ev, self._reason)

    def set_event_budget(self, n):
        self.event_budget = n
        self.maps["rctl"].update(ctypes.c_uint32(abi().SW_RCTL_EVENT_BUDGET),
                                 ctypes.c_uint32(min(int(n), 0xFFFFFFFF)))

    def _collect(self, idle):
        self.maps["rsent"].update(ctypes.c_uint32(idle), ctypes.c_uint64(0))  # budget refills
        counts = [decode_count(k, v, self._reason) for k, v in self._drained(idle)]
        loads = [decode_load(k, v)
                 for k, v in self._drained(idle, self._load_drains, self._lkey_t, self._lval_t)]
        return ResetDrain(counts, loads)

    def _drained(self, idle, drains=None, key_t=None, val_t=None):
        """(key, value) structs of a retired map (default the reset counts'), emptied."""
        return drained_structs(*self._drained_bytes(idle, drains), key_t or self._key_t,
                               val_t or self._val_t)


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
