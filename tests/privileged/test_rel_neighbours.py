"""Hostile neighbours (docs/reliability.md, "Hostile local user"): a local unprivileged
user (a real process under `setpriv --reuid=65534`) must not crash the daemon, blind it,
or put raw terminal control sequences into its log lines; a reload refused because that
user holds the new port keeps every running output.

Each test has a writer that knows its count and asserts it counted exactly."""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import urllib.request

import msgpack
import pytest

from tests.owncgroup import unit_cgroup
from tests.privileged.relhelp import record_figure
from tests.support.daemon import Daemon, build_config, stderr_until
from tests.support.loopback import free_port
from tests.support.records import writes_by_path
from tests.support.writers import write_lines

pytestmark = pytest.mark.privileged

SYSTEM_PYTHON = "/usr/bin/python3"        # the attacker's: stdlib only, no venv to read
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")

# Holds `tcp` connections to the Prometheus port, each having sent half a request line,
# and `unix` idle subscribers of the stream socket; says how many it holds, then waits.
ATTACKER = textwrap.dedent("""
    import os, resource, socket, sys, time
    port, path, n_tcp, n_unix = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held, tcp, unix = [], 0, 0
    for _ in range(n_tcp):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: 127.0.0.1")   # and never the rest
            held.append(s)
            tcp += 1
        except OSError:
            s.close()
    for _ in range(n_unix):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(path)
            held.append(s)
            unix += 1
        except OSError:
            s.close()
    print(os.getuid(), tcp, unix, flush=True)
    time.sleep(3600)
""")


