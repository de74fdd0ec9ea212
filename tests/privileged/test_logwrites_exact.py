"""Exact log-write counts from real workloads on the running kernel.

Each workload writes a known number of lines; the collector must report exactly that
many writes and bytes for the workload's pid and path, and nothing for non-log targets.
Every case runs on every write hook this kernel offers (raw, tracepoints, fentry) and every
fd walk (conftest: `hook`, `fd_walk`). The datagram channels' exact counts (syslog,
journald's native protocol) are here too, at the end.

One probe is compiled per hook and fd walk for the whole module (conftest's module-scoped
`harness`, extended below), not one per case: under QEMU's software CPU (the Debian 12 VM
of CI) a compile takes ~15-25 s. Each case reads only its own pid's and files' counts, and
`harness.settle()` forgets what came before it. The case that needs its log open before the
probe loads (test_file_opened_before_start_and_after) has its writers started before the
harness is built and run as its first act.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types

import pytest

from tests.owncgroup import TIME_SCALE
from tests.privileged.conftest import TEST_RUN as RUN
from tests.support.unixrecv import Receiver

pytestmark = pytest.mark.privileged
LINE = b"0123456789abcdef0123456789abcde\n"   # 32 bytes


def py(code, *args, **kw):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], **kw)


def test_fast_writer_100k_lines(harness, tmp_path):
    log = tmp_path / "fast.log"
    harness.settle()
    p = py("""
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        line = b"x" * 47 + b"\\n"
        for _ in range(100000):
            os.write(fd, line)
        """, log)
    assert p.wait() == 0
    got = harness.for_path(harness.collect(), str(log))
    assert got[p.pid][:2] == [100000, 100000 * 48]
    assert log.stat().st_size == 100000 * 48


def mount_tmpfs(mnt):
    """tmpfs gives each inode a random i_generation that userspace cannot read
    (FS_IOC_GETVERSION: ENOTTY), while the kernel keys inodes by it."""
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "surgewatch-test",
                    str(mnt)], check=True)


def umount(mnt):
    if subprocess.run(["umount", str(mnt)]).returncode:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


# where test_file_opened_before_start_and_after's logs live: a directory as tmp_path has it
# (ext4 here, tmpfs where /tmp is one, as on Debian 13), and a tmpfs of the test's own on
# every host (mount_tmpfs)
LOG_DIRS = ("tmp_path", "tmpfs")


@pytest.fixture(scope="module")
def opened_before_start(hook, fd_walk, tmp_path_factory):
    """Writers whose logs are open before this module's harness loads its probe (one per
    LOG_DIRS entry), waiting to be told to write. The harness below is built after them and
    sets them going before anything else drains it."""
    if hook == "fentry" and fd_walk != "btf":
        pytest.skip("the fentry path walks no fd table: one fd_walk is enough")
    base = tmp_path_factory.mktemp(f"opened-before-{hook}-{fd_walk}")
    dirs = {"tmp_path": base / "dir", "tmpfs": base / "tmpfs"}
    dirs["tmp_path"].mkdir()
    mount_tmpfs(dirs["tmpfs"])
    runs = {}
    state = types.SimpleNamespace(runs=runs, totals=None)
    try:
        for name in LOG_DIRS:
            before, after = dirs[name] / "before.log", dirs[name] / "after.log"
            p = py("""
                import os, sys
                fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                print("open", flush=True)
                sys.stdin.readline()                      # wait until the collector is attached
                for _ in range(700):
                    os.write(fd, b"early line\\n")
                fd2 = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                for _ in range(300):
                    os.write(fd2, b"late\\n")
                """, before, after, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            runs[name] = {"p": p, "before": str(before), "after": str(after),
                          "opened": p.stdout.readline(), "returncode": None}
        yield state
    finally:
        for run in runs.values():
            if run["p"].poll() is None:
                run["p"].kill()
            run["p"].wait()
        umount(dirs["tmpfs"])


@pytest.fixture(scope="module")
def harness(opened_before_start, harness):
    """conftest's harness (one probe compiled per hook and fd walk for the whole module:
    under QEMU's software CPU a compile is ~15-25 s), built after opened_before_start's
    writers opened their logs. Its first act, before any test drains it, is theirs: each is
    told to write and is gone before the drain (no /proc/PID/fd), as a collector of
    test_file_opened_before_start_and_after's own saw it when it compiled one per case."""
    for run in opened_before_start.runs.values():
        if run["opened"] == b"open\n":
            run["p"].stdin.write(b"go\n")
            run["p"].stdin.close()
            run["returncode"] = run["p"].wait()
    opened_before_start.totals = harness.collect()
    return harness


