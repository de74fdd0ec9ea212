"""Open TCP connections from sock_diag (pyroute2), with idle times and owning processes.

inet_diag dumps every TCP socket of this network namespace with its tcp_info, whose
tcpi_last_data_sent / tcpi_last_data_recv say (in ms) how long ago data last went out
or came in: the connection's idle time. The socket's inode ties it to the processes that
hold it (/proc/<pid>/fd/* -> "socket:[<inode>]").
sock_diag answers for one network namespace only; tcp_connections_all_namespaces() asks
each namespace that holds a process (entering it from a short-lived thread), so the
inventory also covers containers and other namespaces.

Used for the open-connection inventory ("which pooled connections will the balancer
kill next") and to name the local listener of a port when the kernel answered a segment
with a reset for which no socket existed.
"""
import ctypes
import os
import socket
import threading
from typing import NamedTuple

from collector.errors import EnvironmentProblem, HostLookupError
from collector.probes.abi import TCP_STATES

TCP_STATE_NAMES = TCP_STATES
SYNCHRONIZED = {"ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK", "CLOSING"}
ALL_STATES = 0xFFF
INET_DIAG_INFO = 2
DEFAULT_IDLE_THRESHOLD_S = 300.0


class TcpConn(NamedTuple):
    family: int
    state: str
    laddr: str
    lport: int
    raddr: str
    rport: int
    inode: int          # 0 for sockets no file refers to (time-wait, orphans)
    uid: int
    cookie: int
    idle_ms: int | None  # min(last data sent, last data received); None when not connected


class Owner(NamedTuple):
    pid: int
    comm: str


def conn_from_diag(msg, info):
    """A TcpConn from one inet_diag message (a mapping) and its tcp_info (mapping or None)."""
    state = TCP_STATE_NAMES.get(msg["idiag_state"], str(msg["idiag_state"]))
    idle = None
    if info is not None and state in SYNCHRONIZED:
        idle = min(int(info["tcpi_last_data_sent"]), int(info["tcpi_last_data_recv"]))
    return TcpConn(int(msg["idiag_family"]), state, str(msg["idiag_src"]), int(msg["idiag_sport"]),
                   str(msg["idiag_dst"]), int(msg["idiag_dport"]), int(msg["idiag_inode"]),
                   int(msg["idiag_uid"]), int(msg["idiag_cookie"]), idle)


def tcp_connections(families=(socket.AF_INET, socket.AF_INET6), states=ALL_STATES):
    """Every TCP socket of this network namespace, as TcpConn."""
    from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, DiagSocket
    from pyroute2.netlink.exceptions import NetlinkError

    out = []
    try:
        with DiagSocket() as diag:
            diag.bind()
            for family in families:
                for msg in diag.get_sock_stats(family=family, states=states,
                                               protocol=socket.IPPROTO_TCP,
                                               extensions=1 << (INET_DIAG_INFO - 1)):
                    if msg["header"]["type"] != SOCK_DIAG_BY_FAMILY:
                        raise EnvironmentProblem(
                            "the kernel answered the inet_diag dump with an error; "
                            "fix: modprobe inet_diag tcp_diag")
                    out.append(conn_from_diag(msg, msg.get_attr("INET_DIAG_INFO")))
    except (OSError, NetlinkError) as e:
        raise EnvironmentProblem(f"TCP socket diagnostics failed ({e}); "
                                 "fix: run as root, modprobe inet_diag tcp_diag") from e
    return out


CLONE_NEWNET = 0x40000000


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def tcp_connections_in(netns_path, dump=None):
    """tcp_connections() of the network namespace at netns_path (/proc/PID/ns/net, or
    /run/netns/NAME). A netlink socket belongs to the namespace of the thread that made
    it, so a short-lived thread enters the namespace, dumps and leaves; the caller's
    threads never change namespace."""
    dump = dump or tcp_connections
    result = {}

    def work():
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(netns_path, os.O_RDONLY)
            try:
                _setns(target)
                try:
                    result["conns"] = dump()
                finally:
                    _setns(own)
            finally:
                os.close(target)
        except BaseException as e:       # handed to the caller
            result["error"] = e
        finally:
            os.close(own)

    t = threading.Thread(target=work, name="sockdiag-netns")
    t.start()
    t.join()
    if "error" in result:
        e = result["error"]
        if isinstance(e, OSError):
            raise EnvironmentProblem(f"cannot enter network namespace {netns_path} ({e}); "
                                     "fix: run as root (CAP_SYS_ADMIN)") from e
        raise e
    return result["conns"]


