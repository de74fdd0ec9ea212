"""What this kernel offers the resets probe, as cflags: struct offsets from BTF, the live
tracepoint formats (tcp_send_reset has a sockaddr layout with `state` and `reason` on
6.10+, a family/saddr/saddr_v6 layout before), which syscall tracepoints exist, and the
names of `enum sk_rst_reason` (absent before 6.10). Pure where it can be: formats in,
macros out."""
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
)

# syscalls whose fd argument (enter) names a socket the caller uses: refresh its owner
IO_SYSCALLS = ("sendto", "sendmsg", "recvfrom", "recvmsg")
ACCEPT_SYSCALLS = ("accept", "accept4")
FENTRY_FIELDS = (("TASK_FLAGS", "task_struct", "flags"),)


def sock_length_macros(send_fmt, recv_fmt):
    """sock:sock_send_length and sock_recv_length field offsets (both came in 6.4), or {}
    when the kernel lacks either."""
    want = {"sk", "protocol", "ret"}
    if not send_fmt or not recv_fmt or not want <= set(send_fmt) or not want <= set(recv_fmt):
        return {}
    return {"HAVE_SEND_LENGTH": 1, "SL_SK_OFF": send_fmt["sk"].offset,
            "SL_PROTO_OFF": send_fmt["protocol"].offset, "SL_RET_OFF": send_fmt["ret"].offset,
            "RL_SK_OFF": recv_fmt["sk"].offset, "RL_PROTO_OFF": recv_fmt["protocol"].offset}


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