@pytest.mark.parametrize("log_dir", LOG_DIRS)
def test_file_opened_before_start_and_after(log_dir, opened_before_start, harness):
    """A writer whose log was open before the probe loaded is counted like a new one, also
    when the writer is gone before the drain (only the start-up replay named its file).
    The workload ran as the module's harness was built (fixtures above): log opened, probe
    loaded, 700 lines to it and 300 to a log opened after, writer gone, then the first
    drain."""
    run, totals = opened_before_start.runs[log_dir], opened_before_start.totals
    assert run["opened"] == b"open\n"
    assert run["returncode"] == 0                  # gone before the drain: no /proc/PID/fd
    pid = run["p"].pid
    assert harness.for_path(totals, run["before"])[pid][:2] == [700, 700 * 11]
    assert harness.for_path(totals, run["after"])[pid][:2] == [300, 300 * 5]


def test_short_lived_process_keeps_its_name(harness, tmp_path, workload_bin):
    """500 lines then exit within 50 ms: gone before the drain, still counted and named."""
    log = tmp_path / "short.log"
    exe = workload_bin("logwriter")
    harness.settle()
    t0 = time.monotonic()
    p = subprocess.Popen([exe, str(log), "500", "32"])
    assert p.wait() == 0
    lifetime = time.monotonic() - t0
    assert lifetime < 0.05 * TIME_SCALE, f"workload lived {lifetime * 1000:.1f} ms"
    assert not os.path.exists(f"/proc/{p.pid}")
    got = harness.for_path(harness.collect(), str(log))
    writes, nbytes, comm, service = got[p.pid]
    assert (writes, nbytes) == (500, 500 * 32)
    assert comm == "logwriter"
    assert service  # systemd unit, container or comm: never empty or "[unknown]"
    assert "unknown" not in service


@pytest.fixture
def one_fd_walk(fd_walk):
    """Before the harness (no compile for a case that is skipped): the walk from the file
    up its dentries is the same whichever fd walk found the file."""
    if fd_walk != "btf":
        pytest.skip("the dentry walk does not depend on the fd walk: one is enough")


