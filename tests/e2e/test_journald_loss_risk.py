"""journald's rate limit for real: a `systemd-run` unit with a low LogRateLimitBurst= writes
N lines to stdout in a burst -> `surgewatch run` counts all N (+1) on journald's stdout
stream, raises `log_loss_risk` for that unit with the limit PID 1 exported for it, and
journald's own "Suppressed M messages from <unit>" line shows the loss was real: the
lines journald stored in its window are exactly the disk-scaled burst the daemon judged
against.

Needs systemd (and journald) as PID 1: the Vagrant VM (`make vm-test`); skipped
elsewhere. systemd-run without --wait/--pty/--pipe talks to PID 1's private socket, so
no D-Bus daemon is needed."""
import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from tests.owncgroup import TIME_SCALE
from tests.support.daemon import Daemon

pytestmark = [
    pytest.mark.skipif(not os.path.isdir("/run/systemd/system"),
                       reason="systemd is not PID 1 here (no /run/systemd/system): this test "
                              "runs in the Vagrant VM (make vm-test)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: run `make test` as root"),
]

STDOUT = "journald:/run/systemd/journal/stdout"
N_LINES = 1000              # far above any disk-scaled burst of 20 (x6 at most, 1 TiB free)
BURST, INTERVAL_S = 20, 5   # the unit's LogRateLimitBurst= / LogRateLimitIntervalSec=
# after the burst the unit waits past journald's window, then writes one more line: journald
# writes its "Suppressed" message only with the unit's first message of a new window
# (journald's window runs on its clock, not the CPU's: only its lag scales)
WAIT_S = INTERVAL_S + 1 + TIME_SCALE

CONFIG = """
interval = 1.0
[log_rules]
dirs = [{logdir}]
globs = []
journald_sockets = ["/run/systemd/journal/stdout"]
[outputs.stdout]
format = "json"
[outputs.segments]
enabled = false
[outputs.socket]
enabled = false
[outputs.prometheus]
enabled = false
"""

SCRIPT = (
    "import os, time\n"
    f"for i in range({N_LINES}):\n"
    "    os.write(1, b'swloss line ' + str(i).encode() + b'\\n')\n"
    f"time.sleep({WAIT_S})\n"
    "os.write(1, b'swloss last line\\n')\n"
    # stay a few intervals: the drain holding the last line must still find the process
    # in the unit's cgroup (a transient unit's cgroup goes with its last process)
    f"time.sleep({3 * TIME_SCALE})\n"
)


def sh(*cmd, check=True, timeout=60):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}: exit {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def suppressed(unit, since):
    """M of journald's "Suppressed M messages from <unit>" since `since`, or None."""
    out = sh("journalctl", "-t", "systemd-journald", "--since", since, "-o", "cat",
             "--no-pager").stdout
    found = re.findall(rf"^Suppressed (\d+) messages from {re.escape(unit)}$", out, re.M)
    return sum(int(n) for n in found) if found else None


def stored_lines(unit, since):
    out = sh("journalctl", "-u", unit, "--since", since, "-o", "cat", "--no-pager").stdout
    return sum(1 for line in out.splitlines() if line.startswith("swloss "))


@pytest.fixture
def daemon(tmp_path):
    for tool in ("systemd-run", "journalctl", "systemctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing on a systemd host")
    logdir = tmp_path / "logs"
    logdir.mkdir()
    d = Daemon(tmp_path, stdout="json",
               config_text=CONFIG.format(logdir=json.dumps(str(logdir))))
    try:
        d.wait_meta(timeout=180 * TIME_SCALE)
        d.wait_stats(1, timeout=30 * TIME_SCALE)
        yield d
    finally:
        d.stop()


def test_low_burst_unit_raises_loss_risk_and_journald_confirms(daemon):
    unit = f"swloss-{uuid.uuid4().hex[:8]}.service"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 1))
    sh("systemd-run", "--quiet", "--collect", f"--unit={unit}",
       "-p", f"LogRateLimitIntervalSec={INTERVAL_S}s", "-p", f"LogRateLimitBurst={BURST}",
       "/usr/bin/python3", "-c", SCRIPT)
    try:
        opened, _ = daemon.wait_for(
            lambda r: r["type"] == "alert" and r["signal"] == "log_loss_risk"
            and r["service"] == unit and r["state"] == "open", timeout=60 * TIME_SCALE)
        limit = opened["limit"]
        assert (limit["limit"], limit["unit"], limit["interval_s"], limit["configured_burst"]) \
            == ("journald", unit, float(INTERVAL_S), BURST), opened
        assert limit["source"] == "/run/systemd/units (running unit)", opened
        assert opened["reason"] == "journald_rate_limit"
        assert opened["top"] == {"paths": [{"path": STDOUT}]}

        # journald's own word, written with the unit's last line after the window
        end = time.monotonic() + (WAIT_S + 30) * TIME_SCALE
        dropped = suppressed(unit, since)
        while dropped is None and time.monotonic() < end:
            time.sleep(0.5)
            dropped = suppressed(unit, since)
        assert dropped is not None, f"no 'Suppressed N messages from {unit}' from journald"
        # the window let exactly the disk-scaled burst through, the one the daemon used
        assert N_LINES - dropped == limit["burst"], (dropped, limit)
        assert stored_lines(unit, since) == limit["burst"] + 1       # + the last line
        daemon.wait_stats(2, timeout=30 * TIME_SCALE)
    finally:
        sh("systemctl", "stop", unit, check=False)
    rates = [r for r in daemon.records if r["type"] == "rate" and r["service"] == unit]
    writes = sum(p["writes"] for r in rates for p in r["paths"] if p["path"] == STDOUT)
    assert writes == N_LINES + 1
    risky = [e for r in rates for e in r.get("loss_risk", ()) if e["limit"] == "journald"]
    # one window held the whole burst (the last line too, when the slow VM's drains run
    # late and one interval covers more than its nominal second)
    assert max(e["messages"] for e in risky) in (N_LINES, N_LINES + 1), risky
    assert all(e["paths"] == [STDOUT] for e in risky), risky
    assert any(e["certain"] for e in risky), risky
