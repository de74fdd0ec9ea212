"""Which pipes/FIFOs a log-copying runtime reads (collector/host/runtimes.py): the pure
parts (names, argv, fdinfo), a /proc tree whose fds are real pipes and FIFOs, and a live
child process posing as a runtime by argv[0]."""
import os
import subprocess
import sys
import time
import uuid

import pytest

from collector.host.destinations import kernel_dev
from collector.host.procfs import ProcFS, fdinfo_flags
from collector.host.runtimes import (DEFAULT_LOG_RUNTIMES, RuntimeArgs, RuntimePipe,
                                     RuntimePipes, container_id_in_path, is_runtime,
                                     parse_runtime_args)

CID = "86a7aedf195eb1e786355b5e5e4b99f9b79e172a487048f36773ca8ffe36fa49"
USERDATA = f"/var/lib/containers/storage/overlay-containers/{CID}/userdata"
# podman 4.3.1's conmon command line, as podman --log-level=debug printed it (trimmed)
CONMON_ARGV = [
    "/usr/bin/conmon", "--api-version", "1", "-c", CID, "-u", CID, "-r", "/usr/bin/crun",
    "-b", USERDATA, "-p", f"/run/containers/storage/overlay-containers/{CID}/userdata/pidfile",
    "-n", "sw-explore-d1", "--exit-dir", "/run/libpod/exits", "--full-attach",
    "-l", f"k8s-file:{USERDATA}/ctr.log", "--log-level", "warning", "--syslog",
    "--conmon-pidfile", f"/run/containers/storage/overlay-containers/{CID}/userdata/conmon.pid",
    "--exit-command", "/usr/bin/podman", "--exit-command-arg", "--root",
]


# -- names -------------------------------------------------------------------------------

@pytest.mark.parametrize("comm, argv0, expected", [
    ("conmon", "/usr/bin/conmon", True),
    ("containerd", "/usr/bin/containerd", True),
    ("dockerd", "/usr/bin/dockerd", True),
    ("crio", "/usr/bin/crio", True),
    # containerd-shim-runc-v2 as the kernel shows it: comm cut to 15 bytes
    ("containerd-shim", "/usr/bin/containerd-shim-runc-v2", True),
    ("containerd-shim", "", True),
    ("containerd-shim", "/usr/bin/containerd-shim", True),
    # a runtime started under another comm (prctl) is still known by argv[0]
    ("worker", "/usr/local/bin/conmon", True),
    ("conmon-rs", "/usr/bin/conmon-rs", False),
    ("containerd-str", "/usr/bin/containerd-stress", False),
    ("podman", "/usr/bin/podman", False),
    ("crun", "/usr/bin/crun", False),
    ("bash", "", False),
])
def test_default_runtimes(comm, argv0, expected):
    assert is_runtime(comm, argv0) is expected


def test_extra_names_and_long_literal_names():
    names = DEFAULT_LOG_RUNTIMES + ("my-log-copier-daemon", "fluent-*")
    assert is_runtime("my-log-copier-d", "", names)          # comm: the first 15 bytes
    assert not is_runtime("my-log-copier", "", names)
    assert is_runtime("fluent-bit", "", names)
    assert not is_runtime("fluentd", "", names)


# -- argv ---------------------------------------------------------------------------------

def test_conmon_argv_recorded_from_podman():
    assert parse_runtime_args(CONMON_ARGV) == RuntimeArgs(CID, "sw-explore-d1",
                                                          f"{USERDATA}/ctr.log")


@pytest.mark.parametrize("logs, expected", [
    (["-l", "/var/log/pods/ns_p_u/c/0.log"], "/var/log/pods/ns_p_u/c/0.log"),   # CRI-O
    (["--log-path=k8s-file:/x/ctr.log"], "/x/ctr.log"),
    (["--log-path", "journald:"], None),
    (["-l", "journald"], None),
    (["-l", "journald:", "-l", "k8s-file:/x/ctr.log"], "/x/ctr.log"),
    (["-l", "passthrough:"], None),
    (["-l", "none:"], None),
    ([], None),
])
def test_conmon_log_drivers(logs, expected):
    assert parse_runtime_args(["conmon", "-c", CID, *logs]).log_path == expected


def test_conmon_of_an_exec_session_serves_no_log():
    args = parse_runtime_args(["conmon", "-c", CID, "--exec", "--exec-attach", "-l", "/x"])
    assert args.serves_logs is False


