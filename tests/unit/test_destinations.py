"""DestinationResolver (collector/host/destinations.py) on a fake /proc built per test:
/proc/PID/fd/N and /proc/PID/cwd are symlinks to real files and directories in tmp_path,
so stat() through them sees real inodes, as through the real /proc."""
import os
import socket

import pytest

from collector.host.destinations import (

    KIND_PIPE,

    KIND_REGULAR,

    KIND_UNIX_DGRAM,

    KIND_UNIX_SOCKET,

    NOT_LOG,

    UNRESOLVED,

    DestinationResolver,

    inode_generation,

)
from collector.host.logdest import LogRules
from collector.host.procfs import ProcFS
from collector.probes.logwrite_counts import OpenEvent, WriteCount

JOURNAL = "/run/systemd/journal/stdout"
O_WRONLY_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
O_PATH = 0o10000000


class FakeProc:
    def __init__(self, root):
        self.root = root
        root.mkdir()

    def process(self, pid, cwd=None, fds=None):
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True, exist_ok=True)
        if cwd is not None:
            os.symlink(cwd, d / "cwd")
        for fd, target in (fds or {}).items():
            self.set_fd(pid, fd, target)
        return d

    def set_fd(self, pid, fd, target, flags=O_WRONLY_APPEND):
        """flags: what /proc/PID/fdinfo/FD says (default: opened for writing, as a log)."""
        link = self.root / str(pid) / "fd" / str(fd)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)
        info = self.root / str(pid) / "fdinfo"
        info.mkdir(exist_ok=True)
        (info / str(fd)).write_text(f"pos:\t0\nflags:\t{flags:07o}\nmnt_id:\t30\n")

    def close_fd(self, pid, fd):
        os.unlink(self.root / str(pid) / "fd" / str(fd))
        (self.root / str(pid) / "fdinfo" / str(fd)).unlink(missing_ok=True)

    def exit(self, pid):
        d = self.root / str(pid)
        for p in sorted(d.rglob("*"), key=lambda p: -len(p.parts)):
            p.unlink() if p.is_symlink() or p.is_file() else p.rmdir()
        d.rmdir()


class Verdicts:
    """The set_verdict callback: records what the kernel would be told."""

    def __init__(self):
        self.calls = []

    def __call__(self, dev, gen, ino, is_log):
        self.calls.append((dev, gen, ino, is_log))


class Journald:
    """journald_clients(paths) -> socket inodes, recording its calls."""

    def __init__(self, inodes=(), by_path=None):
        self.inodes, self.by_path, self.calls = set(inodes), by_path, []

    def __call__(self, paths):
        self.calls.append(tuple(paths))
        if self.by_path is not None:
            return set().union(*(self.by_path.get(p, set()) for p in paths))
        return set(self.inodes)


def kernel_id(path):
    """(dev, gen, ino) of a file as the kernel names it: dev is MKDEV(major, minor)."""
    st = os.stat(path)
    return (os.major(st.st_dev) << 20) | os.minor(st.st_dev), inode_generation(str(path)), st.st_ino


def open_event(pid, fd, ident, path, kind=KIND_REGULAR):
    dev, gen, ino = ident
    return OpenEvent(tgid=pid, fd=fd, dev=dev, ino=ino, gen=gen, kind=kind, cgroup_id=1,
                     comm="app", path=str(path))


def count(pid, fd, ident, kind=KIND_REGULAR):
    dev, gen, ino = ident
    return WriteCount(tgid=pid, fd=fd, dev=dev, ino=ino, gen=gen, kind=kind, writes=3,
                      bytes=300, cgroup_id=1, comm="app")


