"""Which written files are log destinations, and their paths.

The kernel reports writes per (process, fd, inode). An inode is judged once, from the path
a process opened it by (open events) or, for files opened before we started, from
/proc/PID/fd at the next drain; the verdict is handed back to the kernel so non-log
inodes are skipped there from then on.
"""
import fcntl
import logging
import os
import stat
import struct
from collections import OrderedDict

from collector.errors import EnvironmentProblem, HostLookupError, HostResourceError
from collector.host.hostroot import HostFiles
from collector.host.logdest import parse_fd_target
from collector.host.services import container_id_from_cgroup

log = logging.getLogger("surgewatch")
NOT_LOG = object()      # judged: not a log destination
UNRESOLVED = object()   # cannot be judged: the process and its fd are gone

KIND_REGULAR, KIND_UNIX_SOCKET, KIND_PIPE, KIND_UNIX_DGRAM = 1, 2, 3, 4   # SW_FILE_*
FS_IOC_GETVERSION = 0x80087601           # _IOR('v', 1, long): the inode's i_generation
O_PATH = getattr(os, "O_PATH", 0o10000000)


def kernel_dev(st_dev):
    """stat()'s device number as the kernel's MKDEV(major, minor) = major << 20 | minor."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def read_generation(path):
    """i_generation of the file at path, or None when it cannot be read: FS_IOC_GETVERSION
    is answered by ext2/3/4, btrfs, xfs and a few more only. An unreadable generation is
    unknown, never 0: tmpfs (shmem) gives every inode a random nonzero one that this
    ioctl does not tell."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETVERSION, b"\0" * 8)
        return struct.unpack("<I", buf[:4])[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def inode_generation(path):
    """read_generation(), with 0 for unknown (a value for a key's gen field; the resolver
    itself tells unknown from 0)."""
    gen = read_generation(path)
    return 0 if gen is None else gen


class DestinationResolver:
    def __init__(self, procfs, rules, set_verdict, journald_clients, max_inodes=131072,
                 set_channels=None, runtime_pipes=None, host_files=None, forget_pending=None):
        """set_verdict(dev, gen, ino, is_log) tells the kernel; forget_pending(dev, gen, ino)
        takes back the kernel's "pending" mark of an inode that could not be judged;
        journald_clients(paths) -> socket inodes; set_channels({socket path: channel id})
        gives the kernel the datagram channels; runtime_pipes (collector.host.runtimes.
        RuntimePipes) says which pipes a log-copying runtime reads; host_files (collector.
        host.hostroot.HostFiles, default our own root) is where the host's socket paths
        are resolved. Inodes are keyed (dev, gen, ino): an inode number alone is reused as
        soon as a file is deleted."""
        self.procfs, self.rules = procfs, rules
        self._set_verdict = set_verdict
        self._forget_pending = forget_pending or (lambda dev, gen, ino: None)
        self._journald_clients = journald_clients
        self._set_channels = set_channels
        self._runtime_pipes = runtime_pipes
        self._host_files = host_files or HostFiles("/")
        self._channel_table = None          # what the kernel was last given
        self._inodes = OrderedDict()        # (dev, gen, ino) -> path | NOT_LOG
        # (dev, ino) -> path | NOT_LOG: judged at replay on a filesystem whose generation
        # userspace cannot read (tmpfs): matched by (dev, ino) to the first key the kernel
        # reports for it (the file was open then, so its inode number was not reused yet)
        self._unknown_gen = OrderedDict()
        self._max = max_inodes
        self._journald = None               # socket inodes connected to journald, per drain
        self._journald_warned = False

    # -- judging -----------------------------------------------------------------
    def _remember(self, key, verdict, tell=True):
        self._inodes[key] = verdict
        self._inodes.move_to_end(key)
        while len(self._inodes) > self._max:
            self._inodes.popitem(last=False)
        if tell:
            self._set_verdict(*key, verdict is not NOT_LOG)

    def _remember_unknown_gen(self, dev, ino, verdict):
        """A verdict for an inode whose generation userspace cannot read. The kernel is
        told it under gen 0 too: right where the filesystem's i_generation is 0 (FUSE,
        vfat...); elsewhere the first drained key of (dev, ino) adopts it (destination)."""
        self._unknown_gen[(dev, ino)] = verdict
        self._unknown_gen.move_to_end((dev, ino))
        while len(self._unknown_gen) > self._max:
            self._unknown_gen.popitem(last=False)
        self._set_verdict(dev, 0, ino, verdict is not NOT_LOG)

    def _judge_path(self, path):
        return path if self.rules.is_log_path(path) else NOT_LOG

    def _fd_path(self, pid, fd, dev, gen, ino):
        """Absolute path behind /proc/PID/fd/FD if it still is the inode the kernel saw.
        fd -1 (the fentry path counts per inode, not per fd): any fd of PID open on it."""
        if fd < 0:
            return self._inode_path(pid, dev, gen, ino)
        link = os.path.join(self.procfs.root, str(pid), "fd", str(fd))
        try:
            st = os.stat(link)
            if st.st_ino != ino or kernel_dev(st.st_dev) != dev:
                return None
            known = read_generation(link)
            if known is not None and known != gen:
                return None
            kind, value = parse_fd_target(self.procfs.fd_target(pid, fd))
        except (OSError, HostLookupError):
            return None
        return value if kind == "file" else None

    def _inode_path(self, pid, dev, gen, ino):
        """Path of the first fd of PID open on inode (dev, gen, ino), else None."""
        try:
            fds = self.procfs.fds(pid)
        except HostLookupError:
            return None
        for fd, target in fds.items():
            if target.startswith("/"):
                path = self._fd_path(pid, fd, dev, gen, ino)
                if path is not None:
                    return path
        return None

    def note_open(self, ev):
        """An inode with no verdict in the kernel yet, opened for writing (fentry) or first
        written (tracepoints: the kernel marked it pending and sends it once)."""
        key = (ev.dev, ev.gen, ev.ino)
        if key in self._inodes:
            return
        path = ev.path
        if not path.startswith("/"):
            try:
                path = self._fd_path(ev.tgid, ev.fd, ev.dev, ev.gen, ev.ino) \
                    or (self._join_cwd(ev.tgid, path) if path else None)
            except HostResourceError:
                path = None     # out of fds: judged at drain, as a path we could not read
        if path is None:
            # no verdict: writes stay counted and are judged at drain; the kernel may ask
            # again at a later first write
            self._forget_pending(*key)
            return
        self._unknown_gen.pop((ev.dev, ev.ino), None)     # its generation is known now
        self._remember(key, self._judge_path(path))

    def _join_cwd(self, pid, rel):
        try:
            return os.path.normpath(os.path.join(self.procfs.cwd(pid), rel))
        except HostLookupError:
            return None

    def change_rules(self, rules):
        """Judge by new rules from now on: every verdict is forgotten (the caller clears
        the kernel's copy and replays)."""
        self.rules = rules
        self._inodes.clear()
        self._unknown_gen.clear()
        self.refresh_channels()
        if self._runtime_pipes is not None:
            self._runtime_pipes.set_extra(rules.runtimes)

    def channel_table(self):
        """{socket path: channel id} for the kernel: each configured path and, when it is a
        symlink (/dev/log -> /run/systemd/journal/dev-log), the path it resolves to, which
        is what the server bound and so what a connected socket's peer carries. Resolved in
        the host's root (host_files): in a container the path may not exist, or be another
        file, in ours."""
        table = {}
        for channel, label in enumerate(self.rules.channels()):
            path = label.split(":", 1)[1]
            table.setdefault(path, channel)
            try:
                real = self._host_files.real(path)
            except OSError:
                real = None                 # changed while we read it: next drain
            if real is not None:            # None: a symlink loop
                table.setdefault(real, channel)
        return table

    def refresh_channels(self):
        """Give the kernel the channel table if it changed (a symlink made since): cheap
        enough for every drain (a few realpath calls)."""
        if self._set_channels is None:
            return
        table = self.channel_table()
        if table != self._channel_table:
            self._set_channels(table)
            self._channel_table = table

    def replay(self):
        """Judge every file already open on the host (they were opened before we looked).

        Run after the probe is attached: what opens later arrives as events. The kernel
        names a device MKDEV(major, minor) = major << 20 | minor; stat() encodes it
        differently, hence the conversion. Returns the number of inodes judged.
        """
        judged = 0
        journald = None
        try:
            pids = self.procfs.pids()
        except HostResourceError:
            return 0        # out of fds: nothing judged now; every write is judged at drain
        for pid in pids:
            try:
                fds = self.procfs.fds(pid)
            except (HostLookupError, HostResourceError):
                continue
            for fd, target in fds.items():
                try:
                    st = os.stat(os.path.join(self.procfs.root, str(pid), "fd", str(fd)))
                except OSError:
                    continue
                kdev = kernel_dev(st.st_dev)
                kind, value = parse_fd_target(target)
                if stat.S_ISREG(st.st_mode) and kind == "file":
                    if not self._open_for_writing(pid, fd):
                        continue
                    link = os.path.join(self.procfs.root, str(pid), "fd", str(fd))
                    gen = read_generation(link)
                    verdict = self._judge_path(value)
                    if gen is None:
                        known = self._unknown_gen.get((kdev, st.st_ino))
                    else:
                        known = self._inodes.get((kdev, gen, st.st_ino))
                    # among the names writers hold an inode by, a log's wins (pid order
                    # must not decide: a hard link's or bind mount's name sorts anywhere)
                    if known is not None and (known is not NOT_LOG or verdict is NOT_LOG):
                        continue
                    if gen is None:
                        self._remember_unknown_gen(kdev, st.st_ino, verdict)
                    else:
                        self._remember((kdev, gen, st.st_ino), verdict)
                    judged += known is None
                elif stat.S_ISSOCK(st.st_mode):
                    if journald is None:
                        journald = self._journald_set()
                    key = (kdev, 0, st.st_ino)
                    if st.st_ino in journald and key not in self._inodes:
                        self._remember(key, "journald:" + journald[st.st_ino])
                        judged += 1
        return judged

    def _open_for_writing(self, pid, fd):
        """Only a writer's name for a file judges it at replay. A name anyone can make
        for another's file (a bind mount in a user namespace, held by an O_PATH fd, needs
        no permission on it) must not make a log "not a log" for its writers; opening it
        for writing needs write permission on the file itself. Unknown: not judged here
        (the writer's own fd judges it at drain)."""
        try:
            flags = self.procfs.fd_flags(pid, fd)
        except (HostLookupError, HostResourceError):
            return False
        if flags is None or flags & O_PATH:
            return False
        return flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)

    def start_drain(self):
        self._journald = None
        self.refresh_channels()
        if self._runtime_pipes is not None:
            self._runtime_pipes.start_drain()

    def destination(self, count):
        """Path of a counted (pid, fd, inode), NOT_LOG, or UNRESOLVED."""
        if count.kind == KIND_UNIX_DGRAM:       # matched in the kernel: ino is the channel
            channels = self.rules.channels()
            return channels[count.ino] if count.ino < len(channels) else UNRESOLVED
        key = (count.dev, count.gen, count.ino)
        replayed = None
        known = self._inodes.get(key)
        if known is not None:
            self._inodes.move_to_end(key)
            return known
        if count.kind == KIND_UNIX_SOCKET:
            verdict = self._judge_socket(count)
        elif count.kind == KIND_PIPE:
            # judged by its reader; a pipe no runtime reads (a shell pipeline, one whose
            # ends are gone) is not a log, and not a loss either
            pipe = None
            if self._runtime_pipes is not None and self._maybe_container(count.tgid):
                pipe = self._runtime_pipes.lookup(count.dev, count.ino)
            verdict = pipe.label if pipe else NOT_LOG
        else:
            path = self._fd_path(count.tgid, count.fd, count.dev, count.gen, count.ino)
            # judged at replay with its generation unknown: this is that file (it was open
            # then); the entry is used up, a later key of (dev, ino) is another file
            replayed = self._unknown_gen.pop((count.dev, count.ino), None)
            if path is not None:
                verdict = self._judge_path(path)
            elif replayed is not None:
                verdict = replayed
            else:
                return UNRESOLVED
        if verdict is not UNRESOLVED:
            # a replayed verdict the kernel already holds under gen 0 (its generation was
            # unreadable) is not sent again when the kernel's key has gen 0 too
            told = replayed is not None and count.gen == 0 and verdict == replayed
            self._remember(key, verdict, tell=not told)
        return verdict

    def _maybe_container(self, pid):
        """Can pid's pipe be a container's stdout? Only a process in a container's cgroup
        writes one (docker, podman, containerd, CRI-O: exec'd processes too), so every
        other writer's pipe (shells, daemons' wake-up pipes) is judged without scanning
        the runtimes' fds. A process already gone may have been a container's: scan."""
        try:
            lines = self.procfs.cgroup(pid)
        except HostLookupError:
            return True
        return container_id_from_cgroup(lines) is not None

    def _journald_set(self):
        """{socket inode: journald socket path it is connected to}."""
        clients = {}
        for path in self.rules.journald_sockets:
            try:
                for ino in self._journald_clients((path,)):
                    clients.setdefault(ino, path)
            except EnvironmentProblem as e:
                if not self._journald_warned:
                    log.warning("journald stream clients cannot be identified: %s", e)
                    self._journald_warned = True
        return clients

    def _judge_socket(self, count):
        if self._journald is None:
            self._journald = self._journald_set()
        if count.ino in self._journald:
            return "journald:" + self._journald[count.ino]
        # a closed socket is not listed either: only a live one proves "not journald"
        return NOT_LOG if os.path.exists(os.path.join(self.procfs.root, str(count.tgid))) \
            else UNRESOLVED