@pytest.mark.parametrize("argv, cid", [
    (["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", CID, "-address",
      "/run/containerd/containerd.sock"], CID),
    (["containerd-shim-runc-v2", "-namespace=default", "-id=" + CID], CID),
    # under CRI a shim serves a pod: -id is the sandbox's
    (["containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", CID], None),
    (["/usr/bin/dockerd", "-H", "fd://"], None),
    ([], None),
])
def test_shim_argv(argv, cid):
    assert parse_runtime_args(argv).container_id == cid


@pytest.mark.parametrize("path, cid", [
    (f"/run/docker/containerd/{CID}/init-stdout", CID),
    (f"/run/containerd/io.containerd.grpc.v1.cri/containers/{CID}/io/2216/{CID}-stderr", CID),
    ("/run/containerd/fifo/123/stdout", None),
    (f"/x/{CID}0/stdout", None),
])
def test_container_id_in_fifo_path(path, cid):
    assert container_id_in_path(path) == cid


@pytest.mark.parametrize("text, flags", [
    ("pos:\t0\nflags:\t02000000\nmnt_id:\t15\nino:\t1234\n", 0o2000000),
    ("pos:\t0\nflags:\t0100001\nmnt_id:\t15\n", 0o100001),
    ("pos:\t0\n", None),
    ("flags:\tnope\n", None),
])
def test_fdinfo_flags(text, flags):
    assert fdinfo_flags(text) == flags


# -- a /proc tree whose fds are real pipes and FIFOs ----------------------------------------

class TreeProc(ProcFS):
    """A fixture /proc: fd links point at this test's real pipes (through /proc/self/fd,
    so stat() sees pipefs), and fds() answers what the real link says ("pipe:[ino]")."""

    def fds(self, pid):
        out = {}
        for fd, target in super().fds(pid).items():
            out[fd] = os.readlink(target) if target.startswith("/proc/") else target
        return out


@pytest.fixture
def tree(tmp_path):
    opened = []

    def pipe():
        r, w = os.pipe()
        opened.extend((r, w))
        return r, w

    def proc(pid, comm, argv, fds):
        """fds: {fd: (real fd or a path, fdinfo flags)}"""
        d = tmp_path / "proc" / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "fdinfo").mkdir()
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        for fd, (what, flags) in fds.items():
            target = what if isinstance(what, str) else f"/proc/self/fd/{what}"
            os.symlink(target, d / "fd" / str(fd))
            (d / "fdinfo" / str(fd)).write_text(f"pos:\t0\nflags:\t0{flags:o}\nmnt_id:\t9\n")

    yield tmp_path, pipe, proc
    for fd in opened:
        os.close(fd)


def key_of(fd):
    st = os.fstat(fd)
    return kernel_dev(st.st_dev), st.st_ino


O_CLOEXEC = 0o2000000


def test_conmon_reads_the_containers_stdout_and_stderr(tree):
    root, pipe, proc = tree
    out_r, out_w = pipe()
    err_r, err_w = pipe()
    other_r, _ = pipe()
    log = root / "ctr.log"
    log.write_text("")
    proc(700, "conmon", CONMON_ARGV, {
        0: ("/dev/null", os.O_RDONLY), 5: (out_r, os.O_RDONLY | O_CLOEXEC),
        7: (err_r, os.O_RDONLY | O_CLOEXEC | os.O_NONBLOCK),
        9: (str(log), os.O_WRONLY | os.O_APPEND)})
    proc(800, "bash", ["/bin/bash"], {3: (other_r, os.O_RDONLY)})
    pipes = RuntimePipes(TreeProc(str(root / "proc")))
    want = RuntimePipe(700, "conmon", CID, "sw-explore-d1", f"{USERDATA}/ctr.log")
    assert pipes.lookup(*key_of(out_w)) == want
    assert pipes.lookup(*key_of(err_w)) == want
    assert want.label == f"container:{USERDATA}/ctr.log"
    assert pipes.lookup(*key_of(other_r)) is None      # read by bash: not a runtime's
    assert pipes.scans == 1


