"""The host's root as the daemon reaches it, for what it reads of the host besides /proc.

The daemon may run in a root other than the host's (a container with hostPID, a chroot):
then a path the host's processes use (a socket symlink such as /dev/log, journald.conf,
the container runtimes' files, the cgroup2 mount) is not, or is another file, in its own
root. With the host's pids visible, `/proc/1/root` is the host's root (the `host_root`
setting; docs/operations.md): those files are read under it, with every symlink resolved
inside it (HostFiles), and the cgroup2 tree is walked where PID 1's mounts put it
(`/proc/1/mountinfo`: its mount points are relative to PID 1's root, and the kernel shows
each mount's cgroup root relative to *our* cgroup namespace, so the paths the walk makes
read like our /proc/PID/cgroup lines). A writer's own files are never found this way:
they are read through its /proc/PID/fd (collector/host/destinations.py).
"""
import errno
import os
import re
import stat
from typing import NamedTuple

DEFAULT = "/proc/1/root"
SELF_MOUNTINFO = "/proc/self/mountinfo"
_PROC_ROOT = re.compile(r"(/proc/(?:[0-9]+|self))/root/?")


class HostRoot(NamedTuple):
    files: str              # where the host's "/" is for us ("/": our own root)
    mountinfo: str          # the mountinfo that lists the host's cgroup2 mount
    mounts: str             # where that mountinfo's mount points are for us
    note: str = ""          # why our own root is used although another was asked for

    def differs(self):
        return self.files != "/"


OWN = HostRoot("/", SELF_MOUNTINFO, "/")


def find_host_root(setting=DEFAULT):
    """The HostRoot for the `host_root` setting: "/" (our own root), "/proc/PID/root" (that
    process's root and mounts: the default, PID 1) or a directory where the host's / is
    mounted (its files only; the cgroup2 walk stays on our own mounts). A /proc/PID/root
    that is our own root, mount and cgroup namespace is just "/"; one we cannot reach
    (PID 1 in another pid namespace or security context, no CAP_SYS_PTRACE) is our own
    root too, with `note` saying why."""
    if setting in ("/", ""):
        return OWN
    try:
        st = os.stat(setting)
    except OSError as e:
        return OWN._replace(note=f"{setting}: {e.strerror or e}")
    if not stat.S_ISDIR(st.st_mode):
        return OWN._replace(note=f"{setting}: {os.strerror(errno.ENOTDIR)}")
    m = _PROC_ROOT.fullmatch(setting)
    if m is None:
        return HostRoot(setting.rstrip("/") or "/", SELF_MOUNTINFO, "/")
    proc = m.group(1)
    own = os.stat("/")
    if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino) and \
            all(_ns(proc, ns) == _ns("/proc/self", ns) for ns in ("mnt", "cgroup")):
        return OWN
    return HostRoot(setting.rstrip("/"), f"{proc}/mountinfo", setting.rstrip("/"))


def _ns(proc, name):
    try:
        return os.readlink(f"{proc}/ns/{name}")
    except OSError:
        return None


class HostFiles:
    """Paths of the host under `root` (symlinks followed inside root, as in a chroot)."""

    def __init__(self, root="/"):
        self.root = os.path.abspath(root)

    def real(self, path, hops=40):
        """`path` (absolute, host view) with every symlink resolved inside root; None
        for a loop. Missing components are kept as they are."""
        parts = [p for p in path.split("/") if p]
        done = []
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            host = os.path.join(self.root, *done, part)
            try:
                st = os.lstat(host)
            except OSError:
                done.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops -= 1
                if hops < 0:
                    return None
                target = os.readlink(host)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p] + parts
                continue
            done.append(part)
        return "/" + "/".join(done)

    def host(self, path):
        """The file under root for host path `path`, symlinks resolved (None: a loop)."""
        real = self.real(path)
        return None if real is None else os.path.join(self.root, real.lstrip("/"))

    def masked(self, path):
        """A unit file or drop-in linked to /dev/null (or empty) masks what it shadows."""
        return self.real(path) == "/dev/null"

    def read(self, path):
        h = self.host(path)
        if h is None:
            raise OSError(f"{path}: too many levels of symbolic links")
        with open(h, encoding="utf-8", errors="replace") as f:
            return f.read()

    def isfile(self, path):
        h = self.host(path)
        return h is not None and os.path.isfile(h)

    def listdir(self, path):
        h = self.host(path)
        try:
            return sorted(os.listdir(h)) if h is not None and os.path.isdir(h) else []
        except OSError:
            return []

    def readlink(self, path):
        return os.readlink(os.path.join(self.root, path.lstrip("/")))

    def lexists(self, path):
        return os.path.lexists(os.path.join(self.root, path.lstrip("/")))
