"""docs/surgewatch.service for real: `make install`, then systemd starts the hardened unit
and its outputs hold the exact counts of a known workload (log lines written by a
process in a cgroup of its own, TCP resets between two services); `systemd-analyze
verify` says nothing about the unit and `systemd-analyze security` rates it at most 4.0. Stopped and removed
afterwards; whatever the install replaced is put back.

Needs systemd as PID 1 (the Vagrant VM, `make vm-test`); skipped elsewhere."""
import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.owncgroup import TIME_SCALE, unit_cgroup
from tests.support.loopback import abort_connections
from tests.support.unitrun import METRICS, STATE_DIR, UNIT, metric, sh, this_run, totals, \
    UNDER_SYSTEMD_AS_ROOT, unit_log, wait_for

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/usr/local"
# what `make install` writes (README.md, docs/operations.md "systemd")
INSTALLED = [f"{PREFIX}/bin/surgewatch", f"/etc/systemd/system/{UNIT}",
             f"{PREFIX}/share/man/man8/surgewatch.8",
             f"{PREFIX}/share/bash-completion/completions/surgewatch"]
N_LINES, N_RESETS = 1000, 6

pytestmark = UNDER_SYSTEMD_AS_ROOT


class Saved:
    """The files `make install` replaces, to put back afterwards."""

    def __init__(self, paths):
        self.saved = {}
        for p in paths:
            if os.path.islink(p):
                self.saved[p] = ("link", os.readlink(p))
            elif os.path.exists(p):
                self.saved[p] = ("file", Path(p).read_bytes())

    def restore(self):
        for p in INSTALLED:
            if os.path.lexists(p):
                os.unlink(p)
        for p, (kind, what) in self.saved.items():
            if kind == "link":
                os.symlink(what, p)
            else:
                Path(p).write_bytes(what)


@pytest.fixture
def installed():
    if sh("systemctl", "is-active", UNIT, check=False).stdout.strip() in ("active",
                                                                         "activating"):
        pytest.skip(f"{UNIT} is already running here; not touching it")
    saved = Saved(INSTALLED)
    try:
        res = sh("make", "-C", str(ROOT), "install", timeout=600)
        yield res.stdout
    finally:
        sh("systemctl", "stop", UNIT, check=False)
        saved.restore()
        sh("systemctl", "daemon-reload", check=False)
        sh("systemctl", "reset-failed", UNIT, check=False)


def test_unit_installs_starts_counts_exactly_and_is_hardened(installed, tmp_path):
    for p in INSTALLED:
        assert os.path.exists(p), f"make install did not create {p}"
    assert Path(f"{PREFIX}/bin/surgewatch").resolve() == (ROOT / ".venv/bin/surgewatch").resolve()

    verify = sh("systemd-analyze", "verify", f"/etc/systemd/system/{UNIT}", check=False)
    about = [line for line in (verify.stdout + verify.stderr).splitlines()
             if "surgewatch" in line]
    assert about == [], "\n".join(about)
    sec = sh("systemd-analyze", "security", UNIT, "--no-pager", check=False)
    m = re.search(rf"Overall exposure level for {UNIT}: ([0-9.]+)", sec.stdout)
    assert m, sec.stdout + sec.stderr
    assert float(m.group(1)) <= 4.0, sec.stdout

    since = time.strftime("%Y-%m-%d %H:%M:%S")
    start_ts = time.time()
    sh("systemctl", "start", UNIT)
    pid = int(sh("systemctl", "show", "-P", "MainPID", UNIT).stdout)
    assert pid > 0

    def started():
        return any(r["type"] == "stats" for r in this_run(start_ts))

    wait_for("the daemon's meta and first stats record in its segments", started, True, 90)
    meta = this_run(start_ts)[0]
    assert meta["type"] == "meta" and meta["mode"] == "run", meta

    tag = uuid.uuid4().hex[:8]
    writer = f"swvm{tag}"
    log = Path(f"/var/log/{writer}.log")
    script = (f"import os; fd = os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "
              f"0o644)\nfor _ in range({N_LINES}): os.write(fd, b'systemd unit test line\\n')")
    service, srv, cli = f"{writer}.service", f"{writer}s.service", f"{writer}c.service"
    # each workload in a cgroup of its own, which names its service (tests/owncgroup.py;
    # systemd-run needs a D-Bus the VM does not have), kept until the daemon drained
    # them: an exited process is named from its cgroup while the cgroup exists
    try:
        with unit_cgroup(writer) as cg, unit_cgroup(f"{writer}s") as srv_cg, \
                unit_cgroup(f"{writer}c") as cli_cg:
            subprocess.run(["/usr/bin/python3", "-c", script], check=True, timeout=120,
                           preexec_fn=cg.enter)
            _, client, server = abort_connections(N_RESETS, "swvms", srv_cg, "swvmc", cli_cg)
            assert client.stdout.strip() == str(N_RESETS), client.stderr
            assert server.wait(timeout=60) == 0

            def counted():
                r = this_run(start_ts)
                return (totals(r, service, "log_writes"), totals(r, srv, "resets_sent"),
                        totals(r, cli, "resets_received"))

            want = (N_LINES, N_RESETS, N_RESETS)
            wait_for(f"{want} log writes, resets sent, resets received", counted, want, 60)
            time.sleep(2.5)                     # two more intervals: nothing extra comes
            recs = this_run(start_ts)
        assert counted() == want
        assert totals(recs, service, "log_bytes") == N_LINES * 23
        paths = {}
        for r in recs:
            if r["type"] == "rate" and r["service"] == service:
                for p in r["paths"]:
                    paths[p["path"]] = paths.get(p["path"], 0) + p["writes"]
        assert paths == {str(log): N_LINES}
        for field in ("evictions", "lost_writes", "fd_walk_failed", "resets_lost"):
            assert sum(r.get(field, 0) for r in recs if r["type"] == "stats") == 0, field

        with urllib.request.urlopen(METRICS + "/metrics", timeout=10) as r:
            text = r.read().decode()
        assert metric(text, "surgewatch_log_writes_total", service=service) == N_LINES
        assert metric(text, "surgewatch_tcp_resets_total", service=srv,
                      direction="sent") == N_RESETS
        with urllib.request.urlopen(METRICS + "/", timeout=10) as r:
            assert '<a href="metrics">' in r.read().decode()
    finally:
        if log.exists():
            log.unlink()

    sh("systemctl", "stop", UNIT)
    show = sh("systemctl", "show", "-P", "ExecMainStatus", UNIT).stdout.strip()
    journal = unit_log(since)
    assert show == "0", journal
    for line in (f"output segments: {STATE_DIR} ",
                 "output socket: unix socket /run/surgewatch/stream.sock (mode 0660)",
                 f"output prometheus: {METRICS}/metrics",
                 "capabilities after loading the probes: CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE",
                 "stopped by SIGTERM; probes detached"):
        assert line in journal, journal
    assert "warning" not in journal.lower() and "error" not in journal.lower(), journal


