"""What the resets probe drains and sends, decoded: reset counts, per-process TCP load and
reset events, from the kernel's structs (collector/bpf/common.h) into typed values."""
import ctypes
import socket
from dataclasses import dataclass
from typing import NamedTuple

from collector.probes.abi import TCP_STATES, abi
from collector.probes.maps import cstr

_A = abi()
DIRECTIONS = {_A.SW_RST_SENT: "sent", _A.SW_RST_RECEIVED: "received"}
KINDS = {0: None, **_A.enum("SW_RST_KIND_")}
OWNER_SOURCES = {**_A.enum("SW_OWNER_"), _A.SW_OWNER_NONE: None}


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


def decode_count(k, v, reason):
    """A ResetCount of one sw_reset_key/sw_reset_val; reason(n): the kernel reason's name."""
    return ResetCount(
        tgid=k.tgid, direction=DIRECTIONS.get(k.dir, str(k.dir)), kind=KINDS.get(k.kind),
        state=state_name(k.state), reason=reason(k.reason), lport=k.lport, family=k.family,
        count=v.count, idle_unknown=v.idle_unknown, idle_hist=tuple(v.idle_hist),
        cgroup_id=v.cgroup_id, comm=cstr(v.comm))


def decode_load(k, v):
    """A LoadCount of one sw_load_key/sw_load_val."""
    return LoadCount(tgid=k.tgid, accepted=v.accepted, connected=v.connected,
                     tcp_bytes=v.tcp_bytes, cgroup_id=v.cgroup_id, comm=cstr(v.comm))


def decode_event(ev, reason):
    """A ResetEvent of one sw_reset_event."""
    return ResetEvent(
        ts_ns=ev.ts_ns, skaddr=ev.skaddr, tgid=ev.tgid, comm=cstr(ev.comm),
        cgroup_id=ev.cgroup_id, direction=DIRECTIONS.get(ev.dir, str(ev.dir)),
        kind=KINDS.get(ev.kind), state=state_name(ev.state), reason=reason(ev.reason),
        family=ev.family, laddr=format_addr(ev.family, bytes(ev.laddr)), lport=ev.lport,
        raddr=format_addr(ev.family, bytes(ev.raddr)), rport=ev.rport,
        idle_ms=ev.idle_ms if ev.idle_valid else None,
        owner_source=OWNER_SOURCES.get(ev.source))


def drained_structs(keys, vals, key_t, val_t):
    """(key, value) structs of one drain's key and value bytes, back to back."""
    ks, vs = ctypes.sizeof(key_t), ctypes.sizeof(val_t)
    return [(key_t.from_buffer_copy(keys, i * ks), val_t.from_buffer_copy(vals, i * vs))
            for i in range(len(keys) // ks)]


def format_addr(family, raw):
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return ""
