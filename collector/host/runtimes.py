"""Which pipes and FIFOs are read by a log-copying container runtime.

A container's stdout/stderr is a pipe (or FIFO) whose reading end a runtime holds: conmon
(podman, CRI-O), containerd-shim (docker, containerd), which may relay into a FIFO read by
dockerd or containerd. A write to such a pipe is a log line of the *writer*; the runtime
then copies it into its own log file (counted there as the runtime's write).

A pipe is named by the runtime's fd on it: the runtime's /proc/PID/fd/N stats to the pipe
inode (pipefs) or FIFO inode, and its fdinfo `flags` tell which end it holds. A pipe a
runtime also holds for writing is a relay between runtimes (the shim writing into the
FIFO dockerd reads): copying, not producing, so it is not a runtime pipe here.
"""
import fnmatch
import os
import re
import stat
from typing import NamedTuple

from collector.errors import HostLookupError
from collector.host.destinations import kernel_dev
from collector.host.procfs import fdinfo_flags

# Processes that copy their children's stdout/stderr into a log (docs/probe-logwrites.md
# "Containers"). Globs as fnmatch; matched on comm (at most 15 bytes: the kernel
# truncates "containerd-shim-runc-v2" to "containerd-shim") and on argv[0]'s basename.
DEFAULT_LOG_RUNTIMES = ("containerd", "dockerd", "conmon", "containerd-shim*", "crio")

COMM_MAX = 15                       # TASK_COMM_LEN - 1
O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 0o3, 0o0, 0o1, 0o2
_HEX64 = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
# conmon's log drivers that name no file (ctr_logging.c parse_log_path)
_CONMON_FILELESS = ("journald", "passthrough", "none", "off", "null")
_CRI_NAMESPACE = "k8s.io"           # containerd's namespace for Kubernetes: a shim per pod


def runtime_names(extra=()):
    """The log-copying runtimes: the default list and the config's additions
    (log_rules.runtimes)."""
    return DEFAULT_LOG_RUNTIMES + tuple(n for n in extra if n not in DEFAULT_LOG_RUNTIMES)


class RuntimePipe(NamedTuple):
    """The runtime process reading one pipe/FIFO and what it tells about the container."""

    pid: int
    comm: str
    container_id: str | None       # full id when the runtime's argv or FIFO path names it
    container_name: str | None     # conmon's --name
    log_path: str | None           # the file the runtime copies into, when known

    @property
    def label(self):
        """The path label of writes into this pipe: "container:" + the runtime's log
        path, or + the runtime's comm when the log path is unknown."""
        return "container:" + (self.log_path or self.comm)


class RuntimeArgs(NamedTuple):
    """What a runtime's command line says about the one container it serves."""

    container_id: str | None = None
    container_name: str | None = None
    log_path: str | None = None
    serves_logs: bool = True       # False: conmon of an `exec` session (not logged)


def is_runtime(comm, argv0, names=DEFAULT_LOG_RUNTIMES):
    """True when comm or argv[0]'s basename matches one of names (fnmatch globs)."""
    base = os.path.basename(argv0) if argv0 else ""
    for pattern in names:
        if fnmatch.fnmatchcase(comm, pattern) or (base and fnmatch.fnmatchcase(base, pattern)):
            return True
        # a literal name longer than comm can hold shows up truncated
        if len(comm) == COMM_MAX and not _is_glob(pattern) and pattern[:COMM_MAX] == comm:
            return True
    return False


def _is_glob(pattern):
    return any(c in pattern for c in "*?[")


def parse_runtime_args(argv):
    """RuntimeArgs from a runtime's argv (list of str); pure."""
    if not argv:
        return RuntimeArgs()
    base = os.path.basename(argv[0])
    if base == "conmon":
        return _conmon_args(argv[1:])
    if base.startswith("containerd-shim"):
        return _shim_args(argv[1:])
    return RuntimeArgs()


def _options(args, spellings):
    """Values of an option given as "-x V", "--long V" or "--long=V", in order."""
    values = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in spellings and i + 1 < len(args):
            values.append(args[i + 1])
            i += 2
            continue
        for s in spellings:
            if s.startswith("-") and arg.startswith(s + "="):
                values.append(arg[len(s) + 1:])
        i += 1
    return values


def _conmon_args(args):
    """conmon (GLib options, src/cli.c): -c/--cid, -n/--name, -l/--log-path (repeated,
    "driver:path", a bare path meaning k8s-file), -e/--exec for an exec session."""
    cid = (_options(args, ("-c", "--cid")) or [None])[-1]
    name = (_options(args, ("-n", "--name")) or [None])[-1]
    log_path = None
    for value in _options(args, ("-l", "--log-path")):
        driver, sep, path = value.partition(":")
        if not sep and value not in _CONMON_FILELESS:
            driver, path = "k8s-file", value      # a bare path is a k8s-file log
        if driver == "k8s-file" and path:
            log_path = path
    exec_session = "-e" in args or "--exec" in args
    return RuntimeArgs(cid, name, log_path, serves_logs=not exec_session)


def _shim_args(args):
    """containerd-shim-runc-v2 (Go flags: -id, -namespace). Outside Kubernetes a shim
    serves one container, named by -id; under CRI (namespace k8s.io) one pod, whose
    -id is the sandbox's, not a container's."""
    ids = _options(args, ("-id", "--id"))
    namespace = (_options(args, ("-namespace", "--namespace")) or [None])[-1]
    if ids and namespace != _CRI_NAMESPACE:
        return RuntimeArgs(container_id=ids[-1])
    return RuntimeArgs()