def network_namespaces(procfs):
    """{netns inode: /proc/PID/ns/net of one process in it} for every network namespace a
    process of this host is in (the caller's own first)."""
    found = {}
    try:
        found[os.stat("/proc/self/ns/net").st_ino] = "/proc/self/ns/net"
    except OSError:
        pass
    for pid in procfs.pids():
        path = os.path.join(procfs.root, str(pid), "ns", "net")
        try:
            ino = os.stat(path).st_ino
        except OSError:              # gone, or hidden from us
            continue
        found.setdefault(ino, path)
    return found


def tcp_connections_all_namespaces(procfs, dump=None):
    """Every TCP socket of every network namespace that holds a process (sock_diag only
    sees the namespace it is asked from: a pooled connection of a containerised frontend
    lives in the container's namespace). A namespace that cannot be entered, or whose
    processes exit while we look, is skipped; the caller's own must answer."""
    dump = dump or tcp_connections
    namespaces = network_namespaces(procfs)
    own = os.stat("/proc/self/ns/net").st_ino
    out = list(dump())
    for ino, path in namespaces.items():
        if ino == own:
            continue
        try:
            out.extend(tcp_connections_in(path, dump))
        except EnvironmentProblem:
            continue
    return out


def socket_owners(procfs):
    """{socket inode: [Owner, ...]} from every process's fd table (processes that vanish
    or hide their fds while we read are skipped)."""
    owners = {}
    for pid in procfs.pids():
        try:
            fds = procfs.fds(pid)
        except HostLookupError:
            continue
        inodes = set()
        for target in fds.values():
            if target.startswith("socket:[") and target.endswith("]"):
                inodes.add(int(target[8:-1]))
        if not inodes:
            continue
        try:
            comm = procfs.comm(pid)
        except HostLookupError:
            continue
        for ino in inodes:
            owners.setdefault(ino, []).append(Owner(pid, comm))
    return owners


def listener_of_port(conns, port, owners):
    """Owner of the TCP listener on local `port` (lowest pid when shared), or None."""
    candidates = []
    for c in conns:
        if c.state == "LISTEN" and c.lport == port and c.inode:
            candidates.extend(owners.get(c.inode, ()))
    return min(candidates) if candidates else None


class ListenerLookup:
    """Cached port -> listener owner, refreshed at most once per `refresh()` call."""

    def __init__(self, procfs, dump=tcp_connections, owners_of=socket_owners):
        self.procfs, self.dump, self.owners_of = procfs, dump, owners_of
        self._conns = self._owners = None

    def refresh(self):
        self._conns = self._owners = None

    def owner(self, port):
        if self._conns is None:
            try:
                conns = [c for c in self.dump(states=1 << 10) if c.state == "LISTEN"]
            except EnvironmentProblem:
                conns = []
            # a HostResourceError here (out of fds) leaves both unset: asked again next time
            owners = self.owners_of(self.procfs) if conns else {}
            self._conns, self._owners = conns, owners
        return listener_of_port(self._conns, port, self._owners)


def inventory(conns, owners, service_of, threshold_s=DEFAULT_IDLE_THRESHOLD_S):
    """Connected sockets per service with idle times; idle >= threshold flagged at_risk.

    service_of(pid, comm) -> service name. Returns {service: [row, ...]} with rows sorted
    by idle time, longest first; sockets no process holds go under "(no process)".
    """
    threshold_ms = threshold_s * 1000.0
    out = {}
    for c in conns:
        if c.state not in SYNCHRONIZED:
            continue
        holders = owners.get(c.inode, []) if c.inode else []
        pid, comm = (holders[0].pid, holders[0].comm) if holders else (0, "")
        service = service_of(pid, comm) if pid else "(no process)"
        out.setdefault(service, []).append({
            "pid": pid, "comm": comm, "state": c.state,
            "local": _endpoint(c.family, c.laddr, c.lport),
            "remote": _endpoint(c.family, c.raddr, c.rport),
            "idle_s": None if c.idle_ms is None else c.idle_ms / 1000.0,
            "at_risk": c.idle_ms is not None and c.idle_ms >= threshold_ms,
        })
    for rows in out.values():
        rows.sort(key=lambda r: -(r["idle_s"] or 0))
    return out


def _endpoint(family, addr, port):
    return f"[{addr}]:{port}" if family == socket.AF_INET6 else f"{addr}:{port}"
