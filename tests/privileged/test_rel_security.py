"""Security (docs/reliability.md): capabilities dropped after the probes load, restrictive
file modes, Prometheus on loopback, and the privacy property: nothing a process writes
ever reaches any output."""
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.privileged.relhelp import bpf_programs, programs_of, record_figure
from tests.support.daemon import SURGEWATCH, Daemon
from tests.support.loopback import free_port
from tests.support.records import writes_by_path

pytestmark = pytest.mark.privileged

DROP_AND_COUNT = textwrap.dedent("""
    import json, os, sys, time
    from collector.host.logdest import LogRules
    from collector.pipeline.build import build_collector
    from collector.commands import process as privileges
    from collector.pipeline.build import apply_rules
    logdir = sys.argv[1]
    rules = LogRules(dirs=(logdir + "/",), globs=(), journald_sockets=())
    c = build_collector(rules, resets=True)
    before = privileges.current()
    privileges.drop_to()
    after = privileges.current()
    c.begin()
    out = {"before": before, "after": after, "pid": os.getpid()}
    def write(name, n):
        fd = os.open(os.path.join(logdir, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(n):
            os.write(fd, b"cap line\\n")
        os.close(fd)
    def count(name):
        total = 0
        for _ in range(2):
            time.sleep(0.05)
            c.probe.poll(0)
            c.interval()
            total += sum(w.writes for w in c.last_writes if w.path.endswith("/" + name))
        return total
    write("a.log", 500)
    out["a"] = count("a.log")
    apply_rules(c, LogRules(dirs=(logdir + "/",), globs=(), journald_sockets=()))  # SIGHUP path
    write("b.log", 250)
    out["b"] = count("b.log")
    # a reset on loopback, counted by the resets probe after the drop
    import socket, struct
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); cli.close()
    time.sleep(0.1)
    c.resets.poll(0)
    rates, stats = c.interval()[:2]
    out["resets_sent"] = sum(r.get("resets_sent", 0) for r in rates)
    print(json.dumps(out), flush=True)
    sys.stdin.readline()
    c.close()
    print("detached", flush=True)
""")


