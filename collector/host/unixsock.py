"""Which unix stream sockets are connected to journald's stdout socket.

A unit with StandardOutput=journal writes its logs to an fd that is a unix stream
socket connected to /run/systemd/journal/stdout. That client socket has no name; its
peer, the socket journald got from accept(), carries the listener's path. So we dump
unix sockets with sock_diag (NETLINK_SOCK_DIAG), take the accepted sockets bound at a
listen path and collect their peers' inodes, which are what /proc/<pid>/fd shows as
"socket:[<inode>]".

sock_diag only sees sockets of the caller's network namespace, and an accepted socket
lives in its client's namespace: clients in other network namespaces are not found.
"""
import os
import socket
from typing import NamedTuple

from collector.errors import EnvironmentProblem

SS_ESTABLISHED = 1      # include/net/tcp_states.h (the state numbers unix_diag reports)


class UnixSocket(NamedTuple):
    """One socket from a unix_diag dump, fields named as in linux/unix_diag.h."""

    udiag_ino: int
    udiag_type: int       # socket.SOCK_STREAM, SOCK_DGRAM, ...
    udiag_state: int      # SS_ESTABLISHED, SS_LISTEN, ...
    name: bytes | None    # UNIX_DIAG_NAME, the bound path
    has_vfs: bool         # UNIX_DIAG_VFS present: bound in the filesystem, not abstract
    peer: int             # UNIX_DIAG_PEER inode, 0 when none


class _DiagFailed(Exception):
    pass


def journald_stream_clients(listen_paths, proc_net_unix="/proc/net/unix"):
    """Inodes of the unix stream sockets whose peer is bound at one of listen_paths.

    Raises EnvironmentProblem when sock_diag fails while something is listening at one
    of the paths: /proc/net/unix has no peer column, so the clients cannot be named.
    """
    wanted = {os.fsencode(p) for p in listen_paths}
    if not wanted:
        return set()
    try:
        bound = bound_stream_paths(proc_net_unix) & wanted
    except OSError:
        bound = wanted                  # cannot tell: ask sock_diag
    if not bound:
        return set()      # nobody listens there, so nobody is connected either (and the
                          # daemon need not load pyroute2 for it: ~20 MB)
    try:
        sockets = unix_diag_established()
    except _DiagFailed as exc:
        raise EnvironmentProblem(
            f"cannot tell which processes write to {os.fsdecode(min(bound))}: unix socket "
            f"diagnostics failed ({exc}); load the unix_diag kernel module "
            f"(modprobe unix_diag)") from exc
    return peers_of_accepted(sockets, wanted)


def peers_of_accepted(sockets, wanted):
    """Peers of the connected stream sockets bound at a path in `wanted` (bytes).

    Only accepted (server-side) sockets carry the listener's path while connected; the
    listener itself is SS_LISTEN and has no peer. An abstract socket named like the path
    is not bound there, hence the UNIX_DIAG_VFS check.
    """
    return {
        s.peer
        for s in sockets
        if s.udiag_type == socket.SOCK_STREAM
        and s.udiag_state == SS_ESTABLISHED
        and s.has_vfs
        and s.name in wanted
        and s.peer
    }


def unix_diag_established():
    """Every connected unix socket of this network namespace, as UnixSocket tuples."""
    # imported here: pyroute2 costs the daemon ~20 MB of RSS and ~0.1 s, which a host
    # that logs nothing through unix sockets never needs to pay
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.diag import (SOCK_DIAG_BY_FAMILY, UDIAG_SHOW_NAME, UDIAG_SHOW_PEER,
                                       UDIAG_SHOW_VFS, DiagSocket, unix_diag_req)
    from pyroute2.netlink.exceptions import NetlinkError

    req = unix_diag_req()
    req["sdiag_family"] = socket.AF_UNIX
    req["sdiag_protocol"] = 0
    req["udiag_states"] = 1 << SS_ESTABLISHED
    req["udiag_show"] = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER
    try:
        with DiagSocket() as diag:
            diag.bind()
            flags = NLM_F_REQUEST | NLM_F_DUMP
            messages = tuple(diag.nlm_request(req, SOCK_DIAG_BY_FAMILY, flags))
    except (OSError, NetlinkError) as exc:
        raise _DiagFailed(str(exc) or type(exc).__name__) from exc
    sockets = []
    for msg in messages:
        # pyroute2's MarshalDiag does not turn NLMSG_ERROR into an exception (and drops
        # the errno): a failed dump comes back as a message of another type.
        if msg["header"]["type"] != SOCK_DIAG_BY_FAMILY:
            raise _DiagFailed("the kernel answered the unix_diag dump with an error")
        sockets.append(UnixSocket(
            udiag_ino=msg["udiag_ino"],
            udiag_type=msg["udiag_type"],
            udiag_state=msg["udiag_state"],
            name=_name_bytes(msg.get_attr("UNIX_DIAG_NAME")),
            has_vfs=msg.get_attr("UNIX_DIAG_VFS") is not None,
            peer=msg.get_attr("UNIX_DIAG_PEER") or 0,
        ))
    return sockets


def _name_bytes(name):
    # pyroute2 decodes UNIX_DIAG_NAME as UTF-8 when it can (else leaves bytes) and strips
    # NULs at both ends, so an abstract "\0foo" arrives as "foo".
    if name is None or isinstance(name, bytes):
        return name
    return name.encode("utf-8", errors="surrogateescape")


def bound_stream_paths(proc_net_unix="/proc/net/unix"):
    """Filesystem paths that unix stream sockets are bound at, from /proc/net/unix."""
    paths = set()
    with open(proc_net_unix, "rb") as f:
        next(f, None)  # header
        for line in f:
            # Num RefCount Protocol Flags Type St Inode Path (the path may contain spaces)
            fields = line.rstrip(b"\n").split(None, 7)
            if len(fields) == 8 and int(fields[4], 16) == socket.SOCK_STREAM \
                    and fields[7].startswith(b"/"):  # abstract names start with "@"
                paths.add(fields[7])
    return paths