def test_gone_writer_named_across_a_mount_of_its_own(one_fd_walk, harness, tmp_path,
                                                      workload_bin):
    """A writer in a mount namespace of its own writes 300 lines to a file on a tmpfs
    mounted there, and is gone (with its namespace and mount) before the drain: no /proc
    can name the file. Named all the same, from the dentries read at its first write,
    across the mount (tmpfs root -> where it was mounted), as the writer saw the path."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = mnt / "sub" / "app.log"
    exe = workload_bin("logwriter")
    harness.settle()
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f'mount -t tmpfs none "{mnt}" && mkdir "{mnt}/sub" && '
                        f'exec "{exe}" "{log}" 300 32'], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert not log.exists()                 # the tmpfs went with the namespace
    got = harness.for_path(harness.collect(), str(log))
    assert [(w, n, comm) for w, n, comm, _svc in got.values()] == [(300, 300 * 32,
                                                                     "logwriter")]


FLOOD = """
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    fd = os.open(f"{d}/\\x1b[31m{i}\\n.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"x\\n")
    os.close(fd)
"""


def test_first_write_flood_by_nobody_hides_no_other_writer(one_fd_walk, harness, tmp_path):
    """nobody (setpriv) writes once to each of 3,000 new files named with escape sequences,
    each a first write that sends an event (3,000 x 568 bytes: more than the ring buffer
    holds before userspace reads it). A victim writing 200 lines to its own new log
    meanwhile is counted exactly and named: an event lost to the full ring leaves no
    pending mark, so the victim is judged from /proc at the drain."""
    base = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(base, 0o755)
        hostile = os.path.join(base, "nobody")
        os.mkdir(hostile)
        os.chown(hostile, 65534, 65534)
        log = tmp_path / "victim.log"
        harness.settle()
        flood = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                  "/usr/bin/python3", "-c", FLOOD, hostile, "3000"])
        victim = py("""
            import os, sys
            fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            for _ in range(200):
                os.write(fd, b"0123456789abcdef0123456789abcde\\n")
            print("done", flush=True)
            sys.stdin.read()
            """, log, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert victim.stdout.readline() == "done\n"
            assert flood.wait(timeout=120) == 0
            assert len(os.listdir(hostile)) == 3000
            got = harness.for_path(harness.collect(), str(log))
            assert {pid: (w, n) for pid, (w, n, _c, _s) in got.items()} == \
                {victim.pid: (200, 200 * 32)}
        finally:
            victim.stdin.close()
            victim.wait(timeout=30)
    finally:
        shutil.rmtree(base)


def test_multithreaded_writer(harness, tmp_path):
    log = tmp_path / "threads.log"
    harness.settle()
    p = py("""
        import os, sys, threading
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        def work(n):
            for _ in range(n):
                os.write(fd, b"thread line\\n")
        ts = [threading.Thread(target=work, args=(2500,)) for _ in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        """, log)
    assert p.wait() == 0
    got = harness.for_path(harness.collect(), str(log))
    assert got[p.pid][:2] == [20000, 20000 * 12]


def test_forked_child_shares_parents_log_fd(harness, tmp_path):
    log = tmp_path / "fork.log"
    harness.settle()
    p = py("""
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(100):
            os.write(fd, b"parent\\n")
        child = os.fork()
        if child == 0:
            for _ in range(250):
                os.write(fd, b"child!\\n")
            os._exit(0)
        os.waitpid(child, 0)
        print(child, flush=True)
        for _ in range(50):
            os.write(fd, b"parent\\n")
        """, log, stdout=subprocess.PIPE)
    child_pid = int(p.stdout.readline())
    assert p.wait() == 0
    got = harness.for_path(harness.collect(), str(log))
    assert got[p.pid][:2] == [150, 150 * 7]
    assert got[child_pid][:2] == [250, 250 * 7]


def test_fd_reused_for_non_log_file_is_not_counted(harness, tmp_path):
    log, data = tmp_path / "reuse.log", tmp_path / "data.bin"
    harness.settle()
    p = py("""
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(400):
            os.write(fd, b"log\\n")
        os.close(fd)
        fd2 = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        assert fd2 == fd, (fd, fd2)               # the same number, another file
        for _ in range(900):
            os.write(fd2, b"data\\n")
        fd3 = os.dup2(os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND), 40)
        for _ in range(10):
            os.write(40, b"dup\\n")
        """, log, data)
    assert p.wait() == 0
    totals = harness.collect()
    got = harness.for_path(totals, str(log))
    assert got[p.pid][:2] == [410, 400 * 4 + 10 * 4]
    assert harness.for_path(totals, str(data)) == {}


def test_log_and_dev_null_only_log_counts(harness, tmp_path):
    log = tmp_path / "mixed.log"
    harness.settle()
    p = py("""
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open("/dev/null", os.O_WRONLY)
        r, w = os.pipe()
        for i in range(3000):
            os.write(null, b"noise\\n")
            if i % 10 == 0:
                os.write(fd, b"signal\\n")
        os.writev(fd, [b"a", b"bc", b"\\n"])      # the other write-family calls count too
        os.pwrite(fd, b"pw\\n", 0)
        os.pwritev(fd, [b"p", b"v\\n"], 0)
        os.pwritev(fd, [b"p2", b"\\n"], 0, os.RWF_APPEND)   # pwritev2
        for _ in range(5):
            os.write(w, b"to a pipe\\n")
        """, log)
    assert p.wait() == 0
    totals = harness.collect()
    got = harness.for_path(totals, str(log))
    assert got[p.pid][:2] == [300 + 4, 300 * 7 + 4 + 3 + 3 + 3]
    assert {path for (pid, path) in totals if pid == p.pid} == {str(log)}


def test_journald_stream_socket_counts_as_log(harness, tmp_path):
    """stdout connected to journald's stream socket is a log destination; other sockets not."""
    from tests.privileged.conftest import TEST_RUN

    os.makedirs(TEST_RUN, exist_ok=True)
    path = f"{TEST_RUN}/journal.sock"
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other_path = str(tmp_path / "other.sock")
    other.bind(other_path)
    other.listen(8)
    received = []

    def drain(s):
        conn, _ = s.accept()
        while data := conn.recv(65536):
            received.append(len(data))
        conn.close()

    threads = [threading.Thread(target=drain, args=(s,), daemon=True) for s in (srv, other)]
    [t.start() for t in threads]
    harness.settle()
    p = py("""
        import os, socket, sys
        j = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); j.connect(sys.argv[1])
        o = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); o.connect(sys.argv[2])
        os.dup2(j.fileno(), 1)                     # as systemd hands a service its stdout
        for _ in range(123):
            os.write(1, b"to journald\\n")
        for _ in range(77):
            o.send(b"elsewhere\\n")
        print("done", file=sys.stderr, flush=True)
        sys.stdin.readline()                       # stay alive until drained
        """, path, other_path, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stderr.readline() == b"done\n"
    totals = harness.collect()
    p.stdin.close()
    p.wait()
    srv.close()
    other.close()
    got = harness.for_path(totals, f"journald:{path}")
    assert got[p.pid][:2] == [123, 123 * 12]
    assert {path for (pid, path) in totals if pid == p.pid} == {f"journald:{path}"}


def test_service_from_systemd_style_cgroup(harness, tmp_path):
    """A process in a cgroup named like a systemd unit is reported as that service."""
    from collector.host.cgroups import cgroup2_mount

    found = cgroup2_mount()
    assert found, "no cgroup2 hierarchy mounted"
    # named by our pid: a second suite running beside this one (the same fixed name) removed
    # the cgroup before this one's drain, and the exited writer went unnamed
    unit = f"sw-exact-{os.getpid()}.service"
    cg = os.path.join(found[0], f"surgewatch-test-{os.getpid()}.slice", unit)
    os.makedirs(cg, exist_ok=True)
    log = tmp_path / "svc.log"
    harness.settle()
    try:
        p = py("""
            import os, sys
            sys.stdin.readline()
            fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            for _ in range(321):
                os.write(fd, b"svc\\n")
            """, log, stdin=subprocess.PIPE)
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(p.pid))
        p.stdin.write(b"go\n")
        p.stdin.close()
        assert p.wait() == 0
        got = harness.for_path(harness.collect(), str(log))
        writes, nbytes, comm, service = got[p.pid]
        assert (writes, nbytes) == (321, 321 * 4)
        assert service == unit
    finally:
        for d in (cg, os.path.dirname(cg)):
            try:
                os.rmdir(d)
            except OSError:
                pass


def test_writev_sums_128_iovecs_and_no_more(harness, tmp_path):
    """conmon flushes up to 128 iovecs per writev: all of their bytes count. Past
    SW_MAX_IOV (collector/bpf/common.h) the call still counts once, with the first 128 iovecs'
    bytes (and health.iov_truncated says so)."""
    log = tmp_path / "iov.log"
    harness.settle()
    p = py("""
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(50):
            assert os.writev(fd, [b"ab\\n"] * 128) == 384
        for _ in range(7):
            assert os.writev(fd, [b"ab\\n"] * 130) == 390
        """, log)
    assert p.wait() == 0
    got = harness.for_path(harness.collect(), str(log))
    assert got[p.pid][:2] == [57, 50 * 384 + 7 * 384]
    assert log.stat().st_size == 50 * 384 + 7 * 390


def test_a_worker_threads_lines_are_its_process_service(harness, tmp_path):
    """A process outside any unit is named by its main thread's comm (as ps shows it),
    not by the thread that wrote: 3 named worker threads, one service, exact counts."""
    from tests.owncgroup import unit_cgroup

    log = tmp_path / "threads.log"
    harness.settle()
    with unit_cgroup(f"swthreads{os.getpid() % 10000}", suffix="") as cg:
        p = py("""
            import ctypes, os, sys, threading
            libc = ctypes.CDLL(None)
            libc.prctl(15, b"swthreadsmain", 0, 0, 0)
            fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            def work(i):
                libc.prctl(15, f"worker-{i}".encode(), 0, 0, 0)     # this thread's name
                for _ in range(500):
                    os.write(fd, b"from a worker\\n")
            ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            """, log, preexec_fn=cg.enter)
        assert p.wait() == 0
        got = harness.for_path(harness.collect(), str(log))
    writes, nbytes, comm, service = got[p.pid]
    assert (writes, nbytes) == (1500, 1500 * 14)
    assert (comm, service) == ("swthreadsmain", "swthreadsmain")


# -- the datagram channels (syslog, journald's native protocol) ------------------------------
# Exact message counts on every write hook this kernel offers: one datagram sent to a
# configured socket path is one message, whichever syscall sent it and whether the socket is
# connected or addresses each datagram. The receivers are the test's own sockets; tests/e2e
# has rsyslog and journald. On this module's harness (one probe compile per hook and fd walk;
# these were test_channels_exact.py, a compile of their own per hook and fd walk): conftest
# configures syslog_sockets = /run/surgewatch-test-PID/dev-log-link, a symlink to the socket
# the receiver binds (as /dev/log is to journald's dev-log), and journald_native_sockets =
# /run/surgewatch-test-PID/native.sock.

SYSLOG_LINK, SYSLOG_REAL = f"{RUN}/dev-log-link", f"{RUN}/dev-log"
NATIVE = f"{RUN}/native.sock"


@pytest.fixture
def receivers():
    os.makedirs(RUN, exist_ok=True)
    syslog, native = Receiver(SYSLOG_REAL), Receiver(NATIVE)
    if os.path.lexists(SYSLOG_LINK):
        os.unlink(SYSLOG_LINK)
    os.symlink(SYSLOG_REAL, SYSLOG_LINK)
    yield syslog, native
    os.unlink(SYSLOG_LINK)
    syslog.close()
    native.close()


SENDER = textwrap.dedent("""
    import os, socket, sys
    link, native, other = sys.argv[1:4]
    msg = b"<13>Dec  2 03:00:00 test: hello\\n"          # 32 bytes
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.connect(link)                                    # as syslog(3) connects to /dev/log
    for _ in range(101):
        c.send(msg)                                    # sendto(2) without an address
    for _ in range(102):
        os.write(c.fileno(), msg)                      # write(2) on the connected socket
    for _ in range(103):
        c.sendmsg([msg[:10], msg[10:]])                # sendmsg(2), two iovecs, no name
    u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for _ in range(104):
        u.sendto(msg, link)                            # sendto(2) addressed to the link
    for _ in range(105):
        u.sendto(msg, link.replace("dev-log-link", "dev-log"))   # to the real path
    for _ in range(106):                               # sd_journal_send's way
        u.sendmsg([b"MESSAGE=hi\\n", b"PRIORITY=6\\n"], [], 0, native)
    o = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    o.connect(other)
    for _ in range(50):                                # a datagram socket nobody configured
        o.send(msg)
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.bind(b"\\0surgewatch-test-abstract")
    for _ in range(5):                                 # abstract addresses never match (unread:
                                                       # fewer than max_dgram_qlen, 10)
        u.sendto(msg, b"\\0surgewatch-test-abstract")
    print("done", flush=True)
    sys.stdin.readline()                               # stay alive until drained
""")


def test_every_datagram_to_a_channel_counts_once(harness, receivers, tmp_path):
    syslog, native = receivers
    other = Receiver(str(tmp_path / "other.sock"))
    try:
        harness.settle()
        p = subprocess.Popen([sys.executable, "-c", SENDER, SYSLOG_LINK, NATIVE, other.path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"done\n"
        totals = harness.collect()
        p.stdin.close()
        assert p.wait() == 0
    finally:
        other.close()
    mine = {path: v[:2] for (pid, path), v in totals.items() if pid == p.pid}
    assert mine == {
        f"syslog:{SYSLOG_LINK}": [101 + 102 + 103 + 104 + 105, (101 + 102 + 103 + 104 + 105) * 32],
        f"journald:{NATIVE}": [106, 106 * 22],
    }, mine
    assert len(syslog.got) == 515 and len(native.got) == 106    # they were really sent


def test_channel_created_after_start_is_matched(harness, tmp_path):
    """The symlink to the socket appears after the probe loaded (a syslog daemon started
    later): the next drain gives the kernel its target, and connected sends count."""
    os.makedirs(RUN, exist_ok=True)
    for path in (SYSLOG_LINK,):
        if os.path.lexists(path):
            os.unlink(path)
    harness.settle()                    # a drain with no link: only the link's own path known
    real = Receiver(SYSLOG_REAL)
    os.symlink(SYSLOG_REAL, SYSLOG_LINK)
    try:
        harness.settle()                # this drain sees the link and updates the kernel
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import socket, sys
            c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            c.connect(sys.argv[1])
            for _ in range(77):
                c.send(b"late\\n")
            print("done", flush=True)
            sys.stdin.readline()
            """), SYSLOG_LINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"done\n"
        totals = harness.collect()
        p.stdin.close()
        assert p.wait() == 0
    finally:
        os.unlink(SYSLOG_LINK)
        real.close()
    assert harness.for_path(totals, f"syslog:{SYSLOG_LINK}")[p.pid][:2] == [77, 77 * 5]
