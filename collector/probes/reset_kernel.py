"""What this kernel offers the resets probe, as cflags: struct offsets from BTF, which of its
tracepoints exist (tracefs) and what their raw arguments are (BTF: tcp_send_reset passes a
reason from 6.10), which syscall tracepoints exist, and the names of `enum sk_rst_reason`
(absent before 6.10). Pure where it can be: formats and BTF in, macros out."""
from collector.errors import ProbeUnavailable
from collector.probes import fdwalk, kernel
from collector.probes.btf import BTFError

# (macro, struct, member path): the kernel struct fields collector/bpf/resets.c reads: the shared fd
# walk's (collector/bpf/fdwalk.h), then the socket's
BTF_FIELDS = fdwalk.FIELDS + (
    ("SOCK_STATE", "sock_common", "skc_state"),
    ("SOCK_PROTOCOL", "sock", "sk_protocol"),
    ("SOCK_TYPE", "sock", "sk_type"),
    ("TCP_LSNDTIME", "tcp_sock", "lsndtime"),
    ("TCP_LRCVTIME", "inet_connection_sock", "icsk_ack.lrcvtime"),
    # a reset's addresses: from its socket's common part, or the packet it answers
    ("SKC_DADDR", "sock_common", "skc_daddr"),
    ("SKC_RCV_SADDR", "sock_common", "skc_rcv_saddr"),
    ("SKC_DPORT", "sock_common", "skc_dport"),
    ("SKC_NUM", "sock_common", "skc_num"),
    ("SKC_FAMILY", "sock_common", "skc_family"),
    ("INET_SPORT", "inet_sock", "inet_sport"),
    ("SKC_V6_DADDR", "sock_common", "skc_v6_daddr"),
    ("SKC_V6_RCV_SADDR", "sock_common", "skc_v6_rcv_saddr"),
    ("SKB_HEAD", "sk_buff", "head"),
    ("SKB_DATA", "sk_buff", "data"),
    ("SKB_NETWORK_HEADER", "sk_buff", "network_header"),
)
# the sock_common fields read in one probe read (collector/bpf/tcpsock.h, addrs_sock)
SKC_CHUNK = ("SKC_DADDR", "SKC_RCV_SADDR", "SKC_DPORT", "SKC_NUM", "SKC_FAMILY", "SOCK_STATE")
SKC_CHUNK_MAX = 32

# The tracepoints the probe attaches as raw tracepoints (no perf record is built, and a
# detach waits for no RCU grace period), with the numbers of arguments (TP_PROTO) it knows.
RAW_ARGS = {"inet_sock_set_state": (3,), "tcp_destroy_sock": (1,), "tcp_send_reset": (2, 3),
            "tcp_receive_reset": (1,), "sock_send_length": (3,), "sock_recv_length": (3,)}

# syscalls whose fd argument (enter) names a socket the caller uses: refresh its owner
IO_SYSCALLS = ("sendto", "sendmsg", "recvfrom", "recvmsg")
ACCEPT_SYSCALLS = ("accept", "accept4")
FENTRY_FIELDS = (("TASK_FLAGS", "task_struct", "flags"),)


def has_send_length(send_fmt, recv_fmt):
    """sock:sock_send_length and sock_recv_length (both came in 6.4)."""
    return send_fmt is not None and recv_fmt is not None


def raw_macros(btf, names):
    """Check the arguments each raw tracepoint passes (its `btf_trace_<name>` prototype in
    BTF) against the ones the probe reads; SEND_HAS_REASON where tcp_send_reset passes one."""
    m = {}
    for name in names:
        try:
            n = btf.raw_tracepoint_params(name)
        except BTFError as e:
            raise ProbeUnavailable(f"resets probe: {e}; run `surgewatch doctor` and report "
                                   "the kernel version") from e
        if n not in RAW_ARGS[name]:
            raise ProbeUnavailable(f"resets probe: raw tracepoint {name} passes {n} arguments, "
                                   f"this probe knows {' or '.join(map(str, RAW_ARGS[name]))}; "
                                   "run `surgewatch doctor` and report the kernel version")
        if name == "tcp_send_reset" and n == 3:
            m["SEND_HAS_REASON"] = 1
    return m


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
    for m, want in (("SKC_DADDR", 4), ("SKC_RCV_SADDR", 4), ("SKC_DPORT", 2), ("SKC_NUM", 2),
                    ("SKC_FAMILY", 2), ("INET_SPORT", 2), ("SKC_V6_DADDR", 16), ("SKC_V6_RCV_SADDR", 16),
                    ("SKB_HEAD", 8), ("SKB_DATA", 8), ("SKB_NETWORK_HEADER", 2)):
        if macros[f"SZ_{m}"] != want:
            raise ProbeUnavailable(f"resets probe: {m.lower()} has size {macros[f'SZ_{m}']}, "
                                   f"expected {want}")
    lo = min(macros[f"OFF_{m}"] for m in SKC_CHUNK)
    hi = max(macros[f"OFF_{m}"] + macros[f"SZ_{m}"] for m in SKC_CHUNK)
    if hi - lo > SKC_CHUNK_MAX:
        raise ProbeUnavailable(f"resets probe: struct sock_common's addresses span {hi - lo} "
                               f"bytes (known layouts: <= {SKC_CHUNK_MAX}); run `surgewatch "
                               "doctor` and report the kernel version")
    macros["SW_SKC_LO"], macros["SW_SKC_LEN"] = lo, (hi - lo + 7) // 8 * 8
    return macros


def reason_names(btf):
    """{value: name} of enum sk_rst_reason, or {} when this kernel has none (< 6.10)."""
    try:
        enum = btf.enum("sk_rst_reason")
    except BTFError:
        return {}
    return {v: k.removeprefix("SK_RST_REASON_").lower() for k, v in enum.items()}


def reset_tracepoints(send_fmt, recv_fmt, state_fmt, destroy_fmt=None):
    """Which of the probe's tracepoints this kernel has (pure: tracefs formats in): macros
    (HAVE_DESTROY) and whether tcp_send_reset also fires for replies with no socket (the
    sockaddr record layout of 6.10+ came with them). The programs read the tracepoints'
    raw arguments, not these records.

    Raises ProbeUnavailable when one the probe needs is missing.
    """
    if send_fmt is None or recv_fmt is None:
        raise ProbeUnavailable("resets probe: tracepoints tcp:tcp_send_reset / "
                               "tcp:tcp_receive_reset are missing (kernel < 4.15?)")
    if state_fmt is None:
        raise ProbeUnavailable("resets probe: tracepoint sock:inet_sock_set_state is missing "
                               "(kernel < 4.16?); socket owners cannot be recorded")
    no_socket = ("saddr" in send_fmt and send_fmt["saddr"].size >= 28
                 and "family" not in send_fmt)
    return ({"HAVE_DESTROY": 1} if destroy_fmt is not None else {}), no_socket


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
