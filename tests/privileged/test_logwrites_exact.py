"""Exact log-write counts from real workloads on the running kernel.

Each workload writes a known number of lines; the collector must report exactly that
many writes and bytes for the workload's pid and path, and nothing for non-log targets.
Every case runs on every write hook this kernel offers (raw, tracepoints, fentry) and every
fd walk (conftest: `hook`, `fd_walk`).
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

import pytest

from tests.owncgroup import TIME_SCALE

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


@pytest.fixture(params=["tmp_path", "tmpfs"])
def log_dir(request, tmp_path):
    """Where the logs live: tmp_path as it is (ext4 here, tmpfs where /tmp is one, as on
    Debian 13), and a tmpfs of the test's own on every host. tmpfs gives each inode a
    random i_generation that userspace cannot read (FS_IOC_GETVERSION: ENOTTY), while the
    kernel keys inodes by it."""
    if request.param == "tmp_path":
        yield tmp_path
        return
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "surgewatch-test",
                    str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_file_opened_before_start_and_after(log_dir, workload_bin, hook, fd_walk):
    """A writer whose log was open before the probe loaded is counted like a new one, also
    when the writer is gone before the drain (only the start-up replay named its file)."""
    if hook == "fentry" and fd_walk != "btf":
        pytest.skip("the fentry path walks no fd table: one fd_walk is enough")
    from collector.host.logdest import LogRules
    from collector.pipeline.build import build_collector

    before, after = log_dir / "before.log", log_dir / "after.log"
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
    assert p.stdout.readline() == b"open\n"
    collector = build_collector(LogRules(), probe_kwargs={"hook": hook})   # after the open
    try:
        from tests.privileged.conftest import Harness, check_hook
        check_hook(collector.probe, hook, fd_walk)
        h = Harness(collector)
        p.stdin.write(b"go\n")
        p.stdin.close()
        assert p.wait() == 0                       # gone before the drain: no /proc/PID/fd
        totals = h.collect()
    finally:
        collector.probe.close()
    assert h.for_path(totals, str(before))[p.pid][:2] == [700, 700 * 11]
    assert h.for_path(totals, str(after))[p.pid][:2] == [300, 300 * 5]


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
