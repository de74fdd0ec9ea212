"""The daemon in a root other than the writers' (a container with hostPID): exact counts
and the writers' own names.

`surgewatch run` runs chrooted into a root this test builds in a private mount namespace
(a tmpfs with read-only bind mounts of /usr, /etc and the checkout, and /proc, /sys, /dev;
its own empty /tmp, /run and /var), so no path the writers use on the host exists there.
The writers are host processes in a cgroup of their own named like a unit. Optionally
(`cgroupns`) the daemon also gets a private cgroup namespace and mounts cgroup2 afresh in
its root, as `podman run` does on cgroup v2 by default: it then sees only its own cgroup
subtree there, and /proc/PID/cgroup of the writers reads `0::/../<unit>`.

One daemon per case; each counts, exactly, what the host's writers produced:
- a log file opened before the daemon started, written and closed by a writer that exits
  before the drain of its writes (only the start-up replay, through /proc/PID/fd, named it);
- a file opened after the start (open event) by that writer;
- a file opened before the start by a writer that stays alive;
- syslog datagrams to a socket path that is a symlink (as /dev/log is), sent connected
  (the peer carries the symlink's target: resolved in the host's root) and addressed;
- a journald stream socket connected before the start.
The root disappears with the daemon's mount namespace; the test removes its directories
and cgroups.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from collector.host.cgroups import cgroup2_mount
from tests.owncgroup import remove_cgroup, unit_cgroup
from tests.support.daemon import Daemon, build_config
from tests.support.unixrecv import Receiver

pytestmark = pytest.mark.privileged

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INTERVAL = 2.0          # long enough that the short writer is gone before the next drain

# sh ENTER ROOT CGROUP2 NEWCG CONFIG CMD...: run CMD chrooted into a fresh root at ROOT (a
# host directory, empty): in a private mount namespace, and with NEWCG (a cgroup2
# directory, or "-") a private cgroup namespace rooted there with cgroup2 mounted afresh
# at CGROUP2 inside the root. CONFIG is copied into the root at the same path.
ENTER = textwrap.dedent(r"""
    set -e
    if [ "$1" != --inside ]; then
        if [ "$3" != - ]; then
            echo $$ > "$3/cgroup.procs"
            exec unshare -m -C --propagation private -- sh "$0" --inside "$@"
        fi
        exec unshare -m --propagation private -- sh "$0" --inside "$@"
    fi
    shift
    R=$1 CG2=$2 NEWCG=$3 CFG=$4
    shift 4
    mount -t tmpfs -o mode=755 surgewatch-test-root "$R"
    for l in bin lib lib64 sbin; do
        if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; fi
    done
    for d in usr etc "$PWD_CHECKOUT"; do
        mkdir -p "$R/$d"
        mount --rbind "/$d" "$R/$d"
        mount -o remount,bind,ro "$R/$d"
    done
    for d in proc sys dev; do
        mkdir -p "$R/$d"
        mount --rbind "/$d" "$R/$d"
    done
    for d in bin lib lib64 sbin; do
        if [ -d "/$d" ] && [ ! -L "/$d" ]; then
            mkdir -p "$R/$d"; mount --rbind "/$d" "$R/$d"; mount -o remount,bind,ro "$R/$d"
        fi
    done
    mkdir -p "$R/tmp" "$R/run" "$R/var"
    chmod 1777 "$R/tmp"
    if [ "$NEWCG" != - ]; then
        umount -l "$R$CG2"
        mount -t cgroup2 none "$R$CG2"
    fi
    mkdir -p "$R$(dirname "$CFG")"
    cp "$CFG" "$R$CFG"
    exec chroot "$R" "$@"
