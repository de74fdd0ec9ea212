"""syslog for real: rsyslogd (Debian's) listening on its own imuxsock socket, fed by
logger(1) processes and by Python's SysLogHandler, with `surgewatch run` watching that
socket as a syslog channel (log_rules.syslog_sockets). Every message is counted once for
the process that sent it; rsyslogd's own writes to its omfile are rsyslogd's, every byte
of that file."""
import logging
import logging.handlers
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.owncgroup import TIME_SCALE, unit_cgroup
from tests.support.daemon import Daemon

pytestmark = [
    pytest.mark.skipif(shutil.which("rsyslogd") is None and not os.path.exists("/usr/sbin/rsyslogd"),
                       reason="rsyslog is not installed (tests/setup.sh installs it: make test)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: run `make test` as root"),
]
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
N_LOGGER, N_HANDLER = 40, 300

RSYSLOG_CONF = """
global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{sock}" CreatePath="on" RateLimit.Interval="0")
template(name="plain" type="string" string="%msg%\\n")
*.* action(type="omfile" file="{out}" template="plain")
"""


def by_service(records, path):
    """service -> [writes, bytes] on path over every rate record."""
    out = {}
    for r in records:
        for p in r.get("paths", ()) if r.get("type") == "rate" else ():
            if p["path"] == path:
                got = out.setdefault(r["service"], [0, 0])
                got[0] += p["writes"]
                got[1] += p["bytes"]
    return out


def line_count(path):
    return open(path, "rb").read().count(b"\n") if os.path.exists(path) else 0


def wait_lines(path, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line_count(path) >= n:
            return
        time.sleep(0.1)
    pytest.fail(f"rsyslogd wrote {line_count(path)} of {n} lines to {path}")


def test_logger_and_syslog_handler_counted_per_sender_rsyslog_writes_its_own(tmp_path):
    # rsyslogd in a cgroup that is no unit: its service is its process name on any host
    with unit_cgroup(f"swrsyslog{os.getpid() % 10000}", suffix="") as cg:
        _syslog_exact(tmp_path, cg)


def _syslog_exact(tmp_path, cg):
    work, logs = tmp_path / "work", tmp_path / "logs"
    work.mkdir()
    logs.mkdir()
    sock, out = tmp_path / "log.sock", logs / "rsyslog-out.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(work=work, sock=sock, out=out))
    (tmp_path / "d").mkdir()
    d = Daemon(tmp_path / "d", logdir=logs,
               log_rules=f'syslog_sockets = ["{sock}"]\njournald_native_sockets = []')
    rs = None
    try:
        d.attached()
        rs = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "rs.pid")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=cg.enter)
        deadline = time.monotonic() + 30 * TIME_SCALE
        while not sock.exists() and time.monotonic() < deadline and rs.poll() is None:
            time.sleep(0.05)
        assert sock.exists(), f"rsyslogd made no socket: {rs.stderr.read1().decode()}"
        d.wait_stats(1)
        for i in range(N_LOGGER):
            lg = subprocess.run(["logger", "-u", str(sock), "-t", "swtest", f"logger line {i}"],
                                capture_output=True, text=True, timeout=30)
            assert lg.returncode == 0, lg.stderr
        handler = logging.handlers.SysLogHandler(address=str(sock))
        log = logging.getLogger("swtest-handler")
        log.propagate = False
        log.addHandler(handler)
        for i in range(N_HANDLER):
            log.warning("handler line %d", i)
        handler.close()
        wait_lines(out, N_LOGGER + N_HANDLER, 30 * TIME_SCALE)
        size = out.stat().st_size
        d.wait_stats(3)
    finally:
        if rs is not None and rs.poll() is None:
            rs.send_signal(signal.SIGTERM)
            rs.wait(10)
        d.stop()
    channel = f"syslog:{sock}"
    writes = 0
    senders = set()
    for r in d.records:
        for p in r.get("paths", ()) if r.get("type") == "rate" else ():
            if p["path"] == channel:
                writes += p["writes"]
                senders.update(p["pids"])
    # one message per logger process and per handler call, nothing else on the channel
    assert writes == N_LOGGER + N_HANDLER
    assert os.getpid() in senders and len(senders) == N_LOGGER + 1, senders
    # rsyslogd's copy: its process (named rsyslogd, not its writing thread "rs:main
    # Q:Reg", outside a systemd unit) wrote every byte of the file
    writer = by_service(d.records, str(out))
    assert len(writer) == 1, writer
    (wcalls, wbytes), = writer.values()
    assert wbytes == size
    assert 1 <= wcalls <= N_LOGGER + N_HANDLER
    pids = {pid for r in d.records if r.get("type") == "rate"
            for p in r["paths"] if p["path"] == str(out) for pid in p["pids"]}
    assert pids == {rs.pid}, pids
    # named rsyslogd, not by its writing thread
    assert list(writer) == ["rsyslogd"], writer
    comms = {c for r in d.records if r.get("type") == "rate"
             for p in r["paths"] if p["path"] == str(out) for c in r["comms"]}
    assert comms == {"rsyslogd"}, comms