def test_capabilities_dropped_after_load_counting_still_exact(tmp_path):
    import json

    from collector.commands import process as privileges

    logdir = tmp_path / "logs"
    logdir.mkdir()
    p = subprocess.Popen([sys.executable, "-c", DROP_AND_COUNT, str(logdir)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = p.stdout.readline()
        assert line, p.stderr.read()
        out = json.loads(line)
        held = programs_of(p.pid)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline() == "detached\n", p.stderr.read()
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eff, prm, bnd = out["after"]
    keep = (1 << privileges.CAP_SYS_PTRACE) | (1 << privileges.CAP_DAC_READ_SEARCH)
    assert eff == keep and prm == keep and bnd == keep, privileges.names(eff)
    assert out["a"] == 500 and out["b"] == 250
    assert out["resets_sent"] >= 1
    assert held
    deadline = time.monotonic() + 10          # programs are freed after an RCU grace period
    while held & {x["id"] for x in bpf_programs()} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not held & {x["id"] for x in bpf_programs()}
    record_figure("caps", before=privileges.names(out["before"][0]),
                  after=privileges.names(eff))


SECRET = "sw-secret-4f1c9e-DO-NOT-LEAK"

SECRET_WRITER = textwrap.dedent("""
    import os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    line = ("password=" + sys.argv[2] + "\\n").encode()
    for _ in range(200):
        os.write(fd, line)
        os.writev(fd, [b"token ", sys.argv[2].encode(), b"\\n"])
        os.pwrite(fd, line, 0)
    os.close(fd)
""")


def _listening(port):
    """Local addresses (hex, as /proc/net/tcp{,6} shows them) listening on port."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.split(":")
                if int(p, 16) == port and state == "0A":
                    found.append(addr)
    return found


def test_modes_loopback_and_no_written_content_in_any_output(tmp_path):
    port = free_port()
    d = Daemon(tmp_path, interval=0.3, segments=True, socket=True, prometheus=port,
               umask=0)                               # the daemon's umask is no defence
    sub = None
    try:
        d.wait_meta()
        from collector.sinks.unixsock import subscribe
        sub = subscribe(str(d.sock))
        log = str(d.logdir / "app.log")
        assert subprocess.run([sys.executable, "-c", SECRET_WRITER, log, SECRET]).returncode == 0
        d.wait_stats(3)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        sock_mode = os.stat(d.sock).st_mode & 0o777
        lock_mode = os.stat(tmp_path / "run.lock").st_mode & 0o777
        addrs = _listening(port)
        sub.settimeout(0.5)
        streamed = b""
        end = time.monotonic() + 1.0            # what was queued for us, the live stream goes on
        try:
            while time.monotonic() < end:
                chunk = sub.recv(1 << 16)
                if not chunk:
                    break
                streamed += chunk
        except socket.timeout:
            pass
    finally:
        if sub is not None:
            sub.close()
        rc = d.stop()
    assert rc == 0, d.err
    # modes: nothing readable or writable by others
    assert sock_mode == 0o660, oct(sock_mode)
    assert lock_mode == 0o600, oct(lock_mode)
    assert os.stat(d.segdir).st_mode & 0o777 == 0o750
    segs = sorted(d.segdir.iterdir())
    assert segs and all(p.stat().st_mode & 0o777 == 0o640 for p in segs)
    # Prometheus: bound to loopback only
    assert addrs == ["0100007F"], addrs
    # the writes were counted (so the probe saw them) ...
    assert writes_by_path(d.records, log)[0] == 600
    # ... and the content never appears anywhere
    outputs = {"stdout": "\n".join(map(str, d.records)).encode(), "stderr": d.err.encode(),
               "metrics": metrics, "socket": streamed,
               **{p.name: p.read_bytes() for p in segs}}
    for name, data in outputs.items():
        assert SECRET.encode() not in data, name
        assert b"password=" not in data and b"token " not in data, name
    assert len(streamed) > 0
    record_figure("modes", socket=oct(sock_mode), lock=oct(lock_mode),
                  segments=oct(segs[0].stat().st_mode & 0o777), prometheus_bind=addrs)


def test_snapshot_outputs_never_hold_written_content(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    mp = tmp_path / "out.msgpack"
    snap = subprocess.Popen([SURGEWATCH, "snapshot", "--duration", "3", "--json", "--msgpack",
                             str(mp), "--log-dir", str(logdir) + "/"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.0)             # compiled and attached by now on this machine
    subprocess.run([sys.executable, "-c", SECRET_WRITER, str(logdir / "s.log"), SECRET],
                   check=True)
    out, err = snap.communicate(timeout=120)
    assert snap.returncode == 0, err
    for data in (out, err, mp.read_bytes()):
        assert SECRET.encode() not in data and b"password=" not in data


def test_daemon_under_the_units_bounding_set_keeps_two_caps_and_counts(tmp_path):
    """As docs/surgewatch.service runs it: bounding set cut to the unit's list (so no
    CAP_SETPCAP); after loading, the daemon's effective and permitted sets hold two."""
    from collector.commands import process as privileges

    unit = (Path(__file__).parents[2] / "docs" / "surgewatch.service").read_text()
    caps = next(line.split("=", 1)[1].split() for line in unit.splitlines()
                if line.startswith("CapabilityBoundingSet="))
    wrap = ("setpriv", "--bounding-set",
            "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in caps),
            "--inh-caps=-all")
    d = Daemon(tmp_path, interval=0.3, wrap=wrap)
    try:
        d.wait_meta()
        d.wait_stats(1)
        eff, prm, _ = (int(line.split()[1], 16) for line in open(f"/proc/{d.pid}/status")
                       if line.startswith(("CapEff", "CapPrm", "CapBnd")))
        log = str(d.logdir / "caps.log")
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(400):
            os.write(fd, b"caps\n")
        os.close(fd)
        d.wait_stats(3)
    finally:
        rc = d.stop()
    assert rc == 0, d.err
    keep = (1 << privileges.CAP_SYS_PTRACE) | (1 << privileges.CAP_DAC_READ_SEARCH)
    assert eff == keep and prm == keep, (hex(eff), hex(prm))
    assert "capabilities after loading the probes: CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE" in d.err
    assert writes_by_path(d.records, log)[0] == 400