def container_id_in_path(path):
    """The last 64-hex component-like id in a FIFO path (/run/docker/containerd/<id>/
    init-stdout, /run/containerd/io.containerd.grpc.v1.cri/containers/<id>/io/...)."""
    found = _HEX64.findall(path)
    return found[-1] if found else None


class RuntimePipes:
    """(dev, ino) of a pipe/FIFO -> RuntimePipe of the runtime reading it, or None.

    A miss rescans: every process's comm (to find runtimes; ~30 µs a process), then
    each runtime's fds. At most one rescan per drain (start_drain() allows the next):
    the counts of a drain were taken before it starts, so one scan during the drain sees
    every runtime that held a pipe when its writes happened and still holds it.
    """

    def __init__(self, procfs, names=DEFAULT_LOG_RUNTIMES):
        self.procfs = procfs
        self.names = tuple(names)
        self.scans = 0
        self._pipes = {}           # (kernel dev, ino) -> RuntimePipe
        self._relays = set()       # (kernel dev, ino) a runtime writes into
        self._args = {}            # pid -> (argv, RuntimeArgs), for runtimes
        self._may_scan = True

    def start_drain(self):
        self._may_scan = True

    def set_extra(self, extra):
        """Judge by the default runtimes and these (new log rules) from now on."""
        self.names = runtime_names(extra)
        self._pipes.clear()
        self._relays.clear()
        self._args.clear()
        self._may_scan = True

    def lookup(self, dev, ino):
        key = (dev, ino)
        found = self._pipes.get(key)
        if found is None and key not in self._relays and self._may_scan:
            self._may_scan = False
            self.rescan()
            found = self._pipes.get(key)
        return found

    def is_relay(self, dev, ino):
        """True when the last scan saw a runtime holding (dev, ino) for writing."""
        return (dev, ino) in self._relays

    def rescan(self):
        self.scans += 1
        pipes, relays, args = {}, set(), {}
        for pid in self._runtime_pids():
            try:
                argv = self._argv(pid)
            except HostLookupError:
                continue
            cached = self._args.get(pid)
            parsed = cached[1] if cached and cached[0] == argv else parse_runtime_args(argv)
            args[pid] = (argv, parsed)
            if not parsed.serves_logs:
                continue
            self._scan_fds(pid, parsed, pipes, relays)
        for key in relays:
            pipes.pop(key, None)
        self._pipes, self._relays, self._args = pipes, relays, args

    def _runtime_pids(self):
        for pid in self.procfs.pids():
            try:
                comm = self.procfs.comm(pid)
                if is_runtime(comm, "", self.names):
                    yield pid
                    continue
                argv = self._argv(pid)      # renamed binaries, comm set by the process
            except HostLookupError:
                continue
            if argv and is_runtime(comm, argv[0], self.names):
                yield pid

    def _scan_fds(self, pid, parsed, pipes, relays):
        try:
            comm = self.procfs.comm(pid)
            fds = self.procfs.fds(pid)
        except HostLookupError:
            return
        found = []          # (key, fifo path or None) read by this runtime
        files = []          # regular files it writes: where a log path may be
        for fd, target in fds.items():
            is_pipe = target.startswith("pipe:[")
            if not is_pipe and not target.startswith("/"):
                continue
            try:
                st = os.stat(self._fd_link(pid, fd))
                flags = fdinfo_flags(self._read(pid, "fdinfo", str(fd)))
            except (OSError, HostLookupError):
                continue
            if flags is None:
                continue
            mode = flags & O_ACCMODE
            if stat.S_ISREG(st.st_mode):
                if mode != O_RDONLY:
                    files.append(target)
                continue
            if not stat.S_ISFIFO(st.st_mode):
                continue
            key = (kernel_dev(st.st_dev), st.st_ino)
            if mode == O_WRONLY:
                relays.add(key)
            else:        # O_RDONLY, or O_RDWR (FIFOs opened so that open never blocks)
                found.append((key, None if is_pipe else target))
        for key, fifo in found:
            cid = parsed.container_id or (container_id_in_path(fifo) if fifo else None)
            log_path = parsed.log_path or _log_file_of(cid, files)
            pipes[key] = RuntimePipe(pid, comm, cid, parsed.container_name, log_path)

    def _argv(self, pid):
        raw = self._read_bytes(pid, "cmdline").rstrip(b"\0")     # empty: a kernel thread
        return [a.decode("utf-8", errors="replace") for a in raw.split(b"\0")] if raw else []

    def _fd_link(self, pid, fd):
        return os.path.join(self.procfs.root, str(int(pid)), "fd", str(int(fd)))

    def _read(self, pid, *parts):
        return self._read_bytes(pid, *parts).decode("utf-8", errors="replace")

    def _read_bytes(self, pid, *parts):
        # ProcFS's translation of OSError into NoSuchProcess / AccessDenied
        path = os.path.join(self.procfs.root, str(int(pid)), *parts)
        with self.procfs._translated(pid, "/".join(parts)):
            with open(path, "rb") as f:
                return f.read()


def _log_file_of(container_id, files):
    """The runtime's open file for this container (dockerd's /var/lib/docker/containers/
    <id>/<id>-json.log): a written file whose path names the id."""
    if not container_id:
        return None
    for path in sorted(files):
        if container_id in path:
            return path
    return None