def test_docker_fifo_read_by_dockerd_and_the_shims_relay(tree):
    root, pipe, proc = tree
    ctr_r, ctr_w = pipe()                  # the container's stdout, read by the shim
    fifo = root / "run/docker/containerd" / CID / "init-stdout"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    fifo_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    json_log = root / f"{CID}-json.log"
    json_log.write_text("")
    try:
        proc(900, "containerd-shim", ["/usr/bin/containerd-shim-runc-v2", "-namespace",
                                      "moby", "-id", CID],
             {12: (ctr_r, os.O_RDONLY), 14: (str(fifo), os.O_WRONLY),
              15: (str(fifo), os.O_RDONLY)})
        proc(950, "dockerd", ["/usr/bin/dockerd", "-H", "fd://"],
             {30: (str(fifo), os.O_RDONLY | os.O_NONBLOCK),
              31: (str(json_log), os.O_WRONLY | os.O_APPEND)})
        pipes = RuntimePipes(TreeProc(str(root / "proc")))
        got = pipes.lookup(*key_of(ctr_w))
        assert got == RuntimePipe(900, "containerd-shim", CID, None, None)
        assert got.label == "container:containerd-shim"
        # the shim writes into the FIFO dockerd reads: a relay, not a producer
        assert pipes.lookup(*key_of(fifo_fd)) is None
        assert pipes.is_relay(*key_of(fifo_fd))
    finally:
        os.close(fifo_fd)


def test_fifo_read_by_dockerd_names_the_container_and_its_json_log(tree):
    root, pipe, proc = tree
    fifo = root / "run/docker/containerd" / CID / "init-stdout"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    fifo_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    json_log = root / "var/lib/docker/containers" / CID / f"{CID}-json.log"
    json_log.parent.mkdir(parents=True)
    json_log.write_text("")
    try:
        proc(950, "dockerd", ["/usr/bin/dockerd"],
             {30: (str(fifo), os.O_RDWR), 31: (str(json_log), os.O_WRONLY | os.O_APPEND)})
        got = RuntimePipes(TreeProc(str(root / "proc"))).lookup(*key_of(fifo_fd))
        assert got == RuntimePipe(950, "dockerd", CID, None, str(json_log))
    finally:
        os.close(fifo_fd)


def test_exec_session_conmon_is_skipped(tree):
    root, pipe, proc = tree
    r, w = pipe()
    proc(700, "conmon", ["conmon", "-c", CID, "--exec", "-l", "/x"], {5: (r, os.O_RDONLY)})
    assert RuntimePipes(TreeProc(str(root / "proc"))).lookup(*key_of(w)) is None


def test_one_rescan_per_drain(tree):
    root, pipe, proc = tree
    r, w = pipe()
    proc(800, "bash", ["/bin/bash"], {})
    pipes = RuntimePipes(TreeProc(str(root / "proc")))
    assert pipes.lookup(*key_of(w)) is None
    assert pipes.lookup(1, 2) is None
    assert pipes.scans == 1                       # the second miss waits for a drain
    proc(700, "conmon", CONMON_ARGV, {5: (r, os.O_RDONLY)})   # conmon appears
    assert pipes.lookup(*key_of(w)) is None
    pipes.start_drain()
    assert pipes.lookup(*key_of(w)).pid == 700
    assert pipes.lookup(*key_of(w)).pid == 700    # a hit: no scan
    assert pipes.scans == 2


def test_a_vanishing_runtime_is_skipped(tree):
    root, pipe, proc = tree
    r, w = pipe()
    proc(700, "conmon", CONMON_ARGV, {5: (r, os.O_RDONLY)})
    (root / "proc/701").mkdir()                 # listed, gone before its comm was read
    (root / "proc/702").mkdir()
    (root / "proc/702/comm").write_text("conmon\n")   # gone before its fds were read
    assert RuntimePipes(TreeProc(str(root / "proc"))).lookup(*key_of(w)).pid == 700


# -- live: a real process posing as a runtime ------------------------------------------------

def test_live_child_holding_a_pipe_is_found_by_argv0():
    name = f"sw-test-runtime-{uuid.uuid4().hex[:8]}"
    r, w = os.pipe()
    child = subprocess.Popen([name, "-c", "import time; time.sleep(60)"],
                             executable=sys.executable, pass_fds=(r,))
    try:
        os.close(r)
        key = key_of(w)
        pipes = RuntimePipes(ProcFS(), names=(name,))
        deadline = time.monotonic() + 10
        found = pipes.lookup(*key)
        while found is None and time.monotonic() < deadline:    # until its exec is done
            time.sleep(0.05)
            pipes.start_drain()
            found = pipes.lookup(*key)
        assert found is not None and found.pid == child.pid
        assert found.label == "container:" + found.comm       # no log path known
    finally:
        child.kill()
        child.wait()
        os.close(w)
