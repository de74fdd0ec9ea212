"""Reads per-process facts from /proc, with typed errors instead of bare OSError.

`root` is injectable so unit tests run on recorded fixture trees. Every read can race
with the process exiting; callers get NoSuchProcess / AccessDenied (collector.errors)
and decide what to do. Every other OS error is typed too (translate()): the daemon out
of a resource (EMFILE, ENFILE, ENOMEM, ENOBUFS: a local user can drive it there) is a
HostResourceError, which leaves the key unresolved for the interval; anything else a
HostOSError (a HostLookupError: that answer is unknown). No bare OSError leaves here.
"""
import errno
import os
from contextlib import contextmanager

from collector.errors import (
    AccessDenied,
    EnvironmentProblem,
    HostLookupError,
    HostOSError,
    HostResourceError,
    NoSuchProcess,
)

_GONE = (errno.ENOENT, errno.ESRCH)
_DENIED = (errno.EACCES, errno.EPERM)
# the daemon's own limits, not a fact about the process looked up
RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS)


def translate(exc, pid, what):
    """The typed error for an OSError of a lookup of `what` of process `pid` (pid None:
    not about one process)."""
    where = f"{what} of process {pid}" if pid is not None else what
    if exc.errno in RESOURCE_ERRNOS:
        return HostResourceError(where, exc.errno)
    if pid is not None and exc.errno in _GONE:
        return NoSuchProcess(pid)
    if pid is not None and exc.errno in _DENIED:
        return AccessDenied(pid, what)
    return HostOSError(where, exc.errno or errno.EIO)

# /proc/<pid>/stat field numbers as in proc(5); field 2 is "(comm)".
_STAT_FIRST_AFTER_COMM = 3
_STAT_STARTTIME = 22


class ProcFS:
    def __init__(self, root="/proc"):
        self.root = root

    def pids(self):
        """Pids of all processes visible under root, ascending."""
        try:
            names = os.listdir(self.root)
        except OSError as e:
            if e.errno in RESOURCE_ERRNOS:
                raise HostResourceError(f"listing {self.root}", e.errno) from e
            # a missing or unreadable /proc is a broken host, not a vanished process
            raise EnvironmentProblem(f"{self.root}: cannot list processes: "
                                     f"{e.strerror or e}; fix: mount proc on /proc") from e
        return sorted(int(n) for n in names if n.isdigit() and n.isascii())

    def comm(self, pid):
        """The process name as `top` shows it (up to 15 bytes, any bytes allowed)."""
        raw = self._read_bytes(pid, "comm")
        # The kernel appends exactly one "\n"; a newline inside the name is the name's own.
        return raw.removesuffix(b"\n").decode("utf-8", errors="replace")

    def cgroup(self, pid):
        """Raw lines of /proc/<pid>/cgroup, e.g. ["0::/system.slice/nginx.service"]."""
        text = self._read_bytes(pid, "cgroup").decode("utf-8", errors="replace")
        # Split on "\n" only: cgroup names cannot contain "\n" but may contain "\r" etc.,
        # which str.splitlines() would also split on.
        return [line for line in text.split("\n") if line]

    def start_time(self, pid):
        """Start time in clock ticks after boot (stat field 22); (pid, start_time) names
        one process even when the pid is reused."""
        raw = self._read_bytes(pid, "stat")
        # comm sits between the first "(" and the LAST ")" and may itself contain
        # spaces, ")" and newlines, so split only what follows the last ")".
        close = raw.rfind(b")")
        fields = raw[close + 1:].split()
        index = _STAT_STARTTIME - _STAT_FIRST_AFTER_COMM
        if close < 0 or len(fields) <= index:
            raise HostLookupError(f"{self._path(pid, 'stat')}: malformed stat line")
        return int(fields[index])

    def fd_target(self, pid, fd):
        """What fd points at: "/var/log/x.log", "socket:[123]", "pipe:[9]", ...

        NoSuchProcess when the process is gone; a plain HostLookupError when it lives
        but that fd is not open (any more).
        """
        target = self._readlink_fd(pid, fd)
        if target is None:
            raise HostLookupError(f"fd {fd} of process {pid} is not open")
        return target

    def fds(self, pid):
        """{fd: target} for every open fd; fds closed while we read them are skipped."""
        with self._translated(pid, "fd list"):
            names = os.listdir(self._path(pid, "fd"))
        result = {}
        for name in names:
            if name.isdigit():
                target = self._readlink_fd(pid, int(name))
                if target is not None:
                    result[int(name)] = target
        return result

    def _readlink_fd(self, pid, fd):
        """The fd's target, or None when the process lives but the fd is not open."""
        try:
            with self._translated(pid, f"fd {fd}"):
                return os.readlink(self._path(pid, "fd", str(int(fd))))
        except NoSuchProcess:
            # ENOENT means "no such fd" as often as "no such process"; tell them apart.
            if os.path.isdir(self._path(pid)):
                return None
            raise

    def fd_flags(self, pid, fd):
        """fd's open flags (the octal `flags` of /proc/PID/fdinfo/FD), or None when the
        line is missing; O_PATH fds show O_PATH (010000000), access mode O_RDONLY."""
        text = self._read_bytes(pid, os.path.join("fdinfo", str(int(fd))))
        return fdinfo_flags(text.decode("ascii", errors="replace"))

    def cwd(self, pid):
        with self._translated(pid, "cwd"):
            return os.readlink(self._path(pid, "cwd"))

    def _path(self, pid, *parts):
        # int() keeps a hostile "pid" such as "../1" from walking out of the pid directory.
        return os.path.join(self.root, str(int(pid)), *parts)

    def _read_bytes(self, pid, name):
        with self._translated(pid, name):
            with open(self._path(pid, name), "rb") as f:
                return f.read()

    @contextmanager
    def _translated(self, pid, what):
        """The one place where OSError becomes a typed host-lookup error (psutil style)."""
        try:
            yield
        except OSError as exc:
            raise translate(exc, pid, what) from exc


def fdinfo_flags(text):
    """The `flags` field (octal) of /proc/PID/fdinfo/N text, or None."""
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key == "flags":
            try:
                return int(value.strip(), 8)
            except ValueError:
                return None
    return None