@pytest.fixture
def public_dir():
    """A directory user 65534 can reach (pytest's tmp_path is root's only)."""
    d = tempfile.mkdtemp(prefix="sw-neighbours-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _config(workdir, public, port, interval=0.3, socket_mode="0o666", extra=""):
    sock = os.path.join(public, "stream.sock")
    text = build_config(interval=interval, logdir=workdir / "logs", stdout="json",
                        segments=False, segdir=workdir / "seg", socket=True, sock=sock,
                        port=port)
    text = text.replace(f"path = {json.dumps(sock)}\n",
                        f"path = {json.dumps(sock)}\nmode = {socket_mode}\n")
    return text + extra, sock


def _fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _scrape(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()


def _metric(text, name, **labels):
    """The value of one sample, summed over the samples whose labels include these."""
    from prometheus_client.parser import text_string_to_metric_families

    total = None
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total = (total or 0) + s.value
    return total


def _read_records(sub, want, timeout=30):
    """Records from a stream subscriber until `want(records)` or the timeout."""
    unpacker = msgpack.Unpacker(raw=False)
    got = []
    end = time.monotonic() + timeout
    while not want(got):
        left = end - time.monotonic()
        if left <= 0:
            break
        if not select.select([sub], [], [], left)[0]:
            break
        chunk = sub.recv(1 << 16)
        if not chunk:
            break
        unpacker.feed(chunk)
        got.extend(unpacker)
    return got


# -- 1. out of file descriptors ---------------------------------------------------------
N_TCP, N_UNIX, VICTIM_LINES = 400, 300, 700


def test_fd_exhaustion_by_a_local_user_neither_crashes_nor_blinds(tmp_path, public_dir):
    """The daemon at a 256 open-files limit (prlimit; the unit's default would be 1024):
    user 65534 holds 400 half-sent HTTP requests and 300 idle subscribers. Before the
    bounds, the next new writer's /proc/PID/cgroup read failed with EMFILE and the daemon
    exited 1. Now: connections and subscribers are bounded, the victim's lines are
    counted exactly, a scrape and a root subscriber still get through."""
    port = free_port()
    text, sock = _config(tmp_path, public_dir, port)
    d = Daemon(tmp_path, config_text=text, wrap=("prlimit", "--nofile=256:256", "--"))
    attacker = None
    sub = None
    try:
        d.wait_meta()
        d.wait_stats(1)
        fds_before = _fds(d.pid)
        attacker = subprocess.Popen([*AS_NOBODY, SYSTEM_PYTHON, "-c", ATTACKER, str(port),
                                     sock, str(N_TCP), str(N_UNIX)],
                                    stdout=subprocess.PIPE, text=True)
        uid, tcp, unix = map(int, attacker.stdout.readline().split())
        assert uid == 65534
        fds_peak = max(_fds(d.pid) for _ in range(5))
        # a new process writes a known count while the attack holds its connections
        victim = str(d.logdir / "victim.log")
        subprocess.run(["python3", "-c", "import os, sys\n"
                        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)\n"
                        "for _ in range(int(sys.argv[2])): os.write(fd, b'victim line\\n')",
                        victim, str(VICTIM_LINES)], check=True)
        d.wait_stats(3)
        # not blinded: a scrape answers (with the victim's writes), a root subscriber gets records
        metrics = _scrape(port)
        from collector.sinks.unixsock import subscribe
        sub = subscribe(sock, timeout=30)
        recs = _read_records(sub, lambda got: any(r.get("type") == "stats" for r in got))
        fds_peak = max(fds_peak, _fds(d.pid))
        assert d.proc.poll() is None, d.err
    finally:
        if sub is not None:
            sub.close()
        if attacker is not None:
            attacker.kill()
            attacker.wait()
        rc = d.stop()
    assert rc == 0, d.err
    assert writes_by_path(d.records, victim)[0] == VICTIM_LINES
    assert _metric(metrics, "surgewatch_log_path_writes_total", path=victim) == VICTIM_LINES
    assert recs and recs[0]["type"] == "meta" and any(r["type"] == "stats" for r in recs)
    assert fds_peak < 256
    stats = [r for r in d.records if r["type"] == "stats"]
    record_figure("fd_exhaustion", nofile=256, attacker_tcp_connected=tcp,
                  attacker_subscribers_connected=unix, daemon_fds_before=fds_before,
                  daemon_fds_peak=fds_peak, victim_lines=VICTIM_LINES,
                  victim_counted=writes_by_path(d.records, victim)[0],
                  prometheus_dropped=_metric(metrics, "surgewatch_prometheus_connections_dropped_total"),
                  host_resource_errors=sum(s.get("host_resource_errors", 0) for s in stats))


# -- 2. a refused reload keeps the running outputs ----------------------------------------
HOLD_PORT = textwrap.dedent("""
    import os, socket, time
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    print(os.getuid(), s.getsockname()[1], flush=True)
    time.sleep(3600)
""")
BEFORE, AFTER = 300, 200


def test_refused_reload_keeps_prometheus_and_the_socket(tmp_path, public_dir):
    """User 65534 holds a port; a SIGHUP moves Prometheus there (and changes the socket's
    mode): refused, and the running endpoint and socket stay, counters not reset. Then a
    port below 1024 (no CAP_NET_BIND_SERVICE after the drop): refused the same way."""
    port = free_port()
    text, sock = _config(tmp_path, public_dir, port)
    d = Daemon(tmp_path, config_text=text)
    holder = subprocess.Popen([*AS_NOBODY, SYSTEM_PYTHON, "-c", HOLD_PORT],
                              stdout=subprocess.PIPE, text=True)
    sub = None
    try:
        uid, taken = map(int, holder.stdout.readline().split())
        assert uid == 65534
        d.wait_meta()
        from collector.sinks.unixsock import subscribe
        sub = subscribe(sock, timeout=30)
        log = str(d.logdir / "reload.log")
        d.wait_stats(1)
        write_lines(log, BEFORE, b"before the reload\n")
        d.wait_stats(3)
        before = _metric(_scrape(port), "surgewatch_log_path_writes_total", path=log)
        err = b""
        for listen in (f"127.0.0.1:{taken}", "127.0.0.1:80"):
            bad, _ = _config(tmp_path, public_dir, port, socket_mode="0o660")
            d.cfg.write_text(bad.replace(f'listen = "127.0.0.1:{port}"', f'listen = "{listen}"'))
            d.proc.send_signal(signal.SIGHUP)
            err = stderr_until(d, "reload refused, the running config stays", err)
        write_lines(log, AFTER, b"after the reload\n")
        d.wait_stats(3)
        after = _metric(_scrape(port), "surgewatch_log_path_writes_total", path=log)
        last_seq = [r for r in d.records if r["type"] == "stats"][-1]["seq"]
        recs = _read_records(sub, lambda got: any(
            r.get("type") == "stats" and r["seq"] >= last_seq for r in got))
        sock_mode = os.stat(sock).st_mode & 0o777
    finally:
        if sub is not None:
            sub.close()
        holder.kill()
        holder.wait()
        rc = d.stop()
    assert rc == 0, d.err
    assert (before, after) == (BEFORE, BEFORE + AFTER)          # the same endpoint, not reset
    assert writes_by_path(d.records, log)[0] == BEFORE + AFTER
    assert any(r["type"] == "stats" and r["seq"] >= last_seq for r in recs)  # still delivers
    assert writes_by_path(recs, log)[0] == BEFORE + AFTER
    assert sock_mode == 0o666                                   # the running config stayed
    assert err.decode().count("reload refused, the running config stays") == 2
    record_figure("refused_reload", held_port=taken, scraped_before=before,
                  scraped_after=after, streamed_writes=writes_by_path(recs, log)[0])


# -- 3. terminal control sequences -------------------------------------------------------
HOSTILE_COMM = b"ev\x1b[2Jil\rx"               # clear screen, carriage return
HOSTILE_LOG = "a\x1b]0;pwned\x07b.log"         # OSC 0 (window title) ended by BEL
OVER = 2000
WRITE_AS = textwrap.dedent("""
    import ctypes, os, sys
    ctypes.CDLL(None).prctl(15, ctypes.c_char_p(sys.argv[1].encode("latin-1")), 0, 0, 0)
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for _ in range(int(sys.argv[3])):
        os.write(fd, b"hostile line\\n")
    print(os.getuid(), flush=True)
""")


def test_control_sequences_in_names_never_reach_the_daemons_log_raw(tmp_path, public_dir):
    """User 65534 names its process with ESC [2J and CR and writes a log whose name holds
    an OSC sequence, faster than a [capacity] glob: the loss-risk (and any new-service)
    alert lines on stderr show them escaped; the lines are counted exactly."""
    logdir = os.path.join(public_dir, "logs")
    os.mkdir(logdir)
    os.chmod(logdir, 0o777)
    glob = os.path.join(logdir, "*")
    text, _ = _config(tmp_path, public_dir, None)
    text = text.replace(json.dumps(str(tmp_path / "logs")), json.dumps(logdir))
    d = Daemon(tmp_path, config_text=text + f"[capacity]\n{json.dumps(glob)} = 10\n")
    log = os.path.join(logdir, HOSTILE_LOG)
    try:
        d.wait_meta()
        d.wait_stats(1)
        # in a cgroup that is no unit, so its comm names it (under systemd the tests' own
        # cgroup is ssh.service's); kept until its writes are drained
        with unit_cgroup("swhostile-comm", suffix="") as cg:
            out = subprocess.run([*AS_NOBODY, SYSTEM_PYTHON, "-c", WRITE_AS,
                                  HOSTILE_COMM.decode("latin-1"), log, str(OVER)],
                                 capture_output=True, text=True, check=True,
                                 preexec_fn=cg.enter).stdout
            assert out.split() == ["65534"]
            err = stderr_until(d, "loss risk: ")
            d.wait_stats(2)
    finally:
        rc = d.stop()
    err = err + d.err.encode()
    assert rc == 0, err
    assert writes_by_path(d.records, log)[0] == OVER
    for raw in (b"\x1b", b"\r", b"\x07"):
        assert raw not in err, err
    assert b"ev\\x1b[2Jil\\rx" in err, err                     # the name, escaped
    if b"alert open: " in err and b"top: " in err:
        assert b"a\\x1b]0;pwned\\x07b.log" in err, err          # the path, escaped
    record_figure("terminal_sequences", lines=OVER,
                  counted=writes_by_path(d.records, log)[0],
                  escaped_line=next(ln for ln in err.decode().splitlines()
                                    if "loss risk: " in ln))
