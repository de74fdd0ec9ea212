"""Knowing when a process exits without polling /proc: a pidfd per process (Linux 5.3+),
all in one epoll set, checked once per drain (collector/host/keycache.py)."""
import os
import resource
import select


class Proc:
    __slots__ = ("pid", "start", "ok", "fd", "keys", "owner", "seen", "shared")

    def __init__(self, pid, start):
        self.pid, self.start = pid, start
        self.ok = True         # False: check the start time again before trusting it
        self.fd = None         # pidfd when watched
        self.keys = []
        self.owner = None      # (cgroup id, owner) read while it was alive (keycache)
        self.seen = 0          # the keycache drain that last found it alive
        self.shared = None     # ((pid, comm), identity bytes) its keys share (keycache)


class PidWatch:
    """Exit notification for processes by pidfd (Linux 5.3+), at most `limit` at once."""

    def __init__(self, limit=None):
        if limit is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            limit = 4096 if soft == resource.RLIM_INFINITY else max(0, min(4096, soft // 2))
        self.limit = limit
        self._ep = select.epoll() if hasattr(os, "pidfd_open") and limit else None
        self._procs = {}       # pidfd -> Proc

    def watch(self, proc):
        """True when proc's exit will be reported by exited()."""
        if self._ep is None or len(self._procs) >= self.limit:
            return False
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            return False
        self._procs[fd] = proc
        proc.fd = fd
        self._ep.register(fd, select.EPOLLIN)
        return True

    def exited(self):
        """Watched processes that exited since the last call (no longer watched)."""
        if not self._procs:
            return ()
        out = []
        for fd, _ in self._ep.poll(0):
            proc = self._procs.pop(fd, None)
            self.unwatch(proc, fd)
            if proc is not None:
                out.append(proc)
        return out

    def unwatch(self, proc, fd=None):
        fd = proc.fd if fd is None and proc is not None else fd
        if fd is None:
            return
        self._procs.pop(fd, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass
        os.close(fd)
        if proc is not None:
            proc.fd = None

    def close(self):
        for fd in list(self._procs):
            self.unwatch(self._procs[fd], fd)
        if self._ep is not None:
            self._ep.close()