def journald_notices(since, unit):
    """journald's own count of the unit's dropped messages since `since`: the N_DROPPED
    of its "Suppressed N messages from UNIT" notices (the ground truth)."""
    out = sh("journalctl", "--since", since, "-o", "json", "--no-pager", "_TRANSPORT=driver",
             "MESSAGE_ID=a596d6fe7bfa4994828e72309e95d61e").stdout
    return sum(int(e["N_DROPPED"]) for e in map(json.loads, out.splitlines())
               if e.get("MESSAGE", "").endswith(f" messages from {unit}"))


def test_messages_journald_drops_are_counted_as_journald_reports_them(installed):
    """A unit with LogRateLimitBurst= set low logs N lines at once, waits out the window,
    then one more (journald writes its notice at the first message that passes). The
    daemon's log_lost for the unit equals journald's notices, which equal the N lines
    less the ones journald kept (docs/detection.md, "Messages lost")."""
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    start_ts = time.time()
    sh("systemctl", "start", UNIT)
    wait_for("the daemon's first stats record", lambda: any(
        r["type"] == "stats" for r in this_run(start_ts)), True, 90)
    tag = uuid.uuid4().hex[:8]
    unit, n = f"swlost{tag}.service", 2000
    script = Path(f"/run/swlost{tag}.py")
    unit_file = Path(f"/run/systemd/system/{unit}")
    # alive a while after its last line: a oneshot unit's cgroup goes with its process, and
    # an exited process's last writes are named from its cgroup (seen: the last one drained
    # after the exit was not the unit's)
    script.write_text(f"import time\nfor i in range({n}):\n"
                      f"    print('swlost {tag} line %d' % i, flush=True)\n"
                      f"time.sleep(3.5)\nprint('swlost {tag} after', flush=True)\n"
                      f"time.sleep({2.5 * TIME_SCALE})\n")
    unit_file.write_text(f"[Service]\nType=oneshot\nExecStart=/usr/bin/python3 {script}\n"
                         "LogRateLimitIntervalSec=2s\nLogRateLimitBurst=20\n")
    try:
        sh("systemctl", "daemon-reload")
        sh("systemctl", "start", unit, timeout=120)          # oneshot: returns when done
        kept = sum(1 for line in sh("journalctl", "--since", since, "-o", "cat", "--no-pager",
                                    f"_SYSTEMD_UNIT={unit}").stdout.splitlines()
                   if line.startswith(f"swlost {tag} line "))
        dropped = journald_notices(since, unit)
        assert 0 < dropped and kept + dropped == n, (kept, dropped)
        # every line was a write to journald's stdout stream, kept or not (the last one may
        # be drained an interval after the notice is read)
        wait_for(f"log_lost and log_writes of {unit} in the records", lambda: (
            totals(this_run(start_ts), unit, "log_lost"),
            totals(this_run(start_ts), unit, "log_writes")), (dropped, n + 1), 30)
        recs = this_run(start_ts)
        opened = [r["lost"] for r in recs if r["type"] == "alert" and r["service"] == unit
                  and r["signal"] == "log_lost" and r["state"] == "open"]
        assert len(opened) == 1 and 0 < opened[0] <= dropped, opened
        with urllib.request.urlopen(METRICS + "/metrics", timeout=10) as r:
            text = r.read().decode()
        assert metric(text, "surgewatch_log_lost_messages_total", service=unit) == dropped
        journal = unit_log(since)
        assert f"lost: {unit}: journald dropped " in journal, journal
    finally:
        sh("systemctl", "stop", UNIT, check=False)
        unit_file.unlink(missing_ok=True)
        script.unlink(missing_ok=True)
        sh("systemctl", "daemon-reload", check=False)