""")

# a host writer: opens BEFORE (a log), connects to the syslog symlink LINK and the
# journald stream JOURNAL, says "ready", waits for a line on stdin, then writes and exits
SHORT_WRITER = textwrap.dedent("""
    import os, socket, sys
    before, after, link, journal = sys.argv[1:5]
    fd = os.open(before, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.connect(journal)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(700):
        os.write(fd, b"early line\\n")                     # 11 bytes
    fd2 = os.open(after, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for _ in range(300):
        os.write(fd2, b"late\\n")                          # 5 bytes
    msg = b"<13>Dec  2 03:00:00 test: hello\\n"             # 32 bytes
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.connect(link)                      # the peer is the symlink's target (as /dev/log)
    for _ in range(101):
        c.send(msg)
    u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for _ in range(102):
        u.sendto(msg, link)              # addressed to the configured path itself
    for _ in range(103):
        os.write(stream.fileno(), b"stream line\\n")        # 12 bytes
    """)

# a host writer that stays: opens PATH, says "ready", on a line writes 200 lines and
# says "done", then waits for stdin to close
LONG_WRITER = textwrap.dedent("""
    import os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(200):
        os.write(fd, b"alive line\\n")                     # 11 bytes
    print("done", flush=True)
    sys.stdin.read()
    """)


class StreamListener:
    """A journald-like stream socket: accepts and reads everything."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.stop = False
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn):
        while conn.recv(65536):
            pass

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()
        for c in self.conns:
            c.close()


def _totals(records, service):
    """{path: [writes, bytes, pids]} over every rate record of `service`."""
    out = {}
    for r in records:
        if r["type"] == "rate" and r["service"] == service:
            for p in r["paths"]:
                t = out.setdefault(p["path"], [0, 0, set()])
                t[0] += p["writes"]
                t[1] += p["bytes"]
                t[2].update(p["pids"])
    return out


CASES = ["hostcgroupns", "privatecgroupns"]


@pytest.fixture(params=CASES)
def cgroupns(request, hook, fd_walk):
    """Private cgroup namespace (podman's default on cgroup v2) on every hook and walk;
    the host's (docker's default, `--cgroupns=host`) on the default walk only."""
    if hook == "fentry" and fd_walk != "btf":
        pytest.skip("the fentry path walks no fd table: one fd_walk is enough")
    if request.param == "hostcgroupns" and fd_walk != "btf":
        pytest.skip("the host's cgroup namespace: once per hook")
    return request.param == "privatecgroupns"


def test_daemon_in_another_root_counts_host_writers_exactly(tmp_path, hook, fd_walk,
                                                            cgroupns):
    found = cgroup2_mount()
    assert found is not None, "no cgroup2 hierarchy mounted: the test needs one"
    cg2 = found[0]
    # every host path the writers use lives under host/: absent from the daemon's root
    host = tmp_path / "host"
    logs, socks = host / "logs", host / "socks"
    logs.mkdir(parents=True)
    socks.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    enter = tmp_path / "enter.sh"
    enter.write_text(ENTER.replace("$PWD_CHECKOUT", CHECKOUT.lstrip("/")))
    link, real = str(socks / "dev-log-link"), str(socks / "dev-log")
    journal = str(socks / "journal.sock")
    dgram, stream = Receiver(real), StreamListener(journal)
    os.symlink(real, link)
    daemon_cg = os.path.join(cg2, f"surgewatch-test-root-{os.getpid()}")
    if cgroupns:
        os.mkdir(daemon_cg)
    name = f"swroot{os.getpid()}"
    procs, d = [], None
    try:
        with unit_cgroup(name) as unit:
            try:
                def start(code, *args):
                    p = subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         preexec_fn=unit.enter)
                    procs.append(p)
                    assert p.stdout.readline() == b"ready\n"
                    return p

                short = start(SHORT_WRITER, logs / "before.log", logs / "after.log", link, journal)
                long_ = start(LONG_WRITER, logs / "alive.log")
                config = build_config(
                    interval=INTERVAL, logdir=logs, stdout="json", segments=False,
                    segdir=tmp_path / "seg", socket=False, sock=tmp_path / "s.sock", port=None,
                    log_rules=f"syslog_sockets = [{json.dumps(link)}]\n"
                              "journald_native_sockets = []\n")
                config = config.replace("journald_sockets = []",
                                        f"journald_sockets = [{json.dumps(journal)}]")
                # the host's root as the daemon reaches it: PID 1's by default; this project's
                # machines refuse /proc/1/root to everyone, so the test names its own process's
                config = f"host_root = \"/proc/{os.getpid()}/root\"\n" + config
                d = Daemon(tmp_path / "d", config_text=config,
                           env={"SURGEWATCH_LOCK_FILE": "/run/surgewatch-test.lock",
                                "SURGEWATCH_WRITE_HOOK": hook},
                           wrap=("sh", str(enter), str(root), cg2,
                                 daemon_cg if cgroupns else "-", str(tmp_path / "d" / "sw.toml")))
                meta = d.wait_meta()
                lw = meta["probes"]["logwrites"]
                _check_variant(lw, hook, fd_walk)
                # the daemon really is elsewhere: none of the writers' paths exists in its root
                assert os.stat(f"/proc/{d.pid}/root").st_ino != os.stat("/").st_ino or \
                    os.stat(f"/proc/{d.pid}/root").st_dev != os.stat("/").st_dev
                assert not os.path.exists(f"/proc/{d.pid}/root{logs}")
                assert (os.readlink(f"/proc/{d.pid}/ns/cgroup")
                        != os.readlink("/proc/self/ns/cgroup")) == cgroupns
                _, t0 = d.wait_interval(1)
                short.stdin.write(b"go\n")
                short.stdin.close()
                assert short.wait(timeout=30) == 0
                exited = time.monotonic()
                long_.stdin.write(b"go\n")
                long_.stdin.flush()
                assert long_.stdout.readline() == b"done\n"
                # the short writer was gone well before the drain that holds its writes (the
                # next one, INTERVAL after the one that closed interval 1)
                assert exited - t0 < INTERVAL / 2, "the writer was slow: the case was not tested"
                d.wait_interval(4)
                long_.stdin.close()
                assert long_.wait(timeout=30) == 0
                assert d.stop() == 0, d.err
                got = _totals(d.records, unit.service)
            finally:                 # before the cgroup is removed: its members go first
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                if d is not None:
                    d.kill()
    finally:
        dgram.close()
        stream.close()
        os.unlink(link)
        if cgroupns:
            remove_cgroup(daemon_cg)
    assert not os.listdir(root), "the root's mounts leaked into the host"
    root.rmdir()
    assert got == {
        str(logs / "before.log"): [700, 700 * 11, {short.pid}],
        str(logs / "after.log"): [300, 300 * 5, {short.pid}],
        str(logs / "alive.log"): [200, 200 * 11, {long_.pid}],
        f"syslog:{link}": [101 + 102, (101 + 102) * 32, {short.pid}],
        f"journald:{journal}": [103, 103 * 12, {short.pid}],
    }, {(r["service"], r["owner"], p["path"], p["writes"]) for r in d.records
        if r["type"] == "rate" for p in r["paths"]}


def _check_variant(lw, hook, fd_walk):
    assert lw["hook"] == hook, lw
    if hook == "fentry":
        return
    if fd_walk == "btf" and lw.get("fd_walk") != "btf":
        pytest.skip(f"this kernel offers no BTF fd walk: {lw}")
    want = {"btf": ("btf", "direct"), "btf_slot_read": ("btf", "probe_read"),
            "probe_read": ("probe_read", None)}[fd_walk]
    if fd_walk == "btf":
        assert lw["fd_walk"] == "btf", lw
    else:
        assert (lw["fd_walk"], lw.get("fd_slot")) == want, lw