@pytest.fixture
def env(tmp_path):
    class Env:
        pass

    e = Env()
    e.tmp = tmp_path
    e.logdir = tmp_path / "var" / "log"
    e.logdir.mkdir(parents=True)
    e.home = tmp_path / "home"
    e.home.mkdir()
    e.proc = FakeProc(tmp_path / "proc")
    e.rules = LogRules(dirs=(str(e.logdir),), journald_sockets=(JOURNAL,))
    e.verdicts = Verdicts()
    e.journald = Journald()

    def resolver(**kw):
        return DestinationResolver(ProcFS(root=str(e.proc.root)), e.rules, e.verdicts,
                                   e.journald, **kw)

    e.resolver = resolver

    def file(path, text="x"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    e.file = file
    return e


# -- open events ----------------------------------------------------------------------------

def test_open_event_absolute_log_path_is_judged_log_once(env):
    log = env.file(env.logdir / "app" / "app.txt")
    ident = kernel_id(log)
    env.proc.process(100, cwd=env.home, fds={5: log})
    r = env.resolver()
    r.note_open(open_event(100, 5, ident, log))
    assert env.verdicts.calls == [(*ident, True)]
    assert r.destination(count(100, 5, ident)) == str(log)
    assert env.verdicts.calls == [(*ident, True)]          # known: the kernel is not told again


def test_open_event_glob_log_anywhere(env):
    log = env.file(env.home / "srv" / "worker.log.3")
    ident = kernel_id(log)
    r = env.resolver()
    r.note_open(open_event(100, 5, ident, log))
    assert env.verdicts.calls == [(*ident, True)]


def test_open_event_non_log_path_is_not_log(env):
    data = env.file(env.home / "data.db")
    ident = kernel_id(data)
    r = env.resolver()
    r.note_open(open_event(100, 5, ident, data))
    assert env.verdicts.calls == [(*ident, False)]
    assert r.destination(count(100, 5, ident)) is NOT_LOG
    assert len(env.verdicts.calls) == 1


def test_open_event_needs_no_process(env):
    # short-lived writers: an absolute path is judged without looking at /proc at all
    log = env.file(env.logdir / "cron.txt")
    ident = kernel_id(log)
    r = env.resolver()
    r.note_open(open_event(999, 3, ident, log))
    assert env.verdicts.calls == [(*ident, True)]


def test_first_write_without_a_path_resolved_through_the_fd_link(env):
    # the kernel could not read the names (SW_PATH_UNKNOWN: ""): the live writer's fd tells
    log = env.file(env.logdir / "deep.log")
    ident = kernel_id(log)
    env.proc.process(100, cwd=env.home, fds={5: log})
    forgot = []
    r = env.resolver(forget_pending=lambda *k: forgot.append(k))
    r.note_open(open_event(100, 5, ident, ""))
    assert env.verdicts.calls == [(*ident, True)] and forgot == []


def test_first_write_without_a_path_of_a_gone_writer_takes_back_the_pending_mark(env):
    # nothing to judge by: the kernel's mark goes, so a later first write asks again
    log = env.file(env.logdir / "gone.log")
    ident = kernel_id(log)
    forgot = []
    r = env.resolver(forget_pending=lambda *k: forgot.append(k))
    r.note_open(open_event(999, 5, ident, ""))
    assert env.verdicts.calls == [] and forgot == [ident]


def test_relative_path_resolved_through_the_fd_link(env):
    log = env.file(env.logdir / "app.out")
    ident = kernel_id(log)
    # cwd is elsewhere: only /proc/PID/fd/5 can tell this "app.out" is the one in the log dir
    env.proc.process(100, cwd=env.home, fds={5: log})
    r = env.resolver()
    r.note_open(open_event(100, 5, ident, "app.out"))
    assert env.verdicts.calls == [(*ident, True)]
    assert r.destination(count(100, 5, ident)) == str(log)


def test_relative_path_resolved_against_cwd_when_fd_is_gone(env):
    log = env.file(env.logdir / "sub" / "app.out")
    ident = kernel_id(log)
    env.proc.process(100, cwd=env.logdir, fds={})
    r = env.resolver()
    r.note_open(open_event(100, 5, ident, "./sub/../sub/app.out"))
    assert env.verdicts.calls == [(*ident, True)]
    assert r.destination(count(100, 5, ident)) == str(log)      # normalised


def test_relative_path_ignores_fd_link_to_another_inode(env):
    # fd 5 was closed and reused for another file before the event was handled
    log = env.file(env.logdir / "app.out")
    other = env.file(env.home / "app.out")
    ident = kernel_id(log)
    env.proc.process(100, cwd=env.logdir, fds={5: other})
    r = env.resolver()
    r.note_open(open_event(100, 5, ident, "app.out"))
    assert env.verdicts.calls == [(*ident, True)]               # from cwd, not from fd 5
    assert r.destination(count(100, 5, ident)) == str(log)


def test_relative_non_log_path_against_cwd(env):
    f = env.file(env.home / "out.txt")
    ident = kernel_id(f)
    env.proc.process(100, cwd=env.home, fds={})
    r = env.resolver()
    r.note_open(open_event(100, 7, ident, "out.txt"))
    assert env.verdicts.calls == [(*ident, False)]


def test_relative_log_name_of_gone_process_is_not_judged_not_log(env):
    log = env.file(env.logdir / "app.log")
    ident = kernel_id(log)
    r = env.resolver()
    r.note_open(open_event(4321, 5, ident, "app.log"))          # no /proc/4321 any more
    assert (*ident, False) not in env.verdicts.calls


def test_same_inode_is_judged_once(env):
    log = env.file(env.logdir / "shared.txt")
    ident = kernel_id(log)
    env.proc.process(100, cwd=env.home, fds={5: log})
    env.proc.process(200, cwd=env.home, fds={9: log})
    r = env.resolver()
    r.note_open(open_event(100, 5, ident, log))
    r.note_open(open_event(200, 9, ident, log))
    r.note_open(open_event(100, 6, ident, "shared.txt"))
    assert env.verdicts.calls == [(*ident, True)]


def test_reused_inode_number_with_new_generation_is_judged_again(env):
    old = env.file(env.logdir / "app.txt")
    dev, gen, ino = kernel_id(old)
    new_gen = (gen + 1) & 0xFFFFFFFF
    r = env.resolver()
    r.note_open(open_event(100, 5, (dev, gen, ino), old))
    # the log was deleted; a data file got the same inode number with a new generation
    r.note_open(open_event(100, 5, (dev, new_gen, ino), env.home / "data.bin"))
    assert env.verdicts.calls == [(dev, gen, ino, True), (dev, new_gen, ino, False)]
    assert r.destination(count(100, 5, (dev, gen, ino))) == str(old)
    assert r.destination(count(100, 5, (dev, new_gen, ino))) is NOT_LOG


def test_same_inode_number_on_another_device_is_judged_separately(env):
    log = env.file(env.logdir / "app.txt")
    dev, gen, ino = kernel_id(log)
    other_dev = dev + (1 << 20)
    r = env.resolver()
    r.note_open(open_event(100, 5, (dev, gen, ino), log))
    r.note_open(open_event(100, 6, (other_dev, gen, ino), env.home / "x.bin"))
    assert [c[3] for c in env.verdicts.calls] == [True, False]


# -- drain-time resolution ---------------------------------------------------------------------

def test_drain_resolves_unjudged_inode_through_proc_fd(env):
    log = env.file(env.logdir / "old.txt")
    ident = kernel_id(log)
    env.proc.process(100, cwd=env.home, fds={3: log})
    r = env.resolver()
    r.start_drain()
    assert r.destination(count(100, 3, ident)) == str(log)
    assert env.verdicts.calls == [(*ident, True)]
    env.proc.exit(100)
    assert r.destination(count(100, 3, ident)) == str(log)     # remembered
    assert len(env.verdicts.calls) == 1


def test_drain_non_log_through_proc_fd(env):
    data = env.file(env.home / "db.bin")
    ident = kernel_id(data)
    env.proc.process(100, cwd=env.home, fds={3: data})
    r = env.resolver()
    assert r.destination(count(100, 3, ident)) is NOT_LOG
    assert env.verdicts.calls == [(*ident, False)]


def test_drain_fd_now_pointing_at_another_file_is_unresolved(env):
    log = env.file(env.logdir / "app.txt")
    other = env.file(env.logdir / "other.txt")
    ident = kernel_id(log)
    env.proc.process(100, cwd=env.home, fds={3: other})        # fd 3 was closed and reused
    r = env.resolver()
    assert r.destination(count(100, 3, ident)) is UNRESOLVED
    assert env.verdicts.calls == []                            # nothing misattributed or sent
    # and it is not remembered: once fd 3 shows the file again, it resolves
    env.proc.set_fd(100, 3, log)
    assert r.destination(count(100, 3, ident)) == str(log)


def test_drain_closed_fd_is_unresolved(env):
    log = env.file(env.logdir / "app.txt")
    env.proc.process(100, cwd=env.home, fds={})
    r = env.resolver()
    assert r.destination(count(100, 3, kernel_id(log))) is UNRESOLVED
    assert env.verdicts.calls == []


def test_drain_gone_process_is_unresolved(env):
    log = env.file(env.logdir / "app.txt")
    r = env.resolver()
    assert r.destination(count(4242, 3, kernel_id(log))) is UNRESOLVED
    assert env.verdicts.calls == []


def test_drain_pseudo_file_target_is_unresolved(env):
    # a regular-file count whose fd now shows a pipe: not a path, cannot be judged
    env.proc.process(100, cwd=env.home, fds={3: "pipe:[31337]"})
    r = env.resolver()
    assert r.destination(count(100, 3, (1, 0, 31337))) is UNRESOLVED


def test_drain_fd_to_same_inode_number_on_other_device_is_unresolved(env):
    log = env.file(env.logdir / "app.txt")
    dev, gen, ino = kernel_id(log)
    env.proc.process(100, cwd=env.home, fds={3: log})
    r = env.resolver()
    assert r.destination(count(100, 3, (dev + (1 << 20), gen, ino))) is UNRESOLVED


def test_drain_fd_to_reused_inode_with_other_generation_is_unresolved(env):
    log = env.file(env.logdir / "app.txt")
    dev, gen, ino = kernel_id(log)
    if gen == 0:
        pytest.skip("this filesystem does not report i_generation")
    env.proc.process(100, cwd=env.home, fds={3: log})
    r = env.resolver()
    assert r.destination(count(100, 3, (dev, (gen + 1) & 0xFFFFFFFF, ino))) is UNRESOLVED


# -- unix sockets (journald) --------------------------------------------------------------------

def test_socket_in_journald_set_is_journald(env):
    env.journald.inodes = {48121}
    env.proc.process(100, cwd=env.home, fds={1: "socket:[48121]"})
    r = env.resolver()
    r.start_drain()
    ident = (8, 0, 48121)
    assert r.destination(count(100, 1, ident, KIND_UNIX_SOCKET)) == f"journald:{JOURNAL}"
    assert env.verdicts.calls == [(*ident, True)]
    assert env.journald.calls == [(JOURNAL,)]


def test_journald_set_is_fetched_once_per_drain(env):
    env.journald.inodes = {1, 2}
    env.proc.process(100, cwd=env.home)
    r = env.resolver()
    r.start_drain()
    r.destination(count(100, 1, (8, 0, 1), KIND_UNIX_SOCKET))
    r.destination(count(100, 2, (8, 0, 2), KIND_UNIX_SOCKET))
    r.destination(count(100, 3, (8, 0, 3), KIND_UNIX_SOCKET))
    assert len(env.journald.calls) == 1
    r.start_drain()
    r.destination(count(100, 4, (8, 0, 4), KIND_UNIX_SOCKET))
    assert len(env.journald.calls) == 2


def test_socket_not_in_set_with_live_process_is_not_log(env):
    env.journald.inodes = {1}
    env.proc.process(100, cwd=env.home, fds={4: "socket:[777]"})
    r = env.resolver()
    ident = (8, 0, 777)
    assert r.destination(count(100, 4, ident, KIND_UNIX_SOCKET)) is NOT_LOG
    assert env.verdicts.calls == [(*ident, False)]


def test_socket_not_in_set_of_gone_process_is_unresolved(env):
    env.journald.inodes = {1}
    r = env.resolver()
    assert r.destination(count(4242, 4, (8, 0, 777), KIND_UNIX_SOCKET)) is UNRESOLVED
    assert env.verdicts.calls == []


def test_journald_label_names_the_socket_the_client_is_connected_to(env):
    other = "/run/user/1000/journal/stdout"
    env.rules = LogRules(dirs=(str(env.logdir),), journald_sockets=(JOURNAL, other))
    env.journald.by_path = {JOURNAL: {1}, other: {2}}
    env.proc.process(100, cwd=env.home)
    r = env.resolver()
    assert r.destination(count(100, 1, (8, 0, 1), KIND_UNIX_SOCKET)) == f"journald:{JOURNAL}"
    assert r.destination(count(100, 2, (8, 0, 2), KIND_UNIX_SOCKET)) == f"journald:{other}"


# -- LRU bound ----------------------------------------------------------------------------------

def test_lru_bound_evicts_least_recently_used(env):
    files = [env.file(env.logdir / f"f{i}.txt") for i in range(4)]
    ids = [kernel_id(f) for f in files]
    r = env.resolver(max_inodes=2)
    r.note_open(open_event(100, 5, ids[0], files[0]))
    r.note_open(open_event(100, 6, ids[1], files[1]))
    assert r.destination(count(100, 5, ids[0])) == str(files[0])   # touch 0: now 1 is oldest
    r.note_open(open_event(100, 7, ids[2], files[2]))              # evicts 1
    assert len(r._inodes) == 2
    assert set(r._inodes) == {ids[0], ids[2]}
    assert len(env.verdicts.calls) == 3
    r.note_open(open_event(100, 6, ids[1], files[1]))              # forgotten: judged again
    assert env.verdicts.calls[-1] == (*ids[1], True) and len(env.verdicts.calls) == 4
    assert len(r._inodes) == 2


def test_lru_bound_holds_under_many_inodes(env):
    r = env.resolver(max_inodes=5)
    for ino in range(1, 101):
        r.note_open(open_event(100, 5, (8, 0, ino), env.home / f"x{ino}.bin"))
    assert len(r._inodes) == 5
    assert set(r._inodes) == {(8, 0, ino) for ino in range(96, 101)}
    assert len(env.verdicts.calls) == 100


# -- replay of files already open ------------------------------------------------------------

@pytest.fixture
def journal_socket(env, monkeypatch):
    """A unix socket bound in the filesystem: stat() through an fd link sees S_IFSOCK."""
    monkeypatch.chdir(env.tmp)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("j.sock")
    yield env.tmp / "j.sock"
    s.close()


def test_replay_judges_every_open_file(env, journal_socket):
    log = env.file(env.logdir / "app.txt")
    data = env.file(env.home / "data.db")
    other_sock = env.tmp / "o.sock"
    s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s2.bind(str(other_sock))
    env.journald.inodes = {os.stat(journal_socket).st_ino}
    env.proc.process(100, cwd=env.home, fds={0: "/dev/null", 1: journal_socket, 3: log,
                                             4: "pipe:[31337]", 5: data, 6: other_sock})
    env.proc.process(200, cwd=env.home, fds={7: log})              # the same log, again
    (env.proc.root / "300").mkdir()                                # no fd dir: skipped
    (env.proc.root / "self").mkdir()                               # not a pid
    r = env.resolver()
    judged = r.replay()
    s2.close()

    def kdev(path):
        st = os.stat(path)
        return (os.major(st.st_dev) << 20) | os.minor(st.st_dev)

    st_j = os.stat(journal_socket)
    expected = {
        (*kernel_id(log), True),
        (*kernel_id(data), False),
        (kdev(journal_socket), 0, st_j.st_ino, True),
    }
    assert set(env.verdicts.calls) == expected
    assert judged == 3
    assert len(env.verdicts.calls) == 3                            # the shared log once
    assert env.journald.calls == [(JOURNAL,)]
    # the device is the kernel's MKDEV encoding, not stat()'s
    st = os.stat(log)
    assert kernel_id(log)[0] == (os.major(st.st_dev) << 20) | os.minor(st.st_dev)
    # what replay judged is known at drain without /proc
    for pid in (100, 200, 300):
        if (env.proc.root / str(pid) / "fd").exists():
            env.proc.exit(pid)
    assert r.destination(count(100, 3, kernel_id(log))) == str(log)
    assert r.destination(count(100, 5, kernel_id(data))) is NOT_LOG
    assert r.destination(count(100, 1, (kdev(journal_socket), 0, st_j.st_ino),
                               KIND_UNIX_SOCKET)) == f"journald:{JOURNAL}"
    assert len(env.verdicts.calls) == 3


def test_replay_skips_already_judged_inodes(env, monkeypatch):
    import collector.host.destinations as d

    # a generation userspace reads, as on ext4 (on tmpfs, Debian 13's /tmp, it cannot:
    # then replay cannot tell the event's inode from another of that number)
    monkeypatch.setattr(d, "read_generation", lambda path: 7)
    log = env.file(env.logdir / "app.txt")
    env.proc.process(100, cwd=env.home, fds={3: log})
    r = env.resolver()
    dev, _, ino = kernel_id(log)
    r.note_open(open_event(100, 3, (dev, 7, ino), log))
    assert r.replay() == 0
    assert len(env.verdicts.calls) == 1


def test_replay_does_not_judge_sockets_outside_journald(env, journal_socket):
    env.journald.inodes = set()
    env.proc.process(100, cwd=env.home, fds={1: journal_socket})
    r = env.resolver()
    assert r.replay() == 0
    assert env.verdicts.calls == []


def test_replay_judges_a_journald_socket_shared_by_two_fds_once(env, journal_socket):
    env.journald.inodes = {os.stat(journal_socket).st_ino}
    env.proc.process(100, cwd=env.home, fds={1: journal_socket, 2: journal_socket})
    r = env.resolver()
    assert r.replay() == 1
    assert len(env.verdicts.calls) == 1


# -- datagram channels and runtime pipes ----------------------------------------------

def test_channel_table_has_each_path_and_its_symlink_target(env):
    real = env.tmp / "journal-dev-log"
    real.write_text("")
    link = env.tmp / "dev-log"
    os.symlink(real, link)
    env.rules = LogRules(syslog_sockets=(str(link),), journald_native_sockets=("/nonexistent/s",))
    given = []
    r = env.resolver(set_channels=given.append)
    assert r.channel_table() == {str(link): 0, str(real): 0, "/nonexistent/s": 1}
    r.refresh_channels()
    r.refresh_channels()                       # unchanged: the kernel is not told again
    assert given == [r.channel_table()]


def test_datagram_keys_are_named_by_channel_id(env):
    env.rules = LogRules(syslog_sockets=("/dev/log",),
                         journald_native_sockets=("/run/systemd/journal/socket",))
    r = env.resolver()
    assert r.destination(count(1, -1, (0, 0, 1), kind=KIND_UNIX_DGRAM)) == \
        "journald:/run/systemd/journal/socket"
    assert r.destination(count(1, -1, (0, 0, 0), kind=KIND_UNIX_DGRAM)) == "syslog:/dev/log"
    assert r.destination(count(1, -1, (0, 0, 2), kind=KIND_UNIX_DGRAM)) is UNRESOLVED
    assert env.verdicts.calls == []            # judged in the kernel: no verdict


class Pipes:
    def __init__(self, known):
        self.known, self.extra, self.drains = known, None, 0

    def lookup(self, dev, ino):
        return self.known.get((dev, ino))

    def start_drain(self):
        self.drains += 1

    def set_extra(self, extra):
        self.extra = extra


class Piped:
    label = "container:/var/log/pods/ns_pod_uid/app/0.log"


def test_pipes_are_logs_when_a_runtime_reads_them(env):
    pipes = Pipes({(12, 777): Piped()})
    r = env.resolver(runtime_pipes=pipes)
    assert r.destination(count(5, 1, (12, 0, 777), kind=KIND_PIPE)) == Piped.label
    assert r.destination(count(5, 1, (12, 0, 778), kind=KIND_PIPE)) is NOT_LOG   # not a loss
    r.start_drain()
    assert pipes.drains == 1
    r.change_rules(LogRules(runtimes=("my-shim",)))
    assert pipes.extra == ("my-shim",)


def test_pipes_of_writers_outside_containers_are_not_looked_up(env):
    """Only a process in a container's cgroup writes a container's stdout: other writers'
    pipes are judged without scanning the runtimes (the scan reads every process)."""
    class Counting(Pipes):
        lookups = 0

        def lookup(self, dev, ino):
            Counting.lookups += 1
            return super().lookup(dev, ino)

    pipes = Counting({(12, 777): Piped(), (12, 779): Piped()})
    r = env.resolver(runtime_pipes=pipes)
    env.proc.process(6)
    (env.proc.root / "6" / "cgroup").write_text("0::/system.slice/cron.service\n")
    env.proc.process(7)
    (env.proc.root / "7" / "cgroup").write_text(
        "0::/machine.slice/libpod-" + "ab" * 32 + ".scope/container\n")
    assert r.destination(count(6, 1, (12, 0, 777), kind=KIND_PIPE)) is NOT_LOG
    assert Counting.lookups == 0
    assert r.destination(count(7, 1, (12, 0, 779), kind=KIND_PIPE)) == Piped.label
    assert Counting.lookups == 1


# -- replay: names another user can make for a file (issue 23, "also seen") ------------

def test_replay_a_name_held_without_write_access_does_not_judge(env):
    """An unprivileged user can bind-mount root's log over a file of its own in a user
    namespace and hold it by an O_PATH fd (measured: no permission on the log needed);
    /proc shows that fd under the user's name. At a lower pid than the log's writer it
    judged the inode "not a log" at start and at every reload, hiding the service's writes
    until the next. Only fds open for writing judge at replay now."""
    log = env.file(env.logdir / "victim.log")
    alias = env.home / "innocent"       # /proc shows the attacker's fd by its own name
    os.link(log, alias)                 # (a hard link here: the same view as a bind mount)
    env.proc.process(50, cwd=env.home)
    env.proc.set_fd(50, 3, alias, flags=O_PATH | os.O_CLOEXEC)
    env.proc.set_fd(50, 4, alias, flags=os.O_RDONLY)
    env.proc.process(900, cwd=env.home, fds={3: log})               # the writer
    r = env.resolver()
    assert r.replay() == 1
    assert env.verdicts.calls == [(*kernel_id(log), True)]


def test_replay_a_log_name_of_a_writer_wins_over_a_non_log_name(env):
    """Two writers hold one inode under two names (a hard link): pid order no longer
    decides; the log verdict wins, whichever pid comes first."""
    log = env.file(env.logdir / "app.log")
    alias = env.home / "data"
    os.link(log, alias)
    env.proc.process(50, cwd=env.home, fds={3: alias})
    env.proc.process(900, cwd=env.home, fds={3: log})
    r = env.resolver()
    assert r.replay() == 1
    assert env.verdicts.calls == [(*kernel_id(log), False), (*kernel_id(log), True)]
    assert r.destination(count(900, 3, kernel_id(log))) == str(log)


def test_replay_unreadable_fdinfo_is_left_to_the_drain(env):
    log = env.file(env.logdir / "app.log")
    env.proc.process(100, cwd=env.home, fds={3: log})
    (env.proc.root / "100" / "fdinfo" / "3").unlink()
    r = env.resolver()
    assert r.replay() == 0
    assert r.destination(count(100, 3, kernel_id(log))) == str(log)     # the writer's fd


# -- filesystems whose generation userspace cannot read (tmpfs) ---------------------------------

def test_unreadable_generation_is_unknown_not_zero(env, monkeypatch):
    """tmpfs answers FS_IOC_GETVERSION with ENOTTY while its inodes carry a random nonzero
    i_generation in the kernel's keys: a writer's fd still resolves them at drain."""
    import collector.host.destinations as d

    log = env.file(env.logdir / "app.txt")
    dev, _, ino = kernel_id(log)
    monkeypatch.setattr(d, "read_generation", lambda path: None)
    assert d.inode_generation(str(log)) == 0
    env.proc.process(100, cwd=env.home, fds={3: log})
    assert env.resolver().destination(count(100, 3, (dev, 0x9E3779B9, ino))) == str(log)


def test_replay_of_unreadable_generation_names_a_writer_gone_before_the_drain(env, monkeypatch):
    """The file a writer opened before start-up, on tmpfs: replay judges it by (dev, ino)
    with the generation unknown; the writer exits before the drain; its writes, keyed by
    the kernel with the real generation, are its log (they were UNRESOLVED: the replayed
    verdict sat under gen 0, which the kernel never reports)."""
    import collector.host.destinations as d

    log = env.file(env.logdir / "app.txt")
    data = env.file(env.home / "data.db")
    monkeypatch.setattr(d, "read_generation", lambda path: None)
    env.proc.process(100, cwd=env.home, fds={3: log, 4: data})
    r = env.resolver()
    assert r.replay() == 2
    (dev, _, ino), (ddev, _, dino) = kernel_id(log), kernel_id(data)
    # the kernel is told gen 0: right where the filesystem's i_generation is 0
    assert set(env.verdicts.calls) == {(dev, 0, ino, True), (ddev, 0, dino, False)}
    env.proc.exit(100)
    gen = 0x9E3779B9
    assert r.destination(count(100, 3, (dev, gen, ino))) == str(log)
    assert r.destination(count(100, 4, (ddev, 77, dino))) is NOT_LOG
    # the kernel now knows them under their real generation
    assert env.verdicts.calls[-2:] == [(dev, gen, ino, True), (ddev, 77, dino, False)]
    assert r.destination(count(200, 5, (dev, gen, ino))) == str(log)      # cached
    # the replayed entry was that file's: the same inode number with another generation
    # later (the file deleted, the number reused) is another file, not judged by it
    assert r.destination(count(300, 3, (dev, gen + 1, ino))) is UNRESOLVED


def test_replay_of_unreadable_generation_on_a_zero_generation_fs(env, monkeypatch):
    """A filesystem that does not answer the ioctl and whose i_generation is 0 (FUSE,
    vfat): the kernel's key has gen 0, and it is matched too."""
    import collector.host.destinations as d

    log = env.file(env.logdir / "app.txt")
    monkeypatch.setattr(d, "read_generation", lambda path: None)
    env.proc.process(100, cwd=env.home, fds={3: log})
    r = env.resolver()
    assert r.replay() == 1
    env.proc.exit(100)
    dev, _, ino = kernel_id(log)
    assert r.destination(count(100, 3, (dev, 0, ino))) == str(log)
    assert env.verdicts.calls == [(dev, 0, ino, True)]     # told once, at replay


def test_readable_generation_still_tells_a_reused_inode(env, monkeypatch):
    """Where the generation is read (ext4), replay keys by it exactly: a key of the same
    inode number with another generation is not the replayed file."""
    import collector.host.destinations as d

    log = env.file(env.logdir / "app.txt")
    monkeypatch.setattr(d, "read_generation", lambda path: 7)
    env.proc.process(100, cwd=env.home, fds={3: log})
    r = env.resolver()
    assert r.replay() == 1
    env.proc.exit(100)
    dev, _, ino = kernel_id(log)
    assert r.destination(count(100, 3, (dev, 8, ino))) is UNRESOLVED
    assert r.destination(count(100, 3, (dev, 7, ino))) == str(log)


def test_channel_symlinks_resolve_in_the_hosts_root_not_ours(env):
    """A daemon in a container: /dev/log is a symlink in the host's root (reached as
    /proc/1/root) to an absolute path that is not, or is another file, in ours. The target
    is resolved inside the host's root (failed before: realpath in our own root kept
    /dev/log's own path only, so a connected syslog(3) client's datagrams, whose peer
    carries the target, were not counted)."""
    from collector.host.hostroot import HostFiles

    host = env.tmp / "hostroot"
    (host / "dev").mkdir(parents=True)
    (host / "run" / "systemd" / "journal").mkdir(parents=True)
    (host / "run" / "systemd" / "journal" / "dev-log").write_text("")
    os.symlink("/run/systemd/journal/dev-log", host / "dev" / "log")
    (host / "run" / "native").mkdir()
    os.symlink("../systemd/journal/socket", host / "run" / "native" / "sock")
    os.symlink("/loop", host / "loop")
    env.rules = LogRules(syslog_sockets=("/dev/log", "/loop"),
                         journald_native_sockets=("/run/native/sock",))
    r = env.resolver(host_files=HostFiles(str(host)))
    assert r.channel_table() == {"/dev/log": 0, "/run/systemd/journal/dev-log": 0,
                                 "/loop": 1,          # a loop: only the path itself
                                 "/run/native/sock": 2, "/run/systemd/journal/socket": 2}
